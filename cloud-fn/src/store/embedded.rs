//! The self-hosted store: one redb file, one table of JSON items under the design's keys.
//! redb transactions are serialisable, so every conditional write (a job's version, a webhook
//! token stored once, a connection touched only if it exists) is a read and a write in one
//! write transaction (`EmbeddedStore::modify`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AgentConnection, CachedContext, ConnectionRegistry, ContextStore, JobLedger, JobRecord, JobStats, JobWrite,
    Mailbox, Store, StoreError, StoreResult, Template, TemplateStore, WEBHOOK_TOKEN_KEY, WebhookLog, connection_key,
    context_key, event_key, job_key, reply_key, template_key,
};

/// A reply as the embedded store keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredReply {
    body: String,
    expires_at: i64,
}

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");

/// What a read-modify-write does with the item it read.
enum Change<T> {
    /// Leave it as it is (the condition did not hold).
    Keep,
    /// Write this in its place.
    Put(T),
    /// Delete it.
    Remove,
}

/// A redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, readable by its owner only (it holds the webhook's
    /// signing key), in a folder only the owner can enter.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            protocol::private_fs::create_private_dir(parent).map_err(backend)?;
        }
        let db = Database::create(path).map_err(backend)?;
        protocol::private_fs::make_private(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(ITEMS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(backend)?
    }

    fn read<T: DeserializeOwned>(db: &Database, key: &str) -> StoreResult<Option<T>> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(ITEMS).map_err(backend)?;
        let Some(bytes) = table.get(key).map_err(backend)? else { return Ok(None) };
        decode(key, bytes.value()).map(Some)
    }

    fn write<T: Serialize>(db: &Database, key: &str, value: &T) -> StoreResult<()> {
        let bytes = serde_json::to_vec(value).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(ITEMS).map_err(backend)?.insert(key, bytes.as_slice()).map_err(backend)?;
        txn.commit().map_err(backend)
    }

    fn remove(db: &Database, key: &str) -> StoreResult<()> {
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(ITEMS).map_err(backend)?.remove(key).map_err(backend)?;
        txn.commit().map_err(backend)
    }

    /// Reads the item at `key`, lets `decide` say what becomes of it, and does that, in one
    /// write transaction (redb serialises them, so nothing comes between the read and the
    /// write): the building block of every conditional write. Returns whether it wrote.
    fn modify<T: Serialize + DeserializeOwned>(
        db: &Database,
        key: &str,
        decide: impl FnOnce(Option<T>) -> Change<T>,
    ) -> StoreResult<bool> {
        let txn = db.begin_write().map_err(backend)?;
        {
            let mut table = txn.open_table(ITEMS).map_err(backend)?;
            let current: Option<T> = match table.get(key).map_err(backend)? {
                Some(bytes) => Some(decode(key, bytes.value())?),
                None => None,
            };
            match decide(current) {
                Change::Keep => return Ok(false),
                Change::Put(item) => {
                    let bytes = serde_json::to_vec(&item).map_err(backend)?;
                    table.insert(key, bytes.as_slice()).map_err(backend)?;
                }
                Change::Remove => {
                    table.remove(key).map_err(backend)?;
                }
            }
        }
        txn.commit().map_err(backend)?;
        Ok(true)
    }

    fn scan<T: DeserializeOwned>(db: &Database, prefix: &str) -> StoreResult<Vec<T>> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(ITEMS).map_err(backend)?;
        let mut items = Vec::new();
        for entry in table.range(prefix..).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            items.push(decode(key.value(), value.value())?);
        }
        Ok(items)
    }
}

/// When an item under `prefix` expires, as each kind stores it.
fn expires_at(prefix: &str, bytes: &[u8]) -> Option<i64> {
    match prefix {
        "ctx#" => serde_json::from_slice::<CachedContext>(bytes).ok().map(|context| context.expires_at),
        "reply#" => serde_json::from_slice::<StoredReply>(bytes).ok().map(|reply| reply.expires_at),
        "event#" => serde_json::from_slice::<i64>(bytes).ok(),
        _ => None,
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt { key: key.to_owned(), message: error.to_string() })
}

