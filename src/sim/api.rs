//! The simulated WeCom server API (`/cgi-bin/*`), as synchronous functions
//! over the in-memory state so the HTTP layer stays thin.
//!
//! Error codes follow docs/wecom.md#error-codes and WeCom's global error-code list.
//! Where neither says which code a particular check uses, the choice is
//! marked `plausible:` in a comment.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::model::{member_type_from_id, DropReason, GroupWelcomeTemplate, Route};
use super::state::{random_id, MassTask, Sent, SimState};
use super::{SimApp, SimConfig};

mod tags;

/// One API call as the HTTP layer saw it.
pub(crate) struct Call<'a> {
    /// Path below `/cgi-bin/`, e.g. `message/send`.
    pub path: &'a str,
    pub query: &'a HashMap<String, String>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
}

pub(crate) enum Outcome {
    Json(Value),
    /// Not an API path WeCom has (for this simulator): HTTP 404.
    NotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WeComError {
    pub errcode: i64,
    pub errmsg: String,
}

fn fail(errcode: i64, errmsg: impl Into<String>) -> WeComError {
    WeComError {
        errcode,
        errmsg: errmsg.into(),
    }
}

type ApiResult = Result<Map<String, Value>, WeComError>;

// Limits from docs/wecom.md#rate-limits and docs/wecom.md#apis-qunyun-calls.
const APP_MESSAGE_TEXT_MAX: usize = 2048;
const APP_MESSAGE_MARKDOWN_MAX: usize = 2048;
const WEBHOOK_TEXT_MAX: usize = 2048;
const WEBHOOK_MARKDOWN_MAX: usize = 4096;
const APP_MEMBER_PER_MINUTE: usize = 30;
const APP_MEMBER_PER_HOUR: usize = 1000;
const APPCHAT_MEMBER_PER_MINUTE: usize = 200;
const WEBHOOK_PER_MINUTE: usize = 20;
const DUPLICATE_INTERVAL_DEFAULT: i64 = 1800;
const DUPLICATE_INTERVAL_MAX: i64 = 4 * 3600;
const CUSTOMER_TEXT_MAX: usize = 4000;
/// Group welcome material text, in bytes (docs/wecom.md#group-welcome-templates).
const GROUP_WELCOME_TEXT_MAX: usize = 3000;
const ATTACHMENTS_MAX: usize = 9;
const WELCOME_CODE_TTL_SECS: i64 = 20;
const RESPONSE_CODE_TTL_SECS: i64 = 3600;
const BOT_MARKDOWN_MAX: usize = 20480;
const GROUP_WELCOME_TEMPLATES_MAX: usize = 100;

pub(crate) fn dispatch(state: &mut SimState, config: &SimConfig, call: &Call) -> Outcome {
    let result = match call.path {
        "gettoken" => gettoken(state, config, call),
        "webhook/send" => with_body(call, |body| webhook_send(state, call, body)),
        "aibot/response" => with_body(call, |body| aibot_response(state, call, body)),
        "message/send"
        | "agent/get"
        | "appchat/create"
        | "appchat/update"
        | "appchat/get"
        | "appchat/send"
        | "externalcontact/groupchat/list"
        | "externalcontact/groupchat/get"
        | "externalcontact/add_msg_template"
        | "externalcontact/mark_tag"
        | "externalcontact/get_corp_tag_list"
        | "externalcontact/add_corp_tag"
        | "externalcontact/get_groupmsg_send_result"
        | "externalcontact/get_groupmsg_task"
        | "externalcontact/send_welcome_msg"
        | "externalcontact/group_welcome_template/add"
        | "externalcontact/group_welcome_template/edit"
        | "externalcontact/group_welcome_template/get" => match authorize(state, config, call) {
            Err(error) => Err(error),
            Ok(app) => with_body(call, |body| authorized(state, config, app, call, body)),
        },
        _ => return Outcome::NotFound,
    };
    Outcome::Json(render(result))
}

fn authorized(
    state: &mut SimState,
    config: &SimConfig,
    app: &SimApp,
    call: &Call,
    body: &Value,
) -> ApiResult {
    match call.path {
        "message/send" => message_send(state, app, call, body),
        "agent/get" => agent_get(app, call),
        "appchat/create" => appchat_create(state, app, body),
        "appchat/update" => appchat_update(state, app, body),
        "appchat/get" => appchat_get(state, app, call),
        "appchat/send" => appchat_send(state, app, call, body),
        "externalcontact/groupchat/list" => groupchat_list(state, body),
        "externalcontact/groupchat/get" => groupchat_get(state, body),
        "externalcontact/add_msg_template" => add_msg_template(state, config, call, body),
        "externalcontact/mark_tag" => tags::mark_tag(state, body),
        "externalcontact/get_corp_tag_list" => tags::get_corp_tag_list(state, body),
        "externalcontact/add_corp_tag" => tags::add_corp_tag(state, body, call.now),
        "externalcontact/get_groupmsg_send_result" => get_groupmsg_send_result(state, body),
        "externalcontact/get_groupmsg_task" => get_groupmsg_task(state, body),
        "externalcontact/send_welcome_msg" => send_welcome_msg(state, call, body),
        "externalcontact/group_welcome_template/add" => group_welcome_template_add(state, body),
        "externalcontact/group_welcome_template/edit" => group_welcome_template_edit(state, body),
        "externalcontact/group_welcome_template/get" => group_welcome_template_get(state, body),
        // `dispatch` only routes the paths above here.
        _ => Err(fail(-1, "system busy")),
    }
}

fn render(result: ApiResult) -> Value {
    match result {
        Ok(mut fields) => {
            fields.insert("errcode".into(), json!(0));
            fields.insert("errmsg".into(), json!("ok"));
            Value::Object(fields)
        }
        Err(error) => json!({"errcode": error.errcode, "errmsg": error.errmsg}),
    }
}

/// Parse the JSON body (an empty body counts as `{}`, so missing fields get
/// their own codes). Malformed JSON → 47001 data format error.
fn with_body(call: &Call, handler: impl FnOnce(&Value) -> ApiResult) -> ApiResult {
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(call.body).map_err(|_| fail(47001, "data format error"))?
    };
    if !body.is_object() {
        return Err(fail(47001, "data format error"));
    }
    handler(&body)
}

