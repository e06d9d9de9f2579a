//! A persistent cache of embeddings keyed by a hash of the model id and the embedded text, so
//! text that has been embedded once — an unchanged paragraph of an edited note, a renamed
//! file, a rebuilt index — is never embedded again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::error::{Error, Result};

/// 128 bits of BLAKE3: collisions are out of the question for any notes collection.
pub type ChunkHash = [u8; 16];

const VECTORS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("vectors");

/// Hash of the text embedded for a chunk under a given model.
pub fn chunk_hash(model_id: &str, text: &str) -> ChunkHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(model_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(text.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    hash
}

/// The cache file (a redb database) and its open handle.
pub struct EmbeddingCache {
    db: Database,
    path: PathBuf,
}

impl EmbeddingCache {
    /// Opens or creates the cache at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let db = Database::create(path).map_err(|e| Self::error_at(path, e))?;
        let cache = Self { db, path: path.to_owned() };
        // Create the table so readers never meet a missing one.
        let txn = cache.db.begin_write().map_err(|e| cache.error(e))?;
        txn.open_table(VECTORS).map_err(|e| cache.error(e))?;
        txn.commit().map_err(|e| cache.error(e))?;
        Ok(cache)
    }

    /// Looks up many hashes at once; `None` where the text was never embedded.
    pub fn get_many(&self, hashes: &[ChunkHash]) -> Result<Vec<Option<Vec<f32>>>> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(VECTORS).map_err(|e| self.error(e))?;
        hashes
            .iter()
            .map(|hash| {
                let value = table.get(hash).map_err(|e| self.error(e))?;
                Ok(value.map(|bytes| decode(bytes.value())))
            })
            .collect()
    }

    /// Stores vectors in one transaction.
    pub fn put_many<'a>(&self, entries: impl IntoIterator<Item = (&'a ChunkHash, &'a [f32])>) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(VECTORS).map_err(|e| self.error(e))?;
            let mut bytes = Vec::new();
            for (hash, vector) in entries {
                bytes.clear();
                bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
                table.insert(hash, bytes.as_slice()).map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Number of cached vectors.
    pub fn len(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(VECTORS).map_err(|e| self.error(e))?;
        table.len().map_err(|e| self.error(e))
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Drops the vectors of texts that are no longer in the index, once they outnumber the
    /// live ones (so a file reverted soon after an edit still hits the cache). Returns how many
    /// were removed.
    pub fn prune(&self, live: &HashSet<ChunkHash>) -> Result<u64> {
        let total = self.len()?;
        if total <= 2 * live.len() as u64 {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let removed = {
            let mut table = txn.open_table(VECTORS).map_err(|e| self.error(e))?;
            let before = table.len().map_err(|e| self.error(e))?;
            table.retain(|hash, _| live.contains(hash)).map_err(|e| self.error(e))?;
            before - table.len().map_err(|e| self.error(e))?
        };
        txn.commit().map_err(|e| self.error(e))?;
        Ok(removed)
    }

    fn error(&self, error: impl std::fmt::Display) -> Error {
        Self::error_at(&self.path, error)
    }

    fn error_at(path: &Path, error: impl std::fmt::Display) -> Error {
        Error::EmbeddingCache { path: path.to_owned(), message: error.to_string() }
    }
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_survive_reopening_and_stale_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let a = chunk_hash("m", "alpha");
        let b = chunk_hash("m", "beta");
        assert_ne!(a, chunk_hash("other-model", "alpha"), "the model is part of the key");
        {
            let cache = EmbeddingCache::open(&path).unwrap();
            cache.put_many([(&a, &[1.0, -2.5][..]), (&b, &[0.5, 0.25][..])]).unwrap();
        }
        let cache = EmbeddingCache::open(&path).unwrap();
        assert_eq!(cache.get_many(&[a, b, [0; 16]]).unwrap(), [Some(vec![1.0, -2.5]), Some(vec![0.5, 0.25]), None]);
        let live: HashSet<ChunkHash> = HashSet::new();
        assert_eq!(cache.prune(&live).unwrap(), 2);
        assert!(cache.is_empty().unwrap());
        // Below the threshold nothing is pruned.
        cache.put_many([(&a, &[1.0][..]), (&b, &[1.0][..])]).unwrap();
        assert_eq!(cache.prune(&HashSet::from([a])).unwrap(), 0);
    }
}
