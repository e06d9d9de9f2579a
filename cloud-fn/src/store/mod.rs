//! Durable state of the cloud side, behind the [`Store`] trait: the job ledger (one record per
//! question page, written with optimistic concurrency so two runs can never both own a job), the
//! per-tag context cache for the offline fallback, and prompt templates.
//!
//! Two adapters: [`dynamo::DynamoStore`] (one DynamoDB table, for AWS) and
//! [`embedded::EmbeddedStore`] (a redb file, for self-hosting). Keys follow the design's table
//! layout — `job#<page_id>`, `ctx#<tag>`, `tpl#<name>` — in both.

pub mod dynamo;
pub mod embedded;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// A run holds the lease and is working on it (or died doing so: see `lease_until`).
    Working,
    /// Answered with the agent's context.
    Answered,
    /// Answered from cached or template context.
    AnsweredOffline,
    /// Given up after the last attempt; the reason is on the page.
    Failed,
}

impl JobStatus {
    /// Whether the job is finished (a new generation may start when the page is reopened).
    pub fn is_terminal(self) -> bool {
        self != Self::Working
    }

    /// Name used in counters and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::Answered => "answered",
            Self::AnsweredOffline => "answered_offline",
            Self::Failed => "failed",
        }
    }
}

/// LLM usage summed over answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    /// Answers that called the LLM.
    pub answers: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in credits (USD on OpenRouter), of the answers whose cost was reported.
    pub cost: f64,
}

impl UsageTotals {
    fn add(&mut self, usage: &Usage) {
        self.answers += 1;
        self.prompt_tokens += usage.prompt_tokens;
        self.completion_tokens += usage.completion_tokens;
        self.cost += usage.cost.filter(|cost| cost.is_finite()).unwrap_or(0.0);
    }
}

/// The job ledger summed up (`/status` and the status page): jobs by status, the LLM usage of
/// the answers finished today and this month (UTC), the last day's questions by outcome, and
/// the newest jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobStats {
    /// Number of jobs by status name.
    pub by_status: BTreeMap<String, u64>,
    /// Usage of answers finished since midnight UTC.
    pub today: UsageTotals,
    /// Usage of answers finished since the first of the month, UTC.
    pub this_month: UsageTotals,
    /// Questions finished in the last 24 hours.
    pub last_day: DayFigures,
    /// The newest jobs (by when they finished; unfinished ones first), at most [`RECENT_JOBS`].
    pub recent: Vec<JobSummary>,
    /// What people said of the answers (`Helpful`).
    pub feedback: Feedback,
}

/// Answers people marked helpful or not, and the unhelpful ones with what they were built from,
/// so a person can see what the notes lack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Feedback {
    /// By context mode (`full`, `cached`…).
    pub by_mode: BTreeMap<String, Votes>,
    /// By the model that answered.
    pub by_model: BTreeMap<String, Votes>,
    /// The newest answers marked unhelpful, at most [`RECENT_JOBS`].
    pub unhelpful: Vec<JobSummary>,
}

/// Helpful and unhelpful marks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Votes {
    /// Marked helpful.
    pub helpful: u64,
    /// Marked not helpful.
    pub unhelpful: u64,
    /// `helpful / (helpful + unhelpful)`.
    pub ratio: f64,
}

impl Votes {
    fn add(&mut self, helpful: bool) {
        if helpful {
            self.helpful += 1
        } else {
            self.unhelpful += 1
        }
        self.ratio = self.helpful as f64 / (self.helpful + self.unhelpful) as f64;
    }
}

/// Jobs shown in [`JobStats::recent`].
pub const RECENT_JOBS: usize = 20;

/// Questions finished in the last 24 hours, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayFigures {
    /// Count by status name, then by context mode (`full`, `unmatched`, `cached`, `template`,
    /// or `none` when the job failed before a context was built).
    pub by_status_and_mode: BTreeMap<String, BTreeMap<String, u64>>,
    /// Answers written.
    pub answers: u64,
    /// Of those, answered without the agent (cached or template context).
    pub fallback: u64,
    /// `fallback / answers`; `null` without answers.
    pub fallback_ratio: Option<f64>,
}

