//! Retrieval quality and speed on an evaluation set, end to end: BEIR SciFact (English), or
//! zh-dev (Chinese: questions over *Debian Reference*, `benches/data/zh-dev`).
//!
//! ```sh
//! cargo bench -p local-agent --bench scifact -- [EVAL_DIR] [--set scifact|zh-dev] [--work DIR] [--config FILE]
//! ```
//! `EVAL_DIR` holds `corpus.jsonl`, `queries-dev.jsonl` and `qrels-dev.tsv`. By default it is
//! `../shared/eval/scifact` beside the checkout for SciFact, and `target/eval/zh-dev` for
//! zh-dev, which `scripts/eval/zh-dev.py` fills (from Debian's package) when it is empty.
//! The corpus is written out as one Markdown
//! note per abstract and indexed through the real ingestion path; queries go through the real
//! HTTP API of a `local-agent serve` process. With `--work DIR` the notes, index and embedding
//! cache are kept there, so a second run skips the embedding work.
//!
//! Prints nDCG@10 and recall@100 for hybrid, keyword-only and semantic-only search, /search
//! latency percentiles, indexing time and throughput against the raw model throughput,
//! start-to-ready time, RSS, and the HNSW graph's recall@10 against exact search.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use local_agent::config::{AgentConfig, Overrides};
use local_agent::embed::Embedder;
use local_agent::embed::cache::EmbeddingCache;
use local_agent::index::chunk::chunk_document;
use local_agent::index::{self, Silent};
use local_agent::search::Engine;
use local_agent::sources::folder::{Document, FileKind};
use serde_json::{Value, json};
use support::{Eval, Server, load_eval, note, percentile, rss_kb, start_server};

mod support;

struct Args {
    /// The set's name, for the report.
    set: String,
    eval_dir: PathBuf,
    work_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    /// `cargo test` runs benches without `--bench`: then only a small slice of the data is used,
    /// to prove the bench still works without spending minutes on it.
    smoke: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut eval_dir = None;
    let mut set = "scifact".to_owned();
    let mut work_dir = None;
    let mut config = None;
    let mut smoke = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => smoke = false,
            "--set" => set = args.next().context("--set needs a name: scifact or zh-dev")?,
            "--work" => work_dir = Some(PathBuf::from(args.next().context("--work needs a folder")?)),
            "--config" => config = Some(PathBuf::from(args.next().context("--config needs a file")?)),
            other if other.starts_with("--") => bail!("unknown option {other}"),
            other => eval_dir = Some(PathBuf::from(other)),
        }
    }
    let given = eval_dir.is_some();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let eval_dir = match (eval_dir, set.as_str()) {
        (Some(dir), _) => dir,
        (None, "scifact") => workspace.join("../shared/eval/scifact"),
        (None, "zh-dev") => workspace.join("target/eval/zh-dev"),
        (None, other) => bail!("unknown set {other}: scifact or zh-dev"),
    };
    if set == "zh-dev" && !given && !smoke && !eval_dir.join("corpus.jsonl").is_file() {
        eprintln!("building the zh-dev set in {}…", eval_dir.display());
        let script = workspace.join("scripts/eval/zh-dev.py");
        let status = Command::new("python3").arg(&script).arg(&eval_dir).status()?;
        anyhow::ensure!(status.success(), "{} failed", script.display());
    }
    if !eval_dir.join("corpus.jsonl").is_file() {
        if smoke && !given {
            eprintln!("retrieval bench: no evaluation data in {}; skipped", eval_dir.display());
            return Ok(None);
        }
        bail!("no evaluation data in {}; pass the folder holding corpus.jsonl", eval_dir.display());
    }
    Ok(Some(Args { set, eval_dir, work_dir, config, smoke }))
}

/// Keeps the first `documents` abstracts and the queries whose relevant abstracts are all
/// among them.
fn slice(eval: &mut Eval, documents: usize) {
    eval.corpus.truncate(documents);
    let kept: HashSet<&str> = eval.corpus.iter().map(|(id, _, _)| id.as_str()).collect();
    let answerable = |id: &String| eval.qrels[id].keys().all(|doc| kept.contains(doc.as_str()));
    let queries: Vec<(String, String)> = eval.queries.iter().filter(|(id, _)| answerable(id)).cloned().collect();
    eval.queries = queries;
}

