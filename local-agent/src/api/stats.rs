//! The bodies of `GET /stats` and the other JSON replies: one type each, written by the server,
//! read by the client (`local-agent status`, `service status`, `doctor`) and described in the
//! OpenAPI document, so the three cannot drift apart. Every field of [`Stats`] has a default, so
//! a client can read an agent of another version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tunnel::TunnelSnapshot;

/// What `GET /stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Stats {
    /// Always `true` (the API's success flag).
    pub success: bool,
    /// The live index.
    pub index: IndexStats,
    /// The embedding model.
    pub model: ModelStats,
    /// The query cache.
    pub cache: CacheStats,
    /// Requests served by the HTTP API.
    pub requests: RequestStats,
    /// Seconds since the agent started.
    pub uptime: f64,
    /// The tunnel to the cloud; `null` when no cloud is configured.
    pub tunnel: Option<TunnelSnapshot>,
    /// The retrieval requests of the last minutes on this API.
    pub activity: Activity,
    /// The last Notion sync; `null` when there has been none.
    pub notion_sync: Option<SyncSummary>,
}

/// Recent retrieval requests on this API (`/search`, `/context/build`), kept in memory only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Activity {
    /// Requests a minute, over the last five minutes.
    pub per_minute: f64,
    /// Latency of the last (up to 200) answered requests.
    pub latency_ms: Percentiles,
    /// The last 20 requests, newest first; queries shortened to 200 characters.
    pub recent: Vec<RecentQuery>,
}

/// Latency percentiles in milliseconds; `null` before the first request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// One retrieval request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RecentQuery {
    /// When it was answered (seconds since the epoch).
    pub at: u64,
    /// `/search` or `/context/build`.
    pub endpoint: String,
    /// The query, shortened to 200 characters.
    pub query: String,
    /// Results (or cited sources) returned.
    pub results: u64,
    /// Milliseconds to answer.
    pub ms: f64,
    /// The HTTP status it got.
    pub status: u16,
}

/// What the last Notion sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SyncSummary {
    /// When it finished (seconds since the epoch).
    pub at: u64,
    /// Pages listed.
    pub listed: u64,
    /// Pages new to the index.
    pub added: u64,
    /// Pages whose content changed.
    pub updated: u64,
    /// Pages that left the index.
    pub removed: u64,
    /// Pages that could not be read.
    pub unreadable: u64,
}

/// The live index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct IndexStats {
    /// Live generation (0: nothing indexed).
    pub generation: u64,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// When the generation was written (seconds since the epoch).
    pub indexed_at: u64,
    /// The sources it was built from (folders, `notion://<database>`).
    pub folders: Vec<String>,
    /// Memory held by the vector index.
    pub vector_memory_bytes: u64,
}

/// The embedding model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ModelStats {
    /// Its id (name and file hash).
    pub id: String,
    /// Vector dimensions.
    pub dimensions: u64,
}

/// The query cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CacheStats {
    /// Answers held.
    pub entries: u64,
    /// Lookups answered from it.
    pub hits: u64,
    /// Lookups that were not.
    pub misses: u64,
}

/// Requests served by the HTTP API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct RequestStats {
    /// All requests.
    pub total: u64,
    /// Of which failed.
    pub errors: u64,
}

/// What `GET /health` reports, in the original system's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` while there is no index to answer from.
    pub status: HealthStatus,
    /// The agent's version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime: f64,
    /// The retrieval engine.
    pub rag_engine: EngineHealth,
    /// Requests answered so far.
    pub performance: Performance,
}

/// In one word, whether the agent can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// An index is live.
    Healthy,
    /// Nothing is indexed yet.
    Degraded,
}

/// The retrieval engine, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineHealth {
    /// `ready`, or `no_index`.
    pub status: EngineStatus,
    /// Always `true`: the agent does not serve without its model.
    pub model_loaded: bool,
    /// Chunks in the live index.
    pub index_size: u64,
}

/// Whether the engine has an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    /// An index is live.
    Ready,
    /// Nothing is indexed yet.
    NoIndex,
}

/// Requests answered so far, as `/health` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    /// Mean seconds per retrieval request.
    pub avg_response_time: f64,
    /// Retrieval requests answered.
    pub total_requests: u64,
    /// Share of lookups answered from the query cache (0..=1).
    pub cache_hit_rate: f64,
}

/// The reply of `POST /cache/clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheCleared {
    /// Always `true`.
    pub success: bool,
    /// Answers dropped from the cache.
    pub cleared: u64,
}

/// The reply of `POST /index/rebuild`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildStarted {
    /// Always `true`.
    pub success: bool,
    /// Always `true`: the rebuild runs in the background; `/stats` shows the new generation.
    pub started: bool,
}
