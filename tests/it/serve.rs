//! `qunyun serve` as a whole: callback → inbox → pipeline worker → outbox →
//! sender worker → WeCom (the simulator), with the background loops running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qunyun::app::WorkerHooks;
use qunyun::clock::{self, Clock};
use qunyun::pipeline::PipelineHooks;
use qunyun::sim::{BotCallback, BotMentionRequest, CallbackTargets, Sim, SimConfig, SimHandle};
use qunyun::store::inbox::{self, InboxStatus};
use qunyun::store::outbox;

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, test_config, wait_until, BOT, BOT_KEY, BOT_TOKEN, CORP_ID};

#[tokio::test]
async fn serve_runs_the_pipeline_and_sender_until_shutdown() {
    let mut served = Served::start(WorkerHooks::default()).await;
    served.mention("zhangsan", "签到").await;

    // The workers run on their own: wait for WeCom to have received the reply.
    let delivered = wait_until(Duration::from_secs(20), || served.checkin_replies() >= 1).await;
    assert!(
        delivered,
        "the check-in reply reached WeCom: {:?}",
        served.sim.messages()
    );
    assert_eq!(served.checkin_replies(), 1, "sent exactly once");

    // Shutdown finishes in-flight work and returns cleanly.
    served.shutdown().await;

    // What the sender recorded agrees with WeCom's record.
    let pool = qunyun::store::open(&served.db_path).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let rows = outbox::list(&mut conn, Some(outbox::OutboxStatus::Sent))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(served.checkin_replies(), 1);
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

/// `qunyun serve` with test seams in its workers, on the system clock, with
/// the simulator as WeCom and its smart bot pointed at the server.
struct Served {
    sim: SimHandle,
    http: reqwest::Client,
    base: String,
    db_path: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(hooks: WorkerHooks) -> Served {
        let clock = clock::system();
        let sim = Sim::spawn(SimConfig::new(CORP_ID, "app-secret"), clock.clone())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("qunyun.db"));
        config.wecom.api_base = sim.api_base_url();
        let db_path = config.database.path.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(qunyun::app::run_with_hooks(
            config,
            clock,
            listener,
            async {
                let _ = stopped.await;
            },
            hooks,
        ));
        sim.set_callbacks(CallbackTargets::new(base.clone()).with_bot(BotCallback {
            name: BOT.into(),
            token: BOT_TOKEN.into(),
            encoding_aes_key: BOT_KEY.into(),
            aibotid: "AIBOT-IT".into(),
            bot_name: "运营助手".into(),
        }));
        Served {
            sim,
            http: reqwest::Client::new(),
            base,
            db_path,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// A member mentions the bot in a group; the callback is stored.
    async fn mention(&self, from: &str, text: &str) {
        let outcome = self
            .sim
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: Some("wrCHAT-SUPERVISED".into()),
                from: from.into(),
                content: text.into(),
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
    }

    /// Check-in replies WeCom received.
    fn checkin_replies(&self) -> usize {
        self.sim
            .messages()
            .iter()
            .filter(|d| d.content.to_string().contains("签到成功"))
            .count()
    }

    async fn readyz(&self) -> (u16, String) {
        let reply = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    /// Polls `/readyz` until `expected` holds; the last answer either way.
    async fn readyz_until(&self, expected: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let (status, body) = self.readyz().await;
            if expected(status, &body) || tokio::time::Instant::now() >= deadline {
                return (status, body);
            }
            tick.tick().await;
        }
    }

    async fn inbox(&self) -> Vec<inbox::InboxRow> {
        let pool = qunyun::store::open(&self.db_path).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        inbox::list_all(&mut conn).await.unwrap()
    }

    /// Shuts the server down (in-flight work finishes); the simulator's
    /// record and the database stay for the test to read.
    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
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
    let mut served = Served::start(hooks).await;
    served.mention("zhangsan", "签到").await;
    served.mention("lisi", "签到").await;

    let answered = wait_until(Duration::from_secs(20), || served.checkin_replies() == 1).await;
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
    assert_eq!(served.checkin_replies(), 1, "nothing else was sent");
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
    let mut served = Served::start(hooks).await;
    let (status, body) = served.readyz_until(|status, _| status == 503).await;
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "worker pipeline restarting: panicked: injected pipeline fault"
        )
    );
    served.mention("wangwu", "签到").await;
    assert_eq!(served.inbox().await[0].status, InboxStatus::Pending);

    // Fixed: the next restart stays up, reports ready and handles the event.
    broken.store(false, Ordering::SeqCst);
    let answered = wait_until(Duration::from_secs(20), || served.checkin_replies() == 1).await;
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
        .post_app_plaintext(&chat_join_xml("wmBACKLOG01", now))
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
