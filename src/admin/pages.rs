//! The console's HTML pages and form handlers. Every handler takes a
//! [`Manager`] (no session: redirect to the login page); every form post
//! checks the role and the CSRF token before doing anything.

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::auth::{self, Manager, Role, LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use super::chart::{self, Series};
use super::diff::{diff_lines, has_changes};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::ops::accounts::SignIn;
use crate::ops::chats::TagChange;
use crate::ops::dashboard::Dashboard;
use crate::ops::queues::ItemAction;
use crate::ops::rules::{Applied, FieldProblem};
use crate::ops::{self, OpsError};

type PageResult = Result<Response, AdminError>;

// --- sign in / out ------------------------------------------------------------

pub async fn login_form(State(state): State<AdminState>, headers: HeaderMap) -> PageResult {
    render_login(&state, &headers, None, StatusCode::OK)
}

fn render_login(
    state: &AdminState,
    headers: &HeaderMap,
    error: Option<&str>,
    status: StatusCode,
) -> PageResult {
    // Before there is a session, CSRF on the login form is a double-submit
    // cookie: the form must carry the value of a cookie only this site can set.
    let token = auth::random_secret();
    let frame = Frame::new(headers, None, "login");
    let html = state.views().render(
        "login.html",
        &frame,
        json!({ "login_csrf": token, "error": error }),
    )?;
    let cookie = auth::set_cookie(
        LOGIN_CSRF_COOKIE,
        &token,
        3600,
        state.settings.secure_cookies,
    );
    Ok((status, [(SET_COOKIE, cookie)], html).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

pub async fn login(
    State(state): State<AdminState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let expected = auth::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::same_secret(&expected, &form.csrf) {
        return Err(AdminError::BadCsrf);
    }
    let ip = auth::client_ip(
        peer.map(|axum::Extension(info)| info.0),
        &headers,
        state.settings.trust_forwarded_for,
    )
    .unwrap_or_default();
    let settings = &state.settings;
    let ttl = settings.session_ttl.as_secs() as i64;
    let policy = ops::accounts::SignInPolicy {
        window_secs: settings.login_window.as_secs() as i64,
        max_failures: settings.login_max_failures,
        failures_per_ip: settings.login_failures_per_ip,
        session_ttl_secs: ttl,
    };
    let outcome = ops::accounts::sign_in(
        &state.ops,
        state.now(),
        &form.username,
        &form.password,
        &ip,
        policy,
    )
    .await?;
    let t = super::i18n::strings(super::views::language(&headers));
    let secret = match outcome {
        SignIn::Started { secret } => secret,
        SignIn::Throttled { retry_after_secs } => {
            let mut page = render_login(
                &state,
                &headers,
                t.get("login_throttled").copied(),
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            if let Ok(value) = retry_after_secs.max(1).to_string().parse() {
                page.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
            return Ok(page);
        }
        SignIn::Refused => {
            return render_login(
                &state,
                &headers,
                t.get("login_failed").copied(),
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    let secure = state.settings.secure_cookies;
    let mut response = Redirect::to("/admin").into_response();
    let headers = response.headers_mut();
    for cookie in [
        auth::set_cookie(SESSION_COOKIE, &secret, ttl, secure),
        auth::set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
    ] {
        if let Ok(value) = cookie.parse() {
            headers.append(SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Viewer, &form.csrf)?;
    let secret = auth::cookie(&headers, SESSION_COOKIE);
    ops::accounts::sign_out(
        &state.ops,
        &manager.actor,
        state.now(),
        &manager.username,
        secret.as_deref(),
    )
    .await?;
    let cookie = auth::set_cookie(SESSION_COOKIE, "", 0, state.settings.secure_cookies);
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, "/admin/login".to_owned()), (SET_COOKIE, cookie)],
    )
        .into_response())
}

/// Sets the language cookie and goes back where the manager was.
pub async fn switch_language(
    State(state): State<AdminState>,
    Path(lang): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = super::i18n::Lang::from_code(&lang);
    let back = headers
        .get(REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(same_site_admin_path)
        .unwrap_or_else(|| "/admin".to_owned());
    let cookie = auth::set_cookie(
        LANG_COOKIE,
        lang.code(),
        365 * 86_400,
        state.settings.secure_cookies,
    );
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, back), (SET_COOKIE, cookie)],
    )
        .into_response()
}

/// The path of a referring console page, never another site (no open redirect).
fn same_site_admin_path(referer: &str) -> Option<String> {
    let after_scheme = referer.split_once("://").map(|(_, rest)| rest)?;
    let path = &after_scheme[after_scheme.find('/')?..];
    let ok = path.starts_with("/admin") && !path.contains("//") && !path.contains('\\');
    ok.then(|| path.to_owned())
}

// --- dashboard ----------------------------------------------------------------

pub async fn dashboard(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "dashboard");
    let data = ops::dashboard::dashboard(&state.ops, state.now()).await?;
    let charts = dashboard_charts(&data, &frame.t);
    state.views().page(
        "dashboard.html",
        &frame,
        json!({ "d": data, "charts": charts }),
    )
}

/// The dashboard's charts as inline SVG, titled in the page language.
fn dashboard_charts(
    data: &Dashboard,
    t: &std::collections::BTreeMap<&'static str, &'static str>,
) -> Vec<String> {
    let tr = |key: &str| t.get(key).copied().unwrap_or_default().to_owned();
    vec![
        chart::line_chart(
            &tr("chart_joins_leaves"),
            &data.days,
            &[
                Series {
                    name: tr("joins"),
                    color: "#16a34a",
                    values: data.joins.clone(),
                },
                Series {
                    name: tr("leaves"),
                    color: "#dc2626",
                    values: data.leaves.clone(),
                },
            ],
        ),
        chart::line_chart(
            &tr("chart_activity"),
            &data.days,
            &[
                Series {
                    name: tr("checkins"),
                    color: "#2563eb",
                    values: data.checkins.clone(),
                },
                Series {
                    name: tr("active_members"),
                    color: "#9333ea",
                    values: data.active.clone(),
                },
            ],
        ),
        chart::line_chart(
            &tr("chart_health"),
            &data.days,
            &[
                Series {
                    name: tr("violations"),
                    color: "#ea580c",
                    values: data.violations.clone(),
                },
                Series {
                    name: tr("pushes_failed"),
                    color: "#64748b",
                    values: data.pushes_failed.clone(),
                },
            ],
        ),
        chart::bar_chart(
            &tr("chart_funnel"),
            &[
                (tr("stage_new"), data.funnel.new),
                (tr("stage_active"), data.funnel.active),
                (tr("stage_core"), data.funnel.core),
                (tr("stage_at_risk"), data.funnel.at_risk),
                (tr("stage_dormant"), data.funnel.dormant),
                (tr("stage_churned"), data.funnel.churned),
            ],
        ),
    ]
}

// --- chats --------------------------------------------------------------------

pub async fn chats(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    chats_page(&state, &manager, &headers, None).await
}

/// The chat list with a fresh broadcast form: every render gets a new
/// one-time key, so submitting the same form twice (a double click, a
/// reload that re-posts) queues the broadcast once.
async fn chats_page(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    sent: Option<ops::broadcast::BroadcastSent>,
) -> PageResult {
    let frame = Frame::new(headers, Some(manager), "chats");
    let chats = ops::chats::list(&state.ops, state.now()).await?;
    let request_key = format!("{:032x}", rand::random::<u128>());
    state.views().page(
        "chats.html",
        &frame,
        json!({ "chats": chats, "sent": sent, "request_key": request_key }),
    )
}

fn chat_page_url(chat_id: &str) -> String {
    format!(
        "/admin/chats/{}",
        percent_encoding::utf8_percent_encode(chat_id, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// One chat: kind, robot, smart bot, tags and what qunyun can do there.
pub async fn chat(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "chats");
    let detail = ops::chats::show(&state.ops, &chat_id).await?;
    state.views().page("chat.html", &frame, json!(detail))
}

#[derive(Deserialize)]
pub struct RouteForm {
    csrf: String,
    #[serde(default)]
    robot_key: String,
    #[serde(default)]
    smart_bot: String,
    #[serde(default)]
    no_robot: Option<String>,
    #[serde(default)]
    no_smart_bot: Option<String>,
}

pub async fn set_chat_route(
    State(state): State<AdminState>,
    manager: Manager,
    Path(chat_id): Path<String>,
    Form(form): Form<RouteForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let given = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let change = ops::chats::RouteChange {
        robot_key: given(&form.robot_key),
        smart_bot: given(&form.smart_bot),
        no_robot: form.no_robot.is_some(),
        no_smart_bot: form.no_smart_bot.is_some(),
    };
    ops::chats::set_route(&state.ops, &manager.actor, state.now(), &chat_id, &change).await?;
    Ok(see_other(&chat_page_url(&chat_id)))
}

#[derive(Deserialize)]
pub struct TagsForm {
    csrf: String,
    tags: String,
    /// `tag` or `untag` (the button pressed).
    op: String,
}

pub async fn tag_chat(
    State(state): State<AdminState>,
    manager: Manager,
    Path(chat_id): Path<String>,
    Form(form): Form<TagsForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let tags: Vec<String> = form
        .tags
        .split([',', ' ', '，'])
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let change = if form.op == "untag" {
        TagChange::Remove
    } else {
        TagChange::Add
    };
    ops::chats::change_tags(
        &state.ops,
        &manager.actor,
        state.now(),
        &chat_id,
        change,
        &tags,
    )
    .await?;
    Ok(see_other(&chat_page_url(&chat_id)))
}

#[derive(Deserialize)]
pub struct BroadcastForm {
    csrf: String,
    #[serde(default)]
    chats: String,
    #[serde(default)]
    tags: String,
    text: String,
    #[serde(default)]
    markdown: Option<String>,
    /// The one-time key the form was rendered with (see [`chats_page`]).
    #[serde(default)]
    request_key: Option<String>,
}

/// Sends now and shows each chat's outcome above the chat list.
pub async fn broadcast(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<BroadcastForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let input = ops::broadcast::BroadcastInput {
        chats: vec![form.chats],
        tags: vec![form.tags],
        text: form.text,
        markdown: form.markdown.is_some(),
        request_key: form.request_key,
    };
    let sent = ops::broadcast::send(&state.ops, &manager.actor, state.now(), &input).await?;
    chats_page(&state, &manager, &headers, Some(sent)).await
}

// --- members ------------------------------------------------------------------

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn members(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Query(search): Query<SearchQuery>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "members");
    let members = ops::members::search(&state.ops, &search.q, 200).await?;
    state.views().page(
        "members.html",
        &frame,
        json!({ "members": members, "q": search.q }),
    )
}

pub async fn member(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "members");
    let profile = ops::members::profile(&state.ops, state.now(), &user_id).await?;
    let mut profile = serde_json::to_value(profile).map_err(anyhow::Error::from)?;
    let weekdays: Vec<&str> = frame
        .t
        .get("weekdays")
        .copied()
        .unwrap_or_default()
        .split(',')
        .collect();
    profile["weekdays"] = json!(weekdays);
    profile["posts"] = json!(ops::honour::member_posts(&state.ops, &user_id).await?);
    state.views().page("member.html", &frame, profile)
}

fn member_page_url(user_id: &str) -> String {
    format!(
        "/admin/members/{}",
        percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC)
    )
}

#[derive(Deserialize)]
pub struct AdjustForm {
    csrf: String,
    delta: String,
    reason: String,
}

pub async fn adjust_points(
    State(state): State<AdminState>,
    manager: Manager,
    Path(user_id): Path<String>,
    Form(form): Form<AdjustForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let delta: i64 = form
        .delta
        .trim()
        .parse()
        .map_err(|_| AdminError::bad_request("points must be a whole number"))?;
    ops::points::adjust(
        &state.ops,
        &manager.actor,
        state.now(),
        &user_id,
        delta,
        &form.reason,
    )
    .await?;
    Ok(see_other(&member_page_url(&user_id)))
}

#[derive(Deserialize)]
pub struct EssenceForm {
    csrf: String,
    message_id: String,
}

/// Marks one of the member's messages 精华 (its author earns once).
pub async fn mark_essence(
    State(state): State<AdminState>,
    manager: Manager,
    Path(user_id): Path<String>,
    Form(form): Form<EssenceForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::honour::mark_essence(&state.ops, &manager.actor, state.now(), &form.message_id).await?;
    Ok(see_other(&member_page_url(&user_id)))
}

// --- rules --------------------------------------------------------------------

pub async fn rules(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    render_rules(&state, &manager, &headers, None, &[], StatusCode::OK, false).await
}

/// The rules page: `draft` (`None`: the active rules themselves) with its
/// problems and its diff against the active version.
async fn render_rules(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    draft: Option<&str>,
    problems: &[FieldProblem],
    status: StatusCode,
    checked: bool,
) -> PageResult {
    let active = ops::rules::active(&state.ops).await?;
    let (version, current) = (active.version, active.body.as_str());
    let draft = draft.unwrap_or(current);
    let frame = Frame::new(headers, Some(manager), "rules");
    let diff = diff_lines(current, draft);
    let unplaced: Vec<String> = problems
        .iter()
        .filter(|p| p.line.is_none())
        .map(ops::rules::describe)
        .collect();
    let html = state.views().render(
        "rules.html",
        &frame,
        json!({
            "version": version,
            "draft": draft,
            "problems": problems,
            "unplaced": unplaced,
            "annotated": if problems.is_empty() { Vec::new() } else { ops::rules::annotate(draft, problems) },
            "diff": if has_changes(&diff) { diff } else { Vec::new() },
            "checked": checked,
        }),
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
pub struct RulesForm {
    csrf: String,
    body: String,
}

/// Validates the draft and shows its diff against the active version; saves nothing.
pub async fn check_rules(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<RulesForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let problems = ops::rules::check(&form.body);
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_rules(
        &state,
        &manager,
        &headers,
        Some(&form.body),
        &problems,
        status,
        true,
    )
    .await
}

pub async fn apply_rules(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<RulesForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    match ops::rules::apply(&state.ops, &manager.actor, state.now(), &form.body).await? {
        Applied::Version(version) => Ok(see_other(&format!(
            "/admin/rules/history?applied={version}"
        ))),
        Applied::Invalid(problems) => {
            render_rules(
                &state,
                &manager,
                &headers,
                Some(&form.body),
                &problems,
                StatusCode::UNPROCESSABLE_ENTITY,
                true,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    applied: Option<i64>,
}

pub async fn rules_history(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Query(query): Query<HistoryQuery>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "rules");
    let mut versions = ops::rules::versions(&state.ops).await?;
    versions.reverse();
    let active = versions.first().map(|(v, _)| *v);
    let versions: Vec<_> = versions
        .into_iter()
        .map(|(version, at)| json!({ "version": version, "at": at }))
        .collect();
    state.views().page(
        "rules_history.html",
        &frame,
        json!({ "versions": versions, "active": active, "applied": query.applied }),
    )
}

pub async fn rules_version(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(version): Path<i64>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "rules");
    let current = ops::rules::active(&state.ops).await?.body;
    let stored = ops::rules::version(&state.ops, version).await?;
    let diff = diff_lines(&current, &stored.body);
    state.views().page(
        "rules_version.html",
        &frame,
        json!({ "version": stored.version, "at": stored.created_at, "body": stored.body,
                    "diff": if has_changes(&diff) { diff } else { Vec::new() } }),
    )
}

pub async fn rollback_rules(
    State(state): State<AdminState>,
    manager: Manager,
    Path(version): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let new_version =
        ops::rules::rollback(&state.ops, &manager.actor, state.now(), version).await?;
    Ok(see_other(&format!(
        "/admin/rules/history?applied={new_version}"
    )))
}

// --- queues -------------------------------------------------------------------

pub async fn queues(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "queues");
    let redemptions: Vec<_> = ops::queues::redemptions(&state.ops, Some("pending"))
        .await?
        .into_iter()
        .map(|r| json!({ "id": r.id, "user_id": r.user_id, "item": r.item, "cost": r.cost, "at": r.created_at }))
        .collect();
    let parked = ops::queues::parked_events(&state.ops).await?;
    let dead = ops::queues::dead_letters(&state.ops).await?;
    let uncertain = dead.iter().filter(|d| d.is_uncertain()).count();
    let delivery = ops::queues::delivery_counts(&state.ops).await?;
    state.views().page(
            "queues.html",
            &frame,
            json!({ "redemptions": redemptions, "parked": parked, "dead": dead, "uncertain": uncertain, "delivery": delivery }),
        )
}

/// A button on the queues page acting on one item (see [`ItemAction`]).
pub async fn item_action(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
    action: ItemAction,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    action
        .apply(&state.ops, &manager.actor, state.now(), id)
        .await?;
    Ok(see_other("/admin/queues"))
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Cancels a redemption (refund, restock, the member told) through ops.
pub async fn cancel_redemption(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CancelForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::redemptions::cancel(&state.ops, &manager.actor, state.now(), id, &form.reason).await?;
    Ok(see_other("/admin/queues"))
}

pub async fn retry_uncertain(
    State(state): State<AdminState>,
    manager: Manager,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::queues::retry_uncertain(&state.ops, &manager.actor, state.now()).await?;
    Ok(see_other("/admin/queues"))
}

// --- audit, users, tokens -----------------------------------------------------

pub async fn audit(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "audit");
    let entries = ops::audit::recent(&state.ops, None, 300).await?;
    state
        .views()
        .page("audit.html", &frame, json!({ "entries": entries }))
}

#[derive(Deserialize, Default)]
pub struct UsersQuery {
    #[serde(default)]
    notice: String,
}

/// What an account control did, shown on the users page after the redirect.
/// Only these keys are echoed back (as translated text), never free text.
const ACCOUNT_NOTICES: &[&str] = &["disabled", "enabled", "password_reset", "sessions_ended"];

pub async fn users(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Query(query): Query<UsersQuery>,
) -> PageResult {
    manager.require(Role::Owner)?;
    let notice = ACCOUNT_NOTICES
        .iter()
        .find(|known| **known == query.notice)
        .copied();
    render_users_page(
        &state,
        &manager,
        &headers,
        UsersPage {
            notice,
            ..UsersPage::default()
        },
        StatusCode::OK,
    )
    .await
}

/// What the users page shows besides the accounts and tokens.
#[derive(Default)]
struct UsersPage<'a> {
    new_token: Option<&'a str>,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

async fn render_users(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    new_token: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> PageResult {
    let page = UsersPage {
        new_token,
        error,
        notice: None,
    };
    render_users_page(state, manager, headers, page, status).await
}

async fn render_users_page(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    page: UsersPage<'_>,
    status: StatusCode,
) -> PageResult {
    let UsersPage {
        new_token,
        error,
        notice,
    } = page;
    let frame = Frame::new(headers, Some(manager), "users");
    let users = ops::accounts::users(&state.ops).await?;
    let tokens = ops::accounts::tokens(&state.ops).await?;
    let html = state.views().render(
        "users.html",
        &frame,
        json!({
            "users": users,
            "tokens": tokens,
            "new_token": new_token,
            "error": error,
            "notice": notice,
        }),
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
pub struct NewUserForm {
    csrf: String,
    username: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<NewUserForm>,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    let role = Role::parse(&form.role).ok_or_else(|| AdminError::bad_request("unknown role"))?;
    let created = ops::accounts::create_user(
        &state.ops,
        &manager.actor,
        state.now(),
        &form.username,
        &form.password,
        role,
    )
    .await;
    match created {
        Ok(()) => Ok(see_other("/admin/users")),
        Err(OpsError::Invalid { field, reason }) => {
            let status = if field == "username" && reason == ops::accounts::USERNAME_TAKEN {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            render_users(&state, &manager, &headers, None, Some(&reason), status).await
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    csrf: String,
    label: String,
    /// Days until the token stops working; empty for a token that never expires.
    #[serde(default)]
    expires_in_days: String,
}

/// A bearer token acting as the signed-in owner; shown once on the page.
pub async fn create_token(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    // Either the new token, shown once, or why there is none, shown inline.
    let reason = match token_days(&form.expires_in_days) {
        Err(reason) => reason,
        Ok(valid_days) => {
            let created = ops::accounts::create_token_expiring(
                &state.ops,
                &manager.actor,
                state.now(),
                &manager.username,
                &form.label,
                valid_days,
            )
            .await;
            match created {
                Ok(token) => {
                    return render_users(
                        &state,
                        &manager,
                        &headers,
                        Some(&token),
                        None,
                        StatusCode::OK,
                    )
                    .await
                }
                Err(invalid @ OpsError::Invalid { .. }) => invalid.to_string(),
                Err(other) => return Err(other.into()),
            }
        }
    };
    render_users(
        &state,
        &manager,
        &headers,
        None,
        Some(&reason),
        StatusCode::BAD_REQUEST,
    )
    .await
}

/// The token form's days until expiry: `None` (never) when left empty.
fn token_days(text: &str) -> Result<Option<u32>, String> {
    let days = text.trim();
    if days.is_empty() {
        return Ok(None);
    }
    days.parse::<u32>().map(Some).map_err(|_| {
        format!(
            "expires_in_days: a whole number of days from 1 to {}",
            ops::accounts::MAX_TOKEN_DAYS
        )
    })
}

pub async fn revoke_token(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    ops::accounts::revoke_token(&state.ops, &manager.actor, state.now(), id).await?;
    Ok(see_other("/admin/users"))
}

/// An owner's control over another console account.
#[derive(Debug, Clone, Copy)]
pub enum AccountAction {
    Disable,
    Enable,
    ResetPassword,
    EndSessions,
}

#[derive(Deserialize)]
pub struct AccountForm {
    csrf: String,
    /// The new password (only for [`AccountAction::ResetPassword`]).
    #[serde(default)]
    password: String,
}

/// Disables or enables an account, sets its password, or signs it out
/// everywhere; then back to the users page with a notice, or the page again
/// with the reason inline.
pub async fn account_action(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(username): Path<String>,
    Form(form): Form<AccountForm>,
    action: AccountAction,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    let (ops, actor, now) = (&state.ops, &manager.actor, state.now());
    let done = match action {
        AccountAction::Disable => ops::accounts::set_disabled(ops, actor, now, &username, true)
            .await
            .map(|()| "disabled"),
        AccountAction::Enable => ops::accounts::set_disabled(ops, actor, now, &username, false)
            .await
            .map(|()| "enabled"),
        AccountAction::ResetPassword => {
            ops::accounts::reset_password(ops, actor, now, &username, &form.password)
                .await
                .map(|()| "password_reset")
        }
        AccountAction::EndSessions => ops::accounts::end_sessions(ops, actor, now, &username)
            .await
            .map(|_| "sessions_ended"),
    };
    let (reason, status) = match done {
        Ok(notice) => return Ok(see_other(&format!("/admin/users?notice={notice}"))),
        Err(invalid @ OpsError::Invalid { .. }) => (invalid.to_string(), StatusCode::BAD_REQUEST),
        Err(missing @ OpsError::NotFound(_)) => (missing.to_string(), StatusCode::NOT_FOUND),
        Err(other) => return Err(other.into()),
    };
    render_users(&state, &manager, &headers, None, Some(&reason), status).await
}

// --- CSV export ---------------------------------------------------------------

pub async fn export_csv(
    State(state): State<AdminState>,
    manager: Manager,
    Path(name): Path<String>,
) -> PageResult {
    let out = ops::audit::export_csv(&state.ops, &manager.actor, state.now(), &name).await?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(out),
    )
        .into_response())
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_switch_only_returns_to_console_pages() {
        assert_eq!(
            same_site_admin_path("http://127.0.0.1:8080/admin/rules").as_deref(),
            Some("/admin/rules")
        );
        assert_eq!(same_site_admin_path("http://evil.example/"), None);
        assert_eq!(same_site_admin_path("http://h//admin//evil"), None);
        assert_eq!(same_site_admin_path("/admin"), None);
    }
}
