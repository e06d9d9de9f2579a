//! What the tunnel is doing right now, for the HTTP API's `/stats` and so for
//! `local-agent service status`: the supervisor and the sessions write it, readers take a copy.
//!
//! "Connected" counts live sessions rather than holding a flag, because during a rotation the
//! new session starts before the old one ends: a flag cleared by the old session's end would
//! report the agent offline while it is online.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Shared tunnel state; cheap to update, one short lock per event.
#[derive(Debug, Default)]
pub struct TunnelStatus {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Since when the cloud has been refusing the token (cleared by a session).
    refused_since: Option<u64>,
    /// Why the tunnel stopped for good, if it did.
    stopped: Option<String>,
    live_sessions: u32,
    connected_since: Option<u64>,
    last_heartbeat: Option<u64>,
    last_error: Option<String>,
    last_error_at: Option<u64>,
    connections: u64,
}

/// What the tunnel is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TunnelState {
    /// A session is up.
    Connected,
    /// Dialling, or waiting to dial again after a failure.
    #[default]
    Connecting,
    /// The cloud refuses the agent token; retried slowly while the local API keeps serving.
    Refused,
    /// Stopped for good: the configuration cannot work (see `last_error`).
    Stopped,
}

/// A copy of the tunnel state (times in seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TunnelSnapshot {
    /// In one word.
    #[serde(default)]
    pub state: TunnelState,
    /// Whether a session with the cloud is up.
    pub connected: bool,
    /// Since when the cloud has been refusing the token.
    #[serde(default)]
    pub refused_since: Option<u64>,
    /// When the current connection was opened.
    pub connected_since: Option<u64>,
    /// When the last heartbeat was sent to the cloud.
    pub last_heartbeat: Option<u64>,
    /// Why the last dial failed or the last connection was lost.
    pub last_error: Option<String>,
    /// When that happened.
    pub last_error_at: Option<u64>,
    /// Connections opened since the agent started (rotations and reconnects included).
    pub connections: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl TunnelStatus {
    /// A session with the cloud started (after `welcome`).
    pub fn session_started(&self) {
        self.update(|state| {
            state.live_sessions += 1;
            state.connections += 1;
            state.connected_since = Some(now());
            state.refused_since = None;
        });
    }

    /// A session ended; `lost` says why when it was not a planned drain.
    pub fn session_ended(&self, lost: Option<&str>) {
        self.update(|state| {
            state.live_sessions = state.live_sessions.saturating_sub(1);
            if state.live_sessions == 0 {
                state.connected_since = None;
            }
            if let Some(reason) = lost {
                state.last_error = Some(format!("connection lost: {reason}"));
                state.last_error_at = Some(now());
            }
        });
    }

    /// A heartbeat went out.
    pub fn heartbeat_sent(&self) {
        self.update(|state| state.last_heartbeat = Some(now()));
    }

    /// Dialling failed.
    pub fn dial_failed(&self, error: &str) {
        self.update(|state| {
            state.last_error = Some(error.to_owned());
            state.last_error_at = Some(now());
        });
    }

    /// The cloud refused the token.
    pub fn refused(&self, error: &str) {
        self.update(|state| {
            let at = now();
            state.refused_since.get_or_insert(at);
            state.last_error = Some(error.to_owned());
            state.last_error_at = Some(at);
        });
    }

    /// The tunnel stopped for good.
    pub fn stopped(&self, error: &str) {
        self.update(|state| {
            state.stopped = Some(error.to_owned());
            state.last_error = Some(error.to_owned());
            state.last_error_at = Some(now());
        });
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> TunnelSnapshot {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let connected = state.live_sessions > 0;
        TunnelSnapshot {
            state: if connected {
                TunnelState::Connected
            } else if state.stopped.is_some() {
                TunnelState::Stopped
            } else if state.refused_since.is_some() {
                TunnelState::Refused
            } else {
                TunnelState::Connecting
            },
            connected,
            refused_since: state.refused_since,
            connected_since: state.connected_since,
            last_heartbeat: state.last_heartbeat,
            last_error: state.last_error.clone(),
            last_error_at: state.last_error_at,
            connections: state.connections,
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_follows_live_sessions_through_a_rotation() {
        let status = TunnelStatus::default();
        assert!(!status.snapshot().connected);
        status.dial_failed("cannot reach the cloud: connection refused");
        let snapshot = status.snapshot();
        assert_eq!(snapshot.last_error.as_deref(), Some("cannot reach the cloud: connection refused"));
        assert!(snapshot.last_error_at.is_some());

        status.session_started();
        status.heartbeat_sent();
        // Rotation: the new session is up before the old one drains.
        status.session_started();
        status.session_ended(None);
        let snapshot = status.snapshot();
        assert!(snapshot.connected, "still connected through the new session");
        assert!(snapshot.last_heartbeat.is_some() && snapshot.connected_since.is_some());
        assert_eq!(snapshot.connections, 2);

        status.session_ended(Some("closed by the cloud"));
        let snapshot = status.snapshot();
        assert!(!snapshot.connected);
        assert_eq!(snapshot.state, TunnelState::Connecting);
        assert_eq!(snapshot.connected_since, None);
        assert_eq!(snapshot.last_error.as_deref(), Some("connection lost: closed by the cloud"));
    }

    #[test]
    fn a_refused_token_shows_until_a_session_starts() {
        let status = TunnelStatus::default();
        status.refused("the cloud refused the agent token (HTTP 403)");
        let first = status.snapshot();
        assert_eq!(first.state, TunnelState::Refused);
        status.refused("the cloud refused the agent token (HTTP 403)");
        assert_eq!(status.snapshot().refused_since, first.refused_since, "since the first refusal");
        status.session_started();
        let snapshot = status.snapshot();
        assert_eq!((snapshot.state, snapshot.refused_since), (TunnelState::Connected, None));
        status.session_ended(None);
        status.stopped("CLOUD_URL is not usable");
        assert_eq!(status.snapshot().state, TunnelState::Stopped);
    }
}
