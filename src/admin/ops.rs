//! What the console does, shared by the pages and the JSON API. Each mutation
//! checks the caller's role and writes its audit entry in the same transaction
//! as the change, so no change goes unrecorded.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::auth::{Manager, Role};
use super::chart::{self, Series};
use super::rules_editor::{self, FieldProblem};
use super::{AdminError, AdminState};
use crate::rules::checkin::community_day;
use crate::rules::RuleSet;
use crate::store::{self, admin as q};

pub mod moderation;
pub mod schedules;

pub fn now(state: &AdminState) -> DateTime<Utc> {
    state.clock.now()
}

/// The active rule set's text and parsed form (the built-in defaults if none stored).
pub async fn active_rules(
    state: &AdminState,
) -> Result<(Option<i64>, String, RuleSet), AdminError> {
    let mut conn = state.pool.acquire().await?;
    let stored = store::rule_sets::active(&mut conn).await?;
    Ok(match stored {
        Some(stored) => {
            // A stored set was validated on save; if the validator got stricter
            // since, the dashboard still works on the defaults' timezone.
            let rules = RuleSet::from_toml(&stored.body).unwrap_or_else(|_| RuleSet::builtin());
            (Some(stored.version), stored.body, rules)
        }
        None => {
            let rules = RuleSet::builtin();
            (None, rules.to_toml(), rules)
        }
    })
}

// --- dashboard ----------------------------------------------------------------

/// The console's overview, read from the stored rollups, stages and alert
/// episodes (`jobs::analytics` keeps them fresh every few minutes).
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub totals: q::Totals,
    pub today: KeyNumbers,
    pub funnel: Funnel,
    pub days: Vec<String>,
    pub joins: Vec<i64>,
    pub leaves: Vec<i64>,
    pub active: Vec<i64>,
    pub checkins: Vec<i64>,
    pub messages: Vec<i64>,
    pub points_issued: Vec<i64>,
    pub points_redeemed: Vec<i64>,
    pub violations: Vec<i64>,
    pub pushes_sent: Vec<i64>,
    pub pushes_failed: Vec<i64>,
    /// Open alert episodes, most severe first.
    pub alerts: Vec<Alert>,
    /// Who gets alert messages (`[alerts] admins`); empty: dashboard only.
    pub alert_admins: Vec<String>,
    /// Alert episodes of the last 7 days, open or closed, newest first.
    pub recent_alerts: Vec<store::analytics::AlertEpisode>,
    /// The latest at-risk stage changes and what their action did.
    pub at_risk: Vec<store::analytics::StageChangeRow>,
}

/// Today's community numbers (as of the last analytics pass).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyNumbers {
    pub active_members: i64,
    pub checkins: i64,
    pub messages: i64,
    pub joins_7d: i64,
    pub leaves_7d: i64,
    pub violations_7d: i64,
}

/// People per lifecycle stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Funnel {
    pub new: i64,
    pub active: i64,
    pub core: i64,
    pub at_risk: i64,
    pub dormant: i64,
    pub churned: i64,
}

/// An open alert episode.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    /// The alert kind, e.g. `leave_spike`.
    pub kind: &'static str,
    /// yellow, orange or red (the highest reached in this episode).
    pub level: &'static str,
    /// i18n key of the message.
    pub key: String,
    pub value: i64,
    pub opened_at: i64,
}

const CHART_DAYS: i64 = 30;

