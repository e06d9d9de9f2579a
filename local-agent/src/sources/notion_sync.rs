//! Indexing Notion knowledge databases, incrementally.
//!
//! Each database is a source (its [`SourceId`] is `Notion(database id)`, shown as
//! `notion://<id>`); its documents are the pages, stamped with their `last_edited_time`. A sync
//! lists pages and hands the listing to an [`IndexRun`]; of the pages the run asks for (those
//! whose stamp changed) it fetches and renders the blocks with the async client:
//!
//! - **Full** (the first sync, every `full_sync_interval`, or asked for): all pages. What is no
//!   longer listed — deleted, trashed, moved out, unshared — leaves the index.
//! - **Incremental** (otherwise): pages edited since the cursor, minus an overlap, because
//!   Notion truncates page times to the minute (an edit in the same minute as the cursor has
//!   the cursor's time). One query when nothing changed.
//!
//! Pages go to the indexer in batches, each published as its own generation, and the cursor
//! moves only past batches that are in the index, so an interrupted sync resumes where it
//! stopped instead of starting over. A page edited within the last two minutes is read again
//! on the next sync too (its minute-truncated stamp cannot show a second edit in that minute);
//! the content hash keeps that from re-embedding anything.
//!
//! Pages render to Markdown-like text with their headings (see `notion::block`); blocks the API
//! cannot return (`unsupported`) or that carry no text are skipped and counted, and a page that
//! cannot be read is skipped for this sync (its previous version stays), never failing it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use notion::page::Page;
use notion::{ClientOptions, NotionClient};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Listing, ReadDocument, SourceId, SourceItem, Stamp};
use crate::config::Secret;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::generations::IndexDir;
use crate::index::{IndexReport, IndexRun, IndexSettings, Silent};
use crate::sources::folder::{Document, FileKind};

/// Pages per published generation: what an interruption can cost at most.
const BATCH_PAGES: usize = 50;
/// How far back an incremental query reaches before its cursor.
const OVERLAP: Duration = Duration::from_secs(120);
/// How deep nested blocks (toggles, lists, columns) are fetched.
const MAX_BLOCK_DEPTH: usize = 4;

/// What to sync, and how often.
#[derive(Debug, Clone)]
pub struct NotionSettings {
    /// The integration token (`NOTION_API_KEY`).
    pub token: Secret,
    /// Knowledge databases (`NOTION_KNOWLEDGE_DATABASE_ID`, comma-separated, or `databases`).
    pub databases: Vec<String>,
    /// The multi-select property whose options become tags.
    pub tags_property: String,
    /// API base URL (a stand-in in tests).
    pub base_url: String,
    /// Requests per second (Notion allows about 3).
    pub requests_per_second: u32,
    /// How often `serve` syncs.
    pub sync_interval: Duration,
    /// How often a sync lists every page, to notice deletions.
    pub full_sync_interval: Duration,
    /// How long after an edit a page's minute-truncated stamp is not trusted (two minutes).
    pub settle_time: Duration,
    /// Allow an `http://` base URL on another machine.
    pub allow_insecure: bool,
}

/// What a sync did, over all databases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncReport {
    /// Databases synced.
    pub databases: usize,
    /// Whether any of them was listed in full.
    pub full: bool,
    /// Pages listed.
    pub listed: usize,
    /// Pages new to the index.
    pub added: usize,
    /// Pages whose content changed.
    pub updated: usize,
    /// Pages that left the index.
    pub removed: usize,
    /// Pages listed but unchanged.
    pub unchanged: usize,
    /// Pages that could not be read this time (kept as they were).
    pub unreadable: usize,
    /// Blocks skipped while rendering (`unsupported`, no text).
    pub skipped_blocks: usize,
    /// Notion API requests made.
    pub requests: u64,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl SyncReport {
    fn absorb(&mut self, index: &IndexReport) {
        self.added += index.added;
        self.updated += index.changed;
        self.removed += index.removed;
        self.unchanged += index.unchanged;
    }
}

/// Where each database's sync stands (`<data dir>/notion-sync.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct SyncState {
    databases: BTreeMap<String, DatabaseState>,
    /// When the last sync finished, and what it did (for `status`).
    #[serde(default)]
    last_sync: Option<(DateTime<Utc>, SyncReport)>,
}

