//! Decrypted WeCom callbacks into typed [`Event`]s. Pure: no I/O, no clock.
//!
//! Two inputs (docs/wecom.md#callback-envelopes):
//! - the outer envelope of a POST, before decryption: [`parse_xml_envelope`] for
//!   self-built apps, [`parse_json_envelope`] for the smart bot;
//! - the decrypted plaintext: [`parse_app_xml`] (app messages and 客户联系 events) or
//!   [`parse_bot_json`] (smart-bot callbacks).
//!
//! Anything well-formed we do not model becomes [`Event::Unknown`], never an error.
//! Errors name the field and the reason but never echo decrypted content, so they are
//! safe to log and to show a client.
//!
//! XML hardening: any DOCTYPE or markup declaration is refused, entities are never
//! expanded beyond the five predefined ones and numeric character references, and
//! the parser is one streaming pass with no recursion.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod bot;
mod xml;

#[cfg(test)]
mod tests;

pub use bot::strip_leading_mention;

/// Why a callback body could not be parsed. Messages name the field and the reason
/// and never contain decrypted content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The document contains `<!DOCTYPE …>` or another markup declaration
    /// (`<!ENTITY`, `<!ELEMENT`, …). Refused outright: XXE and entity-bomb hardening.
    #[error("DOCTYPE and entity declarations are not allowed")]
    DoctypeNotAllowed,
    /// A `&name;` reference other than the five predefined XML entities.
    #[error("entity reference not allowed: only &lt; &gt; &amp; &apos; &quot; and numeric character references are")]
    EntityNotAllowed,
    /// Not a well-formed document of the expected shape.
    #[error("malformed document: {reason}")]
    Malformed { reason: String },
    /// A field the event kind requires is absent.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is unusable.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl ParseError {
    fn malformed(reason: impl Into<String>) -> Self {
        ParseError::Malformed {
            reason: reason.into(),
        }
    }

    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ParseError::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

/// The outer XML body of a POST callback (docs/wecom.md#xml-envelope), before decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlEnvelope {
    /// CorpID (or SuiteId for third-party instruction callbacks).
    pub to_user_name: Option<String>,
    /// The base64 ciphertext, exactly as sent: it is what the signature covers.
    pub encrypt: String,
    /// The app id; absent or empty for events not tied to an app.
    pub agent_id: Option<String>,
}

/// Reads the outer XML envelope of a POST callback. `Encrypt` is required and must
/// not be empty; `ToUserName` and `AgentID` are optional text.
pub fn parse_xml_envelope(body: &str) -> Result<XmlEnvelope, ParseError> {
    xml::parse_envelope(body)
}

/// Reads the ciphertext from a smart-bot JSON body `{"encrypt": "…"}` (docs/wecom.md#json-envelope). The key
/// is matched case-insensitively; other keys (`tousername`, `agentid`) are ignored.
pub fn parse_json_envelope(body: &str) -> Result<String, ParseError> {
    bot::parse_envelope(body)
}

/// Parses the decrypted XML of a self-built app callback (docs/wecom.md#callback-events).
pub fn parse_app_xml(plaintext: &str) -> Result<Event, ParseError> {
    xml::parse_app(plaintext)
}

/// Parses the decrypted JSON of a smart-bot callback (docs/wecom.md#smart-bot-callbacks).
pub fn parse_bot_json(plaintext: &str) -> Result<Event, ParseError> {
    bot::parse(plaintext)
}

/// One inbound callback, typed. Stored as JSON in the inbox and read back later, so
/// it round-trips through `serde_json`; the `kind` tag equals [`Event::kind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `change_external_chat`: a customer group was created, changed or dismissed.
    #[serde(rename = "change_external_chat")]
    ExternalChatChange(ExternalChatChange),
    /// `change_external_contact`: a customer was added, edited, deleted, transferred.
    #[serde(rename = "change_external_contact")]
    ExternalContactChange(ExternalContactChange),
    /// A member typed text into the app's 1:1 chat.
    AppText(AppText),
    /// `enter_agent`: a member opened the app.
    EnterAgent(EnterAgent),
    /// A smart-bot message (@-mention in a group, or 1:1).
    BotMessage(BotMessage),
    /// A smart-bot stream refresh poll: answer with the full text so far.
    BotStreamRefresh(BotStreamRefresh),
    /// A smart-bot event (`enter_chat`, `template_card_event`, `feedback_event`).
    BotEvent(BotEvent),
    /// Any other well-formed callback, kept verbatim for inspection.
    Unknown {
        msg_type: Option<String>,
        event: Option<String>,
        /// The full decrypted plaintext.
        raw: String,
    },
}

