//! The cloud's end of the tunnel on AWS: the handlers of the API Gateway WebSocket API, and the
//! [`AgentLink`] that reaches agents through it.
//!
//! Every WebSocket event is a separate, stateless Lambda invocation, so nothing lives in memory:
//! connections are records in the store (`last_seen` decides liveness, because `$disconnect` is
//! only best-effort), requests go out with `PostToConnection`, and an agent's reply arrives as
//! a `reply` route event whose handler writes it to the store as `reply#<id>`, where the
//! waiting run polls for it until the deadline.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use aws_sdk_apigatewaymanagement::Client as ManagementClient;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use protocol::tunnel::{AgentMessage, CloudMessage, ErrorMessage, ReplyBody, Request, RequestBody, Welcome};
use protocol::{SearchRequest, SearchResponse};

use super::failover::{self, Attempt, Turns};
use crate::agent::{AgentLink, ConnectedAgent, LinkError, LinkStatus};
use crate::clock::Clock;
use crate::config::Secret;
use crate::context::cache::ContextCache;
use crate::store::{AgentConnection, Store, StoreError};

/// How long a reply stays in the store (the waiting run reads it within its deadline).
const REPLY_TTL_SECS: i64 = 300;

/// A connection not heard from for this long is gone whatever its record says: API Gateway
/// closes connections idle for 10 minutes, and an agent sends heartbeats far more often.
const STALE_AFTER_SECS: i64 = 15 * 60;

/// Everything the WebSocket handlers and the link share.
pub struct Tunnel {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    management: ManagementClient,
    tokens: Vec<Secret>,
    heartbeat: Duration,
    cache: ContextCache,
}

