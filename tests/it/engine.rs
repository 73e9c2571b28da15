//! The engine end to end from the inbox: inbox row → pipeline → state + outbox,
//! on the harness's database and clock, the service's pipeline reading the
//! outbox rows it wrote in the same transaction.

use std::ops::Deref;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use qunyun::clock::{ManualClock, SharedClock};
use qunyun::ops::rules::Applied;
use qunyun::ops::{self, Actor, OpsError, Role};
use qunyun::outbound::Payload;
use qunyun::pipeline::{self, PipelineHooks, PipelineSettings};
use qunyun::rules::ChatRoute;
use qunyun::store::{chats, checkins, inbox, members, outbox, points, redemptions};
use qunyun::wecom::message::{self, BotChatType, BotMsgType, ChatChangeType, ChatUpdateDetail};

use crate::helpers::{TestApp, TestConfig};

/// An outbox row as WeCom would get it: the text and @-mentions of its payload.
#[derive(Debug)]
struct Sent {
    key: String,
    route: String,
    body: String,
    mentions: String,
    skipped: Option<String>,
}

/// The text and mentions inside a payload, whatever the route's shape.
fn text_and_mentions(payload: &Payload) -> (String, Vec<String>) {
    use qunyun::wecom::api::{AppMessageContent, BotResponse, WebhookMessage};
    let text = |t: &Option<qunyun::wecom::api::TextContent>| {
        t.as_ref().map(|t| t.content.clone()).unwrap_or_default()
    };
    match payload {
        Payload::AppGroup(content) | Payload::Member(content) => match content {
            AppMessageContent::Text { text } | AppMessageContent::Markdown { markdown: text } => {
                (text.content.clone(), Vec::new())
            }
            _ => (String::new(), Vec::new()),
        },
        Payload::Webhook(WebhookMessage::Text { text }) => {
            (text.content.clone(), text.mentioned_list.clone())
        }
        Payload::Webhook(WebhookMessage::Markdown { markdown }) => {
            (markdown.content.clone(), Vec::new())
        }
        Payload::Webhook(_) => (String::new(), Vec::new()),
        Payload::SmartBot(BotResponse::Markdown { markdown }) => {
            (markdown.content.clone(), Vec::new())
        }
        Payload::SmartBot(_) => (String::new(), Vec::new()),
        Payload::WelcomeCode(content) => (text(&content.text), Vec::new()),
        Payload::CustomerGroupMass(content) | Payload::CustomerMass(content) => {
            (text(&content.text), Vec::new())
        }
        Payload::CustomerTag(change) => (change.note.clone(), Vec::new()),
        Payload::AppChatRemove(removal) => (removal.reason.clone(), removal.del_user_list.clone()),
    }
}

fn manager() -> Actor {
    Actor::new("mei", Role::Operator)
}

/// The harness, and a counter for the bot messages the scenarios write.
struct Harness {
    app: TestApp,
    next_msg: std::cell::Cell<u64>,
}

impl Deref for Harness {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

fn start_time() -> DateTime<Utc> {
    // 2026-03-02 09:00 in Shanghai.
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()
}

/// Events are parked after three attempts; a pass looks at 100 rows.
async fn harness() -> Harness {
    let config = TestConfig::new()
        .starting_at(start_time())
        .with_pipeline(|p| {
            *p = PipelineSettings {
                max_attempts: 3,
                batch_size: 100,
            }
        });
    Harness {
        app: TestApp::start(config).await,
        next_msg: std::cell::Cell::new(1),
    }
}

impl Harness {
    /// `qunyun rules import`: the new version, or every problem.
    async fn import(&self, text: &str) -> Result<i64, String> {
        match ops::rules::apply(&self.ops(), &manager(), self.clock.now_utc(), text).await {
            Ok(Applied::Version(version)) => Ok(version),
            Ok(Applied::Invalid(problems)) => Err(problems
                .iter()
                .map(ops::rules::describe)
                .collect::<Vec<_>>()
                .join("; ")),
            Err(error) => Err(error.to_string()),
        }
    }

    /// A manager's points entry for `user`, known to the community from now on.
    async fn adjust(&self, user: &str, delta: i64, reason: &str) -> Result<i64, OpsError> {
        let now = self.clock.now_utc();
        members::ensure_person(&mut *self.conn().await, user, None, now)
            .await
            .unwrap();
        ops::points::adjust(&self.ops(), &manager(), now, user, delta, reason).await
    }

