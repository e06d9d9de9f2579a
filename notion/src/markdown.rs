//! Markdown (as LLMs write it) → Notion blocks, within Notion's limits.
//!
//! Headings (`#`–`###`; deeper levels become `heading_3`), paragraphs, bulleted, numbered and
//! task lists (nested up to the two levels one append request allows; deeper items join the
//! deepest level), fenced code with its language, quotes, rules, GFM tables, and inline bold,
//! italic, strikethrough, code and links. Text is split into rich-text objects of at most 2000
//! characters, and a block whose rich text would exceed 100 objects is split into several.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde_json::{Value, json};

use crate::rich_text::{RichTextBuilder, Style, split_items};

/// Deepest nesting one append request accepts below a top-level block.
const MAX_NESTING: usize = 2;

/// Converts Markdown into block objects ready for `PATCH /v1/blocks/{id}/children`.
pub fn to_blocks(markdown: &str) -> Vec<Value> {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    let mut builder = Builder::default();
    for event in Parser::new_ext(markdown, options) {
        builder.event(event);
    }
    builder.finish()
}

/// A block being built: its type, its rich text, its children.
#[derive(Debug)]
struct Open {
    kind: &'static str,
    text: RichTextBuilder,
    children: Vec<Value>,
    extra: Value,
}

impl Open {
    fn new(kind: &'static str) -> Self {
        Self { kind, text: RichTextBuilder::new(), children: Vec::new(), extra: json!({}) }
    }
}

#[derive(Default)]
struct Builder {
    /// Finished top-level blocks.
    output: Vec<Value>,
    /// Blocks under construction, outermost first.
    open: Vec<Open>,
    /// Kinds of the lists we are inside (`None` = bulleted, `Some` = numbered).
    lists: Vec<Option<u64>>,
    /// Inline style stack.
    styles: Vec<Style>,
    /// Code block text, verbatim.
    code: Option<(String, String)>,
    /// Table rows being collected (cells as rich text).
    table: Option<Vec<Vec<Vec<Value>>>>,
    row: Vec<Vec<Value>>,
    cell: RichTextBuilder,
    in_cell: bool,
}

impl Builder {
    fn style(&self) -> Style {
        self.styles.last().cloned().unwrap_or_default()
    }

    fn push_style(&mut self, change: impl FnOnce(&mut Style)) {
        let mut style = self.style();
        change(&mut style);
        self.styles.push(style);
    }