// ---------------------------------------------------------------- tokens ---

fn gettoken(state: &mut SimState, config: &SimConfig, call: &Call) -> ApiResult {
    state.stats.gettoken_calls += 1;
    let corpid =
        non_empty(call.query.get("corpid")).ok_or_else(|| fail(41002, "corpid missing"))?;
    let secret =
        non_empty(call.query.get("corpsecret")).ok_or_else(|| fail(41004, "corpsecret missing"))?;
    if corpid != config.corp_id {
        return Err(fail(40013, "invalid corpid"));
    }
    let app = config
        .apps
        .iter()
        .position(|app| app.secret == secret)
        .ok_or_else(|| fail(40001, "invalid credential"))?;
    // Every call issues a new token; older ones stay valid until they expire
    // (WeCom no longer promises to return the same token, docs/wecom.md#access-token).
    let token = random_id(64);
    let ttl = config.token_ttl_secs;
    state.tokens.insert(
        token.clone(),
        super::state::IssuedToken {
            app,
            expires_at: call.now + Duration::seconds(ttl),
        },
    );
    Ok(fields(json!({"access_token": token, "expires_in": ttl})))
}

/// `GET agent/get?agentid=N`: the app's settings, visible range included.
/// Every simulated app is visible to the whole corp (the root department, id
/// 1), which app groups need; a `reply` fault models a narrower range.
fn agent_get(app: &SimApp, call: &Call) -> ApiResult {
    let agentid = non_empty(call.query.get("agentid"))
        .ok_or_else(|| fail(41011, "agentid missing"))?
        .parse::<i64>()
        .map_err(|_| fail(40056, "invalid agentid"))?;
    // plausible: a secret reads only its own app; WeCom's code for another
    // app's id is not documented on pages we read.
    if app.agent_id != Some(agentid) {
        return Err(fail(40056, "invalid agentid"));
    }
    Ok(fields(json!({
        "agentid": agentid,
        "name": app.name,
        "square_logo_url": "",
        "description": "",
        "allow_userinfos": {"user": []},
        "allow_partys": {"partyid": [1]},
        "allow_tags": {"tagid": []},
        "close": 0,
        "redirect_domain": "",
        "report_location_flag": 0,
        "isreportenter": 0,
        "home_url": "",
    })))
}

fn authorize<'c>(
    state: &SimState,
    config: &'c SimConfig,
    call: &Call,
) -> Result<&'c SimApp, WeComError> {
    let token = non_empty(call.query.get("access_token"))
        .ok_or_else(|| fail(41001, "access_token missing"))?;
    let issued = state
        .tokens
        .get(token)
        .ok_or_else(|| fail(40014, "invalid access_token"))?;
    if call.now >= issued.expires_at {
        return Err(fail(42001, "access_token expired"));
    }
    config
        .apps
        .get(issued.app)
        .ok_or_else(|| fail(40014, "invalid access_token"))
}

// --------------------------------------------------------------- content ---

/// Which message types a send API accepts and its size limits.
struct ContentRules {
    allowed: &'static [&'static str],
    text_max: usize,
    markdown_max: usize,
    /// Robots take images inline (base64 + md5), apps by media_id.
    inline_images: bool,
}

const APP_MESSAGE_RULES: ContentRules = ContentRules {
    allowed: &[
        "text",
        "image",
        "voice",
        "video",
        "file",
        "textcard",
        "news",
        "mpnews",
        "markdown",
        "miniprogram_notice",
        "template_card",
    ],
    text_max: APP_MESSAGE_TEXT_MAX,
    markdown_max: APP_MESSAGE_MARKDOWN_MAX,
    inline_images: false,
};

const APPCHAT_RULES: ContentRules = ContentRules {
    allowed: &[
        "text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown",
    ],
    text_max: APP_MESSAGE_TEXT_MAX,
    markdown_max: APP_MESSAGE_MARKDOWN_MAX,
    inline_images: false,
};

const WEBHOOK_RULES: ContentRules = ContentRules {
    allowed: &[
        "text",
        "markdown",
        "markdown_v2",
        "image",
        "news",
        "file",
        "voice",
        "template_card",
    ],
    text_max: WEBHOOK_TEXT_MAX,
    markdown_max: WEBHOOK_MARKDOWN_MAX,
    inline_images: true,
};

/// Validate `body.msgtype` and its type object; returns (msgtype, object).
fn validate_content(body: &Value, rules: &ContentRules) -> Result<(String, Value), WeComError> {
    let msgtype = body
        .get("msgtype")
        .and_then(Value::as_str)
        .filter(|t| rules.allowed.contains(t))
        .ok_or_else(|| fail(40008, "invalid message type"))?;
    let object = body
        .get(msgtype)
        .filter(|value| value.is_object())
        .cloned()
        // plausible: a missing type object is reported like an empty text.
        .ok_or_else(|| fail(44004, format!("{msgtype} is empty")))?;
    match msgtype {
        "text" => check_text(&object, "content", rules.text_max)?,
        "markdown" | "markdown_v2" => check_text(&object, "content", rules.markdown_max)?,
        "textcard" => {
            let title = required_str(&object, "title", 41016)?;
            let description = required_str(&object, "description", 41033)?;
            required_str(&object, "url", 41010)?;
            if title.len() > 128 || description.len() > 512 {
                return Err(fail(45002, "content size out of limit"));
            }
            if let Some(btntxt) = object.get("btntxt").and_then(Value::as_str) {
                if btntxt.chars().count() > 4 {
                    return Err(fail(45002, "btntxt size out of limit"));
                }
            }
        }
        "news" | "mpnews" => check_articles(&object)?,
        "image" if rules.inline_images => {
            // Robot images are inline: base64 + md5 (plausible: 40058 when missing).
            required_str(&object, "base64", 40058)?;
            required_str(&object, "md5", 40058)?;
        }
        "image" | "voice" | "video" | "file" => {
            required_str(&object, "media_id", 41006)?;
        }
        _ => {}
    }
    Ok((msgtype.to_owned(), object))
}

