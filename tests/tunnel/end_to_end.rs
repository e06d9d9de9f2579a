//! The whole chain on one machine: a question in the Notion sandbox → `cloud-fn` → the tunnel →
//! the real `local-agent` binary searching the sample notes with the real model → the LLM
//! stand-in → the answer on the page. Then the agent is killed (the next answer comes from the
//! cached context) and restarted (full answers again, with no manual step).
//!
//! Twice: self-hosted (`cloud-fn`'s server with its timer, pipeline and `/agent` hub, embedded
//! store), and on "AWS": the Lambda front (`cloud_fn::lambda::LambdaFront`, what the
//! `cloud-fn-lambda` binary runs) receives every event as JSON — the API Gateway emulator's
//! authorizer and route events, and a scheduled event every 200 ms as EventBridge Scheduler would
//! send it — reads its secrets from the Parameter Store stand-in, keeps its state in DynamoDB
//! (dynalite) and reaches the agent through the real management API client.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_fn::agent::AgentLink;
use cloud_fn::app::SelfHosted;
use cloud_fn::clock::{Clock, SystemClock};
use cloud_fn::config::Secret;
use cloud_fn::config::Source;
use cloud_fn::context::{ContextBuilder, LadderSettings};
use cloud_fn::lambda::LambdaFront;
use cloud_fn::llm::{Llm, OpenRouter, OpenRouterOptions};
use cloud_fn::pipeline::{Pipeline, PipelineSettings};
use cloud_fn::server::{ApiAccess, ServerSettings};
use cloud_fn::store::Store;
use cloud_fn::store::embedded::EmbeddedStore;
use cloud_fn::tunnel::api_gateway::Tunnel;
use cloud_fn::tunnel::websocket::{AgentSettings, agent_endpoint};
use lambda_runtime::{Context, LambdaEvent};
use notion::page::write;
use notion::{ClientOptions, NotionClient};
use serde_json::{Value, json};
use testkit::{
    ApiGatewayEmulator, Dynalite, EmulatorOptions, LlmStandIn, NotionSandbox, ParameterStoreStandIn, PropertyKind,
    PropertySchema, WebSocketBackend,
};

use crate::support::{DYNAMODB_TABLE, TOKEN, dynalite_store, management_client};

const NOTION_TOKEN: &str = "secret_sandbox";
const LLM_KEY: &str = "sk-or-test";
/// `FALLBACK_TIMEOUT`: how long the cloud waits for the agent.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the cloud side runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cloud {
    SelfHosted,
    Lambda,
}

