//! Draws lotteries at their time. Each draw is one transaction that moves the
//! lottery from open to drawn together with its winners, prizes and messages
//! (`ops::lottery::draw_in`), so a pass that runs twice, two workers, or a
//! restart after a crash mid-draw still draw each lottery exactly once.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::jobs::Job;
use crate::ops::lottery::{draw_due, Drawn};
use crate::ops::Ops;

pub struct LotteryDraws {
    ops: Ops,
}

impl LotteryDraws {
    pub fn new(pool: SqlitePool, rules: ActiveRules) -> Self {
        Self {
            ops: Ops::new(pool, rules, Default::default()),
        }
    }

    /// Draws every lottery due at `now`; returns the draws made.
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<Drawn>> {
        let drawn = draw_due(&self.ops, now)
            .await
            .map_err(anyhow::Error::from)?;
        for draw in &drawn {
            tracing::info!(
                lottery = draw.id,
                entrants = draw.entrants,
                winners = draw.winners.len(),
                "lottery drawn"
            );
        }
        Ok(drawn)
    }
}

impl Job for LotteryDraws {
    type Outcome = Vec<Drawn>;

    fn name(&self) -> &'static str {
        "lottery_draws"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<Drawn>> {
        self.run_at(now).await
    }
}
