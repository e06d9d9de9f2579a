//! Part 3, an HTTP flood on the agent: the tunnel's latency while 64 clients flood `/search`.

use super::*;

pub(super) struct FloodReport {
    pub(super) quiet: Latencies,
    /// (the API's concurrency cap, tunnel latencies, HTTP answered, HTTP told to retry)
    pub(super) floods: Vec<(usize, Latencies, u64, u64)>,
    pub(super) window: Duration,
}

pub(super) struct Latencies {
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) errors: usize,
    pub(super) count: usize,
}

pub(super) fn latencies(mut times: Vec<Duration>, errors: usize) -> Latencies {
    times.sort();
    let at = |p: f64| times.get(((times.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default();
    Latencies { p50: at(0.5), p99: at(0.99), errors, count: times.len() }
}

/// Tunnel searches at a steady pace for `window`, distinct queries (no cache hits).
pub(super) async fn tunnel_searches(hub: &Arc<Hub>, window: Duration, tag: &str) -> Latencies {
    let words = ["rust", "ownership", "sleep", "review", "pomodoro", "bread", "travel", "notion", "async", "focus"];
    let started = Instant::now();
    let (mut times, mut errors, mut n) = (Vec::new(), 0, 0usize);
    while started.elapsed() < window {
        let query = format!("{tag} {} {} {n}", words[n % words.len()], words[(n / 3) % words.len()]);
        let begun = Instant::now();
        match hub.search(&SearchRequest::new(query), Duration::from_secs(5)).await {
            Ok(_) => times.push(begun.elapsed()),
            Err(_) => errors += 1,
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies(times, errors)
}

pub(super) async fn flood(options: &Options) -> Result<FloodReport> {
    let dir = tempfile::tempdir()?;
    let config = AgentConfig::load(&Overrides { data_dir: Some(dir.path().join("data")), config: None })?;
    let embedder = Arc::new(Embedder::load(&config.embedder).context("the model is installed by scripts/setup.sh")?);
    let notes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes");
    tokio::task::block_in_place(|| {
        index::index_folders(&config.data_dir, &[notes], embedder.as_ref(), &config.index, &Silent)
    })?;
    let engine = Arc::new(Engine::open(&config.data_dir, embedder, config.search.clone())?);
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?);
    let (hub, url) = hub_server(Duration::from_secs(30), store).await?;
    let agent = spawn_agent(&url, "flooded", engine.clone())?;
    let started = Instant::now();
    while !hub.is_live().await {
        ensure!(started.elapsed() < Duration::from_secs(10), "the agent did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let quiet = tunnel_searches(&hub, options.flood, "quiet").await;
    let mut floods = Vec::new();
    // The API as shipped, then with its concurrency cap lifted: what the cap buys.
    for cap in [ApiSettings::default().max_concurrent_requests, 10_000] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = format!("http://{}/search", listener.local_addr()?);
        let settings = ApiSettings { max_concurrent_requests: cap, ..ApiSettings::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(api::serve(listener, ApiState::new(engine.clone(), None).with_settings(settings), async {
                let _ = stopped.await;
            }));
        let (answered, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop_at = Instant::now() + options.flood;
        let client = reqwest::Client::new();
        let flooders: Vec<_> = (0..64)
            .map(|worker| {
                let (client, api, answered, refused) = (client.clone(), api.clone(), answered.clone(), refused.clone());
                tokio::spawn(async move {
                    let mut n = worker;
                    while Instant::now() < stop_at {
                        let body = json!({ "query": format!("flood {cap} {n} notes about focus and sleep") });
                        match client.post(&api).json(&body).send().await {
                            Ok(response) if response.status().is_success() => answered.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => refused.fetch_add(1, Ordering::Relaxed),
                            Err(_) => continue,
                        };
                        n += 64;
                    }
                })
            })
            .collect();
        let flooded = tunnel_searches(&hub, options.flood, &format!("flooded {cap}")).await;
        for flooder in flooders {
            let _ = flooder.await;
        }
        let _ = stop.send(());
        let _ = server.await;
        floods.push((cap, flooded, answered.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)));
    }
    agent.abort();
    Ok(FloodReport { quiet, floods, window: options.flood })
}