/// One job as the status page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    /// The question page.
    pub page_id: String,
    /// The question's title, shortened (`null` for jobs recorded before titles were kept).
    pub question: Option<String>,
    /// Times the question was reopened, plus one.
    pub generation: u32,
    /// Where the job stands.
    pub status: String,
    /// The context mode of its answer.
    pub mode: Option<crate::context::ContextMode>,
    /// Attempts at this generation.
    pub attempts: u32,
    /// When it finished (seconds since the epoch); `null` while working.
    pub finished_at: Option<i64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// Prompt plus completion tokens.
    pub tokens: Option<u64>,
    /// Cost in credits, if reported.
    pub cost: Option<f64>,
    /// The sources its answer cited.
    pub sources: Vec<String>,
    /// What the person said of it (`Helpful`), if anything.
    pub helpful: Option<bool>,
}

impl JobSummary {
    fn of(job: &JobRecord) -> Self {
        Self {
            page_id: job.page_id.clone(),
            question: job.question.clone(),
            generation: job.generation,
            status: job.status.as_str().to_owned(),
            mode: job.mode,
            attempts: job.attempts,
            finished_at: job.finished_at,
            error: job.error.clone(),
            model: job.usage.as_ref().map(|usage| usage.model.clone()),
            tokens: job.usage.as_ref().map(|usage| usage.prompt_tokens + usage.completion_tokens),
            cost: job.usage.as_ref().and_then(|usage| usage.cost).filter(|cost| cost.is_finite()),
            sources: job.sources.clone(),
            helpful: job.helpful,
        }
    }
}

impl JobStats {
    /// Sums `jobs` as of `now` (seconds since the epoch).
    pub fn of<'a>(jobs: impl IntoIterator<Item = &'a JobRecord>, now: i64) -> Self {
        use chrono::Datelike;
        let day_start = now - now.rem_euclid(86_400);
        let month_start = chrono::DateTime::from_timestamp(day_start, 0)
            .map_or(day_start, |day| day_start - i64::from(day.day0()) * 86_400);
        let mut stats = Self::default();
        let mut newest: Vec<&JobRecord> = Vec::new();
        for job in jobs {
            *stats.by_status.entry(job.status.as_str().to_owned()).or_default() += 1;
            if let (Some(usage), Some(finished)) = (&job.usage, job.finished_at) {
                if finished >= month_start && finished <= now {
                    stats.this_month.add(usage);
                }
                if finished >= day_start && finished <= now {
                    stats.today.add(usage);
                }
            }
            if job.finished_at.is_some_and(|finished| (now - 86_400..=now).contains(&finished)) {
                let mode = job.mode.map_or("none", |mode| mode.as_str());
                let by_mode = stats.last_day.by_status_and_mode.entry(job.status.as_str().to_owned()).or_default();
                *by_mode.entry(mode.to_owned()).or_default() += 1;
                if job.status != JobStatus::Failed {
                    stats.last_day.answers += 1;
                    stats.last_day.fallback += u64::from(job.status == JobStatus::AnsweredOffline);
                }
            }
            if let Some(helpful) = job.helpful {
                let mode = job.mode.map_or("none", |mode| mode.as_str());
                stats.feedback.by_mode.entry(mode.to_owned()).or_default().add(helpful);
                if let Some(usage) = &job.usage {
                    stats.feedback.by_model.entry(usage.model.clone()).or_default().add(helpful);
                }
            }
            newest.push(job);
        }
        stats.last_day.fallback_ratio =
            (stats.last_day.answers > 0).then(|| stats.last_day.fallback as f64 / stats.last_day.answers as f64);
        // Unfinished jobs first (they are happening now), then the most recently finished.
        newest.sort_by_key(|job| std::cmp::Reverse(job.finished_at.unwrap_or(i64::MAX)));
        stats.feedback.unhelpful = newest
            .iter()
            .filter(|job| job.helpful == Some(false))
            .take(RECENT_JOBS)
            .map(|job| JobSummary::of(job))
            .collect();
        stats.recent = newest.into_iter().take(RECENT_JOBS).map(JobSummary::of).collect();
        stats
    }
}

/// Tokens and cost of one LLM call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Model that answered (a fallback may differ from the one asked for).
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in credits (USD on OpenRouter), if reported.
    pub cost: Option<f64>,
}

