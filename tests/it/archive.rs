//! The message-archive puller through `serve`, against a stand-in for
//! Tencent's SDK library: `tests/data/archive_sdk/fake_sdk.c`, compiled here
//! with the system C compiler into each test's own directory. Each record's
//! random key is encrypted with the TEST-ONLY RSA key under tests/data (RSA
//! PKCS#1 v1.5, as the SDK documents; 1024 bits rather than the console's 2048
//! so that thousands of decryptions stay quick in a debug build), and its body is the hex of the
//! plaintext XORed with that key, which the stand-in's `DecryptData` undoes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use qunyun::app::WorkerHooks;
use qunyun::config::{ArchiveConfig, ArchiveKeyConfig, Secret};
use qunyun::rules::capabilities::{capability, Capability, Feature};
use qunyun::rules::ChatRoute;
use qunyun::sim::{RawRequest, Route, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::outbox::{self as outbox_store, OutboxStatus};
use qunyun::store::{chats, checkins, points};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use sqlx::SqlitePool;
use tempfile::TempDir;

use crate::helpers::{
    wait_until_async, ConfigFile, ServeProcess as Serve, Service, TestConfig, APP, CORP_ID,
};

const KEY_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/archive_sdk/TEST_ONLY_archive_private_key_v1.pem"
);
const SDK_SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/archive_sdk/fake_sdk.c"
);
const GROUP: &str = "wrARCHIVE000000000000000000GROUP";
const OWNER: &str = "yunying";
const WAIT: Duration = Duration::from_secs(60);

/// The stand-in library and the script it serves, in a directory of their own.
struct FakeSdk {
    dir: TempDir,
    public: RsaPublicKey,
    lines: Vec<String>,
}

impl FakeSdk {
    fn new() -> FakeSdk {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror"])
            .arg(format!("-DFAKE_SDK_SCRIPT=\"{}\"", script.display()))
            .arg("-o")
            .arg(dir.path().join("libWeWorkFinanceSdk_C.so"))
            .arg(SDK_SOURCE)
            .status()
            .expect("a C compiler (cc) is installed (scripts/install-deps)");
        assert!(status.success(), "the stand-in SDK compiles");
        std::fs::write(&script, "").unwrap();
        let private =
            RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(KEY_PEM).unwrap()).unwrap();
        FakeSdk {
            dir,
            public: private.to_public_key(),
            lines: Vec::new(),
        }
    }

    fn library(&self) -> PathBuf {
        self.dir.path().join("libWeWorkFinanceSdk_C.so")
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("script")
    }

    /// What the stand-in logged: one line per call.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("script.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A record of `plaintext` at `seq`, its key sealed for `version`.
    fn record(&mut self, seq: u64, msgid: &str, version: u32, plaintext: &serde_json::Value) {
        let random_key = format!("rk{seq:06}{}", &msgid[..msgid.len().min(8)]);
        let sealed = self
            .public
            .encrypt(
                &mut rand::thread_rng(),
                Pkcs1v15Encrypt,
                random_key.as_bytes(),
            )
            .unwrap();
        let body: Vec<u8> = plaintext
            .to_string()
            .bytes()
            .zip(random_key.bytes().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        self.lines.push(format!(
            "R {seq} {msgid} {version} {} {}",
            base64::engine::general_purpose::STANDARD.encode(sealed),
            hex::encode(body)
        ));
    }

    fn text(&mut self, seq: u64, msgid: &str, from: &str, text: &str) {
        self.record(
            seq,
            msgid,
            1,
            &serde_json::json!({
                "msgid": msgid, "action": "send", "from": from, "tolist": [OWNER],
                "roomid": GROUP, "msgtime": 1_795_000_000_000_i64 + seq as i64,
                "msgtype": "text", "text": {"content": text},
            }),
        );
    }

    fn directive(&mut self, line: &str) {
        self.lines.push(line.to_owned());
    }

    fn write(&self) {
        std::fs::write(self.script(), self.lines.join("\n") + "\n").unwrap();
    }

    fn config(&self, page_size: u32) -> ArchiveConfig {
        ArchiveConfig {
            enabled: true,
            library: self.library(),
            secret: Secret::new("archive-secret-for-tests"),
            private_keys: vec![ArchiveKeyConfig {
                version: 1,
                path: Some(KEY_PEM.into()),
                pem: None,
            }],
            poll_interval_secs: 1,
            max_lag_hours: 24,
            page_size,
        }
    }
}

