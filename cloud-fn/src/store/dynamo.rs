//! The AWS store: one DynamoDB table, partition key `pk` (string), items under the design's
//! keys. Each item keeps its record as JSON in `data`; jobs also carry `version` (the
//! condition of every job write) and `status`, context items `expires_at` (the table's TTL
//! attribute — which DynamoDB honours up to days late, so reads check it too).
//!
//! Agent connections are the exception: they live as map attributes `conn#<id>` of one item,
//! `agents`, so listing them is one consistent `GetItem` instead of a `Scan` of the whole table
//! (which every request to the agent would otherwise pay), and each connection is still
//! written, touched and removed by its own atomic `UpdateItem`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AgentConnection, CachedContext, ConnectionRegistry, ContextStore, JobLedger, JobRecord, JobStats, JobWrite,
    Mailbox, Store, StoreError, StoreResult, Template, TemplateStore, WEBHOOK_TOKEN_KEY, WebhookLog, connection_key,
    context_key, event_key, job_key, reply_key, template_key,
};

/// Key of the item holding every agent connection.
const AGENTS_KEY: &str = "agents";

/// A DynamoDB-backed store.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn backend(error: impl ProvideErrorMetadata + std::fmt::Display) -> StoreError {
    // The SDK's Display is terse ("service error"); the code and message say what happened.
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => StoreError::Backend(format!("{code}: {message}")),
        (Some(code), None) => StoreError::Backend(code.to_owned()),
        _ => StoreError::Backend(error.to_string()),
    }
}

impl DynamoStore {
    /// A store on `table`, with a client configured by the caller.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// A store on `table`, configured from the environment (region, credentials, and
    /// `AWS_ENDPOINT_URL` for a stand-in).
    pub async fn from_env(table: impl Into<String>) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(crate::app::aws_timeouts())
            .load()
            .await;
        Self::new(Client::new(&config), table)
    }

    /// Creates the table if it does not exist (on AWS, `template.yaml` does this; tests and
    /// first runs against a stand-in use it), and waits until it is active.
    pub async fn ensure_table(&self) -> StoreResult<()> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|error| StoreError::Backend(error.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|error| StoreError::Backend(error.to_string()))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(error) = created
            && !error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception())
        {
            return Err(backend(error));
        }
        for _ in 0..100 {
            let description = self.client.describe_table().table_name(&self.table).send().await.map_err(backend)?;
            if description.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(StoreError::Backend(format!("table {} did not become active", self.table)))
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(output.item)
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T, extra: Item) -> StoreResult<()> {
        let mut item = item(key, value)?;
        item.extend(extra);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(backend)?;
        Ok(())
    }

    async fn scan<T: DeserializeOwned>(&self, prefix: &str) -> StoreResult<Vec<T>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for found in output.items() {
                items.push(decode(found)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// The outcome of a conditional write: `false` when its condition did not hold.
fn written<T, E: ProvideErrorMetadata + std::fmt::Display>(result: Result<T, E>) -> StoreResult<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(error) => Err(backend(error)),
    }
}

fn item<T: Serialize>(key: &str, value: &T) -> StoreResult<Item> {
    let data = serde_json::to_string(value).map_err(|error| StoreError::Backend(error.to_string()))?;
    Ok(HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.to_owned())),
        ("data".to_owned(), AttributeValue::S(data)),
    ]))
}

fn decode<T: DeserializeOwned>(item: &Item) -> StoreResult<T> {
    let key = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let data = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt { key: key.clone(), message: "no data attribute".into() })?;
    serde_json::from_str(data).map_err(|error| StoreError::Corrupt { key, message: error.to_string() })
}

#[async_trait]
impl JobLedger for DynamoStore {
    async fn get_job(&self, page_id: &str) -> StoreResult<Option<JobRecord>> {
        self.get(&job_key(page_id)).await?.as_ref().map(decode).transpose()
    }

