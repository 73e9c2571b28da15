//! `qunyun demo`: the whole path in one process on a temp database, no
//! configuration needed. Keys and tokens are generated here; callbacks are
//! encrypted and POSTed to the real callback server on 127.0.0.1; the pipeline
//! applies the rules; what qunyun decided to send is printed as a transcript.
//!
//! What is sent is taken from the outbox writer (`DemoOutbox`): the durable
//! outbox, the sender job and the simulator's delivery record plug in here
//! once they are on main.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
use crate::pipeline::{self, OutboxWriter, Pipeline, PipelineSettings};
use crate::rules::{ChatRoute, OutRoute, Outbound};
use crate::store::{chats, checkins, inbox, members, points, redemptions};
use crate::wecom::crypto::{fresh_nonce, MsgCrypt};

#[derive(Debug, Clone, Copy, Default)]
pub struct DemoOptions {
    /// Exit after the script (tests, CI). Otherwise keep serving until Ctrl-C.
    pub once: bool,
    /// Print the transcript to stdout as it happens.
    pub print: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoTotals {
    pub callbacks_posted: usize,
    pub callbacks_rejected: usize,
    pub members_joined: i64,
    pub members_current: i64,
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
    /// Everything qunyun queued, in order.
    pub sent: Vec<Outbound>,
}

/// Collects outbound messages, one per idempotency key.
#[derive(Clone, Default)]
pub struct DemoOutbox {
    messages: Arc<Mutex<Vec<Outbound>>>,
}

impl DemoOutbox {
    fn snapshot(&self) -> Vec<Outbound> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl OutboxWriter for DemoOutbox {
    async fn enqueue(
        &self,
        _conn: &mut SqliteConnection,
        message: &Outbound,
        _now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut messages = self
            .messages
            .lock()
            .map_err(|_| anyhow::anyhow!("demo outbox lock poisoned"))?;
        if !messages
            .iter()
            .any(|m| m.idempotency_key == message.idempotency_key)
        {
            messages.push(message.clone());
        }
        Ok(())
    }
}

const RULES: &str = r#"
[community]
name = "好物分享社群"
timezone = "Asia/Shanghai"
day_cutover_hour = 4
app = "ops"

[welcome]
raid_joins = 12
raid_quiet_secs = 300

[[catalog]]
item = "保温杯"
cost = 30
stock = 1

[[catalog]]
item = "帆布袋"
cost = 15
stock = 10

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

const CHAT_A: &str = "wrDEMO0000000000000000000000A1";
const CHAT_B: &str = "wrDEMO0000000000000000000000B2";
const CORP_ID: &str = "wwDEMO00000000000";

fn member(i: usize) -> String {
    format!("wmDEMO{i:02}")
}

struct Demo {
    pool: SqlitePool,
    clock: Arc<ManualClock>,
    pipeline: Pipeline<DemoOutbox>,
    outbox: DemoOutbox,
    shown: usize,
    http: reqwest::Client,
    base: String,
    app_crypt: MsgCrypt,
    bot_crypt: MsgCrypt,
    versions: BTreeMap<&'static str, u32>,
    next_msg: u64,
    report: DemoReport,
    print: bool,
}

/// Plays the scripted community days and returns the transcript and totals.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    let dir = tempfile::tempdir().context("creating temp dir")?;
    let app_token = random_token();
    let app_key = random_aes_key();
    let bot_token = random_token();
    let bot_key = random_aes_key();
    let config = Config::from_toml_str(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [database]
        path = "{db}"
        [wecom]
        corp_id = "{CORP_ID}"
        api_base = "http://127.0.0.1:9/cgi-bin/"
        [[wecom.apps]]
        name = "ops"
        agent_id = 1000002
        secret = "{secret}"
        token = "{app_token}"
        encoding_aes_key = "{app_key}"
        [[wecom.bots]]
        name = "helper"
        token = "{bot_token}"
        encoding_aes_key = "{bot_key}"
        "#,
        db = dir
            .path()
            .join("demo.db")
            .display()
            .to_string()
            .replace('\\', "/"),
        secret = random_token(),
    ))
    .context("building demo config")?;