pub async fn dashboard(state: &AdminState) -> Result<Dashboard, AdminError> {
    use crate::analytics::COMMUNITY;
    let (_, _, rules) = active_rules(state).await?;
    let now = now(state);
    let today = community_day(now, rules.timezone, rules.doc.community.day_cutover_hour);
    let first = today - Duration::days(CHART_DAYS - 1);
    let days: Vec<NaiveDate> = (0..CHART_DAYS).map(|i| first + Duration::days(i)).collect();

    let mut conn = state.pool.acquire().await?;
    let rows = store::analytics::daily_rows(&mut conn, COMMUNITY, first).await?;
    let series = |pick: fn(&crate::analytics::DailyRow) -> i64| -> Vec<i64> {
        days.iter()
            .map(|day| rows.iter().find(|r| r.day == *day).map_or(0, pick))
            .collect()
    };
    let joins = series(|r| r.joins);
    let leaves = series(|r| r.leaves);
    let violations = series(|r| r.violations);
    let last_week = |values: &[i64]| values.iter().rev().take(7).sum::<i64>();
    let at_today = |values: &[i64]| values.last().copied().unwrap_or(0);
    let active = series(|r| r.active_members);
    let checkins = series(|r| r.checkins);
    let messages = series(|r| r.messages);
    let today_numbers = KeyNumbers {
        active_members: at_today(&active),
        checkins: at_today(&checkins),
        messages: at_today(&messages),
        joins_7d: last_week(&joins),
        leaves_7d: last_week(&leaves),
        violations_7d: last_week(&violations),
    };

    let counts = store::analytics::stage_counts(&mut conn).await?;
    let count = |stage: &str| counts.get(stage).copied().unwrap_or(0);
    let funnel = Funnel {
        new: count("new"),
        active: count("active"),
        core: count("core"),
        at_risk: count("at_risk"),
        dormant: count("dormant"),
        churned: count("churned"),
    };
    let mut alerts: Vec<Alert> = store::analytics::open_episodes(&mut conn)
        .await?
        .into_iter()
        .map(|e| Alert {
            id: e.id,
            kind: e.kind.as_str(),
            level: e.level.as_str(),
            key: format!("alert_{}", e.kind.as_str()),
            value: e.value,
            opened_at: e.opened_at,
        })
        .collect();
    alerts.sort_by_key(|a| {
        (
            std::cmp::Reverse(crate::analytics::AlertLevel::parse(a.level)),
            a.id,
        )
    });
    let recent_alerts =
        store::analytics::episodes_since(&mut conn, now.timestamp() - 7 * 86_400).await?;
    let at_risk = store::analytics::at_risk_changes(&mut conn, 10).await?;

    Ok(Dashboard {
        totals: q::totals(&mut conn).await?,
        today: today_numbers,
        funnel,
        days: days.iter().map(|d| d.format("%m-%d").to_string()).collect(),
        joins,
        leaves,
        active,
        checkins,
        messages,
        points_issued: series(|r| r.points_issued),
        points_redeemed: series(|r| r.points_redeemed),
        violations,
        pushes_sent: series(|r| r.pushes_sent),
        pushes_failed: series(|r| r.pushes_failed),
        alerts,
        alert_admins: rules.doc.alerts.admins.clone(),
        recent_alerts,
        at_risk,
    })
}

/// The dashboard's charts as inline SVG, titled in the page language.
pub fn dashboard_charts(
    data: &Dashboard,
    t: &std::collections::BTreeMap<&'static str, &'static str>,
) -> Vec<String> {
    let tr = |key: &str| t.get(key).copied().unwrap_or_default().to_owned();
    vec![
        chart::line_chart(
            &tr("chart_joins_leaves"),
            &data.days,
            &[
                Series {
                    name: tr("joins"),
                    color: "#16a34a",
                    values: data.joins.clone(),
                },
                Series {
                    name: tr("leaves"),
                    color: "#dc2626",
                    values: data.leaves.clone(),
                },
            ],
        ),
        chart::line_chart(
            &tr("chart_activity"),
            &data.days,
            &[
                Series {
                    name: tr("checkins"),
                    color: "#2563eb",
                    values: data.checkins.clone(),
                },
                Series {
                    name: tr("active_members"),
                    color: "#9333ea",
                    values: data.active.clone(),
                },
            ],
        ),
        chart::line_chart(
            &tr("chart_health"),
            &data.days,
            &[
                Series {
                    name: tr("violations"),
                    color: "#ea580c",
                    values: data.violations.clone(),
                },
                Series {
                    name: tr("pushes_failed"),
                    color: "#64748b",
                    values: data.pushes_failed.clone(),
                },
            ],
        ),
        chart::bar_chart(
            &tr("chart_funnel"),
            &[
                (tr("stage_new"), data.funnel.new),
                (tr("stage_active"), data.funnel.active),
                (tr("stage_core"), data.funnel.core),
                (tr("stage_at_risk"), data.funnel.at_risk),
                (tr("stage_dormant"), data.funnel.dormant),
                (tr("stage_churned"), data.funnel.churned),
            ],
        ),
    ]
}

// --- mutations ----------------------------------------------------------------

/// Outcome of applying a rule set.
pub enum Applied {
    Version(i64),
    Invalid(Vec<FieldProblem>),
}

pub async fn apply_rules(
    state: &AdminState,
    manager: &Manager,
    body: &str,
) -> Result<Applied, AdminError> {
    manager.require(Role::Operator)?;
    let problems = rules_editor::check(body);
    if !problems.is_empty() {
        return Ok(Applied::Invalid(problems));
    }
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    let version = store::rule_sets::save(&mut tx, body, now).await?;
    q::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "rules.apply",
        &format!("v{version}"),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(Applied::Version(version))
}

/// Makes an earlier version active again by saving its text as a new version
/// (history is never rewritten).
pub async fn rollback_rules(
    state: &AdminState,
    manager: &Manager,
    version: i64,
) -> Result<i64, AdminError> {
    manager.require(Role::Operator)?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    let old = q::rule_set_version(&mut tx, version)
        .await?
        .ok_or(AdminError::NotFound)?;
    if !rules_editor::check(&old.body).is_empty() {
        return Err(AdminError::bad_request(
            "that version no longer passes validation",
        ));
    }
    let new_version = store::rule_sets::save(&mut tx, &old.body, now).await?;
    q::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "rules.rollback",
        &format!("v{new_version}"),
        &format!("from v{version}"),
    )
    .await?;
    tx.commit().await?;
    Ok(new_version)
}

