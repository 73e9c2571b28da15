//! `qunyun demo`: the whole real system in one process, no configuration.
//!
//! The built-in WeCom simulator and qunyun's callback server both listen on
//! 127.0.0.1, sharing one manual clock and a temp SQLite database. The demo
//! plays WeCom's two real worlds side by side (docs/wecom.md#chat-kinds):
//!
//! - a **customer group** (客户群): newcomers arrive as `change_external_chat`
//!   joins, WeCom itself posts the group welcome material qunyun keeps in
//!   sync, the owner gets one merged digest of newcomers whose suggested
//!   welcome becomes an owner-confirmed mass message; what members type
//!   reaches qunyun only through the message archive (`POST
//!   /ingest/messages`), and nothing is posted into the group except mass
//!   messages the owner confirms;
//! - an **internal group** (内部群) of staff with the smart bot and a group
//!   robot: members @-mention the bot (check-ins, points, FAQ, redemptions),
//!   the robot posts pushes, and no join events exist. The smart bot runs in
//!   long-connection mode (docs/wecom.md#smart-bot-long-connection): it dials
//!   out to the simulator's `/ws`, so it needs no public callback URL; the
//!   mentions arrive and the answers leave on that connection.
//!
//! qunyun's pipeline applies the rules and writes durable outbox rows; the
//! outbox sender delivers them through the WeCom API client to the
//! simulator. Every transcript line names the door a message came in by or
//! went out through, and what could not go out says why.
//!
//! Nothing sleeps: after each step the pipeline and the sender are driven with
//! `run_once`, and the clock is moved when the sender postpones a row for a
//! rate limit.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::{Asia::Shanghai, Tz};
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use sqlx::{SqliteConnection, SqlitePool};

use crate::app::App;
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::config::Config;
use crate::jobs::outbox::{AppCredentials, OutboxSender, SenderSettings};
use crate::pipeline::{Pipeline, PipelineSettings};
use crate::rules::ChatRoute;
use crate::sim::{
    AddContactRequest, AppCallback, ArchiveTextRequest, BotMentionRequest, CallbackTargets,
    Delivery, DriveOutcome, JoinRequest, JoinVia, LeaveRequest, NewMember, Route as SimRoute,
    SeedCustomerGroup, SeedGroupMember, Sim, SimConfig, SimHandle,
};
use crate::store::outbox::{self as outbox_store, OutboxRow, OutboxStatus};
use crate::store::{chats, checkins, inbox, members, points, redemptions};
use crate::wecom::api::{ApiClient, ApiConfig};

#[derive(Debug, Clone, Copy, Default)]
pub struct DemoOptions {
    /// Exit after the script (tests, CI). Otherwise keep serving until Ctrl-C.
    pub once: bool,
    /// Print the transcript to stdout as it happens.
    pub print: bool,
}

/// Totals printed at the end. Delivery counts come from the simulator's
/// record; skipped/dead/failed from the outbox; the rest from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoTotals {
    /// Callbacks the simulator's driver delivered to qunyun.
    pub callbacks_posted: usize,
    /// Callbacks qunyun did not answer with 200 on the first try.
    pub callbacks_rejected: usize,
    pub members_joined: i64,
    pub members_current: i64,
    /// Deliveries the simulator recorded, per route (`app_message`,
    /// `webhook`, `bot_response`, …).
    pub deliveries_by_route: BTreeMap<String, usize>,
    pub deliveries_total: usize,
    /// Outbox rows that could not go out automatically (with a reason).
    pub skipped: usize,
    pub dead: usize,
    pub failed: usize,
    /// Outbox rows still pending/in flight/awaiting confirmation at the end.
    pub unfinished: usize,
    pub welcomes_sent: usize,
    pub welcomes_skipped: usize,
    pub raid_digests: usize,
    pub replies: usize,
    pub checkins: i64,
    pub points_issued: i64,
    pub points_balance_total: i64,
    pub redemptions: usize,
    pub inbox_done: usize,
    pub inbox_parked: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    pub transcript: Vec<String>,
    pub totals: DemoTotals,
    /// Everything the simulated WeCom accepted, in record order.
    pub deliveries: Vec<Delivery>,
    /// Every outbox row at the end, oldest first.
    pub outbox: Vec<OutboxRow>,
    /// Every event qunyun received, in arrival order: (inbox kind, chat id).
    pub events: Vec<(String, Option<String>)>,
}

const RULES: &str = r#"
[community]
name = "好物分享社群"
timezone = "Asia/Shanghai"
day_cutover_hour = 4
app = "ops"

[moderation]
enabled = true
managers = ["yunying"]
terms = """
[ads:medium]
加微信
"""

[welcome]
group_material = "欢迎 %NICKNAME% 加入好物分享社群🎉 每天发「签到」领积分"
raid_joins = 12
raid_quiet_secs = 300

[[catalog]]
item = "保温杯"
cost = 25
stock = 1

[[catalog]]
item = "帆布袋"
cost = 15
stock = 10

[[honour.boards]]
name = "weekly"
title = "本周荣誉榜"
metrics = ["streak", "points", "essence", "helpful"]
chat_ids = ["wrDEMO0000000000000000000000B2"]
publish_hour = 10

[[autoreply]]
name = "shipping"
keywords = ["发货", "快递"]
template = "faq_shipping"
cooldown_secs = 300
"#;

const NAMES: &[&str] = &[
    "小王", "小李", "阿珍", "大刘", "婷婷", "老周", "小美", "阿强", "静静", "浩然", "思思", "晓峰",
    "佳佳", "子涵", "雨桐", "俊杰", "欣怡", "梓轩", "可馨", "宇航", "诗琪", "明轩", "若曦", "天佑",
    "一诺", "嘉怡", "皓轩", "语嫣", "博文", "梦琪", "文博", "雅静",
];

/// Staff of the internal group (corp members: customers cannot be in one).
const STAFF: &[(&str, &str)] = &[
    ("dianzhang01", "店长·阿杰"),
    ("dianzhang02", "店长·小芳"),
    ("dianzhang03", "店长·老陈"),
    ("dianzhang04", "店长·婷婷"),
    ("dianzhang05", "店长·大伟"),
    ("dianzhang06", "店长·晓燕"),
];

/// The customer group (客户群): customers, joins, the archive, the owner.
const CUSTOMERS: &str = "wrDEMO0000000000000000000000A1";
/// The internal group (内部群): staff, the smart bot and a group robot.
const STAFF_CHAT: &str = "wrDEMO0000000000000000000000B2";
const CUSTOMERS_NAME: &str = "好物分享①群";
const STAFF_CHAT_NAME: &str = "门店店长群";
/// The archive puller's signing secret (`[ingest] secret`).
const INGEST_SECRET_LEN: usize = 32;
const CORP_ID: &str = "wwDEMO00000000000";
const APP_NAME: &str = "ops";
const AGENT_ID: i64 = 1_000_002;
const BOT_NAME: &str = "helper";
const BOT_DISPLAY_NAME: &str = "运营助手";
const AIBOT_ID: &str = "AIBOT-DEMO";
const ROBOT_KEY: &str = "demo-robot-staff";
const OWNER: &str = "yunying";
const ADMIN: &str = "xiaomei";
/// Sender passes per step before the demo gives up (a bug, not a slow WeCom).
const MAX_SENDER_PASSES: usize = 200;
/// How soon the sender asks WeCom whether the owner sent a mass message.
const MASS_POLL_SECS: i64 = 30;
/// The longest the demo moves the clock to let a rate-limited row go out.
const MAX_RATE_WAIT_SECS: i64 = 120;

