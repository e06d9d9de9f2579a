//! How long a person waits: from Notion's signed `page.created` delivery at `cloud-fn serve` to
//! the page reading Answered, and, without webhooks, from the question's creation to Answered
//! under the schedule.
//!
//! ```sh
//! cargo bench -p system-tests --bench latency [-- --questions N] [--every MS]
//! ```
//!
//! Everything is the real thing but Notion and the model: `cloud-fn serve` built from its
//! configuration (as `serve` builds it), the real `local-agent` binary on the sample notes with
//! the real embedding model, connected over the tunnel; the Notion sandbox rate-limits as Notion
//! documents (an average of 3 requests a second, bursts allowed: a bucket of
//! `notion::DEFAULT_BURST`), and the LLM stand-in answers at once, so every millisecond measured
//! is ours. Questions arrive one every `--every` ms (2,000 by default: a busy person; Notion's
//! sustained rate allows one question every 1.7 s, at five requests each), and the table shows
//! the wait and where the cloud's time went, from its own tracing spans. Under `cargo test` (no
//! `--bench`) it asks 3 questions per row as a smoke test.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_fn::app::SelfHosted;
use cloud_fn::config::{CloudConfig, Secret, Source};
use cloud_fn::server::ApiAccess;
use serde_json::{Value, json};
use testkit::{LlmStandIn, NotionSandbox};
use tracing::span;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const NOTION_TOKEN: &str = "secret_sandbox";
const WEBHOOK_TOKEN: &str = "secret_webhook_verification";
const LLM_KEY: &str = "sk-or-bench";
const AGENT_TOKEN: &str = "agent-token-for-the-bench";
const CLOUD_KEY: &str = "cloud-key-for-the-bench";

/// The cloud's pipeline spans, in the order a question passes them (`question` is the whole).
const STAGES: &[&str] = &[
    "read_page",
    "templates",
    "claim",
    "mark_processing",
    "read_blocks",
    "agent_search",
    "prompt",
    "llm",
    "record_answer",
    "append",
    "record",
    "status",
    "question",
];

/// Questions on the sample notes, with their tags.
const QUESTIONS: &[(&str, &[&str])] = &[
    ("What should I do in a weekly review?", &["AI效率"]),
    ("Who owns a value in Rust?", &["Rust"]),
    ("How long should a pomodoro break be?", &["AI效率"]),
    ("怎样才能睡得更好？", &["健康"]),
    ("How does the agent reach the cloud without a public IP?", &["networking"]),
    ("When is async Rust worth it?", &[]),
    ("How do I keep sourdough starter alive?", &["cooking"]),
    ("What goes on a travel checklist?", &[]),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|arg| arg == "--bench");
    let value = |name: &str| -> Option<u64> {
        let at = args.iter().position(|arg| arg == name)?;
        let text = args.get(at + 1).unwrap_or_else(|| panic!("{name} needs a number"));
        Some(text.parse().unwrap_or_else(|_| panic!("{name} needs a number, not {text:?}")))
    };
    let questions = value("--questions").map_or(if full { 20 } else { 3 }, |count| count.max(1) as usize);
    let every = Duration::from_millis(value("--every").unwrap_or(2000));

    let stages = StageTimes::default();
    let filter = Targets::new().with_target("cloud_fn", LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry().with(stages.clone().with_filter(filter));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let notes_dir = tempfile::tempdir().expect("a temporary folder");
    index_sample_notes(notes_dir.path());

    println!("| delivery | Notion client | questions | p50 | p95 | max | Notion requests per question | 429s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    if full {
        // The limiter before bursts: every request spaced evenly at 3 a second.
        rows.push(("webhook", 1, None));
    }
    rows.push(("webhook", notion::DEFAULT_BURST, None));
    let poll = Duration::from_secs(2);
    rows.push(("schedule", notion::DEFAULT_BURST, Some(poll)));
    let mut breakdown = BTreeMap::new();
    for (delivery, burst, poll_interval) in rows {
        stages.clear();
        let world = World::start(notes_dir.path(), burst, poll_interval).await;
        let waits = world.ask_all(questions, every).await;
        let requests = world.sandbox.requests();
        let refused = requests.iter().filter(|logged| logged.status == 429).count();
        let client = if burst == 1 { "evenly spaced, 3/s".to_owned() } else { format!("bucket of {burst}, 3/s") };
        println!(
            "| {delivery} | {client} | {questions} | {} | {} | {} | {:.1} | {refused} |",
            millis(percentile(&waits, 0.5)),
            millis(percentile(&waits, 0.95)),
            millis(percentile(&waits, 1.0)),
            world.requests_per_question(questions),
        );
        if let Some(interval) = poll_interval {
            let bound = interval + Duration::from_secs(1);
            let held = waits.iter().all(|wait| *wait <= bound);
            println!(
                "|   | (created → Answered with POLL_INTERVAL={}s: bound of {}s {})",
                interval.as_secs(),
                bound.as_secs(),
                if held { "held" } else { "MISSED" }
            );
        }
        if delivery == "webhook" && burst == notion::DEFAULT_BURST {
            breakdown = stages.snapshot();
        }
        world.stop();
    }

    println!();
    println!(
        "Where the cloud's time goes (webhook, bucket of {}): its tracing spans per question",
        notion::DEFAULT_BURST
    );
    println!();
    println!("| stage | p50 | p95 |");
    println!("|---|---|---|");
    for stage in STAGES {
        if let Some(times) = breakdown.get(*stage) {
            let (p50, p95) = (percentile(times, 0.5), percentile(times, 0.95));
            println!("| {stage} | {:.1} ms | {:.1} ms |", p50.as_secs_f64() * 1e3, p95.as_secs_f64() * 1e3);
        }
    }
}

