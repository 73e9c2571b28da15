//! The smart bot's long connection (docs/wecom.md#smart-bot-long-connection): one
//! WebSocket per `[[wecom.bots]] mode = "websocket"`, run as a supervised job.
//!
//! One pass of the job is one connection: wait out the back-off, dial,
//! subscribe, then serve the socket until it ends. While connected it
//! - stores every inbound message or event in the inbox (the `msgid` is the
//!   dedupe key, exactly as for callbacks) before anything acts on it, so a
//!   frame WeCom delivers again after a reconnect does nothing twice;
//! - sends what the outbox sender hands it through [`LongConnections`] and
//!   answers the sender with WeCom's ack for that `req_id`;
//! - pings every `heartbeat` and declares the link dead after
//!   `missed_pings` pings without any frame from WeCom.
//!
//! A dropped link is dialled again after a capped exponential back-off with
//! jitter. Being displaced by another connection for the same bot (a second
//! instance subscribed) is different: two instances reconnecting would
//! displace each other forever, so this instance stops dialling, alerts the
//! admins and waits for a person (a restart takes the bot back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::active_rules::ActiveRules;
use crate::clock::SharedClock;
use crate::config::{BotConfig, BotMode};
use crate::jobs::Job;
use crate::rules::route::Content;
use crate::rules::{OutRoute, Outbound};
use crate::store::inbox::{self, Inserted, NewInboxEvent};
use crate::store::outbox;
use crate::wecom::api::{ApiError, BotResponse};
use crate::wecom::longconn::{self, Frame, Incoming, ReplyAddress};
use crate::wecom::message;

/// Timings of one bot's connection.
#[derive(Debug, Clone)]
pub struct LongConnSettings {
    /// WeCom's SDKs ping about every 30 s.
    pub heartbeat: Duration,
    /// The link is dead after this many pings without any frame back.
    pub missed_pings: u32,
    /// How long the subscribe (dial, handshake, ack) may take.
    pub subscribe_timeout: Duration,
    /// How long the sender waits for the ack of a reply or push.
    pub ack_timeout: Duration,
    /// First wait before dialling again; doubled per failure in a row.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for LongConnSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            missed_pings: 2,
            subscribe_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
        }
    }
}

/// One frame the sender wants on a bot's connection, and where the ack goes.
struct Request {
    frame: Frame,
    ack: oneshot::Sender<Result<(), ApiError>>,
}

/// The outbox sender's handle on the live connections: the connection task
/// owns its socket, the sender only queues frames and waits for their ack.
#[derive(Clone, Default)]
pub struct LongConnections {
    bots: Arc<HashMap<String, mpsc::Sender<Request>>>,
    ack_timeout: Duration,
}

impl LongConnections {
    /// Whether `bot` is a long-connection bot of this instance.
    pub fn has(&self, bot: &str) -> bool {
        self.bots.contains_key(bot)
    }

    /// Sends `frame` on `bot`'s connection and waits for WeCom's ack. The
    /// errors say whether the frame may have reached WeCom: `Connect` (it did
    /// not leave: no link), `Timeout` (sent, no ack in time) or `Transport`
    /// (sent, the link died before the ack).
    pub async fn call(&self, bot: &str, frame: Frame) -> Result<(), ApiError> {
        let Some(queue) = self.bots.get(bot) else {
            return Err(ApiError::Connect(format!(
                "no long-connection bot named {bot:?} is configured"
            )));
        };
        let (ack, answer) = oneshot::channel();
        queue
            .send(Request { frame, ack })
            .await
            .map_err(|_| ApiError::Connect("the long-connection task is not running".into()))?;
        match tokio::time::timeout(self.ack_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ApiError::Transport(
                "the long connection closed before WeCom's ack".into(),
            )),
            Err(_) => Err(ApiError::Timeout),
        }
    }
}

/// An answer or push the outbox sender sends over a bot's long connection.
#[derive(Debug)]
pub struct Reply {
    bot: String,
    frame: Frame,
}

impl Reply {
    pub async fn send(self, connections: &LongConnections) -> Result<(), ApiError> {
        connections.call(&self.bot, self.frame).await
    }
}

/// Answers to a message can be sent over the connection for 24 hours.
const REPLY_LIFETIME_SECS: i64 = 24 * 3600;

