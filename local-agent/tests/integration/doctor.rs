//! `local-agent doctor`: each check against the real thing it checks — the installed runtime
//! and model, real (and damaged) indexes, the Notion sandbox, ports held by real listeners —
//! and the command line's text, JSON and exit code.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use local_agent::api::{self, ApiState};
use local_agent::config::Secret;
use local_agent::index::generations::{IndexDir, MANIFEST_FILE};
use local_agent::ops::doctor::{self, NotionTarget, REBUILD, Status};
use serde_json::{Value, json};

use crate::{Workspace, config};

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_dir_passes_local_checks_and_is_told_to_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("data"));
    config.listen = free_address();
    let report = doctor::diagnose(Ok(&config), None).await;
    let names: Vec<&str> = report.checks.iter().map(|check| check.name.as_str()).collect();
    assert_eq!(names, ["config", "onnx-runtime", "model", "data-dir", "index", "port"], "no cloud, Notion or clock");
    let status = |name: &str| report.check(name).unwrap().status;
    assert_eq!(status("onnx-runtime"), Status::Ok);
    let runtime = &report.check("onnx-runtime").unwrap().detail;
    assert!(runtime.starts_with("1."), "the version comes first: {runtime}");
    assert_eq!(status("model"), Status::Ok);
    assert_eq!(status("data-dir"), Status::Warn);
    let index = report.check("index").unwrap();
    assert_eq!(index.status, Status::Warn);
    assert!(index.fix.as_deref().unwrap().starts_with("local-agent index <FOLDER>"), "{index:?}");
    assert_eq!(status("port"), Status::Ok);
    assert!(report.ok, "warnings only:\n{}", report.to_text());
}

#[cfg(unix)]
#[test]
fn a_data_dir_others_can_read_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = doctor::check_data_dir(dir.path());
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(check.fix.as_deref().unwrap().starts_with("chmod 700"), "{check:?}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(doctor::check_data_dir(dir.path()).status, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_fails_with_the_way_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("data"));
    config.embedder.model_dir = dir.path().to_owned();
    config.listen = free_address();
    let report = doctor::diagnose(Ok(&config), None).await;
    let model = report.check("model").unwrap();
    assert_eq!(model.status, Status::Fail);
    assert!(model.detail.contains("model.onnx is missing"), "{model:?}");
    assert!(model.fix.as_deref().unwrap().contains("local-agent setup"));
    assert!(!report.ok);

    // `model = "multilingual"` before the model is installed: the fix names its own flag.
    config.embedder.model_dir = dir.path().join(local_agent::config::MULTILINGUAL_MODEL);
    let report = doctor::diagnose(Ok(&config), None).await;
    let model = report.check("model").unwrap();
    assert!(model.detail.contains("run `local-agent setup --model multilingual`"), "{model:?}");
    assert!(model.fix.as_deref().unwrap().contains("local-agent setup --model multilingual"), "{model:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_notes_the_model_cannot_read_get_the_multilingual_model_suggested() {
    let workspace = Workspace::empty();
    for (name, text) in [
        ("网络.md", "修改网络配置以后，需要重新启动网络服务，才能让新的地址生效。"),
        ("饮食.md", "成年人每天每公斤体重大约需要零点八克蛋白质，运动员需要更多。"),
        ("readme.md", "A short English note among the Chinese ones."),
    ] {
        workspace.write(name, text);
    }
    workspace.index();
    let mut config = config(&workspace.data());
    config.listen = free_address();
    let report = doctor::diagnose(Ok(&config), None).await;
    let language = report.check("language").expect("a language check for an index of Chinese notes");
    assert_eq!(language.status, Status::Warn, "{language:?}");
    assert!(language.fix.as_deref().unwrap().contains("local-agent setup --model multilingual"), "{language:?}");
    assert!(report.ok, "a suggestion, not a failure");

    let english = Workspace::with_sample_notes();
    english.index();
    let mut config = crate::config(&english.data());
    config.listen = free_address();
    let report = doctor::diagnose(Ok(&config), None).await;
    assert!(report.check("language").is_none(), "mostly English notes: {}", report.to_text());
}

#[test]
fn a_healthy_index_is_reported_and_a_damaged_one_must_be_rebuilt() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let check = doctor::check_index(&workspace.data(), None);
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(check.detail.contains("10 documents"), "{check:?}");

    let index_dir = IndexDir::new(&workspace.data());
    let generation = index_dir.current().unwrap().unwrap();
    std::fs::write(index_dir.generation_dir(generation).join(MANIFEST_FILE), b"\x00garbage{").unwrap();
    let check = doctor::check_index(&workspace.data(), None);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some(REBUILD));

    // The command line: one line per check, the fix under the failure, and a failing exit code;
    // `--json` for scripts.
    let agent = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
        command
            .arg("--data-dir")
            .arg(workspace.data())
            .env("LOCAL_AGENT_LISTEN", free_address().to_string())
            .env_remove("CLOUD_URL")
            .env_remove("NOTION_API_KEY")
            .env_remove("NOTION_KNOWLEDGE_DATABASE_ID");
        command
    };
    let output = agent().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let failing = stdout.lines().position(|line| line.starts_with("FAIL  index")).expect("the index line");
    let fix = stdout.lines().nth(failing + 1).unwrap();
    assert!(fix.trim_start().starts_with("fix: local-agent index --rebuild"), "{stdout}");

    let output = agent().args(["doctor", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    let index = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "index").unwrap();
    assert_eq!(index["status"], "fail");
    assert_eq!(index["fix"], REBUILD);
    assert_eq!(
        report["checks"][0],
        json!({"name": "config", "status": "ok", "detail": "loaded and valid", "fix": null})
    );
}

