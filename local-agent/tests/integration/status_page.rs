//! The status page (`GET /`) in a real headless Chromium, against a live API: the page loads,
//! its script runs, and the DOM shows the server's own figures.

use std::sync::Arc;

use local_agent::api::{self, ApiState};
use local_agent::config::Secret;
use tokio::sync::oneshot;

use crate::Workspace;

struct Served {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _workspace: Workspace,
}

async fn serve(api_key: Option<&str>) -> Served {
    let workspace = Workspace::with_sample_notes();
    tokio::task::block_in_place(|| workspace.index());
    let engine = Arc::new(workspace.engine());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = ApiState::new(engine, api_key.map(Secret::new)).with_data_dir(&workspace.data());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Served { url, stop, task, _workspace: workspace }
}

impl Served {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Opens `path` of the server in a fresh headless Chromium.
async fn open(server: &Served, path: &str) -> testkit::browser::Tab {
    let chromium = testkit::browser::Chromium::find().unwrap_or_else(|missing| panic!("{missing}"));
    chromium.open(&format!("{}{path}", server.url), 1100, 900).await.unwrap()
}

/// Where screenshots go: `$STATUS_PAGE_SCREENSHOTS` (docs/ when they are remade), else a
/// temporary folder.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::env::var_os("STATUS_PAGE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(name)
}

const LOADED: &str = "document.body.dataset.loaded === 'true'";
const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_live_figures_searches_and_quotes_queries_as_text() {
    let server = serve(None).await;
    // Two searches before the page loads: a plain one, and one a hostile page would love the
    // status page to turn into markup.
    let client = reqwest::Client::new();
    for query in ["sourdough bread", "<img src=x onerror=alert(1)>"] {
        let reply = client.post(format!("{}/search", server.url)).json(&serde_json::json!({ "query": query })).send();
        assert!(reply.await.unwrap().status().is_success());
    }
    let mut tab = open(&server, "/").await;
    tab.wait_for(LOADED, WAIT).await.unwrap();
    assert_eq!(tab.text("documents").await.unwrap().as_deref(), Some("10"), "the indexed note count");
    assert_eq!(tab.text("health").await.unwrap().as_deref(), Some("healthy"));
    assert_eq!(tab.text("tunnel-state").await.unwrap().as_deref(), Some("no cloud configured"));
    assert!(tab.text("p50").await.unwrap().unwrap().ends_with(" ms"), "latency from the two searches");
    let dom = tab.html().await.unwrap();
    assert!(dom.contains("<td>sourdough bread</td>"), "the last queries:\n{dom}");
    assert!(dom.contains("<td>&lt;img src=x onerror=alert(1)&gt;</td>"), "a query is text, never markup");
    assert!(!dom.contains("<img src=\"x\""), "{dom}");

    // The search box, as a person uses it: results with their sources, and the query joins the
    // last queries at the next refresh.
    tab.fill_and_submit("query", "How long does sourdough proof?").await.unwrap();
    tab.wait_for("document.querySelectorAll('#results li').length > 0", WAIT).await.unwrap();
    let results = tab.text("results").await.unwrap().unwrap();
    assert!(results.to_lowercase().contains("sourdough") && results.contains(".md"), "{results}");
    assert!(tab.text("search-info").await.unwrap().unwrap().contains("result"));
    tab.wait_for("document.getElementById('recent').textContent.includes('How long does sourdough proof?')", WAIT)
        .await
        .unwrap();

    let path = screenshot_path("agent-status.png");
    tab.screenshot(&path).await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture: {} bytes", png.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_page_asks_for_it_and_shows_nothing_before() {
    let server = serve(Some("page key")).await;
    let mut tab = open(&server, "/").await;
    tab.wait_for("!document.getElementById('key-form').hidden", WAIT).await.unwrap();
    assert!(tab.eval("document.getElementById('figures').hidden").await.unwrap() == true, "no figures without the key");
    assert_eq!(tab.text("documents").await.unwrap().as_deref(), Some("–"));

    tab.fill_and_submit("key", "wrong key").await.unwrap();
    tab.wait_for("document.getElementById('key-error').textContent !== ''", WAIT).await.unwrap();
    assert_eq!(tab.text("key-error").await.unwrap().as_deref(), Some("the API key is missing or wrong"));

    tab.fill_and_submit("key", "page key").await.unwrap();
    tab.wait_for(LOADED, WAIT).await.unwrap();
    assert_eq!(tab.text("documents").await.unwrap().as_deref(), Some("10"));
    // Kept for the tab's session only, and never put in the address.
    assert!(tab.eval("localStorage.length").await.unwrap() == 0);
    assert!(!tab.eval("location.href").await.unwrap().as_str().unwrap().contains("key"));

    // The page itself and its assets need no key, and allow nothing from elsewhere.
    let script = reqwest::get(format!("{}/ui/app.js", server.url)).await.unwrap();
    assert!(script.status().is_success());
    let policy = script.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.starts_with("default-src 'none'; script-src 'self'"), "{policy}");
    server.stop().await;
}