fn member(i: usize) -> String {
    format!("wmDEMO{i:02}")
}

fn staff(i: usize) -> &'static str {
    STAFF[i - 1].0
}

fn staff_name(i: usize) -> &'static str {
    STAFF[i - 1].1
}

fn member_name(i: usize) -> &'static str {
    NAMES.get(i.wrapping_sub(1)).copied().unwrap_or("?")
}

/// A readable name for a user id, chat id or other delivery target.
fn display_name(target: &str) -> String {
    match target {
        CUSTOMERS => CUSTOMERS_NAME.to_string(),
        STAFF_CHAT => STAFF_CHAT_NAME.to_string(),
        OWNER => "群主·云营".to_string(),
        ADMIN => "管理员·晓梅".to_string(),
        other if STAFF.iter().any(|(id, _)| *id == other) => STAFF
            .iter()
            .find(|(id, _)| *id == other)
            .map(|(_, name)| name.to_string())
            .unwrap_or_default(),
        other => other
            .strip_prefix("wmDEMO")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| NAMES.get(n.wrapping_sub(1)))
            .map(|name| name.to_string())
            .unwrap_or_else(|| other.to_string()),
    }
}

fn route_label(route: SimRoute) -> &'static str {
    match route {
        SimRoute::AppMessage => "app_message",
        SimRoute::Appchat => "appchat",
        SimRoute::Webhook => "webhook",
        SimRoute::CustomerGroupMass => "customer_group_mass",
        SimRoute::CustomerMass => "customer_mass",
        SimRoute::Welcome => "welcome",
        SimRoute::BotResponse => "bot_response",
    }
}

/// Doors messages come in by.
pub mod doors {
    pub const CUSTOMERS: &str = super::CUSTOMERS;
    pub const STAFF_CHAT: &str = super::STAFF_CHAT;
    pub const CUSTOMER_JOIN: &str = "[客户群 · 入群事件]";
    pub const CUSTOMER_LEAVE: &str = "[客户群 · 退群事件]";
    pub const CUSTOMER_ARCHIVE: &str = "[客户群 · 存档]";
    pub const STAFF_MENTION: &str = "[内部群 · @智能机器人 · 长连接]";
    pub const CONSOLE: &str = "[运营后台]";
    pub const WECOM_MATERIAL: &str = "[客户群 · 入群欢迎语素材]";
    pub const ORDERS_CSV: &str = "[命令行 · qunyun orders import]";
    pub const CONTACT_ADDED: &str = "[客户联系 · 添加好友事件]";
    pub const CUSTOMER_TAGS: &str = "[企业微信 · 客户标签]";
    /// Every door a transcript line may name, in and out.
    pub const ALL: [&str; 16] = [
        ORDERS_CSV,
        CONTACT_ADDED,
        CUSTOMER_TAGS,
        "[客户 1:1 · 跟进成员确认群发",
        CUSTOMER_JOIN,
        CUSTOMER_LEAVE,
        CUSTOMER_ARCHIVE,
        STAFF_MENTION,
        CONSOLE,
        WECOM_MATERIAL,
        "[客户群 · 群主确认群发",
        "[内部群 · 智能机器人",
        "[内部群 · 群机器人",
        "[应用消息 → ",
        "[1:1 欢迎语 → ",
        "[应用群",
    ];
}

/// The door a delivery went out through, naming its target.
fn out_door(route: SimRoute, target: &str) -> String {
    match route {
        SimRoute::CustomerGroupMass => format!("[客户群 · 群主确认群发 → {target}]"),
        SimRoute::CustomerMass => format!("[客户 1:1 · 跟进成员确认群发 → {target}]"),
        SimRoute::BotResponse => format!("[内部群 · 智能机器人 · 长连接 → {target}]"),
        SimRoute::Webhook => format!("[内部群 · 群机器人 → {target}]"),
        SimRoute::AppMessage => format!("[应用消息 → {target}]"),
        SimRoute::Welcome => format!("[1:1 欢迎语 → {target}]"),
        SimRoute::Appchat => format!("[应用群 → {target}]"),
    }
}

/// The door an outbox row would have gone through, for rows that did not
/// go: the route names the kind of chat.
fn row_door(row: &OutboxRow) -> String {
    match row.route.as_str() {
        "customer_group_mass" => "[客户群 · 群里没有机器人]".to_string(),
        "webhook" | "smart_bot" => format!("[内部群 · {}]", row.route),
        "member" => format!("[应用消息 → {}]", display_name(&row.target)),
        other => format!("[{other}]"),
    }
}

fn route_chinese(route: &str) -> &'static str {
    match route {
        "app_message" => "应用消息",
        "appchat" => "应用群",
        "webhook" => "群机器人",
        "customer_group_mass" => "群主确认后发送",
        "customer_mass" => "跟进成员确认后 1:1 群发",
        "welcome" => "1:1 欢迎语",
        "bot_response" => "智能机器人回复",
        _ => "其他",
    }
}

struct Demo {
    pool: SqlitePool,
    clock: Arc<ManualClock>,
    sim: SimHandle,
    pipeline: Pipeline,
    sender: OutboxSender,
    /// Highest simulator record already printed.
    shown_seq: Option<u64>,
    /// Outbox rows already printed as skipped/dead/failed.
    shown_rows: HashSet<i64>,
    report: DemoReport,
    print: bool,
}

