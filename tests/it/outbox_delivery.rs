//! Delivered means delivered: the real sender against the built-in simulator
//! with its fault injection, per route. Each test asserts on what the
//! simulator (WeCom) received and on the row the sender left behind.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qunyun::clock::{Clock, ManualClock};
use qunyun::jobs::outbox::{AppCredentials, OutboxSender, SenderLane, SenderSettings};
use qunyun::sim::{DropReason, FaultKind, FaultRule, Route as SimRoute, Sim, SimConfig, SimHandle};
use qunyun::store::outbox::{self, Enqueued, NewOutboxMessage, OutboxRow, OutboxStatus, Route};
use qunyun::wecom::api::{ApiClient, ApiConfig, Secret};
use serde_json::json;
use sqlx::SqlitePool;

use crate::helpers;

const CORP: &str = "wwTESTCORP";
const APP: &str = "ops";
const AGENT_ID: i64 = 1000002;
/// The API timeout: short, so a hanging call costs the test little.
const TIMEOUT: Duration = Duration::from_millis(300);

struct Harness {
    _dir: tempfile::TempDir,
    pool: SqlitePool,
    clock: Arc<ManualClock>,
    handle: SimHandle,
    api: ApiClient,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with_timeout(TIMEOUT).await
    }

    async fn start_with_timeout(timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pool = qunyun::store::open(&dir.path().join("outbox.db"))
            .await
            .unwrap();
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap());
        let config =
            SimConfig::new(CORP, "app-secret").with_app("contacts", "contacts-secret", None);
        let handle = Sim::spawn(config, clock.clone()).await.unwrap();
        let api = ApiClient::new(
            ApiConfig::new(handle.api_base_url(), CORP).with_timeout(timeout),
            clock.clone(),
        )
        .unwrap();
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

    fn settings() -> SenderSettings {
        SenderSettings {
            apps: vec![AppCredentials {
                name: APP.into(),
                agent_id: AGENT_ID,
                secret: Secret::new("app-secret"),
            }],
            contacts_secret: Some(Secret::new("contacts-secret")),
            max_attempts: 5,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
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

    /// The sender `qunyun serve` runs for `lane`.
    fn lane_sender(&self, lane: SenderLane) -> OutboxSender {
        self.sender_with(SenderSettings {
            routes: Some(lane.routes()),
            ..Self::settings()
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
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
        text: &str,
    ) -> i64 {
        let payload = match route {
            Route::SmartBot => json!({"msgtype": "markdown", "markdown": {"content": text}}),
            _ => json!({"msgtype": "text", "text": {"content": text}}),
        }
        .to_string();
        let mut conn = self.pool.acquire().await.unwrap();
        let row = NewOutboxMessage {
            idempotency_key: key,
            route,
            target,
            app,
            payload_json: &payload,
            created_at: self.now(),
            not_before: None,
            skip_reason: None,
            event_at: None,
        };
        match outbox::insert_row(&mut conn, &row).await.unwrap() {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("duplicate key {key}"),
        }
    }

    async fn member_text(&self, key: &str, userid: &str, text: &str) -> i64 {
        self.enqueue(key, Route::Member, userid, Some(APP), text)
            .await
    }

    async fn row(&self, id: i64) -> OutboxRow {
        let mut conn = self.pool.acquire().await.unwrap();
        outbox::get(&mut conn, id).await.unwrap().unwrap()
    }

    async fn delivery_note(&self, id: i64) -> Option<String> {
        sqlx::query_scalar("select delivery_note from outbox where id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn open_rows(&self) -> usize {
        let mut conn = self.pool.acquire().await.unwrap();
        let mut open = 0;
        for status in [OutboxStatus::Pending, OutboxStatus::InFlight] {
            open += outbox::list(&mut conn, Some(status)).await.unwrap().len();
        }
        open
    }

    /// Runs the sender, moving the clock `step` seconds between passes,
    /// until nothing is pending or in flight.
    async fn drain(&self, sender: &OutboxSender, step: i64) {
        for _ in 0..200 {
            sender.run_once().await.unwrap();
            if self.open_rows().await == 0 {
                return;
            }
            self.advance(step);
        }
        panic!("outbox did not drain");
    }

    fn delivered(&self, route: SimRoute) -> Vec<String> {
        self.sim()
            .messages()
            .iter()
            .filter(|d| d.route == route)
            .filter_map(|d| d.text().map(str::to_owned))
            .collect()
    }
}

/// WeCom takes the reply, the answer never arrives (the call times out);
/// the retry is refused with 42022. The member has the reply: the row is
/// sent, noted as confirmed by refusal, and never a failure.
#[tokio::test]
async fn bot_reply_whose_answer_was_lost_ends_sent_confirmed_by_42022() {
    let h = Harness::start().await;
    let code = h.sim().issue_response_code("AIBOT", "zhangsan", false);
    let url = h.sim().response_url(&code);
    let id = h
        .enqueue("bot-1", Route::SmartBot, &url, None, "签到成功")
        .await;
    h.sim().inject(
        FaultRule::new(FaultKind::Hang)
            .on_path("aibot/response")
            .after_effect(),
    );

    let sender = h.sender();
    let first = sender.run_once().await.unwrap();
    assert_eq!(first.retried, 1, "{first:?}");
    h.drain(&sender, 5).await;

    assert_eq!(h.sim().messages().len(), 1, "exactly one delivery");
    let row = h.row(id).await;
    assert_eq!((row.status, row.attempts), (OutboxStatus::Sent, 2));
    let note = h.delivery_note(id).await.expect("a note says why");
    assert!(note.starts_with("confirmed by refusal"), "{note}");
    assert!(note.contains("42022"), "{note}");
    // `qunyun outbox list` prints the row this way: the note says why it is sent.
    assert!(
        row.to_string().contains(" note=\"confirmed by refusal"),
        "{row}"
    );
    assert_eq!(h.sim().stats().calls_to("aibot/response"), 2);
}

/// The same for a welcome code: the lost answer is followed by 41051.
#[tokio::test]
async fn welcome_code_whose_answer_was_lost_ends_sent_confirmed_by_41051() {
    let h = Harness::start().await;
    let code = h.sim().issue_welcome_code("zhangsan", "wmCUSTOMER1");
    let id = h
        .enqueue("welcome-1", Route::WelcomeCode, &code, None, "欢迎加入")
        .await;
    h.sim().inject(
        FaultRule::new(FaultKind::Http500)
            .on_path("send_welcome_msg")
            .after_effect(),
    );

    let sender = h.sender();
    h.drain(&sender, 2).await;

    assert_eq!(
        h.delivered(SimRoute::Welcome),
        ["欢迎加入"],
        "exactly one delivery"
    );
    let row = h.row(id).await;
    assert_eq!(row.status, OutboxStatus::Sent, "{row}");
    let note = h.delivery_note(id).await.expect("a note says why");
    assert!(
        note.starts_with("confirmed by refusal") && note.contains("41051"),
        "{note}"
    );
}

/// Without an earlier call of ours, 42022 proves nothing about this row:
/// it is dead with the reason, not counted as delivered.
#[tokio::test]
async fn a_used_response_code_on_the_first_call_is_dead_not_delivered() {
    let h = Harness::start().await;
    let code = h.sim().issue_response_code("AIBOT", "zhangsan", false);
    let url = h.sim().response_url(&code);
    let used = h.enqueue("bot-a", Route::SmartBot, &url, None, "a").await;
    let again = h.enqueue("bot-b", Route::SmartBot, &url, None, "b").await;
    h.drain(&h.sender(), 5).await;

    assert_eq!(h.row(used).await.status, OutboxStatus::Sent);
    let row = h.row(again).await;
    assert_eq!(row.status, OutboxStatus::Dead, "{row}");
    assert!(row.last_error.as_deref().unwrap().contains("42022"));
    assert_eq!(h.delivery_note(again).await, None);
}

/// A sender dies (its task is dropped) while one call hangs in a burst.
/// The restarted sender recovers at start-up: every row whose call never
/// started is delivered at once (no lease to wait out), the hanging member
/// message is resent under WeCom's duplicate check, nothing arrives twice.
#[tokio::test]
async fn after_a_crash_mid_burst_never_started_rows_go_out_within_seconds_of_restart() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            h.member_text(&format!("m{i}"), &format!("user{i}"), &format!("积分 {i}"))
                .await,
        );
    }
    // The fourth call is taken by WeCom, then never answers.
    h.sim().inject(
        FaultRule::new(FaultKind::Slow { delay_ms: 0 })
            .on_path("message/send")
            .times(3),
    );
    h.sim().inject(
        FaultRule::new(FaultKind::Hang)
            .on_path("message/send")
            .after_effect(),
    );
    // One call at a time, so the hang is the fourth call exactly.
    let first = h.sender_with(SenderSettings {
        concurrency: 1,
        ..Harness::settings()
    });
    let crashed = tokio::spawn(async move {
        let _ = first.run_once().await;
    });
    while h.sim().stats().calls_to("message/send") < 4 {
        tokio::task::yield_now().await;
    }
    crashed.abort();
    let _ = crashed.await;
    assert_eq!(h.delivered(SimRoute::AppMessage).len(), 4);
    let restarted_at = h.now();

    // One second later a new process starts its sender.
    h.advance(1);
    let second = h.sender();
    let outcome = second.run_once().await.unwrap();
    assert_eq!(outcome.recovered.never_started, 8, "{outcome:?}");
    assert_eq!(outcome.recovered.resent, 1, "{outcome:?}");
    assert_eq!(h.open_rows().await, 0, "all delivered in the first pass");
    assert!(h.now() - restarted_at <= 10);

    let mut texts = h.delivered(SimRoute::AppMessage);
    texts.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("积分 {i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "each exactly once");
    let dropped = h.sim().dropped();
    assert_eq!(dropped.len(), 1, "the resend of the hung call");
    assert_eq!(dropped[0].reason, DropReason::Duplicate);
    for id in ids {
        assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
    }
}

/// After a 45009 the whole API pauses: no call reaches message/send for the
/// back-off minute, waiting spends no attempts, then one probe goes first.
#[tokio::test]
async fn after_45009_no_call_reaches_the_api_for_the_back_off_period() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            h.member_text(&format!("m{i}"), &format!("user{i}"), &format!("hi {i}"))
                .await,
        );
    }
    // Targets are sent concurrently, so a few calls may be out before the
    // first 45009 comes back; WeCom refuses each of those too.
    h.sim().inject(
        FaultRule::new(FaultKind::Errcode { errcode: 45009 })
            .on_path("message/send")
            .times(5),
    );
    let sender = h.sender();
    let outcome = sender.run_once().await.unwrap();
    assert_eq!(outcome.postponed, 5, "{outcome:?}");
    h.sim().clear_faults();
    let refused = h.sim().stats().calls_to("message/send");
    assert!((1..=5).contains(&refused), "{refused}");

    for _ in 0..59 {
        h.advance(1);
        sender.run_once().await.unwrap();
    }
    assert_eq!(
        h.sim().stats().calls_to("message/send"),
        refused,
        "no call during the pause"
    );
    for id in &ids {
        assert_eq!(h.row(*id).await.attempts, 0, "waiting is not an attempt");
    }

    // The probe is refused again: the pause starts over, and it was one call.
    h.sim()
        .inject(FaultRule::new(FaultKind::Errcode { errcode: 45009 }).on_path("message/send"));
    h.advance(1);
    sender.run_once().await.unwrap();
    let probe = refused + 1;
    assert_eq!(h.sim().stats().calls_to("message/send"), probe, "one probe");
    h.advance(30);
    sender.run_once().await.unwrap();
    assert_eq!(h.sim().stats().calls_to("message/send"), probe);

    // The next probe succeeds; the rest follow once it has answered.
    h.advance(31);
    sender.run_once().await.unwrap();
    h.advance(1);
    sender.run_once().await.unwrap();
    assert_eq!(h.sim().stats().calls_to("message/send"), probe + 5);
    assert_eq!(h.delivered(SimRoute::AppMessage).len(), 5);
}

