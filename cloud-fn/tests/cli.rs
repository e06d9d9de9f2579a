//! The `cloud-fn` binary, configured by environment variables as a user would.

mod common;

use std::process::Command;

use common::{KEY, TOKEN, World};

fn cloud_fn(world: &World, data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloud-fn"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NOTION_API_KEY", TOKEN)
        .env("NOTION_DATABASE_ID", &world.database)
        .env("NOTION_API_BASE_URL", world.sandbox.url())
        .env("OPENROUTER_API_KEY", KEY)
        .env("OPENROUTER_BASE_URL", world.llm.url())
        .env("LLM_MODELS", "cli/model")
        .env("DATA_DIR", data)
        .env("RUST_LOG", "warn");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_once_answers_and_prints_a_report() {
    let world = World::new().await;
    let page = world.ask("From the command line", &[]);
    let data = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking({
        let mut command = cloud_fn(&world, data.path());
        move || command.arg("process-once").output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["answered_offline"], 1, "no agent yet: template context");
    assert_eq!(world.status(&page), "Answered (offline)");
    assert!(world.footers(&page)[0].contains("model: cli/model"));
    assert!(data.path().join("cloud-store.redb").is_file(), "the embedded store lives in DATA_DIR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_settings_are_named() {
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    let output = cloud_fn(&world, data.path()).env_remove("NOTION_DATABASE_ID").arg("process-once").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOTION_DATABASE_ID (the questions database) is not set"));
    let output = cloud_fn(&world, data.path()).env("MAX_ATTEMPTS", "lots").arg("process-once").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("MAX_ATTEMPTS=\"lots\" is not a number"));
    let output = cloud_fn(&world, data.path()).env("POLL_INTERVAL", "0").arg("process-once").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("POLL_INTERVAL must be at least"), "a zero interval");
    // Serving needs the API key, on loopback too (a TLS proxy in front makes loopback public).
    for listen in ["0.0.0.0:0", "127.0.0.1:0"] {
        let output = cloud_fn(&world, data.path()).args(["serve", "--listen", listen]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{listen}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("CLOUD_API_KEY must be set"), "{listen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_flag_serves_without_a_key_and_says_so_loudly() {
    use std::io::BufRead;
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    let mut child = cloud_fn(&world, data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().trim_start_matches("listening on http://").split(';').next().unwrap().to_owned();
    let status = reqwest::get(format!("http://{address}/status")).await.unwrap().status();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "open without a key");
    assert!(String::from_utf8_lossy(&output.stderr).contains("open to ANYONE"), "a loud warning");
}
