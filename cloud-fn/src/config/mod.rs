//! Configuration by the names of the design's table: environment variables, then an optional
//! TOML file holding the same names (`NOTION_DATABASE_ID = "…"`), then defaults. [`names`] lists
//! every name read, and the original system's names that were retired.

pub mod names;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::context::LadderSettings;
use crate::pipeline::{PipelineSettings, Vocabulary};

pub use protocol::Secret;

/// A configuration problem; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Everything the cloud side can be told.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `NOTION_API_KEY`.
    pub notion_api_key: Option<Secret>,
    /// `NOTION_DATABASE_ID`: the questions database.
    pub notion_database_id: Option<String>,
    /// `NOTION_TEMPLATES_DATABASE_ID`.
    pub notion_templates_database_id: Option<String>,
    /// `NOTION_API_BASE_URL`.
    pub notion_base_url: String,
    /// `NOTION_VERSION`.
    pub notion_version: String,
    /// `NOTION_RATE_LIMIT`: requests per second (Notion allows about 3).
    pub notion_rate_limit: u32,
    /// `NOTION_RATE_BURST`: requests that may leave at once before pacing at the rate sets in
    /// ([`notion::DEFAULT_BURST`]).
    pub notion_rate_burst: u32,
    /// `OPENROUTER_API_KEY`; without it answers are extractive.
    pub openrouter_api_key: Option<Secret>,
    /// `OPENROUTER_BASE_URL`.
    pub openrouter_base_url: String,
    /// `LLM_MODELS`: primary, then fallbacks.
    pub llm_models: Vec<String>,
    /// `LLM_TIMEOUT` (seconds).
    pub llm_timeout: Duration,
    /// `CLOUD_API_KEY`: required on every HTTP endpoint but `/health` and the webhook.
    pub cloud_api_key: Option<Secret>,
    /// `NOTION_WEBHOOK_TOKEN`: pins the webhook's verification token (else the handshake's is
    /// stored).
    pub notion_webhook_token: Option<Secret>,
    /// `DYNAMODB_TABLE`: use DynamoDB; otherwise the embedded store.
    pub dynamodb_table: Option<String>,
    /// `DATA_DIR`: where the embedded store lives.
    pub data_dir: PathBuf,
    /// `ENABLE_FALLBACK`, `RAG_REQUEST_TIMEOUT` (or `FALLBACK_TIMEOUT`), `CONTEXT_CACHE_TTL`.
    pub ladder: LadderSettings,
    /// `LOCAL_RAG_ENABLED`: whether questions ask the agent at all (`false`: cached context and
    /// templates only, as if it were offline).
    pub local_rag_enabled: bool,
    /// Leases, attempts, concurrency, and the questions database's names.
    pub pipeline: PipelineSettings,
    /// `POLL_INTERVAL` (seconds) of the self-hosted timer.
    pub poll_interval: Duration,
    /// Tokens agents may present (`AGENT_TOKEN`, comma-separated); none = no agents accepted.
    pub agent_tokens: Vec<Secret>,
    /// How often agents must send a heartbeat (`AGENT_HEARTBEAT`, 30 s).
    pub agent_heartbeat: Duration,
    /// The API Gateway management endpoint agents are reached through on AWS
    /// (`WEBSOCKET_ENDPOINT`, `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
    pub websocket_endpoint: Option<String>,
    /// Certificate chain and private key (PEM) to serve TLS directly (`TLS_CERT_FILE`,
    /// `TLS_KEY_FILE`); without them `serve` speaks plain HTTP for a TLS-terminating proxy.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Timeouts and caps of `serve` (`HTTP_HEADER_TIMEOUT`, `HTTP_REQUEST_TIMEOUT`,
    /// `HTTP_MAX_CONNECTIONS`).
    pub http_limits: edge::Limits,
    /// `ALLOW_INSECURE_HTTP`: allow `http://` Notion and OpenRouter base URLs on other
    /// machines (keys would travel unencrypted); off by default.
    pub allow_insecure: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): the dimension of the function's metrics.
    pub lambda_function_name: Option<String>,
    /// `ALERT_WEBHOOK_URL`: where `serve` posts alerts (a secret: chat webhook URLs are
    /// credentials); none = no alerts.
    pub alert_webhook_url: Option<Secret>,
    /// When `serve` alerts: `ALERT_AGENT_OFFLINE` (300 s; 0 = never), `ALERT_ERRORS` (10),
    /// `ALERT_SLOW_ANSWER` (15 s), `ALERT_FALLBACK_ANSWERS` (3), `ALERT_QUIET` (600 s).
    pub alert_rules: crate::telemetry::alerts::Rules,
    /// Lines worth telling whoever starts the process: retired settings that are set, and
    /// what replaced them; settings that switch a part off.
    pub notices: Vec<String>,
}

