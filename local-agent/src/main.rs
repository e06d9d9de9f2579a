//! `local-agent`: index notes, search them, serve the loopback HTTP API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use local_agent::api::{self, client};
use local_agent::config::{AgentConfig, Overrides};
use local_agent::embed::Embedder;
use local_agent::index::generations::IndexDir;
use local_agent::index::snapshot::Snapshot;
use local_agent::index::{self, IndexReport, IndexSettings, Phase, Progress};
use local_agent::ops::doctor::NotionTarget;
use local_agent::ops::service::unit::{self, ServiceSpec};
use local_agent::ops::service::{RunState, Service};
use local_agent::search::{Engine, SearchSettings};
use local_agent::sources::notion_sync::NotionSync;
use local_agent::sources::watch::{FolderWatcher, reindex_on_change};
use local_agent::tunnel::{self, Responder, TunnelConfig};
use protocol::{SearchMode, SearchRequest, SearchResponse};
use tracing_appender::rolling::Rotation;
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
        /// Rebuild the index from the files (embeddings still come from the cache); Notion
        /// pages come back with the next `local-agent sync`.
        #[arg(long)]
        rebuild: bool,
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
        /// Log to files in this folder, rotated daily (a week kept), instead of stderr; the
        /// service definitions pass `<data dir>/logs`.
        #[arg(long, env = "LOCAL_AGENT_LOG_DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Show where things are and what is indexed.
    Status,
    /// Keep `serve` running: a systemd user unit, a launchd agent, or else a background
    /// process with a pid file.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
        /// Use a background process and a pid file even where systemd or launchd is available.
        #[arg(long, global = true)]
        no_service_manager: bool,
    },
    /// Check the runtime, model, data, index, config, Notion, cloud, clock and port, and say
    /// how to fix what is wrong; exits 1 if a check failed.
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync the Notion knowledge databases into the index once, and print what changed.
    Sync {
        /// List every page (notices deleted pages), whatever the schedule says.
        #[arg(long)]
        full: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum ServiceAction {
    /// Install the service, enable it at login (or boot, with lingering) and start it.
    Install,
    /// Stop and remove the service.
    Uninstall,
    /// Start the agent (in the background if no service is installed).
    Start,
    /// Stop the agent.
    Stop,
    /// Restart the agent.
    Restart,
    /// Whether it runs, and what it says about the cloud and the index (exits 3 if stopped).
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
    let log_dir = match &cli.command {
        Command::Serve { log_dir, .. } => log_dir.clone(),
        _ => None,
    };
    init_logging(filter, log_dir.as_deref());
    if let Err(error) = run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// Logs kept by `serve --log-dir`: one file a day.
const LOG_FILES_KEPT: usize = 7;

/// Logs to stderr, or with `--log-dir` to daily-rotated files there: a service has no
/// terminal, and not every system has a journal.
fn init_logging(filter: EnvFilter, log_dir: Option<&std::path::Path>) {
    let appender = log_dir.map(|dir| {
        std::fs::create_dir_all(dir).map_err(|error| error.to_string()).and_then(|()| {
            tracing_appender::rolling::Builder::new()
                .rotation(Rotation::DAILY)
                .filename_prefix("local-agent")
                .filename_suffix("log")
                .max_log_files(LOG_FILES_KEPT)
                .build(dir)
                .map_err(|error| error.to_string())
        })
    });
    match appender {
        Some(Ok(appender)) => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(appender).with_ansi(false).init();
        }
        unusable => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            if let Some(Err(error)) = unusable {
                tracing::warn!(%error, "cannot write logs to the log folder; logging to stderr");
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides { data_dir: cli.data_dir, config: cli.config };
    // The doctor reports a broken configuration as one of its checks.
    if let Command::Doctor { json } = cli.command {
        return doctor(&overrides, json);
    }
    let config = AgentConfig::load(&overrides)?;
    if matches!(cli.command, Command::Index { .. } | Command::Serve { .. } | Command::Sync { .. }) {
        // It will hold an index of private notes: only its owner may enter.
        protocol::private_fs::create_private_dir(&config.data_dir)
            .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    }
    match cli.command {
        Command::Index { folders, rebuild } => index(&config, folders, rebuild),
        Command::Search { query, tags, top_k, threshold, mode, json } => {
            let request =
                SearchRequest { query, tags, max_results: top_k, similarity_threshold: threshold, mode: mode.into() };
            search(&config, &request, json)
        }
        Command::Serve { listen, .. } => serve(&config, listen.unwrap_or(config.listen)),
        Command::Status => status(&config),
        Command::Service { action, no_service_manager } => service(&config, &overrides, action, no_service_manager),
        Command::Doctor { json } => doctor(&overrides, json),
        Command::Sync { full, json } => sync(&config, full, json),
    }
}

fn load_embedder(config: &AgentConfig) -> Result<Arc<Embedder>> {
    Ok(Arc::new(Embedder::load(&config.embedder)?))
}

fn index(config: &AgentConfig, folders: Vec<PathBuf>, rebuild: bool) -> Result<()> {
    let folders = if folders.is_empty() { config.folders.clone() } else { folders };
    let embedder = load_embedder(config)?;
    let progress = Bars::new();
    let settings = IndexSettings { rebuild, ..config.index.clone() };
    let report = index::index_folders(&config.data_dir, &folders, &embedder, &settings, &progress)?;
    print_report(&report);
    Ok(())
}

#[tokio::main]
async fn sync(config: &AgentConfig, full: bool, json: bool) -> Result<()> {
    let settings = config.notion.clone().context(
        "no Notion knowledge database is configured: set NOTION_API_KEY and NOTION_KNOWLEDGE_DATABASE_ID, \
         or [notion] token and databases in config.toml",
    )?;
    let embedder = tokio::task::block_in_place(|| load_embedder(config))?;
    let report = NotionSync::new(settings, &config.data_dir)?.run(embedder, &config.index, full).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} pages listed{}: {} added, {} updated, {} removed, {} unchanged, {} unreadable; \
             {} blocks skipped; {} Notion requests in {:.1} s",
            report.listed,
            if report.full { " (full)" } else { "" },
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            report.unreadable,
            report.skipped_blocks,
            report.requests,
            report.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(())
}

/// Opens the index; one that is unreadable or built with another model is rebuilt from its
/// sources first (with a log line saying so), instead of stopping the agent.
fn open_or_rebuild(config: &AgentConfig, embedder: &Arc<Embedder>) -> Result<Engine> {
    match Engine::open(&config.data_dir, embedder.clone(), config.search.clone()) {
        Err(error @ (local_agent::Error::CorruptIndex { .. } | local_agent::Error::ModelChanged { .. })) => {
            tracing::warn!(%error, "rebuilding the index from its sources before serving");
            let settings = IndexSettings { rebuild: true, ..config.index.clone() };
            let report = tokio::task::block_in_place(|| {
                index::index_folders(&config.data_dir, &config.folders, embedder, &settings, &index::Silent)
            })
            .with_context(|| {
                format!("the index could not be rebuilt; run `local-agent index <FOLDER> --rebuild` ({error})")
            })?;
            tracing::info!(documents = report.documents, chunks = report.chunks, "the index was rebuilt");
            Ok(Engine::open(&config.data_dir, embedder.clone(), config.search.clone())?)
        }
        opened => Ok(opened?),
    }
}

/// Re-indexes the indexed folders (and the configured ones) when their files change.
fn watch_folders(config: &AgentConfig, embedder: &Arc<Embedder>) -> Option<tokio::task::JoinHandle<()>> {
    let index_dir = IndexDir::new(&config.data_dir);
    let indexed = index_dir
        .current()
        .ok()
        .flatten()
        .and_then(|generation| index_dir.read_manifest(generation).ok())
        .map(|manifest| manifest.roots)
        .unwrap_or_default();
    let mut folders: Vec<PathBuf> =
        indexed.into_iter().filter(|root| local_agent::sources::is_folder_root(root)).collect();
    folders.extend(config.folders.iter().filter_map(|folder| std::fs::canonicalize(folder).ok()));
    folders.sort();
    folders.dedup();
    folders.retain(|folder| folder.is_dir());
    if folders.is_empty() {
        return None;
    }
    let watcher = match FolderWatcher::start(&folders, Duration::from_secs(2)) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the note folders; run `local-agent index` after editing notes");
            return None;
        }
    };
    tracing::info!(folders = folders.len(), "watching the note folders for changes");
    Some(tokio::spawn(reindex_on_change(
        watcher,
        config.data_dir.clone(),
        embedder.clone(),
        config.index.clone(),
        |run| match run {
            Ok(report) if report.published => tracing::info!(
                added = report.added,
                changed = report.changed,
                removed = report.removed,
                generation = report.generation,
                "re-indexed changed notes"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "re-indexing changed notes failed"),
        },
    )))
}

