//! Errors of the Notion client: Notion's own error objects, typed, plus transport failures.

use std::time::Duration;

/// Result with a [`NotionError`].
pub type Result<T, E = NotionError> = std::result::Result<T, E>;

/// What can go wrong talking to Notion.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotionError {
    /// Notion answered with an error object (`{"object":"error","status","code","message"}`).
    #[error("Notion API {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Notion's error code, e.g. `object_not_found`, `validation_error`, `rate_limited`.
        code: String,
        /// Notion's message.
        message: String,
        /// Notion's request id, for support.
        request_id: Option<String>,
        /// How long Notion asked us to wait (`Retry-After`), for 429/529.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (connection, TLS, timeout).
    #[error("cannot reach Notion: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer from Notion: {0}")]
    Decode(String),
    /// The request was refused before sending (e.g. a block over Notion's limits).
    #[error("invalid request to Notion: {0}")]
    Invalid(String),
}

impl NotionError {
    /// Whether trying again later can succeed: rate limits, conflicts, server errors, timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => matches!(status, 409 | 429 | 500 | 502 | 503 | 504 | 529),
            Self::Transport(_) => true,
            Self::Decode(_) | Self::Invalid(_) => false,
        }
    }

    /// Notion's error code, if this is an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// HTTP status, if this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the object does not exist or is not shared with the integration.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}
