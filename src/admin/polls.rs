//! Polls in the console (`/admin/polls…`: the list with a create form, each
//! poll's page with live results and "close now") and the same under
//! `/admin/api/v1/polls…`. Handlers only check the caller and call
//! [`ops::polls`](crate::ops::polls).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::ApiError;
use super::auth::{ApiCaller, Manager, Role};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::ops::polls as ops;
use crate::ops::{segments, OpsError};
use crate::rules::polls::PollSpec;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/polls", get(list_page).post(create_form))
        .route("/admin/polls/{id}", get(detail_page))
        .route("/admin/polls/{id}/close", post(close_form))
        .route("/admin/api/v1/polls", get(list_api).post(create_api))
        .route("/admin/api/v1/polls/{id}", get(detail_api))
        .route("/admin/api/v1/polls/{id}/close", post(close_api))
}

// --- pages --------------------------------------------------------------------

async fn list_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    render_list(&state, &manager, &headers, None, None).await
}

async fn render_list(
    state: &AdminState,
    manager: &Manager,
    headers: &HeaderMap,
    error: Option<String>,
    form: Option<&PollForm>,
) -> Result<Response, AdminError> {
    let frame = Frame::new(headers, Some(manager), "polls");
    let polls = ops::list(&state.ops, &manager.actor).await?;
    state.views().page(
        "polls.html",
        &frame,
        json!({
            "polls": polls, "error": error, "form": form,
            "segments": segments::list(&state.ops).await?,
        }),
    )
}

/// The create form: options one per line, chats and tags comma-separated,
/// opening in N minutes (0: now) for H hours.
#[derive(Debug, Deserialize, serde::Serialize)]
struct PollForm {
    #[serde(default)]
    csrf: String,
    question: String,
    options: String,
    #[serde(default)]
    chats: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    multiple: Option<String>,
    #[serde(default)]
    allow_change: Option<String>,
    #[serde(default)]
    open_in_minutes: String,
    hours: String,
    #[serde(default)]
    points: String,
    #[serde(default)]
    points_cap: String,
    /// A saved segment's id (blank: no segment).
    #[serde(default)]
    segment_id: String,
}

fn number(field: &'static str, text: &str) -> Result<i64, OpsError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| OpsError::invalid(field, "must be a whole number"))
}

impl PollForm {
    fn spec(&self, now: DateTime<Utc>) -> Result<PollSpec, OpsError> {
        let split = |text: &str| -> Vec<String> {
            text.split([',', '，'])
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        };
        let open_at = now + Duration::minutes(number("open_in_minutes", &self.open_in_minutes)?);
        let hours = number("hours", &self.hours)?;
        if hours <= 0 {
            return Err(OpsError::invalid("hours", "must be at least 1"));
        }
        Ok(PollSpec {
            question: self.question.clone(),
            options: self.options.lines().map(str::to_owned).collect(),
            multiple: self.multiple.is_some(),
            open_at,
            close_at: open_at + Duration::hours(hours),
            chats: split(&self.chats),
            tags: split(&self.tags),
            allow_change: self.allow_change.is_some(),
            points_per_vote: number("points", &self.points)?,
            points_cap: number("points_cap", &self.points_cap)?,
            segment_id: Some(number("segment_id", &self.segment_id)?).filter(|id| *id != 0),
        })
    }
}

async fn create_form(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Form(form): Form<PollForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let now = state.now();
    let created = match form.spec(now) {
        Ok(spec) => ops::create(&state.ops, &manager.actor, now, spec).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(id) => Ok(Redirect::to(&format!("/admin/polls/{id}")).into_response()),
        // A mistake in the form: shown above the form, which keeps what was typed.
        Err(error @ OpsError::Invalid { .. }) => {
            render_list(
                &state,
                &manager,
                &headers,
                Some(error.to_string()),
                Some(&form),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

async fn detail_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    let frame = Frame::new(&headers, Some(&manager), "polls");
    let results = ops::show(&state.ops, &manager.actor, id).await?;
    let rows: Vec<Value> = results
        .poll
        .options
        .iter()
        .enumerate()
        .map(|(i, option)| {
            let count = results.counts.get(i).copied().unwrap_or(0);
            let share = (count as usize * 100)
                .checked_div(results.voters)
                .unwrap_or(0);
            json!({ "n": i + 1, "text": option, "count": count, "share": share })
        })
        .collect();
    state
        .views()
        .page("poll.html", &frame, json!({ "r": results, "rows": rows }))
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn close_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    ops::close(&state.ops, &manager.actor, state.now(), id).await?;
    Ok(Redirect::to(&format!("/admin/polls/{id}")).into_response())
}

// --- JSON API -----------------------------------------------------------------

type ApiResult = Result<Json<Value>, ApiError>;

async fn list_api(State(state): State<AdminState>, ApiCaller(caller): ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "polls": ops::list(&state.ops, &caller.actor).await? }),
    ))
}

/// A [`PollSpec`] as JSON (`open_at`/`close_at` RFC 3339); answers `{"id": N}`.
async fn create_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(spec): Json<PollSpec>,
) -> ApiResult {
    let id = ops::create(&state.ops, &caller.actor, state.now(), spec).await?;
    Ok(Json(json!({ "id": id })))
}

async fn detail_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(Json(json!(ops::show(&state.ops, &caller.actor, id).await?)))
}

async fn close_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    ops::close(&state.ops, &caller.actor, state.now(), id).await?;
    Ok(Json(json!({ "id": id, "closing": true })))
}
