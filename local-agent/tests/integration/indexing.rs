//! Incremental and atomic indexing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use local_agent::Error;
use local_agent::index::generations::IndexDir;
use local_agent::search::Engine;

use crate::{Workspace, config, query, sources};

#[test]
fn a_first_run_indexes_everything_and_a_second_run_touches_nothing() {
    let workspace = Workspace::with_sample_notes();
    let first = workspace.index();
    assert_eq!((first.added, first.changed, first.removed, first.unchanged), (10, 0, 0, 0));
    assert!(first.published && first.chunks >= 10 && first.embedded == first.chunks);

    let second = workspace.index();
    assert_eq!((second.added, second.changed, second.removed, second.unchanged), (0, 0, 0, 10));
    assert!(!second.published, "nothing changed, so nothing is written");
    assert_eq!(second.generation, first.generation);
}

#[test]
fn only_added_changed_and_removed_files_are_processed() {
    let workspace = Workspace::with_sample_notes();
    let first = workspace.index();

    // Change one paragraph of a note: only that chunk needs the model again.
    let path = workspace.notes().join("life/sourdough.md");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("twelve hours", "eight hours")).unwrap();
    workspace.write("life/tea.md", "# Green tea\n\nBrew green tea at 80 °C for two minutes.\n");
    std::fs::remove_file(workspace.notes().join("life/travel-checklist.txt")).unwrap();
    // Rewriting a file with the same content changes its timestamp, not its text.
    let touched = workspace.notes().join("notion-tips.md");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&touched, std::fs::read(&touched).unwrap()).unwrap();

    let report = workspace.index();
    assert_eq!((report.added, report.changed, report.removed, report.unchanged), (1, 1, 1, 8));
    assert_eq!(report.documents, first.documents);
    assert!(report.from_cache > 0, "unchanged chunks of the edited note come from the cache");
    assert_eq!(report.embedded, 2, "one edited chunk and the new note: {report:?}");

    let engine = workspace.engine();
    assert_eq!(sources(&engine, &query("brew green tea temperature"))[0], "life/tea.md");
    assert!(!sources(&engine, &query("passport visa power adapter")).contains(&"life/travel-checklist.txt".to_owned()));
    let hits = engine.search(&query("feed the starter before baking")).unwrap().results;
    assert!(hits[0].content_snippet.contains("eight hours"), "{:?}", hits[0]);
}

#[test]
fn a_renamed_note_is_not_embedded_again() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    std::fs::rename(workspace.notes().join("life/sleep.md"), workspace.notes().join("life/睡眠.md")).unwrap();
    let report = workspace.index();
    assert_eq!((report.added, report.removed, report.embedded), (1, 1, 0));
    assert_eq!(sources(&workspace.engine(), &query("改善睡眠质量"))[0], "life/睡眠.md");
}

#[test]
fn files_that_are_not_text_are_skipped_and_counted() {
    let workspace = Workspace::with_sample_notes();
    // A program copied in with a note's name, and a note saved in a legacy Chinese encoding
    // (GBK bytes of "睡眠质量很重要，每天要睡够八个小时" repeated).
    let executable = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    std::fs::write(workspace.notes().join("ls.md"), &executable[..executable.len().min(200_000)]).unwrap();
    let gbk: Vec<u8> = b"\xcb\xaf\xc3\xdf\xd6\xca\xc1\xbf\xba\xdc\xd6\xd8\xd2\xaa".repeat(50);
    std::fs::write(workspace.notes().join("life/gbk.txt"), gbk).unwrap();
    // One odd byte in a real note does not hide it.
    let mut odd = b"# Tea\n\nGreen tea wants water at 80 degrees ".to_vec();
    odd.extend_from_slice(b"\xff and two minutes.\n");
    std::fs::write(workspace.notes().join("life/tea.md"), odd).unwrap();

    let report = workspace.index();
    let mut skipped = report.not_text.clone();
    skipped.sort();
    assert_eq!(skipped, ["life/gbk.txt", "ls.md"]);
    assert_eq!((report.added, report.documents), (11, 11), "the ten sample notes and the tea note");
    assert_eq!(sources(&workspace.engine(), &query("green tea water temperature"))[0], "life/tea.md");

    // A note that turns into a binary leaves the index.
    std::fs::write(workspace.notes().join("life/tea.md"), [0u8, 1, 2, 3]).unwrap();
    let report = workspace.index();
    assert_eq!((report.removed, report.documents, report.not_text.len()), (1, 10, 3));
}

