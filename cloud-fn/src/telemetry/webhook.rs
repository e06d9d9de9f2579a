//! Self-hosted alerts as webhook messages (`ALERT_WEBHOOK_URL`): a JSON POST whose fields
//! chat and push services read — `text` (Slack, Mattermost, Rocket.Chat), `content` (Discord),
//! `title` and `message` (ntfy's templates, Gotify) — plus `condition`, `state` and `at` for
//! anything that routes on them.
//!
//! [`Alerts`] is the service: it counts every run (a [`RunObserver`]), looks at the live agents
//! on each [`Alerts::check`], and sends what its [`Monitor`] says is due. The URL is a secret
//! (a Slack or Discord webhook URL is its own credential): it is never logged, and neither are
//! errors that would carry it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use protocol::Secret;
use serde_json::json;

use super::alerts::{Monitor, Notice, Rules, State};
use super::{RunFigures, RunObserver};
use crate::clock::Clock;
use crate::pipeline::{PipelineError, RunReport};

/// How long a receiver may take to accept a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a message was not delivered (never with the URL in it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AlertError(String);

/// Where messages go.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one message.
    async fn send(&self, notice: &Notice) -> Result<(), AlertError>;
}

/// POSTs JSON to a webhook URL.
pub struct WebhookNotifier {
    http: reqwest::Client,
    url: Secret,
}

impl WebhookNotifier {
    /// A notifier for `url`, which must be `https://` (or `http://` to this machine, unless
    /// `allow_insecure`).
    pub fn new(url: Secret, allow_insecure: bool) -> Result<Self, AlertError> {
        use protocol::cleartext::{CleartextError, Transport, check_url};
        check_url(url.expose(), Transport::Http, allow_insecure).map_err(|error| {
            AlertError(match error {
                CleartextError::Unparseable { .. } => "ALERT_WEBHOOK_URL is not a URL".into(),
                CleartextError::Scheme { .. } => "ALERT_WEBHOOK_URL must be an https:// URL".into(),
                CleartextError::Cleartext { host, .. } => format!(
                    "ALERT_WEBHOOK_URL would send alerts unencrypted to {host}; use https://, or set \
                     ALLOW_INSECURE_HTTP if a tunnel or VPN encrypts the path"
                ),
            })
        })?;
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A redirect would be followed with the body to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| AlertError(format!("cannot create the HTTP client: {error}")))?;
        Ok(Self { http, url })
    }
}

/// The body of a message.
pub fn payload(notice: &Notice) -> serde_json::Value {
    let title = match notice.state {
        State::Firing => "notion-llm: alert",
        State::Resolved => "notion-llm: resolved",
    };
    let text = format!("{title}: {}", notice.text);
    json!({
        "text": text,
        "content": text,
        "title": title,
        "message": notice.text,
        "condition": notice.condition,
        "state": notice.state,
        "at": chrono::DateTime::from_timestamp(notice.at, 0).map(|at| at.to_rfc3339()),
    })
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, notice: &Notice) -> Result<(), AlertError> {
        let response = self
            .http
            .post(self.url.expose())
            .json(&payload(notice))
            .send()
            .await
            .map_err(|error| AlertError(format!("the webhook did not answer: {}", error.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AlertError(format!("the webhook answered HTTP {}", status.as_u16())))
        }
    }
}

/// The alert service of `cloud-fn serve`.
pub struct Alerts {
    monitor: Mutex<Monitor>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    /// After a failed delivery, nothing is tried before this time.
    retry_at: Mutex<i64>,
}

impl Alerts {
    /// Alerts by `rules`, sent through `notifier`, timed by `clock`.
    pub fn new(rules: Rules, notifier: Arc<dyn Notifier>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let monitor = Mutex::new(Monitor::new(rules, clock.now()));
        Arc::new(Self { monitor, notifier, clock, retry_at: Mutex::new(i64::MIN) })
    }

    fn monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes the live agents and sends what is due; returns what was delivered.
    pub async fn check(&self, live_agents: usize) -> Vec<Notice> {
        let now = self.clock.now();
        let due = {
            let mut monitor = self.monitor();
            monitor.agents(now, live_agents);
            monitor.due(now)
        };
        let mut retry_at = *self.retry_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if due.is_empty() || now < retry_at {
            return Vec::new();
        }
        let mut delivered = Vec::new();
        for notice in due {
            match self.notifier.send(&notice).await {
                Ok(()) => {
                    tracing::info!(condition = ?notice.condition, state = ?notice.state, "alert sent: {}", notice.text);
                    self.monitor().sent(&notice);
                    delivered.push(notice);
                }
                Err(error) => {
                    tracing::warn!(%error, condition = ?notice.condition, "could not send an alert; trying again in a minute");
                    retry_at = now + 60;
                    break;
                }
            }
        }
        *self.retry_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = retry_at;
        delivered
    }

    /// Checks every `every`, with the live agents `live_agents` counts, forever.
    pub async fn watch(self: Arc<Self>, every: Duration, live_agents: impl Fn() -> usize + Send) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check(live_agents()).await;
        }
    }
}

impl RunObserver for Alerts {
    fn run_ended(&self, result: &Result<RunReport, PipelineError>) {
        let figures = RunFigures::of(result);
        if !figures.is_empty() {
            self.monitor().record_run(self.clock.now(), &figures);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::alerts::Condition;

    #[test]
    fn the_body_speaks_to_slack_discord_and_ntfy() {
        let notice = Notice {
            condition: Condition::AgentOffline,
            state: State::Firing,
            text: "No agent has been connected for 5 min".into(),
            at: 1_764_547_200,
        };
        let body = payload(&notice);
        assert_eq!(body["text"], "notion-llm: alert: No agent has been connected for 5 min");
        assert_eq!(body["content"], body["text"]);
        assert_eq!(body["message"], "No agent has been connected for 5 min");
        assert_eq!(body["condition"], "agent_offline");
        assert_eq!(body["state"], "firing");
        assert_eq!(body["at"], "2025-12-01T00:00:00+00:00");
    }

    #[test]
    fn a_webhook_url_in_clear_text_is_refused_without_repeating_it() {
        let url = "http://hooks.example.com/services/T000/B000/very-secret";
        let error = WebhookNotifier::new(Secret::new(url), false).err().expect("refused");
        assert!(!error.to_string().contains("very-secret"), "{error}");
        assert!(error.to_string().contains("hooks.example.com"), "{error}");
        assert!(WebhookNotifier::new(Secret::new("not a url"), false).is_err());
        assert!(WebhookNotifier::new(Secret::new("http://127.0.0.1:9/hook"), false).is_ok());
    }
}
