//! The HTTP front: `GET /health` (open), `POST /webhooks/notion` (authenticated by Notion's
//! signature), and behind `CLOUD_API_KEY`: `GET /status`, `GET /rag/status`,
//! `POST /process-once`, `POST /templates/sync-from-notion`, `POST /templates/sync-to-notion`,
//! `GET`/`DELETE /webhooks/notion/verification`. [`serve`] adds the self-hosted timer that runs
//! `process_once` and sweeps expired store items, and serves with [`edge`]'s limits.
//!
//! It fails closed: without a configured key the protected routes answer 503 (the log names the
//! missing setting), never open. Callers that have not authenticated never see internal error
//! text (store errors, SSM parameter names, ARNs): they get a generic message, the log the rest.
//!
//! The same router serves the Lambda function URL ([`crate::lambda`]); nothing here knows how it
//! is hosted.
//!
//! It describes itself at `GET /openapi.json` (OpenAPI 3.1, generated from the handlers below
//! and [`bodies`], see [`openapi`]) and `GET /docs`, both open like `/health`. `GET /` is the
//! status page for a person (see `page`): open too, since it holds nothing; its script asks for
//! the key and reads `/status`.

pub mod bodies;
mod page;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::SearchRequest;
use tokio::sync::Mutex;

use self::bodies::{
    ErrorBody, ErrorDetail, Health, LastPoll, RagStatus, RunDone, Status, TemplatesSynced, UsagePeriods,
    VerificationForgotten, WebhookAccepted, WebhookVerification,
};

use crate::clock::Clock;
use crate::config::{CloudConfig, Secret};
use crate::pipeline::comments::CommentOutcome;
use crate::pipeline::{Pipeline, PipelineError, RunReport};
use crate::store::Store;
use crate::telemetry::recent_runs::RecentRuns;
use crate::templates;
use crate::webhook::{self, Delivery, WebhookError};

/// Who may call the routes behind the API key.
#[derive(Debug, Clone)]
pub enum ApiAccess {
    /// Callers present this key as `Authorization: Bearer <key>`.
    Key(Secret),
    /// No key is configured, so those routes answer 503 (fail closed). `reason` names the
    /// missing setting for the log; it is never sent to a caller.
    Unconfigured {
        /// What is missing, e.g. `CLOUD_API_KEY is not set`.
        reason: String,
    },
    /// Open to anyone who can reach the server (`cloud-fn serve --insecure-no-auth`).
    Open,
}

impl ApiAccess {
    /// Key access if `key` is set, else refused with `reason`.
    pub fn from_key(key: Option<Secret>, reason: impl Into<String>) -> Self {
        match key {
            Some(key) => Self::Key(key),
            None => Self::Unconfigured { reason: reason.into() },
        }
    }
}

/// What the HTTP front is told besides the pipeline.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Guards every endpoint but `/health` and the webhook (`CLOUD_API_KEY`).
    pub access: ApiAccess,
    /// The templates database, for the sync endpoints.
    pub templates_database: Option<String>,
    /// A pinned Notion webhook verification token (`NOTION_WEBHOOK_TOKEN`): then handshakes
    /// are acknowledged but never replace it.
    pub webhook_token: Option<Secret>,
    /// Timeouts and caps of the self-hosted server.
    pub limits: edge::Limits,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            access: ApiAccess::Unconfigured { reason: "CLOUD_API_KEY is not set".into() },
            templates_database: None,
            webhook_token: None,
            limits: edge::Limits::default(),
        }
    }
}

impl ServerSettings {
    /// The settings of `config`.
    pub fn from_config(config: &CloudConfig) -> Self {
        Self {
            access: ApiAccess::from_key(config.cloud_api_key.clone(), "CLOUD_API_KEY is not set"),
            templates_database: config.notion_templates_database_id.clone(),
            webhook_token: config.notion_webhook_token.clone(),
            limits: config.http_limits,
        }
    }
}

/// How often the self-hosted server deletes expired items from its store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Why an asked-for run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline failed before it could process a page.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The run's task panicked or was cancelled.
    #[error("the run stopped unexpectedly: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Shared state of the server.
pub struct ServerState {
    pipeline: Arc<Pipeline>,
    /// The pipeline's store and clock, held directly: handlers read the store and the time
    /// through the same injected handles the pipeline uses (tests move the clock).
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ServerSettings,
    started: Instant,
    /// Held while a run is in progress, so runs never overlap; keeps the last report.
    runs: Mutex<Option<(i64, RunReport)>>,
    last_error: std::sync::Mutex<Option<String>>,
    /// Every run of the pipeline this process saw (the timer's, the webhook's, asked-for ones).
    recent_runs: Arc<RecentRuns>,
}

