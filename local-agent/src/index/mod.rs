//! Incremental indexing: bring the index in line with its sources, touching only what changed.
//!
//! A source is a folder of notes or a Notion database ([`Source`]); the manifest knows each by
//! its [`SourceId`]. A run compares each source's listing with the live generation's manifest —
//! the [`Stamp`](crate::sources::Stamp) first, then a content hash (`index/plan.rs` decides) — and
//! classifies documents as added, changed, removed or unchanged.
//! Only added and changed documents are read, chunked and embedded (embeddings of text seen
//! before come from the cache); the next generation is built from the live one and published
//! atomically (see [`crate::index::generations`]). A run in which nothing changed writes nothing.

pub mod chunk;
pub mod generations;
mod plan;
pub mod snapshot;
pub mod text;
pub mod vectors;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::chunk::{ChunkSettings, chunk_document};
use self::generations::{ChunkEntry, DocumentEntry, FORMAT_VERSION, IndexDir, Manifest, TEXT_DIR, VECTORS_FILE};
use self::plan::{Plan, plan};
use self::snapshot::Snapshot;
use self::text::{NewChunk, StoredChunk, TextIndex};
use self::vectors::{VectorIndex, VectorSettings};
use crate::embed::Embed;
use crate::embed::cache::{ChunkHash, EmbeddingCache, chunk_hash};
use crate::error::{Error, Result};
use crate::sources::folder::Document;
use crate::sources::{FolderSource, Listing, ReadDocument, Source, SourceId, SourceItem};

/// How the index is built.
#[derive(Debug, Clone, Default)]
pub struct IndexSettings {
    /// Chunk sizes.
    pub chunking: ChunkSettings,
    /// HNSW parameters.
    pub vectors: VectorSettings,
    /// Texts per inference batch.
    pub batch_size: usize,
    /// Build the next generation from the sources alone, even if the live one is usable
    /// (`local-agent index --rebuild`, `POST /index/rebuild`).
    pub rebuild: bool,
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
pub const RECIPE_VERSION: u32 = 3;

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

/// Brings the index in `data_dir` up to date with `sources` (all previously indexed folders
/// when none is given). Sources indexed before and not given are left as they are — except on
/// a full rebuild (a new model or chunking), which keeps only what it can read again: the
/// documents of a source not given then come back with that source's next run.
pub fn index_sources(
    data_dir: &Path,
    sources: &[&dyn Source],
    embedder: &dyn Embed,
    settings: &IndexSettings,
    progress: &dyn Progress,
) -> Result<IndexReport> {
    let started = Instant::now();
    let index_dir = IndexDir::new(data_dir);
    let lock = index_dir.lock()?;
    let previous_number = index_dir.current().unwrap_or_else(|error| {
        tracing::warn!(%error, "the live index is unreadable; rebuilding from the folders");
        None
    });
    let previous = previous_number.and_then(|number| match index_dir.read_manifest(number) {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            tracing::warn!(%error, "the live index is unreadable; rebuilding from the folders");
            None
        }
    });

    let mut roots: Vec<SourceId> = previous.as_ref().map(|m| m.roots.clone()).unwrap_or_default();
    let mut requested = Vec::new();
    for source in sources {
        let root = source.root().clone();
        if !roots.contains(&root) {
            roots.push(root.clone());
        }
        requested.push(root);
    }
    if roots.is_empty() {
        return Err(Error::Config {
            path: data_dir.to_owned(),
            message: "nothing to index yet: name a folder, e.g. `local-agent index ~/notes`".into(),
        });
    }

