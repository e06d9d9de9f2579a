//! `local-agent`: index notes, search them, serve the loopback HTTP API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use local_agent::config::{AgentConfig, Overrides};
use local_agent::embed::Embedder;
use local_agent::generations::IndexDir;
use local_agent::indexer::{self, IndexReport, Phase, Progress};
use local_agent::search::{Engine, SearchSettings};
use local_agent::tunnel::{self, Responder, TunnelConfig};
use local_agent::{http, snapshot::Snapshot};
use protocol::{SearchMode, SearchRequest, SearchResponse};
use tracing_subscriber::EnvFilter;

/// Indexes your notes and answers questions about them with hybrid (keyword + semantic) search.
#[derive(Debug, Parser)]
#[command(name = "local-agent", version, about)]
struct Cli {
    /// Where indexes and caches live [default: the OS data directory/notion-llm].
    #[arg(long, global = true, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file [default: <data-dir>/config.toml if it exists].
    #[arg(long, global = true, env = "LOCAL_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index folders of Markdown and text notes (only what changed since the last run).
    Index {
        /// Folders to index [default: the folders indexed before, or `folders` in the config].
        folders: Vec<PathBuf>,
    },
    /// Search the index.
    Search {
        /// The question or keywords.
        query: String,
        /// Only notes with one of these tags (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Number of results.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Drop results scoring below this similarity (0..1).
        #[arg(long, default_value_t = 0.0)]
        threshold: f32,
        /// Which retrievers to use.
        #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
        mode: Mode,
        /// Print the HTTP API's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTP API (loopback by default).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8001, or `server.listen` in the config].
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Show where things are and what is indexed.
    Status,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Keyword,
    Semantic,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Keyword => SearchMode::Keyword,
            Mode::Semantic => SearchMode::Semantic,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(error) = run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = AgentConfig::load(&Overrides { data_dir: cli.data_dir, config: cli.config })?;
    match cli.command {
        Command::Index { folders } => index(&config, folders),
        Command::Search { query, tags, top_k, threshold, mode, json } => {
            let request =
                SearchRequest { query, tags, max_results: top_k, similarity_threshold: threshold, mode: mode.into() };
            search(&config, &request, json)
        }
        Command::Serve { listen } => serve(&config, listen.unwrap_or(config.listen)),
        Command::Status => status(&config),
    }
}

fn load_embedder(config: &AgentConfig) -> Result<Arc<Embedder>> {
    Ok(Arc::new(Embedder::load(&config.embedder)?))
}

fn index(config: &AgentConfig, folders: Vec<PathBuf>) -> Result<()> {
    let folders = if folders.is_empty() { config.folders.clone() } else { folders };
    let embedder = load_embedder(config)?;
    let progress = Bars::new();
    let report = indexer::index_folders(&config.data_dir, &folders, &embedder, &config.index, &progress)?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &IndexReport) {
    println!(
        "{} added, {} changed, {} removed, {} unchanged — {} documents, {} chunks in the index",
        report.added, report.changed, report.removed, report.unchanged, report.documents, report.chunks
    );
    if report.published {
        println!(
            "wrote {} chunks ({} embedded, {} from cache) as generation {} in {:.1} s",
            report.chunks_written,
            report.embedded,
            report.from_cache,
            report.generation,
            report.elapsed.as_secs_f64()
        );
    } else {
        println!("nothing changed; the index is up to date (generation {})", report.generation);
    }
}

fn search(config: &AgentConfig, request: &SearchRequest, json: bool) -> Result<()> {
    let engine = Engine::open(
        &config.data_dir,
        load_embedder(config)?,
        SearchSettings { cache_capacity: 0, ..config.search.clone() },
    )?;
    let response = engine.search(request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print_results(&response);
    }
    Ok(())
}

fn print_results(response: &SearchResponse) {
    if response.results.is_empty() {
        println!("No results.");
        return;
    }
    for (rank, hit) in response.results.iter().enumerate() {
        let kind =
            serde_json::to_value(hit.source_type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        println!("{}. {} ({})  score {:.3}, {kind}", rank + 1, hit.title, hit.source, hit.similarity_score);
        let snippet: String = hit.content_snippet.split_whitespace().collect::<Vec<_>>().join(" ");
        println!("   {snippet}\n");
    }
    println!("--- context ---\n{}", response.context);
    println!("--- {:.1} ms ---", response.processing_time * 1e3);
}

#[tokio::main]
async fn serve(config: &AgentConfig, listen: SocketAddr) -> Result<()> {
    let started = Instant::now();
    let embedder = tokio::task::block_in_place(|| load_embedder(config))?;
    let engine = Arc::new(Engine::open(&config.data_dir, embedder, config.search.clone())?);
    let stats = engine.stats();
    if stats.generation == 0 {
        tracing::warn!("nothing indexed yet in {}; run `local-agent index <FOLDER>`", config.data_dir.display());
    }
    if !listen.ip().is_loopback() && config.api_key.is_none() {
        tracing::warn!(%listen, "serving beyond loopback without LOCAL_RAG_API_KEY: anyone who can reach it can read your notes");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        documents = stats.documents,
        chunks = stats.chunks,
        ready_ms = started.elapsed().as_millis() as u64,
        "serving the HTTP API"
    );
    // Scripts and tests read the bound address (port 0 picks a free one) from this line.
    println!("listening on http://{address}");
    let tunnel = match (&config.cloud.url, &config.cloud.token) {
        (Some(url), Some(token)) => {
            let agent_id = match &config.cloud.agent_id {
                Some(id) => id.clone(),
                None => persistent_agent_id(&config.data_dir)?,
            };
            let tunnel_config =
                TunnelConfig::new(url, token.clone(), agent_id.clone(), config.cloud.ca_file.as_deref())?;
            tracing::info!(url, agent_id, "connecting to the cloud");
            let responder: Arc<dyn Responder> = engine.clone();
            Some(tokio::spawn(tunnel::run(tunnel_config, responder)))
        }
        _ => None,
    };
    let state = http::ApiState::new(engine, config.api_key.clone());
    let server = http::serve(listener, state, shutdown_signal());
    match tunnel {
        None => server.await?,
        // The tunnel only ever stops on an error retrying cannot fix: then the agent exits
        // non-zero rather than serve on while the cloud cannot reach it.
        Some(tunnel) => tokio::select! {
            result = server => result?,
            stopped = tunnel => match stopped {
                Ok(error) => bail!("the tunnel to the cloud stopped: {error}"),
                Err(panic) => bail!("the tunnel to the cloud crashed: {panic}"),
            },
        },
    }
    tracing::info!("stopped");
    Ok(())
}

/// The id this installation presents to the cloud: made once, then kept in the data dir, so
/// the cloud's status page shows the same agent across restarts.
fn persistent_agent_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("agent-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent".into());
    let id = format!("{host}-{:08x}", fastrand::u32(..));
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

fn status(config: &AgentConfig) -> Result<()> {
    let present = |path: &std::path::Path| if path.exists() { "ok" } else { "MISSING (run scripts/setup.sh)" };
    println!("data dir:      {}", config.data_dir.display());
    println!(
        "ONNX Runtime:  {} [{}]",
        config.embedder.runtime_library.display(),
        present(&config.embedder.runtime_library)
    );
    println!(
        "model:         {} [{}]",
        config.embedder.model_dir.display(),
        present(&config.embedder.model_dir.join("model.onnx"))
    );
    println!("HTTP API:      {}{}", config.listen, if config.api_key.is_some() { " (API key required)" } else { "" });
    let index_dir = IndexDir::new(&config.data_dir);
    let Some(generation) = index_dir.current()? else {
        println!("index:         none yet; run `local-agent index <FOLDER>`");
        return Ok(());
    };
    let manifest = index_dir.read_manifest(generation)?;
    let size = dir_size(&index_dir.generation_dir(generation));
    println!(
        "index:         generation {generation}, {} documents, {} chunks, {:.1} MB on disk, model {}",
        manifest.documents.len(),
        manifest.chunk_count(),
        size as f64 / 1e6,
        manifest.model_id
    );
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs())
        .saturating_sub(manifest.created_at);
    println!("last indexed:  {} ago", human_duration(age));
    for root in &manifest.roots {
        println!("folder:        {}", root.display());
    }
    // Opening the index proves it is readable, not just present.
    match Snapshot::open_current(&index_dir, &manifest.model_id) {
        Ok(_) => println!("index check:   ok"),
        Err(error) => println!("index check:   FAILED: {error}"),
    }
    Ok(())
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
                    _ => entry.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86400),
    }
}

/// Progress bars on stderr (hidden when stderr is not a terminal).
struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self { bar: std::sync::Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: u64) {
        let label = match phase {
            Phase::Reading => "reading ",
            Phase::Embedding => "embedding",
            Phase::Writing => "writing ",
        };
        let bar =
            if std::io::stderr().is_terminal() && total > 0 { ProgressBar::new(total) } else { ProgressBar::hidden() };
        let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, steps: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(steps);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}