fn check_text(object: &Value, field: &str, max_bytes: usize) -> Result<(), WeComError> {
    let content = object
        .get(field)
        .and_then(Value::as_str)
        .filter(|content| !content.is_empty())
        .ok_or_else(|| fail(44004, "empty content"))?;
    if content.len() > max_bytes {
        return Err(fail(
            45002,
            format!(
                "content size out of limit ({} > {max_bytes} bytes)",
                content.len()
            ),
        ));
    }
    Ok(())
}

fn check_articles(object: &Value) -> Result<(), WeComError> {
    let count = object
        .get("articles")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    if !(1..=8).contains(&count) {
        return Err(fail(45008, "article count must be 1..8"));
    }
    Ok(())
}

fn required_str<'v>(object: &'v Value, field: &str, errcode: i64) -> Result<&'v str, WeComError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| fail(errcode, format!("{field} missing")))
}

// ----------------------------------------------------------- message/send ---

fn message_send(state: &mut SimState, app: &SimApp, call: &Call, body: &Value) -> ApiResult {
    let agentid = match body.get("agentid") {
        None | Some(Value::Null) => return Err(fail(41011, "agentid missing")),
        Some(value) => as_i64(value).ok_or_else(|| fail(40056, "invalid agentid"))?,
    };
    // plausible: using another app's token (or the contacts secret) for this
    // agent id is reported as an invalid agentid.
    if app.agent_id != Some(agentid) {
        return Err(fail(40056, "invalid agentid"));
    }
    let (msgtype, content) = validate_content(body, &APP_MESSAGE_RULES)?;

    let touser = body.get("touser").and_then(Value::as_str).unwrap_or("");
    let toparty = body.get("toparty").and_then(Value::as_str).unwrap_or("");
    let totag = body.get("totag").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() && toparty.is_empty() && totag.is_empty() {
        return Err(fail(82001, "touser, toparty and totag are all empty"));
    }
    let users: Vec<&str> = split_ids(touser);
    if users.len() > 1000 {
        return Err(fail(40032, "too many users"));
    }
    let mut recipients = Vec::new();
    let mut invalid_users = Vec::new();
    if users.contains(&"@all") {
        recipients.extend(state.directory.iter().cloned());
    } else {
        for user in users {
            if state.knows_member(user) {
                if !recipients.iter().any(|known: &String| known == user) {
                    recipients.push(user.to_owned());
                }
            } else {
                invalid_users.push(user);
            }
        }
    }
    // The simulator has no departments or tags: every party/tag is invalid.
    let invalid_parties = if touser == "@all" { "" } else { toparty };
    let invalid_tags = if touser == "@all" { "" } else { totag };
    if recipients.is_empty() {
        return Err(fail(81013, "user & party & tag all invalid"));
    }

    let msgid = random_id(32);
    let response = fields(json!({
        "invaliduser": invalid_users.join("|"),
        "invalidparty": invalid_parties,
        "invalidtag": invalid_tags,
        "unlicenseduser": "",
        "msgid": msgid,
    }));
    let sender = agentid.to_string();
    let sent = Sent {
        route: Route::AppMessage,
        msgtype: &msgtype,
        content: &content,
        now: call.now,
        msgid: &msgid,
        sender: &sender,
    };

    // WeCom's duplicate check (docs/wecom.md#app-messages): a request with
    // `enable_duplicate_check: 1` whose message (app, recipients, type,
    // content) WeCom already received within `duplicate_check_interval` is
    // answered 0 and delivered to nobody. Every request is remembered, with
    // or without the flag: the check compares against what was sent before,
    // so a retry of an unflagged first call is still caught.
    let mut sorted = recipients.clone();
    sorted.sort();
    let key = format!(
        "{agentid}\u{1f}{}\u{1f}{msgtype}\u{1f}{content}",
        sorted.join("|")
    );
    if body.get("enable_duplicate_check").and_then(as_i64) == Some(1) {
        let interval = body
            .get("duplicate_check_interval")
            .and_then(as_i64)
            .unwrap_or(DUPLICATE_INTERVAL_DEFAULT)
            .clamp(1, DUPLICATE_INTERVAL_MAX);
        let window_start = call.now - Duration::seconds(interval);
        if state
            .duplicate_guard
            .get(&key)
            .is_some_and(|sent_at| *sent_at > window_start)
        {
            for user in &recipients {
                state.drop_delivery(&sent, user.clone(), DropReason::Duplicate);
            }
            return Ok(response);
        }
    }
    state.duplicate_guard.insert(key, call.now);

    for user in recipients {
        let window = state
            .app_member_windows
            .entry((agentid, user.clone()))
            .or_default();
        let over = window.count_within(call.now, Duration::minutes(1)) >= APP_MEMBER_PER_MINUTE
            || window.count_within(call.now, Duration::hours(1)) >= APP_MEMBER_PER_HOUR;
        if over {
            state.drop_delivery(&sent, user, DropReason::MemberRateLimit);
        } else {
            window.record(call.now, Duration::hours(1));
            state.deliver(&sent, user);
        }
    }
    Ok(response)
}

// ---------------------------------------------------------------- appchat ---

fn validate_chat_name(body: &Value) -> Result<Option<String>, WeComError> {
    match body.get("name").and_then(Value::as_str) {
        Some(name) if name.chars().count() > 50 => Err(fail(86004, "invalid chat name")),
        Some(name) => Ok(Some(name.to_owned())),
        None => Ok(None),
    }
}

