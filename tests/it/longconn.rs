//! The smart bot over WeCom's long connection, through `qunyun serve` and the
//! simulator's `/ws`: members' messages arrive as frames, answers go back on
//! the connection with the inbound `req_id`, exactly once.

use std::time::Duration;

use qunyun::app::WorkerHooks;
use qunyun::sim::{Delivery, LongConnFault, Route};
use qunyun::store::outbox::{self, OutboxRow, OutboxStatus};
use serde_json::{json, Value};

use crate::helpers::{
    point_long_connections_at, wait_until, wait_until_async, Service, TestConfig,
};

const WS_BOT: &str = "wsbot";
const BOT_ID: &str = "AIBOT-WS";
const CHAT: &str = "CHAT-WS";

fn with_ws_bot() -> TestConfig {
    TestConfig::new().with_websocket_bot(WS_BOT, BOT_ID)
}

async fn start() -> Service {
    let service = Service::start(with_ws_bot(), WorkerHooks::default()).await;
    assert!(
        wait_until(Duration::from_secs(20), || service
            .sim()
            .long_connection_live(BOT_ID))
        .await,
        "the bot subscribed"
    );
    service
}

fn mention(msgid: &str, user: &str, text: &str) -> Value {
    json!({
        "msgid": msgid, "aibotid": BOT_ID, "chatid": CHAT, "chattype": "group",
        "from": {"userid": user}, "msgtype": "text", "text": {"content": format!("@运营助手 {text}")}
    })
}

/// Polls an async condition every 20 ms; false on timeout.
async fn outbox_rows(service: &Service) -> Vec<OutboxRow> {
    let mut conn = service.pool.acquire().await.unwrap();
    outbox::list(&mut conn, None).await.unwrap()
}

/// Rows still waiting to be sent (pending or in flight).
async fn open_rows(service: &Service) -> usize {
    outbox_rows(service)
        .await
        .iter()
        .filter(|row| matches!(row.status, OutboxStatus::Pending | OutboxStatus::InFlight))
        .count()
}

fn answers(service: &Service) -> Vec<Delivery> {
    service
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::BotResponse && d.sender == BOT_ID)
        .collect()
}

#[tokio::test]
async fn a_checkin_by_mention_is_answered_over_the_connection_exactly_once() {
    let mut service = start().await;
    let sim = service.sim();
    // WeCom delivers the frame again (same msgid, new req_id), as after a reconnect.
    for _ in 0..2 {
        sim.deliver_long_connection_message(BOT_ID, mention("WS-1", "wmA", "签到"))
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || !answers(&service).is_empty()).await,
        "the check-in was answered"
    );
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            let inbox = service.inbox().await;
            inbox.len() == 1
                && inbox.iter().all(|row| row.status.as_str() == "done")
                && open_rows(&service).await == 0
        })
        .await,
        "inbox {:?}",
        service.inbox().await
    );
    let answered = answers(&service);
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].target, CHAT);
    assert_eq!(answered[0].msgtype, "markdown");
    assert!(
        answered[0].text().unwrap_or_default().contains("签到成功"),
        "{answered:?}"
    );
    let rows = outbox_rows(&service).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, OutboxStatus::Sent);
    assert!(
        rows[0].target.starts_with("longconn:"),
        "{}",
        rows[0].target
    );
    service.shutdown().await;
}

