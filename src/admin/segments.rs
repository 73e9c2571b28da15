//! Segments, member tags and RFM in the console (`/admin/segments…`, the
//! tag form on a member page) and the JSON API (`/admin/api/v1/segments…`,
//! `/admin/api/v1/members/{id}/tags`, `/admin/api/v1/rfm`). Handlers only
//! check the caller and call `ops::segments`, `ops::member_tags`.

use axum::extract::{Path, State};
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
use crate::ops::segments::{self as ops, SegmentFilter};
use crate::ops::{member_tags, OpsError};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/segments", get(list_page).post(save_form))
        .route("/admin/segments/preview", post(preview_form))
        .route("/admin/segments/{id}", get(detail_page))
        .route("/admin/segments/{id}/push", post(push_form))
        .route("/admin/members/{user_id}/tags", post(tags_form))
        .route("/admin/api/v1/segments", get(list_api).post(save_api))
        .route("/admin/api/v1/segments/preview", post(preview_api))
        .route("/admin/api/v1/segments/{id}", get(detail_api))
        .route("/admin/api/v1/segments/{id}/push", post(push_api))
        .route("/admin/api/v1/members/{user_id}/tags", post(add_tags_api))
        .route(
            "/admin/api/v1/members/{user_id}/tags/remove",
            post(remove_tags_api),
        )
        .route("/admin/api/v1/rfm", get(rfm_api))
}

// --- pages --------------------------------------------------------------------

/// The segment form's fields: comma-separated lists and day counts.
#[derive(Debug, Default, Deserialize)]
struct FilterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: String,
    #[serde(default)]
    levels: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    rfm_segments: String,
    #[serde(default)]
    chats: String,
    #[serde(default)]
    active_within_days: String,
    #[serde(default)]
    inactive_for_days: String,
}

impl FilterForm {
    fn filter(&self) -> Result<SegmentFilter, AdminError> {
        let days = |field: &'static str, text: &str| -> Result<Option<i64>, AdminError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| OpsError::invalid(field, "a whole number of days").into())
        };
        Ok(SegmentFilter {
            stages: vec![self.stages.clone()],
            levels: vec![self.levels.clone()],
            tags: vec![self.tags.clone()],
            rfm_segments: vec![self.rfm_segments.clone()],
            chats: vec![self.chats.clone()],
            active_within_days: days("active_within_days", &self.active_within_days)?,
            inactive_for_days: days("inactive_for_days", &self.inactive_for_days)?,
        })
    }
}

async fn render_list(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    form: Option<(&FilterForm, ops::Preview)>,
) -> Result<Response, AdminError> {
    let frame = Frame::new(headers, Some(manager), "segments");
    let segments = ops::list(&state.ops).await?;
    let (form, preview) = match form {
        Some((form, preview)) => (
            json!({
                "name": form.name, "stages": form.stages, "levels": form.levels,
                "tags": form.tags, "rfm_segments": form.rfm_segments, "chats": form.chats,
                "active_within_days": form.active_within_days,
                "inactive_for_days": form.inactive_for_days,
            }),
            Some(preview),
        ),
        None => (json!({}), None),
    };
    state.views().page(
        "segments.html",
        &frame,
        json!({ "segments": segments, "form": form, "preview": preview }),
    )
}

async fn list_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    render_list(&state, &manager, &headers, None).await
}

/// Count and sample of the filter in the form, shown under it (nothing saved).
async fn preview_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<FilterForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Viewer, &form.csrf)?;
    let preview = ops::preview(&state.ops, state.now(), form.filter()?).await?;
    render_list(&state, &manager, &headers, Some((&form, preview))).await
}

async fn save_form(
    State(state): State<AdminState>,
    manager: Manager,
    Form(form): Form<FilterForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let id = ops::save(
        &state.ops,
        &manager.actor,
        state.now(),
        &form.name,
        form.filter()?,
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/segments/{id}")).into_response())
}

async fn render_detail(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    id: i64,
    push: Value,
) -> Result<Response, AdminError> {
    let frame = Frame::new(headers, Some(manager), "segments");
    let segment = ops::get(&state.ops, id).await?;
    let preview = ops::preview_saved(&state.ops, state.now(), id).await?;
    state.views().page(
        "segment.html",
        &frame,
        json!({ "segment": segment, "preview": preview, "push": push }),
    )
}

async fn detail_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    render_detail(&state, &manager, &headers, id, Value::Null).await
}

