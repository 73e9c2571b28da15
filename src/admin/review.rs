//! Review in tiers in the console (a section of `/admin/moderation`) and the
//! JSON API (`/admin/api/v1/moderation/review…`). Handlers only check the
//! caller and call [`ops::review`](crate::ops::review).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::api::ApiError;
use super::auth::{ApiCaller, Manager, Role};
use super::{AdminError, AdminState};
use crate::ops::review::{self as ops, ReviewDecision};
use crate::ops::OpsError;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/moderation/review/{id}", post(decide_form))
        .route("/admin/api/v1/moderation/review", get(list_api))
        .route("/admin/api/v1/moderation/review/{id}", post(decide_api))
}

fn decision(text: &str) -> Result<ReviewDecision, OpsError> {
    ReviewDecision::parse(text).ok_or_else(|| {
        OpsError::invalid(
            "decision",
            "expected confirm, dismiss, escalate, uphold or overturn",
        )
    })
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    note: String,
}

async fn decide_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<DecideForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let decision = decision(&form.decision)?;
    ops::decide(
        &state.ops,
        &manager.actor,
        state.now(),
        id,
        decision,
        &form.note,
    )
    .await?;
    Ok(Redirect::to("/admin/moderation#review").into_response())
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let items = ops::list(&state.ops, state.now(), query.all).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Deserialize)]
struct DecideBody {
    decision: String,
    #[serde(default)]
    note: String,
}

/// `{"decision": "confirm|dismiss|escalate|uphold|overturn", "note": "…"}`.
async fn decide_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    Json(body): Json<DecideBody>,
) -> Result<Response, ApiError> {
    let decision = decision(&body.decision)?;
    let item = ops::decide(
        &state.ops,
        &caller.actor,
        state.now(),
        id,
        decision,
        &body.note,
    )
    .await?;
    Ok(Json(json!({ "item": item })).into_response())
}
