//! A real headless Chromium (Debian's `chromium`, which scripts/test.sh installs with apt) for
//! the status pages' tests, driven over the Chrome DevTools Protocol: a test opens a page
//! against a live server, waits until the page's script has shown what it should, types into
//! its forms as a person would, reads the rendered DOM and takes screenshots.
//!
//! Only the handful of protocol methods the tests need are spoken here (`Target.*`,
//! `Page.navigate`, `Runtime.evaluate`, `Emulation.setDeviceMetricsOverride`,
//! `Page.captureScreenshot`), over the WebSocket Chromium opens on loopback; a client crate
//! would bring far more than that.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

/// How long Chromium gets to start, and one protocol call to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium program to run.
#[derive(Debug, Clone)]
pub struct Chromium {
    program: PathBuf,
}

impl Chromium {
    /// `$CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
    pub fn find() -> Result<Self, String> {
        let program = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
            ["chromium", "chromium-browser"].into_iter().find_map(|name| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
                })
            })
        });
        let program = program.ok_or_else(|| {
            "Chromium is not installed: scripts/test.sh installs it (apt-get install chromium), or set CHROMIUM"
                .to_owned()
        })?;
        Ok(Self { program })
    }

    /// Starts a fresh browser (its own empty profile, so no storage carries over) and opens
    /// `url` in a `width`×`height` window.
    pub async fn open(&self, url: &str, width: u32, height: u32) -> Result<Tab, String> {
        let profile = tempfile::tempdir().map_err(|error| format!("cannot make a browser profile: {error}"))?;
        let mut child = Command::new(&self.program)
            .args(["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
            // Tests run as root in CI containers, where Chromium's sandbox cannot start.
            .arg("--no-sandbox")
            // Without these, Chromium keeps dialling Google's hosts, which this network refuses.
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .args(["--disable-quic", "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars"])
            .arg("--remote-debugging-address=127.0.0.1")
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", self.program.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr from Chromium")?;
        let process = Process(child);
        let endpoint = tokio::task::spawn_blocking(move || devtools_endpoint(stderr))
            .await
            .map_err(|error| error.to_string())??;
        let mut tab =
            Tab { socket: connect(&endpoint).await?, session: None, next_id: 0, _process: process, _profile: profile };
        let target = tab.call("Target.createTarget", json!({ "url": "about:blank" })).await?;
        let target = target["targetId"].as_str().ok_or("Chromium gave no target id")?.to_owned();
        let attached = tab.call("Target.attachToTarget", json!({ "targetId": target, "flatten": true })).await?;
        tab.session = Some(attached["sessionId"].as_str().ok_or("Chromium gave no session id")?.to_owned());
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        tab.call("Emulation.setDeviceMetricsOverride", metrics).await?;
        tab.navigate(url).await?;
        Ok(tab)
    }
}

/// Reads Chromium's stderr until it says where its DevTools endpoint listens, then keeps
/// draining it on a thread (a full pipe would block the browser).
fn devtools_endpoint(stderr: std::process::ChildStderr) -> Result<String, String> {
    let (found, endpoint) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("ws://")
                && let Some(found) = found.take()
            {
                let _ = found.send(Ok(line[at..].trim().to_owned()));
            } else if found.is_some() && seen.len() < 4000 {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        if let Some(found) = found {
            let _ = found.send(Err(format!("Chromium exited before it listened:\n{seen}")));
        }
    });
    endpoint.recv_timeout(START_TIMEOUT).map_err(|_| "Chromium did not start within 30 s".to_owned())?
}

async fn connect(endpoint: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let address = endpoint
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("not a DevTools endpoint: {endpoint}"))?;
    let stream = TcpStream::connect(address).await.map_err(|error| format!("cannot reach {endpoint}: {error}"))?;
    let (socket, _) = client_async(endpoint, stream).await.map_err(|error| format!("DevTools handshake: {error}"))?;
    Ok(socket)
}

/// The browser process, killed when the tab is dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One page in its own browser.
pub struct Tab {
    socket: WebSocketStream<TcpStream>,
    session: Option<String>,
    next_id: u64,
    _process: Process,
    _profile: tempfile::TempDir,
}

impl Tab {
    /// Loads `url` and waits until the document (with its deferred scripts) has loaded.
    pub async fn navigate(&mut self, url: &str) -> Result<(), String> {
        let navigated = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = navigated["errorText"].as_str() {
            return Err(format!("cannot load {url}: {error}"));
        }
        self.wait_for("document.readyState === 'complete'", Duration::from_secs(10)).await
    }

    /// The value of the JavaScript `expression` (awaited if it is a promise), as JSON.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let reply = self.call("Runtime.evaluate", params).await?;
        if let Some(exception) = reply.get("exceptionDetails") {
            return Err(format!("{expression} threw: {exception}"));
        }
        Ok(reply["result"]["value"].clone())
    }

    /// Waits until `condition` (a JavaScript expression) is true.
    pub async fn wait_for(&mut self, condition: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(&format!("Boolean({condition})")).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let page = self.html().await.unwrap_or_default();
                return Err(format!("`{condition}` not true after {timeout:?}; the page:\n{page}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets the value of the input with id `input` as typing would, then submits its form.
    pub async fn fill_and_submit(&mut self, input: &str, text: &str) -> Result<(), String> {
        let (input, text) =
            (serde_json::to_string(input).unwrap_or_default(), serde_json::to_string(text).unwrap_or_default());
        self.eval(&format!(
            "(() => {{ const field = document.getElementById({input}); field.value = {text}; \
             field.dispatchEvent(new Event('input', {{ bubbles: true }})); field.form.requestSubmit(); }})()"
        ))
        .await
        .map(drop)
    }

    /// The document as rendered now.
    pub async fn html(&mut self) -> Result<String, String> {
        Ok(self.eval("document.documentElement.outerHTML").await?.as_str().unwrap_or_default().to_owned())
    }

    /// The text of the element with id `id` (`None` if there is none).
    pub async fn text(&mut self, id: &str) -> Result<Option<String>, String> {
        let id = serde_json::to_string(id).unwrap_or_default();
        let value = self.eval(&format!("document.getElementById({id})?.textContent ?? null")).await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// A PNG of the page (the window's size) into `path`.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|error| format!("the screenshot is not base64: {error}"))?;
        std::fs::write(path, png).map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    /// One protocol call: its `result`, or its `error` as text.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(message.to_string())).await.map_err(|error| format!("{method}: {error}"))?;
        let reply = tokio::time::timeout(CALL_TIMEOUT, async {
            while let Some(frame) = self.socket.next().await {
                let frame = frame.map_err(|error| format!("{method}: {error}"))?;
                let Message::Text(text) = frame else { continue };
                let reply: Value = serde_json::from_str(&text).map_err(|error| format!("{method}: {error}"))?;
                // Events (no id) and other calls' replies are not ours.
                if reply["id"] == id {
                    return Ok(reply);
                }
            }
            Err(format!("{method}: Chromium closed the connection"))
        })
        .await
        .map_err(|_| format!("{method}: no reply within {CALL_TIMEOUT:?}"))??;
        match reply.get("error") {
            Some(error) => Err(format!("{method}: {error}")),
            None => Ok(reply["result"].clone()),
        }
    }
}
