//! A cloud hub on an ephemeral port, agents with scripted answers, and raw WebSocket clients
//! for what a well-behaved agent never sends.
#![allow(dead_code)] // each test module uses its own part

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloud_fn::clock::SystemClock;
use cloud_fn::config::Secret as CloudSecret;
use cloud_fn::store::Store;
use cloud_fn::store::dynamo::DynamoStore;
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::tunnel::api_gateway::Tunnel;
use cloud_fn::tunnel::hub::Hub;
use cloud_fn::tunnel::websocket::{self, AgentGate, AgentSettings, agent_endpoint};
use local_agent::config::Secret;
use local_agent::tunnel::backoff::BackoffSettings;
use local_agent::tunnel::{self, Responder, SupervisorSettings, TunnelConfig};
use protocol::tunnel::{CachePush, IndexSummary, ReplyBody, RequestBody};
use protocol::{ErrorDetail, SearchHit, SearchResponse, SourceType};
use testkit::{ApiGatewayEmulator, Dynalite, EmulatorOptions, WebSocketBackend};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "agent-token-for-tests";

/// The cloud's side: a hub behind `/agent` on 127.0.0.1, on a runtime of its own so that
/// stopping it ends every connection at once, as a crashed process would.
pub struct Cloud {
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Cloud {
    pub async fn start(heartbeat: Duration) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), heartbeat).await
    }

    /// Starts on `address` (to restart a stopped cloud on the same port).
    pub async fn start_on(address: SocketAddr, heartbeat: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let settings = AgentSettings {
            tokens: vec![CloudSecret::new("another-token"), CloudSecret::new(TOKEN)],
            heartbeat,
            cache_ttl: Duration::from_secs(3600),
        };
        let (hub, agents) = agent_endpoint(&settings, store.clone(), Arc::new(SystemClock));
        let listener = std::net::TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = edge::serve(listener, agents, edge::Limits::default(), std::future::pending()).await;
        });
        Self { hub, store, address, runtime: Some(runtime), _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/agent", self.address)
    }

    /// Stops accepting and drops every connection, like a crashed process.
    pub fn stop(self) -> SocketAddr {
        self.address
    }

    /// Waits until `count` agents are live (or panics after 10 s).
    pub async fn until_live(&self, count: usize) {
        for _ in 0..1000 {
            if self.hub.agents().len() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {count} live agents, have {:?}", self.hub.agents());
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        // Tests run inside another runtime, where a runtime may only be shut down this way.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An agent whose answers are scripted: one passage quoting the query, after `delay`.
pub struct ScriptedNotes {
    pub name: String,
    pub delay: Duration,
    pub context_chars: usize,
    pub tags: Vec<String>,
    pub served: AtomicU64,
}

impl ScriptedNotes {
    pub fn new(name: &str) -> Arc<Self> {
        Self::with(name, Duration::ZERO, 200)
    }

    pub fn with(name: &str, delay: Duration, context_chars: usize) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            delay,
            context_chars,
            tags: vec!["AI效率".into()],
            served: AtomicU64::new(0),
        })
    }
}

impl Responder for ScriptedNotes {
    fn respond(&self, request: &RequestBody) -> Result<ReplyBody, ErrorDetail> {
        std::thread::sleep(self.delay);
        self.served.fetch_add(1, Ordering::SeqCst);
        let RequestBody::Search(search) = request;
        let mut context = format!("[1] {} notes (notes/{}.md)\nAbout: {} ", self.name, self.name, search.query);
        while context.len() < self.context_chars {
            context.push_str("上下文 context ");
        }
        Ok(ReplyBody::Search(SearchResponse {
            success: true,
            results: vec![SearchHit {
                knowledge_id: format!("{}#0", self.name),
                title: format!("{} notes", self.name),
                content_snippet: "…".into(),
                similarity_score: 0.9,
                source_type: SourceType::Hybrid,
                source: format!("notes/{}.md", self.name),
            }],
            context,
            processing_time: self.delay.as_secs_f64(),
            fusion: None,
        }))
    }

    fn summary(&self) -> IndexSummary {
        IndexSummary { chunks: 10, docs: 2 }
    }

    fn tag_contexts(&self) -> Vec<CachePush> {
        self.tags
            .iter()
            .map(|tag| CachePush {
                tag: tag.clone(),
                context: format!("[1] pushed context for {tag}"),
                sources: vec![format!("notes/{}.md", self.name)],
                updated_at: 1,
            })
            .collect()
    }
}

/// A tunnel configuration for tests: quick reconnects.
pub fn agent_config(url: &str, token: &str, name: &str) -> TunnelConfig {
    let mut config = TunnelConfig::new(url, Secret::new(token), name.into(), None).unwrap();
    config.supervisor = SupervisorSettings {
        backoff: BackoffSettings {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            healthy_after: Duration::from_secs(1),
        },
        drain_grace: Duration::from_millis(200),
        ..SupervisorSettings::default()
    };
    config
}

