//! Hybrid retrieval over the live index.
//!
//! A search runs BM25 and dense search, collapses each list to one entry per document (its
//! best chunk), fuses the two document lists by their min-max normalised scores
//! ([`fusion`]; reciprocal-rank fusion on request), and scores the
//! survivors for the similarity threshold. The dense list's weight is scaled by how much of the
//! query the model can read (its `visibility`, the share of non-`[UNK]` tokens: none below 60 %,
//! full from 95 %, see `rank.rs`): an English model asked a Chinese question does not count,
//! and fusion does not do worse than BM25 alone. The reply's `fusion` says what counted.
//!
//! `similarity_score` is a calibrated 0..=1 relevance, not the fused rank score:
//! the larger of the passage's cosine similarity to the query (scaled by the same
//! visibility) and its keyword coverage, the IDF-weighted share of query terms it contains.
//! A threshold of 0.3 therefore keeps passages that either mean the same thing or share the
//! query's informative words.
//!
//! Tags narrow, they never empty: the documents carrying a request's tags are ranked first
//! (`rank.rs`, with both retrievers filtered), and the best of the others fill the places left.

pub mod admission;
pub mod cache;
pub mod context;
pub mod fusion;
mod rank;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use protocol::{ContextRequest, ContextResponse, Fusion, SearchHit, SearchMode, SearchRequest, SearchResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::admission::Admission;
use self::cache::QueryCache;
use self::context::{Passage, Piece, build_context};
use self::fusion::FusionMethod;
use self::rank::{Hit, QueryView, rank};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::generations::IndexDir;
use crate::index::snapshot::Snapshot;
use crate::index::text::{analyze, analyzer};

/// Retrieval knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    /// How the keyword and dense lists are combined: `scores` (normalised scores, the default)
    /// or `rrf` (ranks).
    pub fusion: FusionMethod,
    /// RRF constant (with `fusion = "rrf"`).
    pub rrf_k: f32,
    /// Weight of the BM25 list.
    pub keyword_weight: f32,
    /// Weight of the dense list (before scaling by query visibility).
    pub semantic_weight: f32,
    /// Weight of a keyword match in a chunk's title line (note title › headings) against one
    /// in its text; 0 turns the title field off.
    pub title_boost: f32,
    /// Chunks taken from each retriever before fusion (at least 3× the results asked for).
    pub candidates: usize,
    /// Characters of context returned with search results.
    pub context_chars: usize,
    /// Characters of a result's `content_snippet`.
    pub snippet_chars: usize,
    /// Cached answers (0 disables the cache).
    pub cache_capacity: usize,
    /// How long a cached answer stays valid, in seconds.
    pub cache_ttl_secs: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            fusion: FusionMethod::default(),
            rrf_k: fusion::DEFAULT_K,
            keyword_weight: 1.0,
            semantic_weight: 1.0,
            title_boost: crate::index::text::TITLE_BOOST,
            candidates: 100,
            context_chars: 2000,
            snippet_chars: 300,
            cache_capacity: 1024,
            cache_ttl_secs: 300,
        }
    }
}

#[derive(Clone)]
enum Answer {
    Search(Vec<SearchHit>, String, Fusion),
    Context(String, Vec<String>),
}

/// Counters for `/health` and `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// Live generation (0 when nothing is indexed).
    pub generation: u64,
    /// Indexed documents.
    pub documents: usize,
    /// Indexed chunks.
    pub chunks: usize,
    /// Bytes the vector index occupies in memory.
    pub vector_bytes: usize,
    /// Answers served from the query cache.
    pub cache_hits: u64,
    /// Answers computed.
    pub cache_misses: u64,
    /// Answers currently cached.
    pub cache_entries: usize,
    /// When the live generation was written (seconds since the epoch).
    pub indexed_at: u64,
}

/// The search side of the agent: the model, the live index and the query cache. Shared by
/// the CLI and the HTTP API (behind an `Arc`); methods block, so async callers use
/// `spawn_blocking`.
pub struct Engine {
    embedder: Arc<Embedder>,
    index_dir: IndexDir,
    settings: SearchSettings,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// The generation being served (0 before the first), for whoever caches what it serves.
    loaded: watch::Sender<u64>,
    cache: Mutex<QueryCache<Answer>>,
    admission: Admission,
}

