//! qunyun's domain events: what happened in the community, independent of how
//! WeCom (or the archive ingest) told us. `pipeline` builds these from inbox rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One domain event. `id` is stable for the underlying delivery (the inbox
/// dedupe key), so every effect derived from it gets a stable unique key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// People joined a group (customer-group callback, or an app group sync).
    MembersJoined(MembersJoined),
    /// People left (or were removed from) a group.
    MembersLeft(MembersLeft),
    /// Text a member wrote, from any source.
    MessagePosted(MessagePosted),
    /// A staff member added a new customer (1:1); may carry a one-shot welcome code.
    CustomerAdded(CustomerAdded),
    /// A member reported a message: `举报` sent to the smart bot quoting it.
    MessageReported(MessageReported),
    /// A manager marked a message 精华: `加精` sent to the smart bot quoting it.
    ContentFeatured(QuotedMark),
    /// A member marked another member's message helpful (热心助人): `有用`
    /// (or a thanks word) sent to the smart bot quoting it.
    MarkedHelpful(QuotedMark),
    /// A group message carrying an image (smart bot or archive); its text,
    /// if any, is handled as a `MessagePosted` too.
    ImagePosted(MessagePosted),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersJoined {
    pub chat_id: String,
    pub user_ids: Vec<String>,
    pub join_scene: JoinScene,
    /// Member version before and after the change, when WeCom sent them.
    pub last_member_version: Option<String>,
    pub current_member_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinScene {
    /// Invited by a member (directly or by link): callback JoinScene 0.
    Invited,
    /// Scanned the group QR code: callback JoinScene 3.
    QrCode,
    Unknown,
}

impl JoinScene {
    /// Maps the callback code space (0 / 3), which differs from groupchat/get's.
    pub fn from_callback_code(code: Option<i64>) -> Self {
        match code {
            Some(0) => JoinScene::Invited,
            Some(3) => JoinScene::QrCode,
            _ => JoinScene::Unknown,
        }
    }

    /// Maps groupchat/get's `join_scene` (1 invited, 2 invite link, 3 QR code).
    pub fn from_groupchat_code(code: Option<i64>) -> Self {
        match code {
            Some(1 | 2) => JoinScene::Invited,
            Some(3) => JoinScene::QrCode,
            _ => JoinScene::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JoinScene::Invited => "invited",
            JoinScene::QrCode => "qrcode",
            JoinScene::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersLeft {
    pub chat_id: String,
    pub user_ids: Vec<String>,
    /// True when the owner/admin removed them (callback QuitScene 1).
    pub removed: bool,
    pub last_member_version: Option<String>,
    pub current_member_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosted {
    pub source: MessageSource,
    /// The group the text was written in; `None` for 1:1 messages.
    pub chat_id: Option<String>,
    pub sender: String,
    pub text: String,
    pub message_id: String,
    pub reply_via: ReplyVia,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageSource {
    /// A smart-bot @-mention (mention already stripped).
    SmartBot,
    /// A member's 1:1 text to the app.
    AppDirect,
    /// The message-archive ingest endpoint.
    Archive,
}

/// How an answer to this message can reach the member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyVia {
    /// The smart bot's one-shot response_url.
    ResponseUrl(String),
    /// `message/send` to the member from the named app.
    AppMessage { app: String },
    /// Post into the chat through whatever route the chat has (archive messages).
    ChatRoute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerAdded {
    pub staff_user_id: String,
    pub external_user_id: String,
    pub welcome_code: Option<String>,
    pub state: Option<String>,
    /// When WeCom says it happened (the callback's `CreateTime`): the welcome
    /// code is valid for 20 s from then, however late the callback is handled.
    pub at: DateTime<Utc>,
}

/// `举报` quoting a message (smart bot). The quote carries only the text, so
/// the reported author is found from the stored post fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReported {
    pub chat_id: String,
    pub reporter: String,
    pub quoted_text: String,
    pub response_url: Option<String>,
}

/// What a member sends the smart bot (quoting a message) to report it.
pub const REPORT_KEYWORD: &str = "举报";

/// `加精` or `有用` quoting a message (smart bot). Like a report, the quote
/// carries only the text: its author and id are found from the stored
/// content posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedMark {
    pub chat_id: String,
    pub by: String,
    pub quoted_text: String,
    pub response_url: String,
}

/// What a manager sends the smart bot (quoting a message) to mark it 精华.
pub const ESSENCE_KEYWORD: &str = "加精";

/// What a member sends the smart bot (quoting a message) to mark it helpful.
pub const HELPFUL_KEYWORD: &str = "有用";

/// Thanks that also mark the quoted message helpful.
pub const THANKS_KEYWORDS: &[&str] = &["谢谢", "感谢", "点赞"];

/// Whether a smart-bot message quoting another is a helpful mark: the whole
/// text (trailing punctuation and spaces aside) is `有用` or a thanks word.
/// Unlike `加精`, a prefix is not enough: "谢谢，但还有个问题…" quoting an
/// answer is a question, and must reach the commands and auto-replies.
pub fn is_helpful_mark(text: &str) -> bool {
    // Question marks stay: "有用？" asks, it does not mark.
    let word = text
        .trim()
        .trim_end_matches(|c: char| c.is_whitespace() || "!！~～.。…👍🙏".contains(c));
    word == HELPFUL_KEYWORD || THANKS_KEYWORDS.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_whole_word_is_a_helpful_mark() {
        for text in ["有用", " 谢谢！", "感谢~", "点赞👍", "谢谢！！"] {
            assert!(is_helpful_mark(text), "{text}");
        }
        for text in [
            "谢谢，但还有个问题",
            "有用吗？",
            "有用?",
            "非常感谢大家",
            "",
            "加精",
        ] {
            assert!(!is_helpful_mark(text), "{text}");
        }
    }
}
