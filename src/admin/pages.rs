//! The console's HTML pages and form handlers. Every handler takes a
//! [`Manager`] (no session: redirect to the login page); every form post
//! checks the role and the CSRF token before doing anything.

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{Datelike, Duration};
use serde::Deserialize;
use serde_json::json;

use super::auth::{self, Manager, Role, LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use super::diff::{diff_lines, has_changes};
use super::ops::{self, Applied};
use super::rules_editor::{self, FieldProblem};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::rules::checkin::community_day;
use crate::store::{self, admin as q};

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
    let now = ops::now(&state).timestamp();
    let username = form.username.trim();
    let mut conn = state.pool.acquire().await?;
    let window_start = now - state.settings.login_window.as_secs() as i64;
    let ip = auth::client_ip(
        peer.map(|axum::Extension(info)| info.0),
        &headers,
        state.settings.trust_forwarded_for,
    )
    .unwrap_or_default();
    if !ip.is_empty()
        && q::login_failures_from_ip_since(&mut conn, &ip, window_start).await?
            >= state.settings.login_failures_per_ip
    {
        q::append_audit(
            &mut conn,
            now,
            username,
            "login.throttled_ip",
            &ip,
            username,
        )
        .await?;
        let t = super::i18n::strings(super::views::language(&headers));
        return render_login(
            &state,
            &headers,
            t.get("login_throttled").copied(),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    if q::login_failures_since(&mut conn, username, window_start).await?
        >= state.settings.login_max_failures
    {
        q::append_audit(&mut conn, now, username, "login.throttled", username, "").await?;
        let t = super::i18n::strings(super::views::language(&headers));
        return render_login(
            &state,
            &headers,
            t.get("login_throttled").copied(),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let user = q::user_by_name(&mut conn, username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.as_str())
        .unwrap_or_else(|| auth::dummy_password_hash());
    // argon2 is deliberately slow: keep it off the async workers.
    let password = form.password.clone();
    let hash_owned = hash.to_owned();
    let verified =
        tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash_owned))
            .await
            .map_err(|e| anyhow::anyhow!("password check: {e}"))?;
    let Some(user) = user.filter(|_| verified) else {
        q::record_login_failure_from(&mut conn, username, &ip, now).await?;
        q::append_audit(&mut conn, now, username, "login.failed", username, "").await?;
        let t = super::i18n::strings(super::views::language(&headers));
        return render_login(
            &state,
            &headers,
            t.get("login_failed").copied(),
            StatusCode::UNAUTHORIZED,
        );
    };
    q::clear_login_failures(&mut conn, username).await?;
    let ttl = state.settings.session_ttl.as_secs() as i64;
    let secret = auth::start_session(&mut conn, user.id, now, ttl).await?;
    q::append_audit(&mut conn, now, &user.username, "login", &user.username, "").await?;
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
    let now = ops::now(&state).timestamp();
    let mut conn = state.pool.acquire().await?;
    if let Some(token) = auth::cookie(&headers, SESSION_COOKIE) {
        q::delete_session(&mut conn, &auth::hash_secret(&token)).await?;
    }
    q::append_audit(
        &mut conn,
        now,
        &manager.actor,
        "logout",
        &manager.username,
        "",
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
    let data = ops::dashboard(&state).await?;
    let charts = ops::dashboard_charts(&data, &frame.t);
    Ok(state
        .views()
        .render(
            "dashboard.html",
            &frame,
            json!({ "d": data, "charts": charts }),
        )?
        .into_response())
}

// --- chats --------------------------------------------------------------------

pub async fn chats(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "chats");
    let mut conn = state.pool.acquire().await?;
    let chats = q::list_chats(&mut conn, ops::now(&state).timestamp()).await?;
    Ok(state
        .views()
        .render("chats.html", &frame, json!({ "chats": chats }))?
        .into_response())
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
    let mut conn = state.pool.acquire().await?;
    let members = q::search_members(&mut conn, search.q.trim(), 200).await?;
    Ok(state
        .views()
        .render(
            "members.html",
            &frame,
            json!({ "members": members, "q": search.q }),
        )?
        .into_response())
}

pub async fn member(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "members");
    let mut profile = member_profile(&state, &user_id).await?;
    let weekdays: Vec<&str> = frame
        .t
        .get("weekdays")
        .copied()
        .unwrap_or_default()
        .split(',')
        .collect();
    profile["weekdays"] = json!(weekdays);
    Ok(state
        .views()
        .render("member.html", &frame, profile)?
        .into_response())
}

/// Everything the profile page (and the API) shows about one person.
pub async fn member_profile(
    state: &AdminState,
    user_id: &str,
) -> Result<serde_json::Value, AdminError> {
    let (_, _, rules) = ops::active_rules(state).await?;
    let mut conn = state.pool.acquire().await?;
    if !q::person_exists(&mut conn, user_id).await? {
        return Err(AdminError::NotFound);
    }
    let today = community_day(
        ops::now(state),
        rules.timezone,
        rules.doc.community.day_cutover_hour,
    );
    // Five whole weeks, Monday first, ending with the current week.
    let first = today
        - Duration::days(i64::from(today.weekday().num_days_from_monday()))
        - Duration::weeks(4);
    let checked: std::collections::BTreeSet<String> =
        q::checkin_days(&mut conn, user_id, &first.to_string())
            .await?
            .into_iter()
            .collect();
    let calendar: Vec<Vec<serde_json::Value>> = (0..5)
        .map(|week| {
            (0..7)
                .map(|d| {
                    let day = first + Duration::days(week * 7 + d);
                    json!({
                        "day": day.day(),
                        "date": day.to_string(),
                        "checked": checked.contains(&day.to_string()),
                        "future": day > today,
                    })
                })
                .collect()
        })
        .collect();
    let ledger: Vec<serde_json::Value> = store::points::entries_for(&mut conn, user_id)
        .await?
        .into_iter()
        .rev()
        .map(|e| json!({ "id": e.id, "delta": e.delta, "reason": e.reason, "day": e.day }))
        .collect();
    let (strikes, moderation_log) = ops::moderation::member_record(&mut conn, user_id).await?;
    Ok(json!({
        "user_id": user_id,
        "name": store::members::person_name(&mut conn, user_id).await?,
        "balance": store::points::balance(&mut conn, user_id).await?,
        "badges": store::members::badges(&mut conn, user_id).await?,
        "memberships": q::memberships(&mut conn, user_id).await?,
        "ledger": ledger,
        "calendar": calendar,
        "audit": q::recent_audit(&mut conn, Some(user_id), 50).await?,
        "strikes": strikes,
        "moderation_log": moderation_log,
        "stage_changes": store::analytics::stage_changes(&mut conn, Some(user_id), 20).await?,
    }))
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
    ops::adjust_points(&state, &manager, &user_id, delta, &form.reason).await?;
    Ok(see_other(&format!(
        "/admin/members/{}",
        percent_encoding::utf8_percent_encode(&user_id, percent_encoding::NON_ALPHANUMERIC)
    )))
}

// --- rules --------------------------------------------------------------------

pub async fn rules(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let (version, body, _) = ops::active_rules(&state).await?;
    render_rules(
        &state,
        &manager,
        &headers,
        version,
        &body,
        &body,
        &[],
        StatusCode::OK,
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn render_rules(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    version: Option<i64>,
    current: &str,
    draft: &str,
    problems: &[FieldProblem],
    status: StatusCode,
    checked: bool,
) -> PageResult {
    let frame = Frame::new(headers, Some(manager), "rules");
    let diff = diff_lines(current, draft);
    let unplaced: Vec<String> = problems
        .iter()
        .filter(|p| p.line.is_none())
        .map(rules_editor::describe)
        .collect();
    let html = state.views().render(
        "rules.html",
        &frame,
        json!({
            "version": version,
            "draft": draft,
            "problems": problems,
            "unplaced": unplaced,
            "annotated": if problems.is_empty() { Vec::new() } else { rules_editor::annotate(draft, problems) },
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
    let (version, current, _) = ops::active_rules(&state).await?;
    let problems = rules_editor::check(&form.body);
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_rules(
        &state, &manager, &headers, version, &current, &form.body, &problems, status, true,
    )
}

pub async fn apply_rules(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<RulesForm>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    match ops::apply_rules(&state, &manager, &form.body).await? {
        Applied::Version(version) => Ok(see_other(&format!(
            "/admin/rules/history?applied={version}"
        ))),
        Applied::Invalid(problems) => {
            let (version, current, _) = ops::active_rules(&state).await?;
            render_rules(
                &state,
                &manager,
                &headers,
                version,
                &current,
                &form.body,
                &problems,
                StatusCode::UNPROCESSABLE_ENTITY,
                true,
            )
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
    let mut conn = state.pool.acquire().await?;
    let mut versions = store::rule_sets::list_versions(&mut conn).await?;
    versions.reverse();
    let active = versions.first().map(|(v, _)| *v);
    let versions: Vec<_> = versions
        .into_iter()
        .map(|(version, at)| json!({ "version": version, "at": at }))
        .collect();
    Ok(state
        .views()
        .render(
            "rules_history.html",
            &frame,
            json!({ "versions": versions, "active": active, "applied": query.applied }),
        )?
        .into_response())
}

pub async fn rules_version(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(version): Path<i64>,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "rules");
    let (_, current, _) = ops::active_rules(&state).await?;
    let mut conn = state.pool.acquire().await?;
    let stored = q::rule_set_version(&mut conn, version)
        .await?
        .ok_or(AdminError::NotFound)?;
    let diff = diff_lines(&current, &stored.body);
    Ok(state
        .views()
        .render(
            "rules_version.html",
            &frame,
            json!({ "version": stored.version, "at": stored.created_at, "body": stored.body,
                    "diff": if has_changes(&diff) { diff } else { Vec::new() } }),
        )?
        .into_response())
}

pub async fn rollback_rules(
    State(state): State<AdminState>,
    manager: Manager,
    Path(version): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let new_version = ops::rollback_rules(&state, &manager, version).await?;
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
    let mut conn = state.pool.acquire().await?;
    let redemptions: Vec<_> = store::redemptions::list(&mut conn, Some("pending"))
        .await?
        .into_iter()
        .map(|r| json!({ "id": r.id, "user_id": r.user_id, "item": r.item, "cost": r.cost, "at": r.created_at }))
        .collect();
    let parked = q::parked_events(&mut conn).await?;
    drop(conn);
    let dead = ops::dead_letters(&state).await?;
    let uncertain = dead.iter().filter(|d| d.is_uncertain()).count();
    Ok(state
        .views()
        .render(
            "queues.html",
            &frame,
            json!({ "redemptions": redemptions, "parked": parked, "dead": dead, "uncertain": uncertain }),
        )?
        .into_response())
}

pub async fn fulfil_redemption(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::fulfil_redemption(&state, &manager, id).await?;
    Ok(see_other("/admin/queues"))
}

pub async fn retry_parked(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::retry_parked(&state, &manager, id).await?;
    Ok(see_other("/admin/queues"))
}

pub async fn retry_uncertain(
    State(state): State<AdminState>,
    manager: Manager,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::retry_uncertain(&state, &manager).await?;
    Ok(see_other("/admin/queues"))
}

pub async fn retry_outbox(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::retry_outbox(&state, &manager, id).await?;
    Ok(see_other("/admin/queues"))
}

// --- audit, users, tokens -----------------------------------------------------

pub async fn audit(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    let frame = Frame::new(&headers, Some(&manager), "audit");
    let mut conn = state.pool.acquire().await?;
    let entries = q::recent_audit(&mut conn, None, 300).await?;
    Ok(state
        .views()
        .render("audit.html", &frame, json!({ "entries": entries }))?
        .into_response())
}

pub async fn users(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> PageResult {
    manager.require(Role::Owner)?;
    render_users(&state, &manager, &headers, None, None, StatusCode::OK).await
}

async fn render_users(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    new_token: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> PageResult {
    let frame = Frame::new(headers, Some(manager), "users");
    let mut conn = state.pool.acquire().await?;
    let users: Vec<_> = q::list_users(&mut conn)
        .await?
        .into_iter()
        .map(|u| json!({ "username": u.username, "role": u.role, "created_at": u.created_at }))
        .collect();
    let tokens = q::list_api_tokens(&mut conn).await?;
    let html = state.views().render(
        "users.html",
        &frame,
        json!({ "users": users, "tokens": tokens, "new_token": new_token, "error": error }),
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
    let created = async {
        let username = auth::valid_username(&form.username)?.to_owned();
        auth::check_password_strength(&form.password)?;
        let password = form.password.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await??;
        anyhow::Ok((username, hash))
    }
    .await;
    let (username, hash) = match created {
        Ok(ok) => ok,
        Err(e) => {
            let message = e.to_string();
            return render_users(
                &state,
                &manager,
                &headers,
                None,
                Some(&message),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let now = ops::now(&state).timestamp();
    let mut tx = state.pool.begin().await?;
    if q::insert_user(&mut tx, &username, &hash, role.as_str(), now)
        .await?
        .is_none()
    {
        drop(tx);
        return render_users(
            &state,
            &manager,
            &headers,
            None,
            Some("username already taken"),
            StatusCode::CONFLICT,
        )
        .await;
    }
    q::append_audit(
        &mut tx,
        now,
        &manager.actor,
        "user.create",
        &username,
        role.as_str(),
    )
    .await?;
    tx.commit().await?;
    Ok(see_other("/admin/users"))
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    csrf: String,
    label: String,
}

/// A bearer token acting as the signed-in owner; shown once on the page.
pub async fn create_token(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    let label = form.label.trim();
    if label.is_empty() || label.len() > 64 {
        return Err(AdminError::bad_request(
            "a label of 1-64 characters is required",
        ));
    }
    let now = ops::now(&state).timestamp();
    let mut tx = state.pool.begin().await?;
    let token = auth::issue_api_token(&mut tx, manager.user_id, label, now).await?;
    q::append_audit(&mut tx, now, &manager.actor, "token.create", label, "").await?;
    tx.commit().await?;
    render_users(
        &state,
        &manager,
        &headers,
        Some(&token),
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn revoke_token(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    manager.authorize_form(Role::Owner, &form.csrf)?;
    let now = ops::now(&state).timestamp();
    let mut tx = state.pool.begin().await?;
    if !q::revoke_api_token(&mut tx, id, now).await? {
        return Err(AdminError::NotFound);
    }
    q::append_audit(
        &mut tx,
        now,
        &manager.actor,
        "token.revoke",
        &id.to_string(),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(see_other("/admin/users"))
}

// --- CSV export ---------------------------------------------------------------

pub async fn export_csv(
    State(state): State<AdminState>,
    manager: Manager,
    Path(name): Path<String>,
) -> PageResult {
    let mut conn = state.pool.acquire().await?;
    let mut out = String::new();
    match name.as_str() {
        "members.csv" => {
            csv_row(
                &mut out,
                &["user_id", "name", "chats", "balance", "last_checkin"],
            );
            for m in q::search_members(&mut conn, "", i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &m.user_id,
                        m.name.as_deref().unwrap_or(""),
                        &m.chats.to_string(),
                        &m.balance.to_string(),
                        m.last_checkin.as_deref().unwrap_or(""),
                    ],
                );
            }
        }
        "ledger.csv" => {
            csv_row(
                &mut out,
                &[
                    "id",
                    "user_id",
                    "delta",
                    "reason",
                    "reference",
                    "chat_id",
                    "day",
                    "created_at",
                ],
            );
            for e in q::all_ledger(&mut conn).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.user_id,
                        &e.delta.to_string(),
                        &e.reason,
                        &e.reference,
                        &e.chat_id,
                        &e.day,
                        &e.created_at.to_string(),
                    ],
                );
            }
        }
        "moderation.csv" => {
            csv_row(
                &mut out,
                &[
                    "id",
                    "at",
                    "chat_id",
                    "user_id",
                    "rule",
                    "category",
                    "severity",
                    "matched",
                    "excerpt",
                    "action_taken",
                    "dry_run",
                    "reviewed_by",
                    "review_note",
                ],
            );
            for e in store::moderation::log(&mut conn, None, i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.at.to_string(),
                        e.chat_id.as_deref().unwrap_or(""),
                        &e.user_id,
                        &e.rule,
                        &e.category,
                        &e.severity,
                        &e.matched,
                        &e.excerpt,
                        &e.action_taken,
                        if e.dry_run { "true" } else { "false" },
                        e.reviewed_by.as_deref().unwrap_or(""),
                        e.review_note.as_deref().unwrap_or(""),
                    ],
                );
            }
        }
        "audit.csv" => {
            csv_row(
                &mut out,
                &["id", "at", "actor", "action", "target", "detail"],
            );
            for e in q::recent_audit(&mut conn, None, i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.at.to_string(),
                        &e.actor,
                        &e.action,
                        &e.target,
                        &e.detail,
                    ],
                );
            }
        }
        _ => return Err(AdminError::NotFound),
    }
    let now = ops::now(&state).timestamp();
    q::append_audit(&mut conn, now, &manager.actor, "export", &name, "").await?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV line (RFC 4180 quoting). A cell a spreadsheet would run as a
/// formula (=, +, -, @) gets a leading apostrophe unless it is a number.
pub fn csv_row(out: &mut String, cells: &[&str]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let is_number = cell.parse::<i64>().is_ok();
        let cell = if !is_number && cell.starts_with(['=', '+', '-', '@']) {
            format!("'{cell}")
        } else {
            (*cell).to_owned()
        };
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut out = String::new();
        csv_row(&mut out, &["a,b", "say \"hi\"", "=1+1", "-5", "plain"]);
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",'=1+1,-5,plain\r\n");
    }

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
