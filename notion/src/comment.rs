//! Comments on pages and blocks (`GET`/`POST /v1/comments`).

use serde::Deserialize;
use serde_json::Value;

/// A comment, as the API returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Comment {
    /// Comment id.
    pub id: String,
    /// The thread it belongs to; a reply goes to this id.
    pub discussion_id: String,
    /// `{type: "page_id", page_id}` or `{type: "block_id", block_id}`.
    #[serde(default)]
    pub parent: Value,
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub created_time: String,
    /// `{object: "user", id}` of its author.
    #[serde(default)]
    pub created_by: Value,
    /// Its text.
    #[serde(default)]
    pub rich_text: Value,
}

impl Comment {
    /// Its plain text.
    pub fn text(&self) -> String {
        crate::rich_text::plain_text(&self.rich_text)
    }

    /// Whether one of its links goes to `url`.
    pub fn links_to(&self, url: &str) -> bool {
        self.rich_text
            .as_array()
            .into_iter()
            .flatten()
            .any(|item| item["href"] == url || item["text"]["link"]["url"] == url)
    }
}
