//! Outbound client for WeCom's server API (docs/wecom.md#server-api-basics).
//!
//! Every call has a timeout and decodes `{errcode, errmsg}` into [`ApiError`],
//! which [`ApiError::class`] maps to an action. Access tokens are cached per
//! secret (one client serves one corp), refreshed at 90 % of their lifetime
//! and, when WeCom rejects one (40014/42001), refreshed once and the call
//! retried once. Refreshes are single-flight: one `gettoken` per secret no
//! matter how many calls notice the expiry at the same time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
/// App and contacts secrets; `Debug` never shows them.
pub use crate::config::Secret;

pub mod error;
pub mod types;

pub use error::{classify_errcode, ApiError, ErrorClass};
pub use types::*;

/// WeCom's real API base.
pub const WECOM_BASE_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/";

/// Refresh a token once this fraction of its lifetime has passed.
const PROACTIVE_REFRESH_FRACTION: f64 = 0.9;

/// An access token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Where and how to reach WeCom.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Ends with `cgi-bin/`: [`WECOM_BASE_URL`], or the simulator's
    /// `http://127.0.0.1:PORT/cgi-bin/` in tests.
    pub base_url: String,
    pub corp_id: String,
    /// Applies to every single HTTP call.
    pub timeout: Duration,
}

impl ApiConfig {
    pub fn new(base_url: impl Into<String>, corp_id: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        Self {
            base_url,
            corp_id: corp_id.into(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The WeCom API client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ApiConfig,
    clock: SharedClock,
    tokens: TokenCache,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.inner.config.base_url)
            .field("corp_id", &self.inner.config.corp_id)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(config: ApiConfig, clock: SharedClock) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            // A redirect could lead the corp's tokens or a forged response_url's
            // request anywhere; WeCom's API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(ApiError::from_reqwest)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                clock,
                tokens: TokenCache::default(),
            }),
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    // ---- access tokens -------------------------------------------------

    /// `GET gettoken`: always asks WeCom, bypassing the cache. Returns the
    /// token and its lifetime.
    pub async fn fetch_token(&self, secret: &Secret) -> Result<(AccessToken, Duration), ApiError> {
        let url = self.url("gettoken");
        let request = self.inner.http.get(url).query(&[
            ("corpid", self.inner.config.corp_id.as_str()),
            ("corpsecret", secret.expose()),
        ]);
        let response: TokenResponse =
            crate::metrics::wecom_call("gettoken", self.execute(request).await)?;
        Ok((
            AccessToken(response.access_token),
            Duration::from_secs(response.expires_in),
        ))
    }

