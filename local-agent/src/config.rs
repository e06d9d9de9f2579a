//! The agent's configuration: defaults, then `config.toml`, then environment variables (the
//! original system's names where it had them), then command-line flags.
//!
//! ```toml
//! folders = ["~/notes"]              # what `local-agent index` indexes with no arguments
//! [model]
//! name = "multilingual"              # or "default"; `model = "multilingual"` at the top says the same
//! dir = "/opt/models/bge-small-zh"  # MODEL_DIR; any model folder, instead of a name
//! ort_dylib_path = "/opt/ort/libonnxruntime.so.1.31.1"   # ORT_DYLIB_PATH
//! threads = 2
//! [index.chunking]                  # by default as long as the model reads (up to 512 tokens)
//! max_tokens = 256
//! overlap_tokens = 32
//! [search]
//! semantic_weight = 1.0
//! [server]
//! listen = "127.0.0.1:8001"
//! api_key = "…"                      # LOCAL_RAG_API_KEY; required to listen beyond loopback
//! allowed_hosts = ["notes.lan"]      # Host names besides this machine's (reverse proxies)
//! max_concurrent_requests = 4        # retrieval requests at once; more get 503 + Retry-After
//! [notion]                           # knowledge databases to index
//! token = "ntn_…"                    # NOTION_API_KEY
//! databases = ["…"]                  # NOTION_KNOWLEDGE_DATABASE_ID (comma-separated)
//! tags_property = "Tags"
//! sync_interval_secs = 300           # how often `serve` syncs
//! full_sync_interval_secs = 3600     # how often a sync lists every page (to notice deletions)
//! [cloud]
//! url = "wss://…"                    # CLOUD_URL; ws:// only to this machine unless allow_insecure
//! ```
//!
//! `ALLOW_INSECURE_HTTP=true` (or `allow_insecure = true` under `[cloud]` / `[notion]`) allows
//! `ws://` and `http://` to other machines, where something else encrypts the path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiSettings;
use crate::embed::EmbedderOptions;
use crate::error::{Error, Result};
use crate::index::IndexSettings;
use crate::index::chunk::ChunkSettings;
use crate::index::vectors::VectorSettings;
use crate::search::SearchSettings;
use crate::sources::notion_sync::NotionSettings;

pub use protocol::Secret;
use protocol::cleartext::{Transport, check_url};

/// `config.toml` as written; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// Where indexes and caches live.
    pub data_dir: Option<PathBuf>,
    /// Folders indexed when `local-agent index` gets none.
    pub folders: Vec<PathBuf>,
    /// Embedding model and runtime: a `[model]` table, or only the model's name
    /// (`model = "multilingual"`).
    #[serde(deserialize_with = "ModelSection::from_name_or_table")]
    pub model: ModelSection,
    /// Index building.
    pub index: IndexSection,
    /// Retrieval.
    pub search: SearchSettings,
    /// HTTP API.
    pub server: ServerSection,
    /// The tunnel to the cloud.
    pub cloud: CloudSection,
    /// Notion knowledge databases.
    pub notion: NotionSection,
}

/// `[notion]`: the knowledge databases to index.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotionSection {
    /// The integration token (`NOTION_API_KEY`).
    pub token: Option<Secret>,
    /// Database ids (`NOTION_KNOWLEDGE_DATABASE_ID`, comma-separated).
    pub databases: Vec<String>,
    /// The multi-select property holding tags (`Tags`).
    pub tags_property: Option<String>,
    /// API base URL (`NOTION_API_BASE_URL`).
    pub base_url: Option<String>,
    /// Requests per second (3).
    pub requests_per_second: Option<u32>,
    /// Seconds between syncs while serving (300).
    pub sync_interval_secs: Option<u64>,
    /// Seconds between full listings, which notice deleted pages (3600).
    pub full_sync_interval_secs: Option<u64>,
    /// Allow an `http://` base URL on another machine (the token would travel unencrypted).
    pub allow_insecure: Option<bool>,
}

/// `[model]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// A model `local-agent setup --model NAME` installs: `default` or `multilingual`.
    pub name: Option<String>,
    /// Model folder (`model.onnx` + `tokenizer.json`); wins over `name`.
    pub dir: Option<PathBuf>,
    /// ONNX Runtime shared library.
    pub ort_dylib_path: Option<PathBuf>,
    /// Threads per inference.
    pub threads: Option<usize>,
    /// Texts per inference batch when indexing.
    pub batch_size: Option<usize>,
}

