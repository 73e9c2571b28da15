//! The moderation queue: open tasks, member reports, active strikes and the
//! moderation log, and what a manager does with them. Every change is audited
//! with the member as the target, so it shows on the member's profile.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::SqliteConnection;

use super::accounts::random_secret;
use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::moderate::ModerationRecord;
use crate::rules::moderation::Severity;
use crate::store::moderation::{self as q, LogRow, ReportGroup, StrikeRow, TaskRow};

const QUEUE_LIMIT: i64 = 200;
const REASON_MAX_CHARS: usize = 500;

/// Why a reason was refused (`OpsError::Invalid` on the `reason` field); the
/// console matches these to show a translated message at the field.
pub const REASON_REQUIRED: &str = "a reason is required";
pub const REASON_TOO_LONG: &str = "the reason is too long (at most 500 characters)";

/// The trimmed reason, or why it is refused.
fn check_reason(reason: &str) -> OpsResult<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        Err(OpsError::invalid("reason", REASON_REQUIRED))
    } else if reason.chars().count() > REASON_MAX_CHARS {
        Err(OpsError::invalid("reason", REASON_TOO_LONG))
    } else {
        Ok(reason)
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub member: Option<String>,
    pub action: Option<String>,
}

impl LogFilter {
    pub fn new(member: Option<&str>, action: Option<&str>) -> LogFilter {
        let clean = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        LogFilter {
            member: clean(member),
            action: clean(action),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    pub tasks: Vec<TaskView>,
    pub reports: Vec<ReportGroup>,
    pub strikes: Vec<StrikeView>,
    pub log: Vec<LogView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub log_id: i64,
    pub kind: String,
    pub chat_id: Option<String>,
    pub user_id: String,
    pub assignees: Vec<String>,
    /// Nobody was told about this task (no managers configured, no known
    /// owner or admin): the console shows it so that it is not missed.
    pub nobody_notified: bool,
    pub status: String,
    pub created_at: i64,
    pub done_by: Option<String>,
}

impl From<TaskRow> for TaskView {
    fn from(t: TaskRow) -> Self {
        let assignees: Vec<String> = serde_json::from_str(&t.assignees_json).unwrap_or_default();
        TaskView {
            nobody_notified: assignees.is_empty(),
            assignees,
            id: t.id,
            log_id: t.log_id,
            kind: t.kind,
            chat_id: t.chat_id,
            user_id: t.user_id,
            status: t.status,
            created_at: t.created_at,
            done_by: t.done_by,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StrikeView {
    pub id: i64,
    pub log_id: i64,
    pub user_id: String,
    pub chat_id: Option<String>,
    pub at: i64,
    pub severity: String,
    pub active: bool,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl From<StrikeRow> for StrikeView {
    fn from(s: StrikeRow) -> Self {
        StrikeView {
            active: s.revoked_at.is_none(),
            id: s.id,
            log_id: s.log_id,
            user_id: s.user_id,
            chat_id: s.chat_id,
            at: s.at,
            severity: s.severity,
            revoked_at: s.revoked_at,
            revoked_by: s.revoked_by,
            revoke_reason: s.revoke_reason,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    pub id: i64,
    pub at: i64,
    pub chat_id: Option<String>,
    pub user_id: String,
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub excerpt: String,
    pub action_taken: String,
    pub dry_run: bool,
    pub reviewed_by: Option<String>,
    pub review_note: Option<String>,
}

impl From<LogRow> for LogView {
    fn from(l: LogRow) -> Self {
        LogView {
            id: l.id,
            at: l.at,
            chat_id: l.chat_id,
            user_id: l.user_id,
            rule: l.rule,
            category: l.category,
            severity: l.severity,
            excerpt: l.excerpt,
            action_taken: l.action_taken,
            dry_run: l.dry_run,
            reviewed_by: l.reviewed_by,
            review_note: l.review_note,
        }
    }
}

pub async fn open_tasks(ops: &Ops) -> OpsResult<Vec<TaskView>> {
    tasks(ops, false).await
}

/// Open tasks, or with `all` finished ones too.
pub async fn tasks(ops: &Ops, all: bool) -> OpsResult<Vec<TaskView>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::tasks(&mut conn, all)
        .await?
        .into_iter()
        .map(TaskView::from)
        .collect())
}

pub async fn open_strikes(ops: &Ops) -> OpsResult<Vec<StrikeView>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::open_strikes(&mut conn, QUEUE_LIMIT)
        .await?
        .into_iter()
        .map(StrikeView::from)
        .collect())
}

/// The newest moderation decisions, filtered, at most the queue limit.
pub async fn log(ops: &Ops, filter: &LogFilter) -> OpsResult<Vec<LogView>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::log_filtered(
        &mut conn,
        filter.member.as_deref(),
        filter.action.as_deref(),
        QUEUE_LIMIT,
    )
    .await?
    .into_iter()
    .map(LogView::from)
    .collect())
}

/// The newest `limit` decisions, optionally one member's, in full (the CLI
/// and the CSV export: matched terms included).
pub async fn log_rows(ops: &Ops, user_id: Option<&str>, limit: i64) -> OpsResult<Vec<LogRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::log(&mut conn, user_id, limit).await?)
}