    let same_recipe = previous.as_ref().is_some_and(|m| {
        m.model_id == embedder.model_id()
            && m.dimensions == embedder.dimensions()
            && m.chunking == settings.chunking
            && m.recipe == RECIPE_VERSION
            && m.vectors == settings.vectors
    });
    let tombstones = previous.as_ref().map_or(0, |m| m.deleted_vectors);
    let live = previous.as_ref().map_or(0, Manifest::chunk_count);
    // The next generation is built on the live one only if that one opens cleanly.
    let base_usable = match (previous_number, &previous) {
        (Some(number), Some(manifest)) if same_recipe => {
            match Snapshot::open(&index_dir.generation_dir(number), manifest.clone()) {
                Ok(_) => true,
                Err(error) => {
                    tracing::warn!(%error, "rebuilding the index from the folders");
                    false
                }
            }
        }
        _ => false,
    };
    // A full rebuild re-reads every folder; embeddings still come from the cache.
    let rebuild = settings.rebuild || !base_usable || tombstones as f64 > MAX_TOMBSTONE_SHARE * live.max(1) as f64;
    let scan_roots: Vec<SourceId> = if rebuild || requested.is_empty() { roots.clone() } else { requested.clone() };
    // Previously indexed folders are read again from their paths; other sources need their
    // client, so only the ones given can be read.
    let known_folders: Vec<FolderSource> = scan_roots
        .iter()
        .filter(|root| !requested.contains(root))
        .filter_map(|root| root.folder().map(|path| FolderSource::known(path.to_owned())))
        .collect();
    let source_of =
        |root: &SourceId| -> Option<&dyn Source> {
            sources.iter().copied().find(|source| source.root() == root).or_else(|| {
                known_folders.iter().find(|source| source.root() == root).map(|source| source as &dyn Source)
            })
        };

    // --- Compare the folders with the manifest ------------------------------------------
    let mut previous_documents: HashMap<(u32, &str), &DocumentEntry> = HashMap::new();
    if let Some(manifest) = &previous {
        for document in &manifest.documents {
            if let Some(root) = manifest.roots.get(document.root as usize)
                && let Some(position) = roots.iter().position(|r| r == root)
            {
                previous_documents.insert((position as u32, document.id.as_str()), document);
            }
        }
    }
    let mut report = IndexReport::default();
    let mut listings: Vec<(u32, Listing)> = Vec::new();
    for root in &scan_roots {
        let position = roots.iter().position(|r| r == root).unwrap_or_default() as u32;
        let Some(source) = source_of(root) else { continue };
        match source.scan() {
            Ok(listing) => listings.push((position, listing)),
            // A folder indexed earlier may be on a drive that is not mounted now: that must not
            // stop the other folders from being indexed, nor wipe its notes from the index.
            Err(error) if !requested.contains(root) => {
                tracing::warn!(%error, "skipping a previously indexed folder");
                report.unreadable.push(Unreadable {
                    source: root.clone(),
                    id: String::new(),
                    reason: error.to_string(),
                });
            }
            Err(error) => return Err(error),
        }
    }
    let Plan { mut kept, to_read, mut deleted_chunks, unchanged, removed } =
        plan(&previous_documents, listings, rebuild);
    report.unchanged += unchanged;
    report.removed += removed;

    // --- Read and chunk what is new or changed --------------------------------------------
    progress.start(Phase::Reading, to_read.len() as u64);
    let mut next_chunk_id = previous.as_ref().map_or(1, |m| m.next_chunk_id);
    let mut fresh: Vec<FreshDocument> = Vec::new();
    for (position, file, before) in to_read {
        progress.advance(1);
        let source = source_of(&roots[position as usize]);
        let read = source.map(|source| source.read(&file)).unwrap_or_else(|| {
            Err(Error::Config {
                path: roots[position as usize].to_string().into(),
                message: "no reader for this source".into(),
            })
        });
        let ReadDocument { raw, document, url } = match read {
            Ok(read) => read,
            Err(error) => {
                // The document vanished or became unreadable since the scan: keep what we had.
                tracing::warn!(%error, id = file.id, "skipping an unreadable document");
                report.unreadable.push(Unreadable {
                    source: roots[position as usize].clone(),
                    id: file.id.clone(),
                    reason: error.to_string(),
                });
                match before {
                    // Its chunks are still in the generation this run builds on.
                    Some(entry) if !rebuild => kept.push(DocumentEntry { root: position, ..entry.clone() }),
                    Some(_) => report.removed += 1,
                    None => {}
                }
                continue;
            }
        };
        let content_hash = blake3::hash(raw.as_bytes()).to_hex().to_string();
        match before {
            Some(entry) if entry.content_hash == content_hash && !rebuild => {
                // Touched but not changed: remember the new timestamp only.
                report.unchanged += 1;
                kept.push(DocumentEntry { root: position, stamp: file.stamp, url: url.clone(), ..entry.clone() });
                continue;
            }
            Some(entry) => {
                if entry.content_hash == content_hash {
                    report.unchanged += 1
                } else {
                    report.changed += 1
                }
                deleted_chunks.extend(entry.chunks.iter().map(|c| c.id));
            }
            None => report.added += 1,
        }
        let chunks = chunk_document(&document, settings.chunking, &|text| embedder.count_tokens(text));
        let chunks = chunks
            .into_iter()
            .map(|chunk| {
                let indexed = chunk.indexed_text(&document.title);
                let hash = chunk_hash(embedder.model_id(), &indexed);
                let id = next_chunk_id;
                next_chunk_id += 1;
                FreshChunk {
                    id,
                    hash,
                    indexed,
                    stored: StoredChunk { text: chunk.text, heading: chunk.heading, overlap: chunk.overlap },
                }
            })
            .collect();
        fresh.push(FreshDocument { root: position, file, document, url, content_hash, chunks });
    }
    progress.finish();

