//! Scheduled pushes as managers see and steer them: next fires in the
//! schedule's timezone, run history and per-chat reports, the A/B report, and
//! pause, resume, run now and preview. The one place outside the jobs that
//! talks to the scheduler.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::jobs::scheduler::{self, FOLLOW_UP_WINDOW_SECS};
use crate::rules::schedule::{next_fires, ValidSchedule};
use crate::store::outbox::OutboxStatus;
use crate::store::schedules::{self as q, DeliveryRow, RunKind, RunRow, VariantFollowUp};

pub use crate::jobs::scheduler::{PlannedRun, Preview, SchedulerSettings};

/// How many upcoming fires are listed per schedule.
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

/// A run with its fire time in the schedule's timezone.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub report: RunReport,
    pub local: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleDetail {
    pub schedule: ScheduleRow,
    pub runs: Vec<RunView>,
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

/// The version in force and its validated schedules.
async fn active_schedules(ops: &Ops) -> OpsResult<(Option<i64>, Vec<ValidSchedule>)> {
    let in_force = ops.in_force().await?;
    let schedules = scheduler::valid_schedules(&in_force.rules)?;
    Ok((in_force.version, schedules))
}

async fn find(ops: &Ops, name: &str) -> OpsResult<(Option<i64>, ValidSchedule)> {
    let (version, schedules) = active_schedules(ops).await?;
    let schedule = schedules
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| OpsError::not_found(format!("schedule {name:?}")))?;
    Ok((version, schedule))
}

