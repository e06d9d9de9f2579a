//! `process_once`: find pending questions, answer each exactly once, write the answers back.
//!
//! A page is owned by one run at a time through its job record (`job#<page_id>`), written with
//! a version condition: the run that wins the write holds a lease; a run that dies leaves a lease
//! that expires, and the next run takes the job over. The answer is appended under a heading
//! whose link carries a marker (page and generation), and ends with a footer carrying the end
//! marker; before appending, the page is checked for both, so a retry after a crash at any step
//! neither loses the question nor answers it twice — an interrupted append is removed and
//! written again. A person reopens a question by setting it back to Pending: the next run starts
//! a new generation (confirmed with a direct read, because query results can lag behind writes),
//! which answers a follow-up written below the last answer, or that answer's question again.
//!
//! The rooms: [`settings`] (the database's names, scheduling), [`report`] (steps, outcomes, the
//! run's totals), `page` (the answer's blocks and markers on the page, the failure callout),
//! `conversation` (the page as turns: what a generation answers, and where), [`choices`] (a
//! page's `Model` and `Sources`), [`feedback`] (its `Helpful` mark), [`comments`] (questions
//! asked in comments) and `lease` (the fence every page write passes).

pub mod choices;
pub mod comments;
mod conversation;
pub mod feedback;
mod lease;
mod page;
pub mod report;
pub mod settings;

use std::sync::Arc;
use std::time::Instant;

use notion::page::write;
use notion::{NotionClient, NotionError, Page};
use serde_json::json;
use tokio::sync::{OnceCell, Semaphore};
use tracing::{Instrument, info_span};

use self::choices::Choices;
use self::lease::LeaseFence;
use self::page::{AnswerOnPage, Footer, answer_blocks, extractive_answer, failure_callout, has_link};
pub use self::report::{Cause, Outcome, PipelineError, RunReport, Step};
pub use self::settings::{PipelineSettings, Vocabulary};
use crate::clock::Clock;
use crate::context::{ContextBuilder, ContextError, ContextMode};
use crate::llm::{Llm, LlmError};
use crate::store::{JobRecord, JobStatus, JobWrite, Store, StoreError, TurnRecord, short_question};
use crate::telemetry::RunObserver;
use crate::templates::{Asked, Templates, build_prompt};