    let roots_changed = previous.as_ref().is_none_or(|m| m.roots != roots);
    // A manifest of an older format is rewritten in this one (its chunks carried over).
    let old_format = previous.as_ref().is_some_and(|m| m.format != FORMAT_VERSION);
    if old_format {
        tracing::info!(
            from = previous.as_ref().map_or(0, |m| m.format),
            to = FORMAT_VERSION,
            "upgrading the index's format"
        );
    }
    let nothing_to_do = fresh.is_empty() && deleted_chunks.is_empty() && !roots_changed && !rebuild && !old_format;
    if let (true, Some(manifest)) = (nothing_to_do, &previous) {
        report.documents = manifest.documents.len();
        report.chunks = manifest.chunk_count();
        report.generation = manifest.generation;
        report.elapsed = started.elapsed();
        return Ok(report);
    }

    // --- Embed, from the cache where possible ---------------------------------------------
    let cache = EmbeddingCache::open(&data_dir.join("embedding-cache.redb"))?;
    let fresh_chunks: Vec<&FreshChunk> = fresh.iter().flat_map(|d| &d.chunks).collect();
    let embedding_started = Instant::now();
    let vectors = embed_missing(&cache, &fresh_chunks, embedder, settings.batch_size, progress, &mut report)?;
    report.embedding_time = embedding_started.elapsed();
    crash_point("embedded");

    // --- Write the next generation ----------------------------------------------------------
    let number = previous_number.map_or(1, |n| n + 1);
    let base = previous_number.filter(|_| !rebuild);
    let dir = index_dir.prepare(&lock, number, base)?;
    let dimensions = embedder.dimensions();
    let written = Written { base, tombstones, fresh: &fresh, vectors: &vectors, deleted: &deleted_chunks };
    let deleted_vectors = write_indexes(&index_dir, &dir, written, dimensions, &settings.vectors, progress)?;

    let mut documents = kept;
    documents.extend(fresh.iter().map(|fresh| DocumentEntry {
        root: fresh.root,
        id: fresh.file.id.clone(),
        title: fresh.document.title.clone(),
        tags: fresh.document.tags.clone(),
        stamp: fresh.file.stamp,
        content_hash: fresh.content_hash.clone(),
        url: fresh.url.clone(),
        chunks: fresh.chunks.iter().map(|c| ChunkEntry { id: c.id, hash: hex(&c.hash) }).collect(),
    }));
    documents.sort_by(|a, b| (a.root, &a.id).cmp(&(b.root, &b.id)));
    let manifest = Manifest {
        format: FORMAT_VERSION,
        generation: number,
        model_id: embedder.model_id().to_owned(),
        dimensions,
        chunking: settings.chunking,
        recipe: RECIPE_VERSION,
        vectors: settings.vectors,
        next_chunk_id,
        deleted_vectors,
        created_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |age| age.as_secs()),
        roots,
        documents,
    };
    index_dir.write_manifest(&manifest)?;
    crash_point("manifest");
    index_dir.publish(&lock, number)?;
    progress.finish();
    crash_point("published");

    let live: HashSet<ChunkHash> =
        manifest.documents.iter().flat_map(|d| &d.chunks).filter_map(|c| parse_hex(&c.hash)).collect();
    if let Err(error) = cache.prune(&live) {
        tracing::warn!(%error, "could not prune the embedding cache");
    }
    report.documents = manifest.documents.len();
    report.chunks = manifest.chunk_count();
    report.chunks_written = fresh_chunks.len();
    report.generation = number;
    report.published = true;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What [`write_indexes`] writes: the fresh chunks and their vectors (in order) over the base
