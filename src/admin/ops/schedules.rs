//! Scheduled pushes as the console sees and steers them: next fires in the
//! schedule's timezone, run history per chat, the A/B report, and pause,
//! resume, run now and preview. Pages and the JSON API both call these.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::now;
use crate::admin::auth::{Manager, Role};
use crate::admin::{AdminError, AdminState};
use crate::jobs::scheduler::{self, Preview, RunReport};
use crate::rules::schedule::{next_fires, ValidSchedule};
use crate::store::schedules::{self as q, RunKind, VariantFollowUp};
use crate::store::{self, admin as audit};

/// How many upcoming fires the console lists per schedule.
const NEXT_FIRES: usize = 3;
/// Runs shown on a schedule's page.
const RUN_HISTORY: i64 = 20;
/// Chats rendered by one preview (each is a full render; a push to thousands
/// of chats is previewed by its first ones).
const PREVIEW_CHATS: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    pub at: i64,
    /// In the schedule's (community) timezone, e.g. `2025-03-10 09:00 CST`.
    pub local: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: i64,
    pub fire_at: i64,
    pub local: String,
    pub kind: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub paused: bool,
    pub variants: Vec<String>,
    pub next_fires: Vec<Fire>,
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleDetail {
    pub schedule: ScheduleRow,
    pub runs: Vec<RunReport>,
    pub variants: Vec<VariantFollowUp>,
}

/// A preview of the first [`PREVIEW_CHATS`] target chats.
#[derive(Debug, Clone, Serialize)]
pub struct Previews {
    /// How many chats the schedule targets in all.
    pub targets: usize,
    pub chats: Vec<ChatPreview>,
}

/// One target chat's preview (or why it could not be rendered).
#[derive(Debug, Clone, Serialize)]
pub struct ChatPreview {
    pub chat_id: String,
    pub chat_name: String,
    pub preview: Option<Preview>,
    pub error: Option<String>,
}

pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn local_secs(secs: i64, tz: Tz) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|at| local_time(at, tz))
        .unwrap_or_default()
}

async fn active_schedules(state: &AdminState) -> Result<Vec<ValidSchedule>, AdminError> {
    Ok(scheduler::load_schedules(&state.pool).await?.1)
}

async fn find(state: &AdminState, name: &str) -> Result<ValidSchedule, AdminError> {
    active_schedules(state)
        .await?
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or(AdminError::NotFound)
}

async fn row(state: &AdminState, schedule: &ValidSchedule) -> Result<ScheduleRow, AdminError> {
    let tz = schedule.timezone();
    let mut conn = state.pool.acquire().await?;
    let paused = q::state(&mut conn, schedule.name())
        .await?
        .is_some_and(|s| s.paused);
    let last_run = q::list_runs(&mut conn, Some(schedule.name()), 1)
        .await?
        .into_iter()
        .next()
        .map(|run| LastRun {
            run_id: run.id,
            fire_at: run.fire_at,
            local: local_secs(run.fire_at, tz),
            kind: run.kind.as_str().to_owned(),
            status: run.status.as_str().to_owned(),
        });
    Ok(ScheduleRow {
        name: schedule.name().to_owned(),
        cron: schedule.cron().source().to_owned(),
        timezone: tz.name().to_owned(),
        enabled: schedule.enabled(),
        paused,
        variants: schedule.variants().iter().map(|v| v.name.clone()).collect(),
        next_fires: next_fires(schedule, now(state), NEXT_FIRES)
            .into_iter()
            .map(|at| Fire {
                at: at.timestamp(),
                local: local_time(at, tz),
            })
            .collect(),
        last_run,
    })
}

/// Every schedule of the active rule set, in the order written.
pub async fn list(state: &AdminState) -> Result<Vec<ScheduleRow>, AdminError> {
    let mut rows = Vec::new();
    for schedule in active_schedules(state).await? {
        rows.push(row(state, &schedule).await?);
    }
    Ok(rows)
}

