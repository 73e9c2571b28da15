//! 荣誉榜, 勋章, 精华 and 晒单 end to end: encrypted smart-bot callbacks and
//! signed archive batches into the real server, the pipeline, the honour-board
//! job, the sender and what the WeCom simulator received.

use chrono::{NaiveDate, TimeZone, Utc};
use qunyun::jobs::honour::HonourBoards;
use qunyun::ops::rules::Applied;
use qunyun::ops::{self, Actor, Ops, Role};
use qunyun::rules::ugc::MessageMark;
use qunyun::rules::ChatRoute;
use qunyun::sim::Route as SimRoute;
use qunyun::store::outbox::{OutboxStatus, Route};
use qunyun::store::{chats, checkins, honour, points};

use crate::helpers::{Callback, ConfigFile, TestApp, TestConfig, BOT};

const SECRET: &str = "ingest-secret-for-honour-tests";
/// An internal group where the smart bot sits; `boss` owns it.
const BOT_CHAT: &str = "wrbot";

async fn start(rules: &str) -> TestApp {
    let config = TestConfig::new()
        .with_file(ConfigFile {
            app: "main".into(),
            ..ConfigFile::default()
        })
        .with_ingest_secret(SECRET);
    let app = TestApp::start(config).await;
    let actor = Actor::new("mei", Role::Operator);
    let applied = ops::rules::apply(&Ops::over(app.pool.clone()), &actor, app.now(), rules)
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Version(_)), "{applied:?}");
    add_chat(&app, BOT_CHAT, ChatRoute::internal_with_smart_bot(BOT), &[]).await;
    app
}