fn string_list(body: &Value, field: &str) -> Option<Vec<String>> {
    body.get(field).and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

fn appchat_create(state: &mut SimState, app: &SimApp, body: &Value) -> ApiResult {
    let name = validate_chat_name(body)?;
    let userlist = string_list(body, "userlist").ok_or_else(|| fail(86204, "userlist missing"))?;
    let mut members: Vec<String> = Vec::new();
    for user in userlist {
        if !members.contains(&user) {
            members.push(user);
        }
    }
    if !(2..=2000).contains(&members.len()) {
        return Err(fail(86006, "member count must be 2..2000"));
    }
    if let Some(unknown) = members.iter().find(|user| !state.knows_member(user)) {
        return Err(fail(86216, format!("invalid member {unknown}")));
    }
    let owner = match body.get("owner").and_then(Value::as_str) {
        Some(owner) if !members.iter().any(|member| member == owner) => {
            return Err(fail(86207, "owner not in userlist"))
        }
        Some(owner) => owner.to_owned(),
        // WeCom picks a random member; the first one keeps tests deterministic.
        None => members[0].clone(),
    };
    let chatid = match body.get("chatid").and_then(Value::as_str) {
        Some(chatid) if chatid.len() > 32 => return Err(fail(86205, "chatid too long")),
        Some(chatid) if chatid.is_empty() || !chatid.chars().all(|c| c.is_ascii_alphanumeric()) => {
            return Err(fail(86001, "invalid chatid"))
        }
        Some(chatid) => chatid.to_owned(),
        None => random_id(24),
    };
    if state.app_chats.contains_key(&chatid) {
        return Err(fail(86215, "chatid already exists"));
    }
    state.insert_app_chat(super::model::SeedAppChat {
        chatid: chatid.clone(),
        name: name.unwrap_or_default(),
        owner,
        userlist: members,
        creator_agent_id: app.agent_id,
    });
    Ok(fields(json!({ "chatid": chatid })))
}

fn appchat_update(state: &mut SimState, app: &SimApp, body: &Value) -> ApiResult {
    let chatid = required_str(body, "chatid", 86201)?.to_owned();
    let name = validate_chat_name(body)?;
    let add = string_list(body, "add_user_list").unwrap_or_default();
    let remove = string_list(body, "del_user_list").unwrap_or_default();
    if let Some(unknown) = add.iter().find(|user| !state.knows_member(user)) {
        return Err(fail(86216, format!("invalid member {unknown}")));
    }
    let chat = state
        .app_chats
        .get_mut(&chatid)
        .ok_or_else(|| fail(86003, "chatid not found"))?;
    if !chat.usable_by(app.agent_id) {
        return Err(fail(86008, "chat not created by this app"));
    }
    if let Some(missing) = remove.iter().find(|user| !chat.userlist.contains(user)) {
        return Err(fail(86216, format!("{missing} is not in the chat")));
    }
    let mut userlist = chat.userlist.clone();
    userlist.retain(|user| !remove.contains(user));
    for user in add {
        if !userlist.contains(&user) {
            userlist.push(user);
        }
    }
    // plausible: only the upper bound is enforced on update; removing members
    // below two keeps the (still existing) chat.
    if userlist.len() > 2000 {
        return Err(fail(86006, "member count must be ≤ 2000"));
    }
    let owner = body
        .get("owner")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| chat.owner.clone());
    if !userlist.contains(&owner) {
        return Err(fail(86207, "owner not in userlist"));
    }
    chat.userlist = userlist;
    chat.owner = owner;
    if let Some(name) = name {
        chat.name = name;
    }
    Ok(Map::new())
}

fn appchat_get(state: &SimState, app: &SimApp, call: &Call) -> ApiResult {
    let chatid =
        non_empty(call.query.get("chatid")).ok_or_else(|| fail(86201, "chatid missing"))?;
    let chat = state
        .app_chats
        .get(chatid)
        .ok_or_else(|| fail(86003, "chatid not found"))?;
    if !chat.usable_by(app.agent_id) {
        return Err(fail(86008, "chat not created by this app"));
    }
    Ok(fields(json!({
        "chat_info": {
            "chatid": chat.chatid,
            "name": chat.name,
            "owner": chat.owner,
            "userlist": chat.userlist,
            "chat_type": 0,
        }
    })))
}

fn appchat_send(state: &mut SimState, app: &SimApp, call: &Call, body: &Value) -> ApiResult {
    let chatid = required_str(body, "chatid", 86201)?.to_owned();
    let chat = state
        .app_chats
        .get(&chatid)
        .ok_or_else(|| fail(86003, "chatid not found"))?;
    if !chat.usable_by(app.agent_id) {
        return Err(fail(86008, "chat not created by this app"));
    }
    let members = chat.userlist.clone();
    let (msgtype, content) = validate_content(body, &APPCHAT_RULES)?;
    let msgid = random_id(32);
    let sender = app.agent_id.map(|id| id.to_string()).unwrap_or_default();
    let sent = Sent {
        route: Route::Appchat,
        msgtype: &msgtype,
        content: &content,
        now: call.now,
        msgid: &msgid,
        sender: &sender,
    };
    for member in members {
        let window = state
            .appchat_member_windows
            .entry(member.clone())
            .or_default();
        if window.count_within(call.now, Duration::minutes(1)) >= APPCHAT_MEMBER_PER_MINUTE {
            let target = format!("{chatid}:{member}");
            state.drop_delivery(&sent, target, DropReason::MemberRateLimit);
        } else {
            window.record(call.now, Duration::minutes(1));
        }
    }
    state.deliver(&sent, chatid);
    Ok(Map::new())
}

// ---------------------------------------------------------------- webhook ---

fn webhook_send(state: &mut SimState, call: &Call, body: &Value) -> ApiResult {
    // plausible: a missing key is answered like an unknown one.
    let key = non_empty(call.query.get("key")).ok_or_else(|| fail(93000, "invalid webhook url"))?;
    let robot = state
        .robots
        .get(key)
        .cloned()
        .ok_or_else(|| fail(93000, "invalid webhook url"))?;
    let window = state.webhook_windows.entry(key.to_owned()).or_default();
    // docs/wecom.md#group-robots: 20/min per robot; the code is unconfirmed, 45009 is what is
    // reported in practice. Rejected calls don't count against the window.
    if window.count_within(call.now, Duration::minutes(1)) >= WEBHOOK_PER_MINUTE {
        return Err(fail(45009, "api freq out of limit"));
    }
    let (msgtype, content) = validate_content(body, &WEBHOOK_RULES)?;
    if let Some(window) = state.webhook_windows.get_mut(key) {
        window.record(call.now, Duration::minutes(1));
    }
    let msgid = random_id(32);
    let sender = if robot.name.is_empty() {
        "robot".to_owned()
    } else {
        robot.name.clone()
    };
    let sent = Sent {
        route: Route::Webhook,
        msgtype: &msgtype,
        content: &content,
        now: call.now,
        msgid: &msgid,
        sender: &sender,
    };
    state.deliver(&sent, robot.chat_id);
    Ok(Map::new())
}

// ---------------------------------------------------------- customer groups ---

