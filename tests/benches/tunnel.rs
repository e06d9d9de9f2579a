//! What the tunnel costs: request round trips through the cloud hub and the agent's client on
//! loopback, and how many real searches one agent sustains.
//!
//! cargo bench -p system-tests --bench tunnel
//!
//! 1. Overhead: the agent answers instantly with a typical reply (5 hits, 2 KB of context), so
//!    the round trip is all tunnel: JSON both ways, WebSocket frames, the hub's correlation.
//! 2. Throughput: the real engine (model + indexes of the sample notes) behind the tunnel,
//!    with 16 requests in flight and every query distinct (no cache hits).
//!
//! `cargo test` runs this without `--bench`: a short smoke run that proves it still works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cloud_fn::agent::AgentLink;
use cloud_fn::clock::SystemClock;
use cloud_fn::config::Secret as CloudSecret;
use cloud_fn::store::Store;
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::tunnel::hub::Hub;
use cloud_fn::tunnel::websocket::{AgentSettings, agent_endpoint};
use local_agent::config::{AgentConfig, Overrides, Secret};
use local_agent::embed::Embedder;
use local_agent::index::{self, Silent};
use local_agent::search::Engine;
use local_agent::tunnel::{self, Responder, TunnelConfig};
use protocol::tunnel::{IndexSummary, ReplyBody, RequestBody};
use protocol::{ErrorDetail, SearchHit, SearchRequest, SearchResponse, SourceType};

const TOKEN: &str = "bench-token";

/// Answers at once with a reply shaped like a real one.
struct Instant5;

impl Responder for Instant5 {
    fn respond(&self, _request: &RequestBody) -> Result<ReplyBody, ErrorDetail> {
        let results = (0..5)
            .map(|n| SearchHit {
                knowledge_id: format!("notes/doc{n}.md#3"),
                title: format!("Document {n}"),
                content_snippet: "A passage of about two hundred characters, which is what the agent shows. ".repeat(3),
                similarity_score: 0.8,
                source_type: SourceType::Hybrid,
                source: format!("notes/doc{n}.md"),
            })
            .collect();
        Ok(ReplyBody::Search(SearchResponse {
            success: true,
            results,
            context: "[1] Document (notes/doc.md)\nContext text. ".repeat(50),
            processing_time: 0.0,
            fusion: None,
        }))
    }

    fn summary(&self) -> IndexSummary {
        IndexSummary::default()
    }
}

struct Rig {
    hub: Arc<Hub>,
    url: String,
    _dir: tempfile::TempDir,
}

async fn cloud() -> Result<Rig> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?);
    let settings = AgentSettings {
        tokens: vec![CloudSecret::new(TOKEN)],
        heartbeat: Duration::from_secs(30),
        cache_ttl: Duration::from_secs(60),
    };
    let (hub, agents) = agent_endpoint(&settings, store, Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/agent", listener.local_addr()?);
    tokio::spawn(edge::serve(listener, agents, edge::Limits::default(), std::future::pending()));
    Ok(Rig { hub, url, _dir: dir })
}

async fn connect(
    rig: &Rig,
    responder: Arc<dyn Responder>,
) -> Result<tokio::task::JoinHandle<Result<(), tunnel::TunnelError>>> {
    let config = TunnelConfig::new(&rig.url, Secret::new(TOKEN), "bench".into(), None)?;
    let agent = tokio::spawn(tunnel::run(config, responder, std::future::pending()));
    let started = Instant::now();
    while !rig.hub.is_live().await {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "the agent did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(agent)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn overhead(requests: usize) -> Result<(Duration, Duration, Duration)> {
    let rig = cloud().await?;
    let agent = connect(&rig, Arc::new(Instant5)).await?;
    let request = SearchRequest::new("what does the tunnel cost?");
    for _ in 0..requests / 10 {
        rig.hub.search(&request, Duration::from_secs(5)).await?;
    }
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        rig.hub.search(&request, Duration::from_secs(5)).await?;
        times.push(started.elapsed());
    }
    agent.abort();
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99), percentile(&times, 0.999)))
}

async fn throughput(engine: Arc<Engine>, window: Duration, in_flight: usize) -> Result<(f64, Duration)> {
    let rig = cloud().await?;
    let agent = connect(&rig, engine).await?;
    let words = ["rust", "ownership", "sleep", "review", "tunnel", "pomodoro", "bread", "travel", "notion", "async"];
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..in_flight {
        let hub = rig.hub.clone();
        workers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut n = worker;
            while started.elapsed() < window {
                // Distinct queries: the engine's query cache never answers.
                let query = format!("{} {} {n}", words[n % words.len()], words[(n / 7) % words.len()]);
                let begun = Instant::now();
                hub.search(&SearchRequest::new(query), Duration::from_secs(10)).await?;
                times.push(begun.elapsed());
                n += in_flight;
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut times = Vec::new();
    for worker in workers {
        times.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    agent.abort();
    times.sort();
    Ok((times.len() as f64 / elapsed.as_secs_f64(), percentile(&times, 0.5)))
}

fn sample_engine() -> Result<(Arc<Engine>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let config = AgentConfig::load(&Overrides { data_dir: Some(dir.path().to_owned()), config: None })?;
    let embedder = Arc::new(Embedder::load(&config.embedder).context("the model is installed by scripts/setup.sh")?);
    let notes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes");
    index::index_folders(&config.data_dir, &[notes], embedder.as_ref(), &config.index, &Silent)?;
    let engine = Engine::open(&config.data_dir, embedder, config.search.clone())?;
    Ok((Arc::new(engine), dir))
}

fn main() -> Result<()> {
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (requests, window) =
            if smoke { (200, Duration::from_millis(500)) } else { (5000, Duration::from_secs(10)) };
        let (p50, p99, p999) = overhead(requests).await?;
        let (engine, _dir) = tokio::task::block_in_place(sample_engine)?;
        let (rate, search_p50) = throughput(engine, window, 16).await?;
        println!("| tunnel, loopback ({requests} round trips; {window:?} of searches) | value |");
        println!("|---|---|");
        println!("| round-trip overhead p50 (instant agent) | {:.3} ms |", p50.as_secs_f64() * 1e3);
        println!("| round-trip overhead p99 | {:.3} ms |", p99.as_secs_f64() * 1e3);
        println!("| round-trip overhead p99.9 | {:.3} ms |", p999.as_secs_f64() * 1e3);
        println!("| real searches per second, one agent, 16 in flight | {rate:.0} |");
        println!("| real search round trip p50 under that load | {:.1} ms |", search_p50.as_secs_f64() * 1e3);
        Ok(())
    })
}