/// generation, if any, minus its `deleted` chunks.
struct Written<'a> {
    base: Option<u64>,
    /// Tombstones in the base's vector graph.
    tombstones: u64,
    fresh: &'a [FreshDocument],
    vectors: &'a [Vec<f32>],
    deleted: &'a [u64],
}

/// Writes the keyword and vector indexes into the prepared generation `dir`: on the base's
/// (its keyword segments are already linked in, its vectors are loaded) or from nothing.
/// Returns the tombstones the vector graph holds afterwards.
fn write_indexes(
    index_dir: &IndexDir,
    dir: &Path,
    written: Written<'_>,
    dimensions: usize,
    settings: &VectorSettings,
    progress: &dyn Progress,
) -> Result<u64> {
    let Written { base, tombstones, fresh, vectors, deleted } = written;
    let (text, vector_index, mut deleted_vectors) = match base {
        Some(base) => {
            let base_vectors = index_dir.generation_dir(base).join(VECTORS_FILE);
            (
                TextIndex::open_or_create(&dir.join(TEXT_DIR))?,
                VectorIndex::load(&base_vectors, dimensions, settings)?,
                tombstones,
            )
        }
        None => (TextIndex::open_or_create(&dir.join(TEXT_DIR))?, VectorIndex::create(dimensions, settings)?, 0),
    };
    progress.start(Phase::Writing, vectors.len() as u64);
    let mut writer = text.writer()?;
    if base.is_some() {
        for &id in deleted {
            writer.delete(id);
            vector_index.remove(id)?;
        }
        deleted_vectors += deleted.len() as u64;
    }
    vector_index.reserve(vectors.len())?;
    let mut position = 0;
    for document in fresh {
        for chunk in &document.chunks {
            let vector = &vectors[position];
            writer.add(NewChunk {
                id: chunk.id,
                body: &chunk.indexed,
                stored: &chunk.stored,
                tags: &document.document.tags,
            })?;
            vector_index.add(chunk.id, vector)?;
            position += 1;
            progress.advance(1);
        }
    }
    crash_point("indexed");
    writer.commit()?;
    vector_index.save(&dir.join(VECTORS_FILE))?;
    crash_point("saved");
    Ok(deleted_vectors)
}

/// The vectors of `chunks`, in order: from the cache where it has them, else from the model
/// (longest texts together, written to the cache every few batches so an interrupted run loses
/// little work). Counts both kinds in `report`.
fn embed_missing(
    cache: &EmbeddingCache,
    chunks: &[&FreshChunk],
    embedder: &dyn Embed,
    batch_size: usize,
    progress: &dyn Progress,
    report: &mut IndexReport,
) -> Result<Vec<Vec<f32>>> {
    let hashes: Vec<ChunkHash> = chunks.iter().map(|c| c.hash).collect();
    let mut vectors = cache.get_many(&hashes)?;
    let mut missing: Vec<usize> = (0..vectors.len()).filter(|&i| vectors[i].is_none()).collect();
    report.from_cache = vectors.len() - missing.len();
    report.embedded = missing.len();
    missing.sort_by_key(|&i| chunks[i].indexed.len());
    progress.start(Phase::Embedding, missing.len() as u64);
    let batch_size = batch_size.max(1);
    for group in missing.chunks(batch_size * 8) {
        let texts: Vec<&str> = group.iter().map(|&i| chunks[i].indexed.as_str()).collect();
        let embedded = embedder.embed_passages(&texts, batch_size, &mut |done| progress.advance(done as u64))?;
        cache.put_many(group.iter().zip(&embedded).map(|(&i, vector)| (&hashes[i], vector.as_slice())))?;
        for (&i, vector) in group.iter().zip(embedded) {
            vectors[i] = Some(vector);
        }
    }
    progress.finish();
    vectors.into_iter().map(|vector| vector.ok_or_else(|| Error::Vector("an embedding is missing".into()))).collect()
}

struct FreshDocument {
    root: u32,
    file: SourceItem,
    document: Document,
    url: Option<String>,
    content_hash: String,
    chunks: Vec<FreshChunk>,
}

struct FreshChunk {
    id: u64,
    hash: ChunkHash,
    indexed: String,
    stored: StoredChunk,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<ChunkHash> {
    let mut hash = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
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
    fn hashes_round_trip_through_hex() {
        let hash = chunk_hash("m", "text");
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex("zz"), None);
    }
}
