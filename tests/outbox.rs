//! The outbox sender end to end against a small WeCom stub on 127.0.0.1:0:
//! real SQLite file, real HTTP, time moved by a manual clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use qunyun::clock::ManualClock;
use qunyun::jobs::outbox::{AppCredentials, OutboxSender, SenderSettings};
use qunyun::store::outbox::{self, Enqueued, NewOutboxMessage, OutboxRow, OutboxStatus, Route};
use qunyun::wecom::api::{ApiClient, ApiConfig, Secret};
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const CORP: &str = "wwTESTCORP";
const APP: &str = "ops";
const AGENT_ID: i64 = 1000002;

#[derive(Debug, Clone)]
enum Fault {
    /// Answer normally (to script faults for later requests).
    Pass,
    Errcode(i64),
    Http(u16),
    Hang,
}

#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    query: HashMap<String, String>,
    body: Value,
    at: DateTime<Utc>,
}

struct Stub {
    clock: Arc<ManualClock>,
    deliveries: Mutex<Vec<Delivery>>,
    requests: AtomicUsize,
    gettokens: AtomicUsize,
    valid_tokens: Mutex<HashSet<String>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Status the stub reports for every group of a mass message.
    mass_status: Mutex<i64>,
    hung: Notify,
    /// Seconds the shared clock moves on every delivered call (slow WeCom).
    advance_per_call: AtomicI64,
}

impl Stub {
    fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap().extend(faults);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    fn expire_tokens(&self) {
        self.valid_tokens.lock().unwrap().clear();
    }
}

async fn handle(
    State(stub): State<Arc<Stub>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches("/cgi-bin/").to_owned();
    if path == "gettoken" {
        let n = stub.gettokens.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}");
        stub.valid_tokens.lock().unwrap().insert(token.clone());
        return Json(
            json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}),
        )
        .into_response();
    }
    stub.requests.fetch_add(1, Ordering::SeqCst);
    let needs_token = !matches!(path.as_str(), "webhook/send" | "aibot/response");
    if needs_token {
        let token = query.get("access_token").cloned().unwrap_or_default();
        if !stub.valid_tokens.lock().unwrap().contains(&token) {
            return Json(json!({"errcode": 42001, "errmsg": "access_token expired"}))
                .into_response();
        }
    }
    let fault = stub.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Errcode(code)) => {
            return Json(json!({"errcode": code, "errmsg": "injected"})).into_response()
        }
        Some(Fault::Http(status)) => return StatusCode::from_u16(status).unwrap().into_response(),
        Some(Fault::Hang) => {
            stub.hung.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::Pass) | None => {}
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path == "externalcontact/get_groupmsg_send_result" {
        let status = *stub.mass_status.lock().unwrap();
        return Json(json!({"errcode": 0, "errmsg": "ok", "next_cursor": "",
            "send_list": [{"chat_id": "wrGROUP", "userid": body["userid"], "status": status}]}))
        .into_response();
    }
    let n = {
        let mut deliveries = stub.deliveries.lock().unwrap();
        deliveries.push(Delivery {
            path: path.clone(),
            query,
            body,
            at: stub.clock.now_value(),
        });
        deliveries.len()
    };
    let advance = stub.advance_per_call.load(Ordering::SeqCst);
    stub.clock.advance(chrono::Duration::seconds(advance));
    match path.as_str() {
        "message/send" => Json(json!({"errcode": 0, "errmsg": "ok", "msgid": format!("msg-{n}")})),
        "externalcontact/add_msg_template" => Json(
            json!({"errcode": 0, "errmsg": "ok", "msgid": format!("mass-{n}"), "fail_list": []}),
        ),
        _ => Json(json!({"errcode": 0, "errmsg": "ok"})),
    }
    .into_response()
}

trait NowValue {
    fn now_value(&self) -> DateTime<Utc>;
}

impl NowValue for Arc<ManualClock> {
    fn now_value(&self) -> DateTime<Utc> {
        qunyun::clock::Clock::now(self.as_ref())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    pool: SqlitePool,
    clock: Arc<ManualClock>,
    stub: Arc<Stub>,
    base: String,
    api: ApiClient,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pool = qunyun::store::open(&dir.path().join("outbox.db"))
            .await
            .unwrap();
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap());
        let stub = Arc::new(Stub {
            clock: clock.clone(),
            deliveries: Mutex::default(),
            requests: AtomicUsize::new(0),
            gettokens: AtomicUsize::new(0),
            valid_tokens: Mutex::default(),
            faults: Mutex::default(),
            mass_status: Mutex::new(0),
            hung: Notify::new(),
            advance_per_call: AtomicI64::new(0),
        });
        let router = Router::new().fallback(handle).with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/cgi-bin/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let config = ApiConfig::new(base.clone(), CORP).with_timeout(Duration::from_millis(500));
        let api = ApiClient::new(config, clock.clone()).unwrap();
        Self {
            _dir: dir,
            pool,
            clock,
            stub,
            base,
            api,
        }
    }

    fn settings() -> SenderSettings {
        SenderSettings {
            apps: vec![AppCredentials {
                name: APP.into(),
                agent_id: AGENT_ID,
                secret: Secret::new("app-secret"),
            }],
            contacts_secret: Some(Secret::new("contacts-secret")),
            max_attempts: 4,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            lease: Duration::from_secs(120),
            batch_size: 50,
            ..SenderSettings::default()
        }
    }

    fn sender(&self) -> OutboxSender {
        self.sender_with(Self::settings())
    }

    fn sender_with(&self, settings: SenderSettings) -> OutboxSender {
        OutboxSender::new(
            self.pool.clone(),
            self.api.clone(),
            self.clock.clone(),
            settings,
        )
    }

    fn now(&self) -> i64 {
        self.clock.now_value().timestamp()
    }

    async fn enqueue(&self, key: &str, route: Route, target: &str, payload: Value) -> i64 {
        let mut conn = self.pool.acquire().await.unwrap();
        let payload = payload.to_string();
        let app = matches!(route, Route::Member | Route::AppGroup).then_some(APP);
        let message = NewOutboxMessage {
            idempotency_key: key,
            route,
            target,
            app,
            payload_json: &payload,
            created_at: self.now(),
            not_before: None,
            skip_reason: None,
        };
        match outbox::insert_row(&mut conn, &message).await.unwrap() {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("duplicate key {key}"),
        }
    }

    async fn enqueue_text(&self, key: &str, route: Route, target: &str, text: &str) -> i64 {
        self.enqueue(
            key,
            route,
            target,
            json!({"msgtype": "text", "text": {"content": text}}),
        )
        .await
    }

    async fn row(&self, id: i64) -> OutboxRow {
        let mut conn = self.pool.acquire().await.unwrap();
        outbox::get(&mut conn, id).await.unwrap().unwrap()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }
}

