//! Catalog stock and redemptions waiting for a manager to fulfil them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

/// A change of catalog stock, as recorded in `stock_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StockEvent {
    pub id: i64,
    pub item: String,
    pub delta: i64,
    pub reason: String,
    pub detail: String,
    pub created_at: i64,
}

/// Brings stock in line with a rule set's catalog: a new item is stocked with
/// its figure; an item whose configured stock changed gets the difference
/// added to what is left (never below 0), so units sold stay sold. Each change
/// is a stock event. Idempotent: a second call with the same figures changes
/// nothing (every process loading the version may call it).
pub async fn sync_catalog(
    conn: &mut SqliteConnection,
    items: &[(String, i64)],
    detail: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    for (item, stock) in items {
        let current: Option<(i64, Option<i64>)> =
            sqlx::query_as("select remaining, configured from catalog_stock where item = ?")
                .bind(item)
                .fetch_optional(&mut *conn)
                .await?;
        let (delta, reason) = match current {
            None => {
                sqlx::query(
                    "insert into catalog_stock (item, remaining, configured) values (?, ?, ?)",
                )
                .bind(item)
                .bind(stock)
                .bind(stock)
                .execute(&mut *conn)
                .await?;
                (*stock, "initial")
            }
            Some((_, Some(configured))) if configured == *stock => continue,
            Some((remaining, configured)) => {
                let delta = stock - configured.unwrap_or(remaining);
                sqlx::query(
                    "update catalog_stock set remaining = max(0, remaining + ?), configured = ? where item = ?",
                )
                .bind(delta)
                .bind(stock)
                .bind(item)
                .execute(&mut *conn)
                .await?;
                (delta, "restock")
            }
        };
        record_event(conn, item, delta, reason, detail, at).await?;
    }
    Ok(())
}

async fn record_event(
    conn: &mut SqliteConnection,
    item: &str,
    delta: i64,
    reason: &str,
    detail: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into stock_events (item, delta, reason, detail, created_at) values (?, ?, ?, ?, ?)",
    )
    .bind(item)
    .bind(delta)
    .bind(reason)
    .bind(detail)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An item's stock changes, oldest first.
pub async fn stock_events(
    conn: &mut SqliteConnection,
    item: &str,
) -> sqlx::Result<Vec<StockEvent>> {
    sqlx::query_as(
        "select id, item, delta, reason, detail, created_at from stock_events where item = ? order by id",
    )
    .bind(item)
    .fetch_all(&mut *conn)
    .await
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

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<RedemptionRow>> {
    sqlx::query_as(
        "select id, user_id, item, cost, status, created_at from redemptions where id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
}

/// Cancels a pending redemption and returns its unit to stock (a stock
/// event); `false` when it is not pending. The refund is the caller's ledger entry.
pub async fn cancel(
    conn: &mut SqliteConnection,
    id: i64,
    item: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update redemptions set status = 'cancelled' where id = ? and status = 'pending'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if result.rows_affected() != 1 {
        return Ok(false);
    }
    put_back_one(conn, item).await?;
    record_event(conn, item, 1, "cancel", &format!("redemption {id}"), at).await?;
    Ok(true)
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