impl Tunnel {
    /// The tunnel over `store`, posting to connections with `management` (its endpoint is the
    /// stage's `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`), admitting agents
    /// with one of `tokens`, expecting heartbeats every `heartbeat`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        management: ManagementClient,
        tokens: Vec<Secret>,
        heartbeat: Duration,
        cache_ttl: Duration,
    ) -> Arc<Self> {
        let cache = ContextCache::new(store.clone(), clock.clone(), cache_ttl);
        Arc::new(Self { store, clock, management, tokens, heartbeat, cache })
    }

    /// The REQUEST authorizer of `$connect`: allows the upgrade only with a valid
    /// `Authorization: Bearer <token>` (compared in constant time, never logged).
    pub fn authorize(
        &self,
        request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> ApiGatewayCustomAuthorizerResponse {
        let presented =
            request.headers.get("authorization").and_then(|value| value.to_str().ok()).and_then(protocol::bearer_token);
        let admitted = presented.is_some_and(|token| Secret::matches_any(&self.tokens, token));
        if !admitted {
            tracing::warn!(present = presented.is_some(), "refused an agent connection: missing or wrong token");
        }
        let mut statement = IamPolicyStatement::default();
        statement.action = vec!["execute-api:Invoke".into()];
        statement.effect = if admitted { IamPolicyEffect::Allow } else { IamPolicyEffect::Deny };
        statement.resource = vec![request.method_arn.clone().unwrap_or_else(|| "*".into())];
        let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
        policy.version = Some("2012-10-17".into());
        policy.statement = vec![statement];
        let mut response = ApiGatewayCustomAuthorizerResponse::default();
        response.principal_id = Some("agent".into());
        response.policy_document = policy;
        response
    }

    /// The integration of every route: `$connect`, `$disconnect`, `hello`, `heartbeat`,
    /// `reply`, `cache_push` and `$default`.
    pub async fn handle(&self, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let Some(connection_id) = context.connection_id.as_deref() else {
            return response(400, "no connection id");
        };
        let route = context.route_key.as_deref().unwrap_or("$default");
        let now = self.clock.now();
        let result = match route {
            "$connect" => {
                let connected_at = if context.connected_at > 0 { context.connected_at / 1000 } else { now };
                let connection = AgentConnection {
                    connection_id: connection_id.to_owned(),
                    agent_id: String::new(),
                    connected_at,
                    last_seen: now,
                };
                self.store.put_connection(&connection).await.map_err(EventError::from)
            }
            "$disconnect" => self.store.remove_connection(connection_id).await.map_err(EventError::from),
            _ => self.on_message(connection_id, event.body.as_deref().unwrap_or_default(), now).await,
        };
        match result {
            Ok(()) => response(200, "ok"),
            Err(error) => {
                tracing::error!(route, connection_id, %error, "handling a WebSocket event failed");
                response(500, "internal error")
            }
        }
    }

    async fn on_message(&self, connection_id: &str, body: &str, now: i64) -> Result<(), EventError> {
        let message = match AgentMessage::decode(body) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(connection_id, %error, "an agent sent an unusable message");
                let reply = CloudMessage::Error(ErrorMessage { code: error.code(), message: error.to_string() });
                return Ok(self.post(connection_id, &reply).await?);
            }
        };
        let store = &self.store;
        if let AgentMessage::Hello(hello) = &message {
            tracing::info!(connection_id, agent_id = hello.agent_id, version = hello.version, "agent connected");
            // Welcome first, then record the agent id, which makes the connection eligible for
            // requests: the agent must not see a request before its welcome.
            let welcome = CloudMessage::Welcome(Welcome { heartbeat_secs: self.heartbeat.as_secs().max(1) });
            self.post(connection_id, &welcome).await?;
        }
        let known = match &message {
            AgentMessage::Hello(hello) => store.touch_connection(connection_id, Some(&hello.agent_id), now).await,
            _ => store.touch_connection(connection_id, None, now).await,
        }?;
        if !known {
            // `$connect` always records the connection first; if it is missing, the record was
            // removed (a late `$disconnect`, a 410): record it again rather than lose the agent.
            // Any message but hello proves the agent already had its welcome, so it is eligible.
            let connection = AgentConnection {
                connection_id: connection_id.to_owned(),
                agent_id: match &message {
                    AgentMessage::Hello(hello) => hello.agent_id.clone(),
                    _ => "(unknown)".into(),
                },
                connected_at: now,
                last_seen: now,
            };
            store.put_connection(&connection).await?;
        }
        match message {
            AgentMessage::Hello(_) | AgentMessage::Heartbeat(_) => Ok(()),
            AgentMessage::Reply(reply) => {
                let id = reply.id.clone();
                let text = AgentMessage::Reply(reply).encode();
                Ok(store.put_reply(&id, &text, now + REPLY_TTL_SECS).await?)
            }
            AgentMessage::CachePush(push) => {
                self.cache.remember_push(&push).await?;
                Ok(())
            }
        }
    }

    async fn post(&self, connection_id: &str, message: &CloudMessage) -> Result<(), PostError> {
        let data = Blob::new(message.encode().into_bytes());
        match self.management.post_to_connection().connection_id(connection_id).data(data).send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let service = error.as_service_error();
                Err(if service.is_some_and(|e| e.is_gone_exception()) {
                    PostError::Gone
                } else if service.is_some_and(|e| e.is_limit_exceeded_exception()) {
                    PostError::Busy
                } else if service.is_some_and(|e| e.is_payload_too_large_exception()) {
                    PostError::TooLarge
                } else {
                    PostError::Other(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&error).to_string())
                })
            }
        }
    }

    /// Live: said hello (so it has its welcome and can take requests) and was heard from within
    /// two heartbeats.
    fn live(&self, connection: &AgentConnection, now: i64) -> bool {
        !connection.agent_id.is_empty() && now - connection.last_seen <= 2 * self.heartbeat.as_secs() as i64
    }

    /// The live connections; records of connections that went silent long ago (their
    /// `$disconnect` never came) are deleted on the way, so the `agents` item cannot grow
    /// towards DynamoDB's 400 KB item limit.
    async fn live_connections(&self) -> Vec<AgentConnection> {
        let now = self.clock.now();
        let connections = match self.store.connections().await {
            Ok(connections) => connections,
            Err(error) => {
                tracing::warn!(%error, "cannot read the agents' connections");
                return Vec::new();
            }
        };
        let seen_before = now - STALE_AFTER_SECS;
        for stale in connections.iter().filter(|connection| connection.last_seen < seen_before) {
            match self.store.remove_stale_connection(&stale.connection_id, seen_before).await {
                Ok(true) => tracing::info!(connection_id = stale.connection_id, "forgot a connection silent for long"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not forget a stale connection"),
            }
        }
        connections.into_iter().filter(|connection| self.live(connection, now)).collect()
    }

    /// Sends `body` to live agents in turn until one answers, within `deadline` overall.
    pub async fn request(&self, body: RequestBody, deadline: Duration) -> Result<ReplyBody, LinkError> {
        let mut turns = GatewayTurns { tunnel: self, body, deadline, candidates: None, tried: HashSet::new() };
        failover::ask_in_turn(&mut turns, deadline).await
    }

    /// Polls the store for the reply to `id`, more slowly as time passes, for at most `patience`.
    async fn await_reply(&self, id: &str, patience: Duration) -> Option<protocol::tunnel::Reply> {
        let until = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(10);
        loop {
            match self.store.get_reply(id, self.clock.now()).await {
                Ok(Some(text)) => match AgentMessage::decode(&text) {
                    Ok(AgentMessage::Reply(reply)) => return Some(reply),
                    _ => {
                        tracing::warn!(id, "a stored reply is unreadable");
                        return None;
                    }
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(id, %error, "cannot read the reply"),
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return None;
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// One search's turns over the live connections, in random order (any live agent can answer,
/// and load spreads); connections made meanwhile are asked when the first ones are used up.
struct GatewayTurns<'a> {
    tunnel: &'a Tunnel,
    body: RequestBody,
    deadline: Duration,
    candidates: Option<Vec<AgentConnection>>,
    tried: HashSet<String>,
}

impl GatewayTurns<'_> {
    /// The next connection not yet tried, reading the live ones again when the list runs out.
    async fn next_connection(&mut self) -> Option<AgentConnection> {
        if let Some(connection) = self.candidates.as_mut().and_then(Vec::pop) {
            return Some(connection);
        }
        let mut fresh = self.tunnel.live_connections().await;
        fresh.retain(|connection| !self.tried.contains(&connection.connection_id));
        fastrand::shuffle(&mut fresh);
        let next = fresh.pop();
        self.candidates = Some(fresh);
        next
    }
}

impl Turns for GatewayTurns<'_> {
    async fn ask_next(&mut self, remaining: Duration) -> Attempt {
        let Some(connection) = self.next_connection().await else { return Attempt::NoneLeft };
        self.tried.insert(connection.connection_id.clone());
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let request = CloudMessage::Request(Request {
            id: id.clone(),
            deadline_ms: remaining.as_millis() as u64,
            body: self.body.clone(),
        });
        let connection_id = connection.connection_id.as_str();
        match self.tunnel.post(connection_id, &request).await {
            Ok(()) => {}
            Err(PostError::Gone) => {
                tracing::info!(connection_id, "the agent's connection is gone; trying another");
                let _ = self.tunnel.store.remove_connection(connection_id).await;
                return Attempt::Skipped;
            }
            Err(PostError::Busy) => {
                tracing::warn!(connection_id, "the agent's connection is saturated; trying another");
                return Attempt::Failed(LinkError::Agent("the agent is saturated (429)".into()));
            }
            Err(PostError::TooLarge) => return Attempt::GiveUp(LinkError::Agent("the request is over 128 KB".into())),
            Err(PostError::Other(error)) => {
                tracing::warn!(connection_id, %error, "PostToConnection failed");
                return Attempt::Failed(LinkError::Agent(error));
            }
        }
        let others_left = self.candidates.as_ref().is_some_and(|candidates| !candidates.is_empty());
        match self.tunnel.await_reply(&id, failover::patience(remaining, others_left)).await {
            Some(reply) => match reply.into_result() {
                Ok(body) => Attempt::Answered(body),
                Err(error) => Attempt::Failed(LinkError::from_reply(error, self.deadline)),
            },
            None => Attempt::Failed(LinkError::Timeout(self.deadline)),
        }
    }
}

/// Why a WebSocket event could not be handled (logged; API Gateway gets a 500).
#[derive(Debug, thiserror::Error)]
enum EventError {
    /// The connection registry or the mailbox failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The agent could not be written to.
    #[error("posting to the agent: {0}")]
    Post(#[from] PostError),
}

/// Why `PostToConnection` failed, as far as the link cares.
#[derive(Debug)]
enum PostError {
    /// 410: the connection no longer exists.
    Gone,
    /// 429: too many requests, or the client's buffer is full.
    Busy,
    /// 413: over 128 KB.
    TooLarge,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Gone => f.write_str("the connection is gone (410)"),
            PostError::Busy => f.write_str("too many messages (429)"),
            PostError::TooLarge => f.write_str("the message is over 128 KB (413)"),
            PostError::Other(error) => f.write_str(error),
        }
    }
}

impl std::error::Error for PostError {}

fn response(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = Some(Body::Text(body.to_owned()));
    response
}

/// The tunnel as the pipeline's [`AgentLink`].
#[async_trait]
impl AgentLink for Tunnel {
    async fn is_live(&self) -> bool {
        !self.live_connections().await.is_empty()
    }

    async fn search(&self, request: &SearchRequest, deadline: Duration) -> Result<SearchResponse, LinkError> {
        let ReplyBody::Search(response) = self.request(RequestBody::Search(request.clone()), deadline).await?;
        Ok(response)
    }

    async fn status(&self) -> LinkStatus {
        let now = self.clock.now();
        let agents: Vec<ConnectedAgent> = self
            .live_connections()
            .await
            .into_iter()
            .map(|connection| ConnectedAgent {
                agent_id: connection.agent_id,
                version: None,
                seen_secs_ago: u64::try_from(now - connection.last_seen).unwrap_or(0),
            })
            .collect();
        LinkStatus { kind: "api-gateway".into(), live_agents: agents.len(), agents }
    }
}