/// Syncs Notion every `sync_interval` while serving; a failed sync is logged and retried at
/// the next tick (the index keeps serving what it has).
async fn sync_periodically(sync: NotionSync, embedder: Arc<Embedder>, index: IndexSettings) {
    let mut ticks = tokio::time::interval(sync.settings().sync_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sync.run(embedder.clone(), &index, false).await {
            Ok(report) => tracing::info!(
                listed = report.listed,
                added = report.added,
                updated = report.updated,
                removed = report.removed,
                requests = report.requests,
                "Notion sync finished"
            ),
            Err(error) => tracing::warn!(%error, "Notion sync failed; retrying at the next interval"),
        }
    }
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
    // Before anything is loaded: an exposed API without a key is refused, not warned about.
    api::check_exposure(listen, config.api_key.as_ref())?;
    let embedder = tokio::task::block_in_place(|| load_embedder(config))?;
    let engine = Arc::new(open_or_rebuild(config, &embedder)?);
    let stats = engine.stats();
    if stats.generation == 0 {
        tracing::warn!("nothing indexed yet in {}; run `local-agent index <FOLDER>`", config.data_dir.display());
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
    let mut tunnel_status = None;
    let tunnel = match (&config.cloud.url, &config.cloud.token) {
        (Some(url), Some(token)) => {
            let agent_id = match &config.cloud.agent_id {
                Some(id) => id.clone(),
                None => persistent_agent_id(&config.data_dir)?,
            };
            let tunnel_config = TunnelConfig::with_transport(
                url,
                token.clone(),
                agent_id.clone(),
                config.cloud.ca_file.as_deref(),
                config.cloud.allow_insecure,
            )?;
            tunnel_status = Some(tunnel_config.status.clone());
            tracing::info!(url, agent_id, "connecting to the cloud");
            let responder: Arc<dyn Responder> = engine.clone();
            // The tunnel stops only when its configuration cannot work; the local API keeps
            // serving, and `/stats` and `service status` say why.
            Some(tokio::spawn(async move {
                let error = tunnel::run(tunnel_config, responder).await;
                tracing::error!(%error, "the tunnel to the cloud stopped; the local API keeps serving");
            }))
        }
        _ => None,
    };
    let watching = watch_folders(config, &embedder);
    let syncing = match &config.notion {
        Some(settings) => {
            let sync = NotionSync::new(settings.clone(), &config.data_dir)?;
            tracing::info!(databases = settings.databases.len(), "syncing Notion knowledge databases");
            Some(tokio::spawn(sync_periodically(sync, embedder.clone(), config.index.clone())))
        }
        None => None,
    };
    let rebuild =
        api::IndexRebuild::new(config.data_dir.clone(), config.folders.clone(), embedder, config.index.clone());
    let mut state =
        api::ApiState::new(engine, config.api_key.clone()).with_settings(config.api.clone()).with_rebuild(rebuild);
    if let Some(status) = tunnel_status {
        state = state.with_tunnel(status);
    }
    api::serve(listener, state, shutdown_signal()).await?;
    for task in [syncing, watching, tunnel].into_iter().flatten() {
        task.abort();
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
    // The running agent, if there is one: its health and its link to the cloud (connected,
    // refused, …), as `/stats` reports them.
    let running = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(client::report(config.listen, config.api_key.as_ref()));
    match running {
        Ok(report) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.as_secs());
            for line in client::describe(&report, now) {
                println!("{line}");
            }
        }
        Err(error) => println!("agent:         not running ({error})"),
    }
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
        println!("source:        {}", root.display());
    }
    println!("Notion sync:   {}", describe_last_sync(&config.data_dir));
    // Opening the index proves it is readable, not just present.
    match Snapshot::open_current(&index_dir, &manifest.model_id) {
        Ok(_) => println!("index check:   ok"),
        Err(error) => println!("index check:   FAILED: {error}"),
    }
    Ok(())
}