/// When the last sync of the data dir finished and what it did, if one ever did.
pub fn last_sync(data_dir: &Path) -> Option<(DateTime<Utc>, SyncReport)> {
    let bytes = std::fs::read(data_dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice::<SyncState>(&bytes).ok()?.last_sync
}

/// The sync's state in the data dir.
const STATE_FILE: &str = "notion-sync.json";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DatabaseState {
    /// Every page edited before this (minus the overlap) is in the index.
    cursor: Option<DateTime<Utc>>,
    /// When the last full listing finished.
    last_full: Option<DateTime<Utc>>,
    /// The database's data source (looked up once: it saves a request per sync).
    #[serde(default)]
    data_source: Option<String>,
}

/// Syncs the configured databases into the index of a data dir.
pub struct NotionSync {
    client: NotionClient,
    settings: NotionSettings,
    data_dir: PathBuf,
}

impl NotionSync {
    /// A syncer for `settings`, indexing into `data_dir`.
    pub fn new(settings: NotionSettings, data_dir: &Path) -> Result<Self> {
        let options = ClientOptions {
            base_url: settings.base_url.clone(),
            requests_per_second: settings.requests_per_second.max(1),
            allow_insecure: settings.allow_insecure,
            ..ClientOptions::default()
        };
        let client = NotionClient::new(settings.token.expose(), options)
            .map_err(|error| Error::Config { path: "NOTION_API_KEY".into(), message: error.to_string() })?;
        Ok(Self { client, settings, data_dir: data_dir.to_owned() })
    }

    /// The settings.
    pub fn settings(&self) -> &NotionSettings {
        &self.settings
    }

    /// One sync of every database; `full` lists every page whatever the schedule says.
    pub async fn run(&self, embedder: Arc<Embedder>, index: &IndexSettings, full: bool) -> Result<SyncReport> {
        let started = Instant::now();
        let requests_before = self.client.requests_sent();
        let mut report = SyncReport::default();
        for database in &self.settings.databases {
            self.sync_database(database, &embedder, index, full, &mut report).await?;
            report.databases += 1;
        }
        report.requests = self.client.requests_sent() - requests_before;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        let mut state = self.load_state();
        state.last_sync = Some((Utc::now(), report.clone()));
        self.save_state(&state)?;
        Ok(report)
    }

    async fn sync_database(
        &self,
        database: &str,
        embedder: &Arc<Embedder>,
        index: &IndexSettings,
        force_full: bool,
        report: &mut SyncReport,
    ) -> Result<()> {
        let mut states = self.load_state();
        let mut state = states.databases.get(database).cloned().unwrap_or_default();
        let now = Utc::now();
        let full_due = state.last_full.is_none_or(|last| {
            now.signed_duration_since(last).to_std().unwrap_or_default() >= self.settings.full_sync_interval
        });
        let root = SourceId::Notion(database.to_owned());
        // None of its pages in the index (a rebuild drops what it cannot read again): the
        // cursor means nothing any more, start over.
        let full = force_full || full_due || state.cursor.is_none() || self.indexed_pages(&root) == 0;
        let source = match &state.data_source {
            Some(source) => source.clone(),
            None => self.client.data_source_id(database).await?,
        };
        state.data_source = Some(source.clone());
        let filter = (!full).then(|| {
            let since = state.cursor.unwrap_or(now) - chrono::Duration::from_std(OVERLAP).unwrap_or_default();
            json!({ "timestamp": "last_edited_time",
                    "last_edited_time": { "on_or_after": since.to_rfc3339_opts(SecondsFormat::Millis, true) } })
        });
        let sorts = json!([{ "timestamp": "last_edited_time", "direction": "ascending" }]);
        let listed = match self.client.query_all(&source, filter.clone(), Some(sorts.clone())).await {
            // The data source moved (or the database was recreated): look it up again.
            Err(error) if error.is_not_found() && states.databases.contains_key(database) => {
                let source = self.client.data_source_id(database).await?;
                state.data_source = Some(source.clone());
                self.client.query_all(&source, filter, Some(sorts)).await?
            }
            listed => listed?,
        };
        let pages = dedupe(listed);
        // "Now" for judging how recent an edit is: Notion's clock may run ahead of ours.
        let now = pages.iter().filter_map(edited).max().map_or(now, |newest| newest.max(now));
        report.listed += pages.len();
        report.full |= full;
        tracing::info!(database, full, pages = pages.len(), "syncing a Notion database");

        // Pages that could not be read (by id, with their edit time); the cursor stops at the
        // first of them, so the next incremental query lists it again.
        let mut unreadable: HashMap<String, DateTime<Utc>> = HashMap::new();
        for batch in pages.chunks(BATCH_PAGES) {
            let listing = self.listing(batch, false, now);
            let index_report = self.index(&root, batch, listing, embedder, index, report).await?;
            report.absorb(&index_report);
            settle(&root, batch, &index_report, &mut unreadable);
            if let Some(first) = unreadable.values().min() {
                state.cursor = Some(*first);
            } else {
                state.cursor = batch.iter().filter_map(edited).max().or(state.cursor);
            }
            states.databases.insert(database.to_owned(), state.clone());
            self.save_state(&states)?;
        }
        if full {
            // Every page listed is in the index now (or kept as it was, if unreadable; this
            // pass tries those once more): what the listing lacks leaves it.
            let listing = self.listing(&pages, true, now);
            let index_report = self.index(&root, &pages, listing, embedder, index, report).await?;
            report.added += index_report.added;
            report.updated += index_report.changed;
            report.removed += index_report.removed;
            settle(&root, &pages, &index_report, &mut unreadable);
            state.last_full = Some(now);
            state.cursor = unreadable.values().min().copied().or(state.cursor).or(Some(now));
            states.databases.insert(database.to_owned(), state);
            self.save_state(&states)?;
        }
        report.unreadable += unreadable.len();
        Ok(())
    }

    /// `pages` as the indexer lists them (`complete`: all of the database's pages).
    fn listing(&self, pages: &[Page], complete: bool, now: DateTime<Utc>) -> Listing {
        let settle_time = chrono::Duration::from_std(self.settings.settle_time).unwrap_or_default();
        Listing { files: pages.iter().map(|page| stamped(page, now, settle_time)).collect(), complete }
    }

    /// One index run over `pages` of the database `root`, listed as `listing`: planned and
    /// written on a blocking thread, the changed pages read here with the async client.
    async fn index(
        &self,
        root: &SourceId,
        pages: &[Page],
        listing: Listing,
        embedder: &Arc<Embedder>,
        index: &IndexSettings,
        report: &mut SyncReport,
    ) -> Result<IndexReport> {
        let (data_dir, settings, planner) = (self.data_dir.clone(), index.clone(), embedder.clone());
        let given = vec![(root.clone(), listing)];
        let mut run =
            tokio::task::spawn_blocking(move || IndexRun::begin(&data_dir, given, planner.as_ref(), &settings))
                .await??;
        let by_id: HashMap<&str, &Page> = pages.iter().map(|page| (page.id.as_str(), page)).collect();
        for pending in run.pending_mut().iter_mut().filter(|pending| &pending.source == root) {
            let read = match by_id.get(pending.item.id.as_str()) {
                Some(page) => self.read_page(page).await,
                None => Err(Error::NotionPage {
                    page: pending.item.id.clone(),
                    source: notion::NotionError::Invalid("the page was not in this batch's listing".into()),
                }),
            };
            if let Ok((_, skipped)) = &read {
                report.skipped_blocks += skipped;
            }
            pending.read = Some(read.map(|(document, _)| document));
        }
        let embedder = embedder.clone();
        tokio::task::spawn_blocking(move || run.finish(embedder.as_ref(), &Silent)).await?
    }

    /// Fetches a page's blocks and renders them, with the number of blocks skipped.
    async fn read_page(&self, page: &Page) -> Result<(ReadDocument, usize)> {
        let blocks = self
            .client
            .block_tree(&page.id, MAX_BLOCK_DEPTH)
            .await
            .map_err(|source| Error::NotionPage { page: page.id.clone(), source })?;
        let rendered = notion::block::render(&blocks);
        let title = page.title();
        let tags = page.multi_select(&self.settings.tags_property);
        // Title and tags are part of what is indexed, so a change to them is a change.
        let raw = format!("{title}\n{}\n{}", tags.join(","), rendered.text);
        let title = if title.trim().is_empty() { "Untitled".to_owned() } else { title };
        let document = Document { id: page.id.clone(), title, tags, body: rendered.text, kind: FileKind::Markdown };
        let url = (!page.url.is_empty()).then(|| page.url.clone());
        Ok((ReadDocument { raw, document, url }, rendered.skipped))
    }

    /// How many documents of the source `root` the live generation holds.
    fn indexed_pages(&self, root: &SourceId) -> usize {
        let index = IndexDir::new(&self.data_dir);
        let Some(manifest) = index.current().ok().flatten().and_then(|number| index.read_manifest(number).ok()) else {
            return 0;
        };
        let Some(position) = manifest.roots.iter().position(|known| known == root) else { return 0 };
        manifest.documents.iter().filter(|document| document.root as usize == position).count()
    }

    fn state_path(&self) -> PathBuf {
        self.data_dir.join(STATE_FILE)
    }

    fn load_state(&self) -> SyncState {
        match std::fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, "the Notion sync state is unreadable; the next sync lists every page");
                SyncState::default()
            }),
            Err(_) => SyncState::default(),
        }
    }

    fn save_state(&self, state: &SyncState) -> Result<()> {
        let path = self.state_path();
        let partial = path.with_extension("json.part");
        let bytes = serde_json::to_vec_pretty(state).map_err(|error| Error::io(&path)(std::io::Error::other(error)))?;
        std::fs::create_dir_all(&self.data_dir).map_err(Error::io(&self.data_dir))?;
        std::fs::write(&partial, bytes).map_err(Error::io(&partial))?;
        std::fs::rename(&partial, &path).map_err(Error::io(&path))
    }
}

