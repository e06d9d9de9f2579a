//! The API Gateway WebSocket emulator behaves like API Gateway towards real WebSocket clients,
//! the Lambda handlers behind it, and the real `@connections` SDK client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use testkit::{ApiGatewayEmulator, EmulatorOptions, WebSocketBackend};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(3);

/// The Lambda functions of the tests: record every call; the authorizer allows exactly
/// `Authorization: Bearer good`; `$connect` answers `connect_status`.
struct Recorder {
    calls: Mutex<Vec<String>>,
    authorizations: Mutex<Vec<ApiGatewayCustomAuthorizerRequestTypeRequest>>,
    events: Mutex<Vec<ApiGatewayWebsocketProxyRequest>>,
    connect_status: AtomicI64,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            connect_status: AtomicI64::new(200),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits for an event on `route` from `connection_id` (any connection if None) matching
    /// `also`.
    async fn event(
        &self,
        route: &str,
        connection_id: Option<&str>,
        also: impl Fn(&ApiGatewayWebsocketProxyRequest) -> bool,
    ) -> ApiGatewayWebsocketProxyRequest {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|event| {
                    event.request_context.route_key.as_deref() == Some(route)
                        && connection_id.is_none_or(|id| event.request_context.connection_id.as_deref() == Some(id))
                        && also(event)
                })
                .cloned();
            if let Some(event) = found {
                return event;
            }
            assert!(Instant::now() < deadline, "no {route} event for {connection_id:?}; calls: {:?}", self.calls());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait::async_trait]
impl WebSocketBackend for Recorder {
    async fn authorize(
        &self,
        request: ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> ApiGatewayCustomAuthorizerResponse {
        self.calls.lock().unwrap().push("authorize".to_owned());
        let allowed = request.headers.get("authorization").is_some_and(|value| value == "Bearer good");
        let response = json!({
            "principalId": "user-1",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": "execute-api:Invoke",
                    "Effect": if allowed { "Allow" } else { "Deny" },
                    "Resource": request.method_arn,
                }],
            },
            "context": { "agent": "a1" },
        });
        self.authorizations.lock().unwrap().push(request);
        serde_json::from_value(response).unwrap()
    }

    async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let route = event.request_context.route_key.clone().unwrap_or_default();
        self.calls.lock().unwrap().push(route.clone());
        self.events.lock().unwrap().push(event);
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = if route == "$connect" { self.connect_status.load(Ordering::SeqCst) } else { 200 };
        response
    }
}

async fn start(options: EmulatorOptions) -> (ApiGatewayEmulator, Arc<Recorder>) {
    let recorder = Recorder::new();
    let emulator = ApiGatewayEmulator::start(options, recorder.clone()).await.unwrap();
    (emulator, recorder)
}

/// Dials the emulator like the agent would, with `Authorization: Bearer {token}` if given.
/// The client refuses frames over 32 KiB, so whole large messages prove fragmentation.
async fn dial(emulator: &ApiGatewayEmulator, token: Option<&str>) -> Result<Client, WsError> {
    let mut request = format!("{}?agent=a1&note=two%20words", emulator.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("user-agent", "testkit-client/1".parse().unwrap());
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let config = WebSocketConfig::default().max_frame_size(Some(32 * 1024)).max_message_size(Some(1 << 20));
    connect_async_with_config(request, Some(config), false).await.map(|(client, _)| client)
}

/// Dials with the good token and returns the new connection's id.
async fn connect(emulator: &ApiGatewayEmulator) -> (Client, String) {
    let before = emulator.connection_ids();
    let client = dial(emulator, Some("good")).await.unwrap();
    let id = emulator.connection_ids().into_iter().find(|id| !before.contains(id)).expect("connection listed");
    (client, id)
}

fn refused_status(result: Result<Client, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the upgrade to be refused"),
    }
}