#[test]
fn a_missing_folder_is_an_error_and_the_index_is_kept() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let missing = workspace.dir.path().join("unplugged-drive");
    let error = local_agent::index::index_folders(
        &workspace.data(),
        &[missing],
        crate::embedder().as_ref(),
        &Default::default(),
        &local_agent::index::Silent,
    )
    .unwrap_err();
    assert!(matches!(error, Error::Folder { .. }), "{error}");
    assert_eq!(workspace.engine().stats().documents, 10);
}

#[test]
fn a_second_writer_is_turned_away() {
    let workspace = Workspace::with_sample_notes();
    let _lock = IndexDir::new(&workspace.data()).lock().unwrap();
    assert!(matches!(workspace.try_index(), Err(Error::IndexBusy { .. })));
}

#[test]
fn changing_how_chunks_are_cut_rebuilds_from_the_cache() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let settings = local_agent::index::IndexSettings {
        chunking: Some(local_agent::index::chunk::ChunkSettings { max_tokens: 64, overlap_tokens: 8 }),
        batch_size: 16,
        ..Default::default()
    };
    let report = local_agent::index::index_folders(
        &workspace.data(),
        &[workspace.notes()],
        crate::embedder().as_ref(),
        &settings,
        &local_agent::index::Silent,
    )
    .unwrap();
    assert!(report.published && report.unchanged == 10);
    assert!(report.chunks > 23, "smaller chunks: {report:?}");
    let engine = workspace.engine();
    assert_eq!(engine.stats().chunks, report.chunks);
}

/// Runs `local-agent index` on the workspace, optionally aborting at a crash point.
fn index_process(workspace: &Workspace, crash_at: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
    command.arg("--data-dir").arg(workspace.data()).arg("index").arg(workspace.notes());
    command.env_remove("LOCAL_AGENT_CRASH_AT");
    if let Some(point) = crash_at {
        command.env("LOCAL_AGENT_CRASH_AT", point);
    }
    command
}

fn generation(data: &Path) -> Option<u64> {
    IndexDir::new(data).current().unwrap()
}

#[test]
#[cfg_attr(not(feature = "crash-points"), ignore = "needs the crash-points feature, which scripts/test.sh turns on")]
fn a_crash_at_any_step_leaves_the_last_good_index_usable() {
    for point in ["embedded", "indexed", "saved", "manifest"] {
        let workspace = Workspace::with_sample_notes();
        workspace.index();
        let before = generation(&workspace.data());
        workspace.write("new-note.md", "# Kiwi\n\nKiwi fruit has more vitamin C than an orange.\n");
        std::fs::remove_file(workspace.notes().join("life/sourdough.md")).unwrap();

        let status = index_process(&workspace, Some(point)).output().unwrap().status;
        assert!(!status.success(), "{point}: the run was aborted");
        assert_eq!(generation(&workspace.data()), before, "{point}: the live generation did not move");
        let engine = workspace.engine();
        assert_eq!(engine.stats().documents, 10, "{point}");
        assert_eq!(sources(&engine, &query("sourdough starter bread flour"))[0], "life/sourdough.md", "{point}");

        // The next run finishes the job.
        let output = index_process(&workspace, None).output().unwrap();
        assert!(output.status.success(), "{point}: {}", String::from_utf8_lossy(&output.stderr));
        let engine = workspace.engine();
        assert_eq!(sources(&engine, &query("vitamin C kiwi"))[0], "new-note.md", "{point}");
        assert!(!sources(&engine, &query("sourdough starter bread flour")).contains(&"life/sourdough.md".to_owned()));
    }
}