impl Event {
    /// Stable short name, used as the serde tag and in logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ExternalChatChange(_) => "change_external_chat",
            Event::ExternalContactChange(_) => "change_external_contact",
            Event::AppText(_) => "app_text",
            Event::EnterAgent(_) => "enter_agent",
            Event::BotMessage(_) => "bot_message",
            Event::BotStreamRefresh(_) => "bot_stream_refresh",
            Event::BotEvent(_) => "bot_event",
            Event::Unknown { .. } => "unknown",
        }
    }

    /// The group this event is about, when it names one.
    pub fn chat_id(&self) -> Option<&str> {
        match self {
            Event::ExternalChatChange(change) => Some(&change.chat_id),
            Event::BotMessage(message) => message.chat_id.as_deref(),
            Event::BotStreamRefresh(refresh) => refresh.chat_id.as_deref(),
            Event::BotEvent(event) => event.chat_id.as_deref(),
            Event::ExternalContactChange(_)
            | Event::AppText(_)
            | Event::EnterAgent(_)
            | Event::Unknown { .. } => None,
        }
    }

    /// The inbox deduplication key (docs/wecom.md#deduplication): `msg:<MsgId>` for app messages,
    /// `bot:<msgid>` for smart-bot callbacks that carry one, otherwise
    /// `sha256:<hex>` of the full decrypted plaintext. Never FromUserName+CreateTime:
    /// distinct `sys` events routinely share both.
    pub fn dedupe_key(&self, plaintext: &[u8]) -> String {
        let bot_msg_id = match self {
            Event::AppText(text) => return format!("msg:{}", text.msg_id),
            Event::BotMessage(message) => Some(message.msg_id.as_str()),
            Event::BotStreamRefresh(refresh) => refresh.msg_id.as_deref(),
            Event::BotEvent(event) => event.msg_id.as_deref(),
            Event::ExternalChatChange(_)
            | Event::ExternalContactChange(_)
            | Event::EnterAgent(_)
            | Event::Unknown { .. } => None,
        };
        match bot_msg_id {
            Some(msg_id) => format!("bot:{msg_id}"),
            None => format!("sha256:{}", hex::encode(Sha256::digest(plaintext))),
        }
    }
}

/// Fields every app message and event carries (docs/wecom.md#callback-events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHeader {
    /// CorpID.
    pub to_user_name: String,
    /// Member UserID, or `sys` for 客户联系/客户群 system events.
    pub from_user_name: String,
    /// Unix seconds.
    pub create_time: i64,
    /// App id; absent or empty on 客户联系 events.
    pub agent_id: Option<String>,
}

/// Declares an enum of WeCom's known wire strings plus `Other(String)` for values a
/// later WeCom may add. It (de)serialises as the plain wire string, and `Other` never
/// holds a known value when built through `From`.
macro_rules! wire_string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$variant_meta:meta])* $variant:ident => $wire:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The value as WeCom sends it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(wire: &str) -> Self {
                match wire {
                    $( $wire => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(wire: String) -> Self {
                match wire.as_str() {
                    $( $wire => $name::$variant, )+
                    _ => $name::Other(wire),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                match value {
                    $name::Other(other) => other,
                    known => known.as_str().to_owned(),
                }
            }
        }
    };
}

wire_string_enum! {
    /// `ChangeType` of `change_external_chat`.
    pub enum ChatChangeType {
        Create => "create",
        Update => "update",
        Dismiss => "dismiss",
    }
}

wire_string_enum! {
    /// `UpdateDetail` of a `change_external_chat` update.
    pub enum ChatUpdateDetail {
        AddMember => "add_member",
        DelMember => "del_member",
        ChangeOwner => "change_owner",
        ChangeName => "change_name",
        ChangeNotice => "change_notice",
    }
}

wire_string_enum! {
    /// `ChangeType` of `change_external_contact` (docs/wecom.md#change_external_contact).
    pub enum ContactChangeType {
        /// A member added a customer.
        AddExternalContact => "add_external_contact",
        /// A member edited the customer's remark or tags.
        EditExternalContact => "edit_external_contact",
        /// A customer added the member without verification, not yet confirmed.
        AddHalfExternalContact => "add_half_external_contact",
        /// The member deleted the customer.
        DelExternalContact => "del_external_contact",
        /// The customer deleted the member.
        DelFollowUser => "del_follow_user",
        /// Transferring the customer to another member failed.
        TransferFail => "transfer_fail",
    }
}

wire_string_enum! {
    /// `chattype` of a smart-bot callback.
    pub enum BotChatType {
        Single => "single",
        Group => "group",
    }
}

/// `change_external_chat` (docs/wecom.md#change_external_chat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalChatChange {
    pub header: AppHeader,
    pub chat_id: String,
    pub change_type: ChatChangeType,
    pub update_detail: Option<ChatUpdateDetail>,
    /// Callback code space: `0` invited by a member, `3` scanned the group QR code.
    pub join_scene: Option<u32>,
    /// `0` left by themselves, `1` removed by owner/admin.
    pub quit_scene: Option<u32>,
    pub mem_change_cnt: Option<u32>,
    /// Affected member UserIDs or external userids; from `<Item>` children or the
    /// older comma-separated text.
    pub mem_change_list: Vec<String>,
    /// Member version before the change: compare with the stored one (docs/wecom.md#change_external_chat).
    pub last_mem_ver: Option<String>,
    pub cur_mem_ver: Option<String>,
}