/// A member who asks 积分 twice (two events, the same balance) gets two
/// identical replies: the sender does not ask WeCom to drop the second.
#[tokio::test]
async fn a_member_asking_twice_gets_two_identical_replies() {
    let h = Harness::start().await;
    h.member_text("reply:msg-1", "zhangsan", "你的积分：120")
        .await;
    h.advance(3);
    h.member_text("reply:msg-2", "zhangsan", "你的积分：120")
        .await;
    h.drain(&h.sender(), 1).await;
    assert_eq!(
        h.delivered(SimRoute::AppMessage),
        ["你的积分：120", "你的积分：120"]
    );
    assert!(h.sim().dropped().is_empty());
}

/// The simulator's duplicate check behaves like WeCom's: a flagged request
/// identical to one received inside the interval is answered 0 and reaches
/// nobody, even when the first was sent without the flag.
#[tokio::test]
async fn the_simulators_duplicate_check_answers_0_and_delivers_to_nobody() {
    let h = Harness::start().await;
    let id = h.member_text("k", "zhangsan", "only once").await;
    // WeCom delivers, the answer is cut off: the resend carries the check.
    h.sim().inject(
        FaultRule::new(FaultKind::Http500)
            .on_path("message/send")
            .after_effect(),
    );
    h.drain(&h.sender(), 5).await;
    assert_eq!(h.delivered(SimRoute::AppMessage), ["only once"]);
    let dropped = h.sim().dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].reason, DropReason::Duplicate);
    assert_eq!(h.row(id).await.status, OutboxStatus::Sent);
}

