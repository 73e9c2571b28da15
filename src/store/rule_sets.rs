//! Versioned rule sets. The highest version is the active one.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRuleSet {
    pub version: i64,
    pub body: String,
    pub created_at: i64,
}

/// Stores a (validated) rule set as the new active version.
pub async fn save(conn: &mut SqliteConnection, body: &str, at: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar("insert into rule_sets (body, created_at) values (?, ?) returning version")
        .bind(body)
        .bind(at.timestamp())
        .fetch_one(&mut *conn)
        .await
}

pub async fn active(conn: &mut SqliteConnection) -> sqlx::Result<Option<StoredRuleSet>> {
    sqlx::query_as("select version, body, created_at from rule_sets order by version desc limit 1")
        .fetch_optional(&mut *conn)
        .await
}

/// Just the active version number (cheap: the pipeline checks it every run).
pub async fn active_version(conn: &mut SqliteConnection) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("select max(version) from rule_sets")
        .fetch_one(&mut *conn)
        .await
}

pub async fn list_versions(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as("select version, created_at from rule_sets order by version")
        .fetch_all(&mut *conn)
        .await
}

/// Stored versions older than `version`, newest first (the active-rules
/// service walks back through them when the newest no longer validates).
pub async fn older_than(
    conn: &mut SqliteConnection,
    version: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredRuleSet>> {
    sqlx::query_as(
        "select version, body, created_at from rule_sets where version < ? order by version desc limit ?",
    )
    .bind(version)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}
