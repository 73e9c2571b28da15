//! The inbox: callbacks made durable before WeCom gets its 200.

use sqlx::SqliteConnection;

/// A callback ready to be stored.
#[derive(Debug, Clone)]
pub struct NewInboxEvent<'a> {
    pub source: &'a str,
    pub kind: &'a str,
    pub dedupe_key: &'a str,
    pub received_at: i64,
    pub event_json: &'a str,
    pub chat_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    Duplicate,
}

/// Inserts the event unless its dedupe key is already known.
pub async fn insert_event(
    conn: &mut SqliteConnection,
    event: &NewInboxEvent<'_>,
) -> sqlx::Result<Inserted> {
    let id: Option<i64> = sqlx::query_scalar(
        "insert into inbox (source, kind, dedupe_key, received_at, event_json, chat_id)
         values (?, ?, ?, ?, ?, ?)
         on conflict (dedupe_key) do nothing
         returning id",
    )
    .bind(event.source)
    .bind(event.kind)
    .bind(event.dedupe_key)
    .bind(event.received_at)
    .bind(event.event_json)
    .bind(event.chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map_or(Inserted::Duplicate, Inserted::New))
}

/// A stored inbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub dedupe_key: String,
    pub received_at: i64,
    pub event_json: String,
    pub chat_id: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// All inbox rows in arrival order (tests and the admin view).
pub async fn list_all(conn: &mut SqliteConnection) -> sqlx::Result<Vec<InboxRow>> {
    sqlx::query_as(
        "select id, source, kind, dedupe_key, received_at, event_json, chat_id, status, attempts, last_error
         from inbox order by id",
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn count(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from inbox")
        .fetch_one(&mut *conn)
        .await
}

// --- used by the pipeline worker -------------------------------------------

/// The oldest pending rows, in arrival order.
pub async fn pending(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<InboxRow>> {
    sqlx::query_as(
        "select id, source, kind, dedupe_key, received_at, event_json, chat_id, status, attempts, last_error
         from inbox where status = 'pending' order by id limit ?",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Marks a row processed (inside the transaction that applied its effects).
/// `false` if it was no longer pending (someone else finished it first).
pub async fn mark_done(conn: &mut SqliteConnection, id: i64, at: i64) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update inbox set status = 'done', processed_at = ?, last_error = null where id = ? and status = 'pending'",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Counts a failed attempt; parks the row once `max_attempts` is reached.
/// Returns the new status.
pub async fn record_failure(
    conn: &mut SqliteConnection,
    id: i64,
    error: &str,
    max_attempts: i64,
    at: i64,
) -> sqlx::Result<String> {
    sqlx::query_scalar(
        "update inbox set attempts = attempts + 1, last_error = ?,
            status = case when attempts + 1 >= ? then 'parked' else 'pending' end,
            processed_at = case when attempts + 1 >= ? then ? else processed_at end
         where id = ? returning status",
    )
    .bind(error)
    .bind(max_attempts)
    .bind(max_attempts)
    .bind(at)
    .bind(id)
    .fetch_one(&mut *conn)
    .await
}

/// Puts a parked row back in the queue (after a manager fixed the cause).
pub async fn requeue(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update inbox set status = 'pending', attempts = 0 where id = ? and status = 'parked'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
