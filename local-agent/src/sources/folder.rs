//! Finding notes in folders and reading them into [`Document`]s.
//!
//! A folder is walked recursively for `.md`, `.markdown` and `.txt` files; hidden files and
//! folders (`.git`, `.obsidian`, …) are skipped. A document's id is its path relative to the
//! folder, with `/` separators on every platform, so ids are stable across machines.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;
use yaml_rust2::{Yaml, YamlLoader};

use super::{SourceItem, Stamp};
use crate::error::{Error, Result};

/// The file kinds the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Markdown: headings structure the text, front matter may carry title and tags.
    Markdown,
    /// Plain text: paragraphs only.
    Text,
}

impl FileKind {
    /// The kind of a file, from its extension; `None` for files the agent does not read.
    pub fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "txt" => Some(Self::Text),
            _ => None,
        }
    }
}

/// Lists the note files under `root`, sorted by id.
///
/// Unreadable entries inside the folder are logged and skipped; an unreadable `root` is an
/// error, because "the folder is gone" must never be mistaken for "all notes were deleted".
pub fn scan_folder(root: &Path) -> Result<Vec<SourceItem>> {
    let metadata = std::fs::metadata(root).map_err(|source| Error::Folder { path: root.into(), source })?;
    if !metadata.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder");
        return Err(Error::Folder { path: root.into(), source });
    }
    let mut files = Vec::new();
    // Symbolic links are followed (notes are often linked in); walkdir reports loops as errors.
    let walker = WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_hidden(entry.file_name()));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(%error, "skipping unreadable entry");
                continue;
            }
        };
        if !entry.file_type().is_file() || FileKind::of(entry.path()).is_none() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else { continue };
        let Some(id) = relative_id(relative) else {
            tracing::warn!(path = %entry.path().display(), "skipping file with a non-UTF-8 name");
            continue;
        };
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(error) => {
                tracing::warn!(%error, path = %entry.path().display(), "skipping unreadable file");
                continue;
            }
        };
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |age| age.as_nanos());
        files.push(SourceItem { id, stamp: Stamp::File { size: metadata.len(), modified_ns } });
    }
    files.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(files)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|name| name.starts_with('.'))
}

fn relative_id(relative: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// A note, read and split from its front matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Path relative to the indexed folder.
    pub id: String,
    /// Front-matter `title`, else the first heading, else the file name without extension.
    pub title: String,
    /// Front-matter `tags` (a list, or a comma-separated string), deduplicated ignoring case.
    pub tags: Vec<String>,
    /// The text after the front matter.
    pub body: String,
    /// How to read the body.
    pub kind: FileKind,
}

impl Document {
    /// Parses a note's raw text. Never fails: malformed front matter is treated as text.
    pub fn parse(id: &str, kind: FileKind, raw: &str) -> Self {
        let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        let (front, body) = match kind {
            FileKind::Markdown => split_front_matter(raw),
            FileKind::Text => (None, raw),
        };
        let front = front.and_then(|yaml| match front_matter(yaml) {
            Ok(front) => front,
            Err(reason) => {
                tracing::warn!(document = id, "ignoring front matter: {reason}");
                None
            }
        });
        let title = front
            .as_ref()
            .and_then(|yaml| yaml["title"].as_str())
            .map(|title| title.trim().to_owned())
            .filter(|title| !title.is_empty())
            .or_else(|| (kind == FileKind::Markdown).then(|| first_heading(body)).flatten())
            .unwrap_or_else(|| file_stem(id));
        let tags = front.as_ref().map(|yaml| tags_of(&yaml["tags"])).unwrap_or_default();
        Self { id: id.to_owned(), title, tags, body: body.to_owned(), kind }
    }
}

/// Largest front matter read: titles and tags take a few hundred bytes.
pub const MAX_FRONT_MATTER_BYTES: usize = 16 * 1024;

/// Most YAML events (scalars, collection starts and ends) a front matter may have.
const MAX_FRONT_MATTER_EVENTS: usize = 4096;

/// Deepest nesting of mappings and sequences a front matter may have.
const MAX_FRONT_MATTER_DEPTH: usize = 32;

