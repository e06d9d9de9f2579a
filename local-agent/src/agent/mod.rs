//! The agent as a running service: what `local-agent serve` is, as a library.
//!
//! [`Agent::load`] loads the model and opens the index (rebuilding one that cannot be read or
//! was built with another model). [`Agent::run`] then owns every task — the HTTP API, the
//! [`indexer`] (the one owner of index runs), the folder watcher, the engine following new
//! generations, and the tunnel to the cloud — until `shutdown` fires; then it drains them:
//! the API finishes its requests, the tunnel answers the cloud's requests in flight, the run
//! in progress finishes (within a grace time). Nothing is aborted.

pub mod identity;
pub mod indexer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::indexer::{IndexJob, Indexer, IndexerSettings};
use crate::api::{self, ApiState};
use crate::config::AgentConfig;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::generations::IndexDir;
use crate::index::{self, IndexSettings, Silent};
use crate::search::Engine;
use crate::sources::notion_sync::NotionSync;
use crate::sources::watch::FolderWatcher;
use crate::tunnel::{self, Responder, TunnelConfig};

/// How long the folders must be quiet before a change is indexed.
const WATCH_DEBOUNCE: Duration = Duration::from_secs(2);

/// A loaded agent, ready to serve.
pub struct Agent {
    config: AgentConfig,
    embedder: Arc<Embedder>,
    engine: Arc<Engine>,
}

impl Agent {
    /// Loads the model and opens the index; an index that is unreadable or built with another
    /// model is rebuilt from its folders first (with a log line saying so). Blocks: call it
    /// off the async threads.
    pub fn load(config: AgentConfig) -> Result<Self> {
        let embedder = Arc::new(Embedder::load(&config.embedder)?);
        let engine = Arc::new(open_or_rebuild(&config, &embedder)?);
        Ok(Self { config, embedder, engine })
    }

    /// The search engine it serves.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves on `listener` until `shutdown` fires, then drains every task.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self { config, embedder, engine } = self;
        let address = listener.local_addr().map_err(Error::io("the HTTP listener"))?;
        // Before anything starts: an exposed API without a key is refused, not warned about.
        api::check_exposure(address, config.api_key.as_ref())
            .map_err(|exposed| Error::Config { path: "listen".into(), message: exposed.to_string() })?;
        // Settings that cannot work fail here, before any task starts.
        let tunnel_config = tunnel_config(&config)?;
        let stop = CancellationToken::new();
        let notion = match &config.notion {
            Some(settings) => {
                tracing::info!(databases = settings.databases.len(), "syncing Notion knowledge databases");
                Some(NotionSync::new(settings.clone(), &config.data_dir)?)
            }
            None => None,
        };
        let settings = IndexerSettings {
            data_dir: config.data_dir.clone(),
            folders: config.folders.clone(),
            index: config.index.clone(),
        };
        let (indexer, indexing) = Indexer::spawn(settings, embedder, notion, stop.clone());
        let following = tokio::spawn(engine.clone().follow(indexer.published()));
        let watching = watch_folders(&config, indexer.clone(), stop.clone());

        let mut state = ApiState::new(engine.clone(), config.api_key.clone())
            .with_settings(config.api.clone())
            .with_indexer(indexer.clone())
            .with_data_dir(&config.data_dir);
        let tunnel = match tunnel_config {
            Some(tunnel_config) => {
                state = state.with_tunnel(tunnel_config.status.clone());
                tracing::info!(url = tunnel_config.url, agent_id = tunnel_config.agent_id, "connecting to the cloud");
                let responder: Arc<dyn Responder> = engine.clone();
                let stopped = stop.clone();
                Some(tokio::spawn(async move {
                    // The tunnel stops early only when its configuration cannot work; the local
                    // API keeps serving, and `/stats` and `service status` say why.
                    if let Err(error) = tunnel::run(tunnel_config, responder, stopped.cancelled_owned()).await {
                        tracing::error!(%error, "the tunnel to the cloud stopped; the local API keeps serving");
                    }
                }))
            }
            None => None,
        };

