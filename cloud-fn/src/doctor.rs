//! `cloud-fn doctor`: whether this configuration can answer questions, one check per part,
//! each with what to do about it — like the agent's doctor.
//!
//! Notion, OpenRouter and the clock are checked from here. The store, the webhook and the
//! agents belong to the running server (agents connect to `serve` or to API Gateway, and
//! `serve` holds the embedded store's lock), so they are read from its `/status` with
//! `CLOUD_API_KEY`; with no server answering, the store and the webhook are read directly.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::config::CloudConfig;
use crate::questions_database::{self, Severity};

/// Every outbound call of a check has this deadline.
const DEADLINE: Duration = Duration::from_secs(10);
/// A clock this far off Notion's is worth a warning (leases and webhook events are timed).
const CLOCK_WARN_SECS: i64 = 30;
/// This far off, leases of 300 s can no longer be trusted across machines.
const CLOCK_FAIL_SECS: i64 = 120;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, with something worth knowing.
    Warn,
    /// Questions cannot be answered (or not as configured) until this is fixed.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found, and what to do.
    pub detail: String,
}

/// All checks.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether nothing failed.
    pub fn is_healthy(&self) -> bool {
        self.checks.iter().all(|check| check.verdict != Verdict::Fail)
    }
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check { name, verdict, detail: detail.into() }
}

/// Runs every check; `server` is the URL of the running `serve` or of the function URL.
pub async fn run(config: &CloudConfig, server: &str) -> Report {
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut checks = vec![notion(config).await, clock(&http, config).await, openrouter(&http, config).await];
    match server_status(&http, config, server).await {
        Ok((status, webhook)) => {
            checks.push(check("server", Verdict::Ok, format!("{server} answers")));
            checks.push(store_from_status(&status));
            checks.push(webhook_from_server(config, &webhook));
            checks.push(agents_from_status(config, &status));
        }
        Err(detail) => {
            checks.push(check("server", Verdict::Warn, detail));
            checks.extend(store_and_webhook_directly(config).await);
            checks.push(check(
                "agents",
                Verdict::Warn,
                "unknown: agents connect to the running server (start `cloud-fn serve`, or pass --server)",
            ));
        }
    }
    Report { checks }
}

async fn notion(config: &CloudConfig) -> Check {
    let (_, database) = match config.notion() {
        Ok(settings) => settings,
        Err(error) => return check("notion", Verdict::Fail, error.to_string()),
    };
    let client = match crate::app::notion_client(config) {
        Ok(client) => client,
        Err(error) => return check("notion", Verdict::Fail, error.to_string()),
    };
    match questions_database::check(&client, database, &config.pipeline.vocabulary).await {
        Ok(report) => {
            let verdict = report.findings.iter().map(|finding| match finding.severity {
                Severity::Problem => Verdict::Fail,
                Severity::Advice => Verdict::Warn,
            });
            let verdict = verdict.max().unwrap_or(Verdict::Ok);
            let mut detail = format!("questions database \"{}\"", report.title);
            if report.findings.is_empty() {
                detail.push_str(": title, status with its five options, tags");
            }
            for finding in &report.findings {
                detail.push_str("; ");
                detail.push_str(&finding.message);
            }
            check("notion", verdict, detail)
        }
        Err(error) if error.status() == Some(401) => {
            check("notion", Verdict::Fail, "Notion refuses NOTION_API_KEY: copy the integration's token again")
        }
        Err(error) if error.is_not_found() => check(
            "notion",
            Verdict::Fail,
            format!(
                "database {database} is not found: share it with the integration (••• → Connections), or fix NOTION_DATABASE_ID"
            ),
        ),
        Err(error) => check("notion", Verdict::Fail, format!("cannot read database {database}: {error}")),
    }
}

