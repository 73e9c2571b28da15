//! Request and response bodies of the WeCom endpoints qunyun calls, in WeCom's
//! own JSON shape (docs/wecom.md#apis-qunyun-calls). Rich card/attachment bodies we only
//! pass through are kept as `serde_json::Value`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"content": "..."}`, the body of text and markdown messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextContent {
    pub content: String,
}

impl TextContent {
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCard {
    pub title: String,
    pub description: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btntxt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsArticle {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picurl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsContent {
    pub articles: Vec<NewsArticle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub media_id: String,
}

/// What an app message (`message/send`) or app group message (`appchat/send`)
/// says: `msgtype` plus the body of that type. This is also the shape stored
/// in the outbox payload for the `member` and `app_group` routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub enum AppMessageContent {
    Text { text: TextContent },
    Markdown { markdown: TextContent },
    Textcard { textcard: TextCard },
    News { news: NewsContent },
    Image { image: MediaRef },
    File { file: MediaRef },
    TemplateCard { template_card: Value },
}

/// Body of `POST message/send`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppMessage {
    /// Member UserIDs joined with `|`, or `@all`.
    pub touser: String,
    pub agentid: i64,
    #[serde(flatten)]
    pub content: AppMessageContent,
    pub safe: u8,
    /// 1: WeCom drops a message identical to one it received for the same
    /// recipients inside `duplicate_check_interval`. `AppMessage::new` sets
    /// it; the sender turns it off for a row's first call so a genuine second
    /// identical reply is not swallowed, and on for a resend after a lost answer.
    pub enable_duplicate_check: u8,
    pub duplicate_check_interval: u32,
}

/// Longest duplicate-check window WeCom allows (4 hours).
pub const MAX_DUPLICATE_CHECK_INTERVAL_SECS: u32 = 4 * 3600;

impl AppMessage {
    pub fn new(touser: impl Into<String>, agentid: i64, content: AppMessageContent) -> Self {
        Self {
            touser: touser.into(),
            agentid,
            content,
            safe: 0,
            enable_duplicate_check: 1,
            duplicate_check_interval: MAX_DUPLICATE_CHECK_INTERVAL_SECS,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SendMessageResponse {
    #[serde(default)]
    pub invaliduser: Option<String>,
    #[serde(default)]
    pub invalidparty: Option<String>,
    #[serde(default)]
    pub invalidtag: Option<String>,
    #[serde(default)]
    pub unlicenseduser: Option<String>,
    #[serde(default)]
    pub msgid: Option<String>,
    #[serde(default)]
    pub response_code: Option<String>,
}

/// Body of `POST appchat/create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppChatCreate {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub userlist: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chatid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppChatCreated {
    pub chatid: String,
}

/// Body of `POST appchat/update`; empty lists and `None`s are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppChatUpdate {
    pub chatid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_user_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub del_user_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppChatInfo {
    pub chatid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub userlist: Vec<String>,
    #[serde(default)]
    pub chat_type: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AppChatGetResponse {
    pub chat_info: AppChatInfo,
}

/// Body of `POST appchat/send`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppChatSend {
    pub chatid: String,
    #[serde(flatten)]
    pub content: AppMessageContent,
    pub safe: u8,
}

impl AppChatSend {
    pub fn new(chatid: impl Into<String>, content: AppMessageContent) -> Self {
        Self {
            chatid: chatid.into(),
            content,
            safe: 0,
        }
    }
}

/// Text of a group-robot message, with optional @-mentions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookText {
    pub content: String,
    /// UserIDs to @, or `"@all"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentioned_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentioned_mobile_list: Vec<String>,
}

/// Body of `POST webhook/send?key=KEY` (group robot), also the outbox payload
/// of the `webhook` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub enum WebhookMessage {
    Text { text: WebhookText },
    Markdown { markdown: TextContent },
    News { news: NewsContent },
    TemplateCard { template_card: Value },
}

/// Body POSTed to a smart bot's one-shot `response_url`; also the outbox
/// payload of the `smart_bot` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub enum BotResponse {
    Markdown {
        markdown: TextContent,
    },
    /// Only allowed in 1:1 chats.
    TemplateCard {
        template_card: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerFilter {
    pub userid_list: Vec<String>,
}

/// Body of `POST externalcontact/groupchat/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChatListRequest {
    /// 0 all, 1 owner left, 2 transfer in progress, 3 transfer done.
    pub status_filter: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_filter: Option<OwnerFilter>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cursor: String,
    /// 1..=1000.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupChatSummary {
    pub chat_id: String,
    #[serde(default)]
    pub status: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupChatListPage {
    #[serde(default)]
    pub group_chat_list: Vec<GroupChatSummary>,
    /// Empty when there are no more pages.
    #[serde(default)]
    pub next_cursor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GroupChatGetRequest<'a> {
    pub chat_id: &'a str,
    pub need_name: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub userid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupMember {
    /// Member UserID or external userid (`wm…`/`wo…`).
    pub userid: String,
    /// 1 = corp member, 2 = external contact.
    #[serde(rename = "type")]
    pub member_type: i64,
    #[serde(default)]
    pub unionid: Option<String>,
    #[serde(default)]
    pub join_time: i64,
    /// 1 direct invite, 2 invite link, 3 group QR code (not the callback's 0/3).
    #[serde(default)]
    pub join_scene: i64,
    #[serde(default)]
    pub invitor: Option<UserRef>,
    #[serde(default)]
    pub group_nickname: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupChat {
    pub chat_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub notice: String,
    #[serde(default)]
    pub member_list: Vec<GroupMember>,
    #[serde(default)]
    pub admin_list: Vec<UserRef>,
    #[serde(default)]
    pub member_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct GroupChatGetResponse {
    pub group_chat: GroupChat,
}

/// What a mass message says and where it goes; the outbox payload of the
/// `customer_group_mass` route (groups) and of the `customer_mass` route
/// (1:1 to external contacts); the target is the sender either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MassMessageContent {
    /// Customer-group ids (≤ 2000). Empty: the owner picks the groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_id_list: Vec<String>,
    /// External contacts of a 1:1 mass message (≤ 10000; `chat_type = single`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_userid: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    /// ≤ 9 attachments in WeCom's shape (`{"msgtype": "link", "link": {...}}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
}

/// Body of `POST externalcontact/add_msg_template`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddMsgTemplate {
    /// `group` for customer groups, `single` for 1:1 to external contacts.
    pub chat_type: String,
    /// The member who must confirm and send.
    pub sender: String,
    #[serde(flatten)]
    pub content: MassMessageContent,
}

impl AddMsgTemplate {
    pub fn for_groups(sender: impl Into<String>, content: MassMessageContent) -> Self {
        Self {
            chat_type: "group".to_owned(),
            sender: sender.into(),
            content,
        }
    }

    /// A 1:1 mass message to `content.external_userid`, which `sender` confirms
    /// (developer.work.weixin.qq.com/document/path/92135).
    pub fn for_contacts(sender: impl Into<String>, content: MassMessageContent) -> Self {
        Self {
            chat_type: "single".to_owned(),
            sender: sender.into(),
            content,
        }
    }
}

/// Most external contacts of one 1:1 `add_msg_template` call.
pub const MAX_MASS_CONTACTS: usize = 10_000;

/// A change of an external contact's customer tags by our tag names; the
/// outbox payload of the `customer_tag` route (the target is the contact).
/// The sender turns the names into WeCom's tag ids ([`MarkTag`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagChange {
    /// The member who has the contact and marks it.
    pub userid: String,
    pub external_userid: String,
    /// Tag names to add and to remove, in the group `[wecom]
    /// customer_tag_group` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Why, for the manager (never sent).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Body of `POST externalcontact/mark_tag` (developer.work.weixin.qq.com/document/path/92118).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkTag {
    pub userid: String,
    pub external_userid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_tag: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tag: Vec<String>,
}

/// One corp customer tag (`get_corp_tag_list` / `add_corp_tag`,
/// developer.work.weixin.qq.com/document/path/92117).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpTag {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub order: i64,
    #[serde(default)]
    pub deleted: bool,
}

/// A corp tag group with its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpTagGroup {
    pub group_id: String,
    pub group_name: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub order: i64,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub tag: Vec<CorpTag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct CorpTagList {
    #[serde(default)]
    pub tag_group: Vec<CorpTagGroup>,
}

/// Body of `POST externalcontact/add_corp_tag`: tags into the group named
/// `group_name` (WeCom creates the group when no group has that name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddCorpTag {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    pub tag: Vec<NewCorpTag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCorpTag {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AddCorpTagResponse {
    pub tag_group: CorpTagGroup,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddMsgTemplateResponse {
    #[serde(default)]
    pub fail_list: Vec<String>,
    pub msgid: String,
}

/// Body of `POST externalcontact/get_groupmsg_send_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMsgSendResultRequest {
    pub msgid: String,
    pub userid: String,
    pub limit: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

/// One recipient of a mass message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupMsgSendResult {
    #[serde(default)]
    pub external_userid: Option<String>,
    #[serde(default)]
    pub chat_id: Option<String>,
    #[serde(default)]
    pub userid: String,
    /// 0 not sent yet, 1 sent, 2 failed (not a friend), 3 failed (already got
    /// another mass message).
    pub status: i64,
    #[serde(default)]
    pub send_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupMsgSendResultPage {
    #[serde(default)]
    pub send_list: Vec<GroupMsgSendResult>,
    #[serde(default)]
    pub next_cursor: String,
}

/// What a 1:1 welcome to a new customer says; the outbox payload of the
/// `welcome_code` route (the target is the welcome code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WelcomeContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
}

