//! The moderation queue in the console (`/admin/moderation…`) and the JSON API
//! (`/admin/api/v1/moderation/…`). Handlers only check the caller and call
//! [`ops::moderation`](crate::ops::moderation); a missing or too long reason
//! is answered 422 with the error at its field, and nothing changes.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::ApiError;
use super::auth::{ApiCaller, Manager, Role};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::ops::moderation::{self as ops, LogFilter, ReportAction};
use crate::ops::OpsError;

/// A refused reason: the i18n key of its message, shown at the field.
struct ReasonError {
    key: &'static str,
    message: String,
}

/// Splits a refused reason (answered 422 at the field) from every other outcome.
fn reason_problem(result: Result<(), OpsError>) -> Result<Option<ReasonError>, AdminError> {
    match result {
        Ok(()) => Ok(None),
        Err(OpsError::Invalid {
            field: "reason",
            reason,
        }) => {
            let key = if reason == ops::REASON_TOO_LONG {
                "reason_too_long"
            } else {
                "reason_required"
            };
            Ok(Some(ReasonError {
                key,
                message: reason,
            }))
        }
        Err(other) => Err(other.into()),
    }
}

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/moderation", get(queue_page))
        .route("/admin/moderation/tasks/{id}/done", post(task_done_form))
        .route("/admin/moderation/strikes/{id}/revoke", post(revoke_form))
        .route("/admin/moderation/reports", post(report_form))
        .route("/admin/api/v1/moderation/tasks", get(tasks_api))
        .route(
            "/admin/api/v1/moderation/tasks/{id}/done",
            post(task_done_api),
        )
        .route("/admin/api/v1/moderation/strikes", get(strikes_api))
        .route(
            "/admin/api/v1/moderation/strikes/{id}/revoke",
            post(revoke_api),
        )
        .route(
            "/admin/api/v1/moderation/reports",
            get(reports_api).post(report_api),
        )
        .route("/admin/api/v1/moderation/log", get(log_api))
}

#[derive(Deserialize, Default)]
struct FilterQuery {
    member: Option<String>,
    action: Option<String>,
}

impl FilterQuery {
    fn filter(&self) -> LogFilter {
        LogFilter::new(self.member.as_deref(), self.action.as_deref())
    }
}

// --- pages --------------------------------------------------------------------

async fn queue_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Query(query): Query<FilterQuery>,
) -> Result<Response, AdminError> {
    render_queue(
        &state,
        &manager,
        &headers,
        &query.filter(),
        BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

/// The queue page; `errors` maps a form's id (`strike-7`, `report-…`) to the
/// i18n key of the message shown at its reason field.
async fn render_queue(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    filter: &LogFilter,
    errors: BTreeMap<String, &'static str>,
    status: StatusCode,
) -> Result<Response, AdminError> {
    let frame = Frame::new(headers, Some(manager), "moderation");
    let queue = ops::queue(&state.ops, filter).await?;
    let review = crate::ops::review::list(&state.ops, state.now(), false).await?;
    let errors: BTreeMap<String, &str> = errors
        .into_iter()
        .map(|(form, key)| (form, frame.t.get(key).copied().unwrap_or(key)))
        .collect();
    let html = state.views().render(
        "moderation.html",
        &frame,
        json!({ "q": queue, "review": review, "filter_member": filter.member, "filter_action": filter.action,
                "errors": errors }),
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
struct NoteForm {
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn task_done_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<NoteForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::complete_task(&state.ops, &manager.actor, state.now(), id, &form.note).await?;
    Ok(Redirect::to("/admin/moderation").into_response())
}

#[derive(Deserialize)]
struct ReasonForm {
    csrf: String,
    #[serde(default)]
    reason: String,
    /// Where to go afterwards: a member's profile, else the moderation page.
    #[serde(default)]
    back: String,
}

/// Only a member profile of this console; anything else (another site, a
/// `//host` path) goes to the moderation page.
fn back_to(back: &str) -> &str {
    let safe = back.starts_with("/admin/members/")
        && !back.contains("//")
        && !back.contains('\\')
        && !back.chars().any(char::is_control);
    if safe {
        back
    } else {
        "/admin/moderation"
    }
}

async fn revoke_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let revoked =
        ops::revoke_strike(&state.ops, &manager.actor, state.now(), id, &form.reason).await;
    match reason_problem(revoked)? {
        None => Ok(Redirect::to(back_to(&form.back)).into_response()),
        Some(error) => {
            invalid_page(&state, &manager, &headers, format!("strike-{id}"), error).await
        }
    }
}

#[derive(Deserialize)]
struct ReportForm {
    csrf: String,
    chat_id: String,
    fingerprint: i64,
    action: String,
    #[serde(default)]
    reason: String,
}

async fn report_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<ReportForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let action = ReportAction::parse(&form.action)
        .ok_or_else(|| AdminError::bad_request("action must be strike or dismiss"))?;
    let handled = ops::handle_report(
        &state.ops,
        &manager.actor,
        state.now(),
        &form.chat_id,
        form.fingerprint,
        action,
        &form.reason,
    )
    .await;
    match reason_problem(handled)? {
        None => Ok(Redirect::to("/admin/moderation").into_response()),
        Some(error) => {
            let id = format!("report-{}-{}", form.chat_id, form.fingerprint);
            invalid_page(&state, &manager, &headers, id, error).await
        }
    }
}

async fn invalid_page(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    form_id: String,
    error: ReasonError,
) -> Result<Response, AdminError> {
    let errors = BTreeMap::from([(form_id, error.key)]);
    render_queue(
        state,
        manager,
        headers,
        &LogFilter::default(),
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

// --- JSON API -----------------------------------------------------------------

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

fn unprocessable(error: &ReasonError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": error.message, "field": "reason" })),
    )
        .into_response()
}

/// An optional JSON body: empty means every field's default.
fn lenient_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(AdminError::bad_request(format!("invalid JSON body: {e}"))))
}

async fn tasks_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    ok(json!({ "tasks": ops::open_tasks(&state.ops).await? }))
}