#[test]
fn a_broken_config_is_the_one_failure_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_local-agent"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["name"], "config");
    assert_eq!(checks[0]["status"], "fail");
    assert!(checks[0]["detail"].as_str().unwrap().contains("config.toml"), "{report}");
}

const NOTION_TOKEN: &str = "secret_doctor_valid";

/// The sandbox has no `/v1/users/me`: this front answers it (for the sandbox's token) and
/// passes everything else through.
async fn notion_front(sandbox: &testkit::NotionSandbox) -> (String, tokio::task::JoinHandle<()>) {
    async fn forward(State(upstream): State<Arc<String>>, request: Request) -> Response {
        let authorized =
            request.headers().get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
        if request.uri().path() == "/v1/users/me" {
            return if authorized.as_deref() == Some(&format!("Bearer {NOTION_TOKEN}")) {
                axum::Json(json!({"object": "user", "id": "bot-1", "type": "bot", "name": "notion-llm agent"}))
                    .into_response()
            } else {
                let body = json!({"object": "error", "status": 401, "code": "unauthorized", "message": "API token is invalid."});
                (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
            };
        }
        let mut forwarded = reqwest::Client::new().get(format!("{upstream}{}", request.uri()));
        for name in ["authorization", "notion-version"] {
            if let Some(value) = request.headers().get(name) {
                forwarded = forwarded.header(name, value.as_bytes());
            }
        }
        let answer = forwarded.send().await.unwrap();
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        (status, [("content-type", "application/json")], answer.bytes().await.unwrap()).into_response()
    }
    let app = Router::new().fallback(forward).with_state(Arc::new(sandbox.url()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_tokens_and_database_sharing_are_checked() {
    let sandbox = testkit::NotionSandbox::start(NOTION_TOKEN).await.unwrap();
    let (shared, _) = sandbox.create_database("Team wiki", Vec::new());
    let (base_url, front) = notion_front(&sandbox).await;
    let unshared = "0f6a4c1e-7d0b-4e4e-9a55-3c1f2e9d8b77".to_owned();
    let target = |token: &str| NotionTarget {
        token: Secret::new(token),
        databases: vec![shared.clone(), unshared.clone()],
        base_url: base_url.clone(),
    };

    let checks = doctor::check_notion(&target(NOTION_TOKEN)).await;
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert_eq!((checks[0].name.as_str(), checks[0].status), ("notion-token", Status::Ok));
    assert!(checks[0].detail.contains("\"notion-llm agent\""), "{:?}", checks[0]);
    assert_eq!(checks[1].status, Status::Ok, "{:?}", checks[1]);
    assert_eq!(checks[1].detail, "\"Team wiki\" is shared with the integration");
    assert_eq!(checks[2].name, format!("notion-database {unshared}"));
    assert_eq!(checks[2].status, Status::Fail);
    assert!(checks[2].fix.as_deref().unwrap().contains("Connections → add your integration"), "{:?}", checks[2]);

    let checks = doctor::check_notion(&target("secret_wrong")).await;
    assert_eq!(checks.len(), 1, "databases are not tried with a refused token: {checks:?}");
    assert_eq!((checks[0].name.as_str(), checks[0].status), ("notion-token", Status::Fail));
    assert!(checks[0].detail.contains("Notion refused the token"), "{:?}", checks[0]);
    assert!(checks[0].fix.as_deref().unwrap().contains("NOTION_API_KEY"));

    // The sandbox's clock is this machine's: no skew.
    let clock = doctor::check_clock(std::slice::from_ref(&base_url)).await.expect("a source to compare with");
    assert_eq!(clock.status, Status::Ok, "{clock:?}");
    front.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_is_free_ours_or_taken_by_another_program() {
    let free = free_address();
    assert_eq!(doctor::check_port(free).await.status, Status::Ok);

    let stranger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = stranger.local_addr().unwrap();
    let answering = tokio::spawn(async move {
        // Answers like a web server that is not ours.
        let app = Router::new().fallback(|| async { "hello from another program" });
        axum::serve(stranger, app).await.unwrap();
    });
    let check = doctor::check_port(taken).await;
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(check.detail.contains("in use by another program"), "{check:?}");
    assert!(check.fix.as_deref().unwrap().contains("LOCAL_AGENT_LISTEN"), "{check:?}");
    answering.abort();

    // A plain listener that never answers HTTP.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let check = doctor::check_port(silent.local_addr().unwrap()).await;
    assert_eq!(check.status, Status::Fail, "{check:?}");

    // Our own agent already serving there is fine.
    let workspace = Workspace::with_sample_notes();
    let engine = Arc::new(workspace.engine());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = listener.local_addr().unwrap();
    let server = tokio::spawn(api::serve(listener, ApiState::new(engine, None), std::future::pending()));
    let check = doctor::check_port(ours).await;
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(check.detail.contains("served by a running local-agent"), "{check:?}");
    server.abort();
}
