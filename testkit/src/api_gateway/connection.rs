//! The WebSocket side: the upgrade (authorizer, then `$connect`) and each connection's life
//! until `$disconnect`.
//!
//! The upgrade is done by hand (reply 101, then take hyper's upgraded stream) rather than with
//! axum's `WebSocketUpgrade`, because the emulator needs tungstenite's raw frames: posted
//! messages larger than a frame go out fragmented, as API Gateway sends them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WebSocketError, Message, Utf8Bytes};

use super::events::{self, ConnectionContext, UpgradeRequest};
use super::{Command, ConnectionEntry, Shared};

/// How long a closing connection waits for the client's half of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// `GET /{stage}` with a WebSocket upgrade: authorizes, delivers `$connect`, and completes the
/// upgrade only if both let the client in.
pub(super) async fn accept(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let Some(key) = websocket_key(request.headers()) else {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade request").into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_owned(), |ConnectInfo(peer)| peer.ip().to_string());
    let upgrade = UpgradeRequest::from_parts(request.headers(), request.uri().query());
    let mut context = ConnectionContext {
        connection_id: unused_connection_id(&shared),
        connected_at: Utc::now(),
        source_ip,
        user_agent: upgrade.header("user-agent").map(str::to_owned),
        domain_name: shared.domain_name.clone(),
        stage: shared.options.stage.clone(),
        api_id: shared.options.api_id.clone(),
        authorizer: serde_json::Map::new(),
    };

    // The authorizer's identity source is the Authorization header: without it API Gateway
    // answers 401 and never calls the authorizer.
    if upgrade.header("authorization").is_none_or(str::is_empty) {
        return message_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let authorizer_request = match events::authorizer_request(&context, &upgrade) {
        Ok(request) => request,
        Err(error) => return event_shape_failure(&error),
    };
    let decision = shared.backend.authorize(authorizer_request).await;
    if !events::policy_allows(&decision, &events::connect_method_arn(&context)) {
        return message_response(StatusCode::FORBIDDEN, "Forbidden");
    }
    context.authorizer = events::authorizer_fields(&decision);

    let connect_event = match events::connect_event(&context, &upgrade) {
        Ok(event) => event,
        Err(error) => return event_shape_failure(&error),
    };
    shared.record_delivery("$connect");
    let answer = shared.backend.handle(connect_event).await;
    if !(200..300).contains(&answer.status_code) {
        // The integration's status reaches the client; nonsense statuses become 500.
        let status = u16::try_from(answer.status_code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .filter(|status| !status.is_success() && !status.is_informational())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return message_response(status, "Connection refused by the $connect route");
    }

    let Ok(accept_key) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return message_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    };
    // Registered before the 101 goes out, so a client that has connected is always listed.
    let (commands, command_receiver) = mpsc::unbounded_channel();
    shared.connections().insert(
        context.connection_id.clone(),
        ConnectionEntry {
            commands,
            connected_at: context.connected_at,
            last_active_at: context.connected_at,
            source_ip: context.source_ip.clone(),
            user_agent: context.user_agent.clone(),
        },
    );
    tokio::spawn(run_connection(Arc::clone(&shared), context, on_upgrade, command_receiver));

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
    // A subprotocol is agreed by `$connect` answering with the header, as on AWS.
    if let Some(protocol) = answer.headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
    }
    response
}

/// The `Sec-WebSocket-Key` of a well-formed upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
    };
    let version_13 = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|version| version == "13");
    if !(has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket") && version_13) {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok().map(str::to_owned)
}

fn unused_connection_id(shared: &Shared) -> String {
    loop {
        let id = events::random_id();
        if !shared.connections().contains_key(&id) {
            return id;
        }
    }
}

/// API Gateway's error body for refused upgrades.
fn message_response(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({ "message": message }).to_string()).into_response()
}

fn event_shape_failure(error: &serde_json::Error) -> Response {
    tracing::error!(%error, "the emulator built an event aws_lambda_events cannot read");
    message_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// Why a connection ended, which decides how it is closed and what `$disconnect` says.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame (or none: 1005).
    ClientClosed(Option<CloseFrame>),
    /// The emulator closes with a close frame; `report` is false only on shutdown.
    Close { code: u16, reason: String, report: bool },
    /// The client broke a quota or the protocol mid-stream: close frame, then whatever else it
    /// sends is discarded (tungstenite's reader cannot resync after an oversized frame).
    Violation { code: u16, reason: String },
    /// The TCP connection is gone without a close handshake.
    Lost,
}

