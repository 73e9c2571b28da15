//! The queues a manager works: pending redemptions, inbox events the pipeline
//! parked, and outbox rows that failed or died.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::admin::ParkedEventRow;
use crate::store::outbox::{OutboxRow, OutboxStatus, RetryOutcome};
use crate::store::redemptions::RedemptionRow;
use crate::store::{self};

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

impl DeadLetter {
    /// Cut off mid-send: WeCom may already have delivered it.
    pub fn is_uncertain(&self) -> bool {
        self.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("uncertain:"))
    }
}

/// Redemptions, optionally only those with `status` (e.g. `pending`).
pub async fn redemptions(ops: &Ops, status: Option<&str>) -> OpsResult<Vec<RedemptionRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::redemptions::list(&mut conn, status).await?)
}

/// Inbox events the pipeline gave up on.
pub async fn parked_events(ops: &Ops) -> OpsResult<Vec<ParkedEventRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::admin::parked_events(&mut conn).await?)
}

/// Outbox rows, optionally only those with `status`, newest first.
pub async fn outbox_rows(ops: &Ops, status: Option<OutboxStatus>) -> OpsResult<Vec<OutboxRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::outbox::list(&mut conn, status).await?)
}

/// Delivered, delivered (confirmed by refusal), uncertain, dead and failed
/// outbox rows, counted apart.
pub async fn delivery_counts(ops: &Ops) -> OpsResult<store::outbox::DeliveryCounts> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::outbox::delivery_counts(&mut conn).await?)
}

pub async fn dead_letters(ops: &Ops) -> OpsResult<Vec<DeadLetter>> {
    let mut conn = ops.pool.acquire().await?;
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

/// A manager's action on one queued item, named by its id: the console's
/// buttons and the API's `…/{id}/…` endpoints all go through [`ItemAction::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemAction {
    FulfilRedemption,
    RetryParked,
    RetryOutbox,
}

impl ItemAction {
    /// The item's status once the action is done.
    pub fn status_after(self) -> &'static str {
        match self {
            ItemAction::FulfilRedemption => "fulfilled",
            ItemAction::RetryParked | ItemAction::RetryOutbox => "pending",
        }
    }

    pub async fn apply(
        self,
        ops: &Ops,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
    ) -> OpsResult<()> {
        match self {
            ItemAction::FulfilRedemption => fulfil_redemption(ops, actor, now, id).await,
            ItemAction::RetryParked => retry_parked(ops, actor, now, id).await,
            ItemAction::RetryOutbox => retry_outbox(ops, actor, now, id).await,
        }
    }
}

/// The member got the item.
pub async fn fulfil_redemption(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    if !store::redemptions::mark_fulfilled(&mut tx, id, now).await? {
        return Err(OpsError::not_found(format!("pending redemption {id}")));
    }
    audit(
        &mut tx,
        actor,
        now,
        "redemption.fulfil",
        &id.to_string(),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives a parked inbox event to the pipeline again.
pub async fn retry_parked(ops: &Ops, actor: &Actor, now: DateTime<Utc>, id: i64) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    if !store::inbox::requeue(&mut tx, id).await? {
        return Err(OpsError::not_found(format!("parked inbox event {id}")));
    }
    audit(&mut tx, actor, now, "inbox.retry", &id.to_string(), "").await?;
    tx.commit().await?;
    Ok(())
}

/// Requeues a failed or dead outbox row, due now, with a fresh attempt budget.
pub async fn retry_outbox(ops: &Ops, actor: &Actor, now: DateTime<Utc>, id: i64) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    match store::outbox::retry(&mut tx, id, now.timestamp()).await? {
        RetryOutcome::Requeued => {}
        RetryOutcome::NotFound => return Err(OpsError::not_found(format!("outbox row {id}"))),
        RetryOutcome::NotRetryable(status) => {
            return Err(OpsError::invalid(
                "id",
                format!("only failed or dead messages can be retried (this one is {status})"),
            ))
        }
    }
    audit(&mut tx, actor, now, "outbox.retry", &id.to_string(), "").await?;
    tx.commit().await?;
    Ok(())
}

/// Requeues every dead letter parked as uncertain (cut off mid-send on a route
/// WeCom does not deduplicate), once someone has checked the chats. Returns
/// how many were requeued; audited even when none were.
pub async fn retry_uncertain(ops: &Ops, actor: &Actor, now: DateTime<Utc>) -> OpsResult<u64> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    let requeued = store::outbox::retry_uncertain(&mut tx, now.timestamp()).await?;
    audit(
        &mut tx,
        actor,
        now,
        "outbox.retry_uncertain",
        "",
        &format!("{requeued} messages"),
    )
    .await?;
    tx.commit().await?;
    Ok(requeued)
}