async fn scalar(pool: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn stored_records(pool: &SqlitePool) -> i64 {
    scalar(pool, "select count(*) from archive_messages").await
}

/// The service's (manual) clock.
fn now(service: &Service) -> chrono::DateTime<chrono::Utc> {
    use qunyun::clock::Clock;
    service.clock.as_ref().expect("manual clock").now()
}

async fn service(sdk: &FakeSdk, page_size: u32, rules: Option<String>) -> Service {
    let archive = sdk.config(page_size);
    let mut test = TestConfig::new()
        .with_auto_confirm_mass()
        .with(move |c| c.archive = archive);
    // In force before the archive job's first pull: an alert raised under
    // the built-in rules would have no admin to go to.
    if let Some(rules) = rules {
        test = test.with_rule_set(&rules);
    }
    Service::start(test, WorkerHooks::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_archived_messages_over_several_pages_arrive_once_each() {
    let mut sdk = FakeSdk::new();
    for seq in 1..=5000u64 {
        sdk.text(
            seq,
            &format!("msg{seq:05}"),
            &format!("wm{}", seq % 37),
            "你好",
        );
    }
    // The archive serves ten records a second time under later seqs.
    for (i, seq) in (5001..=5010u64).enumerate() {
        sdk.text(seq, &format!("msg{:05}", i + 1), "wm1", "你好");
    }
    sdk.write();
    let mut service = service(&sdk, 1000, None).await;
    let pool = service.pool.clone();
    assert!(
        wait_until_async(WAIT, || async {
            scalar(&pool, "select coalesce(max(seq), 0) from archive_cursor").await == 5010
        })
        .await,
        "the cursor reaches the archive's end: {:?}",
        sdk.log()
    );
    service.shutdown().await;

    assert_eq!(stored_records(&pool).await, 5000);
    let keys: Vec<String> = sqlx::query_scalar(
        "select dedupe_key from inbox where kind = 'ingest_message' and source = 'ingest'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), distinct.len()), (5000, 5000));
    assert!(distinct.contains(&"archive:msg00001".to_owned()));
    // Pages of at most 1000: six full or partial pages, then nothing new.
    let served: Vec<String> = sdk
        .log()
        .into_iter()
        .filter(|l| l.starts_with("served"))
        .collect();
    assert!(served.len() >= 6, "{served:?}");
    assert_eq!(served[0], "served 1000 records after seq 0");
    assert_eq!(served[5], "served 10 records after seq 5000");
    let events: Vec<String> =
        sqlx::query_scalar("select event_json from inbox where dedupe_key = 'archive:msg00002'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let event: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(
        (
            event["chat_id"].as_str(),
            event["sender"].as_str(),
            event["text"].as_str()
        ),
        (Some(GROUP), Some("wm2"), Some("你好"))
    );
}

/// The example rule set on the test app, alerts to `admin` (an internal member).
fn rules_with_admin() -> String {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules.example.toml"))
            .unwrap();
    let rules = example
        .replace("app = \"main\"", &format!("app = \"{APP}\""))
        .replacen("admins = []", "admins = [\"admin\"]", 1);
    assert!(rules.contains("admins = [\"admin\"]"));
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkin_in_a_customer_group_from_the_archive_awards_points_once_and_files_the_promised_reply(
) {
    let mut sdk = FakeSdk::new();
    let mut service = service(&sdk, 100, Some(rules_with_admin())).await;
    let sim = service.sim().clone();
    sim.add_customer_group(SeedCustomerGroup {
        chat_id: GROUP.into(),
        name: "好物分享群".into(),
        owner: OWNER.into(),
        notice: String::new(),
        status: 0,
        create_time: 1_790_000_000,
        admins: vec![],
        members: vec![SeedGroupMember::new(OWNER), SeedGroupMember::new("wmA")],
    });
    let mut conn = service.pool.acquire().await.unwrap();
    chats::upsert_chat(
        &mut conn,
        &chats::NewChat {
            chat_id: GROUP.into(),
            name: "好物分享群".into(),
            route: ChatRoute::CustomerGroup,
            owner: Some(OWNER.into()),
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        now(&service),
    )
    .await
    .unwrap();
    drop(conn);
    // Members speak once the group is registered as a customer group.
    sdk.text(1, "chk-1", "wmA", "签到");
    // The same message again under a later seq: stored and counted once.
    sdk.text(2, "chk-1", "wmA", "签到");
    sdk.write();

    let pool = service.pool.clone();
    let filed = wait_until_async(WAIT, || async {
        scalar(
            &pool,
            "select count(*) from outbox where idempotency_key like 'reply:%'",
        )
        .await
            > 0
            && scalar(&pool, "select count(*) from inbox where status = 'pending'").await == 0
    })
    .await;
    assert!(filed, "the check-in is handled: {:?}", sdk.log());
    service.shutdown().await;

    // The reply is what the chat's capability table announces for a
    // check-in reply in a customer group, and nothing posts into the group.
    let mut conn = service.pool.acquire().await.unwrap();
    let chat = chats::get_chat(&mut conn, GROUP).await.unwrap().unwrap();
    let announced = capability(&chat, Feature::CheckinReply);
    let rows = outbox_store::list(&mut conn, None).await.unwrap();
    let replies: Vec<_> = rows
        .iter()
        .filter(|r| r.idempotency_key.starts_with("reply:"))
        .collect();
    assert_eq!(replies.len(), 1, "{rows:#?}");
    assert_eq!(replies[0].idempotency_key, "reply:archive:chk-1");
    assert_eq!(replies[0].route.as_str(), "customer_group_mass");
    assert!(replies[0].payload_json.contains("签到"), "{:?}", replies[0]);
    let observed = match replies[0].status {
        OutboxStatus::Skipped => Capability::NotPossible {
            reason: replies[0].last_error.clone().unwrap_or_default(),
        },
        _ => Capability::OwnerConfirmation {
            owner: replies[0].target.clone(),
        },
    };
    assert_eq!(observed, announced);
    assert!(
        sim.messages().iter().all(|d| d.target != GROUP),
        "{:?}",
        sim.messages()
    );
    assert_eq!(checkins::count_all(&mut conn).await.unwrap(), 1);
    let entries = points::entries_for(&mut conn, "wmA").await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(points::balance(&mut conn, "wmA").await.unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_group_with_a_smart_bot_is_archived_but_acted_on_only_through_the_bot() {
    let mut sdk = FakeSdk::new();
    let mut service = service(&sdk, 100, None).await;
    let mut conn = service.pool.acquire().await.unwrap();
    chats::upsert_chat(
        &mut conn,
        &chats::NewChat {
            chat_id: GROUP.into(),
            name: "门店店长群".into(),
            route: ChatRoute::internal_with_smart_bot("qunyun-bot"),
            owner: Some(OWNER.into()),
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        now(&service),
    )
    .await
    .unwrap();
    drop(conn);
    // A member @-mentions the bot: the bot delivers it; the archive has a copy.
    sdk.text(1, "bot-heard-1", "zhangsan", "@qunyun-bot 签到");
    sdk.write();

    let pool = service.pool.clone();
    let archived = wait_until_async(WAIT, || async { stored_records(&pool).await == 1 }).await;
    assert!(archived, "the record is archived: {:?}", sdk.log());
    // The record and its events are written in one transaction: none came.
    assert_eq!(scalar(&pool, "select count(*) from inbox").await, 0);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_version_is_kept_and_alerted_once_with_the_version_and_recalls_are_marked() {
    let mut sdk = FakeSdk::new();
    sdk.text(1, "ok-1", "wmA", "第一条");
    // Three records sealed for version 7, which is not configured, on two pages.
    for seq in 2..=4u64 {
        sdk.record(
            seq,
            &format!("v7-{seq}"),
            7,
            &serde_json::json!({"msgid": "x"}),
        );
    }
    sdk.record(
        5,
        "recall-1",
        1,
        &serde_json::json!({"msgid": "recall-1", "action": "recall", "from": "wmA",
            "roomid": GROUP, "msgtime": 1_795_000_000_500_i64, "msgtype": "revoke",
            "revoke": {"pre_msgid": "ok-1"}}),
    );
    sdk.record(
        6,
        "switch-1",
        1,
        &serde_json::json!({"msgid": "switch-1", "action": "switch", "time": 1_795_000_000_600_i64, "user": "zhangsan"}),
    );
    sdk.record(
        7,
        "image-1",
        1,
        &serde_json::json!({"msgid": "image-1", "action": "send", "from": "wmA", "roomid": GROUP,
            "msgtime": 1_795_000_000_700_i64, "msgtype": "image", "image": {"sdkfileid": "f"}}),
    );
    sdk.write();
    let mut service = service(&sdk, 3, Some(rules_with_admin())).await;
    let sim = service.sim().clone();
    let pool = service.pool.clone();
    let alerted = wait_until_async(WAIT, || async {
        sim.messages()
            .iter()
            .any(|d| d.route == Route::AppMessage && d.target == "admin")
    })
    .await;
    assert!(alerted, "the admin is told: {:?}", sim.messages());
    assert!(
        wait_until_async(WAIT, || async { stored_records(&pool).await == 7 }).await,
        "every record is stored"
    );
    service.shutdown().await;

    let to_admin: Vec<String> = sim
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::AppMessage && d.target == "admin")
        .filter_map(|d| d.text().map(str::to_owned))
        .collect();
    assert_eq!(
        to_admin.len(),
        1,
        "one alert for three records: {to_admin:?}"
    );
    assert!(to_admin[0].contains("publickey_ver 7"), "{to_admin:?}");
    let failed: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select msgid, failure, encrypt_chat_msg from archive_messages where failure is not null order by seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[0].1, "no private key for publickey_ver 7");
    assert!(failed[0].2.is_some(), "the ciphertext is kept");
    let recalled: Option<String> =
        sqlx::query_scalar("select recalled_by from archive_messages where msgid = 'ok-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recalled.as_deref(), Some("recall-1"));
    let kinds: Vec<(String, Option<String>)> = sqlx::query_as(
        "select msgid, action from archive_messages where msgid in ('switch-1', 'image-1') order by msgid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("image-1".to_owned(), Some("send".to_owned())),
            ("switch-1".to_owned(), Some("switch".to_owned()))
        ]
    );
    // The group text and the group picture (晒单) became events; the switch,
    // the recall and the undecryptable records did not.
    assert_eq!(
        scalar(
            &pool,
            "select count(*) from inbox where kind = 'ingest_message'"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_sdk_error_backs_off_and_the_pull_then_succeeds() {
    let mut sdk = FakeSdk::new();
    sdk.directive("E 1 10001");
    sdk.directive("E 2 10002");
    for seq in 1..=3u64 {
        sdk.text(seq, &format!("retry-{seq}"), "wmA", "在吗");
    }
    sdk.write();
    let mut service = service(&sdk, 100, None).await;
    let pool = service.pool.clone();
    assert!(
        wait_until_async(WAIT, || async { stored_records(&pool).await == 3 }).await,
        "{:?}",
        sdk.log()
    );
    service.shutdown().await;
    let calls: Vec<String> = sdk
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GetChatData"))
        .collect();
    assert_eq!(
        &calls[..3],
        [
            "GetChatData seq=0 limit=100 code=10001",
            "GetChatData seq=0 limit=100 code=10002",
            "GetChatData seq=0 limit=100 code=0",
        ]
    );
    // Retryable: no operator alert.
    assert_eq!(
        scalar(&pool, "select count(*) from archive_alerts").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msgaudit_notify_callback_starts_a_pull_before_the_poll_interval() {
    let mut sdk = FakeSdk::new();
    sdk.write();
    let mut archive = sdk.config(100);
    // An hour between polls: only the notification can bring the record in.
    archive.poll_interval_secs = 3600;
    let mut service = Service::start(
        TestConfig::new().with(move |c| c.archive = archive),
        WorkerHooks::default(),
    )
    .await;
    let first_pass = wait_until_async(WAIT, || async {
        sdk.log().iter().any(|l| l.starts_with("served 0"))
    })
    .await;
    assert!(first_pass, "{:?}", sdk.log());
    sdk.text(1, "notified-1", "wmA", "早上好");
    sdk.write();
    let plaintext = format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[msgaudit_notify]]></Event></xml>",
        now(&service).timestamp()
    );
    let delivered = service
        .sim()
        .drive_raw(RawRequest {
            app: None,
            bot: None,
            plaintext,
            with_agent: true,
        })
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    let pool = service.pool.clone();
    assert!(
        wait_until_async(WAIT, || async { stored_records(&pool).await == 1 }).await,
        "{:?}",
        sdk.log()
    );
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_page_and_a_restart_lose_nothing_and_duplicate_nothing() {
    let mut sdk = FakeSdk::new();
    for seq in 1..=2000u64 {
        sdk.text(seq, &format!("k{seq:05}"), "wmA", "你好");
    }
    // Decrypting record 1250 (on the third page of 500) hangs the first time:
    // the page is pulled but not committed when the process dies.
    sdk.directive("H k01250");
    sdk.write();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qunyun.db");
    let file = ConfigFile {
        // The built-in rule set's app, so `serve` starts without a rule import.
        app: "main".into(),
        ..ConfigFile::default()
    };
    let toml = format!(
        "{}\n[archive]\nenabled = true\nlibrary = \"{}\"\nsecret = \"archive-secret-for-tests\"\n\
         page_size = 500\npoll_interval_secs = 1\n[[archive.private_keys]]\nversion = 1\npath = \"{KEY_PEM}\"\n",
        file.toml(&db),
        sdk.library().display()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();

    let serve = Serve::start(&config);
    let hung = wait_until_async(WAIT, || async {
        sdk.log().iter().any(|l| l == "hang k01250")
    })
    .await;
    assert!(hung, "{:?}", sdk.log());
    serve.kill();

    let pool = qunyun::store::open(&db).await.unwrap();
    let cursor = scalar(&pool, "select seq from archive_cursor").await;
    assert_eq!(cursor, 1000, "two pages committed, the third not");
    assert_eq!(stored_records(&pool).await, 1000);
    assert_eq!(
        scalar(
            &pool,
            "select count(*) from inbox where kind = 'ingest_message'"
        )
        .await,
        1000
    );
    pool.close().await;

    let serve = Serve::start(&config);
    let pool = qunyun::store::open(&db).await.unwrap();
    let done = wait_until_async(WAIT, || async {
        scalar(&pool, "select seq from archive_cursor").await == 2000
    })
    .await;
    assert!(done, "{:?}", sdk.log());
    drop(serve);
    assert_eq!(stored_records(&pool).await, 2000);
    let keys: Vec<String> =
        sqlx::query_scalar("select dedupe_key from inbox where kind = 'ingest_message'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), distinct.len()), (2000, 2000));
    // The restart resumed from the committed cursor, not from the start.
    let calls: Vec<String> = sdk
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GetChatData") || l.starts_with("Init"))
        .collect();
    let restart = calls.iter().rposition(|l| l.starts_with("Init")).unwrap();
    assert_eq!(calls[restart + 1], "GetChatData seq=1000 limit=500 code=0");
}
