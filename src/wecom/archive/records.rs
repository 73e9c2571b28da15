//! The SDK's JSON, typed: a `GetChatData` page of encrypted records, and one
//! decrypted message (docs/wecom.md#message-archive). Pure: no I/O.

use serde::Deserialize;

use crate::ingest::IngestMessage;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("GetChatData answered errcode {errcode}: {errmsg}")]
    Page { errcode: i64, errmsg: String },
    #[error("not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One record of a page, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EncryptedRecord {
    pub seq: u64,
    pub msgid: String,
    pub publickey_ver: u32,
    pub encrypt_random_key: String,
    pub encrypt_chat_msg: String,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    chatdata: Vec<EncryptedRecord>,
}

/// The records of a `GetChatData` answer, in the order given.
pub fn parse_page(json: &[u8]) -> Result<Vec<EncryptedRecord>, RecordError> {
    let page: Page = serde_json::from_slice(json)?;
    if page.errcode != 0 {
        return Err(RecordError::Page {
            errcode: page.errcode,
            errmsg: page.errmsg,
        });
    }
    Ok(page.chatdata)
}

/// What a decrypted message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    /// A recall: the id of the message taken back.
    Revoke {
        pre_msgid: String,
    },
    /// A member switched enterprises (`action = switch`, no `msgtype`).
    Switch,
    /// Any other type (image, file, mixed, ...), stored but not acted on.
    Other,
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub msgid: String,
    /// `send`, `recall` or `switch`.
    pub action: String,
    pub from: Option<String>,
    /// The group's id; `None` for a 1:1 chat.
    pub roomid: Option<String>,
    /// Unix milliseconds.
    pub msgtime: Option<i64>,
    pub msgtype: Option<String>,
    pub body: Body,
}

#[derive(Deserialize)]
struct Raw {
    msgid: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    roomid: Option<String>,
    #[serde(default)]
    msgtime: Option<i64>,
    /// `switch` records carry `time` instead.
    #[serde(default)]
    time: Option<i64>,
    #[serde(default)]
    msgtype: Option<String>,
    #[serde(default)]
    text: Option<Content>,
    #[serde(default)]
    revoke: Option<Revoke>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct Revoke {
    #[serde(default)]
    pre_msgid: String,
}

/// The plaintext may hold raw control characters, which JSON forbids inside
/// strings; the SDK's wrappers drop them, and so do we (tab, newline and
/// carriage return between tokens are kept).
pub fn clean_plaintext(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r'))
        .collect()
}

/// One decrypted message, typed.
pub fn parse_message(plaintext: &[u8]) -> Result<ArchivedMessage, RecordError> {
    let cleaned = clean_plaintext(plaintext);
    let raw: Raw = match serde_json::from_slice(&cleaned) {
        Ok(raw) => raw,
        // A raw newline inside a string: drop the rest of the control bytes too.
        Err(_) => serde_json::from_slice(
            &cleaned
                .iter()
                .copied()
                .filter(|&b| b >= 0x20)
                .collect::<Vec<u8>>(),
        )?,
    };
    let body = match (raw.action.as_str(), raw.msgtype.as_deref()) {
        ("switch", _) => Body::Switch,
        (_, Some("text")) => Body::Text(raw.text.map(|t| t.content).unwrap_or_default()),
        (_, Some("revoke")) => Body::Revoke {
            pre_msgid: raw.revoke.map(|r| r.pre_msgid).unwrap_or_default(),
        },
        _ => Body::Other,
    };
    Ok(ArchivedMessage {
        msgid: raw.msgid,
        action: raw.action,
        from: raw.from.filter(|f| !f.is_empty()),
        roomid: raw.roomid.filter(|r| !r.is_empty()),
        msgtime: raw.msgtime.or(raw.time),
        msgtype: raw.msgtype,
        body,
    })
}

impl ArchivedMessage {
    /// A text or a picture sent in a group becomes the same message
    /// `POST /ingest/messages` accepts (deduplicated by the same msgid; a
    /// picture has `msgtype = "image"` and no text, for 晒单 rewards); anything
    /// else is not a member's words in a group.
    pub fn as_ingest(&self) -> Option<IngestMessage> {
        if self.action != "send" {
            return None;
        }
        let (text, msgtype) = match &self.body {
            Body::Text(text) => (text.clone(), None),
            Body::Other if self.msgtype.as_deref() == Some("image") => {
                (String::new(), Some("image".to_owned()))
            }
            _ => return None,
        };
        Some(IngestMessage {
            message_id: self.msgid.clone(),
            chat_id: Some(self.roomid.clone()?),
            sender: self.from.clone()?,
            text,
            sent_at: self.msgtime.unwrap_or(0).div_euclid(1000),
            msgtype,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_lists_its_records_and_an_error_page_is_an_error() {
        let page = br#"{"errcode":0,"errmsg":"ok","chatdata":[{"seq":196,"msgid":"CAQQ2fbb","publickey_ver":3,"encrypt_random_key":"ftJ+","encrypt_chat_msg":"898W"}]}"#;
        let records = parse_page(page).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].seq, records[0].publickey_ver), (196, 3));
        let error = parse_page(br#"{"errcode":301042,"errmsg":"ip not allowed"}"#).unwrap_err();
        assert!(error.to_string().contains("301042"), "{error}");
        assert!(parse_page(br#"{"errcode":0}"#).unwrap().is_empty());
    }

    #[test]
    fn a_group_text_becomes_an_ingest_message_and_others_do_not() {
        let text = parse_message(
            "{\"msgid\":\"m1\",\"action\":\"send\",\"from\":\"wmA\",\"tolist\":[\"x\"],\"roomid\":\"wrG\",\"msgtime\":1763776800123,\"msgtype\":\"text\",\"text\":{\"content\":\"签\u{1}到\"}}".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            text.as_ingest(),
            Some(IngestMessage {
                message_id: "m1".into(),
                chat_id: Some("wrG".into()),
                sender: "wmA".into(),
                text: "签到".into(),
                sent_at: 1763776800,
                msgtype: None,
            })
        );
        let one_to_one = parse_message(
            br#"{"msgid":"m2","action":"send","from":"wmA","roomid":"","msgtime":1,"msgtype":"text","text":{"content":"hi"}}"#,
        )
        .unwrap();
        assert_eq!(one_to_one.roomid, None);
        assert_eq!(one_to_one.as_ingest(), None);

        let recall = parse_message(
            br#"{"msgid":"m3","action":"recall","from":"wmA","roomid":"wrG","msgtime":2,"msgtype":"revoke","revoke":{"pre_msgid":"m1"}}"#,
        )
        .unwrap();
        assert_eq!(
            recall.body,
            Body::Revoke {
                pre_msgid: "m1".into()
            }
        );
        assert_eq!(recall.as_ingest(), None);

        let switch = parse_message(
            br#"{"msgid":"m4","action":"switch","time":1554119421840,"user":"XuJinSheng"}"#,
        )
        .unwrap();
        assert_eq!(
            (switch.body, switch.msgtime),
            (Body::Switch, Some(1554119421840))
        );

        let image = parse_message(
            br#"{"msgid":"m5","action":"send","from":"wmA","roomid":"wrG","msgtime":3,"msgtype":"image","image":{"sdkfileid":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            (&image.body, image.msgtype.as_deref()),
            (&Body::Other, Some("image"))
        );
        // A picture in a group is an event (晒单), with no text.
        let picture = image.as_ingest().expect("a group picture is ingested");
        assert_eq!(
            (picture.msgtype.as_deref(), picture.text.as_str()),
            (Some("image"), "")
        );
        assert!(parse_message(b"not json").is_err());
    }
}