    async fn add_chat(&self, chat_id: &str, name: &str, route: ChatRoute, tags: &[&str]) {
        let chat = chats::NewChat {
            chat_id: chat_id.into(),
            name: name.into(),
            route,
            owner: Some("owner".into()),
            admins: vec!["admin".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            member_version: Some("v0".into()),
        };
        chats::upsert_chat(&mut *self.conn().await, &chat, self.clock.now_utc())
            .await
            .unwrap();
    }

    async fn insert(&self, kind: &str, source: &str, key: &str, chat_id: Option<&str>, json: &str) {
        let row = inbox::NewInboxEvent {
            source,
            kind: kind.parse().unwrap(),
            dedupe_key: key,
            received_at: self.clock.now_utc().timestamp(),
            event_json: json,
            chat_id,
        };
        inbox::insert_event(&mut *self.conn().await, &row)
            .await
            .unwrap();
    }

    async fn chat_change(
        &self,
        chat_id: &str,
        detail: ChatUpdateDetail,
        users: &[&str],
        last: Option<&str>,
        current: Option<&str>,
    ) {
        let adding = detail == ChatUpdateDetail::AddMember;
        let event = message::Event::ExternalChatChange(message::ExternalChatChange {
            header: sys_header(),
            chat_id: chat_id.into(),
            change_type: ChatChangeType::Update,
            update_detail: Some(detail),
            join_scene: adding.then_some(3),
            quit_scene: (!adding).then_some(0),
            mem_change_cnt: Some(users.len() as u32),
            mem_change_list: users.iter().map(|u| u.to_string()).collect(),
            last_mem_ver: last.map(str::to_string),
            cur_mem_ver: current.map(str::to_string),
        });
        let key = format!("app:main:sha256:{chat_id}:{adding}:{}", users.join(","));
        self.insert_event(&event, "app:main", &key).await;
    }

    async fn insert_event(&self, event: &message::Event, source: &str, key: &str) {
        let json = serde_json::to_string(event).unwrap();
        self.insert(event.kind(), source, key, event.chat_id(), &json)
            .await;
    }

    async fn join(&self, chat_id: &str, users: &[&str], last: &str, current: &str) {
        self.chat_change(
            chat_id,
            ChatUpdateDetail::AddMember,
            users,
            Some(last),
            Some(current),
        )
        .await;
    }

    async fn leave(&self, chat_id: &str, user: &str) {
        self.chat_change(chat_id, ChatUpdateDetail::DelMember, &[user], None, None)
            .await;
    }

    /// An @-mention of the smart bot in a group; returns the dedupe key.
    async fn say(&self, chat_id: &str, user: &str, text: &str) -> String {
        let n = self.next_msg.get();
        self.next_msg.set(n + 1);
        let event = bot_message(
            &format!("MSG{n}"),
            chat_id,
            user,
            text,
            Some(format!("http://127.0.0.1:9/resp/{n}")),
        );
        let key = format!("bot:main:MSG{n}");
        self.insert_event(&event, "bot:main", &key).await;
        key
    }

    async fn run(&self) -> pipeline::RunOutcome {
        self.run_pipeline().await
    }

    /// Every outbox row, oldest first, with the text WeCom would get.
    async fn sent(&self) -> Vec<Sent> {
        let mut rows = outbox::list(&mut *self.conn().await, None).await.unwrap();
        rows.reverse();
        rows.into_iter()
            .map(|row| {
                let (body, mentions) = Payload::decode(row.route, &row.payload_json)
                    .map(|payload| text_and_mentions(&payload))
                    .unwrap_or_default();
                Sent {
                    key: row.idempotency_key,
                    route: row.route.as_str().to_owned(),
                    body,
                    mentions: mentions.join(","),
                    skipped: (row.status == outbox::OutboxStatus::Skipped)
                        .then_some(row.last_error)
                        .flatten(),
                }
            })
            .collect()
    }

    async fn reply_to(&self, key: &str) -> String {
        let reply_key = format!("reply:{key}");
        self.sent()
            .await
            .into_iter()
            .find(|s| s.key == reply_key)
            .map(|s| s.body)
            .unwrap_or_else(|| panic!("no reply for {key}"))
    }

    async fn balance(&self, user: &str) -> i64 {
        points::balance(&mut *self.conn().await, user)
            .await
            .unwrap()
    }

    async fn statuses(&self) -> Vec<String> {
        inbox::list_all(&mut *self.conn().await)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status.to_string())
            .collect()
    }
}

fn sys_header() -> message::AppHeader {
    message::AppHeader {
        to_user_name: "ww0000000000000000".into(),
        from_user_name: "sys".into(),
        create_time: 1_700_000_100,
        agent_id: None,
    }
}

fn bot_message(
    msg_id: &str,
    chat_id: &str,
    user: &str,
    text: &str,
    response_url: Option<String>,
) -> message::Event {
    message::Event::BotMessage(message::BotMessage {
        msg_id: msg_id.into(),
        aibot_id: "BOT".into(),
        chat_id: Some(chat_id.into()),
        chat_type: BotChatType::Group,
        from_user_id: user.into(),
        from_corp_id: None,
        response_url,
        msg_type: BotMsgType::Text,
        text: text.into(),
        raw_text: format!("@运营助手 {text}"),
        image_urls: Vec::new(),
        file_url: None,
        quote: None,
        create_time: None,
    })
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for Arc<ManualClock> {
    fn now_utc(&self) -> DateTime<Utc> {
        qunyun::clock::Clock::now(self.as_ref())
    }
}

#[tokio::test]
async fn checkins_award_points_once_per_day_and_report_rank() {
    let h = harness().await;
    h.add_chat(
        "wrA",
        "好物分享群",
        ChatRoute::internal_with_smart_bot("bot"),
        &[],
    )
    .await;
    let first = h.say("wrA", "alice", "签到").await;
    let second = h.say("wrA", "bob", "打卡").await;
    let again = h.say("wrA", "alice", "签到").await;
    let outcome = h.run().await;
    assert_eq!(outcome.processed, 3);

    assert!(h.reply_to(&first).await.contains("今天第 1 位"));
    assert!(h.reply_to(&second).await.contains("今天第 2 位"));
    assert!(h.reply_to(&again).await.contains("已经签过到"));
    assert_eq!(h.balance("alice").await, 5);
    assert_eq!(h.balance("bob").await, 5);
    let sent = h.sent().await;
    assert!(sent
        .iter()
        .all(|s| s.route == "smart_bot" && s.skipped.is_none()));

    // Next community day: streak 2 with its bonus.
    h.clock.advance(Duration::days(1));
    let next = h.say("wrA", "alice", "签到").await;
    h.run().await;
    let reply = h.reply_to(&next).await;
    assert!(reply.contains("连续签到 2 天"), "{reply}");
    assert_eq!(h.balance("alice").await, 5 + 6);
}

#[tokio::test]
async fn replayed_event_cannot_double_award_or_double_send() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    h.say("wrA", "alice", "签到").await;
    h.run().await;
    let ledger_before = points::count_entries(&mut *h.conn().await).await.unwrap();
    let sent_before = h.sent().await.len();

    // Lose the "done" mark (as if the dedupe table were lost) and process again.
    sqlx::query("update inbox set status = 'pending'")
        .execute(&h.pool)
        .await
        .unwrap();
    h.run().await;

    assert_eq!(
        points::count_entries(&mut *h.conn().await).await.unwrap(),
        ledger_before
    );
    assert_eq!(h.sent().await.len(), sent_before);
    assert_eq!(checkins::count_all(&mut *h.conn().await).await.unwrap(), 1);
    assert_eq!(h.balance("alice").await, 5);
}

#[tokio::test]
async fn worker_dropped_inside_the_transaction_applies_nothing_then_exactly_once() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::AppGroup, &[]).await;
    h.join("wrA", &["carol"], "v0", "v1").await;
    h.say("wrA", "carol", "签到").await;

    // A worker that stops forever just before COMMIT of the first event.
    let (reached_tx, mut reached_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let hook: pipeline::PipelineHooks = PipelineHooks {
        before_commit: Some(Arc::new(move |inbox_id| {
            let _ = reached_tx.send(inbox_id);
            Box::pin(std::future::pending::<()>())
        })),
        ..PipelineHooks::default()
    };
    let doomed = h.new_pipeline(hook);
    let task = tokio::spawn(async move { doomed.run_once().await });
    let inbox_id = reached_rx.recv().await.unwrap();
    assert_eq!(inbox_id, 1);
    task.abort(); // the process "dies" with the transaction open
    assert!(task.await.unwrap_err().is_cancelled());

    // Nothing of the first event is visible.
    let mut conn = h.conn().await;
    assert_eq!(
        members::current_members(&mut conn, "wrA").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(points::count_entries(&mut conn).await.unwrap(), 0);
    drop(conn);
    assert!(h.sent().await.is_empty());
    assert_eq!(h.statuses().await, vec!["pending", "pending"]);

    // A fresh worker applies everything exactly once; running again adds nothing.
    let outcome = h.run().await;
    assert_eq!(outcome.processed, 2);
    h.run().await;
    assert_eq!(h.statuses().await, vec!["done", "done"]);
    assert_eq!(
        members::current_members(&mut *h.conn().await, "wrA")
            .await
            .unwrap(),
        vec!["carol".to_string()]
    );
    // 10 new-member points + 5 for the check-in, once each.
    assert_eq!(h.balance("carol").await, 15);
    assert_eq!(
        points::count_entries(&mut *h.conn().await).await.unwrap(),
        2
    );
}

#[tokio::test]
async fn poison_event_is_parked_after_retries_and_never_blocks_other_chats() {
    let h = harness().await;
    h.add_chat("wrA", "群A", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    h.add_chat("wrB", "群B", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    // A bot message without response_url cannot be answered: a poison event.
    h.insert_event(
        &bot_message("BAD", "wrA", "x", "签到", None),
        "bot:main",
        "bot:main:BAD",
    )
    .await;
    let later_in_a = h.say("wrA", "alice", "签到").await;
    let in_b = h.say("wrB", "bob", "签到").await;

    let first = h.run().await;
    assert_eq!((first.processed, first.failed, first.parked), (1, 1, 0));
    h.reply_to(&in_b).await; // chat B went ahead
                             // Chat A waits behind its failing event to keep its order.
    assert_eq!(h.statuses().await, vec!["pending", "pending", "done"]);

    h.run().await;
    let third = h.run().await;
    assert_eq!(third.parked, 1);
    let rows = inbox::list_all(&mut *h.conn().await).await.unwrap();
    assert_eq!(rows[0].status, inbox::InboxStatus::Parked);
    assert_eq!(rows[0].attempts, 3);
    let error = rows[0].last_error.clone().unwrap();
    assert!(error.contains("response_url"), "{error}");
    // Once the poison event is parked, chat A's next event goes through.
    h.reply_to(&later_in_a).await;
}

#[tokio::test]
async fn joins_within_the_merge_window_get_one_welcome() {
    let h = harness().await;
    h.add_chat("wrA", "好物分享群", ChatRoute::AppGroup, &[])
        .await;
    h.join("wrA", &["u1"], "v0", "v1").await;
    h.run().await;
    h.clock.advance(Duration::seconds(4));
    h.join("wrA", &["u2", "u3"], "v1", "v2").await;
    h.run().await;
    assert!(h.sent().await.is_empty(), "window still open");

    h.clock.advance(Duration::seconds(6));
    let outcome = h.run().await;
    assert_eq!(outcome.welcomes_flushed, 1);
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].route, "app_group");
    // appchat/send has no @-mentions: the welcome names the members.
    assert!(sent[0].body.contains("u1、u2、u3"), "{}", sent[0].body);
    assert_eq!(
        chats::get_chat(&mut *h.conn().await, "wrA")
            .await
            .unwrap()
            .unwrap()
            .member_version
            .as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn a_robot_welcome_mentions_the_newcomers() {
    let h = harness().await;
    h.add_chat(
        "wrR",
        "机器人群",
        ChatRoute::internal_with_robot("KEY-R"),
        &[],
    )
    .await;
    h.join("wrR", &["u1", "u2"], "v0", "v1").await;
    h.run().await;
    h.clock.advance(Duration::seconds(10));
    h.run().await;
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].route.as_str(), sent[0].mentions.as_str()),
        ("webhook", "u1,u2")
    );
}