/// What the outbox sender needs for one answer or push over the connection.
#[derive(Debug)]
pub struct PreparedReply {
    /// The conversation's windows (answers and pushes together): a minute
    /// and an hour, each with its limit.
    pub rate_keys: Vec<(String, u32)>,
    /// The scope a 45009 from WeCom pauses.
    pub pause_key: String,
    pub reply: Reply,
}

/// For a smart-bot row whose target is a long-connection address: its rate
/// windows, pause scope and frame, or why the row is dead. `None` when the
/// target is an ordinary `response_url`. `age` is the row's age in seconds.
pub fn prepare(
    target: &str,
    response: &BotResponse,
    age: i64,
) -> Option<Result<PreparedReply, String>> {
    let body = serde_json::to_value(response)
        .map_err(|error| format!("answer cannot be encoded: {error}"));
    if let Some(address) = ReplyAddress::parse(target) {
        return Some(prepare_reply(address, body, age));
    }
    let address = longconn::PushAddress::parse(target)?;
    Some(body.map(|body| {
        // A push carries a req_id of ours, new for each attempt: an attempt
        // that may have reached WeCom is never made again (uncertain).
        let frame = address.frame(new_req_id(longconn::CMD_SEND_MSG), body);
        let rate_key = address.rate_key();
        prepared(address.bot, rate_key, frame)
    }))
}

fn prepare_reply(
    address: ReplyAddress,
    body: Result<Value, String>,
    age: i64,
) -> Result<PreparedReply, String> {
    if age > REPLY_LIFETIME_SECS {
        return Err("too late to answer over the long connection (24 hours)".to_owned());
    }
    let frame = Frame::respond(longconn::CMD_RESPOND_MSG, &address.req_id, body?);
    Ok(prepared(address.bot.clone(), address.rate_key(), frame))
}

fn prepared(bot: String, rate_key: String, frame: Frame) -> PreparedReply {
    let rate_keys = vec![
        (rate_key.clone(), longconn::PER_CONVERSATION_PER_MINUTE),
        (
            format!("{rate_key}{}", outbox::HOURLY_RATE_SUFFIX),
            longconn::PER_CONVERSATION_PER_HOUR,
        ),
    ];
    PreparedReply {
        rate_keys,
        // WeCom's limits here are per conversation, and so is a 45009 pause.
        pause_key: rate_key,
        reply: Reply { bot, frame },
    }
}

/// Records the configured long-connection bots, so every push decision
/// (scheduler, broadcasts, the capability table) knows which smart bots can
/// push. Run once at start-up.
pub async fn record_long_connection_bots(
    pool: &SqlitePool,
    bots: &[BotConfig],
    now: i64,
) -> sqlx::Result<()> {
    let names: Vec<String> = bots
        .iter()
        .filter(|bot| bot.mode == BotMode::Websocket)
        .map(|bot| bot.name.clone())
        .collect();
    let mut conn = pool.acquire().await?;
    crate::store::smart_bots::record_long_connection_bots(&mut conn, &names, now).await
}

