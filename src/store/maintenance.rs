//! Backups, integrity checks and retention deletes.

use std::path::Path;

use sqlx::SqliteConnection;

/// Writes a consistent copy of the database to `path` (which must not exist)
/// with `VACUUM INTO`: one read transaction, so writers carry on meanwhile.
pub async fn vacuum_into(conn: &mut SqliteConnection, path: &Path) -> sqlx::Result<()> {
    let path = path.to_string_lossy().into_owned();
    sqlx::query("vacuum into ?")
        .bind(path)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `pragma integrity_check`: `["ok"]` for a sound database, else the problems.
pub async fn integrity_check(conn: &mut SqliteConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("pragma integrity_check")
        .fetch_all(&mut *conn)
        .await
}

/// Rows in each table the operator cares about after a restore.
pub async fn table_counts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, i64)>> {
    let mut counts = Vec::new();
    for table in [
        "inbox",
        "outbox",
        "chat_members",
        "points_ledger",
        "admin_audit",
    ] {
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from sqlite_master where type = 'table' and name = ?)",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
        if exists {
            // The name is one of the literals above, never input.
            let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
                .fetch_one(&mut *conn)
                .await?;
            counts.push((table.to_owned(), rows));
        }
    }
    Ok(counts)
}

/// Deletes up to `limit` handled (`done`) inbox rows received before
/// `received_before`; pending and parked rows are never touched.
pub async fn prune_inbox(
    conn: &mut SqliteConnection,
    received_before: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    // Ids ascend with arrival: the oldest done rows come first in index inbox_pending.
    let result = sqlx::query(
        "delete from inbox where id in (select id from inbox where status = 'done' \
         and received_at < ? order by id limit ?)",
    )
    .bind(received_before)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `limit` console audit rows older than `before`.
pub async fn prune_audit(
    conn: &mut SqliteConnection,
    before: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "delete from admin_audit where id in (select id from admin_audit where at < ? order by at limit ?)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `limit` recorded console login failures older than `before`.
pub async fn prune_login_failures(
    conn: &mut SqliteConnection,
    before: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "delete from admin_login_failures where rowid in \
         (select rowid from admin_login_failures where at < ? limit ?)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}
