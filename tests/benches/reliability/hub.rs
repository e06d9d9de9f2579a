//! Part 2, the hub holding many agents: a child process opens the connections, this one serves
//! the hub and measures its own memory and CPU per agent.

use super::*;

pub(super) struct HubReport {
    pub(super) agents: usize,
    pub(super) live: usize,
    pub(super) heartbeats_per_second: f64,
    pub(super) memory_per_agent: f64,
    pub(super) cpu_per_heartbeat: Duration,
}

/// The child process: `count` agent connections saying hello, then a heartbeat every second.
pub(super) async fn hold_agents(url: String, count: usize) -> Result<()> {
    let mut connections = Vec::with_capacity(count);
    for n in 0..count {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert("authorization", format!("Bearer {AGENT_TOKEN}").parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let hello =
            Hello { agent_id: format!("simulated-{n}"), version: "bench".into(), index: IndexSummary::default() };
        socket.send(Message::Text(AgentMessage::Hello(hello).encode().into())).await?;
        connections.push(socket);
    }
    let mut tasks = Vec::with_capacity(count);
    for (n, socket) in connections.into_iter().enumerate() {
        let (mut sink, mut stream) = socket.split();
        tasks.push(tokio::spawn(async move {
            // Spread the beats over the second, as independent agents would be.
            tokio::time::sleep(Duration::from_millis((n % 1000) as u64)).await;
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        seq += 1;
                        let beat = AgentMessage::Heartbeat(Heartbeat { seq, ..Heartbeat::default() });
                        if sink.send(Message::Text(beat.encode().into())).await.is_err() {
                            return;
                        }
                    }
                    message = stream.next() => if !matches!(message, Some(Ok(_))) { return },
                }
            }
        }));
    }
    // The parent kills this process when it has measured.
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Resident memory and CPU time (user + system) of this process, from `/proc/self`.
pub(super) fn usage() -> Result<(u64, Duration)> {
    let status = std::fs::read_to_string("/proc/self/status").context("needs Linux's /proc")?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("VmRSS")?;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Ok((rss_kb * 1024, Duration::from_millis(ticks * 10)))
}

pub(super) async fn hub_load(options: &Options) -> Result<HubReport> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?);
    let (hub, url) = hub_server(Duration::from_secs(1), store).await?;
    let (rss_before, _) = usage()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([AGENTS_CHILD, &url, &options.agents.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let started = Instant::now();
    while hub.agents().len() < options.agents {
        if started.elapsed() > Duration::from_secs(120) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("only {} of {} agents connected", hub.agents().len(), options.agents);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every agent beat a few times, then measure a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu_start) = usage()?;
    let window = if options.smoke { Duration::from_secs(2) } else { Duration::from_secs(10) };
    tokio::time::sleep(window).await;
    let (rss_after, cpu_end) = usage()?;
    let live = hub.agents().len();
    let _ = child.kill();
    let _ = child.wait();
    let heartbeats = options.agents as f64 * window.as_secs_f64();
    Ok(HubReport {
        agents: options.agents,
        live,
        heartbeats_per_second: options.agents as f64,
        memory_per_agent: rss_after.saturating_sub(rss_before) as f64 / options.agents as f64,
        cpu_per_heartbeat: (cpu_end - cpu_start).div_f64(heartbeats),
    })
}
