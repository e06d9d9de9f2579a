//! The loopback HTTP API, compatible with the original system's:
//! `GET /health`, `POST /search`, `POST /context/build`, `GET /stats`, `POST /cache/clear`,
//! plus `GET /metrics` (Prometheus text) and `POST /index/rebuild`.
//!
//! Every endpoint except `/health` requires the API key when one is configured
//! (`Authorization: Bearer <key>` or `X-API-Key: <key>`); without one the API must listen on
//! loopback ([`check_exposure`]). [`guard`] keeps browser pages out (Host, Origin, JSON bodies),
//! retrieval requests beyond `max_concurrent_requests` get 503 with `Retry-After`, and
//! [`edge`] bounds connections and timeouts. Every failure is a JSON
//! `{success: false, error: {code, message}}` with a 4xx/5xx status — bad JSON, a field out of
//! range, an oversized body, a wrong key, an unknown path — and never a panic.
//!
//! `GET /` is a status page for a person (see [`page`]): what `/stats` says, the last queries, and a
//! search box, from assets built into the binary.
//!
//! The API describes itself at `GET /openapi.json` (OpenAPI 3.1, generated from the handlers
//! below and the wire types, see [`openapi`]) and `GET /docs`; both are open, like `/health`.

pub mod activity;
pub mod client;
pub mod guard;
mod page;
pub mod stats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use protocol::{ContextRequest, ContextResponse, ErrorCode, ErrorResponse, SearchRequest, SearchResponse};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::guard::BrowserGuard;
use self::stats::{
    CacheCleared, CacheStats, EngineHealth, EngineStatus, Health, HealthStatus, IndexStats, ModelStats,
    Performance as PerformanceSummary, RebuildStarted, RequestStats, Stats, SyncSummary,
};
use crate::agent::indexer::Indexer;
use crate::config::Secret;
use crate::error::Error;
use crate::search::Engine;
use crate::search::admission::Lane;
use crate::tunnel::TunnelStatus;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the API protects itself (`[server]` in the config).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Host names the API answers to besides this machine's (`allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Retrieval requests computed at once; more wait up to `queue_wait` for a slot, then get
    /// 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// How long a retrieval request waits for a slot before it is refused: a burst is absorbed,
    /// and a client that retries at once cannot spin the server on refusals.
    pub queue_wait: std::time::Duration,
    /// Connection caps and timeouts.
    pub limits: edge::Limits,
}

impl Default for ApiSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            allowed_hosts: Vec::new(),
            max_concurrent_requests: 2 * cores,
            queue_wait: std::time::Duration::from_millis(250),
            limits: edge::Limits { max_connections: 64, max_body_bytes: MAX_BODY_BYTES, ..edge::Limits::default() },
        }
    }
}

/// Why the API may not serve on an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to serve on {0} without an API key: anyone who can reach it could read your notes; \
     set LOCAL_RAG_API_KEY (or [server] api_key), or listen on 127.0.0.1"
)]
pub struct Exposed(pub SocketAddr);

/// An API beyond loopback must require a key.
pub fn check_exposure(listen: SocketAddr, api_key: Option<&Secret>) -> Result<(), Exposed> {
    if listen.ip().is_loopback() || api_key.is_some() { Ok(()) } else { Err(Exposed(listen)) }
}

/// How many seconds a refused caller is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// Shared state of the HTTP API.
pub struct ApiState {
    engine: Arc<Engine>,
    api_key: Option<Secret>,
    started: Instant,
    metrics: Metrics,
    tunnel: Option<Arc<TunnelStatus>>,
    indexer: Option<Indexer>,
    settings: ApiSettings,
    /// Set by [`serve`] from the address it listens on.
    guard: BrowserGuard,
    /// Retrieval requests in progress.
    busy: Arc<Semaphore>,
    /// The last retrieval requests, for `/stats` and the status page.
    recent: activity::RecentRequests,
    /// Where the last Notion sync is recorded (`/stats`' `notion_sync`).
    data_dir: Option<std::path::PathBuf>,
}

impl ApiState {
    /// State for a server answering from `engine`, requiring `api_key` if given.
    pub fn new(engine: Arc<Engine>, api_key: Option<Secret>) -> Self {
        let settings = ApiSettings::default();
        Self {
            engine,
            api_key,
            started: Instant::now(),
            metrics: Metrics::new(),
            tunnel: None,
            indexer: None,
            guard: BrowserGuard::new(&settings.allowed_hosts, None, None),
            busy: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            settings,
            recent: activity::RecentRequests::default(),
            data_dir: None,
        }
    }

    /// Reports the last Notion sync recorded in `data_dir` in `/stats`.
    pub fn with_data_dir(mut self, data_dir: &std::path::Path) -> Self {
        self.data_dir = Some(data_dir.to_owned());
        self
    }

