//! `local-agent doctor`: checks everything the agent depends on and says how to fix what is
//! wrong — the runtime and model, the data dir and index, the config, Notion, the cloud, the
//! clock and the HTTP port, and whether the model reads the language of the notes.
//!
//! Each check is a function of plain values, so tests run them one at a time against stand-ins;
//! [`diagnose`] runs them all. Network checks try once with a short timeout: a doctor that
//! retries for a minute hides the problem it is meant to show.

mod language;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::console::{paint, style};
use serde::Serialize;

use crate::api::client;
use crate::config::{AgentConfig, CloudSection, Secret};
use crate::embed::{Embedder, EmbedderOptions};
use crate::error::Error;
use crate::index::generations::IndexDir;
use crate::index::snapshot::Snapshot;
use crate::tunnel::{TunnelConfig, TunnelError, connection};

/// How long one network check may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew above which signed requests and token expiry start to fail.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The command that rebuilds a damaged index.
pub const REBUILD: &str = "local-agent index --rebuild";

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something is off or not done yet.
    Warn,
    /// Broken: the agent cannot do its job until it is fixed.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short, stable name (`onnx-runtime`, `index`, `notion-token`…).
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (on warn and fail).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Ok, detail: detail.into(), fix: None }
    }

    fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// All checks, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `false` when any check failed.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report of `checks`.
    pub fn new(checks: Vec<Check>) -> Self {
        Self { ok: checks.iter().all(|check| check.status != Status::Fail), checks }
    }

    /// The check called `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// One line per check, the fix under each warning and failure.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|check| check.name.len()).max().unwrap_or(0);
        let mut text = String::new();
        for check in &self.checks {
            let label = match check.status {
                Status::Ok => paint(style::GOOD, "ok  "),
                Status::Warn => paint(style::WARN, "WARN"),
                Status::Fail => paint(style::BAD, "FAIL"),
            };
            text.push_str(&format!("{label}  {:width$}  {}\n", check.name, check.detail));
            if let (Status::Warn | Status::Fail, Some(fix)) = (check.status, &check.fix) {
                text.push_str(&format!("      {:width$}  fix: {fix}\n", ""));
            }
        }
        let failed = self.checks.iter().filter(|check| check.status == Status::Fail).count();
        let warned = self.checks.iter().filter(|check| check.status == Status::Warn).count();
        let warnings = if warned == 1 { "1 warning".to_owned() } else { format!("{warned} warnings") };
        text.push_str(&format!("{} checks: {failed} failed, {warnings}\n", self.checks.len()));
        text
    }
}

/// The Notion integration to check: a token, and the databases it should see.
#[derive(Debug, Clone)]
pub struct NotionTarget {
    /// The integration token.
    pub token: Secret,
    /// Knowledge databases to find.
    pub databases: Vec<String>,
    /// `https://api.notion.com`, or a stand-in.
    pub base_url: String,
}

impl NotionTarget {
    /// From `[notion]` when configured, else from a token in `NOTION_API_KEY` alone (then only
    /// the token is checked); `lookup` reads the environment.
    pub fn from_config(config: &AgentConfig, lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        if let Some(notion) = &config.notion {
            return Some(Self {
                token: notion.token.clone(),
                databases: notion.databases.clone(),
                base_url: notion.base_url.clone(),
            });
        }
        let token = lookup("NOTION_API_KEY").filter(|token| !token.trim().is_empty())?;
        let base_url = lookup("NOTION_API_BASE_URL")
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| notion::client::DEFAULT_BASE_URL.into());
        Some(Self { token: Secret::new(token), databases: Vec::new(), base_url })
    }
}

