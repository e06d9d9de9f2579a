//! Wiring: builds the pipeline and its adapters from the configuration.

use std::sync::Arc;

use notion::{ClientOptions, NotionClient};

use crate::agent::{AgentLink, OfflineLink};
use crate::clock::{Clock, SystemClock};
use crate::config::{CloudConfig, ConfigError};
use crate::context::ContextBuilder;
use crate::llm::{Llm, OpenRouter, OpenRouterOptions};
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;

/// Why the program could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A client could not be created.
    #[error("{0}")]
    Client(String),
}

/// The Notion client the configuration describes.
pub fn notion_client(config: &CloudConfig) -> Result<NotionClient, BuildError> {
    let (key, _) = config.notion()?;
    let options = ClientOptions {
        base_url: config.notion_base_url.clone(),
        version: config.notion_version.clone(),
        requests_per_second: config.notion_rate_limit,
        allow_insecure: config.allow_insecure,
        ..ClientOptions::default()
    };
    NotionClient::new(key.expose(), options).map_err(|error| BuildError::Client(error.to_string()))
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
        None => Arc::new(
            EmbeddedStore::open(&config.data_dir.join("cloud-store.redb"))
                .map_err(|error| BuildError::Client(error.to_string()))?,
        ),
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
    let client = OpenRouter::new(key.expose(), options).map_err(|error| BuildError::Client(error.to_string()))?;
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
    let context = ContextBuilder::new(link, store.clone(), clock.clone(), config.ladder);
    Ok(Arc::new(Pipeline::new(notion, database, llm(config)?, store, context, clock, config.pipeline.clone())))
}