/// The jobs for every long-connection bot, and the sender's handle on them.
pub fn connections(
    bots: &[BotConfig],
    pool: &SqlitePool,
    clock: &SharedClock,
    rules: &ActiveRules,
    default_app: &str,
    settings: &LongConnSettings,
) -> (LongConnections, Vec<LongConnection>) {
    let mut queues = HashMap::new();
    let mut jobs = Vec::new();
    for bot in bots.iter().filter(|bot| bot.mode == BotMode::Websocket) {
        // A few frames may wait while the link is re-established; the sender
        // waits on a full queue rather than losing a frame.
        let (queue, requests) = mpsc::channel(64);
        queues.insert(bot.name.clone(), queue);
        jobs.push(LongConnection {
            // One worker name per bot in `/readyz`; bots are few and fixed.
            name: Box::leak(format!("longconn:{}", bot.name).into_boxed_str()),
            bot: bot.clone(),
            pool: pool.clone(),
            clock: clock.clone(),
            rules: rules.clone(),
            default_app: default_app.to_owned(),
            settings: settings.clone(),
            requests: Mutex::new(requests),
            failures: AtomicU32::new(0),
            displaced: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
    }
    let handle = LongConnections {
        bots: Arc::new(queues),
        ack_timeout: settings.ack_timeout,
    };
    (handle, jobs)
}

/// How one connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Dialling or subscribing failed.
    NotConnected(String),
    /// The link closed or went silent; dial again after the back-off.
    Dropped(String),
    /// Another connection took the bot over; no more dialling.
    Displaced,
    /// Shutdown.
    Stopped,
}

pub struct LongConnection {
    name: &'static str,
    bot: BotConfig,
    pool: SqlitePool,
    clock: SharedClock,
    rules: ActiveRules,
    default_app: String,
    settings: LongConnSettings,
    requests: Mutex<mpsc::Receiver<Request>>,
    /// Failed connections in a row (the back-off's exponent).
    failures: AtomicU32,
    displaced: AtomicBool,
    stop: CancellationToken,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Job for LongConnection {
    type Outcome = SessionEnd;

    fn name(&self) -> &'static str {
        self.name
    }

    async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<SessionEnd> {
        let mut requests = self.requests.lock().await;
        if self.displaced.load(Ordering::SeqCst) {
            // Wait for a person; refuse frames meanwhile so rows retry later.
            self.refuse_until(&mut requests, None, "displaced by another connection")
                .await;
            return Ok(SessionEnd::Stopped);
        }
        let failures = self.failures.load(Ordering::SeqCst);
        if failures > 0 {
            let wait = backoff(
                self.settings.backoff_base,
                self.settings.backoff_cap,
                failures,
                rand::thread_rng().gen_range(0.5..=1.0),
            );
            tracing::info!(bot = %self.bot.name, wait_ms = wait.as_millis() as u64, "long connection: dialling again after back-off");
            if !self
                .refuse_until(&mut requests, Some(wait), "long connection is down")
                .await
            {
                return Ok(SessionEnd::Stopped);
            }
        }
        let end = match self.connect().await {
            Ok(socket) => {
                self.failures.store(0, Ordering::SeqCst);
                self.serve(socket, &mut requests).await
            }
            Err(error) => SessionEnd::NotConnected(format!("{error:#}")),
        };
        match &end {
            SessionEnd::NotConnected(reason) | SessionEnd::Dropped(reason) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(bot = %self.bot.name, reason, "long connection lost");
            }
            SessionEnd::Displaced => {
                self.displaced.store(true, Ordering::SeqCst);
                tracing::error!(
                    bot = %self.bot.name,
                    "long connection displaced by another connection for the same bot; \
                     not reconnecting (restart this instance to take the bot back)"
                );
                if let Err(error) = self.alert_displaced().await {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "queueing the displacement alert failed"
                    );
                }
            }
            SessionEnd::Stopped => {}
        }
        Ok(end)
    }

    fn stopping(&self) {
        self.stop.cancel();
    }
}

impl LongConnection {
    /// Dials, sends `aibot_subscribe` and waits for its ack.
    async fn connect(&self) -> anyhow::Result<Socket> {
        let dial = async {
            let (mut socket, _) = tokio_tungstenite::connect_async(self.bot.ws_url.as_str())
                .await
                .context("dialling")?;
            let req_id = new_req_id(longconn::CMD_SUBSCRIBE);
            let frame =
                Frame::subscribe(req_id.clone(), &self.bot.bot_id, self.bot.secret.expose());
            socket
                .send(Message::text(frame.to_json()))
                .await
                .context("sending aibot_subscribe")?;
            while let Some(message) = socket.next().await {
                let Message::Text(text) = message.context("reading the subscribe ack")? else {
                    continue;
                };
                if let Ok(Incoming::Ack {
                    req_id: acked,
                    errcode,
                    errmsg,
                }) = longconn::parse_incoming(&text)
                {
                    if acked != req_id {
                        continue;
                    }
                    if errcode != 0 {
                        anyhow::bail!("aibot_subscribe refused: errcode {errcode}: {errmsg}");
                    }
                    return Ok(socket);
                }
            }
            anyhow::bail!("closed before the subscribe ack")
        };
        let socket = tokio::time::timeout(self.settings.subscribe_timeout, dial)
            .await
            .context("subscribe timed out")??;
        tracing::info!(bot = %self.bot.name, "long connection subscribed");
        Ok(socket)
    }

