//! The whole chain on one machine: a question in the Notion sandbox → `cloud-fn` → the tunnel →
//! the real `local-agent` binary searching the sample notes with the real model → the LLM
//! stand-in → the answer on the page. Then the agent is killed (the next answer comes from the
//! cached context) and restarted (full answers again, with no manual step).
//!
//! Twice: self-hosted (`cloud-fn`'s server with its timer, pipeline and `/agent` hub, embedded
//! store), and on "AWS" (the API Gateway emulator calling the WebSocket handlers, the real
//! management API client, DynamoDB in dynalite).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_fn::agent::AgentLink;
use cloud_fn::clock::{Clock, SystemClock};
use cloud_fn::config::Secret;
use cloud_fn::context::{ContextBuilder, LadderSettings};
use cloud_fn::llm::{Llm, OpenRouter, OpenRouterOptions};
use cloud_fn::pipeline::{Pipeline, PipelineSettings};
use cloud_fn::server::{self, ServerState};
use cloud_fn::store::Store;
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::tunnel::hub::Hub;
use cloud_fn::tunnel::websocket::{self, AgentGate};
use notion::page::write;
use notion::{ClientOptions, NotionClient};
use serde_json::{Value, json};
use testkit::{ApiGatewayEmulator, Dynalite, LlmStandIn, NotionSandbox};

use crate::support::{TOKEN, api_gateway, dynalite_store};

const NOTION_TOKEN: &str = "secret_sandbox";
const LLM_KEY: &str = "sk-or-test";
/// `FALLBACK_TIMEOUT`: how long the cloud waits for the agent.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the cloud side runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cloud {
    SelfHosted,
    ApiGateway,
}

struct Chain {
    sandbox: NotionSandbox,
    _llm: LlmStandIn,
    source: String,
    link: Arc<dyn AgentLink>,
    agent_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _aws: Option<(ApiGatewayEmulator, Dynalite)>,
    dir: tempfile::TempDir,
}