/// This machine's clock against Notion's `Date` header.
async fn clock(http: &reqwest::Client, config: &CloudConfig) -> Check {
    let url = format!("{}/v1/users/me", config.notion_base_url.trim_end_matches('/'));
    let date = match http.get(&url).send().await {
        Ok(response) => {
            response.headers().get(reqwest::header::DATE).and_then(|date| date.to_str().ok()).map(str::to_owned)
        }
        Err(error) => {
            return check("clock", Verdict::Warn, format!("cannot reach Notion to compare: {}", error.without_url()));
        }
    };
    let Some(theirs) = date.and_then(|date| chrono::DateTime::parse_from_rfc2822(&date).ok()) else {
        return check("clock", Verdict::Warn, "Notion's answer has no Date to compare with");
    };
    let skew = SystemClock.now() - theirs.timestamp();
    let verdict = match skew.abs() {
        off if off < CLOCK_WARN_SECS => Verdict::Ok,
        off if off < CLOCK_FAIL_SECS => Verdict::Warn,
        _ => Verdict::Fail,
    };
    let detail = match verdict {
        Verdict::Ok => format!("within {} s of Notion's", skew.abs().max(1)),
        _ => format!("{skew:+} s off Notion's: job leases are timed; turn on NTP (timedatectl set-ntp true)"),
    };
    check("clock", verdict, detail)
}

/// The key and what is left on it (`GET /key`).
async fn openrouter(http: &reqwest::Client, config: &CloudConfig) -> Check {
    let Some(key) = &config.openrouter_api_key else {
        return check(
            "openrouter",
            Verdict::Warn,
            "OPENROUTER_API_KEY is not set: answers quote the best passages instead of an LLM's answer",
        );
    };
    if let Err(error) = protocol::cleartext::check_url(
        &config.openrouter_base_url,
        protocol::cleartext::Transport::Http,
        config.allow_insecure,
    ) {
        return check("openrouter", Verdict::Fail, format!("OPENROUTER_BASE_URL: {error}"));
    }
    let url = format!("{}/key", config.openrouter_base_url.trim_end_matches('/'));
    let response = match http.get(url).bearer_auth(key.expose()).send().await {
        Ok(response) => response,
        Err(error) => {
            return check("openrouter", Verdict::Fail, format!("cannot reach OpenRouter: {}", error.without_url()));
        }
    };
    match response.status().as_u16() {
        200 => {}
        401 | 403 => {
            return check(
                "openrouter",
                Verdict::Fail,
                "OpenRouter refuses OPENROUTER_API_KEY: create a key at openrouter.ai/keys",
            );
        }
        status => {
            return check("openrouter", Verdict::Warn, format!("OpenRouter's key endpoint answered HTTP {status}"));
        }
    }
    let body: Value = response.json().await.unwrap_or_default();
    let data = &body["data"];
    let models = config.llm_models.join(", ");
    let used = data["usage"].as_f64().map(|usage| format!(", ${usage:.2} used")).unwrap_or_default();
    match data["limit_remaining"].as_f64() {
        Some(left) if left <= 0.0 => check(
            "openrouter",
            Verdict::Fail,
            format!(
                "no credits left on this key{used}: add credits, or raise the key's limit (questions fail with 402)"
            ),
        ),
        Some(left) => check("openrouter", Verdict::Ok, format!("key accepted, ${left:.2} left{used}; models {models}")),
        None => check("openrouter", Verdict::Ok, format!("key accepted, no limit on it{used}; models {models}")),
    }
}

/// `/status` and the webhook's state from the running server.
async fn server_status(http: &reqwest::Client, config: &CloudConfig, server: &str) -> Result<(Value, Value), String> {
    let base = server.trim_end_matches('/');
    if let Err(error) =
        protocol::cleartext::check_url(base, protocol::cleartext::Transport::Http, config.allow_insecure)
    {
        return Err(format!("--server: {error}"));
    }
    let Some(key) = &config.cloud_api_key else {
        return Err(format!("CLOUD_API_KEY is not set, so {base} cannot be asked how it is"));
    };
    let status = get_json(http, base, "/status", key.expose()).await?;
    Ok((status, get_json(http, base, "/webhooks/notion/verification", key.expose()).await?))
}

