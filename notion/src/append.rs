//! Splitting blocks into append requests within Notion's limits: at most 100 blocks in any
//! array (the request's own and every `children`), two levels of nesting below the request's
//! blocks, 1000 block elements and 500 KB per request. A `table` must arrive with its rows.
//!
//! What does not fit stays behind as [`Later`] content and goes in follow-up requests, appended
//! under the block it belongs to once that block exists — a 150-row table is sent with its
//! first 100 rows, then the other 50 are appended to the created table. A batch ends with the
//! block that has content to follow, so every block before it is complete by the time a later
//! block is written: an answer's closing footer is never on the page before the table above it
//! is whole.

use serde_json::Value;

/// Most blocks in one array: a request's own, or any block's `children`.
pub const MAX_CHILDREN: usize = 100;
/// Levels of nesting one request may carry below its top-level blocks.
pub const MAX_NESTING: usize = 2;
/// Most block elements, nested ones included, in one request.
pub const MAX_ELEMENTS: usize = 1000;
/// Largest request body we plan for; Notion's limit is 500 KB, the rest is margin for the
/// estimates below (separators, the `children` keys).
pub const MAX_BYTES: usize = 450 * 1024;

/// Content of a sent block that has to follow in later requests.
#[derive(Debug, Default, PartialEq)]
pub struct Later {
    /// Children to append at the block's end once it exists, in order.
    pub rest: Vec<Value>,
    /// Sent children that have content of their own to follow: (index among the block's
    /// sent children, that content).
    pub within: Vec<(usize, Later)>,
}

impl Later {
    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty() && self.within.is_empty()
    }
}

/// One append request: the blocks to send, and what the last of them still needs.
#[derive(Debug, Default)]
pub struct Batch {
    /// Blocks within every limit, children trimmed.
    pub blocks: Vec<Value>,
    /// Content of the last block that follows once it exists.
    pub later: Option<Later>,
}

#[derive(Clone, Copy)]
struct Budget {
    elements: usize,
    bytes: usize,
}

const FRESH: Budget = Budget { elements: MAX_ELEMENTS, bytes: MAX_BYTES };

/// A block trimmed to fit, its size, and what it leaves for later.
struct Planned {
    block: Value,
    elements: usize,
    bytes: usize,
    later: Later,
}

/// Splits `blocks` (the children to append under one parent) into requests. Fails only for a
/// block whose own content, without children, is over the byte limit.
pub fn batches(blocks: Vec<Value>) -> Result<Vec<Batch>, String> {
    let mut batches: Vec<Batch> = Vec::new();
    let (mut elements, mut bytes) = (0, 0);
    for mut block in blocks {
        let children = detach_children(&mut block);
        let own = size(&block);
        if own > MAX_BYTES {
            return Err(format!("a block of {own} bytes is over Notion's request size limit"));
        }
        attach_children(&mut block, children);
        let planned = plan(block, MAX_NESTING, FRESH);
        let fits = batches.last().is_some_and(|batch| {
            batch.later.is_none()
                && batch.blocks.len() < MAX_CHILDREN
                && elements + planned.elements <= MAX_ELEMENTS
                && bytes + planned.bytes <= MAX_BYTES
        });
        if !fits {
            batches.push(Batch::default());
            (elements, bytes) = (0, 0);
        }
        elements += planned.elements;
        bytes += planned.bytes + 1;
        if let Some(batch) = batches.last_mut() {
            batch.blocks.push(planned.block);
            if !planned.later.is_empty() {
                batch.later = Some(planned.later);
            }
        }
    }
    Ok(batches)
}

/// Trims `block` (whose own content fits `budget`) so that it nests at most `levels` deep below
/// itself and fits `budget`; the children that do not fit, and all after them, become later
/// content.
fn plan(mut block: Value, levels: usize, budget: Budget) -> Planned {
    let children = detach_children(&mut block);
    let own = size(&block);
    let mut planned = Planned { block, elements: 1, bytes: own, later: Later::default() };
    let Some(children) = children else { return planned };
    let mut sent = Vec::new();
    let mut bytes = own + "\"children\":[]".len();
    let mut children = children.into_iter();
    while let Some(mut child) = children.next() {
        let grandchildren = detach_children(&mut child);
        let child_bytes = size(&child);
        // A table must be created with its rows, so it needs a level and an element more.
        let needs_children = requires_children(&child) && grandchildren.as_ref().is_some_and(|g| !g.is_empty());
        let fits = levels > 0
            && sent.len() < MAX_CHILDREN
            && !(needs_children && levels < 2)
            && planned.elements + 1 + usize::from(needs_children) <= budget.elements
            && bytes + child_bytes < budget.bytes;
        attach_children(&mut child, grandchildren);
        if !fits {
            planned.later.rest.push(child);
            planned.later.rest.extend(children);
            break;
        }
        let room = Budget { elements: budget.elements - planned.elements, bytes: budget.bytes - bytes - 1 };
        let inner = plan(child, levels - 1, room);
        planned.elements += inner.elements;
        bytes += inner.bytes + 1;
        if !inner.later.is_empty() {
            planned.later.within.push((sent.len(), inner.later));
        }
        sent.push(inner.block);
    }
    if !sent.is_empty() {
        attach_children(&mut planned.block, Some(sent));
        planned.bytes = bytes;
    }
    planned
}

/// The block's type: its `type` field, or the key of its payload (Notion accepts both).
fn kind(block: &Value) -> Option<String> {
    if let Some(kind) = block["type"].as_str() {
        return Some(kind.to_owned());
    }
    block.as_object()?.iter().find(|(key, value)| key.as_str() != "object" && value.is_object()).map(|(k, _)| k.clone())
}

