//! The smart bot's long-connection endpoint (`GET /ws`, a WebSocket), with
//! WeCom's rules as docs/wecom.md#smart-bot-long-connection states them: the first
//! frame subscribes a registered bot with its secret; one live connection
//! per bot (a newer subscribe sends the older one `disconnected_event` and
//! closes it); acks echo the `req_id` and carry no `cmd`; a connection
//! silent for longer than the heartbeat timeout is closed; answers reuse an
//! inbound `req_id`, welcome and card updates only within 5 s; a push only
//! into a conversation where a member has written to the bot; 30 per minute
//! and 1000 per hour per conversation, answers and pushes together.
//! Accepted answers and pushes are recorded in `/sim/messages` as
//! `bot_response` deliveries (target: the chat, or the member in 1:1).
//!
//! Faults: [`LongConnFault`] drops the connection after the next answer was
//! accepted (before its ack) or leaves out its ack;
//! [`Sim::close_long_connection`] closes a bot's connection from the server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::driver::{BotMentionRequest, DriveError, DriveOutcome};
use super::model::Route;
use super::state::{random_id, Sent};
use super::{lock, Sim};
use crate::wecom::longconn::{
    self as protocol, CMD_EVENT_CALLBACK, CMD_MSG_CALLBACK, CMD_PING, CMD_RESPOND_MSG,
    CMD_RESPOND_UPDATE, CMD_RESPOND_WELCOME, CMD_SEND_MSG, CMD_SUBSCRIBE, DISPLACED_EVENT,
    PER_CONVERSATION_PER_HOUR, PER_CONVERSATION_PER_MINUTE,
};

/// A connection that sent nothing for this long is closed (two missed
/// 30-second heartbeats and some slack).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// `enter_chat` welcomes and card updates must come within 5 seconds.
const EVENT_REPLY_SECS: i64 = 5;
/// Answers to a message may come for 24 hours.
const MESSAGE_REPLY_SECS: i64 = 24 * 3600;

/// A fault for the next answer or push the endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongConnFault {
    /// Deliver it, then close the connection without the ack.
    DropMidReply,
    /// Deliver it and never ack.
    MissingAck,
}

#[derive(Default)]
pub(crate) struct Hub {
    state: Mutex<HubState>,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct HubState {
    /// bot_id → secret.
    bots: HashMap<String, String>,
    live: HashMap<String, Live>,
    subscribes: HashMap<String, u32>,
    /// (bot_id, conversation) where a member wrote to the bot.
    written: HashSet<(String, String)>,
    inbound: HashMap<String, Inbound>,
    /// (bot_id, conversation) → times of accepted answers and pushes.
    sent: HashMap<(String, String), Vec<DateTime<Utc>>>,
    faults: VecDeque<LongConnFault>,
    /// (bot_id, errcode) of every refused answer or push.
    refusals: Vec<(String, i64)>,
    /// Pings get no ack (a link that went dead in between).
    pings_unanswered: bool,
}

struct Live {
    connection: u64,
    to_client: mpsc::UnboundedSender<ToClient>,
}

enum ToClient {
    Text(String),
    Close,
}

#[derive(Clone)]
struct Inbound {
    bot_id: String,
    conversation: String,
    kind: InboundKind,
    at: DateTime<Utc>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InboundKind {
    Message,
    EnterChat,
    CardClick,
    OtherEvent,
}

pub(crate) fn routes() -> Router<Sim> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(State(sim): State<Sim>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(sim, socket))
}

impl Sim {
    fn hub(&self) -> &Hub {
        &self.shared.longconn
    }

    /// Lets `bot_id` subscribe with `secret` (the console's long-connection Secret).
    pub fn register_long_connection_bot(&self, bot_id: &str, secret: &str) {
        lock(&self.hub().state)
            .bots
            .insert(bot_id.to_owned(), secret.to_owned());
    }

    /// Whether `bot_id` is registered for long-connection mode.
    pub fn is_long_connection_bot(&self, bot_id: &str) -> bool {
        lock(&self.hub().state).bots.contains_key(bot_id)
    }