async fn get_json(http: &reqwest::Client, base: &str, path: &str, key: &str) -> Result<Value, String> {
    let response = http.get(format!("{base}{path}")).bearer_auth(key).send().await.map_err(|error| {
        format!("no server answers at {base} ({}): start `cloud-fn serve` or pass --server", error.without_url())
    })?;
    match response.status().as_u16() {
        200 => response.json::<Value>().await.map_err(|error| format!("{base}{path}: {error}")),
        401 => Err(format!("{base} refuses this CLOUD_API_KEY")),
        status => Err(format!("{base}{path} answered HTTP {status}")),
    }
}

fn store_from_status(status: &Value) -> Check {
    let kind = status["store"].as_str().unwrap_or("unknown");
    match status["jobs"]["error"].as_str() {
        Some(error) => check("store", Verdict::Fail, format!("{kind}: {error}")),
        None => check("store", Verdict::Ok, format!("{kind}, reachable from the server")),
    }
}

fn webhook_from_server(config: &CloudConfig, webhook: &Value) -> Check {
    match (webhook["pinned"].as_bool(), webhook["verification_token"].is_string()) {
        (Some(true), _) => check("webhook", Verdict::Ok, "token pinned by NOTION_WEBHOOK_TOKEN"),
        (_, true) => check("webhook", Verdict::Ok, "verified: deliveries are checked by their signature"),
        _ => no_webhook(config),
    }
}

fn no_webhook(config: &CloudConfig) -> Check {
    check(
        "webhook",
        Verdict::Warn,
        format!(
            "no Notion webhook verified: questions wait for the next poll (every {} s); subscribe \
             <server>/webhooks/notion in Notion for answers within seconds",
            config.poll_interval.as_secs()
        ),
    )
}

fn agents_from_status(config: &CloudConfig, status: &Value) -> Check {
    let live = status["agent"]["live_agents"].as_u64().unwrap_or_default();
    match (live, config.local_rag_enabled) {
        (_, false) => check("agents", Verdict::Ok, "LOCAL_RAG_ENABLED=false: no agent is asked"),
        (0, _) if config.agent_tokens.is_empty() => check(
            "agents",
            Verdict::Warn,
            "AGENT_TOKEN is not set, so no agent can connect: answers use cached context and templates",
        ),
        (0, _) => check(
            "agents",
            Verdict::Warn,
            "none connected: answers use cached context and templates; on the PC run `local-agent serve` \
             with CLOUD_URL and AGENT_TOKEN (`local-agent doctor` says why it cannot connect)",
        ),
        (live, _) => check("agents", Verdict::Ok, format!("{live} connected")),
    }
}

async fn store_and_webhook_directly(config: &CloudConfig) -> Vec<Check> {
    let store = match crate::app::store(config).await {
        Ok(store) => store,
        Err(error) => {
            return vec![
                check("store", Verdict::Fail, format!("cannot open it: {error}")),
                check("webhook", Verdict::Warn, "unknown: the store cannot be read"),
            ];
        }
    };
    let kind = store.kind();
    let token = store.webhook_token().await;
    let store_check = match &token {
        Ok(_) => check("store", Verdict::Ok, format!("{kind}, reachable")),
        Err(error) => check("store", Verdict::Fail, format!("{kind}: {error}")),
    };
    let webhook = match (&config.notion_webhook_token, token) {
        (Some(_), _) => check("webhook", Verdict::Ok, "token pinned by NOTION_WEBHOOK_TOKEN"),
        (None, Ok(Some(_))) => check("webhook", Verdict::Ok, "verified: deliveries are checked by their signature"),
        (None, Ok(None)) => no_webhook(config),
        (None, Err(_)) => check("webhook", Verdict::Warn, "unknown: the store cannot be read"),
    };
    vec![store_check, webhook]
}
