//! The outbox sender end to end: real SQLite file, real HTTP, the WeCom
//! simulator as WeCom (its fault injection scripts errcodes, HTTP 500s,
//! hangs, lost answers, token expiry and slow calls), time moved by the
//! harness's manual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qunyun::jobs::outbox::{OutboxSender, SenderSettings};
use qunyun::sim::{ApiCall, FaultKind, FaultRule, SeedAppChat, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::outbox::{self, Enqueued, NewOutboxMessage, OutboxRow, OutboxStatus, Route};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, TestConfig, AGENT_ID, APP};

fn config() -> TestConfig {
    TestConfig::new()
        .starting_at(Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap())
        .with_contacts_app()
        .with_brisk_sender()
}

async fn start() -> TestApp {
    start_with(config()).await
}

/// The app, with the app groups and robots these tests send to known to WeCom.
async fn start_with(config: TestConfig) -> TestApp {
    let h = TestApp::start(config).await;
    for chat in ["CHAT", "CHAT1", "CHAT2"] {
        h.sim().add_app_chat(SeedAppChat {
            chatid: chat.into(),
            name: format!("group {chat}"),
            owner: "zhangsan".into(),
            userlist: vec!["zhangsan".into(), "lisi".into()],
            creator_agent_id: None,
        });
    }
    for key in ["ROBOTKEY", "ROBOT", "ROBOT-KEY-1"] {
        h.sim().add_robot(key, format!("wr{key}"));
    }
    h
}

/// The test's view of the outbox table and the clock, in seconds.
trait OutboxTest {
    fn now_secs(&self) -> i64;
    fn advance(&self, secs: i64);
    async fn enqueue_for(
        &self,
        key: &str,
        route: Route,
        target: &str,
        app: Option<&str>,
        payload: Value,
    ) -> i64;
    async fn row(&self, id: i64) -> OutboxRow;
    /// API calls WeCom received other than token fetches.
    fn api_calls(&self) -> Vec<ApiCall>;

    /// A row for `route`, sent by the default app where the route needs one.
    async fn enqueue(&self, key: &str, route: Route, target: &str, payload: Value) -> i64 {
        let app = matches!(route, Route::Member | Route::AppGroup).then_some(APP);
        self.enqueue_for(key, route, target, app, payload).await
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
}

impl OutboxTest for TestApp {
    fn now_secs(&self) -> i64 {
        self.now().timestamp()
    }

    fn advance(&self, secs: i64) {
        self.advance_clock(chrono::Duration::seconds(secs));
    }

    async fn enqueue_for(
        &self,
        key: &str,
        route: Route,
        target: &str,
        app: Option<&str>,
        payload: Value,
    ) -> i64 {
        let payload = payload.to_string();
        let message = NewOutboxMessage {
            idempotency_key: key,
            route,
            target,
            app,
            payload_json: &payload,
            created_at: self.now_secs(),
            not_before: None,
            skip_reason: None,
            event_at: None,
        };
        match outbox::insert_row(&mut *self.conn().await, &message)
            .await
            .unwrap()
        {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("duplicate key {key}"),
        }
    }

    async fn row(&self, id: i64) -> OutboxRow {
        self.outbox_row(id).await
    }

