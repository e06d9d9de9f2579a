//! A question page read as a conversation, so that the page itself is the chat.
//!
//! The page's top-level blocks fall into stretches: what a person wrote, and what notion-llm
//! wrote — an answer (from the heading carrying its start marker to the footer carrying its end
//! marker) or a failure callout, each marked with its generation. A person asks again by
//! setting Status back to Pending, and the next generation's turn is read off the page:
//!
//! - **a follow-up**: text below the last answer is the new question. The answer goes right
//!   below it, and the earlier turns (the question, answers and follow-ups above) go to the
//!   model as the conversation so far;
//! - **answering again**: with nothing new below the last answer, that answer (or failure
//!   callout) is replaced: it is removed and the new one written where it was, answering the
//!   same question.
//!
//! A retry of the same generation finds the same turn: its own answer (partial or complete) is
//! found by its marker, and the answer it replaces is the one the job recorded the first time,
//! never chosen again (after it is removed, the page's last answer is an older one).

use notion::Block;

use super::page::{AnswerOnPage, Part, marker_of};

/// A stretch of the page's top-level blocks.
#[derive(Debug)]
enum Segment<'a> {
    /// Blocks a person wrote.
    Person(&'a [Block]),
    /// Blocks notion-llm wrote for a generation.
    Written { generation: u32, blocks: &'a [Block], kind: Written },
}

/// What notion-llm wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// An answer, with its footer (`complete`) or cut short.
    Answer { complete: bool },
    /// A failure callout.
    Failure,
}

impl<'a> Segment<'a> {
    fn blocks(&self) -> &'a [Block] {
        match self {
            Self::Person(blocks) | Self::Written { blocks, .. } => blocks,
        }
    }

    /// What a person wrote that says something (not only empty lines left by Enter).
    fn says_something(&self) -> bool {
        matches!(self, Self::Person(blocks) if !notion::render(blocks).text.trim().is_empty())
    }

    /// Only empty lines a person left (Enter pressed below an answer).
    fn is_blank(&self) -> bool {
        matches!(self, Self::Person(_)) && !self.says_something()
    }
}

/// Splits `blocks` (a page's top level) into what people and notion-llm wrote.
fn segments<'a>(blocks: &'a [Block], page_id: &str) -> Vec<Segment<'a>> {
    let mut segments = Vec::new();
    let (mut person_from, mut at) = (0, 0);
    while at < blocks.len() {
        let Some((generation, part)) = marker_of(&blocks[at], page_id) else {
            at += 1;
            continue;
        };
        if person_from < at {
            segments.push(Segment::Person(&blocks[person_from..at]));
        }
        let (end, kind) = match part {
            Part::Start => {
                // To its footer; an answer cut short runs to the next answer or the page's end.
                let mut end = at + 1;
                let mut complete = false;
                while end < blocks.len() {
                    match marker_of(&blocks[end], page_id) {
                        Some((other, Part::End)) if other == generation => {
                            complete = true;
                            end += 1;
                            break;
                        }
                        Some((_, Part::Start | Part::Failed)) => break,
                        _ => end += 1,
                    }
                }
                (end, Written::Answer { complete })
            }
            // A footer whose heading a person deleted: still not theirs.
            Part::End => (at + 1, Written::Answer { complete: false }),
            Part::Failed => (at + 1, Written::Failure),
        };
        segments.push(Segment::Written { generation, blocks: &blocks[at..end], kind });
        at = end;
        person_from = end;
    }
    if person_from < blocks.len() {
        segments.push(Segment::Person(&blocks[person_from..]));
    }
    segments
}

/// One earlier question and its answer, as the model is told them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exchange {
    /// What was asked (the page's title and details for the first).
    pub question: String,
    /// What notion-llm answered (its text, without heading and footer).
    pub answer: String,
}

/// What generation `generation` of a page has to answer, and where.
#[derive(Debug)]
pub(super) struct Turn<'a> {
    /// The person's blocks this turn answers: the page's details on the first turn, the
    /// follow-up after.
    pub question: &'a [Block],
    /// Whether this is the page's own question (title and details) rather than a follow-up.
    pub first: bool,
    /// The conversation before this turn, oldest first.
    pub earlier: Vec<Exchange>,
    /// This generation's answer, if a previous attempt wrote it (or part of it).
    pub existing: AnswerOnPage,
    /// The block the answer goes right after (`None`: the end of the page).
    pub after: Option<String>,
    /// The earlier answer or failure callout this one replaces: its generation, and its blocks
    /// last first (removed in that order, its heading goes last, so an interrupted removal
    /// leaves an answer cut short that the next attempt finds and finishes removing).
    pub replaces: Option<(u32, Vec<String>)>,
}

