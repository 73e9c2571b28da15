//! 精华 from the console, the API and the CLI, and the honour board as it
//! stands: one implementation shared by every door (the smart bot's `加精`
//! goes through the same `rules::ugc::essence`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::honour::{period_containing, render};
use crate::store::honour::{self, PostRow};

/// Messages shown on a member's page.
const MEMBER_POSTS: i64 = 20;

/// What marking a message 精华 did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EssenceOutcome {
    pub message_id: String,
    pub author: String,
    /// Points paid now; 0 when the message already was 精华.
    pub points: i64,
    pub already: bool,
    /// A badge this 精华 unlocked; empty otherwise.
    pub badge: String,
    /// The level reached; empty when it did not change.
    pub level_up: String,
}

/// Marks a remembered group message 精华 and pays its author, once per message.
pub async fn mark_essence(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    message_id: &str,
) -> OpsResult<EssenceOutcome> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    if rules.doc.ugc.essence_points <= 0 {
        return Err(OpsError::invalid(
            "message_id",
            "精华 is off ([ugc] essence_points = 0)",
        ));
    }
    let mut tx = ops.begin().await?;
    let Some(post) = honour::post_by_id(&mut tx, message_id.trim()).await? else {
        return Err(OpsError::not_found(format!("message {message_id}")));
    };
    let target = crate::snapshot::featured_target(&mut tx, &rules, post, now).await?;
    let decision = crate::rules::ugc::essence(&rules, &target, &actor.name, now);
    // No message goes out here: the actions are the mark, the ledger entry
    // and badges only (the app name is unused).
    crate::pipeline::apply(&mut tx, &rules.doc.community.app, &decision.actions, now).await?;
    let outcome = EssenceOutcome {
        message_id: target.message_id.clone(),
        author: target.author.user_id.clone(),
        points: decision.reward.as_ref().map_or(0, |r| r.points),
        already: decision.reward.is_none(),
        badge: decision
            .reward
            .as_ref()
            .map(|r| r.badge.clone())
            .unwrap_or_default(),
        level_up: decision
            .reward
            .as_ref()
            .map(|r| r.level_up.clone())
            .unwrap_or_default(),
    };
    if !outcome.already {
        audit(
            &mut tx,
            actor,
            now,
            "essence.mark",
            &outcome.message_id,
            &format!("author {} +{}", outcome.author, outcome.points),
        )
        .await?;
    }
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(outcome)
}

/// A member's latest remembered group messages (ids only, never text).
pub async fn member_posts(ops: &Ops, user_id: &str) -> OpsResult<Vec<PostRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(honour::posts_by(&mut conn, user_id, MEMBER_POSTS).await?)
}

/// The first board over its current period so far, as 荣誉榜 answers.
pub async fn current_board(ops: &Ops, now: DateTime<Utc>) -> OpsResult<String> {
    let rules = ops.in_force().await?.rules;
    let board = rules.doc.honour.boards.first().cloned().unwrap_or_default();
    let period = period_containing(board.period, rules.community_day(now));
    let mut conn = ops.pool.acquire().await?;
    let data = honour::board_data(&mut conn, &period).await?;
    Ok(render(&rules, &board, &data))
}
