//! A client for a running agent's loopback HTTP API: what `local-agent service status` shows
//! (health, index, tunnel) and how `local-agent doctor` tells our agent from another program
//! holding the port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use super::stats::{IndexStats, Stats};
use crate::config::Secret;
use crate::tunnel::{TunnelSnapshot, TunnelState};

/// How long one request to the local API may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the agent's API could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Nothing answered (not running, or still loading the model).
    #[error("no answer from http://{address}: {message}")]
    Unreachable {
        /// Where we asked.
        address: SocketAddr,
        /// The transport's complaint.
        message: String,
    },
    /// Something answered, but not a local-agent.
    #[error("http://{address} answered, but not as a local-agent ({message})")]
    NotAnAgent {
        /// Where we asked.
        address: SocketAddr,
        /// What was wrong with the answer.
        message: String,
    },
    /// The agent wants an API key we do not have (or it is wrong).
    #[error("the agent refused the API key; set LOCAL_RAG_API_KEY (or [server] api_key) as it is configured")]
    Unauthorized,
}

/// What `GET /health` and `GET /stats` say about a running agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReport {
    /// `/health`'s `status`: `healthy`, or `degraded` without an index.
    pub health: String,
    /// The agent's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: f64,
    /// The live index, when `/stats` could be read.
    pub index: Option<IndexStats>,
    /// The tunnel.
    pub tunnel: TunnelView,
    /// Why `/stats` could not be read, if it could not.
    pub stats_error: Option<String>,
}

/// The tunnel, from `/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelView {
    /// No cloud is configured.
    NotConfigured,
    /// `/stats` could not be read.
    Unknown,
    /// What the tunnel reported.
    State(TunnelSnapshot),
}

/// The address to reach an agent listening on `listen`: a wildcard address is reached
/// through loopback.
pub fn loopback_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn client() -> reqwest::Client {
    // No proxy: an HTTP_PROXY meant for the internet must not swallow loopback requests.
    reqwest::Client::builder().timeout(TIMEOUT).no_proxy().build().unwrap_or_else(|_| reqwest::Client::new())
}

/// `GET /health`, checked to be a local-agent's answer; returns the JSON.
pub async fn health(address: SocketAddr) -> Result<Value, ProbeError> {
    let address = loopback_address(address);
    let unreachable = |error: reqwest::Error| ProbeError::Unreachable { address, message: error_chain(&error) };
    let response = client().get(format!("http://{address}/health")).send().await.map_err(unreachable)?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|_| ProbeError::NotAnAgent { address, message: format!("HTTP {status}, not JSON") })?;
    if body["rag_engine"].is_object() && body["version"].is_string() {
        Ok(body)
    } else {
        Err(ProbeError::NotAnAgent { address, message: format!("HTTP {status}, JSON of another shape") })
    }
}

/// `GET /health` then `GET /stats` (with `api_key` when the agent needs one).
pub async fn report(address: SocketAddr, api_key: Option<&Secret>) -> Result<AgentReport, ProbeError> {
    let health = health(address).await?;
    let address = loopback_address(address);
    let mut request = client().get(format!("http://{address}/stats"));
    if let Some(key) = api_key {
        request = request.bearer_auth(key.expose());
    }
    let stats = match request.send().await {
        Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => Err(ProbeError::Unauthorized),
        Ok(response) => response
            .json::<Stats>()
            .await
            .map_err(|error| ProbeError::NotAnAgent { address, message: format!("/stats: {error}") }),
        Err(error) => Err(ProbeError::Unreachable { address, message: error_chain(&error) }),
    };
    Ok(assemble(&health, stats))
}

fn assemble(health: &Value, stats: Result<Stats, ProbeError>) -> AgentReport {
    let (index, tunnel, stats_error) = match stats {
        Ok(stats) => {
            let tunnel = stats.tunnel.map_or(TunnelView::NotConfigured, TunnelView::State);
            (Some(stats.index), tunnel, None)
        }
        Err(error) => (None, TunnelView::Unknown, Some(error.to_string())),
    };
    AgentReport {
        health: health["status"].as_str().unwrap_or("unknown").to_owned(),
        version: health["version"].as_str().unwrap_or("unknown").to_owned(),
        uptime_secs: health["uptime"].as_f64().unwrap_or(0.0),
        index,
        tunnel,
        stats_error,
    }
}