impl ModelSection {
    /// `model = "multilingual"` is short for `[model] name = "multilingual"`.
    fn from_name_or_table<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct NameOrTable;
        impl<'de> serde::de::Visitor<'de> for NameOrTable {
            type Value = ModelSection;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a model name or a [model] table")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> std::result::Result<ModelSection, E> {
                Ok(ModelSection { name: Some(name.to_owned()), ..ModelSection::default() })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<ModelSection, A::Error> {
                ModelSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_any(NameOrTable)
    }
}

/// The models `local-agent setup --model NAME` installs: (name, folder under `<runtime>/models`).
pub const MODELS: [(&str, &str); 2] = [("default", DEFAULT_MODEL), ("multilingual", MULTILINGUAL_MODEL)];

/// The command that installs the model expected in `model_dir`: the multilingual model has a
/// flag of its own, so `model = "multilingual"` without it is told the right command.
pub fn setup_command(model_dir: &Path) -> &'static str {
    match model_dir.file_name().and_then(|name| name.to_str()) {
        Some(MULTILINGUAL_MODEL) => "`local-agent setup --model multilingual`",
        _ => "`local-agent setup`",
    }
}

/// The model folder a name stands for (the folder's own name is accepted too).
fn named_model(name: &str) -> Option<&'static str> {
    let name = name.trim();
    MODELS.iter().find(|(short, folder)| name.eq_ignore_ascii_case(short) || name == *folder).map(|(_, folder)| *folder)
}

/// `[index]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSection {
    /// Chunk sizes.
    pub chunking: Option<ChunkSettings>,
    /// HNSW parameters.
    pub vectors: Option<VectorSettings>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the HTTP API (loopback by default).
    pub listen: Option<SocketAddr>,
    /// Key required on the HTTP API.
    pub api_key: Option<Secret>,
    /// Host names the API answers to besides this machine's.
    pub allowed_hosts: Vec<String>,
    /// Retrieval requests computed at once (default: twice the cores).
    pub max_concurrent_requests: Option<usize>,
}

/// `[cloud]`: where the tunnel connects (`CLOUD_URL`, `AGENT_TOKEN`, `CLOUD_CA_FILE`, `AGENT_ID`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudSection {
    /// `wss://…` of the cloud's WebSocket endpoint; without it the agent stays local.
    pub url: Option<String>,
    /// The shared secret the cloud checks.
    pub token: Option<Secret>,
    /// A PEM file with the only CA to trust for the cloud (a self-hosted cloud's own CA).
    pub ca_file: Option<PathBuf>,
    /// Stable id of this agent (default: generated once and kept in the data dir).
    pub agent_id: Option<String>,
    /// Allow `ws://` to another machine (the agent token would travel unencrypted).
    pub allow_insecure: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where indexes and caches live.
    pub data_dir: PathBuf,
    /// Folders indexed when none are named.
    pub folders: Vec<PathBuf>,
    /// Runtime library, model folder, threads.
    pub embedder: EmbedderOptions,
    /// Index building.
    pub index: IndexSettings,
    /// Retrieval.
    pub search: SearchSettings,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Key required on the HTTP API (`LOCAL_RAG_API_KEY`), if any.
    pub api_key: Option<Secret>,
    /// How the HTTP API protects itself.
    pub api: ApiSettings,
    /// The tunnel to the cloud, if configured.
    pub cloud: CloudSection,
    /// Notion knowledge databases to sync, if configured.
    pub notion: Option<NotionSettings>,
}

/// Default address of the HTTP API: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8001";

/// Where the values came from, besides the config file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir` (or `DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// `--config` (or `LOCAL_AGENT_CONFIG`).
    pub config: Option<PathBuf>,
}

impl Overrides {
    /// The config file in use: `--config`, else `<data dir>/config.toml` if it exists. The
    /// service definitions pass it on, so the service reads the same file from wherever it
    /// starts.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let data_dir = self.data_dir.clone().or_else(|| env("DATA_DIR").map(PathBuf::from));
            let candidate = data_dir.unwrap_or_else(default_data_dir).join("config.toml");
            candidate.is_file().then_some(candidate)
        })
    }
}

/// Where the data lives when no one says: the OS data directory's `notion-llm`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("notion-llm")
}

/// Reads an environment variable; empty counts as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

