//! Incremental indexing: bring the index in line with its sources, touching only what changed.
//!
//! A source is a folder of notes or a Notion database ([`Source`]); the manifest knows each by
//! its [`SourceId`]. A run compares each source's listing with the live generation's manifest —
//! the [`Stamp`](crate::sources::Stamp) first, then a content hash (`index/plan.rs` decides) — and
//! classifies documents as added, changed, removed or unchanged.
//! Only added and changed documents are read, chunked and embedded (embeddings of text seen
//! before come from the cache); the next generation is built from the live one and published
//! atomically (see [`crate::index::generations`]). A run in which nothing changed writes nothing.
//!
//! A run ([`IndexRun`]) is planned (`plan.rs`), then its caller reads what changed (a Notion
//! source reads asynchronously), then it is written (`write.rs`).

pub mod chunk;
pub mod generations;
mod plan;
mod run;
pub mod snapshot;
pub mod text;
pub mod vectors;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use self::chunk::ChunkSettings;
pub use self::run::{IndexRun, Pending};
use self::vectors::VectorSettings;
use crate::embed::Embed;
use crate::error::Result;
use crate::sources::{FolderSource, Source, SourceId};

/// How the index is built.
#[derive(Debug, Clone, Default)]
pub struct IndexSettings {
    /// Chunk sizes; `None` fits them to the model ([`ChunkSettings::fitting`]).
    pub chunking: Option<ChunkSettings>,
    /// HNSW parameters.
    pub vectors: VectorSettings,
    /// Texts per inference batch.
    pub batch_size: usize,
    /// Build the next generation from the sources alone, even if the live one is usable
    /// (`local-agent index --rebuild`, `POST /index/rebuild`).
    pub rebuild: bool,
}

impl IndexSettings {
    /// The chunk sizes for `embedder`: those configured, or those that fit the model.
    pub fn chunking_for(&self, embedder: &dyn Embed) -> ChunkSettings {
        self.chunking.unwrap_or_else(|| ChunkSettings::fitting(embedder.max_tokens()))
    }
}

/// Stages of a run, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and chunking added and changed files.
    Reading,
    /// Embedding chunks not found in the cache.
    Embedding,
    /// Writing the new generation.
    Writing,
}

/// Receives progress; every method has a do-nothing default.
pub trait Progress: Sync {
    /// A phase starts with `total` steps.
    fn start(&self, _phase: Phase, _total: u64) {}
    /// `steps` more are done.
    fn advance(&self, _steps: u64) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// No progress display.
pub struct Silent;
impl Progress for Silent {}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Files new since the last run.
    pub added: usize,
    /// Files whose content changed.
    pub changed: usize,
    /// Files gone since the last run.
    pub removed: usize,
    /// Files left as they were.
    pub unchanged: usize,
    /// Documents in the index afterwards.
    pub documents: usize,
    /// Chunks in the index afterwards.
    pub chunks: usize,
    /// Chunks written in this run.
    pub chunks_written: usize,
    /// Chunks embedded by the model in this run.
    pub embedded: usize,
    /// Chunks whose embedding came from the cache.
    pub from_cache: usize,
    /// The live generation afterwards.
    pub generation: u64,
    /// Whether this run published a new generation.
    pub published: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Of which spent in the model.
    pub embedding_time: Duration,
    /// Files with a note's extension that hold no text (binaries, other encodings), left out of
    /// the index (see [`crate::Error::NotText`]), by id.
    pub not_text: Vec<String>,
    /// Documents (or whole sources) that could not be read this time; what the index held of
    /// them is kept as it was.
    pub unreadable: Vec<Unreadable>,
}

/// A document, or a whole source, that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The source.
    pub source: SourceId,
    /// The document's id; empty when the whole source could not be listed.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// Version of how documents become index entries: the chunking rules and the keyword
/// analyzer. Raising it makes the next run rebuild the index from the folders (embeddings of
/// unchanged passages still come from the cache).
pub const RECIPE_VERSION: u32 = 4;

/// Deleted vectors stay in the HNSW graph as tombstones; past this share the graph is rebuilt.
const MAX_TOMBSTONE_SHARE: f64 = 0.3;

/// Brings the index in `data_dir` up to date with `folders` (all previously indexed folders
/// when empty). Folders indexed before and not named, and other sources, are left as they are.
pub fn index_folders(
    data_dir: &Path,
    folders: &[PathBuf],
    embedder: &dyn Embed,
    settings: &IndexSettings,
    progress: &dyn Progress,
) -> Result<IndexReport> {
    let sources = folders.iter().map(|folder| FolderSource::new(folder)).collect::<Result<Vec<_>>>()?;
    let sources: Vec<&dyn Source> = sources.iter().map(|source| source as &dyn Source).collect();
    index_sources(data_dir, &sources, embedder, settings, progress)
}

/// Brings the index in `data_dir` up to date with `sources`, read here and now (all previously
/// indexed folders when none is given): an [`IndexRun`] from start to end. See
/// [`IndexRun::begin`] for what happens to sources indexed before and not given.
pub fn index_sources(
    data_dir: &Path,
    sources: &[&dyn Source],
    embedder: &dyn Embed,
    settings: &IndexSettings,
    progress: &dyn Progress,
) -> Result<IndexReport> {
    let listings = sources.iter().map(|source| Ok((source.root().clone(), source.scan()?))).collect::<Result<_>>()?;
    let mut run = IndexRun::begin(data_dir, listings, embedder, settings)?;
    for pending in run.pending_mut() {
        if let Some(source) = sources.iter().find(|source| source.root() == &pending.source) {
            pending.read = Some(source.read(&pending.item));
        }
    }
    run.finish(embedder, progress)
}