    // Monday 2026-03-02, 09:00 in Shanghai.
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
            .single()
            .context("start time")?,
    );
    let shared: SharedClock = clock.clone();
    let app = App::new(config, shared.clone()).await?;
    let pool = app.state.pool.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));

    let outbox = DemoOutbox::default();
    let pipeline = Pipeline::new(
        pool.clone(),
        shared,
        outbox.clone(),
        PipelineSettings::default(),
    );
    let mut demo = Demo {
        pool: pool.clone(),
        clock,
        pipeline,
        outbox,
        shown: 0,
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
        app_crypt: MsgCrypt::new(&app_token, &app_key, CORP_ID)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        bot_crypt: MsgCrypt::new(&bot_token, &bot_key, "").map_err(|e| anyhow::anyhow!("{e}"))?,
        versions: BTreeMap::new(),
        next_msg: 7_300_000_000_000_000_001,
        report: DemoReport::default(),
        print: options.print,
    };
    demo.setup().await?;
    demo.script().await?;
    demo.totals().await?;

    if !options.once {
        demo.line(format!(
            "qunyun 仍在运行：http://{addr}/healthz  数据库 {}（Ctrl-C 结束）",
            dir.path().join("demo.db").display()
        ));
        crate::app::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    server.await.context("joining demo server")??;
    Ok(demo.report)
}

impl Demo {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn local(&self) -> DateTime<Tz> {
        self.now().with_timezone(&Shanghai)
    }

    fn line(&mut self, text: String) {
        if self.print {
            println!("{text}");
        }
        self.report.transcript.push(text);
    }

    fn say_line(&mut self, text: &str) {
        let stamp = self.local().format("%H:%M:%S").to_string();
        self.line(format!("{stamp}  {text}"));
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        pipeline::import_rules(&self.pool, RULES, now).await?;
        let mut conn = self.pool.acquire().await?;
        for (chat_id, name, route, tags) in [
            (
                CHAT_A,
                "好物分享①群",
                ChatRoute::SmartBot {
                    robot_key: Some("demo-robot-a".into()),
                },
                vec![],
            ),
            (
                CHAT_B,
                "VIP 内测群",
                ChatRoute::CustomerGroup { robot_key: None },
                vec!["vip".to_string()],
            ),
        ] {
            let chat = chats::NewChat {
                chat_id: chat_id.into(),
                name: name.into(),
                route,
                owner: Some("yunying".into()),
                admins: vec!["xiaomei".into()],
                tags,
                member_version: Some("v0".into()),
            };
            chats::upsert_chat(&mut conn, &chat, now).await?;
        }
        // Names come from groupchat/get in production; the demo seeds them.
        for (i, name) in NAMES.iter().enumerate() {
            members::ensure_person(&mut conn, &member(i + 1), Some(name), now).await?;
        }
        drop(conn);
        self.line("qunyun demo：两个群、32 位成员、三天。群友做了什么，qunyun 回了什么。".into());
        self.line("群：好物分享①群（智能机器人 + 群机器人）｜VIP 内测群（客户群，无机器人：只能由群主发送）".into());
        Ok(())
    }