/// Runs every check that applies to this configuration. `config` is the result of loading it:
/// when that failed, only the config check can say anything useful.
pub async fn diagnose(config: Result<&AgentConfig, &Error>, notion: Option<&NotionTarget>) -> Report {
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            return Report::new(vec![Check::fail(
                "config",
                error.to_string(),
                "fix the setting named above (see examples/config.toml), then run `local-agent doctor` again",
            )]);
        }
    };
    let mut checks = vec![Check::ok("config", "loaded and valid")];
    let options = config.embedder.clone();
    let data_dir = config.data_dir.clone();
    let local = tokio::task::spawn_blocking(move || {
        let runtime = check_runtime(&options.runtime_library);
        let (model, embedder) = check_model(&options);
        let data = check_data_dir(&data_dir);
        let index = check_index(&data_dir, embedder.as_ref().map(|embedder| embedder.model_id()));
        let language = embedder.as_deref().and_then(|embedder| language::check_language(&data_dir, embedder));
        [runtime, model, data, index].into_iter().chain(language).collect::<Vec<_>>()
    })
    .await;
    match local {
        Ok(local) => checks.extend(local),
        Err(error) => checks.push(Check::fail("local", format!("a check crashed: {error}"), "report this as a bug")),
    }
    if let Some(notion) = notion {
        checks.extend(check_notion(notion).await);
    }
    checks.extend(check_cloud(&config.cloud).await);
    let mut clock_sources = Vec::new();
    if let Some(url) = &config.cloud.url {
        clock_sources.extend(http_base_of(url));
    }
    if let Some(notion) = notion {
        clock_sources.push(notion.base_url.clone());
    }
    if let Some(clock) = check_clock(&clock_sources).await {
        checks.push(clock);
    }
    // A running server's real address (`serve --listen` may differ from the setting).
    let listen = super::running::find(&config.data_dir).map_or(config.listen, |server| server.address);
    checks.push(check_port(listen).await);
    Report::new(checks)
}

/// The ONNX Runtime library: present, loadable, and its version.
pub fn check_runtime(library: &Path) -> Check {
    const NAME: &str = "onnx-runtime";
    match crate::embed::runtime_version(library) {
        Ok(version) => Check::ok(NAME, format!("{version} loaded from {}", library.display())),
        Err(error) => Check::fail(
            NAME,
            error.to_string(),
            "run `local-agent setup`, or set ORT_DYLIB_PATH ([model] ort_dylib_path) to libonnxruntime 1.31 or newer",
        ),
    }
}

/// The model folder: `model.onnx` and `tokenizer.json` present and loading. Returns the loaded
/// model for the index check (which needs its id).
pub fn check_model(options: &EmbedderOptions) -> (Check, Option<Arc<Embedder>>) {
    const NAME: &str = "model";
    let fix = format!(
        "run {}, or set MODEL_DIR ([model] dir) to a folder with model.onnx and tokenizer.json",
        crate::config::setup_command(&options.model_dir)
    );
    match Embedder::load(options) {
        Ok(embedder) => {
            let detail = format!(
                "{} ({} dimensions) loaded from {}",
                embedder.model_id(),
                embedder.dimensions(),
                options.model_dir.display()
            );
            (Check::ok(NAME, detail), Some(Arc::new(embedder)))
        }
        Err(Error::RuntimeMissing { .. } | Error::RuntimeLoad { .. }) => (
            Check::warn(
                NAME,
                format!("files present in {}, not loaded: ONNX Runtime does not load", options.model_dir.display()),
                "fix the onnx-runtime check first",
            ),
            None,
        ),
        Err(error) => (Check::fail(NAME, error.to_string(), fix), None),
    }
}

/// The data directory: exists and is writable.
pub fn check_data_dir(dir: &Path) -> Check {
    const NAME: &str = "data-dir";
    if !dir.exists() {
        return Check::warn(
            NAME,
            format!("{} does not exist yet", dir.display()),
            "`local-agent index <FOLDER>` creates it (or set DATA_DIR / --data-dir to where your index is)",
        );
    }
    if !dir.is_dir() {
        return Check::fail(NAME, format!("{} is not a directory", dir.display()), "set DATA_DIR to a directory");
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            if let Some(mode) = shared_mode(dir) {
                return Check::warn(
                    NAME,
                    format!(
                        "{} can be read by other users (mode {mode:o}): it holds an index of your notes",
                        dir.display()
                    ),
                    format!("chmod 700 {} (`local-agent index` and `serve` do it too)", dir.display()),
                );
            }
            Check::ok(NAME, format!("{} is writable and private", dir.display()))
        }
        Err(error) => Check::fail(
            NAME,
            format!("cannot write in {}: {error}", dir.display()),
            format!("give your user write access to {} (or set DATA_DIR elsewhere)", dir.display()),
        ),
    }
}

