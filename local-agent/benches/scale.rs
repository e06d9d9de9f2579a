//! Search at scale: how latency and memory grow from 10k to 100k chunks of realistic note text.
//!
//! ```sh
//! cargo bench -p local-agent --bench scale -- [SCIFACT_DIR] [--chunks 10000,100000] [--work DIR] [--config FILE]
//! ```
//! The notes are SciFact's abstracts (`SCIFACT_DIR`, default `../shared/eval/scifact` beside the
//! checkout) and, past its ~10k chunks, variants of them: the same sentences in another order
//! under "<title> (note k)", so every word of the corpus is real text and BM25 sees
//! near-duplicates as real notes have them. The abstracts are embedded by the model; embedding a
//! variant would cost the model ~40 minutes per 100k chunks and measure nothing new (indexing
//! throughput is the SciFact bench's), so each variant chunk gets its original chunk's vector
//! with seeded noise (cosine ~0.95 to it), written into the embedding cache before the index run
//! picks it up. Everything after that is the real ingestion path and the real server.
//!
//! `--work DIR` belongs to the bench: its `notes/` and `data/` (all but the embedding cache) are
//! replaced on every run.
//!
//! For each size: indexing time beyond the model, then `local-agent serve` answers SciFact's
//! 809 dev claims (hybrid, top 10) over HTTP; prints p50/p99, the server's RSS, and how much RSS
//! each chunk adds between sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use local_agent::config::{AgentConfig, Overrides};
use local_agent::embed::cache::{ChunkHash, EmbeddingCache, chunk_hash};
use local_agent::embed::{Embedder, normalize};
use local_agent::index::chunk::chunk_document;
use local_agent::index::{self, Silent};
use local_agent::sources::folder::{Document, FileKind};
use serde_json::{Value, json};
use support::{load_eval, note, percentile, rss_by_mapping_kb, rss_kb, rss_parts_kb, start_server};

mod support;

/// A note of the corpus: its file name, title and text.
struct Note {
    file: String,
    title: String,
    text: String,
    /// The abstract it varies (itself for an abstract).
    original: usize,
}

/// What one size measured.
struct Row {
    chunks: usize,
    documents: usize,
    embedded: usize,
    indexing: std::time::Duration,
    /// The server's resident memory in KiB: before queries, after them, at its peak, and the
    /// anonymous part after them.
    idle: u64,
    rss: u64,
    peak: u64,
    anon: u64,
    /// /search latencies in ms, sorted.
    latencies: Vec<f64>,
    /// Resident KiB after queries by what holds them ([`rss_by_mapping_kb`]).
    holders: BTreeMap<String, u64>,
}

struct Args {
    /// SciFact's folder.
    data: PathBuf,
    /// Chunk counts to measure, smallest first.
    sizes: Vec<usize>,
    /// Where notes, index and embedding cache are kept between runs.
    work: Option<PathBuf>,
    /// An agent config file for the index run and the server (`[index.vectors]`, say).
    config: Option<PathBuf>,
    /// Under `cargo test` (no `--bench`): a few notes, to prove the bench works.
    smoke: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut data = None;
    let mut sizes = vec![10_000, 100_000];
    let mut work = None;
    let mut config = None;
    let mut smoke = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => smoke = false,
            "--chunks" => {
                let list = args.next().context("--chunks needs sizes, e.g. 10000,100000")?;
                sizes = list.split(',').map(|size| size.trim().parse()).collect::<Result<_, _>>()?;
            }
            "--work" => work = Some(PathBuf::from(args.next().context("--work needs a folder")?)),
            "--config" => config = Some(PathBuf::from(args.next().context("--config needs a file")?)),
            other if other.starts_with("--") => anyhow::bail!("unknown option {other}"),
            other => data = Some(PathBuf::from(other)),
        }
    }
    let given = data.is_some();
    let data = data.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/scifact"));
    if !data.join("corpus.jsonl").is_file() {
        anyhow::ensure!(smoke && !given, "no SciFact data in {}", data.display());
        eprintln!("scale bench: no SciFact data in {}; skipped", data.display());
        return Ok(None);
    }
    if smoke {
        sizes = vec![80, 300];
    }
    sizes.sort_unstable();
    Ok(Some(Args { data, sizes, work, config, smoke }))
}

/// The abstract's sentences rotated by `turn`: the same words, another note.
fn variant(text: &str, turn: usize) -> String {
    let sentences: Vec<&str> = text.split_inclusive(". ").collect();
    let turn = turn % sentences.len().max(1);
    sentences[turn..].iter().chain(&sentences[..turn]).map(|s| s.trim()).collect::<Vec<_>>().join(" ")
}

