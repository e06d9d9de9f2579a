//! The cloud's end of the tunnel to the user's agents.
//!
//! Agents dial out to the cloud, so the user's PC needs no public address. Self-hosted, they
//! connect to `GET /agent` on `cloud-fn serve` ([`websocket`]) and the in-process [`hub::Hub`]
//! is the [`crate::agent::AgentLink`]: it tracks live agents by heartbeat, correlates requests
//! with replies, and fails over between agents ([`failover`] is the rule both links follow). [`tls`] serves the same routes over rustls when
//! the server is not behind a TLS-terminating proxy.
//!
//! On AWS, agents connect to an API Gateway WebSocket API instead; [`api_gateway::Tunnel`]
//! holds the handlers of its routes and is the `AgentLink`, with connections and replies kept
//! in the store because every event is a separate Lambda invocation.

pub mod api_gateway;
pub mod failover;
pub mod hub;
pub mod tls;
pub mod websocket;
