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
