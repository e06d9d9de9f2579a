//! The self-hosted hub: the agents connected to this process, and the [`AgentLink`] over them.
//!
//! Each WebSocket connection registers an outbox here and feeds in what its agent sends. A
//! search picks the live agent with the fewest requests in flight, sends it a request and waits
//! for the reply with the same id. If that agent's connection drops, its requests fail at once
//! and the search moves on to the next live agent; if it is merely slow, the search gives it half
//! the remaining time when another agent could still be asked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use protocol::tunnel::{AgentStats, CloudMessage, Hello, Reply, ReplyBody, Request, RequestBody};
use protocol::{ErrorDetail, SearchRequest, SearchResponse};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::failover::{self, Attempt, Turns};
use crate::agent::{AgentLink, ConnectedAgent, LinkError, LinkStatus};

/// Identifies one connection (an agent that reconnects gets a new one).
pub type ConnectionId = u64;

/// How many messages may wait in one connection's outbox before the agent counts as stuck.
const OUTBOX_CAPACITY: usize = 64;

/// What a pending request learns.
type Outcome = Result<ReplyBody, ErrorDetail>;

/// The connected agents and the requests waiting for them.
pub struct Hub {
    heartbeat: Duration,
    next_id: AtomicU64,
    accepted: AtomicU64,
    /// Random per process, so request ids never repeat across restarts.
    id_prefix: u64,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    agents: HashMap<ConnectionId, Agent>,
    pending: HashMap<String, Pending>,
}

struct Agent {
    outbox: mpsc::Sender<CloudMessage>,
    hello: Option<Hello>,
    stats: AgentStats,
    last_seen: Instant,
    in_flight: usize,
}

struct Pending {
    connection: ConnectionId,
    reply: oneshot::Sender<Outcome>,
}

/// What `/status` shows about one agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentSummary {
    /// The agent's own id, from its `hello`.
    pub agent_id: String,
    /// Its software version.
    pub version: String,
    /// Seconds since it was last heard from.
    pub seen_secs_ago: u64,
    /// Requests it is answering now.
    pub in_flight: usize,
    /// Its latest counters.
    pub stats: AgentStats,
}

impl Hub {
    /// A hub whose agents must send a heartbeat every `heartbeat`; an agent is live while it was
    /// heard from within two intervals.
    pub fn new(heartbeat: Duration) -> Arc<Self> {
        Arc::new(Self {
            heartbeat,
            next_id: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            id_prefix: fastrand::u64(..),
            state: Mutex::new(HubState::default()),
        })
    }