/// The life of one accepted connection, from the completed upgrade to `$disconnect`.
async fn run_connection(
    shared: Arc<Shared>,
    context: ConnectionContext,
    on_upgrade: OnUpgrade,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let config = WebSocketConfig::default()
        .max_frame_size(Some(shared.options.max_frame_bytes))
        .max_message_size(Some(shared.options.max_message_bytes));
    let (ending, socket) = match on_upgrade.await {
        Ok(upgraded) => {
            let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            let ending = serve(&shared, &context, &mut socket, &mut commands).await;
            (ending, Some(socket))
        }
        Err(error) => {
            tracing::warn!(%error, connection_id = %context.connection_id, "WebSocket upgrade failed");
            (Ending::Lost, None)
        }
    };
    // From here on the management API answers 410, and queued posts fail.
    shared.connections().remove(&context.connection_id);
    drop(commands);
    let disconnect = close(socket, ending).await;
    if let Some((code, reason)) = disconnect {
        deliver_disconnect(&shared, &context, code, &reason).await;
    }
}

/// Relays messages both ways until something ends the connection.
async fn serve(
    shared: &Arc<Shared>,
    context: &ConnectionContext,
    socket: &mut Socket,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ending {
    let options = &shared.options;
    let mut shutdown = shared.shutdown.clone();
    let age_deadline = Instant::now() + options.max_connection_age;
    let mut idle_deadline = Instant::now() + options.idle_timeout;
    loop {
        if *shutdown.borrow() {
            return Ending::Close { code: 1001, reason: "Going away".to_owned(), report: false };
        }
        tokio::select! {
            incoming = socket.next() => {
                let (body, is_base64_encoded) = match incoming {
                    Some(Ok(Message::Text(text))) => (text.as_str().to_owned(), false),
                    Some(Ok(Message::Binary(data))) => (base64::engine::general_purpose::STANDARD.encode(&data), true),
                    Some(Ok(Message::Close(frame))) => return Ending::ClientClosed(frame),
                    // Pings are answered by tungstenite; they do not count as activity.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Err(error)) => return ending_for(error),
                    None => return Ending::Lost,
                };
                idle_deadline = Instant::now() + options.idle_timeout;
                if let Some(entry) = shared.connections().get_mut(&context.connection_id) {
                    entry.last_active_at = Utc::now();
                }
                dispatch_message(shared, context, body, is_base64_encoded);
            }
            command = commands.recv() => match command {
                Some(Command::Send { payload, sent }) => {
                    let delivered = send_message(socket, payload, options.max_frame_bytes).await;
                    let _ = sent.send(delivered);
                    if !delivered {
                        return Ending::Lost;
                    }
                }
                Some(Command::Close { code, reason }) => {
                    return Ending::Close { code, reason: reason.to_owned(), report: true };
                }
                Some(Command::Drop) | None => return Ending::Lost,
            },
            () = sleep_until(idle_deadline) => {
                return Ending::Close { code: 1001, reason: "Idle timeout reached".to_owned(), report: true };
            }
            () = sleep_until(age_deadline) => {
                return Ending::Close { code: 1001, reason: "Connection duration limit reached".to_owned(), report: true };
            }
            _ = shutdown.changed() => {
                return Ending::Close { code: 1001, reason: "Going away".to_owned(), report: false };
            }
        }
    }
}

fn ending_for(error: WebSocketError) -> Ending {
    match error {
        WebSocketError::Capacity(_) => Ending::Violation { code: 1009, reason: "Message too big".to_owned() },
        WebSocketError::Utf8(_) => Ending::Violation { code: 1007, reason: "Invalid frame payload data".to_owned() },
        WebSocketError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WebSocketError::Io(_)
        | WebSocketError::ConnectionClosed
        | WebSocketError::AlreadyClosed => Ending::Lost,
        other => Ending::Violation { code: 1002, reason: format!("Protocol error: {other}") },
    }
}

/// Routes a client message and hands its event to the backend in a task of its own, as
/// Lambda runs invocations concurrently (a handler may wait for a later message).
fn dispatch_message(shared: &Arc<Shared>, context: &ConnectionContext, body: String, is_base64_encoded: bool) {
    let route_key =
        if is_base64_encoded { "$default".to_owned() } else { events::select_route(&body, &shared.options.routes) };
    let event = match events::message_event(context, &route_key, body, is_base64_encoded) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(%error, "the emulator built an event aws_lambda_events cannot read");
            return;
        }
    };
    shared.record_delivery(&route_key);
    let backend = Arc::clone(&shared.backend);
    let connection_id = context.connection_id.clone();
    tokio::spawn(async move {
        let answer = backend.handle(event).await;
        if !(200..300).contains(&answer.status_code) {
            tracing::warn!(%connection_id, %route_key, status = answer.status_code, "route integration failed");
        }
    });
}