    async fn put_job(&self, job: &mut JobRecord) -> StoreResult<JobWrite> {
        let expected = job.version;
        let next = JobRecord { version: expected + 1, ..job.clone() };
        let mut item = item(&job_key(&next.page_id), &next)?;
        item.insert("version".into(), AttributeValue::N(next.version.to_string()));
        item.insert("status".into(), AttributeValue::S(next.status.as_str().to_owned()));
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = match expected {
            0 => request.condition_expression("attribute_not_exists(pk)"),
            version => request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        Ok(if written(request.send().await)? {
            job.version = next.version;
            JobWrite::Written
        } else {
            JobWrite::Conflict
        })
    }

    async fn job_stats(&self, now: i64) -> StoreResult<JobStats> {
        Ok(JobStats::of(&self.scan::<JobRecord>("job#").await?, now))
    }
}

#[async_trait]
impl ContextStore for DynamoStore {
    async fn put_context(&self, tag: &str, context: &CachedContext) -> StoreResult<bool> {
        let mut item = item(&context_key(tag), context)?;
        item.insert("expires_at".into(), AttributeValue::N(context.expires_at.to_string()));
        item.insert("updated_at".into(), AttributeValue::N(context.updated_at.to_string()));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(updated_at) OR updated_at <= :updated")
            .expression_attribute_values(":updated", AttributeValue::N(context.updated_at.to_string()));
        written(request.send().await)
    }

    async fn get_context(&self, tag: &str, now: i64) -> StoreResult<Option<CachedContext>> {
        let context: Option<CachedContext> = self.get(&context_key(tag)).await?.as_ref().map(decode).transpose()?;
        Ok(context.filter(|context| context.expires_at > now))
    }
}

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn put_template(&self, template: &Template) -> StoreResult<()> {
        self.put(&template_key(&template.name), template, HashMap::new()).await
    }

    async fn templates(&self) -> StoreResult<Vec<Template>> {
        self.scan("tpl#").await
    }
}

#[async_trait]
impl WebhookLog for DynamoStore {
    async fn remember_event(&self, event_id: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(event_key(event_id))),
            ("expires_at".to_owned(), AttributeValue::N(expires_at.to_string())),
        ]);
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // TTL deletes late: an expired record counts as absent.
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        written(request)
    }

    async fn forget_event(&self, event_id: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(event_key(event_id)))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn put_webhook_token(&self, token: &str) -> StoreResult<bool> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(WEBHOOK_TOKEN_KEY, &token)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        written(request)
    }

    async fn webhook_token(&self) -> StoreResult<Option<String>> {
        self.get(WEBHOOK_TOKEN_KEY).await?.as_ref().map(decode).transpose()
    }

    async fn delete_webhook_token(&self) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(WEBHOOK_TOKEN_KEY.into()))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoStore {
    async fn put_connection(&self, connection: &AgentConnection) -> StoreResult<()> {
        let record = HashMap::from([
            ("agent_id".to_owned(), AttributeValue::S(connection.agent_id.clone())),
            ("connected_at".to_owned(), AttributeValue::N(connection.connected_at.to_string())),
            ("last_seen".to_owned(), AttributeValue::N(connection.last_seen.to_string())),
        ]);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(AGENTS_KEY.into()))
            .update_expression("SET #c = :record")
            .expression_attribute_names("#c", connection_key(&connection.connection_id))
            .expression_attribute_values(":record", AttributeValue::M(record))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn touch_connection(&self, connection_id: &str, agent_id: Option<&str>, now: i64) -> StoreResult<bool> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(AGENTS_KEY.into()))
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#c", connection_key(connection_id))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        request = match agent_id {
            Some(agent_id) => request
                .update_expression("SET #c.last_seen = :now, #c.agent_id = :agent")
                .expression_attribute_values(":agent", AttributeValue::S(agent_id.to_owned())),
            None => request.update_expression("SET #c.last_seen = :now"),
        };
        written(request.send().await)
    }

    async fn remove_connection(&self, connection_id: &str) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(AGENTS_KEY.into()))
            .update_expression("REMOVE #c")
            .expression_attribute_names("#c", connection_key(connection_id))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn connections(&self) -> StoreResult<Vec<AgentConnection>> {
        let Some(item) = self.get(AGENTS_KEY).await? else { return Ok(Vec::new()) };
        let number = |record: &HashMap<String, AttributeValue>, name: &str| {
            record.get(name).and_then(|value| value.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0)
        };
        Ok(item
            .iter()
            .filter_map(|(name, value)| {
                let connection_id = name.strip_prefix("conn#")?;
                let record = value.as_m().ok()?;
                Some(AgentConnection {
                    connection_id: connection_id.to_owned(),
                    agent_id: record.get("agent_id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
                    connected_at: number(record, "connected_at"),
                    last_seen: number(record, "last_seen"),
                })
            })
            .collect())
    }

    async fn remove_stale_connection(&self, connection_id: &str, seen_before: i64) -> StoreResult<bool> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(AGENTS_KEY.into()))
            .update_expression("REMOVE #c")
            .condition_expression("#c.last_seen < :before")
            .expression_attribute_names("#c", connection_key(connection_id))
            .expression_attribute_values(":before", AttributeValue::N(seen_before.to_string()))
            .send()
            .await;
        written(request)
    }
}

