//! `cloud-fn`: answer Notion questions — as a self-hosted server, or one run at a time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cloud_fn::app::SelfHosted;
use cloud_fn::config::{CloudConfig, Source};
use cloud_fn::doctor::{self, Verdict};
use cloud_fn::pipeline::Outcome;
use cloud_fn::questions_database::{self, Severity};
use cloud_fn::server::ApiAccess;
use cloud_fn::tunnel::tls::{self, TlsListener};
use cloud_fn::{app, templates};
use protocol::console::{paint, style};
use tracing_subscriber::EnvFilter;

/// Answers questions from a Notion database with context from your own notes.
#[derive(Parser)]
#[command(name = "cloud-fn", version, about)]
struct Cli {
    /// A TOML file of settings (`NOTION_DATABASE_ID = "…"`); the environment wins over it.
    #[arg(long, global = true, env = "CLOUD_FN_CONFIG")]
    config: Option<PathBuf>,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always` or `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = clap::ColorChoice::Auto)]
    color: clap::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a completion script for your shell, e.g. `cloud-fn completions bash >
    /// ~/.local/share/bash-completion/completions/cloud-fn`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Serve the HTTP API and answer new questions every poll interval.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Seconds between polls [default: POLL_INTERVAL, 120].
        #[arg(long)]
        poll_interval: Option<f64>,
        /// Serve the API to anyone who can reach it, without CLOUD_API_KEY (a local demo only).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Answer the pending questions once and exit.
    ProcessOnce,
    /// Sync prompt templates with the Notion templates database.
    Templates {
        #[command(subcommand)]
        direction: SyncDirection,
    },
    /// Create or check the Notion questions database.
    Notion {
        #[command(subcommand)]
        action: NotionAction,
    },
    /// Check everything an answer needs: Notion and the database, OpenRouter and its credits,
    /// the clock, and from the running server its store, webhook and agents; exits 1 if a
    /// check fails.
    Doctor {
        /// The running server: `serve`'s address, or the function URL on AWS.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NotionAction {
    /// Create a questions database under a page the integration can edit, and print its id.
    Init {
        /// The parent page: its link (https://www.notion.so/…) or id.
        #[arg(long)]
        parent: String,
        /// The new database's title.
        #[arg(long, default_value = "Questions")]
        title: String,
    },
    /// Check NOTION_DATABASE_ID's properties and say exactly what to add; exits 1 if questions
    /// cannot be answered as it is.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SyncDirection {
    /// Copy templates from Notion into the store.
    SyncFromNotion,
    /// Write the active templates to Notion.
    SyncToNotion,
}

