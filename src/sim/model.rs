//! Public data shapes of the simulator: what tests seed, what they read back.
//!
//! Everything here is plain serde data so the same types serve the Rust API,
//! the `/sim/*` JSON endpoints and the scenario file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which outbound channel a delivery went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `message/send` to one member (one record per recipient).
    AppMessage,
    /// `appchat/send` into an app-created group (one record per chat).
    Appchat,
    /// `webhook/send` through a group robot (target = the robot's chat).
    Webhook,
    /// `add_msg_template` with `chat_type = group`, after the owner confirmed
    /// (one record per customer group).
    CustomerGroupMass,
    /// `add_msg_template` with `chat_type = single`, after the owner
    /// confirmed (one record per external contact).
    CustomerMass,
    /// `send_welcome_msg` to a newly added customer.
    Welcome,
    /// Smart-bot `response_url` answer.
    BotResponse,
}

/// A corp customer tag group (`get_corp_tag_list`, `add_corp_tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagGroup {
    pub group_id: String,
    pub group_name: String,
    pub create_time: i64,
    pub order: i64,
    pub deleted: bool,
    pub tag: Vec<CorpTag>,
}

/// A corp customer tag in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpTag {
    pub id: String,
    pub name: String,
    pub create_time: i64,
    pub order: i64,
    pub deleted: bool,
}

/// One message the simulated WeCom accepted and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Monotonic sequence number across all routes (record order).
    pub seq: u64,
    pub route: Route,
    /// Member UserID (app_message), chat id (appchat, webhook, mass),
    /// external userid (welcome), chat id or user id (bot_response).
    pub target: String,
    pub msgtype: String,
    /// The type-specific object exactly as sent, e.g. `{"content": "hi"}` for
    /// text, `{"articles": [...]}` for news, plus mass `attachments`.
    pub content: Value,
    /// Unix seconds on the simulator clock.
    pub time: i64,
    pub msgid: String,
    /// Who sent it: the agent id (app routes), the robot name (webhook), the
    /// sending member (mass, welcome) or the bot id (bot_response).
    pub sender: String,
}

impl Delivery {
    /// `content.content` for text/markdown deliveries, `None` otherwise.
    pub fn text(&self) -> Option<&str> {
        self.content.get("content").and_then(Value::as_str)
    }
}

/// Why an accepted message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// More than 30/min or 1000/hour app messages to one member (app_message),
    /// or more than 200/min to one member of an app chat (appchat). WeCom
    /// answers errcode 0 and silently drops these.
    MemberRateLimit,
    /// `enable_duplicate_check`: identical content to the same recipients
    /// inside `duplicate_check_interval`.
    Duplicate,
}

/// A message WeCom answered with success but never delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// For appchat member drops the target is `"{chatid}:{userid}"`.
    #[serde(flatten)]
    pub delivery: Delivery,
    pub reason: DropReason,
}

/// One `/cgi-bin/` call as it arrived (including calls answered by an
/// injected fault), `GET /sim/calls`: for checking the shape of requests.
/// Credentials (`access_token`, `corpsecret`) are left out of the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    /// Below `/cgi-bin/`, e.g. `"message/send"`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The JSON body; `null` when there was none or it was not JSON.
    pub body: Value,
    /// Unix seconds on the simulator clock.
    pub time: i64,
}

impl ApiCall {
    /// Query parameters that are credentials, never recorded.
    pub const SECRET_PARAMS: [&'static str; 2] = ["access_token", "corpsecret"];
}

/// Call counters, `GET /sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub gettoken_calls: u64,
    /// Calls per API path below `/cgi-bin/` (e.g. `"message/send"`), counted
    /// on arrival, including calls answered by an injected fault.
    pub calls: BTreeMap<String, u64>,
    pub faults_injected: u64,
    pub messages: usize,
    pub dropped: usize,
}

impl Stats {
    pub fn calls_to(&self, path: &str) -> u64 {
        self.calls.get(path).copied().unwrap_or(0)
    }
}

/// World state to seed, `POST /sim/state` and the `[state]`-less top level of a
/// scenario file. Seeding adds to (or replaces by id) what is there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedState {
    /// Corp directory (UserIDs). When empty, `message/send` and `appchat`
    /// accept any well-formed UserID; when set, unknown ids are invalid.
    pub members: Vec<String>,
    pub customer_groups: Vec<SeedCustomerGroup>,
    pub robots: Vec<SeedRobot>,
    pub app_chats: Vec<SeedAppChat>,
}

