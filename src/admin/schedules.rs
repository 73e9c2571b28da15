//! Scheduled pushes in the console: the list and each schedule's page with its
//! forms (`/admin/schedules…`), and the same under `/admin/api/v1/schedules…`.
//! Handlers only check the caller and call [`ops::schedules`](crate::ops::schedules).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::ApiError;
use super::auth::{ApiCaller, Manager, Role};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::ops::schedules::{self as ops, Previews};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/schedules", get(list_page))
        .route("/admin/schedules/{name}", get(detail_page))
        .route(
            "/admin/schedules/{name}/pause",
            post(|state, manager, name, form| paused_form(state, manager, name, form, true)),
        )
        .route(
            "/admin/schedules/{name}/resume",
            post(|state, manager, name, form| paused_form(state, manager, name, form, false)),
        )
        .route("/admin/schedules/{name}/run", post(run_form))
        .route("/admin/schedules/{name}/preview", post(preview_form))
        .route("/admin/api/v1/schedules", get(list_api))
        .route("/admin/api/v1/schedules/{name}", get(detail_api))
        .route(
            "/admin/api/v1/schedules/{name}/pause",
            post(|state, caller, name| paused_api(state, caller, name, true)),
        )
        .route(
            "/admin/api/v1/schedules/{name}/resume",
            post(|state, caller, name| paused_api(state, caller, name, false)),
        )
        .route("/admin/api/v1/schedules/{name}/run", post(run_api))
        .route("/admin/api/v1/schedules/{name}/preview", post(preview_api))
}

fn page_of(name: &str) -> String {
    format!(
        "/admin/schedules/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

// --- pages --------------------------------------------------------------------

async fn list_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let frame = Frame::new(&headers, Some(&manager), "schedules");
    let schedules = ops::list(&state.ops, state.now()).await?;
    state
        .views()
        .page("schedules.html", &frame, json!({ "schedules": schedules }))
}

#[derive(Deserialize)]
struct DetailQuery {
    ran: Option<i64>,
}

async fn detail_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, AdminError> {
    render_detail(&state, &manager, &headers, &name, query.ran, None).await
}

async fn render_detail(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    name: &str,
    ran: Option<i64>,
    previews: Option<Previews>,
) -> Result<Response, AdminError> {
    let frame = Frame::new(headers, Some(manager), "schedules");
    let detail = ops::detail(&state.ops, state.now(), name).await?;
    state.views().page(
        "schedule.html",
        &frame,
        json!({ "d": detail, "ran": ran, "previews": previews }),
    )
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn paused_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
    paused: bool,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::set_paused(&state.ops, &manager.actor, state.now(), &name, paused).await?;
    Ok(Redirect::to(&page_of(&name)).into_response())
}

async fn run_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let planned = ops::run_now(&state.ops, &manager.actor, state.now(), &name).await?;
    Ok(Redirect::to(&format!("{}?ran={}", page_of(&name), planned.run_id)).into_response())
}

async fn preview_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let previews = ops::preview(&state.ops, &manager.actor, state.now(), &name, None).await?;
    render_detail(&state, &manager, &headers, &name, None, Some(previews)).await
}

// --- JSON API -----------------------------------------------------------------

type ApiResult = Result<Json<Value>, ApiError>;

async fn list_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "schedules": ops::list(&state.ops, state.now()).await? }),
    ))
}

async fn detail_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(Json(json!(
        ops::detail(&state.ops, state.now(), &name).await?
    )))
}

async fn paused_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(name): Path<String>,
    paused: bool,
) -> ApiResult {
    ops::set_paused(&state.ops, &caller.actor, state.now(), &name, paused).await?;
    Ok(Json(json!({ "name": name, "paused": paused })))
}

async fn run_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(name): Path<String>,
) -> ApiResult {
    let planned = ops::run_now(&state.ops, &caller.actor, state.now(), &name).await?;
    Ok(Json(json!({ "run": planned })))
}

async fn preview_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(name): Path<String>,
) -> ApiResult {
    let previews = ops::preview(&state.ops, &caller.actor, state.now(), &name, None).await?;
    Ok(Json(json!(previews)))
}