/// Sends a posted message: one frame if it fits, else fragments of at most `max_frame_bytes`.
/// Text if the bytes are UTF-8, binary otherwise. False if the connection failed.
async fn send_message(socket: &mut Socket, payload: Bytes, max_frame_bytes: usize) -> bool {
    let is_text = std::str::from_utf8(&payload).is_ok();
    if payload.len() <= max_frame_bytes {
        let message = match Utf8Bytes::try_from(payload.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(payload),
        };
        return socket.send(message).await.is_ok();
    }
    let first_opcode = OpCode::Data(if is_text { Data::Text } else { Data::Binary });
    let fragments = payload.len().div_ceil(max_frame_bytes);
    for index in 0..fragments {
        let start = index * max_frame_bytes;
        let end = (start + max_frame_bytes).min(payload.len());
        let opcode = if index == 0 { first_opcode } else { OpCode::Data(Data::Continue) };
        let frame = Frame::message(payload.slice(start..end), opcode, index + 1 == fragments);
        if socket.feed(Message::Frame(frame)).await.is_err() {
            return false;
        }
    }
    socket.flush().await.is_ok()
}

/// Closes the socket the way `ending` calls for; returns the `$disconnect` code and reason to
/// report, if any.
async fn close(socket: Option<Socket>, ending: Ending) -> Option<(u16, String)> {
    let Some(mut socket) = socket else {
        return Some((1006, "Connection lost".to_owned()));
    };
    match ending {
        Ending::ClientClosed(frame) => {
            finish_handshake(&mut socket).await;
            Some(match frame {
                Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                None => (1005, "Client-side close frame status not set".to_owned()),
            })
        }
        Ending::Close { code, reason, report } => {
            let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason.clone()) };
            if socket.send(Message::Close(Some(frame))).await.is_ok() {
                finish_handshake(&mut socket).await;
            }
            report.then_some((code, reason))
        }
        Ending::Violation { code, reason } => {
            let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason.clone()) };
            if socket.send(Message::Close(Some(frame))).await.is_ok() {
                discard_input(&mut socket).await;
            }
            Some((code, reason))
        }
        Ending::Lost => Some((1006, "Connection lost".to_owned())),
    }
}

/// Reads until the client's close frame is through (tungstenite then ends the stream), for at
/// most [`CLOSE_GRACE`].
async fn finish_handshake(socket: &mut Socket) {
    let _ = timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = socket.next().await {} }).await;
}

/// Reads and drops raw bytes until the client hangs up, for at most [`CLOSE_GRACE`], so that
/// closing does not reset the connection under the close frame while the client still sends.
async fn discard_input(socket: &mut Socket) {
    let stream = socket.get_mut();
    let mut buffer = vec![0u8; 16 * 1024];
    let _ = timeout(CLOSE_GRACE, async {
        while let Ok(read) = stream.read(&mut buffer).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

async fn deliver_disconnect(shared: &Shared, context: &ConnectionContext, code: u16, reason: &str) {
    let event = match events::disconnect_event(context, code, reason) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(%error, "the emulator built an event aws_lambda_events cannot read");
            return;
        }
    };
    shared.record_delivery("$disconnect");
    let answer = shared.backend.handle(event).await;
    if !(200..300).contains(&answer.status_code) {
        tracing::warn!(connection_id = %context.connection_id, status = answer.status_code, "$disconnect integration failed");
    }
}
