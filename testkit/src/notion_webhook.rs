//! Notion's side of an integration webhook, for tests and benches that deliver events as
//! Notion does: the event body, and its `X-Notion-Signature` (`sha256=` and the HMAC-SHA256 of
//! the raw body keyed by the subscription's verification token).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header value Notion signs `body` with, for a subscription verified with `token`.
pub fn signature(token: &str, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// A page event (`page.created`, `page.properties_updated`…) about `page`, a row of `database`,
/// as a JSON body.
pub fn page_event(event_type: &str, event_id: &str, page: &str, database: &str) -> String {
    serde_json::json!({
        "id": event_id,
        "timestamp": "2026-12-06T10:00:00.000Z",
        "type": event_type,
        "attempt_number": 1,
        "entity": { "id": page, "type": "page" },
        "data": { "parent": { "id": database, "type": "database" } },
    })
    .to_string()
}

/// A `comment.created` event about `comment`, written on `parent` (the page, or a block of it)
/// of `page`, as a JSON body.
pub fn comment_event(event_id: &str, comment: &str, page: &str, parent: &str) -> String {
    let parent_type = if parent == page { "page" } else { "block" };
    serde_json::json!({
        "id": event_id,
        "timestamp": "2026-12-07T10:00:00.000Z",
        "type": "comment.created",
        "attempt_number": 1,
        "entity": { "id": comment, "type": "comment" },
        "data": { "page_id": page, "parent": { "id": parent, "type": parent_type } },
    })
    .to_string()
}
