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
async fn process_once_fails_when_a_question_was_not_answered() {
    let world = World::new().await;
    let pages = [world.ask("One of these is answered", &[]), world.ask("and one is not", &[])];
    // The model refuses one question for good (402: no credits), whichever comes first.
    world.llm.inject(None, testkit::LlmFault::Status(402), 1);
    let data = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking({
        let mut command = cloud_fn(&world, data.path());
        move || command.env("CONCURRENCY", "1").arg("process-once").output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["failed"].as_u64(), report["answered_offline"].as_u64()), (Some(1), Some(1)), "{report}");
    let failed: Vec<&String> = pages.iter().filter(|page| world.status(page) == "Failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(stderr.contains(&format!("1 question was not answered: {} failed", failed[0])), "{stderr}");
    assert!(stderr.contains("credits"), "the reason is given: {stderr}");
}

#[test]
fn completions_need_no_settings() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_cloud-fn")).env_clear().args(["completions", "zsh"]).output().unwrap();
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && script.contains("#compdef cloud-fn") && script.contains("process-once"),
        "{script}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_settings_are_named() {
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    let output = cloud_fn(&world, data.path()).env_remove("NOTION_DATABASE_ID").arg("process-once").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOTION_DATABASE_ID (the questions database) is not set"));
    // Every missing setting at once, not one per attempt.
    let output = cloud_fn(&world, data.path())
        .env_remove("NOTION_DATABASE_ID")
        .env_remove("NOTION_API_KEY")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not set: NOTION_API_KEY (the integration's token), NOTION_DATABASE_ID (the questions database), CLOUD_API_KEY"),
        "{stderr}"
    );
    let output = cloud_fn(&world, data.path())
        .env_remove("NOTION_DATABASE_ID")
        .env_remove("NOTION_API_KEY")
        .arg("process-once")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOTION_API_KEY (the integration's token) and NOTION_DATABASE_ID"), "{stderr}");
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

/// Runs `command` off the async workers (the sandbox answers on them).
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_init_creates_a_questions_database_that_answers_questions() {
    use testkit::notion_sandbox::{PropertyKind, PropertySchema};
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    // The parent: any page the integration can edit, pasted as a link.
    let (_, pages) =
        world.sandbox.create_database("Team space", vec![PropertySchema::new("Name", PropertyKind::Title)]);
    let home = world.sandbox.add_page(&pages, serde_json::json!({}), serde_json::json!([]));
    let link = format!("https://www.notion.so/my-team/Home-{}?pvs=4", home.replace('-', ""));

    let mut init = cloud_fn(&world, data.path());
    init.env_remove("NOTION_DATABASE_ID").args(["notion", "init", "--parent", &link]);
    let output = run(init).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let database = stdout.split("NOTION_DATABASE_ID=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();

    // `check` accepts it (advice only: a select starts empty), as JSON too.
    let mut check = cloud_fn(&world, data.path());
    check.env("NOTION_DATABASE_ID", database).args(["notion", "check", "--json"]);
    let output = run(check).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["title"], "Questions");
    assert!(report["findings"].as_array().unwrap().iter().all(|f| f["severity"] == "advice"), "{report}");
    let schema =
        world.notion().retrieve_data_source(&world.notion().data_source_id(database).await.unwrap()).await.unwrap();
    for (name, kind) in [("Model", "select"), ("Sources", "multi_select"), ("Helpful", "select")] {
        assert_eq!(schema["properties"][name]["type"], kind, "the optional {name} is there to use");
    }

    // And questions asked in it are answered.
    let notion = world.notion();
    let source = notion.data_source_id(database).await.unwrap();
    let properties = serde_json::json!({
        "Question": notion::page::write::title("Does init work?"),
        "Status": notion::page::write::select("Pending"),
    });
    let page = notion.create_page(&source, properties, vec![]).await.unwrap().id;
    let mut once = cloud_fn(&world, data.path());
    once.env("NOTION_DATABASE_ID", database).arg("process-once");
    let output = run(once).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(world.status(&page), "Answered (offline)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_check_says_exactly_what_a_default_notion_database_lacks() {
    use testkit::notion_sandbox::{PropertyKind, PropertySchema};
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    // What Notion gives a new database with a Status property: Not started, In progress, Done.
    let (database, _) = world.sandbox.create_database(
        "My questions",
        vec![
            PropertySchema::new("Name", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Status).with_options(&["Not started", "In progress", "Done"]),
        ],
    );
    let mut check = cloud_fn(&world, data.path());
    check.env("NOTION_DATABASE_ID", &database).args(["notion", "check"]);
    let output = run(check).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("questions database \"My questions\""), "{stdout}");
    assert!(
        stdout.contains("problem: the status property \"Status\" lacks the options \"Pending\", \"Processing\", \"Answered\", \"Answered (offline)\", \"Failed\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"Not started\"") && stdout.contains("never picked up"), "{stdout}");
    assert!(stdout.contains("advice: there is no property \"Tags\""), "{stdout}");

    // The questions database the tests use passes.
    let output = run({
        let mut check = cloud_fn(&world, data.path());
        check.args(["notion", "check"]);
        check
    })
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok: title, status"));

    // A database the integration cannot see: the cause, not a panic.
    let mut missing = cloud_fn(&world, data.path());
    missing.env("NOTION_DATABASE_ID", "00000000-0000-0000-0000-000000000000").args(["notion", "check"]);
    let output = run(missing).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Could not find database"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_what_is_wrong_with_the_database_and_which_settings_are_retired() {
    use std::io::BufRead;
    use testkit::notion_sandbox::{PropertyKind, PropertySchema};
    let world = World::new().await;
    let data = tempfile::tempdir().unwrap();
    let (database, _) = world.sandbox.create_database("Bare", vec![PropertySchema::new("Name", PropertyKind::Title)]);
    let mut child = cloud_fn(&world, data.path())
        .env("NOTION_DATABASE_ID", &database)
        .env("LOCAL_RAG_SERVICE_URL", "http://192.168.1.20:8000")
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("questions database:");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), lines).await;
    child.kill().unwrap();
    let _ = child.wait();
    let text = lines.expect("serve logs the database check").unwrap().join("\n");
    assert!(text.contains("LOCAL_RAG_SERVICE_URL is no longer used") && text.contains("CLOUD_URL"), "{text}");
    assert!(text.contains("questions database: there is no property \"Status\""), "{text}");
}