    /// A valid token for `secret`, from the cache unless it is due for its
    /// proactive refresh.
    pub async fn access_token(&self, secret: &Secret) -> Result<AccessToken, ApiError> {
        let slot = self.inner.tokens.slot(secret);
        // Holding the slot's lock across gettoken is the single flight: other
        // callers wait here and then find the fresh token.
        let mut cached = slot.lock().await;
        let now = self.inner.clock.now();
        if let Some(token) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.token.clone());
        }
        crate::metrics::token_refresh("due");
        match self.fetch_token(secret).await {
            Ok((token, lifetime)) => {
                *cached = Some(CachedToken::new(token.clone(), now, lifetime));
                Ok(token)
            }
            // A failed proactive refresh is not fatal while the old token lives.
            Err(error) => match cached.as_ref().filter(|t| now < t.expires_at) {
                Some(still_valid) => {
                    tracing::warn!(%error, "proactive token refresh failed; keeping current token");
                    Ok(still_valid.token.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Called when WeCom rejected `rejected`: fetch a new token unless another
    /// caller already replaced it while we waited for the lock.
    async fn refresh_after_rejection(
        &self,
        secret: &Secret,
        rejected: &AccessToken,
    ) -> Result<AccessToken, ApiError> {
        let slot = self.inner.tokens.slot(secret);
        let mut cached = slot.lock().await;
        if let Some(current) = cached.as_ref().filter(|t| &t.token != rejected) {
            return Ok(current.token.clone());
        }
        let now = self.inner.clock.now();
        crate::metrics::token_refresh("rejected");
        let (token, lifetime) = self.fetch_token(secret).await?;
        *cached = Some(CachedToken::new(token.clone(), now, lifetime));
        Ok(token)
    }

    // ---- endpoints -----------------------------------------------------

    /// `POST message/send` (app message to members, duplicate check on).
    pub async fn send_message(
        &self,
        secret: &Secret,
        message: &AppMessage,
    ) -> Result<SendMessageResponse, ApiError> {
        self.post(secret, "message/send", message).await
    }

    /// `POST appchat/create`; returns the chat id.
    pub async fn appchat_create(
        &self,
        secret: &Secret,
        chat: &AppChatCreate,
    ) -> Result<String, ApiError> {
        let created: AppChatCreated = self.post(secret, "appchat/create", chat).await?;
        Ok(created.chatid)
    }

    /// `POST appchat/update` (only chats this app created).
    pub async fn appchat_update(
        &self,
        secret: &Secret,
        update: &AppChatUpdate,
    ) -> Result<(), ApiError> {
        self.post_empty(secret, "appchat/update", update).await
    }

    /// `GET appchat/get?chatid=…`.
    pub async fn appchat_get(
        &self,
        secret: &Secret,
        chatid: &str,
    ) -> Result<AppChatInfo, ApiError> {
        let response: AppChatGetResponse = self
            .call(
                secret,
                Method::GET,
                "appchat/get",
                &[("chatid", chatid)],
                None::<&()>,
            )
            .await?;
        Ok(response.chat_info)
    }

    /// `GET agent/get?agentid=…`: the app's settings (its visible range).
    pub async fn agent_get(&self, secret: &Secret, agent_id: i64) -> Result<AgentInfo, ApiError> {
        let agent_id = agent_id.to_string();
        self.call(
            secret,
            Method::GET,
            "agent/get",
            &[("agentid", agent_id.as_str())],
            None::<&()>,
        )
        .await
    }

    /// `POST appchat/send`.
    pub async fn appchat_send(
        &self,
        secret: &Secret,
        message: &AppChatSend,
    ) -> Result<(), ApiError> {
        self.post_empty(secret, "appchat/send", message).await
    }

    /// `POST webhook/send?key=KEY` (group robot; no access token).
    pub async fn webhook_send(&self, key: &str, message: &WebhookMessage) -> Result<(), ApiError> {
        let request = self
            .inner
            .http
            .post(self.url("webhook/send"))
            .query(&[("key", key)])
            .json(message);
        let _: Empty = crate::metrics::wecom_call("webhook/send", self.execute(request).await)?;
        Ok(())
    }

    /// POST to a smart bot's one-shot `response_url` (a full URL from the
    /// callback), only if it is WeCom's own bot-response endpoint under the
    /// configured base: see [`check_response_url`].
    pub async fn respond_to_bot(
        &self,
        response_url: &str,
        response: &BotResponse,
    ) -> Result<(), ApiError> {
        let url = check_response_url(&self.inner.config.base_url, response_url)
            .map_err(ApiError::Refused)?;
        let request = self.inner.http.post(url).json(response);
        let _: Empty = crate::metrics::wecom_call("bot/response_url", self.execute(request).await)?;
        Ok(())
    }

    /// `POST externalcontact/groupchat/list`, one page.
    pub async fn groupchat_list(
        &self,
        secret: &Secret,
        request: &GroupChatListRequest,
    ) -> Result<GroupChatListPage, ApiError> {
        self.post(secret, "externalcontact/groupchat/list", request)
            .await
    }

    /// Every page of `groupchat/list`, following `next_cursor`.
    pub async fn groupchat_list_all(
        &self,
        secret: &Secret,
        status_filter: u8,
        owner_userids: &[String],
    ) -> Result<Vec<GroupChatSummary>, ApiError> {
        all_pages("groupchat/list", |cursor| {
            let request = GroupChatListRequest {
                status_filter,
                owner_filter: (!owner_userids.is_empty()).then(|| OwnerFilter {
                    userid_list: owner_userids.to_vec(),
                }),
                cursor,
                limit: 1000,
            };
            async move {
                let page = self.groupchat_list(secret, &request).await?;
                Ok((page.group_chat_list, page.next_cursor))
            }
        })
        .await
    }

    /// `POST externalcontact/groupchat/get` (with names).
    pub async fn groupchat_get(
        &self,
        secret: &Secret,
        chat_id: &str,
    ) -> Result<GroupChat, ApiError> {
        let request = GroupChatGetRequest {
            chat_id,
            need_name: 1,
        };
        let response: GroupChatGetResponse = self
            .post(secret, "externalcontact/groupchat/get", &request)
            .await?;
        Ok(response.group_chat)
    }

    /// `POST externalcontact/add_msg_template`: creates a mass-message task
    /// the sender must still confirm in the client.
    pub async fn add_msg_template(
        &self,
        secret: &Secret,
        template: &AddMsgTemplate,
    ) -> Result<AddMsgTemplateResponse, ApiError> {
        self.post(secret, "externalcontact/add_msg_template", template)
            .await
    }

    /// `POST externalcontact/mark_tag`: adds and removes customer tags (by
    /// WeCom tag id) on an external contact of `userid`.
    pub async fn mark_tag(&self, secret: &Secret, mark: &MarkTag) -> Result<(), ApiError> {
        self.post_empty(secret, "externalcontact/mark_tag", mark)
            .await
    }

    /// `POST externalcontact/get_corp_tag_list` for every group and tag.
    pub async fn get_corp_tag_list(&self, secret: &Secret) -> Result<Vec<CorpTagGroup>, ApiError> {
        let list: CorpTagList = self
            .post(
                secret,
                "externalcontact/get_corp_tag_list",
                &serde_json::json!({"tag_id": [], "group_id": []}),
            )
            .await?;
        Ok(list.tag_group)
    }

    /// `POST externalcontact/add_corp_tag`; the group with the new tags.
    pub async fn add_corp_tag(
        &self,
        secret: &Secret,
        add: &AddCorpTag,
    ) -> Result<CorpTagGroup, ApiError> {
        let added: AddCorpTagResponse = self
            .post(secret, "externalcontact/add_corp_tag", add)
            .await?;
        Ok(added.tag_group)
    }

    /// `POST externalcontact/get_groupmsg_send_result`, one page.
    pub async fn get_groupmsg_send_result(
        &self,
        secret: &Secret,
        request: &GroupMsgSendResultRequest,
    ) -> Result<GroupMsgSendResultPage, ApiError> {
        self.post(secret, "externalcontact/get_groupmsg_send_result", request)
            .await
    }

    /// Every recipient of one sender's share of a mass message.
    pub async fn get_groupmsg_send_result_all(
        &self,
        secret: &Secret,
        msgid: &str,
        userid: &str,
    ) -> Result<Vec<GroupMsgSendResult>, ApiError> {
        all_pages("get_groupmsg_send_result", |cursor| {
            let request = GroupMsgSendResultRequest {
                msgid: msgid.to_owned(),
                userid: userid.to_owned(),
                limit: 1000,
                cursor,
            };
            async move {
                let page = self.get_groupmsg_send_result(secret, &request).await?;
                Ok((page.send_list, page.next_cursor))
            }
        })
        .await
    }

    /// `POST externalcontact/send_welcome_msg` (within 20 s of the event, once).
    pub async fn send_welcome_msg(
        &self,
        secret: &Secret,
        message: &WelcomeMessage,
    ) -> Result<(), ApiError> {
        self.post_empty(secret, "externalcontact/send_welcome_msg", message)
            .await
    }

    /// `POST externalcontact/group_welcome_template/add`; returns the template id.
    pub async fn group_welcome_template_add(
        &self,
        secret: &Secret,
        template: &GroupWelcomeTemplate,
    ) -> Result<String, ApiError> {
        let added: GroupWelcomeTemplateAdded = self
            .post(
                secret,
                "externalcontact/group_welcome_template/add",
                template,
            )
            .await?;
        Ok(added.template_id)
    }

    /// `POST externalcontact/group_welcome_template/edit`: replaces the
    /// material of `template_id`.
    pub async fn group_welcome_template_edit(
        &self,
        secret: &Secret,
        edit: &GroupWelcomeTemplateEdit,
    ) -> Result<(), ApiError> {
        self.post_empty(secret, "externalcontact/group_welcome_template/edit", edit)
            .await
    }

    /// `POST externalcontact/group_welcome_template/get`.
    pub async fn group_welcome_template_get(
        &self,
        secret: &Secret,
        template_id: &str,
    ) -> Result<GroupWelcomeMaterial, ApiError> {
        self.post(
            secret,
            "externalcontact/group_welcome_template/get",
            &serde_json::json!({ "template_id": template_id }),
        )
        .await
    }

    // ---- plumbing ------------------------------------------------------

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.config.base_url, path)
    }

    async fn post<B, T>(&self, secret: &Secret, path: &'static str, body: &B) -> Result<T, ApiError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.call(secret, Method::POST, path, &[], Some(body)).await
    }

    /// [`post`](Self::post) for the calls whose answer is only the error code.
    async fn post_empty<B>(
        &self,
        secret: &Secret,
        path: &'static str,
        body: &B,
    ) -> Result<(), ApiError>
    where
        B: Serialize + ?Sized,
    {
        let _: Empty = self.post(secret, path, body).await?;
        Ok(())
    }

    /// One authenticated call; on a rejected token, one refresh and one retry.
    async fn call<B, T>(
        &self,
        secret: &Secret,
        method: Method,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, ApiError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let token = self.access_token(secret).await?;
        match self
            .call_with_token(&token, method.clone(), path, query, body)
            .await
        {
            Err(error) if error.is_token_rejected() => {
                tracing::info!(path, errcode = ?error.errcode(), "access token rejected; refreshing once");
                let fresh = self.refresh_after_rejection(secret, &token).await?;
                self.call_with_token(&fresh, method, path, query, body)
                    .await
            }
            other => other,
        }
    }

    async fn call_with_token<B, T>(
        &self,
        token: &AccessToken,
        method: Method,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, ApiError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut request = self
            .inner
            .http
            .request(method, self.url(path))
            .query(&[("access_token", token.expose())])
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        crate::metrics::wecom_call(path, self.execute(request).await)
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = request
            .timeout(self.inner.config.timeout)
            .send()
            .await
            .map_err(ApiError::from_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::HttpStatus {
                status: status.as_u16(),
            });
        }
        let body = read_capped(response, MAX_RESPONSE_BYTES).await?;
        decode_response(&body)
    }
}