    /// Protects the API with `settings` instead of the defaults.
    pub fn with_settings(mut self, settings: ApiSettings) -> Self {
        self.busy = Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1)));
        self.guard = BrowserGuard::new(&settings.allowed_hosts, None, None);
        self.settings = settings;
        self
    }

    /// Serves `POST /index/rebuild` by asking `indexer` for a rebuild (503 without one).
    pub fn with_indexer(mut self, indexer: Indexer) -> Self {
        self.indexer = Some(indexer);
        self
    }

    /// Reports the tunnel's state in `/stats` (`tunnel` is `null` without one).
    pub fn with_tunnel(mut self, status: Arc<TunnelStatus>) -> Self {
        self.tunnel = Some(status);
        self
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Refuses a non-loopback address without an API key ([`check_exposure`]).
pub async fn serve(
    listener: TcpListener,
    mut state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    check_exposure(address, state.api_key.as_ref())
        .map_err(|exposed| std::io::Error::new(std::io::ErrorKind::PermissionDenied, exposed))?;
    state.guard = BrowserGuard::new(&state.settings.allowed_hosts, Some(address.ip()), Some(address.port()));
    let limits = state.settings.limits;
    edge::serve(listener, router(Arc::new(state)), limits, shutdown).await
}

/// The routes, for serving or for in-process tests.
pub fn router(state: Arc<ApiState>) -> Router {
    let retrieval = Router::new()
        .route("/search", post(search))
        .route("/context/build", post(build_context))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_concurrency));
    let protected = Router::new()
        .merge(retrieval)
        .route("/stats", get(stats))
        .route("/cache/clear", post(clear_cache))
        .route("/metrics", get(metrics))
        .route("/index/rebuild", post(rebuild_index))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(page::routes())
        .merge(edge::openapi::routes(&openapi()))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_browser_pages))
        .with_state(state)
}

/// The API's OpenAPI document: the handlers' annotations, plus the failures every endpoint
/// can answer with ([`FAILURES`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    edge::openapi::with_error_responses(ApiDoc::openapi(), FAILURES, "ErrorResponse")
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "notion-llm local agent",
        description = "Hybrid (keyword + semantic) search over your notes, on this machine. Every endpoint \
            but /health, /openapi.json and /docs needs the API key when the agent has one \
            (`Authorization: Bearer <key>` or `X-API-Key: <key>`). Every failure is \
            `{success: false, error: {code, message}}`."
    ),
    paths(health, search, build_context, stats, clear_cache, metrics, rebuild_index),
    components(schemas(ErrorResponse)),
    modifiers(&KeySchemes),
    security(("bearer" = []), ("api_key" = []))
)]
struct ApiDoc;

/// The two ways to present the API key.
struct KeySchemes;

impl utoipa::Modify for KeySchemes {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// What any endpoint may answer besides its own replies.
const FAILURES: &[edge::openapi::Failure] = {
    use edge::openapi::{Applies, Failure};
    &[
        Failure {
            status: 400,
            description: "The body is not JSON, or a field is out of range",
            applies: Applies::WithBody,
        },
        Failure { status: 401, description: "A key is required and was missing or wrong", applies: Applies::Secured },
        Failure {
            status: 403,
            description: "A browser page of another site, or a Host that is not this machine",
            applies: Applies::All,
        },
        Failure { status: 413, description: "The body is over 64 KiB", applies: Applies::WithBody },
        Failure { status: 415, description: "A body that is not application/json", applies: Applies::Post },
        Failure { status: 500, description: "Something failed inside the agent", applies: Applies::All },
        Failure {
            status: 503,
            description: "Busy (retry after `Retry-After`), timed out, or no index yet",
            applies: Applies::All,
        },
    ]
};

/// Host, Origin and content-type checks before anything else (see [`guard`]).
async fn refuse_browser_pages(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    match state.guard.check(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let path = request.uri().path().to_owned();
            tracing::warn!(path, %refusal, "refused a request");
            let (status, code) = match refusal {
                guard::Refusal::MediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType),
                guard::Refusal::Host(_) | guard::Refusal::Origin(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            };
            state.metrics.count(&path, status);
            ApiError::new(status, code, refusal.to_string()).into_response()
        }
    }
}

/// At most `max_concurrent_requests` retrieval requests at once. Others wait for a slot for a
/// moment (`queue_wait`), then are told to come back (503 + `Retry-After`) rather than queue
/// behind the CPU, where they would also delay the cloud's requests.
async fn limit_concurrency(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let slot = tokio::time::timeout(state.settings.queue_wait, state.busy.clone().acquire_owned()).await;
    let Ok(Ok(_permit)) = slot else {
        let path = request.uri().path().to_owned();
        state.metrics.count(&path, StatusCode::SERVICE_UNAVAILABLE);
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            format!(
                "{} requests are already being answered; try again in {RETRY_AFTER_SECS} s",
                state.settings.max_concurrent_requests
            ),
        )
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        return response;
    };
    next.run(request).await
}

