//! A live generation opened for searching: both indexes plus the document table, immutable
//! once opened, so searches never see an index halfway through an update.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::index::generations::{IndexDir, MANIFEST_FILE, Manifest, TEXT_DIR, VECTORS_FILE};
use crate::index::text::TextIndex;
use crate::index::vectors::VectorIndex;

/// Where a chunk sits: its document (position in the manifest) and its position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    /// Index into [`Manifest::documents`].
    pub document: u32,
    /// Position of the chunk within its document.
    pub ordinal: u32,
}

/// One generation, open for reading.
pub struct Snapshot {
    /// What the generation contains.
    pub manifest: Manifest,
    /// The keyword index and chunk store.
    pub text: TextIndex,
    /// The vector index (memory-mapped).
    pub vectors: VectorIndex,
    locations: HashMap<u64, ChunkLocation>,
    /// Lower-cased tags per document, for filtering dense results.
    document_tags: Vec<Vec<String>>,
}

impl Snapshot {
    /// Opens the live generation of `index_dir`; `None` when nothing was indexed yet.
    pub fn open_current(index_dir: &IndexDir, model_id: &str) -> Result<Option<Self>> {
        let Some(number) = index_dir.current()? else { return Ok(None) };
        let manifest = index_dir.read_manifest(number)?;
        if manifest.model_id != model_id {
            return Err(Error::ModelChanged { built: manifest.model_id, configured: model_id.to_owned() });
        }
        Self::open(&index_dir.generation_dir(number), manifest).map(Some)
    }

    /// Opens the generation in `dir` described by `manifest`, checking that its parts agree.
    pub fn open(dir: &Path, manifest: Manifest) -> Result<Self> {
        let corrupt = |error: Error| Error::CorruptIndex { dir: dir.to_owned(), message: error.to_string() };
        let text = TextIndex::open_or_create(&dir.join(TEXT_DIR)).map_err(corrupt)?;
        let vectors_path = dir.join(VECTORS_FILE);
        let vectors = VectorIndex::view(&vectors_path, manifest.dimensions, &manifest.vectors).map_err(corrupt)?;
        let mut locations = HashMap::with_capacity(manifest.chunk_count());
        for (document, entry) in manifest.documents.iter().enumerate() {
            for (ordinal, chunk) in entry.chunks.iter().enumerate() {
                locations.insert(chunk.id, ChunkLocation { document: document as u32, ordinal: ordinal as u32 });
            }
        }
        // A generation whose parts disagree is not used (it cannot happen through `publish`,
        // but a disk restored from a backup or a hand edit can do it).
        let chunks = manifest.chunk_count();
        if text.len() as usize != chunks || vectors.len() != chunks {
            return Err(Error::CorruptIndex {
                dir: dir.to_owned(),
                message: format!(
                    "{MANIFEST_FILE} lists {chunks} chunks, the keyword index has {}, the vector index {}",
                    text.len(),
                    vectors.len()
                ),
            });
        }
        let document_tags = manifest
            .documents
            .iter()
            .map(|document| document.tags.iter().map(|tag| tag.to_lowercase()).collect())
            .collect();
        Ok(Self { manifest, text, vectors, locations, document_tags })
    }

    /// Where a chunk is, if it is in this generation.
    pub fn locate(&self, chunk_id: u64) -> Option<ChunkLocation> {
        self.locations.get(&chunk_id).copied()
    }

    /// Whether a document comes from one of `kinds` of source (every kind when empty).
    pub fn is_from(&self, document: u32, kinds: &[protocol::SourceKind]) -> bool {
        if kinds.is_empty() {
            return true;
        }
        let root = self
            .manifest
            .documents
            .get(document as usize)
            .and_then(|entry| self.manifest.roots.get(entry.root as usize));
        let kind = match root {
            Some(crate::sources::SourceId::Folder(_)) => protocol::SourceKind::Notes,
            Some(crate::sources::SourceId::Notion(_)) => protocol::SourceKind::Notion,
            None => return false,
        };
        kinds.contains(&kind)
    }

    /// Whether a document carries one of `tags` (already lower-cased).
    pub fn has_any_tag(&self, document: u32, tags: &[String]) -> bool {
        self.document_tags.get(document as usize).is_some_and(|own| own.iter().any(|tag| tags.contains(tag)))
    }

    /// Number of this generation.
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }
}
