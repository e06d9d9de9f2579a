//! Sentence embeddings with ONNX Runtime (`ort`, loaded dynamically) and `tokenizers`.
//!
//! Any BERT-style sentence-embedding model folder works: `model.onnx` + `tokenizer.json`, and
//! optionally the sentence-transformers files `sentence_bert_config.json` (`max_seq_length`),
//! `1_Pooling/config.json` (mean or CLS pooling) and `config_sentence_transformers.json`, whose
//! `prompts` (`query`, `passage` or `document`) are put before queries and passages — E5 models
//! are trained with `query: ` / `passage: ` and read worse without them. Inputs are truncated at
//! the model's limit and padded to the longest text of a batch; batches are formed from texts of
//! similar length so little time is spent on padding. Vectors are L2-normalised, so a dot
//! product is a cosine.

pub mod cache;
pub mod hashing;
pub mod vocabulary;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::{PostProcessor, TruncationDirection};

use self::vocabulary::TextTokenizer;

use crate::error::{Error, Result};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the token vectors, weighted by the attention mask.
    Mean,
    /// The vector of the first ([CLS]) token.
    Cls,
}

/// A query's embedding and how well the model could read the query.
#[derive(Debug, Clone)]
pub struct QueryEmbedding {
    /// Unit-length vector.
    pub vector: Vec<f32>,
    /// Share of the query's tokens the model knows (not `[UNK]`), 0..=1. An English model
    /// reading Chinese sees mostly unknown tokens, and its vector then says little.
    pub visibility: f32,
}

/// Where the ONNX Runtime library lives and which model to load.
#[derive(Debug, Clone)]
pub struct EmbedderOptions {
    /// The ONNX Runtime shared library.
    pub runtime_library: PathBuf,
    /// The model folder.
    pub model_dir: PathBuf,
    /// Threads for one inference (intra-op parallelism).
    pub threads: usize,
}

/// A loaded sentence-embedding model. Cheap to share behind an `Arc`; inference is serialised
/// by a mutex because an ONNX session runs one batch at a time (`Session::run` takes `&mut`).
pub struct Embedder {
    session: Mutex<Session>,
    /// Without padding or truncation: `embed_batch` truncates and pads itself, so one copy of
    /// the vocabulary serves counting and embedding.
    tokenizer: TextTokenizer,
    /// Special tokens the tokenizer adds around one text (`[CLS]`…`[SEP]`, `<s>`…`</s>`).
    special_tokens: usize,
    uses_token_type_ids: bool,
    output: OutputKind,
    pooling: Pooling,
    prompts: Prompts,
    dimensions: usize,
    max_tokens: usize,
    unknown_token_id: Option<u32>,
    model_id: String,
    model_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    /// `[batch, seq, dims]` token vectors to pool.
    TokenEmbeddings,
    /// `[batch, dims]` already pooled (`sentence_embedding`).
    SentenceEmbedding,
}

/// The ONNX Runtime library can be loaded once per process; later loads reuse it.
static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

fn runtime(library: &Path) -> Result<ort::environment::Environment> {
    if !library.is_file() {
        return Err(Error::RuntimeMissing { path: library.to_owned() });
    }
    let environment = RUNTIME.get_or_init(|| {
        let library = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
        ort::init_from(&library)
            .map_err(|error| error.to_string())?
            .with_name("local-agent")
            .build()
            .map_err(|error| error.to_string())
    });
    environment.clone().map_err(|message| Error::RuntimeLoad { path: library.to_owned(), message })
}

/// Loads the ONNX Runtime library (once per process, as [`Embedder::load`] does) and returns
/// its version, so `local-agent doctor` can check the runtime apart from the model.
pub fn runtime_version(library: &Path) -> Result<String> {
    runtime(library)?;
    // "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=6af1a93, …"; builds from a
    // detached checkout say `git-branch=HEAD`, so the file name is the next best witness.
    let info = ort::info();
    let field = |name: &str| info.split(", ").find_map(|part| part.split_once(name).map(|(_, value)| value.trim()));
    let released = field("git-branch=").and_then(|branch| branch.strip_prefix("rel-")).map(str::to_owned);
    let real = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let from_name = real.file_name().map(|name| name.to_string_lossy().into_owned()).and_then(|name| {
        let digits = name.trim_end_matches(".dylib").trim_end_matches(".dll");
        let version = digits.trim_start_matches(|c: char| !c.is_ascii_digit());
        (!version.is_empty() && version.contains('.')).then(|| version.to_owned())
    });
    Ok(match (released.or(from_name), field("git-commit-id=")) {
        (Some(version), Some(commit)) => format!("{version} (commit {commit})"),
        (Some(version), None) => version,
        (None, Some(commit)) => format!("version unknown (commit {commit})"),
        (None, None) => "version unknown".to_owned(),
    })
}

