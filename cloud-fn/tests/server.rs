//! The self-hosted server on an ephemeral port: authentication (failing closed), limits on
//! what clients can hold, the status endpoints, manual and timed runs, template sync both ways.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloud_fn::config::Secret;
use cloud_fn::server::{self, ApiAccess, ServerSettings, ServerState};
use cloud_fn::store::Template;
use common::World;
use notion::page::write;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{PropertyKind, PropertySchema};

const CLOUD_KEY: &str = "cloud-key-for-tests";

struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(world: &World, templates_database: Option<String>, poll: Duration) -> Self {
        let settings = ServerSettings {
            access: ApiAccess::Key(Secret::new(CLOUD_KEY)),
            templates_database,
            ..ServerSettings::default()
        };
        Self::start_with(world, settings, poll).await
    }

    async fn start_with(world: &World, settings: ServerSettings, poll: Duration) -> Self {
        let state = ServerState::new(world.default_pipeline(), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, server::router(state.clone()), state, poll, async {
            let _ = stopped.await;
        }));
        Self { url, stop: Some(stop), task }
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A poll interval long enough that only manual runs happen during a test.
const NO_TIMER: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_but_health_needs_the_key() {
    let world = World::new().await;
    let server = Running::start(&world, None, NO_TIMER).await;
    let (status, health) = server.call(reqwest::Method::GET, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("healthy")));
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    for (method, path) in [
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::GET, "/rag/status"),
        (reqwest::Method::POST, "/process-once"),
        (reqwest::Method::POST, "/templates/sync-from-notion"),
        (reqwest::Method::POST, "/templates/sync-to-notion"),
    ] {
        for key in [None, Some("wrong key")] {
            let (status, body) = server.call(method.clone(), path, key).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {key:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_runs_and_status_report_what_happened() {
    let world = World::new().await;
    let page = world.ask("Through the API", &[]);
    let server = Running::start(&world, None, NO_TIMER).await;

    // The server also runs once at start; a manual run waits for that one, never overlaps it.
    let (status, body) = server.call(reqwest::Method::POST, "/process-once", Some(CLOUD_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(world.status(&page), "Answered");
    assert_eq!(world.answers(&page), 1);

    let (_, status_body) = server.call(reqwest::Method::GET, "/status", Some(CLOUD_KEY)).await;
    assert_eq!(status_body["jobs"]["answered"], 1);
    let at = status_body["last_poll"]["at"].as_i64().unwrap_or_default();
    let at_utc = status_body["last_poll"]["at_utc"].as_str().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(at_utc).is_ok_and(|utc| utc.timestamp() == at), "{status_body}");
    assert_eq!(status_body["store"], "embedded");
    assert_eq!(status_body["agent"]["live_agents"], 1);
    // The LLM's usage, today and this month (the stand-in bills a millionth per token).
    for period in ["today", "this_month"] {
        let usage = &status_body["usage"][period];
        assert_eq!(usage["answers"], 1, "{status_body}");
        let tokens = usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
        assert!(tokens > 0 && (usage["cost"].as_f64().unwrap() - tokens as f64 * 1e-6).abs() < 1e-9, "{usage}");
    }

    let (_, rag) = server.call(reqwest::Method::GET, "/rag/status", Some(CLOUD_KEY)).await;
    assert_eq!(rag["rag_available"], true);
    assert!(rag["response_time"].as_f64().is_some());
    world.agent.live.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_, rag) = server.call(reqwest::Method::GET, "/rag/status", Some(CLOUD_KEY)).await;
    assert_eq!(rag["rag_available"], false);

    let (status, body) = server.call(reqwest::Method::POST, "/templates/sync-to-notion", Some(CLOUD_KEY)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_configured")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_answers_new_questions_by_itself() {
    let world = World::new().await;
    let server = Running::start(&world, None, Duration::from_millis(100)).await;
    let page = world.ask("Answered by the timer", &[]);
    for _ in 0..100 {
        if world.status(&page) == "Answered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(world.status(&page), "Answered");
    server.stop().await;
    assert_eq!(world.answers(&page), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_sync_both_ways_with_a_notion_database() {
    let world = World::new().await;
    let (database, source) = world.sandbox.create_database(
        "Templates",
        vec![
            PropertySchema::new("Name", PropertyKind::Title),
            PropertySchema::new("Tags", PropertyKind::MultiSelect),
            PropertySchema::new("System Prompt", PropertyKind::RichText),
            PropertySchema::new("Fallback Context", PropertyKind::RichText),
        ],
    );
    world.sandbox.add_page(
        &source,
        json!({
            "Name": write::title("cooking"),
            "Tags": write::multi_select(&["cooking".into()]),
            "System Prompt": write::rich_text("You are a chef."),
            "Fallback Context": write::rich_text("Salt to taste."),
        }),
        Value::Null,
    );
    let server = Running::start(&world, Some(database), NO_TIMER).await;
    let (status, body) = server.call(reqwest::Method::POST, "/templates/sync-from-notion", Some(CLOUD_KEY)).await;
    assert_eq!((status, body["templates"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    let stored: Vec<Template> = world.store.templates().await.unwrap();
    assert_eq!(stored[0].system_prompt, "You are a chef.");
    assert_eq!(stored[0].fallback_context, "Salt to taste.");

    // The chef template now answers cooking questions.
    let page = world.ask("How much salt?", &["cooking"]);
    server.call(reqwest::Method::POST, "/process-once", Some(CLOUD_KEY)).await;
    assert!(
        world.sandbox.page_text(&page).contains("**System:** You are a chef.")
            || world.sandbox.page_text(&page).contains("System: You are a chef.")
    );

    let (status, body) = server.call(reqwest::Method::POST, "/templates/sync-to-notion", Some(CLOUD_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<String> =
        world.notion().query_all(&source, None, None).await.unwrap().iter().map(|page| page.title()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["ai-efficiency", "cooking", "default"],
        "built-ins added, the existing one updated, none duplicated"
    );
    drop(Arc::clone(&world.store));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_key_the_api_fails_closed() {
    let world = World::new().await;
    let server = Running::start_with(&world, ServerSettings::default(), NO_TIMER).await;
    assert_eq!(server.call(reqwest::Method::GET, "/health", None).await.0, StatusCode::OK);
    for (method, path) in [
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::POST, "/process-once"),
        (reqwest::Method::GET, "/webhooks/notion/verification"),
    ] {
        for key in [None, Some("any key at all")] {
            let (status, body) = server.call(method.clone(), path, key).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path} {key:?}");
            assert_eq!(body["error"]["code"], "unavailable");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_and_do_not_starve_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new().await;
    let limits = edge::Limits { header_read_timeout: Duration::from_millis(500), ..edge::Limits::default() };
    let settings =
        ServerSettings { access: ApiAccess::Key(Secret::new(CLOUD_KEY)), limits, ..ServerSettings::default() };
    let server = Running::start_with(&world, settings, NO_TIMER).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // 200 clients that start a request and never finish its headers.
    let mut silent = Vec::new();
    for _ in 0..200 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nAuthor").await.unwrap();
        silent.push(socket);
    }
    let started = std::time::Instant::now();
    let (status, _) = server.call(reqwest::Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2), "served at once: {:?}", started.elapsed());
    // Each silent socket is closed once the header timeout passes.
    for socket in &mut silent {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_)) | Ok(Ok(_))), "a silent socket stayed open");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_and_the_schedule_never_answer_a_question_twice() {
    const WEBHOOK_TOKEN: &str = "secret_webhook_for_tests";
    let world = World::new().await;
    let settings = ServerSettings {
        access: ApiAccess::Key(Secret::new(CLOUD_KEY)),
        webhook_token: Some(Secret::new(WEBHOOK_TOKEN)),
        ..ServerSettings::default()
    };
    // A schedule that fires all the time, racing every delivery.
    let server = Running::start_with(&world, settings, Duration::from_millis(15)).await;
    let pages: Vec<String> = (0..12).map(|i| world.ask(&format!("Raced question {i}"), &[])).collect();
    let client = reqwest::Client::new();
    let mut deliveries = tokio::task::JoinSet::new();
    for (i, page) in pages.iter().enumerate() {
        // Notion may deliver a page both as created and as updated, each maybe twice.
        for (kind, event_type) in [("created", "page.created"), ("updated", "page.properties_updated")] {
            let event =
                testkit::notion_webhook::page_event(event_type, &format!("evt-{kind}-{i}"), page, &world.database);
            for _ in 0..2 {
                let request = client
                    .post(format!("{}/webhooks/notion", server.url))
                    .header("content-type", "application/json")
                    .header(
                        cloud_fn::webhook::SIGNATURE_HEADER,
                        testkit::notion_webhook::signature(WEBHOOK_TOKEN, &event),
                    )
                    .body(event.clone());
                deliveries.spawn(async move { request.send().await.unwrap().status() });
            }
        }
    }
    let statuses = deliveries.join_all().await;
    assert!(statuses.iter().all(|status| status.is_success()), "{statuses:?}");
    for page in &pages {
        for _ in 0..200 {
            if world.status(page) == "Answered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    server.stop().await;
    for page in &pages {
        assert_eq!((world.status(page).as_str(), world.answers(page)), ("Answered", 1), "page {page}");
        assert_eq!(world.store.get_job(page).await.unwrap().unwrap().generation, 1, "one generation: {page}");
    }
    let appends = world
        .sandbox
        .requests()
        .iter()
        .filter(|logged| logged.method == "PATCH" && logged.path.ends_with("/children"))
        .count();
    assert_eq!(appends, pages.len(), "one append per question");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_describes_itself_at_openapi_json_and_docs_without_a_key() {
    let world = World::new().await;
    let server = Running::start(&world, None, NO_TIMER).await;
    let client = reqwest::Client::new();
    let document: Value =
        client.get(format!("{}/openapi.json", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let mut described: Vec<&str> = paths.keys().map(String::as_str).collect();
    described.sort_unstable();
    assert_eq!(
        described,
        [
            "/health",
            "/process-once",
            "/rag/status",
            "/status",
            "/templates/sync-from-notion",
            "/templates/sync-to-notion",
            "/webhooks/notion",
            "/webhooks/notion/verification"
        ],
        "every route, and only those"
    );
    assert!(paths["/status"]["get"]["responses"]["401"].is_object());
    assert!(paths["/webhooks/notion"]["post"]["responses"]["401"].is_object(), "a bad signature");
    assert!(paths["/health"]["get"]["responses"]["401"].is_null());
    assert!(document["components"]["schemas"]["RunReport"]["properties"]["pages"].is_object());
    let page = client.get(format!("{}/docs", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<code>/process-once</code>") && !page.contains("<script"), "{page}");
    server.stop().await;
}

/// schemathesis against the running server, with its key: any 5xx, or any reply the document
/// does not describe, fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_reply_the_document_does_not_describe() {
    let world = World::new().await;
    world.ask("A question the fuzzer's runs answer", &[]);
    let server = Running::start(&world, None, NO_TIMER).await;
    let fuzz = testkit::schemathesis::Fuzz::new(format!("{}/openapi.json", server.url)).bearer(CLOUD_KEY);
    let result = tokio::task::spawn_blocking(move || fuzz.run()).await.unwrap();
    server.stop().await;
    match result {
        Ok(report) => println!("{report}"),
        Err(report) => panic!("schemathesis found problems:\n{report}"),
    }
}