async fn row(ops: &Ops, schedule: &ValidSchedule, now: DateTime<Utc>) -> OpsResult<ScheduleRow> {
    let tz = schedule.timezone();
    let mut conn = ops.pool.acquire().await?;
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
        next_fires: next_fires(schedule, now, NEXT_FIRES)
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
pub async fn list(ops: &Ops, now: DateTime<Utc>) -> OpsResult<Vec<ScheduleRow>> {
    let mut rows = Vec::new();
    for schedule in active_schedules(ops).await?.1 {
        rows.push(row(ops, &schedule, now).await?);
    }
    Ok(rows)
}

pub async fn detail(ops: &Ops, now: DateTime<Utc>, name: &str) -> OpsResult<ScheduleDetail> {
    let (_, schedule) = find(ops, name).await?;
    let mut reports = Vec::new();
    for run in runs(ops, Some(name), RUN_HISTORY).await? {
        reports.push(RunView {
            report: run_report(ops, run.id).await?,
            local: local_secs(run.fire_at, schedule.timezone()),
        });
    }
    Ok(ScheduleDetail {
        schedule: row(ops, &schedule, now).await?,
        runs: reports,
        variants: variant_report(ops, name).await?,
    })
}

/// No fire is sent until resumed.
pub async fn pause(ops: &Ops, actor: &Actor, now: DateTime<Utc>, name: &str) -> OpsResult<()> {
    set_paused(ops, actor, now, name, true).await
}

/// Fires that fell during the pause are not caught up; the next one after
/// `now` is sent.
pub async fn resume(ops: &Ops, actor: &Actor, now: DateTime<Utc>, name: &str) -> OpsResult<()> {
    set_paused(ops, actor, now, name, false).await
}

/// Pauses (`paused`) or resumes a schedule, audited.
pub async fn set_paused(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
    paused: bool,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    find(ops, name).await?;
    let mut tx = ops.begin().await?;
    let action = if paused {
        q::pause(&mut tx, name, now.timestamp()).await?;
        "schedule.pause"
    } else {
        q::resume(&mut tx, name, now.timestamp()).await?;
        "schedule.resume"
    };
    audit(&mut tx, actor, now, action, name, "").await?;
    tx.commit().await?;
    Ok(())
}

/// Plans a manual run at `now` (outbox rows for every target chat; pause and
/// quiet hours do not apply: a manager asked for it), in the same transaction
/// as its audit entry. Twice in one second is refused rather than sent twice.
pub async fn run_now(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
) -> OpsResult<PlannedRun> {
    actor.require(Role::Operator)?;
    let (version, schedule) = find(ops, name).await?;
    let mut tx = ops.begin().await?;
    let planned = scheduler::plan_fire(
        &mut tx,
        &schedule,
        now,
        RunKind::Manual,
        version,
        &ops.scheduler,
        now,
    )
    .await?
    .ok_or_else(|| OpsError::invalid("name", "this schedule was just run; wait a second"))?;
    audit(
        &mut tx,
        actor,
        now,
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

/// What target chats would get if the schedule fired now: the first
/// [`PREVIEW_CHATS`] targets, or only `chat` (any registered chat). Sends and
/// records nothing but the audit entry.
pub async fn preview(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
    chat: Option<&str>,
) -> OpsResult<Previews> {
    actor.require(Role::Operator)?;
    let (_, schedule) = find(ops, name).await?;
    let chats = {
        let mut conn = ops.pool.acquire().await?;
        q::push_chats(&mut conn).await?
    };
    let targets = match chat {
        Some(chat_id) => {
            let chat = chats
                .iter()
                .find(|c| c.chat_id == chat_id)
                .ok_or_else(|| OpsError::not_found(format!("chat {chat_id:?}")))?;
            vec![chat]
        }
        None => scheduler::target_chats(&schedule, &chats),
    };
    let total = targets.len();
    let mut previews = Vec::with_capacity(total.min(PREVIEW_CHATS));
    for chat in targets.into_iter().take(PREVIEW_CHATS) {
        let result = scheduler::preview(&ops.pool, &ops.scheduler, name, &chat.chat_id, now).await;
        let (preview, error) = match result {
            Ok(preview) => (Some(preview), None),
            // A template that cannot render is the manager's to fix; anything
            // else (the database) is logged and shown opaquely.
            Err(e) if e.chain().any(|cause| cause.is::<sqlx::Error>()) => {
                tracing::error!(error = format!("{e:#}"), schedule = name, "preview failed");
                (None, Some("internal error".to_owned()))
            }
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        previews.push(ChatPreview {
            chat_id: chat.chat_id.clone(),
            chat_name: chat.name.clone(),
            preview,
            error,
        });
    }
    let mut tx = ops.begin().await?;
    audit(
        &mut tx,
        actor,
        now,
        "schedule.preview",
        name,
        &format!("{} of {total} chats", previews.len()),
    )
    .await?;
    tx.commit().await?;
    Ok(Previews {
        targets: total,
        chats: previews,
    })
}

/// Runs of one schedule (or all), newest first.
pub async fn runs(ops: &Ops, schedule: Option<&str>, limit: i64) -> OpsResult<Vec<RunRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::list_runs(&mut conn, schedule, limit).await?)
}

/// Where one chat of a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChatOutcome {
    Sent,
    /// Failed or dead, with WeCom's (or the sender's) reason.
    Failed {
        reason: String,
    },
    /// A customer-group mass message the owner has not confirmed yet.
    AwaitingConfirmation,
    /// The chat's route cannot post this message.
    Skipped {
        reason: String,
    },
    /// Queued or being sent.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatReport {
    pub chat_id: String,
    pub variant: String,
    pub route: Option<String>,
    pub outcome: ChatOutcome,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunTotals {
    pub sent: usize,
    pub failed: usize,
    pub awaiting_confirmation: usize,
    pub skipped: usize,
    pub pending: usize,
}

/// One fire, per chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub schedule: String,
    pub fire_at: i64,
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub totals: RunTotals,
    pub chats: Vec<ChatReport>,
}

pub async fn run_report(ops: &Ops, run_id: i64) -> OpsResult<RunReport> {
    let mut conn = ops.pool.acquire().await?;
    let run = q::get_run(&mut conn, run_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("run {run_id}")))?;
    let deliveries = q::run_deliveries(&mut conn, run_id).await?;
    let mut totals = RunTotals::default();
    let chats = deliveries
        .into_iter()
        .map(|row| {
            let outcome = chat_outcome(&row);
            match outcome {
                ChatOutcome::Sent => totals.sent += 1,
                ChatOutcome::Failed { .. } => totals.failed += 1,
                ChatOutcome::AwaitingConfirmation => totals.awaiting_confirmation += 1,
                ChatOutcome::Skipped { .. } => totals.skipped += 1,
                ChatOutcome::Pending => totals.pending += 1,
            }
            ChatReport {
                chat_id: row.chat_id,
                variant: row.variant,
                route: row.route.map(|route| route.as_str().to_owned()),
                outcome,
            }
        })
        .collect();
    Ok(RunReport {
        run_id: run.id,
        schedule: run.schedule,
        fire_at: run.fire_at,
        kind: run.kind.as_str().to_owned(),
        status: run.status.as_str().to_owned(),
        reason: run.reason,
        totals,
        chats,
    })
}

fn chat_outcome(row: &DeliveryRow) -> ChatOutcome {
    let reason = || row.last_error.clone().unwrap_or_default();
    match row.status {
        Some(OutboxStatus::Sent) => ChatOutcome::Sent,
        Some(OutboxStatus::Failed | OutboxStatus::Dead) => ChatOutcome::Failed { reason: reason() },
        Some(OutboxStatus::AwaitingConfirmation) => ChatOutcome::AwaitingConfirmation,
        Some(OutboxStatus::Skipped) => ChatOutcome::Skipped { reason: reason() },
        Some(OutboxStatus::Pending | OutboxStatus::InFlight) => ChatOutcome::Pending,
        None => ChatOutcome::Failed {
            reason: "outbox row is gone".to_owned(),
        },
    }
}

/// The A/B report: variants compared by what followed within 24 h of each
/// sent delivery in the receiving chats.
pub async fn variant_report(ops: &Ops, name: &str) -> OpsResult<Vec<VariantFollowUp>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::variant_follow_ups(&mut conn, name, FOLLOW_UP_WINDOW_SECS).await?)
}
