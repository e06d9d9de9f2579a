//! The real Lambda runtime loop: `cargo lambda watch` emulates the Lambda control plane, the
//! built `cloud-fn-lambda` binary polls it as it would on AWS, and `cargo lambda invoke` sends
//! it a scheduled event and a function-URL request. Prints the init time and peak memory.
//!
//! cargo-lambda comes from `scripts/setup.sh` (the project venv); `CARGO_LAMBDA` overrides.
//! `CLOUD_FN_LAMBDA_BIN` runs another build of the function, e.g. the release artifact:
//!
//! ```sh
//! cargo lambda build --release --x86-64 --bin cloud-fn-lambda
//! CLOUD_FN_LAMBDA_BIN=target/lambda/cloud-fn-lambda/bootstrap \
//!   cargo test -p cloud-fn --test lambda_runtime -- --nocapture
//! ```

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_fn::store::dynamo::DynamoStore;
use common::{KEY, TOKEN, World};
use serde_json::Value;

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return path.into();
    }
    let runtime = std::env::var_os("NOTION_LLM_RUNTIME").map_or_else(|| workspace().join(".runtime"), PathBuf::from);
    let venv = runtime.join("venv/bin/cargo-lambda");
    assert!(venv.exists(), "cargo-lambda is not installed at {}: run scripts/setup.sh", venv.display());
    venv
}

fn function_binary() -> PathBuf {
    std::env::var_os("CLOUD_FN_LAMBDA_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_cloud-fn-lambda")),
        |path| workspace().join(path), // relative paths are taken from the workspace root
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn invoke(port: u16, fixture: &str) -> Value {
    invoke_file(port, &workspace().join("cloud-fn/tests/fixtures/lambda").join(fixture))
}

fn invoke_file(port: u16, data: &Path) -> Value {
    let Output { status, stdout, stderr } = Command::new(cargo_lambda())
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .arg("--data-file")
        .arg(data)
        .arg("_")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        status.success(),
        "invoke failed: {}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    serde_json::from_slice(&stdout).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&stdout)))
}

fn peak_memory_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const WEBHOOK_TOKEN: &str = "secret_webhook_for_the_runtime_test";

/// A function-URL request carrying Notion's signed `page.created` delivery for `page`.
fn webhook_event(page: &str, database: &str) -> Value {
    let body = testkit::notion_webhook::page_event("page.created", &format!("evt-{page}"), page, database);
    let signature = testkit::notion_webhook::signature(WEBHOOK_TOKEN, &body);
    let fixture = workspace().join("cloud-fn/tests/fixtures/lambda/url-post-webhook.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    event["headers"]["x-notion-signature"] = Value::String(signature);
    event["body"] = Value::String(body);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_events_through_the_lambda_runtime_api() {
    let dynalite = testkit::Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
    let table = "notion-llm-runtime-test";
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&testkit::aws::sdk_config(&dynalite.url())), table);
    store.ensure_table().await.unwrap();
    let world = World::with_store(Arc::new(store), tempfile::tempdir().unwrap()).await;
    let page = world.ask("Does the runtime loop work?", &[]);

    let port = free_port();
    let _watch = Running(
        Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "cargo lambda watch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The function's environment, as template.yaml and Lambda set it (secrets plain here: the
    // parameter-store path has its own tests).
    let started = Instant::now();
    let function = Running(
        Command::new(function_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynalite.url())
            .env("DYNAMODB_TABLE", table)
            .env("WEBSOCKET_ENDPOINT", "http://127.0.0.1:9") // no agent: never called
            .env("NOTION_API_KEY", TOKEN)
            .env("NOTION_DATABASE_ID", &world.database)
            .env("NOTION_API_BASE_URL", world.sandbox.url())
            .env("OPENROUTER_API_KEY", KEY)
            .env("OPENROUTER_BASE_URL", world.llm.url())
            .env("LLM_MODELS", "primary/model")
            .env("CLOUD_API_KEY", "cloud-key")
            .env("AGENT_TOKEN", "agent-token")
            .env("NOTION_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // The function logs to stdout, as Lambda collects it; keep the lines for the init time.
    let mut function = function;
    let output = function.0.stdout.take().expect("stdout is piped");
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(output)).map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });

    let result = tokio::task::spawn_blocking(move || invoke(port, "scheduler-schedule.json")).await.unwrap();
    let first = started.elapsed();
    let run_seconds = result["report"]["seconds"].as_f64().unwrap_or_default();
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["report"]["answered_offline"], 1, "{result}");
    assert_eq!(world.status(&page), "Answered (offline)");

    let health = tokio::task::spawn_blocking(move || invoke(port, "url-get.json")).await.unwrap();
    assert_eq!(health["statusCode"], 200, "{health}");
    let body: Value = serde_json::from_str(health["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "healthy");
    // A warm invocation: Notion's signed delivery of a new question, through the function URL.
    let page = world.ask("Answered by a warm function?", &[]);
    let event_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(event_file.path(), webhook_event(&page, &world.database).to_string()).unwrap();
    let path = event_file.path().to_owned();
    // A second after the first question (whose run drew 6 of the Notion client's 10-request
    // burst), as a person would ask, so the figure is the function's and not the rate limit's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = Instant::now();
    let response = tokio::task::spawn_blocking(move || invoke_file(port, &path)).await.unwrap();
    let warm = delivered.elapsed();
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["report"]["answered_offline"], 1, "{body}");
    assert_eq!(world.status(&page), "Answered (offline)");
    let warm_run = body["report"]["seconds"].as_f64().unwrap_or_default();

    let log = log.lock().unwrap().join("\n");
    let init_ms = log
        .lines()
        .find(|line| line.contains("ready for events"))
        .and_then(|line| line.split("init_ms=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the function logs its init time: {log}"));
    assert!(!log.contains(TOKEN) && !log.contains(KEY), "secrets never reach the logs: {log}");
    eprintln!(
        "cloud-fn-lambda: init {init_ms} ms; first invocation: run {:.0} ms (secrets, clients, one question), \
         answered {:.0} ms after start (cargo lambda invoke included); warm webhook → Answered: run {:.0} ms, \
         {:.0} ms with cargo lambda invoke; peak RSS {} kB",
        run_seconds * 1000.0,
        first.as_secs_f64() * 1000.0,
        warm_run * 1000.0,
        warm.as_secs_f64() * 1000.0,
        peak_memory_kb(function.0.id()).map_or("?".into(), |kb| kb.to_string())
    );
}
