//! An emulator of an API Gateway WebSocket API, for testing the Lambda handlers behind one.
//!
//! Nothing else emulates API Gateway WebSocket locally (`sam local` needs Docker, moto's
//! `@connections` is broken), so the test kit carries its own. It accepts real WebSocket
//! clients on loopback and turns what they do into the events AWS would send:
//!
//! - the upgrade request runs the REQUEST authorizer (identity source: the `Authorization`
//!   header; missing → 401, a policy that does not allow `$connect` → 403), then `$connect`;
//!   the upgrade completes only if `$connect` answers 2xx;
//! - every message is routed on its `action` field (`routeSelectionExpression =
//!   $request.body.action`) to a custom route, else to `$default`, and handled in its own task,
//!   concurrently, as Lambda would;
//! - `$disconnect` follows every close, whoever closed, with `disconnectStatusCode` and
//!   `disconnectReason`;
//! - the quotas apply: frame and message size (close 1009), idle timeout and connection age
//!   (close 1001), all scaled down through [`EmulatorOptions`] for tests;
//! - the `@connections` management API (`POST`/`GET`/`DELETE /{stage}/@connections/{id}`)
//!   answers the real `aws-sdk-apigatewaymanagement` client pointed at
//!   [`ApiGatewayEmulator::management_url`], errors included (`GoneException`,
//!   `PayloadTooLargeException`, `ForbiddenException` for unsigned requests). Posted messages
//!   larger than a frame are sent fragmented, as API Gateway does.
//!
//! Where AWS leaves something unsaid, the emulator picks and documents: `DELETE` closes with
//! 1000, a dropped TCP connection reports 1006, an idle or aged connection is closed with 1001.
//! The `domainName` of events is the `127.0.0.1:PORT` the client dialed, so a handler that
//! builds its management endpoint from it must be told to use `http://` in tests.

mod connection;
mod events;
mod management;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How the emulated API is set up; the defaults are AWS's quotas and the project's routes.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The stage name: the first path segment of both the WebSocket and management URLs.
    pub stage: String,
    /// The API id reported in events and in the authorizer's `methodArn`.
    pub api_id: String,
    /// Custom route keys, matched against a message's `action` field.
    pub routes: Vec<String>,
    /// Largest frame a client may send (AWS: 32 KB); also the size posted messages are
    /// fragmented into.
    pub max_frame_bytes: usize,
    /// Largest message a client may send or the backend may post (AWS: 128 KB).
    pub max_message_bytes: usize,
    /// How long a connection may go without a message from its client (AWS: 10 minutes).
    pub idle_timeout: Duration,
    /// How long a connection may last at all (AWS: 2 hours).
    pub max_connection_age: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            stage: "test".to_owned(),
            api_id: "emulated1".to_owned(),
            routes: ["hello", "heartbeat", "reply", "cache_push"].map(str::to_owned).to_vec(),
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection_age: Duration::from_secs(2 * 60 * 60),
        }
    }
}

/// The Lambda functions behind the API: the code under test implements this by calling its
/// handlers.
#[async_trait::async_trait]
pub trait WebSocketBackend: Send + Sync + 'static {
    /// The REQUEST authorizer attached to `$connect`; called only when the upgrade request
    /// has an `Authorization` header (its identity source).
    async fn authorize(
        &self,
        request: ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> ApiGatewayCustomAuthorizerResponse;

    /// The integration of every route (`$connect`, `$disconnect`, `$default` and custom
    /// routes). Only `$connect`'s status matters: anything but 2xx refuses the connection.
    async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse;
}