impl AgentConfig {
    /// Resolves the configuration: flags > environment > config file > defaults.
    pub fn load(overrides: &Overrides) -> Result<Self> {
        let early_data_dir = overrides.data_dir.clone().or_else(|| env("DATA_DIR").map(PathBuf::from));
        let config_path = overrides.config_file();
        let file = match &config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| Error::Config {
                    path: path.clone(),
                    message: format!("cannot read it: {error}"),
                })?;
                toml::from_str::<ConfigFile>(&text)
                    .map_err(|error| Error::Config { path: path.clone(), message: error.to_string() })?
            }
            None => ConfigFile::default(),
        };
        let relative_to = config_path.as_deref().and_then(Path::parent).map(Path::to_owned);
        let resolve = |path: PathBuf| match &relative_to {
            Some(base) => base.join(expand_home(path)),
            None => expand_home(path),
        };

        let data_dir = early_data_dir.or_else(|| file.data_dir.clone().map(resolve)).unwrap_or_else(default_data_dir);
        let runtime = default_runtime_dir();
        let runtime_library = env("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .or_else(|| file.model.ort_dylib_path.clone().map(resolve))
            .unwrap_or_else(|| runtime_library_in(&runtime));
        let named_dir = match file.model.name.as_deref() {
            None => None,
            Some(name) => Some(runtime.join("models").join(named_model(name).ok_or_else(|| Error::Config {
                path: config_path.clone().unwrap_or_default(),
                message: format!(
                    "[model] name = {name:?} is not a model this agent knows: use {}, or set `dir` to a model folder",
                    MODELS.iter().map(|(short, _)| format!("{short:?}")).collect::<Vec<_>>().join(" or ")
                ),
            })?)),
        };
        let model_dir = env("MODEL_DIR")
            .map(PathBuf::from)
            .or_else(|| file.model.dir.clone().map(resolve))
            .or(named_dir)
            .unwrap_or_else(|| runtime.join("models").join(DEFAULT_MODEL));
        let threads =
            file.model.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).min(4));
        let listen = match env("LOCAL_AGENT_LISTEN") {
            Some(text) => text.parse().map_err(|error| Error::Config {
                path: "LOCAL_AGENT_LISTEN".into(),
                message: format!("{text:?} is not an address like 127.0.0.1:8001: {error}"),
            })?,
            None => file.server.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address")),
        };
        let api_key = env("LOCAL_RAG_API_KEY").map(Secret::new).or(file.server.api_key);
        let insecure = match env("ALLOW_INSECURE_HTTP") {
            None => None,
            Some(text) => Some(parse_flag(&text).ok_or_else(|| Error::Config {
                path: "ALLOW_INSECURE_HTTP".into(),
                message: format!("{text:?} is not true or false"),
            })?),
        };
        let cloud = CloudSection {
            url: env("CLOUD_URL").or(file.cloud.url),
            token: env("AGENT_TOKEN").map(Secret::new).or(file.cloud.token),
            ca_file: env("CLOUD_CA_FILE").map(PathBuf::from).or_else(|| file.cloud.ca_file.map(resolve)),
            agent_id: env("AGENT_ID").or(file.cloud.agent_id),
            allow_insecure: insecure.unwrap_or(file.cloud.allow_insecure),
        };
        let defaults = ApiSettings::default();
        let api = ApiSettings {
            allowed_hosts: file.server.allowed_hosts.clone(),
            max_concurrent_requests: file.server.max_concurrent_requests.unwrap_or(defaults.max_concurrent_requests),
            ..defaults
        };
        let notion_databases: Vec<String> = match env("NOTION_KNOWLEDGE_DATABASE_ID") {
            Some(list) => list.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect(),
            None => file.notion.databases.clone(),
        };
        let notion_token = env("NOTION_API_KEY").map(Secret::new).or(file.notion.token.clone());
        let notion = match (notion_token, notion_databases.is_empty()) {
            (Some(token), false) => Some(NotionSettings {
                token,
                databases: notion_databases,
                tags_property: file.notion.tags_property.clone().unwrap_or_else(|| "Tags".into()),
                base_url: env("NOTION_API_BASE_URL")
                    .or(file.notion.base_url.clone())
                    .unwrap_or_else(|| notion::client::DEFAULT_BASE_URL.into()),
                requests_per_second: file.notion.requests_per_second.unwrap_or(3),
                sync_interval: Duration::from_secs(file.notion.sync_interval_secs.unwrap_or(300)),
                full_sync_interval: Duration::from_secs(file.notion.full_sync_interval_secs.unwrap_or(3600)),
                settle_time: Duration::from_secs(120),
                allow_insecure: insecure.or(file.notion.allow_insecure).unwrap_or(false),
            }),
            (None, false) => {
                return Err(Error::Config {
                    path: config_path.clone().unwrap_or_else(|| "NOTION_KNOWLEDGE_DATABASE_ID".into()),
                    message: "a Notion knowledge database is named but NOTION_API_KEY (or [notion] token) is not set"
                        .into(),
                });
            }
            _ => None,
        };
        let config = Self {
            notion,
            data_dir,
            folders: file.folders.into_iter().map(resolve).collect(),
            embedder: EmbedderOptions { runtime_library, model_dir, threads },
            index: IndexSettings {
                chunking: file.index.chunking,
                vectors: file.index.vectors.unwrap_or_default(),
                batch_size: file.model.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
                rebuild: false,
            },
            search: file.search,
            listen,
            api_key,
            api,
            cloud,
        };
        config.validate(config_path.as_deref())?;
        Ok(config)
    }

    fn validate(&self, path: Option<&Path>) -> Result<()> {
        let fail =
            |message: String| Err(Error::Config { path: path.unwrap_or(Path::new("config")).to_owned(), message });
        if let Some(chunking) = self.index.chunking
            && (chunking.max_tokens < 32 || chunking.overlap_tokens >= chunking.max_tokens / 2)
        {
            return fail(format!(
                "index.chunking: max_tokens must be at least 32 and overlap_tokens under half of it (got {} and {})",
                chunking.max_tokens, chunking.overlap_tokens
            ));
        }
        let search = &self.search;
        if search.keyword_weight < 0.0
            || search.semantic_weight < 0.0
            || search.title_boost < 0.0
            || search.rrf_k <= 0.0
        {
            return fail("search: weights must be ≥ 0 and rrf_k > 0".into());
        }
        if search.candidates == 0 {
            return fail("search.candidates must be at least 1".into());
        }
        let vectors = self.index.vectors;
        if vectors.connectivity < 2 || vectors.expansion_add == 0 || vectors.expansion_search == 0 {
            return fail("index.vectors: connectivity ≥ 2 and expansions ≥ 1 are required".into());
        }
        if self.cloud.url.is_some() && self.cloud.token.is_none() {
            return fail("CLOUD_URL is set but AGENT_TOKEN is not: the cloud refuses agents without a token".into());
        }
        if self.api_key.as_ref().is_some_and(|key| key.expose().len() < 8) {
            return fail("the API key (LOCAL_RAG_API_KEY) must be at least 8 characters".into());
        }
        if let Some(url) = &self.cloud.url
            && let Err(error) = check_url(url, Transport::WebSocket, self.cloud.allow_insecure)
        {
            return fail(format!("CLOUD_URL: {error}"));
        }
        if self.embedder.threads == 0 || self.index.batch_size == 0 {
            return fail("model.threads and model.batch_size must be at least 1".into());
        }
        if self.api.max_concurrent_requests == 0 {
            return fail("server.max_concurrent_requests must be at least 1".into());
        }
        if let Some(notion) = &self.notion {
            if notion.sync_interval < Duration::from_secs(10) {
                return fail(format!(
                    "notion.sync_interval_secs must be at least 10 (got {})",
                    notion.sync_interval.as_secs()
                ));
            }
            if notion.full_sync_interval < notion.sync_interval {
                return fail("notion.full_sync_interval_secs must be at least notion.sync_interval_secs".into());
            }
            if notion.requests_per_second == 0 {
                return fail("notion.requests_per_second must be at least 1".into());
            }
            if let Err(error) = check_url(&notion.base_url, Transport::Http, notion.allow_insecure) {
                return fail(format!("NOTION_API_BASE_URL: {error}"));
            }
        }
        Ok(())
    }
}

