//! `local-agent`: index notes, search them, serve the loopback HTTP API. The commands parse
//! their flags here and print; the work is the library's.

mod args;
mod init;
mod output;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use local_agent::agent::Agent;
use local_agent::api::client;
use local_agent::config::{self, AgentConfig, Overrides};
use local_agent::embed::Embedder;
use local_agent::index::{self, IndexSettings};
use local_agent::ops::doctor::NotionTarget;
use local_agent::ops::service::unit::{self, ServiceSpec};
use local_agent::ops::service::{RunState, Service};
use local_agent::ops::setup::{self, ModelChoice, SetupPlan};
use local_agent::ops::{logs as ops_logs, running, status};
use local_agent::search::{Engine, SearchSettings};
use local_agent::sources::notion_sync::NotionSync;
use protocol::SearchRequest;
use protocol::console::{paint, style};
use tracing_subscriber::EnvFilter;

use self::args::{Cli, Command, ServiceAction};
use self::output::Bars;

fn main() {
    let cli = Cli::parse();
    protocol::console::use_colour(match cli.color {
        clap::ColorChoice::Always => Some(true),
        clap::ColorChoice::Never => Some(false),
        clap::ColorChoice::Auto => None,
    });
    let default_level = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let log_dir = match &cli.command {
        Command::Serve { log_dir, .. } => log_dir.clone(),
        _ => None,
    };
    output::init_logging(filter, log_dir.as_deref());
    if let Err(error) = run(cli) {
        protocol::errln!("{} {}", paint(style::BAD, "error:"), protocol::console::error_chain(error.as_ref()));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "local-agent", &mut script);
        protocol::out!("{}", String::from_utf8_lossy(&script));
        return Ok(());
    }
    let overrides = Overrides { data_dir: cli.data_dir, config: cli.config };
    // Setup comes before there is anything to configure; the doctor reports a broken
    // configuration as one of its checks.
    if let Command::Setup { model, runtime, keep_downloads } = cli.command {
        return setup(&overrides, model.map(Into::into), runtime, keep_downloads);
    }
    if let Command::Init { folders, notion_databases, cloud_url, model, no_input, force } = cli.command {
        let flags =
            init::InitFlags { folders, notion_databases, cloud_url, model: model.map(Into::into), no_input, force };
        return init::run(&overrides, flags);
    }
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
        // Done before the configuration was read.
        Command::Completions { .. } | Command::Setup { .. } | Command::Init { .. } => Ok(()),
        Command::Index { folders, rebuild } => {
            let folders = if folders.is_empty() { config.folders.clone() } else { folders };
            let settings = IndexSettings { rebuild, ..config.index.clone() };
            let embedder = Embedder::load(&config.embedder)?;
            output::print_report(&index::index_folders(
                &config.data_dir,
                &folders,
                &embedder,
                &settings,
                &Bars::new(),
            )?);
            Ok(())
        }
        Command::Search { query, tags, top_k, threshold, mode, json, no_context } => {
            let request = SearchRequest {
                query,
                tags,
                max_results: top_k,
                similarity_threshold: threshold,
                mode: mode.into(),
                sources: Vec::new(),
            };
            search(&config, &request, json, !no_context)
        }
        Command::Serve { listen, .. } => serve(config.clone(), listen.unwrap_or(config.listen)),
        Command::Status => status(&config, &overrides),
        Command::Tags { json } => tags(&config, json),
        Command::Logs { follow, lines } => logs(&config, follow, lines),
        Command::Service { action, no_service_manager } => service(&config, &overrides, action, no_service_manager),
        Command::Doctor { json } => doctor(&overrides, json),
        Command::Sync { full, json } => sync(&config, full, json),
    }
}

#[tokio::main]
async fn sync(config: &AgentConfig, full: bool, json: bool) -> Result<()> {
    let settings = config.notion.clone().context(
        "no Notion knowledge database is configured: set NOTION_API_KEY and NOTION_KNOWLEDGE_DATABASE_ID, \
         or [notion] token and databases in config.toml",
    )?;
    let embedder = Arc::new(tokio::task::block_in_place(|| Embedder::load(&config.embedder))?);
    let report = NotionSync::new(settings, &config.data_dir)?.run(embedder, &config.index, full).await?;
    if json {
        protocol::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_sync_report(&report);
    }
    Ok(())
}