fn texts(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .filter_map(|d| d.body["text"]["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn each_route_is_delivered_in_wecom_shape_and_marked_sent() {
    let h = Harness::start().await;
    let member = h
        .enqueue_text("m", Route::Member, "zhangsan|lisi", "hello members")
        .await;
    let group = h
        .enqueue_text("g", Route::AppGroup, "CHAT1", "hello group")
        .await;
    let robot = h.enqueue(
        "w",
        Route::Webhook,
        "ROBOTKEY",
        json!({"msgtype": "text", "text": {"content": "hello robot", "mentioned_list": ["@all"]}}),
    )
    .await;
    let response_url = format!("{}aibot/response?response_code=CODE1", h.base);
    let bot = h
        .enqueue(
            "b",
            Route::SmartBot,
            &response_url,
            json!({"msgtype": "markdown", "markdown": {"content": "**hi**"}}),
        )
        .await;
    let welcome = h
        .enqueue(
            "c",
            Route::WelcomeCode,
            "WELCOME1",
            json!({"text": {"content": "welcome"}}),
        )
        .await;

    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.claimed, outcome.sent), (5, 5), "{outcome:?}");

    let deliveries = h.stub.deliveries();
    let by_path: HashMap<&str, &Delivery> =
        deliveries.iter().map(|d| (d.path.as_str(), d)).collect();
    // Short deadlines first: welcome codes and bot replies, side by side.
    let mut first_two: Vec<&str> = deliveries[..2].iter().map(|d| d.path.as_str()).collect();
    first_two.sort();
    assert_eq!(
        first_two,
        ["aibot/response", "externalcontact/send_welcome_msg"],
        "welcome codes and bot replies go first"
    );
    let send = by_path["message/send"];
    assert_eq!(send.body["touser"], "zhangsan|lisi");
    assert_eq!(send.body["agentid"], AGENT_ID);
    // A first call carries no duplicate check: it would swallow a genuine
    // second identical reply.
    assert_eq!(send.body["enable_duplicate_check"], 0);
    assert_eq!(by_path["appchat/send"].body["chatid"], "CHAT1");
    assert_eq!(by_path["webhook/send"].query["key"], "ROBOTKEY");
    assert_eq!(
        by_path["webhook/send"].body["text"]["mentioned_list"],
        json!(["@all"])
    );
    assert_eq!(by_path["aibot/response"].query["response_code"], "CODE1");
    assert_eq!(
        by_path["externalcontact/send_welcome_msg"].body["welcome_code"],
        "WELCOME1"
    );

    for id in [member, group, robot, bot, welcome] {
        assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
    }
    assert_eq!(
        h.row(member)
            .await
            .wecom_msgid
            .as_deref()
            .map(|m| m.starts_with("msg-")),
        Some(true)
    );
}

#[tokio::test]
async fn system_busy_and_http_500_are_retried_with_backoff_then_delivered_once() {
    let h = Harness::start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::AppGroup, "CHAT1", "retry me")
        .await;
    h.stub.push_faults([Fault::Errcode(-1), Fault::Http(500)]);

    let first = sender.run_once().await.unwrap();
    assert_eq!(first.retried, 1);
    let row = h.row(id).await;
    assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 1));
    assert!(row.next_attempt_at > h.now(), "backed off");
    assert!(row.last_error.unwrap().contains("-1"));

    // Not due yet: nothing happens.
    assert_eq!(sender.run_once().await.unwrap().claimed, 0);

    h.advance(60);
    assert_eq!(sender.run_once().await.unwrap().retried, 1);
    assert_eq!(
        h.row(id).await.last_error.as_deref(),
        Some("unexpected HTTP status 500")
    );
    h.advance(60);
    assert_eq!(sender.run_once().await.unwrap().sent, 1);
    assert_eq!(texts(&h.stub.deliveries()), ["retry me"]);
    assert_eq!(h.row(id).await.attempts, 3);
}