fn groupchat_list(state: &SimState, body: &Value) -> ApiResult {
    let limit = body
        .get("limit")
        .and_then(as_i64)
        .filter(|limit| (1..=1000).contains(limit))
        .ok_or_else(|| fail(40058, "limit must be 1..1000"))? as usize;
    let status_filter = body.get("status_filter").and_then(as_i64).unwrap_or(0);
    if !(0..=3).contains(&status_filter) {
        return Err(fail(40058, "invalid status_filter"));
    }
    let owners = body
        .get("owner_filter")
        .map(|filter| string_list(filter, "userid_list").unwrap_or_default())
        .unwrap_or_default();
    if owners.len() > 100 {
        return Err(fail(
            40058,
            "owner_filter.userid_list holds at most 100 ids",
        ));
    }
    // The cursor is the hex-encoded id of the last chat returned, so chats
    // added between pages neither repeat nor shift the remaining ones.
    let after = match body.get("cursor").and_then(Value::as_str) {
        None | Some("") => None,
        Some(cursor) => Some(decode_cursor(cursor)?),
    };
    let matching = state
        .customer_groups
        .values()
        .filter(|group| status_filter == 0 || i64::from(group.status) == status_filter)
        .filter(|group| owners.is_empty() || owners.contains(&group.owner))
        .filter(|group| {
            after
                .as_deref()
                .is_none_or(|after| group.chat_id.as_str() > after)
        });
    let mut page: Vec<Value> = Vec::new();
    let mut more = false;
    for group in matching {
        if page.len() == limit {
            more = true;
            break;
        }
        page.push(json!({"chat_id": group.chat_id, "status": group.status}));
    }
    let next_cursor = match page.last() {
        Some(last) if more => hex::encode(last["chat_id"].as_str().unwrap_or_default()),
        _ => String::new(),
    };
    Ok(fields(
        json!({"group_chat_list": page, "next_cursor": next_cursor}),
    ))
}

fn decode_cursor(cursor: &str) -> Result<String, WeComError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| fail(50100, "invalid cursor"))
}

fn groupchat_get(state: &SimState, body: &Value) -> ApiResult {
    // plausible: 40063 (parameter empty) for a missing chat_id, 40050
    // (chatid does not exist) for an unknown one.
    let chat_id = required_str(body, "chat_id", 40063)?;
    let group = state
        .customer_groups
        .get(chat_id)
        .ok_or_else(|| fail(40050, "chatid not exist"))?;
    let need_name = body.get("need_name").and_then(as_i64) == Some(1);
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|member| {
            let mut item = json!({
                "userid": member.userid,
                "type": member.resolved_type(),
                "join_time": member.join_time,
                "join_scene": member.join_scene,
                "group_nickname": member.group_nickname,
            });
            if let Some(invitor) = &member.invitor {
                item["invitor"] = json!({ "userid": invitor });
            }
            if need_name {
                item["name"] = json!(member.name);
            }
            if let Some(unionid) = &member.unionid {
                if member_type_from_id(&member.userid) == 2 {
                    item["unionid"] = json!(unionid);
                }
            }
            item
        })
        .collect();
    let admins: Vec<Value> = group
        .admins
        .iter()
        .map(|admin| json!({ "userid": admin }))
        .collect();
    Ok(fields(json!({
        "group_chat": {
            "chat_id": group.chat_id,
            "name": group.name,
            "owner": group.owner,
            "create_time": group.create_time,
            "notice": group.notice,
            "member_list": members,
            "admin_list": admins,
            "member_version": group.member_version,
        }
    })))
}

// ---------------------------------------------------------- mass messages ---

/// Validate `text` + `attachments` (customer mass messages and welcomes):
/// returns (msgtype, content) for the record.
fn customer_content(body: &Value) -> Result<(String, Value), WeComError> {
    let text = body
        .get("text")
        .and_then(|text| text.get("content"))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty());
    let attachments = body
        .get("attachments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(text) = text {
        if text.len() > CUSTOMER_TEXT_MAX {
            return Err(fail(45002, "text.content size out of limit"));
        }
    }
    if attachments.len() > ATTACHMENTS_MAX {
        // plausible: no dedicated code for "more than 9 attachments" known.
        return Err(fail(40058, "at most 9 attachments"));
    }
    for attachment in &attachments {
        let kind = attachment
            .get("msgtype")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["image", "link", "miniprogram", "video", "file"].contains(&kind) {
            return Err(fail(41065, "invalid attachment type"));
        }
    }
    if text.is_none() && attachments.is_empty() {
        return Err(fail(44004, "text and attachments are both empty"));
    }
    let msgtype = if text.is_some() {
        "text"
    } else {
        "attachments"
    };
    Ok((
        msgtype.to_owned(),
        json!({ "content": text.unwrap_or(""), "attachments": attachments }),
    ))
}

fn add_msg_template(
    state: &mut SimState,
    config: &SimConfig,
    call: &Call,
    body: &Value,
) -> ApiResult {
    let chat_type = body
        .get("chat_type")
        .and_then(Value::as_str)
        .unwrap_or("single");
    // plausible: 41009 (userid missing) for the required sender.
    let sender = required_str(body, "sender", 41009)?.to_owned();
    match chat_type {
        "group" => {}
        "single" => return add_single_template(state, config, call, body, sender),
        _ => return Err(fail(40058, "chat_type must be single or group")),
    }
    let requested = string_list(body, "chat_id_list");
    if requested.as_ref().is_some_and(|list| list.len() > 2000) {
        return Err(fail(40058, "chat_id_list holds at most 2000 ids"));
    }
    let (msgtype, content) = customer_content(body)?;
    let requested = requested.unwrap_or_else(|| {
        // Without a list the owner picks among their groups; model "all".
        state
            .customer_groups
            .values()
            .filter(|group| group.owner == sender)
            .map(|group| group.chat_id.clone())
            .collect()
    });
    let mut chat_ids = Vec::new();
    let mut fail_list = Vec::new();
    for chat_id in requested {
        let owned = state
            .customer_groups
            .get(&chat_id)
            .is_some_and(|group| group.owner == sender);
        if owned {
            if !chat_ids.contains(&chat_id) {
                chat_ids.push(chat_id);
            }
        } else {
            fail_list.push(chat_id);
        }
    }
    if chat_ids.is_empty() {
        return Err(fail(41048, "no group to send to"));
    }
    let task = MassTask {
        sender,
        chat_ids,
        external_userids: Vec::new(),
        msgtype,
        content,
        sent_at: None,
    };
    file_mass_task(state, config, call.now, task, fail_list)
}

