//! All SQL lives under `store`. Functions take `&mut SqliteConnection` so callers
//! can compose them inside one transaction, and return domain types.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub mod admin;
pub mod analytics;
pub mod archive;
pub mod busy;
pub mod chats;
pub mod checkins;
pub mod customer_tags;
pub mod honour;
pub mod inbox;
pub mod inbox_writer;
pub mod invites;
pub mod lottery;
pub mod maintenance;
pub mod members;
pub mod metrics;
pub mod moderation;
pub mod orders;
pub mod outbox;
pub mod points;
pub mod polls;
pub mod redemptions;
pub mod review;
pub mod rule_sets;
pub mod schedules;
pub mod segments;
pub mod smart_bots;
pub mod welcome;

/// Opens (creating if needed) the SQLite database with WAL, a busy timeout and
/// foreign keys, and runs the embedded migrations.
pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .context("building sqlite options")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| Box::pin(busy::install_short_waits(conn)))
        .after_release(|conn, _| Box::pin(busy::no_open_transaction(conn)))
        .connect_with(options)
        .await
        .with_context(|| format!("opening database {}", path.display()))?;
    migrate(&pool).await?;
    Ok(pool)
}

pub async fn migrate(pool: &SqlitePool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("running database migrations")
}

/// Answers whether the database responds (for `/readyz`).
pub async fn ping(pool: &SqlitePool) -> bool {
    sqlx::query_scalar::<_, i64>("select 1")
        .fetch_one(pool)
        .await
        .is_ok()
}

/// A fresh migrated database in a temporary folder (store tests).
#[cfg(test)]
pub(crate) async fn test_db() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let pool = open(&dir.path().join("test.db")).await.expect("opening");
    (dir, pool)
}
