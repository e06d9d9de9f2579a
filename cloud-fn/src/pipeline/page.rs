//! What an answer looks like on its question's page, and how it is found again: a heading
//! whose link carries the start marker (page and generation), the answer, and a footer carrying
//! the end marker; a failure callout carries its own. The markers are what make a retry after
//! a crash safe: a complete answer is not written again, a partial one is replaced.

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

pub(super) fn is_answer_block(block: &Block, page_id: &str) -> bool {
    let prefix = format!("{MARKER_BASE}{}-g", compact(page_id));
    block.payload()["rich_text"].as_array().into_iter().flatten().any(|item| {
        item["href"]
            .as_str()
            .or_else(|| item["text"]["link"]["url"].as_str())
            .is_some_and(|url| url.starts_with(&prefix))
    })
}

pub(super) fn find_answer(blocks: &[Block], page_id: &str, generation: u32) -> AnswerOnPage {
    let start = marker(page_id, generation, "start");
    let end = marker(page_id, generation, "end");
    let Some(first) = blocks.iter().position(|block| has_link(block, &start)) else { return AnswerOnPage::Absent };
    if blocks[first..].iter().any(|block| has_link(block, &end)) {
        AnswerOnPage::Complete
    } else {
        AnswerOnPage::Partial(blocks[first..].iter().map(|block| block.id.clone()).collect())
    }
}

/// The answer as blocks: a heading carrying the start marker, the answer, a footer carrying the
/// end marker (mode, model, sources, seconds).
pub(super) fn answer_blocks(
    page_id: &str,
    generation: u32,
    markdown: &str,
    context: &BuiltContext,
    usage: Option<&Usage>,
    seconds: f64,
) -> Vec<Value> {
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
        footer.push_str(&format!(" · model: {}", usage.model));
    }
    if !context.sources.is_empty() {
        footer.push_str(&format!(" · sources: {}", context.sources.join(", ")));
    }
    footer.push_str(&format!(" · {seconds:.1} s"));
    let muted = Style { italic: true, ..Style::default() };
    let signature = Style { italic: true, link: Some(marker(page_id, generation, "end")), ..Style::default() };
    blocks.push(json!({
        "type": "paragraph",
        "paragraph": { "rich_text": [text_item("notion-llm", &signature), text_item(&truncate(&footer, 1900), &muted)], "color": "gray" },
    }));
    blocks
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

    fn block(id: &str, url: Option<&str>) -> Block {
        let rich = match url {
            Some(url) => json!([{ "plain_text": "x", "href": url }]),
            None => json!([{ "plain_text": "x", "href": null }]),
        };
        serde_json::from_value(json!({ "id": id, "type": "paragraph", "paragraph": { "rich_text": rich } })).unwrap()
    }

    #[test]
    fn answers_are_found_by_their_markers() {
        let page = "1111-2222";
        let start = marker(page, 2, "start");
        let end = marker(page, 2, "end");
        let old = marker(page, 1, "start");
        let complete = [block("a", None), block("b", Some(&start)), block("c", None), block("d", Some(&end))];
        assert_eq!(find_answer(&complete, page, 2), AnswerOnPage::Complete);
        let partial = [block("a", Some(&old)), block("b", Some(&start)), block("c", None)];
        assert_eq!(find_answer(&partial, page, 2), AnswerOnPage::Partial(vec!["b".into(), "c".into()]));
        assert_eq!(find_answer(&partial, page, 3), AnswerOnPage::Absent);
        assert!(is_answer_block(&partial[0], page) && !is_answer_block(&complete[0], page));
    }

    #[test]
    fn the_answer_carries_heading_footer_and_markers() {
        let context = BuiltContext { mode: ContextMode::Cached, text: String::new(), sources: vec!["a.md".into()] };
        let usage = Usage { model: "m".into(), ..Usage::default() };
        let blocks = answer_blocks("p-1", 1, "Hello **world**", &context, Some(&usage), 1.26);
        assert_eq!(blocks[0]["heading_2"]["rich_text"][0]["text"]["content"], "Answer (offline)");
        assert_eq!(blocks[0]["heading_2"]["rich_text"][0]["text"]["link"]["url"], marker("p-1", 1, "start"));
        let footer = &blocks.last().unwrap()["paragraph"]["rich_text"];
        assert_eq!(footer[1]["text"]["content"], " · mode: cached · model: m · sources: a.md · 1.3 s");
        assert_eq!(footer[0]["text"]["link"]["url"], marker("p-1", 1, "end"));
    }

    #[test]
    fn extractive_answers_say_why_they_are_extractive() {
        let context = BuiltContext { mode: ContextMode::Full, text: "[1] T (a.md)\nline".into(), sources: vec![] };
        let answer = extractive_answer(&context);
        assert!(answer.contains("OPENROUTER_API_KEY is not set"));
        assert!(answer.ends_with("> [1] T (a.md)\n> line"));
    }
}
