//! The one owner of index runs while the agent serves.
//!
//! Folder changes (from the watcher), Notion syncs (on a schedule) and rebuilds (`POST
//! /index/rebuild`) are jobs on one channel, run one at a time by one task: two runs of this
//! process never race for the index, and a request that arrives while a run is going is
//! merged with its kind (a burst of changes costs one run, not one each). A rebuild re-reads
//! every source: the folders, then Notion in full, so no Notion page is missing for longer
//! than that sync.
//!
//! Other processes (`local-agent index` in a terminal) can still write the index: the
//! writer lock keeps them apart, and a job that finds the lock taken waits and runs again
//! instead of failing. Every generation this task publishes, or sees another process
//! publish, is announced on a `watch` channel that the search engine follows.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::generations::IndexDir;
use crate::index::{self, IndexSettings, Silent};
use crate::sources::notion_sync::NotionSync;

/// What the indexer can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexJob {
    /// Files changed in the watched folders: bring every indexed folder up to date.
    FoldersChanged,
    /// Sync the Notion knowledge databases; `full` lists every page (notices deletions).
    SyncNotion {
        /// List every page whatever the schedule says.
        full: bool,
    },
    /// Rebuild the index from every source (embeddings still come from the cache).
    Rebuild,
}

/// Where the indexer writes and what it reads.
#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// The data dir holding the index.
    pub data_dir: PathBuf,
    /// Folders a rebuild reads besides those indexed before (the config's `folders`).
    pub folders: Vec<PathBuf>,
    /// How documents become index entries.
    pub index: IndexSettings,
}

/// How soon a job that found the index locked by another process runs again.
const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How often the index is checked for generations other processes published.
const OTHER_WRITERS_CHECK: Duration = Duration::from_secs(2);

/// How long a run in progress may take to finish once the agent stops; after that it is left
/// unfinished (runs are atomic: the next one starts from the last published generation).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A handle on the indexer task; cheap to clone.
#[derive(Clone)]
pub struct Indexer {
    jobs: mpsc::UnboundedSender<IndexJob>,
    rebuild_waiting: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    published: watch::Receiver<u64>,
}

impl Indexer {
    /// Starts the indexer task. It syncs `notion` (if given) every sync interval, and stops
    /// when `stop` is cancelled (finishing the run in progress, within a grace time) or when
    /// every handle is gone.
    pub fn spawn(
        settings: IndexerSettings,
        embedder: Arc<Embedder>,
        notion: Option<NotionSync>,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let index_dir = IndexDir::new(&settings.data_dir);
        let (announce, published) = watch::channel(live_generation(&index_dir));
        let handle = Self { jobs, rebuild_waiting: Arc::default(), runs: Arc::default(), published };
        let worker = Worker {
            settings,
            embedder,
            notion,
            index_dir,
            announce,
            rebuild_waiting: handle.rebuild_waiting.clone(),
            runs: handle.runs.clone(),
        };
        let task = tokio::spawn(worker.run(queue, stop));
        (handle, task)
    }

    /// Queues `job`; `false` if the indexer has stopped.
    pub fn submit(&self, job: IndexJob) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// Queues a rebuild unless one is already waiting or running; returns whether it queued.
    pub fn request_rebuild(&self) -> bool {
        if self.rebuild_waiting.swap(true, Ordering::SeqCst) {
            return false;
        }
        let queued = self.submit(IndexJob::Rebuild);
        if !queued {
            self.rebuild_waiting.store(false, Ordering::SeqCst);
        }
        queued
    }

    /// The live generation, announced each time one is published (by this process or another).
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.clone()
    }

    /// How many jobs have run so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// The work waiting, merged by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pending {
    rebuild: bool,
    folders: bool,
    /// A Notion sync, and whether any request for it wanted a full listing.
    notion: Option<bool>,
}

impl Pending {
    fn add(&mut self, job: IndexJob) {
        match job {
            IndexJob::FoldersChanged => self.folders = true,
            IndexJob::SyncNotion { full } => self.notion = Some(self.notion.unwrap_or(false) || full),
            IndexJob::Rebuild => self.rebuild = true,
        }
    }

    /// The next job: a rebuild first (it re-reads the folders, and queues a full Notion sync
    /// after itself), then folders, then Notion.
    fn next(&mut self) -> Option<IndexJob> {
        if std::mem::take(&mut self.rebuild) {
            self.folders = false;
            return Some(IndexJob::Rebuild);
        }
        if std::mem::take(&mut self.folders) {
            return Some(IndexJob::FoldersChanged);
        }
        self.notion.take().map(|full| IndexJob::SyncNotion { full })
    }
}

