//! The callback driver: makes things happen in the simulated corp and tells
//! qunyun about them the way WeCom would, with correctly signed and
//! encrypted callbacks (docs/wecom.md#callback-envelopes).
//!
//! Apps get the XML envelope at `{base_url}/wecom/apps/{name}/callback`
//! (receive id = CorpID); smart bots get the JSON envelope at
//! `{base_url}/wecom/bots/{name}/callback` (receive id = ""). Each call
//! updates the simulator's own state first (member lists, member_version,
//! welcome/response codes), then posts, and reports the HTTP status qunyun
//! answered. A callback can also be "lost" on purpose (`lose_callback`): the
//! state changes but nothing is sent, which is what reconciliation must cope
//! with (docs/wecom.md#change_external_chat).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::{member_type_from_id, SeedGroupMember, WorldRefusal};
use super::state::{random_id, Sent};
use super::{api, Sim};
use crate::wecom::crypto::{fresh_nonce, MsgCrypt};

/// Where qunyun listens and the secrets each callback kind is sealed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackTargets {
    /// qunyun's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    #[serde(default)]
    pub apps: Vec<AppCallback>,
    #[serde(default)]
    pub bots: Vec<BotCallback>,
    /// Re-deliveries after a timeout or non-200 answer (WeCom: 3, docs/wecom.md#delivery-and-retries).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long each delivery waits for qunyun (WeCom: 5 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// qunyun's `[ingest] secret`: with it the driver plays the
    /// message-archive puller and posts what members type in a group to
    /// `/ingest/messages` (docs/wecom.md#message-archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_secret: Option<IngestSecret>,
}

/// The archive puller's signing secret; never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IngestSecret(pub String);

impl std::fmt::Debug for IngestSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl CallbackTargets {
    /// Targets at `base_url` with WeCom's retry policy and no apps or bots yet.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            apps: Vec::new(),
            bots: Vec::new(),
            retries: DEFAULT_RETRIES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            ingest_secret: None,
        }
    }

    pub fn with_ingest_secret(mut self, secret: impl Into<String>) -> Self {
        self.ingest_secret = Some(IngestSecret(secret.into()));
        self
    }

    pub fn with_app(mut self, app: AppCallback) -> Self {
        self.apps.push(app);
        self
    }

    pub fn with_bot(mut self, bot: BotCallback) -> Self {
        self.bots.push(bot);
        self
    }
}

/// A self-built app's callback settings (also used for 客户联系 events).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCallback {
    /// Path segment: `/wecom/apps/{name}/callback`.
    pub name: String,
    pub token: String,
    pub encoding_aes_key: String,
    #[serde(default = "default_agent_id")]
    pub agent_id: i64,
}

fn default_agent_id() -> i64 {
    super::SimConfig::DEFAULT_AGENT_ID
}

/// A smart bot's (智能机器人, API mode) callback settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct BotCallback {
    /// Path segment: `/wecom/bots/{name}/callback`.
    pub name: String,
    pub token: String,
    pub encoding_aes_key: String,
    pub aibotid: String,
    /// Display name used in the `@name` prefix of mentions.
    #[serde(default)]
    pub bot_name: String,
}

impl std::fmt::Debug for AppCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCallback")
            .field("name", &self.name)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BotCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotCallback")
            .field("name", &self.name)
            .field("aibotid", &self.aibotid)
            .finish_non_exhaustive()
    }
}

/// How a member got into a customer group. The callback and the API use
/// different code spaces (docs/wecom.md#change_external_chat).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinVia {
    /// Invited directly by a member: callback 0, API 1.
    #[default]
    Invite,
    /// Through an invite link: callback 0, API 2.
    InviteLink,
    /// Scanned the group QR code: callback 3, API 3.
    QrCode,
}

impl JoinVia {
    pub fn callback_scene(self) -> u8 {
        match self {
            JoinVia::Invite | JoinVia::InviteLink => 0,
            JoinVia::QrCode => 3,
        }
    }

