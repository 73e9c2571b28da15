//! `/sim/*`: the simulator's own JSON control surface (records, seeding,
//! faults, owner confirmations, the callback driver).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::driver::{
    AddContactRequest, AppTextRequest, ArchiveTextRequest, BotMentionRequest, CallbackTargets,
    DriveError, DriveOutcome, JoinRequest, LeaveRequest, RawRequest, VerifyRequest,
};
use super::faults::FaultRequest;
use super::model::SeedState;
use super::scenario::Step;
use super::Sim;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route("/sim/messages", get(messages))
        .route("/sim/dropped", get(dropped))
        .route("/sim/calls", get(calls))
        .route("/sim/stats", get(stats))
        .route("/sim/reset", post(reset))
        .route("/sim/state", get(dump_state).post(seed_state))
        .route("/sim/faults", post(faults))
        .route("/sim/confirm_mass/{msgid}", post(confirm_mass))
        .route("/sim/callbacks", post(set_callbacks))
        .route("/sim/drive/join", post(drive_join))
        .route("/sim/drive/leave", post(drive_leave))
        .route("/sim/drive/add_contact", post(drive_add_contact))
        .route("/sim/drive/app_text", post(drive_app_text))
        .route("/sim/drive/bot_mention", post(drive_bot_mention))
        .route("/sim/drive/archive_text", post(drive_archive_text))
        .route("/sim/drive/verify_url", post(drive_verify_url))
        .route("/sim/drive/raw", post(drive_raw))
        .route("/sim/drive/card_click", post(drive_card_click))
        .route("/sim/drive/steps", post(drive_steps))
}

async fn messages(State(sim): State<Sim>) -> Response {
    Json(sim.messages()).into_response()
}

async fn dropped(State(sim): State<Sim>) -> Response {
    Json(sim.dropped()).into_response()
}

async fn calls(State(sim): State<Sim>) -> Response {
    Json(sim.calls()).into_response()
}

async fn stats(State(sim): State<Sim>) -> Response {
    Json(sim.stats()).into_response()
}

async fn reset(State(sim): State<Sim>) -> Response {
    sim.reset();
    Json(json!({"reset": true})).into_response()
}

async fn seed_state(State(sim): State<Sim>, Json(seed): Json<SeedState>) -> Response {
    match sim.seed(seed) {
        Ok(()) => Json(json!({"seeded": true})).into_response(),
        Err(refusal) => (
            StatusCode::CONFLICT,
            Json(json!({"seeded": false, "error": refusal.to_string()})),
        )
            .into_response(),
    }
}

async fn dump_state(State(sim): State<Sim>) -> Response {
    let state = sim.state();
    let groups: Vec<_> = state.customer_groups.values().map(|g| g.view()).collect();
    let chats: Vec<_> = state.app_chats.values().map(|c| c.view()).collect();
    let mut robots: Vec<_> = state
        .robots
        .iter()
        .map(|(key, robot)| json!({"key": key, "chat_id": robot.chat_id, "name": robot.name}))
        .collect();
    robots.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    let body = json!({
        "members": state.directory,
        "customer_groups": groups,
        "app_chats": chats,
        "robots": robots,
        "group_welcome_templates": state.welcome_templates,
        "customer_tag_groups": state.tag_groups,
        "contact_tags": state
            .contacts
            .keys()
            .map(|ext| (ext.clone(), json!(state.contact_tag_names(ext))))
            .collect::<serde_json::Map<String, Value>>(),
    });
    drop(state);
    Json(body).into_response()
}

/// `POST /sim/faults`: `{"clear": bool, "rules": [...], "random": {...}}`. Rule
/// kinds: `errcode` (e.g. 48002 on `externalcontact/`), `untrusted_ip` (60020
/// naming `ip`), `reply` (`body` verbatim), `http500`, `hang`, `slow`.
async fn faults(State(sim): State<Sim>, Json(request): Json<FaultRequest>) -> Response {
    sim.apply_faults(request);
    Json(json!({"ok": true})).into_response()
}

async fn confirm_mass(State(sim): State<Sim>, Path(msgid): Path<String>) -> Response {
    if sim.confirm_mass(&msgid) {
        Json(json!({"confirmed": true})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"confirmed": false, "error": "unknown or already confirmed msgid"})),
        )
            .into_response()
    }
}

async fn set_callbacks(State(sim): State<Sim>, Json(targets): Json<CallbackTargets>) -> Response {
    sim.set_callbacks(targets);
    Json(json!({"ok": true})).into_response()
}

fn drive_response(result: Result<DriveOutcome, DriveError>) -> Response {
    match result {
        Ok(outcome) => Json(outcome).into_response(),
        Err(error) => {
            let status = match error {
                DriveError::Http(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Json(json!({"error": error.to_string()}))).into_response()
        }
    }
}

async fn drive_join(State(sim): State<Sim>, Json(request): Json<JoinRequest>) -> Response {
    drive_response(sim.drive_join(request).await)
}

async fn drive_leave(State(sim): State<Sim>, Json(request): Json<LeaveRequest>) -> Response {
    drive_response(sim.drive_leave(request).await)
}

async fn drive_add_contact(
    State(sim): State<Sim>,
    Json(request): Json<AddContactRequest>,
) -> Response {
    drive_response(sim.drive_add_contact(request).await)
}

async fn drive_app_text(State(sim): State<Sim>, Json(request): Json<AppTextRequest>) -> Response {
    drive_response(sim.drive_app_text(request).await)
}

async fn drive_bot_mention(
    State(sim): State<Sim>,
    Json(request): Json<BotMentionRequest>,
) -> Response {
    drive_response(sim.drive_bot_mention(request).await)
}

async fn drive_card_click(
    State(sim): State<Sim>,
    Json(request): Json<super::driver::CardClickRequest>,
) -> Response {
    drive_response(sim.drive_card_click(request).await)
}

async fn drive_archive_text(
    State(sim): State<Sim>,
    Json(request): Json<ArchiveTextRequest>,
) -> Response {
    drive_response(sim.drive_archive_text(request).await)
}

async fn drive_verify_url(State(sim): State<Sim>, Json(request): Json<VerifyRequest>) -> Response {
    drive_response(sim.drive_verify_url(request).await)
}

async fn drive_raw(State(sim): State<Sim>, Json(request): Json<RawRequest>) -> Response {
    drive_response(sim.drive_raw(request).await)
}

async fn drive_steps(State(sim): State<Sim>, Json(steps): Json<Vec<Step>>) -> Response {
    Json(sim.run_steps(&steps).await).into_response()
}
