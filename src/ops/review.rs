//! Review in tiers: what an operator or owner decides about a queued item
//! (see `rules::review`). Fuzzy hits and reported messages start with an
//! operator, who confirms (the member gets a strike), dismisses, or escalates
//! to an owner; appeals start with an owner, who upholds the punishment or
//! overturns it (the strike is revoked). Items in the owner tier need the
//! owner role. Every decision is audited with the member as the target, in
//! the same transaction as its effects.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::moderate::ModerationRecord;
use crate::rules::moderation::Severity;
use crate::rules::review::{self, Tier};
use crate::store::moderation as q;
use crate::store::review::{self as store, ReviewRow};

const NOTE_MAX_CHARS: usize = 500;

/// What a reviewer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    /// A hit or report: it was a violation; the member gets a strike.
    Confirm,
    /// A hit or report: no violation.
    Dismiss,
    /// From the operator tier to the owner tier.
    Escalate,
    /// An appeal: the punishment stands.
    Uphold,
    /// An appeal: the punishment is lifted (its strike revoked).
    Overturn,
}

impl ReviewDecision {
    pub fn parse(text: &str) -> Option<ReviewDecision> {
        match text {
            "confirm" => Some(ReviewDecision::Confirm),
            "dismiss" => Some(ReviewDecision::Dismiss),
            "escalate" => Some(ReviewDecision::Escalate),
            "uphold" => Some(ReviewDecision::Uphold),
            "overturn" => Some(ReviewDecision::Overturn),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Confirm => "confirm",
            ReviewDecision::Dismiss => "dismiss",
            ReviewDecision::Escalate => "escalate",
            ReviewDecision::Uphold => "uphold",
            ReviewDecision::Overturn => "overturn",
        }
    }

    /// The item's status afterwards (`open` for an escalation).
    fn status(self) -> &'static str {
        match self {
            ReviewDecision::Confirm => "confirmed",
            ReviewDecision::Dismiss => "dismissed",
            ReviewDecision::Escalate => "open",
            ReviewDecision::Uphold => "upheld",
            ReviewDecision::Overturn => "overturned",
        }
    }

    /// Decisions that change a member's record need a written reason.
    fn needs_note(self) -> bool {
        matches!(
            self,
            ReviewDecision::Confirm | ReviewDecision::Overturn | ReviewDecision::Escalate
        )
    }
}

/// An item as the console and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    #[serde(flatten)]
    pub row: ReviewRow,
    /// When the current tier's SLA runs out (unix seconds).
    pub due_at: i64,
    /// Open and past its SLA.
    pub overdue: bool,
}

/// Open items (every one with `all`), oldest first, with their SLA.
pub async fn list(ops: &Ops, now: DateTime<Utc>, all: bool) -> OpsResult<Vec<ReviewView>> {
    let rules = ops.in_force().await?.rules;
    let doc = &rules.doc.moderation.review;
    let mut conn = ops.pool.acquire().await?;
    let rows = store::list(&mut conn, all, None).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let tier = Tier::parse(&row.tier).unwrap_or(Tier::Operator);
            let since = DateTime::from_timestamp(row.tier_since, 0).unwrap_or(now);
            let due = review::due_by(doc, tier, since);
            ReviewView {
                overdue: row.status == "open" && now >= due,
                due_at: due.timestamp(),
                row,
            }
        })
        .collect())
}