#[tokio::test]
async fn welcome_in_customer_group_becomes_one_owner_digest() {
    let h = harness().await;
    h.add_chat("wrC", "客户群", ChatRoute::CustomerGroup, &[])
        .await;
    h.join("wrC", &["wmX"], "v0", "v1").await;
    h.run().await;
    h.clock.advance(Duration::seconds(10));
    h.run().await;
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    // Nobody may post in a customer group: the owner hears of the newcomer 1:1.
    assert_eq!(sent[0].route, "member");
    assert!(
        sent[0].key.starts_with("owner_digest:welcome:wrC:"),
        "{}",
        sent[0].key
    );
    assert!(sent[0].body.contains("wmX"), "{}", sent[0].body);
}

#[tokio::test]
async fn member_leaving_before_the_welcome_is_not_welcomed() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::AppGroup, &[]).await;
    h.join("wrA", &["u1", "u2"], "v0", "v1").await;
    h.leave("wrA", "u2").await;
    h.run().await;
    h.clock.advance(Duration::seconds(10));
    h.run().await;
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].body.contains("u1"), "{}", sent[0].body);
    assert!(!sent[0].body.contains("u2"), "{}", sent[0].body);
}

#[tokio::test]
async fn member_version_gap_or_unknown_chat_flags_a_resync() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::AppGroup, &[]).await;
    h.join("wrA", &["u1"], "v-lost", "v5").await;
    h.join("wrNEW", &["u2"], "x", "y").await;
    h.run().await;
    let flagged = chats::chats_needing_resync(&mut *h.conn().await)
        .await
        .unwrap();
    assert_eq!(flagged, vec!["wrA".to_string(), "wrNEW".to_string()]);
}

