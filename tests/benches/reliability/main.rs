//! The worst day, on loopback and bounded in time: does the system lose or double work, what does
//! an agent connection cost the cloud, and does a local flood delay the cloud's requests?
//!
//! cargo bench -p system-tests --bench reliability [-- --questions 1000 --agents 1000 --seed 7]
//!
//! 1. **Exactly once under chaos.** Questions in the Notion sandbox, answered by runs of the real
//!    pipeline (embedded store, the self-hosted hub with real agents behind the tunnel, the LLM
//!    stand-in). In every run a third of the pages stop after a random step (as a killed
//!    process would: nothing cleaned up, the lease left), Notion answers storms of 429/529/5xx
//!    (and appends that apply but report failure, and now and then no query at all), the model
//!    answers 402/429/5xx and HTTP-200 errors, and agents are killed and restarted while runs
//!    ask them. Runs go on (with lease expiry) until every question is finished, then every
//!    page is checked: lost (not finished), answered twice, failed without a reason on it.
//! 2. **The hub holding many agents.** A child process opens that many agent connections
//!    (hello, then a heartbeat every second); this process serves the hub and measures its own
//!    memory and CPU per agent.
//! 3. **An HTTP flood on the agent.** The real engine on the sample notes serves its HTTP API
//!    and the tunnel at once; 64 clients flood `/search` while the cloud sends searches through
//!    the tunnel, whose latency is compared with a quiet agent's.
//!
//! `cargo test` runs it without `--bench`: a small smoke version that proves it still works.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cloud_fn::agent::AgentLink;
use cloud_fn::clock::{Clock, ManualClock, SystemClock};
use cloud_fn::config::Secret as CloudSecret;
use cloud_fn::context::{ContextBuilder, LadderSettings};
use cloud_fn::llm::{Llm, OpenRouter, OpenRouterOptions};
use cloud_fn::pipeline::{Pipeline, PipelineSettings};
use cloud_fn::store::Store;
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::tunnel::hub::Hub;
use cloud_fn::tunnel::websocket::{AgentSettings, agent_endpoint};
use futures_util::{SinkExt, StreamExt};
use local_agent::api::{self, ApiSettings, ApiState};
use local_agent::config::{AgentConfig, Overrides, Secret};
use local_agent::embed::Embedder;
use local_agent::index::{self, Silent};
use local_agent::search::Engine;
use local_agent::tunnel::{self, Responder, TunnelConfig};
use notion::page::write;
use notion::{ClientOptions, NotionClient, RetryPolicy};
use protocol::tunnel::{AgentMessage, Heartbeat, Hello, IndexSummary, ReplyBody, RequestBody};
use protocol::{ErrorDetail, SearchHit, SearchRequest, SearchResponse, SourceType};
use serde_json::{Value, json};
use testkit::{Fault, LlmFault, LlmStandIn, NotionSandbox};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod flood;
mod hub;

use self::flood::FloodReport;
use self::hub::HubReport;

const AGENT_TOKEN: &str = "reliability-agent-token";
const NOTION_TOKEN: &str = "secret_reliability";
const LLM_KEY: &str = "sk-or-reliability";
/// The argument that makes this binary the child process holding many agent connections.
const AGENTS_CHILD: &str = "--agents-child";