/// `chat_type = single`: a 1:1 mass message to the sender's customers
/// (≤ 10000). Customers who are not the sender's contacts go to `fail_list`.
/// (The simulator requires the list; WeCom would let the sender pick.)
fn add_single_template(
    state: &mut SimState,
    config: &SimConfig,
    call: &Call,
    body: &Value,
    sender: String,
) -> ApiResult {
    let requested = string_list(body, "external_userid").unwrap_or_default();
    if requested.is_empty() || requested.len() > 10_000 {
        return Err(fail(40058, "external_userid must hold 1 to 10000 ids"));
    }
    let (msgtype, content) = customer_content(body)?;
    let (mut external_userids, mut fail_list) = (Vec::new(), Vec::new());
    for external in requested {
        if !state.has_contact(&sender, &external) {
            fail_list.push(external);
        } else if !external_userids.contains(&external) {
            external_userids.push(external);
        }
    }
    if external_userids.is_empty() {
        return Err(fail(41048, "no customer to send to"));
    }
    let task = MassTask {
        sender,
        chat_ids: Vec::new(),
        external_userids,
        msgtype,
        content,
        sent_at: None,
    };
    file_mass_task(state, config, call.now, task, fail_list)
}

/// Files a mass task under a fresh msgid (confirmed at once when the config
/// says so) and answers with that msgid and the targets that failed.
fn file_mass_task(
    state: &mut SimState,
    config: &SimConfig,
    now: DateTime<Utc>,
    task: MassTask,
    fail_list: Vec<String>,
) -> ApiResult {
    let msgid = format!("msg{}", random_id(24));
    state.mass_tasks.insert(msgid.clone(), task);
    if config.auto_confirm_mass {
        confirm_mass(state, &msgid, now);
    }
    Ok(fields(json!({"fail_list": fail_list, "msgid": msgid})))
}

/// The owner taps "send" in the client: deliver to every chat of the task.
/// Returns false for an unknown or already confirmed task.
pub(crate) fn confirm_mass(state: &mut SimState, msgid: &str, now: DateTime<Utc>) -> bool {
    let Some(task) = state.mass_tasks.get_mut(msgid) else {
        return false;
    };
    if task.sent_at.is_some() {
        return false;
    }
    task.sent_at = Some(now);
    let task = task.clone();
    let targets = task
        .chat_ids
        .iter()
        .map(|chat_id| (Route::CustomerGroupMass, chat_id))
        .chain(
            task.external_userids
                .iter()
                .map(|external| (Route::CustomerMass, external)),
        );
    for (route, target) in targets {
        let sent = Sent {
            route,
            msgtype: &task.msgtype,
            content: &task.content,
            now,
            msgid,
            sender: &task.sender,
        };
        state.deliver(&sent, target.clone());
    }
    true
}

fn page_limit(body: &Value) -> Result<usize, WeComError> {
    match body.get("limit").and_then(as_i64) {
        None => Ok(500),
        Some(limit) if (1..=1000).contains(&limit) => Ok(limit as usize),
        Some(_) => Err(fail(40058, "limit must be 1..1000")),
    }
}

fn page_offset(body: &Value) -> Result<usize, WeComError> {
    match body.get("cursor").and_then(Value::as_str) {
        None | Some("") => Ok(0),
        Some(cursor) => decode_cursor(cursor)?
            .parse()
            .map_err(|_| fail(50100, "invalid cursor")),
    }
}

fn mass_task<'s>(state: &'s SimState, body: &Value) -> Result<&'s MassTask, WeComError> {
    let msgid = required_str(body, "msgid", 41046)?;
    state
        .mass_tasks
        .get(msgid)
        .ok_or_else(|| fail(41047, "invalid msgid"))
}

fn get_groupmsg_send_result(state: &SimState, body: &Value) -> ApiResult {
    let task = mass_task(state, body)?;
    let userid = required_str(body, "userid", 41009)?;
    let limit = page_limit(body)?;
    let offset = page_offset(body)?;
    let rows: Vec<Value> = if userid == task.sender {
        let chats = task.chat_ids.iter().map(|id| ("chat_id", id));
        let contacts = task
            .external_userids
            .iter()
            .map(|id| ("external_userid", id));
        chats
            .chain(contacts)
            .map(|(field, id)| match task.sent_at {
                Some(sent_at) => json!({
                    field: id, "userid": task.sender,
                    "status": 1, "send_time": sent_at.timestamp(),
                }),
                None => json!({field: id, "userid": task.sender, "status": 0}),
            })
            .collect()
    } else {
        Vec::new()
    };
    let end = (offset + limit).min(rows.len());
    let page = rows.get(offset.min(rows.len())..end).unwrap_or_default();
    let next_cursor = if end < rows.len() {
        hex::encode(end.to_string())
    } else {
        String::new()
    };
    Ok(fields(
        json!({"send_list": page, "next_cursor": next_cursor}),
    ))
}

fn get_groupmsg_task(state: &SimState, body: &Value) -> ApiResult {
    let task = mass_task(state, body)?;
    page_limit(body)?;
    page_offset(body)?;
    let row = match task.sent_at {
        Some(sent_at) => {
            json!({"userid": task.sender, "status": 2, "send_time": sent_at.timestamp()})
        }
        None => json!({"userid": task.sender, "status": 0}),
    };
    Ok(fields(json!({"task_list": [row], "next_cursor": ""})))
}

// ---------------------------------------------------------------- welcome ---

/// A `WelcomeCode` as it would arrive in an add_external_contact event.
pub(crate) fn issue_welcome_code(
    state: &mut SimState,
    userid: &str,
    external_userid: &str,
    now: DateTime<Utc>,
) -> String {
    let code = random_id(43);
    // The customer is now the member's contact (tags, 1:1 mass messages).
    state
        .contacts
        .entry(external_userid.to_owned())
        .or_default()
        .insert(userid.to_owned());
    state.welcome_codes.insert(
        code.clone(),
        super::state::WelcomeCode {
            userid: userid.to_owned(),
            external_userid: external_userid.to_owned(),
            issued_at: now,
            used: false,
        },
    );
    code
}

