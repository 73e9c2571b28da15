//! Redemptions a manager cancels: the points go back through the ledger, the
//! unit goes back to stock (a stock event), and the member is told 1:1.

use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::route::route_to_members;
use crate::rules::templates::RedeemCancelledVars;
use crate::rules::{Content, Outbound};
use crate::store;
use crate::store::points::{Appended, NewLedgerEntry};

/// Cancels pending redemption `id`: refund, restock, tell the member, audit.
/// Returns the points refunded.
pub async fn cancel(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
    reason: &str,
) -> OpsResult<i64> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    let mut tx = ops.begin().await?;
    let Some(redemption) = store::redemptions::get(&mut tx, id).await? else {
        return Err(OpsError::not_found(format!("redemption {id}")));
    };
    if !store::redemptions::cancel(&mut tx, id, &redemption.item, now).await? {
        return Err(OpsError::invalid(
            "redemption",
            format!(
                "redemption {id} is {}, only a pending one can be cancelled",
                redemption.status
            ),
        ));
    }
    let reference = format!("redeem_cancel:{id}");
    let refund = NewLedgerEntry {
        user_id: &redemption.user_id,
        delta: redemption.cost,
        reason: "redeem_refund",
        reference: &reference,
        chat_id: None,
        day: rules.community_day(now),
        at: now,
    };
    if store::points::append(&mut tx, &refund).await? == Appended::Duplicate {
        return Err(OpsError::invalid("redemption", "already refunded"));
    }
    let balance = store::points::balance(&mut tx, &redemption.user_id).await?;
    let name = store::members::person_name(&mut tx, &redemption.user_id)
        .await?
        .unwrap_or_else(|| redemption.user_id.clone());
    let text = rules.render(
        "redeem_cancelled",
        &RedeemCancelledVars {
            name,
            item: redemption.item.clone(),
            refund: redemption.cost,
            balance,
        },
    );
    let app = rules.doc.community.app.clone();
    let notice = Outbound::decided(
        reference.clone(),
        route_to_members(&app, std::slice::from_ref(&redemption.user_id), ""),
        Content::text(text),
    );
    store::outbox::enqueue(&mut tx, &notice, &app, now).await?;
    let detail = if reason.trim().is_empty() {
        format!(
            "{} for {} refunded {}",
            redemption.item, redemption.user_id, redemption.cost
        )
    } else {
        format!(
            "{} for {} refunded {}: {}",
            redemption.item,
            redemption.user_id,
            redemption.cost,
            reason.trim()
        )
    };
    audit(
        &mut tx,
        actor,
        now,
        "redemption.cancel",
        &id.to_string(),
        &detail,
    )
    .await?;
    tx.commit().await?;
    Ok(redemption.cost)
}
