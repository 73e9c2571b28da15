//! Pays invite rewards that have become due (see `rules::invites`). Each reward
//! is a ledger row with the unique reference `invite:<invitee>`, so running this
//! twice, or after a crash, pays nothing twice.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::clock::SharedClock;
use crate::jobs::Job;
use crate::rules::invites::{due_rewards, REASON};
use crate::store::{invites, points};

pub struct InviteRewards {
    pool: SqlitePool,
    clock: SharedClock,
    rules: ActiveRules,
}

impl InviteRewards {
    pub fn new(pool: SqlitePool, clock: SharedClock) -> Self {
        Self {
            pool,
            clock,
            rules: ActiveRules::new(),
        }
    }

    /// Shares the service's active-rules cache (`new` starts a private one).
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    /// [`run_at`](Self::run_at) the clock's now.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        self.run_at(self.clock.now()).await
    }

    /// Pays every reward due at `now` in one transaction; returns how many were paid.
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rules = self.rules.get(&mut tx).await?;
        if rules.doc.points.invite <= 0 {
            return Ok(0);
        }
        let stay = Duration::hours(i64::from(rules.doc.points.invite_min_stay_hours));
        let candidates = invites::unrewarded_invites(&mut tx, now - stay)
            .await
            .context("loading invite candidates")?;
        let day = rules.community_day(now);
        let mut earned_today = BTreeMap::new();
        for candidate in &candidates {
            if !earned_today.contains_key(&candidate.inviter) {
                let earned = points::earned_on_day(&mut tx, &candidate.inviter, day).await?;
                earned_today.insert(
                    candidate.inviter.clone(),
                    earned.get(REASON).copied().unwrap_or(0),
                );
            }
        }
        let rewards = due_rewards(&rules, &candidates, &earned_today, now);
        let mut paid = 0;
        for reward in &rewards {
            let entry = points::NewLedgerEntry {
                user_id: &reward.inviter,
                delta: reward.points,
                reason: REASON,
                reference: &reward.reference,
                chat_id: Some(&reward.chat_id),
                day: reward.day,
                at: now,
            };
            if let points::Appended::New(_) = points::append(&mut tx, &entry).await? {
                paid += 1;
            }
        }
        tx.commit().await?;
        if paid > 0 {
            tracing::info!(paid, "invite rewards paid");
        }
        Ok(paid)
    }
}

impl Job for InviteRewards {
    type Outcome = usize;

    fn name(&self) -> &'static str {
        "invite_rewards"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        self.run_at(now).await
    }
}