/// Runs an agent in this process until the handle is aborted (which drops its connection).
pub fn spawn_agent(
    config: TunnelConfig,
    notes: Arc<ScriptedNotes>,
) -> tokio::task::JoinHandle<Result<(), tunnel::TunnelError>> {
    tokio::spawn(tunnel::run(config, notes, std::future::pending()))
}

pub type RawSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bare WebSocket client with `token` (if any), for misbehaving on purpose.
pub async fn raw_client(url: &str, token: Option<&str>) -> Result<RawSocket, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// A DynamoDB store on a fresh table in its own dynalite.
pub async fn dynalite_store() -> (Dynalite, Arc<dyn Store>) {
    let dynalite = Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
    let sdk = testkit::aws::sdk_config(&dynalite.url());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), DYNAMODB_TABLE);
    store.ensure_table().await.unwrap();
    (dynalite, Arc::new(store))
}

/// The table of [`dynalite_store`].
pub const DYNAMODB_TABLE: &str = "notion-llm-e2e";

/// The management API client, pointed at the emulator.
pub fn management_client(emulator: &ApiGatewayEmulator) -> aws_sdk_apigatewaymanagement::Client {
    aws_sdk_apigatewaymanagement::Client::new(&testkit::aws::sdk_config(&emulator.management_url()))
}

/// The API Gateway side: handlers behind the emulator, a tunnel on `store`.
pub async fn api_gateway(store: Arc<dyn Store>, heartbeat: Duration) -> (ApiGatewayEmulator, Arc<Tunnel>) {
    api_gateway_with(store, heartbeat, EmulatorOptions::default()).await
}

/// The API Gateway side with the emulator's limits set by `options`.
pub async fn api_gateway_with(
    store: Arc<dyn Store>,
    heartbeat: Duration,
    options: EmulatorOptions,
) -> (ApiGatewayEmulator, Arc<Tunnel>) {
    // The handlers need the management client, which needs the emulator's address: the
    // emulator forwards to a slot filled in once both exist.
    let slot: Arc<std::sync::OnceLock<Arc<Tunnel>>> = Arc::default();
    let emulator = ApiGatewayEmulator::start(options, Arc::new(Deferred(slot.clone()))).await.unwrap();
    let tunnel = Tunnel::new(
        store,
        Arc::new(SystemClock),
        management_client(&emulator),
        vec![CloudSecret::new(TOKEN)],
        heartbeat,
        Duration::from_secs(3600),
    );
    let _ = slot.set(tunnel.clone());
    (emulator, tunnel)
}

/// The WebSocket API's Lambda handlers as the emulator calls them; the tunnel is set once the
/// emulator's address (needed by its management client) is known.
struct Deferred(Arc<std::sync::OnceLock<Arc<Tunnel>>>);

impl Deferred {
    fn tunnel(&self) -> &Tunnel {
        self.0.get().expect("the tunnel is set before any client connects")
    }
}

#[async_trait::async_trait]
impl WebSocketBackend for Deferred {
    async fn authorize(
        &self,
        request: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> aws_lambda_events::apigw::ApiGatewayCustomAuthorizerResponse {
        self.tunnel().authorize(&request)
    }

    async fn handle(
        &self,
        event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
    ) -> aws_lambda_events::apigw::ApiGatewayProxyResponse {
        self.tunnel().handle(&event).await
    }
}

/// A self-hosted cloud serving `/agent` over TLS with a self-signed certificate for
/// `localhost`, sharing the hub and store of a plain [`Cloud`].
pub struct TlsCloud {
    /// The plain cloud whose hub the TLS endpoint feeds.
    pub plain: Cloud,
    /// The certificate (PEM), the only root an agent can trust it with.
    pub cert_file: std::path::PathBuf,
    /// `wss://localhost:PORT/agent`.
    pub url: String,
    /// The TLS port.
    pub port: u16,
    /// The TLS server (abort it to stop).
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Holds the certificate files: keep it alive as long as they are needed.
    pub dir: tempfile::TempDir,
}

impl TlsCloud {
    pub async fn start(heartbeat: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, certified.cert.pem()).unwrap();
        std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
        let plain = Cloud::start(heartbeat).await;
        let gate = AgentGate::new(
            plain.hub.clone(),
            vec![CloudSecret::new(TOKEN)],
            plain.store.clone(),
            Arc::new(SystemClock),
            Duration::from_secs(60),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = cloud_fn::tunnel::tls::server_config(&cert_file, &key_file).unwrap();
        let listener = cloud_fn::tunnel::tls::TlsListener::new(listener, tls).unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, websocket::routes(gate)).await });
        Self { plain, cert_file, url: format!("wss://localhost:{port}/agent"), port, server, dir }
    }
}
