//! What an answer looks like on its question's page, and how it is found again: a heading
//! whose link carries the start marker (page and generation), the answer, and a footer carrying
//! the end marker; a failure callout carries its own. The markers are what make a retry after
//! a crash safe — a complete answer is not written again, a partial one is replaced — and what
//! tells notion-llm's blocks from a person's (see `conversation`).

use notion::Block;
use serde_json::{Value, json};

use crate::context::{BuiltContext, ContextMode};
use crate::store::Usage;

/// Base of the marker links on answers.
const MARKER_BASE: &str = "https://github.com/notion-llm/notion-llm#answer-";

/// What of this generation's answer is on the page already.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AnswerOnPage {
    Absent,
    /// The heading (and maybe some blocks) but no footer: an interrupted append. The ids are
    /// those of the answer's blocks, to be removed before writing it again.
    Partial(Vec<String>),
    Complete,
}

fn compact(page_id: &str) -> String {
    page_id.replace('-', "")
}

pub(super) fn marker(page_id: &str, generation: u32, part: &str) -> String {
    format!("{MARKER_BASE}{}-g{generation}-{part}", compact(page_id))
}

pub(super) fn has_link(block: &Block, url: &str) -> bool {
    block.payload()["rich_text"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|item| item["href"] == url || item["text"]["link"]["url"] == url)
}

/// Which marker a block carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// An answer's heading.
    Start,
    /// An answer's footer.
    End,
    /// A failure callout.
    Failed,
}

/// The generation and part of the marker `block` carries for `page_id`, if any.
pub(super) fn marker_of(block: &Block, page_id: &str) -> Option<(u32, Part)> {
    let prefix = format!("{MARKER_BASE}{}-g", compact(page_id));
    block.payload()["rich_text"].as_array().into_iter().flatten().find_map(|item| {
        let url = item["href"].as_str().or_else(|| item["text"]["link"]["url"].as_str())?;
        let (generation, part) = url.strip_prefix(&prefix)?.split_once('-')?;
        let part = match part {
            "start" => Part::Start,
            "end" => Part::End,
            "failed" => Part::Failed,
            _ => return None,
        };
        Some((generation.parse().ok()?, part))
    })
}

/// What an answer's footer says besides its context.
pub(super) struct Footer<'a> {
    /// The LLM's usage (`None` for an extractive answer).
    pub usage: Option<&'a Usage>,
    /// Seconds the question took.
    pub seconds: f64,
    /// The status that asks again (for the follow-up hint).
    pub pending: &'a str,
    /// Remarks on the page's own choices: a model that was not available, a narrowed search.
    pub notes: Vec<String>,
}

/// The answer as blocks: a heading carrying the start marker, the answer, a footer carrying the
/// end marker (mode, model, tokens and cost, the page's choices, sources — linked where they are
/// URLs — seconds, and how to follow up).
pub(super) fn answer_blocks(
    page_id: &str,
    generation: u32,
    markdown: &str,
    context: &BuiltContext,
    said: &Footer<'_>,
) -> Vec<Value> {
    let (usage, seconds, pending) = (said.usage, said.seconds, said.pending);
    use notion::rich_text::{Style, text_item};
    let title = if context.mode.agent_answered() { "Answer" } else { "Answer (offline)" };
    let heading_style = Style { link: Some(marker(page_id, generation, "start")), ..Style::default() };
    let mut blocks =
        vec![json!({ "type": "heading_2", "heading_2": { "rich_text": [text_item(title, &heading_style)] } })];
    blocks.extend(notion::markdown::to_blocks(markdown));
    let mut footer = format!(" · mode: {}", context.mode.as_str());
    if context.mode == ContextMode::Unmatched {
        footer.push_str(" (no note matched this question)");
    }
    if let Some(usage) = usage {
        footer.push_str(&format!(" · model: {} · {}", usage.model, usage_text(usage)));
    }
    for note in &said.notes {
        footer.push_str(" · ");
        footer.push_str(note);
    }
    let muted = Style { italic: true, ..Style::default() };
    let signature = Style { italic: true, link: Some(marker(page_id, generation, "end")), ..Style::default() };
    let mut items = vec![text_item("notion-llm", &signature)];
    if !context.sources.is_empty() {
        footer.push_str(" · sources: ");
        items.push(text_item(&footer, &muted));
        footer.clear();
        for (index, source) in context.sources.iter().take(MAX_FOOTER_SOURCES).enumerate() {
            if index > 0 {
                items.push(text_item(", ", &muted));
            }
            let label = truncate(&source_label(source), 200);
            let linked = is_web_link(source).then(|| source.clone());
            items.push(text_item(&label, &Style { link: linked, ..muted.clone() }));
        }
        if context.sources.len() > MAX_FOOTER_SOURCES {
            footer.push_str(&format!(" and {} more", context.sources.len() - MAX_FOOTER_SOURCES));
        }
    }
    footer.push_str(&format!(" · {seconds:.1} s"));
    items.push(text_item(&truncate(&footer, 1900), &muted));
    items.push(text_item(&follow_up_hint(pending), &muted));
    blocks.push(json!({ "type": "paragraph", "paragraph": { "rich_text": items, "color": "gray" } }));
    blocks
}