#[derive(Deserialize, Default)]
struct NoteBody {
    #[serde(default)]
    note: String,
}

async fn task_done_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult {
    let note = lenient_body::<NoteBody>(&body)?.note;
    ops::complete_task(&state.ops, &caller.actor, state.now(), id, &note).await?;
    ok(json!({ "id": id, "status": "done" }))
}

async fn strikes_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    ok(json!({ "strikes": ops::open_strikes(&state.ops).await? }))
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

async fn revoke_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult {
    let reason = lenient_body::<ReasonBody>(&body)?.reason;
    let revoked = ops::revoke_strike(&state.ops, &caller.actor, state.now(), id, &reason).await;
    match reason_problem(revoked)? {
        None => ok(json!({ "id": id, "status": "revoked" })),
        Some(error) => Ok(unprocessable(&error)),
    }
}

async fn reports_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    ok(json!({ "reports": ops::reports(&state.ops).await? }))
}

#[derive(Deserialize)]
struct ReportBody {
    chat_id: String,
    fingerprint: i64,
    action: String,
    #[serde(default)]
    reason: String,
}

async fn report_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<ReportBody>,
) -> ApiResult {
    let action = ReportAction::parse(&body.action)
        .ok_or_else(|| AdminError::bad_request("action must be strike or dismiss"))?;
    let handled = ops::handle_report(
        &state.ops,
        &caller.actor,
        state.now(),
        &body.chat_id,
        body.fingerprint,
        action,
        &body.reason,
    )
    .await;
    match reason_problem(handled)? {
        None => ok(
            json!({ "chat_id": body.chat_id, "fingerprint": body.fingerprint,
                                    "status": "handled" }),
        ),
        Some(error) => Ok(unprocessable(&error)),
    }
}

async fn log_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Query(query): Query<FilterQuery>,
) -> ApiResult {
    ok(json!({ "entries": ops::log(&state.ops, &query.filter()).await? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_redirects_only_to_member_pages() {
        for (back, to) in [
            ("/admin/members/wmAlice", "/admin/members/wmAlice"),
            ("", "/admin/moderation"),
            ("https://evil.example/", "/admin/moderation"),
            ("//evil.example/admin/members/x", "/admin/moderation"),
            ("/admin/members//evil.example", "/admin/moderation"),
            ("/admin/members/x\\evil", "/admin/moderation"),
        ] {
            assert_eq!(back_to(back), to, "{back}");
        }
    }
}
