//! The cloud side's own cost per question: wall time of `process_once` with an LLM stand-in that
//! answers at once (so the figure excludes model time), and Notion requests per question.
//!
//! ```sh
//! cargo bench -p cloud-fn --bench pipeline
//! ```
//! Under `cargo test` (no `--bench`) it runs 5 questions as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::World;

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let questions = if full { 200 } else { 5 };
    println!("| run | questions | wall time per question | Notion requests per question |");
    println!("|---|---|---|---|");
    for (label, concurrency) in [("sequential", 1), ("4 at a time", 4)] {
        let world = World::new().await;
        for i in 0..questions {
            world.ask(&format!("Benchmark question {i}: how should I plan my week?"), &["AI效率"]);
        }
        let mut pipeline = world.default_pipeline();
        if let Some(settings) = std::sync::Arc::get_mut(&mut pipeline).map(|p| p.settings_mut()) {
            settings.concurrency = concurrency;
        }
        world.sandbox.clear_requests();
        let started = Instant::now();
        let report = pipeline.process_once().await.expect("the run succeeds");
        let elapsed = started.elapsed();
        assert_eq!(report.answered, questions, "{report:?}");
        let requests = world.sandbox.requests().len();
        println!(
            "| {label} | {questions} | {:.2} ms | {:.1} |",
            elapsed.as_secs_f64() * 1e3 / questions as f64,
            requests as f64 / questions as f64
        );
    }
}