/// The ledger entry of one question page (`job#<page_id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The question page.
    pub page_id: String,
    /// Increases each time a person reopens the question (sets it back to Pending).
    pub generation: u32,
    /// Where the job stands.
    pub status: JobStatus,
    /// Attempts at the current generation.
    pub attempts: u32,
    /// Until when the current owner holds the job (seconds since the epoch).
    pub lease_until: i64,
    /// The run that holds (or last held) the lease.
    pub owner: String,
    /// The question's title, shortened to [`QUESTION_CHARS`] characters, for the status page.
    #[serde(default)]
    pub question: Option<String>,
    /// Which rung of the context ladder the answer's context came from.
    #[serde(default)]
    pub mode: Option<crate::context::ContextMode>,
    /// What this generation answers on the page, recorded with the answer (before anything
    /// on the page is replaced), so every later attempt answers the same turn.
    #[serde(default)]
    pub turn: Option<TurnRecord>,
    /// The sources the answer's context cited (at most [`MAX_JOB_SOURCES`]).
    #[serde(default)]
    pub sources: Vec<String>,
    /// What the person said of the answer in the page's `Helpful` property.
    #[serde(default)]
    pub helpful: Option<bool>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub error: Option<String>,
    /// When the job reached a terminal status (seconds since the epoch).
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// LLM usage of the answer.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Optimistic-concurrency version: every write is conditional on it, and the store moves
    /// it on (0 until the job is first written).
    #[serde(default)]
    pub version: u64,
}

impl JobRecord {
    /// A job that `owner` is working on, first attempt of `generation` of the question, leased
    /// until `lease_until` (the store sets the version when it writes it).
    pub fn fresh(page_id: &str, generation: u32, owner: &str, lease_until: i64) -> Self {
        Self {
            page_id: page_id.to_owned(),
            generation,
            status: JobStatus::Working,
            attempts: 1,
            lease_until,
            owner: owner.to_owned(),
            question: None,
            mode: None,
            turn: None,
            sources: Vec::new(),
            helpful: None,
            error: None,
            finished_at: None,
            usage: None,
            version: 0,
        }
    }
}

/// What a generation answers on its page (see `pipeline::conversation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// A follow-up written below an earlier answer, rather than the page's own question.
    pub follow_up: bool,
    /// The generation whose answer (or failure callout) this one replaces.
    pub replaces: Option<u32>,
}

/// Sources a job keeps of its answer's context.
pub const MAX_JOB_SOURCES: usize = 20;

/// Longest question title a job keeps, in characters.
pub const QUESTION_CHARS: usize = 200;

/// `title` shortened to [`QUESTION_CHARS`] characters (an ellipsis marks a cut).
pub fn short_question(title: &str) -> String {
    let title = title.trim();
    match title.char_indices().nth(QUESTION_CHARS) {
        Some((cut, _)) => format!("{}…", &title[..cut]),
        None => title.to_owned(),
    }
}

/// The outcome of a conditional job write.
#[must_use = "a conflict means another run owns the job: stop working on it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobWrite {
    /// Written; the record carries its new version.
    Written,
    /// Another writer changed the job since it was read; nothing was written.
    Conflict,
}

/// Cached context for one tag (`ctx#<tag>`), written whenever the agent answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedContext {
    /// The context block.
    pub context: String,
    /// Its cited sources.
    pub sources: Vec<String>,
    /// When it was written (seconds since the epoch).
    pub updated_at: i64,
    /// When it stops being usable (seconds since the epoch).
    pub expires_at: i64,
}

/// A prompt template (`tpl#<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Unique name; `default` is used when no tag has a template of its own.
    pub name: String,
    /// Tags this template answers (empty for `default`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The system prompt.
    pub system_prompt: String,
    /// Context used when neither the agent nor the cache can provide any.
    #[serde(default)]
    pub fallback_context: String,
}

/// An agent's connection through API Gateway (the self-hosted hub keeps these in memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConnection {
    /// API Gateway's connection id: where `PostToConnection` sends requests.
    pub connection_id: String,
    /// The agent's own id, from its `hello` (empty until then).
    #[serde(default)]
    pub agent_id: String,
    /// When it connected (seconds since the epoch).
    pub connected_at: i64,
    /// When it was last heard from (seconds since the epoch); liveness comes from this, not from
    /// `$disconnect`, which API Gateway delivers only on a best-effort basis.
    pub last_seen: i64,
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, network, throttling…).
    #[error("store backend: {0}")]
    Backend(String),
    /// A stored item could not be decoded.
    #[error("stored item {key} is unreadable: {message}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// Result with a [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;

