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
    let output = cloud_fn(&world, data.path()).args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("CLOUD_API_KEY must be set"));
}
