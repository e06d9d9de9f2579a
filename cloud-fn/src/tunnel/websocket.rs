//! `GET /agent`: where agents dial in when the cloud is self-hosted.
//!
//! The upgrade is refused unless `Authorization: Bearer <AGENT_TOKEN>` matches one of the
//! configured tokens (compared in constant time; the token is never logged). The agent's first
//! message must be `hello`; the cloud answers `welcome` with the heartbeat interval. After that
//! the connection carries heartbeats, requests and replies until it closes or the agent misses
//! two heartbeats, when the cloud closes it. Frames and messages above API Gateway's limits
//! close the connection with 1009, as API Gateway does; malformed messages get an `error` reply.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::tunnel::{AgentMessage, CachePush, CloudMessage, ErrorMessage, Welcome};
use protocol::{ErrorCode, limits};
use tokio::time::Instant;

use super::hub::{ConnectionId, Hub};
use crate::clock::Clock;
use crate::config::Secret;
use crate::context::cache::ContextCache;
use crate::store::{ContextStore, Store};

/// Read and write buffer of an agent's connection (frames are at most 32 KB; most messages are
/// heartbeats of a hundred bytes).
const CONNECTION_BUFFER_BYTES: usize = 8 * 1024;

/// How long a new connection may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the `/agent` endpoint needs.
pub struct AgentGate {
    hub: Arc<Hub>,
    tokens: Vec<Secret>,
    cache: ContextCache,
}

impl AgentGate {
    /// A gate admitting agents that present one of `tokens` into `hub`; their `cache_push`
    /// messages go to `store`, usable for `cache_ttl`.
    pub fn new(
        hub: Arc<Hub>,
        tokens: Vec<Secret>,
        store: Arc<dyn ContextStore>,
        clock: Arc<dyn Clock>,
        cache_ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Self { hub, tokens, cache: ContextCache::new(store, clock, cache_ttl) })
    }

    /// Whether `candidate` is one of the tokens (see [`Secret::matches_any`]).
    fn admits(&self, candidate: &str) -> bool {
        Secret::matches_any(&self.tokens, candidate)
    }

    /// Stores pushed context for the offline fallback.
    async fn cache(&self, push: CachePush) {
        if let Err(error) = self.cache.remember_push(&push).await {
            tracing::warn!(tag = push.tag, %error, "could not cache the context an agent pushed");
        }
    }
}

/// The `/agent` route.
pub fn routes(gate: Arc<AgentGate>) -> Router {
    Router::new().route("/agent", get(upgrade)).with_state(gate)
}

/// Who may connect to `/agent`, and how connected agents are kept.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Tokens agents may present (`AGENT_TOKEN`); none admits nobody.
    pub tokens: Vec<Secret>,
    /// How often agents send a heartbeat (`AGENT_HEARTBEAT`).
    pub heartbeat: Duration,
    /// How long context an agent pushes stays usable (`CONTEXT_CACHE_TTL`).
    pub cache_ttl: Duration,
}

impl AgentSettings {
    /// The settings of `config`.
    pub fn from_config(config: &crate::config::CloudConfig) -> Self {
        Self {
            tokens: config.agent_tokens.clone(),
            heartbeat: config.agent_heartbeat,
            cache_ttl: config.ladder.cache_ttl,
        }
    }
}

/// The agents' side of a self-hosted cloud: a hub, and the `/agent` route that admits agents
/// into it (their pushed context goes to `store`).
pub fn agent_endpoint(settings: &AgentSettings, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> (Arc<Hub>, Router) {
    let hub = Hub::new(settings.heartbeat);
    let gate = AgentGate::new(hub.clone(), settings.tokens.clone(), store, clock, settings.cache_ttl);
    (hub, routes(gate))
}

fn refuse(message: &str) -> Response {
    let body = protocol::ErrorResponse::new(ErrorCode::Unauthorized, message);
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

async fn upgrade(State(gate): State<Arc<AgentGate>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(protocol::bearer_token);
    match presented {
        None => {
            tracing::warn!("refused an agent without a token");
            return refuse("send AGENT_TOKEN as `Authorization: Bearer <token>`");
        }
        Some(token) if !gate.admits(token) => {
            tracing::warn!("refused an agent with a wrong token");
            return refuse("the agent token is not accepted; check AGENT_TOKEN on both sides");
        }
        Some(_) => {}
    }
    // Buffers sized for heartbeats and 32 KB frames, not axum's 128 KiB each way: a hub holds
    // a connection per agent (`cargo bench -p system-tests --bench reliability` measures it).
    upgrade
        .max_message_size(limits::MAX_MESSAGE_BYTES)
        .max_frame_size(limits::MAX_FRAME_BYTES)
        .read_buffer_size(CONNECTION_BUFFER_BYTES)
        .write_buffer_size(CONNECTION_BUFFER_BYTES)
        .max_write_buffer_size(4 * limits::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_agent(gate, socket))
}

fn text(message: &CloudMessage) -> Message {
    Message::Text(message.encode().into())
}

fn error_message(code: ErrorCode, message: impl Into<String>) -> Message {
    text(&CloudMessage::Error(ErrorMessage { code, message: message.into() }))
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Reads the first text message, which must be `hello`.
async fn await_hello(socket: &mut WebSocket) -> Result<protocol::tunnel::Hello, String> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
    let text = match first {
        Err(_) => return Err(format!("no hello within {HELLO_TIMEOUT:?}")),
        Ok(None) | Ok(Some(Err(_))) => return Err("closed before hello".into()),
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(_))) => return Err("the first message must be a `hello` text message".into()),
    };
    match AgentMessage::decode(text.as_str()) {
        Ok(AgentMessage::Hello(hello)) => Ok(hello),
        Ok(_) => Err("the first message must be `hello`".into()),
        Err(error) => Err(error.to_string()),
    }
}