async fn add_chat(app: &TestApp, chat_id: &str, route: ChatRoute, tags: &[&str]) {
    let chat = chats::NewChat {
        chat_id: chat_id.into(),
        name: format!("群{chat_id}"),
        route,
        owner: Some("boss".into()),
        admins: Vec::new(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        member_version: None,
    };
    let mut conn = app.pool.acquire().await.unwrap();
    chats::upsert_chat(&mut conn, &chat, app.now())
        .await
        .unwrap();
}

/// A smart-bot callback in `chat` from `user`: `body` adds the msgtype's fields.
async fn bot(app: &TestApp, msgid: &str, chat: &str, user: &str, body: serde_json::Value) {
    let code = app.sim().issue_response_code("AIBOT-IT", chat, true);
    let mut message = serde_json::json!({
        "msgid": msgid, "aibotid": "AIBOT-IT", "chatid": chat, "chattype": "group",
        "from": {"userid": user}, "response_url": app.sim().response_url(&code),
    });
    for (key, value) in body.as_object().unwrap() {
        message[key] = value.clone();
    }
    let response = app.post_event(Callback::Bot(message.to_string())).await;
    assert_eq!(response.status(), 200);
}

fn text(words: &str) -> serde_json::Value {
    serde_json::json!({"msgtype": "text", "text": {"content": format!("@运营助手 {words}")}})
}

/// `command` (`加精`, `有用`, `谢谢` …) quoting `quoted`.
fn quoting(command: &str, quoted: &str) -> serde_json::Value {
    serde_json::json!({
        "msgtype": "text", "text": {"content": format!("@运营助手 {command}")},
        "quote": {"msgtype": "text", "text": {"content": quoted}}
    })
}

/// `加精` quoting `quoted`.
fn essence_quoting(quoted: &str) -> serde_json::Value {
    quoting("加精", quoted)
}

/// A signed archive batch through `POST /ingest/messages`.
async fn archive(app: &TestApp, messages: serde_json::Value) {
    let body = serde_json::json!({ "messages": messages }).to_string();
    let timestamp = app.now().timestamp().to_string();
    let signature =
        qunyun::ingest::sign_ingest_batch(SECRET.as_bytes(), &timestamp, body.as_bytes());
    let response = app
        .http
        .post(app.url("/ingest/messages"))
        .header("x-qunyun-timestamp", timestamp)
        .header("x-qunyun-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Pipeline then sender; the texts the smart bot answered, in order.
async fn run(app: &TestApp) -> Vec<String> {
    let outcome = app.run_pipeline().await;
    assert_eq!((outcome.failed, outcome.parked), (0, 0), "{outcome:?}");
    app.drain_outbox()
        .await
        .iter()
        .filter(|d| d.route == SimRoute::BotResponse)
        .map(|d| d.text().unwrap_or_default().to_string())
        .collect()
}

/// Sender pass; what group robots received after the first `before` deliveries.
async fn robot_posts_after(app: &TestApp, before: usize) -> Vec<qunyun::sim::Delivery> {
    app.drain_outbox().await;
    app.sim().messages()[before..]
        .iter()
        .filter(|d| d.route == SimRoute::Webhook)
        .cloned()
        .collect()
}

async fn seed_points(app: &TestApp, user: &str, delta: i64, day: NaiveDate) {
    let reference = format!("seed:{user}:{day}");
    let entry = points::NewLedgerEntry {
        user_id: user,
        delta,
        reason: "seed",
        reference: &reference,
        chat_id: None,
        day,
        at: app.now(),
    };
    let mut conn = app.pool.acquire().await.unwrap();
    points::append(&mut conn, &entry).await.unwrap();
}

async fn ledger(app: &TestApp, user: &str, reason: &str) -> Vec<(i64, String)> {
    let mut conn = app.pool.acquire().await.unwrap();
    points::entries_for(&mut conn, user)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.reason == reason)
        .map(|row| (row.delta, row.reference))
        .collect()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

const BOARD_RULES: &str = r#"
[[honour.boards]]
name = "weekly"
title = "本周荣誉榜"
period = "week"
metrics = ["streak", "points", "essence"]
top = 3
chat_tags = ["honour"]
publish_hour = 10
"#;

#[tokio::test]
async fn honour_board_posts_once_per_period_per_chat_across_passes_and_restarts() {
    let app = start(BOARD_RULES).await; // Sunday 2026-11-22 10:00 Shanghai
    app.sim().add_robot("KEY-wrrobot", "wrrobot");
    add_chat(
        &app,
        "wrrobot",
        ChatRoute::internal_with_robot("KEY-wrrobot"),
        &["honour"],
    )
    .await;
    app.sim().add_robot("KEY-wrplain", "wrplain");
    add_chat(
        &app,
        "wrplain",
        ChatRoute::internal_with_robot("KEY-wrplain"),
        &[],
    )
    .await;
    add_chat(&app, "wrcustomer", ChatRoute::CustomerGroup, &["honour"]).await;
    add_chat(
        &app,
        "wrbotonly",
        ChatRoute::internal_with_smart_bot(BOT),
        &["honour"],
    )
    .await;
    {
        let mut conn = app.pool.acquire().await.unwrap();
        for d in [18, 19, 20] {
            checkins::record_checkin(&mut conn, "u1", day(d), app.now(), false, None)
                .await
                .unwrap();
        }
        checkins::record_checkin(&mut conn, "u2", day(16), app.now(), false, None)
            .await
            .unwrap();
    }
    seed_points(&app, "u2", 30, day(19)).await;
    seed_points(&app, "u3", 99, day(9)).await; // the week before: not on this board

    // 荣誉榜 answers the week so far.
    bot(&app, "ask-1", BOT_CHAT, "u2", text("荣誉榜")).await;
    let answers = run(&app).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].contains("u1 3 天"), "{}", answers[0]);
    assert!(answers[0].contains("u2 30 分"), "{}", answers[0]);

    // Monday 09:59 Shanghai: not yet; 10:00: last week's board, once per chat.
    let boards = HonourBoards::new(app.pool.clone(), "main");
    app.set_clock(Utc.with_ymd_and_hms(2026, 11, 23, 1, 59, 0).unwrap());
    assert_eq!(
        boards.run_at(app.now()).await.unwrap(),
        0,
        "not before 10:00"
    );
    let delivered_before = app.sim().messages().len();
    app.set_clock(Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap());
    assert_eq!(boards.run_at(app.now()).await.unwrap(), 3);
    assert_eq!(boards.run_at(app.now()).await.unwrap(), 0, "second pass");
    let restarted = HonourBoards::new(app.pool.clone(), "main");
    app.advance_clock(chrono::Duration::hours(5));
    assert_eq!(
        restarted.run_at(app.now()).await.unwrap(),
        0,
        "after a restart"
    );

    let posted = robot_posts_after(&app, delivered_before).await;
    assert_eq!(posted.len(), 1, "only the tagged robot chat: {posted:?}");
    assert_eq!(posted[0].target, "wrrobot");
    let board = posted[0].text().unwrap();
    assert!(
        board.contains("本周荣誉榜（2026-11-16 ~ 2026-11-22）"),
        "{board}"
    );
    assert!(board.contains("1. u1 3 天"), "{board}");
    assert!(
        board.contains("u2 30 分") && !board.contains("u3"),
        "{board}"
    );

    let rows = app.outbox_rows(None).await;
    let this_week: Vec<_> = rows
        .iter()
        .filter(|r| r.idempotency_key.starts_with("honour:weekly:2026-W47:"))
        .collect();
    assert_eq!(this_week.len(), 3, "{this_week:?}");
    let customer = this_week
        .iter()
        .find(|r| r.idempotency_key.ends_with(":wrcustomer"))
        .unwrap();
    assert_eq!(
        customer.route,
        Route::CustomerGroupMass,
        "the owner confirms"
    );
    let bot_only = this_week
        .iter()
        .find(|r| r.idempotency_key.ends_with(":wrbotonly"))
        .unwrap();
    assert_eq!(bot_only.status, OutboxStatus::Skipped);
    assert!(bot_only
        .last_error
        .as_deref()
        .is_some_and(|e| !e.is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn essence_is_paid_once_when_the_command_is_sent_twice_with_one_level_up_notice() {
    let app = start("").await;
    seed_points(&app, "u1", 40, day(1)).await; // 新人, 10 short of 活跃成员
    archive(
        &app,
        serde_json::json!([{"message_id": "arch-tip", "chat_id": BOT_CHAT, "sender": "u1",
            "text": "收纳小技巧：竖着放衣服更省空间", "sent_at": app.now().timestamp()}]),
    )
    .await;
    run(&app).await;

    let quoted = "收纳小技巧：竖着放衣服更省空间";
    bot(
        &app,
        "not-a-manager",
        BOT_CHAT,
        "u2",
        essence_quoting(quoted),
    )
    .await;
    bot(&app, "ess-1", BOT_CHAT, "boss", essence_quoting(quoted)).await;
    bot(&app, "ess-2", BOT_CHAT, "boss", essence_quoting(quoted)).await;
    // The sender answers different response URLs concurrently: find each by its words.
    let answers = run(&app).await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    let with =
        |words: &str| -> Vec<&String> { answers.iter().filter(|a| a.contains(words)).collect() };
    assert_eq!(with("只有群主").len(), 1, "{answers:?}");
    let paid = with("u1 的精华获得 +20 积分");
    assert_eq!(paid.len(), 1, "{answers:?}");
    assert!(paid[0].contains("解锁徽章「精华作者」"), "{}", paid[0]);
    assert_eq!(with("升级为「活跃成员」"), paid, "one level-up notice");
    assert_eq!(with("已经是精华").len(), 1, "{answers:?}");
    assert_eq!(
        ledger(&app, "u1", "essence").await,
        [(20, "essence:arch-tip".to_string())]
    );

    // The console's door pays nothing more either.
    let actor = Actor::new("mei", Role::Operator);
    let again =
        ops::honour::mark_essence(&Ops::over(app.pool.clone()), &actor, app.now(), "arch-tip")
            .await
            .unwrap();
    assert!(again.already && again.points == 0, "{again:?}");
    assert_eq!(ledger(&app, "u1", "essence").await.len(), 1);

    // 勋章 lists the badge and what the next ones need.
    bot(&app, "badges-1", BOT_CHAT, "u1", text("勋章")).await;
    let answers = run(&app).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        answers[0].starts_with("u1 的勋章：精华作者"),
        "{}",
        answers[0]
    );
    assert!(
        answers[0].contains("连续签到 3 天 →「三日之约」"),
        "{}",
        answers[0]
    );
    assert!(
        answers[0].contains("5 条精华 →「内容达人」"),
        "{}",
        answers[0]
    );
    app.stop().await;
}

#[tokio::test]
async fn essence_from_the_console_pays_the_author_once() {
    let app = start("").await;
    archive(
        &app,
        serde_json::json!([{"message_id": "arch-9", "chat_id": BOT_CHAT, "sender": "u7",
            "text": "开箱体验分享", "sent_at": app.now().timestamp()}]),
    )
    .await;
    run(&app).await;
    let ops = Ops::over(app.pool.clone());
    let actor = Actor::new("mei", Role::Operator);
    let first = ops::honour::mark_essence(&ops, &actor, app.now(), "arch-9")
        .await
        .unwrap();
    assert_eq!(
        (first.author.as_str(), first.points, first.already),
        ("u7", 20, false)
    );
    let second = ops::honour::mark_essence(&ops, &actor, app.now(), "arch-9")
        .await
        .unwrap();
    assert!(second.already);
    assert_eq!(
        ledger(&app, "u7", "essence").await,
        [(20, "essence:arch-9".to_string())]
    );
    let viewer = Actor::new("v", Role::Viewer);
    assert!(
        ops::honour::mark_essence(&ops, &viewer, app.now(), "arch-9")
            .await
            .is_err()
    );
    app.stop().await;
}

#[tokio::test]
async fn showcase_images_earn_up_to_the_daily_cap_from_the_bot_and_the_archive() {
    let app = start("[ugc]\nshowcase_points = 5\nshowcase_daily_cap = 15\n").await;
    add_chat(
        &app,
        "wrshow",
        ChatRoute::internal_with_smart_bot(BOT),
        &["晒单"],
    )
    .await;
    // In a group the smart bot only hears @-mentions: a picture arrives as a
    // mixed message (the mention plus the image).
    let image = serde_json::json!({"msgtype": "mixed", "mixed": {"msg_item": [
        {"msgtype": "text", "text": {"content": "@运营助手 "}},
        {"msgtype": "image", "image": {"url": "http://127.0.0.1:1/img"}}
    ]}});
    bot(&app, "img-1", "wrshow", "u1", image.clone()).await;
    let answers = run(&app).await;
    assert_eq!(answers, ["u1 的晒单获得 +5 积分，当前积分 5。"]);

    let images: Vec<_> = (2..=4)
        .map(|n| {
            serde_json::json!({"message_id": format!("arch-img-{n}"), "chat_id": "wrshow",
                "sender": "u1", "text": "", "msgtype": "image", "sent_at": app.now().timestamp()})
        })
        .collect();
    archive(&app, serde_json::json!(images)).await;
    // An image in an untagged chat earns nothing.
    archive(
        &app,
        serde_json::json!([{"message_id": "arch-elsewhere", "chat_id": BOT_CHAT, "sender": "u1",
            "text": "", "msgtype": "image", "sent_at": app.now().timestamp()}]),
    )
    .await;
    assert!(run(&app).await.is_empty(), "archive rewards are silent");
    let paid = ledger(&app, "u1", "showcase").await;
    assert_eq!(
        paid,
        [
            (5, "showcase:img-1".to_string()),
            (5, "showcase:arch-img-2".to_string()),
            (5, "showcase:arch-img-3".to_string()),
        ],
        "the fourth image is over the cap of 15"
    );

    // The day's rollup counts the three rewarded posts, in the chat and community-wide.
    app.analytics().run_once(app.now()).await.unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    let counted: Vec<(String, i64)> = sqlx::query_as(
        "select chat_id, rewarded_posts from analytics_daily
         where day = '2026-11-22' and rewarded_posts > 0 order by chat_id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    assert_eq!(counted, [(String::new(), 3), ("wrshow".to_string(), 3)]);

    // The next community day the cap starts again.
    app.advance_clock(chrono::Duration::days(1));
    bot(&app, "img-5", "wrshow", "u1", image).await;
    assert_eq!(run(&app).await.len(), 1);
    assert_eq!(ledger(&app, "u1", "showcase").await.len(), 4);
    app.stop().await;
}

/// The texts the members write in `BOT_CHAT` (seen through the archive).
const ANSWER_A: &str = "退货在「我的订单」里申请，七天内都可以";
const ANSWER_B: &str = "保温杯用前先用开水烫一下，保温更久";
const ANSWER_C: &str = "快递一般两天到，偏远地区三到四天";
const OWN: &str = "我来问一下，会员积分会过期吗";

#[tokio::test]
async fn helpful_marks_pay_once_per_giver_refuse_the_own_message_and_the_cap_and_top_the_board() {
    let rules = r#"
[ugc]
helpful_points = 2
helpful_daily_cap = 2

[[honour.boards]]
name = "weekly"
title = "本周荣誉榜"
period = "week"
metrics = ["essence", "helpful"]
top = 3
chat_tags = ["honour"]
publish_hour = 10
"#;
    let app = start(rules).await; // Sunday 2026-11-22 10:00 Shanghai
    app.sim().add_robot("KEY-wrboard", "wrboard");
    add_chat(
        &app,
        "wrboard",
        ChatRoute::internal_with_robot("KEY-wrboard"),
        &["honour"],
    )
    .await;
    let at = app.now().timestamp();
    archive(
        &app,
        serde_json::json!([
            {"message_id": "arch-a", "chat_id": BOT_CHAT, "sender": "u1", "text": ANSWER_A, "sent_at": at},
            {"message_id": "arch-b", "chat_id": BOT_CHAT, "sender": "u4", "text": ANSWER_B, "sent_at": at},
            {"message_id": "arch-c", "chat_id": BOT_CHAT, "sender": "u5", "text": ANSWER_C, "sent_at": at},
            {"message_id": "arch-own", "chat_id": BOT_CHAT, "sender": "u2", "text": OWN, "sent_at": at},
        ]),
    )
    .await;
    run(&app).await;

    // u2 marks u1's answer: the callback delivered twice (one msgid) and the
    // command sent again (a new one) pay once.
    bot(&app, "help-1", BOT_CHAT, "u2", quoting("有用", ANSWER_A)).await;
    bot(&app, "help-1", BOT_CHAT, "u2", quoting("有用", ANSWER_A)).await;
    bot(&app, "help-2", BOT_CHAT, "u2", quoting("有用", ANSWER_A)).await;
    // Their own message, and one qunyun never saw.
    bot(&app, "help-own", BOT_CHAT, "u2", quoting("有用", OWN)).await;
    bot(
        &app,
        "help-unknown",
        BOT_CHAT,
        "u2",
        quoting("有用", "这条消息机器人从来没有见过"),
    )
    .await;
    let answers = run(&app).await;
    assert_eq!(answers.len(), 4, "{answers:?}");
    let with = |words: &str| answers.iter().filter(|a| a.contains(words)).count();
    assert_eq!(
        with("👍 u2 觉得有用：u1 的热心回答获得 +2 积分，当前积分 2。"),
        1,
        "{answers:?}"
    );
    assert_eq!(
        with("你已经给 u1 的这条消息点过「有用」了"),
        1,
        "{answers:?}"
    );
    assert_eq!(with("不能给自己的消息"), 1, "{answers:?}");
    assert_eq!(with("找不到这条消息的作者"), 1, "{answers:?}");

    // A thanks word alone marks too; thanks with more words is a message.
    bot(
        &app,
        "thanks-1",
        BOT_CHAT,
        "u3",
        quoting("谢谢！", ANSWER_A),
    )
    .await;
    bot(
        &app,
        "thanks-2",
        BOT_CHAT,
        "u3",
        quoting("谢谢，不过七天怎么算？", ANSWER_B),
    )
    .await;
    let answers = run(&app).await;
    assert!(
        answers
            .iter()
            .any(|a| a.contains("👍 u3 觉得有用：u1 的热心回答获得 +2 积分，当前积分 4。")),
        "{answers:?}"
    );
    assert!(
        !answers.iter().any(|a| a.contains("u4 的热心回答")),
        "{answers:?}"
    );
    assert_eq!(
        ledger(&app, "u1", "helpful").await,
        [
            (2, "helpful:arch-a:u2".to_string()),
            (2, "helpful:arch-a:u3".to_string())
        ]
    );
    assert!(ledger(&app, "u4", "helpful").await.is_empty());

    // u2 has handed out one mark today; the cap is 2.
    bot(&app, "help-b", BOT_CHAT, "u2", quoting("感谢", ANSWER_B)).await;
    assert_eq!(run(&app).await.len(), 1);
    bot(&app, "help-c", BOT_CHAT, "u2", quoting("点赞", ANSWER_C)).await;
    let answers = run(&app).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        answers[0].contains("今天的 2 次「有用」已经用完了"),
        "{answers:?}"
    );
    assert!(
        ledger(&app, "u5", "helpful").await.is_empty(),
        "over the cap"
    );

    // The member page's messages carry the marks received.
    let posts = ops::honour::member_posts(&Ops::over(app.pool.clone()), "u1")
        .await
        .unwrap();
    assert_eq!(
        posts
            .iter()
            .map(|p| (p.message_id.as_str(), p.helpful))
            .collect::<Vec<_>>(),
        [("arch-a", 2)]
    );
    qunyun::store::members::ensure_person(&mut *app.conn().await, "u1", None, app.now())
        .await
        .unwrap();
    let console = app.console();
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    let page = console.get("/admin/members/u1", Some(&viewer)).await.body;
    assert!(
        page.contains(r#"<td class="helpful">2</td>"#),
        "the member page shows the marks: {page}"
    );

    // Monday 10:00: last week's board, 热心助人 by distinct marks received.
    let delivered_before = app.sim().messages().len();
    app.set_clock(Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap());
    let boards = HonourBoards::new(app.pool.clone(), "main");
    assert_eq!(boards.run_at(app.now()).await.unwrap(), 1);
    let posted = robot_posts_after(&app, delivered_before).await;
    assert_eq!(posted.len(), 1, "{posted:?}");
    let board = posted[0].text().unwrap();
    assert!(
        board.contains("【热心助人】\n1. u1 2 次\n2. u4 1 次"),
        "{board}"
    );
    assert!(!board.contains("u5"), "{board}");
    app.stop().await;
}

#[tokio::test]
async fn helpful_store_keys_marks_by_message_and_giver_and_counts_the_period() {
    let app = start("").await;
    let now = app.now();
    let mut conn = app.pool.acquire().await.unwrap();
    honour::record_post(&mut conn, "m1", BOT_CHAT, "u1", Some(7), false, now)
        .await
        .unwrap();
    let mark = |by: &'static str, day: NaiveDate| honour::NewMark {
        mark: MessageMark::Helpful,
        message_id: "m1",
        chat_id: BOT_CHAT,
        author: "u1",
        by,
        at: now,
        day,
    };
    assert!(honour::mark_message(&mut conn, &mark("u2", day(22)))
        .await
        .unwrap());
    assert!(
        !honour::mark_message(&mut conn, &mark("u2", day(22)))
            .await
            .unwrap(),
        "one mark per giver and message"
    );
    assert!(honour::mark_message(&mut conn, &mark("u3", day(15)))
        .await
        .unwrap());
    // A 精华 of the same message is a different mark in its own table.
    let essence = honour::NewMark {
        mark: MessageMark::Essence,
        ..mark("boss", day(22))
    };
    assert!(honour::mark_message(&mut conn, &essence).await.unwrap());

    assert!(honour::helpful_marked_by(&mut conn, "m1", "u2")
        .await
        .unwrap());
    assert!(!honour::helpful_marked_by(&mut conn, "m1", "u4")
        .await
        .unwrap());
    assert_eq!(
        honour::helpful_given_on(&mut conn, "u2", day(22))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        honour::helpful_given_on(&mut conn, "u2", day(21))
            .await
            .unwrap(),
        0
    );
    let post = honour::post_by_id(&mut conn, "m1").await.unwrap().unwrap();
    assert_eq!((post.helpful, post.essence), (2, true));

    // The week of the 22nd holds u2's mark; u3's (the 15th) is the week before.
    let week =
        qunyun::rules::honour::period_containing(qunyun::rules::honour::Period::Week, day(22));
    let data = honour::board_data(&mut conn, &week).await.unwrap();
    assert_eq!(
        data.helpful
            .iter()
            .map(|r| (r.user_id.as_str(), r.value))
            .collect::<Vec<_>>(),
        [("u1", 1)]
    );
    assert_eq!(data.essence.len(), 1);
    drop(conn);
    app.stop().await;
}