    fn api_calls(&self) -> Vec<ApiCall> {
        self.sim()
            .calls()
            .into_iter()
            .filter(|call| call.path != "gettoken")
            .collect()
    }
}

#[tokio::test]
async fn each_route_is_delivered_in_wecom_shape_and_marked_sent() {
    let h = start().await;
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
    let response_code = h.sim().issue_response_code("AIBOT", "zhangsan", false);
    let response_url = h.sim().response_url(&response_code);
    let bot = h
        .enqueue(
            "b",
            Route::SmartBot,
            &response_url,
            json!({"msgtype": "markdown", "markdown": {"content": "**hi**"}}),
        )
        .await;
    let welcome_code = h.sim().issue_welcome_code("lisi", "wmEXTERNAL");
    let welcome = h
        .enqueue(
            "c",
            Route::WelcomeCode,
            &welcome_code,
            json!({"text": {"content": "welcome"}}),
        )
        .await;

    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.claimed, outcome.sent), (5, 5), "{outcome:?}");

    let deliveries = h.api_calls();
    let by_path: HashMap<&str, &ApiCall> =
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
    assert_eq!(
        by_path["aibot/response"].query["response_code"],
        response_code
    );
    assert_eq!(
        by_path["externalcontact/send_welcome_msg"].body["welcome_code"],
        welcome_code.as_str()
    );

    for id in [member, group, robot, bot, welcome] {
        assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
    }
    // The msgid WeCom answered is kept.
    let answered = h
        .sim()
        .messages()
        .into_iter()
        .find(|d| d.text() == Some("hello members"))
        .map(|d| d.msgid);
    assert!(answered.is_some());
    assert_eq!(h.row(member).await.wecom_msgid, answered);
}

#[tokio::test]
async fn system_busy_and_http_500_are_retried_with_backoff_then_delivered_once() {
    let h = start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::AppGroup, "CHAT1", "retry me")
        .await;
    h.sim()
        .inject(FaultRule::new(FaultKind::busy()).on_path("appchat/send"));
    h.sim()
        .inject(FaultRule::new(FaultKind::Http500).on_path("appchat/send"));

    let first = sender.run_once().await.unwrap();
    assert_eq!(first.retried, 1);
    let row = h.row(id).await;
    assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 1));
    assert!(row.next_attempt_at > h.now_secs(), "backed off");
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
    assert_eq!(h.delivered_texts(), ["retry me"]);
    assert_eq!(h.row(id).await.attempts, 3);
}

#[tokio::test]
async fn a_hanging_call_times_out_and_is_retried() {
    let h = start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "after the hang")
        .await;
    h.sim()
        .inject(FaultRule::new(FaultKind::Hang).on_path("message/send"));
    assert_eq!(sender.run_once().await.unwrap().retried, 1);
    assert_eq!(
        h.row(id).await.last_error.as_deref(),
        Some("request timed out")
    );
    h.advance(60);
    assert_eq!(sender.run_once().await.unwrap().sent, 1);
    assert_eq!(h.delivered_texts(), ["after the hang"]);
}