#[tokio::test]
async fn two_workers_racing_for_the_last_item_sell_it_once() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    let version = h
        .import("[[catalog]]\nitem = \"保温杯\"\ncost = 30\nstock = 1\n")
        .await
        .unwrap();
    assert_eq!(version, 1);
    for user in ["alice", "bob"] {
        h.adjust(user, 50, "活动奖励").await.unwrap();
    }
    let a = h.say("wrA", "alice", "兑换 保温杯").await;
    let b = h.say("wrA", "bob", "兑换 保温杯").await;

    let other = h.new_pipeline(PipelineHooks::default());
    let (r1, r2) = tokio::join!(h.pipeline().run_once(), other.run_once());
    r1.unwrap();
    r2.unwrap();

    let mut conn = h.conn().await;
    let sold = redemptions::list(&mut conn, None).await.unwrap();
    assert_eq!(sold.len(), 1);
    assert_eq!(redemptions::stock(&mut conn).await.unwrap()["保温杯"], 0);
    drop(conn);
    let replies = [h.reply_to(&a).await, h.reply_to(&b).await];
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.contains("兑换「保温杯」成功"))
            .count(),
        1,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|r| r.contains("已经兑完了")).count(),
        1,
        "{replies:?}"
    );
    let winner = &sold[0].user_id;
    assert_eq!(h.balance(winner).await, 20);
}