/// The footer's last words: how to go on with the conversation.
pub(super) fn follow_up_hint(pending: &str) -> String {
    format!(
        "\nTo follow up, write below this answer and set Status to {pending}. Set it to {pending} with nothing \
         new below to have this answer written again."
    )
}

/// Sources named in a footer; Notion allows 100 rich-text items in a block.
const MAX_FOOTER_SOURCES: usize = 20;

/// "1,234 tokens (1,100 in, 134 out) · $0.0012" — the cost when the provider reported it.
pub(super) fn usage_text(usage: &Usage) -> String {
    let total = usage.prompt_tokens + usage.completion_tokens;
    let mut text = format!(
        "{} tokens ({} in, {} out)",
        thousands(total),
        thousands(usage.prompt_tokens),
        thousands(usage.completion_tokens)
    );
    match usage.cost {
        Some(cost) if !cost.is_finite() || cost < 0.0 => {}
        Some(0.0) => text.push_str(" · $0"),
        Some(cost) if cost < 0.0001 => text.push_str(" · < $0.0001"),
        Some(cost) => text.push_str(&format!(" · ${cost:.4}")),
        None => {}
    }
    text
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn is_web_link(source: &str) -> bool {
    source.starts_with("https://") || source.starts_with("http://")
}

/// How a source reads in a footer: a Notion page URL as its title, anything else as it is.
fn source_label(source: &str) -> String {
    notion::link::page_title(source).unwrap_or_else(|| source.to_owned())
}

/// Without a model, the answer is the context itself, introduced as such.
pub(super) fn extractive_answer(context: &BuiltContext) -> String {
    let intro = "*No language model is configured (OPENROUTER_API_KEY is not set), so this answer quotes the \
        passages of your notes that best match the question.*";
    if context.mode == ContextMode::Unmatched {
        format!("{intro}\n\nNo passage of your notes matched the question.")
    } else if context.text.trim().is_empty() {
        format!("{intro}\n\nNo passages matched, and no notes were reachable.")
    } else {
        let quoted: Vec<String> = context
            .text
            .lines()
            .map(|line| if line.is_empty() { ">".to_owned() } else { format!("> {line}") })
            .collect();
        format!("{intro}\n\n{}", quoted.join("\n"))
    }
}

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// The failure callout of `generation` of a question (found again by its marker link), with
/// the reason and how to ask again.
pub(super) fn failure_callout(page_id: &str, generation: u32, reason: &str, pending: &str) -> (String, Value) {
    use notion::rich_text::{Style, text_item};
    let marker = marker(page_id, generation, "failed");
    let heading = Style { bold: true, link: Some(marker.clone()), ..Style::default() };
    let note = json!({
        "type": "callout",
        "callout": {
            "rich_text": [
                text_item("notion-llm could not answer this question: ", &heading),
                text_item(
                    &format!("{}. Set Status back to {pending} to try again.", truncate(reason, 1500)),
                    &Style::default(),
                ),
            ],
            "icon": { "type": "emoji", "emoji": "⚠️" },
        },
    });
    (marker, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_tell_generation_and_part() {
        let page = "1111-2222";
        let block = |url: &str| -> Block {
            serde_json::from_value(json!({ "id": "b", "type": "paragraph",
                "paragraph": { "rich_text": [{ "plain_text": "x", "href": url }] } }))
            .unwrap()
        };
        assert_eq!(marker_of(&block(&marker(page, 12, "start")), page), Some((12, Part::Start)));
        assert_eq!(marker_of(&block(&marker(page, 3, "end")), page), Some((3, Part::End)));
        assert_eq!(marker_of(&block(&marker(page, 1, "failed")), page), Some((1, Part::Failed)));
        assert_eq!(marker_of(&block(&marker("other-page", 1, "start")), page), None, "another page's");
        assert_eq!(marker_of(&block("https://example.com"), page), None);
    }

    #[test]
    fn the_answer_carries_heading_footer_and_markers() {
        let context = BuiltContext { mode: ContextMode::Cached, text: String::new(), sources: vec!["a.md".into()] };
        let usage = Usage { model: "m".into(), ..Usage::default() };
        let said = Footer { usage: Some(&usage), seconds: 1.26, pending: "Pending", notes: vec![] };
        let blocks = answer_blocks("p-1", 1, "Hello **world**", &context, &said);
        assert_eq!(blocks[0]["heading_2"]["rich_text"][0]["text"]["content"], "Answer (offline)");
        assert_eq!(blocks[0]["heading_2"]["rich_text"][0]["text"]["link"]["url"], marker("p-1", 1, "start"));
        let footer = &blocks.last().unwrap()["paragraph"]["rich_text"];
        let text: String =
            footer.as_array().unwrap()[1..].iter().filter_map(|i| i["text"]["content"].as_str()).collect();
        assert_eq!(
            text,
            format!(
                " · mode: cached · model: m · 0 tokens (0 in, 0 out) · sources: a.md · 1.3 s{}",
                follow_up_hint("Pending")
            )
        );
        assert!(text.contains("write below this answer and set Status to Pending"));
        assert_eq!(footer[0]["text"]["link"]["url"], marker("p-1", 1, "end"));
    }

    #[test]
    fn footers_show_tokens_and_cost_and_link_the_sources_that_have_urls() {
        let notion_page = "https://www.notion.so/team/Weekly-Review-1a2b3c4d5e6f708192a3b4c5d6e7f809";
        let context = BuiltContext {
            mode: ContextMode::Full,
            text: String::new(),
            sources: vec!["notes/sleep.md".into(), notion_page.into(), "https://example.com/x".into()],
        };
        let usage = Usage { model: "m".into(), prompt_tokens: 1200, completion_tokens: 34, cost: Some(0.00123) };
        let notes = vec!["searched: notes only".to_owned()];
        let said = Footer { usage: Some(&usage), seconds: 2.0, pending: "Pending", notes };
        let blocks = answer_blocks("p-1", 1, "Hi", &context, &said);
        let footer = blocks.last().unwrap()["paragraph"]["rich_text"].as_array().unwrap().clone();
        let text: String = footer[1..footer.len() - 1].iter().filter_map(|i| i["text"]["content"].as_str()).collect();
        assert_eq!(
            text,
            " · mode: full · model: m · 1,234 tokens (1,200 in, 34 out) · $0.0012 · searched: notes only · sources: \
             notes/sleep.md, Weekly Review, https://example.com/x · 2.0 s"
        );
        let link = |label: &str| footer.iter().find(|i| i["text"]["content"] == label).unwrap()["text"]["link"].clone();
        assert_eq!(link("Weekly Review")["url"], notion_page);
        assert_eq!(link("https://example.com/x")["url"], "https://example.com/x");
        assert!(link("notes/sleep.md").is_null(), "a path is not a link");

        let free = Usage { cost: Some(0.0), ..usage.clone() };
        assert_eq!(usage_text(&free), "1,234 tokens (1,200 in, 34 out) · $0");
        assert!(usage_text(&Usage { cost: Some(0.00001), ..usage.clone() }).ends_with("< $0.0001"));
        assert!(!usage_text(&Usage { cost: None, ..usage }).contains('$'));
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn extractive_answers_say_why_they_are_extractive() {
        let context = BuiltContext { mode: ContextMode::Full, text: "[1] T (a.md)\nline".into(), sources: vec![] };
        let answer = extractive_answer(&context);
        assert!(answer.contains("OPENROUTER_API_KEY is not set"));
        assert!(answer.ends_with("> [1] T (a.md)\n> line"));
    }
}