/// The job ledger: one record per question page, written only conditionally on its version, so a page is
/// answered by one run at a time (the exactly-once guarantee rests here).
#[async_trait]
pub trait JobLedger: Send + Sync {
    /// The job of a page, if any.
    async fn get_job(&self, page_id: &str) -> StoreResult<Option<JobRecord>>;

    /// Writes `job` if the stored version is still `job.version` (0: no job exists yet), as
    /// version `job.version + 1`, which `job` then carries. [`JobWrite::Conflict`] means another
    /// writer got there first: the caller no longer owns the job, and nothing was written.
    async fn put_job(&self, job: &mut JobRecord) -> StoreResult<JobWrite>;

    /// Jobs by status and the LLM usage of today's and this month's answers, as of `now`.
    async fn job_stats(&self, now: i64) -> StoreResult<JobStats>;
}

/// Context per tag for the offline fallback (see `context::cache::ContextCache`, its one user).
#[async_trait]
pub trait ContextStore: Send + Sync {
    /// Stores the context for a tag unless the one stored is newer (a later `updated_at`):
    /// the agent's answers and its pushes arrive in any order, and the newest must win.
    /// Returns whether it wrote.
    async fn put_context(&self, tag: &str, context: &CachedContext) -> StoreResult<bool>;

    /// The context for a tag, unless it expired before `now`: expired items are ignored even if
    /// the backend has not deleted them yet (DynamoDB's TTL deletes up to days late).
    async fn get_context(&self, tag: &str, now: i64) -> StoreResult<Option<CachedContext>>;
}

/// Prompt templates stored by name (`/templates/sync` writes them, runs read them).
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a template under its name.
    async fn put_template(&self, template: &Template) -> StoreResult<()>;

    /// All stored templates, by name.
    async fn templates(&self) -> StoreResult<Vec<Template>>;
}

/// What the Notion webhook needs: deliveries already handled, and the signing token.
#[async_trait]
pub trait WebhookLog: Send + Sync {
    /// Records that webhook event `event_id` was handled, until `expires_at`. Returns false if
    /// it already was (and that record has not expired by `now`): deliveries repeat.
    async fn remember_event(&self, event_id: &str, expires_at: i64, now: i64) -> StoreResult<bool>;

    /// Forgets that `event_id` was handled, so a redelivery is handled again (after a failure).
    async fn forget_event(&self, event_id: &str) -> StoreResult<()>;

    /// Stores the Notion webhook's verification token (the key of its signatures) unless one
    /// is stored already; returns whether it was stored. A stored token is never replaced:
    /// the handshake is unsigned, so replacing it would hand the signing key to anyone.
    async fn put_webhook_token(&self, token: &str) -> StoreResult<bool>;

    /// The stored Notion webhook verification token.
    async fn webhook_token(&self) -> StoreResult<Option<String>>;

    /// Forgets the stored verification token (an authenticated reset before a new handshake).
    async fn delete_webhook_token(&self) -> StoreResult<()>;
}

/// The agents' API Gateway connections (AWS only: self-hosted, the hub holds them in memory).
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    /// Records a new connection (or replaces the record of one).
    async fn put_connection(&self, connection: &AgentConnection) -> StoreResult<()>;

    /// Marks a connection as heard from at `now`, and records its agent id if given. Returns
    /// false if the connection is unknown (its `$connect` was never recorded, or it was removed).
    async fn touch_connection(&self, connection_id: &str, agent_id: Option<&str>, now: i64) -> StoreResult<bool>;

    /// Forgets a connection (on `$disconnect`, or when API Gateway says it is gone).
    async fn remove_connection(&self, connection_id: &str) -> StoreResult<()>;

    /// Every recorded connection, live or not; callers judge liveness by `last_seen`.
    async fn connections(&self) -> StoreResult<Vec<AgentConnection>>;

    /// Forgets a connection not heard from since before `seen_before` (its `$disconnect` never
    /// came); returns whether it did. A connection touched meanwhile is kept.
    async fn remove_stale_connection(&self, connection_id: &str, seen_before: i64) -> StoreResult<bool>;
}

/// Agents' replies waiting for the run that asked (AWS only: every WebSocket event is its own
/// invocation, so a reply cannot be handed over in memory).
#[async_trait]
pub trait Mailbox: Send + Sync {
    /// Stores an agent's reply to request `request_id` for the run waiting on it, until
    /// `expires_at`.
    async fn put_reply(&self, request_id: &str, reply: &str, expires_at: i64) -> StoreResult<()>;