#[tokio::test]
async fn imported_rule_set_applies_without_restart_and_invalid_one_is_refused() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    let before = h.say("wrA", "alice", "报到").await;
    h.run().await;
    assert!(h.sent().await.iter().all(|s| !s.key.ends_with(&before)));

    let err = h
        .import("[checkin]\nkeywords = [\"\"]\n")
        .await
        .unwrap_err();
    assert!(
        err.contains("checkin.keywords[0]: must not be empty"),
        "{err}"
    );
    h.import("[checkin]\nkeywords = [\"报到\"]\nbase_points = 7\n")
        .await
        .unwrap();

    let after = h.say("wrA", "alice", "报到").await;
    h.run().await; // same pipeline object: picks the new version up
    assert!(h.reply_to(&after).await.contains("+7 积分"));
    assert!(ops::rules::active(&h.ops())
        .await
        .unwrap()
        .body
        .contains("报到"));
}

#[tokio::test]
async fn app_text_and_archive_messages_reach_the_same_rules() {
    let h = harness().await;
    h.add_chat(
        "wrW",
        "有机器人的群",
        ChatRoute::internal_with_robot("KEY1"),
        &[],
    )
    .await;
    let app_text = message::Event::AppText(message::AppText {
        header: message::AppHeader {
            to_user_name: "ww0000000000000000".into(),
            from_user_name: "zhangsan".into(),
            create_time: 1_700_000_300,
            agent_id: Some("1000002".into()),
        },
        content: "签到".into(),
        msg_id: 7_300_000_000_000_000_001,
    });
    h.insert_event(&app_text, "app:main", "app:main:msg:7300000000000000001")
        .await;
    let batch = vec![qunyun::ingest::IngestMessage {
        message_id: "arch-1".into(),
        chat_id: Some("wrW".into()),
        sender: "lisi".into(),
        text: "积分".into(),
        sent_at: 1_700_000_000,
        msgtype: None,
    }];
    let inserted = qunyun::ingest::ingest_messages(&mut *h.conn().await, &batch, h.clock.now_utc())
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    // The same batch again adds nothing.
    assert_eq!(
        qunyun::ingest::ingest_messages(&mut *h.conn().await, &batch, h.clock.now_utc())
            .await
            .unwrap(),
        0
    );
    h.run().await;

    let sent = h.sent().await;
    let app_reply = sent
        .iter()
        .find(|s| s.key == "reply:app:main:msg:7300000000000000001")
        .unwrap();
    assert_eq!(app_reply.route, "member");
    assert!(app_reply.body.contains("签到成功"));
    let archive_reply = sent
        .iter()
        .find(|s| s.key == "reply:archive:arch-1")
        .unwrap();
    assert_eq!(archive_reply.route, "webhook");
    assert!(
        archive_reply.body.contains("当前积分 0"),
        "{}",
        archive_reply.body
    );
}