/// The permission bits of `dir` when other users may enter it.
#[cfg(unix)]
fn shared_mode(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn shared_mode(_dir: &Path) -> Option<u32> {
    None
}

/// The live index: opened as `serve` opens it. `model_id` is the configured model's, when it
/// loaded (else the index is checked against the model it was built with).
pub fn check_index(data_dir: &Path, model_id: Option<&str>) -> Check {
    const NAME: &str = "index";
    let index_dir = IndexDir::new(data_dir);
    let broken = |error: &Error| Check::fail(NAME, error.to_string(), REBUILD);
    let generation = match index_dir.current() {
        Ok(Some(generation)) => generation,
        Ok(None) => {
            return Check::warn(
                NAME,
                format!("nothing indexed yet in {}", data_dir.display()),
                "local-agent index <FOLDER> (or `local-agent sync` for Notion databases)",
            );
        }
        Err(error) => return broken(&error),
    };
    let manifest = match index_dir.read_manifest(generation) {
        Ok(manifest) => manifest,
        Err(error) => return broken(&error),
    };
    let model_id = model_id.unwrap_or(&manifest.model_id);
    match Snapshot::open_current(&index_dir, model_id) {
        Ok(Some(snapshot)) => Check::ok(
            NAME,
            format!(
                "generation {generation}: {}, {} (model {})",
                protocol::console::count(snapshot.manifest.documents.len() as u64, "document"),
                protocol::console::count(snapshot.manifest.chunk_count() as u64, "chunk"),
                snapshot.manifest.model_id
            ),
        ),
        Ok(None) => Check::warn(NAME, "the index went away while checking", "run `local-agent doctor` again"),
        Err(error) => broken(&error),
    }
}

/// Notion: the token is valid, and each database is shared with the integration.
pub async fn check_notion(target: &NotionTarget) -> Vec<Check> {
    let options = notion::ClientOptions {
        base_url: target.base_url.clone(),
        retry: notion::RetryPolicy { max_attempts: 1, ..Default::default() },
        timeout: NETWORK_TIMEOUT,
        ..Default::default()
    };
    let client = match notion::NotionClient::new(target.token.expose(), options) {
        Ok(client) => client,
        Err(error) => return vec![Check::fail("notion-token", error.to_string(), "report this as a bug")],
    };
    let token_fix = "copy the integration's secret from notion.so/profile/integrations into NOTION_API_KEY \
                     ([notion] token)";
    let token = match client.me().await {
        Ok(me) => {
            let name = me["name"].as_str().filter(|name| !name.is_empty()).unwrap_or("unnamed");
            Check::ok("notion-token", format!("valid: integration {name:?} at {}", target.base_url))
        }
        Err(error) if error.status() == Some(401) => {
            return vec![Check::fail("notion-token", format!("Notion refused the token: {error}"), token_fix)];
        }
        Err(error @ notion::NotionError::Transport(_)) => {
            return vec![Check::fail(
                "notion-token",
                format!("{error} ({})", target.base_url),
                "check your network (and NOTION_API_BASE_URL, if set)",
            )];
        }
        Err(error) => Check::warn("notion-token", format!("could not confirm the token: {error}"), token_fix),
    };
    let mut checks = vec![token];
    for id in &target.databases {
        let name = format!("notion-database {id}");
        checks.push(match client.retrieve_database(id).await {
            Ok(database) => {
                let title: String = database
                    .title
                    .as_array()
                    .map(|parts| parts.iter().filter_map(|part| part["plain_text"].as_str()).collect())
                    .unwrap_or_default();
                Check::ok(&name, format!("{title:?} is shared with the integration"))
            }
            Err(error) if error.is_not_found() => Check::fail(
                &name,
                "not found: the database does not exist or is not shared with the integration",
                "in Notion, open the database → ••• → Connections → add your integration (and check the id)",
            ),
            Err(error) => Check::fail(&name, error.to_string(), "check the database id and your network"),
        });
    }
    checks
}

/// The cloud: the host resolves, and TCP, TLS and the WebSocket upgrade with the token work.
/// Nothing when no cloud is configured.
pub async fn check_cloud(cloud: &CloudSection) -> Vec<Check> {
    let (Some(url), Some(token)) = (&cloud.url, &cloud.token) else {
        return Vec::new();
    };
    let Some((host, port)) = host_and_port(url) else {
        return vec![Check::fail(
            "cloud-url",
            format!("CLOUD_URL {url:?} is not a wss:// URL"),
            "set CLOUD_URL ([cloud] url) to the wss://… address your cloud deployment printed",
        )];
    };
    let resolved = tokio::time::timeout(NETWORK_TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await;
    let addresses: Vec<SocketAddr> = match resolved {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(error)) => {
            return vec![Check::fail(
                "cloud-dns",
                format!("cannot resolve {host}: {error}"),
                "check CLOUD_URL for typos, and your network and DNS",
            )];
        }
        Err(_) => {
            return vec![Check::fail("cloud-dns", format!("resolving {host} timed out"), "check your network and DNS")];
        }
    };
    let dns = Check::ok("cloud-dns", format!("{host} resolves to {}", list(&addresses)));
    let config = match TunnelConfig::new(url, token.clone(), "local-agent-doctor".into(), cloud.ca_file.as_deref()) {
        Ok(config) => config,
        Err(error) => return vec![dns, Check::fail("cloud-connect", error.to_string(), "fix the setting named above")],
    };
    let secure = url.starts_with("wss://");
    let connect = match connection::probe(&config).await {
        Ok(()) => Check::ok(
            "cloud-connect",
            format!("{}upgrade to {url} accepted the agent token", if secure { "TLS and " } else { "" }),
        ),
        Err(TunnelError::Unauthorized(status)) => Check::fail(
            "cloud-connect",
            format!("the cloud refused the agent token (HTTP {status})"),
            "set AGENT_TOKEN ([cloud] token) to the token the cloud was deployed with",
        ),
        Err(TunnelError::Unreachable(message)) if message.to_ascii_lowercase().contains("certificate") => Check::fail(
            "cloud-connect",
            format!("TLS failed: {message}"),
            "for a self-hosted cloud with its own certificate, set CLOUD_CA_FILE ([cloud] ca_file) to its CA",
        ),
        Err(error @ (TunnelError::Unreachable(_) | TunnelError::Protocol(_))) => Check::fail(
            "cloud-connect",
            error.to_string(),
            format!("check that the cloud is running and reachable from here at {url}"),
        ),
        Err(error @ TunnelError::Config(_)) => Check::fail("cloud-connect", error.to_string(), "fix CLOUD_URL"),
    };
    vec![dns, connect]
}

/// The local clock against the `Date` header of the first of `sources` (base URLs) that
/// answers. `None` when there is nothing to compare with.
pub async fn check_clock(sources: &[String]) -> Option<Check> {
    const NAME: &str = "clock";
    if sources.is_empty() {
        return None;
    }
    // Only a `Date` header is read and nothing is sent, so the certificate does not matter
    // here (the cloud-connect check judges it): a self-hosted cloud's own CA must not hide
    // the clock.
    let client = reqwest::Client::builder()
        .timeout(NETWORK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .build()
        .ok()?;
    let mut problems = Vec::new();
    for source in sources {
        let response = match client.head(source).send().await {
            Ok(response) => response,
            Err(error) => {
                problems.push(format!("{source}: {}", client::error_chain(&error)));
                continue;
            }
        };
        let received = SystemTime::now();
        let Some(date) = response.headers().get(reqwest::header::DATE).and_then(|value| value.to_str().ok()) else {
            problems.push(format!("{source}: no Date header"));
            continue;
        };
        let Ok(remote) = httpdate::parse_http_date(date) else {
            problems.push(format!("{source}: unreadable Date header {date:?}"));
            continue;
        };
        return Some(judge_skew(received, remote, source));
    }
    Some(Check::warn(NAME, format!("could not read the time: {}", problems.join("; ")), "check your network"))
}

/// Compares the local time with a server's (whose `Date` has whole seconds).
pub fn judge_skew(local: SystemTime, remote: SystemTime, source: &str) -> Check {
    let seconds = |time: SystemTime| time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
    let skew = seconds(local) - seconds(remote);
    if skew.unsigned_abs() <= MAX_CLOCK_SKEW.as_secs() {
        Check::ok("clock", format!("within {} s of {source}", skew.unsigned_abs()))
    } else {
        let direction = if skew > 0 { "ahead of" } else { "behind" };
        Check::warn(
            "clock",
            format!("this clock is {} s {direction} {source}", skew.unsigned_abs()),
            "turn on network time (`timedatectl set-ntp true`, or Date & Time settings → set automatically)",
        )
    }
}

/// The HTTP API's address: free, or already served by a local-agent.
pub async fn check_port(listen: SocketAddr) -> Check {
    const NAME: &str = "port";
    let fix = format!(
        "stop the program on {listen}, or set [server] listen (LOCAL_AGENT_LISTEN) to a free address such as 127.0.0.1:{}",
        listen.port().wrapping_add(1)
    );
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Check::ok(NAME, format!("{listen} is free")),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => match client::health(listen).await {
            Ok(health) => Check::ok(
                NAME,
                format!(
                    "{listen} is served by a running local-agent (version {})",
                    health["version"].as_str().unwrap_or("unknown")
                ),
            ),
            Err(probe) => Check::fail(NAME, format!("{listen} is in use by another program ({probe})"), fix),
        },
        Err(error) => Check::fail(NAME, format!("cannot listen on {listen}: {error}"), fix),
    }
}

/// `wss://host:port/path` → `https://host:port/` (`ws` → `http`), for reading the clock.
fn http_base_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "wss" => "https",
        "ws" => "http",
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next().filter(|authority| !authority.is_empty())?;
    Some(format!("{scheme}://{authority}/"))
}

