//! Messages of the tunnel between the agent and the cloud.
//!
//! The agent dials out to the cloud over a WebSocket (so the user needs no public address) and
//! the two exchange JSON text messages:
//!
//! ```text
//! agent → cloud  {"action":"hello","v":1,"agent_id":"…","version":"…","index":{"chunks":123,"docs":45}}
//!                {"action":"heartbeat","v":1,"seq":17,"stats":{…}}
//!                {"action":"reply","v":1,"id":"<request id>","ok":{"search":{…}}}
//!                {"action":"reply","v":1,"id":"<request id>","err":{"code":"…","message":"…"}}
//!                {"action":"cache_push","v":1,"tag":"AI效率","context":"…","sources":[…],"updated_at":…}
//! cloud → agent  {"type":"welcome","v":1,"heartbeat_secs":30}
//!                {"type":"request","v":1,"id":"…","deadline_ms":5000,"search":{…}}
//!                {"type":"error","v":1,"code":"…","message":"…"}
//! ```
//!
//! Agent messages are tagged by `action` because API Gateway routes on `$request.body.action`;
//! cloud messages by `type`. Every message carries the protocol version `v`. Decoding checks the
//! size limit before parsing and never panics: whatever arrives becomes a message or a
//! [`DecodeError`] the receiver can turn into an error reply.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, ErrorDetail, PROTOCOL_VERSION, SearchRequest, SearchResponse, limits};

/// What the agent sends to the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message on every connection: who the agent is and what it has indexed.
    Hello(Hello),
    /// Sent every `heartbeat_secs`; the cloud treats an agent as live while these arrive.
    Heartbeat(Heartbeat),
    /// The answer to one [`CloudMessage::Request`].
    Reply(Reply),
    /// Fresh context for one tag, for the cloud's offline fallback (sent after re-indexing).
    CachePush(CachePush),
}

/// What the cloud sends to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CloudMessage {
    /// The answer to `hello`: the connection is accepted, and how often to send heartbeats.
    Welcome(Welcome),
    /// A retrieval request the agent should answer with a [`Reply`] before its deadline.
    Request(Request),
    /// The cloud could not use a message the agent sent.
    Error(ErrorMessage),
}

/// `hello`: the agent introduces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Stable id of this agent installation (several agents may serve one user).
    pub agent_id: String,
    /// The agent's software version.
    pub version: String,
    /// Size of the agent's index.
    #[serde(default)]
    pub index: IndexSummary,
}

/// Size of an agent's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSummary {
    /// Indexed passages.
    pub chunks: u64,
    /// Indexed documents.
    pub docs: u64,
}

/// `heartbeat`: the agent is alive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increments with each heartbeat on a connection.
    pub seq: u64,
    /// Counters for the cloud's status page.
    #[serde(default)]
    pub stats: AgentStats,
}

/// Counters an agent reports with each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// Size of the index.
    #[serde(default)]
    pub index: IndexSummary,
    /// Requests answered on this connection.
    #[serde(default)]
    pub requests_served: u64,
    /// Requests currently being answered.
    #[serde(default)]
    pub in_flight: u64,
}

/// `reply`: the outcome of one request, exactly one of `ok` or `err`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The id of the request this answers.
    pub id: String,
    /// The answer, when the request succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<ReplyBody>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<ErrorDetail>,
}

impl Reply {
    /// A successful reply.
    pub fn ok(id: impl Into<String>, body: ReplyBody) -> Self {
        Self { id: id.into(), ok: Some(body), err: None }
    }

    /// A failed reply.
    pub fn err(id: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id: id.into(), ok: None, err: Some(ErrorDetail { code, message: message.into() }) }
    }

    /// The outcome as a `Result`; a reply with both or neither of `ok`/`err` is an error.
    pub fn into_result(self) -> Result<ReplyBody, ErrorDetail> {
        match (self.ok, self.err) {
            (Some(body), None) => Ok(body),
            (None, Some(error)) => Err(error),
            _ => Err(ErrorDetail {
                code: ErrorCode::InvalidRequest,
                message: "a reply must carry exactly one of `ok` and `err`".into(),
            }),
        }
    }

    /// Shrinks the reply until its encoding fits in `max_bytes`: first the context block is
    /// shortened, then the last results are dropped. Whatever remains is the best the agent
    /// found, so a trimmed reply is still useful; the caller sees nothing was cut silently
    /// because `context` ends with a marker.
    pub fn fit(&mut self, max_bytes: usize) {
        loop {
            let size = encoded_len(&AgentMessage::Reply(self.clone()));
            if size <= max_bytes {
                return;
            }
            let excess = size - max_bytes;
            let trimmed = match &mut self.ok {
                Some(ReplyBody::Search(response)) => {
                    trim_context(&mut response.context, excess) || response.results.pop().is_some()
                }
                None => self.err.as_mut().is_some_and(|error| trim_context(&mut error.message, excess)),
            };
            if !trimmed {
                return;
            }
        }
    }
}

