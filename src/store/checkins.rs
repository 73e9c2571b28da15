//! Check-ins: unique per person per community day.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqliteConnection;

/// Records a check-in; `false` when that person already has one for that day.
pub async fn record_checkin(
    conn: &mut SqliteConnection,
    user_id: &str,
    day: NaiveDate,
    at: DateTime<Utc>,
    makeup: bool,
    chat_id: Option<&str>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into checkins (user_id, day, at, makeup, chat_id) values (?, ?, ?, ?, ?)
         on conflict (user_id, day) do nothing",
    )
    .bind(user_id)
    .bind(day.to_string())
    .bind(at.timestamp())
    .bind(makeup)
    .bind(chat_id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The person's check-in days on or after `since`, ascending.
pub async fn days_since(
    conn: &mut SqliteConnection,
    user_id: &str,
    since: NaiveDate,
) -> sqlx::Result<Vec<NaiveDate>> {
    let days: Vec<String> =
        sqlx::query_scalar("select day from checkins where user_id = ? and day >= ? order by day")
            .bind(user_id)
            .bind(since.to_string())
            .fetch_all(&mut *conn)
            .await?;
    Ok(days.iter().filter_map(|d| d.parse().ok()).collect())
}

/// How many people checked in (not by make-up) on a day: today's rank is this + 1.
pub async fn count_on_day(conn: &mut SqliteConnection, day: NaiveDate) -> sqlx::Result<u32> {
    let count: i64 =
        sqlx::query_scalar("select count(*) from checkins where day = ? and makeup = 0")
            .bind(day.to_string())
            .fetch_one(&mut *conn)
            .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// The days on or after `since` a person filled by make-up check-in, ascending.
pub async fn makeup_days_since(
    conn: &mut SqliteConnection,
    user_id: &str,
    since: NaiveDate,
) -> sqlx::Result<Vec<NaiveDate>> {
    let days: Vec<String> = sqlx::query_scalar(
        "select day from checkins where user_id = ? and makeup = 1 and day >= ? order by day",
    )
    .bind(user_id)
    .bind(since.to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(days.iter().filter_map(|d| d.parse().ok()).collect())
}

pub async fn count_all(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from checkins")
        .fetch_one(&mut *conn)
        .await
}