/// Indexes the repository's sample notes into `data_dir` with the agent's binary.
fn index_sample_notes(data_dir: &Path) {
    let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes");
    let output = Command::new(system_tests::local_agent_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("index")
        .arg(notes)
        .env_remove("RUST_LOG")
        .output()
        .expect("the agent runs");
    assert!(output.status.success(), "indexing failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// One configuration: the sandbox, the stand-in, `cloud-fn serve` and the agent.
struct World {
    sandbox: NotionSandbox,
    _llm: LlmStandIn,
    source: String,
    database: String,
    address: std::net::SocketAddr,
    poll_interval: Option<Duration>,
    hub: Arc<cloud_fn::tunnel::hub::Hub>,
    stop: tokio::sync::oneshot::Sender<()>,
    agent: AgentProcess,
    http: reqwest::Client,
    requests_before: usize,
    _dir: tempfile::TempDir,
}

/// The agent's process, killed when dropped.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl World {
    /// `poll_interval`: answer by the schedule only (no webhook); `None`: by webhook deliveries.
    async fn start(notes: &Path, burst: u32, poll_interval: Option<Duration>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let sandbox = NotionSandbox::start(NOTION_TOKEN).await.expect("the sandbox starts");
        let (database, source) = sandbox.create_questions_database();
        sandbox.set_rate_limit_with_burst(3, notion::DEFAULT_BURST);
        let llm = LlmStandIn::start(LLM_KEY).await.expect("the stand-in starts");
        let settings = Source::from_values([
            ("NOTION_API_KEY", NOTION_TOKEN.to_owned()),
            ("NOTION_DATABASE_ID", database.clone()),
            ("NOTION_API_BASE_URL", sandbox.url()),
            ("NOTION_RATE_LIMIT", "3".into()),
            ("NOTION_RATE_BURST", burst.to_string()),
            ("NOTION_WEBHOOK_TOKEN", WEBHOOK_TOKEN.into()),
            ("OPENROUTER_API_KEY", LLM_KEY.into()),
            ("OPENROUTER_BASE_URL", llm.url()),
            ("LLM_MODELS", "bench/model".into()),
            ("CLOUD_API_KEY", CLOUD_KEY.into()),
            ("AGENT_TOKEN", AGENT_TOKEN.into()),
            ("DATA_DIR", dir.path().join("cloud").display().to_string()),
        ]);
        let config = CloudConfig::load(&settings).expect("a valid configuration");
        let service =
            SelfHosted::from_config(&config, ApiAccess::Key(Secret::new(CLOUD_KEY))).await.expect("the service builds");
        let hub = service.hub.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Webhook rows keep the schedule out of the way (its first run finds nothing).
        let interval = poll_interval.unwrap_or(Duration::from_secs(3600));
        tokio::spawn(service.serve(listener, interval, async {
            let _ = stopped.await;
        }));
        let agent = Command::new(system_tests::local_agent_bin())
            .arg("--data-dir")
            .arg(notes)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CLOUD_URL", format!("ws://{address}/agent"))
            .env("AGENT_TOKEN", AGENT_TOKEN)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the agent starts");
        let agent = AgentProcess(agent);
        let started = Instant::now();
        while hub.agents().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(30), "the agent never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the start-up run and the agent's cache pushes settle, and the bucket refill.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let requests_before = sandbox.requests().len();
        Self {
            sandbox,
            _llm: llm,
            source,
            database,
            address,
            poll_interval,
            hub,
            stop,
            agent,
            http: reqwest::Client::new(),
            requests_before,
            _dir: dir,
        }
    }

    /// Asks `count` questions, one every `every`; returns each one's wait for Answered.
    async fn ask_all(&self, count: usize, every: Duration) -> Vec<Duration> {
        let mut waits = Vec::with_capacity(count);
        let mut next = Instant::now();
        for i in 0..count {
            tokio::time::sleep_until(next.into()).await;
            next += every;
            if self.poll_interval.is_some() {
                // Questions land anywhere between two ticks of the schedule.
                next += Duration::from_millis(fastrand::u64(0..1000));
            }
            let (question, tags) = QUESTIONS[i % QUESTIONS.len()];
            let tags: Vec<String> = tags.iter().map(|tag| (*tag).to_owned()).collect();
            let properties = json!({
                "Question": notion::page::write::title(&format!("{question} ({i})")),
                "Status": notion::page::write::status("Pending"),
                "Tags": notion::page::write::multi_select(&tags),
            });
            // A person types into Notion: that costs the integration no requests.
            let page = self.sandbox.add_page(&self.source, properties, Value::Null);
            let asked = Instant::now();
            if self.poll_interval.is_none() {
                self.deliver(&page, &format!("evt-{i}")).await;
            }
            self.until_answered(&page, asked).await;
            waits.push(asked.elapsed());
        }
        assert_eq!(self.hub.agents().len(), 1, "the agent stayed connected");
        waits
    }

    /// Delivers a signed `page.created` event for `page`, as Notion does.
    async fn deliver(&self, page: &str, event_id: &str) {
        let event = testkit::notion_webhook::page_event("page.created", event_id, page, &self.database);
        let response = self
            .http
            .post(format!("http://{}/webhooks/notion", self.address))
            .header("content-type", "application/json")
            .header(cloud_fn::webhook::SIGNATURE_HEADER, testkit::notion_webhook::signature(WEBHOOK_TOKEN, &event))
            .body(event)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success(), "the delivery was refused: {}", response.status());
    }

    /// Waits until `page` reads Answered with exactly one answer on it.
    async fn until_answered(&self, page: &str, asked: Instant) {
        loop {
            let status = self
                .sandbox
                .page(page)
                .and_then(|page| page["properties"]["Status"]["status"]["name"].as_str().map(str::to_owned));
            match status.as_deref() {
                Some("Answered") => break,
                Some("Pending" | "Processing") => {}
                other => panic!("page {page} reads {other:?}, not Answered"),
            }
            assert!(asked.elapsed() < Duration::from_secs(60), "page {page} was never answered");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let footers = self
            .sandbox
            .blocks(page)
            .iter()
            .filter(|block| {
                block["type"] == "paragraph" && block["paragraph"]["rich_text"][0]["plain_text"] == "notion-llm"
            })
            .count();
        assert_eq!(footers, 1, "exactly one answer on page {page}");
    }

    /// Notion requests per question since the questions began (the schedule's idle runs included).
    fn requests_per_question(&self, questions: usize) -> f64 {
        (self.sandbox.requests().len() - self.requests_before) as f64 / questions.max(1) as f64
    }

    fn stop(self) {
        let _ = self.stop.send(());
        drop(self.agent);
    }
}

fn percentile(values: &[Duration], quantile: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}

/// Wall time of every closed span, by name: a tracing layer over the cloud's own spans.
#[derive(Clone, Default)]
struct StageTimes(Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>>);

/// When a span opened, kept in its extensions.
struct Opened(Instant);

impl StageTimes {
    fn clear(&self) {
        self.0.lock().expect("not poisoned").clear();
    }

    fn snapshot(&self) -> BTreeMap<&'static str, Vec<Duration>> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl<S> Layer<S> for StageTimes
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attributes: &span::Attributes<'_>, id: &span::Id, context: Context<'_, S>) {
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: span::Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else { return };
        let Some(Opened(at)) = span.extensions().get::<Opened>().map(|opened| Opened(opened.0)) else { return };
        self.0.lock().expect("not poisoned").entry(span.name()).or_default().push(at.elapsed());
    }
}