#[test]
fn ingest_signature_covers_timestamp_and_body() {
    use qunyun::ingest::{sign_ingest_batch, verify_ingest_signature};
    let body = br#"[{"message_id":"1"}]"#;
    let good = sign_ingest_batch(b"secret", "1763776800", body);
    assert!(verify_ingest_signature(
        b"secret",
        "1763776800",
        body,
        &good
    ));
    assert!(!verify_ingest_signature(
        b"other",
        "1763776800",
        body,
        &good
    ));
    assert!(!verify_ingest_signature(
        b"secret",
        "1763776801",
        body,
        &good
    ));
    assert!(!verify_ingest_signature(
        b"secret",
        "1763776800",
        b"tampered",
        &good
    ));
    assert!(!verify_ingest_signature(
        b"secret",
        "1763776800",
        body,
        "zz"
    ));
}

#[tokio::test]
async fn manager_adjustment_cannot_make_a_balance_negative() {
    let h = harness().await;
    assert_eq!(h.adjust("alice", 30, "补偿").await.unwrap(), 30);
    let err = h.adjust("alice", -31, "扣分").await.unwrap_err();
    assert!(err.to_string().contains("does not cover"));
    assert_eq!(h.adjust("alice", -30, "扣分").await.unwrap(), 0);
    // The ledger is append-only.
    assert!(sqlx::query("delete from points_ledger")
        .execute(&h.pool)
        .await
        .is_err());
    assert!(sqlx::query("update points_ledger set delta = 1000")
        .execute(&h.pool)
        .await
        .is_err());
}

mod balance_property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Say(usize, &'static str),
        Adjust(usize, i64),
        NextDay,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0usize..3,
                prop::sample::select(vec!["签到", "补签", "兑换 帆布袋", "积分", "兑换 不存在"])
            )
                .prop_map(|(u, t)| Op::Say(u, t)),
            (0usize..3, -40i64..40).prop_map(|(u, d)| Op::Adjust(u, d)),
            Just(Op::NextDay),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn balance_is_the_ledger_sum_and_never_negative(ops in proptest::collection::vec(op(), 1..25)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let h = harness().await;
                h.add_chat("wrA", "群", ChatRoute::internal_with_smart_bot("bot"), &[]).await;
                h.import("[[catalog]]\nitem = \"帆布袋\"\ncost = 15\nstock = 3\nper_person = 5\n").await.unwrap();
                let users = ["alice", "bob", "carol"];
                for op in ops {
                    match op {
                        Op::Say(u, text) => { h.say("wrA", users[u], text).await; }
                        Op::Adjust(u, d) if d != 0 => {
                            // Refused when it would go negative; either way the invariant holds.
                            let _ = h.adjust(users[u], d, "调整").await;
                        }
                        Op::Adjust(..) => {}
                        Op::NextDay => h.clock.advance(Duration::days(1)),
                    }
                    h.run().await;
                    for user in users {
                        let mut conn = h.conn().await;
                        let entries = points::entries_for(&mut conn, user).await.unwrap();
                        let sum: i64 = entries.iter().map(|e| e.delta).sum();
                        let balance = points::balance(&mut conn, user).await.unwrap();
                        assert_eq!(balance, sum);
                        assert!(balance >= 0, "{user} went negative: {entries:?}");
                    }
                }
                let mut conn = h.conn().await;
                let stock = redemptions::stock(&mut conn).await.unwrap()["帆布袋"];
                let sold = redemptions::list(&mut conn, None).await.unwrap().len() as i64;
                assert_eq!(stock + sold, 3);
                assert!(inbox::list_all(&mut conn).await.unwrap().iter().all(|r| r.status == inbox::InboxStatus::Done));
            });
        }
    }
}

