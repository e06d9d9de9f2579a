//! The world the cloud side's tests run in: the Notion sandbox with a questions database, the
//! LLM stand-in, a store, a clock the tests move, and a fake agent that can go offline.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloud_fn::agent::{AgentLink, LinkError, LinkStatus};
use cloud_fn::clock::{Clock, ManualClock};
use cloud_fn::context::{ContextBuilder, LadderSettings};
use cloud_fn::llm::{Llm, OpenRouter, OpenRouterOptions};
use cloud_fn::pipeline::{Pipeline, PipelineSettings};
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::store::{ConnectionRegistry, ContextStore, JobLedger, Mailbox, Store, TemplateStore, WebhookLog};
use notion::page::write;
use notion::{ClientOptions, NotionClient, RetryPolicy};
use protocol::{SearchHit, SearchRequest, SearchResponse, SourceType};
use serde_json::{Value, json};
use testkit::{LlmStandIn, NotionSandbox};

pub const TOKEN: &str = "secret_sandbox";
pub const KEY: &str = "sk-or-test";
/// A topic the fake agent's notes know nothing about.
pub const UNKNOWN_TOPIC: &str = "quantum knitting";

/// An agent that answers every search with one passage, while `live` — except questions
/// mentioning [`UNKNOWN_TOPIC`], for which nothing in its notes matches.
pub struct FakeAgent {
    pub live: AtomicBool,
    /// Searches asked of it.
    pub searches: AtomicUsize,
}

#[async_trait]
impl AgentLink for FakeAgent {
    async fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    async fn search(&self, request: &SearchRequest, _deadline: Duration) -> Result<SearchResponse, LinkError> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        if !self.is_live().await {
            return Err(LinkError::Offline);
        }
        if request.query.contains(UNKNOWN_TOPIC) {
            let nothing = SearchResponse {
                success: true,
                results: vec![],
                context: String::new(),
                processing_time: 0.001,
                fusion: None,
            };
            return Ok(nothing);
        }
        let hit = SearchHit {
            knowledge_id: "notes/sleep.md#0".into(),
            title: "Sleep notes".into(),
            content_snippet: "Sleep 7–9 hours.".into(),
            similarity_score: 0.9,
            source_type: SourceType::Hybrid,
            source: "notes/sleep.md".into(),
        };
        Ok(SearchResponse {
            success: true,
            results: vec![hit],
            context: if request.sources.is_empty() {
                format!("[1] Sleep notes (notes/sleep.md)\nAbout: {}", request.query)
            } else {
                format!(
                    "[1] Sleep notes (notes/sleep.md)\nAbout: {}\nSearched only: {:?}",
                    request.query, request.sources
                )
            },
            processing_time: 0.001,
            fusion: None,
        })
    }

    async fn status(&self) -> LinkStatus {
        LinkStatus {
            kind: "fake".into(),
            live_agents: usize::from(self.live.load(Ordering::SeqCst)),
            ..LinkStatus::default()
        }
    }
}

pub struct World {
    pub sandbox: NotionSandbox,
    pub llm: LlmStandIn,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub database: String,
    pub source: String,
    pub agent: Arc<FakeAgent>,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        Self::with_store(store, dir).await
    }

    pub async fn with_store(store: Arc<dyn Store>, dir: tempfile::TempDir) -> Self {
        let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
        let (database, source) = sandbox.create_questions_database();
        World {
            sandbox,
            llm: LlmStandIn::start(KEY).await.unwrap(),
            store,
            clock: Arc::new(ManualClock::new()),
            database,
            source,
            agent: Arc::new(FakeAgent { live: AtomicBool::new(true), searches: AtomicUsize::new(0) }),
            _dir: dir,
        }
    }

    pub fn notion(&self) -> NotionClient {
        let options = ClientOptions {
            base_url: self.sandbox.url(),
            requests_per_second: 1000,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        };
        NotionClient::new(TOKEN, options).unwrap()
    }

    pub fn llm(&self, models: &[&str]) -> Arc<dyn Llm> {
        let options = OpenRouterOptions {
            base_url: self.llm.url(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(5),
            ..OpenRouterOptions::default()
        };
        Arc::new(OpenRouter::new(KEY, options).unwrap())
    }

    /// A fresh pipeline, as a new process (or Lambda invocation) would build it.
    pub fn pipeline(&self, llm: Option<Arc<dyn Llm>>, link: Arc<dyn AgentLink>) -> Arc<Pipeline> {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let ladder = LadderSettings { agent_timeout: Duration::from_millis(500), ..LadderSettings::default() };
        let context = ContextBuilder::new(link, self.store.clone(), clock.clone(), ladder);
        let settings = PipelineSettings { lease_secs: 300, retry_delay_secs: 60, ..PipelineSettings::default() };
        Arc::new(Pipeline::new(self.notion(), self.database.clone(), llm, self.store.clone(), context, clock, settings))
    }

    /// The pipeline as `cloud-fn` builds it from settings (`app::pipeline_with`), for questions
    /// database `database`, on this world's sandbox, store, clock and agent; `settings` are added
    /// to the sandbox's address and token.
    pub fn configured_pipeline(&self, database: &str, settings: &[(&str, &str)]) -> Arc<Pipeline> {
        use cloud_fn::config::{CloudConfig, Source};
        let url = self.sandbox.url();
        let values =
            [("NOTION_API_KEY", TOKEN), ("NOTION_DATABASE_ID", database), ("NOTION_API_BASE_URL", url.as_str())];
        let config = CloudConfig::load(&Source::from_values(values.iter().chain(settings).copied())).unwrap();
        cloud_fn::app::pipeline_with(&config, self.store.clone(), self.agent.clone(), self.clock.clone()).unwrap()
    }

    pub fn default_pipeline(&self) -> Arc<Pipeline> {
        self.pipeline(Some(self.llm(&["primary/model"])), self.agent.clone())
    }

    pub fn ask(&self, question: &str, tags: &[&str]) -> String {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        self.sandbox.add_page(
            &self.source,
            json!({ "Question": write::title(question), "Status": write::status("Pending"), "Tags": write::multi_select(&tags) }),
            Value::Null,
        )
    }

    /// The page's Status, a status or a select property.
    pub fn status(&self, page: &str) -> String {
        let status = &self.sandbox.page(page).unwrap()["properties"]["Status"];
        let kind = status["type"].as_str().unwrap_or("status");
        status[kind]["name"].as_str().unwrap_or_default().to_owned()
    }

    /// Answer headings on the page.
    pub fn answers(&self, page: &str) -> usize {
        self.sandbox
            .blocks(page)
            .iter()
            .filter(|b| {
                b["type"] == "heading_2"
                    && b["heading_2"]["rich_text"][0]["plain_text"].as_str().unwrap_or("").starts_with("Answer")
            })
            .count()
    }

    /// Complete answers (footers) on the page.
    pub fn footers(&self, page: &str) -> Vec<String> {
        self.sandbox
            .blocks(page)
            .iter()
            .filter(|b| b["type"] == "paragraph" && b["paragraph"]["rich_text"][0]["plain_text"] == "notion-llm")
            .map(|b| {
                let items = b["paragraph"]["rich_text"].as_array().cloned().unwrap_or_default();
                items.iter().skip(1).filter_map(|item| item["plain_text"].as_str()).collect::<String>()
            })
            .collect()
    }
}