fn send_welcome_msg(state: &mut SimState, call: &Call, body: &Value) -> ApiResult {
    let code = required_str(body, "welcome_code", 41049)?;
    let (msgtype, content) = customer_content(body)?;
    let welcome = state
        .welcome_codes
        .get_mut(code)
        .ok_or_else(|| fail(41050, "invalid welcome_code"))?;
    if welcome.used {
        return Err(fail(41051, "customer and member already started chatting"));
    }
    if call.now - welcome.issued_at > Duration::seconds(WELCOME_CODE_TTL_SECS) {
        return Err(fail(41050, "welcome_code expired"));
    }
    welcome.used = true;
    let (userid, external_userid) = (welcome.userid.clone(), welcome.external_userid.clone());
    let msgid = random_id(32);
    let sent = Sent {
        route: Route::Welcome,
        msgtype: &msgtype,
        content: &content,
        now: call.now,
        msgid: &msgid,
        sender: &userid,
    };
    state.deliver(&sent, external_userid);
    Ok(Map::new())
}

fn group_welcome_template_add(state: &mut SimState, body: &Value) -> ApiResult {
    if state.welcome_templates.len() >= GROUP_WELCOME_TEMPLATES_MAX {
        return Err(fail(41055, "group welcome template limit reached"));
    }
    check_welcome_material(body)?;
    let template_id = format!("tpl{}", random_id(24));
    state.welcome_templates.push(GroupWelcomeTemplate {
        template_id: template_id.clone(),
        body: material_only(body),
    });
    Ok(fields(json!({ "template_id": template_id })))
}

/// `edit` replaces the material of a template `add` returned.
fn group_welcome_template_edit(state: &mut SimState, body: &Value) -> ApiResult {
    check_welcome_material(body)?;
    let template = find_welcome_template(state, body)?;
    template.body = material_only(body);
    Ok(Map::new())
}

/// `get` answers with the stored material at the top level, as WeCom does.
fn group_welcome_template_get(state: &mut SimState, body: &Value) -> ApiResult {
    let template = find_welcome_template(state, body)?;
    Ok(fields(template.body.clone()))
}

fn find_welcome_template<'a>(
    state: &'a mut SimState,
    body: &Value,
) -> Result<&'a mut GroupWelcomeTemplate, WeComError> {
    let id = body.get("template_id").and_then(Value::as_str);
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Err(fail(41000, "missing template_id"));
    };
    state
        .welcome_templates
        .iter_mut()
        .find(|template| template.template_id == id)
        .ok_or_else(|| fail(40058, "invalid template_id"))
}

const WELCOME_MATERIAL_KINDS: [&str; 5] = ["image", "link", "miniprogram", "file", "video"];

fn check_welcome_material(body: &Value) -> Result<(), WeComError> {
    let text = body
        .get("text")
        .and_then(|text| text.get("content"))
        .and_then(Value::as_str);
    if text.is_some_and(|text| text.len() > GROUP_WELCOME_TEXT_MAX) {
        return Err(fail(45002, "text.content size out of limit"));
    }
    let has_material = WELCOME_MATERIAL_KINDS
        .iter()
        .any(|kind| body.get(kind).is_some());
    if text.is_none_or(str::is_empty) && !has_material {
        return Err(fail(44004, "template is empty"));
    }
    Ok(())
}

/// The stored material: text and attachments, without request-only fields.
fn material_only(body: &Value) -> Value {
    let mut material = Map::new();
    for kind in std::iter::once("text").chain(WELCOME_MATERIAL_KINDS) {
        if let Some(value) = body.get(kind) {
            material.insert(kind.to_string(), value.clone());
        }
    }
    Value::Object(material)
}

// ------------------------------------------------------------ smart bot ---

/// A one-shot `response_code` as carried in a smart-bot callback.
pub(crate) fn issue_response_code(
    state: &mut SimState,
    aibotid: &str,
    target: &str,
    is_group: bool,
    now: DateTime<Utc>,
) -> String {
    let code = random_id(40);
    state.response_codes.insert(
        code.clone(),
        super::state::ResponseCode {
            aibotid: aibotid.to_owned(),
            target: target.to_owned(),
            is_group,
            issued_at: now,
            used: false,
        },
    );
    code
}

fn aibot_response(state: &mut SimState, call: &Call, body: &Value) -> ApiResult {
    // plausible: 40058 for unknown/expired codes, 42022 ("code already used")
    // for a second use; the smart-bot pages don't list codes.
    let code = non_empty(call.query.get("response_code"))
        .ok_or_else(|| fail(40058, "response_code missing"))?;
    let response = state
        .response_codes
        .get(code)
        .cloned()
        .ok_or_else(|| fail(40058, "invalid response_code"))?;
    if response.used {
        return Err(fail(42022, "response_code already used"));
    }
    if call.now - response.issued_at > Duration::seconds(RESPONSE_CODE_TTL_SECS) {
        return Err(fail(40058, "response_code expired"));
    }
    let msgtype = body.get("msgtype").and_then(Value::as_str).unwrap_or("");
    let content = match msgtype {
        "markdown" => {
            let object = body.get("markdown").cloned().unwrap_or(Value::Null);
            check_text(&object, "content", BOT_MARKDOWN_MAX)?;
            object
        }
        "template_card" if !response.is_group => {
            body.get("template_card").cloned().unwrap_or(Value::Null)
        }
        // template_card is only allowed in 1:1 chats (docs/wecom.md#response_url).
        "template_card" => return Err(fail(40058, "template_card only in single chats")),
        _ => return Err(fail(40008, "invalid message type")),
    };
    if let Some(entry) = state.response_codes.get_mut(code) {
        entry.used = true;
    }
    let msgid = random_id(32);
    let sent = Sent {
        route: Route::BotResponse,
        msgtype,
        content: &content,
        now: call.now,
        msgid: &msgid,
        sender: &response.aibotid,
    };
    state.deliver(&sent, response.target);
    Ok(Map::new())
}

// ---------------------------------------------------------------- helpers ---

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|value| !value.is_empty())
}