/// Test hook: `LOCAL_AGENT_CRASH_AT=<point>` aborts the process at that point of a run, as a
/// power cut would, so tests can prove the last good index survives every step. Only in
/// builds with the `crash-points` feature (the test script's); shipped binaries have none.
#[cfg(feature = "crash-points")]
fn crash_point(point: &str) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if TARGET.get_or_init(|| std::env::var("LOCAL_AGENT_CRASH_AT").ok()).as_deref() == Some(point) {
        eprintln!("crash point {point} reached; aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "crash-points"))]
fn crash_point(_point: &str) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::hashing::HashingEmbedder;
    use crate::index::generations::IndexDir;
    use crate::index::snapshot::Snapshot;

    #[test]
    fn indexing_runs_without_a_model_file() {
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes");
        std::fs::create_dir_all(&notes).unwrap();
        std::fs::write(notes.join("bread.md"), "# Bread\nFeed the sourdough starter twice a day.\n").unwrap();
        std::fs::write(notes.join("tea.txt"), "Steep green tea at 80 degrees.\n").unwrap();
        let data = dir.path().join("data");
        let embedder = HashingEmbedder::new(32);
        let settings = IndexSettings { batch_size: 4, ..IndexSettings::default() };
        let first = index_folders(&data, std::slice::from_ref(&notes), &embedder, &settings, &Silent).unwrap();
        assert_eq!((first.added, first.documents, first.embedded, first.generation), (2, 2, first.chunks, 1));

        std::fs::write(notes.join("tea.txt"), "Steep green tea at 75 degrees for two minutes.\n").unwrap();
        std::fs::remove_file(notes.join("bread.md")).unwrap();
        let second = index_folders(&data, &[], &embedder, &settings, &Silent).unwrap();
        assert_eq!((second.changed, second.removed, second.documents, second.generation), (1, 1, 1, 2));
        let index = IndexDir::new(&data);
        let manifest = index.read_manifest(2).unwrap();
        assert_eq!(manifest.model_id, "hashing-32");
        assert_eq!(manifest.documents[0].id, "tea.txt");
        assert!(Snapshot::open_current(&index, "hashing-32").unwrap().is_some(), "the generation opens");

        // Two of the three vectors written are tombstones now: the next run compacts the graph.
        let third = index_folders(&data, &[], &embedder, &settings, &Silent).unwrap();
        assert!(third.published && third.unchanged == 1, "{third:?}");
        assert_eq!(index.read_manifest(third.generation).unwrap().deleted_vectors, 0);
        let fourth = index_folders(&data, &[], &embedder, &settings, &Silent).unwrap();
        assert!(!fourth.published, "nothing changed, nothing written");
    }

    #[test]
    fn a_run_reads_its_folders_itself_and_what_a_caller_leaves_unread_elsewhere_is_kept_as_unreadable() {
        use crate::sources::folder::{Document, FileKind};
        use crate::sources::{Listing, ReadDocument, SourceItem, Stamp};

        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes");
        std::fs::create_dir_all(&notes).unwrap();
        std::fs::write(notes.join("tea.md"), "Steep green tea at 80 degrees.\n").unwrap();
        let folder = FolderSource::new(&notes).unwrap();
        let data = dir.path().join("data");
        let embedder = HashingEmbedder::new(32);
        let settings = IndexSettings { batch_size: 4, ..IndexSettings::default() };
        let database = SourceId::Notion("db1".into());
        let page = |id: &str| SourceItem { id: id.into(), stamp: Stamp::Edited { at_ns: 1, settled: true } };
        let pages = Listing { files: vec![page("p1"), page("p2")], complete: true };
        let listings = vec![(folder.root().clone(), folder.scan().unwrap()), (database.clone(), pages)];

        let mut run = IndexRun::begin(&data, listings, &embedder, &settings).unwrap();
        assert_eq!(run.pending_mut().len(), 3);
        // The caller reads p1 only (as an async client would); the folder is left to the run.
        for pending in run.pending_mut().iter_mut().filter(|pending| pending.item.id == "p1") {
            let document = Document {
                id: "p1".into(),
                title: "Bread".into(),
                tags: vec![],
                body: "Knead.".into(),
                kind: FileKind::Markdown,
            };
            pending.read = Some(Ok(ReadDocument { raw: "Bread Knead.".into(), document, url: None }));
        }
        let report = run.finish(&embedder, &Silent).unwrap();
        assert_eq!((report.added, report.documents), (2, 2), "{report:?}");
        let unread: Vec<(&SourceId, &str)> = report.unreadable.iter().map(|u| (&u.source, u.id.as_str())).collect();
        assert_eq!(unread, [(&database, "p2")]);

        let busy = IndexRun::begin(&data, Vec::new(), &embedder, &settings).unwrap();
        assert!(matches!(
            IndexRun::begin(&data, Vec::new(), &embedder, &settings),
            Err(crate::error::Error::IndexBusy { .. })
        ));
        drop(busy);
    }
}