    /// Serves one subscribed connection until it ends.
    async fn serve(
        &self,
        mut socket: Socket,
        requests: &mut mpsc::Receiver<Request>,
    ) -> SessionEnd {
        let mut pending: HashMap<String, oneshot::Sender<Result<(), ApiError>>> = HashMap::new();
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.tick().await;
        let mut silent_pings = 0u32;
        // No sender holds the handle any more (tests): keep serving inbound.
        let mut senders_gone = false;
        let end = loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    let _ = socket.close(None).await;
                    break SessionEnd::Stopped;
                }
                incoming = socket.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None => break SessionEnd::Dropped("closed by WeCom".into()),
                        Some(Ok(_)) => { silent_pings = 0; continue; }
                        Some(Err(error)) => break SessionEnd::Dropped(format!("read failed: {error}")),
                    };
                    silent_pings = 0;
                    match longconn::parse_incoming(&text) {
                        Ok(Incoming::Ack { req_id, errcode, errmsg }) => {
                            if let Some(waiting) = pending.remove(&req_id) {
                                let result = if errcode == 0 { Ok(()) } else { Err(ApiError::WeCom { errcode, errmsg }) };
                                let _ = waiting.send(result);
                            }
                        }
                        Ok(Incoming::Message { req_id, body }) | Ok(Incoming::Event { req_id, body }) => {
                            // Stored before anything acts on it; a database
                            // failure drops the link so WeCom delivers again.
                            let answer = match self.store(&req_id, body).await {
                                Ok(answer) => answer,
                                Err(error) => break SessionEnd::Dropped(format!("storing an inbound frame failed: {error:#}")),
                            };
                            // An `enter_chat` welcome must come within 5 s: it
                            // goes out at once, only for a first delivery.
                            if let Some(frame) = answer {
                                if let Err(error) = socket.send(Message::text(frame.to_json())).await {
                                    break SessionEnd::Dropped(format!("write failed: {error}"));
                                }
                            }
                        }
                        Ok(Incoming::Displaced) => break SessionEnd::Displaced,
                        Ok(Incoming::Other { cmd }) => tracing::debug!(bot = %self.bot.name, cmd, "long connection: frame ignored"),
                        Err(error) => tracing::warn!(bot = %self.bot.name, %error, "long connection: unreadable frame ignored"),
                    }
                }
                request = requests.recv(), if !senders_gone => {
                    let Some(Request { frame, ack }) = request else {
                        senders_gone = true;
                        continue;
                    };
                    match socket.send(Message::text(frame.to_json())).await {
                        Ok(()) => { pending.insert(frame.req_id, ack); }
                        Err(error) => {
                            // The frame may be partly written: WeCom may have it.
                            let _ = ack.send(Err(ApiError::Transport(format!("write failed: {error}"))));
                            break SessionEnd::Dropped(format!("write failed: {error}"));
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if silent_pings >= self.settings.missed_pings {
                        break SessionEnd::Dropped(format!("{silent_pings} pings unanswered"));
                    }
                    silent_pings += 1;
                    let ping = Frame::ping(new_req_id(longconn::CMD_PING));
                    if let Err(error) = socket.send(Message::text(ping.to_json())).await {
                        break SessionEnd::Dropped(format!("ping failed: {error}"));
                    }
                }
            }
        };
        // Dropping the senders answers every waiting call "closed before the ack".
        drop(pending);
        end
    }

    /// Answers queued frames with "not connected" until `wait` passed (true)
    /// or shutdown (false); `None` waits for shutdown only.
    async fn refuse_until(
        &self,
        requests: &mut mpsc::Receiver<Request>,
        wait: Option<Duration>,
        why: &str,
    ) -> bool {
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = &mut sleep => return true,
                request = requests.recv() => match request {
                    Some(request) => {
                        let _ = request.ack.send(Err(ApiError::Connect(why.to_owned())));
                    }
                    None => return false,
                },
            }
        }
    }

    /// Writes an inbound message or event to the inbox, keyed by its `msgid`
    /// like a callback (`bot:<name>:bot:<msgid>`), with the reply address in
    /// place of a `response_url`. Returns the welcome to send when the frame
    /// is a first delivery of `enter_chat`.
    async fn store(&self, req_id: &str, body: Value) -> anyhow::Result<Option<Frame>> {
        let Some(conversation) = longconn::conversation_of(&body) else {
            tracing::warn!(bot = %self.bot.name, "long connection: frame names no chat or sender; ignored");
            return Ok(None);
        };
        let address = ReplyAddress {
            bot: self.bot.name.clone(),
            conversation,
            req_id: req_id.to_owned(),
        };
        let plaintext = longconn::with_reply_address(body, &address).to_string();
        let event = match message::parse_bot_json(&plaintext) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(bot = %self.bot.name, %error, "long connection: message not understood; ignored");
                return Ok(None);
            }
        };
        let source = format!("bot:{}", self.bot.name);
        let dedupe_key = format!("{source}:{}", event.dedupe_key(plaintext.as_bytes()));
        let event_json = serde_json::to_string(&event).context("serialising event")?;
        let mut conn = self.pool.acquire().await?;
        if let message::Event::BotMessage(_) = &event {
            // WeCom takes pushes only where a member wrote to the bot; a
            // redelivery records nothing new.
            crate::store::smart_bots::record_member_wrote(
                &mut conn,
                &self.bot.name,
                &address.conversation,
                self.clock.now().timestamp(),
            )
            .await?;
        }
        let inserted = inbox::insert_event(
            &mut conn,
            &NewInboxEvent {
                source: &source,
                kind: inbox::InboxKind::of(&event),
                dedupe_key: &dedupe_key,
                received_at: self.clock.now().timestamp(),
                event_json: &event_json,
                chat_id: event.chat_id(),
            },
        )
        .await?;
        match inserted {
            Inserted::New(id) => {
                tracing::info!(bot = %self.bot.name, kind = event.kind(), inbox_id = id, "event stored")
            }
            Inserted::Duplicate => {
                tracing::info!(bot = %self.bot.name, kind = event.kind(), "duplicate delivery ignored");
                return Ok(None);
            }
        }
        // A card click is answered on the connection within WeCom's 5 s.
        if let Some(click) = crate::card_clicks::CardClick::in_event(&event) {
            drop(conn);
            let update = crate::card_clicks::answer_or_log(
                &self.pool,
                &self.rules,
                self.clock.now(),
                &click,
                &self.bot.name,
            )
            .await;
            return Ok(update.map(|update| {
                Frame::respond(longconn::CMD_RESPOND_UPDATE, req_id, update.body())
            }));
        }
        let enter_chat = matches!(
            &event,
            message::Event::BotEvent(event) if event.event_type == message::BotEventType::EnterChat
        );
        if !enter_chat {
            return Ok(None);
        }
        // The welcome tells the member what the bot understands.
        let rules = self.rules.get(&mut conn).await?;
        let text = crate::rules::commands::help_text(&rules);
        Ok(Some(Frame::respond(
            longconn::CMD_RESPOND_WELCOME,
            req_id,
            serde_json::json!({"msgtype": "text", "text": {"content": text}}),
        )))
    }

    /// One app message to the `[alerts] admins`, once per displacement.
    async fn alert_displaced(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        let rules = self.rules.get(&mut conn).await?;
        let now = self.clock.now();
        let text = format!(
            "智能机器人 {} 的长连接被另一个连接顶替，本实例已停止重连。\
             请确认只有一个 qunyun 实例使用该机器人，然后重启本实例。\
             (long connection of bot {} displaced by another connection; not reconnecting)",
            self.bot.name, self.bot.name
        );
        let mut message = Outbound::new(
            format!(
                "alert:longconn_displaced:{}:{}",
                self.bot.name,
                now.timestamp()
            ),
            OutRoute::Member {
                app: self.default_app.clone(),
                user_ids: rules.doc.alerts.admins.clone(),
            },
            Content::text(text),
        );
        if rules.doc.alerts.admins.is_empty() {
            message.skipped = Some("[alerts] admins 未配置（no admins configured）".to_owned());
        }
        outbox::enqueue(&mut conn, &message, &self.default_app, now).await?;
        Ok(())
    }
}

/// `<cmd>_<ms>_<random>`, as WeCom's SDKs make them.
fn new_req_id(cmd: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{cmd}_{ms}_{:08x}", rand::thread_rng().gen::<u32>())
}

/// base × 2^(failures−1), capped, scaled by `jitter` (0.5..=1) so instances
/// that lost WeCom together do not dial back in step.
pub fn backoff(base: Duration, cap: Duration, failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = base.saturating_mul(1 << exponent).min(cap);
    full.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(backoff(base, cap, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(base, cap, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(base, cap, 6, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(base, cap, 60, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(base, cap, 3, 0.5), Duration::from_secs(2));
    }
}