/// One hanging call holds up only its own target: in the same pass another
/// target is delivered while it hangs, and a welcome code queued meanwhile
/// goes out through the urgent sender at once, inside its 20 s window.
#[tokio::test]
async fn a_hanging_call_delays_neither_other_targets_nor_a_welcome_code() {
    let h = Harness::start_with_timeout(Duration::from_secs(30)).await;
    h.sim().add_robot("ROBOT-KEY", "wrROBOTCHAT");
    h.enqueue("robot", Route::Webhook, "ROBOT-KEY", None, "slow robot")
        .await;
    h.member_text("member", "zhangsan", "你好").await;
    h.sim()
        .inject(FaultRule::new(FaultKind::Hang).on_path("webhook/send"));

    let regular = Arc::new(h.lane_sender(SenderLane::Regular));
    let pass = tokio::spawn({
        let regular = regular.clone();
        async move { regular.run_once().await.unwrap() }
    });
    // The member message is delivered while the robot call still hangs.
    while h.delivered(SimRoute::AppMessage).is_empty() {
        assert!(
            !pass.is_finished(),
            "the pass ended before the member message went out"
        );
        tokio::task::yield_now().await;
    }
    assert!(!pass.is_finished());

    // A new customer arrives now; the urgent sender does not wait.
    let event_at = h.now();
    let code = h.sim().issue_welcome_code("zhangsan", "wmNEW");
    let welcome = h
        .enqueue("welcome", Route::WelcomeCode, &code, None, "欢迎")
        .await;
    let outcome = h.lane_sender(SenderLane::Urgent).run_once().await.unwrap();
    assert_eq!(outcome.sent, 1, "{outcome:?}");
    assert_eq!(h.delivered(SimRoute::Welcome), ["欢迎"]);
    assert_eq!(h.row(welcome).await.status, OutboxStatus::Sent);
    assert!(h.now() - event_at < 20);
    assert_eq!(h.sim().stats().calls_to("webhook/send"), 1);
    assert!(!pass.is_finished(), "the robot call was still hanging");
    pass.abort();
}

