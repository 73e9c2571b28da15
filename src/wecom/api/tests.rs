//! Client tests against a tiny axum stub of WeCom on 127.0.0.1:0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::TimeZone;
use serde_json::{json, Value};
use tokio::sync::Barrier;

use super::*;
use crate::clock::ManualClock;

const CORP: &str = "wwTESTCORP";
const SECRET: &str = "app-secret";

/// What the stub's `message/send` does with a request carrying a valid token.
#[derive(Clone)]
enum SendBehaviour {
    Ok,
    Errcode(i64),
    HttpStatus(u16),
    Hang,
    Garbage,
}

struct Stub {
    gettoken_calls: AtomicUsize,
    gettoken_fails: AtomicBool,
    send_calls: AtomicUsize,
    issued: AtomicUsize,
    /// The token the stub currently accepts; `None` means every token is expired.
    valid_token: Mutex<Option<String>>,
    expires_in: u64,
    behaviour: Mutex<SendBehaviour>,
    /// When set, requests with a stale token wait here until all have arrived.
    stale_barrier: Mutex<Option<Arc<Barrier>>>,
    last_send_body: Mutex<Option<Value>>,
}

impl Stub {
    fn new(expires_in: u64) -> Arc<Self> {
        Arc::new(Self {
            gettoken_calls: AtomicUsize::new(0),
            gettoken_fails: AtomicBool::new(false),
            send_calls: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            valid_token: Mutex::new(None),
            expires_in,
            behaviour: Mutex::new(SendBehaviour::Ok),
            stale_barrier: Mutex::new(None),
            last_send_body: Mutex::new(None),
        })
    }

    fn gettokens(&self) -> usize {
        self.gettoken_calls.load(Ordering::SeqCst)
    }

    fn expire_tokens(&self) {
        *self.valid_token.lock().unwrap() = None;
    }
}

async fn gettoken(
    State(stub): State<Arc<Stub>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    stub.gettoken_calls.fetch_add(1, Ordering::SeqCst);
    if stub.gettoken_fails.load(Ordering::SeqCst) {
        return Json(json!({"errcode": -1, "errmsg": "system busy"}));
    }
    if q.get("corpid").map(String::as_str) != Some(CORP) {
        return Json(json!({"errcode": 40013, "errmsg": "invalid corpid"}));
    }
    if q.get("corpsecret").map(String::as_str) != Some(SECRET) {
        return Json(json!({"errcode": 40001, "errmsg": "invalid secret"}));
    }
    let n = stub.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("tok-{n}");
    *stub.valid_token.lock().unwrap() = Some(token.clone());
    Json(
        json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": stub.expires_in}),
    )
}

async fn message_send(
    State(stub): State<Arc<Stub>>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    stub.send_calls.fetch_add(1, Ordering::SeqCst);
    let valid = stub.valid_token.lock().unwrap().clone();
    if q.get("access_token") != valid.as_ref() {
        let barrier = stub.stale_barrier.lock().unwrap().clone();
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        return Json(json!({"errcode": 42001, "errmsg": "access_token expired"})).into_response();
    }
    *stub.last_send_body.lock().unwrap() = Some(body);
    let behaviour = stub.behaviour.lock().unwrap().clone();
    match behaviour {
        SendBehaviour::Ok => {
            Json(json!({"errcode": 0, "errmsg": "ok", "msgid": "MSG1"})).into_response()
        }
        SendBehaviour::Errcode(code) => {
            Json(json!({"errcode": code, "errmsg": "stub error"})).into_response()
        }
        SendBehaviour::HttpStatus(status) => StatusCode::from_u16(status).unwrap().into_response(),
        SendBehaviour::Hang => std::future::pending::<Response>().await,
        SendBehaviour::Garbage => "<html>proxy error</html>".into_response(),
    }
}

