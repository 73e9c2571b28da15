//! `qunyun serve` as a whole: callback → inbox → pipeline worker → outbox →
//! sender worker → WeCom (the simulator), with the background loops running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qunyun::app::WorkerHooks;
use qunyun::clock::Clock;
use qunyun::pipeline::PipelineHooks;
use qunyun::sim::BotMentionRequest;
use qunyun::store::inbox::InboxStatus;
use qunyun::store::outbox;

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, wait_until, Callback, Service, TestConfig};

#[tokio::test]
async fn serve_runs_the_pipeline_and_sender_until_shutdown() {
    let mut served = served(WorkerHooks::default()).await;
    mention(&served, "zhangsan", "签到").await;

    // The workers run on their own: wait for WeCom to have received the reply.
    let delivered = wait_until(Duration::from_secs(20), || checkin_replies(&served) >= 1).await;
    assert!(
        delivered,
        "the check-in reply reached WeCom: {:?}",
        served.sim.messages()
    );
    assert_eq!(checkin_replies(&served), 1, "sent exactly once");
    // WeCom records the message before it answers; the sender records the
    // outcome after the answer: wait for that before stopping.
    let mut recorded = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..1000 {
        tick.tick().await;
        let mut conn = served.pool.acquire().await.unwrap();
        let sent = outbox::list(&mut conn, Some(outbox::OutboxStatus::Sent))
            .await
            .unwrap();
        if sent.len() == 1 {
            recorded = true;
            break;
        }
    }
    assert!(recorded, "the sender recorded the delivery");

    // Shutdown finishes in-flight work and returns cleanly.
    served.shutdown().await;

    // What the sender recorded agrees with WeCom's record.
    let mut conn = served.pool.acquire().await.unwrap();
    let rows = outbox::list(&mut conn, Some(outbox::OutboxStatus::Sent))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(checkin_replies(&served), 1);
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
    let mut served =
        Service::start(TestConfig::new().starting_at(start), WorkerHooks::default()).await;
    let (sim, pool) = (&served.sim, served.pool.clone());
    let clock = served.clock.clone().expect("a manual clock");
    sim.add_robot("KEY-PUSH", "wrPUSH");
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
            route: ChatRoute::internal_with_robot("KEY-PUSH"),
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

    served.shutdown().await;
    let pushes = served
        .sim
        .messages()
        .iter()
        .filter(|d| d.target == "wrPUSH")
        .count();
    assert_eq!(pushes, 1, "the push was sent exactly once");
}

/// `qunyun serve` on the system clock, with test seams in its workers.
async fn served(hooks: WorkerHooks) -> Service {
    Service::start(TestConfig::new().on_system_clock(), hooks).await
}

/// A member mentions the bot in a group; the callback is stored.
async fn mention(served: &Service, from: &str, text: &str) {
    let outcome = served
        .sim
        .drive_bot_mention(BotMentionRequest {
            bot: None,
            chat_id: Some("wrCHAT-SUPERVISED".into()),
            from: from.into(),
            content: text.into(),
            quote: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.status, Some(200));
}

/// Check-in replies WeCom received.
fn checkin_replies(served: &Service) -> usize {
    served
        .sim
        .messages()
        .iter()
        .filter(|d| d.content.to_string().contains("签到成功"))
        .count()
}

/// A panic while the pipeline handles one inbox row parks that row with the
/// panic's text, rolls back its effects, and the worker goes on with the next.
#[tokio::test]
async fn a_panic_in_one_event_parks_it_and_the_pipeline_goes_on() {
    // The first stored event panics just before its COMMIT, after its effects
    // (the check-in and the reply) were written inside the transaction.
    let hooks = WorkerHooks {
        pipeline: PipelineHooks {
            before_commit: Some(Arc::new(|inbox_id| {
                Box::pin(async move {
                    if inbox_id == 1 {
                        panic!("injected fault for inbox row 1");
                    }
                })
            })),
            ..PipelineHooks::default()
        },
    };
    let mut served = served(hooks).await;
    mention(&served, "zhangsan", "签到").await;
    mention(&served, "lisi", "签到").await;

    let answered = wait_until(Duration::from_secs(20), || checkin_replies(&served) == 1).await;
    assert!(
        answered,
        "the next event was handled: {:?}",
        served.sim.messages()
    );
    let rows = served.inbox().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, InboxStatus::Parked);
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("panicked: injected fault for inbox row 1")
    );
    assert_eq!(rows[1].status, InboxStatus::Done);

    // The worker kept running and reports ready; the parked event's reply
    // was rolled back with it, so WeCom received lisi's reply only.
    assert_eq!(served.readyz().await, (200, "ready".to_owned()));
    served.shutdown().await;
    assert_eq!(checkin_replies(&served), 1, "nothing else was sent");
}

/// A panic outside any row stops the pipeline task: `/readyz` names the
/// worker and the panic while it restarts, and events wait until it runs again.
#[tokio::test]
async fn a_worker_that_panics_is_restarted_and_readyz_says_so_meanwhile() {
    let broken = Arc::new(AtomicBool::new(true));
    let hooks = WorkerHooks {
        pipeline: PipelineHooks {
            before_pass: Some(Arc::new({
                let broken = broken.clone();
                move || {
                    if broken.load(Ordering::SeqCst) {
                        panic!("injected pipeline fault");
                    }
                }
            })),
            ..PipelineHooks::default()
        },
    };
    let mut served = served(hooks).await;
    let (status, body) = served.readyz_until(|status, _| status == 503).await;
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "worker pipeline restarting: panicked: injected pipeline fault"
        )
    );
    mention(&served, "wangwu", "签到").await;
    assert_eq!(served.inbox().await[0].status, InboxStatus::Pending);

    // Fixed: the next restart stays up, reports ready and handles the event.
    broken.store(false, Ordering::SeqCst);
    let answered = wait_until(Duration::from_secs(20), || checkin_replies(&served) == 1).await;
    assert!(
        answered,
        "handled after the restart: {:?}",
        served.sim.messages()
    );
    let (status, body) = served.readyz_until(|status, _| status == 200).await;
    assert_eq!((status, body.as_str()), (200, "ready"));
    served.shutdown().await;
}

/// Callbacks that are stored but not processed make the service unready once
/// the oldest is older than `server.ready_max_inbox_age_secs`.
#[tokio::test]
async fn readyz_reports_an_inbox_backlog_older_than_the_limit() {
    // spawn_app serves HTTP only: no worker processes the inbox.
    let app = spawn_app().await;
    let now = app.clock.now().timestamp();
    let response = app
        .post_event(Callback::App(chat_join_xml("wmBACKLOG01", now)))
        .await;
    assert_eq!(response.status(), 200);
    let ready = |app: &crate::helpers::TestApp| {
        let request = app.http.get(app.url("/readyz"));
        async move {
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };
    app.clock.advance(chrono::Duration::seconds(300));
    assert_eq!(ready(&app).await, (200, "ready".to_owned()), "at the limit");
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        ready(&app).await,
        (
            503,
            "inbox backlog: oldest pending event is 301 s old (limit 300 s)".to_owned()
        )
    );
    app.stop().await;
}
