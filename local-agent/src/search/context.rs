//! Turning search hits into a context block for a prompt: numbered, cited passages, with
//! neighbouring chunks of a document merged into one passage (their overlap removed),
//! duplicates dropped, and the whole fitted into a character budget.

use std::collections::HashSet;

/// A passage to cite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Document title.
    pub title: String,
    /// Where the document lives.
    pub source: String,
    /// Consecutive chunks of the document, in order.
    pub pieces: Vec<Piece>,
}

/// One chunk of a passage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Heading path of the chunk.
    pub heading: String,
    /// The chunk's text.
    pub text: String,
    /// Byte length of the start of `text` that repeats the previous chunk.
    pub overlap: usize,
}

impl Passage {
    /// Heading path of the passage's first chunk.
    pub fn heading(&self) -> &str {
        self.pieces.first().map_or("", |piece| piece.heading.as_str())
    }

    /// The pieces joined: overlaps dropped, and a chunk from another section introduced by
    /// its heading.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let mut heading = self.heading();
        for (index, piece) in self.pieces.iter().enumerate() {
            if index == 0 {
                text.push_str(&piece.text);
            } else if piece.heading != heading {
                text.push_str("\n\n");
                if !piece.heading.is_empty() {
                    text.push_str(&format!("› {}\n", piece.heading));
                }
                text.push_str(&piece.text);
            } else if piece.overlap > 0 {
                let fresh = piece.text.get(piece.overlap..).unwrap_or(&piece.text).trim_start();
                text.push_str(if text.ends_with(char::is_whitespace) || fresh.starts_with(is_wide) { "" } else { " " });
                text.push_str(fresh);
            } else {
                text.push_str("\n\n");
                text.push_str(&piece.text);
            }
            heading = &piece.heading;
        }
        text
    }
}

fn is_wide(c: char) -> bool {
    ('\u{2E80}'..='\u{FFEF}').contains(&c)
}

/// Smallest tail worth keeping when the last passage must be shortened to fit.
const MIN_PARTIAL_CHARS: usize = 120;

/// Builds the context: `[n] Title › Heading (source)` then the passage, blank line between
/// passages, at most `max_chars` characters. Returns the context and the cited sources in order.
pub fn build_context(passages: &[Passage], max_chars: usize) -> (String, Vec<String>) {
    let mut context = String::new();
    let mut used = 0;
    let mut sources = Vec::new();
    let mut seen = HashSet::new();
    for passage in passages {
        let text = passage.text();
        let normalized: String = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        if normalized.is_empty() || !seen.insert(normalized) {
            continue;
        }
        let number = sources.len() + 1;
        let mut header = format!("[{number}] {}", passage.title);
        if !passage.heading().is_empty() {
            header.push_str(" › ");
            header.push_str(passage.heading());
        }
        header.push_str(&format!(" ({})\n", passage.source));
        let separator = if context.is_empty() { 0 } else { 2 };
        let header_chars = header.chars().count();
        let text_chars = text.chars().count();
        let room = max_chars.saturating_sub(used + separator + header_chars);
        if text_chars <= room {
            push(&mut context, &header, &text, separator);
            used += separator + header_chars + text_chars;
            sources.push(passage.source.clone());
            continue;
        }
        if room >= MIN_PARTIAL_CHARS.min(text_chars) && room > 1 {
            let shortened = shorten(&text, room - 1);
            push(&mut context, &header, &format!("{shortened}…"), separator);
            sources.push(passage.source.clone());
        }
        break;
    }
    (context, sources)
}

fn push(context: &mut String, header: &str, text: &str, separator: usize) {
    if separator > 0 {
        context.push_str("\n\n");
    }
    context.push_str(header);
    context.push_str(text);
}

/// At most `max_chars` characters of `text`, cut after a sentence end or a space if one is
/// near the limit.
fn shorten(text: &str, max_chars: usize) -> &str {
    let end = text.char_indices().nth(max_chars).map_or(text.len(), |(index, _)| index);
    let head = &text[..end];
    let floor = head.len() * 3 / 4;
    let cut = head
        .char_indices()
        .rev()
        .take_while(|(index, _)| *index >= floor)
        .find(|(_, c)| matches!(c, '.' | '。' | '!' | '！' | '?' | '？' | '\n'))
        .map(|(index, c)| index + c.len_utf8())
        .or_else(|| head.rfind(' ').filter(|&index| index >= floor));
    head[..cut.unwrap_or(head.len())].trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(source: &str, pieces: &[(&str, usize)]) -> Passage {
        Passage {
            title: format!("Title {source}"),
            source: source.into(),
            pieces: pieces
                .iter()
                .map(|(t, o)| Piece { heading: String::new(), text: t.to_string(), overlap: *o })
                .collect(),
        }
    }

    #[test]
    fn neighbouring_chunks_merge_without_repeating_their_overlap() {
        let merged = passage("a.md", &[("One. Two.", 0), ("Two. Three.", 4)]);
        assert_eq!(merged.text(), "One. Two. Three.");
        let mut sections = passage("a.md", &[("Intro.", 0), ("Details.", 0)]);
        sections.pieces[1].heading = "Usage".into();
        assert_eq!(sections.text(), "Intro.\n\n› Usage\nDetails.");
    }

    #[test]
    fn passages_are_cited_deduplicated_and_fitted() {
        let passages = [
            passage("a.md", &[("Alpha text.", 0)]),
            passage("copy.md", &[("alpha   TEXT.", 0)]),
            passage("b.md", &[("Beta text.", 0)]),
        ];
        let (context, sources) = build_context(&passages, 2000);
        assert_eq!(context, "[1] Title a.md (a.md)\nAlpha text.\n\n[2] Title b.md (b.md)\nBeta text.");
        assert_eq!(sources, ["a.md", "b.md"]);

        let long = "Sentence one is here. ".repeat(40);
        let passages = [passage("a.md", &[("Short.", 0)]), passage("b.md", &[(&long, 0)])];
        for budget in [30, 200, 500] {
            let (context, _) = build_context(&passages, budget);
            assert!(context.chars().count() <= budget, "{budget}: {}", context.chars().count());
        }
        let (context, sources) = build_context(&passages, 500);
        assert!(context.ends_with("here.…"), "cut at a sentence end: {context}");
        assert_eq!(sources, ["a.md", "b.md"]);
        let (context, sources) = build_context(&passages, 10);
        assert!(context.is_empty() && sources.is_empty());
    }

    #[test]
    fn character_budget_counts_characters_not_bytes() {
        let passages = [passage("中.md", &[(&"中文内容。".repeat(100), 0)])];
        let (context, _) = build_context(&passages, 300);
        assert!(context.chars().count() <= 300);
        assert!(context.chars().count() > 250, "the budget is used, not wasted on byte counts");
    }
}
