//! The agent client against the cloud hub: auth, liveness, failover, limits, rotation, TLS.

use std::time::{Duration, Instant};

use cloud_fn::agent::{AgentLink, LinkError, contract};
use futures_util::{SinkExt, StreamExt};
use local_agent::config::Secret;
use local_agent::tunnel::{self, TunnelConfig, TunnelError};
use protocol::SearchRequest;
use protocol::tunnel::{AgentMessage, CloudMessage, Hello, IndexSummary, TRIMMED_MARKER};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const HEARTBEAT: Duration = Duration::from_secs(1);

fn question(text: &str) -> SearchRequest {
    SearchRequest::new(text)
}

async fn say_hello(socket: &mut RawSocket, agent_id: &str) {
    let hello = AgentMessage::Hello(Hello {
        agent_id: agent_id.into(),
        version: "test".into(),
        index: IndexSummary::default(),
    });
    socket.send(Message::text(hello.encode())).await.unwrap();
    let welcome = next_cloud_message(socket).await;
    assert!(matches!(welcome, Some(CloudMessage::Welcome(_))), "{welcome:?}");
}

/// The next text message from the cloud, or `None` once the connection is closed.
async fn next_cloud_message(socket: &mut RawSocket) -> Option<CloudMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the cloud said nothing") {
            Some(Ok(Message::Text(text))) => return Some(CloudMessage::decode(text.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agents_with_a_valid_token_get_in() {
    let cloud = Cloud::start(HEARTBEAT).await;
    contract::offline_links_fail_fast(cloud.hub.as_ref()).await;

    let agent = spawn_agent(agent_config(&cloud.url(), TOKEN, "laptop"), ScriptedNotes::new("laptop"));
    cloud.until_live(1).await;
    assert_eq!(cloud.hub.agents()[0].agent_id, "laptop");
    assert_eq!(cloud.hub.agents()[0].stats.index.docs, 2);

    // A wrong token is refused at the upgrade, and said to be the token's fault.
    let wrong = agent_config(&cloud.url(), "not-the-token", "intruder");
    let error = tunnel::connection::dial(&wrong, ScriptedNotes::new("x")).await.expect_err("refused");
    assert_eq!(error, TunnelError::Unauthorized(401));
    assert!(error.is_refused() && !error.is_fatal());
    assert!(error.to_string().contains("AGENT_TOKEN"), "{error}");

    match raw_client(&cloud.url(), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a connection without a token must be refused, got {other:?}"),
    }
    assert_eq!(cloud.hub.agents().len(), 1, "refused connections never count as agents");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_large_replies_cross_the_tunnel_whole() {
    let cloud = Cloud::start(HEARTBEAT).await;
    // 100 KB of context: more than three 32 KB frames, less than one 128 KB message.
    let agent =
        spawn_agent(agent_config(&cloud.url(), TOKEN, "laptop"), ScriptedNotes::with("big", Duration::ZERO, 100_000));
    cloud.until_live(1).await;
    let reply = cloud.hub.search(&question("what is big?"), Duration::from_secs(5)).await.unwrap();
    assert!(reply.context.len() >= 100_000 && !reply.context.ends_with(TRIMMED_MARKER));
    assert!(reply.context.contains("About: what is big?"));
    assert_eq!(reply.results[0].source, "notes/big.md");
    agent.abort();

    // 300 KB does not fit one message: the agent trims it instead of breaking the connection.
    let agent =
        spawn_agent(agent_config(&cloud.url(), TOKEN, "huge"), ScriptedNotes::with("huge", Duration::ZERO, 300_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    cloud.until_live(1).await;
    let reply = cloud.hub.search(&question("what is huge?"), Duration::from_secs(5)).await.unwrap();
    assert!(reply.context.ends_with(TRIMMED_MARKER));
    assert!(reply.context.len() < protocol::limits::MAX_MESSAGE_BYTES);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_push_context_for_the_offline_fallback() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let agent = spawn_agent(agent_config(&cloud.url(), TOKEN, "laptop"), ScriptedNotes::new("laptop"));
    cloud.until_live(1).await;
    let now = cloud_fn::clock::Clock::now(&cloud_fn::clock::SystemClock);
    for _ in 0..100 {
        if let Some(cached) = cloud.store.get_context("ai效率", now).await.unwrap() {
            assert_eq!(cached.context, "[1] pushed context for AI效率");
            assert_eq!(cached.sources, vec!["notes/laptop.md".to_owned()]);
            agent.abort();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent never pushed its context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_agents_live_and_silence_expires_them() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let agent = spawn_agent(agent_config(&cloud.url(), TOKEN, "beating"), ScriptedNotes::new("beating"));
    let mut silent = raw_client(&cloud.url(), Some(TOKEN)).await.unwrap();
    say_hello(&mut silent, "asleep").await;
    cloud.until_live(2).await;

    // Two heartbeat intervals later only the agent that kept beating is live.
    tokio::time::sleep(HEARTBEAT * 3).await;
    let live: Vec<String> = cloud.hub.agents().into_iter().map(|agent| agent.agent_id).collect();
    assert_eq!(live, vec!["beating".to_owned()]);
    assert_eq!(next_cloud_message(&mut silent).await, None, "the cloud closes a silent connection");
    assert_eq!(cloud.hub.status().await.live_agents, 1);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_comes_back_by_itself_after_the_cloud_restarts() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let agent = spawn_agent(agent_config(&cloud.url(), TOKEN, "laptop"), ScriptedNotes::new("laptop"));
    cloud.until_live(1).await;
    let address = cloud.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cloud = Cloud::start_on(address, HEARTBEAT).await;
    cloud.until_live(1).await;
    assert!(cloud.hub.search(&question("back?"), Duration::from_secs(5)).await.is_ok());
    assert!(!agent.is_finished(), "the agent keeps running; only fatal errors stop it");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_connections_loses_no_request() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let mut config = agent_config(&cloud.url(), TOKEN, "laptop");
    config.supervisor.max_connection_age = Duration::from_millis(400);
    let agent = spawn_agent(config, ScriptedNotes::with("laptop", Duration::from_millis(20), 200));
    cloud.until_live(1).await;
    let hub = cloud.hub.clone();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..4 {
        let hub = hub.clone();
        workers.push(tokio::spawn(async move {
            let mut answered = 0;
            while started.elapsed() < Duration::from_secs(2) {
                let result = hub.search(&question(&format!("q{worker}")), Duration::from_secs(3)).await;
                assert!(result.is_ok(), "a request was lost during rotation: {result:?}");
                answered += 1;
            }
            answered
        }));
    }
    let mut answered = 0;
    for worker in workers {
        answered += worker.await.unwrap();
    }
    assert!(answered > 20, "{answered}");
    assert!(hub.connections_accepted() >= 4, "rotated {} times", hub.connections_accepted() - 1);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_agents_dies_mid_request_the_other_answers() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let desktop = spawn_agent(agent_config(&cloud.url(), TOKEN, "desktop"), ScriptedNotes::new("desktop"));
    cloud.until_live(1).await;
    let mut killed = 0;
    for _ in 0..30 {
        // A laptop that takes a request and then vanishes (lid closed, process killed).
        let mut laptop = raw_client(&cloud.url(), Some(TOKEN)).await.unwrap();
        say_hello(&mut laptop, "laptop").await;
        cloud.until_live(2).await;
        let (took, took_it) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Some(CloudMessage::Request(_)) = next_cloud_message(&mut laptop).await {
                let _ = took.send(());
            }
            drop(laptop);
        });
        let started = Instant::now();
        let reply = cloud.hub.search(&question("who answers?"), Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.results[0].source, "notes/desktop.md");
        if took_it.await.is_ok() {
            killed += 1;
            assert!(started.elapsed() < Duration::from_secs(2), "failover waited {:?}", started.elapsed());
        }
        cloud.until_live(1).await;
        if killed >= 2 {
            desktop.abort();
            return;
        }
    }
    panic!("the hub never picked the laptop in 30 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_get_errors_not_crashes() {
    let cloud = Cloud::start(HEARTBEAT).await;

    // A first message that is not `hello` is refused.
    let mut rude = raw_client(&cloud.url(), Some(TOKEN)).await.unwrap();
    rude.send(Message::text("{\"action\":\"heartbeat\",\"v\":1,\"seq\":1}")).await.unwrap();
    assert!(matches!(next_cloud_message(&mut rude).await, Some(CloudMessage::Error(_))));
    assert_eq!(next_cloud_message(&mut rude).await, None);

    let mut client = raw_client(&cloud.url(), Some(TOKEN)).await.unwrap();
    say_hello(&mut client, "clumsy").await;
    for bad in [Message::text("not json"), Message::text("{\"v\":1,\"action\":\"dance\"}"), Message::binary(vec![1, 2])]
    {
        client.send(bad).await.unwrap();
        match next_cloud_message(&mut client).await {
            Some(CloudMessage::Error(error)) => assert!(!error.message.is_empty()),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }
    assert_eq!(cloud.hub.agents().len(), 1, "bad messages do not cost the connection");

    // Over API Gateway's 128 KB message limit: the connection is closed, as API Gateway does.
    let oversized = format!("{{\"v\":1,\"action\":\"heartbeat\",\"seq\":1,\"pad\":\"{}\"}}", "x".repeat(200_000));
    let _ = client.send(Message::text(oversized)).await;
    assert_eq!(next_cloud_message(&mut client).await, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(cloud.hub.agents().is_empty());
    assert!(!cloud.hub.is_live().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_runs_out_the_deadline_and_the_cloud_falls_back() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let agent = spawn_agent(
        agent_config(&cloud.url(), TOKEN, "slow"),
        ScriptedNotes::with("slow", Duration::from_secs(2), 100),
    );
    cloud.until_live(1).await;
    let started = Instant::now();
    let error = cloud.hub.search(&question("anyone?"), Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(error, LinkError::Timeout(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_millis(800), "{:?}", started.elapsed());
    contract::searches_respect_their_deadline(cloud.hub.as_ref(), Duration::from_millis(300)).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_configured_root() {
    let TlsCloud { plain, cert_file, url, server, dir: _dir, .. } = TlsCloud::start(HEARTBEAT).await;

    // The public roots do not know this certificate: the dial fails (and would be retried).
    let untrusted = TunnelConfig::new(&url, Secret::new(TOKEN), "untrusting".into(), None).unwrap();
    let error = tunnel::connection::dial(&untrusted, ScriptedNotes::new("x")).await.unwrap_err();
    assert!(matches!(error, TunnelError::Unreachable(_)) && !error.is_fatal(), "{error}");

    let trusted = TunnelConfig::new(&url, Secret::new(TOKEN), "trusting".into(), Some(&cert_file)).unwrap();
    let agent = tokio::spawn(tunnel::run(trusted, ScriptedNotes::new("tls"), std::future::pending()));
    plain.until_live(1).await;
    let reply = plain.hub.search(&question("secure?"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.results[0].source, "notes/tls.md");
    agent.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_answers_the_requests_in_flight_before_it_leaves() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let notes = ScriptedNotes::with("slow", Duration::from_millis(600), 100);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(tunnel::run(agent_config(&cloud.url(), TOKEN, "laptop"), notes, async {
        let _ = stopped.await;
    }));
    cloud.until_live(1).await;
    let hub = cloud.hub.clone();
    let asked = tokio::spawn(async move { hub.search(&question("in flight"), Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    let reply = asked.await.unwrap().expect("the request in flight was answered");
    assert!(reply.context.contains("About: in flight"));
    let ended = tokio::time::timeout(Duration::from_secs(10), agent).await.expect("the agent stopped").unwrap();
    assert_eq!(ended, Ok(()), "a requested stop is not an error");
    cloud.until_live(0).await;
}