fn main() {
    let cli = Cli::parse();
    protocol::console::use_colour(match cli.color {
        clap::ColorChoice::Always => Some(true),
        clap::ColorChoice::Never => Some(false),
        clap::ColorChoice::Auto => None,
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(protocol::console::stderr_shows_colour())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run(cli)) {
        protocol::errln!("{} {}", paint(style::BAD, "error:"), protocol::console::error_chain(error.as_ref()));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "cloud-fn", &mut script);
        protocol::out!("{}", String::from_utf8_lossy(&script));
        return Ok(());
    }
    let config = CloudConfig::load(&Source::new(cli.config.as_deref())?)?;
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    match cli.command {
        // Printed before the configuration was read.
        Command::Completions { .. } => Ok(()),
        Command::Serve { listen, poll_interval, insecure_no_auth } => {
            let access = match (config.cloud_api_key.clone(), insecure_no_auth) {
                (Some(key), _) => ApiAccess::Key(key),
                (None, true) => {
                    tracing::warn!(
                        %listen,
                        "--insecure-no-auth: the API is open to ANYONE who can reach {listen}; use it for a local demo only"
                    );
                    ApiAccess::Open
                }
                (None, false) => {
                    let mut missing = config.missing_for_notion();
                    missing.push("CLOUD_API_KEY");
                    bail!(
                        "CLOUD_API_KEY must be set to serve: every endpoint but /health and the webhook requires it \
                         (for a local demo only, --insecure-no-auth serves without it); not set: {}",
                        missing.join(", ")
                    )
                }
            };
            let interval = match poll_interval {
                Some(seconds) if !(seconds.is_finite() && seconds >= 1.0) => {
                    bail!("--poll-interval must be at least 1 second (got {seconds})")
                }
                Some(seconds) => Duration::from_secs_f64(seconds),
                None => config.poll_interval,
            };
            if config.agent_tokens.is_empty() {
                tracing::warn!("AGENT_TOKEN is not set: no agent can connect; answers use cached or template context");
            }
            let service = SelfHosted::from_config(&config, access).await?;
            tokio::spawn(log_database_check(config.clone()));
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            let address = listener.local_addr()?;
            match &config.tls {
                Some((cert, key)) => {
                    let listener = TlsListener::new(listener, tls::server_config(cert, key)?)?;
                    protocol::outln!("listening on https://{address}; agents connect to wss://{address}/agent");
                    service.serve(listener, interval, shutdown_signal()).await?;
                }
                None => {
                    protocol::outln!("listening on http://{address}; agents connect to ws://{address}/agent");
                    service.serve(listener, interval, shutdown_signal()).await?;
                }
            }
            Ok(())
        }
        Command::ProcessOnce => {
            let pipeline = app::pipeline(&config, None).await?;
            let report = pipeline.process_once().await?;
            protocol::outln!("{}", serde_json::to_string_pretty(&report)?);
            // A cron job or a script should see a question that was not answered.
            let unanswered: Vec<String> = report
                .pages
                .iter()
                .filter_map(|(page, outcome)| match outcome {
                    Outcome::Failed { reason, .. } => Some(format!("{page} failed: {reason}")),
                    Outcome::WillRetry { error, .. } => Some(format!("{page} will be retried: {error}")),
                    Outcome::Answered { .. } | Outcome::Skipped { .. } => None,
                })
                .collect();
            match unanswered.len() {
                0 => Ok(()),
                1 => bail!("1 question was not answered: {}", unanswered[0]),
                count => bail!("{count} questions were not answered:\n  {}", unanswered.join("\n  ")),
            }
        }
        Command::Templates { direction } => {
            let database = config
                .notion_templates_database_id
                .clone()
                .context("NOTION_TEMPLATES_DATABASE_ID (the templates database) is not set")?;
            let notion = app::notion_client(&config)?;
            let store = app::store(&config).await?;
            let source = notion.data_source_id(&database).await?;
            let count = match direction {
                SyncDirection::SyncFromNotion => templates::sync_from_notion(&notion, &source, store.as_ref()).await?,
                SyncDirection::SyncToNotion => templates::sync_to_notion(&notion, &source, store.as_ref()).await?,
            };
            protocol::outln!("{} synced", protocol::console::count(count as u64, "template"));
            Ok(())
        }
        Command::Notion { action: NotionAction::Init { parent, title } } => {
            let parent_id = notion::link::page_id(&parent)
                .with_context(|| format!("--parent {parent:?} is not a Notion page link or id (32 hex digits)"))?;
            let notion = app::notion_client(&config)?;
            let vocabulary = &config.pipeline.vocabulary;
            let id = questions_database::create(&notion, &parent_id, &title, vocabulary).await.with_context(|| {
                format!("cannot create the database under page {parent_id} (is the page shared with the integration?)")
            })?;
            protocol::outln!("created the questions database \"{title}\": NOTION_DATABASE_ID={id}");
            protocol::outln!(
                "its \"{}\" is a select (Notion's API cannot give a status property options): set a question to \"{}\" to have it answered",
                vocabulary.status_property,
                vocabulary.pending
            );
            Ok(())
        }
        Command::Doctor { server, json } => {
            let report = doctor::run(&config, &server).await;
            if json {
                protocol::outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for check in &report.checks {
                    let label = match check.verdict {
                        Verdict::Ok => paint(style::GOOD, "ok  "),
                        Verdict::Warn => paint(style::WARN, "warn"),
                        Verdict::Fail => paint(style::BAD, "FAIL"),
                    };
                    protocol::outln!("{label} {:<10} {}", check.name, check.detail);
                }
            }
            if !report.is_healthy() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Notion { action: NotionAction::Check { json } } => {
            let (_, database) = config.notion()?;
            let notion = app::notion_client(&config)?;
            let report = questions_database::check(&notion, database, &config.pipeline.vocabulary)
                .await
                .with_context(|| format!("cannot read the questions database {database}"))?;
            if json {
                protocol::outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                protocol::outln!("questions database \"{}\" ({})", report.title, report.database_id);
                for finding in &report.findings {
                    let label = match finding.severity {
                        Severity::Problem => paint(style::BAD, "problem"),
                        Severity::Advice => paint(style::WARN, "advice"),
                    };
                    protocol::outln!("  {label}: {}", finding.message);
                }
                if report.findings.is_empty() {
                    protocol::outln!("  {}: title, status with its five options, tags", paint(style::GOOD, "ok"));
                }
            }
            if !report.is_usable() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// `serve` checks the questions database once at start and logs what is wrong, without
/// holding up the start (Notion may be slow or down; the poll reports that itself).
async fn log_database_check(config: CloudConfig) {
    let Ok((_, database)) = config.notion() else { return };
    let Ok(notion) = app::notion_client(&config) else { return };
    match questions_database::check(&notion, database, &config.pipeline.vocabulary).await {
        Ok(report) => {
            for finding in &report.findings {
                match finding.severity {
                    Severity::Problem => tracing::error!(database, "questions database: {}", finding.message),
                    Severity::Advice => tracing::warn!(database, "questions database: {}", finding.message),
                }
            }
        }
        Err(error) => tracing::warn!(database, %error, "could not check the questions database"),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