    pub fn api_scene(self) -> u8 {
        match self {
            JoinVia::Invite => 1,
            JoinVia::InviteLink => 2,
            JoinVia::QrCode => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMember {
    pub userid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub group_nickname: String,
    #[serde(default)]
    pub invitor: Option<String>,
}

impl NewMember {
    pub fn new(userid: impl Into<String>) -> Self {
        Self {
            userid: userid.into(),
            name: String::new(),
            group_nickname: String::new(),
            invitor: None,
        }
    }
}

/// Members join customer group `chat_id` (one `add_member` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Which app callback receives it; default: the first configured.
    #[serde(default)]
    pub app: Option<String>,
    pub chat_id: String,
    pub members: Vec<NewMember>,
    #[serde(default)]
    pub via: JoinVia,
    #[serde(default)]
    pub lose_callback: bool,
}

/// Members leave customer group `chat_id` (one `del_member` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveRequest {
    #[serde(default)]
    pub app: Option<String>,
    pub chat_id: String,
    pub userids: Vec<String>,
    /// Removed by owner/admin (QuitScene 1) instead of leaving (0).
    #[serde(default)]
    pub removed: bool,
    #[serde(default)]
    pub lose_callback: bool,
}

/// Member `userid` added customer `external_userid`
/// (`change_external_contact` / `add_external_contact` with a WelcomeCode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddContactRequest {
    #[serde(default)]
    pub app: Option<String>,
    pub userid: String,
    pub external_userid: String,
    #[serde(default)]
    pub state: String,
}

/// A member types `content` to the app (1:1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppTextRequest {
    #[serde(default)]
    pub app: Option<String>,
    pub from: String,
    pub content: String,
}

/// A member @-mentions the smart bot in group `chat_id` (or 1:1 without it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotMentionRequest {
    #[serde(default)]
    pub bot: Option<String>,
    #[serde(default)]
    pub chat_id: Option<String>,
    pub from: String,
    /// Text after the `@BotName ` prefix, which the driver adds.
    pub content: String,
    /// The text of a message this one quotes (引用), as WeCom's `quote`.
    #[serde(default)]
    pub quote: Option<String>,
}

/// A quoted text message, as a smart-bot message carries it.
pub(crate) fn add_quote(message: &mut serde_json::Value, quote: Option<&str>) {
    if let Some(text) = quote {
        message["quote"] = json!({"msgtype": "text", "text": {"content": text}});
    }
}

/// A member types `content` in group `chat_id` (a customer group, usually:
/// no bot hears it there). WeCom sends no callback; the message-archive
/// puller reads it and posts it to qunyun's `/ingest/messages`, signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveTextRequest {
    pub chat_id: String,
    pub from: String,
    pub content: String,
}

/// Any plaintext, sealed and delivered as is: for events the driver has no
/// dedicated method for (enter_agent, create/dismiss, del_external_contact…).
/// With `bot` set the JSON envelope goes to that smart bot (receive id "");
/// otherwise the XML envelope goes to `app` (default: the first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawRequest {
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub bot: Option<String>,
    /// Decrypted payload: an XML document for apps, JSON for bots.
    pub plaintext: String,
    /// Put the app's AgentID in the envelope (app messages and app events);
    /// 客户联系 events leave it empty.
    #[serde(default)]
    pub with_agent: bool,
}

/// The admin saves the callback settings: WeCom's GET URL verification
/// (docs/wecom.md#url-verification) against an app (default: the first) or, with `bot`, a smart bot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub bot: Option<String>,
}

