//! Smart-bot (智能机器人) JSON: the envelope and the decrypted callbacks
//! (docs/wecom.md#json-envelope, docs/wecom.md#smart-bot-callbacks).
//!
//! Read through `serde_json::Value` so every error can name the exact field without
//! echoing its value (serde's typed errors quote the offending input). serde_json
//! caps nesting at 128 levels, so deep documents fail cleanly instead of overflowing.

use serde_json::{Map, Value};

use super::{
    BotChatType, BotEvent, BotEventType, BotMessage, BotMsgType, BotQuote, BotStreamRefresh, Event,
    ParseError,
};

type Object = Map<String, Value>;

pub(super) fn parse_envelope(body: &str) -> Result<String, ParseError> {
    let document = parse_object(body)?;
    let mut ciphertext = None;
    for (key, value) in &document {
        if !key.eq_ignore_ascii_case("encrypt") {
            continue;
        }
        if ciphertext.is_some() {
            return Err(ParseError::invalid("encrypt", "appears more than once"));
        }
        ciphertext = Some(match value {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::String(_) => return Err(ParseError::invalid("encrypt", "must not be empty")),
            _ => return Err(ParseError::invalid("encrypt", "must be a string")),
        });
    }
    ciphertext.ok_or(ParseError::MissingField("encrypt"))
}

pub(super) fn parse(plaintext: &str) -> Result<Event, ParseError> {
    let document = parse_object(plaintext)?;
    let msg_type = text(&document, "msgtype", "msgtype")?;
    let event = match msg_type.as_deref() {
        Some("text") => Event::BotMessage(message(&document, BotMsgType::Text)?),
        Some("mixed") => Event::BotMessage(message(&document, BotMsgType::Mixed)?),
        Some("image") => Event::BotMessage(message(&document, BotMsgType::Image)?),
        Some("voice") => Event::BotMessage(message(&document, BotMsgType::Voice)?),
        Some("file") => Event::BotMessage(message(&document, BotMsgType::File)?),
        Some("stream") => Event::BotStreamRefresh(stream_refresh(&document)?),
        Some("event") => {
            let body =
                nested(&document, "event", "event")?.ok_or(ParseError::MissingField("event"))?;
            let event_type = text(body, "eventtype", "event.eventtype")?
                .ok_or(ParseError::MissingField("event.eventtype"))?;
            let known = match event_type.as_str() {
                "enter_chat" => Some(BotEventType::EnterChat),
                "template_card_event" => Some(BotEventType::TemplateCardEvent),
                "feedback_event" => Some(BotEventType::FeedbackEvent),
                _ => None,
            };
            match known {
                Some(kind) => Event::BotEvent(bot_event(&document, body, kind, &event_type)?),
                None => Event::Unknown {
                    msg_type,
                    event: Some(event_type),
                    raw: plaintext.to_owned(),
                },
            }
        }
        _ => Event::Unknown {
            msg_type,
            event: None,
            raw: plaintext.to_owned(),
        },
    };
    Ok(event)
}

fn parse_object(json: &str) -> Result<Object, ParseError> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ParseError::malformed("JSON document is not an object")),
        // serde_json's syntax messages are fixed texts plus a position; they never
        // quote the input.
        Err(error) => Err(ParseError::malformed(format!("invalid JSON: {error}"))),
    }
}

