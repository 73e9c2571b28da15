//! Queries behind invite rewards.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::SqliteConnection;

use crate::rules::invites::InviteCandidate;

/// Members who joined through an invitation at or before `joined_before` and
/// whose invitation has not been rewarded yet (no `invite:<invitee>` ledger row).
pub async fn unrewarded_invites(
    conn: &mut SqliteConnection,
    joined_before: DateTime<Utc>,
) -> sqlx::Result<Vec<InviteCandidate>> {
    let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "select m.chat_id, m.user_id, m.inviter, m.joined_at, m.left_at
         from chat_members m
         where m.inviter is not null and m.inviter <> '' and m.inviter <> m.user_id
           and m.joined_at <= ?
           and not exists (select 1 from points_ledger l where l.reference = 'invite:' || m.user_id)
         order by m.joined_at, m.user_id",
    )
    .bind(joined_before.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(chat_id, invitee, inviter, joined_at, left_at)| InviteCandidate {
                chat_id,
                invitee,
                inviter,
                joined_at: Utc.timestamp_opt(joined_at, 0).single().unwrap_or_default(),
                left_at: left_at.and_then(|t| Utc.timestamp_opt(t, 0).single()),
            },
        )
        .collect())
}
