//! Prunes rows that only record the past, as `[retention]` says: handled inbox
//! events (their dedupe keys kept at least `MIN_INBOX_RETENTION_DAYS`, a floor
//! the configuration enforces), the console audit log and recorded sign-in
//! failures. Pending and parked inbox events are never pruned.
//!
//! Each delete takes at most [`RetentionSettings::batch`] rows in its own short
//! transaction, so a large first prune never holds the write lock long enough to
//! delay a callback's commit; a pass that filled a batch runs again at once.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::config::RetentionConfig;
use crate::jobs::Job;
use crate::store::maintenance;

const DAY_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Days to keep each kind of row; 0 keeps them forever.
    pub inbox_days: u32,
    pub audit_days: u32,
    pub login_failures_days: u32,
    /// Rows per delete statement.
    pub batch: i64,
}

impl RetentionSettings {
    pub fn from_config(config: &RetentionConfig) -> Self {
        Self {
            inbox_days: config.inbox_days,
            audit_days: config.audit_days,
            login_failures_days: config.login_failures_days,
            batch: 500,
        }
    }
}

/// How often `serve` looks for rows to prune.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Rows deleted by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub inbox: u64,
    pub audit: u64,
    pub login_failures: u64,
    /// Some delete filled its batch: more may be due.
    pub batch_full: bool,
}

pub struct Retention {
    pool: SqlitePool,
    settings: RetentionSettings,
}

impl Retention {
    pub fn new(pool: SqlitePool, settings: RetentionSettings) -> Self {
        Self { pool, settings }
    }

    /// One batch of each kind whose cut-off has passed at `now`.
    pub async fn prune(&self, now: DateTime<Utc>) -> anyhow::Result<Pruned> {
        let cutoff = |days: u32| (days > 0).then(|| now.timestamp() - i64::from(days) * DAY_SECS);
        let batch = self.settings.batch;
        let mut pruned = Pruned::default();
        let mut conn = self.pool.acquire().await?;
        if let Some(before) = cutoff(self.settings.inbox_days) {
            pruned.inbox = maintenance::prune_inbox(&mut conn, before, batch).await?;
        }
        if let Some(before) = cutoff(self.settings.audit_days) {
            pruned.audit = maintenance::prune_audit(&mut conn, before, batch).await?;
        }
        if let Some(before) = cutoff(self.settings.login_failures_days) {
            pruned.login_failures =
                maintenance::prune_login_failures(&mut conn, before, batch).await?;
        }
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        pruned.batch_full = [pruned.inbox, pruned.audit, pruned.login_failures]
            .iter()
            .any(|&n| n >= full);
        if pruned != Pruned::default() {
            tracing::info!(
                inbox = pruned.inbox,
                audit = pruned.audit,
                login_failures = pruned.login_failures,
                "retention pruned old rows"
            );
        }
        Ok(pruned)
    }
}

impl Job for Retention {
    type Outcome = Pruned;

    fn name(&self) -> &'static str {
        "retention"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<Pruned> {
        self.prune(now).await
    }

    fn more_waiting(&self, outcome: &Pruned) -> bool {
        outcome.batch_full
    }
}