/// What the connection's task is asked to do by the management API or the test.
#[derive(Debug)]
enum Command {
    /// Send a message (fragmented if larger than a frame); `sent` learns whether it went out.
    Send { payload: Bytes, sent: oneshot::Sender<bool> },
    /// Close with a close frame, then report `$disconnect` with this code and reason.
    Close { code: u16, reason: &'static str },
    /// Drop the TCP connection without a close handshake, as a network failure would.
    Drop,
}

/// An open connection, as the management API sees it.
#[derive(Debug)]
struct ConnectionEntry {
    commands: mpsc::UnboundedSender<Command>,
    connected_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
}

/// State shared by the server, the connection tasks and the emulator handle.
struct Shared {
    options: EmulatorOptions,
    backend: Arc<dyn WebSocketBackend>,
    /// `127.0.0.1:PORT`, reported as the API's `domainName`.
    domain_name: String,
    connections: Mutex<HashMap<String, ConnectionEntry>>,
    delivered_routes: Mutex<Vec<String>>,
    /// Turns true when the emulator is dropped: connections close with 1001.
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, HashMap<String, ConnectionEntry>> {
        lock(&self.connections)
    }

    /// Notes that an event goes to `route_key` (in the order events are dispatched).
    fn record_delivery(&self, route_key: &str) {
        lock(&self.delivered_routes).push(route_key.to_owned());
    }

    /// Forgets a connection and tells its task what to do; false if it was not open.
    fn end_connection(&self, connection_id: &str, command: Command) -> bool {
        match self.connections().remove(connection_id) {
            Some(entry) => {
                let _ = entry.commands.send(command);
                true
            }
            None => false,
        }
    }
}

/// A running emulator on an ephemeral loopback port; stops when dropped (the server stops
/// accepting, open connections are closed with 1001 and get no `$disconnect`).
pub struct ApiGatewayEmulator {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl ApiGatewayEmulator {
    /// Starts the emulator on `127.0.0.1:0` with `backend` behind every route.
    pub async fn start(options: EmulatorOptions, backend: Arc<dyn WebSocketBackend>) -> std::io::Result<Self> {
        let stage_is_valid = !options.stage.is_empty()
            && options.stage.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !stage_is_valid {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("stage {:?} must be letters, digits, '-' or '_'", options.stage),
            ));
        }
        if options.max_frame_bytes == 0 || options.max_message_bytes == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "size limits must be positive"));
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let stage = options.stage.clone();
        // Posts over the message quota must reach the handler to get AWS's 413, not axum's.
        let body_limit = options.max_message_bytes.saturating_mul(4).max(1024 * 1024);
        let shared = Arc::new(Shared {
            options,
            backend,
            domain_name: address.to_string(),
            connections: Mutex::new(HashMap::new()),
            delivered_routes: Mutex::new(Vec::new()),
            shutdown: shutdown_receiver,
        });
        let router = Router::new()
            .route(&format!("/{stage}"), get(connection::accept))
            .route(
                &format!("/{stage}/@connections/{{connection_id}}"),
                post(management::post_to_connection)
                    .get(management::get_connection)
                    .delete(management::delete_connection),
            )
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(error) = axum::serve(listener, service).await {
                tracing::warn!(%error, "API Gateway emulator stopped serving");
            }
        });
        Ok(Self { address, shared, server, shutdown })
    }

    /// Where clients connect: `ws://127.0.0.1:PORT/{stage}`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/{}", self.address, self.shared.options.stage)
    }

    /// The management API's endpoint, `http://127.0.0.1:PORT/{stage}`: give it to the SDK
    /// client as `endpoint_url`.
    pub fn management_url(&self) -> String {
        format!("http://{}/{}", self.address, self.shared.options.stage)
    }

    /// The ids of the open connections (those whose `$connect` succeeded and that have not
    /// closed yet), sorted.
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.connections().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Drops a connection without a close handshake, as a network failure would
    /// (`$disconnect` still fires, with 1006). Unknown ids are ignored.
    pub fn kill(&self, connection_id: &str) {
        self.shared.end_connection(connection_id, Command::Drop);
    }

    /// The route keys of the events delivered so far, in the order they were dispatched
    /// (`$connect`, message routes, `$disconnect`; authorizer calls are not routes).
    pub fn delivered_routes(&self) -> Vec<String> {
        lock(&self.shared.delivered_routes).clone()
    }
}

impl Drop for ApiGatewayEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.server.abort();
    }
}

impl std::fmt::Debug for ApiGatewayEmulator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ApiGatewayEmulator").field("address", &self.address).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
