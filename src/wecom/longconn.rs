//! The smart bot's long connection (长连接, docs/wecom.md#smart-bot-long-connection): the
//! frames qunyun and WeCom exchange over one WebSocket per bot, and the reply
//! address that lets an inbound message's answer find its way back to the
//! connection. Pure: no I/O, no clock.
//!
//! Every frame is JSON `{"cmd", "headers": {"req_id"}, "body"}`; WeCom's
//! acknowledgements carry no `cmd`, only the echoed `req_id` and an
//! `errcode`. The socket itself lives in `jobs::longconn`.

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

/// WeCom's long-connection endpoint.
pub const DEFAULT_WS_URL: &str = "wss://openws.work.weixin.qq.com";

pub const CMD_SUBSCRIBE: &str = "aibot_subscribe";
pub const CMD_PING: &str = "ping";
pub const CMD_MSG_CALLBACK: &str = "aibot_msg_callback";
pub const CMD_EVENT_CALLBACK: &str = "aibot_event_callback";
pub const CMD_RESPOND_MSG: &str = "aibot_respond_msg";
pub const CMD_RESPOND_WELCOME: &str = "aibot_respond_welcome_msg";
pub const CMD_RESPOND_UPDATE: &str = "aibot_respond_update_msg";
pub const CMD_SEND_MSG: &str = "aibot_send_msg";

/// `event.eventtype` WeCom sends to a connection another one replaced.
pub const DISPLACED_EVENT: &str = "disconnected_event";

/// One frame we send.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub cmd: &'static str,
    pub req_id: String,
    pub body: Option<Value>,
}

impl Frame {
    pub fn subscribe(req_id: String, bot_id: &str, secret: &str) -> Self {
        Self {
            cmd: CMD_SUBSCRIBE,
            req_id,
            body: Some(json!({"bot_id": bot_id, "secret": secret})),
        }
    }

    pub fn ping(req_id: String) -> Self {
        Self {
            cmd: CMD_PING,
            req_id,
            body: None,
        }
    }

    /// A reply to an inbound frame reuses that frame's `req_id`.
    pub fn respond(cmd: &'static str, inbound_req_id: &str, body: Value) -> Self {
        Self {
            cmd,
            req_id: inbound_req_id.to_owned(),
            body: Some(body),
        }
    }

    pub fn to_json(&self) -> String {
        let mut frame = Map::new();
        frame.insert("cmd".into(), Value::String(self.cmd.to_owned()));
        frame.insert("headers".into(), json!({"req_id": self.req_id}));
        if let Some(body) = &self.body {
            frame.insert("body".into(), body.clone());
        }
        Value::Object(frame).to_string()
    }
}