#[derive(Deserialize)]
struct PushForm {
    csrf: String,
    text: String,
    /// Present on the confirming submit; absent: preview only.
    #[serde(default)]
    confirm: Option<String>,
}

/// First submit: what would be sent to whom; the confirming submit sends.
async fn push_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<PushForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let push = if form.confirm.is_some() {
        let pushed = ops::push(&state.ops, &manager.actor, state.now(), id, &form.text).await?;
        json!({ "sent": pushed, "text": form.text })
    } else {
        if form.text.trim().is_empty() {
            return Err(OpsError::invalid("text", "the message is empty").into());
        }
        json!({
            "preview": true,
            "text": form.text,
            "external_reason": crate::rules::route::reasons::CUSTOMER_NO_OWNER,
        })
    };
    render_detail(&state, &manager, &headers, id, push).await
}

#[derive(Deserialize)]
struct TagsForm {
    csrf: String,
    tags: String,
    #[serde(default)]
    remove: Option<String>,
}

async fn tags_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(user_id): Path<String>,
    Form(form): Form<TagsForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let tags = vec![form.tags];
    let now = state.now();
    if form.remove.is_some() {
        member_tags::remove(&state.ops, &manager.actor, now, &user_id, &tags).await?;
    } else {
        member_tags::add(&state.ops, &manager.actor, now, &user_id, &tags).await?;
    }
    Ok(Redirect::to(&format!(
        "/admin/members/{}",
        percent_encoding::utf8_percent_encode(&user_id, percent_encoding::NON_ALPHANUMERIC)
    ))
    .into_response())
}

// --- API ----------------------------------------------------------------------

type ApiResult = Result<Json<Value>, ApiError>;

async fn list_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(json!({ "segments": ops::list(&state.ops).await? })))
}

#[derive(Deserialize)]
struct SaveBody {
    name: String,
    #[serde(default)]
    filter: SegmentFilter,
}

async fn save_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<SaveBody>,
) -> ApiResult {
    let id = ops::save(
        &state.ops,
        &caller.actor,
        state.now(),
        &body.name,
        body.filter,
    )
    .await?;
    Ok(Json(json!({ "id": id })))
}

async fn preview_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Json(filter): Json<SegmentFilter>,
) -> ApiResult {
    Ok(Json(json!(
        ops::preview(&state.ops, state.now(), filter).await?
    )))
}

async fn detail_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let segment = ops::get(&state.ops, id).await?;
    let preview = ops::preview_saved(&state.ops, state.now(), id).await?;
    Ok(Json(json!({ "segment": segment, "preview": preview })))
}

#[derive(Deserialize)]
struct PushBody {
    text: String,
}

async fn push_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    Json(body): Json<PushBody>,
) -> ApiResult {
    let pushed = ops::push(&state.ops, &caller.actor, state.now(), id, &body.text).await?;
    Ok(Json(json!(pushed)))
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<String>,
}

async fn add_tags_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(user_id): Path<String>,
    Json(body): Json<TagsBody>,
) -> ApiResult {
    let added =
        member_tags::add(&state.ops, &caller.actor, state.now(), &user_id, &body.tags).await?;
    Ok(Json(json!({ "user_id": user_id, "added": added })))
}

async fn remove_tags_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(user_id): Path<String>,
    Json(body): Json<TagsBody>,
) -> ApiResult {
    let removed =
        member_tags::remove(&state.ops, &caller.actor, state.now(), &user_id, &body.tags).await?;
    Ok(Json(json!({ "user_id": user_id, "removed": removed })))
}

async fn rfm_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "members": crate::ops::orders::rfm_table(&state.ops).await? }),
    ))
}