#[async_trait]
impl JobLedger for EmbeddedStore {
    async fn get_job(&self, page_id: &str) -> StoreResult<Option<JobRecord>> {
        let key = job_key(page_id);
        self.blocking(move |db| Self::read(db, &key)).await
    }

    async fn put_job(&self, job: &mut JobRecord) -> StoreResult<JobWrite> {
        let key = job_key(&job.page_id);
        let expected = job.version;
        let next = JobRecord { version: expected + 1, ..job.clone() };
        let written = self
            .blocking(move |db| {
                Self::modify(db, &key, |current: Option<JobRecord>| {
                    if current.map_or(0, |job| job.version) == expected { Change::Put(next) } else { Change::Keep }
                })
            })
            .await?;
        Ok(if written {
            job.version = expected + 1;
            JobWrite::Written
        } else {
            JobWrite::Conflict
        })
    }

    async fn job_stats(&self, now: i64) -> StoreResult<JobStats> {
        self.blocking(move |db| Ok(JobStats::of(&Self::scan::<JobRecord>(db, "job#")?, now))).await
    }
}

#[async_trait]
impl ContextStore for EmbeddedStore {
    async fn put_context(&self, tag: &str, context: &CachedContext) -> StoreResult<bool> {
        let (key, context) = (context_key(tag), context.clone());
        self.blocking(move |db| {
            Self::modify(db, &key, |stored: Option<CachedContext>| match stored {
                Some(stored) if stored.updated_at > context.updated_at => Change::Keep,
                _ => Change::Put(context),
            })
        })
        .await
    }

    async fn get_context(&self, tag: &str, now: i64) -> StoreResult<Option<CachedContext>> {
        let key = context_key(tag);
        let context: Option<CachedContext> = self.blocking(move |db| Self::read(db, &key)).await?;
        Ok(context.filter(|context| context.expires_at > now))
    }
}

#[async_trait]
impl TemplateStore for EmbeddedStore {
    async fn put_template(&self, template: &Template) -> StoreResult<()> {
        let (key, template) = (template_key(&template.name), template.clone());
        self.blocking(move |db| Self::write(db, &key, &template)).await
    }

    async fn templates(&self) -> StoreResult<Vec<Template>> {
        self.blocking(|db| Self::scan(db, "tpl#")).await
    }
}

#[async_trait]
impl WebhookLog for EmbeddedStore {
    async fn remember_event(&self, event_id: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
        let key = event_key(event_id);
        self.blocking(move |db| {
            Self::modify(db, &key, |seen: Option<i64>| {
                if seen.is_some_and(|until| until > now) { Change::Keep } else { Change::Put(expires_at) }
            })
        })
        .await
    }

    async fn forget_event(&self, event_id: &str) -> StoreResult<()> {
        let key = event_key(event_id);
        self.blocking(move |db| Self::remove(db, &key)).await
    }

    async fn put_webhook_token(&self, token: &str) -> StoreResult<bool> {
        let token = token.to_owned();
        self.blocking(move |db| {
            Self::modify(db, WEBHOOK_TOKEN_KEY, |stored: Option<String>| match stored {
                Some(_) => Change::Keep,
                None => Change::Put(token),
            })
        })
        .await
    }

    async fn webhook_token(&self) -> StoreResult<Option<String>> {
        self.blocking(|db| Self::read(db, WEBHOOK_TOKEN_KEY)).await
    }

    async fn delete_webhook_token(&self) -> StoreResult<()> {
        self.blocking(|db| Self::remove(db, WEBHOOK_TOKEN_KEY)).await
    }
}

#[async_trait]
impl ConnectionRegistry for EmbeddedStore {
    async fn put_connection(&self, connection: &AgentConnection) -> StoreResult<()> {
        let (key, connection) = (connection_key(&connection.connection_id), connection.clone());
        self.blocking(move |db| Self::write(db, &key, &connection)).await
    }