    /// The heartbeat interval told to agents in `welcome`.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection whose messages to the agent go to the returned receiver. It becomes
    /// eligible for requests once its `hello` arrives.
    pub fn connect(&self) -> (ConnectionId, mpsc::Receiver<CloudMessage>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let (outbox, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        let agent =
            Agent { outbox, hello: None, stats: AgentStats::default(), last_seen: Instant::now(), in_flight: 0 };
        self.state().agents.insert(id, agent);
        (id, receiver)
    }

    /// Connections accepted since start (reconnects and rotations each count).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Records the agent's `hello`.
    pub fn hello(&self, connection: ConnectionId, hello: Hello) {
        if let Some(agent) = self.state().agents.get_mut(&connection) {
            agent.stats.index = hello.index;
            agent.hello = Some(hello);
            agent.last_seen = Instant::now();
        }
    }

    /// Records a sign of life (a heartbeat or any other message).
    pub fn seen(&self, connection: ConnectionId, stats: Option<AgentStats>) {
        if let Some(agent) = self.state().agents.get_mut(&connection) {
            agent.last_seen = Instant::now();
            if let Some(stats) = stats {
                agent.stats = stats;
            }
        }
    }

    /// Hands a reply to the search waiting for it; replies nobody waits for (late, or for a
    /// request that was already answered) are dropped. Returns whether someone was waiting.
    pub fn reply(&self, connection: ConnectionId, reply: Reply) -> bool {
        let mut state = self.state();
        let waiting = match state.pending.get(&reply.id) {
            // Only the connection the request went to may answer it.
            Some(pending) if pending.connection == connection => state.pending.remove(&reply.id),
            _ => None,
        };
        if let Some(agent) = state.agents.get_mut(&connection) {
            agent.last_seen = Instant::now();
            if waiting.is_some() {
                agent.in_flight = agent.in_flight.saturating_sub(1);
            }
        }
        drop(state);
        match waiting {
            Some(pending) => pending.reply.send(reply.into_result()).is_ok(),
            None => false,
        }
    }

    /// Removes a closed connection; the searches waiting on it move on to another agent.
    pub fn disconnect(&self, connection: ConnectionId) {
        let mut state = self.state();
        state.agents.remove(&connection);
        // Dropping the senders wakes the waiting searches with "connection gone".
        state.pending.retain(|_, pending| pending.connection != connection);
    }

    /// Whether the connection has been heard from recently enough to count as live.
    pub fn is_connection_live(&self, connection: ConnectionId) -> bool {
        self.state().agents.get(&connection).is_some_and(|agent| self.agent_is_live(agent, Instant::now()))
    }

    fn agent_is_live(&self, agent: &Agent, now: Instant) -> bool {
        agent.hello.is_some() && now.duration_since(agent.last_seen) <= self.heartbeat * 2
    }

    /// The live agents, for status pages.
    pub fn agents(&self) -> Vec<AgentSummary> {
        let now = Instant::now();
        let state = self.state();
        let mut agents: Vec<AgentSummary> = state
            .agents
            .values()
            .filter(|agent| self.agent_is_live(agent, now))
            .filter_map(|agent| {
                let hello = agent.hello.as_ref()?;
                Some(AgentSummary {
                    agent_id: hello.agent_id.clone(),
                    version: hello.version.clone(),
                    seen_secs_ago: now.duration_since(agent.last_seen).as_secs(),
                    in_flight: agent.in_flight,
                    stats: agent.stats,
                })
            })
            .collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        agents
    }

    /// Picks the live agent with the fewest requests in flight among those not yet tried,
    /// queues the request on it, and returns how to wait for the reply.
    fn dispatch(
        &self,
        tried: &HashSet<ConnectionId>,
        body: &RequestBody,
        deadline: Duration,
    ) -> Option<(ConnectionId, String, usize, oneshot::Receiver<Outcome>)> {
        let now = Instant::now();
        let mut state = self.state();
        let mut candidates: Vec<(usize, ConnectionId)> = state
            .agents
            .iter()
            .filter(|(id, agent)| !tried.contains(id) && self.agent_is_live(agent, now))
            .map(|(id, agent)| (agent.in_flight, *id))
            .collect();
        // Ties go to a random agent so load spreads over equally idle agents.
        fastrand::shuffle(&mut candidates);
        candidates.sort_by_key(|(in_flight, _)| *in_flight);
        let untried = candidates.len();
        for (_, connection) in candidates {
            let id = format!("{:016x}-{}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
            let message = CloudMessage::Request(Request {
                id: id.clone(),
                deadline_ms: deadline.as_millis() as u64,
                body: body.clone(),
            });
            let Some(agent) = state.agents.get_mut(&connection) else { continue };
            // A full outbox means the agent is not keeping up: ask another one.
            if agent.outbox.try_send(message).is_err() {
                continue;
            }
            agent.in_flight += 1;
            let (reply, receiver) = oneshot::channel();
            state.pending.insert(id.clone(), Pending { connection, reply });
            return Some((connection, id, untried, receiver));
        }
        None
    }

    /// Forgets a request that timed out, so a late reply is dropped.
    fn abandon(&self, connection: ConnectionId, id: &str) {
        let mut state = self.state();
        if state.pending.remove(id).is_some()
            && let Some(agent) = state.agents.get_mut(&connection)
        {
            agent.in_flight = agent.in_flight.saturating_sub(1);
        }
    }

    /// Sends `body` to live agents in turn until one answers, within `deadline` overall.
    pub async fn request(&self, body: RequestBody, deadline: Duration) -> Result<ReplyBody, LinkError> {
        let mut turns = HubTurns { hub: self, body, deadline, tried: HashSet::new() };
        failover::ask_in_turn(&mut turns, deadline).await
    }
}

/// One search's turns over the hub's agents: the least busy untried agent next.
struct HubTurns<'a> {
    hub: &'a Hub,
    body: RequestBody,
    deadline: Duration,
    tried: HashSet<ConnectionId>,
}

impl Turns for HubTurns<'_> {
    async fn ask_next(&mut self, remaining: Duration) -> Attempt {
        let Some((connection, id, untried, receiver)) = self.hub.dispatch(&self.tried, &self.body, remaining) else {
            return Attempt::NoneLeft;
        };
        let patience = failover::patience(remaining, untried > 1);
        self.tried.insert(connection);
        match tokio::time::timeout(patience, receiver).await {
            Ok(Ok(Ok(reply))) => Attempt::Answered(reply),
            Ok(Ok(Err(error))) => {
                tracing::warn!(connection, code = ?error.code, "the agent could not answer: {}", error.message);
                Attempt::Failed(LinkError::from_reply(error, self.deadline))
            }
            Ok(Err(_gone)) => {
                tracing::info!(connection, "the agent's connection closed during a request; trying another");
                Attempt::Skipped
            }
            Err(_elapsed) => {
                self.hub.abandon(connection, &id);
                tracing::warn!(connection, ?patience, "the agent did not answer in time");
                Attempt::Failed(LinkError::Timeout(self.deadline))
            }
        }
    }
}

#[async_trait]
impl AgentLink for Hub {
    async fn is_live(&self) -> bool {
        let now = Instant::now();
        self.state().agents.values().any(|agent| self.agent_is_live(agent, now))
    }

    async fn search(&self, request: &SearchRequest, deadline: Duration) -> Result<SearchResponse, LinkError> {
        let ReplyBody::Search(response) = self.request(RequestBody::Search(request.clone()), deadline).await?;
        Ok(response)
    }

    async fn status(&self) -> LinkStatus {
        let agents: Vec<ConnectedAgent> = self
            .agents()
            .into_iter()
            .map(|agent| ConnectedAgent {
                agent_id: agent.agent_id,
                version: Some(agent.version),
                seen_secs_ago: agent.seen_secs_ago,
            })
            .collect();
        LinkStatus { kind: "websocket".into(), live_agents: agents.len(), agents }
    }
}
