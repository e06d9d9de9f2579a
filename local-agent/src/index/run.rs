//! One index run, in three steps so that whoever owns a source reads it in its own way:
//!
//! 1. [`IndexRun::begin`] takes the writer lock, compares the sources' listings with the live
//!    generation (`plan.rs`) and lists the documents to read ([`Pending`]). Blocking.
//! 2. The caller reads them: folders synchronously, Notion pages with its async client (no
//!    `block_on`). What it leaves unread in a folder the run reads itself.
//! 3. [`IndexRun::finish`] chunks what was read, embeds what the cache lacks, writes the next
//!    generation and publishes it. Blocking.
//!
//! The run owns everything it holds (lock included), so it can move between a blocking thread
//! and an async task.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::chunk::chunk_document;
use super::generations::{ChunkEntry, DocumentEntry, FORMAT_VERSION, IndexDir, Manifest, WriterLock};
use super::plan::{Plan, plan};
use super::snapshot::Snapshot;
use super::text::StoredChunk;
use super::write::{FreshChunk, FreshDocument, Written, embed_missing, write_indexes};
use super::{
    IndexReport, IndexSettings, MAX_TOMBSTONE_SHARE, Phase, Progress, RECIPE_VERSION, Unreadable, crash_point,
};
use crate::embed::Embed;
use crate::embed::cache::{ChunkHash, EmbeddingCache, chunk_hash};
use crate::error::{Error, Result};
use crate::sources::{FolderSource, Listing, ReadDocument, Source, SourceId, SourceItem};

/// A document the run must read: new, or changed since the live generation.
#[derive(Debug)]
pub struct Pending {
    /// Its source.
    pub source: SourceId,
    /// The document as listed.
    pub item: SourceItem,
    /// What the caller read; a folder's document left unread is read by [`IndexRun::finish`].
    pub read: Option<Result<ReadDocument>>,
    /// Its source's position in the next manifest.
    position: u32,
    /// Its entry in the live generation, if it is there.
    before: Option<DocumentEntry>,
}

/// A run between its plan and its write; holds the index's writer lock until it is dropped.
#[derive(Debug)]
pub struct IndexRun {
    started: Instant,
    data_dir: PathBuf,
    index_dir: IndexDir,
    lock: WriterLock,
    previous_number: Option<u64>,
    previous: Option<Manifest>,
    roots: Vec<SourceId>,
    rebuild: bool,
    tombstones: u64,
    settings: IndexSettings,
    kept: Vec<DocumentEntry>,
    deleted_chunks: Vec<u64>,
    pending: Vec<Pending>,
    report: IndexReport,
}

