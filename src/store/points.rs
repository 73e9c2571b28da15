//! The append-only points ledger. A balance is always `sum(delta)`; a debit is
//! only written if the balance covers it, so balances never go negative.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqliteConnection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLedgerEntry<'a> {
    pub user_id: &'a str,
    pub delta: i64,
    pub reason: &'a str,
    pub reference: &'a str,
    pub chat_id: Option<&'a str>,
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(i64),
    /// The reference was already in the ledger: nothing written.
    Duplicate,
    /// A debit larger than the balance: nothing written.
    InsufficientBalance,
}

/// Appends an entry unless its reference exists; debits only if covered.
pub async fn append(
    conn: &mut SqliteConnection,
    entry: &NewLedgerEntry<'_>,
) -> sqlx::Result<Appended> {
    let id: Option<i64> = sqlx::query_scalar(
        "insert into points_ledger (user_id, delta, reason, reference, chat_id, day, created_at)
         select ?1, ?2, ?3, ?4, ?5, ?6, ?7
         where ?2 > 0 or (select coalesce(sum(delta), 0) from points_ledger where user_id = ?1) + ?2 >= 0
         on conflict (reference) do nothing
         returning id",
    )
    .bind(entry.user_id)
    .bind(entry.delta)
    .bind(entry.reason)
    .bind(entry.reference)
    .bind(entry.chat_id)
    .bind(entry.day.to_string())
    .bind(entry.at.timestamp())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = id {
        return Ok(Appended::New(id));
    }
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from points_ledger where reference = ?)")
            .bind(entry.reference)
            .fetch_one(&mut *conn)
            .await?;
    Ok(if exists {
        Appended::Duplicate
    } else {
        Appended::InsufficientBalance
    })
}

pub async fn balance(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("select coalesce(sum(delta), 0) from points_ledger where user_id = ?")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
}

/// Sum of everything ever earned (positive entries): decides the level. A
/// refunded redemption or lottery entry gives points back, it does not earn them.
pub async fn lifetime_earned(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "select coalesce(sum(delta), 0) from points_ledger
         where user_id = ? and delta > 0 and reason not in ('redeem_refund', 'lottery_refund')",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await
}

/// Points earned on a community day, by reason (for daily caps).
pub async fn earned_on_day(
    conn: &mut SqliteConnection,
    user_id: &str,
    day: NaiveDate,
) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select reason, sum(delta) from points_ledger where user_id = ? and day = ? and delta > 0 group by reason",
    )
    .bind(user_id)
    .bind(day.to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaderRow {
    pub user_id: String,
    pub name: Option<String>,
    pub points: i64,
}

/// Points earned since `since` (inclusive community day), best first; per chat
/// when `chat_id` is given, else community-wide. `since = None` is all time.
pub async fn leaderboard(
    conn: &mut SqliteConnection,
    since: Option<NaiveDate>,
    chat_id: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<LeaderRow>> {
    sqlx::query_as(
        "select l.user_id, p.name, sum(l.delta) as points
         from points_ledger l left join people p on p.user_id = l.user_id
         where l.delta > 0 and (?1 is null or l.day >= ?1) and (?2 is null or l.chat_id = ?2)
         group by l.user_id order by points desc, l.user_id limit ?3",
    )
    .bind(since.map(|d| d.to_string()))
    .bind(chat_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: i64,
    pub user_id: String,
    pub delta: i64,
    pub reason: String,
    pub reference: String,
    pub day: String,
}

pub async fn entries_for(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Vec<LedgerRow>> {
    sqlx::query_as("select id, user_id, delta, reason, reference, day from points_ledger where user_id = ? order by id")
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await
}

/// Sum of every ledger entry (a consistency check: equals the sum of balances).
pub async fn total(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select coalesce(sum(delta), 0) from points_ledger")
        .fetch_one(&mut *conn)
        .await
}

pub async fn count_entries(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from points_ledger")
        .fetch_one(&mut *conn)
        .await
}

/// Every ledger entry of members with a positive balance, per member in
/// ledger order: what points expiry works through.
pub async fn entries_of_members_with_points(
    conn: &mut SqliteConnection,
) -> sqlx::Result<Vec<(String, crate::rules::expiry::Entry)>> {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "select user_id, delta, day from points_ledger
         where user_id in (select user_id from points_ledger group by user_id having sum(delta) > 0)
         order by user_id, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(user, delta, day)| {
            let day = day.parse::<NaiveDate>().ok()?;
            Some((user, crate::rules::expiry::Entry { delta, day }))
        })
        .collect())
}

/// One member's ledger entries in order, as points expiry sees them.
pub async fn expiry_entries(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Vec<crate::rules::expiry::Entry>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("select delta, day from points_ledger where user_id = ? order by id")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(delta, day)| {
            let day = day.parse::<NaiveDate>().ok()?;
            Some(crate::rules::expiry::Entry { delta, day })
        })
        .collect())
}

/// Whether the member was already told about this expiry month.
pub async fn expiry_noticed(
    conn: &mut SqliteConnection,
    user_id: &str,
    period: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from points_expiry_notices where user_id = ? and period = ?)",
    )
    .bind(user_id)
    .bind(period)
    .fetch_one(&mut *conn)
    .await
}

/// Remembers the notice; a second one for the same month adds nothing.
pub async fn record_expiry_notice(
    conn: &mut SqliteConnection,
    user_id: &str,
    period: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into points_expiry_notices (user_id, period, noticed_at) values (?, ?, ?)
         on conflict do nothing",
    )
    .bind(user_id)
    .bind(period)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
