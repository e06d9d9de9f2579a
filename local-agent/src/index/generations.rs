//! Atomic index updates through generations.
//!
//! The index directory holds numbered generations (`gen-000007/`), each a complete index —
//! keyword index, vector index and manifest — plus a `CURRENT` file naming the live one. An
//! update builds the next generation beside the live one (keyword-index segments are
//! hard-linked, not copied: tantivy never rewrites a file in place) and only then replaces
//! `CURRENT` with an atomic rename. A crash or kill at any moment therefore leaves either the
//! old or the new generation live, never a half-written one; an abandoned generation directory
//! is cleaned up by the next run. Writers are serialised by a lock file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::embed::cache::ChunkHash;
use crate::error::{Error, Result};
use crate::index::chunk::ChunkSettings;
use crate::index::vectors::VectorSettings;
use crate::sources::{SourceId, Stamp};

/// Version of the on-disk layout written now; an unknown version is rebuilt, never misread.
/// Format 2 names sources by kind (`{"folder": …}`, `{"notion": …}`) where format 1 wrote a
/// path or `notion://<id>`.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest layout still read: format-1 manifests are read as they are (their roots are
/// recognised) and rewritten in the new format by the next index run.
pub const OLDEST_READABLE_FORMAT: u32 = 1;

/// File names inside a generation.
pub const TEXT_DIR: &str = "text";
/// The usearch file.
pub const VECTORS_FILE: &str = "vectors.usearch";
/// The manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
const CURRENT_FILE: &str = "CURRENT";
const LOCK_FILE: &str = "writer.lock";

/// What a generation contains: the documents, their chunks, and how they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// Number of this generation.
    pub generation: u64,
    /// Embedding model the vectors came from.
    pub model_id: String,
    /// Vector length.
    pub dimensions: usize,
    /// How documents were chunked.
    pub chunking: ChunkSettings,
    /// [`crate::index::RECIPE_VERSION`] of the writer.
    #[serde(default)]
    pub recipe: u32,
    /// How the vector index was built.
    pub vectors: VectorSettings,
    /// Next unused chunk id; ids are never reused, so a stale id cannot point at new text.
    pub next_chunk_id: u64,
    /// Vectors deleted from the HNSW graph since it was last built from scratch; they linger
    /// as tombstones until the next rebuild.
    #[serde(default)]
    pub deleted_vectors: u64,
    /// When this generation was written (seconds since the epoch).
    pub created_at: u64,
    /// Indexed sources; documents refer to them by position.
    pub roots: Vec<SourceId>,
    /// Indexed documents.
    pub documents: Vec<DocumentEntry>,
}

/// One indexed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WrittenEntry")]
pub struct DocumentEntry {
    /// Position of its folder in [`Manifest::roots`].
    pub root: u32,
    /// Path relative to that folder.
    pub id: String,
    /// Title.
    pub title: String,
    /// Tags as written.
    pub tags: Vec<String>,
    /// Its stamp when indexed.
    pub stamp: Stamp,
    /// BLAKE3 of the file's bytes (hex).
    pub content_hash: String,
    /// Where a reader opens it, when that is not its id (a Notion page's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Chunks in document order.
    pub chunks: Vec<ChunkEntry>,
}

/// A document entry as any readable format wrote it: format 1 had `size` and `modified_ns`
/// where format 2 has a [`Stamp`].
#[derive(Deserialize)]
struct WrittenEntry {
    root: u32,
    id: String,
    title: String,
    tags: Vec<String>,
    #[serde(default)]
    stamp: Option<Stamp>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    modified_ns: u128,
    content_hash: String,
    #[serde(default)]
    url: Option<String>,
    chunks: Vec<ChunkEntry>,
}

impl From<WrittenEntry> for DocumentEntry {
    fn from(written: WrittenEntry) -> Self {
        let WrittenEntry { root, id, title, tags, stamp, size, modified_ns, content_hash, url, chunks } = written;
        // A format-1 stamp is read as a file's; `Manifest::upgrade` turns pages' into theirs.
        let stamp = stamp.unwrap_or(Stamp::File { size, modified_ns });
        Self { root, id, title, tags, stamp, content_hash, url, chunks }
    }
}

impl DocumentEntry {
    /// What results cite: the URL if the document has one, else its id.
    pub fn source(&self) -> &str {
        self.url.as_deref().unwrap_or(&self.id)
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Key in both indexes.
    pub id: u64,
    /// Key of its vector in the embedding cache (written as hex).
    #[serde(with = "hex_hash")]
    pub hash: ChunkHash,
}

/// A chunk's hash as the manifest writes it: 32 hex digits. Held as bytes: as a `String` it
/// cost every chunk of a served index another ~56 bytes of heap.
mod hex_hash {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    use crate::embed::cache::ChunkHash;
    use crate::index::write::{hex, parse_hex};