/// "3 min ago: 120 pages listed, 2 updated…", or why there is nothing to say.
fn describe_last_sync(data_dir: &std::path::Path) -> String {
    match local_agent::sources::notion_sync::last_sync(data_dir) {
        None => "never (see `local-agent sync`)".into(),
        Some((at, report)) => {
            let age = chrono::Utc::now().signed_duration_since(at).num_seconds().max(0) as u64;
            format!(
                "{} ago: {} pages listed, {} added, {} updated, {} removed, {} unreadable",
                human_duration(age),
                report.listed,
                report.added,
                report.updated,
                report.removed,
                report.unreadable
            )
        }
    }
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

fn service(config: &AgentConfig, overrides: &Overrides, action: ServiceAction, no_manager: bool) -> Result<()> {
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
    };
    let spec = ServiceSpec {
        exe: std::env::current_exe().context("cannot find the path of this program")?,
        data_dir: absolute(&config.data_dir)?,
        config: config_in_use(overrides).map(|path| absolute(&path)).transpose()?,
        listen: None,
        env: unit::service_environment(|name| std::env::var(name).ok()),
    };
    let service = Service::detect(spec, no_manager)?;
    let notes = match action {
        ServiceAction::Install => service.install()?,
        ServiceAction::Uninstall => service.uninstall()?,
        ServiceAction::Start => service.start()?,
        ServiceAction::Stop => service.stop()?,
        ServiceAction::Restart => service.restart()?,
        ServiceAction::Status => return service_status(&service, config),
    };
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// The config file in use, found as `AgentConfig::load` finds it (`--config`, else
/// `<data dir>/config.toml`), so the service reads the same file from wherever it starts.
fn config_in_use(overrides: &Overrides) -> Option<PathBuf> {
    overrides.config.clone().or_else(|| {
        let data_dir = overrides
            .data_dir
            .clone()
            .unwrap_or_else(|| dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("notion-llm"));
        let candidate = data_dir.join("config.toml");
        candidate.is_file().then_some(candidate)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn service_status(service: &Service, config: &AgentConfig) -> Result<()> {
    let (state, note) = service.state()?;
    if let Some(note) = note {
        println!("{note}");
    }
    let running = matches!(state, RunState::Running(_));
    let shown = match state {
        RunState::Running(Some(pid)) => format!("running (pid {pid})"),
        RunState::Running(None) => "running".into(),
        RunState::Stopped(detail) => format!("not running: {detail}"),
    };
    println!("service:      {shown} — {}", service.describe_backend());
    println!("logs:         {}", service.spec.log_dir().display());
    match client::report(config.listen, config.api_key.as_ref()).await {
        Ok(report) => {
            println!("HTTP API:     http://{}", client::loopback_address(config.listen));
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.as_secs());
            for line in client::describe(&report, now) {
                println!("{line}");
            }
        }
        Err(error) => println!("HTTP API:     {error}"),
    }
    println!("Notion sync:  {}", describe_last_sync(&config.data_dir));
    if !running {
        // As `systemctl status` does, so scripts can tell.
        std::process::exit(3);
    }
    Ok(())
}

#[tokio::main]
async fn doctor(overrides: &Overrides, json: bool) -> Result<()> {
    let loaded = AgentConfig::load(overrides);
    let notion =
        loaded.as_ref().ok().and_then(|config| NotionTarget::from_config(config, |name| std::env::var(name).ok()));
    let report = local_agent::ops::doctor::diagnose(loaded.as_ref(), notion.as_ref()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.ok {
        std::process::exit(1);
    }
    Ok(())
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