    fn text(&mut self, text: &str) {
        let style = self.style();
        if let Some((_, code)) = &mut self.code {
            code.push_str(text);
        } else if self.in_cell {
            self.cell.push(text, &style);
        } else {
            if self.open.is_empty() {
                // Inline content outside any block (e.g. in a list item without a paragraph).
                self.open.push(Open::new("paragraph"));
            }
            if let Some(open) = self.open.last_mut() {
                open.text.push(text, &style);
            }
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text),
            Event::Code(text) => {
                self.push_style(|s| s.code = true);
                self.text(&text);
                self.styles.pop();
            }
            Event::InlineMath(text) | Event::DisplayMath(text) => self.text(&text),
            Event::Html(html) | Event::InlineHtml(html) => self.text(&html),
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.text("\n"),
            Event::Rule => self.emit(json!({ "type": "divider", "divider": {} })),
            Event::TaskListMarker(checked) => {
                if let Some(item) = self.open.last_mut() {
                    item.kind = "to_do";
                    item.extra = json!({ "checked": checked });
                }
            }
            Event::FootnoteReference(name) => self.text(&format!("[{name}]")),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                // The first paragraph of a list item or quote is that block's own text.
                let inside_text_block = self.open.last().is_some_and(|o| o.text.is_empty() && o.kind != "paragraph");
                if !inside_text_block {
                    self.open.push(Open::new("paragraph"));
                }
            }
            Tag::Heading { level, .. } => self.open.push(Open::new(match level {
                HeadingLevel::H1 => "heading_1",
                HeadingLevel::H2 => "heading_2",
                _ => "heading_3",
            })),
            Tag::BlockQuote(_) => self.open.push(Open::new("quote")),
            Tag::CodeBlock(kind) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or_default().to_owned(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((language, String::new()));
            }
            Tag::List(start) => self.lists.push(start),
            Tag::Item => {
                let kind = match self.lists.last() {
                    Some(Some(_)) => "numbered_list_item",
                    _ => "bulleted_list_item",
                };
                self.open.push(Open::new(kind));
            }
            Tag::Table(_) => self.table = Some(Vec::new()),
            Tag::TableHead | Tag::TableRow => self.row.clear(),
            Tag::TableCell => {
                self.cell = RichTextBuilder::new();
                self.in_cell = true;
            }
            Tag::Emphasis => self.push_style(|s| s.italic = true),
            Tag::Strong => self.push_style(|s| s.bold = true),
            Tag::Strikethrough => self.push_style(|s| s.strikethrough = true),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                let url = dest_url.to_string();
                // Notion accepts only absolute URLs as links.
                let link = (url.starts_with("http://") || url.starts_with("https://")).then_some(url);
                self.push_style(|s| s.link = link);
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph if self.open.last().is_some_and(|o| o.kind == "paragraph") => self.close(),
            TagEnd::Heading(_) | TagEnd::BlockQuote(_) | TagEnd::Item => self.close(),
            TagEnd::CodeBlock => {
                if let Some((language, code)) = self.code.take() {
                    let mut open = Open::new("code");
                    open.text.push(code.trim_end_matches('\n'), &Style::default());
                    open.extra = json!({ "language": notion_language(&language) });
                    self.open.push(open);
                    self.close();
                }
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::TableCell => {
                self.in_cell = false;
                let cell = std::mem::take(&mut self.cell).build();
                self.row.push(cell);
            }
            TagEnd::TableHead | TagEnd::TableRow => {
                let row = std::mem::take(&mut self.row);
                if let Some(rows) = &mut self.table {
                    rows.push(row);
                }
            }
            TagEnd::Table => {
                if let Some(rows) = self.table.take() {
                    self.emit_table(rows);
                }
            }
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link | TagEnd::Image => {
                self.styles.pop();
            }
            _ => {}
        }
    }

    /// Finishes the innermost open block and attaches it to its parent (or the output).
    fn close(&mut self) {
        let Some(open) = self.open.pop() else { return };
        let empty = open.text.is_empty() && open.children.is_empty();
        if empty && open.kind == "paragraph" {
            return;
        }
        for block in make_blocks(open) {
            self.emit(block);
        }
    }

    /// Adds a finished block to the innermost open block, or to the output.
    fn emit(&mut self, block: Value) {
        // Nesting deeper than one request allows: attach to the deepest allowed ancestor.
        let depth = self.open.len().min(MAX_NESTING);
        match depth.checked_sub(1).and_then(|index| self.open.get_mut(index)) {
            Some(parent) => parent.children.push(block),
            None => self.output.push(block),
        }
    }

    fn emit_table(&mut self, rows: Vec<Vec<Vec<Value>>>) {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return;
        }
        let children: Vec<Value> = rows
            .into_iter()
            .map(|mut cells| {
                cells.resize(width, Vec::new());
                json!({ "type": "table_row", "table_row": { "cells": cells } })
            })
            .collect();
        self.emit(json!({
            "type": "table",
            "table": { "table_width": width, "has_column_header": true, "has_row_header": false, "children": children },
        }));
    }

    fn finish(mut self) -> Vec<Value> {
        while !self.open.is_empty() {
            self.close();
        }
        self.output
    }
}

/// One or more blocks (more when the rich text is longer than one block may hold).
fn make_blocks(open: Open) -> Vec<Value> {
    let groups = split_items(open.text.build());
    let count = groups.len();
    let mut children = Some(open.children);
    groups
        .into_iter()
        .enumerate()
        .map(|(index, rich_text)| {
            let mut payload = json!({ "rich_text": rich_text });
            if let (Some(extra), Some(payload)) = (open.extra.as_object(), payload.as_object_mut()) {
                payload.extend(extra.clone());
            }
            // Children belong to the last piece, after all of the block's own text.
            if index + 1 == count
                && let Some(children) = children.take().filter(|c| !c.is_empty())
            {
                payload["children"] = Value::Array(children);
            }
            json!({ "type": open.kind, open.kind: payload })
        })
        .collect()
}

