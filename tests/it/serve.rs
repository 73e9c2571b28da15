//! `qunyun serve` as a whole: callback → inbox → pipeline worker → outbox →
//! sender worker → WeCom (the simulator), with the background loops running.

use std::time::Duration;

use qunyun::clock;
use qunyun::sim::{BotCallback, BotMentionRequest, CallbackTargets, Sim, SimConfig};
use qunyun::store::outbox;

use crate::helpers::{test_config, wait_until, BOT, BOT_KEY, BOT_TOKEN, CORP_ID};

#[tokio::test]
async fn serve_runs_the_pipeline_and_sender_until_shutdown() {
    let clock = clock::system();
    let sim = Sim::spawn(SimConfig::new(CORP_ID, "app-secret"), clock.clone())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("qunyun.db"));
    config.wecom.api_base = sim.api_base_url();
    let db_path = config.database.path.clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(qunyun::app::run(config, clock.clone(), listener, async {
        let _ = stopped.await;
    }));

    sim.set_callbacks(
        CallbackTargets::new(format!("http://{addr}")).with_bot(BotCallback {
            name: BOT.into(),
            token: BOT_TOKEN.into(),
            encoding_aes_key: BOT_KEY.into(),
            aibotid: "AIBOT-IT".into(),
            bot_name: "运营助手".into(),
        }),
    );
    let outcome = sim
        .drive_bot_mention(BotMentionRequest {
            bot: None,
            chat_id: Some("wrCHAT-SERVE".into()),
            from: "zhangsan".into(),
            content: "签到".into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome.status, Some(200));

    // The workers run on their own: wait for WeCom to have received the reply.
    let delivered = wait_until(Duration::from_secs(20), || {
        sim.messages()
            .iter()
            .any(|d| d.content.to_string().contains("签到成功"))
    })
    .await;
    assert!(
        delivered,
        "the check-in reply reached WeCom: {:?}",
        sim.messages()
    );
    let replies = sim
        .messages()
        .iter()
        .filter(|d| d.content.to_string().contains("签到成功"))
        .count();
    assert_eq!(replies, 1, "sent exactly once");

    // Shutdown finishes in-flight work and returns cleanly.
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // What the sender recorded agrees with WeCom's record.
    let pool = qunyun::store::open(&db_path).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let rows = outbox::list(&mut conn, Some(outbox::OutboxStatus::Sent))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

/// Scheduled pushes fire under `qunyun serve` with no one driving the
/// scheduler: the loop notices the due fire and the sender delivers it, once.
#[tokio::test]
async fn serve_fires_due_schedules_once() {
    use chrono::{Duration as ChronoDuration, TimeZone, Utc};
    use qunyun::rules::ChatRoute;
    use qunyun::store::chats::{self, NewChat};
    use qunyun::store::{rule_sets, schedules};

    // 08:59:50 in Shanghai; the schedule fires at 09:00.
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 0, 59, 50).unwrap();
    let clock = clock::ManualClock::new(start);
    let sim = Sim::spawn(SimConfig::new(CORP_ID, "app-secret"), clock.clone())
        .await
        .unwrap();
    sim.add_robot("KEY-PUSH", "wrPUSH");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("qunyun.db"));
    config.wecom.api_base = sim.api_base_url();

    let pool = qunyun::store::open(&config.database.path).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let rules = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "morning"
cron = "0 0 9 * * *"

[schedules.targets]
all_chats = true

[schedules.content]
kind = "text"
body = "早上好，{{ chat.name }}！"
"#;
    rule_sets::save(&mut conn, rules, start).await.unwrap();
    chats::upsert_chat(
        &mut conn,
        &NewChat {
            chat_id: "wrPUSH".into(),
            name: "福利群".into(),
            route: ChatRoute::Webhook {
                key: "KEY-PUSH".into(),
            },
            owner: None,
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        start,
    )
    .await
    .unwrap();
    drop(conn);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(qunyun::app::run(config, clock.clone(), listener, async {
        let _ = stopped.await;
    }));

    // The scheduler's first pass activates the schedule before 09:00.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let mut conn = pool.acquire().await.unwrap();
        if schedules::state(&mut conn, "morning")
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler never looked at the schedule"
        );
        tick.tick().await;
    }
    assert!(sim.messages().is_empty(), "nothing is due before 09:00");

    clock.set(start + ChronoDuration::seconds(15));
    let delivered = wait_until(Duration::from_secs(20), || {
        sim.messages()
            .iter()
            .any(|d| d.content.to_string().contains("早上好，福利群"))
    })
    .await;
    assert!(
        delivered,
        "the 09:00 push reached WeCom: {:?}",
        sim.messages()
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let pushes = sim
        .messages()
        .iter()
        .filter(|d| d.target == "wrPUSH")
        .count();
    assert_eq!(pushes, 1, "the push was sent exactly once");
}