async fn require_key(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let presented = presented_key(request.headers());
        if !presented.is_some_and(|candidate| key.matches(candidate)) {
            let path = request.uri().path().to_owned();
            // The presented key is never logged.
            tracing::warn!(path, with_key = presented.is_some(), "refused a request without the right API key");
            state.metrics.count(&path, StatusCode::UNAUTHORIZED);
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing or wrong API key; send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(protocol::bearer_token);
    bearer.or_else(|| headers.get("x-api-key").and_then(|value| value.to_str().ok()).map(str::trim))
}

/// Whether the agent is up and has an index.
#[utoipa::path(get, path = "/health", tag = "agent", security(()), responses((status = 200, body = Health)))]
async fn health(State(state): State<Arc<ApiState>>) -> Json<Health> {
    let stats = state.engine.stats();
    let performance = &state.metrics.performance;
    let total = performance.requests.load(Ordering::Relaxed);
    let micros = performance.micros.load(Ordering::Relaxed);
    let lookups = stats.cache_hits + stats.cache_misses;
    let ready = stats.generation > 0;
    Json(Health {
        status: if ready { HealthStatus::Healthy } else { HealthStatus::Degraded },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime: state.started.elapsed().as_secs_f64(),
        rag_engine: EngineHealth {
            status: if ready { EngineStatus::Ready } else { EngineStatus::NoIndex },
            model_loaded: true,
            index_size: stats.chunks as u64,
        },
        performance: PerformanceSummary {
            avg_response_time: if total == 0 { 0.0 } else { micros as f64 / total as f64 / 1e6 },
            total_requests: total,
            cache_hit_rate: if lookups == 0 { 0.0 } else { stats.cache_hits as f64 / lookups as f64 },
        },
    })
}

/// The passages most relevant to a query, one per document, with a context block.
#[utoipa::path(post, path = "/search", tag = "retrieval", request_body = SearchRequest,
    responses((status = 200, description = "Best first; an empty list when nothing matches", body = SearchResponse)))]
async fn search(
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<SearchRequest>,
) -> Result<Response, ApiError> {
    let query = request.query.clone();
    answer(
        &state,
        "/search",
        &query,
        |reply: &SearchResponse| reply.results.len(),
        move |engine| engine.search(&request),
    )
    .await
}

/// Only a context block for a prompt, at most `max_length` characters.
#[utoipa::path(post, path = "/context/build", tag = "retrieval", request_body = ContextRequest,
    responses((status = 200, body = ContextResponse)))]
async fn build_context(
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<ContextRequest>,
) -> Result<Response, ApiError> {
    let query = request.query.clone();
    answer(
        &state,
        "/context/build",
        &query,
        |reply: &ContextResponse| reply.sources.len(),
        move |engine| engine.build_context(&request),
    )
    .await
}

/// Runs a retrieval request off the async workers (it is CPU-bound) and records its metrics.
/// The engine validates the request; its `InvalidRequest` becomes a 400.
async fn answer<T: serde::Serialize + Send + 'static>(
    state: &ApiState,
    endpoint: &str,
    query: &str,
    results: fn(&T) -> usize,
    work: impl FnOnce(&Engine) -> crate::error::Result<T> + Send + 'static,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let engine = state.engine.clone();
    let response = run_blocking(move || engine.admission().run(Lane::Local, || work(&engine))).await;
    let status = status_of(&response);
    state.metrics.finish(endpoint, started, status);
    let found = response.as_ref().map_or(0, results);
    state.recent.record(endpoint, query, found, started.elapsed(), status.as_u16());
    Ok(Json(response?).into_response())
}

fn status_of<T>(result: &Result<T, ApiError>) -> StatusCode {
    result.as_ref().map_or_else(|error| error.status, |_| StatusCode::OK)
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => {
            tracing::error!(%error, "a request handler panicked");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error"))
        }
    }
}