/// A frame WeCom sent us.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to one of our frames (no `cmd`).
    Ack {
        req_id: String,
        errcode: i64,
        errmsg: String,
    },
    /// `aibot_msg_callback`: `body` is the same JSON a callback URL receives.
    Message { req_id: String, body: Value },
    /// `aibot_event_callback` other than the displacement notice.
    Event { req_id: String, body: Value },
    /// Another connection subscribed this bot; WeCom closes this one.
    Displaced,
    /// A frame with a `cmd` we do not handle.
    Other { cmd: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not a JSON object")]
    NotAnObject,
    #[error("frame lacks headers.req_id")]
    NoReqId,
    #[error("{0} frame lacks a body object")]
    NoBody(&'static str),
}

/// Reads one text frame from WeCom. Error messages never echo the frame.
pub fn parse_incoming(text: &str) -> Result<Incoming, FrameError> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(FrameError::NotAnObject);
    };
    let req_id = frame
        .get("headers")
        .and_then(|headers| headers.get("req_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let cmd = frame.get("cmd").and_then(Value::as_str).unwrap_or_default();
    let body = |name| match frame.get("body") {
        Some(Value::Object(body)) => Ok(Value::Object(body.clone())),
        _ => Err(FrameError::NoBody(name)),
    };
    match cmd {
        "" => Ok(Incoming::Ack {
            req_id: req_id.ok_or(FrameError::NoReqId)?,
            errcode: frame.get("errcode").and_then(Value::as_i64).unwrap_or(0),
            errmsg: frame
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        CMD_MSG_CALLBACK => Ok(Incoming::Message {
            req_id: req_id.ok_or(FrameError::NoReqId)?,
            body: body(CMD_MSG_CALLBACK)?,
        }),
        CMD_EVENT_CALLBACK => {
            let body = body(CMD_EVENT_CALLBACK)?;
            let event_type = body
                .get("event")
                .and_then(|event| event.get("eventtype"))
                .and_then(Value::as_str);
            if event_type == Some(DISPLACED_EVENT) {
                return Ok(Incoming::Displaced);
            }
            Ok(Incoming::Event {
                req_id: req_id.ok_or(FrameError::NoReqId)?,
                body,
            })
        }
        other => Ok(Incoming::Other {
            cmd: other.to_owned(),
        }),
    }
}

/// Where the answer to an inbound long-connection message goes: the bot's
/// connection, the conversation (for the per-conversation limits) and the
/// inbound frame's `req_id`. It travels through the rules in the place a
/// callback message keeps its `response_url`, written as
/// `longconn:<bot>/<conversation>/<req_id>` (parts percent-encoded), so the
/// engine answers both transports the same way and the sender picks the
/// connection by the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddress {
    pub bot: String,
    /// The group's chatid, or the member's UserID in a 1:1 chat.
    pub conversation: String,
    pub req_id: String,
}

pub const ADDRESS_PREFIX: &str = "longconn:";

/// The `req_id` part of an address that answers no frame: a proactive push
/// (`aibot_send_msg`) into the conversation. Real `req_id`s are
/// `<cmd>_<ms>_<random>`, so this cannot collide with one.
pub const PUSH_REQ_ID: &str = "-push-";

impl ReplyAddress {
    /// The address of a proactive push into `conversation` (a group's chatid).
    pub fn push(bot: &str, conversation: &str) -> Self {
        Self {
            bot: bot.to_owned(),
            conversation: conversation.to_owned(),
            req_id: PUSH_REQ_ID.to_owned(),
        }
    }

    /// Whether this address is a push rather than the answer to a frame.
    pub fn is_push(&self) -> bool {
        self.req_id == PUSH_REQ_ID
    }

    pub fn render(&self) -> String {
        let part = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        format!(
            "{ADDRESS_PREFIX}{}/{}/{}",
            part(&self.bot),
            part(&self.conversation),
            part(&self.req_id)
        )
    }

    /// `None` for anything that is not a long-connection address (a real
    /// `response_url`).
    pub fn parse(address: &str) -> Option<Self> {
        let rest = address.strip_prefix(ADDRESS_PREFIX)?;
        let mut parts = rest.split('/');
        let mut next = || -> Option<String> {
            let raw = parts.next()?;
            let decoded = percent_decode_str(raw).decode_utf8().ok()?.into_owned();
            (!decoded.is_empty()).then_some(decoded)
        };
        let address = Self {
            bot: next()?,
            conversation: next()?,
            req_id: next()?,
        };
        parts.next().is_none().then_some(address)
    }

    /// The key of this conversation's rate window.
    pub fn rate_key(&self) -> String {
        rate_key(&self.bot, &self.conversation)
    }
}

/// The rate window of one conversation of one bot: replies and pushes
/// together are limited per conversation.
pub fn rate_key(bot: &str, conversation: &str) -> String {
    format!("longconn:{bot}:{conversation}")
}

/// Replies and pushes per conversation and minute (docs/wecom.md#smart-bot-long-connection).
pub const PER_CONVERSATION_PER_MINUTE: u32 = 30;
/// Replies and pushes per conversation and hour.
pub const PER_CONVERSATION_PER_HOUR: u32 = 1000;

/// The conversation a message body belongs to: the group's chatid, else the
/// sender's UserID (1:1).
pub fn conversation_of(body: &Value) -> Option<String> {
    let chat = body
        .get("chatid")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let user = body
        .get("from")
        .and_then(|from| from.get("userid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    chat.or(user).map(str::to_owned)
}

/// Sets the body's `response_url` to the reply address, so the inbound
/// message parses and flows like a callback message.
pub fn with_reply_address(mut body: Value, address: &ReplyAddress) -> Value {
    if let Value::Object(object) = &mut body {
        object.insert("response_url".into(), Value::String(address.render()));
    }
    body
}

/// The `aibot_respond_msg` body for a markdown answer.
pub fn markdown_body(content: &str) -> Value {
    json!({"msgtype": "markdown", "markdown": {"content": content}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_address_round_trips_with_awkward_parts() {
        let address = ReplyAddress {
            bot: "ops-bot".into(),
            conversation: "wr/1:a b".into(),
            req_id: "aibot_msg_callback_1/2%".into(),
        };
        let rendered = address.render();
        assert!(rendered.starts_with("longconn:ops%2Dbot/"));
        assert_eq!(ReplyAddress::parse(&rendered), Some(address));
        assert_eq!(
            ReplyAddress::parse("https://qyapi.weixin.qq.com/cgi-bin/aibot/response?x=1"),
            None
        );
        assert_eq!(ReplyAddress::parse("longconn:a/b"), None);
        assert_eq!(ReplyAddress::parse("longconn:a/b/c/d"), None);
    }

    #[test]
    fn acks_have_no_cmd_and_displacement_is_recognised() {
        assert_eq!(
            parse_incoming(r#"{"headers":{"req_id":"r1"},"errcode":40008,"errmsg":"bad"}"#),
            Ok(Incoming::Ack {
                req_id: "r1".into(),
                errcode: 40008,
                errmsg: "bad".into()
            })
        );
        assert_eq!(
            parse_incoming(
                r#"{"cmd":"aibot_event_callback","headers":{"req_id":"r"},"body":{"msgtype":"event","event":{"eventtype":"disconnected_event"}}}"#
            ),
            Ok(Incoming::Displaced)
        );
        assert_eq!(
            parse_incoming(r#"{"cmd":"aibot_msg_callback","headers":{"req_id":"r"}}"#),
            Err(FrameError::NoBody(CMD_MSG_CALLBACK))
        );
        assert_eq!(parse_incoming("[1]"), Err(FrameError::NotAnObject));
    }

    #[test]
    fn frames_serialise_with_headers_and_optional_body() {
        let ping: Value = serde_json::from_str(&Frame::ping("p1".into()).to_json()).unwrap();
        assert_eq!(ping, json!({"cmd": "ping", "headers": {"req_id": "p1"}}));
        let sub: Value =
            serde_json::from_str(&Frame::subscribe("s".into(), "B", "S").to_json()).unwrap();
        assert_eq!(sub["body"], json!({"bot_id": "B", "secret": "S"}));
    }

    #[test]
    fn conversation_is_the_chat_or_the_sender() {
        let group = json!({"chatid": "wr1", "from": {"userid": "u"}});
        let single = json!({"chattype": "single", "from": {"userid": "u"}});
        assert_eq!(conversation_of(&group).as_deref(), Some("wr1"));
        assert_eq!(conversation_of(&single).as_deref(), Some("u"));
    }
}
