//! Orders (purchase data), members' unionids, and the RFM scores the
//! analytics job recomputes from the orders.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::SqliteConnection;

use crate::analytics::rfm::RfmScore;

/// An order to store; `amount` in fen, negative for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: String,
    pub user_id: String,
    pub amount: i64,
    pub paid_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderRow {
    pub order_id: String,
    pub user_id: String,
    pub amount: i64,
    pub paid_at: i64,
    pub source: String,
}

/// The person an order system names: a UserID or external userid we know,
/// or a unionid recorded for one.
pub async fn resolve_member(
    conn: &mut SqliteConnection,
    member: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select user_id from people where user_id = ?1
         union all
         select user_id from member_unionids where unionid = ?1
         limit 1",
    )
    .bind(member)
    .fetch_optional(conn)
    .await
}

/// Records that `unionid` is `user_id`'s (a later record replaces it).
pub async fn set_unionid(
    conn: &mut SqliteConnection,
    unionid: &str,
    user_id: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into member_unionids (unionid, user_id) values (?, ?)
         on conflict (unionid) do update set user_id = excluded.user_id",
    )
    .bind(unionid)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the order unless its id is already stored; true when it was new.
pub async fn insert(
    conn: &mut SqliteConnection,
    order: &NewOrder,
    source: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "insert into orders (order_id, user_id, amount, paid_at, source, imported_at)
         values (?, ?, ?, ?, ?, ?) on conflict (order_id) do nothing",
    )
    .bind(&order.order_id)
    .bind(&order.user_id)
    .bind(order.amount)
    .bind(order.paid_at)
    .bind(source)
    .bind(now.timestamp())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A member's orders, newest first.
pub async fn orders_for(
    conn: &mut SqliteConnection,
    user_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(
        "select order_id, user_id, amount, paid_at, source from orders
         where user_id = ? order by paid_at desc, order_id limit ?",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Every order (user, amount, paid_at), oldest first: the RFM and funnel input.
pub async fn all_orders(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as("select user_id, amount, paid_at from orders order by paid_at, order_id")
        .fetch_all(conn)
        .await
}

/// Every chat membership's (chat, user, joined_at): the funnel's cohorts.
pub async fn joins(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as("select chat_id, user_id, joined_at from chat_members")
        .fetch_all(conn)
        .await
}

/// Each person's latest active day (`member_activity`, kept by the analytics job).
pub async fn last_active_days(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "select user_id, max(day) from member_activity
         where messages > 0 or checkins > 0 group by user_id",
    )
    .fetch_all(conn)
    .await
}

/// Replaces every stored RFM score with `scores`.
pub async fn replace_rfm(
    conn: &mut SqliteConnection,
    scores: &[RfmScore],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("delete from member_rfm")
        .execute(&mut *conn)
        .await?;
    for score in scores {
        sqlx::query(
            "insert into member_rfm
                 (user_id, recency_days, frequency, monetary, r, f, m, segment, computed_at)
             values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&score.user_id)
        .bind(score.recency_days)
        .bind(score.frequency)
        .bind(score.monetary)
        .bind(i64::from(score.r))
        .bind(i64::from(score.f))
        .bind(i64::from(score.m))
        .bind(score.segment.label())
        .bind(now.timestamp())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A stored RFM score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RfmRow {
    pub user_id: String,
    pub recency_days: i64,
    pub frequency: i64,
    pub monetary: i64,
    pub r: i64,
    pub f: i64,
    pub m: i64,
    pub segment: String,
    pub computed_at: i64,
}

pub async fn rfm_for(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<Option<RfmRow>> {
    sqlx::query_as(
        "select user_id, recency_days, frequency, monetary, r, f, m, segment, computed_at
         from member_rfm where user_id = ?",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Every stored score, by user id.
pub async fn all_rfm(conn: &mut SqliteConnection) -> sqlx::Result<Vec<RfmRow>> {
    sqlx::query_as(
        "select user_id, recency_days, frequency, monetary, r, f, m, segment, computed_at
         from member_rfm order by user_id",
    )
    .fetch_all(conn)
    .await
}

/// Buyers per segment label.
pub async fn segment_counts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("select segment, count(*) from member_rfm group by segment")
        .fetch_all(conn)
        .await
}