/// Reads settings from the environment and an optional file of the same names.
#[derive(Clone)]
pub struct Source {
    file: BTreeMap<String, String>,
    environment: bool,
}

impl Source {
    /// The environment, backed by `file` if given.
    pub fn new(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
            for (key, value) in table {
                let key = key.to_uppercase();
                if !names::is_known(&key) && names::retired(&key).is_none() {
                    let hint =
                        names::closest(&key).map(|known| format!(" (did you mean {known}?)")).unwrap_or_default();
                    return Err(ConfigError(format!(
                        "{}: unknown setting `{key}`{hint}; README.md lists the settings",
                        path.display()
                    )));
                }
                let text = match value {
                    toml::Value::String(text) => text,
                    other => other.to_string(),
                };
                values.insert(key, text);
            }
        }
        Ok(Self { file: values, environment: true })
    }

    /// Only `values`, not the environment (tests, and callers that assemble settings).
    pub fn from_values<K: Into<String>, V: Into<String>>(values: impl IntoIterator<Item = (K, V)>) -> Self {
        let file = values.into_iter().map(|(key, value)| (key.into(), value.into())).collect();
        Self { file, environment: false }
    }

    /// The value of a setting, if it is set and not blank. `name` must be in [`names::SETTINGS`].
    pub fn value(&self, name: &str) -> Option<String> {
        debug_assert!(names::is_known(name), "{name} is read but not listed in config::names::SETTINGS");
        self.raw(name)
    }

    fn raw(&self, name: &str) -> Option<String> {
        self.environment
            .then(|| std::env::var(name).ok())
            .flatten()
            .or_else(|| self.file.get(name).cloned())
            .filter(|value| !value.trim().is_empty())
    }

    /// Sets a setting the environment does not give (e.g. a secret read from a parameter store).
    pub fn set(&mut self, name: &str, value: &str) {
        self.file.insert(name.to_owned(), value.to_owned());
    }

    fn get(&self, name: &str) -> Option<String> {
        self.value(name)
    }

    /// The retired settings that are set, each with what replaced it.
    fn retired_in_use(&self) -> Vec<String> {
        names::RETIRED
            .iter()
            .filter(|(name, _)| self.raw(name).is_some())
            .map(|(name, replaced_by)| format!("{name} is no longer used: {replaced_by}"))
            .collect()
    }

    fn seconds(&self, name: &str, default: f64) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(text) => parse_duration(&text)
                .ok_or_else(|| ConfigError(format!("{name}={text:?} is not a duration such as 5, 2.5s, 10m or 7d"))),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse().map_err(|_| ConfigError(format!("{name}={text:?} is not a number"))),
        }
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError(format!("{name}={v:?} is not true or false"))),
        }
    }
}

/// How long a question waits for the agent: `RAG_REQUEST_TIMEOUT`, the original system's name,
/// or `FALLBACK_TIMEOUT`, this project's first (5 s). Both set to different values is refused:
/// one of them would be silently ignored.
fn agent_deadline(source: &Source) -> Result<Duration, ConfigError> {
    let default = 5.0;
    let request = source.seconds("RAG_REQUEST_TIMEOUT", default)?;
    let fallback = source.seconds("FALLBACK_TIMEOUT", default)?;
    match (source.get("RAG_REQUEST_TIMEOUT"), source.get("FALLBACK_TIMEOUT")) {
        (Some(_), Some(_)) if request != fallback => Err(ConfigError(format!(
            "RAG_REQUEST_TIMEOUT ({request:?}) and FALLBACK_TIMEOUT ({fallback:?}) both set how long to wait for \
             the agent; set one"
        ))),
        (Some(_), _) => Ok(request),
        _ => Ok(fallback),
    }
}