impl ServerState {
    /// State around `pipeline`.
    pub fn new(pipeline: Arc<Pipeline>, settings: ServerSettings) -> Arc<Self> {
        let recent_runs = Arc::new(RecentRuns::new(pipeline.clock().clone()));
        pipeline.observe_runs(recent_runs.clone());
        Arc::new(Self {
            store: pipeline.store().clone(),
            clock: pipeline.clock().clone(),
            pipeline,
            settings,
            started: Instant::now(),
            runs: Mutex::new(None),
            last_error: std::sync::Mutex::new(None),
            recent_runs,
        })
    }

    /// Runs `process_once`, after the run in progress if there is one (runs never overlap).
    /// The run is its own task: a caller that gives up (a request timeout) does not cut it
    /// short halfway through a page.
    pub async fn run_now(self: &Arc<Self>) -> Result<RunReport, RunError> {
        let state = self.clone();
        let run = tokio::spawn(async move {
            let last = state.runs.lock().await;
            state.run_locked(last).await
        });
        Ok(run.await??)
    }

    /// Runs `process_once` unless a run is already in progress (then `None`): the timer's way.
    pub async fn run_if_idle(&self) -> Option<Result<RunReport, PipelineError>> {
        let last = self.runs.try_lock().ok()?;
        Some(self.run_locked(last).await)
    }

    async fn run_locked(
        &self,
        mut last: tokio::sync::MutexGuard<'_, Option<(i64, RunReport)>>,
    ) -> Result<RunReport, PipelineError> {
        let result = self.pipeline.process_once().await;
        match &result {
            Ok(report) => *last = Some((self.clock.now(), report.clone())),
            Err(error) => {
                tracing::error!(%error, "run failed");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
            }
        }
        result
    }

    /// Deletes expired store items (replies, webhook event records, cached context); DynamoDB
    /// does this by itself with its TTL.
    async fn sweep(&self) {
        match self.store.sweep_expired(self.clock.now()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "deleted expired items from the store"),
            Err(error) => tracing::warn!(%error, "could not sweep expired items from the store"),
        }
    }
}

/// Serves `app` (usually [`router`], plus the agents' `/agent` route when self-hosted) on
/// `listener` with the settings' limits, running `process_once` of `state` every
/// `poll_interval` (which must be above zero) and sweeping the store hourly, until `shutdown`
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
{
    if poll_interval.is_zero() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the poll interval must be above zero"));
    }
    let limits = state.settings.limits;
    let timer_state = state.clone();
    let timer = tokio::spawn(async move {
        let state = timer_state;
        let mut ticks = tokio::time::interval(poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept: Option<Instant> = None;
        loop {
            ticks.tick().await;
            if state.run_if_idle().await.is_none() {
                tracing::debug!("a run is still in progress; skipping this tick");
            }
            if swept.is_none_or(|at| at.elapsed() >= SWEEP_INTERVAL) {
                state.sweep().await;
                swept = Some(Instant::now());
            }
        }
    });
    let result = edge::serve(listener, app, limits, shutdown).await;
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
        .route("/webhooks/notion/verification", get(webhook_verification).delete(forget_webhook_verification))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .route("/webhooks/notion", post(notion_webhook).layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)))
        .merge(page::routes())
        .merge(edge::openapi::routes(&openapi()))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

/// The front's OpenAPI document: the handlers' annotations, plus the failures every endpoint
/// can answer with ([`FAILURES`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    edge::openapi::with_error_responses(ApiDoc::openapi(), FAILURES, "ErrorBody")
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "notion-llm cloud-fn",
        description = "Answers questions of a Notion database with the user's agent's notes. Every endpoint \
            but /health, /openapi.json, /docs and the Notion webhook (signed by Notion) needs \
            CLOUD_API_KEY as `Authorization: Bearer <key>`; without a configured key they answer 503. \
            Every failure is `{success: false, error: {code, message}}`."
    ),
    paths(
        health,
        status,
        rag_status,
        process_once,
        sync_from_notion,
        sync_to_notion,
        webhook_verification,
        forget_webhook_verification,
        notion_webhook
    ),
    components(schemas(ErrorBody)),
    modifiers(&KeyScheme),
    security(("bearer" = []))
)]
struct ApiDoc;