struct Options {
    questions: usize,
    agents: usize,
    seed: u64,
    flood: Duration,
    smoke: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let args: Vec<String> = std::env::args().collect();
        let smoke = !args.iter().any(|arg| arg == "--bench");
        let value = |name: &str| args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1));
        let number = |name: &str, default: u64| -> Result<u64> {
            value(name).map_or(Ok(default), |text| text.parse().with_context(|| format!("{name} {text}")))
        };
        Ok(Self {
            questions: number("--questions", if smoke { 40 } else { 1000 })? as usize,
            agents: number("--agents", if smoke { 50 } else { 1000 })? as usize,
            seed: number("--seed", 7)?,
            flood: Duration::from_secs(number("--flood-secs", if smoke { 1 } else { 10 })?),
            smoke,
        })
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == AGENTS_CHILD) {
        let url = args.get(at + 1).context("the hub's URL")?.clone();
        let count: usize = args.get(at + 2).context("how many agents")?.parse()?;
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(hub::hold_agents(url, count));
    }
    let options = Options::parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // The hub first, while this process is fresh: its memory growth is the agents' alone.
        let hub = hub::hub_load(&options).await?;
        let chaos = chaos(&options).await?;
        let flood = flood::flood(&options).await?;
        print_tables(&options, &chaos, &hub, &flood);
        ensure!(chaos.lost == 0 && chaos.twice == 0 && chaos.failed_without_reason == 0, "work was lost or doubled");
        Ok(())
    })
}

// --- 1. Exactly once under chaos --------------------------------------------------------------

#[derive(Default)]
struct ChaosReport {
    questions: usize,
    runs: usize,
    /// Runs during which Notion refused every query.
    notion_outages: usize,
    notion_faults: usize,
    llm_faults: usize,
    agent_kills: usize,
    answered: usize,
    answered_offline: usize,
    failed: usize,
    failed_without_reason: usize,
    /// Why questions failed (the reason on the page, cut short), and how many.
    failure_reasons: std::collections::BTreeMap<String, usize>,
    lost: usize,
    twice: usize,
    llm_calls: usize,
    elapsed: Duration,
}

/// An agent that answers at once with one passage about the query.
struct QuickNotes;

impl Responder for QuickNotes {
    fn respond(&self, request: &RequestBody) -> Result<ReplyBody, ErrorDetail> {
        let RequestBody::Search(search) = request;
        let query = search.query.clone();
        let hit = SearchHit {
            knowledge_id: "notes/chaos.md#0".into(),
            title: "Chaos notes".into(),
            content_snippet: "Keep calm.".into(),
            similarity_score: 0.9,
            source_type: SourceType::Hybrid,
            source: "notes/chaos.md".into(),
        };
        Ok(ReplyBody::Search(SearchResponse {
            success: true,
            results: vec![hit],
            context: format!("[1] Chaos notes (notes/chaos.md)\nAbout: {query}"),
            processing_time: 0.0,
            fusion: None,
        }))
    }

    fn summary(&self) -> IndexSummary {
        IndexSummary { chunks: 1, docs: 1 }
    }
}