fn ndcg_at(ranked: &[String], relevant: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, doc)| f64::from(*relevant.get(doc).unwrap_or(&0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &r)| f64::from(r) / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

fn recall_at(ranked: &[String], relevant: &HashMap<String, u32>, k: usize) -> f64 {
    let wanted: HashSet<&String> = relevant.iter().filter(|(_, r)| **r > 0).map(|(d, _)| d).collect();
    if wanted.is_empty() {
        return 0.0;
    }
    ranked.iter().take(k).filter(|doc| wanted.contains(doc)).count() as f64 / wanted.len() as f64
}

struct ModeResult {
    ndcg10: f64,
    recall100: f64,
    latencies_ms: Vec<f64>,
}

async fn run_queries(
    client: &reqwest::Client,
    server: &Server,
    eval: &Eval,
    mode: &str,
    max_results: usize,
) -> Result<ModeResult> {
    let mut ndcg = 0.0;
    let mut recall = 0.0;
    let mut latencies = Vec::with_capacity(eval.queries.len());
    for (id, text) in &eval.queries {
        let started = Instant::now();
        let response: Value = client
            .post(format!("{}/search", server.address))
            .json(&json!({"query": text, "max_results": max_results, "similarity_threshold": 0.0, "mode": mode}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        let ranked: Vec<String> = response["results"]
            .as_array()
            .context("no results array")?
            .iter()
            .filter_map(|r| r["source"].as_str().map(|s| s.trim_end_matches(".md").to_owned()))
            .collect();
        ndcg += ndcg_at(&ranked, &eval.qrels[id], 10);
        recall += recall_at(&ranked, &eval.qrels[id], 100);
    }
    latencies.sort_by(f64::total_cmp);
    let n = eval.queries.len() as f64;
    Ok(ModeResult { ndcg10: ndcg / n, recall100: recall / n, latencies_ms: latencies })
}

/// Raw model throughput: chunks of a sample of documents, embedded in length-sorted batches.
fn raw_throughput(embedder: &Embedder, config: &AgentConfig, eval: &Eval) -> Result<(usize, f64)> {
    let mut texts = Vec::new();
    for (id, title, text) in eval.corpus.iter().step_by(5) {
        let document = Document::parse(&format!("{id}.md"), FileKind::Markdown, &note(title, text));
        for chunk in chunk_document(&document, config.index.chunking_for(embedder), &|t| embedder.count_tokens(t)) {
            texts.push(chunk.indexed_text(&document.title));
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = Instant::now();
    embedder.embed_all(&refs, config.index.batch_size, |_| {})?;
    Ok((texts.len(), texts.len() as f64 / started.elapsed().as_secs_f64()))
}

/// recall@10 of the HNSW graph against exact search over the unquantized vectors.
fn graph_recall(engine: &Engine, data_dir: &Path, eval: &Eval) -> Result<f64> {
    let snapshot = engine.snapshot()?;
    let cache = EmbeddingCache::open(&data_dir.join("embedding-cache.redb"))?;
    let chunks: Vec<(u64, [u8; 16])> =
        snapshot.manifest.documents.iter().flat_map(|d| &d.chunks).map(|c| (c.id, c.hash)).collect();
    let hashes: Vec<[u8; 16]> = chunks.iter().map(|(_, h)| *h).collect();
    let vectors: Vec<Vec<f32>> = cache.get_many(&hashes)?.into_iter().map(Option::unwrap_or_default).collect();
    let mut total = 0.0;
    for (_, query) in &eval.queries {
        let q = engine.embedder().embed_query(query)?.vector;
        let mut exact: Vec<(u64, f32)> =
            chunks.iter().zip(&vectors).map(|((id, _), v)| (*id, v.iter().zip(&q).map(|(a, b)| a * b).sum())).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: HashSet<u64> = exact.iter().take(10).map(|(id, _)| *id).collect();
        let found = snapshot.vectors.search(&q, 10, None)?;
        total += found.iter().filter(|(id, _)| truth.contains(id)).count() as f64 / 10.0;
    }
    Ok(total / eval.queries.len() as f64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let Some(args) = parse_args()? else { return Ok(()) };
    let mut eval = load_eval(&args.eval_dir)?;
    if args.smoke {
        slice(&mut eval, 150);
        anyhow::ensure!(!eval.queries.is_empty(), "the smoke slice has no answerable queries");
    }
    let temporary = tempfile::tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| temporary.path().to_owned());
    let notes = work.join("notes");
    let data_dir = work.join("data");
    std::fs::create_dir_all(&notes)?;
    for (id, title, text) in &eval.corpus {
        let path = notes.join(format!("{id}.md"));
        let content = note(title, text);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content)?;
        }
    }
    eprintln!("{} documents, {} queries; working in {}", eval.corpus.len(), eval.queries.len(), work.display());

    let config = AgentConfig::load(&Overrides { data_dir: Some(data_dir.clone()), config: args.config.clone() })?;
    let embedder = Embedder::load(&config.embedder)?;
    eprintln!("measuring raw model throughput…");
    let (raw_chunks, raw_rate) = raw_throughput(&embedder, &config, &eval)?;
    eprintln!("indexing…");
    let report = index::index_folders(&data_dir, std::slice::from_ref(&notes), &embedder, &config.index, &Silent)?;
    let index_rate = report.chunks_written as f64 / report.elapsed.as_secs_f64();
    drop(embedder);

    eprintln!("starting the server…");
    let server = start_server(&data_dir, args.config.as_deref())?;
    let client = reqwest::Client::new();
    let health: Value = client.get(format!("{}/health", server.address)).send().await?.json().await?;
    let start_to_ready = server.ready_after;
    anyhow::ensure!(health["rag_engine"]["status"] == "ready", "server not ready: {health}");

    let mut rows = Vec::new();
    for mode in ["hybrid", "keyword", "semantic"] {
        eprintln!("querying ({mode})…");
        rows.push((mode, run_queries(&client, &server, &eval, mode, 100).await?));
    }
    eprintln!("timing top-10 searches…");
    let top10 = run_queries(&client, &server, &eval, "hybrid", 10).await?;
    let (rss, peak) = rss_kb(server.child.id());
    drop(server);

    let engine =
        Engine::open(&data_dir, std::sync::Arc::new(Embedder::load(&config.embedder)?), config.search.clone())?;
    let hnsw_recall = graph_recall(&engine, &data_dir, &eval)?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n## {} dev ({} queries, {} documents, {} chunks)\n",
        args.set,
        eval.queries.len(),
        report.documents,
        report.chunks
    )?;
    writeln!(out, "| retrieval | nDCG@10 | recall@100 | /search p50 | p95 | p99 |")?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for (mode, result) in &rows {
        let l = &result.latencies_ms;
        writeln!(
            out,
            "| {mode} (top 100) | {:.3} | {:.3} | {:.1} ms | {:.1} ms | {:.1} ms |",
            result.ndcg10,
            result.recall100,
            percentile(l, 0.5),
            percentile(l, 0.95),
            percentile(l, 0.99)
        )?;
    }
    let l = &top10.latencies_ms;
    writeln!(
        out,
        "| hybrid (top 10) | {:.3} | – | {:.1} ms | {:.1} ms | {:.1} ms |",
        top10.ndcg10,
        percentile(l, 0.5),
        percentile(l, 0.95),
        percentile(l, 0.99)
    )?;
    writeln!(out, "\n| measure | value |\n|---|---|")?;
    writeln!(
        out,
        "| indexing ({} chunks, {} documents) | {:.1} s |",
        report.chunks_written,
        report.documents,
        report.elapsed.as_secs_f64()
    )?;
    writeln!(out, "| indexing throughput | {index_rate:.1} chunks/s |")?;
    writeln!(out, "| raw model throughput ({raw_chunks} chunks) | {raw_rate:.1} chunks/s |")?;
    writeln!(out, "| indexing / raw | {:.0} % |", 100.0 * index_rate / raw_rate)?;
    writeln!(out, "| start to ready (existing index) | {} ms |", start_to_ready.as_millis())?;
    writeln!(
        out,
        "| server RSS after queries (peak) | {:.0} MB ({:.0} MB) |",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    )?;
    writeln!(out, "| HNSW recall@10 vs exact f32 | {hnsw_recall:.3} |")?;
    if report.embedded == 0 {
        writeln!(out, "\n(embeddings came from the cache of an earlier run: indexing figures are not a cold run)")?;
    }
    Ok(())
}
