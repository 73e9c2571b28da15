//! The JSON API for integrations: the console's operations behind bearer
//! tokens (`Authorization: Bearer qy_…`), with the token owner's role.
//! No cookies are read here, so no CSRF token is needed.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::ApiCaller;
use super::ops::{self, Applied};
use super::{AdminError, AdminState};
use crate::store::{self, admin as q};

/// An [`AdminError`] answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub AdminError);

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        ApiError(error)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            // No redirects in an API.
            AdminError::NotSignedIn => StatusCode::UNAUTHORIZED,
            ref other => other.status(),
        };
        (status, Json(json!({ "error": self.0.public_message() }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/api/v1/dashboard", get(dashboard))
        .route("/admin/api/v1/analytics/daily", get(analytics_daily))
        .route("/admin/api/v1/chats", get(chats))
        .route("/admin/api/v1/members", get(members))
        .route("/admin/api/v1/members/{user_id}", get(member))
        .route(
            "/admin/api/v1/members/{user_id}/points",
            post(adjust_points),
        )
        .route("/admin/api/v1/rules", get(rules).post(apply_rules))
        .route("/admin/api/v1/rules/versions", get(rule_versions))
        .route(
            "/admin/api/v1/rules/versions/{version}/rollback",
            post(rollback_rules),
        )
        .route("/admin/api/v1/redemptions", get(redemptions))
        .route(
            "/admin/api/v1/redemptions/{id}/fulfil",
            post(fulfil_redemption),
        )
        .route("/admin/api/v1/parked", get(parked))
        .route("/admin/api/v1/parked/{id}/retry", post(retry_parked))
        .route("/admin/api/v1/dead-letters", get(dead_letters))
        .route("/admin/api/v1/outbox/{id}/retry", post(retry_outbox))
        .route(
            "/admin/api/v1/outbox/retry-uncertain",
            post(retry_uncertain),
        )
        .route("/admin/api/v1/audit", get(audit))
}

async fn dashboard(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let data = ops::dashboard(&state).await?;
    Ok(Json(json!(data)))
}

#[derive(Deserialize)]
struct DailyQuery {
    /// A chat's rows; the community's when absent.
    chat_id: Option<String>,
    /// How many days back from today (1..=366, default 30).
    days: Option<i64>,
}

/// Stored daily rollups of the community or one chat (`jobs::analytics`).
async fn analytics_daily(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Query(query): Query<DailyQuery>,
) -> ApiResult {
    let (_, _, rules) = ops::active_rules(&state).await?;
    let today = crate::rules::checkin::community_day(
        ops::now(&state),
        rules.timezone,
        rules.doc.community.day_cutover_hour,
    );
    let days = query.days.unwrap_or(30).clamp(1, 366);
    let chat = query.chat_id.unwrap_or_default();
    let mut conn = state.pool.acquire().await?;
    let rows =
        store::analytics::daily_rows(&mut conn, &chat, today - chrono::Duration::days(days - 1))
            .await?;
    Ok(Json(json!({ "chat_id": chat, "days": rows })))
}

async fn chats(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    let chats = q::list_chats(&mut conn, ops::now(&state).timestamp()).await?;
    Ok(Json(json!({ "chats": chats })))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn members(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Query(search): Query<SearchQuery>,
) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    let members = q::search_members(&mut conn, search.q.trim(), 1000).await?;
    Ok(Json(json!({ "members": members })))
}

async fn member(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(user_id): Path<String>,
) -> ApiResult {
    Ok(Json(super::pages::member_profile(&state, &user_id).await?))
}

#[derive(Deserialize)]
struct Adjust {
    delta: i64,
    reason: String,
}

async fn adjust_points(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(user_id): Path<String>,
    Json(body): Json<Adjust>,
) -> ApiResult {
    let balance = ops::adjust_points(&state, &caller, &user_id, body.delta, &body.reason).await?;
    Ok(Json(json!({ "user_id": user_id, "balance": balance })))
}

async fn rules(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let (version, body, _) = ops::active_rules(&state).await?;
    Ok(Json(json!({ "version": version, "body": body })))
}

#[derive(Deserialize)]
struct RulesBody {
    body: String,
}

/// Applies a rule set; 422 with every problem (path, reason, line) if invalid.
async fn apply_rules(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<RulesBody>,
) -> Result<Response, ApiError> {
    Ok(match ops::apply_rules(&state, &caller, &body.body).await? {
        Applied::Version(version) => Json(json!({ "version": version })).into_response(),
        Applied::Invalid(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "invalid rule set", "problems": problems })),
        )
            .into_response(),
    })
}

async fn rule_versions(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    let versions: Vec<Value> = store::rule_sets::list_versions(&mut conn)
        .await?
        .into_iter()
        .map(|(version, at)| json!({ "version": version, "created_at": at }))
        .collect();
    Ok(Json(json!({ "versions": versions })))
}

async fn rollback_rules(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(version): Path<i64>,
) -> ApiResult {
    let new_version = ops::rollback_rules(&state, &caller, version).await?;
    Ok(Json(json!({ "version": new_version })))
}

#[derive(Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

async fn redemptions(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Query(query): Query<StatusQuery>,
) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    let rows: Vec<Value> = store::redemptions::list(&mut conn, query.status.as_deref())
        .await?
        .into_iter()
        .map(|r| {
            json!({ "id": r.id, "user_id": r.user_id, "item": r.item, "cost": r.cost,
                    "status": r.status, "created_at": r.created_at })
        })
        .collect();
    Ok(Json(json!({ "redemptions": rows })))
}

async fn fulfil_redemption(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    ops::fulfil_redemption(&state, &caller, id).await?;
    Ok(Json(json!({ "id": id, "status": "fulfilled" })))
}

async fn parked(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        json!({ "parked": q::parked_events(&mut conn).await? }),
    ))
}

async fn retry_parked(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    ops::retry_parked(&state, &caller, id).await?;
    Ok(Json(json!({ "id": id, "status": "pending" })))
}

async fn audit(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        json!({ "entries": q::recent_audit(&mut conn, None, 500).await? }),
    ))
}

async fn dead_letters(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "dead_letters": ops::dead_letters(&state).await? }),
    ))
}

async fn retry_uncertain(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
) -> ApiResult {
    let requeued = ops::retry_uncertain(&state, &caller).await?;
    Ok(Json(json!({ "requeued": requeued })))
}

async fn retry_outbox(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    ops::retry_outbox(&state, &caller, id).await?;
    Ok(Json(json!({ "id": id, "status": "pending" })))
}
