//! The HTTP API on an ephemeral port: its contract, and every error path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use local_agent::agent::indexer::{Indexer, IndexerSettings};
use local_agent::api::{self, ApiSettings, ApiState};
use local_agent::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::Workspace;

struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _workspace: Workspace,
}

impl Server {
    async fn start(indexed: bool, api_key: Option<&str>) -> Self {
        Self::start_with(indexed, api_key, ApiSettings::default()).await
    }

    async fn start_with(indexed: bool, api_key: Option<&str>, settings: ApiSettings) -> Self {
        let workspace = Workspace::with_sample_notes();
        if indexed {
            tokio::task::block_in_place(|| workspace.index());
        }
        let engine = Arc::new(workspace.engine());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let state = ApiState::new(engine, api_key.map(Secret::new)).with_settings(settings);
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self { address, stop: Some(stop), task, _workspace: workspace }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = reqwest::Client::new().post(self.url(path)).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.task).await.unwrap().unwrap().unwrap();
    }
}

fn error_code(body: &Value) -> &str {
    assert_eq!(body["success"], false, "{body}");
    body["error"]["message"].as_str().filter(|m| !m.is_empty()).expect("a message");
    body["error"]["code"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_context_follow_the_original_contract() {
    let server = Server::start(true, None).await;
    let (status, body) = server.post("/search", json!({"query": "番茄工作法的休息时间"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert!(body["processing_time"].as_f64().unwrap() > 0.0);
    assert!(body["context"].as_str().unwrap().starts_with("[1] "));
    let results = body["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 5, "max_results defaults to 5");
    let first = &results[0];
    for key in ["knowledge_id", "title", "content_snippet", "similarity_score", "source_type", "source"] {
        assert!(!first[key].is_null(), "results carry {key}: {first}");
    }
    assert_eq!(first["source"], "productivity/pomodoro.md");
    assert!(["keyword", "semantic", "hybrid"].contains(&first["source_type"].as_str().unwrap()));
    assert!(results.iter().all(|r| r["similarity_score"].as_f64().unwrap() >= 0.3), "default threshold 0.3");

    let (status, body) = server
        .post("/search", json!({"query": "bread", "tags": ["cooking"], "max_results": 1, "similarity_threshold": 0.0}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"].as_array().unwrap().len(), 1);

    let (status, body) =
        server.post("/context/build", json!({"query": "Notion API rate limit", "max_length": 300})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["context"].as_str().unwrap().chars().count() <= 300);
    assert_eq!(body["sources"][0], "notion-tips.md");
    assert!(body["processing_time"].as_f64().is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stats_cache_and_metrics() {
    let server = Server::start(true, None).await;
    let client = reqwest::Client::new();
    let health: Value = client.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime"].as_f64().is_some());
    assert_eq!(health["rag_engine"]["status"], "ready");
    assert_eq!(health["rag_engine"]["model_loaded"], true);
    assert!(health["rag_engine"]["index_size"].as_u64().unwrap() > 0);
    for key in ["avg_response_time", "total_requests", "cache_hit_rate"] {
        assert!(health["performance"][key].is_number(), "{key}: {health}");
    }

    for _ in 0..2 {
        server.post("/search", json!({"query": "weekly review"})).await;
    }
    let health: Value = client.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["performance"]["total_requests"], 2);
    assert_eq!(health["performance"]["cache_hit_rate"], 0.5);

    let stats: Value = client.get(server.url("/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["index"]["documents"], 10);
    assert!(stats["tunnel"].is_null(), "no cloud configured: {stats}");
    assert_eq!(stats["cache"]["entries"], 1);
    let (status, cleared) = server.post("/cache/clear", json!({})).await;
    assert_eq!((status, cleared["cleared"].as_u64()), (StatusCode::OK, Some(1)));

    let metrics = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("local_agent_http_requests_total{endpoint=\"/search\",status=\"200\"} 2"), "{text}");
    assert!(text.contains("local_agent_index_documents 10"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let server = Server::start(true, None).await;
    let cases = [
        (json!({"query": ""}), "invalid_request"),
        (json!({"query": "   "}), "invalid_request"),
        (json!({"query": "x", "max_results": 0}), "invalid_request"),
        (json!({"query": "x", "max_results": 101}), "invalid_request"),
        (json!({"query": "x", "similarity_threshold": 2}), "invalid_request"),
        (json!({"query": "x", "tags": [""]}), "invalid_request"),
        (json!({"query": 42}), "invalid_json"),
        (json!({"tags": ["a"]}), "invalid_json"),
        (json!({"query": "x", "max_results": -1}), "invalid_json"),
        (json!({"query": "x".repeat(5000)}), "invalid_request"),
    ];
    for (body, code) in cases {
        let (status, reply) = server.post("/search", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&reply), code, "{body}");
    }
    let (status, reply) = server.post("/context/build", json!({"query": "x", "max_length": 0})).await;
    assert_eq!((status, error_code(&reply)), (StatusCode::BAD_REQUEST, "invalid_request"));

    let client = reqwest::Client::new();
    let not_json = client.post(server.url("/search")).header("content-type", "application/json").body("{not json");
    let response = not_json.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response.json().await.unwrap()), "invalid_json");

    let huge = json!({"query": "x", "tags": vec!["t".repeat(100); 1000]});
    let (status, reply) = server.post("/search", huge).await;
    assert_eq!((status, error_code(&reply)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    let response = client.get(server.url("/no-such-thing")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response.json().await.unwrap()), "not_found");
    let response = client.get(server.url("/search")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&response.json().await.unwrap()), "method_not_allowed");

    // The server is still fine after all that.
    let (status, _) = server.post("/search", json!({"query": "sleep"})).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_guards_everything_but_health() {
    let key = "correct horse battery staple";
    let server = Server::start(true, Some(key)).await;
    let client = reqwest::Client::new();
    let search = || client.post(server.url("/search")).json(&json!({"query": "sleep"}));

    let response = search().send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&response.json().await.unwrap()), "unauthorized");
    let response = search().bearer_auth("wrong key").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(search().bearer_auth(key).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(search().header("X-API-Key", key).send().await.unwrap().status(), StatusCode::OK);
    for path in ["/stats", "/metrics"] {
        assert_eq!(client.get(server.url(path)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(client.post(server.url("/cache/clear")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_index_searches_say_what_to_do() {
    let server = Server::start(false, None).await;
    let (status, body) = server.post("/search", json!({"query": "anything"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "index_unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("local-agent index"));
    let health: Value = reqwest::get(server.url("/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["rag_engine"]["status"], "no_index");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_tunnel() {
    let workspace = Workspace::with_sample_notes();
    let engine = Arc::new(workspace.engine());
    let status = Arc::new(local_agent::tunnel::TunnelStatus::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = ApiState::new(engine, None).with_tunnel(status.clone());
    let server = tokio::spawn(api::serve(listener, state, std::future::pending()));
    let stats = || async {
        let stats: Value = reqwest::get(format!("http://{address}/stats")).await.unwrap().json().await.unwrap();
        stats["tunnel"].clone()
    };
    status.dial_failed("cannot reach the cloud: connection refused");
    let tunnel = stats().await;
    assert_eq!(tunnel["connected"], false);
    assert_eq!(tunnel["last_error"], "cannot reach the cloud: connection refused");
    status.session_started();
    status.heartbeat_sent();
    let tunnel = stats().await;
    assert_eq!(tunnel["connected"], true, "{tunnel}");
    assert!(tunnel["last_heartbeat"].as_u64().is_some(), "{tunnel}");
    assert_eq!(tunnel["connections"], 1);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_rebuild_runs_in_the_background_one_at_a_time() {
    let workspace = Workspace::with_sample_notes();
    let first = tokio::task::block_in_place(|| workspace.index());
    let engine = Arc::new(workspace.engine());
    let stop = CancellationToken::new();
    let settings = IndexerSettings {
        data_dir: workspace.data(),
        folders: Vec::new(),
        index: local_agent::index::IndexSettings { batch_size: 16, ..Default::default() },
    };
    let (indexer, indexing) = Indexer::spawn(settings, crate::embedder(), None, stop.clone());
    // The engine serves each generation the indexer announces.
    let following = tokio::spawn(engine.clone().follow(indexer.published()));
    let mut served = engine.loaded_generations();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/index/rebuild", listener.local_addr().unwrap());
    let state = ApiState::new(engine.clone(), Some(Secret::new("rebuild-key"))).with_indexer(indexer.clone());
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let refused = client.post(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "behind the API key");

    let started = client.post(&url).bearer_auth("rebuild-key").send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let again = client.post(&url).bearer_auth("rebuild-key").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT, "one rebuild at a time");

    let rebuilt = tokio::time::timeout(std::time::Duration::from_secs(60), served.wait_for(|g| *g > first.generation))
        .await
        .expect("the engine never served the rebuilt generation")
        .map(|generation| *generation)
        .unwrap();
    assert_eq!(engine.stats().generation, rebuilt);
    assert_eq!(engine.stats().documents, first.documents);
    let index = local_agent::index::generations::IndexDir::new(&workspace.data());
    assert_eq!(index.current().unwrap(), Some(rebuilt));
    // Once it is done, another may start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let next = client.post(&url).bearer_auth("rebuild-key").send().await.unwrap();
        if next.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(next.status(), StatusCode::CONFLICT);
        assert!(std::time::Instant::now() < deadline, "the first rebuild never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
    stop.cancel();
    indexing.await.unwrap();
    drop(indexer);
    following.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_pages_of_other_sites_cannot_use_the_api() {
    let server = Server::start(true, None).await;
    let client = reqwest::Client::new();
    let search = || client.post(server.url("/search"));
    let body = r#"{"query":"bread"}"#;
    let own_origin = format!("http://{}", server.address);

    // DNS rebinding: the page's own name still arrives as Host.
    let rebound = search().header("host", "evil.example:8001").header("content-type", "application/json").body(body);
    let response = rebound.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&response.json().await.unwrap()), "forbidden");
    let health = client.get(server.url("/health")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::FORBIDDEN, "no endpoint answers another name");

    // Another site's script, and a sandboxed one.
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        let response = search()
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
    }
    // A form or text/plain POST needs no CORS preflight: refused for its content type.
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let response = search().header("content-type", kind).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{kind}");
        assert_eq!(error_code(&response.json().await.unwrap()), "unsupported_media_type");
    }
    // The API's own page and non-browser clients are served.
    let own = search().header("origin", &own_origin).header("content-type", "application/json").body(body);
    assert_eq!(own.send().await.unwrap().status(), StatusCode::OK);
    let (status, _) = server.post("/search", json!({"query": "bread"})).await;
    assert_eq!(status, StatusCode::OK);
    let cleared = client.post(server.url("/cache/clear")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK, "a POST without a body needs no content type");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_told_to_come_back_later_instead_of_queueing() {
    let burst = |server: &Server, tag: &'static str| {
        let client = reqwest::Client::new();
        let requests: Vec<_> = (0..32)
            .map(|i| {
                let body = json!({"query": format!("bread and rest {tag} {i}")});
                let request = client.post(server.url("/search")).json(&body);
                async move { request.send().await.unwrap() }
            })
            .collect();
        futures_util::future::join_all(requests)
    };
    // A short burst waits its turn for the one slot.
    let patient = ApiSettings { max_concurrent_requests: 1, queue_wait: Duration::from_secs(30), ..Default::default() };
    let server = Server::start_with(true, None, patient).await;
    let responses = burst(&server, "patient").await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK), "the burst is absorbed");
    server.stop().await;

    // Past the wait, the rest are told to come back.
    let settings = ApiSettings { max_concurrent_requests: 1, queue_wait: Duration::ZERO, ..ApiSettings::default() };
    let server = Server::start_with(true, None, settings).await;
    let responses = burst(&server, "flood").await;
    let busy: Vec<_> = responses.iter().filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty(), "32 at once over a limit of 1");
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK || r.status() == StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(busy[0].headers()["retry-after"], "1");
    let (status, body) = server.post("/search", json!({"query": "bread"})).await;
    assert_eq!(status, StatusCode::OK, "served again once the flood is over: {body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_describes_itself_at_openapi_json_and_docs_without_a_key() {
    let server = Server::start(true, Some("a key the description does not need")).await;
    let client = reqwest::Client::new();
    let response = client.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let mut described: Vec<&str> = paths.keys().map(String::as_str).collect();
    described.sort_unstable();
    assert_eq!(
        described,
        ["/cache/clear", "/context/build", "/health", "/index/rebuild", "/metrics", "/search", "/stats"],
        "every route, and only those"
    );
    // Failures are described with the one error shape; the key only where it is asked for.
    let search = &paths["/search"]["post"];
    for status in ["200", "400", "401", "403", "413", "415", "500", "503"] {
        assert!(search["responses"][status].is_object(), "/search {status}: {search}");
    }
    assert_eq!(
        search["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorResponse"
    );
    assert!(paths["/health"]["get"]["responses"]["401"].is_null());
    let request = &document["components"]["schemas"]["SearchRequest"]["properties"];
    assert_eq!(request["max_results"]["maximum"], 100, "{request}");

    let response = client.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let page = response.text().await.unwrap();
    assert!(page.contains("<code>/context/build</code>") && page.contains("id=\"schema-SearchResponse\""), "{page}");
    assert!(!page.contains("<script") && !page.contains("https://"), "self-contained");
    server.stop().await;
}

/// schemathesis against the running API, with its key: any 5xx, or any reply the document
/// does not describe, fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_reply_the_document_does_not_describe() {
    let key = "fuzzing key";
    // As `serve` runs it: an index, and an indexer behind /index/rebuild.
    let workspace = Workspace::with_sample_notes();
    tokio::task::block_in_place(|| workspace.index());
    let engine = Arc::new(workspace.engine());
    let stop = CancellationToken::new();
    let settings = IndexerSettings {
        data_dir: workspace.data(),
        folders: Vec::new(),
        index: local_agent::index::IndexSettings { batch_size: 16, ..Default::default() },
    };
    let (indexer, indexing) = Indexer::spawn(settings, crate::embedder(), None, stop.clone());
    let following = tokio::spawn(engine.clone().follow(indexer.published()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let document = format!("http://{}/openapi.json", listener.local_addr().unwrap());
    let state = ApiState::new(engine, Some(Secret::new(key))).with_indexer(indexer);
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let fuzz = testkit::schemathesis::Fuzz::new(document).bearer(key);
    let result = tokio::task::spawn_blocking(move || fuzz.run()).await.unwrap();
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
    stop.cancel();
    let _ = indexing.await;
    following.abort();
    match result {
        Ok(report) => println!("{report}"),
        Err(report) => panic!("schemathesis found problems:\n{report}"),
    }
}