impl IndexRun {
    /// Plans a run over the live generation in `data_dir` and the `listings` of the sources
    /// given (all previously indexed folders are listed too when none is given, or on a full
    /// rebuild). Sources indexed before and not given are left as they are — except on a full
    /// rebuild (a new model or chunking), which keeps only what it can read again: the
    /// documents of a source not given then come back with that source's next run.
    pub fn begin(
        data_dir: &Path,
        listings: Vec<(SourceId, Listing)>,
        embedder: &dyn Embed,
        settings: &IndexSettings,
    ) -> Result<Self> {
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
        let requested: Vec<SourceId> = listings.iter().map(|(root, _)| root.clone()).collect();
        for root in &requested {
            if !roots.contains(root) {
                roots.push(root.clone());
            }
        }
        if roots.is_empty() {
            return Err(Error::Config {
                path: data_dir.to_owned(),
                message: "nothing to index yet: name a folder, e.g. `local-agent index ~/notes`".into(),
            });
        }

        let chunking = settings.chunking_for(embedder);
        let same_recipe = previous.as_ref().is_some_and(|m| {
            m.model_id == embedder.model_id()
                && m.dimensions == embedder.dimensions()
                && m.chunking == chunking
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
        let scan_roots: Vec<SourceId> = if rebuild || requested.is_empty() { roots.clone() } else { requested };

        // --- Compare the listings with the manifest ---------------------------------------
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
        let mut given: HashMap<SourceId, Listing> = listings.into_iter().collect();
        let mut positioned: Vec<(u32, Listing)> = Vec::new();
        for root in &scan_roots {
            let position = roots.iter().position(|r| r == root).unwrap_or_default() as u32;
            if let Some(listing) = given.remove(root) {
                positioned.push((position, listing));
                continue;
            }
            // Previously indexed folders are listed again from their paths; other sources need
            // their client, so only the ones given can be listed.
            let Some(path) = root.folder() else { continue };
            match FolderSource::known(path.to_owned()).scan() {
                Ok(listing) => positioned.push((position, listing)),
                // A folder indexed earlier may be on a drive that is not mounted now: that must
                // not stop the other sources from being indexed, nor wipe its notes from the index.
                Err(error) => {
                    tracing::warn!(%error, "skipping a previously indexed folder");
                    report.unreadable.push(Unreadable {
                        source: root.clone(),
                        id: String::new(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        let Plan { kept, to_read, deleted_chunks, unchanged, removed } = plan(&previous_documents, positioned, rebuild);
        report.unchanged += unchanged;
        report.removed += removed;
        let pending = to_read
            .into_iter()
            .map(|(position, item, before)| Pending {
                source: roots[position as usize].clone(),
                item,
                read: None,
                position,
                before,
            })
            .collect();
        Ok(Self {
            started,
            data_dir: data_dir.to_owned(),
            index_dir,
            lock,
            previous_number,
            previous,
            roots,
            rebuild,
            tombstones,
            // The chunk sizes are settled here: the run writes them into the manifest it compared.
            settings: IndexSettings { chunking: Some(chunking), ..settings.clone() },
            kept,
            deleted_chunks,
            pending,
            report,
        })
    }

    /// The documents to read; fill in [`Pending::read`] for those of the sources you read.
    pub fn pending_mut(&mut self) -> &mut [Pending] {
        &mut self.pending
    }

    /// Chunks what was read, embeds what the cache lacks, writes the next generation and
    /// publishes it. A document that could not be read keeps what the index held of it.
    pub fn finish(self, embedder: &dyn Embed, progress: &dyn Progress) -> Result<IndexReport> {
        let Self {
            started,
            data_dir,
            index_dir,
            lock,
            previous_number,
            previous,
            roots,
            rebuild,
            tombstones,
            settings,
            mut kept,
            mut deleted_chunks,
            pending,
            mut report,
        } = self;

        // --- Chunk what is new or changed ---------------------------------------------------
        progress.start(Phase::Reading, pending.len() as u64);
        let mut next_chunk_id = previous.as_ref().map_or(1, |m| m.next_chunk_id);
        let mut fresh: Vec<FreshDocument> = Vec::new();
        for Pending { source, item, read, position, before } in pending {
            progress.advance(1);
            let read = read.unwrap_or_else(|| match source.folder() {
                Some(path) => FolderSource::known(path.to_owned()).read(&item),
                None => {
                    Err(Error::Config { path: source.to_string().into(), message: "no reader for this source".into() })
                }
            });
            let ReadDocument { raw, document, url } = match read {
                Ok(read) => read,
                Err(Error::NotText { .. }) => {
                    // Not a note: left out, and out of the index if an earlier run took it in.
                    report.not_text.push(item.id.clone());
                    if let Some(entry) = before {
                        deleted_chunks.extend(entry.chunks.iter().map(|c| c.id));
                        report.removed += 1;
                    }
                    continue;
                }
                Err(error) => {
                    // The document vanished or became unreadable since the scan: keep what we had.
                    tracing::warn!(%error, id = item.id, "skipping an unreadable document");
                    report.unreadable.push(Unreadable { source, id: item.id.clone(), reason: error.to_string() });
                    match before {
                        // Its chunks are still in the generation this run builds on.
                        Some(entry) if !rebuild => kept.push(DocumentEntry { root: position, ..entry }),
                        Some(_) => report.removed += 1,
                        None => {}
                    }
                    continue;
                }
            };
            let content_hash = blake3::hash(raw.as_bytes()).to_hex().to_string();
            match before {
                Some(entry) if entry.content_hash == content_hash && !rebuild => {
                    // Touched but not changed: remember the new stamp only.
                    report.unchanged += 1;
                    kept.push(DocumentEntry { root: position, stamp: item.stamp, url, ..entry });
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
            let chunks =
                chunk_document(&document, settings.chunking_for(embedder), &|text| embedder.count_tokens(text));
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
            fresh.push(FreshDocument { root: position, file: item, document, url, content_hash, chunks });
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

        // --- Embed, from the cache where possible -------------------------------------------
        let cache = EmbeddingCache::open(&data_dir.join("embedding-cache.redb"))?;
        let fresh_chunks: Vec<&FreshChunk> = fresh.iter().flat_map(|d| &d.chunks).collect();
        let embedding_started = Instant::now();
        let vectors = embed_missing(&cache, &fresh_chunks, embedder, settings.batch_size, progress, &mut report)?;
        report.embedding_time = embedding_started.elapsed();
        crash_point("embedded");

        // --- Write the next generation --------------------------------------------------------
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
            chunks: fresh.chunks.iter().map(|c| ChunkEntry { id: c.id, hash: c.hash }).collect(),
        }));
        documents.sort_by(|a, b| (a.root, &a.id).cmp(&(b.root, &b.id)));
        let manifest = Manifest {
            format: FORMAT_VERSION,
            generation: number,
            model_id: embedder.model_id().to_owned(),
            dimensions,
            chunking: settings.chunking_for(embedder),
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

        let live: HashSet<ChunkHash> = manifest.documents.iter().flat_map(|d| &d.chunks).map(|c| c.hash).collect();
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
}
