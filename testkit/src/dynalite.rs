//! Starts dynalite (a DynamoDB stand-in from npm, installed by `scripts/setup.sh`) on a free
//! loopback port, and stops it when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dynalite.
pub struct Dynalite {
    child: Child,
    address: SocketAddr,
}

impl Dynalite {
    /// Starts dynalite in memory. Fails with a message that names `scripts/setup.sh` when it
    /// is not installed.
    pub fn start() -> std::io::Result<Self> {
        let script = cli_path().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "dynalite is not installed: run scripts/setup.sh (it installs dynalite with npm into .runtime/node)",
            )
        })?;
        // A port the OS just handed out is free for the moment it takes dynalite to bind it.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new("node")
            .arg(&script)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--createTableMs",
                "0",
                "--deleteTableMs",
                "0",
                "--updateTableMs",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut dynalite = Self { child, address };
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            if let Some(status) = dynalite.child.try_wait()? {
                return Err(std::io::Error::other(format!("dynalite exited at start with {status}")));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(std::io::Error::other("dynalite did not start within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(dynalite)
    }

    /// Endpoint for the AWS SDK (`AWS_ENDPOINT_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `node_modules/dynalite/cli.js` under `.runtime/node` of the checkout (or `$NOTION_LLM_RUNTIME`).
fn cli_path() -> Option<PathBuf> {
    crate::runtime_file(Path::new("node/node_modules/dynalite/cli.js"))
}