    pub fn serialize<S: Serializer>(hash: &ChunkHash, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ChunkHash, D::Error> {
        struct HexHash;
        impl Visitor<'_> for HexHash {
            type Value = ChunkHash;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a chunk hash of 32 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ChunkHash, E> {
                parse_hex(text).ok_or_else(|| E::custom(format!("{text:?} is not a chunk hash of 32 hex digits")))
            }
        }
        deserializer.deserialize_str(HexHash)
    }
}

impl Manifest {
    /// Reads what an older format wrote as this format means it: format 1 kept a Notion page's
    /// stamp as `size` 1 while unsettled and its edit time as `modified_ns`.
    fn upgrade(&mut self) {
        if self.format >= 2 {
            return;
        }
        for document in &mut self.documents {
            let notion = matches!(self.roots.get(document.root as usize), Some(SourceId::Notion(_)));
            if let (true, Stamp::File { size, modified_ns }) = (notion, document.stamp) {
                document.stamp = Stamp::Edited { at_ns: modified_ns, settled: size == 0 };
            }
        }
    }

    /// Number of chunks over all documents.
    pub fn chunk_count(&self) -> usize {
        self.documents.iter().map(|document| document.chunks.len()).sum()
    }
}

/// The index directory: generations, `CURRENT`, and the writer lock.
#[derive(Debug, Clone)]
pub struct IndexDir {
    path: PathBuf,
}

/// Holds the writer lock until dropped.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl IndexDir {
    /// The index directory inside `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join("index") }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory of generation `number`.
    pub fn generation_dir(&self, number: u64) -> PathBuf {
        self.path.join(format!("gen-{number:06}"))
    }