/// Parses front matter, refusing what could make parsing expensive: more than
/// [`MAX_FRONT_MATTER_BYTES`], aliases (a "billion laughs" note expands each alias into a
/// copy, exponentially), too many events or too deep a nesting. The events are checked
/// before anything is built, so a hostile note costs one linear scan of at most 16 KiB.
fn front_matter(yaml: &str) -> Result<Option<Yaml>, String> {
    use yaml_rust2::parser::{Event, Parser};
    if yaml.len() > MAX_FRONT_MATTER_BYTES {
        return Err(format!("it is {} bytes, over the {MAX_FRONT_MATTER_BYTES}-byte limit", yaml.len()));
    }
    let mut parser = Parser::new_from_str(yaml);
    let (mut events, mut depth) = (0, 0usize);
    loop {
        let (event, _) = parser.next_token().map_err(|error| error.to_string())?;
        events += 1;
        match event {
            Event::StreamEnd => break,
            Event::Alias(_) => return Err("YAML aliases are not accepted".into()),
            Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        if events > MAX_FRONT_MATTER_EVENTS || depth > MAX_FRONT_MATTER_DEPTH {
            return Err("it is too large or too deeply nested".into());
        }
    }
    YamlLoader::load_from_str(yaml).map(|docs| docs.into_iter().next()).map_err(|error| error.to_string())
}

/// Splits `---\n<yaml>\n---\n` off the start of a Markdown file.
fn split_front_matter(raw: &str) -> (Option<&str>, &str) {
    let Some(rest) = raw.strip_prefix("---\n").or_else(|| raw.strip_prefix("---\r\n")) else {
        return (None, raw);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if matches!(line.trim_end(), "---" | "...") {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    (None, raw)
}

fn tags_of(yaml: &Yaml) -> Vec<String> {
    let raw: Vec<String> = match yaml {
        Yaml::Array(items) => items.iter().filter_map(scalar_text).collect(),
        Yaml::String(text) => text.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in raw {
        let tag = tag.trim().trim_start_matches('#').trim().to_owned();
        if !tag.is_empty() && !tags.iter().any(|known| known.to_lowercase() == tag.to_lowercase()) {
            tags.push(tag);
        }
    }
    tags
}

fn scalar_text(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Boolean(value) => Some(value.to_string()),
        _ => None,
    }
}

/// The text of the first ATX heading outside code fences.
fn first_heading(body: &str) -> Option<String> {
    let mut fence = None;
    for line in body.lines() {
        if let Some(marker) = fence_marker(line) {
            fence = match fence {
                Some(open) if marker.starts_with(open) => None,
                Some(open) => Some(open),
                None => Some(marker),
            };
            continue;
        }
        if fence.is_none()
            && let Some((_, text)) = atx_heading(line)
            && !text.is_empty()
        {
            return Some(text.to_owned());
        }
    }
    None
}

/// `Some((level, text))` if `line` is an ATX heading (`## Text ##`).
pub(crate) fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim_end();
    Some((level, text))
}

/// The opening characters of a code fence (```` ``` ```` or `~~~`), if `line` is one.
pub(crate) fn fence_marker(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    ["```", "~~~"].into_iter().find(|marker| trimmed.starts_with(marker)).map(|marker| {
        let run = trimmed.bytes().take_while(|&b| b == marker.as_bytes()[0]).count();
        &trimmed[..run]
    })
}

fn file_stem(id: &str) -> String {
    let name = id.rsplit('/').next().unwrap_or(id);
    Path::new(name).file_stem().and_then(|stem| stem.to_str()).unwrap_or(name).to_owned()
}

/// How far into a file a NUL byte marks it as binary (what `git` and `grep` look at).
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// Reads a file as text. A stray invalid byte is replaced rather than refused, so one odd byte
/// does not hide a whole note; a file that is not text at all is [`Error::NotText`].
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Err(Error::NotText { path: path.to_owned(), reason: "binary: it holds NUL bytes" });
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(error) => {
            let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
            // More than one replaced byte in a hundred is an encoding, not a typo.
            let replaced = text.matches(char::REPLACEMENT_CHARACTER).count();
            if replaced > 2 && replaced * 100 > text.chars().count() {
                let reason = "not UTF-8: convert it, e.g. `iconv -f GBK -t UTF-8`";
                return Err(Error::NotText { path: path.to_owned(), reason });
            }
            Ok(text)
        }
    }
}

/// A folder of Markdown and text notes.
pub struct FolderSource {
    root: PathBuf,
    id: super::SourceId,
}

impl FolderSource {
    /// The folder at `path` (made absolute, as the manifest keeps it).
    pub fn new(path: &Path) -> Result<Self> {
        let root = std::fs::canonicalize(path).map_err(|source| Error::Folder { path: path.to_owned(), source })?;
        Ok(Self::known(root))
    }

    /// A folder the manifest already knows by its absolute path (it may not be mounted now).
    pub(crate) fn known(root: PathBuf) -> Self {
        Self { id: super::SourceId::Folder(root.clone()), root }
    }

    /// The folder's absolute path.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl super::Source for FolderSource {
    fn root(&self) -> &super::SourceId {
        &self.id
    }

