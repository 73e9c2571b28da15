//! The JSON API for integrations: the console's operations behind bearer
//! tokens (`Authorization: Bearer qy_…`), with the token owner's role.
//! No cookies are read here, so no CSRF token is needed.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::ApiCaller;
use super::{AdminError, AdminState};
use crate::ops::chats::TagChange;
use crate::ops::queues::ItemAction;
use crate::ops::rules::Applied;
use crate::ops::{self, OpsError};

/// An [`AdminError`] answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub AdminError);

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        ApiError(error)
    }
}

impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> Self {
        ApiError(error.into())
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
        .route("/admin/api/v1/tokens", post(create_token))
        .route("/admin/api/v1/users/{username}/disable", post(disable_user))
        .route("/admin/api/v1/users/{username}/enable", post(enable_user))
        .route(
            "/admin/api/v1/users/{username}/password",
            post(reset_password),
        )
        .route(
            "/admin/api/v1/users/{username}/end-sessions",
            post(end_sessions),
        )
        .route("/admin/api/v1/dashboard", get(dashboard))
        .route("/admin/api/v1/analytics/daily", get(analytics_daily))
        .route("/admin/api/v1/chats", get(chats))
        .route("/admin/api/v1/chats/{chat_id}", get(chat))
        .route("/admin/api/v1/chats/{chat_id}/route", post(set_chat_route))
        .route(
            "/admin/api/v1/chats/{chat_id}/tags",
            post(|state, caller, path, body| {
                change_chat_tags(state, caller, path, body, TagChange::Add)
            }),
        )
        .route(
            "/admin/api/v1/chats/{chat_id}/untag",
            post(|state, caller, path, body| {
                change_chat_tags(state, caller, path, body, TagChange::Remove)
            }),
        )
        .route("/admin/api/v1/broadcasts", post(broadcast))
        .route("/admin/api/v1/members", get(members))
        .route("/admin/api/v1/members/{user_id}", get(member))
        .route(
            "/admin/api/v1/members/{user_id}/points",
            post(adjust_points),
        )
        .route("/admin/api/v1/essence", post(mark_essence))
        .route("/admin/api/v1/rules", get(rules).post(apply_rules))
        .route("/admin/api/v1/rules/versions", get(rule_versions))
        .route(
            "/admin/api/v1/rules/versions/{version}/rollback",
            post(rollback_rules),
        )
        .route("/admin/api/v1/redemptions", get(redemptions))
        .route(
            "/admin/api/v1/redemptions/{id}/fulfil",
            post(|state, caller, id| item_action(state, caller, id, ItemAction::FulfilRedemption)),
        )
        .route(
            "/admin/api/v1/redemptions/{id}/cancel",
            post(cancel_redemption),
        )
        .route("/admin/api/v1/parked", get(parked))
        .route(
            "/admin/api/v1/parked/{id}/retry",
            post(|state, caller, id| item_action(state, caller, id, ItemAction::RetryParked)),
        )
        .route("/admin/api/v1/dead-letters", get(dead_letters))
        .route(
            "/admin/api/v1/outbox/{id}/retry",
            post(|state, caller, id| item_action(state, caller, id, ItemAction::RetryOutbox)),
        )
        .route(
            "/admin/api/v1/outbox/retry-uncertain",
            post(retry_uncertain),
        )
        .route("/admin/api/v1/audit", get(audit))
        .route("/admin/api/v1/welcome", get(welcome))
        .route(
            "/admin/api/v1/welcome/digests/{id}/send-to-owner",
            post(send_digest_to_owner),
        )
}

#[derive(Deserialize)]
struct NewToken {
    username: String,
    label: String,
    /// Days until the token stops working; never when absent.
    expires_in_days: Option<u32>,
}

/// Owners only: `{"token": "qy_…"}`, shown once.
async fn create_token(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<NewToken>,
) -> ApiResult {
    let token = ops::accounts::create_token_expiring(
        &state.ops,
        &caller.actor,
        state.now(),
        &body.username,
        &body.label,
        body.expires_in_days,
    )
    .await?;
    Ok(Json(json!({ "token": token })))
}

async fn disable_user(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(username): Path<String>,
) -> ApiResult {
    ops::accounts::set_disabled(&state.ops, &caller.actor, state.now(), &username, true).await?;
    Ok(Json(json!({ "username": username, "disabled": true })))
}