/// Maps a Markdown info string to a language Notion's code block accepts.
fn notion_language(language: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "bash",
        "c",
        "c++",
        "c#",
        "css",
        "diff",
        "docker",
        "go",
        "graphql",
        "haskell",
        "html",
        "java",
        "javascript",
        "json",
        "kotlin",
        "latex",
        "lua",
        "makefile",
        "markdown",
        "python",
        "r",
        "ruby",
        "rust",
        "scala",
        "shell",
        "sql",
        "swift",
        "toml",
        "typescript",
        "xml",
        "yaml",
    ];
    let lower = language.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "sh" | "zsh" | "console" => "shell",
        "js" => "javascript",
        "ts" => "typescript",
        "py" => "python",
        "rs" => "rust",
        "cpp" | "cxx" => "c++",
        "cs" | "csharp" => "c#",
        "yml" => "yaml",
        "md" => "markdown",
        "dockerfile" => "docker",
        other => other,
    };
    KNOWN.iter().find(|known| **known == alias).copied().unwrap_or("plain text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rich_text::plain_text;

    fn kinds(blocks: &[Value]) -> Vec<&str> {
        blocks.iter().map(|b| b["type"].as_str().unwrap()).collect()
    }

    fn text_of(block: &Value) -> String {
        let kind = block["type"].as_str().unwrap();
        plain_text(&block[kind]["rich_text"])
    }

    #[test]
    fn common_markdown_becomes_the_matching_blocks() {
        let markdown = "# Title\n\nSome **bold** and *italic* text with `code` and a [link](https://example.com).\n\n\
            ## Steps\n\n1. first\n2. second\n\n- bullet\n  - nested\n\n- [x] done\n- [ ] todo\n\n\
            > quoted\n> text\n\n```rs\nfn main() {}\n```\n\n---\n\n#### Deep heading\n";
        let blocks = to_blocks(markdown);
        assert_eq!(
            kinds(&blocks),
            [
                "heading_1",
                "paragraph",
                "heading_2",
                "numbered_list_item",
                "numbered_list_item",
                "bulleted_list_item",
                "to_do",
                "to_do",
                "quote",
                "code",
                "divider",
                "heading_3"
            ]
        );
        let paragraph = &blocks[1]["paragraph"]["rich_text"];
        assert_eq!(plain_text(paragraph), "Some bold and italic text with code and a link.");
        let bold = paragraph.as_array().unwrap().iter().find(|r| r["text"]["content"] == "bold").unwrap();
        assert_eq!(bold["annotations"]["bold"], true);
        let link = paragraph.as_array().unwrap().iter().find(|r| r["text"]["content"] == "link").unwrap();
        assert_eq!(link["text"]["link"]["url"], "https://example.com");
        assert_eq!(text_of(&blocks[5]["bulleted_list_item"]["children"][0]), "nested");
        assert_eq!(blocks[6]["to_do"]["checked"], true);
        assert_eq!(blocks[7]["to_do"]["checked"], false);
        assert_eq!(text_of(&blocks[8]), "quoted text");
        assert_eq!(blocks[9]["code"]["language"], "rust");
        assert_eq!(text_of(&blocks[9]), "fn main() {}");
    }

    #[test]
    fn deep_lists_stop_at_two_levels_of_nesting() {
        let blocks = to_blocks("- a\n  - b\n    - c\n      - d\n");
        assert_eq!(blocks.len(), 1);
        let level1 = &blocks[0]["bulleted_list_item"]["children"];
        let level2 = &level1[0]["bulleted_list_item"]["children"];
        assert_eq!(level2.as_array().unwrap().len(), 2, "c and d side by side: {blocks:?}");
        assert!(level2[0]["bulleted_list_item"]["children"].is_null());
    }

    #[test]
    fn tables_become_table_blocks() {
        let blocks = to_blocks("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 |\n");
        assert_eq!(kinds(&blocks), ["table"]);
        let table = &blocks[0]["table"];
        assert_eq!(table["table_width"], 2);
        let rows = table["children"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(plain_text(&rows[2]["table_row"]["cells"][0]), "3");
        assert_eq!(rows[2]["table_row"]["cells"].as_array().unwrap().len(), 2, "short rows are padded");
    }

    #[test]
    fn huge_paragraphs_stay_within_notion_limits() {
        let long = "长".repeat(250_000);
        let blocks = to_blocks(&long);
        assert!(blocks.len() >= 2, "too much text for one block is split into several");
        let mut total = 0;
        for block in &blocks {
            let items = block["paragraph"]["rich_text"].as_array().unwrap();
            assert!(items.len() <= 100);
            for item in items {
                let chars = item["text"]["content"].as_str().unwrap().chars().count();
                assert!(chars <= 2000);
                total += chars;
            }
        }
        assert_eq!(total, 250_000);
    }

    #[test]
    fn chinese_and_plain_text_survive() {
        let blocks = to_blocks("番茄工作法：**25分钟**专注，然后休息。\n");
        assert_eq!(text_of(&blocks[0]), "番茄工作法：25分钟专注，然后休息。");
        assert!(to_blocks("").is_empty());
    }
}