impl Embedder {
    /// Loads the runtime library and the model. Fails with a message that says what to do
    /// when either is missing.
    pub fn load(options: &EmbedderOptions) -> Result<Self> {
        let dir = options.model_dir.clone();
        let model_path = dir.join("model.onnx");
        let tokenizer_path = dir.join("tokenizer.json");
        if !model_path.is_file() {
            let install = crate::config::setup_command(&dir);
            return Err(Error::ModelMissing { dir, missing: "model.onnx", install });
        }
        if !tokenizer_path.is_file() {
            let install = crate::config::setup_command(&dir);
            return Err(Error::ModelMissing { dir, missing: "tokenizer.json", install });
        }
        let environment = runtime(&options.runtime_library)?;
        let model_error = |message: String| Error::Model { dir: dir.clone(), message };

        let session = Session::builder(&environment)
            .and_then(|builder| Ok(builder.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|builder| Ok(builder.with_intra_threads(options.threads.max(1))?))
            // Between the operators of one run the pool's threads spin, which keeps a short
            // query fast; after the run they would spin on for a while, taking a core from
            // what the search does next (BM25, HNSW, the reply) and doubling its p99 on two
            // cores. So they stop spinning as soon as a run ends (BENCHMARKS.md).
            .and_then(|builder| Ok(builder.with_config_entry("session.force_spinning_stop", "1")?))
            .and_then(|mut builder| builder.commit_from_file(&model_path))
            .map_err(|error| model_error(format!("cannot load model.onnx: {error}")))?;
        let input_names: Vec<&str> = session.inputs().iter().map(|input| input.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !input_names.contains(&required) {
                return Err(model_error(format!("model.onnx has no `{required}` input (has {input_names:?})")));
            }
        }
        let uses_token_type_ids = input_names.contains(&"token_type_ids");
        let output = if session.outputs().iter().any(|output| output.name() == "sentence_embedding") {
            OutputKind::SentenceEmbedding
        } else {
            OutputKind::TokenEmbeddings
        };

        let mut tokenizer = vocabulary::load(&tokenizer_path)
            .map_err(|error| model_error(format!("cannot read tokenizer.json: {error}")))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|error| model_error(format!("tokenizer.json: {error}")))?;
        let special_tokens = tokenizer.get_post_processor().map_or(0, |processor| processor.added_tokens(false));
        let config = SentenceTransformersConfig::read(&dir);
        let max_tokens = config.max_seq_length.unwrap_or(512);
        let unknown_token_id = tokenizer.token_to_id("[UNK]").or_else(|| tokenizer.token_to_id("<unk>"));

        let mut embedder = Self {
            session: Mutex::new(session),
            tokenizer,
            special_tokens,
            uses_token_type_ids,
            output,
            pooling: config.pooling,
            prompts: config.prompts,
            dimensions: 0,
            max_tokens,
            unknown_token_id,
            model_id: String::new(),
            model_dir: dir.clone(),
        };
        // One probe tells the dimension, and proves the model runs before anything relies on it.
        let probe = embedder.embed_batch(&["probe"])?;
        embedder.dimensions = probe.first().map_or(0, Vec::len);
        if embedder.dimensions == 0 {
            return Err(model_error("the model produced an empty vector".into()));
        }
        embedder.model_id = model_id(&dir, &model_path, embedder.dimensions);
        Ok(embedder)
    }

