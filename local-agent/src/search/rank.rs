//! Ranking one query over a snapshot: a BM25 list and a dense list, each collapsed to one entry
//! per document (its best chunk), fused by their normalised scores (or their ranks), and scored for
//! the similarity threshold (see the module docs of [`crate::search`]).

use std::collections::HashMap;

use protocol::{Fusion, SearchMode, SourceKind, SourceType};

use super::SearchSettings;
use super::fusion::{ScoredList, fuse};
use crate::embed::Embedder;
use crate::error::Result;
use crate::index::snapshot::Snapshot;
use crate::index::text::{StoredChunk, analyzer, query_terms};

/// A search result before it is shaped for the wire.
#[derive(Debug, Clone)]
pub(super) struct Hit {
    pub(super) document: u32,
    pub(super) ordinal: u32,
    pub(super) similarity: f32,
    pub(super) source_type: SourceType,
    pub(super) stored: StoredChunk,
    /// Other chunks of the same document the retrievers found, by ordinal.
    pub(super) related: Vec<(u32, u64)>,
}

/// A query as the retrievers see it: computed once, ranked as often as needed (with and
/// without the tags).
pub(super) struct QueryView {
    /// Analyzed keyword terms.
    terms: Vec<String>,
    /// The query's embedding (empty in keyword mode).
    vector: Vec<f32>,
    /// The weights the two lists get, and how much of the query the model can read.
    pub(super) fusion: Fusion,
}

impl QueryView {
    /// Analyzes `query`, embeds it unless `mode` is keyword-only, and weighs the two lists.
    pub(super) fn new(embedder: &Embedder, settings: &SearchSettings, query: &str, mode: SearchMode) -> Result<Self> {
        let terms = query_terms(&mut analyzer(), query);
        let (vector, visibility) = if mode == SearchMode::Keyword {
            (Vec::new(), 0.0)
        } else {
            let embedding = embedder.embed_query(query)?;
            (embedding.vector, embedding.visibility)
        };
        let keyword_weight = if mode == SearchMode::Semantic { 0.0 } else { settings.keyword_weight };
        let semantic_weight = match mode {
            _ if vector.is_empty() || visibility == 0.0 => 0.0,
            SearchMode::Keyword => 0.0,
            SearchMode::Semantic => 1.0,
            SearchMode::Hybrid => settings.semantic_weight * dense_trust(visibility),
        };
        let lists = [(SourceType::Keyword, keyword_weight), (SourceType::Semantic, semantic_weight)]
            .into_iter()
            .filter(|&(_, weight)| weight > 0.0)
            .map(|(list, _)| list)
            .collect();
        let fusion = Fusion { lists, keyword_weight, semantic_weight, visibility };
        Ok(Self { terms, vector, fusion })
    }
}

/// How far hybrid search trusts the dense list for a query the model reads `visibility` of:
/// not at all below 60 % (the model guesses from fragments: on the zh-dev set, where the English
/// model reads 17–55 % of a question, any weight made fusion lose to keywords alone), fully
/// from 95 % (every English query: WordPiece never yields `[UNK]` for Latin text), smoothly
/// between.
fn dense_trust(visibility: f32) -> f32 {
    ((visibility - 0.6) / 0.35).clamp(0.0, 1.0).powi(2)
}