/// What happened when the driver delivered (or lost) a callback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriveOutcome {
    /// HTTP status qunyun answered; `None` when the callback was lost on
    /// purpose.
    pub status: Option<u16>,
    /// qunyun's response body (an encrypted passive reply, or empty).
    pub body: String,
    /// Deliveries made: 1, or more when qunyun failed and WeCom retried.
    #[serde(default)]
    pub attempts: u32,
    /// URL verification only: qunyun echoed the decrypted echostr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub welcome_code: Option<String>,
    /// The 64-bit `MsgId` of an app text message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<u64>,
    /// The archive's message id of an archived group message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_msgid: Option<String>,
    /// Smart-bot message id (`msgid`, the dedupe key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_msgid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_url: Option<String>,
    /// `CurMemVer` after a join/leave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("no callback targets configured (POST /sim/callbacks or Sim::set_callbacks)")]
    NoTargets,
    #[error("no callback target named {0:?}")]
    UnknownTarget(String),
    #[error("customer group {0:?} does not exist in the simulator")]
    UnknownChat(String),
    #[error("invalid drive request: {0}")]
    Invalid(String),
    #[error("WeCom would not do this: {0}")]
    Refused(#[from] WorldRefusal),
    #[error("cannot seal callback: {0}")]
    Crypto(String),
    #[error("callback delivery failed: {0}")]
    Http(#[from] reqwest::Error),
}

impl Sim {
    pub async fn drive_join(&self, request: JoinRequest) -> Result<DriveOutcome, DriveError> {
        let app = self.app_target(request.app.as_deref())?;
        let now = self.now();
        let (last, current, added) = {
            let mut state = self.state();
            state.check_member_change(&request.chat_id)?;
            let group = state
                .customer_groups
                .get_mut(&request.chat_id)
                .ok_or_else(|| DriveError::UnknownChat(request.chat_id.clone()))?;
            let mut added = Vec::new();
            for member in &request.members {
                if group.members.iter().any(|m| m.userid == member.userid)
                    || added.contains(&member.userid)
                {
                    continue;
                }
                let mut seed = SeedGroupMember::new(member.userid.clone());
                seed.member_type = Some(member_type_from_id(&member.userid));
                seed.join_time = now.timestamp();
                seed.join_scene = request.via.api_scene();
                seed.invitor = member.invitor.clone();
                seed.group_nickname = member.group_nickname.clone();
                seed.name = member.name.clone();
                group.members.push(seed);
                added.push(member.userid.clone());
            }
            if added.is_empty() {
                return Err(DriveError::Invalid("no new members to add".into()));
            }
            let last = group.member_version.clone();
            let current = group.bump_member_version();
            (last, current, added)
        };
        let xml = member_change_xml(
            &self.config().corp_id,
            now.timestamp(),
            &request.chat_id,
            MemberChange::Join(request.via.callback_scene()),
            &added,
            &last,
            &current,
        );
        self.post_member_change(&app, &xml, current, request.lose_callback)
            .await
    }

    pub async fn drive_leave(&self, request: LeaveRequest) -> Result<DriveOutcome, DriveError> {
        let app = self.app_target(request.app.as_deref())?;
        let now = self.now();
        let (last, current, removed) = {
            let mut state = self.state();
            state.check_member_change(&request.chat_id)?;
            let group = state
                .customer_groups
                .get_mut(&request.chat_id)
                .ok_or_else(|| DriveError::UnknownChat(request.chat_id.clone()))?;
            let removed: Vec<String> = request
                .userids
                .iter()
                .filter(|userid| group.members.iter().any(|m| &m.userid == *userid))
                .cloned()
                .collect();
            if removed.is_empty() {
                return Err(DriveError::Invalid("none of them is in the group".into()));
            }
            group.members.retain(|m| !removed.contains(&m.userid));
            group.admins.retain(|admin| !removed.contains(admin));
            let last = group.member_version.clone();
            let current = group.bump_member_version();
            (last, current, removed)
        };
        let quit_scene = u8::from(request.removed);
        let xml = member_change_xml(
            &self.config().corp_id,
            now.timestamp(),
            &request.chat_id,
            MemberChange::Leave(quit_scene),
            &removed,
            &last,
            &current,
        );
        self.post_member_change(&app, &xml, current, request.lose_callback)
            .await
    }

    /// Posts a join or leave callback, unless it is to be lost: the member
    /// list has changed to `member_version` either way.
    async fn post_member_change(
        &self,
        app: &Target<AppCallback>,
        xml: &str,
        member_version: String,
        lose_callback: bool,
    ) -> Result<DriveOutcome, DriveError> {
        let mut outcome = DriveOutcome {
            member_version: Some(member_version),
            ..DriveOutcome::default()
        };
        if !lose_callback {
            self.post_app(app, xml, false).await?.fill(&mut outcome);
        }
        Ok(outcome)
    }

    pub async fn drive_add_contact(
        &self,
        request: AddContactRequest,
    ) -> Result<DriveOutcome, DriveError> {
        let app = self.app_target(request.app.as_deref())?;
        let now = self.now();
        let code = self.issue_welcome_code(&request.userid, &request.external_userid);
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
             <CreateTime>{}</CreateTime><MsgType>{}</MsgType><Event>{}</Event>\
             <ChangeType>{}</ChangeType><UserID>{}</UserID><ExternalUserID>{}</ExternalUserID>\
             <State>{}</State><WelcomeCode>{}</WelcomeCode></xml>",
            cdata(&self.config().corp_id),
            cdata("sys"),
            now.timestamp(),
            cdata("event"),
            cdata("change_external_contact"),
            cdata("add_external_contact"),
            cdata(&request.userid),
            cdata(&request.external_userid),
            cdata(&request.state),
            cdata(&code),
        );
        let mut outcome = DriveOutcome {
            welcome_code: Some(code),
            ..DriveOutcome::default()
        };
        self.post_app(&app, &xml, false).await?.fill(&mut outcome);
        Ok(outcome)
    }

    pub async fn drive_app_text(
        &self,
        request: AppTextRequest,
    ) -> Result<DriveOutcome, DriveError> {
        let app = self.app_target(request.app.as_deref())?;
        let now = self.now();
        let msg_id = self.state().next_app_msg_id();
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
             <CreateTime>{}</CreateTime><MsgType>{}</MsgType><Content>{}</Content>\
             <MsgId>{}</MsgId><AgentID>{}</AgentID></xml>",
            cdata(&self.config().corp_id),
            cdata(&request.from),
            now.timestamp(),
            cdata("text"),
            cdata(&request.content),
            msg_id,
            app.callback.agent_id,
        );
        let mut outcome = DriveOutcome {
            msg_id: Some(msg_id),
            ..DriveOutcome::default()
        };
        self.post_app(&app, &xml, true).await?.fill(&mut outcome);
        Ok(outcome)
    }

    pub async fn drive_bot_mention(
        &self,
        request: BotMentionRequest,
    ) -> Result<DriveOutcome, DriveError> {
        // A bot in long-connection mode gets the message on its WebSocket.
        let callback_bot = self.bot_target(request.bot.as_deref()).ok();
        let aibotid = callback_bot
            .as_ref()
            .map(|bot| bot.callback.aibotid.as_str());
        if let Some(outcome) = self.drive_long_connection_mention(&request, aibotid) {
            return outcome;
        }
        let bot = self.bot_target(request.bot.as_deref())?;
        let base = self.base_url().ok_or_else(|| {
            DriveError::Invalid("the simulator must be serving to issue response_urls".into())
        })?;
        let is_group = request.chat_id.is_some();
        let response_target = request
            .chat_id
            .clone()
            .unwrap_or_else(|| request.from.clone());
        let now = self.now();
        if let Some(chat_id) = &request.chat_id {
            self.state().smart_bot_in(chat_id)?;
        }
        let code = api::issue_response_code(
            &mut self.state(),
            &bot.callback.aibotid,
            &response_target,
            is_group,
            now,
        );
        let response_url = format!("{base}/cgi-bin/aibot/response?response_code={code}");
        let msgid = random_id(32);
        let mention = if bot.callback.bot_name.is_empty() {
            request.content.clone()
        } else {
            format!("@{} {}", bot.callback.bot_name, request.content)
        };
        let mut message = json!({
            "msgid": msgid,
            "aibotid": bot.callback.aibotid,
            "chattype": if is_group { "group" } else { "single" },
            "from": {"userid": request.from},
            "response_url": response_url,
            "msgtype": "text",
            "text": {"content": mention},
        });
        if let Some(chat_id) = &request.chat_id {
            message["chatid"] = json!(chat_id);
        }
        add_quote(&mut message, request.quote.as_deref());
        let mut outcome = DriveOutcome {
            bot_msgid: Some(msgid),
            response_url: Some(response_url),
            ..DriveOutcome::default()
        };
        self.post_bot(&bot, &message.to_string())
            .await?
            .fill(&mut outcome);
        Ok(outcome)
    }

    /// What the archive puller does for one message typed in a group: one
    /// signed batch to `/ingest/messages`, delivered once (the puller keeps
    /// its own position and re-posts later; qunyun dedupes by message id).
    pub async fn drive_archive_text(
        &self,
        request: ArchiveTextRequest,
    ) -> Result<DriveOutcome, DriveError> {
        let targets = self.targets()?;
        let secret = targets.ingest_secret.ok_or_else(|| {
            DriveError::Invalid("no ingest_secret in the callback targets".into())
        })?;
        let msgid = random_id(32);
        let body = json!({"messages": [{
            "message_id": msgid,
            "chat_id": request.chat_id,
            "sender": request.from,
            "text": request.content,
            "sent_at": self.now().timestamp(),
        }]})
        .to_string();
        // Stamped with the simulator's clock, like the callbacks it signs.
        let timestamp = self.now().timestamp().to_string();
        let signature =
            crate::ingest::sign_ingest_batch(secret.0.as_bytes(), &timestamp, body.as_bytes());
        let (_, timeout) = self.delivery_policy();
        let url = format!("{}/ingest/messages", targets.base_url.trim_end_matches('/'));
        let response = self
            .shared
            .http
            .post(url)
            .header(crate::ingest::SIGNATURE_HEADER, signature)
            .header(crate::ingest::TIMESTAMP_HEADER, timestamp)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok(DriveOutcome {
            status: Some(status),
            body: response.text().await?,
            attempts: 1,
            archive_msgid: Some(msgid),
            ..DriveOutcome::default()
        })
    }

    pub async fn drive_raw(&self, request: RawRequest) -> Result<DriveOutcome, DriveError> {
        // The escape hatch still cannot fake a member change in an internal group.
        if request.plaintext.contains("change_external_chat") {
            if let Some(chat_id) = xml_field(&request.plaintext, "ChatId") {
                self.state().check_member_change(&chat_id)?;
            }
        }
        let mut outcome = DriveOutcome::default();
        let delivered = match &request.bot {
            Some(name) => {
                let bot = self.bot_target(Some(name))?;
                self.post_bot(&bot, &request.plaintext).await?
            }
            None => {
                let app = self.app_target(request.app.as_deref())?;
                self.post_app(&app, &request.plaintext, request.with_agent)
                    .await?
            }
        };
        delivered.fill(&mut outcome);
        Ok(outcome)
    }

    pub async fn drive_verify_url(
        &self,
        request: VerifyRequest,
    ) -> Result<DriveOutcome, DriveError> {
        let (url, crypt) = match &request.bot {
            Some(name) => {
                let bot = self.bot_target(Some(name))?;
                let crypt = seal(&bot.callback.token, &bot.callback.encoding_aes_key, "")?;
                (callback_url(&bot.base_url, "bots", name), crypt)
            }
            None => {
                let app = self.app_target(request.app.as_deref())?;
                let crypt = seal(
                    &app.callback.token,
                    &app.callback.encoding_aes_key,
                    &self.config().corp_id,
                )?;
                (
                    callback_url(&app.base_url, "apps", &app.callback.name),
                    crypt,
                )
            }
        };
        // WeCom's echo is a long decimal string (docs/wecom.md#url-verification).
        let echo = format!("{}", rand::random::<u64>() | (1 << 62));
        let echostr = crypt.encrypt(echo.as_bytes());
        let timestamp = self.now().timestamp().to_string();
        let nonce = fresh_nonce();
        let signature = crypt.signature(&timestamp, &nonce, &echostr);
        let response = self
            .shared
            .http
            .get(&url)
            .query(&[
                ("msg_signature", signature.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
                ("echostr", echostr.as_str()),
            ])
            // qunyun must answer the verification within 1 s (docs/wecom.md#url-verification).
            .timeout(std::time::Duration::from_secs(1))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(DriveOutcome {
            status: Some(status),
            verified: Some(status == 200 && body == echo),
            body,
            attempts: 1,
            ..DriveOutcome::default()
        })
    }

    fn targets(&self) -> Result<CallbackTargets, DriveError> {
        self.callbacks().ok_or(DriveError::NoTargets)
    }

    fn app_target(&self, name: Option<&str>) -> Result<Target<AppCallback>, DriveError> {
        let targets = self.targets()?;
        let app = match name {
            Some(name) => targets.apps.iter().find(|app| app.name == name),
            None => targets.apps.first(),
        }
        .cloned()
        .ok_or_else(|| DriveError::UnknownTarget(name.unwrap_or("<first app>").to_owned()))?;
        Ok(Target {
            base_url: targets.base_url,
            callback: app,
        })
    }

    fn bot_target(&self, name: Option<&str>) -> Result<Target<BotCallback>, DriveError> {
        let targets = self.targets()?;
        let bot = match name {
            Some(name) => targets.bots.iter().find(|bot| bot.name == name),
            None => targets.bots.first(),
        }
        .cloned()
        .ok_or_else(|| DriveError::UnknownTarget(name.unwrap_or("<first bot>").to_owned()))?;
        Ok(Target {
            base_url: targets.base_url,
            callback: bot,
        })
    }

    /// Seal `plaintext` in the XML envelope (docs/wecom.md#xml-envelope) and POST it.
    /// `with_agent`: app messages carry the AgentID; 客户联系 events leave it
    /// empty.
    async fn post_app(
        &self,
        Target {
            base_url,
            callback: app,
        }: &Target<AppCallback>,
        plaintext: &str,
        with_agent: bool,
    ) -> Result<Delivered, DriveError> {
        let corp_id = &self.config().corp_id;
        let crypt = seal(&app.token, &app.encoding_aes_key, corp_id)?;
        let encrypt = crypt.encrypt(plaintext.as_bytes());
        let agent = if with_agent {
            app.agent_id.to_string()
        } else {
            String::new()
        };
        let envelope = format!(
            "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt><AgentID>{}</AgentID></xml>",
            cdata(corp_id),
            cdata(&encrypt),
            cdata(&agent),
        );
        let url = callback_url(base_url, "apps", &app.name);
        self.post_sealed(&crypt, &url, &encrypt, envelope, "text/xml")
            .await
    }

    /// Seal `plaintext` in the JSON envelope (docs/wecom.md#json-envelope, receive id "") and POST it.
    async fn post_bot(
        &self,
        Target {
            base_url,
            callback: bot,
        }: &Target<BotCallback>,
        plaintext: &str,
    ) -> Result<Delivered, DriveError> {
        let crypt = seal(&bot.token, &bot.encoding_aes_key, "")?;
        let encrypt = crypt.encrypt(plaintext.as_bytes());
        let envelope = json!({ "encrypt": encrypt }).to_string();
        let url = callback_url(base_url, "bots", &bot.name);
        self.post_sealed(&crypt, &url, &encrypt, envelope, "application/json")
            .await
    }

    /// POST one sealed envelope the way WeCom does (docs/wecom.md#delivery-and-retries): wait up to the
    /// callback timeout (5 s), and on a timeout or a non-200 answer deliver
    /// the same envelope again, up to `retries` more times.
    async fn post_sealed(
        &self,
        crypt: &MsgCrypt,
        url: &str,
        encrypt: &str,
        envelope: String,
        content_type: &str,
    ) -> Result<Delivered, DriveError> {
        let timestamp = self.now().timestamp().to_string();
        let nonce = fresh_nonce();
        let signature = crypt.signature(&timestamp, &nonce, encrypt);
        let (retries, timeout) = self.delivery_policy();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .shared
                .http
                .post(url)
                .query(&[
                    ("msg_signature", signature.as_str()),
                    ("timestamp", timestamp.as_str()),
                    ("nonce", nonce.as_str()),
                ])
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .timeout(timeout)
                .body(envelope.clone())
                .send()
                .await;
            let last = match sent {
                Ok(response) if response.status() == reqwest::StatusCode::OK => {
                    let body = response.text().await?;
                    return Ok(Delivered {
                        status: 200,
                        body,
                        attempts,
                    });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    Ok(Delivered {
                        status,
                        body,
                        attempts,
                    })
                }
                Err(error) => Err(DriveError::Http(error)),
            };
            if attempts > retries {
                return last;
            }
        }
    }

    /// How many times a failed callback is re-sent, and the per-try timeout.
    fn delivery_policy(&self) -> (u32, std::time::Duration) {
        let targets = self.callbacks();
        let retries = targets.as_ref().map_or(DEFAULT_RETRIES, |t| t.retries);
        let timeout_ms = targets
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_MS, |t| t.timeout_ms);
        (retries, std::time::Duration::from_millis(timeout_ms))
    }
}