    /// The live generation, if any.
    pub fn current(&self) -> Result<Option<u64>> {
        let path = self.path.join(CURRENT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io(&path)(error)),
        };
        let number = text.trim().strip_prefix("gen-").and_then(|digits| digits.parse().ok()).ok_or_else(|| {
            Error::CorruptIndex { dir: self.path.clone(), message: format!("CURRENT holds {text:?}") }
        })?;
        Ok(Some(number))
    }

    /// Reads a generation's manifest and checks it is one this version understands.
    pub fn read_manifest(&self, number: u64) -> Result<Manifest> {
        let dir = self.generation_dir(number);
        let path = dir.join(MANIFEST_FILE);
        let file =
            File::open(&path).map_err(|error| Error::CorruptIndex { dir: dir.clone(), message: error.to_string() })?;
        // Parsed as it is read: a whole 100k-chunk manifest (~20 MB) held at once is freed
        // right after, and the allocator keeps that much of the heap for good (BENCHMARKS.md).
        let mut manifest: Manifest = serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
            .map_err(|error| Error::CorruptIndex { dir: dir.clone(), message: format!("manifest: {error}") })?;
        if !(OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&manifest.format) || manifest.generation != number {
            return Err(Error::CorruptIndex {
                dir,
                message: format!("format {} generation {}", manifest.format, manifest.generation),
            });
        }
        manifest.upgrade();
        Ok(manifest)
    }

    /// Takes the writer lock, or fails at once if another process holds it.
    pub fn lock(&self) -> Result<WriterLock> {
        fs::create_dir_all(&self.path).map_err(Error::io(&self.path))?;
        let path = self.path.join(LOCK_FILE);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::IndexBusy { path }),
            Err(fs::TryLockError::Error(error)) => Err(Error::io(&path)(error)),
        }
    }

    /// Starts generation `number` in an empty directory, seeded with hard links to the
    /// keyword-index files of generation `base` when given. Needs the writer lock.
    pub fn prepare(&self, _lock: &WriterLock, number: u64, base: Option<u64>) -> Result<PathBuf> {
        let dir = self.generation_dir(number);
        if dir.exists() {
            // Left behind by a run that died before publishing it.
            fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        let text_dir = dir.join(TEXT_DIR);
        fs::create_dir_all(&text_dir).map_err(Error::io(&text_dir))?;
        if let Some(base) = base {
            let source = self.generation_dir(base).join(TEXT_DIR);
            for entry in fs::read_dir(&source).map_err(Error::io(&source))? {
                let entry = entry.map_err(Error::io(&source))?;
                let name = entry.file_name();
                let is_lock = name.to_str().is_some_and(|n| n.ends_with(".lock"));
                if is_lock || !entry.file_type().map_err(Error::io(entry.path()))?.is_file() {
                    continue;
                }
                let target = text_dir.join(&name);
                if fs::hard_link(entry.path(), &target).is_err() {
                    // File systems without hard links get a copy; correctness is the same.
                    fs::copy(entry.path(), &target).map_err(Error::io(&target))?;
                }
            }
        }
        Ok(dir)
    }

    /// Writes the manifest of a prepared generation, durably.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let dir = self.generation_dir(manifest.generation);
        let bytes = serde_json::to_vec(manifest)
            .map_err(|error| Error::Io { path: dir.join(MANIFEST_FILE), source: std::io::Error::other(error) })?;
        write_durably(&dir.join(MANIFEST_FILE), &bytes)
    }

    /// Makes generation `number` the live one, atomically, then deletes generations older
    /// than the one it replaces (a running server may still be reading that one).
    pub fn publish(&self, lock: &WriterLock, number: u64) -> Result<()> {
        let dir = self.generation_dir(number);
        sync_tree(&dir)?;
        let previous = self.current()?;
        write_durably(&self.path.join(CURRENT_FILE), format!("gen-{number:06}\n").as_bytes())?;
        self.collect_garbage(lock, &[Some(number), previous]);
        Ok(())
    }

    /// Removes every generation directory not in `keep`; failures are only logged (a file
    /// may still be open on some platforms; the next run tries again).
    fn collect_garbage(&self, _lock: &WriterLock, keep: &[Option<u64>]) {
        let Ok(entries) = fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix("gen-")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !keep.contains(&Some(number))
                && let Err(error) = fs::remove_dir_all(entry.path())
            {
                tracing::warn!(%error, dir = %entry.path().display(), "could not remove an old index generation");
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then syncs the
/// directory: after a crash the file has either its old or its new content.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(Error::io(&temporary))?;
    file.write_all(bytes).map_err(Error::io(&temporary))?;
    file.sync_all().map_err(Error::io(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(Error::io(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Flushes every file of a generation, and the directories, to disk.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(Error::io(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|file| file.sync_all()).map_err(Error::io(&path))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|file| file.sync_all()).map_err(Error::io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_stamps_are_read_as_files_and_pages() {
        let entry = |root: u32, size: u64| {
            serde_json::json!({"root": root, "id": "x", "title": "X", "tags": [], "size": size,
                               "modified_ns": 7, "content_hash": "h", "chunks": []})
        };
        let written = serde_json::json!({
            "format": 1, "generation": 1, "model_id": "m", "dimensions": 2,
            "chunking": ChunkSettings::default(), "vectors": VectorSettings::default(),
            "next_chunk_id": 1, "created_at": 0,
            "roots": ["/notes", "notion://db"],
            "documents": [entry(0, 40), entry(1, 1), entry(1, 0)],
        });
        let mut manifest: Manifest = serde_json::from_value(written).unwrap();
        manifest.upgrade();
        assert_eq!(manifest.roots, [SourceId::Folder("/notes".into()), SourceId::Notion("db".into())]);
        let stamps: Vec<Stamp> = manifest.documents.iter().map(|document| document.stamp).collect();
        assert_eq!(
            stamps,
            [
                Stamp::File { size: 40, modified_ns: 7 },
                Stamp::Edited { at_ns: 7, settled: false },
                Stamp::Edited { at_ns: 7, settled: true },
            ]
        );
    }

    #[test]
    fn chunk_hashes_are_written_as_hex_and_a_bad_one_is_refused() {
        let chunk = ChunkEntry { id: 3, hash: *b"0123456789abcdef" };
        let written = serde_json::to_value(&chunk).unwrap();
        assert_eq!(written, serde_json::json!({"id": 3, "hash": "30313233343536373839616263646566"}));
        let read: ChunkEntry = serde_json::from_reader(written.to_string().as_bytes()).unwrap();
        assert_eq!(read, chunk);
        for bad in ["3031", "zz313233343536373839616263646566", "30313233343536373839616263646566aa"] {
            let error = serde_json::from_value::<ChunkEntry>(serde_json::json!({"id": 3, "hash": bad})).unwrap_err();
            assert!(error.to_string().contains("not a chunk hash"), "{bad}: {error}");
        }
    }

    #[test]
    fn publishing_switches_current_and_collects_old_generations() {
        let data = tempfile::tempdir().unwrap();
        let dir = IndexDir::new(data.path());
        assert_eq!(dir.current().unwrap(), None);
        let lock = dir.lock().unwrap();
        assert!(matches!(dir.lock(), Err(Error::IndexBusy { .. })), "a second writer is refused");
        for number in 1..=3 {
            let path = dir.prepare(&lock, number, (number > 1).then(|| number - 1)).unwrap();
            fs::write(path.join(TEXT_DIR).join("segment"), number.to_string()).unwrap();
            dir.publish(&lock, number).unwrap();
            assert_eq!(dir.current().unwrap(), Some(number));
        }
        assert!(!dir.generation_dir(1).exists(), "older generations are removed");
        assert!(dir.generation_dir(2).exists(), "the one just replaced is kept for readers");
        // An abandoned generation is replaced by a fresh one.
        let path = dir.prepare(&lock, 4, Some(3)).unwrap();
        fs::write(path.join("junk"), "x").unwrap();
        let path = dir.prepare(&lock, 4, Some(3)).unwrap();
        assert!(!path.join("junk").exists());
        assert_eq!(fs::read_to_string(path.join(TEXT_DIR).join("segment")).unwrap(), "3");
        drop(lock);
        assert!(dir.lock().is_ok(), "the lock is released on drop");
    }

    #[test]
    fn a_garbled_current_file_is_reported_not_misread() {
        let data = tempfile::tempdir().unwrap();
        let dir = IndexDir::new(data.path());
        fs::create_dir_all(dir.path()).unwrap();
        fs::write(dir.path().join(CURRENT_FILE), "nonsense").unwrap();
        assert!(matches!(dir.current(), Err(Error::CorruptIndex { .. })));
    }
}