#[tokio::test]
async fn a_connection_dropped_mid_burst_delivers_every_message_once_and_every_answer_at_most_once()
{
    let mut service = start().await;
    let clock = service.clock.clone().expect("manual clock");
    let members: Vec<String> = (1..=10).map(|i| format!("wm{i:02}")).collect();
    // The first answer WeCom accepts breaks the link before its ack.
    service
        .sim()
        .inject_long_connection_fault(LongConnFault::DropMidReply);
    for (i, member) in members.iter().enumerate() {
        service
            .sim()
            .deliver_long_connection_message(BOT_ID, mention(&format!("BURST-{i}"), member, "签到"))
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || !answers(&service).is_empty()).await,
        "answers started"
    );
    // Reconnected: WeCom delivers the whole burst again on the new link.
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            service.sim().long_connection_subscribes(BOT_ID) >= 2
                && service.sim().long_connection_live(BOT_ID)
        })
        .await,
        "reconnected"
    );
    for (i, member) in members.iter().enumerate() {
        service
            .sim()
            .deliver_long_connection_message(BOT_ID, mention(&format!("BURST-{i}"), member, "签到"))
            .unwrap();
    }
    // Retries wait on the (manual) clock: move it until nothing is open.
    assert!(
        wait_until_async(Duration::from_secs(60), || async {
            let inbox = service.inbox().await;
            let settled = inbox.len() == members.len()
                && inbox.iter().all(|row| row.status.as_str() == "done")
                && outbox_rows(&service).await.len() == members.len()
                && open_rows(&service).await == 0;
            if !settled {
                clock.advance(chrono::Duration::seconds(30));
            }
            settled
        })
        .await,
        "outbox {:?}",
        outbox_rows(&service).await
    );
    assert_eq!(
        service.inbox().await.len(),
        members.len(),
        "every message once"
    );
    let answered = answers(&service);
    let rows = outbox_rows(&service).await;
    let mut uncertain = 0;
    for i in 0..members.len() {
        let key = format!(":BURST-{i}");
        let row = rows
            .iter()
            .find(|row| row.idempotency_key.ends_with(&key))
            .unwrap_or_else(|| panic!("a row for {key}: {rows:?}"));
        match row.status {
            OutboxStatus::Sent => {}
            OutboxStatus::Dead => {
                uncertain += 1;
                let reason = row.last_error.clone().unwrap_or_default();
                assert!(reason.contains("uncertain"), "{reason}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let sent = rows
        .iter()
        .filter(|r| r.status == OutboxStatus::Sent)
        .count();
    assert!(
        uncertain >= 1,
        "the answer whose ack was lost is parked: {rows:?}"
    );
    // Every sent row reached WeCom once; a parked one at most once.
    assert!(
        answered.len() >= sent && answered.len() <= sent + uncertain,
        "{} answers for {sent} sent and {uncertain} uncertain rows",
        answered.len()
    );
    service.shutdown().await;
}

#[tokio::test]
async fn a_second_instance_displaces_the_first_which_alerts_and_does_not_reconnect() {
    let mut first = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_ws_bot().build(&dir.path().join("second.db"));
    config.wecom.api_base = first.sim.api_base_url();
    point_long_connections_at(&mut config, &first.sim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(qunyun::app::run(
        config,
        qunyun::clock::system(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            outbox_rows(&first)
                .await
                .iter()
                .any(|row| row.idempotency_key.starts_with("alert:longconn_displaced:"))
        })
        .await,
        "the displaced instance queued an alert for the admins"
    );
    assert!(
        first.sim().long_connection_live(BOT_ID),
        "the second holds the bot"
    );
    assert_eq!(first.sim().long_connection_subscribes(BOT_ID), 2);
    // Several back-off periods pass: nobody dials again.
    let storm = wait_until(Duration::from_secs(3), || {
        first.sim().long_connection_subscribes(BOT_ID) > 2
    })
    .await;
    assert!(
        !storm,
        "subscribes: {}",
        first.sim().long_connection_subscribes(BOT_ID)
    );
    let _ = stop.send(());
    second.await.unwrap().unwrap();
    first.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_100_answers_never_exceeds_the_per_conversation_limit() {
    let mut service = start().await;
    let clock = service.clock.clone().expect("manual clock");
    for i in 0..100 {
        service
            .sim()
            .deliver_long_connection_message(
                BOT_ID,
                mention(&format!("LIMIT-{i}"), &format!("wm{i:03}"), "签到"),
            )
            .unwrap();
    }
    // The sender holds back what is over the limit until the (manual) clock
    // frees a slot: move it a minute whenever sending has stalled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = 0;
    loop {
        let sent = answers(&service).len();
        let open = open_rows(&service).await;
        if sent >= 100 && open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} answers; open rows {open}"
        );
        if sent == seen && sent > 0 && open > 0 {
            clock.advance(chrono::Duration::seconds(61));
        }
        seen = sent;
        // Sending has stalled when no new answer arrives for 1.5 s.
        wait_until(Duration::from_millis(1500), || {
            answers(&service).len() > sent
        })
        .await;
    }
    let times: Vec<i64> = answers(&service).iter().map(|d| d.time).collect();
    assert_eq!(times.len(), 100, "each answer once");
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().filter(|t| **t - start < 60).count();
        assert!(
            in_window <= 30,
            "{in_window} answers within a minute from {start}"
        );
    }
    assert!(
        outbox_rows(&service)
            .await
            .iter()
            .all(|row| row.status == OutboxStatus::Sent),
        "every answer went out"
    );
    assert_eq!(
        service.sim().long_connection_refusals(BOT_ID),
        Vec::<i64>::new(),
        "qunyun kept below the limit itself: WeCom refused nothing"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn enter_chat_is_welcomed_on_the_connection_once_and_the_driver_uses_the_connection() {
    let mut service = start().await;
    let sim = service.sim();
    let enter = json!({
        "msgid": "ENTER-1", "aibotid": BOT_ID, "chattype": "single",
        "from": {"userid": "wmB"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}
    });
    for _ in 0..2 {
        sim.deliver_long_connection_event(BOT_ID, enter.clone())
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || !answers(&service).is_empty()).await,
        "welcomed"
    );
    // The driver's bot_mention reaches a long-connection bot on its socket.
    let outcome = sim
        .drive_bot_mention(qunyun::sim::BotMentionRequest {
            bot: Some(BOT_ID.into()),
            chat_id: None,
            from: "wmB".into(),
            content: "积分".into(),
            quote: None,
        })
        .await
        .unwrap();
    assert!(outcome.bot_msgid.is_some());
    assert!(
        wait_until(Duration::from_secs(20), || answers(&service).len() >= 2).await,
        "the mention was answered: {:?}",
        answers(&service)
    );
    let answered = answers(&service);
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(answered[0].msgtype, "text", "the welcome");
    assert_eq!(answered[0].target, "wmB");
    assert!(answered[0].text().unwrap_or_default().contains("签到"));
    assert_eq!(answered[1].msgtype, "markdown", "the answer to 积分");
    assert_eq!(
        service.inbox().await.len(),
        2,
        "the enter_chat once, the mention once"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn an_answer_without_ack_is_parked_uncertain_and_a_server_close_is_redialled() {
    let mut service = start().await;
    let sim = service.sim();
    sim.inject_long_connection_fault(LongConnFault::MissingAck);
    sim.deliver_long_connection_message(BOT_ID, mention("NOACK-1", "wmC", "签到"))
        .unwrap();
    // WeCom showed it but never acked: after the ack timeout the row is parked.
    assert!(
        wait_until_async(Duration::from_secs(30), || async {
            outbox_rows(&service)
                .await
                .iter()
                .any(|row| row.status == OutboxStatus::Dead)
        })
        .await,
        "{:?}",
        outbox_rows(&service).await
    );
    let rows = outbox_rows(&service).await;
    let reason = rows[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("uncertain"), "{reason}");
    assert_eq!(answers(&service).len(), 1, "shown once, never sent again");

    // WeCom closes the link: qunyun dials again and subscribes once more.
    assert!(sim.close_long_connection(BOT_ID));
    assert!(
        wait_until(Duration::from_secs(20), || {
            sim.long_connection_subscribes(BOT_ID) == 2 && sim.long_connection_live(BOT_ID)
        })
        .await,
        "redialled: {} subscribes",
        sim.long_connection_subscribes(BOT_ID)
    );
    sim.deliver_long_connection_message(BOT_ID, mention("AFTER-1", "wmD", "积分"))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || answers(&service).len() == 2).await,
        "answered on the new connection"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn a_link_whose_pings_go_unanswered_is_declared_dead() {
    use qunyun::clock::{self, SharedClock};
    use qunyun::jobs::longconn::{self, LongConnSettings, SessionEnd};
    use qunyun::jobs::Job;

    let sim = qunyun::sim::Sim::spawn(qunyun::sim::SimConfig::new("ww1", ""), clock::system())
        .await
        .unwrap();
    sim.sim()
        .register_long_connection_bot(BOT_ID, "long-connection-secret");
    sim.sim().leave_long_connection_pings_unanswered();
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_ws_bot().build(&dir.path().join("q.db"));
    point_long_connections_at(&mut config, &sim);
    let pool = qunyun::store::open(&config.database.path).await.unwrap();
    let system: SharedClock = clock::system();
    let settings = LongConnSettings {
        heartbeat: Duration::from_millis(50),
        ..LongConnSettings::default()
    };
    let (_, jobs) = longconn::connections(
        &config.wecom.bots,
        &pool,
        &system,
        &qunyun::active_rules::ActiveRules::new(),
        "ops",
        &settings,
    );
    let end = tokio::time::timeout(Duration::from_secs(20), jobs[0].run_once(system.now()))
        .await
        .expect("the session ends")
        .unwrap();
    assert_eq!(end, SessionEnd::Dropped("2 pings unanswered".into()));
    assert_eq!(sim.sim().long_connection_subscribes(BOT_ID), 1);
    sim.shutdown().await.unwrap();
}

// Proactive pushes (`aibot_send_msg`): scheduled content and broadcasts to a
// group whose only door is a smart bot on a long connection.

const QUIET_CHAT: &str = "CHAT-WS-QUIET";

fn now(service: &Service) -> chrono::DateTime<chrono::Utc> {
    use qunyun::clock::Clock;
    service.clock.as_ref().expect("manual clock").now()
}

/// Registers `chat_id` as an internal group where only the websocket bot sits.
async fn register_bot_chat(service: &Service, chat_id: &str) {
    let mut conn = service.pool.acquire().await.unwrap();
    qunyun::store::chats::upsert_chat(
        &mut conn,
        &qunyun::store::chats::NewChat {
            chat_id: chat_id.into(),
            name: "运营内部群".into(),
            route: qunyun::rules::ChatRoute::internal_with_smart_bot(WS_BOT),
            owner: None,
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        now(service),
    )
    .await
    .unwrap();
}

async fn push_state(service: &Service, chat_id: &str) -> qunyun::rules::route::SmartBotPush {
    let mut conn = service.pool.acquire().await.unwrap();
    qunyun::store::smart_bots::chat_push(&mut conn, chat_id)
        .await
        .unwrap()
}

/// A member @-mentions the bot in `chat_id`; returns once qunyun has noted it.
async fn member_writes(service: &Service, chat_id: &str, msgid: &str) {
    let mut message = mention(msgid, "wmW", "你好");
    message["chatid"] = json!(chat_id);
    service
        .sim()
        .deliver_long_connection_message(BOT_ID, message)
        .unwrap();
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            push_state(service, chat_id).await == qunyun::rules::route::SmartBotPush::Ready
        })
        .await,
        "the member's message was noted"
    );
}

/// Outbox rows that push over the long connection (target `longconn:<bot>/<chat>`).
async fn push_rows(service: &Service) -> Vec<OutboxRow> {
    outbox_rows(service)
        .await
        .into_iter()
        .filter(|row| qunyun::wecom::longconn::PushAddress::parse(&row.target).is_some())
        .collect()
}

fn pushes_with(service: &Service, words: &str) -> Vec<Delivery> {
    answers(service)
        .into_iter()
        .filter(|d| d.text().unwrap_or_default().contains(words))
        .collect()
}

async fn broadcast(service: &Service, chat_id: &str, text: &str) {
    let ops = qunyun::ops::Ops::over(service.pool.clone());
    let actor = qunyun::ops::Actor::cli(Some("test"));
    let input = qunyun::ops::broadcast::BroadcastInput {
        chats: vec![chat_id.into()],
        text: text.into(),
        ..Default::default()
    };
    qunyun::ops::broadcast::send(&ops, &actor, now(service), &input)
        .await
        .unwrap();
}

/// The push row of the capability table for `chat_id`.
async fn announced_push(
    service: &Service,
    chat_id: &str,
) -> qunyun::rules::capabilities::Capability {
    let ops = qunyun::ops::Ops::over(service.pool.clone());
    qunyun::ops::chats::show(&ops, chat_id)
        .await
        .unwrap()
        .capabilities
        .into_iter()
        .find(|row| row.feature == qunyun::rules::capabilities::Feature::Push)
        .unwrap()
        .capability
}

#[tokio::test]
async fn a_scheduled_push_reaches_a_websocket_bot_group_over_the_connection_exactly_once() {
    let mut service = start().await;
    let clock = service.clock.clone().expect("manual clock");
    register_bot_chat(&service, CHAT).await;
    // 10:05 in Shanghai is five minutes after the clock's start (02:00 UTC).
    let rules = format!(
        r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "morning"
cron = "0 5 10 * * *"

[schedules.targets]
chat_ids = ["{CHAT}"]

[schedules.content]
kind = "text"
body = "早上好，今天的任务已更新"
"#
    );
    qunyun::rules::RuleSet::from_toml(&rules).expect("rule set validates");
    {
        let mut conn = service.pool.acquire().await.unwrap();
        qunyun::store::rule_sets::save(&mut conn, &rules, now(&service))
            .await
            .unwrap();
    }
    member_writes(&service, CHAT, "HELLO-1").await;
    // The scheduler takes up a new schedule from the moment it first sees it.
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            sqlx::query_scalar::<_, i64>("select count(*) from schedule_state")
                .fetch_one(&service.pool)
                .await
                .unwrap()
                == 1
        })
        .await,
        "the scheduler saw the schedule"
    );
    clock.advance(chrono::Duration::minutes(6));
    assert!(
        wait_until_async(Duration::from_secs(30), || async {
            !pushes_with(&service, "早上好").is_empty()
                && !push_rows(&service).await.is_empty()
                && open_rows(&service).await == 0
        })
        .await,
        "the push went out: {:?}",
        outbox_rows(&service).await
    );
    // Later passes of the scheduler and the sender add nothing.
    clock.advance(chrono::Duration::minutes(2));
    let settled = wait_until_async(Duration::from_secs(3), || async {
        pushes_with(&service, "早上好").len() > 1 || push_rows(&service).await.len() > 1
    })
    .await;
    assert!(!settled, "sent twice: {:?}", answers(&service));
    let pushed = pushes_with(&service, "早上好");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].target, CHAT);
    assert_eq!(
        pushed[0].msgtype, "markdown",
        "WeCom refuses plain text here"
    );
    let rows = push_rows(&service).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, OutboxStatus::Sent);
    assert_eq!(rows[0].route.as_str(), "smart_bot");
    assert_eq!(
        service.sim().long_connection_refusals(BOT_ID),
        Vec::<i64>::new()
    );
    service.shutdown().await;
}