/// `doctor --json`'s verdicts by check name.
fn verdicts(output: &std::process::Output) -> std::collections::BTreeMap<String, (String, String)> {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            let text = |field: &str| check[field].as_str().unwrap().to_owned();
            (text("name"), (text("verdict"), text("detail")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_part_and_asks_the_running_server_for_the_rest() {
    use std::io::BufRead;
    let world = World::new().await;
    world.llm.set_credits_left(Some(4.5));
    let data = tempfile::tempdir().unwrap();
    let with_key = |command: &mut Command| {
        command.env("CLOUD_API_KEY", "doctor-test-key").env("AGENT_TOKEN", "agent-token");
    };

    // No server yet: Notion, OpenRouter and the clock from here, the store directly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut command = cloud_fn(&world, data.path());
    with_key(&mut command);
    command.args(["doctor", "--json", "--server", &format!("http://{closed}")]);
    let output = run(command).await;
    assert!(output.status.success(), "warnings only: {}", String::from_utf8_lossy(&output.stdout));
    let found = verdicts(&output);
    assert_eq!(found["notion"].0, "ok", "{found:?}");
    assert_eq!(found["clock"].0, "ok", "{found:?}");
    assert_eq!(found["openrouter"].0, "ok");
    assert!(found["openrouter"].1.contains("$4.50 left"), "{found:?}");
    assert_eq!(found["server"].0, "warn");
    assert!(found["server"].1.contains("start `cloud-fn serve`"), "{found:?}");
    assert_eq!(found["store"], ("ok".into(), "embedded, reachable".into()));
    assert_eq!(found["webhook"].0, "warn");
    assert_eq!(found["agents"].0, "warn");

    // A running server answers for its store, webhook and agents.
    let mut serve = cloud_fn(&world, data.path());
    with_key(&mut serve);
    let mut child = serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().trim_start_matches("listening on http://").split(';').next().unwrap().to_owned();
    let doctor = |extra: &[(&str, &str)]| {
        let mut command = cloud_fn(&world, data.path());
        with_key(&mut command);
        for (name, value) in extra {
            command.env(name, value);
        }
        command.args(["doctor", "--json", "--server", &format!("http://{address}")]);
        command
    };
    let output = run(doctor(&[])).await;
    let found = verdicts(&output);
    assert_eq!(found["server"].0, "ok", "{found:?}");
    assert_eq!(found["store"], ("ok".into(), "embedded, reachable from the server".into()));
    assert!(found["agents"].1.starts_with("none connected"), "{found:?}");

    // What fails is named, and the exit code says so.
    world.llm.set_credits_left(Some(0.0));
    let output = run(doctor(&[])).await;
    assert_eq!(output.status.code(), Some(1));
    let found = verdicts(&output);
    assert_eq!(found["openrouter"].0, "fail");
    assert!(found["openrouter"].1.starts_with("no credits left"), "{found:?}");
    let output = run(doctor(&[("OPENROUTER_API_KEY", "sk-or-wrong"), ("NOTION_API_KEY", "ntn_wrong")])).await;
    let found = verdicts(&output);
    assert!(found["openrouter"].1.contains("refuses OPENROUTER_API_KEY"), "{found:?}");
    assert!(found["notion"].1.contains("refuses NOTION_API_KEY"), "{found:?}");
    let output = run(doctor(&[("CLOUD_API_KEY", "not-the-key")])).await;
    assert!(verdicts(&output)["server"].1.contains("refuses this CLOUD_API_KEY"));
    child.kill().unwrap();
    let _ = child.wait();

    // The human form: one line per check.
    let mut command = cloud_fn(&world, data.path());
    command.args(["doctor", "--server", &format!("http://{closed}")]);
    let output = run(command).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.lines().any(|line| line.starts_with("FAIL openrouter")), "{text}");
}
