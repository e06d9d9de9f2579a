//! What the agent reports about its tunnel (for `/stats` and `service status`), and what
//! `local-agent doctor` finds out about a cloud: token accepted or refused, TLS trusted or not,
//! nothing listening.

use std::time::Duration;

use local_agent::config::{CloudSection, Secret};
use local_agent::ops::doctor::{self, Status};
use local_agent::tunnel::{TunnelSnapshot, TunnelState};

use crate::support::*;

const HEARTBEAT: Duration = Duration::from_secs(1);

/// Polls `status` until `done` holds (or panics after 10 s).
async fn until(status: &local_agent::tunnel::TunnelStatus, done: impl Fn(&TunnelSnapshot) -> bool) -> TunnelSnapshot {
    for _ in 0..1000 {
        let snapshot = status.snapshot();
        if done(&snapshot) {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the tunnel status never got there: {:?}", status.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_reports_connection_heartbeats_and_losses() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let config = agent_config(&cloud.url(), TOKEN, "reporter");
    let status = config.status.clone();
    let agent = spawn_agent(config, ScriptedNotes::new("reporter"));
    cloud.until_live(1).await;
    let connected = until(&status, |s| s.connected && s.last_heartbeat.is_some()).await;
    assert_eq!(connected.connections, 1);
    assert!(connected.connected_since.is_some());

    let address = cloud.stop();
    let lost = until(&status, |s| !s.connected).await;
    assert!(lost.last_error.is_some(), "{lost:?}");
    assert_eq!(lost.connected_since, None);
    // Redials fail while the cloud is down, and say why.
    until(&status, |s| s.last_error.as_deref().is_some_and(|e| e.starts_with("cannot reach the cloud"))).await;

    let cloud = Cloud::start_on(address, HEARTBEAT).await;
    cloud.until_live(1).await;
    let back = until(&status, |s| s.connected).await;
    assert_eq!(back.connections, 2);
    agent.abort();

    // A refused token is not fatal: the tunnel says so and keeps retrying, slowly.
    let refused = agent_config(&cloud.url(), "not-the-token", "intruder");
    let refused_status = refused.status.clone();
    let retrying = tokio::spawn(local_agent::tunnel::run(refused, ScriptedNotes::new("x"), std::future::pending()));
    let snapshot = until(&refused_status, |s| s.state == TunnelState::Refused).await;
    assert!(!snapshot.connected && snapshot.refused_since.is_some());
    assert!(snapshot.last_error.as_deref().is_some_and(|e| e.contains("refused the agent token")), "{snapshot:?}");
    assert!(!retrying.is_finished(), "still retrying");
    retrying.abort();
}

fn cloud_section(url: &str, token: &str, ca_file: Option<std::path::PathBuf>) -> CloudSection {
    CloudSection { url: Some(url.into()), token: Some(Secret::new(token)), ca_file, ..CloudSection::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_tells_a_refused_token_from_an_unreachable_cloud() {
    let cloud = Cloud::start(HEARTBEAT).await;
    let checks = doctor::check_cloud(&cloud_section(&cloud.url(), TOKEN, None)).await;
    let summary: Vec<(&str, Status)> = checks.iter().map(|check| (check.name.as_str(), check.status)).collect();
    assert_eq!(summary, [("cloud-dns", Status::Ok), ("cloud-connect", Status::Ok)], "{checks:?}");
    assert!(cloud.hub.agents().is_empty(), "the probe never joins as an agent");

    let checks = doctor::check_cloud(&cloud_section(&cloud.url(), "not-the-token", None)).await;
    let connect = &checks[1];
    assert_eq!(connect.status, Status::Fail);
    assert_eq!(connect.detail, "the cloud refused the agent token (HTTP 401)");
    assert!(connect.fix.as_deref().unwrap().contains("AGENT_TOKEN"), "{connect:?}");

    let clock = doctor::check_clock(&[format!("http://{}/", cloud.address)]).await.unwrap();
    assert_eq!(clock.status, Status::Ok, "{clock:?}");

    let url = cloud.url();
    let _ = cloud.stop();
    let checks = doctor::check_cloud(&cloud_section(&url, TOKEN, None)).await;
    assert_eq!(checks[1].status, Status::Fail);
    assert!(checks[1].detail.starts_with("cannot reach the cloud"), "{:?}", checks[1]);
    assert!(checks[1].fix.as_deref().unwrap().contains(&url));

    let checks = doctor::check_cloud(&cloud_section("wss://no-such-host.invalid/agent", TOKEN, None)).await;
    assert_eq!((checks[0].name.as_str(), checks[0].status), ("cloud-dns", Status::Fail), "{checks:?}");
    assert_eq!(checks.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_points_an_untrusted_certificate_at_cloud_ca_file() {
    let TlsCloud { cert_file, url, port, server, dir: _dir, .. } = TlsCloud::start(HEARTBEAT).await;

    let checks = doctor::check_cloud(&cloud_section(&url, TOKEN, None)).await;
    assert_eq!(checks[1].status, Status::Fail, "{checks:?}");
    assert!(checks[1].detail.starts_with("TLS failed"), "{:?}", checks[1]);
    assert!(checks[1].fix.as_deref().unwrap().contains("CLOUD_CA_FILE"));

    let checks = doctor::check_cloud(&cloud_section(&url, TOKEN, Some(cert_file))).await;
    assert_eq!(checks[1].status, Status::Ok, "{checks:?}");
    assert!(checks[1].detail.starts_with("TLS and upgrade"), "{:?}", checks[1]);

    // The clock is read even from a server whose certificate is not trusted.
    let clock = doctor::check_clock(&[format!("https://localhost:{port}/")]).await.unwrap();
    assert_eq!(clock.status, Status::Ok, "{clock:?}");
    server.abort();
}