pub async fn fulfil_redemption(
    state: &AdminState,
    manager: &Manager,
    id: i64,
) -> Result<(), AdminError> {
    manager.require(Role::Operator)?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    if !store::redemptions::mark_fulfilled(&mut tx, id, now).await? {
        return Err(AdminError::NotFound);
    }
    q::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "redemption.fulfil",
        &id.to_string(),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn retry_parked(
    state: &AdminState,
    manager: &Manager,
    id: i64,
) -> Result<(), AdminError> {
    manager.require(Role::Operator)?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    if !store::inbox::requeue(&mut tx, id).await? {
        return Err(AdminError::NotFound);
    }
    q::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "inbox.retry",
        &id.to_string(),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A manual ledger entry with a reason; returns the new balance.
pub async fn adjust_points(
    state: &AdminState,
    manager: &Manager,
    user_id: &str,
    delta: i64,
    reason: &str,
) -> Result<i64, AdminError> {
    manager.require(Role::Operator)?;
    if delta == 0 || reason.trim().is_empty() {
        return Err(AdminError::bad_request(
            "points need a non-zero amount and a reason",
        ));
    }
    {
        let mut conn = state.pool.acquire().await?;
        if !q::person_exists(&mut conn, user_id).await? {
            return Err(AdminError::NotFound);
        }
    }
    let now = now(state);
    // The pipeline's adjust_points owns the ledger rules (reference, day,
    // no overdraft); a refusal there is the manager's mistake, not ours.
    let balance = crate::pipeline::adjust_points(&state.pool, user_id, delta, reason.trim(), now)
        .await
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    let mut conn = state.pool.acquire().await?;
    q::append_audit(
        &mut conn,
        now.timestamp(),
        &manager.actor,
        "points.adjust",
        user_id,
        &format!("{delta:+} ({})", reason.trim()),
    )
    .await?;
    Ok(balance)
}

/// A failed or dead outbox row as the console shows it: never the payload
/// (it may hold personal data) and never a credential-bearing target.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub route: String,
    pub target: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

impl DeadLetter {
    /// Cut off mid-send: WeCom may already have delivered it.
    pub fn is_uncertain(&self) -> bool {
        self.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("uncertain:"))
    }
}

pub async fn dead_letters(state: &AdminState) -> Result<Vec<DeadLetter>, AdminError> {
    use store::outbox::OutboxStatus;
    let mut conn = state.pool.acquire().await?;
    let mut rows = Vec::new();
    for status in [OutboxStatus::Dead, OutboxStatus::Failed] {
        rows.extend(store::outbox::list(&mut conn, Some(status)).await?);
    }
    rows.sort_by_key(|r| r.id);
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            id: r.id,
            route: r.route.to_string(),
            target: r.display_target(),
            status: r.status.to_string(),
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: r.created_at,
        })
        .collect())
}

/// Requeues every dead letter parked as uncertain (cut off mid-send on a route
/// WeCom does not deduplicate), once someone has checked the chats. Returns
/// how many were requeued; audited even when none were.
pub async fn retry_uncertain(state: &AdminState, manager: &Manager) -> Result<u64, AdminError> {
    manager.require(Role::Operator)?;
    let now = now(state).timestamp();
    let mut tx = state.pool.begin().await?;
    let requeued = store::outbox::retry_uncertain(&mut tx, now).await?;
    q::append_audit(
        &mut tx,
        now,
        &manager.actor,
        "outbox.retry_uncertain",
        "",
        &format!("{requeued} messages"),
    )
    .await?;
    tx.commit().await?;
    Ok(requeued)
}

/// Requeues a failed or dead outbox row, due now.
pub async fn retry_outbox(
    state: &AdminState,
    manager: &Manager,
    id: i64,
) -> Result<(), AdminError> {
    use store::outbox::RetryOutcome;
    manager.require(Role::Operator)?;
    let now = now(state);
    let mut tx = state.pool.begin().await?;
    match store::outbox::retry(&mut tx, id, now.timestamp()).await? {
        RetryOutcome::Requeued => {}
        RetryOutcome::NotFound => return Err(AdminError::NotFound),
        RetryOutcome::NotRetryable(status) => {
            return Err(AdminError::bad_request(format!(
                "only failed or dead messages can be retried (this one is {status})"
            )))
        }
    }
    q::append_audit(
        &mut tx,
        now.timestamp(),
        &manager.actor,
        "outbox.retry",
        &id.to_string(),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
