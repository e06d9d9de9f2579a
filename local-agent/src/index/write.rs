//! Writing a generation: embeddings for the chunks the cache lacks, then the keyword and vector
//! indexes of the next generation.

use std::path::Path;

use super::chunk::title_line;
use super::generations::{IndexDir, TEXT_DIR, VECTORS_FILE};
use super::text::{NewChunk, StoredChunk, TextIndex};
use super::vectors::{VectorIndex, VectorSettings};
use super::{IndexReport, Phase, Progress, crash_point};
use crate::embed::Embed;
use crate::embed::cache::{ChunkHash, EmbeddingCache};
use crate::error::{Error, Result};
use crate::sources::SourceItem;
use crate::sources::folder::Document;

/// What [`write_indexes`] writes: the fresh chunks and their vectors (in order) over the base
/// generation, if any, minus its `deleted` chunks.
pub(super) struct Written<'a> {
    pub(super) base: Option<u64>,
    /// Tombstones in the base's vector graph.
    pub(super) tombstones: u64,
    pub(super) fresh: &'a [FreshDocument],
    pub(super) vectors: &'a [Vec<f32>],
    pub(super) deleted: &'a [u64],
}

/// Writes the keyword and vector indexes into the prepared generation `dir`: on the base's
/// (its keyword segments are already linked in, its vectors are loaded) or from nothing.
/// Returns the tombstones the vector graph holds afterwards.
pub(super) fn write_indexes(
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
                title: &title_line(&document.document.title, &chunk.stored.heading),
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
pub(super) fn embed_missing(
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

pub(super) struct FreshDocument {
    pub(super) root: u32,
    pub(super) file: SourceItem,
    pub(super) document: Document,
    pub(super) url: Option<String>,
    pub(super) content_hash: String,
    pub(super) chunks: Vec<FreshChunk>,
}

pub(super) struct FreshChunk {
    pub(super) id: u64,
    pub(super) hash: ChunkHash,
    pub(super) indexed: String,
    pub(super) stored: StoredChunk,
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn parse_hex(text: &str) -> Option<ChunkHash> {
    let mut hash = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::cache::chunk_hash;

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = chunk_hash("m", "text");
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex("zz"), None);
    }
}
