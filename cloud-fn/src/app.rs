//! Wiring: builds the pipeline and its adapters from the configuration, and the self-hosted
//! service around it ([`SelfHosted`], what `cloud-fn serve` runs; the Lambda front's
//! counterpart is [`crate::lambda::Services`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use notion::{ClientOptions, NotionClient};

use crate::agent::{AgentLink, OfflineLink};
use crate::clock::{Clock, SystemClock};
use crate::config::{CloudConfig, ConfigError};
use crate::context::ContextBuilder;
use crate::llm::{Llm, LlmSetupError, OpenRouter, OpenRouterOptions};
use crate::pipeline::Pipeline;
use crate::server::{self, ApiAccess, ServerSettings, ServerState};
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};
use crate::telemetry::webhook::{AlertError, Alerts, WebhookNotifier};
use crate::tunnel::hub::Hub;
use crate::tunnel::websocket::{AgentSettings, agent_endpoint};

/// Why the program could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Notion client could not be created (a base URL it refuses).
    #[error(transparent)]
    Notion(#[from] notion::NotionError),
    /// The LLM client could not be created.
    #[error(transparent)]
    Llm(#[from] LlmSetupError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert webhook cannot be used.
    #[error(transparent)]
    Alerts(#[from] AlertError),
}

/// The Notion client the configuration describes.
pub fn notion_client(config: &CloudConfig) -> Result<NotionClient, BuildError> {
    let key = config.notion_key()?;
    let options = ClientOptions {
        base_url: config.notion_base_url.clone(),
        version: config.notion_version.clone(),
        requests_per_second: config.notion_rate_limit,
        burst: config.notion_rate_burst,
        allow_insecure: config.allow_insecure,
        ..ClientOptions::default()
    };
    Ok(NotionClient::new(key.expose(), options)?)
}

/// Deadlines of every AWS SDK call (DynamoDB, the API Gateway management API): an attempt
/// that hangs is cut and retried, and the whole call gives up well within a Lambda's timeout
/// or an agent request's deadline.
pub fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .operation_timeout(std::time::Duration::from_secs(15))
        .build()
}

/// The store the configuration asks for: DynamoDB when `DYNAMODB_TABLE` is set, else the
/// embedded store under `DATA_DIR`.
pub async fn store(config: &CloudConfig) -> Result<Arc<dyn Store>, BuildError> {
    Ok(match &config.dynamodb_table {
        Some(table) => Arc::new(DynamoStore::from_env(table.clone()).await),
        None => Arc::new(EmbeddedStore::open(&config.data_dir.join("cloud-store.redb"))?),
    })
}

/// The LLM, if a key is configured.
pub fn llm(config: &CloudConfig) -> Result<Option<Arc<dyn Llm>>, BuildError> {
    let Some(key) = &config.openrouter_api_key else { return Ok(None) };
    let options = OpenRouterOptions {
        base_url: config.openrouter_base_url.clone(),
        models: config.llm_models.clone(),
        timeout: config.llm_timeout,
        allow_insecure: config.allow_insecure,
        ..OpenRouterOptions::default()
    };
    let client = OpenRouter::new(key.expose(), options)?;
    Ok(Some(Arc::new(client)))
}

/// The pipeline on the configured store, with `link` to the agent (or [`OfflineLink`]) and the
/// system clock.
pub async fn pipeline(config: &CloudConfig, link: Option<Arc<dyn AgentLink>>) -> Result<Arc<Pipeline>, BuildError> {
    let store = store(config).await?;
    let link = link.unwrap_or_else(|| Arc::new(OfflineLink));
    pipeline_with(config, store, link, Arc::new(SystemClock))
}

/// The pipeline on adapters the caller built (the Lambda front builds its own store and link).
pub fn pipeline_with(
    config: &CloudConfig,
    store: Arc<dyn Store>,
    link: Arc<dyn AgentLink>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Pipeline>, BuildError> {
    let (_, database) = config.notion()?;
    let notion = notion_client(config)?;
    // LOCAL_RAG_ENABLED=false: agents may still connect (and push their caches), but no
    // question asks one.
    let link = if config.local_rag_enabled { link } else { Arc::new(OfflineLink) };
    let context = ContextBuilder::new(link, store.clone(), clock.clone(), config.ladder);
    Ok(Arc::new(Pipeline::new(notion, database, llm(config)?, store, context, clock, config.pipeline.clone())))
}

/// The self-hosted service, `cloud-fn serve`: the pipeline with the hub as its agent link, the
/// HTTP API, and the agents' `/agent` route, in one router.
pub struct SelfHosted {
    /// The agents connected to `/agent`: the pipeline's link.
    pub hub: Arc<Hub>,
    /// The HTTP front's state (runs, the last report).
    pub state: Arc<ServerState>,
    /// Everything the server answers: the API and `/agent`.
    pub router: Router,
    /// Alerts to a webhook, when one is configured.
    pub alerts: Option<Arc<Alerts>>,
    pipeline: Arc<Pipeline>,
}

/// How often `serve` looks at the agents and the alert conditions.
const ALERT_CHECK_INTERVAL: Duration = Duration::from_secs(15);

impl SelfHosted {
    /// Built from the configuration, with the configured store and the system clock; `access`
    /// guards the API (`serve` decides it from `CLOUD_API_KEY` and `--insecure-no-auth`).
    pub async fn from_config(config: &CloudConfig, access: ApiAccess) -> Result<Self, BuildError> {
        let store = store(config).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (hub, agents) = agent_endpoint(&AgentSettings::from_config(config), store.clone(), clock.clone());
        let pipeline = pipeline_with(config, store, hub.clone(), clock.clone())?;
        let settings = ServerSettings { access, ..ServerSettings::from_config(config) };
        let service = Self::around(hub, agents, pipeline, settings);
        Ok(match &config.alert_webhook_url {
            Some(url) => {
                let notifier = Arc::new(WebhookNotifier::new(url.clone(), config.allow_insecure)?);
                service.alerted_by(Alerts::new(config.alert_rules.clone(), notifier, clock))
            }
            None => service,
        })
    }

    /// Around a pipeline built elsewhere (tests build theirs on the Notion sandbox). `hub` and
    /// `agents` come from [`agent_endpoint`], and `hub` must be the pipeline's link.
    pub fn around(hub: Arc<Hub>, agents: Router, pipeline: Arc<Pipeline>, settings: ServerSettings) -> Self {
        let state = ServerState::new(pipeline.clone(), settings);
        let router = server::router(state.clone()).merge(agents);
        Self { hub, state, router, alerts: None, pipeline }
    }

    /// Sends `alerts` what every run does, and (while serving) the live agents.
    pub fn alerted_by(mut self, alerts: Arc<Alerts>) -> Self {
        self.pipeline.observe_runs(alerts.clone());
        self.alerts = Some(alerts);
        self
    }

    /// Serves on `listener` (plain or TLS), answering questions every `poll_interval`, until
    /// `shutdown` completes.
    pub async fn serve<L>(
        self,
        listener: L,
        poll_interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
    {
        let watch = self.alerts.map(|alerts| {
            let hub = self.hub.clone();
            tokio::spawn(alerts.watch(ALERT_CHECK_INTERVAL, move || hub.agents().len()))
        });
        let served = server::serve(listener, self.router, self.state, poll_interval, shutdown).await;
        if let Some(watch) = watch {
            watch.abort();
        }
        served
    }
}
