//! `qunyun doctor` (the real binary) against the simulator and a running
//! qunyun, both in this process on 127.0.0.1:0: every check passes for a
//! correct setup, and each misconfiguration fails the run with one line that
//! names the field or the WeCom admin page to fix.

use std::path::PathBuf;

use qunyun::sim::{FaultKind, FaultRule};
use serde_json::json;

use super::config::{output, qunyun, rehearsal_config, text, CORP_ID, SECRET};
use super::helpers::{ConfigFile, TestApp, TestConfig};

/// A simulated corp, a running qunyun and the config file both were given.
struct Rehearsal {
    app: TestApp,
    serve_url: String,
    config: PathBuf,
}

struct Doctor {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Doctor {
    fn failures(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| line.starts_with("FAIL"))
            .collect()
    }

    /// The one failed line; the run exits 1.
    fn only_failure(&self) -> &str {
        let failures = self.failures();
        assert_eq!(failures.len(), 1, "{}\n{}", self.stdout, self.stderr);
        assert_eq!(self.code, Some(1), "{}", self.stdout);
        failures[0]
    }
}

impl Rehearsal {
    /// The corp has one app (agent 1000002) with [`SECRET`]; `adjust` changes
    /// what the operator wrote in the config.
    async fn start(adjust: impl FnOnce(&mut ConfigFile)) -> Rehearsal {
        let mut file = rehearsal_config();
        adjust(&mut file);
        // The doctor signs its URL verification with the system clock, and
        // the service refuses timestamps outside its window: start the
        // service's clock at the same time.
        let app = TestApp::start(
            TestConfig::new()
                .starting_at(chrono::Utc::now())
                .with_file(file.clone())
                .with_sim_corp(CORP_ID, SECRET),
        )
        .await;
        // As people paste it: no final '/'. The database is the app's own.
        file.api_base = app
            .sim_handle()
            .api_base_url()
            .trim_end_matches('/')
            .to_owned();
        let config = file.write(app.dir());
        Rehearsal {
            serve_url: app.url(""),
            app,
            config,
        }
    }

    async fn doctor(&self) -> Doctor {
        self.doctor_at(&self.serve_url).await
    }

    async fn doctor_at(&self, url: &str) -> Doctor {
        let config = self.config.display().to_string();
        let command = qunyun(
            self.app.dir(),
            &["doctor", "--config", &config, "--url", url],
        );
        let out = output(command).await;
        let doctor = Doctor {
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
        };
        assert!(
            !doctor.stdout.contains(SECRET) && !doctor.stderr.contains(SECRET),
            "a secret was printed"
        );
        doctor
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_a_correctly_configured_simulator() {
    let rehearsal = Rehearsal::start(|_| {}).await;
    let doctor = rehearsal.doctor().await;
    assert_eq!(doctor.code, Some(0), "{}\n{}", doctor.stdout, doctor.stderr);
    let lines: Vec<&str> = doctor.stdout.lines().collect();
    let expected = [
        "ok    rules: built-in defaults",
        "ok    gettoken app \"main\"",
        "ok    app-group permission app \"main\"",
        "ok    customer-contact permission app \"main\"",
        &format!(
            "ok    callback {}/wecom/apps/main/callback",
            rehearsal.serve_url
        ),
        &format!(
            "ok    callback {}/wecom/bots/helper/callback",
            rehearsal.serve_url
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{}", doctor.stdout);
    for (line, start) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "{line:?} should start with {start:?}"
        );
    }
    // What WeCom (the simulator) was asked, with the token it issued.
    let calls = rehearsal.app.sim().stats().calls;
    assert_eq!(calls.get("gettoken"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("agent/get"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("externalcontact/groupchat/list"),
        Some(&1),
        "{calls:?}"
    );
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_naming_the_apps_secret() {
    let rehearsal = Rehearsal::start(|s| s.secret = "NotTheSecretWeComHas".into()).await;
    let doctor = rehearsal.doctor().await;
    let line = doctor.only_failure();
    assert!(line.starts_with("FAIL  gettoken app \"main\""), "{line}");
    assert!(
        line.contains("40001") && line.contains("wecom.apps[0].secret"),
        "{line}"
    );
    // The checks that need a token are skipped, not failed twice.
    assert!(doctor
        .stdout
        .contains("skip  app-group permission app \"main\""));
    assert!(doctor
        .stdout
        .contains("skip  customer-contact permission app \"main\""));
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_corp_id_fails_naming_the_corp_id() {
    let rehearsal = Rehearsal::start(|s| s.corp_id = "wwNOTTHISCORP000001".into()).await;
    let doctor = rehearsal.doctor().await;
    let line = doctor.only_failure();
    assert!(line.starts_with("FAIL  gettoken app \"main\""), "{line}");
    assert!(
        line.contains("40013") && line.contains("wecom.corp_id"),
        "{line}"
    );
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_egress_ip_fails_with_the_ip_wecom_saw() {
    let rehearsal = Rehearsal::start(|_| {}).await;
    rehearsal.app.sim().inject(
        FaultRule::new(FaultKind::UntrustedIp {
            ip: "203.0.113.7".into(),
        })
        .on_path("gettoken"),
    );
    let doctor = rehearsal.doctor().await;
    let line = doctor.only_failure();
    assert!(line.starts_with("FAIL  gettoken app \"main\""), "{line}");
    assert!(
        line.contains("60020") && line.contains("Add 203.0.113.7 to app \"main\"'s 企业可信IP"),
        "{line}"
    );
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_app_without_the_customer_contact_permission_fails() {
    let rehearsal = Rehearsal::start(|_| {}).await;
    rehearsal.app.sim().inject(
        FaultRule::new(FaultKind::Errcode { errcode: 48002 })
            .on_path("externalcontact/groupchat/list"),
    );
    let doctor = rehearsal.doctor().await;
    let line = doctor.only_failure();
    assert!(
        line.starts_with("FAIL  customer-contact permission app \"main\""),
        "{line}"
    );
    assert!(
        line.contains("48002") && line.contains("客户联系 → 可调用接口的应用"),
        "{line}"
    );
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_not_visible_to_the_root_department_fails_the_app_group_check() {
    let rehearsal = Rehearsal::start(|_| {}).await;
    rehearsal.app.sim().inject(
        FaultRule::new(FaultKind::Reply {
            body: json!({"errcode": 0, "errmsg": "ok", "agentid": 1000002,
                         "allow_partys": {"partyid": [2, 5]}}),
        })
        .on_path("agent/get"),
    );
    let doctor = rehearsal.doctor().await;
    let line = doctor.only_failure();
    assert!(
        line.starts_with("FAIL  app-group permission app \"main\""),
        "{line}"
    );
    assert!(
        line.contains("[2, 5]") && line.contains("可见范围"),
        "{line}"
    );
    rehearsal.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_that_do_not_answer_the_verification_fail() {
    let rehearsal = Rehearsal::start(|_| {}).await;
    // The simulator is no qunyun: it has no /wecom/... routes.
    let doctor = rehearsal
        .doctor_at(&rehearsal.app.sim_handle().base_url())
        .await;
    let failures = doctor.failures();
    assert_eq!(doctor.code, Some(1));
    assert_eq!(failures.len(), 2, "{}", doctor.stdout);
    assert!(
        failures[0].contains("/wecom/apps/main/callback") && failures[0].contains("HTTP 404"),
        "{}",
        failures[0]
    );
    assert!(failures[1].contains("/wecom/bots/helper/callback"));
    rehearsal.stop().await;
}
