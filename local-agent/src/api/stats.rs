//! The body of `GET /stats`: one type, written by the server and read by the client
//! (`local-agent status`, `service status`, `doctor`), so the two cannot drift apart. Every
//! field has a default, so a client can read an agent of another version.

use serde::{Deserialize, Serialize};

use crate::tunnel::TunnelSnapshot;

/// What `GET /stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
}

/// The live index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelStats {
    /// Its id (name and file hash).
    pub id: String,
    /// Vector dimensions.
    pub dimensions: u64,
}

/// The query cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestStats {
    /// All requests.
    pub total: u64,
    /// Of which failed.
    pub errors: u64,
}