async fn enable_user(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(username): Path<String>,
) -> ApiResult {
    ops::accounts::set_disabled(&state.ops, &caller.actor, state.now(), &username, false).await?;
    Ok(Json(json!({ "username": username, "disabled": false })))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// Owners only: a new password; the account's sessions end.
async fn reset_password(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(username): Path<String>,
    Json(body): Json<NewPassword>,
) -> ApiResult {
    ops::accounts::reset_password(
        &state.ops,
        &caller.actor,
        state.now(),
        &username,
        &body.password,
    )
    .await?;
    Ok(Json(json!({ "username": username })))
}

async fn end_sessions(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(username): Path<String>,
) -> ApiResult {
    let ended =
        ops::accounts::end_sessions(&state.ops, &caller.actor, state.now(), &username).await?;
    Ok(Json(
        json!({ "username": username, "sessions_ended": ended }),
    ))
}

async fn dashboard(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let data = ops::dashboard::dashboard(&state.ops, state.now()).await?;
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
    let days = query.days.unwrap_or(30).clamp(1, 366);
    let chat = query.chat_id.unwrap_or_default();
    let rows = ops::dashboard::daily(&state.ops, state.now(), &chat, days).await?;
    Ok(Json(json!({ "chat_id": chat, "days": rows })))
}

async fn chats(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let chats = ops::chats::list(&state.ops, state.now()).await?;
    Ok(Json(json!({ "chats": chats })))
}

async fn chat(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(chat_id): Path<String>,
) -> ApiResult {
    let detail = ops::chats::show(&state.ops, &chat_id).await?;
    Ok(Json(json!(detail)))
}

/// `{"robot_key": "…"}`, `{"smart_bot": "…"}`, `{"no_robot": true}`…
async fn set_chat_route(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(chat_id): Path<String>,
    Json(change): Json<ops::chats::RouteChange>,
) -> ApiResult {
    ops::chats::set_route(&state.ops, &caller.actor, state.now(), &chat_id, &change).await?;
    let detail = ops::chats::show(&state.ops, &chat_id).await?;
    Ok(Json(json!(detail)))
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<String>,
}

async fn change_chat_tags(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(chat_id): Path<String>,
    Json(body): Json<TagsBody>,
    change: TagChange,
) -> ApiResult {
    let now = state.now();
    let tags =
        ops::chats::change_tags(&state.ops, &caller.actor, now, &chat_id, change, &body.tags)
            .await?;
    Ok(Json(json!({ "chat_id": chat_id, "tags": tags })))
}

/// `{"chats": […], "tags": […], "text": "…", "markdown": false}`; answers each chat's outcome.
/// An `Idempotency-Key` header makes a repeat answer the first result and queue nothing.
async fn broadcast(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    Json(mut input): Json<ops::broadcast::BroadcastInput>,
) -> ApiResult {
    input.request_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ops::OpsError::invalid("idempotency_key", "the header is not visible ASCII")
                })?
                .to_owned(),
        ),
    };
    let sent = ops::broadcast::send(&state.ops, &caller.actor, state.now(), &input).await?;
    Ok(Json(json!(sent)))
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
    let members = ops::members::search(&state.ops, &search.q, 1000).await?;
    Ok(Json(json!({ "members": members })))
}

async fn member(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(user_id): Path<String>,
) -> ApiResult {
    let profile = ops::members::profile(&state.ops, state.now(), &user_id).await?;
    Ok(Json(json!(profile)))
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
    let balance = ops::points::adjust(
        &state.ops,
        &caller.actor,
        state.now(),
        &user_id,
        body.delta,
        &body.reason,
    )
    .await?;
    Ok(Json(json!({ "user_id": user_id, "balance": balance })))
}

#[derive(Deserialize)]
struct Essence {
    message_id: String,
}

/// Marks a remembered group message 精华; a second call pays nothing.
async fn mark_essence(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<Essence>,
) -> ApiResult {
    let outcome =
        ops::honour::mark_essence(&state.ops, &caller.actor, state.now(), &body.message_id).await?;
    Ok(Json(json!(outcome)))
}

async fn rules(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let active = ops::rules::active(&state.ops).await?;
    Ok(Json(
        json!({ "version": active.version, "body": active.body }),
    ))
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
    Ok(
        match ops::rules::apply(&state.ops, &caller.actor, state.now(), &body.body).await? {
            Applied::Version(version) => Json(json!({ "version": version })).into_response(),
            Applied::Invalid(problems) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "invalid rule set", "problems": problems })),
            )
                .into_response(),
        },
    )
}

async fn rule_versions(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let versions: Vec<Value> = ops::rules::versions(&state.ops)
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
    let new_version = ops::rules::rollback(&state.ops, &caller.actor, state.now(), version).await?;
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
    let rows: Vec<Value> = ops::queues::redemptions(&state.ops, query.status.as_deref())
        .await?
        .into_iter()
        .map(|r| {
            json!({ "id": r.id, "user_id": r.user_id, "item": r.item, "cost": r.cost,
                    "status": r.status, "created_at": r.created_at })
        })
        .collect();
    Ok(Json(json!({ "redemptions": rows })))
}

#[derive(Deserialize, Default)]
struct CancelBody {
    #[serde(default)]
    reason: String,
}

async fn cancel_redemption(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    body: Option<Json<CancelBody>>,
) -> ApiResult {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let refunded =
        ops::redemptions::cancel(&state.ops, &caller.actor, state.now(), id, &reason).await?;
    Ok(Json(
        json!({ "id": id, "status": "cancelled", "refunded": refunded }),
    ))
}

async fn parked(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "parked": ops::queues::parked_events(&state.ops).await? }),
    ))
}

async fn audit(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "entries": ops::audit::recent(&state.ops, None, 500).await? }),
    ))
}

async fn dead_letters(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    Ok(Json(
        json!({ "dead_letters": ops::queues::dead_letters(&state.ops).await? }),
    ))
}

async fn retry_uncertain(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
) -> ApiResult {
    let requeued = ops::queues::retry_uncertain(&state.ops, &caller.actor, state.now()).await?;
    Ok(Json(json!({ "requeued": requeued })))
}

/// The group welcome material (template id, in sync) and recent owner digests.
async fn welcome(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let material = ops::welcome::material(&state.ops).await?;
    let digests = ops::welcome::digests(&state.ops, 50).await?;
    Ok(Json(json!({ "material": material, "digests": digests })))
}

async fn send_digest_to_owner(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let sent = ops::welcome::send_to_owner(&state.ops, &caller.actor, state.now(), id).await?;
    Ok(Json(json!(sent)))
}

async fn item_action(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    action: ItemAction,
) -> ApiResult {
    action
        .apply(&state.ops, &caller.actor, state.now(), id)
        .await?;
    Ok(Json(json!({ "id": id, "status": action.status_after() })))
}