async fn serve_agent(gate: Arc<AgentGate>, mut socket: WebSocket) {
    let hello = match await_hello(&mut socket).await {
        Ok(hello) => hello,
        Err(reason) => {
            tracing::warn!(%reason, "dropped an agent connection before hello");
            let _ = socket.send(error_message(ErrorCode::InvalidRequest, reason)).await;
            return close(socket, close_code::POLICY, "hello expected").await;
        }
    };
    let hub = gate.hub.clone();
    let (connection, mut outbox) = hub.connect();
    tracing::info!(connection, agent_id = hello.agent_id, version = hello.version, "agent connected");
    hub.hello(connection, hello);
    let welcome = CloudMessage::Welcome(Welcome { heartbeat_secs: hub.heartbeat().as_secs().max(1) });
    if socket.send(text(&welcome)).await.is_ok() {
        converse(&gate, connection, &mut socket, &mut outbox).await;
    }
    hub.disconnect(connection);
    tracing::info!(connection, "agent disconnected");
}

/// The connection's life after `welcome`: forwards requests out and what the agent sends in,
/// until either side closes or the agent falls silent.
async fn converse(
    gate: &AgentGate,
    connection: ConnectionId,
    socket: &mut WebSocket,
    outbox: &mut tokio::sync::mpsc::Receiver<CloudMessage>,
) {
    let hub = &gate.hub;
    // Two missed heartbeats and the agent is gone, whatever TCP thinks.
    let silence = hub.heartbeat() * 2 + Duration::from_secs(1);
    let mut deadline = Instant::now() + silence;
    loop {
        tokio::select! {
            outgoing = outbox.recv() => {
                let Some(message) = outgoing else { return };
                if socket.send(text(&message)).await.is_err() {
                    return;
                }
            }
            incoming = tokio::time::timeout_at(deadline, socket.recv()) => {
                let message = match incoming {
                    Err(_) => {
                        tracing::warn!(connection, "agent missed its heartbeats; closing");
                        let frame = CloseFrame { code: close_code::AWAY, reason: "heartbeat missed".into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        return;
                    }
                    Ok(None) => return,
                    Ok(Some(Err(error))) => {
                        // Oversized frames and messages end up here (tungstenite refuses them).
                        tracing::warn!(connection, %error, "agent connection failed");
                        let frame = CloseFrame { code: close_code::SIZE, reason: "message too big or invalid".into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        return;
                    }
                    Ok(Some(Ok(message))) => message,
                };
                deadline = Instant::now() + silence;
                match message {
                    Message::Text(text) => {
                        if let Some(reply) = handle(gate, connection, text.as_str()).await
                            && socket.send(reply).await.is_err()
                        {
                            return;
                        }
                    }
                    Message::Binary(_) => {
                        let reply = error_message(ErrorCode::InvalidJson, "messages must be JSON text frames");
                        if socket.send(reply).await.is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => hub.seen(connection, None),
                }
            }
        }
    }
}

/// Acts on one text message; returns the error reply to send, if any.
async fn handle(gate: &AgentGate, connection: ConnectionId, text: &str) -> Option<Message> {
    let hub = &gate.hub;
    match AgentMessage::decode(text) {
        Ok(AgentMessage::Heartbeat(heartbeat)) => hub.seen(connection, Some(heartbeat.stats)),
        Ok(AgentMessage::Hello(hello)) => hub.hello(connection, hello),
        Ok(AgentMessage::Reply(reply)) => {
            let id = reply.id.clone();
            if !hub.reply(connection, reply) {
                tracing::debug!(connection, id, "a reply arrived after its request was given up");
            }
        }
        Ok(AgentMessage::CachePush(push)) => {
            hub.seen(connection, None);
            gate.cache(push).await;
        }
        Err(error) => {
            tracing::warn!(connection, %error, "an agent sent an unusable message");
            return Some(error_message(error.code(), error.to_string()));
        }
    }
    None
}
