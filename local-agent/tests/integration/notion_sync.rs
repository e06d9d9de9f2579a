//! Notion knowledge sync against the Notion sandbox: first sync, re-sync cost, edits,
//! deletions and trashed pages, `unsupported` blocks, pagination past 100 pages, 429 storms, an
//! unreadable page, and a sync killed halfway that resumes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use local_agent::config::Secret;
use local_agent::search::{Engine, SearchSettings};
use local_agent::sources::notion_sync::{NotionSettings, NotionSync, SyncReport};
use notion::page::write;
use notion::{ClientOptions, NotionClient};
use protocol::SearchRequest;
use serde_json::{Value, json};
use testkit::{Fault, NotionSandbox, PropertyKind, PropertySchema};

use crate::{config, embedder};

const TOKEN: &str = "secret_knowledge";

struct Knowledge {
    sandbox: NotionSandbox,
    database: String,
    source: String,
    dir: tempfile::TempDir,
}

impl Knowledge {
    async fn start() -> Self {
        let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
        let (database, source) = sandbox.create_database(
            "Knowledge",
            vec![
                PropertySchema::new("Name", PropertyKind::Title),
                PropertySchema::new("Tags", PropertyKind::MultiSelect),
            ],
        );
        Self { sandbox, database, source, dir: tempfile::tempdir().unwrap() }
    }