/// The texts of the chunks a note becomes, exactly as the indexer cuts them.
fn chunk_texts(embedder: &Embedder, config: &AgentConfig, note_: &Note) -> Vec<String> {
    let document = Document::parse(&note_.file, FileKind::Markdown, &note(&note_.title, &note_.text));
    chunk_document(&document, config.index.chunking_for(embedder), &|text| embedder.count_tokens(text))
        .iter()
        .map(|chunk| chunk.indexed_text(&document.title))
        .collect()
}

/// The cache keys of a note's chunks, as the indexer computes them.
fn chunk_hashes(embedder: &Embedder, config: &AgentConfig, note_: &Note) -> Vec<ChunkHash> {
    chunk_texts(embedder, config, note_).iter().map(|text| chunk_hash(embedder.model_id(), text)).collect()
}

/// `base` moved a little in a direction seeded by `seed`: a cosine of ~0.95 to it.
fn near(base: &[f32], seed: &ChunkHash) -> Vec<f32> {
    let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([7; 8])) | 1;
    let mut noise: Vec<f32> = (0..base.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    normalize(&mut noise);
    let mut vector: Vec<f32> = base.iter().zip(&noise).map(|(value, jitter)| value + 0.33 * jitter).collect();
    normalize(&mut vector);
    vector
}