/// Texts per inference batch. On a 2-core machine small batches embed fastest (measured:
/// 36 chunks/s at 1–2, 30 at 4, 27 at 16) and keep memory low: attention grows with the batch.
pub const DEFAULT_BATCH_SIZE: usize = 2;

/// The model `local-agent setup` installs by default.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
/// Folder of the multilingual model (`local-agent setup --model multilingual`): 100 languages,
/// Chinese among them, at about twice the default model's cost per text.
pub const MULTILINGUAL_MODEL: &str = "multilingual-e5-small";

#[cfg(target_os = "macos")]
const ORT_LIBRARY_NAME: &str = "libonnxruntime.1.31.1.dylib";
#[cfg(windows)]
const ORT_LIBRARY_NAME: &str = "onnxruntime.dll";
#[cfg(not(any(target_os = "macos", windows)))]
const ORT_LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// The ONNX Runtime library in a runtime folder, where `local-agent setup` puts it.
pub fn runtime_library_in(runtime: &Path) -> PathBuf {
    runtime.join("onnxruntime").join(ORT_LIBRARY_NAME)
}

/// Where the runtime is (and where `local-agent setup` puts it): `$NOTION_LLM_RUNTIME`, else the
/// nearest `.runtime/` above the executable or the working directory (a checkout, set up by
/// `scripts/setup.sh`), else `runtime` in the user's data directory (an installed agent).
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = env("NOTION_LLM_RUNTIME") {
        return PathBuf::from(dir);
    }
    let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(".runtime");
            if candidate.join("onnxruntime").is_dir() || candidate.join("models").is_dir() {
                return candidate;
            }
        }
    }
    default_data_dir().join("runtime")
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn expand_home(path: PathBuf) -> PathBuf {
    match (path.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "folders = [\"notes\"]\n[index.chunking]\nmax_tokens = 128\noverlap_tokens = 16\n[server]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let overrides = Overrides { data_dir: Some(dir.path().join("data")), config: Some(path.clone()) };
        let config = AgentConfig::load(&overrides).unwrap();
        assert_eq!(config.folders, [dir.path().join("notes")], "relative to the config file");
        assert_eq!(config.index.chunking.map(|c| c.max_tokens), Some(128));
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.data_dir, dir.path().join("data"));

        std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
        assert!(AgentConfig::load(&overrides).is_err());
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        let error = AgentConfig::load(&overrides).unwrap_err().to_string();
        assert!(error.contains("unknown_key"), "{error}");
        std::fs::write(&path, "[index.chunking]\nmax_tokens = 64\noverlap_tokens = 40\n").unwrap();
        assert!(AgentConfig::load(&overrides).is_err());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let overrides = Overrides { data_dir: Some(dir.path().join("data")), config: Some(path.clone()) };
        let notion = "[notion]\ntoken = \"secret_x\"\ndatabases = [\"db\"]\n";
        for (text, named) in [
            (format!("{notion}sync_interval_secs = 0\n"), "sync_interval_secs"),
            (format!("{notion}requests_per_second = 0\n"), "requests_per_second"),
            (format!("{notion}full_sync_interval_secs = 5\nsync_interval_secs = 60\n"), "full_sync_interval_secs"),
            (format!("{notion}base_url = \"http://notion.example\"\n"), "NOTION_API_BASE_URL"),
            ("[model]\nthreads = 0\n".into(), "threads"),
            ("[server]\nmax_concurrent_requests = 0\n".into(), "max_concurrent_requests"),
            ("[cloud]\nurl = \"ws://cloud.example/agent\"\ntoken = \"t\"\n".into(), "CLOUD_URL"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let error = AgentConfig::load(&overrides).expect_err(named).to_string();
            assert!(error.contains(named), "{named}: {error}");
        }
        let allowed = "[cloud]\nurl = \"ws://cloud.example/agent\"\ntoken = \"t\"\nallow_insecure = true\n";
        std::fs::write(&path, allowed).unwrap();
        assert!(AgentConfig::load(&overrides).is_ok(), "clear text when the user says so");
    }

    #[test]
    fn a_model_is_chosen_by_name_as_a_table_or_a_string() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let overrides = Overrides { data_dir: Some(dir.path().join("data")), config: Some(path.clone()) };
        let folder = |text: &str| {
            std::fs::write(&path, text).unwrap();
            AgentConfig::load(&overrides).map(|config| config.embedder.model_dir.file_name().unwrap().to_owned())
        };
        assert_eq!(folder("model = \"multilingual\"\n").unwrap(), MULTILINGUAL_MODEL);
        assert_eq!(folder("[model]\nname = \"multilingual\"\nthreads = 1\n").unwrap(), MULTILINGUAL_MODEL);
        assert_eq!(folder("[model]\nname = \"default\"\n").unwrap(), DEFAULT_MODEL);
        assert_eq!(folder("").unwrap(), DEFAULT_MODEL);
        assert_eq!(folder("[model]\nname = \"multilingual\"\ndir = \"mine\"\n").unwrap(), "mine", "a folder wins");
        assert_eq!(
            setup_command(Path::new("/r/models").join(MULTILINGUAL_MODEL).as_path()),
            "`local-agent setup --model multilingual`"
        );
        assert_eq!(setup_command(Path::new("/r/models").join(DEFAULT_MODEL).as_path()), "`local-agent setup`");
        let error = folder("model = \"bge-large-zh\"\n").unwrap_err().to_string();
        assert!(error.contains("bge-large-zh") && error.contains("\"multilingual\""), "{error}");
        let error = folder("[model]\nnmae = \"multilingual\"\n").unwrap_err().to_string();
        assert!(error.contains("nmae"), "typos in the table are still named: {error}");
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config.toml");
        let text = std::fs::read_to_string(example).expect("examples/config.toml exists");
        toml::from_str::<ConfigFile>(&text).unwrap();
    }
}