#[tokio::test]
async fn a_hanging_call_times_out_and_is_retried() {
    let h = Harness::start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "after the hang")
        .await;
    h.stub.push_faults([Fault::Hang]);
    assert_eq!(sender.run_once().await.unwrap().retried, 1);
    assert_eq!(
        h.row(id).await.last_error.as_deref(),
        Some("request timed out")
    );
    h.advance(60);
    assert_eq!(sender.run_once().await.unwrap().sent, 1);
    assert_eq!(texts(&h.stub.deliveries()), ["after the hang"]);
}

#[tokio::test]
async fn token_expiry_mid_run_costs_one_refresh_and_loses_nothing() {
    let h = Harness::start().await;
    let sender = h.sender_with(SenderSettings {
        batch_size: 3,
        ..Harness::settings()
    });
    for i in 0..6 {
        h.enqueue_text(
            &format!("k{i}"),
            Route::Member,
            "zhangsan",
            &format!("m{i}"),
        )
        .await;
    }
    assert_eq!(sender.run_once().await.unwrap().sent, 3);
    h.stub.expire_tokens();
    assert_eq!(sender.run_once().await.unwrap().sent, 3);
    assert_eq!(h.stub.gettokens.load(Ordering::SeqCst), 2);
    assert_eq!(
        texts(&h.stub.deliveries()),
        ["m0", "m1", "m2", "m3", "m4", "m5"]
    );
}

#[tokio::test]
async fn configuration_errors_park_the_row_until_a_manager_retries_it() {
    let h = Harness::start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "needs trusted ip")
        .await;
    h.stub.push_faults([Fault::Errcode(60020)]);
    assert_eq!(sender.run_once().await.unwrap().failed, 1);
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::Failed);
    assert!(row.last_error.unwrap().contains("60020"));

    h.advance(24 * 3600);
    assert_eq!(
        sender.run_once().await.unwrap().claimed,
        0,
        "not retried hot"
    );

    let mut conn = h.pool.acquire().await.unwrap();
    assert_eq!(
        outbox::retry(&mut conn, id, h.now()).await.unwrap(),
        outbox::RetryOutcome::Requeued
    );
    drop(conn);
    assert_eq!(sender.run_once().await.unwrap().sent, 1);
}

#[tokio::test]
async fn undeliverable_rows_are_dead_with_the_reason_kept() {
    let h = Harness::start().await;
    let id = h
        .enqueue_text("k", Route::Webhook, "GONE", "robot removed")
        .await;
    h.stub.push_faults([Fault::Errcode(93000)]);
    assert_eq!(h.sender().run_once().await.unwrap().dead, 1);
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::Dead);
    assert!(row.last_error.unwrap().contains("93000"));
}

#[tokio::test]
async fn a_row_that_keeps_failing_is_dead_after_max_attempts_with_its_last_error() {
    let h = Harness::start().await;
    // One call at a time: the stub's faults go to calls in arrival order.
    let sender = h.sender_with(SenderSettings {
        concurrency: 1,
        ..Harness::settings()
    });
    let id = h
        .enqueue_text("k", Route::AppGroup, "CHAT1", "doomed")
        .await;
    let other = h.enqueue_text("k2", Route::AppGroup, "CHAT2", "fine").await;
    h.stub.push_faults([Fault::Errcode(-1)]);
    sender.run_once().await.unwrap();
    assert_eq!(
        h.row(other).await.status,
        OutboxStatus::Sent,
        "one bad row does not block others"
    );
    for _ in 0..3 {
        h.stub.push_faults([Fault::Errcode(-1)]);
        h.advance(120);
        sender.run_once().await.unwrap();
    }
    let row = h.row(id).await;
    assert_eq!((row.status, row.attempts), (OutboxStatus::Dead, 4));
    let reason = row.last_error.unwrap();
    assert!(
        reason.contains("gave up after 4 attempts") && reason.contains("-1"),
        "{reason}"
    );
}

#[tokio::test]
async fn frequency_limit_45009_postpones_a_minute_without_spending_attempts() {
    let h = Harness::start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "later")
        .await;
    for _ in 0..6 {
        h.stub.push_faults([Fault::Errcode(45009)]);
        assert_eq!(sender.run_once().await.unwrap().postponed, 1);
        let row = h.row(id).await;
        assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 0));
        assert_eq!(row.next_attempt_at, h.now() + 60);
        h.advance(59);
        assert_eq!(sender.run_once().await.unwrap().claimed, 0);
        h.advance(1);
    }
    assert_eq!(sender.run_once().await.unwrap().sent, 1, "never dropped");
}

#[tokio::test]
async fn webhook_robot_gets_at_most_20_messages_per_minute() {
    let h = Harness::start().await;
    let sender = h.sender();
    for i in 0..45 {
        h.enqueue_text(&format!("k{i}"), Route::Webhook, "ROBOT", &format!("m{i}"))
            .await;
    }
    let first = sender.run_once().await.unwrap();
    assert_eq!((first.sent, first.postponed), (20, 25));
    while h.stub.deliveries().len() < 45 {
        h.advance(10);
        sender.run_once().await.unwrap();
    }
    let times: Vec<i64> = h
        .stub
        .deliveries()
        .iter()
        .map(|d| d.at.timestamp())
        .collect();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().filter(|t| **t < start + 60).count();
        assert!(
            in_window <= 20,
            "{in_window} messages within a minute of {start}"
        );
    }
    let mut sent = texts(&h.stub.deliveries());
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 45, "each exactly once");
}