    /// Length of the vectors.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Longest input the model reads, in tokens (including special tokens).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Identifies the model and its settings: vectors from different ids are not comparable.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// What the model folder says to put before queries and passages.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// Number of model tokens in `text`, without the special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, false).map_or_else(|_| text.split_whitespace().count(), |e| e.len())
    }

    /// Embeds a query and measures how much of it the model can read.
    pub fn embed_query(&self, query: &str) -> Result<QueryEmbedding> {
        let (known, total) = self.known_tokens(query);
        let visibility = if total == 0 { 1.0 } else { known as f32 / total as f32 };
        let prompted = format!("{}{query}", self.prompts.query);
        let vector = self.embed_batch(&[prompted.as_str()])?.pop().unwrap_or_default();
        Ok(QueryEmbedding { vector, visibility })
    }

    /// How many of the model's tokens for `text` it knows (are not its unknown token), of how
    /// many. A model without an unknown token knows them all.
    pub fn known_tokens(&self, text: &str) -> (usize, usize) {
        let Ok(encoding) = self.tokenizer.encode(text, false) else { return (0, 0) };
        let ids = encoding.get_ids();
        let unknown = self.unknown_token_id.map_or(0, |unknown| ids.iter().filter(|&&id| id == unknown).count());
        (ids.len() - unknown, ids.len())
    }

    /// Embeds many passages (with the model's passage prompt): sorted by length into batches
    /// of `batch_size`, returned in input order. `progress` is called with the number of texts
    /// done after each batch.
    pub fn embed_all(
        &self,
        texts: &[&str],
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Character length is a good enough proxy for token length to group similar texts.
        order.sort_by_key(|&index| texts[index].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(batch_size.max(1)) {
            let prompted: Vec<String> =
                batch.iter().map(|&index| format!("{}{}", self.prompts.passage, texts[index])).collect();
            let inputs: Vec<&str> = prompted.iter().map(String::as_str).collect();
            for (&index, vector) in batch.iter().zip(self.embed_batch(&inputs)?) {
                vectors[index] = vector;
            }
            progress(batch.len());
        }
        Ok(vectors)
    }

    /// Embeds one batch of texts as they are (no prompt), each truncated at the model's limit,
    /// padded to the longest.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let content_limit = self.max_tokens.saturating_sub(self.special_tokens).max(1);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), false)
            .and_then(|encodings| {
                encodings
                    .into_iter()
                    .map(|mut encoding| {
                        encoding.truncate(content_limit, 0, TruncationDirection::Right);
                        self.tokenizer.post_process(encoding, None, true)
                    })
                    .collect::<tokenizers::Result<Vec<_>>>()
            })
            .map_err(|error| self.error(format!("cannot tokenize: {error}")))?;
        let batch = encodings.len();
        let length = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch * length);
        let mut mask = Vec::with_capacity(batch * length);
        let mut types = Vec::with_capacity(batch * length);
        for encoding in &encodings {
            let pad = length - encoding.len();
            ids.extend(encoding.get_ids().iter().map(|&id| i64::from(id)).chain(std::iter::repeat_n(0, pad)));
            mask.extend(encoding.get_attention_mask().iter().map(|&m| i64::from(m)).chain(std::iter::repeat_n(0, pad)));
            types.extend(encoding.get_type_ids().iter().map(|&t| i64::from(t)).chain(std::iter::repeat_n(0, pad)));
        }
        let shape = [batch, length];
        let tensor = |data: Vec<i64>| {
            Tensor::from_array((shape, data)).map_err(|error| self.error(format!("cannot build input tensor: {error}")))
        };
        let ids = tensor(ids)?;
        let attention = tensor(mask.clone())?;
        let mut session = self.session.lock().map_err(|_| self.error("a previous inference panicked".into()))?;
        let outputs = if self.uses_token_type_ids {
            session.run(
                ort::inputs!["input_ids" => ids, "attention_mask" => attention, "token_type_ids" => tensor(types)?],
            )
        } else {
            session.run(ort::inputs!["input_ids" => ids, "attention_mask" => attention])
        }
        .map_err(|error| self.error(format!("inference failed: {error}")))?;
        let (output_shape, data) = match self.output {
            OutputKind::SentenceEmbedding => outputs["sentence_embedding"].try_extract_tensor::<f32>(),
            OutputKind::TokenEmbeddings => outputs[0].try_extract_tensor::<f32>(),
        }
        .map_err(|error| self.error(format!("unexpected model output: {error}")))?;
        let dims: Vec<usize> = output_shape.iter().map(|&d| d.max(0) as usize).collect();

        let mut vectors = Vec::with_capacity(batch);
        match (self.output, dims.as_slice()) {
            (OutputKind::SentenceEmbedding, &[b, d]) if b == batch => {
                vectors.extend(data.chunks_exact(d).map(<[f32]>::to_vec));
            }
            (OutputKind::TokenEmbeddings, &[b, s, d]) if b == batch && s == length => {
                for (row, tokens) in data.chunks_exact(s * d).enumerate() {
                    let row_mask = &mask[row * length..(row + 1) * length];
                    vectors.push(pool(tokens, row_mask, d, self.pooling));
                }
            }
            _ => return Err(self.error(format!("unexpected output shape {dims:?} for a batch of {batch}×{length}"))),
        }
        for vector in &mut vectors {
            normalize(vector);
        }
        Ok(vectors)
    }

    fn error(&self, message: String) -> Error {
        Error::Model { dir: self.model_dir.clone(), message }
    }
}

