//! Polls (投票): create, list, show (live results), close. The poll job
//! (`jobs::polls`) opens and closes them on time; "close now" brings the
//! close time forward so the job announces the result on its next pass.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::polls::{self as rules_polls, PollSpec};
use crate::store::polls::{self, Poll, Vote};

/// A poll with its live results.
#[derive(Debug, Clone, Serialize)]
pub struct PollResults {
    pub poll: Poll,
    /// The chats it was opened in (empty while scheduled).
    pub opened_in: Vec<String>,
    /// Votes per option (index 0 = option 1).
    pub counts: Vec<u32>,
    pub voters: usize,
    pub votes: Vec<Vote>,
}

/// Creates a poll (operator or owner). Returns its id.
pub async fn create(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    spec: PollSpec,
) -> OpsResult<i64> {
    actor.require(Role::Operator)?;
    let spec = spec
        .validate()
        .map_err(|error| OpsError::invalid(error.field, error.reason))?;
    if spec.close_at <= now {
        return Err(OpsError::invalid("close_at", "must be in the future"));
    }
    let mut tx = ops.begin().await?;
    super::segments::require(&mut tx, spec.segment_id).await?;
    let id = polls::create(&mut tx, &spec, &actor.name, now).await?;
    let detail = format!(
        "{} ({} options, {} → {})",
        spec.question,
        spec.options.len(),
        spec.open_at.format("%Y-%m-%d %H:%M UTC"),
        spec.close_at.format("%Y-%m-%d %H:%M UTC")
    );
    audit(
        &mut tx,
        actor,
        now,
        "poll.create",
        &format!("poll:{id}"),
        &detail,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The newest polls first.
pub async fn list(ops: &Ops, actor: &Actor) -> OpsResult<Vec<Poll>> {
    actor.require(Role::Viewer)?;
    let mut conn = ops.pool.acquire().await?;
    Ok(polls::list(&mut conn, 200).await?)
}

/// One poll with its results so far.
pub async fn show(ops: &Ops, actor: &Actor, id: i64) -> OpsResult<PollResults> {
    actor.require(Role::Viewer)?;
    let mut conn = ops.pool.acquire().await?;
    let poll = polls::get(&mut conn, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("poll {id}")))?;
    let votes = polls::votes(&mut conn, id).await?;
    let ballots: Vec<Vec<u32>> = votes.iter().map(|v| v.options.clone()).collect();
    Ok(PollResults {
        counts: rules_polls::tally(poll.options.len(), &ballots),
        voters: votes.len(),
        opened_in: polls::chats(&mut conn, id).await?,
        poll,
        votes,
    })
}

/// Closes a poll now (operator or owner): the result goes out on the poll
/// job's next pass. Refused for a poll already closed.
pub async fn close(ops: &Ops, actor: &Actor, now: DateTime<Utc>, id: i64) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    if polls::get(&mut tx, id).await?.is_none() {
        return Err(OpsError::not_found(format!("poll {id}")));
    }
    if !polls::close_early(&mut tx, id, now).await? {
        return Err(OpsError::invalid(
            "id",
            format!("poll {id} is already closed"),
        ));
    }
    audit(
        &mut tx,
        actor,
        now,
        "poll.close",
        &format!("poll:{id}"),
        "closed now",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