#[tokio::test]
async fn token_expiry_mid_run_costs_one_refresh_and_loses_nothing() {
    let h = start().await;
    let sender = h.sender_with(SenderSettings {
        batch_size: 3,
        ..h.sender_settings()
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
    h.sim().revoke_tokens();
    assert_eq!(sender.run_once().await.unwrap().sent, 3);
    assert_eq!(h.sim().stats().gettoken_calls, 2);
    assert_eq!(h.delivered_texts(), ["m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn configuration_errors_park_the_row_until_a_manager_retries_it() {
    let h = start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "needs trusted ip")
        .await;
    h.sim()
        .inject(FaultRule::new(FaultKind::Errcode { errcode: 60020 }).on_path("message/send"));
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
        outbox::retry(&mut conn, id, h.now_secs()).await.unwrap(),
        outbox::RetryOutcome::Requeued
    );
    drop(conn);
    assert_eq!(sender.run_once().await.unwrap().sent, 1);
}

#[tokio::test]
async fn undeliverable_rows_are_dead_with_the_reason_kept() {
    let h = start().await;
    let id = h
        .enqueue_text("k", Route::Webhook, "GONE", "robot removed")
        .await;
    // WeCom answers 93000 for a robot key it does not know.
    assert_eq!(h.sender().run_once().await.unwrap().dead, 1);
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::Dead);
    assert!(row.last_error.unwrap().contains("93000"));
}

#[tokio::test]
async fn a_row_that_keeps_failing_is_dead_after_max_attempts_with_its_last_error() {
    let h = start().await;
    // One call at a time: the injected faults go to calls in arrival order.
    let sender = h.sender_with(SenderSettings {
        concurrency: 1,
        ..h.sender_settings()
    });
    let id = h
        .enqueue_text("k", Route::AppGroup, "CHAT1", "doomed")
        .await;
    let other = h.enqueue_text("k2", Route::AppGroup, "CHAT2", "fine").await;
    h.sim()
        .inject(FaultRule::new(FaultKind::busy()).on_path("appchat/send"));
    sender.run_once().await.unwrap();
    assert_eq!(
        h.row(other).await.status,
        OutboxStatus::Sent,
        "one bad row does not block others"
    );
    for _ in 0..3 {
        h.sim()
            .inject(FaultRule::new(FaultKind::busy()).on_path("appchat/send"));
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
    let h = start().await;
    let sender = h.sender();
    let id = h
        .enqueue_text("k", Route::Member, "zhangsan", "later")
        .await;
    for _ in 0..6 {
        h.sim()
            .inject(FaultRule::new(FaultKind::Errcode { errcode: 45009 }).on_path("message/send"));
        assert_eq!(sender.run_once().await.unwrap().postponed, 1);
        let row = h.row(id).await;
        assert_eq!((row.status, row.attempts), (OutboxStatus::Pending, 0));
        assert_eq!(row.next_attempt_at, h.now_secs() + 60);
        h.advance(59);
        assert_eq!(sender.run_once().await.unwrap().claimed, 0);
        h.advance(1);
    }
    assert_eq!(sender.run_once().await.unwrap().sent, 1, "never dropped");
}

#[tokio::test]
async fn webhook_robot_gets_at_most_20_messages_per_minute() {
    let h = start().await;
    let sender = h.sender();
    for i in 0..45 {
        h.enqueue_text(&format!("k{i}"), Route::Webhook, "ROBOT", &format!("m{i}"))
            .await;
    }
    let first = sender.run_once().await.unwrap();
    assert_eq!((first.sent, first.postponed), (20, 25));
    while h.sim().messages().len() < 45 {
        h.advance(10);
        sender.run_once().await.unwrap();
    }
    let times: Vec<i64> = h.sim().messages().iter().map(|d| d.time).collect();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().filter(|t| **t < start + 60).count();
        assert!(
            in_window <= 20,
            "{in_window} messages within a minute of {start}"
        );
    }
    let mut sent = h.delivered_texts();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 45, "each exactly once");
}

#[tokio::test]
async fn app_messages_to_one_member_stay_under_30_per_minute() {
    let h = start().await;
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
async fn expired_welcome_codes_are_skipped_without_a_call() {
    let h = start().await;
    let id = h
        .enqueue(
            "c",
            Route::WelcomeCode,
            "CODE",
            json!({"text": {"content": "hi"}}),
        )
        .await;
    h.advance(21);
    assert_eq!(h.sender().run_once().await.unwrap().skipped, 1);
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::Skipped);
    assert!(row.last_error.unwrap().contains("welcome code expired"));
    assert!(h.api_calls().is_empty(), "{:?}", h.api_calls());
}

