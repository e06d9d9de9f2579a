//! Watched folders: creating, editing, deleting and renaming notes re-indexes them while the
//! watcher runs, and a burst of changes coalesces into few index generations.

use std::path::Path;
use std::time::{Duration, Instant};

use local_agent::agent::index_on_change;
use local_agent::agent::indexer::{Indexer, IndexerSettings};
use local_agent::index::generations::IndexDir;
use local_agent::sources::watch::FolderWatcher;
use tokio_util::sync::CancellationToken;

use crate::{Workspace, config, embedder};

/// The indexed note ids and the live generation, once `ready` holds for them (or a timeout).
async fn wait_for(data: &Path, ready: impl Fn(&[String]) -> bool) -> (Vec<String>, u64) {
    let started = Instant::now();
    loop {
        let index = IndexDir::new(data);
        if let Some(generation) = index.current().ok().flatten()
            && let Ok(manifest) = index.read_manifest(generation)
        {
            let ids: Vec<String> = manifest.documents.iter().map(|document| document.id.clone()).collect();
            if ready(&ids) {
                return (ids, generation);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the index did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn note_changes_reach_the_index_while_watching() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let (notes, data) = (workspace.notes(), workspace.data());
    let watcher = FolderWatcher::start(&[std::fs::canonicalize(&notes).unwrap()], Duration::from_millis(200)).unwrap();
    let stop = CancellationToken::new();
    let settings = IndexerSettings { data_dir: data.clone(), folders: Vec::new(), index: config(&data).index };
    let (indexer, indexing) = Indexer::spawn(settings, embedder(), None, stop.clone());
    let watching = tokio::spawn(index_on_change(watcher, indexer.clone(), stop.clone()));

    std::fs::write(notes.join("new-note.md"), "# Kettles\nDescale the kettle with citric acid monthly.\n").unwrap();
    wait_for(&data, |ids| ids.iter().any(|id| id == "new-note.md")).await;

    let hash_of = |data: &Path, id: &str| {
        let index = IndexDir::new(data);
        let manifest = index.read_manifest(index.current().unwrap().unwrap()).unwrap();
        manifest.documents.iter().find(|document| document.id == id).map(|document| document.content_hash.clone())
    };
    let before_edit = hash_of(&data, "new-note.md");
    std::fs::write(notes.join("new-note.md"), "# Kettles\nDescale the kettle with vinegar weekly.\n").unwrap();
    let started = Instant::now();
    while hash_of(&data, "new-note.md") == before_edit {
        assert!(started.elapsed() < Duration::from_secs(30), "the edit never reached the index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::rename(notes.join("new-note.md"), notes.join("renamed.md")).unwrap();
    wait_for(&data, |ids| ids.iter().any(|id| id == "renamed.md") && !ids.iter().any(|id| id == "new-note.md")).await;

    std::fs::remove_file(notes.join("renamed.md")).unwrap();
    wait_for(&data, |ids| !ids.iter().any(|id| id == "renamed.md")).await;

    // Changes inside a hidden folder are not notes.
    std::fs::create_dir_all(notes.join(".git")).unwrap();
    let (_, before) = wait_for(&data, |_| true).await;
    std::fs::write(notes.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(wait_for(&data, |_| true).await.1, before, "no run for a .git change");

    // A checkout-like burst: many files at once, few generations.
    for i in 0..40 {
        std::fs::write(notes.join(format!("burst-{i}.md")), format!("# Burst {i}\nLine {i}.\n")).unwrap();
    }
    let (_, after) = wait_for(&data, |ids| ids.iter().filter(|id| id.starts_with("burst-")).count() == 40).await;
    assert!(after - before <= 3, "40 files took {} generations", after - before);

    // An indexing run reads the folders; that must not look like a change (no feedback loop).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = indexer.runs();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(indexer.runs(), settled, "runs keep coming with nothing changing");
    stop.cancel();
    watching.await.unwrap();
    indexing.await.unwrap();
}
