//! `local-agent init`: the first configuration, written as a commented `config.toml` that a person
//! can read and edit later, from answers the command line gathered (flags, the environment for
//! secrets, or prompts).
//!
//! The file holds the Notion and cloud tokens, so it is created private to its owner (mode 0600)
//! beside the index, and it is checked exactly as the agent will read it before it replaces
//! anything: an init that would leave a configuration the agent refuses writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{self, AgentConfig, Overrides, Secret};
use crate::error::{Error, Result};
use crate::ops::setup::ModelChoice;

/// What the configuration says.
#[derive(Debug, Clone)]
pub struct InitAnswers {
    /// Where indexes and caches live; written only when the file is not in it (the agent finds
    /// `<data dir>/config.toml` by itself).
    pub data_dir: PathBuf,
    /// Folders of notes, absolute.
    pub folders: Vec<PathBuf>,
    /// The embedding model.
    pub model: ModelChoice,
    /// Notion knowledge databases (ids).
    pub notion_databases: Vec<String>,
    /// The Notion integration's token.
    pub notion_token: Option<Secret>,
    /// The cloud's WebSocket URL.
    pub cloud_url: Option<String>,
    /// The agent token the cloud checks.
    pub cloud_token: Option<Secret>,
}

/// A TOML string literal.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn quoted_list<T: AsRef<str>>(items: &[T]) -> String {
    format!("[{}]", items.iter().map(|item| quoted(item.as_ref())).collect::<Vec<_>>().join(", "))
}

/// The file's text: every section present, what was not answered left as a commented example.
pub fn render(answers: &InitAnswers, config_path: &Path) -> String {
    let mut text = String::from(
        "# The local agent's configuration, written by `local-agent init`. Edit it freely: the agent\n\
         # reads it at start (`local-agent service restart` after a change) and refuses unknown keys.\n\
         # The environment wins over this file (NOTION_API_KEY, CLOUD_URL, …; README lists them all),\n\
         # and `local-agent doctor` checks every setting. It holds secrets: keep it private (mode 0600).\n\n",
    );
    if config_path.parent() == Some(answers.data_dir.as_path()) {
        text += &format!(
            "# Indexes and caches live beside this file.\n# data_dir = {}\n\n",
            quoted(&answers.data_dir.to_string_lossy())
        );
    } else {
        text += &format!(
            "# Where indexes and caches live.\ndata_dir = {}\n\n",
            quoted(&answers.data_dir.to_string_lossy())
        );
    }
    text += "# Folders of Markdown and text notes: `local-agent index` indexes them and `serve` watches them.\n";
    let folders: Vec<String> = answers.folders.iter().map(|folder| folder.to_string_lossy().into_owned()).collect();
    if folders.is_empty() {
        text += "# folders = [\"~/notes\"]\n\n";
    } else {
        text += &format!("folders = {}\n\n", quoted_list(&folders));
    }
    text += "# The embedding model: \"default\" (English, the fastest) or \"multilingual\" (100 languages,\n\
             # Chinese among them; `local-agent setup --model multilingual` installs it). Changing it\n\
             # rebuilds the index.\n";
    text += &format!("model = {}\n\n", quoted(answers.model.name()));
    text += &format!(
        "[server]\n\
         # The HTTP API (/health, /search, /context/build, /stats). It answers this machine only;\n\
         # listening beyond it needs an api_key of 8 characters or more.\n\
         listen = {}\n\
         # api_key = \"…\"\n\n",
        quoted(config::DEFAULT_LISTEN)
    );
    text += "[notion]\n# Notion knowledge databases to index (`local-agent sync`; `serve` syncs every 5 minutes),\n\
             # with an internal integration's token that the databases are shared with.\n";
    if answers.notion_databases.is_empty() {
        text += "# databases = [\"<database id or link>\"]\n";
    } else {
        text += &format!("databases = {}\n", quoted_list(&answers.notion_databases));
    }
    match &answers.notion_token {
        Some(token) => text += &format!("token = {}\n\n", quoted(token.expose())),
        None => text += "# token = \"ntn_…\"\n\n",
    }
    text += "[cloud]\n# The cloud's WebSocket endpoint: the agent dials out to it, so this machine needs no public\n\
             # address. The token is the AGENT_TOKEN the cloud was given.\n";
    match &answers.cloud_url {
        Some(url) => text += &format!("url = {}\n", quoted(url)),
        None => text += "# url = \"wss://…\"\n",
    }
    match &answers.cloud_token {
        Some(token) => text += &format!("token = {}\n", quoted(token.expose())),
        None => text += "# token = \"…\"\n",
    }
    text
}

