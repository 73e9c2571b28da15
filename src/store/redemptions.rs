//! Catalog stock and redemptions waiting for a manager to fulfil them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

/// Adds catalog items not yet stocked (an item's stock is only set the first
/// time it appears; later rule-set versions don't refill it).
pub async fn stock_new_items(
    conn: &mut SqliteConnection,
    items: &[(String, i64)],
) -> sqlx::Result<()> {
    for (item, stock) in items {
        sqlx::query("insert into catalog_stock (item, remaining) values (?, ?) on conflict (item) do nothing")
            .bind(item)
            .bind(stock)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn stock(conn: &mut SqliteConnection) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("select item, remaining from catalog_stock")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Takes one unit of stock if any is left; atomic, so two racing redemptions
/// for the last unit cannot both succeed.
pub async fn take_one(conn: &mut SqliteConnection, item: &str) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update catalog_stock set remaining = remaining - 1 where item = ? and remaining > 0",
    )
    .bind(item)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn put_back_one(conn: &mut SqliteConnection, item: &str) -> sqlx::Result<()> {
    sqlx::query("update catalog_stock set remaining = remaining + 1 where item = ?")
        .bind(item)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn create(
    conn: &mut SqliteConnection,
    user_id: &str,
    item: &str,
    cost: i64,
    reference: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "insert into redemptions (user_id, item, cost, reference, created_at) values (?, ?, ?, ?, ?)
         on conflict (reference) do nothing returning id",
    )
    .bind(user_id)
    .bind(item)
    .bind(cost)
    .bind(reference)
    .bind(at.timestamp())
    .fetch_optional(&mut *conn)
    .await
}

/// How many of each item a person redeemed (not counting cancelled ones).
pub async fn count_by_item(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<BTreeMap<String, u32>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select item, count(*) from redemptions where user_id = ? and status <> 'cancelled' group by item",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(item, n)| (item, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RedemptionRow {
    pub id: i64,
    pub user_id: String,
    pub item: String,
    pub cost: i64,
    pub status: String,
    pub created_at: i64,
}

pub async fn list(
    conn: &mut SqliteConnection,
    status: Option<&str>,
) -> sqlx::Result<Vec<RedemptionRow>> {
    sqlx::query_as(
        "select id, user_id, item, cost, status, created_at from redemptions
         where (?1 is null or status = ?1) order by id",
    )
    .bind(status)
    .fetch_all(&mut *conn)
    .await
}

/// A manager handed the item over.
pub async fn mark_fulfilled(
    conn: &mut SqliteConnection,
    id: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query("update redemptions set status = 'fulfilled', fulfilled_at = ? where id = ? and status = 'pending'")
        .bind(at.timestamp())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn exists(conn: &mut SqliteConnection, reference: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from redemptions where reference = ?)")
        .bind(reference)
        .fetch_one(&mut *conn)
        .await
}