#[tokio::test]
async fn mass_message_awaits_the_owners_confirmation_then_is_sent() {
    let h = start().await;
    h.sim().add_customer_group(SeedCustomerGroup {
        chat_id: "wrGROUP".into(),
        name: "VIP".into(),
        owner: "owner1".into(),
        notice: String::new(),
        status: 0,
        create_time: 0,
        admins: vec![],
        members: vec![SeedGroupMember::new("wmCUSTOMER")],
    });
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
    let template = &h.api_calls()[0];
    assert_eq!(template.path, "externalcontact/add_msg_template");
    assert_eq!(template.body["chat_type"], "group");
    assert_eq!(template.body["sender"], "owner1");

    h.advance(600);
    sender.run_once().await.unwrap();
    assert_eq!(h.row(id).await.status, OutboxStatus::AwaitingConfirmation);

    assert!(h.sim().confirm_mass(&msgid), "the owner confirms");
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
    let h = start().await;
    let bad = h
        .enqueue(
            "bad",
            Route::Member,
            "zhangsan",
            json!({"msgtype": "nonsense"}),
        )
        .await;
    h.enqueue_for(
        "noapp",
        Route::AppGroup,
        "CHAT",
        Some("missing"),
        json!({"msgtype": "text", "text": {"content": "x"}}),
    )
    .await;
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
    let h = start().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            h.enqueue_text(&format!("k{i}"), Route::AppGroup, "CHAT1", &format!("m{i}"))
                .await,
        );
    }
    // The third call never answers; kill the first sender while it waits.
    // WeCom may or may not have posted m2: nobody can know.
    h.sim().inject(
        FaultRule::new(FaultKind::Hang)
            .on_path("appchat/send")
            .skip(2),
    );
    let first = h.sender();
    let crashed = tokio::spawn(async move {
        let _ = first.run_once().await;
    });
    h.sim().hang_started().await;
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
    let mut sent = h.delivered_texts();
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
            outbox::retry(&mut conn, ids[2], h.now_secs())
                .await
                .unwrap(),
            outbox::RetryOutcome::Requeued
        );
    }
    assert_eq!(second.run_once().await.unwrap().sent, 1);
    let mut sent = h.delivered_texts();
    sent.sort();
    assert_eq!(sent, ["m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn a_member_message_cut_off_mid_call_is_resent_for_wecom_to_deduplicate() {
    let h = start().await;
    let id = h
        .enqueue_text("k-member", Route::Member, "zhangsan", "你好")
        .await;
    h.sim()
        .inject(FaultRule::new(FaultKind::Hang).on_path("message/send"));
    let first = h.sender();
    let crashed = tokio::spawn(async move {
        let _ = first.run_once().await;
    });
    h.sim().hang_started().await;
    crashed.abort();
    let _ = crashed.await;

    h.advance(121);
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.uncertain), (1, 0), "{outcome:?}");
    assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
    // The resend carries enable_duplicate_check with an interval reaching
    // back past the first (maybe delivered) call, so WeCom drops a repeat.
    let calls = h.api_calls();
    let delivery = calls.last().unwrap();
    assert_eq!(delivery.path, "message/send");
    assert_eq!(delivery.body["enable_duplicate_check"], 1);
    assert!(delivery.body["duplicate_check_interval"].as_i64().unwrap() > 121);
}