/// Plays the scripted community days and returns the transcript and totals.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    let dir = tempfile::tempdir().context("creating temp dir")?;
    let db_path = dir.path().join("demo.db");
    let app_token = random_token();
    let app_key = random_aes_key();
    let bot_secret = random_token();
    let app_secret = random_token();
    let ingest_secret: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(INGEST_SECRET_LEN)
        .map(char::from)
        .collect();

    // Monday 2026-03-02, 09:00 in Shanghai.
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
            .single()
            .context("start time")?,
    );
    let shared: SharedClock = clock.clone();

    let sim = Sim::spawn(
        SimConfig::new(CORP_ID, app_secret.clone()).with_auto_confirm_mass(true),
        shared.clone(),
    )
    .await
    .context("starting the WeCom simulator")?;

    let config = Config::from_toml_str(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [database]
        path = "{db}"
        [wecom]
        corp_id = "{CORP_ID}"
        api_base = "{api_base}"
        [[wecom.apps]]
        name = "{APP_NAME}"
        agent_id = {AGENT_ID}
        secret = "{app_secret}"
        token = "{app_token}"
        encoding_aes_key = "{app_key}"
        [[wecom.bots]]
        name = "{BOT_NAME}"
        mode = "websocket"
        bot_id = "{AIBOT_ID}"
        secret = "{bot_secret}"
        ws_url = "ws://{sim_addr}/ws"
        [ingest]
        secret = "{ingest_secret}"
        "#,
        db = db_path.display().to_string().replace('\\', "/"),
        api_base = sim.api_base_url(),
        sim_addr = sim.addr(),
    ))
    .context("building demo config")?;
    sim.register_long_connection_bot(AIBOT_ID, &bot_secret);
    let bots = config.wecom.bots.clone();

    let app_config = config
        .wecom
        .apps
        .first()
        .context("demo config has no app")?
        .clone();
    let api = ApiClient::new(
        ApiConfig::new(config.wecom.api_base.clone(), CORP_ID),
        shared.clone(),
    )
    .map_err(|e| anyhow::anyhow!("building API client: {e}"))?;
    let app = App::new(config, shared.clone()).await?;
    let pool = app.state.pool.clone();
    let app_rules = app.state.rules.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));

    sim.set_callbacks(
        CallbackTargets::new(format!("http://{addr}"))
            .with_app(AppCallback {
                name: APP_NAME.into(),
                token: app_token,
                encoding_aes_key: app_key,
                agent_id: AGENT_ID,
            })
            .with_ingest_secret(ingest_secret),
    );

    let credentials = AppCredentials::from(&app_config);
    // The one job that keeps the group welcome material in WeCom.
    let material = crate::jobs::welcome_material::WelcomeMaterialSync::new(
        pool.clone(),
        api.clone(),
        credentials.secret.clone(),
    );
    let (long_connections, connection) =
        connect_smart_bot(&bots, &pool, &shared, &app_rules, &sim).await?;
    let sender = OutboxSender::new(
        pool.clone(),
        api,
        shared.clone(),
        SenderSettings {
            // The demo app is also the one allowed to call 客户联系 APIs.
            contacts_secret: Some(credentials.secret.clone()),
            apps: vec![credentials],
            // The simulated owner confirms at once; poll soon so the
            // transcript shows the mass message completed.
            mass_poll_interval: std::time::Duration::from_secs(MASS_POLL_SECS as u64),
            ..SenderSettings::default()
        },
    )
    .with_long_connections(long_connections);
    let pipeline = Pipeline::new(pool.clone(), shared, APP_NAME, PipelineSettings::default());
    let mut demo = Demo {
        pool: pool.clone(),
        clock,
        sim,
        pipeline,
        sender,
        shown_seq: None,
        shown_rows: HashSet::new(),
        report: DemoReport::default(),
        print: options.print,
    };
    let played = async {
        demo.setup().await?;
        demo.sync_group_material(&material).await?;
        demo.script().await?;
        demo.analytics().await?;
        demo.honour().await?;
        demo.totals().await
    }
    .await;

    if played.is_ok() && !options.once {
        demo.line(String::new());
        demo.line(format!("qunyun 仍在运行：http://{addr}/healthz"));
        // A console account so a newcomer can click through the demo community.
        let password = random_token();
        let (ops, actor) = manager(&demo.pool);
        let owner = crate::ops::Role::Owner;
        crate::ops::accounts::create_user(&ops, &actor, demo.now(), "demo", &password, owner)
            .await
            .context("creating the demo console account")?;
        demo.line(format!(
            "运营后台：http://{addr}/admin/  用户名 demo  密码 {password}"
        ));
        demo.line(format!(
            "企业微信模拟器：{}/sim/messages",
            demo.sim.base_url()
        ));
        demo.line(format!("数据库：{}（Ctrl-C 结束）", db_path.display()));
        demo.line("（用 POST /sim/drive/... 让模拟器继续发回调，这里会实时处理并打印）".into());
        // Keep the community alive: the demo clock follows real time, and the
        // pipeline and sender run every second on what the simulator drives in.
        let shutdown = crate::app::shutdown_signal();
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    demo.clock.advance(Duration::seconds(1));
                    // The console's numbers stay fresh, as under `qunyun serve`.
                    if demo.now().timestamp() % 300 == 0 {
                        if let Err(error) = demo.analytics().await {
                            demo.line(format!("⚠️ {error:#}"));
                        }
                    }
                    if let Err(error) = demo.process().await {
                        demo.line(format!("⚠️ {error:#}"));
                    }
                }
            }
        }
    }
    let _ = stop_tx.send(());
    connection.stop().await;
    server.await.context("joining demo server")??;
    let Demo { sim, report, .. } = demo;
    sim.shutdown().await.context("stopping the simulator")?;
    played?;
    Ok(report)
}

impl Demo {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn local(&self) -> DateTime<Tz> {
        self.now().with_timezone(&Shanghai)
    }

    fn line(&mut self, text: String) {
        // A reader that went away (`qunyun demo | head`) ends the printing,
        // not the demo: no panic on a closed pipe.
        if self.print && writeln!(std::io::stdout(), "{text}").is_err() {
            self.print = false;
        }
        self.report.transcript.push(text);
    }

    fn say_line(&mut self, text: &str) {
        let stamp = self.local().format("%H:%M:%S").to_string();
        self.line(format!("{stamp}  {text}"));
    }

    /// Customer groups take no bot posts: WeCom itself posts the group
    /// welcome material, which the rule set holds and qunyun keeps in WeCom.
    async fn sync_group_material(
        &mut self,
        material: &crate::jobs::welcome_material::WelcomeMaterialSync,
    ) -> anyhow::Result<()> {
        use crate::jobs::welcome_material::MaterialOutcome;
        if let MaterialOutcome::Added { template_id } = material.sync(self.now()).await? {
            self.line(format!(
                "          🧩 {} 已同步到企业微信（group_welcome_template/add，template_id {template_id}）：\
                 客户群有人入群时由企业微信自己发出，qunyun 不往客户群里发欢迎。",
                doors::WECOM_MATERIAL
            ));
        }
        Ok(())
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        // The simulated corp as WeCom offers it: a customer group (no robot,
        // no smart bot can join one) and an internal staff group with the
        // smart bot and a group robot; the directory holds the employees.
        self.sim.add_directory_members([OWNER, ADMIN]);
        self.sim
            .add_directory_members(STAFF.iter().map(|(id, _)| *id));
        self.sim.add_customer_group(SeedCustomerGroup {
            chat_id: CUSTOMERS.into(),
            name: CUSTOMERS_NAME.into(),
            owner: OWNER.into(),
            notice: String::new(),
            status: 0,
            create_time: now.timestamp() - 86_400,
            admins: vec![ADMIN.into()],
            members: vec![SeedGroupMember::new(OWNER), SeedGroupMember::new(ADMIN)],
        });
        self.sim.try_add_robot(ROBOT_KEY, STAFF_CHAT)?;

        let (ops, actor) = manager(&self.pool);
        crate::ops::rules::apply(&ops, &actor, now, RULES).await?;
        // Same member_version as the simulator, so the first callback's
        // LastMemVer chains on without a resync.
        let member_version = self
            .sim
            .customer_group(CUSTOMERS)
            .map(|group| group.member_version)
            .context("seeded group missing from the simulator")?;
        let mut conn = self.pool.acquire().await?;
        for chat in [
            chats::NewChat {
                chat_id: CUSTOMERS.into(),
                name: CUSTOMERS_NAME.into(),
                route: ChatRoute::CustomerGroup,
                owner: Some(OWNER.into()),
                admins: vec![ADMIN.into()],
                tags: vec!["vip".to_string()],
                member_version: Some(member_version),
            },
            chats::NewChat {
                chat_id: STAFF_CHAT.into(),
                name: STAFF_CHAT_NAME.into(),
                route: ChatRoute::InternalGroup {
                    robot_key: Some(ROBOT_KEY.into()),
                    smart_bot: Some(BOT_NAME.into()),
                },
                owner: Some(OWNER.into()),
                admins: vec![],
                tags: vec![],
                member_version: None,
            },
        ] {
            chats::upsert_chat(&mut conn, &chat, now).await?;
        }
        // Names come from groupchat/get and the directory in production; the
        // demo seeds them.
        for (i, name) in NAMES.iter().enumerate() {
            members::ensure_person(&mut conn, &member(i + 1), Some(name), now).await?;
        }
        for (id, name) in STAFF {
            members::ensure_person(&mut conn, id, Some(name), now).await?;
        }
        drop(conn);
        self.line(
            "qunyun demo：内置企业微信模拟器 + qunyun，企业微信的两种群并排演示，三天。\
             每行写明消息从哪扇门进来、从哪扇门出去。"
                .into(),
        );
        self.line(format!(
            "客户群「{CUSTOMERS_NAME}」：客户入群有事件；群里说的话只能经会话存档进来；\
             机器人进不了客户群，往群里发只能由群主确认群发。"
        ));
        self.line(format!(
            "内部群「{STAFF_CHAT_NAME}」：店长们 @{BOT_DISPLAY_NAME}（智能机器人）签到、查积分、问问题；\
             群机器人发推送；内部群没有入群事件。"
        ));
        self.line(
            "智能机器人用长连接模式：qunyun 主动连到企业微信（这里是模拟器的 /ws），\
             不需要公网回调地址；@ 它的消息和它的回复都走这条连接。"
                .into(),
        );
        Ok(())
    }