#[tokio::test]
async fn a_push_into_a_chat_nobody_wrote_in_is_skipped_with_the_reason() {
    use qunyun::rules::capabilities::Capability;
    use qunyun::rules::route::reasons::SMART_BOT_NOBODY_WROTE;

    let mut service = start().await;
    register_bot_chat(&service, QUIET_CHAT).await;
    // The table says so before anything is sent, in the engine's words.
    assert_eq!(
        announced_push(&service, QUIET_CHAT).await,
        Capability::NotPossible {
            reason: SMART_BOT_NOBODY_WROTE.into()
        }
    );
    broadcast(&service, QUIET_CHAT, "周末活动").await;
    let rows = push_rows(&service).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, OutboxStatus::Skipped);
    assert_eq!(rows[0].last_error.as_deref(), Some(SMART_BOT_NOBODY_WROTE));
    assert!(SMART_BOT_NOBODY_WROTE.starts_with("no member has written to the bot in this chat yet"));

    // Once a member wrote to the bot there, the same broadcast goes out.
    member_writes(&service, QUIET_CHAT, "FIRST-WORDS").await;
    assert_eq!(
        announced_push(&service, QUIET_CHAT).await,
        Capability::Route {
            route: "smart_bot".into()
        }
    );
    broadcast(&service, QUIET_CHAT, "周末活动第二弹").await;
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            !pushes_with(&service, "周末活动第二弹").is_empty() && open_rows(&service).await == 0
        })
        .await,
        "{:?}",
        outbox_rows(&service).await
    );
    assert!(
        pushes_with(&service, "周末活动").len() == 1,
        "the skipped one never reached WeCom: {:?}",
        answers(&service)
    );
    assert_eq!(
        service.sim().long_connection_refusals(BOT_ID),
        Vec::<i64>::new()
    );
    service.shutdown().await;
}