#[async_trait]
impl Mailbox for DynamoStore {
    async fn put_reply(&self, request_id: &str, reply: &str, expires_at: i64) -> StoreResult<()> {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(reply_key(request_id))),
            ("body".to_owned(), AttributeValue::S(reply.to_owned())),
            ("expires_at".to_owned(), AttributeValue::N(expires_at.to_string())),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(backend)?;
        Ok(())
    }

    async fn get_reply(&self, request_id: &str, now: i64) -> StoreResult<Option<String>> {
        let Some(item) = self.get(&reply_key(request_id)).await? else { return Ok(None) };
        let expires_at =
            item.get("expires_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        if expires_at <= now {
            return Ok(None);
        }
        Ok(item.get("body").and_then(|v| v.as_s().ok()).cloned())
    }
}

#[async_trait]
impl Store for DynamoStore {
    /// DynamoDB's TTL on `expires_at` deletes expired items (up to days late; reads check the
    /// expiry themselves), so there is nothing to do and no `Scan` to pay for.
    async fn sweep_expired(&self, _now: i64) -> StoreResult<usize> {
        Ok(0)
    }

    fn kind(&self) -> &'static str {
        "dynamodb"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::contract;

    /// A store on a fresh table in a dynalite started for this test.
    pub(crate) async fn dynalite_store() -> (testkit::Dynalite, DynamoStore) {
        let dynalite = testkit::Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
        let store = DynamoStore::new(Client::new(&testkit::aws::sdk_config(&dynalite.url())), "notion-llm-test");
        store.ensure_table().await.unwrap();
        store.ensure_table().await.unwrap(); // idempotent
        (dynalite, store)
    }

    #[tokio::test]
    async fn satisfies_the_store_contract_against_dynalite() {
        let (_dynalite, store) = dynalite_store().await;
        contract::jobs_are_written_once_and_then_only_by_version(&store).await;
        contract::expired_context_is_ignored(&store).await;
        contract::an_older_context_never_replaces_a_newer_one(&store).await;
        contract::templates_round_trip(&store).await;
        contract::connections_are_tracked_by_last_seen(&store).await;
        contract::replies_wait_for_their_reader_until_they_expire(&store).await;
        contract::webhook_events_are_handled_once(&store).await;
        contract::stale_connections_are_pruned(&store).await;
        contract::sweeping_keeps_what_is_live(&store, true).await;
        contract::concurrent_claims_have_one_winner(Arc::new(store)).await;
    }
}