/// The issue's scenario under load: 300 rows (1:1 replies, bot replies,
/// welcome codes) against random faults (-1, HTTP 500, hanging and slow
/// answers), answers lost after WeCom acted on every route, and a sender
/// killed mid-burst. Nothing arrives twice and no delivered row ends dead.
#[tokio::test]
async fn three_hundred_rows_under_faults_and_a_crash_nothing_twice_nothing_delivered_but_dead() {
    let h = Harness::start().await;
    let mut rows = Vec::new();
    for i in 0..100 {
        let text = format!("reply {i}");
        rows.push((
            h.member_text(&format!("m{i}"), &format!("user{}", i % 10), &text)
                .await,
            text,
        ));
        let code = h
            .sim()
            .issue_response_code("AIBOT", &format!("user{i}"), false);
        let url = h.sim().response_url(&code);
        let text = format!("bot {i}");
        rows.push((
            h.enqueue(&format!("b{i}"), Route::SmartBot, &url, None, &text)
                .await,
            text,
        ));
        let code = h.sim().issue_welcome_code("zhangsan", &format!("wm{i}"));
        let text = format!("welcome {i}");
        rows.push((
            h.enqueue(&format!("w{i}"), Route::WelcomeCode, &code, None, &text)
                .await,
            text,
        ));
    }
    h.sim().apply_faults(qunyun::sim::FaultRequest {
        clear: true,
        rules: ["message/send", "aibot/response", "send_welcome_msg"]
            .into_iter()
            .flat_map(|path| {
                [
                    FaultRule::new(FaultKind::Hang)
                        .on_path(path)
                        .after_effect()
                        .times(4),
                    FaultRule::new(FaultKind::busy())
                        .on_path(path)
                        .after_effect()
                        .times(4),
                ]
            })
            .collect(),
        random: Some(qunyun::sim::RandomFaults {
            seed: 21,
            errcode: 0.05,
            http500: 0.05,
            hang: 0.02,
            slow: 0.05,
            slow_delay_ms: 20,
            path: None,
        }),
    });

    // A sender is killed once it has made 40 calls.
    let first = h.sender();
    let crashed = tokio::spawn(async move {
        loop {
            let _ = first.run_once().await;
        }
    });
    let calls = || h.sim().stats().calls.values().sum::<u64>();
    while calls() < 40 {
        tokio::task::yield_now().await;
    }
    crashed.abort();
    let _ = crashed.await;

    h.drain(&h.sender(), 1).await;

    let delivered: Vec<String> = h
        .sim()
        .messages()
        .iter()
        .filter_map(|d| d.text().map(str::to_owned))
        .collect();
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a message was delivered twice"
    );
    let (mut sent, mut by_refusal, mut dead, mut delivered_but_dead) = (0, 0, 0, 0);
    let mut expired = 0;
    for (id, text) in &rows {
        let row = h.row(*id).await;
        match row.status {
            OutboxStatus::Sent => {
                sent += 1;
                if h.delivery_note(*id).await.is_some() {
                    by_refusal += 1;
                }
                assert!(delivered.contains(text), "sent but never delivered: {row}");
            }
            OutboxStatus::Dead => {
                dead += 1;
                if delivered.contains(text) {
                    delivered_but_dead += 1;
                }
            }
            // A welcome code whose 20 s ran out while it waited for a retry.
            OutboxStatus::Skipped => {
                expired += 1;
                assert!(!delivered.contains(text), "skipped but delivered: {row}");
            }
            other => panic!("row left {other}: {row}"),
        }
    }
    println!(
        "300 rows: sent {sent} (confirmed by refusal {by_refusal}), dead {dead}, \
         expired welcome codes {expired}, delivered-but-dead {delivered_but_dead}, \
         duplicates dropped by WeCom {}, calls {}",
        h.sim().dropped().len(),
        calls()
    );
    assert_eq!(delivered_but_dead, 0);
    assert_eq!(sent, delivered.len());
}