fn edited(page: &Page) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&page.last_edited_time).ok().map(|time| time.with_timezone(&Utc))
}

/// One entry per page (a page edited during pagination can be listed twice; the later listing
/// wins), trashed pages left out, oldest edit first.
fn dedupe(pages: Vec<Page>) -> Vec<Page> {
    let mut by_id: HashMap<String, Page> = HashMap::new();
    for page in pages {
        if page.is_trashed() {
            continue;
        }
        match by_id.get(&page.id) {
            Some(known) if edited(known) > edited(&page) => {}
            _ => {
                by_id.insert(page.id.clone(), page);
            }
        }
    }
    let mut pages: Vec<Page> = by_id.into_values().collect();
    pages.sort_by(|a, b| (edited(a), &a.id).cmp(&(edited(b), &b.id)));
    pages
}

/// A page as the indexer lists it: stamped with its edit time, settled or not. Edited within
/// the settle time, a second edit in the same minute would keep the stamp, so it is unsettled
/// (and looked at again once it settles).
fn stamped(page: &Page, now: DateTime<Utc>, settle_time: chrono::Duration) -> SourceItem {
    let edited = edited(page);
    let recent = edited.is_none_or(|time| now.signed_duration_since(time) < settle_time);
    let at_ns = edited.and_then(|time| time.timestamp_nanos_opt()).map_or(0, |ns| ns.max(0) as u128);
    SourceItem { id: page.id.clone(), stamp: Stamp::Edited { at_ns, settled: !recent } }
}

