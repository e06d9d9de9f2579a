//! Blocks (page content) and their rendering to plain text.
//!
//! The text keeps the page's structure in Markdown form — `#` headings, `-` list items, `>`
//! quotes, fenced code, `a | b` table rows — so the agent can chunk it by section and the cloud
//! can put it into a prompt. Block types without text (dividers, breadcrumbs, tables of
//! contents) and the ones the API cannot return (`unsupported`) are skipped and counted; a new
//! block type never fails a render.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::rich_text::plain_text;

/// A block, with its children when they were fetched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Block {
    /// Block id.
    pub id: String,
    /// Block type (`paragraph`, `heading_1`, …); the payload sits under this key.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the block has children (fetched separately).
    #[serde(default)]
    pub has_children: bool,
    /// Archived (before 2026-03-11).
    #[serde(default)]
    pub archived: bool,
    /// In the trash.
    #[serde(default)]
    pub in_trash: bool,
    /// The rest of the block object, including the payload.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    /// Children, filled in by a recursive fetch.
    #[serde(skip)]
    pub children: Vec<Block>,
}

impl Block {
    /// The type-specific payload (`block[block.type]`).
    pub fn payload(&self) -> &Value {
        self.fields.get(&self.kind).unwrap_or(&Value::Null)
    }

    /// The plain text of the payload's `rich_text`.
    pub fn text(&self) -> String {
        plain_text(&self.payload()["rich_text"])
    }
}

/// Text rendered from blocks, and how many blocks had nothing to render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Blocks skipped: `unsupported`, and types without text.
    pub skipped: usize,
}

/// Renders blocks (and their fetched children) as Markdown-like text.
pub fn render(blocks: &[Block]) -> Rendered {
    let mut out = Rendered::default();
    render_into(blocks, 0, &mut out);
    let text = out.text.trim_end().to_owned();
    Rendered { text, skipped: out.skipped }
}

fn render_into(blocks: &[Block], depth: usize, out: &mut Rendered) {
    let indent = "  ".repeat(depth);
    let mut number = 0;
    for block in blocks {
        number = if block.kind == "numbered_list_item" { number + 1 } else { 0 };
        let payload = block.payload();
        let text = block.text();
        let caption = plain_text(&payload["caption"]);
        let line = match block.kind.as_str() {
            "paragraph" | "template" => Some(text),
            "heading_1" => Some(format!("# {text}")),
            "heading_2" => Some(format!("## {text}")),
            "heading_3" => Some(format!("### {text}")),
            "bulleted_list_item" => Some(format!("- {text}")),
            "numbered_list_item" => Some(format!("{number}. {text}")),
            "to_do" => {
                let mark = if payload["checked"].as_bool() == Some(true) { "x" } else { " " };
                Some(format!("- [{mark}] {text}"))
            }
            "toggle" => Some(text),
            "quote" => Some(format!("> {text}")),
            "callout" => {
                let icon = payload["icon"]["emoji"].as_str().unwrap_or_default();
                Some(if icon.is_empty() { text } else { format!("{icon} {text}") })
            }
            "code" => {
                let language = payload["language"].as_str().unwrap_or_default();
                Some(format!("```{language}\n{text}\n```"))
            }
            "equation" => payload["expression"].as_str().map(|e| format!("$${e}$$")),
            "child_page" | "child_database" => payload["title"].as_str().map(str::to_owned),
            "table_row" => {
                let cells = payload["cells"].as_array().map(|cells| cells.iter().map(plain_text).collect::<Vec<_>>());
                cells.map(|cells| cells.join(" | "))
            }
            "bookmark" | "embed" | "link_preview" => {
                let url = payload["url"].as_str().unwrap_or_default();
                Some(if caption.is_empty() { url.to_owned() } else { format!("{caption} ({url})") })
            }
            "image" | "video" | "file" | "pdf" | "audio" => (!caption.is_empty()).then_some(caption),
            // Containers: their children carry the content.
            "table" | "column_list" | "column" | "synced_block" => None,
            // No text of their own, or nothing the API can return.
            _ if !text.is_empty() => Some(text),
            _ => {
                if !block.has_children {
                    out.skipped += 1;
                }
                None
            }
        };
        if let Some(line) = line {
            if matches!(block.kind.as_str(), "heading_1" | "heading_2" | "heading_3") && !out.text.is_empty() {
                out.text.push('\n');
            }
            for (index, part) in line.lines().enumerate() {
                if index == 0 || block.kind != "code" {
                    out.text.push_str(&indent);
                }
                out.text.push_str(part);
                out.text.push('\n');
            }
            if line.is_empty() {
                out.text.push('\n');
            }
        }
        if !block.children.is_empty() {
            let nested = matches!(
                block.kind.as_str(),
                "bulleted_list_item" | "numbered_list_item" | "to_do" | "toggle" | "quote" | "callout"
            );
            render_into(&block.children, if nested { depth + 1 } else { depth }, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::List;

    fn fixture() -> Vec<Block> {
        let path = format!("{}/tests/fixtures/block-children.json", env!("CARGO_MANIFEST_DIR"));
        let list: List<Block> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        list.results
    }

    #[test]
    fn the_real_block_children_response_renders_sensibly() {
        let blocks = fixture();
        assert_eq!(blocks.len(), 36);
        let rendered = render(&blocks);
        for expected in [
            "# Heading 1",
            "## Heading 2",
            "### Heading 3",
            "- Bulleted list",
            "1. Numbered list",
            "> Quote",
            "Toggle",
            "```",
            "% ls -l",
            "Child page",
            "https://hkob.notion.site/",
            "x = \\frac{-b\\pm\\sqrt{b^2-4ac}}{2a}",
            "- [ ] ",
        ] {
            assert!(rendered.text.contains(expected), "missing {expected:?} in\n{}", rendered.text);
        }
        // `unsupported`, `divider`, `breadcrumb` and `table_of_contents` have nothing to say.
        assert!(rendered.skipped >= 4, "{}", rendered.skipped);
        assert!(!rendered.text.contains("unsupported"));
    }

    #[test]
    fn children_are_indented_under_list_items_and_tables_render_as_rows() {
        let mut item: Block = serde_json::from_value(serde_json::json!({
            "id": "1", "type": "bulleted_list_item", "has_children": true,
            "bulleted_list_item": {"rich_text": [{"plain_text": "parent"}]}
        }))
        .unwrap();
        let child: Block = serde_json::from_value(serde_json::json!({
            "id": "2", "type": "bulleted_list_item",
            "bulleted_list_item": {"rich_text": [{"plain_text": "child"}]}
        }))
        .unwrap();
        item.children.push(child);
        let mut table: Block =
            serde_json::from_value(serde_json::json!({"id": "3", "type": "table", "has_children": true, "table": {}}))
                .unwrap();
        table.children.push(
            serde_json::from_value(serde_json::json!({
                "id": "4", "type": "table_row",
                "table_row": {"cells": [[{"plain_text": "a"}], [{"plain_text": "b"}]]}
            }))
            .unwrap(),
        );
        let rendered = render(&[item, table]);
        assert_eq!(rendered.text, "- parent\n  - child\na | b");
    }
}
