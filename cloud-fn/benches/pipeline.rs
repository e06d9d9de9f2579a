//! The cloud side's own cost per question: wall time of `process_once` with an LLM stand-in that
//! answers at once (so the figure excludes model time), Notion requests per question, and store
//! requests per question (what DynamoDB bills on AWS), plus the store requests of an idle run.
//!
//! ```sh
//! cargo bench -p cloud-fn --bench pipeline
//! ```
//! Under `cargo test` (no `--bench`) it runs 5 questions as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{CountingStore, World};

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let questions = if full { 200 } else { 5 };
    println!(
        "| run | questions | wall time per question | Notion requests per question | store reads / writes per question |"
    );
    println!("|---|---|---|---|---|");
    for (label, concurrency) in [("sequential", 1), ("4 at a time", 4)] {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let embedded = cloud_fn::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).expect("a store");
        let store = Arc::new(CountingStore::new(Arc::new(embedded)));
        let world = World::with_store(store.clone(), dir).await;
        for i in 0..questions {
            world.ask(&format!("Benchmark question {i}: how should I plan my week?"), &["AI效率"]);
        }
        let mut pipeline = world.default_pipeline();
        if let Some(settings) = std::sync::Arc::get_mut(&mut pipeline).map(|p| p.settings_mut()) {
            settings.concurrency = concurrency;
            settings.max_pages_per_run = questions;
        }
        world.sandbox.clear_requests();
        let (reads, writes) = (store.reads.load(Ordering::Relaxed), store.writes.load(Ordering::Relaxed));
        let started = Instant::now();
        let report = pipeline.process_once().await.expect("the run succeeds");
        let elapsed = started.elapsed();
        assert_eq!(report.answered, questions, "{report:?}");
        let requests = world.sandbox.requests().len();
        let per_question = |count: u64| count as f64 / questions as f64;
        println!(
            "| {label} | {questions} | {:.2} ms | {:.1} | {:.1} / {:.1} |",
            elapsed.as_secs_f64() * 1e3 / questions as f64,
            requests as f64 / questions as f64,
            per_question(store.reads.load(Ordering::Relaxed) - reads),
            per_question(store.writes.load(Ordering::Relaxed) - writes),
        );
        // A run that finds nothing: what every scheduled tick without questions costs.
        world.sandbox.clear_requests();
        let (reads, writes) = (store.reads.load(Ordering::Relaxed), store.writes.load(Ordering::Relaxed));
        let idle = pipeline.process_once().await.expect("the idle run succeeds");
        assert_eq!(idle.found, 0);
        println!(
            "| {label}, idle run | 0 | — | {} | {} / {} |",
            world.sandbox.requests().len(),
            store.reads.load(Ordering::Relaxed) - reads,
            store.writes.load(Ordering::Relaxed) - writes
        );
    }
}