/// Marker appended to a context block that was cut to fit a message.
pub const TRIMMED_MARKER: &str = "\n[…]";

/// Cuts at least `excess` bytes (JSON-escaped size is ≥ raw size, so this may take a few
/// rounds) off the end of `text`, at a character boundary. Returns false if nothing is left.
fn trim_context(text: &mut String, excess: usize) -> bool {
    let body = text.strip_suffix(TRIMMED_MARKER).unwrap_or(text).len();
    if body == 0 {
        return false;
    }
    let mut keep = body.saturating_sub(excess.max(64) + TRIMMED_MARKER.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    text.truncate(keep);
    text.push_str(TRIMMED_MARKER);
    true
}

/// The answer to a request, named after the request's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    /// Answer to [`RequestBody::Search`].
    Search(SearchResponse),
}

/// `cache_push`: context for one tag, kept by the cloud for when the agent is offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachePush {
    /// The tag (matched case-insensitively); `_all` is the context for untagged questions.
    pub tag: String,
    /// The context block.
    pub context: String,
    /// The cited documents, in citation order.
    #[serde(default)]
    pub sources: Vec<String>,
    /// When the agent built it, in Unix seconds.
    pub updated_at: i64,
}

/// `welcome`: the cloud accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// How often the agent must send a heartbeat.
    pub heartbeat_secs: u64,
}

/// `request`: answer this before `deadline_ms` passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Correlates the reply with this request.
    pub id: String,
    /// Milliseconds, from when the agent receives it, after which the cloud stops waiting.
    pub deadline_ms: u64,
    /// What to do.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What a request asks for, named by its kind (`"search":{…}`). A search answers with ranked
/// passages *and* the cited context block, which is all the cloud needs; the loopback API's
/// `/context/build` has no tunnel twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestBody {
    /// Ranked passages plus a context block.
    Search(SearchRequest),
}

/// `error`: the cloud could not use a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

/// Why a received text is not a usable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Larger than [`limits::MAX_MESSAGE_BYTES`]; not parsed at all.
    TooLarge {
        /// Size of the text.
        bytes: usize,
    },
    /// Not JSON, or not one of the messages.
    Malformed(String),
    /// A protocol version this build does not speak.
    UnsupportedVersion(u32),
}

impl DecodeError {
    /// The error code to put in an error reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            DecodeError::Malformed(_) => ErrorCode::InvalidJson,
            DecodeError::UnsupportedVersion(_) => ErrorCode::InvalidRequest,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { bytes } => {
                write!(f, "message is {bytes} bytes; the limit is {}", limits::MAX_MESSAGE_BYTES)
            }
            DecodeError::Malformed(reason) => write!(f, "malformed message: {reason}"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} is not supported; this side speaks {PROTOCOL_VERSION}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The envelope every message travels in: the version next to the tagged message.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    message: T,
}

/// Only the version, read first so a newer peer gets "unsupported version", not "malformed".
#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

impl AgentMessage {
    /// The message as a JSON text frame.
    pub fn encode(&self) -> String {
        encode(self)
    }

    /// Parses a text frame from the agent.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode(text)
    }
}

impl CloudMessage {
    /// The message as a JSON text frame.
    pub fn encode(&self) -> String {
        encode(self)
    }

    /// Parses a text frame from the cloud.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode(text)
    }
}

fn encode<T: Serialize>(message: &T) -> String {
    // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
    serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, message }).unwrap_or_default()
}

fn encoded_len(message: &AgentMessage) -> usize {
    encode(message).len()
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    if text.len() > limits::MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { bytes: text.len() });
    }
    let version: VersionOnly = serde_json::from_str(text).map_err(|error| DecodeError::Malformed(error.to_string()))?;
    if version.v != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version.v));
    }
    serde_json::from_str::<Envelope<T>>(text)
        .map(|envelope| envelope.message)
        .map_err(|error| DecodeError::Malformed(error.to_string()))
}

