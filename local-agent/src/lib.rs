//! The notion-llm local agent: indexes a person's notes and answers retrieval requests with
//! hybrid search, from the command line, over a loopback HTTP API, and over the tunnel to the
//! cloud.
//!
//! The major components, in the order data flows through them:
//!
//! - [`ingest`]: finds note files in folders and reads them into documents (title, tags, body);
//! - [`chunk`]: splits documents into passages that fit the embedding model;
//! - [`embed`] and [`embed_cache`]: sentence embeddings with ONNX Runtime, cached by text hash;
//! - [`text_index`] (tantivy BM25, Chinese + English) and [`vector_index`] (usearch HNSW);
//! - [`generations`] and [`indexer`]: incremental, atomic index updates;
//! - [`snapshot`] and [`search`]: the live index, hybrid retrieval, fusion, context building;
//! - [`http`]: the HTTP API; [`tunnel`]: the outbound connection to the cloud;
//!   [`config`]: settings from file, environment and flags.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunk;
pub mod config;
pub mod embed;
pub mod embed_cache;
pub mod error;
pub mod generations;
pub mod http;
pub mod indexer;
pub mod ingest;
pub mod search;
pub mod snapshot;
pub mod text_index;
pub mod tunnel;
pub mod vector_index;

pub use error::{Error, Result};