fn message(document: &Object, msg_type: BotMsgType) -> Result<BotMessage, ParseError> {
    let from = nested(document, "from", "from")?.ok_or(ParseError::MissingField("from"))?;
    let content = match msg_type {
        BotMsgType::Text => Content {
            text: required_content(document, "text", "text.content")?,
            ..Content::default()
        },
        BotMsgType::Voice => Content {
            text: required_content(document, "voice", "voice.content")?,
            ..Content::default()
        },
        BotMsgType::Mixed => mixed(document)?,
        BotMsgType::Image => {
            let image =
                nested(document, "image", "image")?.ok_or(ParseError::MissingField("image.url"))?;
            let url =
                text(image, "url", "image.url")?.ok_or(ParseError::MissingField("image.url"))?;
            Content {
                image_urls: vec![url],
                ..Content::default()
            }
        }
        BotMsgType::File => {
            let file =
                nested(document, "file", "file")?.ok_or(ParseError::MissingField("file.url"))?;
            Content {
                file_url: Some(
                    text(file, "url", "file.url")?.ok_or(ParseError::MissingField("file.url"))?,
                ),
                ..Content::default()
            }
        }
    };
    let raw_text = content.text;
    Ok(BotMessage {
        msg_id: id(document, "msgid", "msgid")?.ok_or(ParseError::MissingField("msgid"))?,
        aibot_id: id(document, "aibotid", "aibotid")?.ok_or(ParseError::MissingField("aibotid"))?,
        chat_id: id(document, "chatid", "chatid")?,
        chat_type: text(document, "chattype", "chattype")?
            .filter(|value| !value.is_empty())
            .map(BotChatType::from)
            .ok_or(ParseError::MissingField("chattype"))?,
        from_user_id: id(from, "userid", "from.userid")?
            .ok_or(ParseError::MissingField("from.userid"))?,
        from_corp_id: id(from, "corpid", "from.corpid")?,
        response_url: text(document, "response_url", "response_url")?
            .filter(|value| !value.is_empty()),
        msg_type,
        text: strip_leading_mention(&raw_text).to_owned(),
        raw_text,
        image_urls: content.image_urls,
        file_url: content.file_url,
        quote: quote(document),
        create_time: integer(document, "create_time", "create_time")?,
    })
}

/// What a message (or a quoted message) says.
#[derive(Default)]
struct Content {
    text: String,
    image_urls: Vec<String>,
    file_url: Option<String>,
}

/// `{"<kind>": {"content": "…"}}`, required for text and voice.
fn required_content(
    document: &Object,
    kind: &str,
    field: &'static str,
) -> Result<String, ParseError> {
    let body = nested(document, kind, field)?.ok_or(ParseError::MissingField(field))?;
    text(body, "content", field)?.ok_or(ParseError::MissingField(field))
}

/// `mixed.msg_item[]`: text parts joined with `\n`, image URLs kept in order.
fn mixed(document: &Object) -> Result<Content, ParseError> {
    let mixed =
        nested(document, "mixed", "mixed")?.ok_or(ParseError::MissingField("mixed.msg_item"))?;
    let items = match mixed.get("msg_item") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(ParseError::MissingField("mixed.msg_item")),
        Some(_) => return Err(ParseError::invalid("mixed.msg_item", "must be an array")),
    };
    let mut texts = Vec::new();
    let mut image_urls = Vec::new();
    for item in items {
        let Value::Object(item) = item else {
            return Err(ParseError::invalid(
                "mixed.msg_item",
                "every item must be an object",
            ));
        };
        match text(item, "msgtype", "mixed.msg_item.msgtype")?.as_deref() {
            Some("text") => texts.push(required_content(
                item,
                "text",
                "mixed.msg_item.text.content",
            )?),
            Some("image") => {
                let image = nested(item, "image", "mixed.msg_item.image")?
                    .ok_or(ParseError::MissingField("mixed.msg_item.image.url"))?;
                image_urls.push(
                    text(image, "url", "mixed.msg_item.image.url")?
                        .ok_or(ParseError::MissingField("mixed.msg_item.image.url"))?,
                );
            }
            // Item kinds added later carry nothing we match on.
            _ => {}
        }
    }
    Ok(Content {
        text: texts.join("\n"),
        image_urls,
        file_url: None,
    })
}

/// The quoted message is context only: read what is there, never fail on it.
fn quote(document: &Object) -> Option<BotQuote> {
    let quote = nested(document, "quote", "quote").ok()??;
    let msg_type = text(quote, "msgtype", "quote.msgtype").ok()??;
    let text_of = |kind: &str| {
        nested(quote, kind, "quote")
            .ok()
            .flatten()
            .and_then(|body| text(body, "content", "quote").ok().flatten())
    };
    let (quoted_text, image_urls) = match msg_type.as_str() {
        "text" => (text_of("text"), Vec::new()),
        "voice" => (text_of("voice"), Vec::new()),
        "mixed" => match mixed(quote) {
            Ok(content) => (Some(content.text), content.image_urls),
            Err(_) => (None, Vec::new()),
        },
        "image" => {
            let url = nested(quote, "image", "quote")
                .ok()
                .flatten()
                .and_then(|image| text(image, "url", "quote").ok().flatten());
            (None, url.into_iter().collect())
        }
        _ => (None, Vec::new()),
    };
    Some(BotQuote {
        msg_type,
        text: quoted_text,
        image_urls,
    })
}

