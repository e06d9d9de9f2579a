//! The JSON replies of the HTTP front, one type each, so that the handlers write them and the
//! OpenAPI document (`GET /openapi.json`) describes them from the same definitions.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::agent::LinkStatus;
use crate::pipeline::RunReport;
use crate::pipeline::comments::CommentOutcome;
use crate::store::{DayFigures, Feedback, JobSummary, UsageTotals};
use crate::telemetry::recent_runs::RunSummary;

/// Every failure: `{success: false, error: {code, message}}` with a 4xx/5xx status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// The failure.
    pub error: ErrorDetail,
}

/// `{code, message}` of a failure.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What kind of failure: `unauthorized`, `unavailable`, `not_found`, `timeout`,
    /// `run_failed`, `sync_failed`, `not_configured`, `store_unavailable`, `pinned`,
    /// `malformed`, `not_verified`, `bad_signature`, `already_verified`, `processing_failed`.
    #[schema(example = "unauthorized")]
    pub code: String,
    /// What went wrong and, where possible, what to do. Unauthenticated callers get no
    /// internal detail (the log has it).
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `healthy`: the process answers.
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// cloud-fn's version.
    pub version: &'static str,
    /// Seconds since the process started.
    pub uptime: f64,
    /// The store in use: `embedded` or `dynamodb`.
    #[schema(example = "embedded")]
    pub store: &'static str,
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    /// Always `true`.
    pub success: bool,
    /// Whether a run is in progress.
    pub running: bool,
    /// The last finished run; `null` before the first.
    pub last_poll: Option<LastPoll>,
    /// Why the last failed run failed; `null` if none has failed.
    pub last_error: Option<String>,
    /// The last runs this process saw that found questions (or failed), newest first. On AWS,
    /// what one warm container saw.
    pub runs: Vec<RunSummary>,
    /// Jobs by status (`working`, `answered`, `answered_offline`, `failed`), or `{error}` when
    /// the store cannot be read.
    #[schema(value_type = Object)]
    pub jobs: Value,
    /// LLM usage of the answers finished today and this month (UTC); `null` when the store
    /// cannot be read.
    pub usage: Option<UsagePeriods>,
    /// Questions finished in the last 24 hours by status and context mode, and the share
    /// answered without the agent; `null` when the store cannot be read.
    pub last_day: Option<DayFigures>,
    /// The newest questions of the job ledger (working ones first), with their outcomes.
    pub recent_questions: Vec<JobSummary>,
    /// What people marked in the questions' `Helpful` property: the helpful ratio by context
    /// mode and model, and the answers marked unhelpful with their sources; `null` when the
    /// store cannot be read.
    pub feedback: Option<Feedback>,
    /// The agents behind the link.
    pub agent: LinkStatus,
    /// The store in use: `embedded` or `dynamodb`.
    pub store: &'static str,
    /// Notion API requests sent since the process started.
    pub notion_requests: u64,
}

/// When the last run finished and what it did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastPoll {
    /// Seconds since the epoch.
    pub at: i64,
    /// The same instant in RFC 3339, UTC.
    pub at_utc: Option<String>,
    /// What the run did.
    pub report: RunReport,
}

/// LLM usage over two periods.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsagePeriods {
    /// Since midnight UTC.
    pub today: UsageTotals,
    /// Since the first of the month, UTC.
    pub this_month: UsageTotals,
}

/// `GET /rag/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RagStatus {
    /// Whether an agent answered a one-result search within 2 s.
    pub rag_available: bool,
    /// Seconds that check took.
    pub response_time: f64,
    /// The agents behind the link.
    pub agents: LinkStatus,
}

/// `POST /process-once`, and a webhook event that asked for a question.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDone {
    /// Always `true`.
    pub success: bool,
    /// What the run did.
    pub report: RunReport,
}

/// `POST /templates/sync-from-notion` and `…/sync-to-notion`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplatesSynced {
    /// Always `true`.
    pub success: bool,
    /// Templates copied.
    pub templates: usize,
}

/// `GET /webhooks/notion/verification`: the token to paste into Notion's webhook settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookVerification {
    /// The token; `null` until Notion's handshake arrived.
    pub verification_token: Option<String>,
    /// Whether `NOTION_WEBHOOK_TOKEN` pins it.
    pub pinned: bool,
}

/// `DELETE /webhooks/notion/verification`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerificationForgotten {
    /// Always `true`.
    pub success: bool,
    /// Always `true`: the next handshake stores its token.
    pub forgotten: bool,
}

/// `POST /webhooks/notion` when it accepted a delivery: the handshake was received, the event
/// was not about a question (`ignored`: its type), was seen before (`duplicate`: its id), was
/// answered (`report`), or announced a comment (`comment`: what became of it).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// Always `true`.
    pub success: bool,
    /// `received`, for Notion's handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<&'static str>,
    /// The event's type, when it does not concern a question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The event's id, when it was delivered before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<String>,
    /// The run that answered the event's question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<RunReport>,
    /// What became of the comment a `comment.created` event announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<CommentOutcome>,
}

/// What Notion POSTs to `/webhooks/notion` (schema only; the handler reads the raw body, whose
/// bytes the signature covers): the handshake, or an event.
pub struct NotionDelivery;

impl utoipa::PartialSchema for NotionDelivery {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, SchemaType, Type};
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let handshake = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("The subscription handshake, unsigned: its token signs every later event."))
            .property(
                "verification_token",
                string().min_length(Some(1)).max_length(Some(crate::webhook::MAX_TOKEN_CHARS)),
            )
            .required("verification_token");
        let entity = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .property("id", string())
            .property("type", string().description(Some("`page`, `database`, `comment`…")))
            .required("id")
            .required("type");
        let event = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An event, signed in X-Notion-Signature."))
            .property("id", string().description(Some("The event's id (deliveries of one event share it).")))
            .property("type", string().description(Some("`page.created`, `page.properties_updated`…")))
            .property("entity", entity)
            .required("id")
            .required("type");
        AnyOfBuilder::new().item(handshake).item(event).into()
    }
}

impl ToSchema for NotionDelivery {}