#[tokio::test]
async fn store_queries_for_admin_views_and_resync() {
    let h = harness().await;
    h.add_chat("wrA", "群A", ChatRoute::AppGroup, &["vip"])
        .await;
    h.add_chat("wrB", "群B", ChatRoute::internal_with_robot("K"), &[])
        .await;
    let mut conn = h.conn().await;
    assert_eq!(
        chats::list_chat_ids(&mut conn).await.unwrap(),
        vec!["wrA", "wrB"]
    );
    let chat = chats::get_chat(&mut conn, "wrB").await.unwrap().unwrap();
    assert_eq!(chat.route, ChatRoute::internal_with_robot("K"));
    chats::mark_needs_resync(&mut conn, "wrA").await.unwrap();
    chats::clear_needs_resync(&mut conn, "wrA").await.unwrap();
    assert!(chats::chats_needing_resync(&mut conn)
        .await
        .unwrap()
        .is_empty());
    drop(conn);

    // Points in two chats: per-chat and community leaderboards, all time and since a day.
    h.join("wrA", &["a"], "v0", "v1").await;
    h.join("wrB", &["b"], "v0", "v1").await;
    h.run().await;
    let mut conn = h.conn().await;
    let community = points::leaderboard(&mut conn, None, None, 10)
        .await
        .unwrap();
    assert_eq!(community.len(), 2);
    let in_a = points::leaderboard(&mut conn, None, Some("wrA"), 10)
        .await
        .unwrap();
    assert_eq!(
        in_a.iter().map(|r| r.user_id.as_str()).collect::<Vec<_>>(),
        vec!["a"]
    );
    let future = chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    assert!(points::leaderboard(&mut conn, Some(future), None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(points::total(&mut conn).await.unwrap(), 20);

    // Redemptions are fulfilled once.
    redemptions::sync_catalog(&mut conn, &[("杯".into(), 1)], "test", h.clock.now_utc())
        .await
        .unwrap();
    let id = redemptions::create(&mut conn, "a", "杯", 5, "redeem:x", h.clock.now_utc())
        .await
        .unwrap()
        .unwrap();
    assert!(
        redemptions::create(&mut conn, "a", "杯", 5, "redeem:x", h.clock.now_utc())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        redemptions::mark_fulfilled(&mut conn, id, h.clock.now_utc())
            .await
            .unwrap()
    );
    assert!(
        !redemptions::mark_fulfilled(&mut conn, id, h.clock.now_utc())
            .await
            .unwrap()
    );
    assert_eq!(
        redemptions::list(&mut conn, Some("fulfilled"))
            .await
            .unwrap()
            .len(),
        1
    );

    // Parked rows can be requeued by a manager.
    let bad = inbox::NewInboxEvent {
        source: "bot:main",
        kind: inbox::InboxKind::BotMessage,
        dedupe_key: "bad",
        received_at: 0,
        event_json: "not json",
        chat_id: None,
    };
    let inbox::Inserted::New(bad_id) = inbox::insert_event(&mut conn, &bad).await.unwrap() else {
        panic!("expected a new row");
    };
    drop(conn);
    for _ in 0..3 {
        h.run().await;
    }
    let mut conn = h.conn().await;
    assert!(inbox::requeue(&mut conn, bad_id).await.unwrap());
    assert!(!inbox::requeue(&mut conn, bad_id).await.unwrap());
    assert_eq!(
        qunyun::store::rule_sets::list_versions(&mut conn)
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn resync_replaces_the_member_list_and_clears_the_flag() {
    let h = harness().await;
    h.add_chat("wrA", "群A", ChatRoute::AppGroup, &[]).await;
    h.join("wrA", &["a", "b"], "v0", "v1").await;
    h.join("wrA", &["c"], "v-missed", "v9").await; // a gap: we missed a callback
    h.run().await;
    assert_eq!(
        chats::chats_needing_resync(&mut *h.conn().await)
            .await
            .unwrap(),
        vec!["wrA"]
    );

    // groupchat/get says: b left, c and d are in (d joined in the lost callback).
    let synced = |user: &str| members::SyncedMember {
        user_id: user.into(),
        name: Some(format!("名{user}")),
        joined_at: h.clock.now_utc(),
        join_scene: qunyun::rules::event::JoinScene::from_groupchat_code(Some(2)),
        inviter: Some("owner".into()),
    };
    let chat = chats::NewChat {
        chat_id: "wrA".into(),
        name: "群A".into(),
        route: ChatRoute::AppGroup,
        owner: Some("owner".into()),
        admins: vec![],
        tags: vec![],
        member_version: Some("v10".into()),
    };
    let (added, removed) = qunyun::jobs::groupsync::apply_group_snapshot(
        &h.pool,
        &chat,
        &[synced("a"), synced("c"), synced("d")],
        h.clock.now_utc(),
    )
    .await
    .unwrap();
    assert_eq!((added, removed), (1, 1));
    let mut conn = h.conn().await;
    let mut now_in = members::current_members(&mut conn, "wrA").await.unwrap();
    now_in.sort();
    assert_eq!(now_in, vec!["a", "c", "d"]);
    assert!(chats::chats_needing_resync(&mut conn)
        .await
        .unwrap()
        .is_empty());
    let chat = chats::get_chat(&mut conn, "wrA").await.unwrap().unwrap();
    assert_eq!(chat.member_version.as_deref(), Some("v10"));
    assert_eq!(chat.member_count, 3);
    assert_eq!(
        members::person_name(&mut conn, "d")
            .await
            .unwrap()
            .as_deref(),
        Some("名d")
    );
}

#[tokio::test]
async fn onboarding_tip_goes_out_a_day_later_unless_the_member_left() {
    let h = harness().await;
    h.add_chat("wrA", "群A", ChatRoute::AppGroup, &[]).await;
    h.join("wrA", &["stays", "goes"], "v0", "v1").await;
    h.run().await;
    h.clock.advance(Duration::hours(2));
    h.leave("wrA", "goes").await;
    h.run().await;
    let tips = |sent: Vec<Sent>| {
        sent.into_iter()
            .filter(|s| s.key.starts_with("onboarding:"))
            .collect::<Vec<_>>()
    };
    assert!(tips(h.sent().await).is_empty());

    h.clock.advance(Duration::hours(22));
    let outcome = h.run().await;
    assert_eq!(outcome.onboarding_sent, 1);
    let sent = tips(h.sent().await);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].key.starts_with("onboarding:wrA:"),
        "{}",
        sent[0].key
    );
    assert_eq!(sent[0].key.rsplit(':').next(), Some("stays"));
    assert!(sent[0].body.contains("签到"), "{}", sent[0].body);
    assert_eq!(h.run().await.onboarding_sent, 0);
}

#[tokio::test]
async fn run_loop_processes_events_and_stops_on_shutdown() {
    let h = harness().await;
    h.add_chat("wrA", "群", ChatRoute::internal_with_smart_bot("bot"), &[])
        .await;
    let key = h.say("wrA", "alice", "签到").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let clock: SharedClock = h.clock.clone();
    let looping = qunyun::jobs::run_loop(
        h.pipeline(),
        &clock,
        std::time::Duration::from_secs(1),
        &stop,
    );
    let stopper = async {
        // The first pass runs at once; wait until it committed the reply.
        loop {
            let done = h.statuses().await == vec!["done"];
            if done {
                break;
            }
            tokio::task::yield_now().await;
        }
        stop.cancel();
    };
    tokio::join!(looping, stopper);
    assert!(h.reply_to(&key).await.contains("签到成功"));
}
