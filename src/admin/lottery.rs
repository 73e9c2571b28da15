//! Lotteries in the console (`/admin/lotteries…`: the list with a create
//! form, each lottery's page with its commitment, revealed seed, entrant
//! download, winners and verification) and under `/admin/api/v1/lotteries…`.
//! Handlers only check the caller and call [`ops::lottery`](crate::ops::lottery).
//! The seed is never shown or returned before the draw.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::ApiError;
use super::auth::{ApiCaller, Manager, Role};
use super::views::Frame;
use super::{AdminError, AdminState};
use crate::ops::lottery::{self as ops, parse_prize, LotteryInput, LotteryView};
use crate::ops::{segments, OpsError};
use crate::rules::lottery::{entrants_file, Eligibility};
use crate::rules::segment_limit::SegmentRef;
use crate::store::lottery::Lottery;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/lotteries", get(list_page).post(create_form))
        .route("/admin/lotteries/{id}", get(detail_page))
        .route("/admin/lotteries/{id}/entrants.txt", get(entrants_download))
        .route(
            "/admin/lotteries/{id}/draw",
            post(|s, m, id, f| action_form(s, m, id, f, LotteryAction::Draw)),
        )
        .route(
            "/admin/lotteries/{id}/cancel",
            post(|s, m, id, f| action_form(s, m, id, f, LotteryAction::Cancel)),
        )
        .route("/admin/api/v1/lotteries", get(list_api).post(create_api))
        .route("/admin/api/v1/lotteries/{id}", get(detail_api))
        .route("/admin/api/v1/lotteries/{id}/entrants", get(entrants_api))
        .route("/admin/api/v1/lotteries/{id}/draw", post(draw_api))
        .route("/admin/api/v1/lotteries/{id}/cancel", post(cancel_api))
}

/// A lottery as pages and the API show it: the seed only once drawn.
fn lottery_json(l: &Lottery) -> Value {
    json!({
        "id": l.id,
        "title": l.title,
        "status": l.status,
        "chats": l.chats,
        "tags": l.tags,
        "keyword": l.keyword,
        "eligibility": l.eligibility,
        "segment": l.eligibility.segment.as_ref().map(SegmentRef::label),
        "draw_at": l.draw_at.to_rfc3339(),
        "commitment": l.commitment,
        "seed": l.revealed_seed(),
        "entrants_digest": l.entrants_digest,
        "prizes": l.prizes.iter().map(|p| json!({
            "name": p.name, "points": p.points, "item": p.item, "winners": p.winners,
        })).collect::<Vec<_>>(),
    })
}

fn view_json(view: &LotteryView) -> Value {
    let winners: Vec<Value> = view
        .winners
        .iter()
        .map(|w| {
            let prize = usize::try_from(w.prize_position)
                .ok()
                .and_then(|i| view.lottery.prizes.get(i));
            json!({
                "user_id": w.user_id,
                "rank": w.draw_position + 1,
                "prize": prize.map(|p| p.name.clone()),
                "outcome": w.outcome,
            })
        })
        .collect();
    let count: usize = view.lottery.prizes.iter().map(|p| p.winners as usize).sum();
    let verify_command = view.seed().map(|seed| {
        format!(
            "qunyun lottery verify {} --seed {seed} --entrants entrants.txt --commitment {} --winners {count}",
            view.lottery.id, view.lottery.commitment
        )
    });
    json!({
        "lottery": lottery_json(&view.lottery),
        "entrants": view.entrants,
        "winners": winners,
        "verified": view.verification.as_ref().map(|v| v.is_ok()),
        "verification_error": view.verification.as_ref().and_then(|v| v.as_ref().err()),
        "verify_command": verify_command,
    })
}

// --- pages --------------------------------------------------------------------

async fn list_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let frame = Frame::new(&headers, Some(&manager), "lotteries");
    let lotteries: Vec<Value> = ops::list(&state.ops)
        .await?
        .iter()
        .map(lottery_json)
        .collect();
    state.views().page(
        "lotteries.html",
        &frame,
        json!({ "lotteries": lotteries, "segments": segments::list(&state.ops).await? }),
    )
}

async fn detail_page(
    State(state): State<AdminState>,
    manager: Manager,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    let frame = Frame::new(&headers, Some(&manager), "lotteries");
    let view = ops::show(&state.ops, id).await?;
    state
        .views()
        .page("lottery.html", &frame, json!({ "d": view_json(&view) }))
}

/// The entrant file `qunyun lottery verify --entrants` reads.
async fn entrants_download(
    State(state): State<AdminState>,
    _manager: Manager,
    Path(id): Path<i64>,
) -> Result<Response, AdminError> {
    entrants_response(&state, id).await
}

async fn entrants_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    Ok(entrants_response(&state, id).await?)
}

async fn entrants_response(state: &AdminState, id: i64) -> Result<Response, AdminError> {
    let view = ops::show(&state.ops, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"lottery-{id}-entrants.txt\""),
            ),
        ],
        entrants_file(&view.entrants),
    )
        .into_response())
}