        let served = api::serve(listener, state, shutdown).await;
        // The API has finished its requests; now the rest, in the order they depend on.
        stop.cancel();
        for task in [tunnel, watching, Some(indexing)].into_iter().flatten() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a task of the agent failed while stopping");
            }
        }
        drop(indexer);
        // The indexer's announcements have ended, so the engine stops following.
        let _ = following.await;
        served.map_err(|error| Error::Io { path: address.to_string().into(), source: error })
    }
}

/// Opens the index; one that is unreadable or built with another model is rebuilt from its
/// sources first, instead of stopping the agent.
fn open_or_rebuild(config: &AgentConfig, embedder: &Arc<Embedder>) -> Result<Engine> {
    match Engine::open(&config.data_dir, embedder.clone(), config.search.clone()) {
        Err(error @ (Error::CorruptIndex { .. } | Error::ModelChanged { .. })) => {
            tracing::warn!(%error, "rebuilding the index from its sources before serving");
            let settings = IndexSettings { rebuild: true, ..config.index.clone() };
            let report = index::index_folders(&config.data_dir, &config.folders, embedder.as_ref(), &settings, &Silent)
                .map_err(|rebuild| Error::Config {
                    path: config.data_dir.clone(),
                    message: format!(
                        "the index could not be rebuilt ({rebuild}); run `local-agent index <FOLDER> --rebuild` ({error})"
                    ),
                })?;
            tracing::info!(documents = report.documents, chunks = report.chunks, "the index was rebuilt");
            Engine::open(&config.data_dir, embedder.clone(), config.search.clone())
        }
        opened => opened,
    }
}

/// The tunnel's configuration, when the cloud's URL and token are both set.
fn tunnel_config(config: &AgentConfig) -> Result<Option<TunnelConfig>> {
    let (Some(url), Some(token)) = (&config.cloud.url, &config.cloud.token) else { return Ok(None) };
    let agent_id = match &config.cloud.agent_id {
        Some(id) => id.clone(),
        None => identity::persistent_agent_id(&config.data_dir)?,
    };
    let tunnel = TunnelConfig::with_transport(
        url,
        token.clone(),
        agent_id,
        config.cloud.ca_file.as_deref(),
        config.cloud.allow_insecure,
    )
    .map_err(|error| Error::Config { path: "CLOUD_URL".into(), message: error.to_string() })?;
    Ok(Some(tunnel))
}

/// Watches the indexed folders (and the configured ones) and asks the indexer for a run after
/// each burst of changes, until `stop`.
fn watch_folders(
    config: &AgentConfig,
    indexer: Indexer,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let folders = watched_folders(config);
    if folders.is_empty() {
        return None;
    }
    let watcher = match FolderWatcher::start(&folders, WATCH_DEBOUNCE) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the note folders; run `local-agent index` after editing notes");
            return None;
        }
    };
    tracing::info!(folders = folders.len(), "watching the note folders for changes");
    Some(tokio::spawn(index_on_change(watcher, indexer, stop)))
}

/// Asks `indexer` for a run after each burst of changes `watcher` reports, until `stop` (or
/// until the watcher or the indexer stops).
pub async fn index_on_change(mut watcher: FolderWatcher, indexer: Indexer, stop: CancellationToken) {
    loop {
        tokio::select! {
            changed = watcher.changed() => {
                if !changed || !indexer.submit(IndexJob::FoldersChanged) {
                    return;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// The folders of the live index and of the config that exist.
fn watched_folders(config: &AgentConfig) -> Vec<PathBuf> {
    let index_dir = IndexDir::new(&config.data_dir);
    let indexed = index_dir
        .current()
        .ok()
        .flatten()
        .and_then(|generation| index_dir.read_manifest(generation).ok())
        .map(|manifest| manifest.roots)
        .unwrap_or_default();
    let mut folders: Vec<PathBuf> = indexed.iter().filter_map(|root| root.folder().map(Path::to_owned)).collect();
    folders.extend(config.folders.iter().filter_map(|folder| std::fs::canonicalize(folder).ok()));
    folders.sort();
    folders.dedup();
    folders.retain(|folder| folder.is_dir());
    folders
}

/// Completes on Ctrl-C, or on SIGTERM where there are signals (how service managers stop us).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
