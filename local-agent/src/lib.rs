//! The notion-llm local agent: indexes a person's notes and answers retrieval requests with
//! hybrid search, from the command line, over a loopback HTTP API, and over the tunnel to the
//! cloud.
//!
//! The rooms, in the order data flows through them:
//!
//! - [`sources`]: where documents come from — folders of notes ([`sources::folder`]), Notion
//!   knowledge databases ([`sources::notion_sync`]), and watching folders while serving;
//! - [`index`]: incremental, atomic index updates — chunking, the keyword index (tantivy BM25,
//!   Chinese + English), the vector index (usearch HNSW), generations and the live snapshot;
//! - [`embed`]: sentence embeddings with ONNX Runtime, and their cache by text hash;
//! - [`search`]: hybrid retrieval, fusion, context building, the query cache, and the gate
//!   that lets the cloud's searches go first;
//! - [`api`]: the loopback HTTP API (and its guard against browser pages), and a client for a
//!   running agent's API; [`tunnel`]: the outbound connection to the cloud;
//! - [`agent`]: `serve` as a library — [`agent::Agent`] owns the tasks (the API, the one
//!   [`agent::indexer`] every index run goes through, the watcher, the tunnel) and drains them
//!   on shutdown;
//! - [`ops`]: keeping `serve` running (systemd, launchd, or a pid file) and `doctor`;
//! - [`config`]: settings from file, environment and flags; [`error`]: what can go wrong.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod config;
pub mod embed;
pub mod error;
pub mod index;
pub mod ops;
pub mod search;
pub mod sources;
pub mod tunnel;

pub use error::{Error, Result};
