//! The inbox: callbacks made durable before WeCom gets its 200.

use std::fmt;

use sqlx::SqliteConnection;

/// Where a row stands. `pending` rows wait for the pipeline (a failed attempt
/// leaves the row pending until its attempts run out); `parked` rows wait for
/// a manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InboxStatus {
    Pending,
    Done,
    Parked,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Done => "done",
            InboxStatus::Parked => "parked",
        }
    }
}

impl fmt::Display for InboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a row holds: one kind per callback shape (`wecom::message::Event`),
/// plus messages from the archive ingest endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InboxKind {
    ChangeExternalChat,
    ChangeExternalContact,
    AppText,
    EnterAgent,
    BotMessage,
    BotStreamRefresh,
    BotEvent,
    Unknown,
    IngestMessage,
}

impl InboxKind {
    pub const ALL: [InboxKind; 9] = [
        InboxKind::ChangeExternalChat,
        InboxKind::ChangeExternalContact,
        InboxKind::AppText,
        InboxKind::EnterAgent,
        InboxKind::BotMessage,
        InboxKind::BotStreamRefresh,
        InboxKind::BotEvent,
        InboxKind::Unknown,
        InboxKind::IngestMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::ChangeExternalChat => "change_external_chat",
            InboxKind::ChangeExternalContact => "change_external_contact",
            InboxKind::AppText => "app_text",
            InboxKind::EnterAgent => "enter_agent",
            InboxKind::BotMessage => "bot_message",
            InboxKind::BotStreamRefresh => "bot_stream_refresh",
            InboxKind::BotEvent => "bot_event",
            InboxKind::Unknown => "unknown",
            InboxKind::IngestMessage => "ingest_message",
        }
    }

    /// The kind a parsed callback is stored as.
    pub fn of(event: &crate::wecom::message::Event) -> InboxKind {
        use crate::wecom::message::Event;
        match event {
            Event::ExternalChatChange(_) => InboxKind::ChangeExternalChat,
            Event::ExternalContactChange(_) => InboxKind::ChangeExternalContact,
            Event::AppText(_) => InboxKind::AppText,
            Event::EnterAgent(_) => InboxKind::EnterAgent,
            Event::BotMessage(_) => InboxKind::BotMessage,
            Event::BotStreamRefresh(_) => InboxKind::BotStreamRefresh,
            Event::BotEvent(_) => InboxKind::BotEvent,
            Event::Unknown { .. } => InboxKind::Unknown,
        }
    }
}

impl fmt::Display for InboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown inbox kind {0:?}")]
pub struct UnknownKind(String);

impl std::str::FromStr for InboxKind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        InboxKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownKind(text.to_owned()))
    }
}

/// A callback ready to be stored.
#[derive(Debug, Clone)]
pub struct NewInboxEvent<'a> {
    pub source: &'a str,
    pub kind: InboxKind,
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
    pub kind: InboxKind,
    pub dedupe_key: String,
    pub received_at: i64,
    pub event_json: String,
    pub chat_id: Option<String>,
    pub status: InboxStatus,
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
) -> sqlx::Result<InboxStatus> {
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

/// Parks a pending row at once, whatever its attempts (handling it panicked:
/// retrying would only panic again). `false` if it was no longer pending.
pub async fn park(
    conn: &mut SqliteConnection,
    id: i64,
    reason: &str,
    at: i64,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update inbox set status = 'parked', attempts = attempts + 1, last_error = ?, processed_at = ?
         where id = ? and status = 'pending'",
    )
    .bind(reason)
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// When the oldest pending row arrived (unix seconds), if any: `/readyz`
/// reports a backlog older than its limit.
pub async fn oldest_pending_received_at(conn: &mut SqliteConnection) -> sqlx::Result<Option<i64>> {
    // Rows arrive in id order: the first pending id is the oldest (index inbox_pending).
    sqlx::query_scalar("select received_at from inbox where status = 'pending' order by id limit 1")
        .fetch_optional(&mut *conn)
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
