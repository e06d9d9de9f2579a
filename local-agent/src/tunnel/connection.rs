//! One connection to the cloud: dial (TLS, token, `hello` → `welcome`), then a session that
//! answers requests concurrently, sends heartbeats and pushes fresh context, until the
//! connection is lost or the supervisor asks it to drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::tunnel::{
    AgentMessage, AgentStats, CloudMessage, Heartbeat, Hello, Reply, Request, Welcome, request_id_of,
};
use protocol::{ErrorCode, limits};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::TunnelConfig;
use super::TunnelError;
use super::responder::Responder;
use super::status::TunnelStatus;
use super::supervisor::{LiveConnection, SessionEnd};

/// How long dialling (TCP, TLS, upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the cloud may take to answer `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a draining connection waits for the cloud to acknowledge its close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a connection and starts its session; returns once the cloud said `welcome`.
pub async fn dial(config: &TunnelConfig, responder: Arc<dyn Responder>) -> Result<LiveConnection, TunnelError> {
    let mut socket = connect(config).await?;
    let hello = Hello {
        agent_id: config.agent_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        index: responder.summary(),
    };
    socket.send(Message::text(AgentMessage::Hello(hello).encode())).await.map_err(classify)?;
    let (welcome, early) = tokio::time::timeout(WELCOME_TIMEOUT, await_welcome(&mut socket))
        .await
        .map_err(|_| TunnelError::Protocol(format!("no welcome within {WELCOME_TIMEOUT:?}")))??;

    let (drain, drained) = oneshot::channel();
    let (end, ended) = oneshot::channel();
    let concurrency = config.max_concurrent_requests;
    let status = config.status.clone();
    tokio::spawn(async move {
        status.session_started();
        let session = Session::new(responder, welcome, concurrency, status.clone());
        let outcome = session.run(socket, early, drained).await;
        status.session_ended(match &outcome {
            SessionEnd::Lost(reason) => Some(reason),
            SessionEnd::Drained => None,
        });
        let _ = end.send(outcome);
    });
    Ok(LiveConnection::new(drain, ended))
}

/// Checks that the cloud can be reached and accepts the token, without joining: the upgrade
/// succeeds (or is refused) and the connection closes before `hello`, so a running agent with
/// the same id is not disturbed. For `local-agent doctor`.
pub async fn probe(config: &TunnelConfig) -> Result<(), TunnelError> {
    let mut socket = connect(config).await?;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
    Ok(())
}

/// TCP, TLS and the WebSocket upgrade with the token.
async fn connect(config: &TunnelConfig) -> Result<Socket, TunnelError> {
    let mut request =
        config.url.as_str().into_client_request().map_err(|error| {
            TunnelError::Config(format!("CLOUD_URL {:?} is not a WebSocket URL: {error}", config.url))
        })?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", config.token.expose()))
        .map_err(|_| TunnelError::Config("AGENT_TOKEN contains characters not allowed in a header".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    let socket_config = WebSocketConfig::default()
        .max_message_size(Some(limits::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(limits::MAX_FRAME_BYTES));
    let connector = Connector::Rustls(config.tls.clone());
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(socket_config), true, Some(connector));
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| TunnelError::Unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(classify)?;
    Ok(socket)
}

/// Sorts dial errors into "fix the configuration" and "try again later".
fn classify(error: tungstenite::Error) -> TunnelError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            if status == 401 || status == 403 {
                TunnelError::Unauthorized(status.as_u16())
            } else {
                TunnelError::Unreachable(format!("the cloud answered HTTP {status} to the upgrade"))
            }
        }
        tungstenite::Error::Url(error) => TunnelError::Config(format!("CLOUD_URL is not usable: {error}")),
        other => TunnelError::Unreachable(other.to_string()),
    }
}

/// Waits for `welcome`; requests that overtake it (each API Gateway event is its own Lambda,
/// so order is not guaranteed) are kept and answered once the session runs.
async fn await_welcome(socket: &mut Socket) -> Result<(Welcome, Vec<String>), TunnelError> {
    let mut early = Vec::new();
    while let Some(message) = socket.next().await {
        match message.map_err(classify)? {
            Message::Text(text) => match CloudMessage::decode(text.as_str()) {
                Ok(CloudMessage::Welcome(welcome)) => return Ok((welcome, early)),
                Ok(CloudMessage::Request(_)) => early.push(text.as_str().to_owned()),
                Ok(CloudMessage::Error(error)) => {
                    return Err(TunnelError::Protocol(format!("the cloud refused the hello: {}", error.message)));
                }
                Err(error) => return Err(TunnelError::Protocol(error.to_string())),
            },
            Message::Close(frame) => {
                return Err(TunnelError::Unreachable(format!("the cloud closed the connection: {frame:?}")));
            }
            _ => {}
        }
    }
    Err(TunnelError::Unreachable("the cloud closed the connection before welcome".into()))
}

