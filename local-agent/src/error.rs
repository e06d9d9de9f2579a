//! The agent library's error type. Every variant that a user can meet says what is wrong and
//! what to do about it; the CLI prints these messages as they are.

use std::io;
use std::path::PathBuf;

use protocol::ErrorCode;

/// Result with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the agent library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file with a note's extension that holds no text: a binary (a NUL byte near its start)
    /// or mostly bytes that are not UTF-8 (a legacy encoding such as GBK); indexing it would
    /// only add noise to every search.
    #[error("{} is not text ({reason}); skipped", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: &'static str,
    },
    /// The ONNX Runtime shared library is not where we looked.
    #[error(
        "ONNX Runtime library not found at {}; run `local-agent setup` or set ORT_DYLIB_PATH",
        path.display()
    )]
    RuntimeMissing {
        /// Where we looked.
        path: PathBuf,
    },
    /// The ONNX Runtime library exists but could not be loaded.
    #[error(
        "could not load ONNX Runtime from {}: {message}; run `local-agent setup` or \
         set ORT_DYLIB_PATH to ONNX Runtime 1.31 or newer",
        path.display()
    )]
    RuntimeLoad {
        /// The library file.
        path: PathBuf,
        /// The loader's complaint.
        message: String,
    },
    /// The model folder lacks a required file.
    #[error(
        "embedding model not usable in {}: {missing} is missing; run {install} or set \
         MODEL_DIR to a folder with model.onnx and tokenizer.json",
        dir.display()
    )]
    ModelMissing {
        /// The model folder.
        dir: PathBuf,
        /// The missing file.
        missing: &'static str,
        /// The command that installs this model ([`crate::config::setup_command`]).
        install: &'static str,
    },
    /// Installing the runtime (`local-agent setup`) failed; the installer said why above.
    #[error("cannot install the runtime in {}: {message}", dir.display())]
    Setup {
        /// The runtime folder.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// The model or tokenizer failed to load or to run.
    #[error("embedding model in {}: {message}", dir.display())]
    Model {
        /// The model folder.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// Nothing has been indexed in this data directory yet.
    #[error("no index in {}; run `local-agent index <FOLDER>` first", dir.display())]
    NoIndex {
        /// The index directory.
        dir: PathBuf,
    },
    /// The index on disk cannot be read.
    #[error(
        "the index in {} is unreadable ({message}); run `local-agent index` again to rebuild it",
        dir.display()
    )]
    CorruptIndex {
        /// The generation directory.
        dir: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The index was built with a different embedding model than the one configured.
    #[error(
        "the index was built with the model {built}, but the agent now uses {configured}; run \
         `local-agent index` to re-embed your notes with the new model"
    )]
    ModelChanged {
        /// Model the index was built with.
        built: String,
        /// Model configured now.
        configured: String,
    },
    /// Another `serve` runs on this data dir.
    #[error(
        "another local-agent serve {} uses the data dir {}; stop it first (`local-agent service stop` \
         if it runs as the service) or give this one another --data-dir",
        running.map_or_else(|| "(starting)".to_owned(), |r| format!("(pid {}, http://{})", r.pid, r.address)),
        data_dir.display()
    )]
    AlreadyServing {
        /// The data dir.
        data_dir: PathBuf,
        /// What the running server recorded, if it has yet.
        running: Option<crate::ops::running::ServerRecord>,
    },
    /// Another process is writing the index.
    #[error("another indexing run holds {}; wait for it to finish", path.display())]
    IndexBusy {
        /// The lock file.
        path: PathBuf,
    },
    /// A folder to index cannot be read.
    #[error("cannot index {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error("configuration {}: {message}", path.display())]
    Config {
        /// The config file (or the variable's name).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The Notion API failed (after its retries) or refused.
    #[error("Notion: {0}")]
    Notion(#[from] notion::NotionError),
    /// A page of a Notion database could not be read.
    #[error("Notion page {page}: {source}")]
    NotionPage {
        /// The page's id.
        page: String,
        /// Why.
        source: notion::NotionError,
    },
    /// A background task died (a panic in indexing).
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A request broke a limit; the message names the field.
    #[error("{0}")]
    InvalidRequest(String),
    /// The BM25 index failed.
    #[error("keyword index: {0}")]
    Text(#[from] tantivy::TantivyError),
    /// The vector index failed.
    #[error("vector index: {0}")]
    Vector(String),
    /// The embedding cache failed.
    #[error("embedding cache {}: {message}", path.display())]
    EmbeddingCache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The code this error is reported with, the same over HTTP and over the tunnel.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Error::NoIndex { .. } | Error::ModelChanged { .. } | Error::CorruptIndex { .. } => {
                ErrorCode::IndexUnavailable
            }
            _ => ErrorCode::Internal,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_index_is_one_code_wherever_it_is_reported() {
        let corrupt = Error::CorruptIndex { dir: "gen-3".into(), message: "bad".into() };
        assert_eq!(corrupt.code(), ErrorCode::IndexUnavailable);
        assert_eq!(corrupt.code().http_status(), 503);
        assert_eq!(Error::InvalidRequest("max_results".into()).code().http_status(), 400);
        let io = Error::Io { path: "x".into(), source: io::Error::other("disk") };
        assert_eq!(io.code(), ErrorCode::Internal);
        assert!(std::error::Error::source(&io).is_some(), "the cause is kept");
    }
}
