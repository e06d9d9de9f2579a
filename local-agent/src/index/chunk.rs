//! Splitting a document into passages ("chunks") that fit the embedding model.
//!
//! Structure first: every Markdown section (heading) starts a new chunk, and paragraphs, lines
//! and sentences are packed whole into chunks of at most `max_tokens` model tokens — the bound
//! includes the title/heading line that is prepended to each chunk, so the model sees every
//! chunk entirely. A heading never becomes a chunk of its own: it travels with the text that
//! follows it (a title alone as a chunk measurably hurts retrieval). Consecutive chunks of a
//! section share up to `overlap_tokens` of whole sentences, so a fact cut at a boundary is
//! still found in one piece.

use crate::sources::folder::{Document, FileKind, atx_heading, fence_marker};

/// How chunks are sized. Both numbers are in model tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkSettings {
    /// Upper bound of a chunk including its title line and the model's special tokens.
    pub max_tokens: usize,
    /// How much of the end of a chunk is repeated at the start of the next one.
    pub overlap_tokens: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self { max_tokens: 256, overlap_tokens: 32 }
    }
}

impl ChunkSettings {
    /// Chunks as long as the model reads (`max_input_tokens`), up to 512 tokens, so a section
    /// stays whole where the model can take it: multilingual-e5-small reads 512 tokens, and
    /// its chunks at 512 instead of 256 measured zh-dev hybrid nDCG@10 0.686 → 0.705 with the
    /// query stop words (BENCHMARKS.md). The default model reads 256, as before.
    pub fn fitting(max_input_tokens: usize) -> Self {
        Self { max_tokens: max_input_tokens.clamp(32, 512), ..Self::default() }
    }
}

/// A passage of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position within the document, from 0.
    pub ordinal: u32,
    /// Headings above the passage, outermost first, joined with " › " (empty at top level).
    pub heading: String,
    /// The passage.
    pub text: String,
    /// Byte length of the start of `text` that repeats the end of the previous chunk.
    pub overlap: usize,
}

impl Chunk {
    /// The text that is embedded and keyword-indexed: title and headings, then the passage.
    pub fn indexed_text(&self, title: &str) -> String {
        format!("{}\n\n{}", title_line(title, &self.heading), self.text)
    }
}

/// A chunk's title line: the note's title and the chunk's heading path (`Title › A › B`).
pub fn title_line(title: &str, heading: &str) -> String {
    if heading.is_empty() { title.to_owned() } else { format!("{title} › {heading}") }
}

/// Model tokens the encoder adds around every input ([CLS] … [SEP]).
const SPECIAL_TOKENS: usize = 2;

/// Splits `document` into chunks; `count_tokens` measures text in model tokens (without
/// special tokens).
pub fn chunk_document(
    document: &Document,
    settings: ChunkSettings,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for section in sections(document) {
        let heading = section.path.join(" › ");
        let header = count_tokens(&format!("{} › {heading}", document.title)) + SPECIAL_TOKENS + 1;
        // A pathological heading must not leave no room for text.
        let budget = settings.max_tokens.saturating_sub(header).max(settings.max_tokens / 4).max(8);
        let units = section_units(&section.blocks, budget, count_tokens);
        for (text, overlap) in pack(&units, budget, settings.overlap_tokens.min(budget / 2)) {
            let ordinal = chunks.len() as u32;
            chunks.push(Chunk { ordinal, heading: heading.clone(), text, overlap });
        }
    }
    if chunks.is_empty() {
        // An empty note is still findable by its title.
        chunks.push(Chunk { ordinal: 0, heading: String::new(), text: document.title.clone(), overlap: 0 });
    }
    chunks
}

/// Text under one heading path.
#[derive(Debug, Default)]
struct Section {
    path: Vec<String>,
    blocks: Vec<String>,
}

