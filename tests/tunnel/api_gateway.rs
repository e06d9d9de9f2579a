//! The agent client against the API Gateway WebSocket handlers (`cloud_fn::tunnel::api_gateway`)
//! behind the test kit's emulator, with DynamoDB in dynalite: auth by the `$connect` authorizer,
//! requests out with the real `PostToConnection` client, replies back through the store.

use std::time::{Duration, Instant};

use cloud_fn::agent::{AgentLink, LinkError, contract};
use cloud_fn::clock::{Clock, SystemClock};
use cloud_fn::store::AgentConnection;
use futures_util::{SinkExt, StreamExt};
use local_agent::tunnel::{self, TunnelError};
use protocol::SearchRequest;
use protocol::tunnel::{AgentMessage, CloudMessage, Hello, IndexSummary};
use tokio_tungstenite::tungstenite::Message;

use testkit::EmulatorOptions;

use crate::support::*;

const HEARTBEAT: Duration = Duration::from_secs(1);

async fn until_live(link: &dyn AgentLink, count: usize) {
    for _ in 0..500 {
        if link.status().await.live_agents == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {count} live agents, have {:?}", link.status().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_authorizer_admits_only_valid_tokens() {
    let (_dynalite, store) = dynalite_store().await;
    let (emulator, link) = api_gateway(store.clone(), HEARTBEAT).await;
    contract::offline_links_fail_fast(link.as_ref()).await;

    let agent = spawn_agent(agent_config(&emulator.ws_url(), TOKEN, "laptop"), ScriptedNotes::new("laptop"));
    until_live(link.as_ref(), 1).await;
    let connections = store.connections().await.unwrap();
    assert_eq!(connections[0].agent_id, "laptop", "the hello route recorded the agent");

    let wrong = agent_config(&emulator.ws_url(), "not-the-token", "intruder");
    let error = tunnel::connection::dial(&wrong, ScriptedNotes::new("x")).await.expect_err("refused");
    assert_eq!(error, TunnelError::Unauthorized(403));
    match raw_client(&emulator.ws_url(), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a connection without a token must be refused, got {other:?}"),
    }
    assert_eq!(store.connections().await.unwrap().len(), 1);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_large_replies_and_pushed_context_go_through_the_store() {
    let (_dynalite, store) = dynalite_store().await;
    let (emulator, link) = api_gateway(store.clone(), HEARTBEAT).await;
    let notes = ScriptedNotes::with("big", Duration::ZERO, 100_000);
    let agent = spawn_agent(agent_config(&emulator.ws_url(), TOKEN, "big"), notes);
    until_live(link.as_ref(), 1).await;
    // 100 KB: the agent splits it into 32 KB frames, which API Gateway requires.
    let reply = link.search(&SearchRequest::new("what is big?"), Duration::from_secs(5)).await.unwrap();
    assert!(reply.context.len() >= 100_000 && reply.context.contains("About: what is big?"));
    let started = Instant::now();
    while store.get_context("AI效率", SystemClock.now()).await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "the pushed context never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_connection_is_dropped_and_another_agent_answers() {
    let (_dynalite, store) = dynalite_store().await;
    let (emulator, link) = api_gateway(store.clone(), HEARTBEAT).await;
    let agent = spawn_agent(agent_config(&emulator.ws_url(), TOKEN, "desktop"), ScriptedNotes::new("desktop"));
    until_live(link.as_ref(), 1).await;
    // A laptop whose `$disconnect` never arrived: its record looks live, API Gateway says 410.
    let now = SystemClock.now();
    let ghost = AgentConnection {
        connection_id: "GhostConn1234=".into(),
        agent_id: "laptop".into(),
        connected_at: now,
        last_seen: now,
    };
    store.put_connection(&ghost).await.unwrap();
    for _ in 0..6 {
        let reply = link.search(&SearchRequest::new("who answers?"), Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.results[0].source, "notes/desktop.md");
    }
    let left: Vec<String> = store.connections().await.unwrap().into_iter().map(|c| c.agent_id).collect();
    assert_eq!(left, vec!["desktop".to_owned()], "the gone connection was removed");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_comes_from_heartbeats_and_a_slow_agent_runs_out_the_deadline() {
    let (_dynalite, store) = dynalite_store().await;
    let (emulator, link) = api_gateway(store.clone(), HEARTBEAT).await;
    // A record that stopped being touched long ago counts for nothing, $disconnect or not.
    let stale = SystemClock.now() - 60;
    let asleep = AgentConnection {
        connection_id: "Asleep123456=".into(),
        agent_id: "asleep".into(),
        connected_at: stale,
        last_seen: stale,
    };
    store.put_connection(&asleep).await.unwrap();
    assert!(!link.is_live().await);

    let agent = spawn_agent(
        agent_config(&emulator.ws_url(), TOKEN, "slow"),
        ScriptedNotes::with("slow", Duration::from_secs(2), 100),
    );
    until_live(link.as_ref(), 1).await;
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert_eq!(link.status().await.live_agents, 1, "heartbeats keep the agent live");

    let started = Instant::now();
    let error = link.search(&SearchRequest::new("anyone?"), Duration::from_millis(500)).await.unwrap_err();
    assert_eq!(error, LinkError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_millis(1200), "{:?}", started.elapsed());
    contract::searches_respect_their_deadline(link.as_ref(), Duration::from_millis(500)).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_an_error_reply() {
    let (_dynalite, store) = dynalite_store().await;
    let (emulator, _link) = api_gateway(store, HEARTBEAT).await;
    let mut client = raw_client(&emulator.ws_url(), Some(TOKEN)).await.unwrap();
    let hello =
        AgentMessage::Hello(Hello { agent_id: "raw".into(), version: "test".into(), index: IndexSummary::default() });
    client.send(Message::text(hello.encode())).await.unwrap();
    for bad in ["not json", "{\"v\":1,\"action\":\"dance\"}", "{\"v\":9,\"action\":\"heartbeat\"}"] {
        client.send(Message::text(bad)).await.unwrap();
    }
    let mut errors = 0;
    let mut welcomed = false;
    while errors < 3 {
        let message =
            tokio::time::timeout(Duration::from_secs(5), client.next()).await.expect("no reply").unwrap().unwrap();
        if let Message::Text(text) = message {
            match CloudMessage::decode(text.as_str()).unwrap() {
                CloudMessage::Welcome(_) => welcomed = true,
                CloudMessage::Error(_) => errors += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(welcomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_replaced_before_the_gateways_cap_without_losing_requests() {
    let (_dynalite, store) = dynalite_store().await;
    // The two-hour cap and the agent's rotation age, scaled down to a second and less.
    let options = EmulatorOptions { max_connection_age: Duration::from_millis(1500), ..EmulatorOptions::default() };
    let (emulator, link) = api_gateway_with(store.clone(), HEARTBEAT, options).await;
    let mut config = agent_config(&emulator.ws_url(), TOKEN, "laptop");
    config.supervisor.max_connection_age = Duration::from_millis(600);
    let agent = spawn_agent(config, ScriptedNotes::with("laptop", Duration::from_millis(20), 200));
    until_live(link.as_ref(), 1).await;
    let started = Instant::now();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        let begun = Instant::now();
        let result = link.search(&SearchRequest::new("still there?"), Duration::from_secs(3)).await;
        assert!(result.is_ok(), "a request was lost during rotation: {result:?}");
        slowest = slowest.max(begun.elapsed());
        answered += 1;
    }
    assert!(answered > 20, "{answered}");
    assert!(slowest < Duration::from_secs(2), "slowest request {slowest:?}");
    assert!(emulator.delivered_routes().iter().filter(|route| *route == "$connect").count() >= 5, "rotated");
    agent.abort();
}