/// Integers may arrive as JSON numbers or numeric strings.
fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn split_ids(list: &str) -> Vec<&str> {
    list.split('|')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::sim::model::{SeedCustomerGroup, SeedRobot, SeedState};

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
    }

    fn call_json(
        state: &mut SimState,
        path: &str,
        query: &[(&str, &str)],
        body: Value,
        now: DateTime<Utc>,
    ) -> Value {
        let config = SimConfig::new("wwcorp", "secret");
        let query: HashMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let body = body.to_string();
        let call = Call {
            path,
            query: &query,
            body: body.as_bytes(),
            now,
        };
        match dispatch(state, &config, &call) {
            Outcome::Json(value) => value,
            Outcome::NotFound => panic!("{path} not routed"),
        }
    }

    #[test]
    fn gettoken_names_the_wrong_corp_id_before_the_wrong_secret() {
        let mut state = SimState::default();
        let mut get = |corpid: &str, secret: &str| {
            call_json(
                &mut state,
                "gettoken",
                &[("corpid", corpid), ("corpsecret", secret)],
                json!({}),
                start(),
            )["errcode"]
                .as_i64()
        };
        assert_eq!(get("wwcorp", "secret"), Some(0));
        assert_eq!(get("wwcorp", "wrong"), Some(40001));
        assert_eq!(get("wwother", "secret"), Some(40013));
        assert_eq!(get("wwother", "wrong"), Some(40013));
    }

    #[test]
    fn agent_get_reports_the_root_department_for_the_tokens_own_app_only() {
        let mut state = SimState::default();
        let token = call_json(
            &mut state,
            "gettoken",
            &[("corpid", "wwcorp"), ("corpsecret", "secret")],
            json!({}),
            start(),
        )["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut agent = |agentid: &str| {
            call_json(
                &mut state,
                "agent/get",
                &[("access_token", &token), ("agentid", agentid)],
                json!({}),
                start(),
            )
        };
        let own = agent("1000002");
        assert_eq!(own["errcode"], 0);
        assert_eq!(own["agentid"], 1000002);
        assert_eq!(own["allow_partys"]["partyid"], json!([1]));
        assert_eq!(agent("1000003")["errcode"], 40056);
    }

    #[test]
    fn app_messages_are_also_capped_at_1000_per_member_per_hour() {
        let mut state = SimState::default();
        state.tokens.insert(
            "T".into(),
            super::super::state::IssuedToken {
                app: 0,
                expires_at: start() + Duration::hours(3),
            },
        );
        let body = json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                          "text": {"content": "x"}});
        let mut now = start();
        // 30 per minute stays under the minute cap; the hour cap bites at 1000.
        for minute in 0..35 {
            for _ in 0..30 {
                let reply = call_json(
                    &mut state,
                    "message/send",
                    &[("access_token", "T")],
                    body.clone(),
                    now,
                );
                assert_eq!(reply["errcode"], 0, "minute {minute}");
            }
            now += Duration::minutes(1);
        }
        assert_eq!(state.messages.len(), 1000);
        assert_eq!(state.dropped.len(), 50);
        assert!(state
            .dropped
            .iter()
            .all(|d| d.reason == DropReason::MemberRateLimit));
        // An hour after the first sends, room again.
        now = start() + Duration::minutes(60);
        call_json(
            &mut state,
            "message/send",
            &[("access_token", "T")],
            body,
            now,
        );
        assert_eq!(state.messages.len(), 1001);
    }

    proptest! {
        /// No 60-second window ever holds more than 20 accepted robot
        /// messages, and a message is refused only when 20 were accepted in
        /// the 60 seconds before it.
        #[test]
        fn webhook_window_holds_at_most_20_and_refuses_only_when_full(
            gaps in proptest::collection::vec(0i64..12, 1..120)
        ) {
            let mut state = SimState::default();
            state.seed(SeedState {
                robots: vec![SeedRobot { key: "K".into(), chat_id: "wr".into(), name: String::new() }],
                ..SeedState::default()
            }).unwrap();
            let mut now = start();
            let mut accepted: Vec<DateTime<Utc>> = Vec::new();
            for gap in gaps {
                now += Duration::seconds(gap);
                let reply = call_json(&mut state, "webhook/send", &[("key", "K")],
                    json!({"msgtype": "text", "text": {"content": "x"}}), now);
                let in_window = accepted.iter().filter(|t| **t > now - Duration::seconds(60)).count();
                match reply["errcode"].as_i64() {
                    Some(0) => {
                        prop_assert!(in_window < 20);
                        accepted.push(now);
                    }
                    Some(45009) => prop_assert_eq!(in_window, 20),
                    other => prop_assert!(false, "unexpected errcode {:?}", other),
                }
            }
            prop_assert_eq!(state.messages.len(), accepted.len());
        }

        /// Paging groupchat/list with any limit returns every group exactly
        /// once, in chat-id order.
        #[test]
        fn groupchat_list_paging_is_complete_and_ordered(
            ids in proptest::collection::btree_set("[a-zA-Z0-9]{1,12}", 0..40),
            limit in 1i64..7,
        ) {
            let mut state = SimState::default();
            state.seed(SeedState {
                customer_groups: ids.iter().map(|id| SeedCustomerGroup {
                    chat_id: id.clone(), name: String::new(), owner: "o".into(),
                    notice: String::new(), status: 0, create_time: 0,
                    admins: vec![], members: vec![],
                }).collect(),
                ..SeedState::default()
            }).unwrap();
            state.tokens.insert("T".into(), super::super::state::IssuedToken {
                app: 0, expires_at: start() + Duration::hours(2),
            });
            let mut seen = Vec::new();
            let mut cursor = String::new();
            for _ in 0..=ids.len() {
                let page = call_json(&mut state, "externalcontact/groupchat/list",
                    &[("access_token", "T")], json!({"limit": limit, "cursor": cursor}), start());
                prop_assert_eq!(page["errcode"].as_i64(), Some(0));
                let items = page["group_chat_list"].as_array().cloned().unwrap_or_default();
                prop_assert!(items.len() as i64 <= limit);
                seen.extend(items.iter().filter_map(|i| i["chat_id"].as_str().map(str::to_owned)));
                cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
                if cursor.is_empty() { break; }
            }
            prop_assert!(cursor.is_empty(), "paging did not terminate");
            prop_assert_eq!(seen, ids.into_iter().collect::<Vec<_>>());
        }
    }
}
