//! Notion integration webhooks: what a delivery is, whether it is genuine, and which question
//! page it asks us to look at. The HTTP side lives in [`crate::server`].
//!
//! Notion's first POST to a new endpoint carries only `{"verification_token": "…"}`, unsigned;
//! the user pastes that token into Notion to activate the subscription. Every later delivery is
//! signed: `X-Notion-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw body keyed by that
//! token. Events are signals, not content — they carry ids, may be batched, repeated or out of
//! order — so a relevant one only makes the pipeline re-read the page and answer it if it is
//! still a pending question; the schedule stays the safety net for anything missed.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-notion-signature";

/// Largest delivery accepted: events are ids and a few fields, far below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a handled event id is remembered (Notion retries within hours, not days).
pub const DEDUPE_SECS: i64 = 24 * 3600;

/// Event types that can make a page a pending question: a new row, or a property change (a
/// person setting Status back to Pending).
const RELEVANT: [&str; 2] = ["page.created", "page.properties_updated"];

/// One POST from Notion.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// The subscription handshake.
    Verification {
        /// The token to paste into Notion, and the key of later signatures.
        token: String,
    },
    /// A signed event.
    Event(Event),
}

/// An event, reduced to what we act on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Event id, the dedupe key.
    pub id: String,
    /// `page.created`, `page.properties_updated`, `comment.created`…
    #[serde(rename = "type")]
    pub kind: String,
    /// What the event is about.
    #[serde(default)]
    pub entity: Option<Entity>,
    /// Event-specific details; a comment event's `page_id` and `parent`.
    #[serde(default)]
    pub data: Value,
}

/// A new comment: which, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentCreated {
    /// The comment's id.
    pub comment_id: String,
    /// The page it is on (or the page of the block it is on).
    pub page_id: String,
    /// The page or block it is attached to, where it is listed.
    pub parent_id: String,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entity {
    /// Its id.
    pub id: String,
    /// `page`, `database`, `data_source`, `comment`…
    #[serde(rename = "type")]
    pub kind: String,
}

/// Why a delivery was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum WebhookError {
    /// The body is not a delivery.
    #[error("not a Notion webhook delivery: {0}")]
    Malformed(String),
    /// No signature, or not ours.
    #[error("missing or invalid X-Notion-Signature")]
    BadSignature,
    /// No verification token is known yet, so nothing can be checked.
    #[error("the webhook is not verified yet: no verification token is stored or configured")]
    NotVerified,
}

/// Longest verification token accepted (Notion's are ~70 characters).
pub const MAX_TOKEN_CHARS: usize = 512;

impl Delivery {
    /// Reads a delivery from its raw body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let value: Value = serde_json::from_slice(body).map_err(|error| WebhookError::Malformed(error.to_string()))?;
        // The handshake is the one body with a `verification_token` (events never carry one).
        if let Some(token) = value.get("verification_token").and_then(Value::as_str) {
            if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
                return Err(WebhookError::Malformed("verification_token is empty or too long".into()));
            }
            return Ok(Self::Verification { token: token.to_owned() });
        }
        serde_json::from_value(value).map(Self::Event).map_err(|error| WebhookError::Malformed(error.to_string()))
    }
}

impl Event {
    /// The page this event asks us to look at, if it could be a new or reopened question.
    pub fn question_page(&self) -> Option<&str> {
        let entity = self.entity.as_ref()?;
        (entity.kind == "page" && RELEVANT.contains(&self.kind.as_str())).then_some(entity.id.as_str())
    }

    /// The comment this event announces, for a `comment.created` event that says where it is.
    pub fn comment_created(&self) -> Option<CommentCreated> {
        let entity =
            self.entity.as_ref().filter(|entity| entity.kind == "comment" && self.kind == "comment.created")?;
        let id = |value: &Value| {
            value.as_str().map(str::trim).filter(|id| !id.is_empty() && id.len() <= 64).map(str::to_owned)
        };
        let page_id = id(&self.data["page_id"])?;
        let parent_id = id(&self.data["parent"]["id"]).unwrap_or_else(|| page_id.clone());
        Some(CommentCreated { comment_id: id(&Value::String(entity.id.clone()))?, page_id, parent_id })
    }
}

/// Checks `X-Notion-Signature` (`sha256=<hex>`) against the HMAC-SHA256 of the raw `body`
/// keyed by `token`, in constant time.
pub fn verify_signature(token: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookError> {
    let hex = header.and_then(|value| value.trim().strip_prefix("sha256=")).ok_or(WebhookError::BadSignature)?;
    let presented = decode_hex(hex).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&presented).map_err(|_| WebhookError::BadSignature)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(token: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"id":"e1","type":"page.created","entity":{"id":"p1","type":"page"}}"#;
        let header = sign("secret_tok", body);
        assert_eq!(verify_signature("secret_tok", body, Some(&header)), Ok(()));
        assert_eq!(verify_signature("other", body, Some(&header)), Err(WebhookError::BadSignature));
        let tampered = br#"{"id":"e1","type":"page.created","entity":{"id":"p2","type":"page"}}"#;
        assert_eq!(verify_signature("secret_tok", tampered, Some(&header)), Err(WebhookError::BadSignature));
        for bad in [None, Some(""), Some("sha256="), Some("md5=00"), Some(&header[..40]), Some("sha256=zz")] {
            assert_eq!(verify_signature("secret_tok", body, bad), Err(WebhookError::BadSignature), "{bad:?}");
        }
        let upper = header.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(verify_signature("secret_tok", body, Some(&upper)), Ok(()), "hex case does not matter");
    }

    #[test]
    fn deliveries_are_told_apart() {
        assert_eq!(
            Delivery::parse(br#"{"verification_token":"secret_abc"}"#),
            Ok(Delivery::Verification { token: "secret_abc".into() })
        );
        let event = r#"{"id":"e1","timestamp":"2026-11-26T10:00:00.000Z","type":"page.properties_updated",
            "entity":{"id":"p1","type":"page"},"data":{"updated_properties":["abc"]},"attempt_number":2}"#;
        let Ok(Delivery::Event(event)) = Delivery::parse(event.as_bytes()) else { panic!("an event") };
        assert_eq!(event.question_page(), Some("p1"));
        let comment = r#"{"id":"e2","type":"comment.created","entity":{"id":"c1","type":"comment"}}"#;
        let Ok(Delivery::Event(comment)) = Delivery::parse(comment.as_bytes()) else { panic!("an event") };
        assert_eq!(comment.question_page(), None);
        assert_eq!(comment.comment_created(), None, "no page: nothing to look at");
        let comment = r#"{"id":"e3","type":"comment.created","entity":{"id":"c1","type":"comment"},
            "data":{"page_id":"p1","parent":{"id":"b1","type":"block"}}}"#;
        let Ok(Delivery::Event(comment)) = Delivery::parse(comment.as_bytes()) else { panic!("an event") };
        let created = CommentCreated { comment_id: "c1".into(), page_id: "p1".into(), parent_id: "b1".into() };
        assert_eq!(comment.comment_created(), Some(created));
        assert!(matches!(Delivery::parse(b"not json"), Err(WebhookError::Malformed(_))));
        assert!(matches!(Delivery::parse(br#"{"type":"page.created"}"#), Err(WebhookError::Malformed(_))));
        assert!(matches!(Delivery::parse(br#"{"verification_token":""}"#), Err(WebhookError::Malformed(_))));
    }
}