    async fn script(&mut self) -> anyhow::Result<()> {
        self.day_header();
        self.line(format!("【客户群「{CUSTOMERS_NAME}」】"));
        self.join(&[1, 2], JoinVia::QrCode).await?;
        self.advance(4);
        self.join(&[3], JoinVia::Invite).await?;
        self.advance(11);
        self.process().await?;
        self.owner_sends_welcome().await?;

        self.advance(240);
        self.line("（一波扫码入群：8 秒内 16 人）".into());
        for wave in [4..8, 8..12, 12..16, 16..20] {
            let ids: Vec<usize> = wave.collect();
            self.join(&ids, JoinVia::QrCode).await?;
            self.advance(2);
        }
        self.advance(10);
        self.process().await?;

        self.advance(900);
        self.join(&[20, 21], JoinVia::Invite).await?;
        self.advance(5);
        self.leave(20).await?;
        self.advance(11);
        self.process().await?;

        self.advance(600);
        for i in 1..=3 {
            self.archive_text(i, "签到").await?;
            self.advance(9);
        }
        self.archive_text(5, "请问什么时候发货？").await?;
        self.advance(20);
        self.archive_text(9, "加微信领红包，私聊我").await?;

        self.advance(120);
        self.line(String::new());
        self.line(format!("【内部群「{STAFF_CHAT_NAME}」】"));
        for i in 1..=STAFF.len() {
            self.mention(i, "签到").await?;
            self.advance(7);
        }
        self.mention(1, "签到").await?;
        self.advance(30);
        self.mention(2, "客户问什么时候发货，怎么回？").await?;
        self.advance(20);
        self.mention(3, "快递发货了吗").await?;
        self.line("          （同一问题 5 分钟冷却内不再重复回复，避免刷屏）".into());
        self.advance(20);
        self.mention(4, "帮助").await?;
        self.mention(5, "积分").await?;

        self.advance(300);
        self.line(String::new());
        self.broadcast(
            &[CUSTOMERS, STAFF_CHAT],
            "【周末活动】保温杯 2.0 内测报名开始，名额 20 个。",
        )
        .await?;
        self.poll().await?;

        self.next_day();
        for i in 1..=4 {
            self.mention(i, "签到").await?;
            self.advance(13);
        }
        self.archive_text(2, "签到").await?;

        self.next_day();
        for i in 1..=3 {
            self.mention(i, "签到").await?;
            self.advance(11);
        }
        let (ops, actor) = manager(&self.pool);
        let balance =
            crate::ops::points::adjust(&ops, &actor, self.now(), staff(6), 10, "活动奖励").await?;
        self.say_line(&format!(
            "🛠  {} 运营给 {}（{}）加 10 积分：活动奖励，余额 {balance}",
            doors::CONSOLE,
            staff_name(6),
            staff(6)
        ));
        self.mention(6, "补签").await?;
        self.mention(6, "签到").await?;
        self.advance(60);
        self.line("（抢兑：最后 1 个保温杯，两位店长同一秒下单）".into());
        self.mention_no_run(1, "兑换 保温杯").await?;
        self.mention_no_run(2, "兑换 保温杯").await?;
        self.process().await?;
        self.mention(3, "兑换 帆布袋").await?;
        self.mention(4, "排行").await?;
        self.mention(5, "等级").await?;
        self.appeal_in_tiers().await?;
        self.lottery().await?;
        self.orders_rfm_and_segment().await
    }