#[test]
#[cfg_attr(not(feature = "crash-points"), ignore = "needs the crash-points feature, which scripts/test.sh turns on")]
fn a_crash_right_after_publishing_keeps_the_new_index() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    workspace.write("new-note.md", "# Kiwi\n\nKiwi fruit has more vitamin C than an orange.\n");
    let status = index_process(&workspace, Some("published")).output().unwrap().status;
    assert!(!status.success());
    assert_eq!(sources(&workspace.engine(), &query("vitamin C kiwi"))[0], "new-note.md");
}

#[test]
fn killing_an_index_run_at_random_moments_never_breaks_the_index() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    // Enough new text that the run takes a while.
    for i in 0..150 {
        let body: String = (0..12)
            .map(|j| format!("Observation {j} of experiment {i} concerns protein folding rate number {}. ", i * 31 + j))
            .collect();
        workspace.write(&format!("lab/experiment-{i:03}.md"), &format!("# Experiment {i}\n\n{body}\n"));
    }
    for delay_ms in [50, 300, 800, 1500] {
        let mut child = index_process(&workspace, None).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let engine = workspace.engine();
        let documents = engine.stats().documents;
        assert!(documents == 10 || documents == 160, "after {delay_ms} ms: {documents} documents");
        assert_eq!(sources(&engine, &query("sourdough starter bread flour"))[0], "life/sourdough.md");
    }
    let output = index_process(&workspace, None).output().unwrap();
    assert!(output.status.success());
    let engine = workspace.engine();
    assert_eq!(engine.stats().documents, 160);
    assert!(sources(&engine, &query("experiment 42 protein folding observation"))[0].starts_with("lab/"));
}

#[test]
fn a_damaged_index_is_refused_and_rebuilt_by_the_next_run() {
    let workspace = Workspace::with_sample_notes();
    let first = workspace.index();
    let generation_dir = IndexDir::new(&workspace.data()).generation_dir(first.generation);
    std::fs::write(generation_dir.join(local_agent::index::generations::VECTORS_FILE), b"not an index").unwrap();
    let error = Engine::open(&workspace.data(), crate::embedder(), Default::default()).err().expect("refused");
    assert!(matches!(error, Error::CorruptIndex { .. }), "{error}");
    assert!(error.to_string().contains("run `local-agent index` again"), "{error}");

    let report = workspace.index();
    assert!(report.published && report.unchanged == 10, "{report:?}");
    assert_eq!(report.embedded, 0, "the rebuild takes every vector from the cache");
    assert_eq!(workspace.engine().stats().documents, 10);
}

#[test]
fn an_index_built_with_another_model_is_refused_and_rebuilt() {
    let workspace = Workspace::with_sample_notes();
    let first = workspace.index();
    let manifest_path = IndexDir::new(&workspace.data())
        .generation_dir(first.generation)
        .join(local_agent::index::generations::MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let model_id = crate::embedder().model_id().to_owned();
    std::fs::write(&manifest_path, manifest.replace(&model_id, "some-other-model-768d")).unwrap();
    let error = Engine::open(&workspace.data(), crate::embedder(), Default::default()).err().expect("refused");
    assert!(matches!(error, Error::ModelChanged { .. }), "{error}");

    let report = workspace.index();
    assert!(report.published);
    assert_eq!(workspace.engine().stats().chunks, report.chunks);
}

#[test]
fn a_remembered_folder_that_went_away_does_not_block_the_others() {
    let workspace = Workspace::with_sample_notes();
    let extra = workspace.dir.path().join("usb-stick");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("plums.md"), "# Plums\n\nPlum jam needs little sugar.\n").unwrap();
    let settings = local_agent::index::IndexSettings { batch_size: 16, ..Default::default() };
    let run = |folders: &[std::path::PathBuf]| {
        local_agent::index::index_folders(
            &workspace.data(),
            folders,
            crate::embedder().as_ref(),
            &settings,
            &local_agent::index::Silent,
        )
    };
    run(&[workspace.notes(), extra.clone()]).unwrap();
    std::fs::remove_dir_all(&extra).unwrap();
    workspace.write("life/tea.md", "# Green tea\n\nBrew green tea at 80 °C.\n");

    let report = run(&[]).expect("the missing folder is skipped, not fatal");
    assert_eq!((report.added, report.removed), (1, 0), "{report:?}");
    assert_eq!(sources(&workspace.engine(), &query("plum jam sugar"))[0], "plums.md", "its notes stay searchable");
    assert!(matches!(run(std::slice::from_ref(&extra)), Err(Error::Folder { .. })), "naming it is an error");
}

