//! The integration-test harness: the real app on `127.0.0.1:0` with its own
//! SQLite file, the built-in WeCom simulator as WeCom, and one manual clock
//! both of them read. Tests drive it the way the service runs: callbacks in
//! ([`TestApp::post_event`]), a pipeline pass ([`TestApp::run_pipeline`]),
//! sender passes ([`TestApp::drain_outbox`]), and assert on what the
//! simulator received. Time only moves when a test says so.

// Shared by two test binaries (`it` and the browser test); each uses a part.
#![allow(dead_code)]

mod config;
mod console;
mod serve_process;
mod service;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use qunyun::app::{App, AppState};
use qunyun::clock::{Clock, ManualClock, SharedClock};
use qunyun::config::Config;
use qunyun::jobs::analytics::{Analytics, AnalyticsSettings};
use qunyun::jobs::groupsync::GroupSync;
use qunyun::jobs::invites::InviteRewards;
use qunyun::jobs::outbox::{AppCredentials, OutboxSender, SendOutcome, SenderSettings};
use qunyun::jobs::scheduler::{Scheduler, SchedulerSettings};
use qunyun::ops::Ops;
use qunyun::pipeline::{Pipeline, PipelineHooks, PipelineSettings, RunOutcome};
use qunyun::sim::{
    AppCallback, BotCallback, CallbackTargets, Delivery, Sim, SimApp, SimConfig, SimHandle,
};
use qunyun::store::inbox::{self, InboxRow};
use qunyun::store::outbox::{self, OutboxRow, OutboxStatus};
use qunyun::wecom::api::{ApiClient, ApiConfig};
use qunyun::wecom::crypto::{self, MsgCrypt};
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use config::{ConfigFile, TestConfig};
#[allow(unused_imports)]
pub use config::{
    AGENT_ID, APP, APP_KEY, APP_SECRET, APP_TOKEN, BOT, BOT_KEY, BOT_TOKEN, CONTACTS_APP,
    CONTACTS_SECRET, CORP_ID,
};
#[allow(unused_imports)]
pub use console::{hidden_value, urlencode, Console, Reply, Session};
#[allow(unused_imports)]
pub use serve_process::ServeProcess;
#[allow(unused_imports)]
pub use service::{point_long_connections_at, Service};

/// A callback as WeCom would send it, before encryption.
#[derive(Debug, Clone)]
pub enum Callback {
    /// An app callback: the plaintext XML of the message or event.
    App(String),
    /// A smart-bot callback: the plaintext JSON.
    Bot(String),
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: SqlitePool,
    pub clock: Arc<ManualClock>,
    pub config: Arc<Config>,
    pub app_crypt: MsgCrypt,
    pub bot_crypt: MsgCrypt,
    pub http: reqwest::Client,
    sim: SimHandle,
    api: ApiClient,
    sender_settings: SenderSettings,
    /// The sender `drain_outbox` uses, so leases carry over between drains
    /// as they do in the running service.
    sender: OutboxSender,
    pipeline: Pipeline,
    pipeline_settings: PipelineSettings,
    /// The app's state: its active-rules cache is shared by every job the
    /// harness builds, as in the service.
    state: AppState,
    nonce: AtomicU64,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    TestApp::start(TestConfig::new()).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config) + 'static) -> TestApp {
    TestApp::start(TestConfig::new().with(adjust)).await
}

