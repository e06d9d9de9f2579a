//! Self-hosted alerts end to end: the pipeline's runs and the live agents go into `Alerts`, and
//! its messages reach a real webhook receiver on loopback — once per incident, once more when
//! it is over, and not again while a condition flaps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use cloud_fn::telemetry::alerts::{Condition, Rules, State};
use cloud_fn::telemetry::webhook::{Alerts, WebhookNotifier};
use common::World;
use protocol::Secret;
use serde_json::Value;
use testkit::LlmFault;

/// A webhook receiver on `listener`: its URL and what it was sent.
async fn receiver(listener: tokio::net::TcpListener) -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hooks/secret-path",
        post(move |Json(body): Json<Value>| {
            let log = log.clone();
            async move { log.lock().unwrap().push(body) }
        }),
    );
    let url = format!("http://{}/hooks/secret-path", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn states(received: &Mutex<Vec<Value>>) -> Vec<(String, String)> {
    let received = received.lock().unwrap();
    received.iter().map(|body| (body["condition"].to_string(), body["state"].to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_outage_and_an_offline_agent_are_each_told_once_and_once_more_when_over() {
    let world = World::new().await;
    let (url, received) = receiver(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let notifier = Arc::new(WebhookNotifier::new(Secret::new(url), false).unwrap());
    let alerts = Alerts::new(Rules::default(), notifier, world.clock.clone());
    let pipeline = world.default_pipeline();
    pipeline.observe_runs(alerts.clone());

    // The LLM refuses the key: the question fails, and the run says it failed in the LLM.
    world.llm.inject(None, LlmFault::Status(401), 10);
    world.ask("What is our refund policy?", &[]);
    pipeline.process_once().await.unwrap();
    let sent = alerts.check(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].condition, sent[0].state), (Condition::LlmFailures, State::Firing));
    let first = received.lock().unwrap()[0].clone();
    assert!(first["text"].as_str().unwrap().contains("OPENROUTER_API_KEY"), "{first}");
    assert_eq!(first["content"], first["text"]);

    // Still within the incident: nothing more.
    assert!(alerts.check(1).await.is_empty());
    assert_eq!(received.lock().unwrap().len(), 1);

    // Fifteen minutes later, with the LLM answering again: one recovery message.
    world.llm.clear_faults();
    world.clock.advance(15 * 60);
    let page = world.ask("And the shipping times?", &[]);
    pipeline.process_once().await.unwrap();
    assert_eq!(world.status(&page), "Answered");
    alerts.check(1).await;
    assert_eq!(states(&received)[1], ("\"llm_failures\"".into(), "\"resolved\"".into()));

    // The agent goes away for five minutes: told once, however often it is checked.
    alerts.check(0).await;
    world.clock.advance(299);
    assert!(alerts.check(0).await.is_empty(), "not yet five minutes");
    world.clock.advance(1);
    let sent = alerts.check(0).await;
    assert_eq!(
        sent.iter().map(|n| (n.condition, n.state)).collect::<Vec<_>>(),
        [(Condition::AgentOffline, State::Firing)]
    );
    assert!(alerts.check(0).await.is_empty());
    // It comes back at once: the recovery waits out the quiet time (a flap is not news).
    assert!(alerts.check(1).await.is_empty());
    world.clock.advance(Rules::default().quiet.as_secs() as i64);
    alerts.check(1).await;
    assert_eq!(
        states(&received),
        [
            ("\"llm_failures\"".into(), "\"firing\"".into()),
            ("\"llm_failures\"".into(), "\"resolved\"".into()),
            ("\"agent_offline\"".into(), "\"firing\"".into()),
            ("\"agent_offline\"".into(), "\"resolved\"".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_message_when_it_is_back() {
    let world = World::new().await;
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let url = format!("http://{address}/hooks/secret-path");
    let notifier = Arc::new(WebhookNotifier::new(Secret::new(url), false).unwrap());
    let alerts = Alerts::new(Rules { quiet: Duration::ZERO, ..Rules::default() }, notifier, world.clock.clone());
    world.clock.advance(300);
    assert!(alerts.check(0).await.is_empty(), "nothing could be delivered");

    // The receiver comes back on that port; the message is tried again after a minute.
    let (_, received) = receiver(tokio::net::TcpListener::bind(address).await.unwrap()).await;
    assert!(alerts.check(0).await.is_empty(), "waits a minute after a failure");
    world.clock.advance(60);
    assert_eq!(alerts.check(0).await.len(), 1);
    assert_eq!(states(&received), [("\"agent_offline\"".into(), "\"firing\"".into())]);
}
