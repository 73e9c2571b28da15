//! Watches the review queue's SLAs (`[moderation.review]`): an item still
//! open past its tier's time raises one alert to the admins. The item keeps
//! which tier's breach was alerted and the message's key is
//! `review_sla:<item>:<tier>`, so a breach alerts once however often this
//! runs; an escalated item can alert once more for the owner tier.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::jobs::Job;
use crate::rules::review::{self, Tier};
use crate::rules::{Content, Outbound};
use crate::store::{outbox, review as store};

pub struct ReviewSla {
    pool: SqlitePool,
    rules: ActiveRules,
}

impl ReviewSla {
    pub fn new(pool: SqlitePool, rules: ActiveRules) -> Self {
        Self { pool, rules }
    }

    /// Alerts every breach not alerted yet; returns how many alerts were queued.
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rules = self.rules.get(&mut tx).await?;
        let doc = &rules.doc.moderation.review;
        let app = rules.doc.community.app.clone();
        let recipients = review::sla_recipients(&rules);
        let mut alerted = 0;
        for item in store::list(&mut tx, false, None).await? {
            let Some(tier) = Tier::parse(&item.tier) else {
                continue;
            };
            let Some(since) = DateTime::from_timestamp(item.tier_since, 0) else {
                continue;
            };
            let before = item.sla_alerted_tier.as_deref().and_then(Tier::parse);
            if !review::needs_alert(doc, tier, since, before, now) {
                continue;
            }
            if !store::mark_alerted(&mut tx, item.id, tier.as_str()).await? {
                continue;
            }
            let text = review::sla_alert_text(
                &rules.doc.community.name,
                item.id,
                &item.kind,
                tier,
                &item.user_id,
                tier.sla(doc).num_hours(),
            );
            let message = Outbound::decided(
                format!("review_sla:{}:{}", item.id, tier.as_str()),
                crate::rules::route::route_to_members(&app, &recipients, review::NO_OWNER_TIER),
                Content::text(text),
            );
            outbox::enqueue(&mut tx, &message, &app, now).await?;
            alerted += 1;
        }
        tx.commit().await?;
        if alerted > 0 {
            tracing::warn!(alerted, "review items past their SLA");
        }
        Ok(alerted)
    }
}

impl Job for ReviewSla {
    type Outcome = usize;

    fn name(&self) -> &'static str {
        "review_sla"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        self.run_at(now).await
    }
}