/// The last answer to a (possibly retried) callback.
struct Delivered {
    status: u16,
    body: String,
    attempts: u32,
}

impl Delivered {
    fn fill(self, outcome: &mut DriveOutcome) {
        outcome.status = Some(self.status);
        outcome.body = self.body;
        outcome.attempts = self.attempts;
    }
}

fn seal(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<MsgCrypt, DriveError> {
    MsgCrypt::new(token, encoding_aes_key, receive_id)
        .map_err(|error| DriveError::Crypto(error.to_string()))
}

fn callback_url(base_url: &str, kind: &str, name: &str) -> String {
    format!(
        "{}/wecom/{kind}/{name}/callback",
        base_url.trim_end_matches('/')
    )
}

/// A callback config plus the base URL it is reached at.
struct Target<T> {
    base_url: String,
    callback: T,
}

enum MemberChange {
    /// Callback JoinScene (0 or 3).
    Join(u8),
    /// QuitScene (0 left, 1 removed).
    Leave(u8),
}

fn member_change_xml(
    corp_id: &str,
    create_time: i64,
    chat_id: &str,
    change: MemberChange,
    userids: &[String],
    last_version: &str,
    current_version: &str,
) -> String {
    let (detail, scenes) = match change {
        MemberChange::Join(scene) => (
            "add_member",
            format!("<JoinScene>{scene}</JoinScene><QuitScene>0</QuitScene>"),
        ),
        MemberChange::Leave(scene) => ("del_member", format!("<QuitScene>{scene}</QuitScene>")),
    };
    let items: String = userids
        .iter()
        .map(|userid| format!("<Item>{}</Item>", cdata(userid)))
        .collect();
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType><Event>{}</Event>\
         <ChatId>{}</ChatId><ChangeType>{}</ChangeType><UpdateDetail>{}</UpdateDetail>\
         {scenes}<MemChangeCnt>{}</MemChangeCnt><MemChangeList>{items}</MemChangeList>\
         <LastMemVer>{}</LastMemVer><CurMemVer>{}</CurMemVer></xml>",
        cdata(corp_id),
        cdata("sys"),
        cdata("event"),
        cdata("change_external_chat"),
        cdata(chat_id),
        cdata("update"),
        cdata(detail),
        userids.len(),
        cdata(last_version),
        cdata(current_version),
    )
}

