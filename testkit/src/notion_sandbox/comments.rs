//! Comments, as Notion's API keeps them: `POST /v1/comments` (on a page, on a block, or as a
//! reply in an existing discussion) and `GET /v1/comments?block_id=…` (the open comments on a
//! page or block, oldest first, paginated). A comment a person writes in the app starts its own
//! discussion; the API can only start one at the top of a page, or reply in an existing one.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ApiError;
use super::model::{Workspace, new_id, read_rich_text, timestamp, validate_rich_text};

/// One comment.
#[derive(Debug, Clone)]
pub(crate) struct CommentRecord {
    pub id: String,
    /// The page or block it is on.
    pub parent: String,
    pub parent_is_page: bool,
    pub discussion_id: String,
    pub created: DateTime<Utc>,
    /// Who wrote it: `sandbox-user` (a person) or `sandbox-integration` (the API).
    pub author: &'static str,
    pub rich_text: Value,
}

impl CommentRecord {
    pub fn json(&self) -> Value {
        let parent = if self.parent_is_page {
            json!({ "type": "page_id", "page_id": self.parent })
        } else {
            json!({ "type": "block_id", "block_id": self.parent })
        };
        json!({
            "object": "comment",
            "id": self.id,
            "parent": parent,
            "discussion_id": self.discussion_id,
            "created_time": timestamp(self.created),
            "last_edited_time": timestamp(self.created),
            "created_by": { "object": "user", "id": self.author },
            "rich_text": self.rich_text,
            "display_name": { "type": "integration", "resolved_name": self.author },
        })
    }
}

/// Adds a comment; `discussion` continues an existing thread, else a new one starts.
pub(crate) fn add(
    workspace: &mut Workspace,
    parent: &str,
    discussion: Option<String>,
    author: &'static str,
    rich_text: &Value,
) -> CommentRecord {
    let parent_is_page = workspace.pages.contains_key(parent);
    let record = CommentRecord {
        id: new_id(),
        parent: parent.to_owned(),
        parent_is_page,
        discussion_id: discussion.unwrap_or_else(new_id),
        created: workspace.now(),
        author,
        rich_text: read_rich_text(rich_text),
    };
    workspace.comments.push(record.clone());
    record
}

/// `POST /v1/comments`, as the integration.
pub(crate) fn create(workspace: &mut Workspace, body: &Value) -> Result<Value, ApiError> {
    validate_rich_text(&body["rich_text"], "rich_text")?;
    let parent = &body["parent"];
    let discussion = body["discussion_id"].as_str();
    let (parent, discussion) = match (parent.is_object(), discussion) {
        (true, Some(_)) | (false, None) => {
            return Err(ApiError::validation(
                "body failed validation: exactly one of parent, discussion_id should be defined",
            ));
        }
        (false, Some(discussion)) => {
            let thread = workspace.comments.iter().find(|comment| comment.discussion_id == discussion);
            let parent = thread
                .map(|comment| comment.parent.clone())
                .ok_or_else(|| ApiError::not_found("discussion", discussion))?;
            (parent, Some(discussion.to_owned()))
        }
        (true, None) => {
            let id = parent["page_id"].as_str().or_else(|| parent["block_id"].as_str()).unwrap_or_default().to_owned();
            let exists =
                workspace.pages.contains_key(&id) || workspace.blocks.get(&id).is_some_and(|block| !block.in_trash);
            if !exists {
                return Err(ApiError::not_found("page", &id));
            }
            (id, None)
        }
    };
    Ok(add(workspace, &parent, discussion, "sandbox-integration", &body["rich_text"]).json())
}

/// `GET /v1/comments?block_id=…`: the comments on that page or block, oldest first, from
/// `start_cursor` (a comment id), at most `page_size` (≤ 100).
pub(crate) fn list(
    workspace: &Workspace,
    block_id: &str,
    start_cursor: Option<&str>,
    page_size: usize,
) -> Result<Value, ApiError> {
    if !workspace.pages.contains_key(block_id) && !workspace.blocks.contains_key(block_id) {
        return Err(ApiError::not_found("block", block_id));
    }
    let on: Vec<&CommentRecord> = workspace.comments.iter().filter(|comment| comment.parent == block_id).collect();
    let start = match start_cursor {
        None => 0,
        Some(cursor) => on
            .iter()
            .position(|comment| comment.id == cursor)
            .ok_or_else(|| ApiError::validation(format!("start_cursor {cursor} is not valid")))?,
    };
    let end = (start + page_size.clamp(1, 100)).min(on.len());
    let results: Vec<Value> = on[start..end].iter().map(|comment| comment.json()).collect();
    let next = on.get(end).map(|comment| comment.id.clone());
    Ok(json!({
        "object": "list",
        "results": results,
        "next_cursor": next,
        "has_more": next.is_some(),
        "type": "comment",
        "comment": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    }))
}