    async fn script(&mut self) -> anyhow::Result<()> {
        self.day_header();
        self.join(CHAT_A, &[1, 2], 3).await?;
        self.advance(4);
        self.join(CHAT_A, &[3], 0).await?;
        self.advance(11);
        self.process().await?;

        self.advance(60);
        self.join(CHAT_B, &[4, 5, 6, 7, 8, 9], 0).await?;
        self.advance(11);
        self.process().await?;

        self.advance(240);
        self.line("（一波扫码入群：8 秒内 16 人）".into());
        for wave in [10..14, 14..18, 18..22, 22..26] {
            let ids: Vec<usize> = wave.collect();
            self.join(CHAT_A, &ids, 3).await?;
            self.advance(2);
        }
        self.advance(10);
        self.process().await?;

        self.advance(900);
        self.join(CHAT_A, &[26, 27], 0).await?;
        self.advance(5);
        self.leave(CHAT_A, 26).await?;
        self.advance(6);
        self.process().await?;

        self.advance(600);
        for i in 1..=10 {
            self.say(CHAT_A, i, "签到").await?;
            self.advance(7);
        }
        self.say(CHAT_A, 1, "签到").await?;
        self.advance(30);
        self.say(CHAT_A, 11, "请问什么时候发货？").await?;
        self.advance(20);
        self.say(CHAT_A, 12, "我的快递发货了吗").await?;
        self.line("          （同一问题 5 分钟冷却内不再重复回复，避免刷屏）".into());
        self.advance(20);
        self.say(CHAT_A, 2, "帮助").await?;
        self.say(CHAT_A, 3, "积分").await?;

        self.next_day();
        for i in 1..=6 {
            self.say(CHAT_A, i, "签到").await?;
            self.advance(13);
        }

        self.next_day();
        for i in 1..=5 {
            self.say(CHAT_A, i, "签到").await?;
            self.advance(11);
        }
        let balance =
            pipeline::adjust_points(&self.pool, &member(7), 10, "活动奖励", self.now()).await?;
        self.say_line(&format!(
            "🛠  运营给 {}（{}）加 10 积分：活动奖励，余额 {balance}",
            NAMES[6],
            member(7)
        ));
        self.say(CHAT_A, 7, "补签").await?;
        self.say(CHAT_A, 7, "签到").await?;
        self.advance(60);
        self.line("（抢兑：最后 1 个保温杯，两人同一秒下单）".into());
        self.say_no_run(CHAT_A, 1, "兑换 保温杯").await?;
        self.say_no_run(CHAT_A, 2, "兑换 保温杯").await?;
        self.process().await?;
        self.say(CHAT_A, 3, "兑换 帆布袋").await?;
        self.say(CHAT_A, 4, "排行").await?;
        self.say(CHAT_A, 5, "等级").await?;
        Ok(())
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

    async fn join(
        &mut self,
        chat_id: &'static str,
        ids: &[usize],
        scene: u32,
    ) -> anyhow::Result<()> {
        let users: Vec<String> = ids.iter().map(|i| member(*i)).collect();
        let names: Vec<&str> = ids.iter().map(|i| NAMES[i - 1]).collect();
        let chat_name = if chat_id == CHAT_A {
            "好物分享①群"
        } else {
            "VIP 内测群"
        };
        let how = if scene == 3 { "扫码" } else { "邀请" };
        self.say_line(&format!(
            "👥 {} 加入「{chat_name}」（{how}）",
            names.join("、")
        ));
        self.chat_change(chat_id, "add_member", &users, scene)
            .await?;
        self.process().await
    }

    async fn leave(&mut self, chat_id: &'static str, id: usize) -> anyhow::Result<()> {
        self.say_line(&format!("🚪 {} 退出了群（刚进群就走了）", NAMES[id - 1]));
        self.chat_change(chat_id, "del_member", &[member(id)], 0)
            .await?;
        self.process().await
    }

    async fn chat_change(
        &mut self,
        chat_id: &'static str,
        detail: &str,
        users: &[String],
        scene: u32,
    ) -> anyhow::Result<()> {
        let version = self.versions.entry(chat_id).or_insert(0);
        let last = format!("v{version}");
        *version += 1;
        let current = format!("v{version}");
        let items: String = users
            .iter()
            .map(|u| format!("<Item><![CDATA[{u}]]></Item>"))
            .collect();
        let scene_xml = if detail == "add_member" {
            format!("<JoinScene>{scene}</JoinScene>")
        } else {
            "<QuitScene>0</QuitScene>".to_string()
        };
        let xml = format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>{time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[{chat_id}]]></ChatId>\
             <ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[{detail}]]></UpdateDetail>\
             {scene_xml}<MemChangeCnt>{count}</MemChangeCnt><MemChangeList>{items}</MemChangeList>\
             <LastMemVer><![CDATA[{last}]]></LastMemVer><CurMemVer><![CDATA[{current}]]></CurMemVer></xml>",
            time = self.now().timestamp(),
            count = users.len(),
        );
        self.post_app(&xml).await
    }

    async fn say(&mut self, chat_id: &'static str, id: usize, text: &str) -> anyhow::Result<()> {
        self.say_no_run(chat_id, id, text).await?;
        self.process().await
    }

    async fn say_no_run(
        &mut self,
        chat_id: &'static str,
        id: usize,
        text: &str,
    ) -> anyhow::Result<()> {
        self.say_line(&format!("💬 {}：@运营助手 {text}", NAMES[id - 1]));
        let msg_id = self.next_msg;
        self.next_msg += 1;
        let json = serde_json::json!({
            "msgid": format!("DEMO{msg_id}"),
            "aibotid": "AIBOT-DEMO",
            "chatid": chat_id,
            "chattype": "group",
            "from": {"userid": member(id)},
            "response_url": format!("http://127.0.0.1:9/cgi-bin/aibot/response?response_code=DEMO{msg_id}"),
            "msgtype": "text",
            "text": {"content": format!("@运营助手 {text}")},
        });
        self.post_bot(&json.to_string()).await
    }

    async fn post_app(&mut self, plaintext: &str) -> anyhow::Result<()> {
        let encrypt = self.app_crypt.encrypt(plaintext.as_bytes());
        let timestamp = self.now().timestamp().to_string();
        let nonce = fresh_nonce();
        let signature = self.app_crypt.signature(&timestamp, &nonce, &encrypt);
        let body = format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>\
             <AgentID><![CDATA[1000002]]></AgentID></xml>"
        );
        let url = format!(
            "{}/wecom/apps/ops/callback?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}",
            self.base
        );
        self.post(url, body).await
    }

    async fn post_bot(&mut self, plaintext: &str) -> anyhow::Result<()> {
        let encrypt = self.bot_crypt.encrypt(plaintext.as_bytes());
        let timestamp = self.now().timestamp().to_string();
        let nonce = fresh_nonce();
        let signature = self.bot_crypt.signature(&timestamp, &nonce, &encrypt);
        let body = serde_json::json!({ "encrypt": encrypt }).to_string();
        let url = format!(
            "{}/wecom/bots/helper/callback?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}",
            self.base
        );
        self.post(url, body).await
    }

    async fn post(&mut self, url: String, body: String) -> anyhow::Result<()> {
        let response = self
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .context("posting callback")?;
        self.report.totals.callbacks_posted += 1;
        if !response.status().is_success() {
            self.report.totals.callbacks_rejected += 1;
            self.line(format!(
                "          ❌ 回调被拒绝：HTTP {}",
                response.status()
            ));
        }
        Ok(())
    }

    /// Runs the pipeline and prints what qunyun queued since last time.
    async fn process(&mut self) -> anyhow::Result<()> {
        let outcome = self.pipeline.run_once().await?;
        if outcome.parked > 0 {
            bail!("demo event parked: the script hit a bug");
        }
        let sent = self.outbox.snapshot();
        for message in sent.iter().skip(self.shown) {
            let line = describe(message);
            self.line(line);
        }
        self.shown = sent.len();
        Ok(())
    }

    async fn totals(&mut self) -> anyhow::Result<()> {
        let sent = self.outbox.snapshot();
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
        let rows = inbox::list_all(&mut conn).await?;
        totals.inbox_done = rows.iter().filter(|r| r.status == "done").count();
        totals.inbox_parked = rows.iter().filter(|r| r.status == "parked").count();
        totals.welcomes_sent = sent
            .iter()
            .filter(|m| m.idempotency_key.starts_with("welcome:") && m.skipped.is_none())
            .count();
        totals.welcomes_skipped = sent
            .iter()
            .filter(|m| m.idempotency_key.starts_with("welcome:") && m.skipped.is_some())
            .count();
        totals.raid_digests = sent
            .iter()
            .filter(|m| m.idempotency_key.starts_with("raid:"))
            .count();
        totals.replies = sent
            .iter()
            .filter(|m| m.idempotency_key.starts_with("reply:"))
            .count();
        let t = totals.clone();
        drop(conn);
        self.report.sent = sent;
        self.line(String::new());
        self.line("── 合计 ──".into());
        self.line(format!(
            "回调 {} 个（被拒 {}）｜入群 {} 人次，现有成员 {}",
            t.callbacks_posted, t.callbacks_rejected, t.members_joined, t.members_current
        ));
        self.line(format!(
            "欢迎语 已发 {}、未能发送 {}（已记录原因）｜防刷屏汇总 {}｜回复 {}",
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

async fn sqlx_count(conn: &mut SqliteConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&mut *conn).await?)
}

fn describe(message: &Outbound) -> String {
    let target = match &message.route {
        OutRoute::AppGroup { .. } => "应用群".to_string(),
        OutRoute::Webhook { .. } => "群机器人 → 群".to_string(),
        OutRoute::SmartBotResponse { .. } => "智能机器人回复".to_string(),
        OutRoute::Member { user_ids, .. } => format!("应用消息 → {}", user_ids.join(",")),
        OutRoute::WelcomeCode { .. } => "新客户欢迎语".to_string(),
        OutRoute::CustomerGroupMass { .. } => "客户群群发（需群主确认）".to_string(),
        OutRoute::AppChatRemove { user_id, .. } => format!("移出应用群 → {user_id}"),
    };
    let text = message.text.replace('\n', " / ");
    match &message.skipped {
        None => format!("          🤖 [{target}] {text}"),
        Some(reason) => format!("          ⚠️  未自动发送 [{target}]：{reason}｜内容：{text}"),
    }
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
