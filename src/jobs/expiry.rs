//! Writes off expired points (see `rules::expiry`): one ledger entry per
//! member and expiry month with the unique reference `expiry:<user>:<YYYY-MM>`,
//! so a second pass, or one after a crash, writes nothing twice. The ledger
//! refuses a debit the balance does not cover, and what expires is only what
//! is left of old lots, so balances never go negative.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::active_rules::ActiveRules;
use crate::jobs::Job;
use crate::rules::expiry::{self, Entry};
use crate::rules::RuleSet;
use crate::store::points;

/// Points of one member that expire (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedExpiry {
    pub user_id: String,
    /// The expiry month, `YYYY-MM`.
    pub period: String,
    pub points: i64,
    /// The last day the points were valid.
    pub last_day: NaiveDate,
}

/// Everything expired by `now`; written to the ledger unless `dry_run`.
/// Runs inside the caller's write transaction.
pub async fn expire_due(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Vec<PlannedExpiry>> {
    let doc = &rules.doc.points.expiry;
    if !doc.enabled() {
        return Ok(Vec::new());
    }
    let today = rules.community_day(now);
    let rows = points::entries_of_members_with_points(conn).await?;
    let mut planned = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let user = &rows[start].0;
        let end = rows[start..]
            .iter()
            .position(|(u, _)| u != user)
            .map_or(rows.len(), |n| start + n);
        let entries: Vec<Entry> = rows[start..end].iter().map(|(_, e)| *e).collect();
        for due in expiry::due(doc, &entries, today) {
            planned.push(PlannedExpiry {
                user_id: user.clone(),
                period: due.period,
                points: due.points,
                last_day: due.last_day,
            });
        }
        start = end;
    }
    if dry_run {
        return Ok(planned);
    }
    let mut written = Vec::new();
    for item in planned {
        let reference = expiry::reference(&item.user_id, &item.period);
        let entry = points::NewLedgerEntry {
            user_id: &item.user_id,
            delta: -item.points,
            reason: expiry::REASON,
            reference: &reference,
            chat_id: None,
            day: today,
            at: now,
        };
        if let points::Appended::New(_) = points::append(conn, &entry).await? {
            written.push(item);
        }
    }
    Ok(written)
}

/// The supervised job. Points only become due when a community day begins,
/// so after a pass that finished a day under one rule-set version the job
/// skips the ledger scan until the day or the version changes.
pub struct PointsExpiry {
    pool: SqlitePool,
    rules: ActiveRules,
    done_for: std::sync::Mutex<Option<(NaiveDate, Option<i64>)>>,
}

impl PointsExpiry {
    pub fn new(pool: SqlitePool, rules: ActiveRules) -> Self {
        Self {
            pool,
            rules,
            done_for: std::sync::Mutex::new(None),
        }
    }

    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let in_force = self.rules.in_force(&mut tx).await?;
        let key = (in_force.rules.community_day(now), in_force.version);
        if *self.done_for.lock().unwrap_or_else(|e| e.into_inner()) == Some(key) {
            return Ok(0);
        }
        let written = expire_due(&mut tx, &in_force.rules, now, false).await?;
        tx.commit().await?;
        *self.done_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        if !written.is_empty() {
            let points: i64 = written.iter().map(|w| w.points).sum();
            tracing::info!(members = written.len(), points, "points expired");
        }
        Ok(written.len())
    }
}

impl Job for PointsExpiry {
    type Outcome = usize;

    fn name(&self) -> &'static str {
        "points_expiry"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        self.run_at(now).await
    }
}
