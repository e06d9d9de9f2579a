//! Wire types shared by `cloud-fn` and `local-agent`.
//!
//! The agent answers retrieval requests in two places: on its loopback HTTP API (whose JSON
//! contract is kept compatible with the original Python system) and over the tunnel to the
//! cloud. Both carry the same request and response shapes, defined here once:
//!
//! - [`SearchRequest`] / [`SearchResponse`]: ranked passages plus a ready-to-use context block;
//! - [`ContextRequest`] / [`ContextResponse`]: only the context block, sized for a prompt;
//! - [`ErrorResponse`]: the body of every failed request.
//!
//! The [`tunnel`] module holds the messages the agent and the cloud exchange over the WebSocket.
//!
//! Requests are validated with [`SearchRequest::validate`] / [`ContextRequest::validate`], so
//! both transports reject the same bad input with the same [`ErrorCode`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod cleartext;
pub mod console;
pub mod private_fs;
mod secret;
pub mod tunnel;

pub use secret::{Secret, bearer_token};

/// Version of the wire protocol; sent in the tunnel's `hello` and checked by the cloud.
pub const PROTOCOL_VERSION: u32 = 1;

/// Size limits that both sides enforce.
pub mod limits {
    /// Largest WebSocket frame API Gateway accepts (32 KB).
    pub const MAX_FRAME_BYTES: usize = 32 * 1024;
    /// Largest WebSocket message API Gateway accepts (128 KB).
    pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
    /// Longest query accepted, in characters: a question, not a document.
    pub const MAX_QUERY_CHARS: usize = 4_000;
    /// Most results one search may ask for.
    pub const MAX_RESULTS: usize = 100;
    /// Most tags one request may name.
    pub const MAX_TAGS: usize = 32;
    /// Largest context one request may ask for, in characters.
    pub const MAX_CONTEXT_CHARS: usize = 64 * 1024;
}

/// Which retriever(s) a search uses. Hybrid is the product; the single modes exist for
/// diagnosis and benchmarks ("is the keyword side or the semantic side missing this?").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// BM25 and dense search, fused.
    #[default]
    Hybrid,
    /// BM25 only.
    Keyword,
    /// Dense (embedding) search only.
    Semantic,
}

/// `POST /search`: find the passages most relevant to `query`.
/// Unknown fields are ignored, as the original API did, so older clients keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchRequest {
    /// The question or keywords, in any language the indexes understand.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        example = "how do I bake sourdough"
    )]
    pub query: String,
    /// Documents carrying at least one of these tags (case-insensitive) rank first; the others
    /// fill the places left, so tags narrow and never empty the results.
    #[serde(default)]
    #[schema(max_items = 32, value_type = Vec<Tag>)]
    pub tags: Vec<String>,
    /// At most this many results, one per document (1..=100).
    #[serde(default = "default_max_results", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 100, default = 5)]
    pub max_results: usize,
    /// Drop results whose `similarity_score` is below this (0..=1).
    #[serde(default = "default_similarity_threshold")]
    #[schema(minimum = 0.0, maximum = 1.0, default = 0.3)]
    pub similarity_threshold: f32,
    /// Retriever(s) to use; hybrid unless asked otherwise.
    #[serde(default)]
    pub mode: SearchMode,
    /// Only documents from these kinds of source (every kind when empty). Unlike tags, this
    /// is a filter: a person asked for, say, their Notion knowledge only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 2)]
    pub sources: Vec<SourceKind>,
}

/// Where an indexed document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A local folder of notes (Markdown, text).
    Notes,
    /// A Notion database the agent syncs.
    Notion,
}

/// The OpenAPI pattern of text that must not be blank: at least one character that is not
/// white space as Rust's `trim` (which the validation uses) sees it. Spelled out, because `\S`
/// means something else in each regex dialect a client may check it with (U+0085 is white
/// space to Rust and not to ECMAScript; U+001C is to Python and not to Rust).
const NOT_BLANK: &str = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// A tag as requests name it: any text but blank (compared case-insensitively). Only the
/// OpenAPI document knows this type; requests hold plain strings.
struct Tag;

impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .pattern(Some(NOT_BLANK))
            .description(Some("A tag: any text but blank, compared case-insensitively."))
            .into()
    }
}

impl ToSchema for Tag {}

/// A count as JSON may write it: `5`, or `5.0` (JSON Schema and JavaScript do not tell the two
/// apart, so a client may well send the latter); `5.5` and `-1` are refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match number.as_u64() {
        Some(whole) => Some(whole),
        None => number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && *value >= 0.0 && *value <= u64::MAX as f64)
            .map(|value| value as u64),
    };
    whole
        .and_then(|whole| usize::try_from(whole).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number of at least 0, got {number}")))
}

fn default_max_results() -> usize {
    5
}

fn default_similarity_threshold() -> f32 {
    0.3
}

fn default_max_length() -> usize {
    2000
}