/// Splits a document into sections of blocks (paragraphs, lists, code blocks).
fn sections(document: &Document) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut block = String::new();
    let mut fence: Option<String> = None;
    let mut title_heading_seen = false;

    let flush = |block: &mut String, sections: &mut Vec<Section>| {
        let text = block.trim_matches('\n');
        if !text.trim().is_empty() {
            sections.last_mut().expect("sections start non-empty").blocks.push(text.to_owned());
        }
        block.clear();
    };

    for line in document.body.lines() {
        if document.kind == FileKind::Markdown {
            if let Some(marker) = fence_marker(line) {
                match &fence {
                    Some(open) if marker.starts_with(open.as_str()) => fence = None,
                    Some(_) => {}
                    None => {
                        flush(&mut block, &mut sections);
                        fence = Some(marker.to_owned());
                    }
                }
                block.push_str(line);
                block.push('\n');
                if fence.is_none() {
                    flush(&mut block, &mut sections);
                }
                continue;
            }
            if fence.is_none()
                && let Some((level, text)) = atx_heading(line)
            {
                flush(&mut block, &mut sections);
                while stack.last().is_some_and(|(open, _)| *open >= level) {
                    stack.pop();
                }
                // The heading that became the title is not repeated in every heading path.
                let is_title = !title_heading_seen && text == document.title;
                title_heading_seen |= is_title;
                stack.push((level, if is_title { String::new() } else { text.to_owned() }));
                let path = stack.iter().filter(|(_, t)| !t.is_empty()).map(|(_, t)| t.clone()).collect();
                sections.push(Section { path, blocks: Vec::new() });
                continue;
            }
        }
        if fence.is_none() && line.trim().is_empty() {
            flush(&mut block, &mut sections);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    flush(&mut block, &mut sections);
    sections.retain(|section| !section.blocks.is_empty());
    sections
}

/// A piece of text that is never split further, with the separator that goes before it.
#[derive(Debug, Clone)]
struct Unit {
    joiner: &'static str,
    text: String,
    tokens: usize,
}

/// Breaks blocks into sentence-sized units that each fit `budget`.
fn section_units(blocks: &[String], budget: usize, count_tokens: &dyn Fn(&str) -> usize) -> Vec<Unit> {
    let mut units = Vec::new();
    for block in blocks {
        let block_tokens = count_tokens(block);
        if block.starts_with("```") || block.starts_with("~~~") {
            // Code is kept whole when it fits, else cut by lines only.
            if block_tokens <= budget {
                units.push(Unit { joiner: "\n\n", text: block.clone(), tokens: block_tokens });
                continue;
            }
        }
        let mut joiner = "\n\n";
        for line in block.lines().filter(|line| !line.trim().is_empty()) {
            for sentence in sentences(line) {
                let tokens = count_tokens(sentence);
                if tokens <= budget {
                    units.push(Unit { joiner, text: sentence.to_owned(), tokens });
                } else {
                    for (index, piece) in split_words(sentence, budget, count_tokens).into_iter().enumerate() {
                        let joiner = if index == 0 { joiner } else { " " };
                        units.push(Unit { joiner, tokens: count_tokens(&piece), text: piece });
                    }
                }
                // Chinese and Japanese sentences follow each other without a space.
                joiner = if sentence.ends_with(is_cjk) { "" } else { " " };
            }
            joiner = "\n";
        }
    }
    units
}

/// Splits a line after sentence-ending punctuation (`.!?` followed by a space and not by a
/// lower-case letter, or `。！？；` anywhere), keeping closing quotes with their sentence.
fn sentences(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let wide = matches!(c, '。' | '！' | '？' | '；' | '…');
        if !(wide || matches!(c, '.' | '!' | '?')) {
            continue;
        }
        let mut end = index + c.len_utf8();
        while let Some(&(next_index, next)) = chars.peek() {
            if matches!(next, '"' | '\'' | '”' | '’' | ')' | '）' | '」' | '』' | '】') {
                end = next_index + next.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let rest = &line[end..];
        let boundary = if wide {
            true
        } else {
            let after = rest.trim_start();
            rest.starts_with(char::is_whitespace) && after.chars().next().is_some_and(|next| !next.is_lowercase())
        };
        if boundary {
            let sentence = line[start..end].trim();
            if !sentence.is_empty() {
                parts.push(sentence);
            }
            start = end;
        }
    }
    let tail = line[start..].trim();
    if !tail.is_empty() {
        parts.push(tail);
    }
    parts
}

/// Cuts an over-long sentence into pieces of at most `budget` tokens, between words (each
/// CJK character counts as a word, since those scripts do not use spaces).
fn split_words(text: &str, budget: usize, count_tokens: &dyn Fn(&str) -> usize) -> Vec<String> {
    let mut words: Vec<(&str, &str)> = Vec::new(); // (joiner, word)
    let mut start = None;
    let mut pending_space = false;
    for (index, c) in text.char_indices() {
        if c.is_whitespace() || is_cjk(c) {
            if let Some(s) = start.take() {
                words.push((if pending_space { " " } else { "" }, &text[s..index]));
                pending_space = false;
            }
            if c.is_whitespace() {
                pending_space = !words.is_empty();
            } else {
                words.push((if pending_space { " " } else { "" }, &text[index..index + c.len_utf8()]));
                pending_space = false;
            }
        } else if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(s) = start {
        words.push((if pending_space { " " } else { "" }, &text[s..]));
    }

    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut tokens = 0;
    for (joiner, word) in words {
        // A single "word" longer than the budget (a URL, a hash) is cut by characters.
        let word_tokens = count_tokens(word);
        let fragments: Vec<String> = if word_tokens > budget {
            let per_char = word.chars().count().div_ceil(word_tokens.max(1));
            let chunk_chars = (budget * per_char).max(1);
            word.chars().collect::<Vec<_>>().chunks(chunk_chars).map(|c| c.iter().collect()).collect()
        } else {
            vec![word.to_owned()]
        };
        for (index, fragment) in fragments.into_iter().enumerate() {
            let fragment_tokens =
                if index == 0 && word_tokens <= budget { word_tokens } else { count_tokens(&fragment) };
            if tokens + fragment_tokens > budget && !piece.is_empty() {
                pieces.push(std::mem::take(&mut piece));
                tokens = 0;
            }
            if !piece.is_empty() && index == 0 {
                piece.push_str(joiner);
            }
            piece.push_str(&fragment);
            tokens += fragment_tokens;
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x3000..=0x303F    // CJK punctuation
        | 0xFF00..=0xFFEF    // full-width forms
        | 0x20000..=0x2FA1F) // Extensions B–F
}

/// Packs units into chunk texts of at most `budget` tokens; returns each text with the byte
/// length of its overlap with the previous chunk.
fn pack(units: &[Unit], budget: usize, overlap_tokens: usize) -> Vec<(String, usize)> {
    let mut chunks = Vec::new();
    let mut current: Vec<&Unit> = Vec::new();
    let mut tokens = 0;
    let mut carried = 0; // how many units at the start of `current` are overlap
    for unit in units {
        if tokens + unit.tokens > budget && current.len() > carried {
            chunks.push(render(&current, carried));
            // Carry whole trailing sentences, up to the overlap budget, into the next chunk.
            let mut tail = Vec::new();
            let mut tail_tokens = 0;
            for previous in current.iter().rev() {
                if tail_tokens + previous.tokens > overlap_tokens {
                    break;
                }
                tail_tokens += previous.tokens;
                tail.push(*previous);
            }
            tail.reverse();
            if tail_tokens + unit.tokens > budget {
                tail.clear();
                tail_tokens = 0;
            }
            carried = tail.len();
            current = tail;
            tokens = tail_tokens;
        }
        current.push(unit);
        tokens += unit.tokens;
    }
    if current.len() > carried {
        chunks.push(render(&current, carried));
    }
    chunks
}

fn render(units: &[&Unit], carried: usize) -> (String, usize) {
    let mut text = String::new();
    let mut overlap = 0;
    for (index, unit) in units.iter().enumerate() {
        if index > 0 {
            text.push_str(unit.joiner);
        }
        if index == carried && carried > 0 {
            overlap = text.len();
        }
        text.push_str(&unit.text);
    }
    (text, overlap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whitespace words plus CJK characters: close enough to WordPiece for structure tests.
    fn words(text: &str) -> usize {
        text.split_whitespace().map(|w| w.chars().filter(|&c| is_cjk(c)).count().max(1)).sum()
    }

    fn markdown(body: &str) -> Document {
        Document::parse("note.md", FileKind::Markdown, body)
    }

    #[test]
    fn chunks_fit_the_model_up_to_512_tokens() {
        assert_eq!(ChunkSettings::fitting(256), ChunkSettings::default(), "the default model's chunks are as before");
        assert_eq!(ChunkSettings::fitting(512).max_tokens, 512, "multilingual-e5-small");
        assert_eq!(ChunkSettings::fitting(8192).max_tokens, 512, "a long-input model still gets passages");
        assert_eq!(ChunkSettings::fitting(0).max_tokens, 32);
        let fitted = crate::index::IndexSettings::default();
        let configured = crate::index::IndexSettings {
            chunking: Some(ChunkSettings { max_tokens: 64, overlap_tokens: 8 }),
            ..fitted.clone()
        };
        let model = crate::embed::hashing::HashingEmbedder::new(8);
        assert_eq!(fitted.chunking_for(&model), ChunkSettings::fitting(256));
        assert_eq!(configured.chunking_for(&model).max_tokens, 64, "a configured size wins");
    }

    #[test]
    fn sections_start_chunks_and_carry_heading_paths() {
        let doc = markdown("# Title\nintro\n\n## A\nalpha\n\n### A1\ndeep\n\n## B\nbeta\n");
        let chunks = chunk_document(&doc, ChunkSettings::default(), &words);
        let got: Vec<(&str, &str)> = chunks.iter().map(|c| (c.heading.as_str(), c.text.as_str())).collect();
        assert_eq!(got, [("", "intro"), ("A", "alpha"), ("A › A1", "deep"), ("B", "beta")]);
        assert_eq!(chunks[2].indexed_text(&doc.title), "Title › A › A1\n\ndeep");
        assert_eq!(chunks.iter().map(|c| c.ordinal).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn a_heading_is_never_a_chunk_of_its_own() {
        let doc = markdown("# Title\n\n## Empty\n\n## Full\ntext\n");
        let chunks = chunk_document(&doc, ChunkSettings::default(), &words);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading, "Full");
        let empty = markdown("# Only a title\n");
        assert_eq!(chunk_document(&empty, ChunkSettings::default(), &words)[0].text, "Only a title");
    }

    #[test]
    fn long_sections_are_packed_by_sentences_with_overlap_and_within_budget() {
        let sentence = |i: usize| format!("Sentence number {i} has exactly seven words.");
        let body: Vec<String> = (0..40).map(sentence).collect();
        let doc = markdown(&format!("# T\n{}\n", body.join(" ")));
        let settings = ChunkSettings { max_tokens: 40, overlap_tokens: 8 };
        let chunks = chunk_document(&doc, settings, &words);
        assert!(chunks.len() > 5);
        for pair in chunks.windows(2) {
            let (previous, next) = (&pair[0], &pair[1]);
            assert!(next.overlap > 0, "consecutive chunks overlap");
            assert!(previous.text.ends_with(&next.text[..next.overlap].trim_end()));
        }
        for chunk in &chunks {
            assert!(words(&chunk.indexed_text("T")) + SPECIAL_TOKENS <= 40, "{chunk:?}");
        }
        // Nothing is lost: dropping overlaps and joining gives back every sentence in order.
        let joined: String = chunks.iter().map(|c| c.text[c.overlap..].trim()).collect::<Vec<_>>().join(" ");
        assert_eq!(joined, body.join(" "));
    }

    #[test]
    fn over_long_sentences_and_cjk_runs_are_cut_between_words() {
        let long = "词".repeat(100);
        let doc = Document::parse("x.txt", FileKind::Text, &long);
        let chunks = chunk_document(&doc, ChunkSettings { max_tokens: 30, overlap_tokens: 0 }, &words);
        assert!(chunks.len() >= 4);
        assert_eq!(chunks.iter().map(|c| c.text.as_str()).collect::<String>(), long);
        let url = format!("see https://example.com/{}", "a".repeat(500));
        let pieces = split_words(&url, 10, &|t: &str| t.len().div_ceil(10));
        assert!(pieces.iter().all(|p| p.len().div_ceil(10) <= 10), "{pieces:?}");
    }

    #[test]
    fn sentences_split_on_western_and_chinese_punctuation() {
        assert_eq!(sentences("One. Two! e.g. three? 四。五！"), ["One.", "Two! e.g. three?", "四。", "五！"]);
        assert_eq!(sentences("He said \"go.\" Then left"), ["He said \"go.\"", "Then left"]);
        let doc = Document::parse("x.txt", FileKind::Text, "第一句。第二句！Third. Fourth");
        let chunks = chunk_document(&doc, ChunkSettings::default(), &words);
        assert_eq!(chunks[0].text, "第一句。第二句！Third. Fourth", "no spaces are invented between CJK sentences");
    }

    #[test]
    fn code_blocks_stay_whole_and_do_not_hide_headings_after_them() {
        let doc = markdown("# T\n```\n# not a heading\n\nstill code\n```\n## After\ntext\n");
        let chunks = chunk_document(&doc, ChunkSettings::default(), &words);
        assert_eq!(chunks[0].text, "```\n# not a heading\n\nstill code\n```");
        assert_eq!(chunks[1].heading, "After");
    }
}
