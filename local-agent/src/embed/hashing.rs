//! A stand-in for the model in tests of indexing: words are hashed into the vector's
//! dimensions (the "hashing trick"), so texts sharing words get similar vectors, at no cost and
//! with no model files. Not for real retrieval: it knows nothing of meaning.

use super::{Embed, normalize};
use crate::error::Result;

/// The hashing embedder.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
    model_id: String,
}

impl HashingEmbedder {
    /// Vectors of `dimensions` (at least 1).
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        Self { dimensions, model_id: format!("hashing-{dimensions}") }
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0; self.dimensions];
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
            let hash = blake3::hash(word.to_lowercase().as_bytes());
            let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().unwrap_or_default();
            vector[(u64::from_le_bytes(bytes) % self.dimensions as u64) as usize] += 1.0;
        }
        normalize(&mut vector);
        vector
    }
}

impl Embed for HashingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }

    /// As the default model's: chunks come out as they would with it.
    fn max_tokens(&self) -> usize {
        256
    }

    fn embed_passages(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(batch_size.max(1)) {
            vectors.extend(batch.iter().map(|text| self.embed(text)));
            progress(batch.len());
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_words_make_close_vectors() {
        let embedder = HashingEmbedder::new(64);
        let mut done = 0;
        let vectors = embedder
            .embed_passages(&["sourdough bread starter", "bread starter feeding", "tax return deadline"], 2, &mut |n| {
                done += n
            })
            .unwrap();
        assert_eq!(done, 3);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]));
        assert!((dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-5);
    }
}