fn pool(tokens: &[f32], mask: &[i64], dims: usize, pooling: Pooling) -> Vec<f32> {
    match pooling {
        Pooling::Cls => tokens[..dims].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f32; dims];
            let mut count = 0.0f32;
            for (token, &m) in tokens.chunks_exact(dims).zip(mask) {
                if m != 0 {
                    sum.iter_mut().zip(token).for_each(|(s, t)| *s += t);
                    count += 1.0;
                }
            }
            sum.iter_mut().for_each(|s| *s /= count.max(1.0));
            sum
        }
    }
}

/// What building an index needs of a model: its identity, token counts for chunking, and
/// vectors for passages. [`Embedder`] is the real one; [`hashing::HashingEmbedder`] a cheap
/// stand-in, so indexing logic is tested without loading ONNX.
pub trait Embed: Send + Sync {
    /// Identifies the model and its settings: vectors from different ids are not comparable.
    fn model_id(&self) -> &str;
    /// Length of the vectors.
    fn dimensions(&self) -> usize;
    /// Number of model tokens in `text`, without the special tokens.
    fn count_tokens(&self, text: &str) -> usize;
    /// The longest input the model reads, special tokens included; the rest is cut off.
    fn max_tokens(&self) -> usize;
    /// Embeds passages in batches of `batch_size`, in input order; `progress` hears how many
    /// are done after each batch.
    fn embed_passages(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>>;
}

impl Embed for Embedder {
    fn model_id(&self) -> &str {
        Embedder::model_id(self)
    }

    fn dimensions(&self) -> usize {
        Embedder::dimensions(self)
    }

    fn count_tokens(&self, text: &str) -> usize {
        Embedder::count_tokens(self, text)
    }

    fn max_tokens(&self) -> usize {
        Embedder::max_tokens(self)
    }

    fn embed_passages(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_all(texts, batch_size, progress)
    }
}

/// Scales `vector` to unit length (left alone if it is all zeros).
pub fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Text put before what is embedded, as the model was trained (`config_sentence_transformers.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompts {
    /// Before a question (`query: ` for E5 models).
    pub query: String,
    /// Before an indexed passage (`passage: ` for E5 models).
    pub passage: String,
}

/// The parts of a sentence-transformers model folder that change how vectors are computed.
struct SentenceTransformersConfig {
    max_seq_length: Option<usize>,
    pooling: Pooling,
    prompts: Prompts,
}

impl SentenceTransformersConfig {
    fn read(dir: &Path) -> Self {
        let json = |name: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
        };
        let max_seq_length = json("sentence_bert_config.json")
            .and_then(|config| config["max_seq_length"].as_u64())
            .map(|length| length as usize);
        let pooling = match json("1_Pooling/config.json") {
            Some(config) if config["pooling_mode_cls_token"].as_bool() == Some(true) => Pooling::Cls,
            _ => Pooling::Mean,
        };
        let prompts = json("config_sentence_transformers.json").map_or_else(Prompts::default, |config| {
            let prompt = |names: &[&str]| {
                names.iter().find_map(|name| config["prompts"][name].as_str()).unwrap_or_default().to_owned()
            };
            Prompts { query: prompt(&["query"]), passage: prompt(&["passage", "document"]) }
        });
        Self { max_seq_length, pooling, prompts }
    }
}

/// A short, stable id: folder name, dimension, and a hash of the model and tokenizer files.
fn model_id(dir: &Path, model_path: &Path, dimensions: usize) -> String {
    let mut hasher = blake3::Hasher::new();
    for path in [
        model_path.to_owned(),
        dir.join("tokenizer.json"),
        dir.join("1_Pooling/config.json"),
        dir.join("sentence_bert_config.json"),
        dir.join("config_sentence_transformers.json"),
    ] {
        if let Ok(file) = std::fs::File::open(&path) {
            // Hash failures only make the id less specific; the file was readable a moment ago.
            let _ = hasher.update_reader(file);
        }
    }
    let name = dir.file_name().and_then(|name| name.to_str()).unwrap_or("model");
    format!("{name}-{dimensions}d-{}", &hasher.finalize().to_hex()[..12])
}