/// The report as lines for people, relative to `now` (seconds since the epoch).
pub fn describe(report: &AgentReport, now: u64) -> Vec<String> {
    let mut lines = vec![format!(
        "agent:        {}, version {}, up {}",
        report.health,
        report.version,
        human_duration(report.uptime_secs as u64)
    )];
    match &report.index {
        Some(index) if index.generation == 0 => {
            lines.push("index:        nothing indexed yet; run `local-agent index <FOLDER>`".into());
        }
        Some(index) => lines.push(format!(
            "index:        generation {}, {}, {}, written {} ago",
            index.generation,
            protocol::console::count(index.documents, "document"),
            protocol::console::count(index.chunks, "chunk"),
            human_duration(now.saturating_sub(index.indexed_at))
        )),
        None => {}
    }
    let ago = |at: u64| format!("{} ago", human_duration(now.saturating_sub(at)));
    match &report.tunnel {
        TunnelView::NotConfigured => lines.push("cloud:        not configured (the agent stays local)".into()),
        TunnelView::Unknown => lines.push("cloud:        unknown".into()),
        TunnelView::State(state) => {
            // An agent from before `state` existed reports only `connected`.
            let kind = if state.connected { TunnelState::Connected } else { state.state };
            let mut line = match kind {
                TunnelState::Connected => {
                    let since = state.connected_since.map(|at| format!(" since {}", ago(at))).unwrap_or_default();
                    format!("cloud:        connected{since}")
                }
                TunnelState::Refused => {
                    let since = state.refused_since.map(|at| format!(" since {}", ago(at))).unwrap_or_default();
                    format!(
                        "cloud:        REFUSES the agent token{since}; retrying slowly, the local API keeps serving"
                    )
                }
                TunnelState::Stopped => "cloud:        STOPPED (the tunnel cannot work as configured)".to_owned(),
                TunnelState::Connecting => "cloud:        NOT connected".to_owned(),
            };
            if let Some(at) = state.last_heartbeat {
                line.push_str(&format!(", last heartbeat {}", ago(at)));
            }
            lines.push(line);
            if let (false, Some(error)) = (state.connected, &state.last_error) {
                let when = state.last_error_at.map(|at| format!(" ({})", ago(at))).unwrap_or_default();
                lines.push(format!("last error:   {error}{when}"));
            }
        }
    }
    if let Some(error) = &report.stats_error {
        lines.push(format!("stats:        {error}"));
    }
    lines
}

/// An error and its causes, without the URL (reqwest's own message is only "error sending
/// request"; the cause says "connection refused").
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// "42 s", "5 min", "3 h", "2 days".
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86400),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn health() -> Value {
        json!({"status": "healthy", "version": "0.1.0", "uptime": 7200.5, "rag_engine": {"status": "ready"}})
    }

    #[test]
    fn a_connected_agent_is_described_with_its_index_and_heartbeat() {
        let stats = json!({
            "index": {"generation": 3, "documents": 10, "chunks": 42, "indexed_at": 1_000},
            "tunnel": {"connected": true, "connected_since": 1_500, "last_heartbeat": 1_590,
                       "last_error": null, "last_error_at": null, "connections": 1},
        });
        let lines = describe(&assemble(&health(), Ok(serde_json::from_value(stats).unwrap())), 1_600);
        assert_eq!(
            lines,
            [
                "agent:        healthy, version 0.1.0, up 2 h",
                "index:        generation 3, 10 documents, 42 chunks, written 10 min ago",
                "cloud:        connected since 1 min ago, last heartbeat 10 s ago",
            ]
        );
    }

    #[test]
    fn a_disconnected_tunnel_shows_its_last_error_and_missing_stats_say_why() {
        let stats = json!({
            "index": {"generation": 0, "documents": 0, "chunks": 0, "indexed_at": 0},
            "tunnel": {"connected": false, "connected_since": null, "last_heartbeat": null,
                       "last_error": "cannot reach the cloud: refused", "last_error_at": 95, "connections": 0},
        });
        let lines = describe(&assemble(&health(), Ok(serde_json::from_value(stats).unwrap())), 100);
        assert_eq!(lines[1], "index:        nothing indexed yet; run `local-agent index <FOLDER>`");
        assert_eq!(lines[2], "cloud:        NOT connected");
        assert_eq!(lines[3], "last error:   cannot reach the cloud: refused (5 s ago)");

        let no_cloud = assemble(&health(), Ok(serde_json::from_value(json!({"tunnel": null})).unwrap()));
        assert_eq!(no_cloud.tunnel, TunnelView::NotConfigured);
        let refused = assemble(&health(), Err(ProbeError::Unauthorized));
        assert_eq!(refused.tunnel, TunnelView::Unknown);
        assert!(describe(&refused, 0).last().unwrap().contains("LOCAL_RAG_API_KEY"));
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_through_loopback() {
        assert_eq!(loopback_address("0.0.0.0:8001".parse().unwrap()), "127.0.0.1:8001".parse().unwrap());
        assert_eq!(loopback_address("[::]:8001".parse().unwrap()), "[::1]:8001".parse().unwrap());
        assert_eq!(loopback_address("127.0.0.2:9".parse().unwrap()), "127.0.0.2:9".parse().unwrap());
    }
}