    /// How many `aibot_subscribe` frames `bot_id` sent (accepted or not).
    pub fn long_connection_subscribes(&self, bot_id: &str) -> u32 {
        lock(&self.hub().state)
            .subscribes
            .get(bot_id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `bot_id` has a subscribed connection now.
    pub fn long_connection_live(&self, bot_id: &str) -> bool {
        lock(&self.hub().state).live.contains_key(bot_id)
    }

    /// Closes `bot_id`'s connection from the server side.
    pub fn close_long_connection(&self, bot_id: &str) -> bool {
        let live = lock(&self.hub().state).live.remove(bot_id);
        live.is_some_and(|live| live.to_client.send(ToClient::Close).is_ok())
    }

    /// The errcodes of `bot_id`'s refused answers and pushes, in order.
    pub fn long_connection_refusals(&self, bot_id: &str) -> Vec<i64> {
        lock(&self.hub().state)
            .refusals
            .iter()
            .filter(|(bot, _)| bot == bot_id)
            .map(|(_, errcode)| *errcode)
            .collect()
    }

    /// From now on pings get no ack, as on a link that died silently.
    pub fn leave_long_connection_pings_unanswered(&self) {
        lock(&self.hub().state).pings_unanswered = true;
    }

    /// The next accepted answer or push meets `fault`.
    pub fn inject_long_connection_fault(&self, fault: LongConnFault) {
        lock(&self.hub().state).faults.push_back(fault);
    }

    /// Delivers a member's message (the callback JSON: `msgid`, `chatid`,
    /// `chattype`, `from.userid`, `msgtype`, …) as `aibot_msg_callback` on
    /// `bot_id`'s connection; returns the frame's `req_id`. A message
    /// delivered again (same `msgid`) gets a new `req_id`, as after a reconnect.
    pub fn deliver_long_connection_message(
        &self,
        bot_id: &str,
        body: Value,
    ) -> Result<String, DriveError> {
        self.deliver_frame(bot_id, CMD_MSG_CALLBACK, body)
    }

    /// Delivers an event (`msgtype = "event"`: `enter_chat`, `template_card_event`)
    /// as `aibot_event_callback`; returns the `req_id`.
    pub fn deliver_long_connection_event(
        &self,
        bot_id: &str,
        body: Value,
    ) -> Result<String, DriveError> {
        self.deliver_frame(bot_id, CMD_EVENT_CALLBACK, body)
    }

    /// The driver's `bot_mention` for a bot in long-connection mode: when
    /// `request.bot` is the BotID of a registered long-connection bot, or
    /// names a callback target whose `aibotid` is one, the mention goes out
    /// as a frame on its connection; `None` otherwise.
    pub(crate) fn drive_long_connection_mention(
        &self,
        request: &BotMentionRequest,
        target_aibotid: Option<&str>,
    ) -> Option<Result<DriveOutcome, DriveError>> {
        let bot_id = {
            let state = lock(&self.hub().state);
            [request.bot.as_deref(), target_aibotid]
                .into_iter()
                .flatten()
                .find(|id| state.bots.contains_key(*id))?
                .to_owned()
        };
        let bot_id = bot_id.as_str();
        let msgid = random_id(32);
        let mut message = json!({
            "msgid": msgid,
            "aibotid": bot_id,
            "chattype": if request.chat_id.is_some() { "group" } else { "single" },
            "from": {"userid": request.from},
            "msgtype": "text",
            "text": {"content": request.content},
        });
        if let Some(chat_id) = &request.chat_id {
            message["chatid"] = json!(chat_id);
        }
        super::driver::add_quote(&mut message, request.quote.as_deref());
        Some(
            self.deliver_long_connection_message(bot_id, message)
                .map(|_| DriveOutcome {
                    attempts: 1,
                    bot_msgid: Some(msgid),
                    ..DriveOutcome::default()
                }),
        )
    }

    fn deliver_frame(&self, bot_id: &str, cmd: &str, body: Value) -> Result<String, DriveError> {
        let conversation = protocol::conversation_of(&body)
            .ok_or_else(|| DriveError::Invalid("the body names no chatid or from.userid".into()))?;
        let kind = match body
            .get("event")
            .and_then(|event| event.get("eventtype"))
            .and_then(Value::as_str)
        {
            None => InboundKind::Message,
            Some("enter_chat") => InboundKind::EnterChat,
            Some("template_card_event") => InboundKind::CardClick,
            Some(_) => InboundKind::OtherEvent,
        };
        let req_id = format!("{cmd}_{}", random_id(16));
        let mut state = lock(&self.hub().state);
        let live = state.live.get(bot_id).ok_or_else(|| {
            DriveError::Invalid(format!("bot {bot_id:?} has no live long connection"))
        })?;
        let frame = json!({"cmd": cmd, "headers": {"req_id": req_id}, "body": body});
        live.to_client
            .send(ToClient::Text(frame.to_string()))
            .map_err(|_| DriveError::Invalid("the long connection just closed".into()))?;
        if kind == InboundKind::Message {
            state
                .written
                .insert((bot_id.to_owned(), conversation.clone()));
        }
        state.inbound.insert(
            req_id.clone(),
            Inbound {
                bot_id: bot_id.to_owned(),
                conversation,
                kind,
                at: self.now(),
            },
        );
        Ok(req_id)
    }
}

/// What the endpoint answers to one frame.
enum Answer {
    Ack(Value),
    /// Accepted and delivered, but the connection drops before the ack.
    Drop,
    /// Accepted and delivered, no ack.
    Silence,
    /// Refused subscribe: ack with the error, then close.
    RefuseAndClose(Value),
}

async fn session(sim: Sim, mut socket: WebSocket) {
    let connection = sim.hub().next_connection.fetch_add(1, Ordering::SeqCst);
    let (to_client, mut outgoing) = mpsc::unbounded_channel::<ToClient>();
    let mut bot: Option<String> = None;
    loop {
        tokio::select! {
            received = tokio::time::timeout(IDLE_TIMEOUT, socket.recv()) => {
                let text = match received {
                    Err(_) => break, // heartbeat timeout
                    Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
                    Ok(Some(Ok(Message::Close(_)))) => break,
                    Ok(Some(Ok(_))) => continue,
                };
                let answer = sim.on_frame(connection, &to_client, &mut bot, &text);
                if let (Some(bot_id), Answer::Ack(ack)) = (&bot, &answer) {
                    let errcode = ack.get("errcode").and_then(Value::as_i64).unwrap_or(0);
                    if errcode != 0 {
                        lock(&sim.hub().state).refusals.push((bot_id.clone(), errcode));
                    }
                }
                let (ack, close) = match answer {
                    Answer::Ack(ack) => (Some(ack), false),
                    Answer::Silence => (None, false),
                    Answer::Drop => (None, true),
                    Answer::RefuseAndClose(ack) => (Some(ack), true),
                };
                if let Some(ack) = ack {
                    if socket.send(Message::Text(ack.to_string().into())).await.is_err() {
                        break;
                    }
                }
                if close {
                    break;
                }
            }
            out = outgoing.recv() => match out {
                Some(ToClient::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(ToClient::Close) | None => break,
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    if let Some(bot_id) = bot {
        let mut state = lock(&sim.hub().state);
        if state
            .live
            .get(&bot_id)
            .is_some_and(|live| live.connection == connection)
        {
            state.live.remove(&bot_id);
        }
    }
}

fn ack(req_id: &str, errcode: i64, errmsg: &str) -> Value {
    json!({"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg})
}

impl Sim {
    fn on_frame(
        &self,
        connection: u64,
        to_client: &mpsc::UnboundedSender<ToClient>,
        bot: &mut Option<String>,
        text: &str,
    ) -> Answer {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return Answer::RefuseAndClose(ack("", 40058, "frame is not JSON"));
        };
        let cmd = frame.get("cmd").and_then(Value::as_str).unwrap_or_default();
        let req_id = frame
            .pointer("/headers/req_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let body = frame.get("body").cloned().unwrap_or(Value::Null);
        let now = self.now();
        let mut state = lock(&self.hub().state);
        let Some(bot_id) = bot.clone() else {
            if cmd != CMD_SUBSCRIBE {
                return Answer::RefuseAndClose(ack(&req_id, 40058, "subscribe first"));
            }
            let bot_id = body.get("bot_id").and_then(Value::as_str).unwrap_or("");
            let secret = body.get("secret").and_then(Value::as_str).unwrap_or("");
            *state.subscribes.entry(bot_id.to_owned()).or_default() += 1;
            if state.bots.get(bot_id).is_none_or(|known| known != secret) {
                return Answer::RefuseAndClose(ack(&req_id, 40001, "invalid bot_id or secret"));
            }
            let previous = state.live.insert(
                bot_id.to_owned(),
                Live {
                    connection,
                    to_client: to_client.clone(),
                },
            );
            if let Some(previous) = previous {
                // One connection per bot: the older one is told, then closed.
                let notice = json!({
                    "cmd": CMD_EVENT_CALLBACK,
                    "headers": {"req_id": format!("{CMD_EVENT_CALLBACK}_{}", random_id(16))},
                    "body": {"msgtype": "event", "aibotid": bot_id,
                             "event": {"eventtype": DISPLACED_EVENT}},
                });
                let _ = previous.to_client.send(ToClient::Text(notice.to_string()));
                let _ = previous.to_client.send(ToClient::Close);
            }
            *bot = Some(bot_id.to_owned());
            return Answer::Ack(ack(&req_id, 0, "ok"));
        };
        let target = match cmd {
            CMD_PING if state.pings_unanswered => return Answer::Silence,
            CMD_PING => return Answer::Ack(ack(&req_id, 0, "ok")),
            CMD_RESPOND_MSG | CMD_RESPOND_WELCOME | CMD_RESPOND_UPDATE => {
                let (wanted, deadline) = match cmd {
                    CMD_RESPOND_MSG => (InboundKind::Message, MESSAGE_REPLY_SECS),
                    CMD_RESPOND_WELCOME => (InboundKind::EnterChat, EVENT_REPLY_SECS),
                    _ => (InboundKind::CardClick, EVENT_REPLY_SECS),
                };
                let inbound = state
                    .inbound
                    .get(&req_id)
                    .filter(|inbound| inbound.bot_id == bot_id && inbound.kind == wanted);
                let Some(inbound) = inbound else {
                    return Answer::Ack(ack(&req_id, 40058, "unknown req_id for this command"));
                };
                if (now - inbound.at).num_seconds() > deadline {
                    return Answer::Ack(ack(&req_id, 40058, "req_id expired"));
                }
                inbound.conversation.clone()
            }
            CMD_SEND_MSG => {
                let chat = body.get("chatid").and_then(Value::as_str).unwrap_or("");
                if !state.written.contains(&(bot_id.clone(), chat.to_owned())) {
                    return Answer::Ack(ack(
                        &req_id,
                        40058,
                        "no member has written to the bot in this conversation",
                    ));
                }
                chat.to_owned()
            }
            _ => return Answer::Ack(ack(&req_id, 40058, "unknown cmd")),
        };
        let (msgtype, content) = match content_of(cmd, &body) {
            Ok(content) => content,
            Err(refusal) => return Answer::Ack(ack(&req_id, refusal.0, refusal.1)),
        };
        let window = state
            .sent
            .entry((bot_id.clone(), target.clone()))
            .or_default();
        window.retain(|at| (now - *at).num_seconds() < 3600);
        let last_minute = window
            .iter()
            .filter(|at| (now - **at).num_seconds() < 60)
            .count();
        if last_minute >= PER_CONVERSATION_PER_MINUTE as usize
            || window.len() >= PER_CONVERSATION_PER_HOUR as usize
        {
            return Answer::Ack(ack(&req_id, 45009, "api freq out of limit"));
        }
        window.push(now);
        let fault = state.faults.pop_front();
        drop(state);
        let sent = Sent {
            route: Route::BotResponse,
            msgtype: &msgtype,
            content: &content,
            now,
            msgid: &random_id(32),
            sender: &bot_id,
        };
        self.state().deliver(&sent, target);
        match fault {
            None => Answer::Ack(ack(&req_id, 0, "ok")),
            Some(LongConnFault::DropMidReply) => Answer::Drop,
            Some(LongConnFault::MissingAck) => Answer::Silence,
        }
    }
}

/// The message type and the type's object of an answer or push; plain text
/// is refused (40008) as WeCom does in this mode.
fn content_of(cmd: &str, body: &Value) -> Result<(String, Value), (i64, &'static str)> {
    if cmd == CMD_RESPOND_UPDATE {
        let card = body
            .get("template_card")
            .cloned()
            .ok_or((40058, "template_card missing"))?;
        return Ok(("update_template_card".to_owned(), card));
    }
    let msgtype = body.get("msgtype").and_then(Value::as_str).unwrap_or("");
    match msgtype {
        "markdown" | "template_card" | "stream" => {
            let object = body.get(msgtype).cloned().unwrap_or(Value::Null);
            if msgtype == "markdown" && object.get("content").and_then(Value::as_str).is_none() {
                return Err((40058, "markdown.content missing"));
            }
            Ok((msgtype.to_owned(), object))
        }
        "text" if cmd == CMD_RESPOND_WELCOME => Ok((
            msgtype.to_owned(),
            body.get("text").cloned().unwrap_or(Value::Null),
        )),
        _ => Err((40008, "invalid message type")),
    }
}