fn search(config: &AgentConfig, request: &SearchRequest, json: bool, with_context: bool) -> Result<()> {
    let embedder = Arc::new(Embedder::load(&config.embedder)?);
    let engine =
        Engine::open(&config.data_dir, embedder, SearchSettings { cache_capacity: 0, ..config.search.clone() })?;
    let response = engine.search(request)?;
    if json {
        protocol::outln!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        // Tags narrow, they never empty the results; a tag no note carries is most likely a typo.
        let known = status::tags(&config.data_dir)?;
        let unknown = status::unknown_tags(&request.tags, &known);
        if !unknown.is_empty() {
            protocol::outln!("{}", output::unknown_tags_hint(&unknown, &known));
        }
        output::print_results(&response, with_context, engine.stats().documents);
    }
    Ok(())
}

#[tokio::main]
async fn serve(config: AgentConfig, listen: SocketAddr) -> Result<()> {
    let started = Instant::now();
    // Before anything is loaded: an exposed API without a key is refused, not warned about.
    local_agent::api::check_exposure(listen, config.api_key.as_ref())?;
    let data_dir = config.data_dir.clone();
    // One server per data dir: two would both watch, index and answer from the same files.
    let claim = running::claim(&data_dir)?;
    let agent = tokio::task::block_in_place(|| Agent::load(config))?;
    let stats = agent.engine().stats();
    if stats.generation == 0 {
        tracing::warn!("nothing indexed yet in {}; run `local-agent index <FOLDER>`", data_dir.display());
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    claim.publish(address)?;
    tracing::info!(
        %address,
        documents = stats.documents,
        chunks = stats.chunks,
        ready_ms = started.elapsed().as_millis() as u64,
        "serving the HTTP API"
    );
    // Scripts and tests read the bound address (port 0 picks a free one) from this line.
    protocol::outln!("listening on http://{address}");
    agent.run(listener, local_agent::agent::shutdown_signal()).await?;
    drop(claim);
    tracing::info!("stopped");
    Ok(())
}

fn logs(config: &AgentConfig, follow: bool, lines: usize) -> Result<()> {
    let dir = unit::log_dir(&config.data_dir);
    let Some(mut path) = ops_logs::latest(&dir) else {
        bail!(
            "no logs in {} yet: the service writes them there (`local-agent service install`); \
             a `serve` started in a terminal logs to the terminal",
            dir.display()
        );
    };
    let (text, mut offset) = ops_logs::tail(&path, lines).with_context(|| format!("cannot read {}", path.display()))?;
    protocol::out!("{text}");
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        // Past midnight the service writes to the next day's file.
        if let Some(newer) = ops_logs::latest(&dir).filter(|newer| *newer != path) {
            (path, offset) = (newer, 0);
        }
        let (text, end) =
            ops_logs::read_from(&path, offset).with_context(|| format!("cannot read {}", path.display()))?;
        if !text.is_empty() {
            protocol::out!("{text}");
        }
        offset = end;
    }
}

fn status(config: &AgentConfig, overrides: &Overrides) -> Result<()> {
    let present = |path: &Path| {
        if path.exists() { paint(style::GOOD, "ok") } else { paint(style::BAD, "MISSING (run `local-agent setup`)") }
    };
    let runtime = &config.embedder.runtime_library;
    let model = config.embedder.model_dir.join("model.onnx");
    protocol::outln!("data dir:      {}", config.data_dir.display());
    match overrides.config_file() {
        Some(path) => protocol::outln!("config:        {}", path.display()),
        None => protocol::outln!("config:        none, the defaults (`local-agent init` writes one)"),
    }
    protocol::outln!("ONNX Runtime:  {} [{}]", runtime.display(), present(runtime));
    protocol::outln!("model:         {} [{}]", config.embedder.model_dir.display(), present(&model));
    // Where a running server really listens (`--listen` may have moved it), else the setting.
    let listen = running::find(&config.data_dir).map_or(config.listen, |server| server.address);
    protocol::outln!("HTTP API:      {listen}{}", if config.api_key.is_some() { " (API key required)" } else { "" });
    // The running agent, if there is one: its health and its link to the cloud (connected,
    // refused, …), as `/stats` reports them.
    let running = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(client::report(listen, config.api_key.as_ref()));
    match running {
        Ok(report) => client::describe(&report, now()).iter().for_each(|line| protocol::outln!("{line}")),
        Err(error) => protocol::outln!("agent:         not running ({error})"),
    }
    status::describe_index(&config.data_dir).iter().for_each(|line| protocol::outln!("{line}"));
    Ok(())
}

