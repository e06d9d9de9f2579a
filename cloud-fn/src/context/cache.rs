//! The context kept per tag for when the agent is offline: one type owns how it is written,
//! read, and what may replace what.
//!
//! Two writers fill it: the ladder, with what the agent answered to a real question (under each
//! of the question's tags, or `_all` for an untagged one), and the tunnel, with the context the
//! agent pushes per tag after each re-index. The newest wins by when the agent *built* it, not by
//! when it arrived (the store refuses an older record over a newer one), and an empty context
//! is never remembered: it would hide the template fallback behind a `cached` label.

use std::sync::Arc;
use std::time::Duration;

use protocol::tunnel::CachePush;

use crate::clock::Clock;
use crate::store::{CachedContext, ContextStore, StoreResult};

/// Cache key of untagged questions.
pub const UNTAGGED: &str = "_all";

/// The per-tag context cache over a store.
#[derive(Clone)]
pub struct ContextCache {
    store: Arc<dyn ContextStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
}

impl ContextCache {
    /// A cache in `store` whose entries are usable for `ttl`.
    pub fn new(store: Arc<dyn ContextStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self { store, clock, ttl }
    }

    /// The keys a question tagged `tags` is cached under.
    pub fn keys(tags: &[String]) -> Vec<String> {
        if tags.is_empty() { vec![UNTAGGED.to_owned()] } else { tags.to_vec() }
    }

    /// Remembers what the agent answered to a question tagged `tags` (failures are logged: the
    /// answer goes on without the cache).
    pub async fn remember_answer(&self, tags: &[String], context: &str, sources: &[String]) {
        let now = self.clock.now();
        for key in Self::keys(tags) {
            if let Err(error) = self.remember(&key, context, sources, now).await {
                tracing::warn!(%error, tag = key, "could not cache the agent's context");
            }
        }
    }

    /// Remembers the context the agent pushed for one tag; its build time is trusted only up
    /// to now (an agent's clock may run ahead). Returns whether it was kept.
    pub async fn remember_push(&self, push: &CachePush) -> StoreResult<bool> {
        let built = push.updated_at.min(self.clock.now());
        self.remember(&push.tag, &push.context, &push.sources, built).await
    }

    async fn remember(&self, tag: &str, context: &str, sources: &[String], built: i64) -> StoreResult<bool> {
        if context.trim().is_empty() {
            return Ok(false);
        }
        let record = CachedContext {
            context: context.to_owned(),
            sources: sources.to_vec(),
            updated_at: built,
            expires_at: self.clock.now() + self.ttl.as_secs() as i64,
        };
        self.store.put_context(tag, &record).await
    }

    /// The context for a question tagged `tags`: the first of its keys with a usable entry.
    pub async fn recall(&self, tags: &[String]) -> StoreResult<Option<CachedContext>> {
        let now = self.clock.now();
        for key in Self::keys(tags) {
            if let Some(cached) = self.store.get_context(&key, now).await? {
                return Ok(Some(cached));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::embedded::EmbeddedStore;

    fn push(tag: &str, context: &str, updated_at: i64) -> CachePush {
        CachePush { tag: tag.into(), context: context.into(), sources: vec!["a.md".into()], updated_at }
    }

    #[tokio::test]
    async fn the_newest_context_wins_and_an_empty_one_is_never_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ContextStore> = Arc::new(EmbeddedStore::open(&dir.path().join("cloud.redb")).unwrap());
        let clock = Arc::new(ManualClock::new());
        let start = clock.now();
        let cache = ContextCache::new(store, clock.clone(), Duration::from_secs(3600));
        let rust = vec!["Rust".to_owned()];

        cache.remember_answer(&rust, "[1] from an answer", &["b.md".into()]).await;
        // A push the agent built before that answer arrives late: the answer stays.
        assert!(!cache.remember_push(&push("rust", "[1] an older push", start - 100)).await.unwrap());
        assert_eq!(cache.recall(&rust).await.unwrap().unwrap().context, "[1] from an answer");

        clock.advance(10);
        assert!(cache.remember_push(&push("RUST", "[1] a newer push", start + 10)).await.unwrap());
        assert_eq!(cache.recall(&rust).await.unwrap().unwrap().context, "[1] a newer push");

        // An agent with nothing to say leaves what was cached alone.
        clock.advance(10);
        cache.remember_answer(&rust, "  ", &[]).await;
        assert!(!cache.remember_push(&push("rust", "", start + 20)).await.unwrap());
        assert_eq!(cache.recall(&rust).await.unwrap().unwrap().context, "[1] a newer push");
        assert_eq!(cache.recall(&[]).await.unwrap(), None, "untagged questions have their own entry");
    }
}