#[tokio::test]
async fn app_messages_to_one_member_stay_under_30_per_minute() {
    let h = Harness::start().await;
    for i in 0..31 {
        h.enqueue_text(
            &format!("k{i}"),
            Route::Member,
            "zhangsan|lisi",
            &format!("m{i}"),
        )
        .await;
    }
    h.enqueue_text("other", Route::Member, "wangwu", "other member")
        .await;
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.postponed), (31, 1));
}

#[tokio::test]
async fn expired_welcome_codes_are_dead_without_a_call() {
    let h = Harness::start().await;
    let id = h
        .enqueue(
            "c",
            Route::WelcomeCode,
            "CODE",
            json!({"text": {"content": "hi"}}),
        )
        .await;
    h.advance(21);
    assert_eq!(h.sender().run_once().await.unwrap().dead, 1);
    assert!(h
        .row(id)
        .await
        .last_error
        .unwrap()
        .contains("welcome code expired"));
    assert_eq!(h.stub.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mass_message_awaits_the_owners_confirmation_then_is_sent() {
    let h = Harness::start().await;
    let sender = h.sender();
    let id = h
        .enqueue(
            "mass",
            Route::CustomerGroupMass,
            "owner1",
            json!({"chat_id_list": ["wrGROUP"], "text": {"content": "campaign"}}),
        )
        .await;
    assert_eq!(sender.run_once().await.unwrap().awaiting_confirmation, 1);
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::AwaitingConfirmation);
    let msgid = row.wecom_msgid.unwrap();
    let template = &h.stub.deliveries()[0];
    assert_eq!(template.body["chat_type"], "group");
    assert_eq!(template.body["sender"], "owner1");

    h.advance(600);
    sender.run_once().await.unwrap();
    assert_eq!(h.row(id).await.status, OutboxStatus::AwaitingConfirmation);

    *h.stub.mass_status.lock().unwrap() = 1;
    h.advance(600);
    assert_eq!(sender.run_once().await.unwrap().confirmations_sent, 1);
    let row = h.row(id).await;
    assert_eq!(
        (row.status, row.wecom_msgid),
        (OutboxStatus::Sent, Some(msgid))
    );
}

#[tokio::test]
async fn bad_payloads_die_and_unknown_apps_fail_without_blocking_others() {
    let h = Harness::start().await;
    let bad = h
        .enqueue(
            "bad",
            Route::Member,
            "zhangsan",
            json!({"msgtype": "nonsense"}),
        )
        .await;
    let mut conn = h.pool.acquire().await.unwrap();
    let payload = json!({"msgtype": "text", "text": {"content": "x"}}).to_string();
    outbox::insert_row(
        &mut conn,
        &NewOutboxMessage {
            idempotency_key: "noapp",
            route: Route::AppGroup,
            target: "CHAT",
            app: Some("missing"),
            payload_json: &payload,
            created_at: h.now(),
            not_before: None,
            skip_reason: None,
        },
    )
    .await
    .unwrap();
    drop(conn);
    let good = h
        .enqueue_text("good", Route::AppGroup, "CHAT", "fine")
        .await;
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.dead, outcome.failed, outcome.sent), (1, 1, 1));
    assert!(h
        .row(bad)
        .await
        .last_error
        .unwrap()
        .contains("not a valid member message"));
    assert_eq!(h.row(good).await.status, OutboxStatus::Sent);
}

#[tokio::test]
async fn a_sender_killed_mid_batch_is_replaced_and_nothing_goes_out_twice() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            h.enqueue_text(&format!("k{i}"), Route::AppGroup, "CHAT1", &format!("m{i}"))
                .await,
        );
    }
    // The third call never answers; kill the first sender while it waits.
    // WeCom may or may not have posted m2: nobody can know.
    h.stub.push_faults([Fault::Pass, Fault::Pass, Fault::Hang]);
    let first = h.sender();
    let crashed = tokio::spawn(async move {
        let _ = first.run_once().await;
    });
    h.stub.hung.notified().await;
    crashed.abort();
    let _ = crashed.await;

    // The replacement recovers the dead sender's rows at once, not when
    // their leases expire.
    let second = h.sender();
    let outcome = second.run_once().await.unwrap();
    // m3..m5 never started: sent now. m2 was mid-call on appchat/send, which
    // WeCom does not deduplicate: parked for a person instead of risking a repeat.
    assert_eq!(
        (outcome.sent, outcome.recovered.uncertain),
        (3, 1),
        "{outcome:?}"
    );
    let mut sent = texts(&h.stub.deliveries());
    sent.sort();
    assert_eq!(sent, ["m0", "m1", "m3", "m4", "m5"]);
    let parked = h.row(ids[2]).await;
    assert_eq!(parked.status, OutboxStatus::Dead);
    assert!(parked
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("uncertain:"));

    // Later runs leave it alone; a manager who checked the chat retries it.
    h.advance(600);
    assert!(second.run_once().await.unwrap().is_idle());
    {
        let mut conn = h.pool.acquire().await.unwrap();
        assert_eq!(
            outbox::retry(&mut conn, ids[2], h.now()).await.unwrap(),
            outbox::RetryOutcome::Requeued
        );
    }
    assert_eq!(second.run_once().await.unwrap().sent, 1);
    let mut sent = texts(&h.stub.deliveries());
    sent.sort();
    assert_eq!(sent, ["m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn a_member_message_cut_off_mid_call_is_resent_for_wecom_to_deduplicate() {
    let h = Harness::start().await;
    let id = h
        .enqueue_text("k-member", Route::Member, "zhangsan", "你好")
        .await;
    h.stub.push_faults([Fault::Hang]);
    let first = h.sender();
    let crashed = tokio::spawn(async move {
        let _ = first.run_once().await;
    });
    h.stub.hung.notified().await;
    crashed.abort();
    let _ = crashed.await;

    h.advance(121);
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.uncertain), (1, 0), "{outcome:?}");
    assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
    // The resend carries enable_duplicate_check with an interval reaching
    // back past the first (maybe delivered) call, so WeCom drops a repeat.
    let delivery = &h.stub.deliveries()[0];
    assert_eq!(delivery.path, "message/send");
    assert_eq!(delivery.body["enable_duplicate_check"], 1);
    assert!(delivery.body["duplicate_check_interval"].as_i64().unwrap() > 121);
}