/// Largest answer read from WeCom: its biggest (a 2000-member group's details,
/// a 1000-chat list page) are a few hundred KiB.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Reads the body, giving up as soon as it exceeds `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::Decode(format!("answer larger than {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ApiError::from_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The path below the API base where WeCom's smart-bot `response_url`s point
/// (docs/wecom.md#response_url).
pub const BOT_RESPONSE_PATH: &str = "aibot/response";

/// A `response_url` arrives inside a callback; were it posted to as given, a
/// forged or mistaken callback could make qunyun call any host on its network.
/// It must have the API base's scheme, host and port and the bot-response path
/// (any query, no user info or fragment); the reason names what differs.
pub fn check_response_url(base_url: &str, response_url: &str) -> Result<reqwest::Url, String> {
    let base = reqwest::Url::parse(base_url).map_err(|e| format!("API base is not a URL ({e})"))?;
    let url = reqwest::Url::parse(response_url)
        .map_err(|e| format!("response_url is not a URL ({e})"))?;
    if url.scheme() != base.scheme() {
        return Err(format!(
            "response_url scheme {:?} is not the API base's {:?}",
            url.scheme(),
            base.scheme()
        ));
    }
    if url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return Err(format!(
            "response_url host {:?} port {:?} is not the API base's",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default()
        ));
    }
    let expected_path = format!("{}{BOT_RESPONSE_PATH}", base.path());
    if url.path() != expected_path {
        return Err(format!(
            "response_url path {:?} is not {expected_path:?}",
            url.path()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("response_url carries user info or a fragment".to_owned());
    }
    Ok(url)
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Decides on `errcode` first (WeCom answers errors with HTTP 200), then reads
/// the typed body. Decode errors name only the position, never body text,
/// because bodies can carry tokens.
fn decode_response<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(describe_json_error)?;
    if envelope.errcode != 0 {
        return Err(ApiError::WeCom {
            errcode: envelope.errcode,
            errmsg: envelope.errmsg,
        });
    }
    serde_json::from_slice(body).map_err(describe_json_error)
}

/// Collects every page of a cursor-paged list: `fetch` gets the cursor to ask
/// for (empty for the first page) and answers the page's items and
/// `next_cursor`. A cursor that does not move is an error, not an endless loop.
async fn all_pages<T, F, Fut>(endpoint: &str, mut fetch: F) -> Result<Vec<T>, ApiError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), ApiError>>,
{
    let mut cursor = String::new();
    let mut items = Vec::new();
    loop {
        let (page, next_cursor) = fetch(cursor.clone()).await?;
        items.extend(page);
        if next_cursor.is_empty() {
            return Ok(items);
        }
        if next_cursor == cursor {
            return Err(ApiError::Decode(format!(
                "{endpoint} cursor did not advance"
            )));
        }
        cursor = next_cursor;
    }
}

fn describe_json_error(error: serde_json::Error) -> ApiError {
    ApiError::Decode(format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    ))
}

struct CachedToken {
    token: AccessToken,
    refresh_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl CachedToken {
    fn new(token: AccessToken, fetched_at: DateTime<Utc>, lifetime: Duration) -> Self {
        let refresh_after = lifetime.mul_f64(PROACTIVE_REFRESH_FRACTION);
        let to_chrono =
            |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
        Self {
            token,
            refresh_at: fetched_at + to_chrono(refresh_after),
            expires_at: fetched_at + to_chrono(lifetime),
        }
    }
}

/// One async lock per secret (keyed by its value; one client serves one corp): concurrent refreshes of the same secret queue
/// behind each other, different secrets do not block each other.
#[derive(Default)]
struct TokenCache {
    slots: Mutex<HashMap<String, TokenSlot>>,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

impl TokenCache {
    fn slot(&self, secret: &Secret) -> TokenSlot {
        // A poisoned map only means another thread panicked while inserting;
        // the map itself is still usable.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(secret.expose().to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests;
