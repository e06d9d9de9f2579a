//! The notion-llm local agent: indexes a person's notes and answers retrieval requests with
//! hybrid search, from the command line, over a loopback HTTP API, and over the tunnel to the
//! cloud.
//!
//! The major components, in the order data flows through them:
//!
//! - [`ingest`]: finds note files in folders and reads them into documents (title, tags, body);
//!   [`notion_sync`]: the same for Notion knowledge databases, incrementally;
//! - [`chunk`]: splits documents into passages that fit the embedding model;
//! - [`embed`] and [`embed_cache`]: sentence embeddings with ONNX Runtime, cached by text hash;
//! - [`text_index`] (tantivy BM25, Chinese + English) and [`vector_index`] (usearch HNSW);
//! - [`generations`] and [`indexer`]: incremental, atomic index updates;
//! - [`snapshot`] and [`search`]: the live index, hybrid retrieval, fusion, context building;
//! - [`watch`]: re-indexes watched folders while serving;
//! - [`http`]: the HTTP API; [`tunnel`]: the outbound connection to the cloud;
//!   [`config`]: settings from file, environment and flags;
//! - [`service`]: keeping `serve` running (systemd, launchd, or a pid file);
//!   [`local_api`]: a client for a running agent's API; [`doctor`]: checks of everything the
//!   agent depends on.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunk;
pub mod config;
pub mod doctor;
pub mod embed;
pub mod embed_cache;
pub mod error;
pub mod generations;
pub mod http;
pub mod indexer;
pub mod ingest;
pub mod local_api;
pub mod notion_sync;
pub mod search;
pub mod service;
pub mod snapshot;
pub mod text_index;
pub mod tunnel;
pub mod vector_index;
pub mod watch;

pub use error::{Error, Result};