#[tokio::test]
async fn run_loop_delivers_and_stops_on_cancel() {
    let h = Harness::start().await;
    h.enqueue_text("k", Route::AppGroup, "CHAT1", "looped")
        .await;
    let sender = Arc::new(h.sender());
    let shutdown = CancellationToken::new();
    let task = {
        let sender = sender.clone();
        let shutdown = shutdown.clone();
        let clock: qunyun::clock::SharedClock = h.clock.clone();
        tokio::spawn(async move {
            let idle_wait = sender.idle_wait();
            qunyun::jobs::run_loop(&*sender, &clock, idle_wait, &shutdown).await
        })
    };
    while h.stub.deliveries().is_empty() {
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run_loop stops promptly")
        .unwrap();
    assert_eq!(texts(&h.stub.deliveries()), ["looped"]);
}

#[tokio::test]
async fn rows_are_handed_back_before_the_lease_runs_out() {
    let h = Harness::start().await;
    let ids = [
        h.enqueue_text("k0", Route::AppGroup, "CHAT1", "m0").await,
        h.enqueue_text("k1", Route::AppGroup, "CHAT1", "m1").await,
        h.enqueue_text("k2", Route::AppGroup, "CHAT1", "m2").await,
        h.enqueue_text("k3", Route::AppGroup, "CHAT1", "m3").await,
    ];
    // Lease 120 s; every call takes 50 s of clock time.
    h.stub.advance_per_call.store(50, Ordering::SeqCst);
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.postponed), (3, 1), "{outcome:?}");
    let last = h.row(ids[3]).await;
    assert_eq!((last.status, last.attempts), (OutboxStatus::Pending, 0));
    h.stub.advance_per_call.store(0, Ordering::SeqCst);
    assert_eq!(h.sender().run_once().await.unwrap().sent, 1);
    assert_eq!(texts(&h.stub.deliveries()), ["m0", "m1", "m2", "m3"]);
}

/// The same sender against the real simulator (`qunyun::sim`), which follows
/// docs/wecom.md rather than our assumptions: token expiry and revocation,
/// robot rate limits, duplicate checks, owner-confirmed mass messages.
mod against_simulator {
    use super::*;
    use qunyun::clock::SharedClock;
    use qunyun::sim::{
        DropReason, FaultKind, FaultRule, Route as SimRoute, SeedAppChat, Sim, SimConfig, SimHandle,
    };

    const ROBOT_KEY: &str = "ROBOT-KEY-1";
    const ROBOT_CHAT: &str = "wrROBOTCHAT";
    const APP_CHAT: &str = "CHAT1";

    struct SimHarness {
        _dir: tempfile::TempDir,
        pool: SqlitePool,
        clock: Arc<ManualClock>,
        handle: SimHandle,
        api: ApiClient,
    }

    impl SimHarness {
        async fn start() -> Self {
            Self::start_with_ttl(7200).await
        }

