//! The self-hosted server (`cloud-fn serve`): a timer that runs `process_once`, and the HTTP
//! endpoints — `GET /health` (open), and behind `CLOUD_API_KEY`: `GET /status`,
//! `GET /rag/status`, `POST /process-once`, `POST /templates/sync-from-notion`,
//! `POST /templates/sync-to-notion`.
//!
//! The same router serves the Lambda function URL later; nothing here knows how it is hosted.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::SearchRequest;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::config::Secret;
use crate::pipeline::{Pipeline, RunReport};
use crate::templates;

/// Shared state of the server.
pub struct ServerState {
    pipeline: Arc<Pipeline>,
    api_key: Option<Secret>,
    templates_database: Option<String>,
    started: Instant,
    /// Held while a run is in progress, so runs never overlap; keeps the last report.
    runs: Mutex<Option<(i64, RunReport)>>,
    last_error: std::sync::Mutex<Option<String>>,
}

impl ServerState {
    /// State around `pipeline`; `api_key` guards every endpoint but `/health`.
    pub fn new(pipeline: Arc<Pipeline>, api_key: Option<Secret>, templates_database: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            pipeline,
            api_key,
            templates_database,
            started: Instant::now(),
            runs: Mutex::new(None),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// Runs `process_once`, after the run in progress if there is one (runs never overlap).
    pub async fn run_now(&self) -> Result<RunReport, String> {
        let last = self.runs.lock().await;
        self.run_locked(last).await
    }

    /// Runs `process_once` unless a run is already in progress (then `None`): the timer's way.
    pub async fn run_if_idle(&self) -> Option<Result<RunReport, String>> {
        let last = self.runs.try_lock().ok()?;
        Some(self.run_locked(last).await)
    }

    async fn run_locked(
        &self,
        mut last: tokio::sync::MutexGuard<'_, Option<(i64, RunReport)>>,
    ) -> Result<RunReport, String> {
        let result = self.pipeline.process_once().await.map_err(|error| error.to_string());
        match &result {
            Ok(report) => *last = Some((SystemClock.now(), report.clone())),
            Err(error) => {
                tracing::error!(%error, "run failed");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
            }
        }
        result
    }
}

/// Serves `app` (usually [`router`], plus the agents' `/agent` route when self-hosted) on
/// `listener`, running `process_once` of `state` every `poll_interval`, until `shutdown`
/// completes (an in-flight run is allowed to finish).
pub async fn serve<L>(
    listener: L,
    app: Router,
    state: Arc<ServerState>,
    poll_interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let timer = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if state.run_if_idle().await.is_none() {
                tracing::debug!("a run is still in progress; skipping this tick");
            }
        }
    });
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    timer.abort();
    result
}

/// The routes.
pub fn router(state: Arc<ServerState>) -> Router {
    let protected = Router::new()
        .route("/status", get(status))
        .route("/rag/status", get(rag_status))
        .route("/process-once", post(process_once))
        .route("/templates/sync-from-notion", post(sync_from_notion))
        .route("/templates/sync-to-notion", post(sync_to_notion))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "success": false, "error": { "code": code, "message": message.into() } }))).into_response()
}

async fn require_key(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if !presented.is_some_and(|candidate| key.matches(candidate.trim())) {
            tracing::warn!(path = request.uri().path(), "refused a request without the right CLOUD_API_KEY");
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send CLOUD_API_KEY as `Authorization: Bearer <key>`",
            );
        }
    }
    next.run(request).await
}

async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs_f64(),
        "store": state.pipeline.store().kind(),
    }))
}

async fn status(State(state): State<Arc<ServerState>>) -> Response {
    let jobs = match state.pipeline.store().job_counts().await {
        Ok(counts) => json!(counts),
        Err(error) => json!({ "error": error.to_string() }),
    };
    let last = state.runs.try_lock().ok().and_then(|last| last.clone());
    let running = state.runs.try_lock().is_err();
    let last_error = state.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(json!({
        "success": true,
        "running": running,
        "last_poll": last.map(|(at, report)| json!({ "at": at, "report": report })),
        "last_error": last_error,
        "jobs": jobs,
        "agent": state.pipeline.context().link().status().await,
        "store": state.pipeline.store().kind(),
        "notion_requests": state.pipeline.notion().requests_sent(),
    }))
    .into_response()
}

async fn rag_status(State(state): State<Arc<ServerState>>) -> Json<Value> {
    let link = state.pipeline.context().link();
    let started = Instant::now();
    let available = link.is_live().await
        && link
            .search(&SearchRequest { max_results: 1, ..SearchRequest::new("ping") }, Duration::from_secs(2))
            .await
            .is_ok();
    Json(json!({
        "rag_available": available,
        "response_time": started.elapsed().as_secs_f64(),
        "agents": link.status().await,
    }))
}

async fn process_once(State(state): State<Arc<ServerState>>) -> Response {
    match state.run_now().await {
        Ok(report) => Json(json!({ "success": true, "report": report })).into_response(),
        Err(message) => error(StatusCode::BAD_GATEWAY, "run_failed", message),
    }
}

async fn sync_from_notion(State(state): State<Arc<ServerState>>) -> Response {
    sync(&state, true).await
}

async fn sync_to_notion(State(state): State<Arc<ServerState>>) -> Response {
    sync(&state, false).await
}

async fn sync(state: &ServerState, from_notion: bool) -> Response {
    let Some(database) = &state.templates_database else {
        return error(StatusCode::BAD_REQUEST, "not_configured", "NOTION_TEMPLATES_DATABASE_ID is not set");
    };
    let notion = state.pipeline.notion();
    let result = async {
        let source = notion.data_source_id(database).await?;
        let store = state.pipeline.store().as_ref();
        if from_notion {
            templates::sync_from_notion(notion, &source, store).await
        } else {
            templates::sync_to_notion(notion, &source, store).await
        }
    }
    .await;
    match result {
        Ok(count) => Json(json!({ "success": true, "templates": count })).into_response(),
        Err(sync_error) => error(StatusCode::BAD_GATEWAY, "sync_failed", sync_error.to_string()),
    }
}