#[tokio::test]
async fn a_push_whose_connection_drops_before_the_ack_is_parked_uncertain_and_never_resent() {
    let mut service = start().await;
    let clock = service.clock.clone().expect("manual clock");
    register_bot_chat(&service, CHAT).await;
    member_writes(&service, CHAT, "HELLO-DROP").await;
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            open_rows(&service).await == 0
        })
        .await
    );
    // WeCom shows the push, then the link breaks before its ack.
    service
        .sim()
        .inject_long_connection_fault(LongConnFault::DropMidReply);
    broadcast(&service, CHAT, "今晚八点直播").await;
    assert!(
        wait_until_async(Duration::from_secs(30), || async {
            push_rows(&service)
                .await
                .iter()
                .any(|row| row.status == OutboxStatus::Dead)
        })
        .await,
        "{:?}",
        push_rows(&service).await
    );
    let reason = push_rows(&service).await[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("uncertain"), "{reason}");
    // The link comes back and time passes: the push is not sent again.
    assert!(
        wait_until(Duration::from_secs(20), || {
            service.sim().long_connection_subscribes(BOT_ID) >= 2
                && service.sim().long_connection_live(BOT_ID)
        })
        .await,
        "reconnected"
    );
    clock.advance(chrono::Duration::minutes(30));
    let resent = wait_until(Duration::from_secs(3), || {
        pushes_with(&service, "今晚八点直播").len() > 1
    })
    .await;
    assert!(!resent, "{:?}", answers(&service));
    assert_eq!(pushes_with(&service, "今晚八点直播").len(), 1, "shown once");
    let rows = push_rows(&service).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, OutboxStatus::Dead);
    service.shutdown().await;
}