    /// The reply to `request_id`, if it has arrived and not expired by `now`.
    async fn get_reply(&self, request_id: &str, now: i64) -> StoreResult<Option<String>>;
}

/// Durable state, shared by every run of the cloud side: every role, from one backend (redb
/// self-hosted, DynamoDB on AWS). Callers that need one role take that role.
#[async_trait]
pub trait Store: JobLedger + ContextStore + TemplateStore + WebhookLog + ConnectionRegistry + Mailbox {
    /// Deletes items that expired before `now` (replies, webhook event records, cached
    /// context); returns how many. DynamoDB's TTL does this by itself, so there it is a no-op.
    async fn sweep_expired(&self, now: i64) -> StoreResult<usize>;

    /// What kind of store this is, for `/status`.
    fn kind(&self) -> &'static str;
}

/// Key of a job item.
pub fn job_key(page_id: &str) -> String {
    format!("job#{page_id}")
}

/// Key of a context item (tags are compared case-insensitively).
pub fn context_key(tag: &str) -> String {
    format!("ctx#{}", tag.trim().to_lowercase())
}

/// Key of a connection item.
pub fn connection_key(connection_id: &str) -> String {
    format!("conn#{connection_id}")
}

/// Key of a reply item.
pub fn reply_key(request_id: &str) -> String {
    format!("reply#{request_id}")
}

/// Key of the record of a handled webhook event.
pub fn event_key(event_id: &str) -> String {
    format!("event#{event_id}")
}

/// Key of the Notion webhook's verification token.
pub const WEBHOOK_TOKEN_KEY: &str = "webhook#verification-token";

