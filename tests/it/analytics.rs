//! Analytics end to end: the WeCom simulator drives encrypted callbacks into
//! the real server, the pipeline applies them, `jobs::analytics` runs with the
//! manual clock, the real outbox sender delivers to the simulator, and the
//! simulator's record is the ground truth for what admins and members received.

use std::ops::Deref;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use qunyun::admin::Role;
use qunyun::analytics::{AlertKind, AlertLevel, COMMUNITY};
use qunyun::clock::Clock;
use qunyun::jobs::analytics::{Analytics, AnalyticsOutcome};
use qunyun::rules::ChatRoute;
use qunyun::sim::{
    ArchiveTextRequest, BotMentionRequest, Delivery, FaultKind, FaultRule, JoinRequest, JoinVia,
    LeaveRequest, NewMember, RawRequest, Route, SeedCustomerGroup, SeedGroupMember,
};
use qunyun::store::outbox::{self as outbox_store, OutboxStatus};
use qunyun::store::{analytics as store, chats};

use crate::helpers::{TestApp, TestConfig, APP, BOT};

/// A customer group: joins and leaves come as `change_external_chat`,
/// what members type through the message archive.
const CHAT: &str = "wrANALYTICS000000000000000000A1";
/// An internal group of staff with the smart bot and a group robot.
const STAFF: &str = "wrANALYTICS000000000000000STAFF";
const INGEST_SECRET: &str = "analytics-ingest-secret";
const OWNER: &str = "yunying";
const BOSS: &str = "boss";

/// Monday 2026-03-02 09:00 in Shanghai.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()
}

/// The harness with one customer group in WeCom and in qunyun, an internal
/// staff group with the smart bot, the rule set under test, and the analytics
/// job; the steps below drive a community day.
struct Harness {
    app: TestApp,
    analytics: Analytics,
}