/// How soon a generation that could not be opened is tried again.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    /// Opens the live index of `data_dir`, if there is one (searches fail with
    /// [`Error::NoIndex`] until something is indexed).
    pub fn open(data_dir: &std::path::Path, embedder: Arc<Embedder>, settings: SearchSettings) -> Result<Self> {
        let index_dir = IndexDir::new(data_dir);
        let snapshot = Snapshot::open_current(&index_dir, embedder.model_id())?.map(Arc::new);
        // jieba loads its dictionary on first use (~0.1 s): pay that now, not in the first query.
        analyze(&mut analyzer(), "预热");
        let cache = QueryCache::new(settings.cache_capacity, Duration::from_secs(settings.cache_ttl_secs));
        let (loaded, _) = watch::channel(snapshot.as_ref().map_or(0, |snapshot| snapshot.generation()));
        Ok(Self {
            embedder,
            index_dir,
            settings,
            snapshot: RwLock::new(snapshot),
            loaded,
            cache: Mutex::new(cache),
            admission: Admission::per_core(),
        })
    }

    /// The gate searches take their turn at: the tunnel's before local ones (see [`admission`]).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The embedding model.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Switches to a newer generation if an indexing run published one. Returns whether it did.
    pub fn refresh(&self) -> Result<bool> {
        let current = self.index_dir.current()?;
        let loaded = self.read_snapshot().as_ref().map(|s| s.generation());
        if current.is_none() || current == loaded {
            return Ok(false);
        }
        let fresh = Snapshot::open_current(&self.index_dir, self.embedder.model_id())?.map(Arc::new);
        let generation = fresh.as_ref().map_or(0, |snapshot| snapshot.generation());
        *self.snapshot.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        self.lock_cache().clear();
        self.loaded.send_replace(generation);
        tracing::info!(generation, "switched to the new index generation");
        Ok(true)
    }

    /// Serves each generation `published` announces, until its sender is gone. One that
    /// cannot be opened is tried again shortly; meanwhile the one loaded keeps serving.
    pub async fn follow(self: Arc<Self>, mut published: watch::Receiver<u64>) {
        loop {
            let wanted = *published.borrow_and_update();
            if wanted != *self.loaded.borrow() {
                let engine = self.clone();
                let refreshed = tokio::task::spawn_blocking(move || engine.refresh())
                    .await
                    .unwrap_or_else(|error| Err(Error::Task(error)));
                if let Err(error) = refreshed {
                    tracing::warn!(%error, "could not open the new index generation; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(REFRESH_RETRY) => continue,
                        changed = published.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
            }
            if published.changed().await.is_err() {
                return;
            }
        }
    }

    /// The generation being served, as it changes (0 while nothing is indexed).
    pub fn loaded_generations(&self) -> watch::Receiver<u64> {
        self.loaded.subscribe()
    }

    fn current_snapshot(&self) -> Result<Arc<Snapshot>> {
        self.read_snapshot().clone().ok_or_else(|| Error::NoIndex { dir: self.index_dir.path().to_owned() })
    }

    fn read_snapshot(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<Snapshot>>> {
        self.snapshot.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, QueryCache<Answer>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers a search request.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        request.validate().map_err(|error| Error::InvalidRequest(error.to_string()))?;
        let snapshot = self.current_snapshot()?;
        let tags = normalized_tags(&request.tags);
        let key = format!(
            "search\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
            request.mode,
            request.query.trim(),
            tags.join("\u{1}"),
            request.max_results,
            request.similarity_threshold,
            request.sources
        );
        let cached = self.lock_cache().get(&key, snapshot.generation());
        let (results, context, fusion) = match cached {
            Some(Answer::Search(results, context, fusion)) => (results, context, fusion),
            _ => {
                let (hits, fusion) = self.retrieve(
                    &snapshot,
                    request.query.trim(),
                    &tags,
                    &request.sources,
                    request.mode,
                    request.max_results,
                    request.similarity_threshold,
                )?;
                // A context of N characters cannot cite more than about N/100 passages.
                let cited = hits.len().min(1 + self.settings.context_chars / 100);
                let passages = self.passages(&snapshot, &hits[..cited])?;
                let (context, _) = build_context(&passages, self.settings.context_chars);
                let results = hits.iter().map(|hit| self.wire_hit(&snapshot, hit)).collect::<Vec<_>>();
                let answer = Answer::Search(results.clone(), context.clone(), fusion.clone());
                self.lock_cache().put(key, snapshot.generation(), answer);
                (results, context, fusion)
            }
        };
        let processing_time = started.elapsed().as_secs_f64();
        Ok(SearchResponse { success: true, results, context, processing_time, fusion: Some(fusion) })
    }

    /// Builds a context block for a question.
    pub fn build_context(&self, request: &ContextRequest) -> Result<ContextResponse> {
        let started = Instant::now();
        request.validate().map_err(|error| Error::InvalidRequest(error.to_string()))?;
        let snapshot = self.current_snapshot()?;
        let tags = normalized_tags(&request.tags);
        let key = format!("context\u{0}{}\u{0}{}\u{0}{}", request.query.trim(), tags.join("\u{1}"), request.max_length);
        let cached = self.lock_cache().get(&key, snapshot.generation());
        let (context, sources) = match cached {
            Some(Answer::Context(context, sources)) => (context, sources),
            _ => {
                // Enough passages to fill the budget: a passage is at most a few hundred characters.
                let wanted = (request.max_length / 200).clamp(3, protocol::limits::MAX_RESULTS);
                let threshold = protocol::SearchRequest::new("").similarity_threshold;
                let (hits, _) =
                    self.retrieve(&snapshot, request.query.trim(), &tags, &[], SearchMode::Hybrid, wanted, threshold)?;
                let passages = self.passages(&snapshot, &hits)?;
                let (context, sources) = build_context(&passages, request.max_length);
                self.lock_cache().put(key, snapshot.generation(), Answer::Context(context.clone(), sources.clone()));
                (context, sources)
            }
        };
        Ok(ContextResponse { context, sources, processing_time: started.elapsed().as_secs_f64() })
    }

    /// Forgets all cached answers; returns how many there were.
    pub fn clear_cache(&self) -> usize {
        self.lock_cache().clear()
    }

    /// Index and cache counters.
    pub fn stats(&self) -> EngineStats {
        let snapshot = self.read_snapshot().clone();
        let cache = self.lock_cache();
        let (cache_hits, cache_misses) = cache.counts();
        let mut stats = EngineStats { cache_hits, cache_misses, cache_entries: cache.len(), ..Default::default() };
        if let Some(snapshot) = snapshot {
            stats.generation = snapshot.generation();
            stats.documents = snapshot.manifest.documents.len();
            stats.chunks = snapshot.manifest.chunk_count();
            stats.vector_bytes = snapshot.vectors.memory_usage();
            stats.indexed_at = snapshot.manifest.created_at;
        }
        stats
    }

    /// The live generation, for diagnostics and benchmarks.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        self.current_snapshot()
    }

    /// The best `max_results` documents for `query` from the `kinds` of source asked for (all
    /// when empty), and how its lists were fused. Tags narrow, they never empty: documents
    /// carrying one of `tags` come first, and the best of the others fill the places left.
    #[allow(clippy::too_many_arguments)]
    fn retrieve(
        &self,
        snapshot: &Snapshot,
        query: &str,
        tags: &[String],
        kinds: &[protocol::SourceKind],
        mode: SearchMode,
        max_results: usize,
        threshold: f32,
    ) -> Result<(Vec<Hit>, Fusion)> {
        let query = QueryView::new(&self.embedder, &self.settings, query, mode)?;
        let mut hits = rank(snapshot, &self.settings, &query, tags, kinds, mode, max_results, threshold)?;
        if !tags.is_empty() && hits.len() < max_results {
            let tagged: HashSet<u32> = hits.iter().map(|hit| hit.document).collect();
            let wanted = max_results + tagged.len();
            let others = rank(snapshot, &self.settings, &query, &[], kinds, mode, wanted, threshold)?;
            let room = max_results - hits.len();
            hits.extend(others.into_iter().filter(|hit| !tagged.contains(&hit.document)).take(room));
        }
        Ok((hits, query.fusion))
    }

    /// Each hit as a passage, merged with the neighbouring chunks the retrievers also found.
    fn passages(&self, snapshot: &Snapshot, hits: &[Hit]) -> Result<Vec<Passage>> {
        let mut passages = Vec::with_capacity(hits.len());
        for hit in hits {
            let entry = &snapshot.manifest.documents[hit.document as usize];
            let found = |ordinal: u32| hit.related.iter().find(|&&(o, _)| o == ordinal).map(|&(_, chunk)| chunk);
            let mut first = hit.ordinal;
            while first > 0 && found(first - 1).is_some() {
                first -= 1;
            }
            let mut pieces = Vec::new();
            let mut ordinal = first;
            loop {
                let stored = if ordinal == hit.ordinal {
                    Some(hit.stored.clone())
                } else {
                    match found(ordinal) {
                        Some(chunk) => snapshot.text.stored(chunk)?,
                        None => None,
                    }
                };
                let Some(stored) = stored else { break };
                let overlap = if pieces.is_empty() { 0 } else { stored.overlap };
                pieces.push(Piece { heading: stored.heading, text: stored.text, overlap });
                ordinal += 1;
                if ordinal > hit.ordinal && found(ordinal).is_none() {
                    break;
                }
            }
            passages.push(Passage { title: entry.title.clone(), source: entry.source().to_owned(), pieces });
        }
        Ok(passages)
    }

    fn wire_hit(&self, snapshot: &Snapshot, hit: &Hit) -> SearchHit {
        let entry = &snapshot.manifest.documents[hit.document as usize];
        SearchHit {
            knowledge_id: format!("{}#{}", entry.id, hit.ordinal),
            title: entry.title.clone(),
            content_snippet: snippet(&hit.stored.text, self.settings.snippet_chars),
            similarity_score: (hit.similarity * 1000.0).round() / 1000.0,
            source_type: hit.source_type,
            source: entry.source().to_owned(),
        }
    }
}

fn normalized_tags(tags: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = tags.iter().map(|tag| tag.trim().to_lowercase()).filter(|t| !t.is_empty()).collect();
    tags.sort();
    tags.dedup();
    tags
}

fn snippet(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_cut_at_characters() {
        assert_eq!(snippet("中文内容", 2), "中文…");
        assert_eq!(snippet("short", 10), "short");
    }
}