#[tokio::main]
async fn main() -> Result<()> {
    let Some(Args { data, sizes, work, config: config_file, smoke }) = parse_args()? else { return Ok(()) };
    let mut eval = load_eval(&data)?;
    if smoke {
        // Enough to go past the abstracts into variants, in seconds.
        eval.corpus.truncate(60);
        eval.queries.truncate(20);
    }
    anyhow::ensure!(!eval.corpus.is_empty(), "the corpus in {} is empty", data.display());
    let temporary = tempfile::tempdir()?;
    let work = work.unwrap_or_else(|| temporary.path().to_owned());
    let (notes_dir, data_dir) = (work.join("notes"), work.join("data"));
    // Every run starts from no notes and no index; only the embedding cache is kept.
    if notes_dir.exists() {
        std::fs::remove_dir_all(&notes_dir)?;
    }
    if data_dir.exists() {
        for entry in std::fs::read_dir(&data_dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|name| name != "embedding-cache.redb") {
                if path.is_dir() { std::fs::remove_dir_all(&path)? } else { std::fs::remove_file(&path)? }
            }
        }
    }
    std::fs::create_dir_all(&notes_dir)?;
    let config = AgentConfig::load(&Overrides { data_dir: Some(data_dir.clone()), config: config_file.clone() })?;
    let embedder = Embedder::load(&config.embedder)?;

    // Notes in order: every abstract, then their variants, round after round.
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let mut notes: Vec<Note> = Vec::new();
    let mut hashes: Vec<Vec<ChunkHash>> = Vec::new();
    let mut total = 0;
    'rounds: for round in 0.. {
        let before = total;
        for (original, (id, title, text)) in eval.corpus.iter().enumerate() {
            if total >= largest {
                break 'rounds;
            }
            let note_ = match round {
                0 => Note { file: format!("{id}.md"), title: title.clone(), text: text.clone(), original },
                _ => Note {
                    file: format!("variants/{round}/{id}.md"),
                    title: format!("{title} (note {round})"),
                    text: variant(text, round),
                    original,
                },
            };
            let chunks = chunk_hashes(&embedder, &config, &note_);
            total += chunks.len();
            notes.push(note_);
            hashes.push(chunks);
        }
        anyhow::ensure!(total > before, "the corpus yields no chunks");
    }

    let mut rows = Vec::new();
    let mut written = 0;
    let mut chunks_so_far = 0;
    let cache_path = data_dir.join("embedding-cache.redb");
    std::fs::create_dir_all(&data_dir)?;
    for &size in &sizes {
        // The folder grows from one size to the next.
        while written < notes.len() && chunks_so_far < size {
            let note_ = &notes[written];
            let path = notes_dir.join(&note_.file);
            std::fs::create_dir_all(path.parent().context("a note's folder")?)?;
            std::fs::write(&path, note(&note_.title, &note_.text))?;
            chunks_so_far += hashes[written].len();
            written += 1;
        }
        // Vectors go into the cache before the index run, which reads them from there (and
        // prunes what the index no longer holds, so this is done for every size): abstracts
        // embedded by the model where the cache lacks them, variants derived from them.
        let cache = EmbeddingCache::open(&cache_path)?;
        let abstracts = written.min(eval.corpus.len());
        for index in 0..abstracts {
            let missing: Vec<usize> = cache
                .get_many(&hashes[index])?
                .iter()
                .enumerate()
                .filter_map(|(ordinal, vector)| vector.is_none().then_some(ordinal))
                .collect();
            if !missing.is_empty() {
                let texts = chunk_texts(&embedder, &config, &notes[index]);
                let texts: Vec<&str> = missing.iter().map(|&ordinal| texts[ordinal].as_str()).collect();
                let vectors = embedder.embed_all(&texts, config.index.batch_size, |_| {})?;
                cache.put_many(
                    missing.iter().zip(&vectors).map(|(&ordinal, v)| (&hashes[index][ordinal], v.as_slice())),
                )?;
            }
        }
        let mut derived: Vec<(ChunkHash, Vec<f32>)> = Vec::new();
        for index in abstracts..written {
            let source = cache.get_many(&hashes[notes[index].original])?;
            for (ordinal, hash) in hashes[index].iter().enumerate() {
                let Some(Some(base)) = source.get(ordinal.min(source.len().saturating_sub(1))) else { continue };
                derived.push((*hash, near(base, hash)));
            }
        }
        cache.put_many(derived.iter().map(|(hash, vector)| (hash, vector.as_slice())))?;
        drop(cache);

        let started = Instant::now();
        let report =
            index::index_folders(&data_dir, std::slice::from_ref(&notes_dir), &embedder, &config.index, &Silent)?;
        let indexing = started.elapsed();

        let server = start_server(&data_dir, config_file.as_deref())?;
        let client = reqwest::Client::new();
        let (idle, _) = rss_kb(server.child.id());
        let mut latencies = Vec::with_capacity(eval.queries.len());
        for (_, text) in &eval.queries {
            let started = Instant::now();
            let response: Value = client
                .post(format!("{}/search", server.address))
                .json(&json!({"query": text, "max_results": 10, "similarity_threshold": 0.0}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(response["success"] == true, "search failed: {response}");
        }
        latencies.sort_by(f64::total_cmp);
        let (rss, peak) = rss_kb(server.child.id());
        let (anon, _) = rss_parts_kb(server.child.id());
        let holders = rss_by_mapping_kb(server.child.id());
        drop(server);
        eprintln!("{} chunks: indexed in {:.1} s", report.chunks, indexing.as_secs_f64());
        rows.push(Row {
            chunks: report.chunks,
            documents: report.documents,
            embedded: report.embedded,
            indexing,
            idle,
            rss,
            peak,
            anon,
            latencies,
            holders,
        });
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "\n## Scale ({} queries, hybrid top 10 over HTTP)\n", eval.queries.len())?;
    writeln!(
        out,
        "| chunks | notes | indexing run | RSS idle | RSS after queries (peak) | of it anonymous | /search p50 | p99 |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    let megabytes = |kib: u64| kib as f64 / 1024.0;
    for Row { chunks, documents, embedded, indexing, idle, rss, peak, anon, latencies, .. } in &rows {
        writeln!(
            out,
            "| {chunks} | {documents} | {:.1} s ({embedded} embedded by the model) | {:.0} MB | {:.0} MB ({:.0} MB) | {:.0} MB | {:.1} ms | {:.1} ms |",
            indexing.as_secs_f64(),
            megabytes(*idle),
            megabytes(*rss),
            megabytes(*peak),
            megabytes(*anon),
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        )?;
    }
    for pair in rows.windows(2) {
        let (small, large) = (&pair[0], &pair[1]);
        let per_chunk = |before: u64, after: u64| {
            (after as f64 - before as f64) * 1024.0 / (large.chunks as f64 - small.chunks as f64).max(1.0)
        };
        writeln!(
            out,
            "\nFrom {} to {} chunks, RSS after queries grows {:.0} bytes per chunk, {:.0} of them anonymous (the rest \
             are index files mapped into memory, which the kernel can drop).",
            small.chunks,
            large.chunks,
            per_chunk(small.rss, large.rss),
            per_chunk(small.anon, large.anon)
        )?;
        // Where that growth lives: anonymous memory, or which file mapped into memory.
        writeln!(
            out,
            "\n| resident after queries | {} chunks | {} chunks | bytes per chunk added |",
            small.chunks, large.chunks
        )?;
        writeln!(out, "|---|---|---|---|")?;
        let holders: BTreeSet<&String> = small.holders.keys().chain(large.holders.keys()).collect();
        for holder in holders {
            let kib = |row: &Row| row.holders.get(holder).copied().unwrap_or(0);
            writeln!(
                out,
                "| {holder} | {:.1} MB | {:.1} MB | {:.0} |",
                megabytes(kib(small)),
                megabytes(kib(large)),
                per_chunk(kib(small), kib(large))
            )?;
        }
    }
    Ok(())
}
