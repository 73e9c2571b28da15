//! The review queue in tiers (`review_items`): moderation review tasks (fuzzy
//! hits, reported messages) in the operator tier, escalations and appeals in
//! the owner tier, with when each reached its tier (the SLA's start) and
//! which tier's breach was already alerted.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::rules::moderate::ModerationRecord;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ReviewRow {
    pub id: i64,
    pub kind: String,
    pub task_id: Option<i64>,
    pub log_id: Option<i64>,
    pub chat_id: Option<String>,
    pub user_id: String,
    pub excerpt: String,
    pub tier: String,
    pub tier_since: i64,
    pub sla_alerted_tier: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
}

const COLUMNS: &str = "id, kind, task_id, log_id, chat_id, user_id, excerpt, tier, tier_since,
     sla_alerted_tier, status, created_at, decided_at, decided_by, note";

/// Opens the operator-tier item of a review task just written (called where
/// the task is written, so every review task has one).
pub async fn open_for_task(
    conn: &mut SqliteConnection,
    task_id: i64,
    log_id: i64,
    record: &ModerationRecord,
) -> sqlx::Result<()> {
    let kind = if record.rule == "report" {
        "report"
    } else {
        "hit"
    };
    sqlx::query(
        "insert into review_items (source_key, kind, task_id, log_id, chat_id, user_id, excerpt,
             tier, tier_since, created_at)
         values (?, ?, ?, ?, ?, ?, ?, 'operator', ?, ?)
         on conflict (source_key) do nothing",
    )
    .bind(format!("task:{task_id}"))
    .bind(kind)
    .bind(task_id)
    .bind(log_id)
    .bind(&record.chat_id)
    .bind(&record.user_id)
    .bind(&record.excerpt)
    .bind(record.at.timestamp())
    .bind(record.at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub struct NewAppeal<'a> {
    pub source_key: &'a str,
    pub user_id: &'a str,
    pub chat_id: Option<&'a str>,
    pub why: &'a str,
    pub at: DateTime<Utc>,
}

/// Opens an appeal in the owner tier against the member's newest active
/// strike; `false` (nothing written) when there is none, when an appeal of
/// theirs is still open, or when this message already opened one.
pub async fn open_appeal(
    conn: &mut SqliteConnection,
    appeal: &NewAppeal<'_>,
) -> sqlx::Result<bool> {
    let id: Option<i64> = sqlx::query_scalar(
        "insert into review_items (source_key, kind, log_id, chat_id, user_id, excerpt, tier,
             tier_since, created_at)
         select ?1, 'appeal', s.log_id, coalesce(?3, s.chat_id), ?2, ?4, 'owner', ?5, ?5
         from moderation_strikes s
         where s.user_id = ?2 and s.revoked_at is null
           and not exists (select 1 from review_items r
                           where r.user_id = ?2 and r.kind = 'appeal' and r.status = 'open')
         order by s.at desc, s.id desc limit 1
         on conflict (source_key) do nothing
         returning id",
    )
    .bind(appeal.source_key)
    .bind(appeal.user_id)
    .bind(appeal.chat_id)
    .bind(appeal.why)
    .bind(appeal.at.timestamp())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.is_some())
}

/// Items, oldest first: open ones (optionally of one tier), or with `all` every one.
pub async fn list(
    conn: &mut SqliteConnection,
    all: bool,
    tier: Option<&str>,
) -> sqlx::Result<Vec<ReviewRow>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from review_items
         where (?1 or status = 'open') and (?2 is null or tier = ?2)
         order by id limit 500"
    ))
    .bind(all)
    .bind(tier)
    .fetch_all(&mut *conn)
    .await
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<ReviewRow>> {
    sqlx::query_as(&format!("select {COLUMNS} from review_items where id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Moves an open operator-tier item to the owner tier; its SLA restarts.
pub async fn escalate(
    conn: &mut SqliteConnection,
    id: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update review_items set tier = 'owner', tier_since = ?
         where id = ? and status = 'open' and tier = 'operator'",
    )
    .bind(now.timestamp())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes an open item with its outcome; `false` when it was not open.
pub async fn decide(
    conn: &mut SqliteConnection,
    id: i64,
    status: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update review_items set status = ?, decided_by = ?, note = ?, decided_at = ?
         where id = ? and status = 'open'",
    )
    .bind(status)
    .bind(by)
    .bind(note)
    .bind(now.timestamp())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the breach of the item's current tier was alerted; `false`
/// when it already was (so a breach alerts once, whatever the tick).
pub async fn mark_alerted(conn: &mut SqliteConnection, id: i64, tier: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update review_items set sla_alerted_tier = ?1
         where id = ?2 and status = 'open' and tier = ?1 and sla_alerted_tier is not ?1",
    )
    .bind(tier)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes the active strikes written with one log entry (an appeal granted).
pub async fn revoke_strikes_of_log(
    conn: &mut SqliteConnection,
    log_id: i64,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "update moderation_strikes set revoked_at = ?, revoked_by = ?, revoke_reason = ?
         where log_id = ? and revoked_at is null",
    )
    .bind(now.timestamp())
    .bind(by)
    .bind(reason)
    .bind(log_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
