//! A manager's manual points entry.

use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::{self, points};

/// Adds (or, negative, deducts) points for a known member, with a reason kept
/// in the ledger and the audit log. Refuses a debit the balance does not
/// cover. Returns the new balance.
pub async fn adjust(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    user_id: &str,
    delta: i64,
    reason: &str,
) -> OpsResult<i64> {
    actor.require(Role::Operator)?;
    let reason = reason.trim();
    if delta == 0 {
        return Err(OpsError::invalid("delta", "must not be zero"));
    }
    if delta.unsigned_abs() > ops.max_point_adjustment.unsigned_abs() {
        return Err(OpsError::invalid(
            "delta",
            format!(
                "at most {} points at a time (admin.max_point_adjustment)",
                ops.max_point_adjustment
            ),
        ));
    }
    if reason.is_empty() {
        return Err(OpsError::invalid("reason", "a reason is required"));
    }
    let day = ops.in_force().await?.rules.community_day(now);
    let mut tx = ops.begin().await?;
    // A typo must not open a ledger for somebody who does not exist.
    if !store::admin::person_exists(&mut tx, user_id).await? {
        return Err(OpsError::not_found(format!("member {user_id}")));
    }
    // Each adjustment is its own effect: a random part keeps two identical
    // adjustments in the same second from collapsing into one.
    let reference = format!(
        "manual:{user_id}:{}:{:016x}",
        now.timestamp(),
        rand::random::<u64>()
    );
    let entry = points::NewLedgerEntry {
        user_id,
        delta,
        reason: &format!("manual: {reason}"),
        reference: &reference,
        chat_id: None,
        day,
        at: now,
    };
    match points::append(&mut tx, &entry).await? {
        points::Appended::New(_) => {}
        points::Appended::InsufficientBalance => {
            return Err(OpsError::invalid(
                "delta",
                format!("the balance of {user_id} does not cover {delta}"),
            ))
        }
        points::Appended::Duplicate => {
            return Err(anyhow::anyhow!("ledger reference {reference} already used").into())
        }
    }
    let balance = points::balance(&mut tx, user_id).await?;
    audit(
        &mut tx,
        actor,
        now,
        "points.adjust",
        user_id,
        &format!("{delta:+} ({reason})"),
    )
    .await?;
    tx.commit().await?;
    Ok(balance)
}

/// Writes off the points expired by `now` (`[points.expiry]`), or with
/// `dry_run` only lists them. The same pass the background job makes; a real
/// run is audited (with how many members and points).
pub async fn expire(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    dry_run: bool,
) -> OpsResult<Vec<crate::jobs::expiry::PlannedExpiry>> {
    actor.require(if dry_run {
        Role::Viewer
    } else {
        Role::Operator
    })?;
    let rules = ops.in_force().await?.rules;
    let mut tx = ops.begin().await?;
    let done = crate::jobs::expiry::expire_due(&mut tx, &rules, now, dry_run).await?;
    if dry_run {
        return Ok(done);
    }
    let points: i64 = done.iter().map(|d| d.points).sum();
    audit(
        &mut tx,
        actor,
        now,
        "points.expire",
        "",
        &format!("{} entries, {points} points", done.len()),
    )
    .await?;
    tx.commit().await?;
    Ok(done)
}