/// The `id` of a request that failed to decode, if one can be read, so the agent can still
/// answer it with an error instead of leaving the cloud to time out.
pub fn request_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    if text.len() > limits::MAX_MESSAGE_BYTES {
        return None;
    }
    serde_json::from_str::<IdOnly>(text).ok().map(|found| found.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SearchHit, SourceType};

    fn hit(n: usize) -> SearchHit {
        SearchHit {
            knowledge_id: format!("doc{n}#0"),
            title: format!("Doc {n}"),
            content_snippet: "snippet ".repeat(50),
            similarity_score: 0.5,
            source_type: SourceType::Hybrid,
            source: format!("notes/doc{n}.md"),
        }
    }

    #[test]
    fn every_message_carries_its_tag_and_version() {
        let hello = AgentMessage::Hello(Hello {
            agent_id: "laptop".into(),
            version: "0.1.0".into(),
            index: IndexSummary { chunks: 3, docs: 1 },
        });
        let json: serde_json::Value = serde_json::from_str(&hello.encode()).unwrap();
        assert_eq!(json["action"], "hello");
        assert_eq!(json["v"], PROTOCOL_VERSION);
        let welcome = CloudMessage::Welcome(Welcome { heartbeat_secs: 30 });
        assert_eq!(welcome.encode(), r#"{"v":1,"type":"welcome","heartbeat_secs":30}"#);
    }

    #[test]
    fn requests_name_their_kind() {
        let request = CloudMessage::Request(Request {
            id: "r1".into(),
            deadline_ms: 5000,
            body: RequestBody::Search(SearchRequest::new("rust")),
        });
        let json: serde_json::Value = serde_json::from_str(&request.encode()).unwrap();
        assert_eq!(json["search"]["query"], "rust");
        assert_eq!(CloudMessage::decode(&request.encode()).unwrap(), request);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let big =
            format!(r#"{{"v":1,"action":"heartbeat","seq":1,"pad":"{}"}}"#, "x".repeat(limits::MAX_MESSAGE_BYTES));
        assert!(matches!(AgentMessage::decode(&big), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(AgentMessage::decode("not json"), Err(DecodeError::Malformed(_))));
        assert!(matches!(AgentMessage::decode(r#"{"action":"hello"}"#), Err(DecodeError::Malformed(_))));
        assert!(matches!(AgentMessage::decode(r#"{"v":1,"action":"dance"}"#), Err(DecodeError::Malformed(_))));
        assert_eq!(AgentMessage::decode(r#"{"v":2,"action":"hello"}"#), Err(DecodeError::UnsupportedVersion(2)));
        assert_eq!(DecodeError::TooLarge { bytes: 1 }.code(), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn a_malformed_request_still_yields_its_id() {
        assert_eq!(request_id_of(r#"{"v":1,"type":"request","id":"r9","search":{}}"#).as_deref(), Some("r9"));
        assert_eq!(request_id_of("[]"), None);
    }

    #[test]
    fn replies_carry_exactly_one_outcome() {
        let reply = Reply::err("r1", ErrorCode::Timeout, "slow");
        assert_eq!(reply.clone().into_result().unwrap_err().code, ErrorCode::Timeout);
        let both = Reply { ok: Some(ReplyBody::Search(search_response("", 0))), ..reply };
        assert_eq!(both.into_result().unwrap_err().code, ErrorCode::InvalidRequest);
    }

    fn search_response(context: &str, hits: usize) -> SearchResponse {
        SearchResponse {
            success: true,
            results: (0..hits).map(hit).collect(),
            context: context.into(),
            processing_time: 0.0,
            fusion: None,
        }
    }

    #[test]
    fn oversized_replies_are_trimmed_to_fit() {
        let response = SearchResponse {
            success: true,
            results: (0..400).map(hit).collect(),
            context: "上下文 context ".repeat(20_000),
            processing_time: 0.01,
            fusion: None,
        };
        let mut reply = Reply::ok("r1", ReplyBody::Search(response));
        reply.fit(limits::MAX_MESSAGE_BYTES);
        let encoded = AgentMessage::Reply(reply.clone()).encode();
        assert!(encoded.len() <= limits::MAX_MESSAGE_BYTES, "{} bytes", encoded.len());
        let Some(ReplyBody::Search(trimmed)) = reply.ok else { panic!("still a search reply") };
        assert!(trimmed.context.ends_with(TRIMMED_MARKER));
        assert!(trimmed.results.len() < 400);

        let mut small = Reply::ok("r2", ReplyBody::Search(search_response("short", 1)));
        let before = small.clone();
        small.fit(limits::MAX_MESSAGE_BYTES);
        assert_eq!(small, before, "a reply that fits is left alone");
    }
}