/// The self-hosted cloud's agent endpoint on an ephemeral port, served as `cloud-fn serve` does.
async fn hub_server(heartbeat: Duration, store: Arc<dyn Store>) -> Result<(Arc<Hub>, String)> {
    let settings =
        AgentSettings { tokens: vec![CloudSecret::new(AGENT_TOKEN)], heartbeat, cache_ttl: Duration::from_secs(3600) };
    let (hub, agents) = agent_endpoint(&settings, store, Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/agent", listener.local_addr()?);
    tokio::spawn(edge::serve(listener, agents, edge::Limits::default(), std::future::pending()));
    Ok((hub, url))
}

fn spawn_agent(url: &str, name: &str, responder: Arc<dyn Responder>) -> Result<tokio::task::JoinHandle<()>> {
    let config = TunnelConfig::new(url, Secret::new(AGENT_TOKEN), name.into(), None)?;
    Ok(tokio::spawn(async move {
        let _ = tunnel::run(config, responder, std::future::pending()).await;
    }))
}

async fn chaos(options: &Options) -> Result<ChaosReport> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let sandbox = NotionSandbox::start(NOTION_TOKEN).await?;
    let (database, source) = sandbox.create_questions_database();
    let llm = LlmStandIn::start(LLM_KEY).await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?);
    let clock = Arc::new(ManualClock::new());
    let (hub, url) = hub_server(Duration::from_secs(30), store.clone()).await?;
    let agents: Agents = Arc::new(std::sync::Mutex::new(Vec::new()));
    for n in 0..3 {
        let agent = spawn_agent(&url, &format!("chaos-{n}"), Arc::new(QuickNotes))?;
        agents.lock().map_err(|_| anyhow::anyhow!("the agents' lock is poisoned"))?.push(Some(agent));
    }
    let tags = [&[][..], &["AI效率"][..], &["rust"][..], &["health", "sleep"][..]];
    let pages: Vec<String> = (0..options.questions)
        .map(|n| {
            let tags: Vec<String> = tags[n % tags.len()].iter().map(|tag| (*tag).to_owned()).collect();
            sandbox.add_page(
                &source,
                json!({ "Question": write::title(&format!("Question {n}: what do my notes say?")),
                        "Status": write::status("Pending"), "Tags": write::multi_select(&tags) }),
                Value::Null,
            )
        })
        .collect();

    let notion = NotionClient::new(
        NOTION_TOKEN,
        ClientOptions {
            base_url: sandbox.url(),
            requests_per_second: 2000,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        },
    )?;
    let model: Arc<dyn Llm> = Arc::new(OpenRouter::new(
        LLM_KEY,
        OpenRouterOptions {
            base_url: llm.url(),
            models: vec!["chaos/primary".into(), "chaos/fallback".into()],
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(2),
            ..OpenRouterOptions::default()
        },
    )?);
    let build = |crash_chance: f64| {
        let clock: Arc<dyn Clock> = clock.clone();
        let ladder = LadderSettings { agent_timeout: Duration::from_millis(500), ..LadderSettings::default() };
        let link: Arc<dyn AgentLink> = hub.clone();
        let context = ContextBuilder::new(link, store.clone(), clock.clone(), ladder);
        let settings = PipelineSettings { concurrency: 8, max_pages_per_run: 10_000, ..PipelineSettings::default() };
        let pipeline =
            Pipeline::new(notion.clone(), &database, Some(model.clone()), store.clone(), context, clock, settings);
        Arc::new(pipeline.crash_at_random(crash_chance))
    };

    let mut report = ChaosReport { questions: pages.len(), ..ChaosReport::default() };
    let budget = if options.smoke { Duration::from_secs(60) } else { Duration::from_secs(600) };
    let notion_faults = [
        (None, "/query", Fault::RateLimited { retry_after_secs: 0 }),
        (Some("GET"), "/children", Fault::Overloaded { retry_after_secs: 0 }),
        (Some("PATCH"), "/v1/pages/", Fault::Status(503)),
        (Some("PATCH"), "/children", Fault::Status(502)),
        (Some("PATCH"), "/children", Fault::ApplyThenFail),
        (Some("GET"), "/v1/pages/", Fault::Status(500)),
        (Some("DELETE"), "/v1/blocks/", Fault::Status(504)),
    ];
    let llm_faults = [
        LlmFault::RateLimited { retry_after_secs: 0 },
        LlmFault::Status(500),
        LlmFault::Status(502),
        LlmFault::ErrorIn200,
        LlmFault::FinishedWithError,
        LlmFault::Status(402),
    ];
    loop {
        let open = pages.iter().filter(|page| !finished(&status(&sandbox, page))).count();
        if open == 0 {
            break;
        }
        if started.elapsed() > budget {
            bail!("{open} questions still open after {budget:?}; the pipeline stopped making progress");
        }
        // A fresh storm for this run (what the last one did not use up is gone): a fault per
        // few open questions on random endpoints and, one run in ten, Notion down for the
        // whole run (more failed queries in a row than the client retries).
        sandbox.clear_faults();
        llm.clear_faults();
        let mut query_faults = 0;
        for _ in 0..(open / 4).max(1) {
            let (method, path, fault) = notion_faults[rng.usize(..notion_faults.len())].clone();
            // A run makes one query: more faults there than the client retries would be the
            // outage below, not a storm.
            if path == "/query" {
                query_faults += 1;
                if query_faults > 3 {
                    continue;
                }
            }
            sandbox.inject(method, path, fault, 1);
            report.notion_faults += 1;
        }
        if rng.u8(..10) == 0 {
            sandbox.inject(None, "/query", Fault::Status(503), 6);
            report.notion_faults += 6;
            report.notion_outages += 1;
        }
        for _ in 0..(open / 8).max(1) {
            let fault = llm_faults[rng.usize(..llm_faults.len())].clone();
            // Credits running out is rarer than a flaky upstream.
            if matches!(fault, LlmFault::Status(402)) && rng.u8(..4) != 0 {
                continue;
            }
            llm.inject(None, fault, 1);
            report.llm_faults += 1;
        }
        report.runs += 1;
        eprintln!("chaos: run {} over {open} open questions", report.runs);
        // Agents die and come back while the run asks them for context.
        let kills = Arc::new(AtomicU64::new(0));
        let monkey = tokio::spawn(kill_and_restart(agents.clone(), url.clone(), kills.clone(), rng.u64(..)));
        // A third of the pages stop after a random step, as a killed process would; the error
        // that ends such a run is expected, the next run recovers.
        let _ = build(0.3).process_once().await;
        monkey.abort();
        report.agent_kills += kills.load(Ordering::Relaxed) as usize;
        // Leases and retry delays run out before the next run.
        clock.advance(PipelineSettings::default().lease_secs + 1);
    }

    for page in &pages {
        let blocks = sandbox.blocks(page);
        let answers = blocks.iter().filter(|block| is_answer_heading(block)).count();
        let footers = blocks.iter().filter(|block| is_footer(block)).count();
        let reason = blocks.iter().find(|block| is_failure_callout(block)).map(failure_reason);
        match status(&sandbox, page).as_str() {
            "Answered" => report.answered += 1,
            "Answered (offline)" => report.answered_offline += 1,
            "Failed" => {
                report.failed += 1;
                match reason {
                    Some(reason) => *report.failure_reasons.entry(reason).or_default() += 1,
                    None => report.failed_without_reason += 1,
                }
            }
            _ => report.lost += 1,
        }
        report.twice += usize::from(answers > 1 || footers > 1);
    }
    report.llm_calls = llm.requests().len();
    report.elapsed = started.elapsed();
    for agent in agents.lock().map_err(|_| anyhow::anyhow!("the agents' lock is poisoned"))?.drain(..).flatten() {
        agent.abort();
    }
    Ok(report)
}