/// Wrap text in CDATA; a literal `]]>` inside is split across two sections.
/// The text of the first `<name>` element, CDATA unwrapped.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let value = xml[start..end].trim();
    let value = value
        .strip_prefix("<![CDATA[")
        .and_then(|v| v.strip_suffix("]]>"))
        .unwrap_or(value);
    Some(value.to_owned())
}

fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdata_splits_terminator() {
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn join_xml_lists_every_member_and_both_versions() {
        let xml = member_change_xml(
            "wwcorp",
            1_700_000_100,
            "wrchat",
            MemberChange::Join(3),
            &["wmA".into(), "wmB".into()],
            "v1",
            "v2",
        );
        assert!(xml.contains("<UpdateDetail><![CDATA[add_member]]></UpdateDetail>"));
        assert!(xml.contains("<JoinScene>3</JoinScene>"));
        assert!(xml.contains("<MemChangeCnt>2</MemChangeCnt>"));
        assert!(xml.contains(
            "<MemChangeList><Item><![CDATA[wmA]]></Item><Item><![CDATA[wmB]]></Item></MemChangeList>"
        ));
        assert!(xml.contains("<LastMemVer><![CDATA[v1]]></LastMemVer>"));
        assert!(xml.contains("<CurMemVer><![CDATA[v2]]></CurMemVer>"));
    }
}