pub async fn detail(state: &AdminState, name: &str) -> Result<ScheduleDetail, AdminError> {
    let schedule = find(state, name).await?;
    let runs = scheduler::runs(&state.pool, Some(name), RUN_HISTORY).await?;
    let mut reports = Vec::with_capacity(runs.len());
    for run in runs {
        reports.push(scheduler::run_report(&state.pool, run.id).await?);
    }
    Ok(ScheduleDetail {
        schedule: row(state, &schedule).await?,
        runs: reports,
        variants: scheduler::variant_report(&state.pool, name).await?,
    })
}

async fn audited(
    state: &AdminState,
    manager: &Manager,
    action: &str,
    name: &str,
    detail: &str,
) -> Result<(), AdminError> {
    let mut conn = state.pool.acquire().await?;
    audit::append_audit(
        &mut conn,
        now(state).timestamp(),
        &manager.actor,
        action,
        name,
        detail,
    )
    .await?;
    Ok(())
}

/// No fire is sent until resumed.
pub async fn pause(state: &AdminState, manager: &Manager, name: &str) -> Result<(), AdminError> {
    manager.require(Role::Operator)?;
    find(state, name).await?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    q::pause(&mut tx, name, now.timestamp()).await?;
    audit::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "schedule.pause",
        name,
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Fires that fell during the pause are not caught up.
pub async fn resume(state: &AdminState, manager: &Manager, name: &str) -> Result<(), AdminError> {
    manager.require(Role::Operator)?;
    find(state, name).await?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    q::resume(&mut tx, name, now.timestamp()).await?;
    audit::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "schedule.resume",
        name,
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Plans a manual run at `now` (outbox rows for every target chat), in the
/// same transaction as its audit entry. Twice in one second is refused.
pub async fn run_now(
    state: &AdminState,
    manager: &Manager,
    name: &str,
) -> Result<scheduler::PlannedRun, AdminError> {
    manager.require(Role::Operator)?;
    let (version, schedules) = scheduler::load_schedules(&state.pool).await?;
    let schedule = schedules
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or(AdminError::NotFound)?;
    let now = now(state);
    let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await?;
    let planned = scheduler::plan_fire(
        &mut tx,
        &schedule,
        now,
        RunKind::Manual,
        version,
        &state.settings.scheduler,
        now,
    )
    .await?
    .ok_or_else(|| AdminError::bad_request("this schedule was just run; wait a second"))?;
    audit::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "schedule.run_now",
        name,
        &format!(
            "run {}: {} chats, {} skipped",
            planned.run_id, planned.chats, planned.skipped
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(planned)
}

/// What each target chat would get if the schedule fired now; sends and
/// records nothing but the audit entry.
pub async fn preview(
    state: &AdminState,
    manager: &Manager,
    name: &str,
) -> Result<Previews, AdminError> {
    manager.require(Role::Operator)?;
    let schedule = find(state, name).await?;
    let at = now(state);
    let chats = {
        let mut conn = state.pool.acquire().await?;
        store::schedules::push_chats(&mut conn).await?
    };
    let targets = scheduler::target_chats(&schedule, &chats);
    let total = targets.len();
    let mut previews = Vec::with_capacity(total.min(PREVIEW_CHATS));
    for chat in targets.into_iter().take(PREVIEW_CHATS) {
        let result = scheduler::preview(
            &state.pool,
            &state.settings.scheduler,
            name,
            &chat.chat_id,
            at,
        )
        .await;
        let (preview, error) = match result {
            Ok(preview) => (Some(preview), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        previews.push(ChatPreview {
            chat_id: chat.chat_id.clone(),
            chat_name: chat.name.clone(),
            preview,
            error,
        });
    }
    audited(
        state,
        manager,
        "schedule.preview",
        name,
        &format!("{} of {total} chats", previews.len()),
    )
    .await?;
    Ok(Previews {
        targets: total,
        chats: previews,
    })
}