/// A folder whose `locked.md` cannot be read, as a file whose permissions changed, or that a
/// sync client holds, would fail.
struct FlakyFolder {
    folder: local_agent::sources::FolderSource,
}

impl local_agent::sources::Source for FlakyFolder {
    fn root(&self) -> &local_agent::sources::SourceId {
        self.folder.root()
    }

    fn scan(&self) -> local_agent::Result<local_agent::sources::Listing> {
        self.folder.scan()
    }

    fn read(&self, file: &local_agent::sources::SourceItem) -> local_agent::Result<local_agent::sources::ReadDocument> {
        if file.id == "locked.md" {
            return Err(local_agent::Error::Io {
                path: file.id.clone().into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        self.folder.read(file)
    }
}

#[test]
fn a_note_that_cannot_be_read_is_reported_and_the_rest_is_indexed() {
    let workspace = Workspace::with_sample_notes();
    workspace.write("locked.md", "# Locked\nNobody may read this note.\n");
    let source = FlakyFolder { folder: local_agent::sources::FolderSource::new(&workspace.notes()).unwrap() };
    let report = local_agent::index::index_sources(
        &workspace.data(),
        &[&source],
        crate::embedder().as_ref(),
        &config(&workspace.data()).index,
        &local_agent::index::Silent,
    )
    .unwrap();
    assert_eq!(report.unreadable.len(), 1, "{:?}", report.unreadable);
    assert_eq!(report.unreadable[0].id, "locked.md");
    assert!(report.unreadable[0].reason.contains("ermission"), "{}", report.unreadable[0].reason);
    assert_eq!(report.documents, 10, "the readable notes are all indexed");
}

#[test]
fn a_format_1_index_is_still_read_and_the_next_run_upgrades_it() {
    use local_agent::index::generations::{FORMAT_VERSION, MANIFEST_FILE};
    use local_agent::sources::SourceId;

    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let index = IndexDir::new(&workspace.data());
    let path = index.generation_dir(index.current().unwrap().unwrap()).join(MANIFEST_FILE);
    // Written as format 1 did: roots as plain paths.
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["format"] = 1.into();
    manifest["roots"] = manifest["roots"].as_array().unwrap().iter().map(|root| root["folder"].clone()).collect();
    assert!(manifest["roots"][0].is_string());
    // … and stamps as `size` and `modified_ns`.
    for document in manifest["documents"].as_array_mut().unwrap() {
        let stamp = document["stamp"]["file"].clone();
        document["size"] = stamp["size"].clone();
        document["modified_ns"] = stamp["modified_ns"].clone();
        document.as_object_mut().unwrap().remove("stamp");
    }
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert_eq!(workspace.engine().stats().documents, 10, "format 1 is still read");
    let before = sources(&workspace.engine(), &query("改善睡眠质量"));

    let report = workspace.index();
    assert!(report.published, "the next run rewrites it in the current format");
    assert_eq!((report.embedded, report.chunks_written), (0, 0), "nothing is read or embedded again");
    let upgraded = index.read_manifest(index.current().unwrap().unwrap()).unwrap();
    assert_eq!(upgraded.format, FORMAT_VERSION);
    assert!(matches!(&upgraded.roots[0], SourceId::Folder(path) if path.ends_with("notes")), "{:?}", upgraded.roots);
    assert_eq!(sources(&workspace.engine(), &query("改善睡眠质量")), before, "and it answers as before");
}
