//! The moderation queue: open tasks, member reports, active strikes and the
//! moderation log, and what a manager does with them. Every change is audited
//! with the member as the target, so it shows on the member's profile.

use serde::Serialize;

use super::now;
use crate::admin::auth::{random_secret, Manager, Role};
use crate::admin::{AdminError, AdminState};
use crate::rules::moderate::ModerationRecord;
use crate::rules::moderation::Severity;
use crate::store::admin::append_audit;
use crate::store::moderation::{self as q, LogRow, ReportGroup, StrikeRow, TaskRow};

const QUEUE_LIMIT: i64 = 200;
const REASON_MAX_CHARS: usize = 500;

/// A form field the manager must fix; the page shows `message` at the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    /// i18n key of the message.
    pub key: &'static str,
    pub message: &'static str,
}

/// What a mutation that needs a reason did.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Nothing changed; the manager must fix a field (answered 422).
    Invalid(FieldError),
}

fn reason_required() -> FieldError {
    FieldError {
        field: "reason",
        key: "reason_required",
        message: "a reason is required",
    }
}

fn reason_too_long() -> FieldError {
    FieldError {
        field: "reason",
        key: "reason_too_long",
        message: "the reason is too long (at most 500 characters)",
    }
}

/// The trimmed reason, or the field error to show.
fn check_reason(reason: &str) -> Result<&str, FieldError> {
    let reason = reason.trim();
    if reason.is_empty() {
        Err(reason_required())
    } else if reason.chars().count() > REASON_MAX_CHARS {
        Err(reason_too_long())
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
    pub status: String,
    pub created_at: i64,
    pub done_by: Option<String>,
}

impl From<TaskRow> for TaskView {
    fn from(t: TaskRow) -> Self {
        TaskView {
            assignees: serde_json::from_str(&t.assignees_json).unwrap_or_default(),
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

pub async fn open_tasks(state: &AdminState) -> Result<Vec<TaskView>, AdminError> {
    let mut conn = state.pool.acquire().await?;
    Ok(q::tasks(&mut conn, false)
        .await?
        .into_iter()
        .map(TaskView::from)
        .collect())
}

pub async fn open_strikes(state: &AdminState) -> Result<Vec<StrikeView>, AdminError> {
    let mut conn = state.pool.acquire().await?;
    Ok(q::open_strikes(&mut conn, QUEUE_LIMIT)
        .await?
        .into_iter()
        .map(StrikeView::from)
        .collect())
}

pub async fn log(state: &AdminState, filter: &LogFilter) -> Result<Vec<LogView>, AdminError> {
    let mut conn = state.pool.acquire().await?;
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

pub async fn reports(state: &AdminState) -> Result<Vec<ReportGroup>, AdminError> {
    let mut conn = state.pool.acquire().await?;
    Ok(q::open_report_groups(&mut conn, QUEUE_LIMIT).await?)
}

pub async fn queue(state: &AdminState, filter: &LogFilter) -> Result<Queue, AdminError> {
    Ok(Queue {
        tasks: open_tasks(state).await?,
        reports: reports(state).await?,
        strikes: open_strikes(state).await?,
        log: log(state, filter).await?,
    })
}

/// A member's strikes (revoked ones too) and moderation log, for the profile.
pub async fn member_record(
    conn: &mut sqlx::SqliteConnection,
    user_id: &str,
) -> Result<(Vec<StrikeView>, Vec<LogView>), AdminError> {
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

/// Revokes an active strike; a reason is required (nothing changes without one).
pub async fn revoke_strike(
    state: &AdminState,
    manager: &Manager,
    strike_id: i64,
    reason: &str,
) -> Result<Outcome, AdminError> {
    manager.require(Role::Operator)?;
    let reason = match check_reason(reason) {
        Ok(reason) => reason,
        Err(field) => return Ok(Outcome::Invalid(field)),
    };
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    let strike = q::strike_by_id(&mut tx, strike_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    if !q::revoke_strike(&mut tx, strike_id, &manager.actor, reason, now).await? {
        return Err(AdminError::bad_request("this strike was already revoked"));
    }
    append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "strike.revoke",
        &strike.user_id,
        &format!("strike {strike_id}: {reason}"),
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Done)
}

/// Marks an open task done, with an optional note.
pub async fn complete_task(
    state: &AdminState,
    manager: &Manager,
    task_id: i64,
    note: &str,
) -> Result<(), AdminError> {
    manager.require(Role::Operator)?;
    let note = note.trim();
    if note.chars().count() > REASON_MAX_CHARS {
        return Err(AdminError::bad_request("the note is too long"));
    }
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    let task = q::task_by_id(&mut tx, task_id)
        .await?
        .ok_or(AdminError::NotFound)?;
    if !q::complete_task(&mut tx, task_id, &manager.actor, note, now).await? {
        return Err(AdminError::bad_request("this task is already done"));
    }
    append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
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
    state: &AdminState,
    manager: &Manager,
    chat_id: &str,
    fingerprint: i64,
    action: ReportAction,
    reason: &str,
) -> Result<Outcome, AdminError> {
    manager.require(Role::Operator)?;
    let reason = match (action, check_reason(reason)) {
        (_, Ok(reason)) => reason,
        (ReportAction::Strike, Err(field)) => return Ok(Outcome::Invalid(field)),
        (ReportAction::Dismiss, Err(_)) if reason.trim().is_empty() => "",
        (ReportAction::Dismiss, Err(field)) => return Ok(Outcome::Invalid(field)),
    };
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    let author = q::author_of(&mut tx, chat_id, fingerprint).await?;
    if action == ReportAction::Strike && author.is_none() {
        return Err(AdminError::bad_request(
            "the reported message's author is unknown; nobody to strike",
        ));
    }
    let handled = q::handle_reports(
        &mut tx,
        chat_id,
        fingerprint,
        &manager.actor,
        action.as_str(),
        now,
    )
    .await?;
    if handled == 0 {
        return Err(AdminError::NotFound);
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
            action_taken: format!("strike by {}", manager.actor),
            dry_run: false,
            strike: true,
            task: None,
        };
        q::record_decision(&mut tx, &record).await?;
    }
    append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        &format!("report.{}", action.as_str()),
        &target,
        &format!("{chat_id} #{fingerprint}: {reason}"),
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Done)
}
