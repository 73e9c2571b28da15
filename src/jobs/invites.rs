//! Pays invite rewards that have become due (see `rules::invites`). Each reward
//! is a ledger row with the unique reference `invite:<invitee>`, so running this
//! twice, or after a crash, pays nothing twice.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::Duration;
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::rules::checkin::community_day;
use crate::rules::invites::{due_rewards, REASON};
use crate::rules::RuleSet;
use crate::store::{invites, points, rule_sets};

pub struct InviteRewards {
    pool: SqlitePool,
    clock: SharedClock,
}

impl InviteRewards {
    pub fn new(pool: SqlitePool, clock: SharedClock) -> Self {
        Self { pool, clock }
    }

    /// Pays every reward due now in one transaction; returns how many were paid.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rules = match rule_sets::active(&mut tx).await? {
            Some(stored) => RuleSet::from_toml(&stored.body)
                .map_err(|e| anyhow::anyhow!("active rule set: {e}"))?,
            None => RuleSet::builtin(),
        };
        if rules.doc.points.invite <= 0 {
            return Ok(0);
        }
        let stay = Duration::hours(i64::from(rules.doc.points.invite_min_stay_hours));
        let candidates = invites::unrewarded_invites(&mut tx, now - stay)
            .await
            .context("loading invite candidates")?;
        let day = community_day(now, rules.timezone, rules.doc.community.day_cutover_hour);
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
