//! The `local-agent` command line, run as a user would.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use local_agent::ops::running;

use crate::Workspace;

fn agent(workspace: &Workspace) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
    command.arg("--data-dir").arg(workspace.data()).env_remove("LOCAL_AGENT_CRASH_AT").env_remove("RUST_LOG");
    // The caller's colour wishes must not change what the tests read.
    for name in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        command.env_remove(name);
    }
    command
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn index_search_and_status_from_the_command_line() {
    let workspace = Workspace::with_sample_notes();
    let output = agent(&workspace).arg("index").arg(workspace.notes()).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("10 added, 0 changed, 0 removed, 0 unchanged"), "{stdout}");

    let output = agent(&workspace).arg("index").output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.contains("0 added, 0 changed, 0 removed, 10 unchanged"), "remembered folders: {stdout}");
    assert!(stdout.contains("up to date"), "{stdout}");

    let output = agent(&workspace).args(["search", "番茄工作法", "--top-k", "2", "--json"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let response: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(response["results"][0]["source"], "productivity/pomodoro.md");
    assert!(response["results"].as_array().unwrap().len() <= 2);

    let output = agent(&workspace).args(["search", "sourdough", "--tags", "Cooking"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.starts_with("1. Sourdough bread (life/sourdough.md)"), "{stdout}");
    assert!(stdout.contains("--- context ---\n[1] Sourdough bread"), "{stdout}");
    // A tag no note carries still gets the best of all notes, and says which tags there are.
    let output = agent(&workspace).args(["search", "sourdough", "--tags", "cooking,cookng"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(
        stdout.starts_with(
            "Note: no note is tagged \"cookng\"; these are the best of all notes. Known tags: AI效率, Rust,"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("and 1 more (`local-agent tags`).\n\n1. Sourdough bread"), "{stdout}");
    let output = agent(&workspace).arg("tags").output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.starts_with("   3 notes  AI效率\n") && stdout.contains("    1 note  cooking\n"), "{stdout}");
    let output = agent(&workspace).args(["tags", "--json"]).output().unwrap();
    let tags: serde_json::Value = serde_json::from_str(&text(&output).0).unwrap();
    assert_eq!(tags.as_array().unwrap().len(), 11);
    assert_eq!(tags[0], serde_json::json!({"tag": "AI效率", "documents": 3}));
    let output = agent(&workspace).args(["search", "sourdough", "--no-context"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.starts_with("1. Sourdough bread") && !stdout.contains("--- context ---"), "{stdout}");
    let output = agent(&workspace).args(["search", "zzzqqq", "--threshold", "0.99"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.contains("No results: none of the 10 indexed notes matches"), "{stdout}");

    let output = agent(&workspace).arg("status").output().unwrap();
    let (stdout, _) = text(&output);
    assert!(stdout.contains("10 documents") && stdout.contains("index check:   ok"), "{stdout}");

    // `local-agent search … | head -1`: the reader is gone before the first line is written.
    for args in [&["search", "sourdough"][..], &["status"]] {
        let mut child = agent(&workspace).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let (_, stderr) = text(&output);
        assert!(output.status.success() && !stderr.contains("panicked"), "{args:?} with stdout closed: {stderr}");
    }
}

#[test]
fn colour_only_on_a_terminal_or_when_asked_and_never_against_no_color() {
    let workspace = Workspace::with_sample_notes();
    let status = |args: &[&str], env: &[(&str, &str)]| {
        let output = agent(&workspace).arg("status").args(args).envs(env.iter().copied()).output().unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
        text(&output).0
    };
    let coloured = |stdout: &str| stdout.contains("\x1b[");
    // Piped (as here): plain, the same words.
    let plain = status(&[], &[]);
    assert!(!coloured(&plain) && plain.contains("ONNX Runtime:"), "{plain:?}");
    // What a terminal would get (CLICOLOR_FORCE stands in for one), and the same words.
    let forced = status(&[], &[("CLICOLOR_FORCE", "1")]);
    assert!(coloured(&forced), "{forced:?}");
    assert_eq!(protocol::console::without_colour(&forced), plain);
    assert!(!coloured(&status(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])), "NO_COLOR wins");
    assert!(!coloured(&status(&["--color", "never"], &[("CLICOLOR_FORCE", "1")])));
    assert!(coloured(&status(&["--color", "always"], &[])));
    // Errors too: red on a terminal, plain in a pipe.
    let output = agent(&workspace).args(["index", "/no/such/folder"]).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(coloured(&text(&output).1), "{:?}", text(&output).1);
    let output = agent(&workspace).args(["index", "/no/such/folder"]).output().unwrap();
    assert!(text(&output).1.starts_with("error: "), "{:?}", text(&output).1);
}

#[test]
fn an_error_tells_each_cause_once() {
    let workspace = Workspace::with_sample_notes();
    let missing = workspace.dir.path().join("no-such-folder");
    let output = agent(&workspace).arg("index").arg(&missing).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "the folder is named: {stderr}");

    // Completions need no configuration, runtime or model.
    let output =
        agent(&workspace).args(["completions", "bash"]).env("ORT_DYLIB_PATH", "/nonexistent").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success() && stdout.contains("local-agent") && stdout.contains("--top-k"), "{stderr}");

    // A bad flag is named as the user typed it, not as the HTTP API's field.
    for (flag, value) in [("--top-k", "0"), ("--top-k", "101"), ("--threshold", "1.5")] {
        let output = agent(&workspace).args(["search", "x", flag, value]).output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(flag) && !stderr.contains("max_results") && !stderr.contains("similarity_threshold"),
            "{stderr}"
        );
    }
}

#[test]
fn logs_shows_the_service_log_and_follows_it() {
    let workspace = Workspace::with_sample_notes();
    let output = agent(&workspace).arg("logs").output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("no logs in") && stderr.contains("service install"), "{stderr}");

    let logs = workspace.data().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("local-agent.2026-12-05.log"), "yesterday\n").unwrap();
    let today = logs.join("local-agent.2026-12-06.log");
    std::fs::write(&today, "first\nsecond\nthird\n").unwrap();
    let output = agent(&workspace).args(["logs", "-n", "2"]).output().unwrap();
    assert_eq!(text(&output).0, "second\nthird\n");

    let mut child = agent(&workspace).args(["logs", "-f", "-n", "1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    // A follower that stops printing must fail the test, not hang it.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").arg(pid).status();
    });
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "third\n");
    std::fs::OpenOptions::new().append(true).open(&today).unwrap().write_all(b"fourth\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "fourth\n", "what is written is followed");
    // The next day's file takes over.
    std::fs::write(logs.join("local-agent.2026-12-07.log"), "tomorrow\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "tomorrow\n");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_missing_runtime_or_model_says_what_to_do() {
    let workspace = Workspace::with_sample_notes();
    let output = agent(&workspace)
        .arg("index")
        .arg(workspace.notes())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("ONNX Runtime library not found at /nonexistent/libonnxruntime.so; run `local-agent setup` or set ORT_DYLIB_PATH"),
        "{stderr}"
    );
    let output = agent(&workspace).args(["search", "x"]).env("MODEL_DIR", workspace.dir.path()).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("model.onnx is missing; run `local-agent setup` or set MODEL_DIR"), "{stderr}");

    let output = agent(&workspace).args(["search", "x"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert!(stderr.contains("run `local-agent index <FOLDER>` first"), "{stderr}");
}

#[test]
fn serve_binds_loopback_answers_and_stops_on_sigterm() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let mut child =
        agent(&workspace).args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").expect("the address is printed").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let health: serde_json::Value =
        runtime.block_on(async { reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap() });
    assert_eq!(health["status"], "healthy");

    // `status` finds the server where it really listens (port 0 picked one), not at the setting.
    let output = agent(&workspace).arg("status").output().unwrap();
    let (stdout, _) = text(&output);
    let address = url.trim_start_matches("http://");
    assert!(stdout.contains(&format!("HTTP API:      {address}")) && !stdout.contains("not running"), "{stdout}");
    // A second server on the same data dir is refused, and told where the first one is.
    let output = agent(&workspace).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {}, {url}", child.id())) && stderr.contains("--data-dir"), "{stderr}");

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    assert!(running::find(&workspace.data()).is_none(), "the stopped server's record is gone");
}