/// Body of `POST externalcontact/send_welcome_msg`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WelcomeMessage {
    pub welcome_code: String,
    #[serde(flatten)]
    pub content: WelcomeContent,
}

/// Body of `POST externalcontact/group_welcome_template/add`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupWelcomeTemplate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agentid: Option<i64>,
    /// 1: notify the corp's members that a new template is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<u8>,
}

/// Body of `POST externalcontact/group_welcome_template/edit`: the id `add`
/// returned and the whole new material (it replaces the old one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupWelcomeTemplateEdit {
    pub template_id: String,
    #[serde(flatten)]
    pub template: GroupWelcomeTemplate,
}

/// Answer of `POST externalcontact/group_welcome_template/get`: the stored
/// material at the top level.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GroupWelcomeMaterial {
    #[serde(default)]
    pub text: Option<TextContent>,
    #[serde(default)]
    pub image: Option<Value>,
    #[serde(default)]
    pub link: Option<Value>,
    #[serde(default)]
    pub miniprogram: Option<Value>,
    #[serde(default)]
    pub file: Option<Value>,
    #[serde(default)]
    pub video: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct GroupWelcomeTemplateAdded {
    pub template_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
}

/// `GET agent/get`: the app's settings; qunyun reads only its visible range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AgentInfo {
    pub agentid: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub allow_partys: AgentParties,
    #[serde(default)]
    pub close: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AgentParties {
    #[serde(default)]
    pub partyid: Vec<i64>,
}