/// Writes the configuration to `path` after checking it as the agent will read it. Refuses to
/// replace an existing file unless `force`; the file is private to its owner from its first byte.
pub fn write(path: &Path, answers: &InitAnswers, force: bool) -> Result<AgentConfig> {
    let fail = |message: String| Error::Config { path: path.to_owned(), message };
    if path.exists() && !force {
        return Err(fail("it exists already; edit it, or run `local-agent init --force` to replace it".into()));
    }
    let folder = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    protocol::private_fs::create_private_dir(folder)
        .map_err(|error| fail(format!("cannot create {}: {error}", folder.display())))?;
    let mut draft = tempfile::Builder::new()
        .prefix(".config.toml.")
        .tempfile_in(folder)
        .map_err(|error| fail(format!("cannot write in {}: {error}", folder.display())))?;
    // tempfile creates the file with mode 0600; the secrets never sit in a readable file.
    draft
        .write_all(render(answers, path).as_bytes())
        .and_then(|()| draft.as_file().sync_all())
        .map_err(|error| fail(format!("cannot write it: {error}")))?;
    let checked = AgentConfig::load(&Overrides {
        data_dir: Some(answers.data_dir.clone()),
        config: Some(draft.path().to_owned()),
    })
    .map_err(|error| match error {
        Error::Config { message, .. } => fail(format!("not written: {message}")),
        other => other,
    })?;
    draft.persist(path).map_err(|error| fail(format!("cannot put it in place: {}", error.error)))?;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(data_dir: &Path) -> InitAnswers {
        InitAnswers {
            data_dir: data_dir.to_owned(),
            folders: vec![PathBuf::from("/home/me/notes"), PathBuf::from("/home/me/笔记 \"work\"")],
            model: ModelChoice::Multilingual,
            notion_databases: vec!["1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809".into()],
            notion_token: Some(Secret::new("ntn_secret\"quote")),
            cloud_url: Some("wss://abc.execute-api.eu-west-1.amazonaws.com/prod".into()),
            cloud_token: Some(Secret::new("agent-token-123")),
        }
    }

    #[test]
    fn what_is_written_is_what_the_agent_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let config = write(&path, &answers(dir.path()), false).unwrap();
        assert_eq!(config.folders[1], Path::new("/home/me/笔记 \"work\""));
        assert_eq!(config.embedder.model_dir.file_name().unwrap(), config::MULTILINGUAL_MODEL);
        let notion = config.notion.unwrap();
        assert_eq!(notion.token.expose(), "ntn_secret\"quote");
        assert_eq!(config.cloud.token.unwrap().expose(), "agent-token-123");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# data_dir = "), "the data dir is implied by where the file is: {text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn nothing_answered_is_a_valid_file_of_commented_examples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elsewhere/agent.toml");
        let empty = InitAnswers {
            data_dir: dir.path().join("data"),
            folders: vec![],
            model: ModelChoice::Default,
            notion_databases: vec![],
            notion_token: None,
            cloud_url: None,
            cloud_token: None,
        };
        let config = write(&path, &empty, false).unwrap();
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert!(config.notion.is_none() && config.cloud.url.is_none());
    }

    #[test]
    fn an_existing_file_or_an_invalid_answer_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "folders = []\n").unwrap();
        let error = write(&path, &answers(dir.path()), false).unwrap_err().to_string();
        assert!(error.contains("exists already") && error.contains("--force"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "folders = []\n");

        let insecure = InitAnswers { cloud_url: Some("ws://cloud.example.com/agent".into()), ..answers(dir.path()) };
        let error = write(&path, &insecure, true).unwrap_err().to_string();
        assert!(error.contains("not written") && error.contains("CLOUD_URL"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "folders = []\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no draft is left behind");

        write(&path, &answers(dir.path()), true).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("agent-token-123"));
    }
}