type Agents = Arc<std::sync::Mutex<Vec<Option<tokio::task::JoinHandle<()>>>>>;

/// Every 20–100 ms kills a live agent (dropping its connection mid-request, as a PC that sleeps
/// would) or restarts a dead one, until aborted.
async fn kill_and_restart(agents: Agents, url: String, kills: Arc<AtomicU64>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        tokio::time::sleep(Duration::from_millis(rng.u64(20..100))).await;
        let Ok(mut agents) = agents.lock() else { return };
        let n = rng.usize(..agents.len());
        match agents[n].take() {
            Some(running) if rng.bool() => {
                running.abort();
                kills.fetch_add(1, Ordering::Relaxed);
            }
            Some(running) => agents[n] = Some(running),
            None => agents[n] = spawn_agent(&url, &format!("chaos-{n}"), Arc::new(QuickNotes)).ok(),
        }
    }
}

fn status(sandbox: &NotionSandbox, page: &str) -> String {
    sandbox
        .page(page)
        .and_then(|page| page["properties"]["Status"]["status"]["name"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn finished(status: &str) -> bool {
    matches!(status, "Answered" | "Answered (offline)" | "Failed")
}

fn first_text(block: &Value, kind: &str) -> String {
    block[kind]["rich_text"][0]["plain_text"].as_str().unwrap_or_default().to_owned()
}

fn is_answer_heading(block: &Value) -> bool {
    block["type"] == "heading_2" && first_text(block, "heading_2").starts_with("Answer")
}

fn is_footer(block: &Value) -> bool {
    block["type"] == "paragraph" && first_text(block, "paragraph") == "notion-llm"
}

/// The start of the reason a failure callout gives, enough to group failures by cause.
fn failure_reason(block: &Value) -> String {
    let reason = block["callout"]["rich_text"][1]["plain_text"].as_str().unwrap_or_default();
    let reason = reason.split(". Set Status back").next().unwrap_or_default();
    reason.chars().take(110).collect()
}

fn is_failure_callout(block: &Value) -> bool {
    let reason = block["callout"]["rich_text"][1]["plain_text"].as_str().unwrap_or_default();
    block["type"] == "callout" && first_text(block, "callout").contains("could not answer") && reason.len() > 10
}

// --- The tables --------------------------------------------------------------------------------

fn print_tables(options: &Options, chaos: &ChaosReport, hub: &HubReport, flood: &FloodReport) {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!("seed {}{}", options.seed, if options.smoke { " (smoke run)" } else { "" });
    println!();
    println!("| exactly once under chaos | value |");
    println!("|---|---|");
    println!("| questions | {} |", chaos.questions);
    println!("| runs (in each, 30 % of the pages crash after a random step) | {} |", chaos.runs);
    println!("| Notion faults injected (429/529/5xx, applied-then-failed appends) | {} |", chaos.notion_faults);
    println!("| runs during which Notion was down | {} |", chaos.notion_outages);
    println!("| LLM faults injected (402/429/5xx, HTTP-200 errors) | {} |", chaos.llm_faults);
    println!("| agents killed (and restarted) | {} |", chaos.agent_kills);
    println!("| answered with the agent's context / offline | {} / {} |", chaos.answered, chaos.answered_offline);
    println!("| failed, each with its reason on the page | {} |", chaos.failed);
    for (reason, count) in &chaos.failure_reasons {
        println!("| … {reason} | {count} |");
    }
    println!("| **lost** | **{}** |", chaos.lost);
    println!("| **answered twice** | **{}** |", chaos.twice);
    println!("| failed without a reason on the page | {} |", chaos.failed_without_reason);
    println!("| LLM calls per question | {:.2} |", chaos.llm_calls as f64 / chaos.questions.max(1) as f64);
    println!("| time | {:.1} s |", chaos.elapsed.as_secs_f64());
    println!();
    println!("| the hub holding agents (heartbeat every second) | value |");
    println!("|---|---|");
    println!("| agents connected / live at the end | {} / {} |", hub.agents, hub.live);
    println!("| heartbeats per second | {:.0} |", hub.heartbeats_per_second);
    println!("| memory per agent (hub process RSS growth) | {:.1} KB |", hub.memory_per_agent / 1024.0);
    println!("| CPU per heartbeat | {:.1} µs |", hub.cpu_per_heartbeat.as_secs_f64() * 1e6);
    println!(
        "| CPU per agent at the default 30 s heartbeat | {:.3} ms per minute |",
        hub.cpu_per_heartbeat.as_secs_f64() * 2.0 * 1e3
    );
    println!();
    println!(
        "| tunnel searches while 64 clients flood the agent's HTTP API | p50 | p99 | errors | searches | HTTP answered/s | HTTP 503/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let quiet = &flood.quiet;
    println!("| quiet agent | {} | {} | {} | {} | – | – |", ms(quiet.p50), ms(quiet.p99), quiet.errors, quiet.count);
    let seconds = flood.window.as_secs_f64();
    for (cap, run, answered, refused) in &flood.floods {
        let name = if *cap >= 10_000 { "flood, cap lifted".to_owned() } else { format!("flood, cap {cap} (default)") };
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.0} |",
            ms(run.p50),
            ms(run.p99),
            run.errors,
            run.count,
            *answered as f64 / seconds,
            *refused as f64 / seconds
        );
    }
}