/// Reads `generation`'s turn off the page's top-level `blocks`. `decided` is what an earlier
/// attempt of this generation recorded about the answer to replace (`None`: nothing recorded
/// yet, decide now; `Some(None)`: none; `Some(Some(g))`: generation `g`'s, if still there).
pub(super) fn turn<'a>(
    blocks: &'a [Block],
    page_id: &str,
    generation: u32,
    title: &str,
    decided: Option<Option<u32>>,
) -> Turn<'a> {
    let segments = segments(blocks, page_id);
    let written_by = |segment: &Segment<'_>, wanted: u32| matches!(segment, Segment::Written { generation, .. } if *generation == wanted);
    let own = segments.iter().position(|segment| {
        matches!(segment, Segment::Written { generation: g, kind: Written::Answer { .. }, .. } if *g == generation)
    });
    let slot = own.unwrap_or(segments.len());
    let existing = match own.map(|index| &segments[index]) {
        Some(Segment::Written { kind: Written::Answer { complete: true }, .. }) => AnswerOnPage::Complete,
        Some(segment) => AnswerOnPage::Partial(segment.blocks().iter().rev().map(|block| block.id.clone()).collect()),
        None => AnswerOnPage::Absent,
    };
    let replaced = match decided {
        Some(Some(replaced)) => segments[..slot].iter().rposition(|segment| written_by(segment, replaced)),
        Some(None) => None,
        // Nothing new below the last thing written (empty lines aside): answer its question
        // again, in its place.
        None if own.is_none() => segments[..slot]
            .iter()
            .rposition(|segment| !segment.is_blank())
            .filter(|&index| matches!(segments[index], Segment::Written { .. })),
        None => None,
    };
    // The answer goes where the replaced one was, else in its own slot.
    let place = replaced.unwrap_or(slot);
    let after = place.checked_sub(1).and_then(|before| segments[before].blocks().last()).map(|block| block.id.clone());
    // The question is the person's stretch nearest above that place that says something.
    let asked = segments[..place].iter().rposition(Segment::says_something);
    let question = asked.map_or(&[][..], |index| segments[index].blocks());
    let earlier = exchanges(&segments[..asked.unwrap_or(0)], title);
    // Nothing answered above it: the page's own question (title and details).
    let first = earlier.is_empty();
    let replaces = replaced.map(|index| match &segments[index] {
        Segment::Written { generation, blocks, .. } => {
            (*generation, blocks.iter().rev().map(|block| block.id.clone()).collect())
        }
        Segment::Person(_) => unreachable!("only written stretches are replaced"),
    });
    Turn { question, first, earlier, existing, after, replaces }
}

