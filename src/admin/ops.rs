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

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub totals: q::Totals,
    pub funnel: q::Funnel,
    pub days: Vec<String>,
    pub joins: Vec<i64>,
    pub leaves: Vec<i64>,
    pub active: Vec<i64>,
    pub checkins: Vec<i64>,
    pub points_issued: Vec<i64>,
    pub points_redeemed: Vec<i64>,
    pub alerts: Vec<Alert>,
}

/// Something on the dashboard that needs a manager's attention.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// yellow, orange or red.
    pub level: &'static str,
    /// i18n key of the message.
    pub key: &'static str,
    pub value: i64,
}

const CHART_DAYS: i64 = 30;

pub async fn dashboard(state: &AdminState) -> Result<Dashboard, AdminError> {
    let (_, _, rules) = active_rules(state).await?;
    let now = now(state);
    let tz = rules.timezone;
    let cutover = rules.doc.community.day_cutover_hour;
    let today = community_day(now, tz, cutover);
    let first = today - Duration::days(CHART_DAYS - 1);
    let days: Vec<NaiveDate> = (0..CHART_DAYS).map(|i| first + Duration::days(i)).collect();
    let index = |day: NaiveDate| -> Option<usize> {
        usize::try_from((day - first).num_days())
            .ok()
            .filter(|i| *i < days.len())
    };
    let by_day_text = |rows: &[(String, i64, i64)], pick: fn(&(String, i64, i64)) -> i64| {
        let mut out = vec![0; days.len()];
        for row in rows {
            if let Some(i) = row.0.parse::<NaiveDate>().ok().and_then(index) {
                out[i] = pick(row);
            }
        }
        out
    };

    let mut conn = state.pool.acquire().await?;
    let since = now.timestamp() - (CHART_DAYS + 1) * 86_400;
    let (join_times, leave_times) = q::joins_and_leaves_since(&mut conn, since).await?;
    let bucket = |times: &[i64]| {
        let mut out = vec![0; days.len()];
        for t in times {
            if let Some(i) = DateTime::from_timestamp(*t, 0)
                .map(|at| community_day(at, tz, cutover))
                .and_then(index)
            {
                out[i] += 1;
            }
        }
        out
    };
    let joins = bucket(&join_times);
    let leaves = bucket(&leave_times);
    let checkin_rows = q::checkins_per_day(&mut conn, &first.to_string()).await?;
    let points_rows = q::points_per_day(&mut conn, &first.to_string()).await?;
    let totals = q::totals(&mut conn).await?;
    let funnel = q::funnel(
        &mut conn,
        &q::FunnelThresholds {
            now: now.timestamp(),
            new_days: 7,
            active_since_day: &(today - Duration::days(6)).to_string(),
            core_checkins: 5,
            at_risk_since_day: &(today - Duration::days(13)).to_string(),
        },
    )
    .await?;

    let mut alerts = Vec::new();
    if totals.parked_events > 0 {
        alerts.push(Alert {
            level: if totals.parked_events >= 10 {
                "red"
            } else {
                "orange"
            },
            key: "alert_parked",
            value: totals.parked_events,
        });
    }
    let leaves_today = leaves.last().copied().unwrap_or(0);
    let average_leaves = leaves.iter().sum::<i64>() / CHART_DAYS;
    if leaves_today >= 3 && leaves_today >= 2 * average_leaves.max(1) {
        alerts.push(Alert {
            level: if leaves_today >= 4 * average_leaves.max(1) {
                "red"
            } else {
                "yellow"
            },
            key: "alert_leave_spike",
            value: leaves_today,
        });
    }
    if totals.pending_redemptions > 0 {
        alerts.push(Alert {
            level: "yellow",
            key: "alert_redemptions",
            value: totals.pending_redemptions,
        });
    }

    Ok(Dashboard {
        totals,
        funnel,
        days: days.iter().map(|d| d.format("%m-%d").to_string()).collect(),
        joins,
        leaves,
        active: by_day_text(&checkin_rows, |r| r.2),
        checkins: by_day_text(&checkin_rows, |r| r.1),
        points_issued: by_day_text(&points_rows, |r| r.1),
        points_redeemed: by_day_text(&points_rows, |r| r.2),
        alerts,
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
            &tr("chart_points"),
            &data.days,
            &[
                Series {
                    name: tr("points_issued"),
                    color: "#ca8a04",
                    values: data.points_issued.clone(),
                },
                Series {
                    name: tr("points_redeemed"),
                    color: "#0891b2",
                    values: data.points_redeemed.clone(),
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
