//! `local-agent init`: gathers the answers (flags, the environment, prompts in a terminal) and
//! has the library write them (`local_agent::ops::init`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use local_agent::config::{self, Overrides, Secret};
use local_agent::ops::init::{self, InitAnswers};
use local_agent::ops::setup::ModelChoice;

/// What the command line said.
pub struct InitFlags {
    pub folders: Vec<PathBuf>,
    pub notion_databases: Vec<String>,
    pub cloud_url: Option<String>,
    pub model: Option<ModelChoice>,
    pub no_input: bool,
    pub force: bool,
}

/// Asks on the terminal: prompts go to stderr, so stdout stays the command's output.
struct Terminal {
    interactive: bool,
}

impl Terminal {
    fn ask(&self, question: &str) -> Result<String> {
        eprint!("{question}: ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the answer")?;
        Ok(line.trim().to_owned())
    }

    fn ask_secret(&self, question: &str) -> Result<Option<Secret>> {
        let answer = rpassword::prompt_password(format!("{question} (typing is not shown): "))
            .context("cannot read the answer")?;
        let answer = answer.trim();
        Ok((!answer.is_empty()).then(|| Secret::new(answer.to_owned())))
    }
}

fn expand_home(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(text),
    }
}

fn folder(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if !absolute.is_dir() {
        bail!("--folder {}: not a folder", path.display());
    }
    Ok(absolute)
}

fn database(link: &str) -> Result<String> {
    notion::link::page_id(link)
        .with_context(|| format!("--notion-database {link:?} is neither a Notion database link nor an id"))
}

/// A secret from the environment, else asked for when there is something to use it for.
fn secret(terminal: &Terminal, variable: &str, needed: bool, question: &str) -> Result<Option<Secret>> {
    if let Some(value) = std::env::var(variable).ok().filter(|value| !value.trim().is_empty()) {
        return Ok(Some(Secret::new(value.trim().to_owned())));
    }
    if needed && terminal.interactive { terminal.ask_secret(question) } else { Ok(None) }
}

pub fn run(overrides: &Overrides, flags: InitFlags) -> Result<()> {
    let terminal = Terminal { interactive: !flags.no_input && std::io::stdin().is_terminal() };
    let data_dir = overrides
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("DATA_DIR").filter(|dir| !dir.is_empty()).map(PathBuf::from))
        .unwrap_or_else(config::default_data_dir);
    let data_dir = std::path::absolute(&data_dir).with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let path = overrides.config.clone().unwrap_or_else(|| data_dir.join("config.toml"));
    if path.exists() && !flags.force {
        bail!("{} exists already; edit it, or run `local-agent init --force` to replace it", path.display());
    }
    if terminal.interactive {
        eprintln!("Writing {}. Press Enter to skip a question.", path.display());
    }

    let mut folders = flags.folders.iter().map(|path| folder(path)).collect::<Result<Vec<_>>>()?;
    if folders.is_empty() && terminal.interactive {
        let answer = terminal.ask("Folders of notes to index (comma-separated)")?;
        for text in answer.split(',').map(str::trim).filter(|text| !text.is_empty()) {
            folders.push(folder(&expand_home(text))?);
        }
    }
    let mut notion_databases = flags.notion_databases.iter().map(|link| database(link)).collect::<Result<Vec<_>>>()?;
    if notion_databases.is_empty() && terminal.interactive {
        let answer = terminal.ask("Notion knowledge database to index (its link or id)")?;
        if !answer.is_empty() {
            notion_databases.push(database(&answer)?);
        }
    }
    let notion_token = secret(&terminal, "NOTION_API_KEY", !notion_databases.is_empty(), "Notion integration token")?;
    let mut cloud_url = flags.cloud_url.clone();
    if cloud_url.is_none() && terminal.interactive {
        cloud_url = Some(terminal.ask("Cloud WebSocket URL (wss://…)")?).filter(|url| !url.is_empty());
    }
    let cloud_token = secret(&terminal, "AGENT_TOKEN", cloud_url.is_some(), "Agent token (the cloud's AGENT_TOKEN)")?;

    let answers = InitAnswers {
        data_dir,
        folders,
        model: flags.model.unwrap_or(ModelChoice::Default),
        notion_databases,
        notion_token,
        cloud_url,
        cloud_token,
    };
    let config = init::write(&path, &answers, flags.force)?;
    protocol::outln!("Wrote {} (readable by you only).", path.display());
    let mut next = Vec::new();
    if !config.embedder.model_dir.join("model.onnx").is_file() {
        next.push(format!("install the model: local-agent setup --model {}", answers.model.name()));
    }
    if !config.folders.is_empty() {
        next.push("index your folders: local-agent index".to_owned());
    }
    if config.notion.is_some() {
        next.push("index your Notion database: local-agent sync".to_owned());
    }
    next.push("keep the agent running: local-agent service install".to_owned());
    next.push("check everything: local-agent doctor".to_owned());
    protocol::outln!("Next:");
    next.iter().for_each(|step| protocol::outln!("  {step}"));
    Ok(())
}