/// Applies a reviewer's decision to item `id`; returns the item afterwards.
pub async fn decide(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
    decision: ReviewDecision,
    note: &str,
) -> OpsResult<ReviewRow> {
    actor.require(Role::Operator)?;
    let note = note.trim();
    if note.chars().count() > NOTE_MAX_CHARS {
        return Err(OpsError::invalid(
            "note",
            "the note is too long (at most 500 characters)",
        ));
    }
    if decision.needs_note() && note.is_empty() {
        return Err(OpsError::invalid(
            "note",
            format!("a reason is required to {}", decision.as_str()),
        ));
    }
    let rules = ops.in_force().await?.rules;
    let app = rules.doc.community.app.clone();
    let mut tx = ops.begin().await?;
    let item = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("review item {id}")))?;
    if item.status != "open" {
        return Err(OpsError::invalid(
            "id",
            format!("this item was already decided ({})", item.status),
        ));
    }
    let tier = Tier::parse(&item.tier).unwrap_or(Tier::Operator);
    if tier == Tier::Owner {
        actor.require(Role::Owner)?;
    }
    let is_appeal = item.kind == "appeal";
    let fits = match decision {
        ReviewDecision::Confirm | ReviewDecision::Dismiss => !is_appeal,
        ReviewDecision::Uphold | ReviewDecision::Overturn => is_appeal,
        ReviewDecision::Escalate => tier == Tier::Operator,
    };
    if !fits {
        let what = if decision == ReviewDecision::Escalate {
            "this item is already with an owner".to_string()
        } else if is_appeal {
            "an appeal is upheld or overturned".to_string()
        } else {
            "a hit or report is confirmed, dismissed or escalated".to_string()
        };
        return Err(OpsError::invalid("decision", what));
    }

    match decision {
        ReviewDecision::Escalate => {
            store::escalate(&mut tx, id, now).await?;
            let text = format!(
                "【升级复核】#{id}（{}，成员 {}）由 {} 升级给负责人：{note}。摘录：{}",
                item.kind, item.user_id, actor.name, item.excerpt
            );
            let message = review::to_owner_tier(&rules, format!("review:escalated:{id}"), text);
            crate::store::outbox::enqueue(&mut tx, &message, &app, now).await?;
        }
        _ => {
            store::decide(&mut tx, id, decision.status(), &actor.name, note, now).await?;
        }
    }
    match decision {
        ReviewDecision::Confirm => {
            let record = ModerationRecord {
                event_id: format!("review:{id}"),
                at: now,
                chat_id: item.chat_id.clone(),
                user_id: item.user_id.clone(),
                rule: "review".to_owned(),
                category: item.kind.clone(),
                severity: Severity::Medium,
                matched: String::new(),
                excerpt: item.excerpt.clone(),
                action_taken: format!("strike by {}", actor.name),
                dry_run: false,
                strike: true,
                task: None,
            };
            q::record_decision(&mut tx, &record).await?;
            close_reports(&mut tx, &item, &actor.name, now).await?;
        }
        ReviewDecision::Dismiss => close_reports(&mut tx, &item, &actor.name, now).await?,
        ReviewDecision::Overturn => {
            if let Some(log_id) = item.log_id {
                store::revoke_strikes_of_log(&mut tx, log_id, &actor.name, note, now).await?;
            }
        }
        ReviewDecision::Uphold | ReviewDecision::Escalate => {}
    }
    if let Some(task_id) = item
        .task_id
        .filter(|_| decision != ReviewDecision::Escalate)
    {
        // The moderation task behind the item is done too (false: already done).
        q::complete_task(&mut tx, task_id, &actor.name, note, now).await?;
    }
    if is_appeal {
        let answer = match decision {
            ReviewDecision::Overturn => "你的申诉已通过，相关处罚已撤销。",
            _ => "你的申诉经负责人复核，维持原处罚。",
        };
        let message = crate::rules::Outbound::decided(
            format!("review:answer:{id}"),
            crate::rules::route::route_to_members(
                &app,
                std::slice::from_ref(&item.user_id),
                review::NO_OWNER_TIER,
            ),
            crate::rules::Content::text(answer),
        );
        crate::store::outbox::enqueue(&mut tx, &message, &app, now).await?;
    }
    audit(
        &mut tx,
        actor,
        now,
        &format!("review.{}", decision.as_str()),
        &item.user_id,
        &format!("item {id} ({}, {} tier): {note}", item.kind, item.tier),
    )
    .await?;
    let after = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("review item {id}")))?;
    tx.commit().await?;
    Ok(after)
}

/// A decided report closes the member's open reports in that chat.
async fn close_reports(
    tx: &mut sqlx::SqliteConnection,
    item: &ReviewRow,
    by: &str,
    now: DateTime<Utc>,
) -> OpsResult<()> {
    let Some(chat_id) = item.chat_id.as_deref().filter(|_| item.kind == "report") else {
        return Ok(());
    };
    for group in q::open_report_groups(tx, 500).await? {
        if group.chat_id == chat_id && group.author.as_deref() == Some(item.user_id.as_str()) {
            q::handle_reports(tx, chat_id, group.fingerprint, by, "review", now).await?;
        }
    }
    Ok(())
}