        async fn start_with_ttl(ttl: i64) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let pool = qunyun::store::open(&dir.path().join("outbox.db"))
                .await
                .unwrap();
            let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap());
            let config = SimConfig::new(CORP, "app-secret")
                .with_app("contacts", "contacts-secret", None)
                .with_token_ttl_secs(ttl);
            let handle = Sim::spawn(config, clock.clone()).await.unwrap();
            handle.sim().add_robot(ROBOT_KEY, ROBOT_CHAT);
            handle.sim().add_app_chat(SeedAppChat {
                chatid: APP_CHAT.into(),
                name: "ops group".into(),
                owner: "zhangsan".into(),
                userlist: vec!["zhangsan".into(), "lisi".into()],
                creator_agent_id: None,
            });
            let api = client(&handle, clock.clone());
            Self {
                _dir: dir,
                pool,
                clock,
                handle,
                api,
            }
        }

        fn sim(&self) -> &Sim {
            self.handle.sim()
        }

        fn sender(&self) -> OutboxSender {
            self.sender_with(Harness::settings())
        }

        fn sender_with(&self, settings: SenderSettings) -> OutboxSender {
            OutboxSender::new(
                self.pool.clone(),
                self.api.clone(),
                self.clock.clone(),
                settings,
            )
        }

        fn now(&self) -> i64 {
            self.clock.now_value().timestamp()
        }

        fn advance(&self, secs: i64) {
            self.clock.advance(chrono::Duration::seconds(secs));
        }

        async fn enqueue(
            &self,
            key: &str,
            route: Route,
            target: &str,
            app: Option<&str>,
            payload: Value,
        ) -> i64 {
            let mut conn = self.pool.acquire().await.unwrap();
            let payload = payload.to_string();
            let message = NewOutboxMessage {
                idempotency_key: key,
                route,
                target,
                app,
                payload_json: &payload,
                created_at: self.now(),
                not_before: None,
                skip_reason: None,
            };
            match outbox::insert_row(&mut conn, &message).await.unwrap() {
                Enqueued::New(id) => id,
                Enqueued::Duplicate => panic!("duplicate key {key}"),
            }
        }

        async fn enqueue_text(&self, key: &str, route: Route, target: &str, text: &str) -> i64 {
            let app = matches!(route, Route::Member | Route::AppGroup).then_some(APP);
            self.enqueue(
                key,
                route,
                target,
                app,
                json!({"msgtype": "text", "text": {"content": text}}),
            )
            .await
        }

        async fn row(&self, id: i64) -> OutboxRow {
            let mut conn = self.pool.acquire().await.unwrap();
            outbox::get(&mut conn, id).await.unwrap().unwrap()
        }

        /// Texts the simulator delivered on `route`, in delivery order.
        fn delivered(&self, route: SimRoute) -> Vec<String> {
            self.sim()
                .messages()
                .iter()
                .filter(|d| d.route == route)
                .filter_map(|d| d.text().map(str::to_owned))
                .collect()
        }

        /// Runs the sender, moving the clock `step` seconds between runs,
        /// until nothing is pending or in flight.
        async fn drain(&self, sender: &OutboxSender, step: i64) {
            for _ in 0..500 {
                sender.run_once().await.unwrap();
                let mut conn = self.pool.acquire().await.unwrap();
                let open = outbox::list(&mut conn, Some(OutboxStatus::Pending))
                    .await
                    .unwrap()
                    .len()
                    + outbox::list(&mut conn, Some(OutboxStatus::InFlight))
                        .await
                        .unwrap()
                        .len();
                if open == 0 {
                    return;
                }
                drop(conn);
                self.advance(step);
            }
            panic!("outbox did not drain");
        }
    }

    fn client(handle: &SimHandle, clock: SharedClock) -> ApiClient {
        let config =
            ApiConfig::new(handle.api_base_url(), CORP).with_timeout(Duration::from_millis(300));
        ApiClient::new(config, clock).unwrap()
    }

    #[tokio::test]
    async fn every_route_reaches_the_simulator_once() {
        let h = SimHarness::start().await;
        h.enqueue_text("m", Route::Member, "zhangsan", "to a member")
            .await;
        h.enqueue_text("g", Route::AppGroup, APP_CHAT, "to the app group")
            .await;
        h.enqueue_text("w", Route::Webhook, ROBOT_KEY, "via the robot")
            .await;
        let code = h.sim().issue_response_code("AIBOT", "zhangsan", false);
        h.enqueue(
            "b",
            Route::SmartBot,
            &h.sim().response_url(&code),
            None,
            json!({"msgtype": "markdown", "markdown": {"content": "bot answer"}}),
        )
        .await;
        let welcome_code = h.sim().issue_welcome_code("lisi", "wmCUSTOMER");
        h.enqueue(
            "c",
            Route::WelcomeCode,
            &welcome_code,
            None,
            json!({"text": {"content": "welcome!"}}),
        )
        .await;

        let outcome = h.sender().run_once().await.unwrap();
        assert_eq!(outcome.sent, 5, "{outcome:?}");
        assert_eq!(h.delivered(SimRoute::AppMessage), ["to a member"]);
        assert_eq!(h.delivered(SimRoute::Appchat), ["to the app group"]);
        assert_eq!(h.delivered(SimRoute::Webhook), ["via the robot"]);
        assert_eq!(h.delivered(SimRoute::BotResponse), ["bot answer"]);
        assert_eq!(h.delivered(SimRoute::Welcome), ["welcome!"]);
        let mut first_two: Vec<String> = h.sim().messages()[..2]
            .iter()
            .map(|d| format!("{:?}", d.route))
            .collect();
        first_two.sort();
        let mut urgent = vec![
            format!("{:?}", SimRoute::BotResponse),
            format!("{:?}", SimRoute::Welcome),
        ];
        urgent.sort();
        assert_eq!(first_two, urgent, "welcome codes and bot replies first");
        assert!(h.sim().dropped().is_empty());
    }

    #[tokio::test]
    async fn token_expiry_mid_run_costs_one_refresh_and_loses_no_message() {
        let h = SimHarness::start_with_ttl(600).await;
        let sender = h.sender_with(SenderSettings {
            batch_size: 2,
            ..Harness::settings()
        });
        for i in 0..6 {
            h.enqueue_text(
                &format!("k{i}"),
                Route::AppGroup,
                APP_CHAT,
                &format!("m{i}"),
            )
            .await;
        }
        assert_eq!(sender.run_once().await.unwrap().sent, 2);
        // WeCom invalidates the token early (40014), then time passes its
        // lifetime (proactive refresh).
        h.sim().revoke_tokens();
        assert_eq!(sender.run_once().await.unwrap().sent, 2);
        assert_eq!(h.sim().stats().gettoken_calls, 2);
        h.advance(601);
        assert_eq!(sender.run_once().await.unwrap().sent, 2);
        assert_eq!(h.sim().stats().gettoken_calls, 3);
        assert_eq!(
            h.delivered(SimRoute::Appchat),
            ["m0", "m1", "m2", "m3", "m4", "m5"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_42001s_causes_a_single_refresh() {
        let h = SimHarness::start_with_ttl(600).await;
        // The client's clock stays behind the simulator's, so it keeps using
        // a token the simulator considers expired: every call gets 42001.
        let client_clock = ManualClock::new(h.clock.now_value());
        let api = client(&h.handle, client_clock);
        api.access_token(&Secret::new("app-secret")).await.unwrap();
        h.advance(700);
        let mut calls = Vec::new();
        for i in 0..16 {
            let api = api.clone();
            calls.push(tokio::spawn(async move {
                let message = qunyun::wecom::api::AppChatSend::new(
                    APP_CHAT,
                    qunyun::wecom::api::AppMessageContent::Text {
                        text: qunyun::wecom::api::TextContent::new(format!("burst {i}")),
                    },
                );
                api.appchat_send(&Secret::new("app-secret"), &message).await
            }));
        }
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(
            h.sim().stats().gettoken_calls,
            2,
            "one initial fetch, one refresh"
        );
        assert_eq!(h.delivered(SimRoute::Appchat).len(), 16);
    }

    #[tokio::test]
    async fn system_busy_and_http_500_are_retried_then_delivered_once() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        let id = h
            .enqueue_text("k", Route::Webhook, ROBOT_KEY, "persistent")
            .await;
        h.sim()
            .inject(FaultRule::new(FaultKind::busy()).on_path("webhook/send"));
        h.sim()
            .inject(FaultRule::new(FaultKind::Http500).on_path("webhook/send"));
        h.drain(&sender, 60).await;
        assert_eq!(h.delivered(SimRoute::Webhook), ["persistent"]);
        let row = h.row(id).await;
        assert_eq!((row.status, row.attempts), (OutboxStatus::Sent, 3));
        assert_eq!(h.sim().stats().calls_to("webhook/send"), 3);
    }

    #[tokio::test]
    async fn a_lost_answer_to_message_send_is_retried_and_deduplicated_by_wecom() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        h.enqueue_text("k", Route::Member, "zhangsan", "only once please")
            .await;
        // Delivered, but the answer is -1: we cannot know, so we retry.
        h.sim().inject(
            FaultRule::new(FaultKind::busy())
                .on_path("message/send")
                .after_effect(),
        );
        h.drain(&sender, 60).await;
        assert_eq!(h.delivered(SimRoute::AppMessage), ["only once please"]);
        let dropped = h.sim().dropped();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].reason, DropReason::Duplicate);
    }

    #[tokio::test]
    async fn frequency_limit_45009_backs_off_and_delivers_later_never_dropped() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        let id = h
            .enqueue_text("k", Route::AppGroup, APP_CHAT, "patient")
            .await;
        h.sim().inject(
            FaultRule::new(FaultKind::Errcode { errcode: 45009 })
                .on_path("appchat/send")
                .times(3),
        );
        for _ in 0..3 {
            assert_eq!(sender.run_once().await.unwrap().postponed, 1);
            let row = h.row(id).await;
            assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 0));
            h.advance(30);
            assert_eq!(sender.run_once().await.unwrap().claimed, 0, "no hot retry");
            h.advance(30);
        }
        assert_eq!(sender.run_once().await.unwrap().sent, 1);
        assert_eq!(h.delivered(SimRoute::Appchat), ["patient"]);
    }

    #[tokio::test]
    async fn a_group_post_that_times_out_is_parked_not_repeated() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        let id = h
            .enqueue_text("k", Route::AppGroup, APP_CHAT, "after a hang")
            .await;
        h.sim()
            .inject(FaultRule::new(FaultKind::Hang).on_path("appchat/send"));
        let outcome = sender.run_once().await.unwrap();
        assert_eq!((outcome.dead, outcome.retried), (1, 0), "{outcome:?}");
        let row = h.row(id).await;
        assert_eq!(row.status, OutboxStatus::Dead);
        let reason = row.last_error.unwrap();
        assert!(
            reason.starts_with("uncertain: request timed out"),
            "{reason}"
        );
        h.drain(&sender, 60).await;
        assert!(h.delivered(SimRoute::Appchat).is_empty(), "never repeated");

        // Retried by hand once someone saw it is missing from the chat.
        let mut conn = h.pool.acquire().await.unwrap();
        outbox::retry(&mut conn, id, h.now()).await.unwrap();
        drop(conn);
        h.drain(&sender, 60).await;
        assert_eq!(h.delivered(SimRoute::Appchat), ["after a hang"]);
    }

    #[tokio::test]
    async fn dead_letter_after_max_attempts_keeps_its_reason() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        let id = h
            .enqueue_text("k", Route::Webhook, ROBOT_KEY, "never")
            .await;
        h.sim().inject(
            FaultRule::new(FaultKind::busy())
                .on_path("webhook/send")
                .times(100),
        );
        h.drain(&sender, 120).await;
        let row = h.row(id).await;
        assert_eq!((row.status, row.attempts), (OutboxStatus::Dead, 4));
        let reason = row.last_error.unwrap();
        assert!(
            reason.contains("gave up after 4 attempts") && reason.contains("-1"),
            "{reason}"
        );
        assert!(h.delivered(SimRoute::Webhook).is_empty());
    }

    #[tokio::test]
    async fn undeliverable_targets_die_with_wecom_s_reason() {
        let h = SimHarness::start().await;
        let robot = h
            .enqueue_text("w", Route::Webhook, "NO-SUCH-ROBOT", "x")
            .await;
        let chat = h.enqueue_text("g", Route::AppGroup, "NOCHAT", "x").await;
        let outcome = h.sender().run_once().await.unwrap();
        assert_eq!(outcome.dead, 2, "{outcome:?}");
        assert!(h.row(robot).await.last_error.unwrap().contains("93000"));
        assert!(h.row(chat).await.last_error.unwrap().contains("86003"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_sender_sends_nothing_twice_and_parks_the_uncertain_row() {
        let h = SimHarness::start().await;
        for i in 0..4 {
            h.enqueue_text(
                &format!("g{i}"),
                Route::AppGroup,
                APP_CHAT,
                &format!("group {i}"),
            )
            .await;
        }
        for i in 0..4 {
            h.enqueue_text(
                &format!("w{i}"),
                Route::Webhook,
                ROBOT_KEY,
                &format!("robot {i}"),
            )
            .await;
        }
        // The first sender (one call at a time) claims all eight, delivers
        // the four group messages, then hangs on the robot; we kill it there.
        h.sim()
            .inject(FaultRule::new(FaultKind::Hang).on_path("webhook/send"));
        let first = h.sender_with(SenderSettings {
            concurrency: 1,
            ..Harness::settings()
        });
        let crashed = tokio::spawn(async move {
            let _ = first.run_once().await;
        });
        while h.sim().stats().calls_to("webhook/send") == 0 {
            tokio::task::yield_now().await;
        }
        crashed.abort();
        let _ = crashed.await;
        assert_eq!(h.delivered(SimRoute::Appchat).len(), 4);

        // The replacement recovers at start-up; no lease has to expire.
        let second = h.sender();
        h.drain(&second, 10).await;

        let delivered = || {
            let mut texts: Vec<String> = h
                .sim()
                .messages()
                .iter()
                .filter_map(|d| d.text().map(str::to_owned))
                .collect();
            texts.sort();
            texts
        };
        // "robot 0" was mid-call when the sender died: WeCom may have posted
        // it, and robots do not deduplicate, so it waits for a person.
        let expected: Vec<String> = ["group 0", "group 1", "group 2", "group 3"]
            .into_iter()
            .chain(["robot 1", "robot 2", "robot 3"])
            .map(str::to_owned)
            .collect();
        assert_eq!(delivered(), expected, "nothing twice");
        let mut conn = h.pool.acquire().await.unwrap();
        let dead = outbox::list(&mut conn, Some(OutboxStatus::Dead))
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("uncertain:"));
        assert_eq!(
            outbox::list(&mut conn, Some(OutboxStatus::Sent))
                .await
                .unwrap()
                .len(),
            7
        );

        // The manager checks the chat, finds it missing and retries it.
        h.sim().clear_faults();
        outbox::retry(&mut conn, dead[0].id, h.now()).await.unwrap();
        drop(conn);
        h.drain(&second, 10).await;
        let mut all = expected.clone();
        all.push("robot 0".to_owned());
        all.sort();
        assert_eq!(delivered(), all);
    }

    #[tokio::test]
    async fn the_robot_never_gets_more_than_20_messages_a_minute() {
        let h = SimHarness::start().await;
        let sender = h.sender();
        for i in 0..70 {
            h.enqueue_text(
                &format!("k{i}"),
                Route::Webhook,
                ROBOT_KEY,
                &format!("m{i}"),
            )
            .await;
        }
        h.drain(&sender, 7).await;
        let times: Vec<i64> = h
            .sim()
            .messages()
            .iter()
            .filter(|d| d.route == SimRoute::Webhook)
            .map(|d| d.time)
            .collect();
        assert_eq!(times.len(), 70);
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|t| **t < start + 60).count();
            assert!(
                in_window <= 20,
                "{in_window} robot messages within a minute of {start}"
            );
        }
        // The simulator never had to refuse one (it answers 45009 past 20/min).
        assert_eq!(h.sim().stats().calls_to("webhook/send"), 70);
    }

    #[tokio::test]
    async fn a_mass_message_is_sent_once_the_owner_confirms() {
        let h = SimHarness::start().await;
        h.sim().add_customer_group(qunyun::sim::SeedCustomerGroup {
            chat_id: "wrCUSTOMERS".into(),
            name: "VIP".into(),
            owner: "zhangsan".into(),
            notice: String::new(),
            status: 0,
            create_time: 0,
            admins: vec![],
            members: vec![qunyun::sim::SeedGroupMember::new("wmCUSTOMER")],
        });
        let sender = h.sender();
        let id = h
            .enqueue(
                "mass",
                Route::CustomerGroupMass,
                "zhangsan",
                None,
                json!({"chat_id_list": ["wrCUSTOMERS"], "text": {"content": "campaign"}}),
            )
            .await;
        assert_eq!(sender.run_once().await.unwrap().awaiting_confirmation, 1);
        let msgid = h.row(id).await.wecom_msgid.unwrap();
        h.advance(600);
        sender.run_once().await.unwrap();
        assert_eq!(h.row(id).await.status, OutboxStatus::AwaitingConfirmation);

        assert!(h.sim().confirm_mass(&msgid));
        h.advance(600);
        assert_eq!(sender.run_once().await.unwrap().confirmations_sent, 1);
        assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
        assert_eq!(h.delivered(SimRoute::CustomerGroupMass), ["campaign"]);
    }
}