#[test]
fn index_rebuild_builds_a_fresh_generation_from_the_files() {
    let workspace = Workspace::with_sample_notes();
    let first = workspace.index();
    let output = agent(&workspace).args(["index", "--rebuild"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("as generation {}", first.generation + 1)), "a new generation: {stdout}");
    assert!(stdout.contains(&format!("{} documents", first.documents)), "{stdout}");
}

#[test]
fn serve_rebuilds_a_corrupt_index_instead_of_crashing() {
    let workspace = Workspace::with_sample_notes();
    let report = workspace.index();
    let index = local_agent::index::generations::IndexDir::new(&workspace.data());
    let live = index.generation_dir(report.generation);
    std::fs::write(live.join(local_agent::index::generations::VECTORS_FILE), b"not a vector index").unwrap();

    let mut child = agent(&workspace)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").expect("serving after the rebuild").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let health: serde_json::Value =
        runtime.block_on(async { reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap() });
    assert_eq!(health["rag_engine"]["index_size"].as_u64().map(|n| n > 0), Some(true), "{health}");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rebuilding the index from its sources"), "a clear log line: {stderr}");
}

#[test]
fn serving_beyond_loopback_needs_an_api_key() {
    let workspace = Workspace::with_sample_notes();
    let output =
        agent(&workspace).args(["serve", "--listen", "0.0.0.0:0"]).env_remove("LOCAL_RAG_API_KEY").output().unwrap();
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("refusing to serve on 0.0.0.0:0 without an API key"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn the_data_dir_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let workspace = Workspace::with_sample_notes();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let output = agent(&workspace).arg("index").arg(workspace.notes()).output().unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(mode(&workspace.data()), 0o700, "created private");
    std::fs::set_permissions(workspace.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(agent(&workspace).arg("index").output().unwrap().status.success());
    assert_eq!(mode(&workspace.data()), 0o700, "an existing data dir is tightened");
}

#[test]
fn init_writes_a_private_config_the_agent_then_runs_on() {
    let workspace = Workspace::with_sample_notes();
    let config = workspace.data().join("config.toml");
    let init = |args: &[&str]| {
        let mut command = agent(&workspace);
        command
            .arg("init")
            .args(args)
            .env_remove("NOTION_API_KEY")
            .env_remove("AGENT_TOKEN")
            .env_remove("CLOUD_URL")
            .stdin(Stdio::null());
        command
    };
    let folder = workspace.notes();
    let folder = folder.to_str().unwrap();

    // A cloud without its token, and asked nothing: refused, and nothing is written.
    let output =
        init(&["--folder", folder, "--cloud-url", "wss://cloud.example.com/agent", "--no-input"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not written") && stderr.contains("AGENT_TOKEN"), "{stderr}");
    assert!(!config.exists());
    let output = init(&["--folder", "/nonexistent/notes"]).output().unwrap();
    assert!(text(&output).1.contains("--folder /nonexistent/notes: not a folder"), "{:?}", text(&output));

    // Tokens come from the environment, never from a flag, and are never printed.
    let output = init(&[
        "--folder",
        folder,
        "--cloud-url",
        "wss://cloud.example.com/agent",
        "--notion-database",
        "https://www.notion.so/me/Knowledge-1a2b3c4d5e6f708192a3b4c5d6e7f809?v=9",
    ])
    .env("AGENT_TOKEN", "agent-token-from-env")
    .env("NOTION_API_KEY", "ntn_token_from_env")
    .output()
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("Wrote") && stdout.contains("local-agent service install"), "{stdout}");
    assert!(
        !stdout.contains("from_env") && !stdout.contains("from-env") && !stderr.contains("from_env"),
        "{stdout}{stderr}"
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("databases = [\"1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809\"]"), "{written}");
    assert!(written.contains("token = \"agent-token-from-env\"") && written.contains("# api_key"), "{written}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Again without --force: refused, the file is untouched.
    let output = init(&["--no-input"]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("exists already") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    // The agent reads it: `index` with no folder indexes the configured one.
    let output = agent(&workspace).arg("index").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("10 added"), "{stdout}");
    let output = agent(&workspace).arg("status").output().unwrap();
    assert!(text(&output).0.contains(&format!("config:        {}\n", config.display())), "{:?}", text(&output));
}
