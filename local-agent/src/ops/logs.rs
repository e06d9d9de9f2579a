//! `local-agent logs [-f]`: the service's log, without knowing where it is kept. The service
//! runs `serve --log-dir <data-dir>/logs`, which writes one file a day
//! (`local-agent.YYYY-MM-DD.log`); the newest file is today's.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How far back from a file's end the last lines are looked for.
const TAIL_WINDOW: u64 = 256 * 1024;

/// The newest log file in `dir`, if it holds any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            name.starts_with("local-agent.") && name.ends_with(".log")
        })
        // The date in the name sorts as the calendar does.
        .max()
}

/// The last `lines` lines of `path`, and the offset its end had when read (where following
/// goes on from).
pub fn tail(path: &Path, lines: usize) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let end = file.metadata()?.len();
    let start = end.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.by_ref().take(end - start).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    // A window that starts mid-file starts mid-line: that first piece is not a line.
    let whole = if start > 0 { &all[1.min(all.len())..] } else { &all[..] };
    let kept = &whole[whole.len().saturating_sub(lines)..];
    let mut shown = kept.join("\n");
    if !shown.is_empty() {
        shown.push('\n');
    }
    Ok((shown, end))
}

/// What was appended to `path` after `offset`, and the new end. A file that shrank was
/// replaced (or truncated): it is read again from its start.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let end = file.metadata()?.len();
    let from = if end < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.by_ref().take(end - from).read_to_end(&mut bytes)?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_file_and_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest(dir.path()), None);
        std::fs::write(dir.path().join("local-agent.2026-12-05.log"), "old\n").unwrap();
        let today = dir.path().join("local-agent.2026-12-06.log");
        std::fs::write(&today, "one\ntwo\nthree\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a log\n").unwrap();
        assert_eq!(latest(dir.path()).as_deref(), Some(today.as_path()));
        let (text, end) = tail(&today, 2).unwrap();
        assert_eq!((text.as_str(), end), ("two\nthree\n", 14));
        std::fs::write(&today, "one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(read_from(&today, end).unwrap(), ("four\n".to_owned(), 19));
        std::fs::write(&today, "new\n").unwrap();
        assert_eq!(read_from(&today, 19).unwrap().0, "new\n", "a replaced file is read from its start");
    }

    #[test]
    fn a_long_file_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local-agent.2026-12-06.log");
        let line = "x".repeat(99);
        std::fs::write(&path, format!("{line}\n").repeat(10_000) + "last\n").unwrap();
        let (text, _) = tail(&path, 3).unwrap();
        assert_eq!(text, format!("{line}\n{line}\nlast\n"));
    }
}