/// The index, model, cache, requests and the tunnel to the cloud.
#[utoipa::path(get, path = "/stats", tag = "agent", responses((status = 200, body = Stats)))]
async fn stats(State(state): State<Arc<ApiState>>) -> Json<Stats> {
    let engine = state.engine.stats();
    let performance = &state.metrics.performance;
    let folders: Vec<String> = state
        .engine
        .snapshot()
        .ok()
        .map(|snapshot| snapshot.manifest.roots.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    Json(Stats {
        success: true,
        index: IndexStats {
            generation: engine.generation,
            documents: engine.documents as u64,
            chunks: engine.chunks as u64,
            indexed_at: engine.indexed_at,
            folders,
            vector_memory_bytes: engine.vector_bytes as u64,
        },
        model: ModelStats {
            id: state.engine.embedder().model_id().to_owned(),
            dimensions: state.engine.embedder().dimensions() as u64,
        },
        cache: CacheStats {
            entries: engine.cache_entries as u64,
            hits: engine.cache_hits,
            misses: engine.cache_misses,
        },
        requests: RequestStats {
            total: performance.requests.load(Ordering::Relaxed),
            errors: performance.errors.load(Ordering::Relaxed),
        },
        uptime: state.started.elapsed().as_secs_f64(),
        tunnel: state.tunnel.as_ref().map(|status| status.snapshot()),
        activity: state.recent.summary(),
        notion_sync: state.data_dir.as_deref().and_then(crate::sources::notion_sync::last_sync).map(|(at, report)| {
            SyncSummary {
                at: u64::try_from(at.timestamp()).unwrap_or(0),
                listed: report.listed as u64,
                added: report.added as u64,
                updated: report.updated as u64,
                removed: report.removed as u64,
                unreadable: report.unreadable as u64,
            }
        }),
    })
}

/// Forgets the cached answers.
#[utoipa::path(post, path = "/cache/clear", tag = "agent", responses((status = 200, body = CacheCleared)))]
async fn clear_cache(State(state): State<Arc<ApiState>>) -> Json<CacheCleared> {
    let cleared = state.engine.clear_cache();
    Json(CacheCleared { success: true, cleared: cleared as u64 })
}

/// Counters and latency histograms for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "agent", responses((status = 200,
    description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let text = state.metrics.encode(&state.engine)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// A JSON body whose rejections are JSON errors in the API's shape (axum's own are plain text).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!("the request body is over the {MAX_BODY_BYTES}-byte limit"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, format!("invalid JSON body: {error}"))
        })
    }
}

/// An error response: status plus the API's error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorResponse,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, body: ErrorResponse::new(code, message) }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let code = error.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(%error, "request failed");
        }
        Self::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Request counters for `/health` and the Prometheus registry for `/metrics`.
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    index_chunks: Gauge,
    index_documents: Gauge,
    index_generation: Gauge,
    cache_hits: Gauge,
    cache_misses: Gauge,
    performance: Performance,
}

#[derive(Default)]
struct Performance {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("local_agent");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let index_chunks = Gauge::default();
        let index_documents = Gauge::default();
        let index_generation = Gauge::default();
        let cache_hits = Gauge::default();
        let cache_misses = Gauge::default();
        registry.register("http_requests", "Requests answered, by endpoint and status", requests.clone());
        registry.register("request_duration_seconds", "Time to answer retrieval requests", latency.clone());
        registry.register("index_chunks", "Chunks in the live index", index_chunks.clone());
        registry.register("index_documents", "Documents in the live index", index_documents.clone());
        registry.register("index_generation", "Live index generation", index_generation.clone());
        registry.register("query_cache_hits", "Answers served from the query cache", cache_hits.clone());
        registry.register("query_cache_misses", "Answers computed", cache_misses.clone());
        Self {
            registry,
            requests,
            latency,
            index_chunks,
            index_documents,
            index_generation,
            cache_hits,
            cache_misses,
            performance: Performance::default(),
        }
    }

    fn count(&self, endpoint: &str, status: StatusCode) {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.to_owned(), status: status.as_u16() }).inc();
    }

    fn finish(&self, endpoint: &str, started: Instant, status: StatusCode) {
        let elapsed = started.elapsed();
        let ok = status.is_success();
        self.latency.get_or_create(&EndpointLabels { endpoint: endpoint.to_owned() }).observe(elapsed.as_secs_f64());
        self.count(endpoint, status);
        self.performance.requests.fetch_add(1, Ordering::Relaxed);
        self.performance.micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if !ok {
            self.performance.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn encode(&self, engine: &Engine) -> Result<String, ApiError> {
        let stats = engine.stats();
        self.index_chunks.set(stats.chunks as i64);
        self.index_documents.set(stats.documents as i64);
        self.index_generation.set(stats.generation as i64);
        self.cache_hits.set(stats.cache_hits as i64);
        self.cache_misses.set(stats.cache_misses as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "cannot encode metrics")
        })?;
        Ok(text)
    }
}

/// Rebuilds the index from its sources in the background.
#[utoipa::path(post, path = "/index/rebuild", tag = "agent", responses(
    (status = 202, body = RebuildStarted),
    (status = 409, description = "A rebuild is already running", body = ErrorResponse)))]
async fn rebuild_index(State(state): State<Arc<ApiState>>) -> Response {
    let Some(indexer) = &state.indexer else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::IndexUnavailable, "rebuilding is not set up")
            .into_response();
    };
    if indexer.request_rebuild() {
        (StatusCode::ACCEPTED, Json(RebuildStarted { success: true, started: true })).into_response()
    } else {
        ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidRequest, "a rebuild is already running").into_response()
    }
}
