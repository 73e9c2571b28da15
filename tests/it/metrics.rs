//! `GET /metrics` of the real binary: `qunyun serve` runs as its own process
//! (its counters are its own, not shared with other tests in this binary) with
//! the simulator as WeCom; a callback, a pipeline run and an outbox send each
//! move their series.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use qunyun::clock;
use qunyun::config::Config;
use qunyun::sim::{BotMentionRequest, Sim, SimHandle};
use reqwest::StatusCode;

use crate::helpers::{callback_targets, sim_config, spawn_app_with, ConfigFile, TestConfig};

/// `qunyun serve --config FILE` as a child process; killed when dropped.
struct ServeProcess {
    child: Child,
    base: String,
}

impl ServeProcess {
    /// Starts serve and waits for its "listening" log line (JSON) to learn the port.
    async fn start(config: &Path) -> ServeProcess {
        let config = config.to_owned();
        tokio::task::spawn_blocking(move || ServeProcess::start_blocking(&config))
            .await
            .unwrap()
    }

    fn start_blocking(config: &Path) -> ServeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qunyun"));
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("QUNYUN_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
            if name != "QUNYUN_LOG_FORMAT" {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("qunyun serve starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(line) = lines.next() else {
                panic!("serve exited before listening: {seen:#?}");
            };
            let line = line.expect("stderr readable");
            seen.push(line.clone());
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "qunyun listening" {
                break entry["fields"]["addr"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining its logs so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServeProcess {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator, a config file for it, and `qunyun serve` on that config.
async fn serve_with_sim(dir: &Path) -> (SimHandle, ServeProcess) {
    // The built-in rules answer as app "main": serve refuses a config without it.
    let mut file = ConfigFile {
        app: "main".into(),
        ..ConfigFile::default()
    };
    let config = Config::from_toml_str(&file.toml(&dir.join("qunyun.db"))).unwrap();
    let sim = Sim::spawn(sim_config(&config, &TestConfig::new()), clock::system())
        .await
        .expect("simulator starts");
    file.api_base = sim.api_base_url();
    let file = file.write(dir);
    let served = ServeProcess::start(&file).await;
    sim.set_callbacks(callback_targets(&config, &served.base));
    (sim, served)
}

/// One scrape: each sample line `name{labels} value` by `name{labels}`.
async fn scrape(base: &str) -> BTreeMap<String, f64> {
    let reply = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain all of `labels`.
fn total(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test]
async fn metrics_list_every_family_and_a_check_in_moves_callback_pipeline_and_outbox_series() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, served) = serve_with_sim(dir.path()).await;

    let before = scrape(&served.base).await;
    let outcome = sim
        .drive_bot_mention(BotMentionRequest {
            bot: None,
            chat_id: Some("wrCHAT-METRICS".into()),
            from: "zhangsan".into(),
            content: "签到".into(),
            quote: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.status, Some(200));

    // The workers run on their own: wait until the reply is recorded as sent.
    let mut after = scrape(&served.base).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while total(&after, "qunyun_outbox_rows", &[r#"status="sent""#]) < 1.0
        && tokio::time::Instant::now() < deadline
    {
        tick.tick().await;
        after = scrape(&served.base).await;
    }

    // Every family is listed once it has a series (outbox rows and WeCom
    // calls need one; the others start at 0).
    let text = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "qunyun_callbacks",
        "qunyun_callback_duration_seconds",
        "qunyun_inbox_batch_size",
        "qunyun_inbox_batch_duration_seconds",
        "qunyun_inbox_backlog",
        "qunyun_inbox_oldest_pending_age_seconds",
        "qunyun_pipeline_events",
        "qunyun_pipeline_latency_seconds",
        "qunyun_outbox_rows",
        "qunyun_wecom_api_calls",
        "qunyun_wecom_token_refreshes",
        "qunyun_scheduler_fires",
        "qunyun_worker_restarts",
        "qunyun_sqlite_busy_retries",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    // Moderation decisions are labelled by rule family: listed from the first one.
    assert!(text.contains(r#"qunyun_worker_restarts_total{worker="pipeline"} 0"#));

    let moved =
        |name: &str, labels: &[&str]| total(&after, name, labels) - total(&before, name, labels);
    assert_eq!(
        moved(
            "qunyun_callbacks_total",
            &[r#"endpoint="bot:helper""#, r#"outcome="ok""#]
        ),
        1.0,
        "the callback is counted: {after:?}"
    );
    assert_eq!(moved("qunyun_callback_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        moved("qunyun_inbox_batch_size_count", &[]),
        1.0,
        "the callback's row went through one group commit: {after:?}"
    );
    assert_eq!(moved("qunyun_inbox_batch_size_sum", &[]), 1.0);
    assert_eq!(
        moved("qunyun_pipeline_events_total", &[r#"outcome="done""#]),
        1.0,
        "the pipeline handled it"
    );
    assert_eq!(moved("qunyun_pipeline_latency_seconds_count", &[]), 1.0);
    assert_eq!(
        moved("qunyun_outbox_rows", &[r#"status="sent""#]),
        1.0,
        "the reply is sent: {after:?}"
    );
    assert!(
        moved("qunyun_wecom_api_calls_total", &[r#"errcode="0""#]) >= 1.0,
        "the send is a counted WeCom call: {after:?}"
    );
    assert_eq!(total(&after, "qunyun_inbox_backlog", &[]), 0.0);
    assert!(!sim.messages().is_empty());
}

#[tokio::test]
async fn an_unknown_callback_endpoint_is_counted_without_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, served) = serve_with_sim(dir.path()).await;
    let http = reqwest::Client::new();
    let reply = http
        .post(format!(
            "{}/wecom/apps/no-such-app/callback?msg_signature=x&timestamp=1&nonce=1",
            served.base
        ))
        .body("<xml/>")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    let samples = scrape(&served.base).await;
    assert_eq!(
        total(
            &samples,
            "qunyun_callbacks_total",
            &[r#"endpoint="unknown""#, r#"outcome="not_found""#]
        ),
        1.0
    );
    assert!(!samples.keys().any(|series| series.contains("no-such-app")));
}

#[tokio::test]
async fn with_a_token_metrics_need_it_even_from_loopback() {
    let app = spawn_app_with(|config| {
        config.metrics.token = Some(qunyun::config::Secret::new("scrape-token-0123456789"));
    })
    .await;
    let http = reqwest::Client::new();
    let without = http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let with = http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK);
    assert!(with.headers().get("content-type").is_some_and(|v| v
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text")));
}