/// Failure of one attempt at one page.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("Notion: {0}")]
    Notion(#[from] NotionError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("LLM: {0}")]
    Llm(#[from] LlmError),
    #[error("{0}")]
    Context(#[from] ContextError),
    #[error("another run took the job over")]
    LostLease,
    #[error("crash injected after {0:?}")]
    Crashed(Step),
}

impl StepError {
    fn cause(&self) -> Cause {
        match self {
            Self::Notion(_) => Cause::Notion,
            Self::Llm(_) => Cause::Llm,
            Self::Context(_) => Cause::Context,
            // A lost lease and a crash never become an outcome's cause (see `process_page`).
            Self::Store(_) | Self::LostLease | Self::Crashed(_) => Cause::Store,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Notion(error) => error.is_retryable(),
            Self::Llm(error) => error.is_retryable(),
            Self::Store(_) | Self::Context(_) | Self::LostLease | Self::Crashed(_) => true,
        }
    }
}

/// Everything `process_once` needs.
pub struct Pipeline {
    notion: NotionClient,
    database_id: String,
    data_source: OnceCell<String>,
    llm: Option<Arc<dyn Llm>>,
    store: Arc<dyn Store>,
    context: ContextBuilder,
    clock: Arc<dyn Clock>,
    settings: PipelineSettings,
    crashes: Crashes,
    run_counter: std::sync::atomic::AtomicU64,
    observers: std::sync::Mutex<Vec<Arc<dyn RunObserver>>>,
    /// Where the sweep of `Helpful` marks stands (see [`feedback`]).
    feedback: tokio::sync::Mutex<feedback::Sweep>,
}

impl Pipeline {
    /// A pipeline for the questions database `database_id`. Without `llm`, answers are
    /// extractive (the best passages of the context) and say so.
    pub fn new(
        notion: NotionClient,
        database_id: impl Into<String>,
        llm: Option<Arc<dyn Llm>>,
        store: Arc<dyn Store>,
        context: ContextBuilder,
        clock: Arc<dyn Clock>,
        settings: PipelineSettings,
    ) -> Self {
        Self {
            notion,
            database_id: database_id.into(),
            data_source: OnceCell::new(),
            llm,
            store,
            context,
            clock,
            settings,
            crashes: Crashes::Never,
            run_counter: Default::default(),
            observers: Default::default(),
            feedback: Default::default(),
        }
    }

    /// Tells `observer` how every later run ended (metrics on AWS, alerts self-hosted).
    pub fn observe_runs(&self, observer: Arc<dyn RunObserver>) {
        self.observers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(observer);
    }

    fn observed(&self, result: Result<RunReport, PipelineError>) -> Result<RunReport, PipelineError> {
        let observers = self.observers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for observer in observers {
            observer.run_ended(&result);
        }
        result
    }

    /// Test hook: stop every page's processing right after `step`, as a killed process would
    /// (nothing is cleaned up, the lease stays).
    pub fn crash_after(mut self, step: Step) -> Self {
        self.crashes = Crashes::After(step);
        self
    }

    /// Test hook: stop each page's processing, with probability `chance`, right after a step
    /// drawn at random (the reliability bench).
    pub fn crash_at_random(mut self, chance: f64) -> Self {
        self.crashes = Crashes::AtRandom(chance);
        self
    }

    /// The settings, to adjust before the pipeline is shared.
    pub fn settings_mut(&mut self) -> &mut PipelineSettings {
        &mut self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock its leases and records are timed by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The context ladder.
    pub fn context(&self) -> &ContextBuilder {
        &self.context
    }

    /// The Notion client.
    pub fn notion(&self) -> &NotionClient {
        &self.notion
    }

    async fn data_source(&self) -> Result<&str, NotionError> {
        self.data_source.get_or_try_init(|| self.notion.data_source_id(&self.database_id)).await.map(String::as_str)
    }

    /// One run: every pending (or stuck processing) page, oldest first, a few at a time.
    pub async fn process_once(self: &Arc<Self>) -> Result<RunReport, PipelineError> {
        let result = self.find_and_process().await;
        self.observed(result)
    }

    async fn find_and_process(self: &Arc<Self>) -> Result<RunReport, PipelineError> {
        let started = Instant::now();
        let source = self.data_source().await?.to_owned();
        let vocabulary = &self.settings.vocabulary;
        // Processing pages too: a run that died, or an attempt waiting to be retried, left them so.
        let filter = |kind: &str| {
            json!({ "or": [
                { "property": vocabulary.status_property, kind: { "equals": vocabulary.pending } },
                { "property": vocabulary.status_property, kind: { "equals": vocabulary.processing } },
            ]})
        };
        let sorts = json!([{ "timestamp": "created_time", "direction": "ascending" }]);
        let pages = match self.notion.query_all(&source, Some(filter("status")), Some(sorts.clone())).await {
            Ok(pages) => pages,
            // The status property may be a select rather than a status.
            Err(error) if error.code() == Some("validation_error") => {
                self.notion.query_all(&source, Some(filter("select")), Some(sorts)).await?
            }
            Err(error) => return Err(error.into()),
        };
        let report = self.process(pages, started).await;
        self.sweep_feedback().instrument(info_span!("feedback")).await;
        report
    }

    /// Answers the given pages now if they are pending questions of this database (a webhook's
    /// way in); anything else — another database's page, a trashed or answered one, a page
    /// that no longer exists — is left alone, so a repeated or forged event changes nothing.
    pub async fn process_pages(self: &Arc<Self>, page_ids: &[String]) -> Result<RunReport, PipelineError> {
        let result = self.read_and_process(page_ids).await;
        self.observed(result)
    }

    async fn read_and_process(self: &Arc<Self>, page_ids: &[String]) -> Result<RunReport, PipelineError> {
        let started = Instant::now();
        let source = self.data_source().await?.to_owned();
        let vocabulary = &self.settings.vocabulary;
        let mut pages = Vec::new();
        for id in page_ids {
            let page = match self.notion.retrieve_page(id).instrument(info_span!("read_page")).await {
                Ok(page) => page,
                Err(error) if error.is_not_found() => continue,
                Err(error) => return Err(error.into()),
            };
            let status = page.choice(&vocabulary.status_property);
            let open = status == Some(vocabulary.pending.as_str()) || status == Some(vocabulary.processing.as_str());
            if page.is_trashed() || !page.is_row_of(&self.database_id, &source) {
                continue;
            }
            if open {
                pages.push(page);
            } else if let Err(error) = self.record_mark(&page).await {
                // The scheduled sweep reads the mark again.
                tracing::warn!(%error, page = %page.id, "could not record what was said of an answer");
            }
        }
        self.process(pages, started).await
    }

    /// Processes `pages` (at most `max_pages_per_run` of them), a few at a time.
    async fn process(self: &Arc<Self>, mut pages: Vec<Page>, started: Instant) -> Result<RunReport, PipelineError> {
        // Unique across processes and Lambda containers, not only within this one: the owner of
        // a job tells a run whether a finished job is its own.
        let run_id = format!(
            "run-{}-{:08x}-{}",
            self.clock.now(),
            fastrand::u32(..),
            self.run_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if pages.is_empty() {
            // The common case of a scheduled run: no store request at all.
            return Ok(RunReport { seconds: started.elapsed().as_secs_f64(), ..RunReport::default() });
        }
        let templates = Arc::new(Templates::load(self.store.as_ref()).instrument(info_span!("templates")).await?);
        let found = pages.len();
        pages.truncate(self.settings.max_pages_per_run.max(1));
        let mut report = RunReport { found, deferred: found - pages.len(), ..RunReport::default() };
        if report.deferred > 0 {
            tracing::info!(deferred = report.deferred, "more questions than one run takes; the rest wait for the next");
        }
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for page in pages {
            let (pipeline, templates, run_id, permits) =
                (self.clone(), templates.clone(), run_id.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let id = page.id.clone();
                let span = info_span!("question", page = %id);
                (id, pipeline.process_page(page, &run_id, &templates).instrument(span).await)
            });
        }
        let mut crashed = None;
        while let Some(joined) = tasks.join_next().await {
            let (id, outcome) = match joined {
                Ok(result) => result,
                Err(error) => {
                    tracing::error!(%error, "a page task panicked");
                    continue;
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(step) => {
                    crashed = Some(step);
                    continue;
                }
            };
            match &outcome {
                Outcome::Answered { mode, .. } if mode.agent_answered() => report.answered += 1,
                Outcome::Answered { .. } => report.answered_offline += 1,
                Outcome::Failed { .. } => report.failed += 1,
                Outcome::Skipped { .. } => report.skipped += 1,
                Outcome::WillRetry { .. } => report.retrying += 1,
            }
            report.pages.push((id, outcome));
        }
        if let Some(step) = crashed {
            return Err(PipelineError::Crashed(step));
        }
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            found = report.found,
            answered = report.answered,
            offline = report.answered_offline,
            failed = report.failed,
            retrying = report.retrying,
            "run finished"
        );
        Ok(report)
    }

    /// Answers one page; `Err` only for an injected crash.
    async fn process_page(&self, page: Page, run_id: &str, templates: &Templates) -> Result<Outcome, Step> {
        let started = Instant::now();
        let seconds = || started.elapsed().as_secs_f64();
        let now = self.clock.now();
        let mut job = match self.claim(&page, run_id, now).instrument(info_span!("claim")).await {
            Ok(Claim::Work(job)) => job,
            Ok(Claim::Skip) => {
                return Ok(Outcome::Skipped { reason: "owned by another run, or no longer pending".into() });
            }
            Ok(Claim::Finish(job)) => {
                let finished = match job.status {
                    JobStatus::Failed => self.show_failure(&page, &job).await,
                    _ => self.set_finished(&page, &job).await,
                };
                return Ok(match finished {
                    Ok(()) => match job.status {
                        JobStatus::Failed => Outcome::Failed { reason: job.error.unwrap_or_default(), cause: None },
                        _ => Outcome::Answered { mode: job.mode.unwrap_or(ContextMode::Full), seconds: seconds() },
                    },
                    Err(error) => Outcome::WillRetry { error: error.to_string(), cause: Cause::Notion },
                });
            }
            Err(error) => return Ok(Outcome::WillRetry { error: error.to_string(), cause: error.cause() }),
        };
        let crash = self.crashes.pick();
        if crash == Some(Step::Claimed) {
            return Err(Step::Claimed);
        }
        if job.attempts > self.settings.max_attempts {
            let last = job.error.clone().unwrap_or_else(|| "unknown".into());
            let reason = format!("{} attempts did not finish; the last: {last}", job.attempts - 1);
            return Ok(self.give_up(&page, job, reason, None).await);
        }
        match self.answer(&page, &mut job, templates, crash).await {
            Ok(mode) => Ok(Outcome::Answered { mode, seconds: seconds() }),
            Err(StepError::Crashed(step)) => Err(step),
            Err(StepError::LostLease) => Ok(Outcome::Skipped { reason: "another run took the job over".into() }),
            Err(error) => {
                let (reason, cause) = (error.to_string(), error.cause());
                tracing::warn!(page = %page.id, attempt = job.attempts, %reason, "attempt failed");
                if !error.retryable() {
                    return Ok(self.give_up(&page, job, reason, Some(cause)).await);
                }
                if job.attempts >= self.settings.max_attempts {
                    let reason = format!("{} attempts did not finish; the last: {reason}", job.attempts);
                    return Ok(self.give_up(&page, job, reason, Some(cause)).await);
                }
                job.error = Some(reason.clone());
                job.lease_until = self.clock.now() + self.settings.retry_delay_secs;
                match self.store.put_job(&mut job).await {
                    Ok(JobWrite::Written) => {}
                    Ok(JobWrite::Conflict) => {
                        return Ok(Outcome::Skipped { reason: "another run took the job over".into() });
                    }
                    // The lease runs out as it would have; the next run retries sooner.
                    Err(error) => tracing::warn!(%error, "could not record the failed attempt"),
                }
                Ok(Outcome::WillRetry { error: reason, cause })
            }
        }
    }

    /// Takes the job of a pending page: a new job, an expired lease, or a reopened question.
    async fn claim(&self, page: &Page, run_id: &str, now: i64) -> Result<Claim, StepError> {
        let lease_until = now + self.settings.lease_secs;
        let existing = self.store.get_job(&page.id).await?;
        let mut job = match existing {
            None => JobRecord::fresh(&page.id, 1, run_id, lease_until),
            Some(job) if job.status == JobStatus::Working && job.lease_until > now => return Ok(Claim::Skip),
            Some(job) if job.status == JobStatus::Working => {
                // A lease that ran out without a recorded failure: its run stopped midway.
                let error = job
                    .error
                    .clone()
                    .or_else(|| Some("an attempt stopped midway (interrupted, or out of time)".into()));
                JobRecord { attempts: job.attempts + 1, lease_until, owner: run_id.to_owned(), error, ..job }
            }
            Some(job) => {
                // Finished before, yet found again. A direct read tells why (queries can lag).
                let fresh = self.notion.retrieve_page(&page.id).await?;
                let vocabulary = &self.settings.vocabulary;
                let status = fresh.choice(&vocabulary.status_property);
                if status == Some(vocabulary.processing.as_str()) {
                    // Recorded as finished, status not yet set: either the run that did it is
                    // setting the status right now (its lease still holds: leave it alone), or
                    // it died in between (the lease ran out: set the status for it).
                    if job.lease_until > now && job.owner != run_id {
                        return Ok(Claim::Skip);
                    }
                    return Ok(Claim::Finish(job));
                }
                if status != Some(vocabulary.pending.as_str()) {
                    return Ok(Claim::Skip);
                }
                // Pending again: a person reopened the question.
                JobRecord {
                    version: job.version,
                    ..JobRecord::fresh(&page.id, job.generation + 1, run_id, lease_until)
                }
            }
        };
        // The title as it is now (a reopened question may have been retitled): the status page's.
        job.question = Some(short_question(&page.title())).filter(|title| !title.is_empty());
        Ok(match self.store.put_job(&mut job).await? {
            JobWrite::Written => Claim::Work(job),
            JobWrite::Conflict => Claim::Skip,
        })
    }

    /// Records `job` (conditionally on its version): a conflict means the lease was lost.
    async fn save(&self, job: &mut JobRecord) -> Result<(), StepError> {
        match self.store.put_job(job).await? {
            JobWrite::Written => Ok(()),
            JobWrite::Conflict => Err(StepError::LostLease),
        }
    }

    async fn set_status(&self, page: &Page, name: &str) -> Result<(), NotionError> {
        let property = &self.settings.vocabulary.status_property;
        let value = self.status_value(page, name);
        self.notion.update_properties(&page.id, json!({ property.as_str(): value })).await.map(|_| ())
    }

    /// `name` as a value of the page's status property, a status or a select.
    fn status_value(&self, page: &Page, name: &str) -> serde_json::Value {
        match page.property(&self.settings.vocabulary.status_property).and_then(|p| p["type"].as_str()) {
            Some("select") => write::select(name),
            _ => write::status(name),
        }
    }

    /// The finished job's status, and its usage in the page's `Tokens` and `Cost` number
    /// properties if it has them; a `Helpful` mark left from an earlier turn is cleared, since
    /// it was about the answer this turn follows or replaces (one write either way).
    async fn set_finished(&self, page: &Page, job: &JobRecord) -> Result<(), NotionError> {
        let property = &self.settings.vocabulary.status_property;
        let name = self.final_status(job.status);
        let mut properties = json!({ property.as_str(): self.status_value(page, name) });
        if job.generation > 1
            && job.helpful.is_none()
            && let Some(cleared) = feedback::cleared(page)
        {
            properties[feedback::HELPFUL_PROPERTY] = cleared;
        }
        let is_number = |name: &str| page.property(name).and_then(|p| p["type"].as_str()) == Some("number");
        if let Some(usage) = &job.usage {
            if is_number("Tokens") {
                properties["Tokens"] = json!({ "number": usage.prompt_tokens + usage.completion_tokens });
            }
            if let Some(cost) = usage.cost.filter(|cost| cost.is_finite())
                && is_number("Cost")
            {
                properties["Cost"] = json!({ "number": cost });
            }
        }
        self.notion.update_properties(&page.id, properties).await.map(|_| ())
    }

    /// Answers `page`'s current turn (see [`conversation`]); `crash` is the test hook's step to
    /// stop after, if any.
    async fn answer(
        &self,
        page: &Page,
        job: &mut JobRecord,
        templates: &Templates,
        crash: Option<Step>,
    ) -> Result<ContextMode, StepError> {
        let crash_point = |step: Step| if crash == Some(step) { Err(StepError::Crashed(step)) } else { Ok(()) };
        let started = Instant::now();
        let vocabulary = &self.settings.vocabulary;
        let title = page.title();
        let title = if title.trim().is_empty() { "(untitled question)".to_owned() } else { title };
        let tags = page.multi_select(&vocabulary.tags_property);
        let template = templates.select(&tags);
        let choices = Choices::of(page);
        let search = |query: String| {
            let (tags, scope) = (&tags, &choices.scope);
            async move { self.context.build(&query, tags, scope, template).await }
                .instrument(info_span!("agent_search"))
        };
        // A person may set Pending again once the answer is on the page, before this job
        // finished (a run stopped between appending and recording): that Pending is theirs,
        // not to be overwritten with Processing; the next generation answers it.
        let reopened =
            job.mode.is_some() && page.choice(&vocabulary.status_property) == Some(vocabulary.pending.as_str());
        let notion_reads = async {
            if !reopened {
                self.set_status(page, &vocabulary.processing).instrument(info_span!("mark_processing")).await?;
            }
            crash_point(Step::MarkedProcessing)?;
            let tree = self.notion.block_tree(&page.id, 6).instrument(info_span!("read_blocks")).await?;
            Ok::<_, StepError>(tree)
        };
        // A page's first question needs only its title and tags, so its search runs while
        // Processing is set and the blocks are read: the agent's search and Notion's round trips
        // overlap. A follow-up is read off the page first. Only a job that recorded an answer
        // already (its page most likely holds it) skips the early search. A search whose result
        // goes unused changes nothing but the tag's cached context, which it would have
        // refreshed anyway.
        let (tree, early_context) = if job.mode.is_none() && job.generation == 1 {
            // A failed read (or an injected crash) drops the search, as a stopped run would.
            let (tree, context) = tokio::try_join!(notion_reads, async { Ok(search(title.clone()).await) })?;
            (tree, Some(context))
        } else {
            (notion_reads.await?, None)
        };
        let decided = job.turn.map(|turn| turn.replaces);
        let decided = if job.mode.is_some() { Some(decided.flatten()) } else { None };
        let turn = conversation::turn(&tree, &page.id, job.generation, &title, decided);
        let asked_text = notion::render(turn.question).text;
        let earlier = conversation::earlier_text(&turn.earlier, conversation::EARLIER_TOKENS);
        // The page's own question: its title, with the body as details. A follow-up: what was
        // written below the last answer, searched for together with the page's topic.
        let (question, details, query) = if turn.first {
            (title.clone(), asked_text, title.clone())
        } else {
            let query = page::truncate(&format!("{}\n{title}", asked_text.trim()), 1_000);
            (asked_text, String::new(), query)
        };
        crash_point(Step::ReadQuestion)?;

        let mode = match (&turn.existing, &job.mode) {
            // The answer of this generation is already complete: only the status is missing.
            (AnswerOnPage::Complete, Some(mode)) => *mode,
            _ => {
                let context = match early_context {
                    Some(context) if turn.first => context?,
                    _ => search(query).await?,
                };
                crash_point(Step::BuiltContext)?;
                let (markdown, usage) = match &self.llm {
                    Some(llm) => {
                        let asked = Asked { question: &question, details: &details, earlier: &earlier, brief: false };
                        let prompt = info_span!("prompt").in_scope(|| build_prompt(template, &context, &asked));
                        let model = choices.model.as_deref();
                        let completion = llm.complete(&prompt, model).instrument(info_span!("llm")).await?;
                        (completion.text, Some(completion.usage))
                    }
                    None => (extractive_answer(&context), None),
                };
                job.mode = Some(context.mode);
                job.usage = usage.clone();
                job.sources = context.sources.iter().take(crate::store::MAX_JOB_SOURCES).cloned().collect();
                job.turn = Some(TurnRecord {
                    follow_up: !turn.first,
                    replaces: turn.replaces.as_ref().map(|(generation, _)| *generation),
                });
                // Renewing the lease here, conditionally, means a run whose lease lapsed during a
                // slow LLM call learns it before appending, not after (then another run owns it).
                job.lease_until = self.clock.now() + self.settings.lease_secs;
                self.save(job).instrument(info_span!("record_answer")).await?;
                crash_point(Step::Answered)?;

                // Every delete and append attempt first renews the lease (see `LeaseFence`):
                // Notion's retries can outlast it, and a run that lost the job must not write.
                let fence = LeaseFence::new(self, job.clone());
                let written = async {
                    // Blocks go last first: what is left after an interruption is still found.
                    let replaced = turn.replaces.iter().flat_map(|(_, ids)| ids);
                    let partial = match &turn.existing {
                        AnswerOnPage::Partial(ids) => &ids[..],
                        _ => &[],
                    };
                    for id in replaced.chain(partial) {
                        self.notion.delete_block_fenced(id, &fence).await?;
                    }
                    if !matches!(turn.existing, AnswerOnPage::Complete) {
                        let said = Footer {
                            usage: usage.as_ref(),
                            seconds: started.elapsed().as_secs_f64(),
                            pending: &vocabulary.pending,
                            notes: choices.notes(usage.as_ref()),
                        };
                        let blocks = answer_blocks(&page.id, job.generation, &markdown, &context, &said);
                        self.append_answer(&page.id, turn.after.as_deref(), blocks, &fence).await?;
                    }
                    Ok::<(), StepError>(())
                }
                .instrument(info_span!("append"))
                .await;
                *job = fence.into_job();
                written?;
                context.mode
            }
        };
        crash_point(Step::Appended)?;

        // Recorded before the status is set: a page left Processing with a finished job only
        // needs its status (see `claim`), while the reverse order could hide a finished job.
        job.status = if mode.agent_answered() { JobStatus::Answered } else { JobStatus::AnsweredOffline };
        job.finished_at = Some(self.clock.now());
        job.error = None;
        self.save(job).instrument(info_span!("record")).await?;
        crash_point(Step::Recorded)?;

        self.finish_unless_reopened(page, job, reopened).instrument(info_span!("status")).await?;
        crash_point(Step::StatusSet)?;
        Ok(mode)
    }

    /// Appends an answer right after `after` (the question it answers), so a follow-up a person
    /// typed meanwhile stays below it; at the end if that block is gone (Notion refuses the
    /// request then, so nothing was written).
    async fn append_answer(
        &self,
        page_id: &str,
        after: Option<&str>,
        blocks: Vec<serde_json::Value>,
        fence: &LeaseFence<'_>,
    ) -> Result<(), StepError> {
        match self.notion.append_children_after(page_id, after, blocks.clone(), fence).await {
            Err(StepError::Notion(error)) if after.is_some() && error.code() == Some("validation_error") => {
                tracing::info!(page = page_id, "the block the answer belongs under is gone; appending at the end");
                self.notion.append_children_after(page_id, None, blocks, fence).await?;
                Ok(())
            }
            result => result.map(drop),
        }
    }

    /// The final status, unless a person set the page back to Pending while it was answered
    /// (`reopened`, or seen now with one read): that Pending is left for the next generation,
    /// a follow-up or an answer again.
    async fn finish_unless_reopened(&self, page: &Page, job: &JobRecord, reopened: bool) -> Result<(), NotionError> {
        let vocabulary = &self.settings.vocabulary;
        let reopened = reopened || {
            let now = self.notion.retrieve_page(&page.id).instrument(info_span!("read_status")).await?;
            now.choice(&vocabulary.status_property) == Some(vocabulary.pending.as_str())
        };
        if reopened {
            tracing::info!(page = %page.id, "set back to Pending while it was answered; the next run answers again");
            return Ok(());
        }
        self.set_finished(page, job).await
    }

    /// The page status that shows a finished job.
    fn final_status(&self, status: JobStatus) -> &str {
        let vocabulary = &self.settings.vocabulary;
        match status {
            JobStatus::Answered | JobStatus::Working => &vocabulary.answered,
            JobStatus::AnsweredOffline => &vocabulary.answered_offline,
            JobStatus::Failed => &vocabulary.failed,
        }
    }

    /// Records the job as failed, then shows it on the page. The job write comes first and is
    /// conditional: a run that lost the job must not mark failed a question another run answered.
    async fn give_up(&self, page: &Page, mut job: JobRecord, reason: String, cause: Option<Cause>) -> Outcome {
        job.status = JobStatus::Failed;
        job.error = Some(reason.clone());
        job.finished_at = Some(self.clock.now());
        match self.store.put_job(&mut job).await {
            Ok(JobWrite::Written) => {}
            Ok(JobWrite::Conflict) => return Outcome::Skipped { reason: "another run took the job over".into() },
            Err(error) => {
                // Nothing is shown: the lease runs out and the next run gives up again.
                tracing::warn!(%error, page = %page.id, "could not record the failure; the next run tries again");
                return Outcome::WillRetry { error: error.to_string(), cause: Cause::Store };
            }
        }
        if let Err(error) = self.show_failure(page, &job).await {
            // The job is finished: the next run finds the page still Processing and finishes this.
            tracing::warn!(%error, page = %page.id, "could not mark the question failed; the next run tries again");
        }
        Outcome::Failed { reason, cause }
    }

    /// The failure callout (once per generation, found by its marker) and the Failed status.
    async fn show_failure(&self, page: &Page, job: &JobRecord) -> Result<(), NotionError> {
        let reason = job.error.clone().unwrap_or_else(|| "the last attempt failed".into());
        let (marker, note) = failure_callout(&page.id, job.generation, &reason, &self.settings.vocabulary.pending);
        let already = self.notion.children(&page.id).await?.iter().any(|block| has_link(block, &marker));
        if !already {
            self.notion.append_children(&page.id, vec![note]).await?;
        }
        self.set_status(page, &self.settings.vocabulary.failed).await
    }
}

/// Where the test hooks stop a page's processing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Crashes {
    Never,
    After(Step),
    AtRandom(f64),
}

impl Crashes {
    /// The step to stop after for one page, if any.
    fn pick(self) -> Option<Step> {
        match self {
            Self::Never => None,
            Self::After(step) => Some(step),
            Self::AtRandom(chance) => (fastrand::f64() < chance).then(|| Step::ALL[fastrand::usize(..Step::ALL.len())]),
        }
    }
}

/// The result of trying to take a page's job.
enum Claim {
    /// This run owns the job (written; the record carries its version).
    Work(JobRecord),
    /// The job is finished; only the page's status is missing.
    Finish(JobRecord),
    /// Another run owns it, or it is no longer pending.
    Skip,
}