fn requires_children(block: &Value) -> bool {
    kind(block).as_deref() == Some("table")
}

fn detach_children(block: &mut Value) -> Option<Vec<Value>> {
    let kind = kind(block)?;
    match block.get_mut(&kind)?.as_object_mut()?.remove("children")? {
        Value::Array(children) => Some(children),
        _ => None,
    }
}

fn attach_children(block: &mut Value, children: Option<Vec<Value>>) {
    let (Some(children), Some(kind)) = (children, kind(block)) else { return };
    if let Some(payload) = block.get_mut(&kind).and_then(Value::as_object_mut) {
        payload.insert("children".into(), Value::Array(children));
    }
}

fn size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |json| json.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(content: &str) -> Value {
        json!({ "type": "paragraph", "paragraph": { "rich_text": [{ "text": { "content": content } }] } })
    }

    fn item(children: Vec<Value>) -> Value {
        let mut block = json!({ "type": "bulleted_list_item", "bulleted_list_item": { "rich_text": [] } });
        if !children.is_empty() {
            block["bulleted_list_item"]["children"] = json!(children);
        }
        block
    }

    fn table(rows: usize) -> Value {
        let rows: Vec<Value> = (0..rows)
            .map(|i| json!({ "type": "table_row", "table_row": { "cells": [[{ "text": { "content": i.to_string() } }]] } }))
            .collect();
        json!({ "type": "table", "table": { "table_width": 1, "has_column_header": true, "children": rows } })
    }

    fn children(block: &Value) -> usize {
        let kind = kind(block).unwrap();
        block[&kind]["children"].as_array().map_or(0, Vec::len)
    }

    /// Every array ≤ 100, nesting ≤ 2 levels, ≤ 1000 elements: what the sandbox enforces.
    fn within_limits(blocks: &[Value]) {
        fn walk(block: &Value, depth: usize, elements: &mut usize) {
            *elements += 1;
            let kind = kind(block).unwrap();
            if let Some(children) = block[&kind]["children"].as_array() {
                assert!(depth < MAX_NESTING, "nested too deep");
                assert!(children.len() <= MAX_CHILDREN);
                assert!(kind != "table" || !children.is_empty());
                children.iter().for_each(|child| walk(child, depth + 1, elements));
            }
        }
        assert!(blocks.len() <= MAX_CHILDREN);
        let mut elements = 0;
        blocks.iter().for_each(|block| walk(block, 0, &mut elements));
        assert!(elements <= MAX_ELEMENTS, "{elements} elements");
    }

    #[test]
    fn plain_blocks_are_split_by_count_and_size() {
        let lengths = |batches: Vec<Batch>| batches.iter().map(|batch| batch.blocks.len()).collect::<Vec<_>>();
        let small: Vec<Value> = (0..250).map(|i| text(&i.to_string())).collect();
        assert_eq!(lengths(batches(small).unwrap()), [100, 100, 50]);
        let big = || text(&"x".repeat(200_000));
        assert_eq!(lengths(batches(vec![big(), big(), big()]).unwrap()), [2, 1]);
        assert!(batches(vec![text(&"x".repeat(600_000))]).is_err(), "one block over the request limit");
    }

    #[test]
    fn a_long_table_follows_in_rows_appended_to_it() {
        let planned = batches(vec![text("before"), table(150), text("after")]).unwrap();
        assert_eq!(planned.len(), 2, "the batch ends with the table, whose rows follow first");
        within_limits(&planned[0].blocks);
        assert_eq!(children(&planned[0].blocks[1]), 100);
        let later = planned[0].later.as_ref().unwrap();
        assert_eq!(later.rest.len(), 50);
        assert!(later.within.is_empty());
        assert_eq!(later.rest[0]["table_row"]["cells"][0][0]["text"]["content"], "100", "in order");
        assert_eq!(planned[1].blocks, [text("after")]);
    }

    #[test]
    fn deep_lists_and_nested_tables_follow_under_their_parents() {
        // item > item > item > item: the fourth level goes under the third once it exists.
        let deep = item(vec![item(vec![item(vec![item(vec![])])])]);
        let planned = batches(vec![deep]).unwrap();
        within_limits(&planned[0].blocks);
        let later = planned[0].later.as_ref().unwrap();
        assert!(later.rest.is_empty());
        assert_eq!(later.within.len(), 1);
        let (index, inner) = &later.within[0];
        assert_eq!(*index, 0);
        assert_eq!(inner.within[0].1.rest, [item(vec![])]);

        // A table two levels down cannot carry its rows: it follows whole, under its parent.
        let nested = item(vec![item(vec![text("first"), table(3), text("third")])]);
        let planned = batches(vec![nested]).unwrap();
        within_limits(&planned[0].blocks);
        let inner = &planned[0].later.as_ref().unwrap().within[0].1;
        assert_eq!(inner.rest.len(), 2, "the table and everything after it, in order");
        assert_eq!(kind(&inner.rest[0]).as_deref(), Some("table"));
    }

    #[test]
    fn wide_nesting_stays_under_the_element_limit() {
        let wide = item((0..100).map(|_| item((0..100).map(|i| text(&i.to_string())).collect())).collect());
        let planned = batches(vec![wide.clone(), wide]).unwrap();
        for batch in &planned {
            within_limits(&batch.blocks);
        }
        assert!(planned[0].later.is_some());
    }
}
