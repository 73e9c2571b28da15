//! The console's overview, read from the stored rollups, stages and alert
//! episodes (`jobs::analytics` keeps them fresh every few minutes).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::{Ops, OpsResult};
use crate::store::{self, admin as q};

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
    /// Join → active → first order → repeat order, per join week and chat.
    pub purchase_funnel: Vec<crate::analytics::funnel::FunnelRow>,
    /// Buyers per RFM segment, in the segments' fixed order (label, count).
    pub rfm_segments: Vec<(&'static str, i64)>,
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

pub async fn dashboard(ops: &Ops, now: DateTime<Utc>) -> OpsResult<Dashboard> {
    use crate::analytics::COMMUNITY;
    let rules = ops.in_force().await?.rules;
    let today = rules.community_day(now);
    let first = today - Duration::days(CHART_DAYS - 1);
    let days: Vec<NaiveDate> = (0..CHART_DAYS).map(|i| first + Duration::days(i)).collect();

    let mut conn = ops.pool.acquire().await?;
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
    let purchase_funnel = super::orders::purchase_funnel(&mut conn, &rules, now).await?;
    let rfm_counts = store::orders::segment_counts(&mut conn).await?;
    let rfm_segments = crate::analytics::rfm::Segment::ALL
        .iter()
        .map(|segment| {
            let label = segment.label();
            let n = rfm_counts
                .iter()
                .find(|(s, _)| s == label)
                .map_or(0, |c| c.1);
            (label, n)
        })
        .collect();

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
        purchase_funnel,
        rfm_segments,
    })
}

/// Stored daily rollups of the community (`chat` empty) or one chat, for the
/// last `days` days, today included.
pub async fn daily(
    ops: &Ops,
    now: DateTime<Utc>,
    chat: &str,
    days: i64,
) -> OpsResult<Vec<crate::analytics::DailyRow>> {
    let today = ops.in_force().await?.rules.community_day(now);
    let mut conn = ops.pool.acquire().await?;
    Ok(store::analytics::daily_rows(&mut conn, chat, today - Duration::days(days - 1)).await?)
}