    /// Purchase data and what it feeds (docs/rfm.md): the shop's order history
    /// arrives as a CSV import, an analytics pass scores the buyers (RFM) and
    /// the funnel, and a tagged segment gets its push: staff by 1:1 app
    /// message, a customer (whose tag is copied to WeCom's customer tags) by a
    /// 1:1 mass message the member he added confirms.
    async fn orders_rfm_and_segment(&mut self) -> anyhow::Result<()> {
        use crate::ops::{member_tags, orders, segments};
        let (ops, actor) = manager(&self.pool);
        let now = self.now();
        let mut csv = String::from("member,order_id,amount,paid_at\n");
        // (customer, days since each order, yuan per order)
        let history: [(usize, &[i64], i64); 8] = [
            (1, &[1, 8, 15, 22], 199),
            (2, &[2, 30], 399),
            (3, &[40, 45, 50], 299),
            (4, &[60], 899),
            (5, &[1, 3], 39),
            (6, &[2], 29),
            (7, &[35, 38, 41], 19),
            (8, &[70], 9),
        ];
        for (customer, days, yuan) in history {
            for (n, ago) in days.iter().enumerate() {
                let paid_at = (now - Duration::days(*ago)).timestamp();
                csv.push_str(&format!(
                    "{},D{customer:02}-{n},{yuan},{paid_at}\n",
                    member(customer)
                ));
            }
        }
        csv.push_str(&format!("{},D01-R,-50,{}\n", member(1), now.timestamp()));
        let parsed =
            orders::parse_csv(&csv, Shanghai).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
        let done = orders::import_csv(&ops, &actor, now, "orders.csv", &parsed).await?;
        self.say_line(&format!(
            "🧾 {} 商城导出的订单：{} 条（含 1 笔退款）入库，按订单号去重",
            doors::ORDERS_CSV,
            done.accepted
        ));
        crate::jobs::analytics::Analytics::new(
            self.pool.clone(),
            crate::jobs::analytics::AnalyticsSettings::default(),
        )
        .run_once(now)
        .await?;
        let board = crate::ops::dashboard::dashboard(&ops, now).await?;
        let rfm: Vec<String> = board
            .rfm_segments
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(label, n)| format!("{label} {n}"))
            .collect();
        self.say_line(&format!(
            "📊 {} RFM 分层：{}",
            doors::CONSOLE,
            rfm.join("、")
        ));
        if let Some(row) = board.purchase_funnel.iter().find(|r| r.chat_id.is_empty()) {
            self.say_line(&format!(
                "📊 {} 本周入群转化：入群 {} → 活跃 {} → 首单 {} → 复购 {}",
                doors::CONSOLE,
                row.joined,
                row.active,
                row.first_order,
                row.repeat_order
            ));
        }
        // 小王 adds the group owner in WeCom: qunyun learns who may tag him
        // and confirm 1:1 mass messages to him, and WeCom's welcome code
        // carries the 1:1 welcome.
        self.add_contact(OWNER, 1).await?;
        for user in [staff(1), staff(2), member(1).as_str()] {
            member_tags::add(&ops, &actor, now, user, &["核心会员".to_owned()]).await?;
        }
        self.deliver().await?;
        self.show_new().await?;
        self.say_line(&format!(
            "🏷  {} {} 的企业微信客户标签（由{}打上）：{}",
            doors::CUSTOMER_TAGS,
            member_name(1),
            display_name(OWNER),
            self.sim.contact_tags(&member(1)).join("、")
        ));
        let filter = segments::SegmentFilter {
            tags: vec!["核心会员".into()],
            ..segments::SegmentFilter::default()
        };
        let id = segments::save(&ops, &actor, now, "核心会员", filter).await?;
        let preview = segments::preview_saved(&ops, now, id).await?;
        self.say_line(&format!(
            "🛠  {} 人群「核心会员」预览：{} 人（内部成员 {} 收应用消息；外部联系人 {}，其中 {} 人由 {} 位跟进成员确认后 1:1 群发），确认后推送",
            doors::CONSOLE,
            preview.count,
            preview.internal,
            preview.external,
            preview.external_by_owner,
            preview.owners
        ));
        segments::push(
            &ops,
            &actor,
            now,
            id,
            "【核心会员】本周五晚上 8 点内购会，名额优先给你。",
        )
        .await?;
        self.deliver().await?;
        self.show_new().await
    }

    /// One verifiable lottery in the internal group: the commitment is
    /// announced, members enter by keyword (one not checked in today is told
    /// why), the draw job reveals the seed, and the draw is recomputed.
    async fn lottery(&mut self) -> anyhow::Result<()> {
        use crate::ops::lottery as lottery_ops;
        self.advance(120);
        self.line(String::new());
        let (ops, actor) = manager(&self.pool);
        let input = lottery_ops::LotteryInput {
            title: "店长福利".into(),
            chats: vec![STAFF_CHAT.into()],
            tags: vec![],
            keyword: Some("抽奖".into()),
            eligibility: crate::rules::lottery::Eligibility {
                checked_in_today: true,
                ..Default::default()
            },
            draw_at: self.now() + chrono::Duration::minutes(10),
            prizes: vec![lottery_ops::parse_prize("幸运奖:points=30:winners=1")?],
        };
        let created = lottery_ops::create(&ops, &actor, self.now(), &input).await?;
        self.say_line(&format!(
            "🛠  {} 运营创建抽奖 #{}「店长福利」：今天签到过的店长发「抽奖」参加；承诺值（种子的 SHA-256）先公布",
            doors::CONSOLE,
            created.id
        ));
        self.deliver().await?;
        self.show_new().await?;
        for i in 1..=4 {
            self.mention(i, "抽奖").await?;
            self.advance(5);
        }
        self.advance(600);
        let drawn = crate::jobs::lottery::LotteryDraws::new(
            self.pool.clone(),
            crate::active_rules::ActiveRules::new(),
        )
        .run_at(self.now())
        .await?;
        anyhow::ensure!(drawn.len() == 1, "the demo lottery was not drawn");
        self.say_line(&format!(
            "🛠  {} 开奖任务到点开奖：公布种子，{} 人参加",
            doors::CONSOLE,
            drawn[0].entrants
        ));
        self.deliver().await?;
        self.show_new().await?;
        let view = lottery_ops::show(&ops, created.id).await?;
        let seed = view.seed().unwrap_or_default().to_owned();
        self.line(format!("          承诺值 {}", view.lottery.commitment));
        self.line(format!("          种子   {seed}"));
        self.line(format!(
            "          名单（按 UTF-8 字节排序，即 entrants.txt 每行一个）：{}",
            view.entrants.join(" ")
        ));
        self.line(format!(
            "          复算：qunyun lottery verify {} --seed {seed} --entrants entrants.txt --commitment {} --winners 1",
            created.id, view.lottery.commitment
        ));
        let verdict = match &view.verification {
            Some(Ok(())) => {
                "一致：种子的 SHA-256 等于承诺值，按排序名单复算得出同样的中奖者".to_owned()
            }
            Some(Err(why)) => format!("不一致：{why}"),
            None => "未开奖".to_owned(),
        };
        self.line(format!("          复算结果：{verdict}"));
        Ok(())
    }

    /// Review in tiers: a staff member is warned, appeals to the smart bot
    /// (customers cannot: no bot sits in a customer group, and app messages
    /// reach employees only), the appeal lands in the owner tier, and the
    /// owner overturns it on the console (strike revoked, member told).
    async fn appeal_in_tiers(&mut self) -> anyhow::Result<()> {
        self.advance(60);
        self.mention(6, "加微信领红包").await?;
        self.advance(30);
        self.mention(6, "申诉 这是转发客户的原话，不是广告").await?;
        let (ops, actor) = manager(&self.pool);
        let appeal = crate::ops::review::list(&ops, self.now(), false)
            .await?
            .into_iter()
            .find(|item| item.row.kind == "appeal")
            .context("the appeal did not reach the review queue")?;
        self.say_line(&format!(
            "🛠  {} 分级复核：{} 的申诉在负责人层（时限 24 小时），负责人撤销处罚",
            doors::CONSOLE,
            staff_name(6)
        ));
        let decision = crate::ops::review::ReviewDecision::Overturn;
        crate::ops::review::decide(
            &ops,
            &actor,
            self.now(),
            appeal.row.id,
            decision,
            "转发原话",
        )
        .await?;
        self.deliver().await?;
        self.show_new().await
    }

    /// A poll (投票) in both groups: announced by the poll job through each
    /// chat's route, ballots by @-mention in the internal group and by
    /// keyword read from the archive in the customer group (a second ballot
    /// is refused), the result announced once per chat at the close and the
    /// voters paid. (Vote cards are for long-connection bots; the demo shows
    /// the keyword ballots every chat kind can use.)
    async fn poll(&mut self) -> anyhow::Result<()> {
        let (ops, actor) = manager(&self.pool);
        let question = "下周门店活动选哪个？";
        let spec = crate::rules::polls::PollSpec {
            question: question.into(),
            options: vec!["试喝会".into(), "读书会".into(), "烘焙课".into()],
            open_at: self.now(),
            close_at: self.now() + Duration::hours(2),
            chats: vec![CUSTOMERS.into(), STAFF_CHAT.into()],
            points_per_vote: 2,
            ..Default::default()
        };
        let id = crate::ops::polls::create(&ops, &actor, self.now(), spec).await?;
        self.say_line(&format!(
            "🛠  {} 运营创建投票 #{id}「{question}」：两个群，2 小时后截止，每位投票者 +2 积分",
            doors::CONSOLE
        ));
        let job = crate::jobs::polls::PollJob::new(
            self.pool.clone(),
            crate::active_rules::ActiveRules::new(),
            APP_NAME,
            Vec::new(),
        );
        job.run_at(self.now()).await?;
        self.deliver().await?;
        self.show_new().await?;
        self.advance(60);
        self.mention(1, "投 2").await?;
        self.mention(2, "投 1").await?;
        self.mention(1, "投 3").await?;
        self.archive_text(3, "投 2").await?;
        self.archive_text(4, "投 2").await?;
        self.advance(7200);
        self.line("          （两小时后投票截止，结果在两个群各公布一次）".into());
        job.run_at(self.now()).await?;
        self.deliver().await?;
        self.show_new().await
    }

    /// The owner (or an operator for them) turns the newest newcomer digest
    /// into a welcome mass message, once a community day; WeCom asks the
    /// owner to confirm it on their phone.
    async fn owner_sends_welcome(&mut self) -> anyhow::Result<()> {
        let (ops, actor) = manager(&self.pool);
        let digest = crate::ops::welcome::digests(&ops, 1)
            .await?
            .into_iter()
            .find(|digest| digest.chat_id == CUSTOMERS && digest.mass_key.is_none())
            .context("no owner digest to send")?;
        self.say_line(&format!(
            "🛠  {} 群主在「新人汇总」上点「发给群主确认」：建议欢迎语变成一条群发",
            doors::CONSOLE
        ));
        crate::ops::welcome::send_to_owner(&ops, &actor, self.now(), digest.id).await?;
        self.deliver().await?;
        self.show_new().await?;
        self.line("          （客户群一天最多一条欢迎群发；之后的新人汇总只给群主看）".into());
        Ok(())
    }

    /// One analytics pass, so the console's dashboard has rollups, stages and
    /// alerts to show; anything it queues goes out like every other message.
    async fn analytics(&mut self) -> anyhow::Result<()> {
        use crate::jobs::analytics::{Analytics, AnalyticsSettings};
        let outcome = Analytics::new(self.pool.clone(), AnalyticsSettings::default())
            .run_once(self.now())
            .await?;
        let mut conn = self.pool.acquire().await?;
        let today = crate::store::analytics::daily_rows(
            &mut conn,
            crate::analytics::COMMUNITY,
            outcome.last_day.unwrap_or_default(),
        )
        .await?;
        drop(conn);
        if let Some(row) = today.first() {
            self.say_line(&format!(
                "📊 数据汇总：今日活跃 {} 人、消息 {} 条、签到 {} 次；生命周期变化 {} 人；新开预警 {} 个",
                row.active_members,
                row.messages,
                row.checkins,
                outcome.stage_changes,
                outcome.alerts_opened.len()
            ));
        }
        self.process().await
    }

    /// 精华, 有用 and the honour board: a store manager's tip in the internal
    /// group is marked 有用 by a colleague (quoting it to the smart bot) and
    /// 精华 in the console (its author earns once each), then the week's board
    /// goes out through the group robot on Monday 10:00.
    async fn honour(&mut self) -> anyhow::Result<()> {
        self.line(String::new());
        let tip_text = "分享：顾客问保温杯保冷多久，我说冰块能撑 12 小时，当场成交";
        self.mention(4, tip_text).await?;
        // A colleague thanks her by quoting the tip: 有用 (热心助人), once per
        // colleague and message, on this week's board.
        self.mention_quoting(2, "有用", Some(tip_text)).await?;
        self.process().await?;
        let (ops, actor) = manager(&self.pool);
        let tip = crate::ops::honour::member_posts(&ops, staff(4))
            .await?
            .into_iter()
            .next()
            .context("the tip was not remembered")?;
        let marked =
            crate::ops::honour::mark_essence(&ops, &actor, self.now(), &tip.message_id).await?;
        self.say_line(&format!(
            "🛠  {} 运营把 {} 的分享设为精华：+{} 积分{}（同一条消息再加精不再奖励）",
            doors::CONSOLE,
            staff_name(4),
            marked.points,
            if marked.badge.is_empty() {
                String::new()
            } else {
                format!("，解锁徽章「{}」", marked.badge)
            }
        ));
        // Next Monday 10:00: last week's board, one post per chat.
        let monday = Shanghai
            .with_ymd_and_hms(2026, 3, 9, 10, 0, 0)
            .single()
            .context("board time")?;
        self.clock.set(monday.with_timezone(&Utc));
        self.day_header();
        crate::jobs::honour::HonourBoards::new(self.pool.clone(), APP_NAME)
            .run_at(self.now())
            .await?;
        self.deliver().await?;
        self.show_new().await
    }

    fn advance(&mut self, seconds: i64) {
        self.clock.advance(Duration::seconds(seconds));
    }

    fn day_header(&mut self) {
        let local = self.local();
        let day = local.format("%Y-%m-%d").to_string();
        self.line(String::new());
        self.line(format!("── {day} ──"));
    }

    fn next_day(&mut self) {
        // Jump to 09:30 local on the next day.
        let local = self.local();
        let next = local.date_naive() + Duration::days(1);
        if let Some(at) = next
            .and_hms_opt(9, 30, 0)
            .and_then(|t| Shanghai.from_local_datetime(&t).single())
        {
            self.clock.set(at.with_timezone(&Utc));
        }
        self.day_header();
    }

    /// Customers join the customer group (one `change_external_chat` event).
    async fn join(&mut self, ids: &[usize], via: JoinVia) -> anyhow::Result<()> {
        let names: Vec<&str> = ids.iter().map(|i| member_name(*i)).collect();
        let how = if via == JoinVia::QrCode {
            "扫码"
        } else {
            "邀请"
        };
        self.say_line(&format!(
            "👥 {} {} 加入「{CUSTOMERS_NAME}」（{how}）",
            doors::CUSTOMER_JOIN,
            names.join("、"),
        ));
        let request = JoinRequest {
            app: Some(APP_NAME.into()),
            chat_id: CUSTOMERS.into(),
            members: ids
                .iter()
                .map(|i| NewMember {
                    name: member_name(*i).into(),
                    ..NewMember::new(member(*i))
                })
                .collect(),
            via,
            lose_callback: false,
        };
        let outcome = self.sim.drive_join(request).await.context("driving join")?;
        self.count_callback(&outcome);
        self.process().await
    }

    /// Customer `id` adds member `userid` as a WeCom contact.
    async fn add_contact(&mut self, userid: &str, id: usize) -> anyhow::Result<()> {
        self.say_line(&format!(
            "🤝 {} {} 添加了 {} 为企业微信好友",
            doors::CONTACT_ADDED,
            member_name(id),
            display_name(userid)
        ));
        let outcome = self
            .sim
            .drive_add_contact(AddContactRequest {
                app: Some(APP_NAME.into()),
                userid: userid.into(),
                external_userid: member(id),
                state: String::new(),
            })
            .await
            .context("driving add_external_contact")?;
        self.count_callback(&outcome);
        self.process().await
    }

    async fn leave(&mut self, id: usize) -> anyhow::Result<()> {
        self.say_line(&format!(
            "🚪 {} {} 退出了群（刚进群就走了）",
            doors::CUSTOMER_LEAVE,
            member_name(id)
        ));
        let outcome = self
            .sim
            .drive_leave(LeaveRequest {
                app: Some(APP_NAME.into()),
                chat_id: CUSTOMERS.into(),
                userids: vec![member(id)],
                removed: false,
                lose_callback: false,
            })
            .await
            .context("driving leave")?;
        self.count_callback(&outcome);
        self.process().await
    }

    /// A customer types in the customer group. No bot hears it; the
    /// message-archive puller posts it to qunyun.
    async fn archive_text(&mut self, id: usize, text: &str) -> anyhow::Result<()> {
        self.say_line(&format!(
            "💬 {} {}：{text}",
            doors::CUSTOMER_ARCHIVE,
            member_name(id)
        ));
        let outcome = self
            .sim
            .drive_archive_text(ArchiveTextRequest {
                chat_id: CUSTOMERS.into(),
                from: member(id),
                content: text.into(),
            })
            .await
            .context("driving an archived message")?;
        self.count_callback(&outcome);
        self.process().await
    }

    async fn mention(&mut self, id: usize, text: &str) -> anyhow::Result<()> {
        self.mention_no_run(id, text).await?;
        self.process().await
    }

    /// A staff member @-mentions the smart bot in the internal group; qunyun
    /// only records it (the pipeline runs later), as when two messages
    /// arrive in the same second.
    async fn mention_no_run(&mut self, id: usize, text: &str) -> anyhow::Result<()> {
        self.mention_quoting(id, text, None).await
    }

    /// `mention_no_run`, optionally quoting (引用) an earlier message's text.
    async fn mention_quoting(
        &mut self,
        id: usize,
        text: &str,
        quote: Option<&str>,
    ) -> anyhow::Result<()> {
        let quoted = quote.map_or(String::new(), |q| format!("（引用「{q}」）"));
        self.say_line(&format!(
            "💬 {} {}：@{BOT_DISPLAY_NAME} {text}{quoted}",
            doors::STAFF_MENTION,
            staff_name(id)
        ));
        let outcome = self
            .sim
            .drive_bot_mention(BotMentionRequest {
                // A long-connection bot is addressed by its BotID.
                bot: Some(AIBOT_ID.into()),
                chat_id: Some(STAFF_CHAT.into()),
                from: staff(id).into(),
                content: text.into(),
                quote: quote.map(str::to_owned),
            })
            .await
            .context("driving bot mention")?;
        // The frame went out on the bot's connection; qunyun's connection
        // task stores it in the inbox concurrently. Wait for that row, so
        // the pipeline pass that follows sees the message.
        let msgid = outcome
            .bot_msgid
            .context("the long-connection mention has no msgid")?;
        let dedupe_key = format!("bot:{BOT_NAME}:bot:{msgid}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(2));
        loop {
            poll.tick().await;
            let stored: i64 = sqlx::query_scalar("select count(*) from inbox where dedupe_key = ?")
                .bind(&dedupe_key)
                .fetch_one(&self.pool)
                .await?;
            if stored > 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the long connection did not store the mention {msgid}");
            }
        }
        self.report.totals.callbacks_posted += 1;
        Ok(())
    }

    /// The operator's "send now" to both groups through the operations
    /// layer: the route decision makes it a robot post in the internal group
    /// and a mass message the owner confirms in the customer group.
    async fn broadcast(&mut self, chats: &[&str], text: &str) -> anyhow::Result<()> {
        let names: Vec<String> = chats.iter().map(|chat| display_name(chat)).collect();
        self.say_line(&format!(
            "🛠  {} 运营给「{}」发群发：{text}",
            doors::CONSOLE,
            names.join("」「")
        ));
        let (ops, actor) = manager(&self.pool);
        let input = crate::ops::broadcast::BroadcastInput {
            chats: chats.iter().map(|chat| chat.to_string()).collect(),
            text: text.into(),
            ..Default::default()
        };
        let sent = crate::ops::broadcast::send(&ops, &actor, self.now(), &input).await?;
        for chat in &sent.chats {
            let how = match chat.outcome.as_str() {
                "awaiting_owner" => "等群主在手机上确认（客户群只能这样发）".to_string(),
                "queued" => format!("自动发送（{}）", route_chinese(&chat.route)),
                _ => format!("不发：{}", chat.detail.as_deref().unwrap_or("")),
            };
            self.line(format!(
                "          ↳ 「{}」：{how}",
                display_name(&chat.chat_id)
            ));
        }
        self.deliver().await?;
        self.show_new().await
    }

    fn count_callback(&mut self, outcome: &DriveOutcome) {
        self.report.totals.callbacks_posted += 1;
        let first_try_ok = outcome.status == Some(200) && outcome.attempts <= 1;
        if !first_try_ok {
            self.report.totals.callbacks_rejected += 1;
            self.line(format!(
                "          ❌ 回调未被一次接收：HTTP {:?}，投递 {} 次",
                outcome.status, outcome.attempts
            ));
        }
    }

    /// Runs the pipeline, then the sender until nothing is due, and prints
    /// what the simulator received and what could not be sent.
    async fn process(&mut self) -> anyhow::Result<()> {
        let outcome = self.pipeline.run_once().await?;
        if outcome.parked > 0 {
            bail!("demo event parked: the script hit a bug");
        }
        self.deliver().await?;
        self.show_new().await
    }

    /// `sender.run_once()` until nothing is due. A row held back by a rate
    /// limit is due again within a minute: move the clock there instead of
    /// waiting.
    async fn deliver(&mut self) -> anyhow::Result<()> {
        for _ in 0..MAX_SENDER_PASSES {
            let outcome = self.sender.run_once().await?;
            if !outcome.is_idle() {
                continue;
            }
            let now = self.now().timestamp();
            let (next_due, awaiting_owner) = {
                let mut conn = self.pool.acquire().await?;
                let pending = outbox_store::list(&mut conn, Some(OutboxStatus::Pending)).await?;
                let awaiting =
                    outbox_store::list(&mut conn, Some(OutboxStatus::AwaitingConfirmation)).await?;
                let next_due = pending
                    .iter()
                    .chain(awaiting.iter())
                    .map(|row| row.next_attempt_at)
                    .filter(|at| *at <= now + MAX_RATE_WAIT_SECS)
                    .min();
                (next_due, !awaiting.is_empty())
            };
            match next_due {
                Some(at) if at > now => {
                    let why = if awaiting_owner {
                        "群发要群主或跟进成员在手机上确认才发出（模拟器里当即确认），稍后查询发送结果"
                    } else {
                        "发送限流：不丢、不超频"
                    };
                    // What went out before the wait is printed before it.
                    self.show_new().await?;
                    self.line(format!("          ⏳ {why}（{} 秒后）", at - now));
                    self.advance(at - now);
                }
                // Due now but not claimed: leave it to the next pass.
                Some(_) => {}
                None => return Ok(()),
            }
        }
        bail!("the outbox did not drain after {MAX_SENDER_PASSES} sender passes")
    }

    /// Prints simulator deliveries and problem rows not shown yet.
    async fn show_new(&mut self) -> anyhow::Result<()> {
        let rows = self.outbox_rows().await?;
        let deliveries: Vec<Delivery> = self
            .sim
            .messages()
            .into_iter()
            .filter(|d| self.shown_seq.is_none_or(|seq| d.seq > seq))
            .collect();
        for delivery in deliveries {
            self.shown_seq = Some(delivery.seq);
            // A smart-bot answer is posted into the chat it was asked in.
            let target = display_name(&delivery.target);
            let text = delivery_text(&delivery);
            let icon = match delivery.route {
                SimRoute::BotResponse => "🤖",
                SimRoute::Webhook => "📣",
                SimRoute::Welcome => "🙋",
                SimRoute::AppMessage => "📨",
                SimRoute::Appchat => "🗨",
                SimRoute::CustomerGroupMass | SimRoute::CustomerMass => "📢",
            };
            let door = out_door(delivery.route, &target);
            self.line(format!("          {icon} {door} {text}"));
        }

        for row in rows {
            let problem = matches!(
                row.status,
                OutboxStatus::Skipped | OutboxStatus::Dead | OutboxStatus::Failed
            );
            if !problem || !self.shown_rows.insert(row.id) {
                continue;
            }
            let reason = in_chinese(row.last_error.as_deref().unwrap_or_default());
            let text = payload_text(&row.payload_json).replace('\n', " / ");
            let label = match row.status {
                OutboxStatus::Skipped => "⚠️  未自动发送",
                OutboxStatus::Dead => "☠️  放弃发送",
                _ => "❌ 发送失败，等管理员处理",
            };
            self.line(format!(
                "          {label} {}：{reason}｜内容：{text}",
                row_door(&row)
            ));
        }
        Ok(())
    }

    /// Every outbox row, oldest first.
    async fn outbox_rows(&self) -> anyhow::Result<Vec<OutboxRow>> {
        let mut conn = self.pool.acquire().await?;
        let mut rows = outbox_store::list(&mut conn, None).await?;
        rows.reverse();
        Ok(rows)
    }

    async fn totals(&mut self) -> anyhow::Result<()> {
        let rows = self.outbox_rows().await?;
        let deliveries = self.sim.messages();
        let mut conn = self.pool.acquire().await?;
        let totals = &mut self.report.totals;
        totals.members_joined = sqlx_count(&mut conn, "select count(*) from chat_members").await?;
        totals.members_current = sqlx_count(
            &mut conn,
            "select count(*) from chat_members where left_at is null",
        )
        .await?;
        totals.checkins = checkins::count_all(&mut conn).await?;
        totals.points_issued = sqlx_count(
            &mut conn,
            "select coalesce(sum(delta), 0) from points_ledger where delta > 0",
        )
        .await?;
        totals.points_balance_total = points::total(&mut conn).await?;
        totals.redemptions = redemptions::list(&mut conn, None).await?.len();
        let inbox_rows = inbox::list_all(&mut conn).await?;
        drop(conn);
        totals.inbox_done = inbox_rows
            .iter()
            .filter(|r| r.status == inbox::InboxStatus::Done)
            .count();
        totals.inbox_parked = inbox_rows
            .iter()
            .filter(|r| r.status == inbox::InboxStatus::Parked)
            .count();
        self.report.events = inbox_rows
            .iter()
            .map(|r| (r.kind.to_string(), r.chat_id.clone()))
            .collect();

        totals.deliveries_by_route = deliveries_by_route(&deliveries);
        totals.deliveries_total = deliveries.len();
        let count = |status: OutboxStatus| rows.iter().filter(|r| r.status == status).count();
        totals.skipped = count(OutboxStatus::Skipped);
        totals.dead = count(OutboxStatus::Dead);
        totals.failed = count(OutboxStatus::Failed);
        totals.unfinished = count(OutboxStatus::Pending)
            + count(OutboxStatus::InFlight)
            + count(OutboxStatus::AwaitingConfirmation);
        let with = |prefixes: &[&str], status: OutboxStatus| {
            rows.iter()
                .filter(|r| prefixes.iter().any(|p| r.idempotency_key.starts_with(p)))
                .filter(|r| r.status == status)
                .count()
        };
        let sent_with = |prefix: &str| with(&[prefix], OutboxStatus::Sent);
        // Group welcomes (`welcome:`) and 1:1 welcomes to new customers
        // (`welcome_code:`).
        let welcomes = ["welcome:", "welcome_code:"];
        totals.welcomes_sent = with(&welcomes, OutboxStatus::Sent);
        totals.welcomes_skipped = with(&welcomes, OutboxStatus::Skipped);
        totals.raid_digests = sent_with("raid:");
        totals.replies = sent_with("reply:");

        let t = totals.clone();
        self.report.deliveries = deliveries;
        self.report.outbox = rows;
        self.line(String::new());
        self.line("── 合计 ──".into());
        self.line(format!(
            "回调与长连接消息 {} 个（未一次接收 {}）｜入群 {} 人次，现有成员 {}",
            t.callbacks_posted, t.callbacks_rejected, t.members_joined, t.members_current
        ));
        let per_route: Vec<String> = t
            .deliveries_by_route
            .iter()
            .map(|(route, n)| format!("{} {n}", route_chinese(route)))
            .collect();
        self.line(format!(
            "企业微信收到 {} 条：{}",
            t.deliveries_total,
            per_route.join("、")
        ));
        self.line(format!(
            "未自动发送 {}（已记录原因）｜放弃 {}｜失败 {}｜未完成 {}",
            t.skipped, t.dead, t.failed, t.unfinished
        ));
        self.line(format!(
            "欢迎语 已发 {}、未能发送 {}｜防刷屏汇总 {}｜机器人回复 {}",
            t.welcomes_sent, t.welcomes_skipped, t.raid_digests, t.replies
        ));
        self.line(format!(
            "签到 {} 次｜发放积分 {}，全体余额合计 {}｜兑换 {} 件",
            t.checkins, t.points_issued, t.points_balance_total, t.redemptions
        ));
        self.line(format!(
            "事件 已处理 {}、搁置 {}",
            t.inbox_done, t.inbox_parked
        ));
        Ok(())
    }
}

