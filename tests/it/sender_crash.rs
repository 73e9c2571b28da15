//! `kill -9` of a real `qunyun serve` process in the middle of an outbound
//! burst, then a restart on the same database. The simulator is WeCom, slowed
//! so that the burst is still going when the process dies. What must hold:
//! every row whose WeCom call never started is delivered within 10 s of the
//! restart (not after its lease), nothing reaches a member twice, and a call
//! that had started on a route where a second call would post twice (a group
//! robot) is parked as uncertain with the reason, not sent again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qunyun::clock;
use qunyun::sim::{AppTextRequest, BotMentionRequest, FaultKind, FaultRule, Sim, SimHandle};
use qunyun::store::outbox::{self, NewOutboxMessage, OutboxStatus, Route, UNCERTAIN_REASON};
use sqlx::SqlitePool;

use crate::config::qunyun;
use crate::helpers::{callback_targets, sim_config, wait_until, ConfigFile, TestConfig};

const MEMBERS: usize = 40;
const BOT_USERS: usize = 20;
const ROBOT_KEY: &str = "ROBOT-KEY-CRASH";

/// A `qunyun serve` child process and the log lines it wrote so far.
struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts the real binary with `config` and waits for "qunyun listening".
    fn start(dir: &Path, config: &Path) -> Served {
        let mut child = qunyun(dir, &["serve", "--config", &config.display().to_string()])
            .env("QUNYUN_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qunyun serve starts");
        // Read every line until the process ends, so a full pipe never blocks it.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening, address) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) {
                    if record["fields"]["message"] == "qunyun listening" {
                        let addr = record["fields"]["addr"].as_str().unwrap_or_default();
                        let _ = listening.send(addr.to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start: {:#?}", log.lock().unwrap()));
        Served {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    /// SIGKILL: no shutdown, no cleanup, leases left as they are.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct RowState {
    id: i64,
    status: OutboxStatus,
    call_started_at: Option<i64>,
    last_error: Option<String>,
}

async fn rows(pool: &SqlitePool) -> Vec<RowState> {
    sqlx::query_as("select id, status, call_started_at, last_error from outbox order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Polls the database (the child owns the clock of events) until `done`.
async fn wait_for_rows(
    pool: &SqlitePool,
    timeout: Duration,
    done: impl Fn(&[RowState]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        if done(&rows(pool).await) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tick.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_then_restart_delivers_never_started_rows_at_once_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qunyun.db");
    // The app is named as the built-in rules expect, as an operator's would be.
    let mut file = ConfigFile {
        app: "main".into(),
        ..ConfigFile::default()
    };
    let mut test = TestConfig::new().with_file(file.clone());
    let config = test.build(&db);
    let sim: SimHandle = Sim::spawn(sim_config(&config, &test), clock::system())
        .await
        .expect("simulator starts");
    file.api_base = sim.api_base_url();
    let config_path = file.write(dir.path());
    // WeCom answers slowly, so the burst is still going when the process dies,
    // and the robot's call never answers: it is in flight at the kill.
    sim.add_robot(ROBOT_KEY, "wrROBOT");
    for path in ["message/send", "aibot/response"] {
        sim.inject(
            FaultRule::new(FaultKind::Slow { delay_ms: 150 })
                .on_path(path)
                .times(10_000),
        );
    }
    sim.inject(FaultRule::new(FaultKind::Hang).on_path("webhook/send"));

    let mut first = Served::start(dir.path(), &config_path);
    sim.set_callbacks(callback_targets(&config, &first.base));
    let pool = qunyun::store::open(&db).await.unwrap();
    // A robot post (a group robot would post a second call twice) ...
    let robot = {
        let mut conn = pool.acquire().await.unwrap();
        let row = NewOutboxMessage {
            idempotency_key: "crash:robot",
            route: Route::Webhook,
            target: ROBOT_KEY,
            app: None,
            payload_json: r#"{"msgtype":"text","text":{"content":"机器人公告"}}"#,
            created_at: chrono::Utc::now().timestamp(),
            not_before: None,
            skip_reason: None,
            event_at: None,
        };
        match outbox::insert_row(&mut conn, &row).await.unwrap() {
            outbox::Enqueued::New(id) => id,
            outbox::Enqueued::Duplicate => panic!("fresh key"),
        }
    };
    // ... and the burst: members check in through the app and the smart bot.
    for i in 0..MEMBERS {
        sim.sim()
            .drive_app_text(AppTextRequest {
                app: None,
                from: format!("member{i:02}"),
                content: "签到".into(),
            })
            .await
            .unwrap();
    }
    for i in 0..BOT_USERS {
        sim.sim()
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: None,
                from: format!("botuser{i:02}"),
                content: "签到".into(),
                quote: None,
            })
            .await
            .unwrap();
    }
    let replies = MEMBERS + BOT_USERS;

    // Kill while the robot call hangs, replies are going out, and the
    // process holds rows whose call has not started yet.
    tokio::time::timeout(Duration::from_secs(30), sim.sim().hang_started())
        .await
        .expect("the robot call started");
    assert!(
        wait_until(Duration::from_secs(30), || !sim.sim().messages().is_empty()).await,
        "the burst started"
    );
    assert!(
        wait_for_rows(&pool, Duration::from_secs(30), |rows| rows.iter().any(
            |row| { row.status == OutboxStatus::InFlight && row.call_started_at.is_none() }
        ))
        .await,
        "a claimed row waits for its call: {:?}",
        rows(&pool).await
    );
    first.kill_9();
    let delivered_before = sim.sim().messages().len();
    assert!(
        delivered_before < replies,
        "killed mid-burst ({delivered_before} of {replies} out)"
    );

    let at_kill = rows(&pool).await;
    let never_started: Vec<i64> = at_kill
        .iter()
        .filter(|row| {
            row.status == OutboxStatus::Pending
                || (row.status == OutboxStatus::InFlight && row.call_started_at.is_none())
        })
        .map(|row| row.id)
        .collect();
    let claimed_not_started = at_kill
        .iter()
        .filter(|row| row.status == OutboxStatus::InFlight && row.call_started_at.is_none())
        .count();
    assert!(
        claimed_not_started > 0,
        "the dead process held rows whose call never started: {at_kill:?}"
    );
    let robot_at_kill = at_kill.iter().find(|row| row.id == robot).unwrap();
    assert_eq!(robot_at_kill.status, OutboxStatus::InFlight);
    assert!(robot_at_kill.call_started_at.is_some(), "{robot_at_kill:?}");

    // Restart on the same database; the clock starts now.
    let restarted_at = Instant::now();
    let second = Served::start(dir.path(), &config_path);
    sim.set_callbacks(callback_targets(&config, &second.base));
    let in_time = wait_for_rows(&pool, Duration::from_secs(10), |rows| {
        never_started.iter().all(|id| {
            rows.iter()
                .any(|row| row.id == *id && row.status == OutboxStatus::Sent)
        })
    })
    .await;
    let took = restarted_at.elapsed();
    assert!(
        in_time,
        "never-started rows not all sent within 10 s of the restart: {:?}",
        rows(&pool).await
    );
    // The rest (resends of started calls) settle too: nothing left in flight.
    assert!(
        wait_for_rows(&pool, Duration::from_secs(20), |rows| rows.iter().all(
            |row| matches!(row.status, OutboxStatus::Sent | OutboxStatus::Dead)
        ))
        .await,
        "{:?}",
        rows(&pool).await
    );
    let after = rows(&pool).await;

    // Every reply reached its member exactly once (WeCom's record).
    let mut per_target: HashMap<String, usize> = HashMap::new();
    for delivery in sim.sim().messages() {
        *per_target.entry(delivery.target.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_target.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    for i in 0..MEMBERS {
        assert_eq!(
            per_target.get(&format!("member{i:02}")),
            Some(&1),
            "member{i:02}"
        );
    }
    for i in 0..BOT_USERS {
        assert_eq!(
            per_target.get(&format!("botuser{i:02}")),
            Some(&1),
            "botuser{i:02}"
        );
    }
    // The robot's call had started: parked for a person, never called again.
    let robot_after = after.iter().find(|row| row.id == robot).unwrap();
    assert_eq!(robot_after.status, OutboxStatus::Dead);
    assert_eq!(robot_after.last_error.as_deref(), Some(UNCERTAIN_REASON));
    assert_eq!(sim.sim().stats().calls_to("webhook/send"), 1);
    assert!(after
        .iter()
        .filter(|row| row.id != robot)
        .all(|row| row.status == OutboxStatus::Sent));
    assert!(
        second.logged("recovered outbox rows a previous process held"),
        "the restart logs what it recovered"
    );
    println!(
        "kill -9 after {delivered_before} of {replies} replies; {} rows never started \
         ({claimed_not_started} of them claimed by the dead process) all sent {took:?} \
         after the restart; {} resent calls dropped by WeCom's duplicate check",
        never_started.len(),
        sim.sim().dropped().len(),
    );
    drop(second);
}
