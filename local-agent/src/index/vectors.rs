//! The semantic side: a usearch HNSW graph over chunk embeddings (cosine), stored with a
//! compact scalar type. Keys are chunk ids, shared with the keyword index.

use std::path::Path;

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};

/// Scalar type of the stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit floats: exact, 4 bytes a dimension.
    F32,
    /// 16-bit floats: 2 bytes a dimension; cosines within about 1e-3 of f32.
    F16,
    /// 8-bit integers: 1 byte a dimension, each vector scaled by its largest component
    /// ([`to_i8`]); the smallest, with a small loss of recall.
    I8,
}

impl Quantization {
    fn scalar_kind(self) -> ScalarKind {
        match self {
            Self::F32 => ScalarKind::F32,
            Self::F16 => ScalarKind::F16,
            Self::I8 => ScalarKind::I8,
        }
    }
}

/// HNSW parameters. The defaults keep recall@10 against exact f32 search at 0.998 on SciFact
/// (0.992 with i8 vectors; BENCHMARKS.md), at well under a millisecond a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSettings {
    /// Scalar type of stored vectors.
    pub quantization: Quantization,
    /// Graph degree (M).
    pub connectivity: usize,
    /// Candidate list size while inserting.
    pub expansion_add: usize,
    /// Candidate list size while searching; raised to the number of results asked for.
    pub expansion_search: usize,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self { quantization: Quantization::F16, connectivity: 16, expansion_add: 128, expansion_search: 128 }
    }
}

/// An HNSW index of unit vectors keyed by chunk id.
pub struct VectorIndex {
    index: Index,
    quantization: Quantization,
}

impl VectorIndex {
    /// An empty index for vectors of `dimensions`.
    pub fn create(dimensions: usize, settings: &VectorSettings) -> Result<Self> {
        let options = IndexOptions {
            dimensions,
            metric: MetricKind::Cos,
            quantization: settings.quantization.scalar_kind(),
            connectivity: settings.connectivity,
            expansion_add: settings.expansion_add,
            expansion_search: settings.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(vector_error)?;
        Ok(Self { index, quantization: settings.quantization })
    }

    /// Loads a saved index into memory, for changing it.
    pub fn load(path: &Path, dimensions: usize, settings: &VectorSettings) -> Result<Self> {
        let vectors = Self::create(dimensions, settings)?;
        vectors.index.load(path_str(path)?).map_err(vector_error)?;
        vectors.check(dimensions, settings)?;
        Ok(vectors)
    }

    /// Memory-maps a saved index, read-only: fast to open, and the OS shares the pages.
    pub fn view(path: &Path, dimensions: usize, settings: &VectorSettings) -> Result<Self> {
        let vectors = Self::create(dimensions, settings)?;
        vectors.index.view(path_str(path)?).map_err(vector_error)?;
        vectors.check(dimensions, settings)?;
        Ok(vectors)
    }

    fn check(&self, dimensions: usize, settings: &VectorSettings) -> Result<()> {
        // Search-time parameters are not part of the file.
        self.index.change_expansion_search(settings.expansion_search);
        self.index.change_expansion_add(settings.expansion_add);
        if self.index.dimensions() != dimensions {
            return Err(Error::Vector(format!(
                "the saved index has {} dimensions, the model {dimensions}",
                self.index.dimensions()
            )));
        }
        Ok(())
    }

    /// Writes the index to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.index.save(path_str(path)?).map_err(vector_error)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the index uses.
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// Adds (or replaces) the vector of a chunk.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<()> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(vector_error)?;
        }
        if self.index.size() + 1 > self.index.capacity() {
            let capacity = (self.index.capacity() * 2).max(1024);
            self.index.reserve(capacity).map_err(vector_error)?;
        }
        match self.quantization {
            Quantization::I8 => self.index.add(key, &to_i8(vector)),
            Quantization::F32 | Quantization::F16 => self.index.add(key, vector),
        }
        .map_err(vector_error)
    }

    /// Makes room for `additional` more vectors at once.
    pub fn reserve(&self, additional: usize) -> Result<()> {
        let needed = self.index.size() + additional;
        if needed > self.index.capacity() {
            self.index.reserve(needed).map_err(vector_error)?;
        }
        Ok(())
    }

    /// Removes the vector of a chunk, if present.
    pub fn remove(&self, key: u64) -> Result<()> {
        self.index.remove(key).map(|_| ()).map_err(vector_error)
    }

    /// The `count` nearest chunks to `query` with their cosine similarity, best first;
    /// with `filter`, only chunks it accepts.
    pub fn search(&self, query: &[f32], count: usize, filter: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<(u64, f32)>> {
        if count == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let matches = match (filter, self.quantization) {
            (None, Quantization::I8) => self.index.search(&to_i8(query), count),
            (None, _) => self.index.search(query, count),
            (Some(filter), Quantization::I8) => self.index.filtered_search(&to_i8(query), count, filter),
            (Some(filter), _) => self.index.filtered_search(query, count, filter),
        }
        .map_err(vector_error)?;
        Ok(matches.keys.into_iter().zip(matches.distances).map(|(key, distance)| (key, 1.0 - distance)).collect())
    }

    /// Exact (brute-force) nearest neighbours, to measure the graph's recall.
    pub fn exact_search(&self, query: &[f32], count: usize) -> Result<Vec<(u64, f32)>> {
        let matches = match self.quantization {
            Quantization::I8 => self.index.exact_search(&to_i8(query), count),
            Quantization::F32 | Quantization::F16 => self.index.exact_search(query, count),
        }
        .map_err(vector_error)?;
        Ok(matches.keys.into_iter().zip(matches.distances).map(|(key, distance)| (key, 1.0 - distance)).collect())
    }

    /// The stored (possibly quantized) vector of a chunk, at unit length.
    pub fn get(&self, key: u64) -> Result<Option<Vec<f32>>> {
        let dimensions = self.index.dimensions();
        let (found, vector) = match self.quantization {
            Quantization::I8 => {
                let mut stored = vec![0i8; dimensions];
                let found = self.index.get(key, &mut stored).map_err(vector_error)?;
                let mut vector: Vec<f32> = stored.into_iter().map(f32::from).collect();
                crate::embed::normalize(&mut vector);
                (found, vector)
            }
            Quantization::F32 | Quantization::F16 => {
                let mut vector = vec![0.0f32; dimensions];
                (self.index.get(key, &mut vector).map_err(vector_error)?, vector)
            }
        };
        Ok((found > 0).then_some(vector))
    }
}