async fn next_text(client: &mut Client) -> String {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame, then hangs up.
async fn expect_close(mut client: Client) -> CloseFrame {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn sdk_client(emulator: &ApiGatewayEmulator) -> aws_sdk_apigatewaymanagement::Client {
    aws_sdk_apigatewaymanagement::Client::new(&testkit::aws::sdk_config(&emulator.management_url()))
}

fn pattern(bytes: usize) -> String {
    (0..bytes).map(|index| char::from(b'a' + (index % 26) as u8)).collect()
}

#[tokio::test]
async fn connects_through_the_authorizer_and_routes_messages_on_action() {
    let (emulator, recorder) = start(EmulatorOptions::default()).await;
    let (mut client, id) = connect(&emulator).await;
    assert_eq!(emulator.connection_ids(), vec![id.clone()]);
    assert!(id.ends_with('=') && id.len() == 13, "id {id} looks like API Gateway's");
    assert_eq!(recorder.calls(), ["authorize", "$connect"]);

    let authorization = recorder.authorizations.lock().unwrap()[0].clone();
    assert_eq!(authorization.type_.as_deref(), Some("REQUEST"));
    assert_eq!(
        authorization.method_arn.as_deref(),
        Some("arn:aws:execute-api:us-east-1:123456789012:emulated1/test/$connect")
    );
    assert_eq!(authorization.headers["authorization"], "Bearer good");
    assert_eq!(authorization.query_string_parameters.first("agent"), Some("a1"));

    let connect = recorder.event("$connect", Some(&id), |_| true).await;
    let context = &connect.request_context;
    assert_eq!(context.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(context.stage.as_deref(), Some("test"));
    assert_eq!(context.apiid.as_deref(), Some("emulated1"));
    assert_eq!(context.message_direction.as_deref(), Some("IN"));
    assert_eq!(context.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(context.domain_name.as_deref().is_some_and(|domain| emulator.ws_url().contains(domain)));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - context.connected_at).abs() < 10_000, "connectedAt is epoch ms");
    assert!(context.request_time_epoch >= context.connected_at);
    assert_eq!(connect.headers["authorization"], "Bearer good");
    assert_eq!(connect.headers["user-agent"], "testkit-client/1");
    assert!(connect.multi_value_headers.contains_key("sec-websocket-key"));
    assert_eq!(connect.query_string_parameters.first("note"), Some("two words"));
    assert_eq!(context.authorizer.fields["principalId"], "user-1");
    assert!(connect.body.is_none());

    let hello = r#"{"action":"hello","agent":"a1","nested":{"action":"reply"}}"#;
    client.send(Message::text(hello)).await.unwrap();
    let message = recorder.event("hello", Some(&id), |_| true).await;
    assert_eq!(message.request_context.event_type.as_deref(), Some("MESSAGE"));
    assert_eq!(message.body.as_deref(), Some(hello));
    assert!(message.request_context.message_id.is_some());
    assert_eq!(message.request_context.connected_at, context.connected_at);
    assert_eq!(message.request_context.authorizer.fields["agent"], "a1", "authorizer context reaches every event");
    assert!(message.headers.is_empty(), "only $connect carries headers");

    client.send(Message::text(r#"{"action":"unknown"}"#)).await.unwrap();
    client.send(Message::text("not json")).await.unwrap();
    recorder.event("$default", Some(&id), |event| event.body.as_deref() == Some(r#"{"action":"unknown"}"#)).await;
    recorder.event("$default", Some(&id), |event| event.body.as_deref() == Some("not json")).await;
    assert_eq!(emulator.delivered_routes(), ["$connect", "hello", "$default", "$default"]);

    // Binary frames cannot be routed on `action`: `$default`, base64-encoded.
    client.send(Message::binary(vec![0xff, 0x00, b'a'])).await.unwrap();
    recorder
        .event("$default", Some(&id), |event| event.is_base64_encoded && event.body.as_deref() == Some("/wBh"))
        .await;

    client.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    let disconnect = recorder.event("$disconnect", Some(&id), |_| true).await;
    assert_eq!(disconnect.request_context.event_type.as_deref(), Some("DISCONNECT"));
    assert_eq!(disconnect.request_context.disconnect_status_code, Some(1000));
    assert_eq!(disconnect.request_context.disconnect_reason.as_deref(), Some("bye"));
    assert!(emulator.connection_ids().is_empty());
    assert_eq!(emulator.delivered_routes().last().map(String::as_str), Some("$disconnect"));
}

#[tokio::test]
async fn refuses_upgrades_the_authorizer_or_connect_route_refuses() {
    let (emulator, recorder) = start(EmulatorOptions::default()).await;

    assert_eq!(refused_status(dial(&emulator, None).await), 401);
    assert!(recorder.calls().is_empty(), "no identity source: the authorizer is not called");

    assert_eq!(refused_status(dial(&emulator, Some("bad")).await), 403);
    assert_eq!(recorder.calls(), ["authorize"], "a denied client never reaches $connect");

    recorder.connect_status.store(500, Ordering::SeqCst);
    assert_eq!(refused_status(dial(&emulator, Some("good")).await), 500);
    assert_eq!(recorder.calls(), ["authorize", "authorize", "$connect"]);
    assert!(emulator.connection_ids().is_empty());

    recorder.connect_status.store(200, Ordering::SeqCst);
    let (_client, _id) = connect(&emulator).await;
    assert_eq!(emulator.delivered_routes(), ["$connect", "$connect"], "no $disconnect for a refused $connect");
}

#[tokio::test]
async fn serves_the_connections_api_to_the_real_sdk() {
    let (emulator, recorder) = start(EmulatorOptions::default()).await;
    let (mut client, id) = connect(&emulator).await;
    let sdk = sdk_client(&emulator);

    sdk.post_to_connection().connection_id(&id).data(Blob::new("hello agent")).send().await.unwrap();
    assert_eq!(next_text(&mut client).await, "hello agent");

    // Over the 32 KiB frame limit: the client only accepts it fragmented into ≤ 32 KiB frames.
    let large = pattern(100 * 1024);
    sdk.post_to_connection().connection_id(&id).data(Blob::new(large.clone())).send().await.unwrap();
    assert_eq!(next_text(&mut client).await, large);

    let too_large = sdk.post_to_connection().connection_id(&id).data(Blob::new(pattern(200 * 1024))).send().await;
    assert!(too_large.unwrap_err().into_service_error().is_payload_too_large_exception());

    let description = sdk.get_connection().connection_id(&id).send().await.unwrap();
    let connected_at = description.connected_at().expect("connectedAt");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - connected_at.secs()).abs() < 10);
    assert!(description.last_active_at().is_some());
    let identity = description.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("testkit-client/1"));

    // Unsigned requests are refused the way AWS refuses them.
    let unsigned = reqwest::Client::new()
        .post(format!("{}/@connections/{id}", emulator.management_url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    assert_eq!(unsigned.headers()["x-amzn-errortype"], "ForbiddenException");

    sdk.delete_connection().connection_id(&id).send().await.unwrap();
    assert_eq!(u16::from(expect_close(client).await.code), 1000);
    let disconnect = recorder.event("$disconnect", Some(&id), |_| true).await;
    assert_eq!(disconnect.request_context.disconnect_status_code, Some(1000));
    assert!(emulator.connection_ids().is_empty());

    let gone = sdk.post_to_connection().connection_id(&id).data(Blob::new("late")).send().await;
    assert!(gone.unwrap_err().into_service_error().is_gone_exception());
    let unknown = sdk.post_to_connection().connection_id("NoSuchConn12=").data(Blob::new("x")).send().await;
    assert!(unknown.unwrap_err().into_service_error().is_gone_exception());
    let unknown = sdk.get_connection().connection_id("NoSuchConn12=").send().await;
    assert!(unknown.unwrap_err().into_service_error().is_gone_exception());
    let unknown = sdk.delete_connection().connection_id("NoSuchConn12=").send().await;
    assert!(unknown.unwrap_err().into_service_error().is_gone_exception());
}

#[tokio::test]
async fn closes_connections_that_send_frames_or_messages_over_the_quota() {
    let (emulator, recorder) = start(EmulatorOptions::default()).await;

    // A fragmented message within both quotas is reassembled and routed as one.
    let (mut client, id) = connect(&emulator).await;
    let padded = format!(r#"{{"action":"hello","pad":"{}"}}"#, pattern(100 * 1024));
    let chunks: Vec<&[u8]> = padded.as_bytes().chunks(30 * 1024).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        let opcode = if index == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        client.feed(Message::Frame(Frame::message(chunk.to_vec(), opcode, index + 1 == chunks.len()))).await.unwrap();
    }
    client.flush().await.unwrap();
    let message = recorder.event("hello", Some(&id), |_| true).await;
    assert_eq!(message.body.as_deref(), Some(padded.as_str()));

    // One frame over 32 KiB.
    client.send(Message::text(pattern(40 * 1024))).await.unwrap();
    assert_eq!(u16::from(expect_close(client).await.code), 1009);
    let disconnect = recorder.event("$disconnect", Some(&id), |_| true).await;
    assert_eq!(disconnect.request_context.disconnect_status_code, Some(1009));

    // Small frames adding up to more than 128 KiB.
    let (mut client, id) = connect(&emulator).await;
    let chunk = pattern(30 * 1024);
    for index in 0..5 {
        let opcode = if index == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        client.feed(Message::Frame(Frame::message(chunk.clone(), opcode, index == 4))).await.unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(u16::from(expect_close(client).await.code), 1009);
    let disconnect = recorder.event("$disconnect", Some(&id), |_| true).await;
    assert_eq!(disconnect.request_context.disconnect_status_code, Some(1009));
    assert!(emulator.connection_ids().is_empty());
}

#[tokio::test]
async fn closes_idle_and_old_connections() {
    let options = EmulatorOptions {
        idle_timeout: Duration::from_millis(300),
        max_connection_age: Duration::from_millis(600),
        ..EmulatorOptions::default()
    };
    let (emulator, recorder) = start(options).await;
    let (idle_client, idle_id) = connect(&emulator).await;
    let (mut busy_client, busy_id) = connect(&emulator).await;
    let started = Instant::now();

    let idle = async {
        let frame = expect_close(idle_client).await;
        (frame, started.elapsed())
    };
    // Heartbeats every 100 ms keep the idle timeout away, not the age limit.
    let busy = async {
        loop {
            tokio::select! {
                incoming = busy_client.next() => match incoming {
                    Some(Ok(Message::Close(Some(frame)))) => break (frame, started.elapsed()),
                    other => panic!("expected a close frame, got {other:?}"),
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    busy_client.send(Message::text(r#"{"action":"heartbeat"}"#)).await.unwrap();
                }
            }
        }
    };
    let ((idle_frame, idle_after), (busy_frame, busy_after)) = tokio::join!(idle, busy);
    drop(busy_client);

    assert_eq!(u16::from(idle_frame.code), 1001);
    assert!(idle_after >= Duration::from_millis(250), "closed after {idle_after:?}");
    assert!(idle_after < busy_after, "the idle one goes first: {idle_after:?} vs {busy_after:?}");
    assert_eq!(u16::from(busy_frame.code), 1001);
    assert!(busy_after >= Duration::from_millis(550), "closed after {busy_after:?}");

    let idle_disconnect = recorder.event("$disconnect", Some(&idle_id), |_| true).await;
    assert_eq!(idle_disconnect.request_context.disconnect_status_code, Some(1001));
    assert_eq!(idle_disconnect.request_context.disconnect_reason.as_deref(), Some("Idle timeout reached"));
    let busy_disconnect = recorder.event("$disconnect", Some(&busy_id), |_| true).await;
    assert_eq!(busy_disconnect.request_context.disconnect_status_code, Some(1001));
    assert_eq!(busy_disconnect.request_context.disconnect_reason.as_deref(), Some("Connection duration limit reached"));
    recorder.event("heartbeat", Some(&busy_id), |_| true).await;
}

#[tokio::test]
async fn kill_drops_a_connection_and_dropping_the_emulator_closes_the_rest() {
    let (emulator, recorder) = start(EmulatorOptions::default()).await;
    let (mut killed, killed_id) = connect(&emulator).await;
    let (survivor, _survivor_id) = connect(&emulator).await;

    emulator.kill(&killed_id);
    match tokio::time::timeout(WAIT, killed.next()).await.expect("the connection drops in time") {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("a killed connection sends nothing, got {message:?}"),
    }
    let disconnect = recorder.event("$disconnect", Some(&killed_id), |_| true).await;
    assert_eq!(disconnect.request_context.disconnect_status_code, Some(1006));
    assert!(!emulator.connection_ids().contains(&killed_id));

    drop(emulator);
    assert_eq!(u16::from(expect_close(survivor).await.code), 1001);
}
