//! Inbox row → domain event: what the pipeline (and the analytics job, which
//! counts posted messages) reads out of a stored callback or archived message.

use chrono::{DateTime, Utc};

use crate::ingest::IngestMessage;
use crate::rules::event::{
    is_helpful_mark, CustomerAdded, JoinScene, MembersJoined, MembersLeft, MessagePosted,
    MessageReported, MessageSource, QuotedMark, ReplyVia, ESSENCE_KEYWORD, REPORT_KEYWORD,
};
use crate::rules::{Event, EventKind};
use crate::store::inbox::{InboxKind, InboxRow};
use crate::wecom::message::{self, BotChatType, ChatUpdateDetail, ContactChangeType};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("inbox event_json is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("inbox event of kind {kind} lacks {field}")]
    MissingField {
        kind: InboxKind,
        field: &'static str,
    },
}

/// When an event happened: WeCom's `CreateTime`, but never later than the
/// callback arrived (a sender clock running ahead must not stretch a window
/// that runs from the event, such as a welcome code's 20 s).
fn event_time(create_time: i64, received_at: i64) -> DateTime<Utc> {
    let at = create_time.min(received_at);
    DateTime::from_timestamp(at, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Turns a stored inbox row into a domain event; `None` for events the rules
/// don't act on (enter_agent, stream refreshes, group create/dismiss, unknown).
pub fn domain_event(row: &InboxRow, default_app: &str) -> Result<Option<Event>, ConvertError> {
    let id = row.dedupe_key.clone();
    if row.kind == InboxKind::IngestMessage {
        let message: IngestMessage = serde_json::from_str(&row.event_json)?;
        let image = message.chat_id.is_some() && message.msgtype.as_deref() == Some("image");
        let posted = MessagePosted {
            source: MessageSource::Archive,
            chat_id: message.chat_id,
            sender: message.sender,
            text: message.text,
            message_id: message.message_id,
            reply_via: ReplyVia::ChatRoute,
        };
        return Ok(Some(Event {
            id,
            kind: if image {
                EventKind::ImagePosted(posted)
            } else {
                EventKind::MessagePosted(posted)
            },
        }));
    }
    let wecom: message::Event = serde_json::from_str(&row.event_json)?;
    let missing = |field: &'static str| ConvertError::MissingField {
        kind: row.kind,
        field,
    };
    let kind = match wecom {
        message::Event::ExternalChatChange(change) => {
            let last_member_version = change.last_mem_ver.filter(|v| !v.is_empty());
            let current_member_version = change.cur_mem_ver.filter(|v| !v.is_empty());
            match change.update_detail {
                Some(ChatUpdateDetail::AddMember) => EventKind::MembersJoined(MembersJoined {
                    chat_id: change.chat_id,
                    user_ids: change.mem_change_list,
                    join_scene: JoinScene::from_callback_code(change.join_scene.map(i64::from)),
                    last_member_version,
                    current_member_version,
                }),
                Some(ChatUpdateDetail::DelMember) => EventKind::MembersLeft(MembersLeft {
                    chat_id: change.chat_id,
                    user_ids: change.mem_change_list,
                    removed: change.quit_scene == Some(1),
                    last_member_version,
                    current_member_version,
                }),
                _ => return Ok(None),
            }
        }
        message::Event::ExternalContactChange(change) => match change.change_type {
            ContactChangeType::AddExternalContact | ContactChangeType::AddHalfExternalContact => {
                EventKind::CustomerAdded(CustomerAdded {
                    at: event_time(change.header.create_time, row.received_at),
                    staff_user_id: change.user_id,
                    external_user_id: change.external_user_id,
                    welcome_code: change.welcome_code.filter(|c| !c.is_empty()),
                    state: change.state,
                })
            }
            _ => return Ok(None),
        },
        message::Event::AppText(text) => {
            let app = row
                .source
                .strip_prefix("app:")
                .map(str::to_string)
                .unwrap_or_else(|| default_app.to_string());
            EventKind::MessagePosted(MessagePosted {
                source: MessageSource::AppDirect,
                chat_id: None,
                sender: text.header.from_user_name,
                text: text.content,
                message_id: text.msg_id.to_string(),
                reply_via: ReplyVia::AppMessage { app },
            })
        }
        message::Event::BotMessage(bot) => {
            let response_url = bot.response_url.ok_or_else(|| missing("response_url"))?;
            // A command quoting a group message: 举报, 加精 or 有用. Quoted
            // images carry no text and cannot be found, so they stay messages.
            let quoted = bot.quote.as_ref().and_then(|quote| quote.text.clone());
            if let (Some(quoted_text), Some(chat_id)) = (quoted, bot.chat_id.clone()) {
                let command = bot.text.trim();
                let mark = QuotedMark {
                    chat_id,
                    by: bot.from_user_id.clone(),
                    quoted_text,
                    response_url: response_url.clone(),
                };
                let kind = if command.starts_with(REPORT_KEYWORD) {
                    Some(EventKind::MessageReported(MessageReported {
                        chat_id: mark.chat_id,
                        reporter: mark.by,
                        quoted_text: mark.quoted_text,
                        response_url: Some(mark.response_url),
                    }))
                } else if command.starts_with(ESSENCE_KEYWORD) {
                    Some(EventKind::ContentFeatured(mark))
                } else if is_helpful_mark(command) {
                    Some(EventKind::MarkedHelpful(mark))
                } else {
                    None
                };
                if let Some(kind) = kind {
                    return Ok(Some(Event { id, kind }));
                }
            }
            let image = !bot.image_urls.is_empty() && bot.chat_type != BotChatType::Single;
            let posted = MessagePosted {
                source: MessageSource::SmartBot,
                chat_id: match bot.chat_type {
                    BotChatType::Single => None,
                    _ => bot.chat_id,
                },
                sender: bot.from_user_id,
                text: bot.text,
                message_id: bot.msg_id,
                reply_via: ReplyVia::ResponseUrl(response_url),
            };
            if image {
                EventKind::ImagePosted(posted)
            } else {
                EventKind::MessagePosted(posted)
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(Event { id, kind }))
}
