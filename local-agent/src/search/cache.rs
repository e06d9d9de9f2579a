//! A small LRU cache of answers with a time-to-live. It is tied to one index generation and
//! cleared when the index changes, so it never serves results from an older index.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

/// LRU + TTL map from a request's canonical form to its answer.
pub struct QueryCache<V> {
    entries: LruCache<String, (Instant, V)>,
    ttl: Duration,
    generation: u64,
    hits: u64,
    misses: u64,
}

impl<V: Clone> QueryCache<V> {
    /// A cache of at most `capacity` answers, each valid for `ttl`. A capacity of zero disables it.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self { entries: LruCache::new(capacity), ttl, generation: 0, hits: 0, misses: 0 }
    }

    /// The answer for `key` under index `generation`, if cached and fresh.
    pub fn get(&mut self, key: &str, generation: u64) -> Option<V> {
        self.sync(generation);
        let fresh = match self.entries.get(key) {
            Some((stored, value)) if stored.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                self.entries.pop(key);
                None
            }
            None => None,
        };
        if fresh.is_some() {
            self.hits += 1
        } else {
            self.misses += 1
        }
        fresh
    }

    /// Remembers an answer computed under index `generation`.
    pub fn put(&mut self, key: String, generation: u64, value: V) {
        self.sync(generation);
        if !self.ttl.is_zero() {
            self.entries.put(key, (Instant::now(), value));
        }
    }

    /// Forgets every answer.
    pub fn clear(&mut self) -> usize {
        let count = self.entries.len();
        self.entries.clear();
        count
    }

    /// Cached answers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    fn sync(&mut self, generation: u64) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_expire_and_a_new_generation_clears() {
        let mut cache = QueryCache::new(2, Duration::from_secs(60));
        cache.put("a".into(), 1, 10);
        assert_eq!(cache.get("a", 1), Some(10));
        assert_eq!(cache.get("b", 1), None);
        assert_eq!(cache.counts(), (1, 1));
        assert_eq!(cache.get("a", 2), None, "a new index generation invalidates everything");
        cache.put("a".into(), 2, 1);
        cache.put("b".into(), 2, 2);
        cache.put("c".into(), 2, 3);
        assert_eq!(cache.get("a", 2), None, "least recently used is evicted");
        assert_eq!(cache.clear(), 2);

        let mut expiring = QueryCache::new(2, Duration::from_millis(1));
        expiring.put("a".into(), 1, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(expiring.get("a", 1), None);
        assert!(expiring.is_empty());
    }
}