/// Host and port of a `ws://` or `wss://` URL (default ports 80 and 443).
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "wss" => 443,
        "ws" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next().filter(|authority| !authority.is_empty())?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

fn list(addresses: &[SocketAddr]) -> String {
    let shown: Vec<String> = addresses.iter().take(3).map(|address| address.ip().to_string()).collect();
    let more = addresses.len().saturating_sub(3);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_urls_are_split_into_host_and_port() {
        assert_eq!(
            host_and_port("wss://abc.execute-api.eu-west-1.amazonaws.com/prod"),
            Some(("abc.execute-api.eu-west-1.amazonaws.com".into(), 443))
        );
        assert_eq!(host_and_port("ws://127.0.0.1:9000/agent"), Some(("127.0.0.1".into(), 9000)));
        assert_eq!(host_and_port("wss://[::1]:8443/agent"), Some(("::1".into(), 8443)));
        assert_eq!(host_and_port("wss://cloud.example"), Some(("cloud.example".into(), 443)));
        assert_eq!(host_and_port("https://cloud.example"), None);
        assert_eq!(host_and_port("wss://host:notaport/"), None);
        assert_eq!(http_base_of("wss://cloud.example:8443/agent?x=1"), Some("https://cloud.example:8443/".into()));
        assert_eq!(http_base_of("ws://127.0.0.1:9/agent"), Some("http://127.0.0.1:9/".into()));
    }

    #[test]
    fn a_skew_over_a_minute_is_a_warning_in_either_direction() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(judge_skew(now, now - Duration::from_secs(59), "x").status, Status::Ok);
        let ahead = judge_skew(now, now - Duration::from_secs(120), "https://api.notion.com");
        assert_eq!(ahead.status, Status::Warn);
        assert_eq!(ahead.detail, "this clock is 120 s ahead of https://api.notion.com");
        let behind = judge_skew(now, now + Duration::from_secs(3600), "x");
        assert!(behind.detail.contains("3600 s behind"), "{}", behind.detail);
        assert!(behind.fix.is_some());
    }

    #[test]
    fn the_report_fails_on_any_failure_and_prints_fixes() {
        let report = Report::new(vec![
            Check::ok("config", "loaded and valid"),
            Check::warn("index", "nothing indexed yet", "local-agent index <FOLDER>"),
        ]);
        assert!(report.ok);
        let text = protocol::console::without_colour(&report.to_text());
        assert!(text.contains("ok    config  loaded and valid\n"), "{text}");
        assert!(
            text.contains("WARN  index   nothing indexed yet\n              fix: local-agent index <FOLDER>\n"),
            "{text}"
        );
        assert!(text.ends_with("2 checks: 0 failed, 1 warning\n"), "{text}");
        let failing = Report::new(vec![Check::fail("port", "in use", "stop it")]);
        assert!(!failing.ok);
        let json = serde_json::to_value(&failing).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][0]["status"], "fail");
        assert_eq!(json["checks"][0]["fix"], "stop it");
    }
}