struct Chain {
    sandbox: NotionSandbox,
    _llm: LlmStandIn,
    source: String,
    link: Arc<dyn AgentLink>,
    agent_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _aws: Option<(ApiGatewayEmulator, Dynalite, ParameterStoreStandIn)>,
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
        // With the optional `Helpful` select `notion init` makes, for the status page's test.
        let (database, source) =
            sandbox.create_questions_database_with(vec![PropertySchema::new("Helpful", PropertyKind::Select)]);
        let llm = LlmStandIn::start(LLM_KEY).await.unwrap();
        let (link, agent_url, stop, aws) = match cloud {
            Cloud::SelfHosted => {
                let (link, agent_url, stop) = Self::self_hosted(&sandbox, &llm, database, &dir).await;
                (link, agent_url, stop, None)
            }
            Cloud::Lambda => {
                let (link, agent_url, stop, aws) = Self::on_lambda(&sandbox, &llm, database).await;
                (link, agent_url, stop, Some(aws))
            }
        };
        Self { sandbox, _llm: llm, source, link, agent_url, stop: Some(stop), _aws: aws, dir }
    }

    /// `cloud-fn serve`: the server with its timer, pipeline and `/agent` hub, embedded store.
    async fn self_hosted(
        sandbox: &NotionSandbox,
        llm: &LlmStandIn,
        database: String,
        dir: &tempfile::TempDir,
    ) -> (Arc<dyn AgentLink>, String, tokio::sync::oneshot::Sender<()>) {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("cloud.redb")).unwrap());
        let agent_settings = AgentSettings {
            tokens: vec![Secret::new(TOKEN)],
            heartbeat: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(3600),
        };
        let (hub, agents) = agent_endpoint(&agent_settings, store.clone(), clock.clone());
        let ladder = LadderSettings { agent_timeout: FALLBACK_TIMEOUT, ..LadderSettings::default() };
        let context = ContextBuilder::new(hub.clone(), store.clone(), clock.clone(), ladder);
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
            // Marks are read at every run, not every 10 min, for the status page's test.
            PipelineSettings { feedback_interval: Duration::ZERO, ..PipelineSettings::default() },
        ));
        let settings = ServerSettings { access: ApiAccess::Key(Secret::new("cloud-key")), ..ServerSettings::default() };
        let service = SelfHosted::around(hub.clone(), agents, pipeline, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_url = format!("ws://{}/agent", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(service.serve(listener, Duration::from_millis(200), async {
            let _ = stopped.await;
        }));
        (hub, agent_url, stop)
    }

    /// The AWS deployment: every event goes through the Lambda front as JSON.
    async fn on_lambda(
        sandbox: &NotionSandbox,
        llm: &LlmStandIn,
        database: String,
    ) -> (
        Arc<dyn AgentLink>,
        String,
        tokio::sync::oneshot::Sender<()>,
        (ApiGatewayEmulator, Dynalite, ParameterStoreStandIn),
    ) {
        let (dynalite, store) = dynalite_store().await; // the table template.yaml creates
        let ssm = ParameterStoreStandIn::start([
            ("/notion-llm/notion-api-key", NOTION_TOKEN),
            ("/notion-llm/openrouter-api-key", LLM_KEY),
            ("/notion-llm/cloud-api-key", "cloud-key"),
            ("/notion-llm/agent-token", TOKEN),
        ])
        .await
        .unwrap();
        // The emulator needs the function, and the function the emulator's management endpoint.
        let slot: Arc<std::sync::OnceLock<Arc<LambdaFront>>> = Arc::default();
        let emulator =
            ApiGatewayEmulator::start(EmulatorOptions::default(), Arc::new(Function(slot.clone()))).await.unwrap();
        let settings = Source::from_values([
            ("NOTION_API_KEY_PARAMETER", "/notion-llm/notion-api-key".to_owned()),
            ("OPENROUTER_API_KEY_PARAMETER", "/notion-llm/openrouter-api-key".into()),
            ("CLOUD_API_KEY_PARAMETER", "/notion-llm/cloud-api-key".into()),
            ("AGENT_TOKEN_PARAMETER", "/notion-llm/agent-token".into()),
            ("AWS_ENDPOINT_URL_SSM", ssm.url()),
            ("NOTION_DATABASE_ID", database),
            ("NOTION_API_BASE_URL", sandbox.url()),
            ("NOTION_RATE_LIMIT", "100".into()),
            ("OPENROUTER_BASE_URL", llm.url()),
            ("LLM_MODELS", "primary/model".into()),
            ("FALLBACK_TIMEOUT", format!("{}ms", FALLBACK_TIMEOUT.as_millis())),
            ("AGENT_HEARTBEAT", "1".into()),
            ("DYNAMODB_TABLE", DYNAMODB_TABLE.into()),
            ("WEBSOCKET_ENDPOINT", emulator.management_url()),
        ]);
        let front = Arc::new(LambdaFront::new(testkit::aws::sdk_config(&dynalite.url()), settings));
        let _ = slot.set(front.clone());
        // EventBridge Scheduler, one event at a time.
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduled = json!({ "source": "notion-llm.schedule", "detail-type": "Scheduled Event", "detail": {} });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    result = front.handle(LambdaEvent::new(scheduled.clone(), Context::default())) => {
                        if let Err(error) = result {
                            eprintln!("scheduled run failed: {error}");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        // A second view of the same table, to see when the agent is live.
        let observer = Tunnel::new(
            store,
            Arc::new(SystemClock),
            management_client(&emulator),
            Vec::new(),
            Duration::from_secs(1),
            Duration::from_secs(3600),
        );
        let agent_url = emulator.ws_url();
        (observer, agent_url, stop, (emulator, dynalite, ssm))
    }

    fn agent_command(&self) -> Command {
        let mut command = Command::new(system_tests::local_agent_bin());
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
                    .map(|b| {
                        let items = b["paragraph"]["rich_text"].as_array().cloned().unwrap_or_default();
                        items.iter().skip(1).filter_map(|item| item["plain_text"].as_str()).collect::<String>()
                    })
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
async fn self_hosted_answers_come_from_notes_then_cache_then_notes_again_as_the_status_page_shows() {
    let (chain, _agent, offline_answer) = notes_then_cache_then_notes(Cloud::SelfHosted).await;
    the_status_page_shows_the_agent_and_the_answers(&chain, &offline_answer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_answers_come_from_notes_then_cache_then_notes_again() {
    notes_then_cache_then_notes(Cloud::Lambda).await;
}

/// Three questions: from the notes, from the cache while the agent is away, from the notes
/// again once it is back. Returns the chain with the agent still running, and the page answered
/// from the cache.
async fn notes_then_cache_then_notes(cloud: Cloud) -> (Chain, AgentProcess, String) {
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
    let offline_answer = chain.ask("How long should a break between focus sessions be?", &["AI效率"]);
    let (status, footer, took) = chain.answer(&offline_answer).await;
    assert_eq!(status, "Answered (offline)", "{footer}");
    // The tag's cached context: the last full answer's, or the one the agent pushed for the
    // tag (whichever reached the store last); either cites the tag's notes.
    assert!(footer.contains("mode: cached") && footer.contains("productivity/"), "{footer}");
    assert!(took < FALLBACK_TIMEOUT + Duration::from_secs(3), "took {took:?}");

    // It comes back: full answers again, nothing done by hand but starting the agent.
    let agent = chain.start_agent().await;
    let page = chain.ask("Who owns a value in Rust?", &["Rust"]);
    let (status, footer, _) = chain.answer(&page).await;
    assert_eq!(status, "Answered", "{footer}");
    assert!(footer.contains("mode: full") && footer.contains("rust-ownership.md"), "{footer}");
    (chain, agent, offline_answer)
}

/// `GET /` of `cloud-fn serve` in a real headless Chromium, after the three questions: the page
/// asks for the key, and once it has it shows the connected agent, the day's answers with the
/// share answered without the agent, and each question with its context mode.
async fn the_status_page_shows_the_agent_and_the_answers(chain: &Chain, offline_answer: &str) {
    const WAIT: Duration = Duration::from_secs(15);
    // The person found the offline answer unhelpful.
    chain.sandbox.set_property(offline_answer, "Helpful", notion::page::write::select("No"));
    let url = chain.agent_url.replace("ws://", "http://").replace("/agent", "/");
    let chromium = testkit::browser::Chromium::find().unwrap_or_else(|missing| panic!("{missing}"));
    let mut tab = chromium.open(&url, 1200, 900).await.unwrap();
    tab.wait_for("!document.getElementById('key-form').hidden", WAIT).await.unwrap();
    assert_eq!(tab.eval("document.getElementById('figures').hidden").await.unwrap(), true, "nothing without the key");
    tab.fill_and_submit("key", "cloud-key").await.unwrap();
    tab.wait_for("document.body.dataset.loaded === 'true'", WAIT).await.unwrap();

    assert_eq!(tab.text("live-agents").await.unwrap().as_deref(), Some("1"));
    let agents = tab.text("agents").await.unwrap().unwrap_or_default();
    assert!(agents.contains(env!("CARGO_PKG_VERSION")) && agents.contains("seen"), "the agent, by id: {agents}");
    assert_eq!(tab.text("day-answers").await.unwrap().as_deref(), Some("3 answers"));
    assert_eq!(tab.text("fallback-ratio").await.unwrap().as_deref(), Some("33 %"), "one of three from the cache");
    let questions = tab.text("questions").await.unwrap().unwrap_or_default();
    for expected in ["Who owns a value in Rust?", "How long should a break", "cached", "full", "primary/model"] {
        assert!(questions.contains(expected), "{expected:?} in the recent questions: {questions}");
    }
    tab.wait_for("document.getElementById('unhelpful').textContent.includes('How long should a break')", WAIT)
        .await
        .unwrap();
    assert_eq!(tab.text("helpful-ratio").await.unwrap().as_deref(), Some("0 % of 1"));
    let unhelpful = tab.text("unhelpful").await.unwrap().unwrap_or_default();
    assert!(
        unhelpful.contains("cached") && unhelpful.contains("productivity/"),
        "with the sources it used: {unhelpful}"
    );
    let month = tab.text("month-tokens").await.unwrap().unwrap_or_default();
    assert!(month.ends_with("in 3 answers"), "{month}");
    assert!(tab.text("runs").await.unwrap().is_some_and(|runs| !runs.contains("no run")), "the runs that answered");
    // Links go to the questions' Notion pages; nothing is loaded from there.
    let link = tab.eval("document.querySelector('#questions a').href").await.unwrap();
    assert!(link.as_str().is_some_and(|link| link.starts_with("https://www.notion.so/")), "{link}");

    let path = std::env::var_os("STATUS_PAGE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("cloud-status.png");
    tab.screenshot(&path).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000, "a real picture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_keeps_the_agent_serving_locally_and_says_why() {
    use std::io::BufRead;
    let cloud = crate::support::Cloud::start(Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Command::new(system_tests::local_agent_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CLOUD_URL", cloud.url())
        .env("AGENT_TOKEN", "wrong-token-0123456789")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let address = line.trim().trim_start_matches("listening on http://").to_owned();
    let client = reqwest::Client::new();
    let mut tunnel = serde_json::Value::Null;
    for _ in 0..300 {
        let stats: serde_json::Value =
            client.get(format!("http://{address}/stats")).send().await.unwrap().json().await.unwrap();
        tunnel = stats["tunnel"].clone();
        if tunnel["state"] == "refused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tunnel["state"], "refused", "{tunnel}");
    assert!(tunnel["last_error"].as_str().unwrap().contains("AGENT_TOKEN"), "says what to fix: {tunnel}");
    let health = client.get(format!("http://{address}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the local API keeps serving");
    let status = Command::new(system_tests::local_agent_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .arg("status")
        .env("LOCAL_AGENT_LISTEN", &address)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("REFUSES the agent token"), "`local-agent status` says so: {shown}");
    assert!(agent.try_wait().unwrap().is_none(), "the agent is still running");
    agent.kill().unwrap();
    let output = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AGENT_TOKEN"), "the log says what to fix: {stderr}");
    assert!(!stderr.contains("wrong-token-0123456789"), "the token never reaches the logs: {stderr}");
}

/// The function behind the emulator's routes and authorizer, called with the JSON Lambda would
/// deliver, answering with the JSON API Gateway would read.
struct Function(Arc<std::sync::OnceLock<Arc<LambdaFront>>>);

impl Function {
    async fn invoke<E: serde::Serialize, R: serde::de::DeserializeOwned + Default>(&self, event: E) -> R {
        let front = self.0.get().expect("the function is set before any client connects");
        let event = serde_json::to_value(event).expect("events serialize");
        match front.handle(LambdaEvent::new(event, Context::default())).await {
            Ok(response) => serde_json::from_value(response).expect("the front answers in the event's response shape"),
            Err(error) => {
                eprintln!("function error: {error}");
                R::default() // API Gateway treats a failed invocation as a refusal / 500
            }
        }
    }
}

#[async_trait::async_trait]
impl WebSocketBackend for Function {
    async fn authorize(
        &self,
        request: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> aws_lambda_events::apigw::ApiGatewayCustomAuthorizerResponse {
        self.invoke(request).await
    }

    async fn handle(
        &self,
        event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
    ) -> aws_lambda_events::apigw::ApiGatewayProxyResponse {
        let mut response: aws_lambda_events::apigw::ApiGatewayProxyResponse = self.invoke(event).await;
        if response.status_code == 0 {
            response.status_code = 500;
        }
        response
    }
}
