//! The seam to the user's local agent: ask it for context, with a deadline.
//!
//! The tunnel (self-hosted WebSocket hub, or API Gateway) supplies the real links; until an
//! agent connects, [`OfflineLink`] says so at once and the context ladder falls back.

use std::time::Duration;

use async_trait::async_trait;
use protocol::{SearchRequest, SearchResponse};
use serde::Serialize;

/// Why the agent gave no context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No agent is connected (no heartbeat seen recently).
    #[error("no agent is connected")]
    Offline,
    /// The agent did not answer within the deadline.
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The agent answered with an error.
    #[error("the agent failed: {0}")]
    Agent(String),
}

impl LinkError {
    /// The agent's own error reply to a request that had `deadline`: its timeout (it ran out
    /// of the time the request allowed, a moment before the cloud's timer would) is the same
    /// timeout, whichever side noticed first.
    pub fn from_reply(error: protocol::ErrorDetail, deadline: Duration) -> Self {
        match error.code {
            protocol::ErrorCode::Timeout => Self::Timeout(deadline),
            _ => Self::Agent(error.message),
        }
    }
}

/// What a link can say about the agents behind it (for `/status` and `/rag/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LinkStatus {
    /// Kind of link (`offline`, `websocket`, `api-gateway`).
    pub kind: String,
    /// Agents seen alive.
    pub live_agents: usize,
    /// Those agents, by id.
    pub agents: Vec<ConnectedAgent>,
}

/// One live agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConnectedAgent {
    /// The agent's own id, from its `hello` (empty before it said hello).
    pub agent_id: String,
    /// Its software version, where the link knows it.
    pub version: Option<String>,
    /// Seconds since it was last heard from.
    pub seen_secs_ago: u64,
}

/// A way to reach the user's agent.
#[async_trait]
pub trait AgentLink: Send + Sync {
    /// Whether an agent has been seen recently; cheap, no round trip.
    async fn is_live(&self) -> bool;

    /// Sends a search to a live agent and waits at most `deadline` for its reply.
    async fn search(&self, request: &SearchRequest, deadline: Duration) -> Result<SearchResponse, LinkError>;

    /// What the link knows about its agents.
    async fn status(&self) -> LinkStatus;
}

/// The link used while no tunnel is configured: always offline.
#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineLink;

#[async_trait]
impl AgentLink for OfflineLink {
    async fn is_live(&self) -> bool {
        false
    }

    async fn search(&self, _request: &SearchRequest, _deadline: Duration) -> Result<SearchResponse, LinkError> {
        Err(LinkError::Offline)
    }

    async fn status(&self) -> LinkStatus {
        LinkStatus { kind: "offline".into(), ..LinkStatus::default() }
    }
}

/// The behaviour every link must have; the tunnel's links run these too.
pub mod contract {
    use std::time::Instant;

    use super::*;

    /// A link with no live agent says so without waiting for the deadline.
    pub async fn offline_links_fail_fast(link: &dyn AgentLink) {
        assert!(!link.is_live().await);
        let started = Instant::now();
        let error = link.search(&SearchRequest::new("anything"), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(error, LinkError::Offline);
        assert!(started.elapsed() < Duration::from_secs(1), "an offline link must not wait out the deadline");
        assert_eq!(link.status().await.live_agents, 0);
    }

    /// A search never takes much longer than its deadline, whatever the agent does.
    pub async fn searches_respect_their_deadline(link: &dyn AgentLink, deadline: Duration) {
        let started = Instant::now();
        let _ = link.search(&SearchRequest::new("anything"), deadline).await;
        assert!(started.elapsed() < deadline + Duration::from_millis(500), "took {:?}", started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_offline_link_meets_the_contract() {
        contract::offline_links_fail_fast(&OfflineLink).await;
        contract::searches_respect_their_deadline(&OfflineLink, Duration::from_millis(100)).await;
    }
}
