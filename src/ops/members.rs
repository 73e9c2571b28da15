//! Members as the console shows them: search and one person's profile.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use super::moderation::{member_record, LogView, StrikeView};
use super::{Ops, OpsError, OpsResult};
use crate::store::admin::{AuditRow, MemberRow, MembershipRow};
use crate::store::analytics::StageChangeRow;
use crate::store::{self, admin as q};

/// Audit entries shown on a profile.
const PROFILE_AUDIT: i64 = 50;
/// Stage changes shown on a profile.
const PROFILE_STAGES: i64 = 20;
/// Orders shown on a profile.
const PROFILE_ORDERS: i64 = 50;

/// Members whose id or name contains `query` (all when empty), at most `limit`.
pub async fn search(ops: &Ops, query: &str, limit: i64) -> OpsResult<Vec<MemberRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::search_members(&mut conn, query.trim(), limit).await?)
}

/// One day of the check-in calendar.
#[derive(Debug, Clone, Serialize)]
pub struct CalendarDay {
    pub day: u32,
    pub date: String,
    pub checked: bool,
    pub future: bool,
}

/// One ledger entry, newest first on the profile.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerLine {
    pub id: i64,
    pub delta: i64,
    pub reason: String,
    pub day: String,
}

/// Everything the profile page (and the API) shows about one person.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub user_id: String,
    pub name: Option<String>,
    pub balance: i64,
    pub badges: Vec<String>,
    pub memberships: Vec<MembershipRow>,
    pub ledger: Vec<LedgerLine>,
    /// Five whole weeks, Monday first, ending with the current week.
    pub calendar: Vec<Vec<CalendarDay>>,
    pub audit: Vec<AuditRow>,
    pub strikes: Vec<StrikeView>,
    pub moderation_log: Vec<LogView>,
    pub stage_changes: Vec<StageChangeRow>,
    /// Orders and refunds, newest first.
    pub orders: Vec<store::orders::OrderRow>,
    /// RFM scores and segment (none before a first order).
    pub rfm: Option<store::orders::RfmRow>,
    /// Member tags and who set them.
    pub tags: Vec<store::segments::MemberTag>,
}

pub async fn profile(ops: &Ops, now: DateTime<Utc>, user_id: &str) -> OpsResult<Profile> {
    let today = ops.in_force().await?.rules.community_day(now);
    let mut conn = ops.pool.acquire().await?;
    if !q::person_exists(&mut conn, user_id).await? {
        return Err(OpsError::not_found(format!("member {user_id}")));
    }
    let first = today
        - Duration::days(i64::from(today.weekday().num_days_from_monday()))
        - Duration::weeks(4);
    let checked: std::collections::BTreeSet<String> =
        q::checkin_days(&mut conn, user_id, &first.to_string())
            .await?
            .into_iter()
            .collect();
    let calendar = (0..5)
        .map(|week| {
            (0..7)
                .map(|d| {
                    let day = first + Duration::days(week * 7 + d);
                    CalendarDay {
                        day: day.day(),
                        date: day.to_string(),
                        checked: checked.contains(&day.to_string()),
                        future: day > today,
                    }
                })
                .collect()
        })
        .collect();
    let ledger = store::points::entries_for(&mut conn, user_id)
        .await?
        .into_iter()
        .rev()
        .map(|e| LedgerLine {
            id: e.id,
            delta: e.delta,
            reason: e.reason,
            day: e.day,
        })
        .collect();
    let (strikes, moderation_log) = member_record(&mut conn, user_id).await?;
    Ok(Profile {
        user_id: user_id.to_owned(),
        name: store::members::person_name(&mut conn, user_id).await?,
        balance: store::points::balance(&mut conn, user_id).await?,
        badges: store::members::badges(&mut conn, user_id).await?,
        memberships: q::memberships(&mut conn, user_id).await?,
        ledger,
        calendar,
        audit: q::recent_audit(&mut conn, Some(user_id), PROFILE_AUDIT).await?,
        strikes,
        moderation_log,
        stage_changes: store::analytics::stage_changes(&mut conn, Some(user_id), PROFILE_STAGES)
            .await?,
        orders: store::orders::orders_for(&mut conn, user_id, PROFILE_ORDERS).await?,
        rfm: store::orders::rfm_for(&mut conn, user_id).await?,
        tags: store::segments::tags_of(&mut conn, user_id).await?,
    })
}
