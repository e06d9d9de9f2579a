//! What answers the cloud's requests: the search engine, behind a trait so the tunnel can be
//! tested (and benchmarked for its own overhead) without a model.

use protocol::tunnel::{CachePush, IndexSummary, ReplyBody, RequestBody};
use protocol::{ContextRequest, ErrorDetail};
use tokio::sync::watch;

use crate::Error;
use crate::search::Engine;
use crate::search::admission::Lane;

/// Answers requests arriving through the tunnel. Methods may block (they run on the blocking
/// pool).
pub trait Responder: Send + Sync + 'static {
    /// Answers one request.
    fn respond(&self, request: &RequestBody) -> Result<ReplyBody, ErrorDetail>;

    /// The size of the index, for `hello` and heartbeats.
    fn summary(&self) -> IndexSummary;

    /// The index generations it serves, as they change: the tunnel pushes fresh context for
    /// each. `None` for a responder whose index never changes (context is pushed once).
    fn generations(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Context per tag for the cloud's offline fallback.
    fn tag_contexts(&self) -> Vec<CachePush> {
        Vec::new()
    }
}

/// Longest context pushed per tag: what the cloud would have asked for a question.
const PUSHED_CONTEXT_CHARS: usize = 2000;

/// Most tags pushed after one re-index (each push is one message).
const MAX_PUSHED_TAGS: usize = 50;

fn detail(error: Error) -> ErrorDetail {
    ErrorDetail { code: error.code(), message: error.to_string() }
}

impl Responder for Engine {
    fn respond(&self, request: &RequestBody) -> Result<ReplyBody, ErrorDetail> {
        // The cloud waits on a deadline: its searches go before local ones.
        self.admission().run(Lane::Cloud, || match request {
            RequestBody::Search(search) => self.search(search).map(ReplyBody::Search).map_err(detail),
        })
    }

    fn summary(&self) -> IndexSummary {
        let stats = self.stats();
        IndexSummary { chunks: stats.chunks as u64, docs: stats.documents as u64 }
    }

    fn generations(&self) -> Option<watch::Receiver<u64>> {
        Some(self.loaded_generations())
    }

    fn tag_contexts(&self) -> Vec<CachePush> {
        let Ok(snapshot) = self.snapshot() else { return Vec::new() };
        let mut tags: Vec<String> =
            snapshot.manifest.documents.iter().flat_map(|doc| doc.tags.iter().cloned()).collect();
        tags.sort_by_key(|tag| tag.to_lowercase());
        tags.dedup_by_key(|tag| tag.to_lowercase());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |age| age.as_secs());
        tags.into_iter()
            .take(MAX_PUSHED_TAGS)
            .filter_map(|tag| {
                // The tag's name is the best guess at what a question under it is about.
                let request = ContextRequest {
                    tags: vec![tag.clone()],
                    max_length: PUSHED_CONTEXT_CHARS,
                    ..ContextRequest::new(&tag)
                };
                let response = self.build_context(&request).ok()?;
                (!response.context.is_empty()).then_some(CachePush {
                    tag,
                    context: response.context,
                    sources: response.sources,
                    updated_at: now as i64,
                })
            })
            .collect()
    }
}