/// The agent process; killed when dropped so a failing test leaves nothing behind.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chain {
    async fn start(cloud: Cloud) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = NotionSandbox::start(NOTION_TOKEN).await.unwrap();
        let (database, source) = sandbox.create_questions_database();
        let llm = LlmStandIn::start(LLM_KEY).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let heartbeat = Duration::from_secs(1);
        let hub = Hub::new(heartbeat);
        let (store, link, agent_url, aws): (Arc<dyn Store>, Arc<dyn AgentLink>, Option<String>, _) = match cloud {
            Cloud::SelfHosted => {
                let store = Arc::new(EmbeddedStore::open(&dir.path().join("cloud.redb")).unwrap());
                (store, hub.clone(), None, None)
            }
            Cloud::ApiGateway => {
                let (dynalite, store) = dynalite_store().await;
                let (emulator, tunnel) = api_gateway(store.clone(), heartbeat).await;
                let url = emulator.ws_url();
                (store, tunnel, Some(url), Some((emulator, dynalite)))
            }
        };
        let ladder = LadderSettings { agent_timeout: FALLBACK_TIMEOUT, ..LadderSettings::default() };
        let context = ContextBuilder::new(link.clone(), store.clone(), clock.clone(), ladder);
        let notion = NotionClient::new(
            NOTION_TOKEN,
            ClientOptions { base_url: sandbox.url(), requests_per_second: 100, ..ClientOptions::default() },
        )
        .unwrap();
        let options = OpenRouterOptions {
            base_url: llm.url(),
            models: vec!["primary/model".into()],
            ..OpenRouterOptions::default()
        };
        let model: Arc<dyn Llm> = Arc::new(OpenRouter::new(LLM_KEY, options).unwrap());
        let pipeline = Arc::new(Pipeline::new(
            notion,
            database,
            Some(model),
            store.clone(),
            context,
            clock.clone(),
            PipelineSettings::default(),
        ));
        let gate = AgentGate::new(hub.clone(), vec![Secret::new(TOKEN)], store, clock, Duration::from_secs(3600));
        let state = ServerState::new(pipeline, Some(Secret::new("cloud-key")), None);
        let app = server::router(state.clone()).merge(websocket::routes(gate));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_url = agent_url.unwrap_or_else(|| format!("ws://{}/agent", listener.local_addr().unwrap()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, app, state, Duration::from_millis(200), async {
            let _ = stopped.await;
        }));
        Self { sandbox, _llm: llm, source, link, agent_url, stop: Some(stop), _aws: aws, dir }
    }

    fn agent_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
        command.arg("--data-dir").arg(self.dir.path().join("agent")).env_remove("RUST_LOG");
        command
    }

    fn index_sample_notes(&self) {
        let notes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/notes");
        let output = self.agent_command().arg("index").arg(notes).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    async fn start_agent(&self) -> AgentProcess {
        let child = self
            .agent_command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CLOUD_URL", &self.agent_url)
            .env("AGENT_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = AgentProcess(child);
        let started = Instant::now();
        while !self.link.is_live().await {
            assert!(started.elapsed() < Duration::from_secs(30), "the agent never connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    fn ask(&self, question: &str, tags: &[&str]) -> String {
        let tags: Vec<String> = tags.iter().map(|tag| (*tag).to_owned()).collect();
        self.sandbox.add_page(
            &self.source,
            json!({ "Question": write::title(question), "Status": write::status("Pending"), "Tags": write::multi_select(&tags) }),
            Value::Null,
        )
    }

    /// Waits for the page to leave Pending/Processing; returns its status, footer and the time.
    async fn answer(&self, page: &str) -> (String, String, Duration) {
        let asked = Instant::now();
        loop {
            let status = self.sandbox.page(page).unwrap()["properties"]["Status"]["status"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if status != "Pending" && status != "Processing" {
                let footers: Vec<String> = self
                    .sandbox
                    .blocks(page)
                    .iter()
                    .filter(|b| {
                        b["type"] == "paragraph" && b["paragraph"]["rich_text"][0]["plain_text"] == "notion-llm"
                    })
                    .map(|b| b["paragraph"]["rich_text"][1]["plain_text"].as_str().unwrap_or_default().to_owned())
                    .collect();
                assert_eq!(footers.len(), 1, "exactly one answer on the page");
                return (status, footers[0].clone(), asked.elapsed());
            }
            assert!(asked.elapsed() < Duration::from_secs(30), "page {page} still {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_hosted_answers_come_from_notes_then_cache_then_notes_again() {
    notes_then_cache_then_notes(Cloud::SelfHosted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_api_gateway_answers_come_from_notes_then_cache_then_notes_again() {
    notes_then_cache_then_notes(Cloud::ApiGateway).await;
}

async fn notes_then_cache_then_notes(cloud: Cloud) {
    let chain = Chain::start(cloud).await;
    chain.index_sample_notes();
    let agent = chain.start_agent().await;

    let page = chain.ask("What should I do in a weekly review?", &["AI效率"]);
    let (status, footer, _) = chain.answer(&page).await;
    assert_eq!(status, "Answered", "{footer}");
    assert!(footer.contains("mode: full"), "{footer}");
    assert!(footer.contains("weekly-review.md"), "the agent's sources are cited: {footer}");

    // The PC goes away: the next question on the topic is answered from the cached context,
    // without waiting longer than FALLBACK_TIMEOUT for the agent.
    drop(agent);
    let page = chain.ask("How long should a break between focus sessions be?", &["AI效率"]);
    let (status, footer, took) = chain.answer(&page).await;
    assert_eq!(status, "Answered (offline)", "{footer}");
    assert!(footer.contains("mode: cached") && footer.contains("weekly-review.md"), "{footer}");
    assert!(took < FALLBACK_TIMEOUT + Duration::from_secs(3), "took {took:?}");

    // It comes back: full answers again, nothing done by hand but starting the agent.
    let _agent = chain.start_agent().await;
    let page = chain.ask("Who owns a value in Rust?", &["Rust"]);
    let (status, footer, _) = chain.answer(&page).await;
    assert_eq!(status, "Answered", "{footer}");
    assert!(footer.contains("mode: full") && footer.contains("rust-ownership.md"), "{footer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_agent_with_a_clear_message_and_no_secret() {
    let cloud = crate::support::Cloud::start(Duration::from_secs(1)).await;
    let (url, dir) = (cloud.url(), tempfile::tempdir().unwrap());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_local-agent"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CLOUD_URL", url)
            .env("AGENT_TOKEN", "wrong-token-0123456789")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the agent must exit").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a refused token is fatal: {stderr}");
    assert!(stderr.contains("AGENT_TOKEN"), "the message says what to fix: {stderr}");
    assert!(!stderr.contains("wrong-token-0123456789"), "the token never reaches the logs: {stderr}");
}
