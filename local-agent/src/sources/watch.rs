//! Watching the indexed folders while `serve` runs, so an edited note is searchable seconds
//! later without running `local-agent index`.
//!
//! File events come from `notify` (inotify, FSEvents, ReadDirectoryChangesW). Reads are not
//! changes — an indexing run opens the folders it walks, and counting that would re-index in a
//! loop — and neither is anything inside hidden folders (`.git`, `.obsidian`). A change only
//! marks the index dirty: after the folders have been quiet for the debounce time, one indexing
//! run (asked of the agent's indexer) brings every folder up to date (it compares sizes and times, so unchanged files cost a
//! `stat`). Changes during a run coalesce into a single next run, so a burst — a `git checkout`
//! of hundreds of files — costs one or two runs, not hundreds.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Debounced change notifications for a set of folders.
pub struct FolderWatcher {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
}

impl FolderWatcher {
    /// Watches `folders` recursively; a change is reported once the folders have been quiet
    /// for `debounce`.
    pub fn start(folders: &[PathBuf], debounce: Duration) -> Result<Self> {
        let (sender, changes) = mpsc::unbounded_channel();
        let roots: Vec<PathBuf> = folders.to_vec();
        let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) => {
                let relevant = is_change(&event.kind)
                    && event.paths.iter().any(|path| roots.iter().any(|root| is_note_change(root, path)));
                if relevant {
                    let _ = sender.send(());
                }
            }
            Err(error) => tracing::warn!(%error, "watching the folders failed; changes may need `local-agent index`"),
        })
        .map_err(|error| watch_error(Path::new("."), &error))?;
        for folder in folders {
            watcher.watch(folder, RecursiveMode::Recursive).map_err(|error| watch_error(folder, &error))?;
        }
        Ok(Self { _watcher: watcher, changes, debounce })
    }

    /// Waits for the next change, then until the folders have been quiet for the debounce
    /// time (all of it is covered by one indexing run). `false` when the watcher stopped.
    pub async fn changed(&mut self) -> bool {
        if self.changes.recv().await.is_none() {
            return false;
        }
        loop {
            match tokio::time::timeout(self.debounce, self.changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return false,
                Err(_quiet) => return true,
            }
        }
    }
}

/// Whether an event can change a note: anything but a read (opening a folder or a file, or
/// closing one that was only read).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch_error(path: &Path, error: &dyn std::fmt::Display) -> Error {
    Error::Folder { path: path.to_owned(), source: std::io::Error::other(error.to_string()) }
}

/// Whether a changed path can affect the index: under `root`, and not inside a hidden folder.
fn is_note_change(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else { return false };
    !relative.components().any(|part| match part {
        Component::Normal(name) => name.to_str().is_some_and(|name| name.starts_with('.')),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind};
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Remove(RemoveKind::Folder)));
    }

    #[test]
    fn hidden_folders_and_other_places_are_not_note_changes() {
        let root = Path::new("/notes");
        assert!(is_note_change(root, Path::new("/notes/a.md")));
        assert!(is_note_change(root, Path::new("/notes/sub/b.txt")));
        assert!(!is_note_change(root, Path::new("/notes/.git/index")));
        assert!(!is_note_change(root, Path::new("/notes/sub/.obsidian/workspace.json")));
        assert!(!is_note_change(root, Path::new("/elsewhere/a.md")));
    }
}