/// Adds one run's outcome (`index`, its report) over `pages` to the sync's: those pages are
/// readable now, except those the report says could not be read (kept with their edit times,
/// where the cursor stops).
fn settle(root: &SourceId, pages: &[Page], index: &IndexReport, unreadable: &mut HashMap<String, DateTime<Utc>>) {
    for page in pages {
        unreadable.remove(&page.id);
    }
    for failed in index.unreadable.iter().filter(|failed| &failed.source == root) {
        let edited = pages.iter().find(|page| page.id == failed.id).and_then(edited).unwrap_or_else(Utc::now);
        unreadable.insert(failed.id.clone(), edited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: &str, edited: &str, trashed: bool) -> Page {
        serde_json::from_value(json!({ "id": id, "last_edited_time": edited, "in_trash": trashed })).unwrap()
    }

    #[test]
    fn listings_are_deduplicated_by_page_and_ordered_by_edit() {
        let pages = dedupe(vec![
            page("b", "2026-11-26T10:05:00.000Z", false),
            page("a", "2026-11-26T10:01:00.000Z", false),
            page("b", "2026-11-26T10:07:00.000Z", false),
            page("c", "2026-11-26T10:02:00.000Z", true),
        ]);
        let order: Vec<(&str, &str)> = pages.iter().map(|p| (p.id.as_str(), p.last_edited_time.as_str())).collect();
        assert_eq!(order, [("a", "2026-11-26T10:01:00.000Z"), ("b", "2026-11-26T10:07:00.000Z")]);
    }
}