/// The task's side.
struct Worker {
    settings: IndexerSettings,
    embedder: Arc<Embedder>,
    notion: Option<NotionSync>,
    index_dir: IndexDir,
    announce: watch::Sender<u64>,
    rebuild_waiting: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<IndexJob>, stop: CancellationToken) {
        let mut pending = Pending::default();
        let mut other_writers = tokio::time::interval(OTHER_WRITERS_CHECK);
        other_writers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first sync runs at once, then on the schedule.
        let sync_interval = self.notion.as_ref().map(|sync| sync.settings().sync_interval);
        let mut sync_ticks = tokio::time::interval(sync_interval.unwrap_or(Duration::from_secs(3600)));
        sync_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Ok(job) = queue.try_recv() {
                pending.add(job);
            }
            if let Some(job) = pending.next() {
                let run = self.run_job(job);
                tokio::pin!(run);
                let outcome = tokio::select! {
                    outcome = &mut run => outcome,
                    () = stop.cancelled() => match tokio::time::timeout(STOP_GRACE, &mut run).await {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            tracing::warn!(?job, "stopping with an index run unfinished; the next start redoes it");
                            break;
                        }
                    },
                };
                self.runs.fetch_add(1, Ordering::SeqCst);
                self.announce_live();
                match outcome {
                    Err(Error::IndexBusy { .. }) => {
                        // Another process (`local-agent index`) is writing: this job still
                        // needs a run of its own once that one is done.
                        pending.add(job);
                        tokio::select! {
                            () = tokio::time::sleep(BUSY_RETRY) => continue,
                            () = stop.cancelled() => break,
                        }
                    }
                    Err(error) => tracing::warn!(%error, ?job, "an index run failed; the index keeps what it had"),
                    Ok(()) => {}
                }
                // The rebuild is over (done or failed): another may be asked for, and the Notion
                // pages it could not keep are read again.
                if job == IndexJob::Rebuild {
                    self.rebuild_waiting.store(false, Ordering::SeqCst);
                    if self.notion.is_some() {
                        pending.add(IndexJob::SyncNotion { full: true });
                    }
                }
                if stop.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                job = queue.recv() => match job {
                    Some(job) => pending.add(job),
                    None => break,
                },
                _ = sync_ticks.tick(), if sync_interval.is_some() => pending.add(IndexJob::SyncNotion { full: false }),
                _ = other_writers.tick() => self.announce_live(),
                () = stop.cancelled() => break,
            }
        }
        tracing::debug!("the indexer stopped");
    }

    async fn run_job(&self, job: IndexJob) -> Result<()> {
        match job {
            IndexJob::FoldersChanged => {
                let report = self.index_folders(Vec::new(), false).await?;
                if report.published {
                    tracing::info!(
                        added = report.added,
                        changed = report.changed,
                        removed = report.removed,
                        generation = report.generation,
                        "re-indexed changed notes"
                    );
                }
                if !report.unreadable.is_empty() {
                    tracing::warn!(
                        unreadable = report.unreadable.len(),
                        "some notes could not be read; kept as they were"
                    );
                }
            }
            IndexJob::Rebuild => {
                let report = self.index_folders(self.settings.folders.clone(), true).await?;
                tracing::info!(
                    generation = report.generation,
                    chunks = report.chunks,
                    "index rebuilt from the folders"
                );
            }
            IndexJob::SyncNotion { full } => {
                let Some(sync) = &self.notion else { return Ok(()) };
                let report = sync.run(self.embedder.clone(), &self.settings.index, full).await?;
                tracing::info!(
                    listed = report.listed,
                    added = report.added,
                    updated = report.updated,
                    removed = report.removed,
                    requests = report.requests,
                    "Notion sync finished"
                );
            }
        }
        Ok(())
    }

    async fn index_folders(&self, folders: Vec<PathBuf>, rebuild: bool) -> Result<index::IndexReport> {
        let data_dir = self.settings.data_dir.clone();
        let settings = IndexSettings { rebuild, ..self.settings.index.clone() };
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || {
            index::index_folders(&data_dir, &folders, embedder.as_ref(), &settings, &Silent)
        })
        .await?
    }

    /// Announces the live generation if it changed (a run here or in another process).
    fn announce_live(&self) {
        let live = live_generation(&self.index_dir);
        self.announce.send_if_modified(|announced| std::mem::replace(announced, live) != live);
    }
}

/// The live generation of `index_dir` (0 when there is none or it cannot be read).
fn live_generation(index_dir: &IndexDir) -> u64 {
    index_dir.current().ok().flatten().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_merge_by_kind_and_a_rebuild_goes_first() {
        let mut pending = Pending::default();
        for job in [IndexJob::FoldersChanged, IndexJob::SyncNotion { full: false }, IndexJob::FoldersChanged] {
            pending.add(job);
        }
        pending.add(IndexJob::SyncNotion { full: true });
        pending.add(IndexJob::Rebuild);
        assert_eq!(pending.next(), Some(IndexJob::Rebuild), "a rebuild covers the folders");
        assert_eq!(pending.next(), Some(IndexJob::SyncNotion { full: true }), "full wins when merged");
        assert_eq!(pending.next(), None);
        pending.add(IndexJob::FoldersChanged);
        pending.add(IndexJob::SyncNotion { full: false });
        assert_eq!(pending.next(), Some(IndexJob::FoldersChanged));
        assert_eq!(pending.next(), Some(IndexJob::SyncNotion { full: false }));
    }
}