impl SearchRequest {
    /// A request with the defaults of the HTTP API.
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            tags: Vec::new(),
            max_results: default_max_results(),
            similarity_threshold: default_similarity_threshold(),
            mode: SearchMode::Hybrid,
            sources: Vec::new(),
        }
    }

    /// Checks the request against the limits; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        validate_query(&self.query)?;
        validate_tags(&self.tags)?;
        if self.sources.len() > 2 {
            return Err(InvalidRequest::new(format!(
                "sources names at most the 2 kinds of source (notes, notion), got {} entries",
                self.sources.len()
            )));
        }
        if !(1..=limits::MAX_RESULTS).contains(&self.max_results) {
            return Err(InvalidRequest::new(format!(
                "max_results must be between 1 and {}, got {}",
                limits::MAX_RESULTS,
                self.max_results
            )));
        }
        if !(0.0..=1.0).contains(&self.similarity_threshold) {
            return Err(InvalidRequest::new(format!(
                "similarity_threshold must be between 0 and 1, got {}",
                self.similarity_threshold
            )));
        }
        Ok(())
    }
}

/// `POST /context/build`: a context block for a prompt, at most `max_length` characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextRequest {
    /// The question the context should help answer.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub query: String,
    /// Documents carrying at least one of these tags (case-insensitive) rank first; the others
    /// fill the places left, so tags narrow and never empty the results.
    #[serde(default)]
    #[schema(max_items = 32, value_type = Vec<Tag>)]
    pub tags: Vec<String>,
    /// Upper bound on the context's length, in characters.
    #[serde(default = "default_max_length", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 65536, default = 2000)]
    pub max_length: usize,
}

impl ContextRequest {
    /// A request with the defaults of the HTTP API.
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), tags: Vec::new(), max_length: default_max_length() }
    }

    /// Checks the request against the limits; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        validate_query(&self.query)?;
        validate_tags(&self.tags)?;
        if !(1..=limits::MAX_CONTEXT_CHARS).contains(&self.max_length) {
            return Err(InvalidRequest::new(format!(
                "max_length must be between 1 and {}, got {}",
                limits::MAX_CONTEXT_CHARS,
                self.max_length
            )));
        }
        Ok(())
    }
}

fn validate_query(query: &str) -> Result<(), InvalidRequest> {
    if query.trim().is_empty() {
        return Err(InvalidRequest::new("query must not be empty"));
    }
    let chars = query.chars().count();
    if chars > limits::MAX_QUERY_CHARS {
        return Err(InvalidRequest::new(format!(
            "query is {chars} characters long; the limit is {}",
            limits::MAX_QUERY_CHARS
        )));
    }
    Ok(())
}

fn validate_tags(tags: &[String]) -> Result<(), InvalidRequest> {
    if tags.len() > limits::MAX_TAGS {
        return Err(InvalidRequest::new(format!("at most {} tags may be given, got {}", limits::MAX_TAGS, tags.len())));
    }
    if tags.iter().any(|tag| tag.trim().is_empty()) {
        return Err(InvalidRequest::new("tags must not be empty strings"));
    }
    Ok(())
}

/// Which retriever found a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    /// Found by BM25 only.
    Keyword,
    /// Found by dense search only.
    Semantic,
    /// Found by both.
    Hybrid,
}

/// One result of a search: the best passage of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    /// Stable id of the passage (chunk) within the current index.
    pub knowledge_id: String,
    /// The document's title.
    pub title: String,
    /// The passage, shortened for display.
    pub content_snippet: String,
    /// How well the passage matches the query, 0..=1 (see the agent's docs for the formula).
    pub similarity_score: f32,
    /// Which retriever(s) found it.
    pub source_type: SourceType,
    /// Where the document lives: a path relative to its indexed folder, or a URL.
    pub source: String,
}

/// Reply to [`SearchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Always `true`; failures use [`ErrorResponse`].
    pub success: bool,
    /// Best first, one per document.
    pub results: Vec<SearchHit>,
    /// The results assembled into a context block with numbered citations.
    pub context: String,
    /// Seconds spent answering.
    pub processing_time: f64,
    /// How the ranked lists were combined (absent in replies of agents older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
}

/// How a search combined its two ranked lists. Hybrid search weighs the dense list by how much
/// of the query the model can read (`visibility`): a question in a script the model does not
/// know is answered from keywords alone, and `lists` says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Fusion {
    /// The lists that counted (weight above zero): `keyword`, `semantic`.
    pub lists: Vec<SourceType>,
    /// Weight of the BM25 list.
    pub keyword_weight: f32,
    /// Weight of the dense list, after scaling by visibility.
    pub semantic_weight: f32,
    /// Share of the query's tokens the embedding model knows (0..=1; 0 in keyword mode).
    pub visibility: f32,
}

/// Reply to [`ContextRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContextResponse {
    /// Passages with numbered citations, at most `max_length` characters.
    pub context: String,
    /// The cited documents, in citation order.
    pub sources: Vec<String>,
    /// Seconds spent answering.
    pub processing_time: f64,
}

