//! What the end-to-end benches share: the evaluation data, a `local-agent serve` process on an
//! ephemeral port, its memory, and percentiles.
// Each bench compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

/// A BEIR-style evaluation set: corpus `(id, title, text)`, dev queries `(id, text)` and their
/// graded judgements.
pub struct Eval {
    pub corpus: Vec<(String, String, String)>,
    pub queries: Vec<(String, String)>,
    pub qrels: HashMap<String, HashMap<String, u32>>,
}

/// Reads `corpus.jsonl`, `queries-dev.jsonl` and `qrels-dev.tsv` from `dir`.
pub fn load_eval(dir: &Path) -> Result<Eval> {
    let jsonl = |name: &str| -> Result<Vec<Value>> {
        let file = std::fs::File::open(dir.join(name)).with_context(|| format!("opening {name}"))?;
        BufReader::new(file).lines().map(|line| Ok(serde_json::from_str(&line?)?)).collect()
    };
    let text = |value: &Value, key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let corpus = jsonl("corpus.jsonl")?.iter().map(|d| (text(d, "_id"), text(d, "title"), text(d, "text"))).collect();
    let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("qrels-dev.tsv"))?.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [query, doc, score] = fields[..] {
            qrels.entry(query.to_owned()).or_default().insert(doc.to_owned(), score.parse()?);
        }
    }
    let queries = jsonl("queries-dev.jsonl")?
        .iter()
        .map(|q| (text(q, "_id"), text(q, "text")))
        .filter(|(id, _)| qrels.contains_key(id))
        .collect();
    Ok(Eval { corpus, queries, qrels })
}

/// The value at `p` (0..=1) of sorted `values`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A `local-agent serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: String,
    pub ready_after: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(data_dir: &Path, config: Option<&Path>) -> Result<Server> {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
    command.arg("--data-dir").arg(data_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let address = line.trim().strip_prefix("listening on ").context("server did not start")?.to_owned();
    let ready_after = started.elapsed();
    Ok(Server { child, address, ready_after })
}

/// Fields of a process's `/proc/<pid>/status`, in KiB (Linux; zeros elsewhere).
fn status_kb<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Resident and peak resident memory of a process, in KiB.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    let [rss, peak] = status_kb(pid, ["VmRSS:", "VmHWM:"]);
    (rss, peak)
}

/// Of a process's resident memory, in KiB: anonymous (heap, the model) and file-backed (mapped
/// index files the kernel may drop and read again).
pub fn rss_parts_kb(pid: u32) -> (u64, u64) {
    let [anon, file, shared] = status_kb(pid, ["RssAnon:", "RssFile:", "RssShmem:"]);
    (anon, file + shared)
}

/// A corpus entry as a Markdown note.
pub fn note(title: &str, text: &str) -> String {
    format!("# {title}\n\n{text}\n")
}

/// A process's resident memory by what holds it, in KiB, from `/proc/<pid>/smaps` (Linux;
/// empty elsewhere): anonymous memory (heap: the model's tensors, the document table), the
/// vector index file, the keyword index's files by kind, and other mapped files (libraries).
pub fn rss_by_mapping_kb(pid: u32) -> BTreeMap<String, u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut parts = BTreeMap::new();
    let mut holder = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            // "7f3f43000000-7f3f43200000 r--s 00000000 fd:01 1234 /path/file" starts a mapping.
            Some(range) if range.contains('-') && !range.ends_with(':') => {
                holder = mapping_holder(&fields.get(5..).unwrap_or_default().join(" "));
            }
            Some(&"Rss:") => {
                let kib: u64 = fields.get(1).and_then(|value| value.parse().ok()).unwrap_or(0);
                *parts.entry(holder.clone()).or_default() += kib;
            }
            _ => {}
        }
    }
    parts
}

/// What a mapping of `path` is, for [`rss_by_mapping_kb`].
fn mapping_holder(path: &str) -> String {
    let path = path.trim_end_matches(" (deleted)");
    if path.is_empty() || path.starts_with('[') {
        return "anonymous".into();
    }
    if path.ends_with(".usearch") {
        return "vector index (mapped)".into();
    }
    match path.rsplit_once('.') {
        Some((stem, extension)) if stem.contains("/index/") => format!("keyword index .{extension} (mapped)"),
        _ => "libraries and other files".into(),
    }
}