impl TestApp {
    pub async fn start(mut test: TestConfig) -> TestApp {
        assert!(
            !test.system_clock,
            "TestApp runs on the manual clock; Service runs on the system clock"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(test.start);
        let shared: SharedClock = clock.clone();
        let mut config = test.build(&dir.path().join("qunyun.db"));

        let sim = Sim::spawn(sim_config(&config, &test), shared.clone())
            .await
            .expect("simulator starts");
        sim.move_clock(clock.clone());
        config.wecom.api_base = sim.api_base_url();

        let mut api_config =
            ApiConfig::new(config.wecom.api_base.clone(), config.wecom.corp_id.clone());
        if let Some(timeout) = test.api_timeout {
            api_config = api_config.with_timeout(timeout);
        }
        let api = ApiClient::new(api_config, shared.clone()).expect("API client");
        // What `App::spawn_workers` gives the sender, then the test's pacing.
        let mut sender_settings = SenderSettings {
            apps: config.wecom.apps.iter().map(AppCredentials::from).collect(),
            contacts_secret: config.wecom.contacts_app().map(|app| app.secret.clone()),
            ..SenderSettings::default()
        };
        test.adjust_sender(&mut sender_settings);

        let app = App::new(config, shared.clone()).await.expect("app starts");
        let state = app.state.clone();
        let mut pipeline_settings = PipelineSettings::default();
        test.adjust_pipeline(&mut pipeline_settings);
        let pipeline = new_pipeline(&state, &pipeline_settings, PipelineHooks::default());
        let sender = OutboxSender::new(
            state.pool.clone(),
            api.clone(),
            shared,
            sender_settings.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        let wecom = &state.config.wecom;
        let (app_crypt, bot_crypt) = (
            MsgCrypt::new(wecom.apps[0].token.expose(), APP_KEY, &wecom.corp_id).unwrap(),
            MsgCrypt::new(BOT_TOKEN, BOT_KEY, "").unwrap(),
        );
        TestApp {
            addr,
            pool: state.pool.clone(),
            clock,
            config: state.config.clone(),
            app_crypt,
            bot_crypt,
            http: reqwest::Client::new(),
            sim,
            api,
            sender_settings,
            sender,
            pipeline,
            pipeline_settings,
            state: state.clone(),
            nonce: AtomicU64::new(1),
            shutdown: Some(tx),
            server: Some(server),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn app_callback(&self) -> String {
        self.url(&format!(
            "/wecom/apps/{}/callback",
            self.config.wecom.apps[0].name
        ))
    }

    pub fn bot_callback(&self) -> String {
        self.url(&format!("/wecom/bots/{BOT}/callback"))
    }

    /// A directory that lives as long as the app (for files a test writes).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    // ------------------------------------------------------------ WeCom ---

    /// The simulator: its records (`messages`, `calls`, `stats`), its world
    /// (`add_robot`, `add_app_chat`, …) and fault injection (`inject`).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    pub fn sim_handle(&self) -> &SimHandle {
        &self.sim
    }

    /// Where the simulator's callback driver delivers: this app's app and
    /// bot callback URLs, with their tokens and keys.
    pub fn callback_targets(&self) -> CallbackTargets {
        callback_targets(&self.config, &self.url(""))
    }

    /// Texts WeCom delivered, in order.
    pub fn delivered_texts(&self) -> Vec<String> {
        texts(&self.sim.messages())
    }

    /// Encrypts and signs `callback` the way WeCom does (timestamp from the
    /// clock, a fresh nonce) and POSTs it to its callback URL.
    pub async fn post_event(&self, callback: Callback) -> reqwest::Response {
        let timestamp = self.clock.now().timestamp().to_string();
        let nonce = self.nonce.fetch_add(1, Ordering::SeqCst).to_string();
        let (url, query, body) = match &callback {
            Callback::App(plaintext) => {
                let (query, body) = seal_xml(&self.app_crypt, plaintext, &timestamp, &nonce);
                (self.app_callback(), query, body)
            }
            Callback::Bot(plaintext) => {
                let encrypt = self.bot_crypt.encrypt(plaintext.as_bytes());
                let signature = crypto::signature(BOT_TOKEN, &timestamp, &nonce, &encrypt);
                let body = serde_json::json!({ "encrypt": encrypt }).to_string();
                (
                    self.bot_callback(),
                    format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
                    body,
                )
            }
        };
        self.http
            .post(format!("{url}?{query}"))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    // ---------------------------------------------------------- workers ---

    /// One pass of the event pipeline, as the service's worker makes it.
    /// A member @-mentions the smart bot in group `CHAT-IT` with `words`; the
    /// pipeline and the sender run. Returns the texts WeCom received.
    pub async fn mention_bot(&self, msgid: &str, user: &str, words: &str) -> Vec<String> {
        let code = self.sim().issue_response_code("AIBOT-IT", "CHAT-IT", true);
        let mention = serde_json::json!({
            "msgid": msgid, "aibotid": "AIBOT-IT", "chatid": "CHAT-IT", "chattype": "group",
            "from": {"userid": user}, "response_url": self.sim().response_url(&code),
            "msgtype": "text", "text": {"content": format!("@运营助手 {words}")}
        })
        .to_string();
        assert_eq!(self.post_event(Callback::Bot(mention)).await.status(), 200);
        self.run_pipeline().await;
        self.drain_outbox()
            .await
            .iter()
            .map(|d| d.text().unwrap_or_default().to_string())
            .collect()
    }

    pub async fn run_pipeline(&self) -> RunOutcome {
        self.pipeline.run_once().await.expect("pipeline pass")
    }

    /// The pipeline `run_pipeline` uses.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Another pipeline worker as the service builds it, with test seams.
    pub fn new_pipeline(&self, hooks: PipelineHooks) -> Pipeline {
        new_pipeline(&self.state, &self.pipeline_settings, hooks)
    }

    /// The scheduler's settings as the service sets them.
    pub fn scheduler_settings(&self) -> SchedulerSettings {
        SchedulerSettings {
            app: default_app(&self.config),
            ..SchedulerSettings::default()
        }
    }

    /// The scheduler as the service builds it (driven with `run_once(now)`).
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(self.pool.clone(), self.scheduler_settings())
            .with_rules(self.state.rules.clone())
    }

    /// The operations layer over the app's database and active rules, as
    /// the console and the CLI reach it.
    pub fn ops(&self) -> Ops {
        Ops::new(
            self.pool.clone(),
            self.state.rules.clone(),
            self.scheduler_settings(),
        )
        .with_max_point_adjustment(self.config.admin.max_point_adjustment)
    }

    /// The analytics job as the service builds it, with `settings`.
    pub fn analytics_with(&self, settings: AnalyticsSettings) -> Analytics {
        Analytics::new(self.pool.clone(), settings).with_rules(self.state.rules.clone())
    }

    pub fn analytics(&self) -> Analytics {
        self.analytics_with(AnalyticsSettings::default())
    }

    /// Customer-group reconciliation with the customer-contact app's secret.
    pub fn group_sync(&self) -> GroupSync {
        let secret = self
            .config
            .wecom
            .contacts_app()
            .expect("a customer-contact app")
            .secret
            .clone();
        GroupSync::new(
            self.pool.clone(),
            self.api.clone(),
            secret,
            self.clock.clone(),
        )
    }

    pub fn invite_rewards(&self) -> InviteRewards {
        InviteRewards::new(self.pool.clone(), self.clock.clone())
            .with_rules(self.state.rules.clone())
    }

    /// A new outbox sender, configured as the service's (plus the test's
    /// `with_sender` pacing); a new one has its own leases, like a restart.
    pub fn sender(&self) -> OutboxSender {
        self.sender_with(self.sender_settings.clone())
    }

    pub fn sender_with(&self, settings: SenderSettings) -> OutboxSender {
        OutboxSender::new(
            self.pool.clone(),
            self.api.clone(),
            self.clock.clone(),
            settings,
        )
    }

    pub fn sender_settings(&self) -> SenderSettings {
        self.sender_settings.clone()
    }

    /// The WeCom client the harness's senders share (one token cache).
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// Sender passes until nothing is due now; what WeCom received meanwhile.
    pub async fn drain_outbox(&self) -> Vec<Delivery> {
        let before = self.sim.messages().len();
        for _ in 0..1_000 {
            if self.send_once().await.is_idle() {
                return self.sim.messages().split_off(before);
            }
        }
        panic!("the outbox never ran out of due rows");
    }

    /// One sender pass.
    pub async fn send_once(&self) -> SendOutcome {
        self.sender.run_once().await.expect("sender pass")
    }

    /// Sender passes with the clock moved `step` between them, until no row
    /// is pending or in flight (backoffs and rate windows pass); what WeCom
    /// received meanwhile.
    pub async fn drain_outbox_stepping(&self, step: chrono::Duration) -> Vec<Delivery> {
        drain_stepping(&self.sender, self, step).await
    }

    /// [`TestApp::drain_outbox_stepping`] with a sender of the test's own.
    pub async fn drain_with(&self, sender: &OutboxSender, step: chrono::Duration) -> Vec<Delivery> {
        drain_stepping(sender, self, step).await
    }

    // ------------------------------------------------------------ clock ---

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance_clock(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    pub fn set_clock(&self, to: DateTime<Utc>) {
        self.clock.set(to);
    }

    // ---------------------------------------------------------- console ---

    /// A manager's browser / API client on the served console.
    pub fn console(&self) -> Console {
        Console::new(self.url(""), self.pool.clone(), self.clock.clone())
    }

    // ---------------------------------------------------------- storage ---

    pub async fn conn(&self) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
        self.pool.acquire().await.unwrap()
    }

    /// Stores, as the smart bot's callback would, member `reporter`'s `举报`
    /// in group `chat_id` quoting `quoted` (message id `msg_id`); the answer
    /// goes to a response_url the simulator issued.
    pub async fn store_bot_report(
        &self,
        msg_id: &str,
        chat_id: &str,
        reporter: &str,
        quoted: &str,
    ) {
        use qunyun::wecom::message::{self, BotChatType, BotMsgType, BotQuote};
        let code = self.sim().issue_response_code("BOT", chat_id, true);
        let event = message::Event::BotMessage(message::BotMessage {
            msg_id: msg_id.into(),
            aibot_id: "BOT".into(),
            chat_id: Some(chat_id.into()),
            chat_type: BotChatType::Group,
            from_user_id: reporter.into(),
            from_corp_id: None,
            response_url: Some(self.sim().response_url(&code)),
            msg_type: BotMsgType::Text,
            text: "举报".into(),
            raw_text: "@运营助手 举报".into(),
            image_urls: Vec::new(),
            file_url: None,
            quote: Some(BotQuote {
                msg_type: "text".into(),
                text: Some(quoted.into()),
                image_urls: Vec::new(),
            }),
            create_time: None,
        });
        let json = serde_json::to_string(&event).unwrap();
        let key = format!("bot:main:{msg_id}");
        let row = inbox::NewInboxEvent {
            source: "bot:main",
            kind: inbox::InboxKind::of(&event),
            dedupe_key: &key,
            received_at: self.clock.now().timestamp(),
            event_json: &json,
            chat_id: event.chat_id(),
        };
        inbox::insert_event(&mut *self.conn().await, &row)
            .await
            .unwrap();
    }

    pub async fn inbox(&self) -> Vec<InboxRow> {
        inbox::list_all(&mut *self.conn().await).await.unwrap()
    }

    pub async fn outbox_row(&self, id: i64) -> OutboxRow {
        outbox::get(&mut *self.conn().await, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no outbox row {id}"))
    }

    pub async fn outbox_rows(&self, status: Option<OutboxStatus>) -> Vec<OutboxRow> {
        outbox::list(&mut *self.conn().await, status).await.unwrap()
    }

    /// Stops the server and waits for it to finish in-flight work; WeCom
    /// (the simulator, with its record) stays up until the handle is dropped.
    pub async fn stop(mut self) -> SimHandle {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.sim
    }
}

async fn drain_stepping(
    sender: &OutboxSender,
    app: &TestApp,
    step: chrono::Duration,
) -> Vec<Delivery> {
    let before = app.sim.messages().len();
    for _ in 0..2_000 {
        sender.run_once().await.expect("sender pass");
        let open = outbox::count_by_status(&mut *app.conn().await)
            .await
            .unwrap()
            .iter()
            .filter(|(status, _)| matches!(status, OutboxStatus::Pending | OutboxStatus::InFlight))
            .map(|(_, n)| *n)
            .sum::<i64>();
        if open == 0 {
            return app.sim.messages().split_off(before);
        }
        app.advance_clock(step);
    }
    let rows = app.outbox_rows(None).await;
    panic!("outbox did not drain: {rows:?}");
}

/// The callbacks of a qunyun at `base` with `config`'s first app and bot.
pub fn callback_targets(config: &Config, base: &str) -> CallbackTargets {
    let app = &config.wecom.apps[0];
    CallbackTargets::new(base)
        .with_app(AppCallback {
            name: app.name.clone(),
            token: app.token.expose().to_owned(),
            encoding_aes_key: APP_KEY.into(),
            agent_id: AGENT_ID,
        })
        .with_bot(BotCallback {
            name: BOT.into(),
            token: BOT_TOKEN.into(),
            encoding_aes_key: BOT_KEY.into(),
            aibotid: "AIBOT-IT".into(),
            bot_name: "运营助手".into(),
        })
}

/// The simulated corp the config describes: its corp id, and every app's
/// secret (the customer-contact app, when separate, cannot send app messages).
pub fn sim_config(config: &Config, test: &TestConfig) -> SimConfig {
    let wecom = &config.wecom;
    let mut apps: Vec<SimApp> = wecom
        .apps
        .iter()
        .map(|app| SimApp {
            name: app.name.clone(),
            secret: app.secret.expose().to_owned(),
            agent_id: (wecom.contacts_app.as_deref() != Some(app.name.as_str()))
                .then_some(app.agent_id),
        })
        .collect();
    let mut corp_id = wecom.corp_id.clone();
    if let Some((true_corp, true_secret)) = &test.sim_corp {
        corp_id.clone_from(true_corp);
        apps[0].secret.clone_from(true_secret);
    }
    let mut sim = SimConfig::new(corp_id, "");
    sim.apps = apps;
    if let Some(ttl) = test.token_ttl_secs {
        sim = sim.with_token_ttl_secs(ttl);
    }
    sim.with_auto_confirm_mass(test.auto_confirm_mass)
}

/// The pipeline worker as `App::spawn_workers` builds it.
fn new_pipeline(state: &AppState, settings: &PipelineSettings, hooks: PipelineHooks) -> Pipeline {
    Pipeline::new(
        state.pool.clone(),
        state.clock.clone(),
        default_app(&state.config),
        *settings,
    )
    .with_rules(state.rules.clone())
    .with_hooks(hooks)
}

fn default_app(config: &Config) -> String {
    config
        .wecom
        .apps
        .first()
        .map(|app| app.name.clone())
        .unwrap_or_else(|| "ops".to_owned())
}

/// `content.content` of text/markdown deliveries, in order.
pub fn texts(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .filter_map(|d| d.text().map(str::to_owned))
        .collect()
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
/// [`wait_until`] for a condition that must await (a database query): checked
/// on a 20 ms tick until it holds or `timeout` passes.
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tick.tick().await;
    }
}

pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
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