fn tags(config: &AgentConfig, json: bool) -> Result<()> {
    let tags = status::tags(&config.data_dir)?;
    if json {
        protocol::outln!("{}", serde_json::to_string_pretty(&tags)?);
    } else if tags.is_empty() {
        protocol::outln!("No tags: no indexed note has any (tags come from front matter or a Notion Tags property).");
    } else {
        // The count first: tags in Chinese are twice as wide as their characters.
        tags.iter().for_each(|tag| protocol::outln!("{:>10}  {}", output::count(tag.documents, "note"), tag.tag));
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |now| now.as_secs())
}

fn service(config: &AgentConfig, overrides: &Overrides, action: ServiceAction, no_manager: bool) -> Result<()> {
    let absolute =
        |path: &Path| std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()));
    let spec = ServiceSpec {
        exe: std::env::current_exe().context("cannot find the path of this program")?,
        data_dir: absolute(&config.data_dir)?,
        config: overrides.config_file().map(|path| absolute(&path)).transpose()?,
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
    notes.iter().for_each(|note| protocol::outln!("{note}"));
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn service_status(service: &Service, config: &AgentConfig) -> Result<()> {
    let (state, note) = service.state()?;
    if let Some(note) = note {
        protocol::outln!("{note}");
    }
    let listen = running::find(&config.data_dir).map_or(config.listen, |server| server.address);
    let running = matches!(state, RunState::Running(_));
    let shown = match state {
        RunState::Running(Some(pid)) => format!("running (pid {pid})"),
        RunState::Running(None) => "running".into(),
        RunState::Stopped(detail) => format!("not running: {detail}"),
    };
    protocol::outln!("service:      {shown} — {}", service.describe_backend());
    protocol::outln!("logs:         {}", service.spec.log_dir().display());
    match client::report(listen, config.api_key.as_ref()).await {
        Ok(report) => {
            protocol::outln!("HTTP API:     http://{}", client::loopback_address(listen));
            client::describe(&report, now()).iter().for_each(|line| protocol::outln!("{line}"));
        }
        Err(error) => protocol::outln!("HTTP API:     {error}"),
    }
    protocol::outln!("Notion sync:  {}", status::describe_last_sync(&config.data_dir));
    if !running {
        // As `systemctl status` does, so scripts can tell.
        std::process::exit(3);
    }
    Ok(())
}

fn setup(
    overrides: &Overrides,
    model: Option<ModelChoice>,
    runtime: Option<PathBuf>,
    keep_downloads: bool,
) -> Result<()> {
    // Without --model, the model the configuration asks for (if there is a readable one).
    let model = model.unwrap_or_else(|| {
        AgentConfig::load(overrides)
            .map_or(ModelChoice::Default, |config| ModelChoice::for_model_dir(&config.embedder.model_dir))
    });
    let plan = SetupPlan { runtime_dir: runtime.unwrap_or_else(config::default_runtime_dir), model, keep_downloads };
    setup::install(&plan)?;
    let model_id = setup::check(&plan).context("the runtime was installed but does not run")?;
    protocol::outln!("Runtime ready: {} ({model_id}) in {}", model.folder(), plan.runtime_dir.display());
    if plan.runtime_dir != config::default_runtime_dir() {
        protocol::outln!(
            "The agent looks elsewhere by default: export NOTION_LLM_RUNTIME={} (and put it in the service's environment).",
            plan.runtime_dir.display()
        );
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
        protocol::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        protocol::out!("{}", report.to_text());
    }
    if !report.ok {
        std::process::exit(1);
    }
    Ok(())
}