/// `Authorization: Bearer <CLOUD_API_KEY>`.
struct KeyScheme;

impl utoipa::Modify for KeyScheme {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        document.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What any endpoint may answer besides its own replies.
const FAILURES: &[edge::openapi::Failure] = {
    use edge::openapi::{Applies, Failure};
    &[
        Failure { status: 401, description: "CLOUD_API_KEY was missing or wrong", applies: Applies::Secured },
        Failure { status: 500, description: "Something failed inside cloud-fn", applies: Applies::All },
        Failure {
            status: 503,
            description: "No API key is configured (fail closed), the store is unavailable, or the request timed out",
            applies: Applies::All,
        },
    ]
};

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { success: false, error: ErrorDetail { code: code.to_owned(), message: message.into() } };
    (status, Json(body)).into_response()
}

/// What an unauthenticated caller is told when the store fails; the details go to the log.
fn unavailable(what: &str, detail: &dyn std::fmt::Display) -> Response {
    tracing::error!(%detail, "{what}");
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "temporarily unavailable; try again later")
}

async fn require_key(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match &state.settings.access {
        ApiAccess::Open => {}
        ApiAccess::Unconfigured { reason } => {
            tracing::error!(path, "refused: {reason}; every endpoint but /health and the webhook needs it");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this endpoint is disabled until an API key is configured",
            );
        }
        ApiAccess::Key(key) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(protocol::bearer_token);
            if !presented.is_some_and(|candidate| key.matches(candidate)) {
                tracing::warn!(path, "refused a request without the right CLOUD_API_KEY");
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send CLOUD_API_KEY as `Authorization: Bearer <key>`",
                );
            }
        }
    }
    next.run(request).await
}

/// Whether the process answers, and its store.
#[utoipa::path(get, path = "/health", tag = "cloud", security(()), responses((status = 200, body = Health)))]
async fn health(State(state): State<Arc<ServerState>>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs_f64(),
        store: state.store.kind(),
    })
}

/// The last run, jobs by status, LLM usage, the agents and the store.
#[utoipa::path(get, path = "/status", tag = "cloud", responses((status = 200, body = Status)))]
async fn status(State(state): State<Arc<ServerState>>) -> Response {
    let (jobs, usage, last_day, recent_questions, feedback) = match state.store.job_stats(state.clock.now()).await {
        Ok(stats) => (
            serde_json::json!(stats.by_status),
            Some(UsagePeriods { today: stats.today, this_month: stats.this_month }),
            Some(stats.last_day),
            stats.recent,
            Some(stats.feedback),
        ),
        Err(error) => (serde_json::json!({ "error": error.to_string() }), None, None, Vec::new(), None),
    };
    let last = state.runs.try_lock().ok().and_then(|last| last.clone());
    let running = state.runs.try_lock().is_err();
    let last_error = state.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Json(Status {
        success: true,
        running,
        // Seconds since the epoch for programs, and the same instant as a person reads it.
        last_poll: last.map(|(at, report)| LastPoll {
            at,
            at_utc: chrono::DateTime::from_timestamp(at, 0)
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            report,
        }),
        last_error,
        runs: state.recent_runs.list(),
        jobs,
        usage,
        last_day,
        recent_questions,
        feedback,
        agent: state.pipeline.context().link().status().await,
        store: state.store.kind(),
        notion_requests: state.pipeline.notion().requests_sent(),
    })
    .into_response()
}

/// Whether an agent answers a search now (within 2 s).
#[utoipa::path(get, path = "/rag/status", tag = "cloud", responses((status = 200, body = RagStatus)))]
async fn rag_status(State(state): State<Arc<ServerState>>) -> Json<RagStatus> {
    let link = state.pipeline.context().link();
    let started = Instant::now();
    let available = link.is_live().await
        && link
            .search(&SearchRequest { max_results: 1, ..SearchRequest::new("ping") }, Duration::from_secs(2))
            .await
            .is_ok();
    Json(RagStatus {
        rag_available: available,
        response_time: started.elapsed().as_secs_f64(),
        agents: link.status().await,
    })
}

/// Answers the pending questions now (after the run in progress, if any).
#[utoipa::path(post, path = "/process-once", tag = "cloud", responses(
    (status = 200, body = RunDone),
    (status = 502, description = "Notion or the store failed before any question could be processed", body = ErrorBody)))]