async fn groupchat_list(Json(body): Json<Value>) -> Json<Value> {
    // Three pages: "" -> "c1" -> "c2" -> done.
    let cursor = body.get("cursor").and_then(Value::as_str).unwrap_or("");
    let (chat, next) = match cursor {
        "" => ("wr1", "c1"),
        "c1" => ("wr2", "c2"),
        _ => ("wr3", ""),
    };
    Json(
        json!({"errcode": 0, "errmsg": "ok", "group_chat_list": [{"chat_id": chat, "status": 0}], "next_cursor": next}),
    )
}

async fn spawn_stub(stub: Arc<Stub>) -> String {
    let app = Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(message_send))
        .route(
            "/cgi-bin/externalcontact/groupchat/list",
            post(groupchat_list),
        )
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/cgi-bin/")
}

fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap()
}

async fn client_for(stub: &Arc<Stub>, clock: Arc<ManualClock>) -> ApiClient {
    let base = spawn_stub(stub.clone()).await;
    let config = ApiConfig::new(base, CORP).with_timeout(Duration::from_millis(300));
    ApiClient::new(config, clock).unwrap()
}

fn text(content: &str) -> AppMessage {
    AppMessage::new(
        "zhangsan",
        1000002,
        AppMessageContent::Text {
            text: TextContent::new(content),
        },
    )
}

fn secret() -> Secret {
    Secret::new(SECRET)
}

/// A client of `stub` whose clock stands at [`start_time`].
async fn client_at_start(stub: &Arc<Stub>) -> ApiClient {
    client_for(stub, ManualClock::new(start_time())).await
}

/// `message/send` of the text `content` to zhangsan.
async fn send_text(client: &ApiClient, content: &str) -> Result<SendMessageResponse, ApiError> {
    client.send_message(&secret(), &text(content)).await
}

#[tokio::test]
async fn successful_send_decodes_msgid_and_sends_duplicate_check() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    let response = send_text(&client, "hi").await.unwrap();
    assert_eq!(response.msgid.as_deref(), Some("MSG1"));
    let body = stub.last_send_body.lock().unwrap().clone().unwrap();
    assert_eq!(body["enable_duplicate_check"], 1);
    assert_eq!(body["msgtype"], "text");
    assert_eq!(body["text"]["content"], "hi");
}

#[tokio::test]
async fn wecom_errcodes_decode_into_typed_classified_errors() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    for (code, class) in [
        (60020, ErrorClass::Config),
        (81013, ErrorClass::Drop),
        (-1, ErrorClass::Retry),
        (
            45009,
            ErrorClass::BackOff {
                wait: Duration::from_secs(60),
            },
        ),
    ] {
        *stub.behaviour.lock().unwrap() = SendBehaviour::Errcode(code);
        let error = send_text(&client, "hi").await.unwrap_err();
        assert_eq!(error.errcode(), Some(code));
        assert_eq!(error.class(), class, "errcode {code}");
    }
}