/// A member clicks the submit button of a template card the simulator
/// delivered (a smart bot's `vote_interaction` card, say) after ticking
/// `option_ids`. WeCom sends the click as `template_card_event` to the bot
/// that sent the card: over its long connection, or to its callback URL,
/// where the answer may carry the card update (docs/wecom.md#template-cards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardClickRequest {
    pub chat_id: String,
    pub from: String,
    pub task_id: String,
    #[serde(default)]
    pub option_ids: Vec<String>,
}

impl Sim {
    pub async fn drive_card_click(
        &self,
        request: CardClickRequest,
    ) -> Result<DriveOutcome, DriveError> {
        // Only a card that was delivered into that chat can be clicked.
        let card = self
            .messages()
            .into_iter()
            .rev()
            .find(|d| {
                d.msgtype == "template_card"
                    && d.target == request.chat_id
                    && d.content.get("task_id").and_then(serde_json::Value::as_str)
                        == Some(request.task_id.as_str())
            })
            .ok_or_else(|| {
                DriveError::Invalid(format!(
                    "no card with task_id {:?} was delivered to {:?}",
                    request.task_id, request.chat_id
                ))
            })?;
        let bot_id = card.sender.clone();
        let question_key = card
            .content
            .pointer("/checkbox/question_key")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let msgid = random_id(32);
        let event = json!({
            "msgid": msgid,
            "aibotid": bot_id,
            "chatid": request.chat_id,
            "chattype": "group",
            "from": {"userid": request.from},
            "msgtype": "event",
            "create_time": self.now().timestamp(),
            "event": {
                "eventtype": "template_card_event",
                "template_card_event": {
                    "card_type": card.content.get("card_type").cloned().unwrap_or_default(),
                    "event_key": card.content.pointer("/submit_button/key").cloned().unwrap_or_default(),
                    "task_id": request.task_id,
                    "selected_items": {"selected_item": [{
                        "question_key": question_key,
                        "option_ids": {"option_id": request.option_ids},
                    }]},
                },
            },
        });
        if self.is_long_connection_bot(&bot_id) {
            self.deliver_long_connection_event(&bot_id, event)?;
            return Ok(DriveOutcome {
                attempts: 1,
                bot_msgid: Some(msgid),
                ..DriveOutcome::default()
            });
        }
        let targets = self.targets()?;
        let name = targets
            .bots
            .iter()
            .find(|bot| bot.aibotid == bot_id)
            .map(|bot| bot.name.clone())
            .ok_or_else(|| DriveError::UnknownTarget(bot_id.clone()))?;
        let bot = self.bot_target(Some(&name))?;
        let mut outcome = DriveOutcome {
            bot_msgid: Some(msgid),
            ..DriveOutcome::default()
        };
        self.post_bot(&bot, &event.to_string())
            .await?
            .fill(&mut outcome);
        // The passive answer: an encrypted `update_template_card` for this card.
        if let Some(card) = self.opened_card_update(&bot, &outcome.body, &request.task_id) {
            let sent = Sent {
                route: super::model::Route::BotResponse,
                msgtype: "update_template_card",
                content: &card,
                now: self.now(),
                msgid: &random_id(32),
                sender: &bot_id,
            };
            self.state().deliver(&sent, request.chat_id.clone());
        }
        Ok(outcome)
    }

    /// The card of an encrypted passive `update_template_card` answer whose
    /// card keeps `task_id` (WeCom ignores any other).
    fn opened_card_update(
        &self,
        bot: &Target<BotCallback>,
        body: &str,
        task_id: &str,
    ) -> Option<serde_json::Value> {
        let envelope: serde_json::Value = serde_json::from_str(body).ok()?;
        let encrypt = envelope.get("encrypt")?.as_str()?;
        let crypt = seal(&bot.callback.token, &bot.callback.encoding_aes_key, "").ok()?;
        let plain = crypt.decrypt(encrypt).ok()?;
        let answer: serde_json::Value = serde_json::from_slice(&plain).ok()?;
        if answer.get("response_type")?.as_str()? != "update_template_card" {
            return None;
        }
        let card = answer.get("template_card")?.clone();
        (card.get("task_id")?.as_str()? == task_id).then_some(card)
    }
}
