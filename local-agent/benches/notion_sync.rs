//! What a Notion knowledge sync costs: throughput of a first sync against the Notion sandbox
//! rate-limited like Notion (3 requests/s, the client pacing itself to match), and the
//! requests a re-sync makes when nothing changed.
//!
//! cargo bench -p local-agent --bench notion_sync
//!
//! `cargo test` runs this without `--bench`: a short smoke run without the rate limit.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use local_agent::config::{AgentConfig, Overrides, Secret};
use local_agent::embed::Embedder;
use local_agent::sources::notion_sync::{NotionSettings, NotionSync};
use notion::page::write;
use serde_json::json;
use testkit::{NotionSandbox, PropertyKind, PropertySchema};

const TOKEN: &str = "secret_bench";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (pages, rate) = if full { (120, 3) } else { (12, 1000) };
    let sandbox = NotionSandbox::start(TOKEN).await?;
    if full {
        sandbox.set_rate_limit_with_burst(rate, notion::DEFAULT_BURST);
    }
    let (database, source) = sandbox.create_database(
        "Knowledge",
        vec![PropertySchema::new("Name", PropertyKind::Title), PropertySchema::new("Tags", PropertyKind::MultiSelect)],
    );
    for i in 0..pages {
        let text = format!("Note {i}: a paragraph of knowledge about topic {} with a few more words.", i % 9);
        let blocks = json!([
            { "type": "heading_2", "heading_2": { "rich_text": [{ "type": "text", "text": { "content": format!("Section {i}") } }] } },
            { "type": "paragraph", "paragraph": { "rich_text": [{ "type": "text", "text": { "content": text } }] } },
        ]);
        sandbox.add_page(&source, json!({ "Name": write::title(&format!("Note {i}")) }), blocks);
    }
    let dir = tempfile::tempdir()?;
    let config = AgentConfig::load(&Overrides { data_dir: Some(dir.path().to_owned()), config: None })?;
    let embedder = std::sync::Arc::new(Embedder::load(&config.embedder).context("run scripts/setup.sh")?);
    let settings = NotionSettings {
        token: Secret::new(TOKEN),
        databases: vec![database],
        tags_property: "Tags".into(),
        base_url: sandbox.url(),
        requests_per_second: rate,
        sync_interval: Duration::from_secs(300),
        full_sync_interval: Duration::from_secs(3600),
        settle_time: Duration::ZERO,
        allow_insecure: false,
    };
    let sync = NotionSync::new(settings, dir.path())?;

    println!("| sync | pages listed | pages indexed | Notion requests | time | pages/min |");
    println!("|---|---|---|---|---|---|");
    let started = Instant::now();
    let first = sync.run(embedder.clone(), &config.index, false).await?;
    let took = started.elapsed();
    assert_eq!(first.added, pages, "{first:?}");
    println!(
        "| first (full), sandbox at {rate} req/s | {} | {} | {} | {:.1} s | {:.0} |",
        first.listed,
        first.added,
        first.requests,
        took.as_secs_f64(),
        first.added as f64 / took.as_secs_f64() * 60.0
    );
    let started = Instant::now();
    let again = sync.run(embedder, &config.index, false).await?;
    assert_eq!(again.added + again.updated + again.removed, 0, "{again:?}");
    println!(
        "| again, nothing changed | {} | 0 | {} | {:.2} s | — |",
        again.listed,
        again.requests,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
