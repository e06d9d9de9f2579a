//! `local-agent service` without a service manager: the real binary started in the background
//! with a pid file, checked, stopped; stale pid files; the command line end to end.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use local_agent::ops::service::background::{self, PidFile, PidState, Stopped};
use local_agent::ops::service::unit::ServiceSpec;

fn spec(data_dir: &Path, listen: SocketAddr) -> ServiceSpec {
    ServiceSpec {
        exe: env!("CARGO_BIN_EXE_local-agent").into(),
        data_dir: data_dir.to_owned(),
        config: None,
        listen: Some(listen),
        env: Vec::new(),
    }
}

/// A port nobody listens on right now (for the few tests where the agent must listen on an
/// address that its configuration names).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(data_dir: &Path, listen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("LOCAL_AGENT_LISTEN", listen)
        .env_remove("RUST_LOG")
        .env_remove("CLOUD_URL")
        .env_remove("LOCAL_RAG_API_KEY");
    command
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_real_agent_starts_in_the_background_writes_logs_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = spec(&data, "127.0.0.1:0".parse().unwrap());

    let started = background::start(&spec).expect("serve starts");
    let url = started.url.clone().expect("serve said where it listens");
    let pid_file = PidFile::new(&data);
    assert_eq!(pid_file.read().unwrap(), Some(started.pid));
    assert_eq!(pid_file.state().unwrap(), PidState::Running(started.pid));
    assert!(background::is_ours(started.pid));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let health: serde_json::Value =
        runtime.block_on(async { reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap() });
    assert_eq!(health["status"], "degraded", "nothing indexed in a fresh data dir");

    let error = background::start(&spec).unwrap_err().to_string();
    assert!(error.contains(&format!("already running (pid {})", started.pid)), "{error}");

    // Logs go to the rotated file, not to the captured output.
    let logs: Vec<_> = std::fs::read_dir(data.join("logs")).unwrap().map(|entry| entry.unwrap().path()).collect();
    let log = logs
        .iter()
        .find(|path| {
            path.file_name().unwrap().to_string_lossy().starts_with("local-agent.")
                && path.extension().is_some_and(|e| e == "log")
        })
        .unwrap_or_else(|| panic!("a dated log file in {logs:?}"));
    let logged = std::fs::read_to_string(log).unwrap();
    assert!(logged.contains("serving the HTTP API"), "{logged}");
    let output = std::fs::read_to_string(data.join("logs").join(background::OUTPUT_FILE)).unwrap();
    assert!(output.contains("listening on "), "{output}");

    assert_eq!(background::stop(&data).unwrap(), Stopped::Stopped(started.pid));
    assert!(!pid_file.path().exists(), "the pid file is removed");
    assert!(!background::is_alive(started.pid));
    let logged = std::fs::read_to_string(log).unwrap();
    assert!(logged.contains("stopped"), "a graceful shutdown: {logged}");
    assert_eq!(background::stop(&data).unwrap(), Stopped::NotRunning);
}

#[test]
fn a_stale_pid_file_is_cleaned_and_a_reused_pid_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = PidFile::new(dir.path());

    // The process is gone.
    let mut finished = Command::new("sleep").arg("0").spawn().unwrap();
    let gone = finished.id();
    finished.wait().unwrap();
    pid_file.write(gone).unwrap();
    assert_eq!(pid_file.state().unwrap(), PidState::Stale(gone));
    assert!(!pid_file.path().exists());
    pid_file.write(gone).unwrap();
    assert_eq!(background::stop(dir.path()).unwrap(), Stopped::Stale(gone));
    assert!(!pid_file.path().exists());

    // The number now belongs to another program: it is not ours to stop.
    let mut stranger = Command::new("sleep").arg("30").stdout(Stdio::null()).spawn().unwrap();
    pid_file.write(stranger.id()).unwrap();
    assert!(!background::is_ours(stranger.id()));
    assert_eq!(background::stop(dir.path()).unwrap(), Stopped::Stale(stranger.id()));
    assert!(!pid_file.path().exists());
    assert_eq!(stranger.try_wait().unwrap(), None, "the other program was left alone");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn service_commands_without_a_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let service =
        |action: &str| cli(&data, &listen).args(["service", action, "--no-service-manager"]).output().unwrap();

    let output = service("install");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("no service manager to install into (--no-service-manager was given)"), "{stderr}");
    assert!(stderr.contains("`local-agent service start`"), "{stderr}");

    let output = service("start");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("listening on http://{listen}")), "{stdout}");
    let pid = PidFile::new(&data).read().unwrap().expect("a pid file");
    assert!(stdout.contains(&format!("started in the background (pid {pid}")), "{stdout}");

    let output = service("status");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("service:      running (pid {pid})")), "{stdout}");
    assert!(stdout.contains(&format!("HTTP API:     http://{listen}")), "{stdout}");
    assert!(stdout.contains("agent:        degraded, version"), "{stdout}");
    assert!(stdout.contains("index:        nothing indexed yet"), "{stdout}");
    assert!(stdout.contains("cloud:        not configured"), "{stdout}");

    let output = service("restart");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("stopped the background agent (pid {pid})")), "{stdout}");
    let restarted = PidFile::new(&data).read().unwrap().expect("a new pid file");
    assert_ne!(restarted, pid);

    let output = service("stop");
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(stdout.contains(&format!("stopped the background agent (pid {restarted})")), "{stdout}");
    assert!(!PidFile::new(&data).path().exists());

    let output = service("status");
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(3), "not running, as systemctl says it: {stdout}");
    assert!(stdout.contains("service:      not running"), "{stdout}");
    assert!(stdout.contains(&format!("HTTP API:     no answer from http://{listen}")), "{stdout}");
}