impl Deref for Harness {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Harness {
    async fn start(rules: &str) -> Harness {
        let app = TestApp::start(
            TestConfig::new()
                .starting_at(start())
                .with_api_timeout(StdDuration::from_secs(5))
                .with_ingest_secret(INGEST_SECRET),
        )
        .await;
        let sim = app.sim();
        sim.set_callbacks(app.callback_targets().with_ingest_secret(INGEST_SECRET));
        sim.add_directory_members([OWNER, BOSS, "zhangsan"]);
        sim.add_customer_group(SeedCustomerGroup {
            chat_id: CHAT.into(),
            name: "好物分享群".into(),
            owner: OWNER.into(),
            notice: String::new(),
            status: 0,
            create_time: start().timestamp() - 86_400,
            admins: vec![],
            members: vec![SeedGroupMember::new(OWNER)],
        });
        let member_version = sim.customer_group(CHAT).unwrap().member_version;
        let ops = qunyun::ops::Ops::over(app.pool.clone());
        let actor = qunyun::ops::Actor::cli(Some("test"));
        qunyun::ops::rules::apply(&ops, &actor, start(), rules)
            .await
            .unwrap();
        let mut conn = app.pool.acquire().await.unwrap();
        chats::upsert_chat(
            &mut conn,
            &chats::NewChat {
                chat_id: CHAT.into(),
                name: "好物分享群".into(),
                route: ChatRoute::CustomerGroup,
                owner: Some(OWNER.into()),
                admins: vec![],
                tags: vec![],
                member_version: Some(member_version),
            },
            start(),
        )
        .await
        .unwrap();
        chats::upsert_chat(
            &mut conn,
            &chats::NewChat {
                chat_id: STAFF.into(),
                name: "运营同事群".into(),
                route: ChatRoute::internal_with_smart_bot(BOT),
                owner: Some(OWNER.into()),
                admins: vec![],
                tags: vec![],
                member_version: None,
            },
            start(),
        )
        .await
        .unwrap();
        drop(conn);
        let analytics = app.analytics();
        Harness { app, analytics }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves to 09:00 Shanghai `days` days after the start.
    fn morning(&self, days: i64) {
        self.clock.set(start() + Duration::days(days));
    }

    async fn join(&self, users: &[&str]) {
        let outcome = self
            .sim()
            .drive_join(JoinRequest {
                app: Some(APP.into()),
                chat_id: CHAT.into(),
                members: users.iter().map(|u| NewMember::new(*u)).collect(),
                via: JoinVia::QrCode,
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        self.process().await;
    }

    async fn leave(&self, users: &[&str]) {
        let outcome = self
            .sim()
            .drive_leave(LeaveRequest {
                app: Some(APP.into()),
                chat_id: CHAT.into(),
                userids: users.iter().map(|u| u.to_string()).collect(),
                removed: false,
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        self.process().await;
    }

    /// `user` types `text` in the customer group; the archive puller
    /// brings it to qunyun (no bot can hear it there).
    async fn say(&self, user: &str, text: &str) {
        let outcome = self
            .sim()
            .drive_archive_text(ArchiveTextRequest {
                chat_id: CHAT.into(),
                from: user.into(),
                content: text.into(),
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        self.process().await;
    }

    /// Staff member `user` @-mentions the smart bot in the internal group.
    async fn mention(&self, user: &str, text: &str) {
        let outcome = self
            .sim()
            .drive_bot_mention(BotMentionRequest {
                bot: Some(BOT.into()),
                chat_id: Some(STAFF.into()),
                from: user.into(),
                content: text.into(),
                quote: None,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        self.process().await;
    }

    /// A smart-bot message without its `response_url`: the pipeline cannot
    /// act on it, retries it and parks it after five attempts. Returns its inbox id.
    async fn park_one(&self, msgid: &str) -> i64 {
        let plaintext = serde_json::json!({
            "msgid": msgid, "aibotid": "AIBOT-ANALYTICS", "chatid": STAFF, "chattype": "group",
            "from": { "userid": "lisi" }, "msgtype": "text", "text": { "content": "@运营助手 hi" },
        });
        let outcome = self
            .sim()
            .drive_raw(RawRequest {
                bot: Some(BOT.into()),
                plaintext: plaintext.to_string(),
                ..RawRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        for _ in 0..5 {
            if self.run_pipeline().await.parked == 1 {
                let mut conn = self.pool.acquire().await.unwrap();
                let rows = qunyun::store::inbox::list_all(&mut conn).await.unwrap();
                return rows
                    .iter()
                    .rev()
                    .find(|r| r.status == qunyun::store::inbox::InboxStatus::Parked)
                    .unwrap()
                    .id;
            }
        }
        panic!("the event was not parked");
    }

    /// Pipeline, then the sender until nothing is due (moving the clock a
    /// minute when a rate limit holds a row back).
    async fn process(&self) {
        let run = self.run_pipeline().await;
        assert_eq!(run.parked, 0, "an event was parked");
        self.deliver().await;
    }

    async fn deliver(&self) {
        for _ in 0..50 {
            self.send_once().await;
            let mut conn = self.pool.acquire().await.unwrap();
            let open: i64 = outbox_store::count_by_status(&mut conn)
                .await
                .unwrap()
                .iter()
                .filter(|(s, _)| matches!(s, OutboxStatus::Pending | OutboxStatus::InFlight))
                .map(|(_, n)| *n)
                .sum();
            if open == 0 {
                return;
            }
            let due_now = outbox_store::list(&mut conn, Some(OutboxStatus::Pending))
                .await
                .unwrap()
                .iter()
                .any(|r| r.next_attempt_at <= self.now().timestamp());
            if !due_now {
                self.clock.advance(Duration::seconds(61));
            }
        }
        panic!("outbox did not drain");
    }

    /// One analytics pass at the current instant, then delivery of what it queued.
    async fn analyze(&self) -> AnalyticsOutcome {
        let outcome = self.analytics.run_once(self.now()).await.unwrap();
        self.deliver().await;
        outcome
    }

    fn app_messages_to(&self, user: &str) -> Vec<Delivery> {
        self.sim()
            .messages()
            .into_iter()
            .filter(|d| d.route == Route::AppMessage && d.target == user)
            .collect()
    }

    async fn community_row(&self, days_after_start: i64) -> qunyun::analytics::DailyRow {
        let day = (start() + Duration::days(days_after_start))
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .date_naive();
        let mut conn = self.pool.acquire().await.unwrap();
        store::daily_rows(&mut conn, COMMUNITY, day)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.day == day)
            .expect("a community row for the day")
    }

    async fn stop(self) {
        self.app.stop().await.shutdown().await.unwrap();
    }
}

fn rules(extra: &str) -> String {
    format!(
        r#"
[community]
name = "好物社群"
timezone = "Asia/Shanghai"
app = "{APP}"

[welcome]
enabled = false

[onboarding]
enabled = false

{extra}
"#
    )
}

/// Alerts at the given leave thresholds only (everything else off).
fn only_alert(kind: &str, levels: &str) -> String {
    let off = |k: &str| {
        if k == kind {
            format!("{k} = {levels}\n")
        } else if k == "checkin_drop" {
            format!("{k} = {{ trailing_days = 2, min_average = 1 }}\n")
        } else {
            format!("{k} = {{}}\n")
        }
    };
    let mut text = format!("[alerts]\nadmins = [\"{BOSS}\"]\n");
    for k in [
        "leave_spike",
        "violation_spike",
        "delivery_failures",
        "parked_events",
        "checkin_drop",
    ] {
        text.push_str(&off(k));
    }
    text
}

#[tokio::test]
async fn rollups_count_what_happened_and_a_rerun_gives_the_same_rows() {
    let h = Harness::start(&rules("")).await;
    h.join(&["wmA", "wmB", "wmC"]).await;
    h.say("wmA", "签到").await;
    h.say("wmB", "签到").await;
    h.say("wmB", "今天有什么活动").await;
    h.leave(&["wmC"]).await;
    // 23:59 Shanghai is still the same community day; 00:01 is the next one.
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 15, 59, 0).unwrap());
    h.say("wmA", "晚安").await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 16, 1, 0).unwrap());
    h.say("wmA", "签到").await;

    let first = h.analyze().await;
    assert_eq!(first.last_day, Some("2026-03-03".parse().unwrap()));
    let day0 = h.community_row(0).await;
    assert_eq!((day0.joins, day0.leaves, day0.members), (3, 1, 2));
    assert_eq!(
        (day0.checkins, day0.messages, day0.active_members),
        (2, 4, 2)
    );
    assert_eq!(
        day0.points_issued,
        2 * 5 + 3 * 10,
        "check-ins and new-member points"
    );
    let day1 = h.community_row(1).await;
    assert_eq!(
        (day1.checkins, day1.messages, day1.active_members),
        (1, 1, 1)
    );
    assert_eq!(day1.members, 2);
    let mut conn = h.pool.acquire().await.unwrap();
    let chat_rows = store::daily_rows(&mut conn, CHAT, "2026-03-02".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(chat_rows[0].joins, 3);
    assert_eq!(chat_rows[0].active_members, 2);
    let before: Vec<_> = store::daily_rows(&mut conn, COMMUNITY, "2026-01-01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(before.len(), 60, "first pass backfills 60 days");
    drop(conn);

    // The same pass again: identical rows, nothing new to record.
    let again = h.analyze().await;
    assert_eq!(again.stage_changes, 0);
    assert!(again.alerts_opened.is_empty());
    let mut conn = h.pool.acquire().await.unwrap();
    let after = store::daily_rows(&mut conn, COMMUNITY, "2026-01-01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(before, after);
    drop(conn);
    h.stop().await;
}

#[tokio::test]
async fn an_at_risk_member_is_nudged_once_even_when_the_job_runs_twice() {
    let lifecycle =
        "[lifecycle]\nnew_days = 1\nat_risk_silent_days = 3\nat_risk_action = \"nudge\"\n";
    let h = Harness::start(&rules(lifecycle)).await;
    h.join(&["zhangsan", "wmExternal"]).await;
    h.say("zhangsan", "签到").await;
    h.say("wmExternal", "签到").await;
    let first = h.analyze().await;
    assert_eq!(first.stage_changes, 2, "both classified as new");

    h.morning(2);
    let active = h.analyze().await;
    assert_eq!(active.stage_changes, 2, "new -> active");
    h.morning(3);
    let risk = h.analyze().await;
    assert_eq!(risk.stage_changes, 2, "active -> at_risk");
    assert_eq!((risk.actions_queued, risk.actions_skipped), (1, 1));
    let rerun = h.analyze().await;
    assert_eq!(
        (
            rerun.stage_changes,
            rerun.actions_queued,
            rerun.actions_skipped
        ),
        (0, 0, 0)
    );
    h.clock.advance(Duration::hours(1));
    h.analyze().await;

    let nudges = h.app_messages_to("zhangsan");
    assert_eq!(nudges.len(), 1, "{nudges:?}");
    assert!(nudges[0].text().unwrap().contains("3 天"), "{nudges:?}");
    assert!(h.app_messages_to("wmExternal").is_empty());

    let mut conn = h.pool.acquire().await.unwrap();
    let changes = store::stage_changes(&mut conn, Some("wmExternal"), 10)
        .await
        .unwrap();
    let latest = &changes[0];
    assert_eq!(latest.to_stage, "at_risk");
    assert_eq!(latest.action_status.as_deref(), Some("skipped"));
    assert!(latest
        .action_reason
        .as_deref()
        .unwrap()
        .contains("internal members only"));
    let skipped = outbox_store::list(&mut conn, Some(OutboxStatus::Skipped))
        .await
        .unwrap();
    assert!(skipped
        .iter()
        .any(|r| r.idempotency_key == latest.outbox_key.clone().unwrap()));
    let counts = store::stage_counts(&mut conn).await.unwrap();
    assert_eq!(counts.get("at_risk"), Some(&2));
    drop(conn);
    // The dashboard's funnel reads the stored stages; the skipped reason is shown.
    let (page, api) = dashboard(&h).await;
    assert_eq!(api["funnel"]["at_risk"], 2, "{api}");
    assert_eq!(api["funnel"]["new"], 0);
    assert!(page.contains("data-status=\"skipped\""), "{page}");
    assert!(page.contains("internal members only"));
    assert!(page.contains("data-status=\"queued\""));
    // The member page shows the stage history.
    let member = console_page(&h, "/admin/members/wmExternal").await;
    assert!(member.contains("data-stage=\"at_risk\""), "{member}");
    assert!(member.contains("活跃 → 流失预警"), "{member}");

    // Coming back makes them active; going silent again is a new change and a new nudge.
    h.say("zhangsan", "签到").await;
    assert_eq!(h.analyze().await.stage_changes, 1);
    h.morning(6);
    let again = h.analyze().await;
    assert_eq!(again.actions_queued, 1);
    assert_eq!(h.app_messages_to("zhangsan").len(), 2);
    h.stop().await;
}

/// Alert messages the admin received, in order.
fn alert_texts(h: &Harness) -> Vec<String> {
    h.app_messages_to(BOSS)
        .iter()
        .filter_map(|d| d.text().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn leave_spike_opens_escalates_and_closes_with_one_message_each() {
    let h = Harness::start(&rules(&only_alert(
        "leave_spike",
        "{ yellow = 2, orange = 4, red = 6 }",
    )))
    .await;
    let people: Vec<String> = (0..8).map(|i| format!("wmL{i}")).collect();
    let people: Vec<&str> = people.iter().map(String::as_str).collect();
    h.join(&people).await;
    assert!(h.analyze().await.alerts_opened.is_empty());

    h.leave(&people[0..2]).await;
    let opened = h.analyze().await;
    assert_eq!(
        opened.alerts_opened,
        [(AlertKind::LeaveSpike, AlertLevel::Yellow)]
    );
    // The condition persists: nothing more is sent.
    assert!(h.analyze().await.alerts_opened.is_empty());
    h.leave(&people[2..3]).await;
    let same = h.analyze().await;
    assert!(same.alerts_escalated.is_empty() && same.alerts_opened.is_empty());

    h.leave(&people[3..4]).await;
    let escalated = h.analyze().await;
    assert_eq!(
        escalated.alerts_escalated,
        [(AlertKind::LeaveSpike, AlertLevel::Orange)]
    );
    assert!(h.analyze().await.alerts_escalated.is_empty());

    // The console shows the open episode at its level.
    let (page, api) = dashboard(&h).await;
    assert!(
        page.contains("data-kind=\"leave_spike\" data-level=\"orange\""),
        "{page}"
    );
    assert!(page.contains("今日退群激增"));
    assert!(page.contains("预警消息发送给: boss"), "{page}");
    let alerts = api["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{api}");
    assert_eq!(alerts[0]["kind"], "leave_spike");
    assert_eq!(alerts[0]["level"], "orange");
    assert_eq!(alerts[0]["value"], 4);
    assert_eq!(api["leaves"].as_array().unwrap().last().unwrap(), 4);

    // A new community day: no leaves today, the episode closes silently.
    h.morning(1);
    let closed = h.analyze().await;
    assert_eq!(closed.alerts_closed, [AlertKind::LeaveSpike]);
    let (page, api) = dashboard(&h).await;
    assert!(api["alerts"].as_array().unwrap().is_empty());
    assert!(page.contains("一切正常"));
    let recent = api["recent_alerts"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{api}");
    assert_eq!(recent[0]["level"], "orange");
    assert!(recent[0]["closed_at"].is_i64());

    let texts = alert_texts(&h);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("黄色预警") && texts[0].contains("今日退群 2 人"));
    assert!(texts[1].contains("升级为橙色预警") && texts[1].contains("今日退群 4 人"));
    h.stop().await;
}

#[tokio::test]
async fn violation_spike_opens_escalates_and_closes_with_one_message_each() {
    let moderation = "[moderation]\nenabled = true\nmanagers = [\"boss\"]\nterms = \"\"\"\n[ads:medium]\n加微信\n\"\"\"\n";
    let h = Harness::start(&rules(&format!(
        "{}\n{moderation}",
        only_alert("violation_spike", "{ yellow = 1, orange = 3 }")
    )))
    .await;
    h.join(&["wmV1", "wmV2", "wmV3"]).await;
    h.say("wmV1", "加微信领红包").await;
    let opened = h.analyze().await;
    assert_eq!(
        opened.alerts_opened,
        [(AlertKind::ViolationSpike, AlertLevel::Yellow)]
    );
    h.say("wmV2", "加微信看看").await;
    assert!(h.analyze().await.alerts_escalated.is_empty());
    h.say("wmV3", "加微信有优惠").await;
    assert_eq!(
        h.analyze().await.alerts_escalated,
        [(AlertKind::ViolationSpike, AlertLevel::Orange)]
    );
    assert_eq!(h.community_row(0).await.violations, 3);
    h.analyze().await;
    h.morning(1);
    assert_eq!(h.analyze().await.alerts_closed, [AlertKind::ViolationSpike]);
    let texts: Vec<String> = alert_texts(&h)
        .into_iter()
        .filter(|t| t.contains("预警"))
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("今日违规 1 次"));
    assert!(texts[1].contains("升级为橙色预警"));
    h.stop().await;
}

#[tokio::test]
async fn checkin_drop_opens_at_its_level_and_closes_when_checkins_recover() {
    let h = Harness::start(&rules(&only_alert(
        "checkin_drop",
        "{ yellow = 30, orange = 60, trailing_days = 2, min_average = 1 }",
    )))
    .await;
    let people = ["wmC1", "wmC2", "wmC3"];
    h.join(&people).await;
    // Three check-ins on days 0 and 1, one on day 2: nothing to compare yet,
    // or no drop.
    for day in 0..3 {
        h.morning(day);
        let who: &[&str] = if day == 2 { &people[..1] } else { &people };
        for person in who {
            h.say(person, "签到").await;
        }
        let outcome = h.analyze().await;
        assert!(outcome.alerts_opened.is_empty(), "day {day}: {outcome:?}");
    }
    // Day 3 compares day 2 (1 check-in) with days 0-1 (average 3): a 66 % drop.
    h.morning(3);
    let opened = h.analyze().await;
    assert_eq!(
        opened.alerts_opened,
        [(AlertKind::CheckinDrop, AlertLevel::Orange)],
        "{opened:?}"
    );
    for person in people {
        h.say(person, "签到").await;
    }
    assert!(h.analyze().await.alerts_opened.is_empty());
    // Day 4 compares day 3 (3) with days 1-2 (average 2): recovered.
    h.morning(4);
    assert_eq!(h.analyze().await.alerts_closed, [AlertKind::CheckinDrop]);
    let texts = alert_texts(&h);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("橙色预警") && texts[0].contains("下降 66%"),
        "{texts:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn delivery_failures_open_escalate_and_close_with_one_message_each() {
    let h = Harness::start(&rules(&only_alert(
        "delivery_failures",
        "{ yellow = 1, orange = 2 }",
    )))
    .await;
    // WeCom refuses the bot's replies (invalid user): the rows go dead.
    h.sim().inject(
        FaultRule::new(FaultKind::Errcode { errcode: 40003 })
            .on_path("aibot/response")
            .times(2),
    );
    h.mention("staffD1", "签到").await;
    let opened = h.analyze().await;
    assert_eq!(
        opened.alerts_opened,
        [(AlertKind::DeliveryFailures, AlertLevel::Yellow)]
    );
    h.mention("staffD2", "签到").await;
    assert_eq!(
        h.analyze().await.alerts_escalated,
        [(AlertKind::DeliveryFailures, AlertLevel::Orange)]
    );
    // The fault is used up: a third reply goes out and changes nothing.
    h.mention("staffD3", "签到").await;
    let quiet = h.analyze().await;
    assert!(quiet.alerts_escalated.is_empty() && quiet.alerts_opened.is_empty());
    let row = h.community_row(0).await;
    assert_eq!(row.pushes_failed, 2);
    h.morning(1);
    assert_eq!(
        h.analyze().await.alerts_closed,
        [AlertKind::DeliveryFailures]
    );
    let texts = alert_texts(&h);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("今日发送失败 1 条"));
    assert!(texts[1].contains("今日发送失败 2 条"));
    h.stop().await;
}

/// A console page as a signed-in viewer sees it.
async fn console_page(h: &Harness, path: &str) -> String {
    h.console().page_as(Role::Viewer, path).await
}

/// A JSON API response for a viewer's token.
async fn console_api(h: &Harness, path: &str) -> serde_json::Value {
    h.console().api_as(Role::Viewer, path).await
}

/// The console's dashboard page and JSON API response.
async fn dashboard(h: &Harness) -> (String, serde_json::Value) {
    (
        console_page(h, "/admin").await,
        console_api(h, "/admin/api/v1/dashboard").await,
    )
}

#[tokio::test]
async fn parked_events_open_escalate_and_close_when_a_manager_retries_them() {
    let h = Harness::start(&rules(&only_alert(
        "parked_events",
        "{ yellow = 1, orange = 2 }",
    )))
    .await;
    let first = h.park_one("bad-1").await;
    assert_eq!(
        h.analyze().await.alerts_opened,
        [(AlertKind::ParkedEvents, AlertLevel::Yellow)]
    );
    let second = h.park_one("bad-2").await;
    assert_eq!(
        h.analyze().await.alerts_escalated,
        [(AlertKind::ParkedEvents, AlertLevel::Orange)]
    );
    assert!(h.analyze().await.alerts_escalated.is_empty());
    // The manager retries both from the console: nothing is parked any more.
    let mut conn = h.pool.acquire().await.unwrap();
    for id in [first, second] {
        assert!(qunyun::store::inbox::requeue(&mut conn, id).await.unwrap());
    }
    drop(conn);
    assert_eq!(h.analyze().await.alerts_closed, [AlertKind::ParkedEvents]);
    let texts = alert_texts(&h);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("当前搁置事件 1 个"));
    assert!(texts[1].contains("升级为橙色预警"));
    h.stop().await;
}

/// A stored rule set that a stricter validator now refuses is never used: the
/// last good one keeps running, and the problem is a red alert on the console
/// and a message to the admins until a valid set is saved.
#[tokio::test]
async fn a_stored_rule_set_that_no_longer_validates_is_a_red_alert_until_replaced() {
    let valid = rules(&only_alert("leave_spike", "{ yellow = 100 }"));
    let h = Harness::start(&valid).await;
    // Stored behind the validator's back, as a set saved under an older release.
    let mut conn = h.pool.acquire().await.unwrap();
    let broken = qunyun::store::rule_sets::save(&mut conn, "community = 3", h.now())
        .await
        .unwrap();
    drop(conn);

    // The pipeline still runs the last good set: a check-in is answered.
    h.join(&["wmR1"]).await;
    h.say("wmR1", "签到").await;

    let opened = h.analyze().await;
    assert_eq!(
        opened.alerts_opened,
        [(AlertKind::RulesInvalid, AlertLevel::Red)]
    );
    assert_eq!(h.community_row(0).await.checkins, 1);
    let (page, api) = dashboard(&h).await;
    assert!(
        page.contains("data-kind=\"rules_invalid\" data-level=\"red\""),
        "{page}"
    );
    let alerts = api["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{api}");
    assert_eq!(alerts[0]["kind"], "rules_invalid");
    assert_eq!(alerts[0]["value"], broken);
    assert!(h.analyze().await.alerts_opened.is_empty(), "announced once");
    let texts = alert_texts(&h);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains(&format!("规则版本 {broken} 已无法通过校验")),
        "{texts:?}"
    );

    // A manager saves a valid set: the episode closes.
    let ops = qunyun::ops::Ops::over(h.pool.clone());
    let actor = qunyun::ops::Actor::cli(Some("test"));
    qunyun::ops::rules::apply(&ops, &actor, h.now(), &valid)
        .await
        .unwrap();
    assert_eq!(h.analyze().await.alerts_closed, [AlertKind::RulesInvalid]);
    let (_, api) = dashboard(&h).await;
    assert!(api["alerts"].as_array().unwrap().is_empty(), "{api}");
    h.stop().await;
}

#[tokio::test]
async fn show_prints_the_community_rollup_stages_and_open_alerts() {
    let h = Harness::start(&rules(&only_alert("leave_spike", "{ yellow = 1 }"))).await;
    h.join(&["wmS1", "wmS2"]).await;
    h.say("wmS1", "签到").await;
    h.leave(&["wmS2"]).await;
    h.analyze().await;
    let report = qunyun::jobs::analytics::report(&h.pool, h.now(), 3, None)
        .await
        .unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines[0].starts_with("day"), "{report}");
    assert_eq!(lines.len(), 1 + 3 + 2, "{report}");
    let today: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        today[..7],
        ["2026-03-02", "2", "1", "1", "1", "1", "1"],
        "{report}"
    );
    assert!(report.contains("stages: new 1,"), "{report}");
    assert!(report.contains("leave_spike yellow value 1"), "{report}");
    let chat = qunyun::jobs::analytics::report(&h.pool, h.now(), 1, Some(CHAT))
        .await
        .unwrap();
    assert!(
        chat.lines()
            .nth(1)
            .unwrap()
            .starts_with("2026-03-02     2     1"),
        "{chat}"
    );
    h.stop().await;
}

#[tokio::test]
async fn scheduled_pushes_count_for_their_chat_and_the_community() {
    let schedule = r#"
[[schedules]]
name = "morning"
cron = "0 0 10 * * *"

[schedules.targets]
chat_ids = ["wrANALYTICS000000000000000STAFF"]

[schedules.content]
kind = "text"
body = "早上好，{{ chat.name }}！"
"#;
    let h = Harness::start(&rules(schedule)).await;
    // The staff group has a classic robot: scheduled pushes go out through it.
    h.sim().add_robot("robot-key-a", STAFF);
    let mut conn = h.pool.acquire().await.unwrap();
    chats::upsert_chat(
        &mut conn,
        &chats::NewChat {
            chat_id: STAFF.into(),
            name: "运营同事群".into(),
            route: ChatRoute::InternalGroup {
                robot_key: Some("robot-key-a".into()),
                smart_bot: Some("bot".into()),
            },
            owner: Some(OWNER.into()),
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        h.now(),
    )
    .await
    .unwrap();
    drop(conn);
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    h.clock.set(start() + Duration::hours(1));
    let planned = scheduler.run_once(h.now()).await.unwrap();
    assert_eq!(planned.planned.len(), 1, "{planned:?}");
    h.deliver().await;
    let pushes: Vec<_> = h
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::Webhook)
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");

    h.analyze().await;
    let mut conn = h.pool.acquire().await.unwrap();
    let chat = store::daily_rows(&mut conn, STAFF, "2026-03-02".parse().unwrap())
        .await
        .unwrap();
    assert_eq!((chat[0].pushes_sent, chat[0].pushes_failed), (1, 0));
    drop(conn);
    let community = h.community_row(0).await;
    assert_eq!((community.pushes_sent, community.pushes_failed), (1, 0));
    // Integrations read a chat's rows from the JSON API.
    let rows = console_api(
        &h,
        &format!("/admin/api/v1/analytics/daily?chat_id={STAFF}&days=2"),
    )
    .await;
    let days = rows["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "yesterday and today: {rows}");
    assert_eq!(days[1]["day"], "2026-03-02");
    assert_eq!(days[1]["pushes_sent"], 1);
    h.stop().await;
}