/// Rows the sender could take now: due pending rows, or rows in flight.
async fn due_rows(service: &Service) -> usize {
    let now = now(service).timestamp();
    outbox_rows(service)
        .await
        .iter()
        .filter(|row| {
            row.status == OutboxStatus::InFlight
                || (row.status == OutboxStatus::Pending && row.next_attempt_at <= now)
        })
        .count()
}

#[tokio::test]
async fn pushes_and_answers_together_never_exceed_30_a_minute_or_1000_an_hour() {
    use qunyun::rules::route::Content;
    use qunyun::rules::{OutRoute, Outbound};

    let mut service = start().await;
    let clock = service.clock.clone().expect("manual clock");
    register_bot_chat(&service, CHAT).await;
    member_writes(&service, CHAT, "HELLO-LIMIT").await;
    const PUSHES: usize = 1040;
    const PER_STEP: usize = 31;
    let mut queued = 0;
    let mut hour_limit_seen = false;
    for step in 0.. {
        assert!(
            step < 80,
            "did not finish: {} open",
            open_rows(&service).await
        );
        // Each simulated minute: a few more pushes than the minute allows,
        // and in the first minutes a member's check-in (answers share the limit).
        if queued < PUSHES {
            let batch: Vec<Outbound> = (queued..(queued + PER_STEP).min(PUSHES))
                .map(|i| {
                    Outbound::new(
                        format!("limit-push:{i}"),
                        OutRoute::SmartBotPush {
                            bot: WS_BOT.into(),
                            chat_id: CHAT.into(),
                        },
                        Content::text(format!("推送 #{i}#")),
                    )
                })
                .collect();
            queued += batch.len();
            let mut conn = service.pool.acquire().await.unwrap();
            outbox::enqueue_all(&mut conn, &batch, "ops", now(&service))
                .await
                .unwrap();
        }
        if step < 5 {
            let mut message = mention(
                &format!("LIMIT-CHECKIN-{step}"),
                &format!("wmL{step}"),
                "签到",
            );
            message["chatid"] = json!(CHAT);
            service
                .sim()
                .deliver_long_connection_message(BOT_ID, message)
                .unwrap();
            assert!(
                wait_until_async(Duration::from_secs(20), || async {
                    service.inbox().await.len() >= step + 2
                })
                .await
            );
        }
        // The sender has done what it may: the rest waits for a later window.
        assert!(
            wait_until_async(Duration::from_secs(30), || async {
                due_rows(&service).await == 0
            })
            .await,
            "step {step}: the sender stalled"
        );
        let rows = outbox_rows(&service).await;
        hour_limit_seen |= rows.iter().any(|row| {
            row.status == OutboxStatus::Pending
                && row
                    .last_error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("1000/h")
        });
        let waiting: Vec<i64> = rows
            .iter()
            .filter(|row| row.status == OutboxStatus::Pending)
            .map(|row| row.next_attempt_at)
            .collect();
        if queued == PUSHES && waiting.is_empty() {
            break;
        }
        // On to the next minute, or straight to when the hour frees a slot.
        let next = waiting.iter().min().copied().unwrap_or(i64::MAX);
        let minute_on = now(&service) + chrono::Duration::seconds(61);
        let to = if queued < PUSHES {
            minute_on
        } else {
            chrono::DateTime::from_timestamp(next, 0)
                .unwrap()
                .max(minute_on)
        };
        clock.set(to);
    }
    assert!(hour_limit_seen, "the burst ran into the hourly limit");
    let delivered = answers(&service);
    let times: Vec<i64> = delivered.iter().map(|d| d.time).collect();
    for (i, start) in times.iter().enumerate() {
        let minute = times[i..].iter().filter(|t| **t - start < 60).count();
        let hour = times[i..].iter().filter(|t| **t - start < 3600).count();
        assert!(minute <= 30, "{minute} within a minute from {start}");
        assert!(hour <= 1000, "{hour} within an hour from {start}");
    }
    assert!(
        times.last().unwrap() - times.first().unwrap() >= 3600,
        "more than an hour's worth went out over more than an hour"
    );
    let pushes = delivered
        .iter()
        .filter(|d| d.text().unwrap_or_default().starts_with("推送 #"))
        .count();
    assert_eq!(pushes, PUSHES, "every push once");
    assert!(
        delivered.len() >= PUSHES + 5,
        "the check-ins were answered too: {}",
        delivered.len()
    );
    assert!(outbox_rows(&service)
        .await
        .iter()
        .all(|row| row.status == OutboxStatus::Sent));
    assert_eq!(
        service.sim().long_connection_refusals(BOT_ID),
        Vec::<i64>::new(),
        "qunyun kept below both limits itself: WeCom refused nothing"
    );
    service.shutdown().await;
}