/// Deliveries per route name, as the totals count them.
pub fn deliveries_by_route(deliveries: &[Delivery]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for delivery in deliveries {
        *counts
            .entry(route_label(delivery.route).to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// The text a delivery carried, on one line.
fn delivery_text(delivery: &Delivery) -> String {
    delivery
        .text()
        .map(str::to_string)
        .or_else(|| {
            delivery
                .content
                .pointer("/text/content")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("（{} 消息）", delivery.msgtype))
        .replace('\n', " / ")
}

/// The text inside an outbox payload, whatever the route's shape.
fn payload_text(payload_json: &str) -> String {
    let payload: serde_json::Value = serde_json::from_str(payload_json).unwrap_or_default();
    ["/text/content", "/markdown/content"]
        .iter()
        .find_map(|pointer| payload.pointer(pointer).and_then(serde_json::Value::as_str))
        .unwrap_or("")
        .to_string()
}

async fn sqlx_count(conn: &mut SqliteConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&mut *conn).await?)
}

/// The smart bot's long connection as `qunyun serve` runs it: one job per
/// long-connection bot, dialling the simulator's `/ws`.
struct SmartBotConnection {
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SmartBotConnection {
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the connection jobs and waits until the bot has subscribed.
async fn connect_smart_bot(
    bots: &[crate::config::BotConfig],
    pool: &SqlitePool,
    clock: &SharedClock,
    rules: &crate::active_rules::ActiveRules,
    sim: &SimHandle,
) -> anyhow::Result<(crate::jobs::longconn::LongConnections, SmartBotConnection)> {
    let (handle, jobs) = crate::jobs::longconn::connections(
        bots,
        pool,
        clock,
        rules,
        APP_NAME,
        &crate::jobs::longconn::LongConnSettings::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = jobs
        .into_iter()
        .map(|job| {
            let (clock, stop) = (clock.clone(), stop.clone());
            tokio::spawn(async move {
                crate::jobs::run_loop(&job, &clock, std::time::Duration::ZERO, &stop).await
            })
        })
        .collect();
    let connection = SmartBotConnection { stop, tasks };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(2));
    while !sim.long_connection_live(AIBOT_ID) {
        if tokio::time::Instant::now() > deadline {
            connection.stop().await;
            bail!("the smart bot's long connection did not subscribe");
        }
        poll.tick().await;
    }
    Ok((handle, connection))
}

fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// An EncodingAESKey: 32 random bytes, base64 without the trailing '='.
fn random_aes_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .trim_end_matches('=')
        .to_string()
}

/// The demo's manager: the operations layer as an owner named `demo`.
fn manager(pool: &SqlitePool) -> (crate::ops::Ops, crate::ops::Actor) {
    let ops = crate::ops::Ops::over(pool.clone());
    (ops, crate::ops::Actor::new("demo", crate::ops::Role::Owner))
}

/// The engine's skip reasons a demo reader meets, in the transcript's language;
/// any other reason as recorded.
fn in_chinese(reason: &str) -> String {
    use crate::rules::route::reasons;
    let known = [
        (
            reasons::CUSTOMER_GROUP_AUTOMATIC,
            "客户群里进不了机器人，qunyun 不能自动发言；要发只能由群主确认群发",
        ),
        (
            reasons::CUSTOMER_GROUP_NO_OWNER,
            "这个客户群还不知道群主是谁，无法让群主确认群发",
        ),
        (
            reasons::SMART_BOT_ONLY,
            "这个内部群只有智能机器人，它只能回答 @它 的消息；要主动发言请加一个群机器人",
        ),
        (
            reasons::INTERNAL_NO_ROBOT,
            "这个内部群没有群机器人，加一个群机器人（webhook key）才能发言",
        ),
    ];
    known
        .iter()
        .find(|(english, _)| *english == reason)
        .map_or_else(|| reason.to_owned(), |(_, chinese)| (*chinese).to_owned())
}