impl AgentInfo {
    /// WeCom's root department (the whole corp) has id 1.
    pub const ROOT_DEPARTMENT: i64 = 1;

    /// Visible to the root department: what `appchat/*` requires (docs/wecom.md).
    pub fn visible_to_root_department(&self) -> bool {
        self.allow_partys.partyid.contains(&Self::ROOT_DEPARTMENT)
    }
}

/// Responses whose only content is `errcode`/`errmsg`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_message_has_wecom_shape_with_duplicate_check() {
        let message = AppMessage::new(
            "zhangsan|lisi",
            1000002,
            AppMessageContent::Text {
                text: TextContent::new("今日签到已开启"),
            },
        );
        let value = serde_json::to_value(&message).unwrap();
        assert_eq!(
            value,
            json!({
                "touser": "zhangsan|lisi",
                "agentid": 1000002,
                "msgtype": "text",
                "text": {"content": "今日签到已开启"},
                "safe": 0,
                "enable_duplicate_check": 1,
                "duplicate_check_interval": 14400
            })
        );
    }

    #[test]
    fn webhook_text_leaves_out_empty_mention_lists() {
        let message = WebhookMessage::Text {
            text: WebhookText {
                content: "hi".into(),
                mentioned_list: vec!["@all".into()],
                mentioned_mobile_list: vec![],
            },
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"msgtype": "text", "text": {"content": "hi", "mentioned_list": ["@all"]}})
        );
    }

    #[test]
    fn mass_template_is_group_typed_and_flattened() {
        let body = AddMsgTemplate::for_groups(
            "owner1",
            MassMessageContent {
                chat_id_list: vec!["wrA".into()],
                external_userid: vec![],
                text: Some(TextContent::new("hello")),
                attachments: vec![],
            },
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"chat_type": "group", "sender": "owner1", "chat_id_list": ["wrA"], "text": {"content": "hello"}})
        );
    }

    #[test]
    fn contact_template_is_single_typed_with_the_contacts() {
        let body = AddMsgTemplate::for_contacts(
            "owner1",
            MassMessageContent {
                chat_id_list: vec![],
                external_userid: vec!["wmA".into()],
                text: Some(TextContent::new("hello")),
                attachments: vec![],
            },
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"chat_type": "single", "sender": "owner1", "external_userid": ["wmA"], "text": {"content": "hello"}})
        );
    }

    #[test]
    fn group_member_reads_type_and_optional_fields() {
        let member: GroupMember = serde_json::from_value(json!({
            "userid": "wmX", "type": 2, "join_time": 1700000000, "join_scene": 3,
            "invitor": {"userid": "lisi"}, "group_nickname": "x"
        }))
        .unwrap();
        assert_eq!(member.member_type, 2);
        assert_eq!(
            member.invitor,
            Some(UserRef {
                userid: "lisi".into()
            })
        );
        assert_eq!(member.name, "");
    }
}