/// The create form (and the API's body): prizes one per line.
#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    title: String,
    #[serde(default)]
    chats: String,
    #[serde(default)]
    tags: String,
    /// Blank: automatic entry for every eligible member.
    #[serde(default)]
    keyword: String,
    draw_at: String,
    prizes: String,
    #[serde(default)]
    checked_in_today: Option<String>,
    #[serde(default)]
    min_level: String,
    #[serde(default)]
    joined_before: String,
    #[serde(default)]
    entry_cost: String,
    /// A saved segment's id (blank: no segment).
    #[serde(default)]
    segment_id: String,
}

fn list_of(text: &str) -> Vec<String> {
    text.split([',', '，', '\n', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// RFC 3339, or `YYYY-MM-DDTHH:MM` (a datetime-local field) read as UTC.
fn time_of(field: &'static str, text: &str) -> Result<Option<DateTime<Utc>>, OpsError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .map(|at| Some(at.and_utc()))
        .map_err(|_| OpsError::invalid(field, "a time like 2026-12-08T12:00:00Z"))
}

fn number_of<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<Option<T>, OpsError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| OpsError::invalid(field, "a whole number"))
}

impl CreateForm {
    fn input(&self) -> Result<LotteryInput, OpsError> {
        Ok(LotteryInput {
            title: self.title.clone(),
            chats: list_of(&self.chats),
            tags: list_of(&self.tags),
            keyword: Some(self.keyword.trim().to_owned()).filter(|k| !k.is_empty()),
            eligibility: Eligibility {
                checked_in_today: self.checked_in_today.is_some(),
                min_level: number_of("min_level", &self.min_level)?,
                joined_before: time_of("joined_before", &self.joined_before)?,
                entry_cost: number_of("entry_cost", &self.entry_cost)?.unwrap_or(0),
                segment: number_of("segment_id", &self.segment_id)?.map(SegmentRef::id),
            },
            draw_at: time_of("draw_at", &self.draw_at)?
                .ok_or_else(|| OpsError::invalid("draw_at", "required"))?,
            prizes: self
                .prizes
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(parse_prize)
                .collect::<Result<_, _>>()?,
        })
    }
}

async fn create_form(
    State(state): State<AdminState>,
    manager: Manager,
    Form(form): Form<CreateForm>,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let created = ops::create(&state.ops, &manager.actor, state.now(), &form.input()?).await?;
    Ok(Redirect::to(&format!("/admin/lotteries/{}", created.id)).into_response())
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// A button on a lottery's page; both carry the same [`ActionForm`].
#[derive(Clone, Copy)]
enum LotteryAction {
    Draw,
    Cancel,
}

/// Draws or cancels lottery `id`, then goes back to its page.
async fn action_form(
    State(state): State<AdminState>,
    manager: Manager,
    Path(id): Path<i64>,
    Form(form): Form<ActionForm>,
    action: LotteryAction,
) -> Result<Response, AdminError> {
    manager.authorize_form(Role::Operator, &form.csrf)?;
    let (actor, now) = (&manager.actor, state.now());
    match action {
        LotteryAction::Draw => {
            ops::draw(&state.ops, actor, now, id).await?;
        }
        LotteryAction::Cancel => {
            ops::cancel(&state.ops, actor, now, id, &form.reason).await?;
        }
    }
    Ok(Redirect::to(&format!("/admin/lotteries/{id}")).into_response())
}

// --- JSON API -----------------------------------------------------------------

type ApiResult = Result<Json<Value>, ApiError>;

async fn list_api(State(state): State<AdminState>, _caller: ApiCaller) -> ApiResult {
    let lotteries: Vec<Value> = ops::list(&state.ops)
        .await?
        .iter()
        .map(lottery_json)
        .collect();
    Ok(Json(json!({ "lotteries": lotteries })))
}

async fn detail_api(
    State(state): State<AdminState>,
    _caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(Json(view_json(&ops::show(&state.ops, id).await?)))
}

async fn create_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Json(body): Json<CreateForm>,
) -> ApiResult {
    let created = ops::create(&state.ops, &caller.actor, state.now(), &body.input()?).await?;
    Ok(Json(json!({
        "id": created.id,
        "commitment": created.commitment,
        "announced": created.announced,
    })))
}

async fn draw_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    ops::draw(&state.ops, &caller.actor, state.now(), id).await?;
    Ok(Json(view_json(&ops::show(&state.ops, id).await?)))
}

#[derive(Deserialize, Default)]
struct CancelBody {
    #[serde(default)]
    reason: String,
}

async fn cancel_api(
    State(state): State<AdminState>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<i64>,
    body: Option<Json<CancelBody>>,
) -> ApiResult {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let refunded = ops::cancel(&state.ops, &caller.actor, state.now(), id, &reason).await?;
    Ok(Json(json!({ "id": id, "refunded": refunded })))
}