    async fn touch_connection(&self, connection_id: &str, agent_id: Option<&str>, now: i64) -> StoreResult<bool> {
        let key = connection_key(connection_id);
        let agent_id = agent_id.map(str::to_owned);
        // In one transaction, so a concurrent remove is not undone.
        self.blocking(move |db| {
            Self::modify(db, &key, |current: Option<AgentConnection>| {
                let Some(mut connection) = current else { return Change::Keep };
                connection.last_seen = connection.last_seen.max(now);
                if let Some(agent_id) = agent_id {
                    connection.agent_id = agent_id;
                }
                Change::Put(connection)
            })
        })
        .await
    }

    async fn remove_connection(&self, connection_id: &str) -> StoreResult<()> {
        let key = connection_key(connection_id);
        self.blocking(move |db| Self::remove(db, &key)).await
    }

    async fn connections(&self) -> StoreResult<Vec<AgentConnection>> {
        self.blocking(|db| Self::scan(db, "conn#")).await
    }

    async fn remove_stale_connection(&self, connection_id: &str, seen_before: i64) -> StoreResult<bool> {
        let key = connection_key(connection_id);
        self.blocking(move |db| {
            Self::modify(db, &key, |current: Option<AgentConnection>| match current {
                Some(connection) if connection.last_seen < seen_before => Change::Remove,
                _ => Change::Keep,
            })
        })
        .await
    }
}

#[async_trait]
impl Mailbox for EmbeddedStore {
    async fn put_reply(&self, request_id: &str, reply: &str, expires_at: i64) -> StoreResult<()> {
        let key = reply_key(request_id);
        let reply = StoredReply { body: reply.to_owned(), expires_at };
        self.blocking(move |db| Self::write(db, &key, &reply)).await
    }

    async fn get_reply(&self, request_id: &str, now: i64) -> StoreResult<Option<String>> {
        let key = reply_key(request_id);
        let reply: Option<StoredReply> = self.blocking(move |db| Self::read(db, &key)).await?;
        Ok(reply.filter(|reply| reply.expires_at > now).map(|reply| reply.body))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn sweep_expired(&self, now: i64) -> StoreResult<usize> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let removed = {
                let mut table = txn.open_table(ITEMS).map_err(backend)?;
                let mut expired = Vec::new();
                for prefix in ["ctx#", "event#", "reply#"] {
                    for entry in table.range(prefix..).map_err(backend)? {
                        let (key, value) = entry.map_err(backend)?;
                        let key = key.value();
                        if !key.starts_with(prefix) {
                            break;
                        }
                        // An unreadable item is left for a person to look at, not deleted.
                        if expires_at(prefix, value.value()).is_some_and(|at| at <= now) {
                            expired.push(key.to_owned());
                        }
                    }
                }
                for key in &expired {
                    table.remove(key.as_str()).map_err(backend)?;
                }
                expired.len()
            };
            txn.commit().map_err(backend)?;
            Ok(removed)
        })
        .await
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn store() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn satisfies_the_store_contract() {
        let (_dir, store) = store();
        contract::jobs_are_written_once_and_then_only_by_version(&store).await;
        contract::expired_context_is_ignored(&store).await;
        contract::an_older_context_never_replaces_a_newer_one(&store).await;
        contract::templates_round_trip(&store).await;
        contract::connections_are_tracked_by_last_seen(&store).await;
        contract::replies_wait_for_their_reader_until_they_expire(&store).await;
        contract::webhook_events_are_handled_once(&store).await;
        contract::stale_connections_are_pruned(&store).await;
        contract::sweeping_keeps_what_is_live(&store, false).await;
        contract::concurrent_claims_have_one_winner(Arc::new(store)).await;
    }

    #[cfg(unix)]
    #[test]
    fn the_store_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud").join("store.redb");
        EmbeddedStore::open(&path).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(path.parent().unwrap()), mode(&path)), (0o700, 0o600));
    }

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let template =
            Template { name: "t".into(), tags: vec![], system_prompt: "p".into(), fallback_context: String::new() };
        EmbeddedStore::open(&path).unwrap().put_template(&template).await.unwrap();
        assert_eq!(EmbeddedStore::open(&path).unwrap().templates().await.unwrap(), [template]);
    }
}