/// The best `max_results` documents for `query` among those carrying one of `tags` (all
/// documents when `tags` is empty) from the `kinds` of source asked for (all when empty), best
/// first, each above `threshold`.
#[allow(clippy::too_many_arguments)]
pub(super) fn rank(
    snapshot: &Snapshot,
    settings: &SearchSettings,
    query: &QueryView,
    tags: &[String],
    kinds: &[SourceKind],
    mode: SearchMode,
    max_results: usize,
    threshold: f32,
) -> Result<Vec<Hit>> {
    let depth = settings.candidates.max(3 * max_results);
    let QueryView { terms, vector: query_vector, fusion } = query;
    let Fusion { visibility, keyword_weight, semantic_weight, .. } = *fusion;
    let from_kinds = |chunk: u64| snapshot.locate(chunk).is_some_and(|l| snapshot.is_from(l.document, kinds));

    let keyword_chunks = if keyword_weight == 0.0 {
        Vec::new()
    } else if kinds.is_empty() {
        snapshot.text.search(terms, tags, settings.title_boost, depth)?
    } else {
        // The keyword index has no field for the kind of source: read deeper, keep those.
        let chunks = snapshot.text.search(terms, tags, settings.title_boost, 4 * depth)?;
        chunks.into_iter().filter(|&(chunk, _)| from_kinds(chunk)).take(depth).collect()
    };
    let semantic_chunks = if semantic_weight == 0.0 {
        Vec::new()
    } else if tags.is_empty() && kinds.is_empty() {
        snapshot.vectors.search(query_vector, depth, None)?
    } else {
        let accept = |chunk: u64| {
            from_kinds(chunk)
                && (tags.is_empty() || snapshot.locate(chunk).is_some_and(|l| snapshot.has_any_tag(l.document, tags)))
        };
        snapshot.vectors.search(query_vector, depth, Some(&accept))?
    };

    let keyword = collapse(snapshot, &keyword_chunks);
    let semantic = collapse(snapshot, &semantic_chunks);
    let keyword_documents: Vec<(u32, f32)> = keyword.iter().map(|c| (c.document, c.score)).collect();
    let semantic_documents: Vec<(u32, f32)> = semantic.iter().map(|c| (c.document, c.score)).collect();
    tracing::debug!(?terms, visibility, keyword_weight, semantic_weight, "fusing");
    let fused = fuse(
        &[
            ScoredList { weight: keyword_weight, items: &keyword_documents },
            ScoredList { weight: semantic_weight, items: &semantic_documents },
        ],
        settings.fusion,
        settings.rrf_k,
    );

    let keyword_rank: HashMap<u32, usize> = keyword_documents.iter().enumerate().map(|(r, &(d, _))| (d, r)).collect();
    let semantic_rank: HashMap<u32, usize> = semantic_documents.iter().enumerate().map(|(r, &(d, _))| (d, r)).collect();
    let cosines: HashMap<u64, f32> = semantic_chunks.iter().copied().collect();
    // Other chunks of a document join its passage only when nearly as relevant as its best:
    // half its best BM25 score, or within 0.05 of its best cosine.
    let mut related: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let mut best_scores: HashMap<(bool, u32), f32> = HashMap::new();
    let lists = [(true, &keyword_chunks), (false, &semantic_chunks)];
    for (is_keyword, chunks) in lists {
        for &(chunk, score) in chunks.iter() {
            let Some(location) = snapshot.locate(chunk) else { continue };
            let best = *best_scores.entry((is_keyword, location.document)).or_insert(score);
            let close = if is_keyword { score >= 0.5 * best } else { score >= best - 0.05 };
            let entry = related.entry(location.document).or_default();
            if close && !entry.iter().any(|&(_, c)| c == chunk) {
                entry.push((location.ordinal, chunk));
            }
        }
    }
    let idf = snapshot.text.idf(terms)?;

    let mut hits = Vec::new();
    for fused in fused {
        if hits.len() == max_results {
            break;
        }
        let document = fused.item;
        let in_keyword = keyword_rank.get(&document).copied();
        let in_semantic = semantic_rank.get(&document).copied();
        // The representative chunk comes from the list that gave the document the most (the
        // keyword list is the first fused).
        let best = match (in_keyword, in_semantic) {
            (Some(k), Some(_)) if fused.strongest == 0 => &keyword[k],
            (Some(_), Some(s)) | (None, Some(s)) => &semantic[s],
            (Some(k), None) => &keyword[k],
            (None, None) => continue,
        };
        let Some(stored) = snapshot.text.stored(best.chunk)? else { continue };
        let cosine = match cosines.get(&best.chunk) {
            Some(&cosine) => cosine,
            None if !query_vector.is_empty() => snapshot
                .vectors
                .get(best.chunk)?
                .map_or(0.0, |vector| vector.iter().zip(query_vector).map(|(a, b)| a * b).sum()),
            None => 0.0,
        };
        let coverage = coverage(terms, &idf, &snapshot.text.holds_terms(best.chunk, terms)?);
        let similarity = match mode {
            SearchMode::Keyword => coverage,
            SearchMode::Semantic => cosine,
            SearchMode::Hybrid => (cosine * visibility).max(coverage),
        }
        .clamp(0.0, 1.0);
        if similarity < threshold {
            continue;
        }
        let source_type = match (in_keyword.is_some(), in_semantic.is_some()) {
            (true, true) => SourceType::Hybrid,
            (true, false) => SourceType::Keyword,
            _ => SourceType::Semantic,
        };
        let mut related = related.remove(&document).unwrap_or_default();
        related.sort_unstable();
        hits.push(Hit { document, ordinal: best.ordinal, similarity, source_type, stored, related });
    }
    Ok(hits)
}

/// One entry per document, at the rank of its best chunk.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    document: u32,
    chunk: u64,
    ordinal: u32,
    /// The best chunk's score in its list.
    score: f32,
}

fn collapse(snapshot: &Snapshot, chunks: &[(u64, f32)]) -> Vec<Candidate> {
    let mut seen = std::collections::HashSet::new();
    chunks
        .iter()
        .filter_map(|&(chunk, score)| {
            let location = snapshot.locate(chunk)?;
            seen.insert(location.document).then_some(Candidate {
                document: location.document,
                chunk,
                ordinal: location.ordinal,
                score,
            })
        })
        .collect()
}

/// IDF-weighted share of the query's distinct terms the passage holds (`held[i]` for
/// `query_terms[i]`).
fn coverage(query_terms: &[String], idf: &[f32], held: &[bool]) -> f32 {
    let mut total = 0.0;
    let mut found = 0.0;
    let mut counted: Vec<&String> = Vec::new();
    for ((term, weight), &held) in query_terms.iter().zip(idf).zip(held) {
        if counted.contains(&term) {
            continue;
        }
        counted.push(term);
        total += weight;
        if held {
            found += weight;
        }
    }
    if total > 0.0 { found / total } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_weighs_rare_terms_more() {
        let terms: Vec<String> = ["rust", "the", "rust"].map(String::from).to_vec();
        let idf = [3.0, 0.1, 3.0];
        assert!((coverage(&terms, &idf, &[true, false, true]) - 3.0 / 3.1).abs() < 1e-6, "a repeated term counts once");
        assert!(coverage(&terms, &idf, &[false, true, false]) < 0.05);
        assert_eq!(coverage(&[], &[], &[]), 0.0);
    }

    #[test]
    fn the_dense_list_counts_only_when_the_model_reads_most_of_the_query() {
        assert_eq!(dense_trust(0.0), 0.0);
        assert_eq!(dense_trust(0.55), 0.0, "a Chinese question to an English model");
        assert!(dense_trust(0.8) > 0.2 && dense_trust(0.8) < 0.5);
        assert!((dense_trust(0.95) - 1.0).abs() < 1e-5, "{}", dense_trust(0.95));
        assert_eq!(dense_trust(1.0), 1.0);
    }
}