/// Splits a text message into frames of at most [`limits::MAX_FRAME_BYTES`] (API Gateway's
/// frame limit), cutting at character boundaries.
pub fn frames(text: String) -> Vec<Message> {
    if text.len() <= limits::MAX_FRAME_BYTES {
        return vec![Message::text(text)];
    }
    let mut frames = Vec::new();
    let mut rest = text.as_str();
    let mut opcode = OpCode::Data(Data::Text);
    while !rest.is_empty() {
        let mut cut = rest.len().min(limits::MAX_FRAME_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        let payload = head.as_bytes().to_vec();
        frames.push(Message::Frame(Frame::message(payload, opcode, tail.is_empty())));
        opcode = OpCode::Data(Data::Continue);
        rest = tail;
    }
    frames
}

/// What the writer task sends.
enum Outgoing {
    Message(AgentMessage),
    /// A heartbeat, with a WebSocket ping the cloud's end answers.
    Heartbeat(AgentMessage),
    Close,
}

/// The state of one established connection.
struct Session {
    responder: Arc<dyn Responder>,
    heartbeat: Duration,
    permits: Arc<Semaphore>,
    served: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    status: Arc<TunnelStatus>,
}

impl Session {
    fn new(responder: Arc<dyn Responder>, welcome: Welcome, concurrency: usize, status: Arc<TunnelStatus>) -> Self {
        Self {
            responder,
            heartbeat: Duration::from_secs(welcome.heartbeat_secs.max(1)),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            served: Arc::default(),
            in_flight: Arc::default(),
            status,
        }
    }

    fn stats(&self) -> AgentStats {
        AgentStats {
            index: self.responder.summary(),
            requests_served: self.served.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    async fn run(self, socket: Socket, early: Vec<String>, mut drain: oneshot::Receiver<()>) -> SessionEnd {
        let (mut sink, mut stream) = socket.split();
        let (outbox, mut outgoing) = mpsc::channel::<Outgoing>(64);
        // One writer, so the frames of a fragmented message are never interleaved.
        let writer = tokio::spawn(async move {
            while let Some(next) = outgoing.recv().await {
                let frames = match next {
                    Outgoing::Message(message) => frames(message.encode()),
                    Outgoing::Heartbeat(message) => {
                        vec![Message::text(message.encode()), Message::Ping(Vec::new().into())]
                    }
                    Outgoing::Close => vec![Message::Close(None)],
                };
                for frame in frames {
                    sink.feed(frame).await?;
                }
                sink.flush().await?;
            }
            Ok::<_, tungstenite::Error>(())
        });

        let mut requests: JoinSet<()> = JoinSet::new();
        for text in early {
            self.handle(&text, &outbox, &mut requests);
        }
        let mut heartbeat = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Fresh context per tag for the cloud's offline fallback: once now, then whenever the
        // responder serves a new index generation.
        let mut generations = self.responder.generations();
        if let Some(generations) = generations.as_mut() {
            generations.mark_unchanged();
        }
        tokio::spawn(push_contexts(self.responder.clone(), outbox.clone()));
        let mut seq = 0;
        // Once the cloud has answered a ping, silence for two heartbeats means the link is dead
        // even if TCP has not noticed (a sleeping laptop, a dropped NAT mapping). A cloud that
        // never answers pings is left to TCP and failed writes.
        let silence = self.heartbeat * 2 + Duration::from_secs(1);
        let mut heard = Instant::now();
        let mut pongs = false;
        let mut draining = false;
        let mut close_deadline = None;

        let end = loop {
            let watchdog = close_deadline.or(pongs.then_some(heard + silence));
            tokio::select! {
                _ = heartbeat.tick(), if !draining => {
                    seq += 1;
                    let beat = AgentMessage::Heartbeat(Heartbeat { seq, stats: self.stats() });
                    if outbox.send(Outgoing::Heartbeat(beat)).await.is_err() {
                        break SessionEnd::Lost("the writer stopped".into());
                    }
                    self.status.heartbeat_sent();
                }
                changed = next_generation(&mut generations), if !draining && generations.is_some() => {
                    if changed {
                        // Building one context per tag takes a while: not on the read loop.
                        tokio::spawn(push_contexts(self.responder.clone(), outbox.clone()));
                    } else {
                        // The responder stopped publishing (it is shutting down).
                        generations = None;
                    }
                }
                signal = &mut drain, if !draining => {
                    // A dropped handle means the supervisor is gone (the agent is stopping).
                    if signal.is_err() {
                        break SessionEnd::Lost("the supervisor stopped".into());
                    }
                    draining = true;
                    if requests.is_empty() {
                        close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                        let _ = outbox.send(Outgoing::Close).await;
                    }
                }
                Some(_) = requests.join_next(), if !requests.is_empty() => {
                    if draining && requests.is_empty() && close_deadline.is_none() {
                        close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                        let _ = outbox.send(Outgoing::Close).await;
                    }
                }
                () = tokio::time::sleep_until(watchdog.unwrap_or(heard + silence)), if watchdog.is_some() => {
                    break if close_deadline.is_some() {
                        SessionEnd::Drained
                    } else {
                        SessionEnd::Lost(format!("nothing heard from the cloud for {silence:?}"))
                    };
                }
                incoming = stream.next() => {
                    heard = Instant::now();
                    match incoming {
                        None => break if draining { SessionEnd::Drained } else { SessionEnd::Lost("closed".into()) },
                        Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                        Some(Ok(Message::Close(frame))) => {
                            break if draining { SessionEnd::Drained } else { SessionEnd::Lost(format!("closed by the cloud: {frame:?}")) };
                        }
                        Some(Ok(Message::Text(text))) => self.handle(text.as_str(), &outbox, &mut requests),
                        Some(Ok(Message::Pong(_))) => pongs = true,
                        Some(Ok(_)) => {}
                    }
                }
            }
        };
        requests.abort_all();
        writer.abort();
        end
    }

    fn handle(&self, text: &str, outbox: &mpsc::Sender<Outgoing>, requests: &mut JoinSet<()>) {
        match CloudMessage::decode(text) {
            Ok(CloudMessage::Request(request)) => {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                requests.spawn(serve_request(
                    request,
                    self.responder.clone(),
                    self.permits.clone(),
                    outbox.clone(),
                    self.served.clone(),
                    self.in_flight.clone(),
                ));
            }
            Ok(CloudMessage::Error(error)) => {
                tracing::warn!(code = ?error.code, "the cloud could not use a message: {}", error.message);
            }
            Ok(CloudMessage::Welcome(_)) => {}
            Err(error) => {
                tracing::warn!(%error, "the cloud sent an unusable message");
                // Answer it if it was a request, so the cloud need not wait out its deadline.
                if let Some(id) = request_id_of(text) {
                    let reply = Reply::err(id, error.code(), error.to_string());
                    let _ = outbox.try_send(Outgoing::Message(AgentMessage::Reply(reply)));
                }
            }
        }
    }
}

/// Sends the cloud fresh context for each tag, for its offline fallback.
/// Waits for the next index generation; `false` when no more will come.
async fn next_generation(generations: &mut Option<watch::Receiver<u64>>) -> bool {
    match generations {
        Some(generations) => generations.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn push_contexts(responder: Arc<dyn Responder>, outbox: mpsc::Sender<Outgoing>) {
    let Ok(pushes) = tokio::task::spawn_blocking(move || responder.tag_contexts()).await else { return };
    let count = pushes.len();
    for mut push in pushes {
        // Keep each push inside one message.
        let budget = limits::MAX_MESSAGE_BYTES / 2;
        if push.context.len() > budget {
            let mut cut = budget;
            while !push.context.is_char_boundary(cut) {
                cut -= 1;
            }
            push.context.truncate(cut);
        }
        if outbox.send(Outgoing::Message(AgentMessage::CachePush(push))).await.is_err() {
            return;
        }
    }
    if count > 0 {
        tracing::info!(tags = count, "pushed fresh context to the cloud");
    }
}

/// Answers one request within its deadline, on the blocking pool, at most `permits` at once.
async fn serve_request(
    request: Request,
    responder: Arc<dyn Responder>,
    permits: Arc<Semaphore>,
    outbox: mpsc::Sender<Outgoing>,
    served: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
) {
    let Request { id, deadline_ms, body } = request;
    let deadline = Duration::from_millis(deadline_ms);
    let work = async {
        let _permit = permits.acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || responder.respond(&body)).await.ok()
    };
    let mut reply = match tokio::time::timeout(deadline, work).await {
        Ok(Some(Ok(body))) => Reply::ok(id, body),
        Ok(Some(Err(error))) => Reply { id, ok: None, err: Some(error) },
        Ok(None) => Reply::err(id, ErrorCode::Internal, "the search failed unexpectedly"),
        Err(_) => Reply::err(id, ErrorCode::Timeout, format!("not answered within {deadline_ms} ms")),
    };
    reply.fit(limits::MAX_MESSAGE_BYTES);
    in_flight.fetch_sub(1, Ordering::Relaxed);
    served.fetch_add(1, Ordering::Relaxed);
    let _ = outbox.send(Outgoing::Message(AgentMessage::Reply(reply))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_split_into_frames_at_character_boundaries() {
        let text = "数据".repeat(limits::MAX_FRAME_BYTES / 3);
        let frames = frames(text.clone());
        assert!(frames.len() >= 2);
        let mut joined = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            let Message::Frame(frame) = frame else { panic!("expected raw frames") };
            assert!(frame.payload().len() <= limits::MAX_FRAME_BYTES);
            assert_eq!(frame.header().is_final, index == frames.len() - 1);
            let expected = if index == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            assert_eq!(frame.header().opcode, expected);
            assert!(std::str::from_utf8(frame.payload()).is_ok(), "cut inside a character");
            joined.extend_from_slice(frame.payload());
        }
        assert_eq!(joined, text.as_bytes());
        assert!(matches!(&super::frames("short".into())[..], [Message::Text(_)]));
    }
}