fn stream_refresh(document: &Object) -> Result<BotStreamRefresh, ParseError> {
    let stream =
        nested(document, "stream", "stream")?.ok_or(ParseError::MissingField("stream.id"))?;
    let from = nested(document, "from", "from")?;
    Ok(BotStreamRefresh {
        msg_id: id(document, "msgid", "msgid")?,
        stream_id: id(stream, "id", "stream.id")?.ok_or(ParseError::MissingField("stream.id"))?,
        aibot_id: id(document, "aibotid", "aibotid")?,
        chat_id: id(document, "chatid", "chatid")?,
        chat_type: chat_type(document)?,
        from_user_id: from
            .map(|from| id(from, "userid", "from.userid"))
            .transpose()?
            .flatten(),
    })
}

fn bot_event(
    document: &Object,
    body: &Object,
    event_type: BotEventType,
    wire_event_type: &str,
) -> Result<BotEvent, ParseError> {
    let from = nested(document, "from", "from")?;
    let detail = body.get(wire_event_type).cloned().unwrap_or(Value::Null);
    let card = match (&event_type, &detail) {
        (BotEventType::TemplateCardEvent, Value::Object(card)) => Some(card),
        _ => None,
    };
    let card_text = |key: &str, field: &'static str| match card {
        Some(card) => text(card, key, field),
        None => Ok(None),
    };
    Ok(BotEvent {
        msg_id: id(document, "msgid", "msgid")?,
        event_type,
        aibot_id: id(document, "aibotid", "aibotid")?,
        from_user_id: from
            .map(|from| id(from, "userid", "from.userid"))
            .transpose()?
            .flatten(),
        chat_id: id(document, "chatid", "chatid")?,
        chat_type: chat_type(document)?,
        create_time: integer(document, "create_time", "create_time")?,
        response_url: text(document, "response_url", "response_url")?
            .filter(|value| !value.is_empty()),
        event_key: card_text("event_key", "event.template_card_event.event_key")?,
        task_id: card_text("task_id", "event.template_card_event.task_id")?,
        detail,
    })
}

fn chat_type(document: &Object) -> Result<Option<BotChatType>, ParseError> {
    Ok(text(document, "chattype", "chattype")?
        .filter(|value| !value.is_empty())
        .map(BotChatType::from))
}

/// A nested object; absent or `null` is `None`.
fn nested<'v>(
    object: &'v Object,
    key: &str,
    field: &'static str,
) -> Result<Option<&'v Object>, ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(ParseError::invalid(field, "must be an object")),
    }
}

/// A string kept exactly (empty included); absent or `null` is `None`.
fn text(object: &Object, key: &str, field: &'static str) -> Result<Option<String>, ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ParseError::invalid(field, "must be a string")),
    }
}

/// An identifier: a non-empty string, or an integer taken as its decimal text
/// (serde_json keeps 64-bit integers exact). Absent, `null` or empty is `None`.
fn id(object: &Object, key: &str, field: &'static str) -> Result<Option<String>, ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) if number.is_u64() || number.is_i64() => {
            Ok(Some(number.to_string()))
        }
        Some(_) => Err(ParseError::invalid(field, "must be a string")),
    }
}

/// An integer given as a JSON number or as decimal text.
fn integer(object: &Object, key: &str, field: &'static str) -> Result<Option<i64>, ParseError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| ParseError::invalid(field, "must be a 64-bit integer")),
        Some(Value::String(digits)) => digits
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ParseError::invalid(field, "must be a 64-bit integer")),
        Some(_) => Err(ParseError::invalid(field, "must be a 64-bit integer")),
    }
}

/// Removes a leading `@Name` mention and the separator after it:
/// `"@运营助手 签到"` → `"签到"`. Text that does not start with a mention (after
/// leading whitespace) is returned unchanged; mentions later in the text are kept.
///
/// The name runs to the first whitespace (any Unicode whitespace: WeCom puts U+2005
/// or a plain space after a mention; full-width U+3000 also counts) or zero-width
/// space. A name that itself contains a space cannot be told apart from the text.
pub fn strip_leading_mention(text: &str) -> &str {
    let start = text.trim_start_matches(is_separator);
    let Some(after_at) = start.strip_prefix('@').or_else(|| start.strip_prefix('＠')) else {
        return text;
    };
    match after_at.find(is_separator) {
        Some(name_end) => after_at[name_end..].trim_start_matches(is_separator),
        // Only the mention, nothing after it.
        None => "",
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}