#[tokio::test]
async fn http_500_garbage_and_hang_are_retryable_transport_errors() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;

    *stub.behaviour.lock().unwrap() = SendBehaviour::HttpStatus(500);
    let error = send_text(&client, "hi").await.unwrap_err();
    assert_eq!(error, ApiError::HttpStatus { status: 500 });
    assert_eq!(error.class(), ErrorClass::Retry);

    *stub.behaviour.lock().unwrap() = SendBehaviour::Garbage;
    let error = send_text(&client, "hi").await.unwrap_err();
    assert!(matches!(error, ApiError::Decode(_)), "{error:?}");

    *stub.behaviour.lock().unwrap() = SendBehaviour::Hang;
    let error = send_text(&client, "hi").await.unwrap_err();
    assert_eq!(error, ApiError::Timeout);
    assert_eq!(error.class(), ErrorClass::Retry);
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_from_gettoken() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    let error = client
        .send_message(&Secret::new("wrong"), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(40001));
    assert_eq!(error.class(), ErrorClass::Config);
    assert_eq!(stub.send_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn token_is_cached_between_calls() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    for _ in 0..5 {
        send_text(&client, "hi").await.unwrap();
    }
    assert_eq!(stub.gettokens(), 1);
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_call_retried_once() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    send_text(&client, "first").await.unwrap();
    stub.expire_tokens();
    send_text(&client, "second").await.unwrap();
    assert_eq!(stub.gettokens(), 2);
    assert_eq!(stub.send_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_token_rejected_twice_is_not_retried_a_third_time() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    send_text(&client, "first").await.unwrap();
    // Every freshly issued token is rejected as well.
    *stub.behaviour.lock().unwrap() = SendBehaviour::Errcode(40014);
    stub.expire_tokens();
    let error = send_text(&client, "x").await.unwrap_err();
    assert!(error.is_token_rejected());
    assert_eq!(stub.gettokens(), 2);
    assert_eq!(stub.send_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_concurrent_42001s_causes_one_gettoken() {
    const CALLS: usize = 20;
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    send_text(&client, "warm-up").await.unwrap();
    assert_eq!(stub.gettokens(), 1);

    // All CALLS requests carry the now-stale token and are answered 42001
    // only once every one of them has arrived: a true burst.
    stub.expire_tokens();
    *stub.stale_barrier.lock().unwrap() = Some(Arc::new(Barrier::new(CALLS)));
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send_text(&client, &format!("m{i}")).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        stub.gettokens(),
        2,
        "exactly one refresh for the whole burst"
    );
    assert_eq!(stub.send_calls.load(Ordering::SeqCst), 1 + 2 * CALLS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_gettoken() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(
            async move { client.access_token(&secret()).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(stub.gettokens(), 1);
}

#[tokio::test]
async fn token_is_refreshed_proactively_at_ninety_percent_of_its_lifetime() {
    let stub = Stub::new(100);
    let clock = ManualClock::new(start_time());
    let client = client_for(&stub, clock.clone()).await;
    let first = client.access_token(&secret()).await.unwrap();
    clock.advance(chrono::Duration::seconds(89));
    assert_eq!(client.access_token(&secret()).await.unwrap(), first);
    assert_eq!(stub.gettokens(), 1);
    clock.advance(chrono::Duration::seconds(1));
    let second = client.access_token(&secret()).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(stub.gettokens(), 2);
}

#[tokio::test]
async fn failed_proactive_refresh_keeps_a_still_valid_token() {
    let stub = Stub::new(100);
    let clock = ManualClock::new(start_time());
    let client = client_for(&stub, clock.clone()).await;
    let first = client.access_token(&secret()).await.unwrap();
    stub.gettoken_fails.store(true, Ordering::SeqCst);

    clock.advance(chrono::Duration::seconds(95));
    assert_eq!(client.access_token(&secret()).await.unwrap(), first);
    assert_eq!(stub.gettokens(), 2, "the refresh was attempted");

    clock.advance(chrono::Duration::seconds(10));
    let error = client.access_token(&secret()).await.unwrap_err();
    assert_eq!(error.errcode(), Some(-1));
}

#[tokio::test]
async fn groupchat_list_all_follows_cursors_to_the_end() {
    let stub = Stub::new(7200);
    let client = client_at_start(&stub).await;
    let chats = client.groupchat_list_all(&secret(), 0, &[]).await.unwrap();
    let ids: Vec<_> = chats.iter().map(|c| c.chat_id.as_str()).collect();
    assert_eq!(ids, ["wr1", "wr2", "wr3"]);
}

#[tokio::test]
async fn errors_and_debug_output_never_contain_tokens_or_secrets() {
    // Nothing listens on this port once the listener is dropped.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = ApiConfig::new(format!("http://{addr}/cgi-bin/"), CORP);
    let client = ApiClient::new(config, ManualClock::new(start_time())).unwrap();
    let error = send_text(&client, "hi").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Retry);
    assert!(!error.to_string().contains(SECRET), "{error}");
    assert!(!format!("{error:?}").contains(SECRET));

    assert!(!format!("{:?}", secret()).contains(SECRET));
    assert!(!format!("{:?}", AccessToken("tok-secret".into())).contains("tok-secret"));
}
