//! Integration tests of the local agent: the real model (installed by `scripts/setup.sh`),
//! real indexes in temporary folders, the real HTTP server on an ephemeral port, and the real
//! binary for the command line and for crash tests.

mod cli;
mod doctor;
mod http_api;
mod indexing;
mod multilingual;
mod notion_sync;
mod retrieval;
mod service;
mod setup;
mod status_page;
mod watching;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use local_agent::config::{AgentConfig, Overrides};
use local_agent::embed::Embedder;
use local_agent::index::{self, IndexReport, IndexSettings, Silent};
use local_agent::search::{Engine, SearchSettings};
use tempfile::TempDir;

/// The bundled sample notes.
pub fn sample_notes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes")
}

/// Default configuration with a data directory of the test's own.
pub fn config(data_dir: &Path) -> AgentConfig {
    AgentConfig::load(&Overrides { data_dir: Some(data_dir.to_owned()), config: None }).expect("default configuration")
}

/// The embedding model, loaded once per test binary.
pub fn embedder() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let options = config(Path::new("/nonexistent")).embedder;
            Arc::new(Embedder::load(&options).expect("the model is installed: run scripts/setup.sh"))
        })
        .clone()
}

/// A data directory and a copy of the sample notes that a test may change.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn with_sample_notes() -> Self {
        let workspace = Self { dir: tempfile::tempdir().unwrap() };
        copy_dir(&sample_notes(), &workspace.notes());
        workspace
    }

    /// No notes yet: a test writes its own.
    pub fn empty() -> Self {
        let workspace = Self { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(workspace.notes()).unwrap();
        workspace
    }

    pub fn notes(&self) -> PathBuf {
        self.dir.path().join("notes")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn index(&self) -> IndexReport {
        self.try_index().expect("indexing succeeds")
    }

    pub fn try_index(&self) -> local_agent::Result<IndexReport> {
        index::index_folders(
            &self.data(),
            &[self.notes()],
            embedder().as_ref(),
            &IndexSettings { batch_size: 16, ..Default::default() },
            &Silent,
        )
    }

    pub fn engine(&self) -> Engine {
        Engine::open(&self.data(), embedder(), SearchSettings::default()).expect("engine opens")
    }

    pub fn write(&self, relative: &str, content: &str) {
        let path = self.notes().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Sources of a search's results, best first.
pub fn sources(engine: &Engine, request: &protocol::SearchRequest) -> Vec<String> {
    engine.search(request).expect("search succeeds").results.into_iter().map(|hit| hit.source).collect()
}

/// A search request with no similarity threshold.
pub fn query(text: &str) -> protocol::SearchRequest {
    protocol::SearchRequest { similarity_threshold: 0.0, ..protocol::SearchRequest::new(text) }
}
