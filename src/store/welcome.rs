//! Customer-group welcomes: the group welcome material kept in WeCom, and the
//! owner digests of newcomers (with the mass message an owner may ask for).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

fn to_time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// The material WeCom holds for qunyun, as last synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncedMaterial {
    pub template_id: String,
    pub material: String,
    pub synced_at: DateTime<Utc>,
}

pub async fn synced_material(conn: &mut SqliteConnection) -> sqlx::Result<Option<SyncedMaterial>> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "select template_id, material, synced_at from group_welcome_material where id = 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(template_id, material, at)| SyncedMaterial {
        template_id,
        material,
        synced_at: to_time(at),
    }))
}

pub async fn save_synced_material(
    conn: &mut SqliteConnection,
    template_id: &str,
    material: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into group_welcome_material (id, template_id, material, synced_at)
         values (1, ?, ?, ?)
         on conflict (id) do update set template_id = excluded.template_id,
             material = excluded.material, synced_at = excluded.synced_at",
    )
    .bind(template_id)
    .bind(material)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A newcomer named in an owner digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestNewcomer {
    pub user_id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerDigest {
    pub id: i64,
    pub chat_id: String,
    pub owner: String,
    pub newcomers: Vec<DigestNewcomer>,
    pub suggestion: String,
    pub created_at: DateTime<Utc>,
    /// Outbox key of the mass message, once asked for.
    pub mass_key: Option<String>,
    pub mass_requested_by: Option<String>,
}

type DigestRow = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
);

fn digest_from_row(row: DigestRow) -> OwnerDigest {
    let (id, chat_id, owner, newcomers, suggestion, created_at, mass_key, by) = row;
    OwnerDigest {
        id,
        chat_id,
        owner,
        newcomers: serde_json::from_str(&newcomers).unwrap_or_default(),
        suggestion,
        created_at: to_time(created_at),
        mass_key,
        mass_requested_by: by,
    }
}

const DIGEST_COLUMNS: &str = "id, chat_id, owner, newcomers_json, suggestion, created_at, \
     mass_key, mass_requested_by";

pub async fn record_digest(
    conn: &mut SqliteConnection,
    chat_id: &str,
    owner: &str,
    newcomers: &[DigestNewcomer],
    suggestion: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let newcomers = serde_json::to_string(newcomers).unwrap_or_else(|_| "[]".into());
    sqlx::query_scalar(
        "insert into owner_digests (chat_id, owner, newcomers_json, suggestion, created_at)
         values (?, ?, ?, ?, ?) returning id",
    )
    .bind(chat_id)
    .bind(owner)
    .bind(newcomers)
    .bind(suggestion)
    .bind(at.timestamp())
    .fetch_one(&mut *conn)
    .await
}

pub async fn get_digest(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<OwnerDigest>> {
    let sql = format!("select {DIGEST_COLUMNS} from owner_digests where id = ?");
    let row: Option<DigestRow> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(digest_from_row))
}

/// The newest digests first.
pub async fn recent_digests(
    conn: &mut SqliteConnection,
    limit: i64,
) -> sqlx::Result<Vec<OwnerDigest>> {
    let sql = format!("select {DIGEST_COLUMNS} from owner_digests order by id desc limit ?");
    let rows: Vec<DigestRow> = sqlx::query_as(&sql)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(digest_from_row).collect())
}

/// Marks the digest as turned into a mass message; `false` if someone already did.
pub async fn mark_mass_requested(
    conn: &mut SqliteConnection,
    id: i64,
    mass_key: &str,
    by: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update owner_digests set mass_key = ?, mass_requested_by = ?, mass_requested_at = ?
         where id = ? and mass_key is null",
    )
    .bind(mass_key)
    .bind(by)
    .bind(at.timestamp())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
