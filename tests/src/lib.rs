//! Tests that span both programs live in this crate (`tunnel/`, `benches/`), so neither
//! program's crate depends on the other: the agent's tests never build the cloud, the AWS SDKs
//! or the Lambda runtime.
//!
//! The one thing a test here cannot get from Cargo is the agent's binary
//! (`CARGO_BIN_EXE_<name>` exists only in the crate that defines the binary): [`local_agent_bin`]
//! finds it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The `local-agent` binary: `LOCAL_AGENT_BIN` if set, else the one beside this test's own
/// build (`cargo test --workspace` builds it), else built now with `cargo build -p local-agent`.
///
/// # Panics
/// If no binary is found and building one fails: the tests that need it cannot run.
pub fn local_agent_bin() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("LOCAL_AGENT_BIN") {
                return PathBuf::from(path);
            }
            let name = format!("local-agent{}", std::env::consts::EXE_SUFFIX);
            // A test runs from <target>/<profile>/deps/; binaries sit in <target>/<profile>/.
            let beside =
                std::env::current_exe().ok().and_then(|exe| exe.parent()?.parent().map(|profile| profile.join(&name)));
            if let Some(path) = beside.as_ref().filter(|path| path.is_file()) {
                return path.clone();
            }
            let release =
                beside.as_ref().and_then(|path| path.parent()?.file_name()).is_some_and(|dir| dir == "release");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "local-agent", "--bin", "local-agent"])
                .args(release.then_some("--release"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "`cargo build -p local-agent` failed");
            beside.filter(|path| path.is_file()).expect("the agent's binary was built beside this test")
        })
        .clone()
}