pub async fn reports(ops: &Ops) -> OpsResult<Vec<ReportGroup>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::open_report_groups(&mut conn, QUEUE_LIMIT).await?)
}

pub async fn queue(ops: &Ops, filter: &LogFilter) -> OpsResult<Queue> {
    Ok(Queue {
        tasks: open_tasks(ops).await?,
        reports: reports(ops).await?,
        strikes: open_strikes(ops).await?,
        log: log(ops, filter).await?,
    })
}

/// A member's strikes (revoked ones too) and moderation log, for the profile.
pub(crate) async fn member_record(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> OpsResult<(Vec<StrikeView>, Vec<LogView>)> {
    let strikes = q::strikes_of(conn, user_id)
        .await?
        .into_iter()
        .rev()
        .map(StrikeView::from)
        .collect();
    let log = q::log(conn, Some(user_id), QUEUE_LIMIT)
        .await?
        .into_iter()
        .map(LogView::from)
        .collect();
    Ok((strikes, log))
}

/// Revokes an active strike: it stops counting. A reason is required
/// (nothing changes without one); the strike records who and why.
pub async fn revoke_strike(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    strike_id: i64,
    reason: &str,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let reason = check_reason(reason)?;
    let mut tx = ops.begin().await?;
    let strike = q::strike_by_id(&mut tx, strike_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("strike {strike_id}")))?;
    if !q::revoke_strike(&mut tx, strike_id, &actor.name, reason, now).await? {
        return Err(OpsError::invalid(
            "strike",
            "this strike was already revoked",
        ));
    }
    audit(
        &mut tx,
        actor,
        now,
        "strike.revoke",
        &strike.user_id,
        &format!("strike {strike_id}: {reason}"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Marks an open task done, with an optional note.
pub async fn complete_task(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    task_id: i64,
    note: &str,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let note = note.trim();
    if note.chars().count() > REASON_MAX_CHARS {
        return Err(OpsError::invalid("note", "the note is too long"));
    }
    let mut tx = ops.begin().await?;
    let task = q::task_by_id(&mut tx, task_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("task {task_id}")))?;
    if !q::complete_task(&mut tx, task_id, &actor.name, note, now).await? {
        return Err(OpsError::invalid("task", "this task is already done"));
    }
    audit(
        &mut tx,
        actor,
        now,
        "moderation_task.done",
        &task.user_id,
        &format!("task {task_id} ({}): {note}", task.kind),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a manager does about a reported message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportAction {
    /// Give the author a strike (the reason is required) and close the reports.
    Strike,
    /// Close the reports without acting on the author.
    Dismiss,
}

impl ReportAction {
    pub fn parse(text: &str) -> Option<ReportAction> {
        match text {
            "strike" => Some(ReportAction::Strike),
            "dismiss" => Some(ReportAction::Dismiss),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ReportAction::Strike => "strike",
            ReportAction::Dismiss => "dismiss",
        }
    }
}

/// Acts on the open reports of one message in one chat. The audit target is
/// the reported member (the message's author).
pub async fn handle_report(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    chat_id: &str,
    fingerprint: i64,
    action: ReportAction,
    reason: &str,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let reason = match (action, check_reason(reason)) {
        (_, Ok(reason)) => reason,
        (ReportAction::Dismiss, Err(_)) if reason.trim().is_empty() => "",
        (_, Err(error)) => return Err(error),
    };
    let mut tx = ops.begin().await?;
    let author = q::author_of(&mut tx, chat_id, fingerprint).await?;
    if action == ReportAction::Strike && author.is_none() {
        return Err(OpsError::invalid(
            "fingerprint",
            "the reported message's author is unknown; nobody to strike",
        ));
    }
    let handled = q::handle_reports(
        &mut tx,
        chat_id,
        fingerprint,
        &actor.name,
        action.as_str(),
        now,
    )
    .await?;
    if handled == 0 {
        return Err(OpsError::not_found(format!(
            "open reports of {chat_id} #{fingerprint}"
        )));
    }
    let target = author.unwrap_or_default();
    if action == ReportAction::Strike {
        let record = ModerationRecord {
            event_id: format!("admin:{}", &random_secret()[..24]),
            at: now,
            chat_id: Some(chat_id.to_owned()),
            user_id: target.clone(),
            rule: "manual".to_owned(),
            category: "report".to_owned(),
            severity: Severity::Medium,
            matched: String::new(),
            excerpt: reason.chars().take(40).collect(),
            action_taken: format!("strike by {}", actor.name),
            dry_run: false,
            strike: true,
            task: None,
        };
        q::record_decision(&mut tx, &record).await?;
    }
    audit(
        &mut tx,
        actor,
        now,
        &format!("report.{}", action.as_str()),
        &target,
        &format!("{chat_id} #{fingerprint}: {reason}"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
