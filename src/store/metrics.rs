//! What `/metrics` reads from the database at scrape time.

use sqlx::SqliteConnection;

/// The inbox's waiting work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxBacklog {
    pub pending: i64,
    pub parked: i64,
    /// `received_at` of the oldest pending event.
    pub oldest_received_at: Option<i64>,
}

pub async fn inbox_backlog(conn: &mut SqliteConnection) -> sqlx::Result<InboxBacklog> {
    // Both counts walk only their part of index inbox_pending (status, id).
    let pending: i64 = sqlx::query_scalar("select count(*) from inbox where status = 'pending'")
        .fetch_one(&mut *conn)
        .await?;
    let parked: i64 = sqlx::query_scalar("select count(*) from inbox where status = 'parked'")
        .fetch_one(&mut *conn)
        .await?;
    let oldest_received_at = super::inbox::oldest_pending_received_at(conn).await?;
    Ok(InboxBacklog {
        pending,
        parked,
        oldest_received_at,
    })
}

/// Outbox rows of one route in one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxCount {
    pub route: String,
    pub status: String,
    pub rows: i64,
}

pub async fn outbox_counts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<OutboxCount>> {
    sqlx::query_as(
        "select route, status, count(*) as rows from outbox group by route, status order by route, status",
    )
    .fetch_all(&mut *conn)
    .await
}
