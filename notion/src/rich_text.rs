//! Rich text: reading it as plain text, and writing it within Notion's limits.

use serde_json::{Value, json};

/// Longest `text.content` Notion accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most rich-text objects in one array.
pub const MAX_RICH_TEXT_ITEMS: usize = 100;

/// The plain text of a rich-text array (`[{plain_text, …}, …]`).
pub fn plain_text(rich_text: &Value) -> String {
    let Some(items) = rich_text.as_array() else { return String::new() };
    items.iter().map(item_text).collect()
}

fn item_text(item: &Value) -> String {
    if let Some(text) = item["plain_text"].as_str() {
        return text.to_owned();
    }
    // Objects we build ourselves have no `plain_text` yet.
    match item["type"].as_str() {
        Some("equation") => item["equation"]["expression"].as_str().unwrap_or_default().to_owned(),
        _ => item["text"]["content"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Inline formatting of a run of text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Style {
    /// Bold.
    pub bold: bool,
    /// Italic.
    pub italic: bool,
    /// Strikethrough.
    pub strikethrough: bool,
    /// Inline code.
    pub code: bool,
    /// Link target.
    pub link: Option<String>,
}

/// Builds rich-text arrays run by run, splitting text into objects of at most
/// [`MAX_TEXT_CHARS`] characters and merging neighbours of the same style.
#[derive(Debug, Default, Clone)]
pub struct RichTextBuilder {
    runs: Vec<(String, Style)>,
}

impl RichTextBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `text` in `style`.
    pub fn push(&mut self, text: &str, style: &Style) {
        if text.is_empty() {
            return;
        }
        match self.runs.last_mut() {
            Some((last, last_style)) if last_style == style => last.push_str(text),
            _ => self.runs.push((text.to_owned(), style.clone())),
        }
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(|(text, _)| text.is_empty())
    }

    /// The plain text so far.
    pub fn text(&self) -> String {
        self.runs.iter().map(|(text, _)| text.as_str()).collect()
    }

    /// The rich-text objects, each within [`MAX_TEXT_CHARS`]. The caller splits arrays longer
    /// than [`MAX_RICH_TEXT_ITEMS`] (see [`split_items`]).
    pub fn build(&self) -> Vec<Value> {
        let mut items = Vec::new();
        for (text, style) in &self.runs {
            for piece in split_chars(text, MAX_TEXT_CHARS) {
                items.push(text_item(piece, style));
            }
        }
        items
    }
}

/// One rich-text object of type `text`.
pub fn text_item(content: &str, style: &Style) -> Value {
    let link = style.link.as_ref().map(|url| json!({ "url": url }));
    json!({
        "type": "text",
        "text": { "content": content, "link": link },
        "annotations": {
            "bold": style.bold,
            "italic": style.italic,
            "strikethrough": style.strikethrough,
            "underline": false,
            "code": style.code,
            "color": "default",
        },
    })
}

/// Most text bytes in one block's rich text, so that any block fits in one request (500 KB).
const MAX_BLOCK_TEXT_BYTES: usize = 64 * 1024;

/// Splits rich-text objects into arrays of at most [`MAX_RICH_TEXT_ITEMS`] objects and 64 KB
/// of text, one array per block.
pub fn split_items(items: Vec<Value>) -> Vec<Vec<Value>> {
    let mut groups = vec![Vec::new()];
    let mut bytes = 0;
    for item in items {
        let size = item["text"]["content"].as_str().map_or(0, str::len);
        let group = groups.last_mut().expect("groups start non-empty");
        if !group.is_empty() && (group.len() == MAX_RICH_TEXT_ITEMS || bytes + size > MAX_BLOCK_TEXT_BYTES) {
            groups.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        groups.last_mut().expect("groups start non-empty").push(item);
    }
    groups
}

/// Cuts `text` into pieces of at most `max` characters, preferring to cut after a newline or a
/// space in the last fifth of a piece.
pub fn split_chars(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let hard = rest.char_indices().nth(max).map_or(rest.len(), |(index, _)| index);
        let floor = rest.char_indices().nth(max * 4 / 5).map_or(0, |(index, _)| index);
        let soft = rest[..hard].rfind(['\n', ' ']).filter(|&index| index >= floor).map(|index| index + 1);
        let cut = soft.unwrap_or(hard);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_within_the_limit_and_nothing_is_lost() {
        let text = "word ".repeat(1000) + &"长".repeat(2500);
        let pieces = split_chars(&text, MAX_TEXT_CHARS);
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert_eq!(pieces.concat(), text);
        assert!(pieces[0].ends_with(' '), "cut at a space when one is near");
    }

    #[test]
    fn builder_merges_runs_and_splits_objects() {
        let mut builder = RichTextBuilder::new();
        let bold = Style { bold: true, ..Style::default() };
        builder.push("a", &Style::default());
        builder.push("b", &Style::default());
        builder.push(&"x".repeat(4500), &bold);
        let items = builder.build();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["text"]["content"], "ab");
        assert_eq!(items[1]["annotations"]["bold"], true);
        assert_eq!(plain_text(&Value::Array(items)), format!("ab{}", "x".repeat(4500)));
        assert_eq!(split_items(vec![json!({}); 250]).iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 50]);
        let big = text_item(&"x".repeat(2000), &Style::default());
        assert_eq!(
            split_items(vec![big; 40]).iter().map(Vec::len).collect::<Vec<_>>(),
            [32, 8],
            "64 KB of text a block"
        );
        assert_eq!(split_items(Vec::new()), [Vec::<Value>::new()]);
    }
}