/// The alert rules: the seed's thresholds unless set.
fn alert_rules(source: &Source) -> Result<crate::telemetry::alerts::Rules, ConfigError> {
    let defaults = crate::telemetry::alerts::Rules::default();
    let default_offline = defaults.agent_offline.map_or(0.0, |limit| limit.as_secs_f64());
    let offline = source.seconds("ALERT_AGENT_OFFLINE", default_offline)?;
    Ok(crate::telemetry::alerts::Rules {
        agent_offline: (!offline.is_zero()).then_some(offline),
        errors: source.number("ALERT_ERRORS", defaults.errors)?,
        slow_answer: source.seconds("ALERT_SLOW_ANSWER", defaults.slow_answer.as_secs_f64())?,
        degraded_answers: source.number("ALERT_FALLBACK_ANSWERS", defaults.degraded_answers)?,
        quiet: source.seconds("ALERT_QUIET", defaults.quiet.as_secs_f64())?,
    })
}

/// Seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

impl CloudConfig {
    /// Reads the configuration.
    pub fn load(source: &Source) -> Result<Self, ConfigError> {
        let defaults = PipelineSettings::default();
        let vocabulary = Vocabulary::default();
        let limits = edge::Limits::default();
        let names = |name: &str, default: &str| source.get(name).unwrap_or_else(|| default.to_owned());
        let llm_models: Vec<String> = names("LLM_MODELS", "openai/gpt-4o-mini")
            .split(',')
            .map(|model| model.trim().to_owned())
            .filter(|model| !model.is_empty())
            .collect();
        let mut config = Self {
            notion_api_key: source.get("NOTION_API_KEY").map(Secret::new),
            notion_database_id: source.get("NOTION_DATABASE_ID"),
            notion_templates_database_id: source.get("NOTION_TEMPLATES_DATABASE_ID"),
            notion_base_url: names("NOTION_API_BASE_URL", notion::client::DEFAULT_BASE_URL),
            notion_version: names("NOTION_VERSION", notion::client::DEFAULT_VERSION),
            notion_rate_limit: source.number("NOTION_RATE_LIMIT", 3)?,
            notion_rate_burst: source.number("NOTION_RATE_BURST", notion::DEFAULT_BURST)?,
            openrouter_api_key: source.get("OPENROUTER_API_KEY").map(Secret::new),
            openrouter_base_url: names("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"),
            llm_models,
            llm_timeout: source.seconds("LLM_TIMEOUT", 60.0)?,
            cloud_api_key: source.get("CLOUD_API_KEY").map(Secret::new),
            notion_webhook_token: source.get("NOTION_WEBHOOK_TOKEN").map(Secret::new),
            dynamodb_table: source.get("DYNAMODB_TABLE"),
            data_dir: source.get("DATA_DIR").map(PathBuf::from).unwrap_or_else(|| {
                dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("notion-llm").join("cloud")
            }),
            ladder: LadderSettings {
                enable_fallback: source.flag("ENABLE_FALLBACK", true)?,
                agent_timeout: agent_deadline(source)?,
                cache_ttl: source.seconds("CONTEXT_CACHE_TTL", 7.0 * 86400.0)?,
                max_results: source.number("RAG_MAX_RESULTS", 5)?,
            },
            local_rag_enabled: source.flag("LOCAL_RAG_ENABLED", true)?,
            pipeline: PipelineSettings {
                vocabulary: Vocabulary {
                    status_property: names("NOTION_STATUS_PROPERTY", &vocabulary.status_property),
                    tags_property: names("NOTION_TAGS_PROPERTY", &vocabulary.tags_property),
                    pending: names("STATUS_PENDING", &vocabulary.pending),
                    processing: names("STATUS_PROCESSING", &vocabulary.processing),
                    answered: names("STATUS_ANSWERED", &vocabulary.answered),
                    answered_offline: names("STATUS_ANSWERED_OFFLINE", &vocabulary.answered_offline),
                    failed: names("STATUS_FAILED", &vocabulary.failed),
                },
                lease_secs: source.seconds("JOB_LEASE", defaults.lease_secs as f64)?.as_secs() as i64,
                max_attempts: source.number("MAX_ATTEMPTS", defaults.max_attempts)?,
                retry_delay_secs: source.seconds("RETRY_DELAY", defaults.retry_delay_secs as f64)?.as_secs() as i64,
                concurrency: source.number("CONCURRENCY", defaults.concurrency)?,
                max_pages_per_run: source.number("MAX_PAGES_PER_RUN", defaults.max_pages_per_run)?,
                feedback_interval: source.seconds("FEEDBACK_INTERVAL", defaults.feedback_interval.as_secs_f64())?,
                comment_trigger: match source.get("COMMENT_TRIGGER") {
                    None => defaults.comment_trigger.clone(),
                    Some(off) if off.trim().is_empty() || off.trim().eq_ignore_ascii_case("off") => None,
                    Some(trigger) => Some(trigger.trim().to_owned()),
                },
            },
            poll_interval: source.seconds("POLL_INTERVAL", 120.0)?,
            agent_tokens: source
                .get("AGENT_TOKEN")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(Secret::new)
                .collect(),
            agent_heartbeat: source.seconds("AGENT_HEARTBEAT", 30.0)?,
            websocket_endpoint: source.get("WEBSOCKET_ENDPOINT"),
            tls: match (source.get("TLS_CERT_FILE"), source.get("TLS_KEY_FILE")) {
                (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                (None, None) => None,
                _ => return Err(ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together".into())),
            },
            http_limits: edge::Limits {
                header_read_timeout: source.seconds("HTTP_HEADER_TIMEOUT", limits.header_read_timeout.as_secs_f64())?,
                request_timeout: source.seconds("HTTP_REQUEST_TIMEOUT", 60.0)?,
                max_connections: source.number("HTTP_MAX_CONNECTIONS", limits.max_connections)?,
                ..limits
            },
            allow_insecure: source.flag("ALLOW_INSECURE_HTTP", false)?,
            lambda_function_name: source.get("AWS_LAMBDA_FUNCTION_NAME"),
            alert_webhook_url: source.get("ALERT_WEBHOOK_URL").map(Secret::new),
            alert_rules: alert_rules(source)?,
            notices: source.retired_in_use(),
        };
        config.validate()?;
        if !config.local_rag_enabled {
            // No agent is ever asked, so none being connected is no incident.
            config.alert_rules.agent_offline = None;
            config.notices.push(
                "LOCAL_RAG_ENABLED=false: no agent is asked; answers use cached context and templates \
                 (and say so)"
                    .into(),
            );
        }
        Ok(config)
    }

    /// Refuses values that cannot work, naming the setting: a zero `POLL_INTERVAL` would
    /// panic the timer, a lease shorter than a Notion request would let two runs write.
    fn validate(&self) -> Result<(), ConfigError> {
        let at_least = |name: &str, value: Duration, minimum: Duration| {
            if value < minimum {
                Err(ConfigError(format!("{name} must be at least {minimum:?} (got {value:?})")))
            } else {
                Ok(())
            }
        };
        let second = Duration::from_secs(1);
        if self.agent_heartbeat < second || self.agent_heartbeat > Duration::from_secs(290) {
            // API Gateway drops connections idle for 10 minutes; two missed beats must fit in that.
            return Err(ConfigError("AGENT_HEARTBEAT must be between 1 s and 290 s".into()));
        }
        at_least("POLL_INTERVAL", self.poll_interval, second)?;
        // A lease must outlast one Notion request attempt (30 s) with room to renew it.
        at_least("JOB_LEASE", Duration::from_secs(self.pipeline.lease_secs.max(0) as u64), Duration::from_secs(60))?;
        at_least("LLM_TIMEOUT", self.llm_timeout, second)?;
        at_least("RAG_REQUEST_TIMEOUT (or FALLBACK_TIMEOUT)", self.ladder.agent_timeout, Duration::from_millis(10))?;
        at_least("CONTEXT_CACHE_TTL", self.ladder.cache_ttl, second)?;
        at_least("HTTP_HEADER_TIMEOUT", self.http_limits.header_read_timeout, Duration::from_millis(100))?;
        at_least("HTTP_REQUEST_TIMEOUT", self.http_limits.request_timeout, second)?;
        if self.http_limits.header_read_timeout > Duration::from_secs(60) {
            return Err(ConfigError("HTTP_HEADER_TIMEOUT must be at most 60 s".into()));
        }
        let counts = [
            ("MAX_ATTEMPTS", self.pipeline.max_attempts as usize),
            ("CONCURRENCY", self.pipeline.concurrency),
            ("MAX_PAGES_PER_RUN", self.pipeline.max_pages_per_run),
            ("NOTION_RATE_LIMIT", self.notion_rate_limit as usize),
            ("NOTION_RATE_BURST", self.notion_rate_burst as usize),
            ("HTTP_MAX_CONNECTIONS", self.http_limits.max_connections),
            ("RAG_MAX_RESULTS", self.ladder.max_results),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError(format!("{name} must be at least 1")));
        }
        if self.ladder.max_results > protocol::limits::MAX_RESULTS {
            return Err(ConfigError(format!("RAG_MAX_RESULTS must be at most {}", protocol::limits::MAX_RESULTS)));
        }
        if self.llm_models.is_empty() {
            return Err(ConfigError("LLM_MODELS names no model".into()));
        }
        use protocol::cleartext::{Transport, check_url};
        check_url(&self.notion_base_url, Transport::Http, self.allow_insecure)
            .map_err(|error| ConfigError(format!("NOTION_API_BASE_URL: {error}")))?;
        check_url(&self.openrouter_base_url, Transport::Http, self.allow_insecure)
            .map_err(|error| ConfigError(format!("OPENROUTER_BASE_URL: {error}")))?;
        Ok(())
    }

    /// The Notion token, or a message saying it is missing.
    pub fn notion_key(&self) -> Result<&Secret, ConfigError> {
        self.notion_api_key.as_ref().ok_or_else(|| ConfigError("NOTION_API_KEY is not set".into()))
    }

    /// The questions database and the token, or a message naming every one that is missing.
    pub fn notion(&self) -> Result<(&Secret, &str), ConfigError> {
        match (&self.notion_api_key, self.notion_database_id.as_deref()) {
            (Some(key), Some(database)) => Ok((key, database)),
            _ => {
                let missing = self.missing_for_notion();
                let verb = if missing.len() == 1 { "is" } else { "are" };
                Err(ConfigError(format!("{} {verb} not set", missing.join(" and "))))
            }
        }
    }

    /// What answering questions needs and the settings do not say (empty when nothing is
    /// missing), so that a user learns all of it at once rather than one run at a time.
    pub fn missing_for_notion(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.notion_api_key.is_none() {
            missing.push("NOTION_API_KEY (the integration's token)");
        }
        if self.notion_database_id.is_none() {
            missing.push("NOTION_DATABASE_ID (the questions database)");
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn the_file_fills_in_what_the_environment_does_not_say() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud.toml");
        std::fs::write(
            &path,
            "NOTION_DATABASE_ID = \"db-1\"\nLLM_MODELS = \"a/b, c/d\"\nMAX_ATTEMPTS = 5\nFALLBACK_TIMEOUT = \"2s\"\n",
        )
        .unwrap();
        let config = CloudConfig::load(&Source::new(Some(&path)).unwrap()).unwrap();
        assert_eq!(config.notion_database_id.as_deref(), Some("db-1"));
        assert_eq!(config.llm_models, ["a/b", "c/d"]);
        assert_eq!(config.pipeline.max_attempts, 5);
        assert_eq!(config.ladder.agent_timeout, Duration::from_secs(2));
        std::fs::write(&path, "MAX_ATTEMPTS = \"many\"\n").unwrap();
        let error = CloudConfig::load(&Source::new(Some(&path)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("MAX_ATTEMPTS"), "{error}");
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let load = |pairs: &[(&str, &str)]| CloudConfig::load(&Source::from_values(pairs.iter().copied()));
        assert!(load(&[]).is_ok());
        for (name, value) in [
            ("POLL_INTERVAL", "0"),
            ("JOB_LEASE", "5s"),
            ("MAX_ATTEMPTS", "0"),
            ("CONCURRENCY", "0"),
            ("MAX_PAGES_PER_RUN", "0"),
            ("NOTION_RATE_LIMIT", "0"),
            ("NOTION_RATE_BURST", "0"),
            ("FALLBACK_TIMEOUT", "0"),
            ("LLM_TIMEOUT", "0"),
            ("CONTEXT_CACHE_TTL", "0"),
            ("RAG_MAX_RESULTS", "0"),
            ("RAG_MAX_RESULTS", "1000"),
            ("HTTP_HEADER_TIMEOUT", "0"),
            ("HTTP_HEADER_TIMEOUT", "10m"),
            ("HTTP_REQUEST_TIMEOUT", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("AGENT_HEARTBEAT", "0"),
            ("RAG_REQUEST_TIMEOUT", "0"),
            ("LOCAL_RAG_ENABLED", "maybe"),
        ] {
            let error = load(&[(name, value)]).expect_err(name).to_string();
            assert!(error.contains(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn the_original_systems_settings_are_honoured_or_answered() {
        let load = |pairs: &[(&str, &str)]| CloudConfig::load(&Source::from_values(pairs.iter().copied()));
        // Honoured: the agent deadline by either name, the switches.
        assert_eq!(load(&[("RAG_REQUEST_TIMEOUT", "8")]).unwrap().ladder.agent_timeout, Duration::from_secs(8));
        assert_eq!(load(&[("FALLBACK_TIMEOUT", "2s")]).unwrap().ladder.agent_timeout, Duration::from_secs(2));
        let both = load(&[("RAG_REQUEST_TIMEOUT", "8"), ("FALLBACK_TIMEOUT", "2")]).unwrap_err().to_string();
        assert!(both.contains("RAG_REQUEST_TIMEOUT") && both.contains("FALLBACK_TIMEOUT"), "{both}");
        assert!(load(&[("RAG_REQUEST_TIMEOUT", "3"), ("FALLBACK_TIMEOUT", "3s")]).is_ok());
        let defaults = load(&[]).unwrap();
        assert!(defaults.local_rag_enabled && defaults.ladder.enable_fallback && defaults.notices.is_empty());
        let off = load(&[("LOCAL_RAG_ENABLED", "false"), ("ENABLE_FALLBACK", "false")]).unwrap();
        assert!(!off.local_rag_enabled && !off.ladder.enable_fallback);
        assert!(off.notices.iter().any(|notice| notice.contains("LOCAL_RAG_ENABLED")), "{:?}", off.notices);
        // Retired: one line each, saying what replaced it.
        let retired =
            load(&[("LOCAL_RAG_SERVICE_URL", "http://192.168.1.5:8000"), ("DEPLOYMENT_MODE", "lambda")]).unwrap();
        assert_eq!(retired.notices.len(), 2, "{:?}", retired.notices);
        assert!(
            retired.notices[0].starts_with("LOCAL_RAG_SERVICE_URL is no longer used")
                && retired.notices[0].contains("CLOUD_URL")
        );
        assert!(retired.notices[1].starts_with("DEPLOYMENT_MODE is no longer used"));
    }

    #[test]
    fn a_config_file_refuses_names_the_code_does_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud.toml");
        std::fs::write(&path, "NOTION_DATABASE_ID = \"db-1\"\npoll_intervall = 30\n").unwrap();
        let error = Source::new(Some(&path)).err().expect("an unknown key is refused").to_string();
        assert!(error.contains("POLL_INTERVALL") && error.contains("did you mean POLL_INTERVAL"), "{error}");
        std::fs::write(&path, "COLOUR = \"blue\"\n").unwrap();
        let error = Source::new(Some(&path)).err().expect("an unknown key is refused").to_string();
        assert!(error.contains("unknown setting `COLOUR`") && !error.contains("did you mean"), "{error}");
        // A retired name is not an error but a notice.
        std::fs::write(&path, "LOCAL_RAG_ENDPOINTS = \"http://a,http://b\"\n").unwrap();
        let config = CloudConfig::load(&Source::new(Some(&path)).unwrap()).unwrap();
        assert!(config.notices.iter().any(|notice| notice.starts_with("LOCAL_RAG_ENDPOINTS")), "{:?}", config.notices);
    }

    #[test]
    fn clear_text_base_urls_go_only_to_this_machine_unless_allowed() {
        let load = |pairs: &[(&str, &str)]| CloudConfig::load(&Source::from_values(pairs.iter().copied()));
        assert!(load(&[("NOTION_API_BASE_URL", "http://127.0.0.1:9000")]).is_ok());
        let error = load(&[("OPENROUTER_BASE_URL", "http://llm.example.com/api/v1")]).unwrap_err().to_string();
        assert!(error.contains("OPENROUTER_BASE_URL") && error.contains("unencrypted"), "{error}");
        assert!(load(&[("NOTION_API_BASE_URL", "http://notion.internal")]).is_err());
        let allowed = [("NOTION_API_BASE_URL", "http://notion.internal"), ("ALLOW_INSECURE_HTTP", "true")];
        assert!(load(&allowed).is_ok());
    }
}