#[tokio::test]
async fn run_loop_delivers_and_stops_on_cancel() {
    let h = start().await;
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
    while h.sim().messages().is_empty() {
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run_loop stops promptly")
        .unwrap();
    assert_eq!(h.delivered_texts(), ["looped"]);
}

#[tokio::test]
async fn rows_are_handed_back_before_the_lease_runs_out() {
    let h = start().await;
    let ids = [
        h.enqueue_text("k0", Route::AppGroup, "CHAT1", "m0").await,
        h.enqueue_text("k1", Route::AppGroup, "CHAT1", "m1").await,
        h.enqueue_text("k2", Route::AppGroup, "CHAT1", "m2").await,
        h.enqueue_text("k3", Route::AppGroup, "CHAT1", "m3").await,
    ];
    // Lease 120 s; every call takes 50 s of clock time.
    h.sim().inject(
        FaultRule::new(FaultKind::Takes { secs: 50 })
            .on_path("appchat/send")
            .times(100),
    );
    let outcome = h.sender().run_once().await.unwrap();
    assert_eq!((outcome.sent, outcome.postponed), (3, 1), "{outcome:?}");
    let last = h.row(ids[3]).await;
    assert_eq!((last.status, last.attempts), (OutboxStatus::Pending, 0));
    h.sim().clear_faults();
    assert_eq!(h.sender().run_once().await.unwrap().sent, 1);
    assert_eq!(h.delivered_texts(), ["m0", "m1", "m2", "m3"]);
}

/// Scenarios that lean on the simulator's own model of WeCom (docs/wecom.md):
/// token expiry and revocation, robot rate limits, duplicate checks,
/// owner-confirmed mass messages.
mod against_simulator {
    use super::*;
    use qunyun::clock::{Clock, ManualClock, SharedClock};
    use qunyun::sim::{DropReason, Route as SimRoute, SimHandle};
    use qunyun::wecom::api::{ApiClient, ApiConfig, Secret};

    use crate::helpers::CORP_ID;

    const ROBOT_KEY: &str = "ROBOT-KEY-1";
    const APP_CHAT: &str = "CHAT1";

    trait Delivered {
        /// Texts the simulator delivered on `route`, in delivery order.
        fn delivered(&self, route: SimRoute) -> Vec<String>;
        /// Sender passes, the clock moved `step` seconds between them, until
        /// nothing is pending or in flight.
        async fn drain(&self, sender: &OutboxSender, step: i64);
    }

    impl Delivered for TestApp {
        fn delivered(&self, route: SimRoute) -> Vec<String> {
            self.sim()
                .messages()
                .iter()
                .filter(|d| d.route == route)
                .filter_map(|d| d.text().map(str::to_owned))
                .collect()
        }

        async fn drain(&self, sender: &OutboxSender, step: i64) {
            self.drain_with(sender, chrono::Duration::seconds(step))
                .await;
        }
    }

    fn client(handle: &SimHandle, clock: SharedClock) -> ApiClient {
        let config =
            ApiConfig::new(handle.api_base_url(), CORP_ID).with_timeout(Duration::from_millis(300));
        ApiClient::new(config, clock).unwrap()
    }

    #[tokio::test]
    async fn every_route_reaches_the_simulator_once() {
        let h = start().await;
        h.enqueue_text("m", Route::Member, "zhangsan", "to a member")
            .await;
        h.enqueue_text("g", Route::AppGroup, APP_CHAT, "to the app group")
            .await;
        h.enqueue_text("w", Route::Webhook, ROBOT_KEY, "via the robot")
            .await;
        let code = h.sim().issue_response_code("AIBOT", "zhangsan", false);
        h.enqueue_for(
            "b",
            Route::SmartBot,
            &h.sim().response_url(&code),
            None,
            json!({"msgtype": "markdown", "markdown": {"content": "bot answer"}}),
        )
        .await;
        let welcome_code = h.sim().issue_welcome_code("lisi", "wmCUSTOMER");
        h.enqueue_for(
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
        let h = start_with(config().with_token_ttl(600)).await;
        let sender = h.sender_with(SenderSettings {
            batch_size: 2,
            ..h.sender_settings()
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
        let h = start_with(config().with_token_ttl(600)).await;
        // The client's clock stays behind the simulator's, so it keeps using
        // a token the simulator considers expired: every call gets 42001.
        let client_clock = ManualClock::new(h.clock.now());
        let api = client(h.sim_handle(), client_clock);
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
        let h = start().await;
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
        let h = start().await;
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
        let h = start().await;
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
        let h = start().await;
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
        outbox::retry(&mut conn, id, h.now_secs()).await.unwrap();
        drop(conn);
        h.drain(&sender, 60).await;
        assert_eq!(h.delivered(SimRoute::Appchat), ["after a hang"]);
    }

    #[tokio::test]
    async fn dead_letter_after_max_attempts_keeps_its_reason() {
        let h = start().await;
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
        let h = start().await;
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
        let h = start().await;
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
            ..h.sender_settings()
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
        outbox::retry(&mut conn, dead[0].id, h.now_secs())
            .await
            .unwrap();
        drop(conn);
        h.drain(&second, 10).await;
        let mut all = expected.clone();
        all.push("robot 0".to_owned());
        all.sort();
        assert_eq!(delivered(), all);
    }

    #[tokio::test]
    async fn the_robot_never_gets_more_than_20_messages_a_minute() {
        let h = start().await;
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
        let h = start().await;
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
            .enqueue_for(
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
