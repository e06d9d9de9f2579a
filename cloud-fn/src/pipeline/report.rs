//! What a run reports: the steps of answering a question (named for the crash tests), each
//! page's outcome, the run's totals, and why a whole run failed.

use notion::NotionError;
use serde::Serialize;

use crate::context::ContextMode;
use crate::store::StoreError;

/// Steps of answering one question, named for crash tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The job record was claimed.
    Claimed,
    /// The page shows Processing.
    MarkedProcessing,
    /// The question was read.
    ReadQuestion,
    /// Context was built.
    BuiltContext,
    /// The model answered and the answer's mode and usage were recorded.
    Answered,
    /// The answer is on the page.
    Appended,
    /// The job is recorded as finished.
    Recorded,
    /// The page shows the final status.
    StatusSet,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 8] = [
        Step::Claimed,
        Step::MarkedProcessing,
        Step::ReadQuestion,
        Step::BuiltContext,
        Step::Answered,
        Step::Appended,
        Step::Recorded,
        Step::StatusSet,
    ];
}

/// What happened to one page in a run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Answered.
    Answered {
        /// Which rung of the context ladder the answer's context came from.
        mode: ContextMode,
        /// Seconds this run spent on the page, from its claim to its final status.
        seconds: f64,
    },
    /// Given up; the reason is on the page.
    Failed {
        /// Why.
        reason: String,
        /// Where the last attempt failed, when this run saw it fail.
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
    /// Not this run's to answer (owned by another run, or no longer pending).
    Skipped {
        /// Why.
        reason: String,
    },
    /// This attempt failed; a later run retries.
    WillRetry {
        /// Why.
        error: String,
        /// Where it failed.
        cause: Cause,
    },
}

/// The part of the system an attempt failed in: what metrics and alerts count (an LLM that
/// keeps failing is a different incident from a Notion outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The Notion API.
    Notion,
    /// The job ledger or the context cache.
    Store,
    /// The LLM (every model in `LLM_MODELS`).
    Llm,
    /// The context ladder (no rung could give a context).
    Context,
}

impl Outcome {
    /// Where the page's attempt failed, if it did.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Self::Failed { cause, .. } => *cause,
            Self::WillRetry { cause, .. } => Some(*cause),
            Self::Answered { .. } | Self::Skipped { .. } => None,
        }
    }
}

/// What one `process_once` did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    /// Pending pages found.
    pub found: usize,
    /// Answered with the agent's context.
    pub answered: usize,
    /// Answered without it.
    pub answered_offline: usize,
    /// Marked failed.
    pub failed: usize,
    /// Left to another run or no longer pending.
    pub skipped: usize,
    /// To be retried.
    pub retrying: usize,
    /// Found but left for the next run (over `max_pages_per_run`).
    pub deferred: usize,
    /// Per page: `[page id, outcome]`.
    #[schema(value_type = Vec<Vec<Value>>)]
    pub pages: Vec<(String, Outcome)>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Why a run as a whole failed (single pages fail into their [`Outcome`] instead).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Notion failed before any page could be processed.
    #[error("Notion: {0}")]
    Notion(#[from] NotionError),
    /// The store failed before any page could be processed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A crash injected by a test (the run stops where it is, as a killed process would).
    #[error("crash injected after step {0:?}")]
    Crashed(Step),
}