async fn process_once(State(state): State<Arc<ServerState>>) -> Response {
    match state.run_now().await {
        Ok(report) => Json(RunDone { success: true, report }).into_response(),
        Err(run_error) => error(StatusCode::BAD_GATEWAY, "run_failed", run_error.to_string()),
    }
}

/// Copies the templates database into the store.
#[utoipa::path(post, path = "/templates/sync-from-notion", tag = "templates", responses(
    (status = 200, body = TemplatesSynced),
    (status = 409, description = "NOTION_TEMPLATES_DATABASE_ID is not set", body = ErrorBody),
    (status = 502, description = "Notion failed", body = ErrorBody)))]
async fn sync_from_notion(State(state): State<Arc<ServerState>>) -> Response {
    sync(&state, true).await
}

/// Writes the active templates to the templates database.
#[utoipa::path(post, path = "/templates/sync-to-notion", tag = "templates", responses(
    (status = 200, body = TemplatesSynced),
    (status = 409, description = "NOTION_TEMPLATES_DATABASE_ID is not set", body = ErrorBody),
    (status = 502, description = "Notion failed", body = ErrorBody)))]
async fn sync_to_notion(State(state): State<Arc<ServerState>>) -> Response {
    sync(&state, false).await
}

async fn sync(state: &ServerState, from_notion: bool) -> Response {
    let Some(database) = &state.settings.templates_database else {
        return error(StatusCode::CONFLICT, "not_configured", "NOTION_TEMPLATES_DATABASE_ID is not set");
    };
    let notion = state.pipeline.notion();
    let result = async {
        let source = notion.data_source_id(database).await?;
        let store = state.store.as_ref();
        if from_notion {
            templates::sync_from_notion(notion, &source, store).await
        } else {
            templates::sync_to_notion(notion, &source, store).await
        }
    }
    .await;
    match result {
        Ok(count) => Json(TemplatesSynced { success: true, templates: count }).into_response(),
        Err(sync_error) => error(StatusCode::BAD_GATEWAY, "sync_failed", sync_error.to_string()),
    }
}

/// The token Notion's webhook handshake sent, to paste into Notion's webhook settings.
#[utoipa::path(get, path = "/webhooks/notion/verification", tag = "webhook", responses(
    (status = 200, body = WebhookVerification)))]
async fn webhook_verification(State(state): State<Arc<ServerState>>) -> Response {
    if let Some(pinned) = &state.settings.webhook_token {
        let body = WebhookVerification { verification_token: Some(pinned.expose().to_owned()), pinned: true };
        return Json(body).into_response();
    }
    match state.store.webhook_token().await {
        Ok(token) => Json(WebhookVerification { verification_token: token, pinned: false }).into_response(),
        Err(store_error) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", store_error.to_string()),
    }
}

/// `DELETE /webhooks/notion/verification`: forgets the stored token, so the next handshake
/// (a new subscription) stores its own. The only way to replace a stored token.
#[utoipa::path(delete, path = "/webhooks/notion/verification", tag = "webhook", responses(
    (status = 200, body = VerificationForgotten),
    (status = 409, description = "NOTION_WEBHOOK_TOKEN pins the token", body = ErrorBody)))]
async fn forget_webhook_verification(State(state): State<Arc<ServerState>>) -> Response {
    if state.settings.webhook_token.is_some() {
        return error(
            StatusCode::CONFLICT,
            "pinned",
            "NOTION_WEBHOOK_TOKEN pins the token; change that setting to replace it",
        );
    }
    match state.store.delete_webhook_token().await {
        Ok(()) => {
            tracing::info!("forgot the stored Notion verification token; the next handshake stores a new one");
            Json(VerificationForgotten { success: true, forgotten: true }).into_response()
        }
        Err(store_error) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", store_error.to_string()),
    }
}

/// `POST /webhooks/notion`: the handshake, then signed events (see [`webhook`]).
#[utoipa::path(post, path = "/webhooks/notion", tag = "webhook", security(()),
    request_body(content = bodies::NotionDelivery, description = "Notion's delivery: the handshake \
        `{verification_token}`, or an event signed in `X-Notion-Signature`"),
    params(("X-Notion-Signature" = Option<String>, Header, description = "`sha256=<hex HMAC of the body>`; every event has one")),
    responses(
        (status = 200, body = WebhookAccepted),
        (status = 400, description = "Not a delivery Notion sends", body = ErrorBody),
        (status = 401, description = "No verification token yet, or a wrong signature", body = ErrorBody),
        (status = 409, description = "A handshake when a token is already stored", body = ErrorBody),
        (status = 413, description = "Over the webhook's body limit", body = ErrorBody)))]