/// Key of a template item.
pub fn template_key(name: &str) -> String {
    format!("tpl#{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_summed_by_utc_day_and_calendar_month() {
        let now = 1_796_378_400; // 2026-12-04 10:00 UTC
        let answered = |page: &str, finished: Option<i64>, cost: Option<f64>| {
            let mut job = JobRecord::fresh(page, 1, "run", 0);
            job.status = JobStatus::Answered;
            job.finished_at = finished;
            job.usage = Some(Usage { model: "m".into(), prompt_tokens: 10, completion_tokens: 5, cost });
            job
        };
        let jobs = [
            answered("today", Some(1_796_342_400), Some(0.25)), // 2026-12-04 00:00
            answered("first of the month", Some(1_796_083_200), Some(0.5)), // 2026-12-01 00:00
            answered("last month", Some(1_796_083_199), Some(1.0)), // 2026-11-30 23:59:59
            answered("cost not reported", Some(now), None),
            JobRecord::fresh("working", 1, "run", 0),
        ];
        let stats = JobStats::of(&jobs, now);
        assert_eq!(stats.by_status.get("answered"), Some(&4));
        assert_eq!(stats.by_status.get("working"), Some(&1));
        assert_eq!(
            stats.today,
            UsageTotals { answers: 2, prompt_tokens: 20, completion_tokens: 10, cost: 0.25 },
            "today counts from midnight UTC"
        );
        assert_eq!(
            stats.this_month,
            UsageTotals { answers: 3, prompt_tokens: 30, completion_tokens: 15, cost: 0.75 },
            "the month from its first day"
        );
    }

    #[test]
    fn the_last_day_by_outcome_and_the_newest_jobs_first() {
        use crate::context::ContextMode;
        let now = 1_796_378_400;
        let finished = |page: &str, status: JobStatus, mode: Option<ContextMode>, at: i64| {
            let mut job = JobRecord::fresh(page, 1, "run", 0);
            (job.status, job.mode, job.finished_at) = (status, mode, Some(at));
            job.question = Some(short_question(&"问".repeat(300)));
            job
        };
        let jobs = [
            finished("full", JobStatus::Answered, Some(ContextMode::Full), now - 60),
            finished("cached", JobStatus::AnsweredOffline, Some(ContextMode::Cached), now - 30),
            finished("template", JobStatus::AnsweredOffline, Some(ContextMode::Template), now - 3600),
            finished("failed", JobStatus::Failed, None, now - 10),
            finished("yesterday", JobStatus::Answered, Some(ContextMode::Full), now - 86_401),
            JobRecord::fresh("working", 1, "run", 0),
        ];
        let stats = JobStats::of(&jobs, now);
        let day = &stats.last_day;
        assert_eq!((day.answers, day.fallback), (3, 2), "failures are not answers; yesterday is out");
        assert_eq!(day.fallback_ratio, Some(2.0 / 3.0));
        assert_eq!(day.by_status_and_mode["answered_offline"]["cached"], 1);
        assert_eq!(day.by_status_and_mode["failed"]["none"], 1);
        assert!(!day.by_status_and_mode.contains_key("working"));
        let order: Vec<&str> = stats.recent.iter().map(|job| job.page_id.as_str()).collect();
        assert_eq!(order, ["working", "failed", "cached", "full", "template", "yesterday"]);
        let question = stats.recent[1].question.as_deref().unwrap();
        assert_eq!(question.chars().count(), QUESTION_CHARS + 1, "shortened, with an ellipsis");
        assert_eq!(JobStats::of(&[], now).last_day.fallback_ratio, None);
    }

    #[test]
    fn feedback_is_counted_by_mode_and_model_and_the_unhelpful_are_listed() {
        use crate::context::ContextMode;
        let rated = |page: &str, mode: ContextMode, model: &str, helpful: Option<bool>, at: i64| {
            let mut job = JobRecord::fresh(page, 1, "run", 0);
            (job.status, job.mode, job.finished_at, job.helpful) = (JobStatus::Answered, Some(mode), Some(at), helpful);
            job.usage = Some(Usage { model: model.into(), ..Usage::default() });
            job.sources = vec![format!("{page}.md")];
            job
        };
        let jobs = [
            rated("a", ContextMode::Full, "m1", Some(true), 10),
            rated("b", ContextMode::Full, "m1", Some(false), 20),
            rated("c", ContextMode::Cached, "m2", Some(false), 30),
            rated("d", ContextMode::Full, "m2", Some(true), 40),
            rated("e", ContextMode::Full, "m2", None, 50),
        ];
        let feedback = JobStats::of(&jobs, 100).feedback;
        assert_eq!(feedback.by_mode["full"], Votes { helpful: 2, unhelpful: 1, ratio: 2.0 / 3.0 });
        assert_eq!(feedback.by_mode["cached"], Votes { helpful: 0, unhelpful: 1, ratio: 0.0 });
        assert_eq!(feedback.by_model["m2"], Votes { helpful: 1, unhelpful: 1, ratio: 0.5 });
        let unhelpful: Vec<(&str, &[String])> =
            feedback.unhelpful.iter().map(|job| (job.page_id.as_str(), job.sources.as_slice())).collect();
        assert_eq!(
            unhelpful,
            [("c", &["c.md".to_owned()][..]), ("b", &["b.md".to_owned()][..])],
            "newest first, with their sources"
        );
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every adapter must have; run against each of them.

    use super::*;

    fn job(page: &str) -> JobRecord {
        JobRecord::fresh(page, 1, "run-a", 100)
    }

    pub async fn jobs_are_written_once_and_then_only_by_version(store: &dyn Store) {
        assert_eq!(store.get_job("p1").await.unwrap(), None);
        let mut first = job("p1");
        assert_eq!(store.put_job(&mut first).await.unwrap(), JobWrite::Written, "first claim wins");
        assert_eq!(first.version, 1, "the record carries its new version");
        assert_eq!(store.put_job(&mut job("p1")).await.unwrap(), JobWrite::Conflict, "a second first claim loses");
        let stored = store.get_job("p1").await.unwrap().unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.owner, "run-a");

        let mut next = stored.clone();
        next.owner = "run-b".into();
        assert_eq!(store.put_job(&mut next).await.unwrap(), JobWrite::Written);
        let mut stale = stored.clone();
        assert_eq!(store.put_job(&mut stale).await.unwrap(), JobWrite::Conflict, "a stale version loses");
        assert_eq!(stale.version, 1, "a lost write leaves the version alone");
        let mut done = store.get_job("p1").await.unwrap().unwrap();
        assert_eq!((done.version, done.owner.as_str()), (2, "run-b"));
        done.status = JobStatus::Answered;
        done.usage = Some(Usage { model: "m".into(), prompt_tokens: 3, completion_tokens: 4, cost: Some(0.5) });
        assert_eq!(store.put_job(&mut done).await.unwrap(), JobWrite::Written);
        let read = store.get_job("p1").await.unwrap().unwrap();
        assert_eq!(read, done);
        assert_eq!(read.status, JobStatus::Answered);

        assert_eq!(store.put_job(&mut job("p2")).await.unwrap(), JobWrite::Written);
        let stats = store.job_stats(1_000).await.unwrap();
        assert_eq!(stats.by_status.get("answered"), Some(&1));
        assert_eq!(stats.by_status.get("working"), Some(&1));
    }

    pub async fn concurrent_claims_have_one_winner(store: std::sync::Arc<dyn Store>) {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let mut claim = job("race");
                claim.owner = format!("run-{i}");
                tokio::spawn(async move { store.put_job(&mut claim).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap() == JobWrite::Written);
        }
        assert_eq!(winners, 1);
    }

    pub async fn expired_context_is_ignored(store: &dyn Store) {
        let context =
            CachedContext { context: "[1] x".into(), sources: vec!["a.md".into()], updated_at: 10, expires_at: 100 };
        store.put_context("AI效率", &context).await.unwrap();
        assert_eq!(store.get_context("ai效率", 50).await.unwrap(), Some(context.clone()), "tags ignore case");
        assert_eq!(store.get_context("AI效率", 100).await.unwrap(), None, "expired at its expiry time");
        assert_eq!(store.get_context("other", 50).await.unwrap(), None);
    }

    pub async fn an_older_context_never_replaces_a_newer_one(store: &dyn Store) {
        let context = |text: &str, updated_at| CachedContext {
            context: text.into(),
            sources: vec![],
            updated_at,
            expires_at: updated_at + 1000,
        };
        assert!(store.put_context("order", &context("first", 20)).await.unwrap());
        assert!(!store.put_context("order", &context("late push", 10)).await.unwrap(), "older: refused");
        assert_eq!(store.get_context("order", 30).await.unwrap(), Some(context("first", 20)));
        assert!(store.put_context("ORDER", &context("same second", 20)).await.unwrap(), "as new: written");
        assert!(store.put_context("order", &context("newer", 21)).await.unwrap());
        assert_eq!(store.get_context("order", 30).await.unwrap(), Some(context("newer", 21)));
    }

    pub async fn connections_are_tracked_by_last_seen(store: &dyn Store) {
        assert!(store.connections().await.unwrap().is_empty());
        assert!(!store.touch_connection("ghost=", None, 5).await.unwrap(), "unknown connections are not created");
        for id in ["A1b2C3d4E5f=", "zZ9-yY8_xX7="] {
            let connection =
                AgentConnection { connection_id: id.into(), agent_id: String::new(), connected_at: 10, last_seen: 10 };
            store.put_connection(&connection).await.unwrap();
        }
        assert!(store.touch_connection("A1b2C3d4E5f=", Some("laptop"), 42).await.unwrap());
        assert!(store.touch_connection("A1b2C3d4E5f=", None, 43).await.unwrap());
        let mut connections = store.connections().await.unwrap();
        connections.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        assert_eq!(connections.len(), 2);
        assert_eq!((connections[0].agent_id.as_str(), connections[0].last_seen), ("laptop", 43));
        assert_eq!(connections[0].connected_at, 10);
        store.remove_connection("zZ9-yY8_xX7=").await.unwrap();
        store.remove_connection("zZ9-yY8_xX7=").await.unwrap(); // idempotent ($disconnect may repeat)
        assert_eq!(store.connections().await.unwrap().len(), 1);
        assert!(!store.touch_connection("zZ9-yY8_xX7=", None, 50).await.unwrap());
    }

    pub async fn replies_wait_for_their_reader_until_they_expire(store: &dyn Store) {
        assert_eq!(store.get_reply("r1", 5).await.unwrap(), None);
        store.put_reply("r1", "{\"ok\":1}", 100).await.unwrap();
        assert_eq!(store.get_reply("r1", 50).await.unwrap().as_deref(), Some("{\"ok\":1}"));
        assert_eq!(store.get_reply("r1", 100).await.unwrap(), None, "expired at its expiry time");
    }

    pub async fn webhook_events_are_handled_once(store: &dyn Store) {
        assert!(store.remember_event("ev-1", 100, 10).await.unwrap(), "first delivery");
        assert!(!store.remember_event("ev-1", 100, 20).await.unwrap(), "a repeat");
        assert!(store.remember_event("ev-2", 100, 20).await.unwrap(), "another event");
        assert!(store.remember_event("ev-1", 300, 100).await.unwrap(), "after the record expired");
        store.forget_event("ev-2").await.unwrap();
        assert!(store.remember_event("ev-2", 300, 30).await.unwrap(), "forgotten after a failure");
        store.forget_event("never-seen").await.unwrap();
        assert_eq!(store.webhook_token().await.unwrap(), None);
        assert!(store.put_webhook_token("secret_a").await.unwrap(), "the first handshake stores its token");
        assert!(!store.put_webhook_token("secret_b").await.unwrap(), "a later one never replaces it");
        assert_eq!(store.webhook_token().await.unwrap().as_deref(), Some("secret_a"));
        store.delete_webhook_token().await.unwrap();
        store.delete_webhook_token().await.unwrap(); // idempotent
        assert_eq!(store.webhook_token().await.unwrap(), None);
        assert!(store.put_webhook_token("secret_b").await.unwrap(), "stored again after a reset");
        assert_eq!(store.webhook_token().await.unwrap().as_deref(), Some("secret_b"));
    }

    pub async fn stale_connections_are_pruned(store: &dyn Store) {
        for (id, last_seen) in [("old=", 10), ("fresh=", 500)] {
            let connection =
                AgentConnection { connection_id: id.into(), agent_id: "a".into(), connected_at: 5, last_seen };
            store.put_connection(&connection).await.unwrap();
        }
        assert!(!store.remove_stale_connection("fresh=", 100).await.unwrap(), "heard from since: kept");
        assert!(store.remove_stale_connection("old=", 100).await.unwrap());
        assert!(!store.remove_stale_connection("old=", 100).await.unwrap(), "already gone");
        assert!(!store.remove_stale_connection("never=", 100).await.unwrap());
        let left: Vec<String> = store.connections().await.unwrap().into_iter().map(|c| c.connection_id).collect();
        assert!(left.contains(&"fresh=".to_owned()) && !left.contains(&"old=".to_owned()), "{left:?}");
    }

    /// After a sweep, nothing expired is left and nothing live was touched. Stores whose
    /// backend expires items by itself may remove nothing.
    pub async fn sweeping_keeps_what_is_live(store: &dyn Store, deletes_itself: bool) {
        store.sweep_expired(2000).await.unwrap(); // what earlier contract tests left behind
        let context = |expires_at| CachedContext { context: "c".into(), sources: vec![], updated_at: 1, expires_at };
        store.put_context("gone", &context(1500)).await.unwrap();
        store.put_context("kept", &context(5000)).await.unwrap();
        store.put_reply("r-gone", "{}", 1500).await.unwrap();
        store.put_reply("r-kept", "{}", 5000).await.unwrap();
        assert!(store.remember_event("e-gone", 1500, 1000).await.unwrap());
        assert!(store.remember_event("e-kept", 5000, 1000).await.unwrap());
        assert_eq!(store.put_job(&mut job("sweep")).await.unwrap(), JobWrite::Written);
        let removed = store.sweep_expired(2000).await.unwrap();
        if !deletes_itself {
            assert_eq!(removed, 3, "one expired context, reply and event record");
        }
        assert_eq!(store.get_context("kept", 2000).await.unwrap(), Some(context(5000)));
        assert_eq!(store.get_reply("r-kept", 2000).await.unwrap().as_deref(), Some("{}"));
        assert!(!store.remember_event("e-kept", 5000, 2000).await.unwrap(), "a live event record is kept");
        assert!(store.get_job("sweep").await.unwrap().is_some(), "jobs never expire");
        assert_eq!(store.sweep_expired(2000).await.unwrap(), 0, "nothing left to sweep");
    }

    pub async fn templates_round_trip(store: &dyn Store) {
        assert!(store.templates().await.unwrap().is_empty());
        let template = Template {
            name: "rust".into(),
            tags: vec!["Rust".into()],
            system_prompt: "You answer Rust questions.".into(),
            fallback_context: String::new(),
        };
        store.put_template(&template).await.unwrap();
        let mut changed = template.clone();
        changed.system_prompt = "Changed.".into();
        store.put_template(&changed).await.unwrap();
        assert_eq!(store.templates().await.unwrap(), [changed]);
    }
}