/// Machine-readable reason of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON, or not the expected shape.
    InvalidJson,
    /// The body parsed but a field is out of range.
    InvalidRequest,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// A key is required and was missing or wrong.
    Unauthorized,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists but not with this method.
    MethodNotAllowed,
    /// There is no usable index yet.
    IndexUnavailable,
    /// The request took longer than its deadline.
    Timeout,
    /// Something failed inside the server.
    Internal,
    /// The server is at its limit for now; try again after `Retry-After`.
    Overloaded,
    /// A request body that is not `application/json`.
    UnsupportedMediaType,
    /// The request came from where it may not (another site's page, an unexpected `Host`).
    Forbidden,
    /// The endpoint is refused until the server is configured (fail closed); its log says why.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status a response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidJson | Self::InvalidRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Internal => 500,
            Self::IndexUnavailable | Self::Overloaded | Self::Unavailable | Self::Timeout => 503,
        }
    }
}

/// `{code, message}` of a failed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

/// Body of every failed request: `{success: false, error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// Always `false`.
    pub success: bool,
    /// The failure.
    pub error: ErrorDetail,
}

impl ErrorResponse {
    /// An error body with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { success: false, error: ErrorDetail { code, message: message.into() } }
    }
}

/// A request that parsed but breaks a limit; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest(String);

impl InvalidRequest {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidRequest {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_request_defaults_match_the_original_api() {
        let request: SearchRequest = serde_json::from_str(r#"{"query":"rust"}"#).unwrap();
        assert_eq!(request, SearchRequest::new("rust"));
        assert_eq!(request.max_results, 5);
        assert!((request.similarity_threshold - 0.3).abs() < f32::EPSILON);
        let request: ContextRequest = serde_json::from_str(r#"{"query":"rust"}"#).unwrap();
        assert_eq!(request.max_length, 2000);
    }

    #[test]
    fn validation_names_the_offending_field() {
        let cases = [
            (SearchRequest { query: "  ".into(), ..SearchRequest::new("") }, "query"),
            (SearchRequest { max_results: 0, ..SearchRequest::new("q") }, "max_results"),
            (SearchRequest { max_results: 101, ..SearchRequest::new("q") }, "max_results"),
            (SearchRequest { similarity_threshold: 1.5, ..SearchRequest::new("q") }, "similarity"),
            (SearchRequest { similarity_threshold: f32::NAN, ..SearchRequest::new("q") }, "similarity"),
            (SearchRequest { tags: vec!["".into()], ..SearchRequest::new("q") }, "tags"),
            (SearchRequest { query: "x".repeat(4001), ..SearchRequest::new("") }, "query"),
            (SearchRequest { sources: vec![SourceKind::Notes; 3], ..SearchRequest::new("q") }, "sources"),
        ];
        for (request, field) in cases {
            let error = request.validate().expect_err(field);
            assert!(error.to_string().contains(field), "{error} should mention {field}");
        }
        assert!(SearchRequest::new("q").validate().is_ok());
        assert!(ContextRequest { max_length: 0, ..ContextRequest::new("q") }.validate().is_err());
    }

    #[test]
    fn blank_means_what_trim_means() {
        // The schema attributes take literals only, so they repeat NOT_BLANK: the same text.
        for schema in
            [<SearchRequest as utoipa::PartialSchema>::schema(), <ContextRequest as utoipa::PartialSchema>::schema()]
        {
            let schema = serde_json::to_value(schema).unwrap();
            assert_eq!(schema["properties"]["query"]["pattern"], NOT_BLANK, "{schema}");
        }
        // Every character Rust calls white space is in NOT_BLANK's class.
        let listed: Vec<char> = (0..=0x3000u32).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect();
        let class = NOT_BLANK.replace("\\u2000-\\u200a", "");
        for c in listed {
            let in_range = ('\u{2000}'..='\u{200a}').contains(&c);
            let escaped = match c {
                '\t' => "\\t".to_owned(),
                '\n' => "\\n".to_owned(),
                '\u{000c}' => "\\f".to_owned(),
                '\r' => "\\r".to_owned(),
                ' ' => " ".to_owned(),
                other => format!("\\u{:04x}", other as u32),
            };
            assert!(in_range || class.contains(&escaped), "{c:?} ({escaped}) is white space but not in the pattern");
        }
    }

    #[test]
    fn counts_may_be_written_as_whole_floats() {
        let request: SearchRequest = serde_json::from_str(r#"{"query":"q","max_results":7.0}"#).unwrap();
        assert_eq!(request.max_results, 7);
        for refused in ["7.5", "-1", "1e300", "\"7\""] {
            let json = format!(r#"{{"query":"q","max_results":{refused}}}"#);
            assert!(serde_json::from_str::<SearchRequest>(&json).is_err(), "{refused}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_compatibility() {
        let request: SearchRequest = serde_json::from_str(r#"{"query":"q","top":3}"#).unwrap();
        assert_eq!(request.query, "q");
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let body = serde_json::to_value(ErrorResponse::new(ErrorCode::InvalidJson, "bad")).unwrap();
        assert_eq!(body, serde_json::json!({"success": false, "error": {"code": "invalid_json", "message": "bad"}}));
    }
}