/// `change_external_contact` (docs/wecom.md#change_external_contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalContactChange {
    pub header: AppHeader,
    pub change_type: ContactChangeType,
    /// The member (for `transfer_fail`: the receiving member).
    pub user_id: String,
    pub external_user_id: String,
    /// The `state` of the 「联系我」 config or the 获客链接 `customer_channel`.
    pub state: Option<String>,
    /// One-shot code for `send_welcome_msg`, valid 20 seconds.
    pub welcome_code: Option<String>,
    /// `DELETE_BY_TRANSFER` on `del_external_contact` after an in-service transfer.
    pub source: Option<String>,
    /// `customer_refused` / `customer_limit_exceed` on `transfer_fail`.
    pub fail_reason: Option<String>,
}

/// A text message to the app (docs/wecom.md#app-text-messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppText {
    pub header: AppHeader,
    /// Exactly as typed: newlines and emoji kept, never trimmed.
    pub content: String,
    /// 64-bit, above 2^53 in practice: parsed from digits, never through a float.
    pub msg_id: u64,
}

/// `enter_agent` (docs/wecom.md#enter_agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterAgent {
    pub header: AppHeader,
    pub event_key: Option<String>,
}

/// `msgtype` of a smart-bot message we model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMsgType {
    Text,
    Mixed,
    Image,
    /// Already transcribed to text by WeCom.
    Voice,
    File,
}

/// A smart-bot message (docs/wecom.md#smart-bot-callbacks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotMessage {
    /// Unique per callback; a re-delivery repeats it.
    pub msg_id: String,
    pub aibot_id: String,
    /// Only present in group chats.
    pub chat_id: Option<String>,
    pub chat_type: BotChatType,
    pub from_user_id: String,
    /// Present for bots used outside the sender's corp.
    pub from_corp_id: Option<String>,
    /// One-shot URL for an asynchronous answer (valid one hour).
    pub response_url: Option<String>,
    pub msg_type: BotMsgType,
    /// `raw_text` with the leading `@BotName` stripped: what keyword rules match on.
    pub text: String,
    /// The text as sent (text parts of a mixed message joined with `\n`; the
    /// transcription of a voice message; empty for image and file).
    pub raw_text: String,
    /// Download URLs (valid 5 minutes, content AES-encrypted with the callback key).
    pub image_urls: Vec<String>,
    pub file_url: Option<String>,
    pub quote: Option<BotQuote>,
    pub create_time: Option<i64>,
}

/// The message a smart-bot message quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotQuote {
    pub msg_type: String,
    pub text: Option<String>,
    pub image_urls: Vec<String>,
}

/// A smart-bot stream refresh (`msgtype = "stream"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotStreamRefresh {
    pub msg_id: Option<String>,
    /// The id we chose in our first stream reply.
    pub stream_id: String,
    pub aibot_id: Option<String>,
    pub chat_id: Option<String>,
    pub chat_type: Option<BotChatType>,
    pub from_user_id: Option<String>,
}

/// `event.eventtype` of a smart-bot event we model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotEventType {
    /// First time that day a user opened the 1:1 chat with the bot.
    EnterChat,
    /// A click on a template card; delivered once, answer within 5 s.
    TemplateCardEvent,
    /// Thumbs up/down on a bot answer; only an empty reply is allowed.
    FeedbackEvent,
}

/// A smart-bot event (`msgtype = "event"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotEvent {
    pub msg_id: Option<String>,
    pub event_type: BotEventType,
    pub aibot_id: Option<String>,
    pub from_user_id: Option<String>,
    pub chat_id: Option<String>,
    pub chat_type: Option<BotChatType>,
    pub create_time: Option<i64>,
    pub response_url: Option<String>,
    /// `template_card_event.event_key`: which button was pressed.
    pub event_key: Option<String>,
    /// `template_card_event.task_id`: must match when updating the card.
    pub task_id: Option<String>,
    /// The type-specific object (`event.<eventtype>`), kept whole; `null` if absent.
    pub detail: serde_json::Value,
}