/// `add_external_contact` as WeCom sends it, with its own `CreateTime`.
fn customer_added_xml(external_userid: &str, welcome_code: &str, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_contact]]></Event>\
         <ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[lisi]]></UserID>\
         <ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID><State><![CDATA[poster]]></State>\
         <WelcomeCode><![CDATA[{welcome_code}]]></WelcomeCode></xml>",
        corp = helpers::CORP_ID,
    )
}

/// A welcome code is valid for 20 s from its event's `CreateTime`, not from
/// when the pipeline wrote the row: through the real callback endpoint,
/// pipeline and sender, a callback handled 25 s after its event gets no
/// `send_welcome_msg` call and a visible skip; one handled after 5 s is sent.
/// (The simulator issued both codes just now, so it would still accept the
/// late one: only the event time tells the sender it is too late.)
#[tokio::test]
async fn the_welcome_code_window_runs_from_the_events_create_time() {
    let app = helpers::spawn_app().await;
    let now = app.now().timestamp();
    let late = app.sim().issue_welcome_code("lisi", "wmLATE");
    let fresh = app.sim().issue_welcome_code("lisi", "wmFRESH");
    for (customer, code, create_time) in [("wmLATE", &late, now - 25), ("wmFRESH", &fresh, now - 5)]
    {
        let reply = app
            .post_event(helpers::Callback::App(customer_added_xml(
                customer,
                code,
                create_time,
            )))
            .await;
        assert_eq!(reply.status(), 200);
    }
    app.run_pipeline().await;
    let delivered = app.drain_outbox().await;

    let welcomed: Vec<&str> = delivered.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(welcomed, ["wmFRESH"], "{delivered:?}");
    let calls: Vec<_> = app
        .sim()
        .calls()
        .into_iter()
        .filter(|call| call.path == "externalcontact/send_welcome_msg")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].body["welcome_code"], fresh.as_str());

    let rows = app.outbox_rows(None).await;
    let row_for = |code: &str| {
        rows.iter()
            .find(|row| row.route == Route::WelcomeCode && row.target == code)
            .unwrap_or_else(|| panic!("no welcome row for {code}: {rows:?}"))
    };
    assert_eq!(row_for(&fresh).status, OutboxStatus::Sent);
    let skipped = row_for(&late);
    assert_eq!(skipped.status, OutboxStatus::Skipped, "{skipped}");
    let reason = skipped.last_error.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("welcome code expired: 25 s after the event"),
        "{reason}"
    );
    // What a manager sees in `qunyun outbox list`.
    assert!(
        skipped.to_string().contains("welcome code expired"),
        "{skipped}"
    );
}
