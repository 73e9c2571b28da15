//! Start the real app on an ephemeral port with its own database and clock.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use qunyun::app::App;
use qunyun::clock::ManualClock;
use qunyun::config::Config;
use qunyun::store::inbox::{self, InboxRow};
use qunyun::wecom::crypto::{self, MsgCrypt};
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CORP_ID: &str = "wwTESTCORP0000000001";
pub const APP: &str = "ops";
pub const BOT: &str = "helper";
pub const APP_TOKEN: &str = "QunyunAppToken";
pub const BOT_TOKEN: &str = "QunyunBotToken";
// Test-only keys (43 characters; the last one has surplus low bits set, as real keys do).
pub const APP_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
pub const BOT_KEY: &str = "aesKeyForTheSmartBotInTestsOnly0123456789AB";

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: SqlitePool,
    pub clock: Arc<ManualClock>,
    pub app_crypt: MsgCrypt,
    pub bot_crypt: MsgCrypt,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

/// The test configuration as TOML (for `qunyun --config FILE`).
pub fn test_config_toml(db_path: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
path = "{db}"
[wecom]
corp_id = "{CORP_ID}"
api_base = "http://127.0.0.1:1/cgi-bin/"
[[wecom.apps]]
name = "{APP}"
agent_id = 1000002
secret = "app-secret"
token = "{APP_TOKEN}"
encoding_aes_key = "{APP_KEY}"
[[wecom.bots]]
name = "{BOT}"
token = "{BOT_TOKEN}"
encoding_aes_key = "{BOT_KEY}"
"#,
        db = db_path.display()
    )
}

pub fn test_config(db_path: &std::path::Path) -> Config {
    Config::from_toml_str(&test_config_toml(db_path)).expect("test config is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir.path().join("qunyun.db"));
    adjust(&mut config);
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap());
    let app = App::new(config, clock.clone()).await.expect("app starts");
    let pool = app.state.pool.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        pool,
        clock,
        app_crypt: MsgCrypt::new(APP_TOKEN, APP_KEY, CORP_ID).unwrap(),
        bot_crypt: MsgCrypt::new(BOT_TOKEN, BOT_KEY, "").unwrap(),
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn app_callback(&self) -> String {
        self.url(&format!("/wecom/apps/{APP}/callback"))
    }

    pub fn bot_callback(&self) -> String {
        self.url(&format!("/wecom/bots/{BOT}/callback"))
    }

    /// Encrypts an app plaintext the way WeCom does and POSTs its XML envelope.
    pub async fn post_app_plaintext(&self, plaintext: &str) -> reqwest::Response {
        let (query, body) = seal_xml(&self.app_crypt, plaintext, "1763776800", "1234567");
        self.http
            .post(format!("{}?{query}", self.app_callback()))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Encrypts a smart-bot plaintext and POSTs its JSON envelope.
    pub async fn post_bot_plaintext(&self, plaintext: &str) -> reqwest::Response {
        let encrypt = self.bot_crypt.encrypt(plaintext.as_bytes());
        let (timestamp, nonce) = ("1763776800", "7654321");
        let signature = crypto::signature(BOT_TOKEN, timestamp, nonce, &encrypt);
        let body = serde_json::json!({ "encrypt": encrypt }).to_string();
        self.http
            .post(format!(
                "{}?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}",
                self.bot_callback()
            ))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn inbox(&self) -> Vec<InboxRow> {
        let mut conn = self.pool.acquire().await.unwrap();
        inbox::list_all(&mut conn).await.unwrap()
    }

    /// Stops the server and waits for it to finish in-flight work.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The query string and XML envelope WeCom would send for this plaintext.
pub fn seal_xml(
    crypt: &MsgCrypt,
    plaintext: &str,
    timestamp: &str,
    nonce: &str,
) -> (String, String) {
    let encrypt = crypt.encrypt(plaintext.as_bytes());
    let signature = crypt.signature(timestamp, nonce, &encrypt);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    );
    (
        format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
        body,
    )
}

/// Percent-encodes a query value (WeCom sends `+`, `/`, `=` as %2B, %2F, %3D).
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Waits until `condition` holds, checking on a short interval; false on timeout.
/// Used where background workers run on their own schedule (no fixed sleeps).
pub async fn wait_until(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tick.tick().await;
    }
}