async fn notion_webhook(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let store = &state.store;
    let event = match Delivery::parse(&body) {
        Ok(Delivery::Verification { token }) => return handshake(&state, &token).await,
        Ok(Delivery::Event(event)) => event,
        Err(refused) => return error(StatusCode::BAD_REQUEST, "malformed", refused.to_string()),
    };
    // The key of every signature: the pinned token, else the one the first handshake stored.
    // Nothing else is read from the store before the signature holds.
    let key = match &state.settings.webhook_token {
        Some(pinned) => pinned.expose().to_owned(),
        None => match store.webhook_token().await {
            Ok(Some(stored)) => stored,
            Ok(None) => return error(StatusCode::UNAUTHORIZED, "not_verified", WebhookError::NotVerified.to_string()),
            Err(store_error) => return unavailable("could not read the webhook's verification token", &store_error),
        },
    };
    let signature = headers.get(webhook::SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    if let Err(refused) = webhook::verify_signature(&key, &body, signature) {
        tracing::warn!(event = %event.id, "refused a Notion webhook delivery: {refused}");
        return error(StatusCode::UNAUTHORIZED, "bad_signature", refused.to_string());
    }
    let comment = event.comment_created();
    let page = event.question_page();
    if page.is_none() && comment.is_none() {
        return Json(WebhookAccepted { success: true, ignored: Some(event.kind), ..Default::default() })
            .into_response();
    }
    let now = state.clock.now();
    match store.remember_event(&event.id, now + webhook::DEDUPE_SECS, now).await {
        Ok(true) => {}
        Ok(false) => {
            return Json(WebhookAccepted { success: true, duplicate: Some(event.id), ..Default::default() })
                .into_response();
        }
        Err(store_error) => return unavailable("could not record a webhook event", &store_error),
    }
    let answered = match (page, comment) {
        (Some(page), _) => state
            .pipeline
            .process_pages(&[page.to_owned()])
            .await
            .map(|report| WebhookAccepted { success: true, report: Some(report), ..Default::default() })
            .map_err(|failure| failure.to_string()),
        (None, Some(comment)) => match state.pipeline.answer_comment(&comment).await {
            // Another run is answering it: Notion's redelivery comes back once it is done.
            Ok(CommentOutcome::Busy) => Err("another run is answering this comment".to_owned()),
            Ok(outcome) => Ok(WebhookAccepted { success: true, comment: Some(outcome), ..Default::default() }),
            Err(failure) => Err(failure.to_string()),
        },
        (None, None) => unreachable!("events with neither are answered above"),
    };
    match answered {
        Ok(accepted) => Json(accepted).into_response(),
        Err(failure) => {
            // Let Notion's redelivery try again; the schedule is the safety net if it does not.
            if let Err(store_error) = store.forget_event(&event.id).await {
                tracing::warn!(%store_error, "could not forget a failed webhook event");
            }
            tracing::warn!(event = %event.id, %failure, "processing a webhook event failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "processing_failed", "processing failed; deliver the event again")
        }
    }
}

/// Notion's unsigned handshake. Its token becomes the signing key only if none is pinned or
/// stored yet: anyone can send a handshake, and replacing the key would let them sign events
/// (and make Notion's real deliveries fail). Replacing it takes the API key
/// (`DELETE /webhooks/notion/verification`).
async fn handshake(state: &ServerState, token: &str) -> Response {
    if state.settings.webhook_token.is_some() {
        tracing::info!("Notion sent a verification token; NOTION_WEBHOOK_TOKEN is pinned, so it was not stored");
        return Json(WebhookAccepted { success: true, verification: Some("received"), ..Default::default() })
            .into_response();
    }
    match state.store.put_webhook_token(token).await {
        Ok(true) => {
            tracing::info!("stored Notion's verification token; read it from GET /webhooks/notion/verification");
            Json(WebhookAccepted { success: true, verification: Some("received"), ..Default::default() })
                .into_response()
        }
        Ok(false) => {
            tracing::warn!(
                "ignored a webhook handshake: a verification token is already stored; to accept a new one, \
                 DELETE /webhooks/notion/verification with the API key first"
            );
            error(StatusCode::CONFLICT, "already_verified", "a verification token is already stored")
        }
        Err(store_error) => unavailable("could not store the webhook's verification token", &store_error),
    }
}