    fn scan(&self) -> Result<super::Listing> {
        Ok(super::Listing { files: scan_folder(&self.root)?, complete: true })
    }

    fn read(&self, item: &SourceItem) -> Result<super::ReadDocument> {
        // Ids are relative paths with `/` separators, which every platform's paths accept.
        let path = self.root.join(&item.id);
        let raw = read_text(&path)?;
        let kind = FileKind::of(&path).unwrap_or(FileKind::Text);
        let document = Document::parse(&item.id, kind, &raw);
        Ok(super::ReadDocument { raw, document, url: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_comes_from_front_matter_then_heading_then_file_name() {
        let doc = Document::parse("a/b.md", FileKind::Markdown, "---\ntitle: Front\n---\n# Head\n");
        assert_eq!(doc.title, "Front");
        let doc = Document::parse("a/b.md", FileKind::Markdown, "intro\n\n## Head ##\ntext");
        assert_eq!(doc.title, "Head");
        let doc = Document::parse("a/b.md", FileKind::Markdown, "```\n# not a heading\n```\n");
        assert_eq!(doc.title, "b");
        let doc = Document::parse("notes/日记.txt", FileKind::Text, "# not markdown");
        assert_eq!(doc.title, "日记");
    }

    #[test]
    fn tags_from_list_or_comma_string() {
        let doc = Document::parse("x.md", FileKind::Markdown, "---\ntags: [Rust, AI效率, rust]\n---\nbody");
        assert_eq!(doc.tags, ["Rust", "AI效率"]);
        let doc = Document::parse("x.md", FileKind::Markdown, "---\ntags:\n  - '#a'\n  - 2024\n---\n");
        assert_eq!(doc.tags, ["a", "2024"]);
        let doc = Document::parse("x.md", FileKind::Markdown, "---\ntags: a, b ,a\n---\n");
        assert_eq!(doc.tags, ["a", "b"]);
        assert_eq!(doc.body, "");
    }

    #[test]
    fn malformed_or_unterminated_front_matter_is_text() {
        let doc = Document::parse("x.md", FileKind::Markdown, "---\ntags: [a\n---\nbody");
        assert!(doc.tags.is_empty());
        assert_eq!(doc.body, "body");
        let raw = "---\nno end\n\n# Title\n";
        let doc = Document::parse("x.md", FileKind::Markdown, raw);
        assert_eq!(doc.body, raw);
        assert_eq!(doc.title, "Title");
    }

    #[test]
    fn hostile_front_matter_is_refused_cheaply() {
        // A billion laughs: nine levels of aliases, each ten times the one before.
        let mut bomb =
            String::from("---\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, previous) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{previous}"); 9].join(",");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        bomb.push_str("title: Bomb\ntags: [x]\n---\n# Heading\nbody\n");
        let started = std::time::Instant::now();
        let doc = Document::parse("bomb.md", FileKind::Markdown, &bomb);
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused before expanding");
        assert_eq!((doc.title.as_str(), doc.tags.len()), ("Heading", 0), "nothing of it is used");
        assert!(doc.body.contains("body"));

        let huge = format!("---\ntitle: Big\nnote: \"{}\"\n---\ntext\n", "x".repeat(MAX_FRONT_MATTER_BYTES));
        assert_eq!(Document::parse("huge.md", FileKind::Markdown, &huge).title, "huge");
        let deep = format!("---\ntitle: Deep\nx: {}{}\n---\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(Document::parse("deep.md", FileKind::Markdown, &deep).title, "deep");
        let fine = "---\ntitle: Fine\ntags: [a, b]\n---\ntext";
        let doc = Document::parse("fine.md", FileKind::Markdown, fine);
        assert_eq!((doc.title.as_str(), doc.tags.len()), ("Fine", 2), "ordinary front matter still works");
    }

    #[test]
    fn headings_follow_commonmark_basics() {
        assert_eq!(atx_heading("# A"), Some((1, "A")));
        assert_eq!(atx_heading("###### A ###"), Some((6, "A")));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("    # code"), None);
    }

    #[test]
    fn scan_finds_notes_recursively_and_skips_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for name in ["a.md", "sub/b.markdown", "sub/deeper/c.TXT", "d.pdf", ".git/e.md", ".f.md"] {
            std::fs::write(root.join(name), "text").unwrap();
        }
        let ids: Vec<String> = scan_folder(root).unwrap().into_iter().map(|f| f.id).collect();
        assert_eq!(ids, ["a.md", "sub/b.markdown", "sub/deeper/c.TXT"]);
        assert!(scan_folder(&root.join("missing")).is_err());
        assert!(scan_folder(&root.join("a.md")).is_err());
    }
}