    fn settings(&self) -> NotionSettings {
        NotionSettings {
            token: Secret::new(TOKEN),
            databases: vec![self.database.clone()],
            tags_property: "Tags".into(),
            base_url: self.sandbox.url(),
            requests_per_second: 1000,
            sync_interval: Duration::from_secs(300),
            full_sync_interval: Duration::from_secs(3600),
            // The sandbox's clock is moved past a minute before every edit instead.
            settle_time: Duration::ZERO,
            allow_insecure: false,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    async fn sync(&self, full: bool) -> SyncReport {
        let sync = NotionSync::new(self.settings(), &self.data()).unwrap();
        sync.run(embedder(), &config(&self.data()).index, full).await.unwrap()
    }

    fn page(&self, title: &str, tags: &[&str], blocks: Value) -> String {
        let tags: Vec<String> = tags.iter().map(|tag| (*tag).to_owned()).collect();
        let properties = json!({ "Name": write::title(title), "Tags": write::multi_select(&tags) });
        self.sandbox.add_page(&self.source, properties, blocks)
    }

    fn client(&self) -> NotionClient {
        let options =
            ClientOptions { base_url: self.sandbox.url(), requests_per_second: 1000, ..ClientOptions::default() };
        NotionClient::new(TOKEN, options).unwrap()
    }

    fn search(&self, query: &str, tags: &[&str]) -> Vec<(String, String)> {
        let engine =
            Engine::open(&self.data(), embedder(), SearchSettings { cache_capacity: 0, ..SearchSettings::default() })
                .unwrap();
        let request =
            SearchRequest { tags: tags.iter().map(|tag| (*tag).to_owned()).collect(), ..SearchRequest::new(query) };
        engine.search(&request).unwrap().results.into_iter().map(|hit| (hit.title, hit.source)).collect()
    }

    fn block_reads(&self) -> usize {
        self.sandbox.requests().iter().filter(|request| request.path.contains("/children")).count()
    }
}

fn paragraph(text: &str) -> Value {
    json!({ "type": "paragraph", "paragraph": { "rich_text": [{ "type": "text", "text": { "content": text } }] } })
}

fn heading(text: &str) -> Value {
    json!({ "type": "heading_2", "heading_2": { "rich_text": [{ "type": "text", "text": { "content": text } }] } })
}

fn page_url(id: &str) -> String {
    format!("https://www.notion.so/{}", id.replace('-', ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_synced_edited_trashed_and_cited_by_url() {
    let knowledge = Knowledge::start().await;
    let rust = knowledge.page(
        "Rust ownership",
        &["Rust"],
        json!([
            heading("Moves"),
            paragraph("Assigning a value moves ownership; the old binding can no longer be used.")
        ]),
    );
    let tea = knowledge.page(
        "Brewing green tea",
        &["Tea"],
        json!([paragraph("Steep green tea at 80 degrees for two minutes; boiling water makes it bitter.")]),
    );
    let bread = knowledge.page("Sourdough", &[], json!([paragraph("Feed the starter twice a day before baking.")]));
    knowledge.sandbox.add_raw_block(&bread, "unsupported", json!({}));

    let first = knowledge.sync(false).await;
    assert!(first.full, "the first sync lists everything: {first:?}");
    assert_eq!((first.listed, first.added, first.unreadable), (3, 3, 0), "{first:?}");
    assert!(first.skipped_blocks >= 1, "the unsupported block is skipped and counted: {first:?}");
    let hits = knowledge.search("who owns a value after assignment", &[]);
    assert_eq!(hits.first(), Some(&("Rust ownership".to_owned(), page_url(&rust))), "{hits:?}");
    let tagged = knowledge.search("temperature for steeping", &["Tea"]);
    assert!(tagged.iter().all(|(title, _)| title == "Brewing green tea") && !tagged.is_empty(), "{tagged:?}");

    // Nothing changed: one query (and the database lookup), no page content read.
    knowledge.sandbox.clear_requests();
    let again = knowledge.sync(false).await;
    assert!(!again.full);
    assert_eq!((again.added, again.updated, again.removed), (0, 0, 0), "{again:?}");
    assert_eq!(knowledge.block_reads(), 0, "unchanged pages are not read");
    assert_eq!(again.requests, 1, "re-sync cost: one query");

    // An edit a minute later (Notion's stamps have minute precision) is picked up.
    knowledge.sandbox.advance_clock(Duration::from_secs(61));
    knowledge
        .client()
        .append_children(&tea, vec![paragraph("Matcha is whisked, not steeped, with water at 70 degrees.")])
        .await
        .unwrap();
    let edited = knowledge.sync(false).await;
    assert_eq!((edited.updated, edited.added), (1, 0), "{edited:?}");
    assert!(knowledge.search("whisked matcha", &[]).iter().any(|(title, _)| title == "Brewing green tea"));

    // A trashed page leaves the index with the next full listing.
    knowledge.sandbox.trash_page(&bread);
    let full = knowledge.sync(true).await;
    assert_eq!(full.removed, 1, "{full:?}");
    assert!(knowledge.search("sourdough starter", &[]).iter().all(|(title, _)| title != "Sourdough"));
    let _ = tea;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_hundred_pages_through_a_storm_of_429s_and_an_unreadable_page() {
    let knowledge = Knowledge::start().await;
    let mut pages = Vec::new();
    for i in 0..120 {
        pages.push(knowledge.page(
            &format!("Note {i}"),
            &[],
            json!([paragraph(&format!("Fact number {i} about topic {}.", i % 7))]),
        ));
    }
    // Notion says "slow down" to the listing and to content reads; one page cannot be read.
    knowledge.sandbox.inject(None, "/query", Fault::RateLimited { retry_after_secs: 0 }, 3);
    knowledge.sandbox.inject(Some("GET"), "/children", Fault::RateLimited { retry_after_secs: 0 }, 4);
    let unreadable = &pages[70];
    // Both tries of this sync (its batch, then the full listing's pass) fail.
    knowledge.sandbox.inject(Some("GET"), &format!("/blocks/{unreadable}/children"), Fault::Status(404), 2);

    let first = knowledge.sync(false).await;
    assert_eq!(first.listed, 120, "the listing follows the cursor past 100 pages: {first:?}");
    assert_eq!((first.added, first.unreadable), (119, 1), "{first:?}");

    // The next (incremental) sync reads only the page it could not read before.
    knowledge.sandbox.clear_requests();
    let second = knowledge.sync(false).await;
    assert_eq!((second.added, second.unreadable), (1, 0), "{second:?}");
    assert_eq!(knowledge.block_reads(), 1, "only the missing page is read again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "crash-points"), ignore = "needs the crash-points feature, which scripts/test.sh turns on")]
async fn a_sync_killed_halfway_resumes_without_reading_the_finished_pages_again() {
    let knowledge = Knowledge::start().await;
    for i in 0..80 {
        knowledge.page(&format!("Page {i}"), &[], json!([paragraph(&format!("Resumable content {i}."))]));
    }
    let config_file = knowledge.dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            "[notion]\ntoken = \"{TOKEN}\"\ndatabases = [\"{}\"]\nbase_url = \"{}\"\nrequests_per_second = 1000\n",
            knowledge.database,
            knowledge.sandbox.url()
        ),
    )
    .unwrap();
    let run = |crash: Option<&'static str>| {
        let (config_file, data) = (config_file.clone(), knowledge.data());
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
            command.arg("--data-dir").arg(&data).arg("--config").arg(&config_file).args(["sync", "--json"]);
            command.env_remove("NOTION_API_KEY").env_remove("NOTION_KNOWLEDGE_DATABASE_ID").env_remove("RUST_LOG");
            if let Some(point) = crash {
                command.env("LOCAL_AGENT_CRASH_AT", point);
            }
            command.output().unwrap()
        })
    };
    // Killed right after the first batch (50 pages) was published.
    let killed = run(Some("published")).await.unwrap();
    assert!(!killed.status.success(), "the crash point aborts the process");
    assert_eq!(indexed_documents(&knowledge.data()), 50);

    knowledge.sandbox.clear_requests();
    let resumed = run(None).await.unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let report: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["added"], 30, "{report}");
    assert_eq!(knowledge.block_reads(), 30, "the 50 finished pages are not read again");
    assert_eq!(indexed_documents(&knowledge.data()), 80);

    // `status` tells when the last sync ran and what it did.
    let status = Command::new(env!("CARGO_BIN_EXE_local-agent"))
        .arg("--data-dir")
        .arg(knowledge.data())
        .arg("status")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("Notion sync:") && stdout.contains("80 pages listed, 30 added"), "{stdout}");
    assert!(stdout.contains(&format!("notion://{}", knowledge.database)), "{stdout}");
}

fn indexed_documents(data_dir: &Path) -> usize {
    let index = local_agent::index::generations::IndexDir::new(data_dir);
    let current = index.current().unwrap().expect("a generation was published");
    index.read_manifest(current).unwrap().documents.len()
}

/// The ids in the live index, with the source each came from.
fn indexed_sources(data_dir: &Path) -> Vec<String> {
    let index = local_agent::index::generations::IndexDir::new(data_dir);
    let manifest = index.read_manifest(index.current().unwrap().expect("a generation was published")).unwrap();
    manifest.documents.iter().map(|document| manifest.roots[document.root as usize].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_through_the_indexer_re_reads_notion_as_well_as_the_folders() {
    use local_agent::agent::indexer::{IndexJob, Indexer, IndexerSettings};
    use tokio_util::sync::CancellationToken;

    let knowledge = Knowledge::start().await;
    for i in 0..3 {
        knowledge.page(&format!("Notion page {i}"), &[], json!([paragraph(&format!("Knowledge base entry {i}."))]));
    }
    let notes = knowledge.dir.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("note.md"), "A note with no front matter about descaling kettles.\n").unwrap();
    let settings =
        IndexerSettings { data_dir: knowledge.data(), folders: vec![notes], index: config(&knowledge.data()).index };
    let stop = CancellationToken::new();
    let sync = NotionSync::new(knowledge.settings(), &knowledge.data()).unwrap();
    let (indexer, indexing) = Indexer::spawn(settings, embedder(), Some(sync), stop.clone());
    let mut published = indexer.published();

    // The first scheduled sync runs at once; then the folders are indexed.
    assert!(indexer.request_rebuild());
    let both = |sources: &[String]| {
        sources.iter().filter(|source| source.starts_with("notion://")).count() == 3
            && sources.iter().filter(|source| !source.starts_with("notion://")).count() == 1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(published.borrow().to_owned() > 0 && both(&indexed_sources(&knowledge.data()))) {
        assert!(std::time::Instant::now() < deadline, "the notes and the pages never met in the index");
        let _ = tokio::time::timeout(Duration::from_secs(1), published.changed()).await;
    }

    // A rebuild reads the folders afresh, which alone would drop the Notion pages: the
    // indexer follows it with a full Notion sync, so they come straight back.
    let before = *published.borrow_and_update();
    assert!(indexer.request_rebuild(), "no rebuild was waiting");
    let notion_back = async {
        loop {
            published.changed().await.unwrap();
            let generation = *published.borrow_and_update();
            if generation > before + 1 && both(&indexed_sources(&knowledge.data())) {
                return generation;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), notion_back).await.expect("the Notion pages did not come back");

    // A search can ask for one kind of source only (a question page's `Sources`): a filter,
    // not a preference, even when the best match is of the other kind.
    let engine =
        Engine::open(&knowledge.data(), embedder(), SearchSettings { cache_capacity: 0, ..SearchSettings::default() })
            .unwrap();
    let kinds_found = |sources: Vec<protocol::SourceKind>| {
        let request = SearchRequest {
            max_results: 10,
            similarity_threshold: 0.0,
            sources,
            ..SearchRequest::new("descaling kettles")
        };
        let results = engine.search(&request).unwrap().results;
        let notion = results.iter().filter(|hit| hit.source.starts_with("https://www.notion.so/")).count();
        (results.len() - notion, notion)
    };
    assert_eq!(kinds_found(vec![]), (1, 3), "every kind");
    assert_eq!(kinds_found(vec![protocol::SourceKind::Notion]), (0, 3), "Notion knowledge only");
    assert_eq!(kinds_found(vec![protocol::SourceKind::Notes]), (1, 0), "notes only");

    assert!(indexer.submit(IndexJob::FoldersChanged));
    stop.cancel();
    indexing.await.unwrap();
}