/// A customer group (客户群) as groupchat/get describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCustomerGroup {
    pub chat_id: String,
    #[serde(default)]
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub notice: String,
    /// 0 normal, 1 owner left, 2 transfer in progress, 3 transfer done.
    #[serde(default)]
    pub status: u8,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub members: Vec<SeedGroupMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroupMember {
    pub userid: String,
    /// 1 corp member, 2 external contact. Defaults from the id: `wm…`/`wo…`
    /// are external, anything else internal.
    #[serde(default, rename = "type")]
    pub member_type: Option<u8>,
    #[serde(default)]
    pub join_time: i64,
    /// API code space: 1 direct invite, 2 invite link, 3 QR code.
    #[serde(default = "default_join_scene")]
    pub join_scene: u8,
    #[serde(default)]
    pub invitor: Option<String>,
    #[serde(default)]
    pub group_nickname: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub unionid: Option<String>,
}

fn default_join_scene() -> u8 {
    1
}

impl SeedGroupMember {
    pub fn new(userid: impl Into<String>) -> Self {
        Self {
            userid: userid.into(),
            member_type: None,
            join_time: 0,
            join_scene: default_join_scene(),
            invitor: None,
            group_nickname: String::new(),
            name: String::new(),
            unionid: None,
        }
    }

    pub fn resolved_type(&self) -> u8 {
        self.member_type
            .unwrap_or_else(|| member_type_from_id(&self.userid))
    }
}

/// External userids start with `wm` or `wo` (docs/wecom.md#customer-groups); everything else is a
/// corp member.
pub fn member_type_from_id(userid: &str) -> u8 {
    if userid.starts_with("wm") || userid.starts_with("wo") {
        2
    } else {
        1
    }
}

/// A classic group robot reachable at `webhook/send?key=KEY`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRobot {
    pub key: String,
    /// The group the robot was added to; deliveries are recorded against it.
    pub chat_id: String,
    #[serde(default)]
    pub name: String,
}

/// An app group chat (应用群聊) that already exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAppChat {
    pub chatid: String,
    #[serde(default)]
    pub name: String,
    pub owner: String,
    pub userlist: Vec<String>,
    /// Agent id of the app that created it. `None`: every app may use it.
    #[serde(default)]
    pub creator_agent_id: Option<i64>,
}

/// Read-only view of a customer group, for assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerGroupView {
    pub chat_id: String,
    pub name: String,
    pub owner: String,
    pub status: u8,
    pub member_version: String,
    pub members: Vec<SeedGroupMember>,
    pub admins: Vec<String>,
}

/// Read-only view of an app chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChatView {
    pub chatid: String,
    pub name: String,
    pub owner: String,
    pub userlist: Vec<String>,
    pub creator_agent_id: Option<i64>,
}

/// A group welcome template stored by `group_welcome_template/add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupWelcomeTemplate {
    pub template_id: String,
    pub body: Value,
}

/// A setup or event WeCom does not offer, refused by the simulator so that a
/// test or demo cannot model a community nobody can build
/// (docs/wecom.md#chat-kinds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldRefusal {
    #[error(
        "chat {chat_id} is a customer group (客户群): WeCom offers group robots only in internal \
         groups, so no robot can be added to it"
    )]
    RobotInCustomerGroup { chat_id: String },
    #[error(
        "chat {chat_id} is a customer group (客户群): the smart bot cannot be added to one, so \
         nobody can @-mention it there; customer-group messages reach qunyun only through the \
         message archive"
    )]
    SmartBotInCustomerGroup { chat_id: String },
    #[error(
        "chat {chat_id} is an internal group ({why}); a chat is either a customer group or an \
         internal group, never both"
    )]
    InternalGroupAsCustomerGroup { chat_id: String, why: &'static str },
    #[error(
        "chat {chat_id} is an internal group ({why}): WeCom sends change_external_chat join/leave \
         events only for customer groups"
    )]
    NoJoinEventsInInternalGroups { chat_id: String, why: &'static str },
}