/// The conversation in `segments`: each person's stretch with the last complete answer below
/// it (failures and answers cut short are left out).
fn exchanges(segments: &[Segment<'_>], title: &str) -> Vec<Exchange> {
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut asked: Option<String> = None;
    for segment in segments {
        match segment {
            _ if segment.is_blank() => {}
            Segment::Person(blocks) => {
                let text = notion::render(blocks).text;
                asked = Some(if exchanges.is_empty() && !title.is_empty() {
                    format!("{title}\n{text}").trim().to_owned()
                } else {
                    text
                });
            }
            Segment::Written { blocks, kind: Written::Answer { complete: true }, .. } => {
                // Between the heading and the footer.
                let answer = notion::render(&blocks[1..blocks.len().saturating_sub(1).max(1)]).text;
                match asked.take() {
                    Some(question) => exchanges.push(Exchange { question, answer }),
                    // Answered again with nothing asked in between: the newer answer stands.
                    None => match exchanges.last_mut() {
                        Some(last) => last.answer = answer,
                        None => exchanges.push(Exchange { question: title.to_owned(), answer }),
                    },
                }
            }
            Segment::Written { .. } => {}
        }
    }
    exchanges
}

/// Estimated tokens of the earlier turns sent with a follow-up.
pub(super) const EARLIER_TOKENS: usize = 3_000;

/// The earlier turns as the prompt carries them, within about `budget` tokens: the first
/// question always (it says what the page is about), then the newest exchanges that fit; the
/// oldest are dropped first, and a line says how many.
pub(super) fn earlier_text(earlier: &[Exchange], budget: usize) -> String {
    let Some((first, rest)) = earlier.split_first() else { return String::new() };
    // No single answer may take more than a third of the budget.
    let cap = |text: &str, tokens: usize| cut_to_tokens(text, tokens);
    let opening =
        format!("Question: {}\n\nAnswer: {}", cap(&first.question, budget / 4), cap(&first.answer, budget / 3));
    let mut left = budget.saturating_sub(estimate_tokens(&opening));
    let mut kept: Vec<String> = Vec::new();
    for exchange in rest.iter().rev() {
        let text = format!(
            "Follow-up: {}\n\nAnswer: {}",
            cap(&exchange.question, budget / 4),
            cap(&exchange.answer, budget / 3)
        );
        let tokens = estimate_tokens(&text);
        if tokens > left {
            break;
        }
        left -= tokens;
        kept.push(text);
    }
    let dropped = rest.len() - kept.len();
    let mut parts = vec![opening];
    if dropped > 0 {
        parts.push(format!("({dropped} earlier {} left out)", if dropped == 1 { "exchange" } else { "exchanges" }));
    }
    parts.extend(kept.into_iter().rev());
    parts.join("\n\n")
}

/// Tokens a model will likely see in `text`: a CJK character is about one, other text about
/// four characters each (no tokenizer of the model is at hand, and the budget is generous).
pub(super) fn estimate_tokens(text: &str) -> usize {
    let (mut wide, mut narrow) = (0usize, 0usize);
    for character in text.chars() {
        if is_wide(character) { wide += 1 } else { narrow += 1 }
    }
    wide + narrow.div_ceil(4)
}

fn is_wide(character: char) -> bool {
    matches!(character as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x2FFFF)
}

/// `text` cut to about `tokens` tokens, with an ellipsis where it was cut.
pub(super) fn cut_to_tokens(text: &str, tokens: usize) -> String {
    let text = text.trim();
    if estimate_tokens(text) <= tokens {
        return text.to_owned();
    }
    let mut used = 0.0f64;
    for (at, character) in text.char_indices() {
        used += if is_wide(character) { 1.0 } else { 0.25 };
        if used > tokens as f64 {
            return format!("{}…", &text[..at]);
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::page::marker;
    use super::*;

    const PAGE: &str = "1111-2222";

    fn person(id: &str, text: &str) -> Block {
        serde_json::from_value(json!({ "id": id, "type": "paragraph",
            "paragraph": { "rich_text": [{ "plain_text": text, "href": null }] } }))
        .unwrap()
    }

    fn marked(id: &str, generation: u32, part: &str, text: &str) -> Block {
        serde_json::from_value(json!({ "id": id, "type": "paragraph", "paragraph": { "rich_text": [
            { "plain_text": text, "href": marker(PAGE, generation, part) }] } }))
        .unwrap()
    }

    /// An answer of `generation`: heading, one paragraph, footer; ids `<prefix>h/b/f`.
    fn answer(prefix: &str, generation: u32, text: &str) -> Vec<Block> {
        vec![
            marked(&format!("{prefix}h"), generation, "start", "Answer"),
            person(&format!("{prefix}b"), text),
            marked(&format!("{prefix}f"), generation, "end", "notion-llm"),
        ]
    }

    fn ids(blocks: &[Block]) -> Vec<&str> {
        blocks.iter().map(|block| block.id.as_str()).collect()
    }

    #[test]
    fn a_new_question_is_the_page_itself() {
        let page = [person("d", "Some details.")];
        let turn = turn(&page, PAGE, 1, "Title?", None);
        assert!(turn.first && turn.earlier.is_empty() && turn.replaces.is_none());
        assert_eq!((ids(turn.question), turn.after.as_deref()), (vec!["d"], Some("d")));
        let empty = super::turn(&[], PAGE, 1, "Title?", None);
        assert!(empty.first && empty.question.is_empty() && empty.after.is_none());
    }

    #[test]
    fn text_below_the_last_answer_is_a_follow_up_answered_below_it() {
        let mut page = vec![person("d", "Details.")];
        page.extend(answer("a1", 1, "First answer."));
        page.push(person("f1", "And what about Y?"));
        page.push(person("f2", "Briefly."));
        let turn = turn(&page, PAGE, 2, "What is X?", None);
        assert!(!turn.first);
        assert_eq!(ids(turn.question), ["f1", "f2"]);
        assert_eq!(turn.after.as_deref(), Some("f2"));
        assert_eq!(turn.replaces, None);
        assert_eq!(
            turn.earlier,
            [Exchange { question: "What is X?\nDetails.".into(), answer: "First answer.".into() }]
        );
        assert_eq!(turn.existing, AnswerOnPage::Absent);
    }

    #[test]
    fn nothing_new_below_the_last_answer_replaces_it_and_a_retry_finds_the_same_turn() {
        let mut page = vec![person("d", "Details.")];
        page.extend(answer("a1", 1, "First answer."));
        page.push(person("f", "Follow-up?"));
        page.extend(answer("a2", 2, "Second answer."));
        let turn = super::turn(&page, PAGE, 3, "What is X?", None);
        assert_eq!(turn.replaces, Some((2, vec!["a2f".into(), "a2b".into(), "a2h".into()])), "last first");
        assert_eq!((ids(turn.question), turn.after.as_deref()), (vec!["f"], Some("f")));
        assert_eq!(turn.earlier.len(), 1, "the exchange it answers again is not history");

        // Half removed: the recorded decision finds what is left of it.
        let half = &page[..page.len() - 1];
        let retry = super::turn(half, PAGE, 3, "What is X?", Some(Some(2)));
        assert_eq!(retry.replaces, Some((2, vec!["a2b".into(), "a2h".into()])));
        // Removed: the same question, and never the answer above it.
        let gone = &page[..page.len() - 3];
        let retry = super::turn(gone, PAGE, 3, "What is X?", Some(Some(2)));
        assert_eq!((retry.replaces.is_none(), ids(retry.question)), (true, vec!["f"]));
        // Written: found by its own marker.
        let mut done = gone.to_vec();
        done.extend(answer("a3", 3, "Third."));
        let retry = super::turn(&done, PAGE, 3, "What is X?", Some(Some(2)));
        assert_eq!((retry.existing, ids(retry.question)), (AnswerOnPage::Complete, vec!["f"]));
    }

    #[test]
    fn empty_lines_below_the_last_answer_are_not_a_follow_up() {
        let mut page = vec![person("d", "Details.")];
        page.extend(answer("a1", 1, "First answer."));
        page.push(person("blank", "  "));
        let turn = turn(&page, PAGE, 2, "Q?", None);
        assert_eq!(turn.replaces.as_ref().map(|(generation, _)| *generation), Some(1), "answered again");
        assert!(turn.first);
        assert_eq!((ids(turn.question), turn.after.as_deref()), (vec!["d"], Some("d")));
    }

    #[test]
    fn a_failure_is_replaced_by_the_answer_and_left_out_of_the_history() {
        let page = [person("d", "Details."), marked("x", 1, "failed", "could not answer")];
        let turn = turn(&page, PAGE, 2, "Q?", None);
        assert_eq!(turn.replaces, Some((1, vec!["x".into()])));
        assert!(turn.first && turn.earlier.is_empty());
        assert_eq!(turn.after.as_deref(), Some("d"));
    }

    #[test]
    fn an_answer_cut_short_is_found_whole_for_removal() {
        let mut page = vec![person("d", "Details.")];
        page.extend(answer("a1", 1, "First."));
        page.push(person("f", "More?"));
        page.push(marked("a2h", 2, "start", "Answer"));
        page.push(person("a2b", "half an ans"));
        let turn = turn(&page, PAGE, 2, "Q?", Some(None));
        assert_eq!(turn.existing, AnswerOnPage::Partial(vec!["a2b".into(), "a2h".into()]));
        assert_eq!((ids(turn.question), turn.after.as_deref()), (vec!["f"], Some("f")));
    }

    #[test]
    fn the_earlier_turns_fit_the_budget_oldest_dropped_first() {
        let long = "word ".repeat(400); // ~500 tokens
        let earlier: Vec<Exchange> = (0..10)
            .map(|i| Exchange { question: format!("question {i}"), answer: format!("answer {i} {long}") })
            .collect();
        let text = earlier_text(&earlier, 2_000);
        assert!(estimate_tokens(&text) <= 2_100, "{}", estimate_tokens(&text));
        assert!(text.starts_with("Question: question 0"), "the first question always");
        assert!(text.contains("question 9") && !text.contains("question 1\n"), "the newest kept, the oldest dropped");
        assert!(text.contains("earlier exchanges left out"));
        assert_eq!(estimate_tokens("你好世界"), 4);
        assert_eq!(estimate_tokens("abcdefgh"), 2);
        assert!(cut_to_tokens(&"长".repeat(100), 10).chars().count() == 11);
    }
}