/// A vector as 8-bit integers, scaled so that its largest component is ±127. usearch's own
/// cast scales a unit vector by 127 as it is, so the components of a 384-dimension embedding
/// (about ±0.05) would keep only 3 or 4 bits; cosine does not change when a vector is scaled,
/// so scaling each by its own largest component keeps all 8.
fn to_i8(vector: &[f32]) -> Vec<i8> {
    let largest = vector.iter().fold(0.0f32, |largest, value| largest.max(value.abs()));
    if largest == 0.0 || vector.iter().any(|value| !value.is_finite()) {
        return vec![0; vector.len()];
    }
    let scale = 127.0 / largest;
    vector.iter().map(|value| (value * scale).round().clamp(-127.0, 127.0) as i8).collect()
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::Vector(format!("{} is not a UTF-8 path", path.display())))
}

fn vector_error(error: impl std::fmt::Display) -> Error {
    Error::Vector(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(values: &[f32]) -> Vec<f32> {
        let mut v = values.to_vec();
        crate::embed::normalize(&mut v);
        v
    }

    #[test]
    fn finds_nearest_filters_and_survives_save_and_view() {
        let settings = VectorSettings::default();
        let index = VectorIndex::create(3, &settings).unwrap();
        index.add(1, &unit(&[1.0, 0.0, 0.0])).unwrap();
        index.add(2, &unit(&[0.9, 0.1, 0.0])).unwrap();
        index.add(3, &unit(&[0.0, 0.0, 1.0])).unwrap();
        let hits = index.search(&unit(&[1.0, 0.05, 0.0]), 2, None).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2]);
        assert!((hits[0].1 - 0.9988).abs() < 0.01, "cosine similarity, not distance: {hits:?}");
        let odd = |key: u64| key % 2 == 1;
        let hits = index.search(&unit(&[1.0, 0.05, 0.0]), 2, Some(&odd)).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 3]);

        index.remove(1).unwrap();
        index.add(2, &unit(&[0.0, 1.0, 0.0])).unwrap();
        assert_eq!(index.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        index.save(&path).unwrap();
        let viewed = VectorIndex::view(&path, 3, &settings).unwrap();
        assert_eq!(viewed.search(&unit(&[0.0, 1.0, 0.0]), 1, None).unwrap()[0].0, 2);
        assert!(viewed.get(1).unwrap().is_none());
        assert!(VectorIndex::view(&path, 4, &settings).is_err(), "dimension mismatch is caught");
        assert!(VectorIndex::view(&dir.path().join("missing"), 3, &settings).is_err());
    }

    /// Deterministic unit vectors shaped like an embedding's: many small components.
    fn random_units(count: usize, dimensions: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut random = fastrand::Rng::with_seed(seed);
        (0..count).map(|_| unit(&(0..dimensions).map(|_| random.f32() * 2.0 - 1.0).collect::<Vec<_>>())).collect()
    }

    #[test]
    fn i8_vectors_keep_their_cosines() {
        assert_eq!(to_i8(&[0.05, -0.1, 0.0]), [64, -127, 0], "the largest component becomes ±127");
        assert_eq!(to_i8(&[0.0; 3]), [0; 3]);
        assert_eq!(to_i8(&[f32::NAN, 1.0]), [0; 2], "a broken vector is stored as zeros, not as noise");

        let settings = VectorSettings { quantization: Quantization::I8, ..VectorSettings::default() };
        let vectors = random_units(300, 384, 0x9e37_79b9_7f4a_7c15);
        let index = VectorIndex::create(384, &settings).unwrap();
        for (key, vector) in vectors.iter().enumerate() {
            index.add(key as u64, vector).unwrap();
        }
        for query in random_units(20, 384, 0x1234_5678_9abc_def1) {
            for (key, similarity) in index.exact_search(&query, 10).unwrap() {
                let truth: f32 = vectors[key as usize].iter().zip(&query).map(|(a, b)| a * b).sum();
                // Scaled by 127 as they are, 384-dimension unit vectors keep 3 or 4 bits and
                // their cosines move by several hundredths.
                assert!((similarity - truth).abs() < 0.01, "key {key}: {similarity} against {truth}");
            }
        }
        let stored = index.get(7).unwrap().unwrap();
        let cosine: f32 = stored.iter().zip(&vectors[7]).map(|(a, b)| a * b).sum();
        assert!(cosine > 0.999, "the stored vector reads back at unit length: {cosine}");
    }
}