/// A store that counts the requests made of it, as DynamoDB would bill them: reads (`GetItem`,
/// `Scan`) and writes (`PutItem`, `UpdateItem`, `DeleteItem`).
pub struct CountingStore {
    pub inner: Arc<dyn Store>,
    pub reads: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, reads: Default::default(), writes: Default::default() }
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl JobLedger for CountingStore {
    async fn get_job(&self, page_id: &str) -> cloud_fn::store::StoreResult<Option<cloud_fn::store::JobRecord>> {
        self.read();
        self.inner.get_job(page_id).await
    }

    async fn put_job(
        &self,
        job: &mut cloud_fn::store::JobRecord,
    ) -> cloud_fn::store::StoreResult<cloud_fn::store::JobWrite> {
        self.write();
        self.inner.put_job(job).await
    }

    async fn job_stats(&self, now: i64) -> cloud_fn::store::StoreResult<cloud_fn::store::JobStats> {
        self.read();
        self.inner.job_stats(now).await
    }
}

#[async_trait]
impl ContextStore for CountingStore {
    async fn put_context(
        &self,
        tag: &str,
        context: &cloud_fn::store::CachedContext,
    ) -> cloud_fn::store::StoreResult<bool> {
        self.write();
        self.inner.put_context(tag, context).await
    }

    async fn get_context(
        &self,
        tag: &str,
        now: i64,
    ) -> cloud_fn::store::StoreResult<Option<cloud_fn::store::CachedContext>> {
        self.read();
        self.inner.get_context(tag, now).await
    }
}

#[async_trait]
impl TemplateStore for CountingStore {
    async fn put_template(&self, template: &cloud_fn::store::Template) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.put_template(template).await
    }

    async fn templates(&self) -> cloud_fn::store::StoreResult<Vec<cloud_fn::store::Template>> {
        self.read();
        self.inner.templates().await
    }
}

#[async_trait]
impl WebhookLog for CountingStore {
    async fn remember_event(&self, id: &str, expires_at: i64, now: i64) -> cloud_fn::store::StoreResult<bool> {
        self.write();
        self.inner.remember_event(id, expires_at, now).await
    }

    async fn forget_event(&self, id: &str) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.forget_event(id).await
    }

    async fn put_webhook_token(&self, token: &str) -> cloud_fn::store::StoreResult<bool> {
        self.write();
        self.inner.put_webhook_token(token).await
    }

    async fn webhook_token(&self) -> cloud_fn::store::StoreResult<Option<String>> {
        self.read();
        self.inner.webhook_token().await
    }

    async fn delete_webhook_token(&self) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.delete_webhook_token().await
    }
}

#[async_trait]
impl ConnectionRegistry for CountingStore {
    async fn put_connection(&self, connection: &cloud_fn::store::AgentConnection) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.put_connection(connection).await
    }

    async fn touch_connection(&self, id: &str, agent: Option<&str>, now: i64) -> cloud_fn::store::StoreResult<bool> {
        self.write();
        self.inner.touch_connection(id, agent, now).await
    }

    async fn remove_connection(&self, id: &str) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.remove_connection(id).await
    }

    async fn connections(&self) -> cloud_fn::store::StoreResult<Vec<cloud_fn::store::AgentConnection>> {
        self.read();
        self.inner.connections().await
    }

    async fn remove_stale_connection(&self, id: &str, seen_before: i64) -> cloud_fn::store::StoreResult<bool> {
        self.write();
        self.inner.remove_stale_connection(id, seen_before).await
    }
}

#[async_trait]
impl Mailbox for CountingStore {
    async fn put_reply(&self, id: &str, reply: &str, expires_at: i64) -> cloud_fn::store::StoreResult<()> {
        self.write();
        self.inner.put_reply(id, reply, expires_at).await
    }

    async fn get_reply(&self, id: &str, now: i64) -> cloud_fn::store::StoreResult<Option<String>> {
        self.read();
        self.inner.get_reply(id, now).await
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn sweep_expired(&self, now: i64) -> cloud_fn::store::StoreResult<usize> {
        self.write();
        self.inner.sweep_expired(now).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
