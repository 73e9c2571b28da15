//! Content posts, 精华 marks and honour-board publications (migration 0028),
//! 有用 marks (0034), and the per-period rows an honour board ranks.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::SqliteConnection;

use crate::rules::honour::{BoardData, MetricRow, PeriodRange};
use crate::rules::ugc::{self, MessageMark};

/// Remembers a group message (a redelivery or a second sighting adds nothing).
pub async fn record_post(
    conn: &mut SqliteConnection,
    message_id: &str,
    chat_id: &str,
    author: &str,
    fingerprint: Option<i64>,
    is_image: bool,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into content_posts (message_id, chat_id, author, fingerprint, is_image, at)
         values (?, ?, ?, ?, ?, ?) on conflict (message_id) do nothing",
    )
    .bind(message_id)
    .bind(chat_id)
    .bind(author)
    .bind(fingerprint)
    .bind(is_image)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One remembered message, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PostRow {
    pub message_id: String,
    pub chat_id: String,
    pub author: String,
    pub is_image: bool,
    pub at: i64,
    pub essence: bool,
    /// Members who marked it 有用.
    pub helpful: i64,
}

const POST_COLUMNS: &str = "p.message_id, p.chat_id, p.author, p.is_image, p.at,
    exists (select 1 from essence_marks e where e.message_id = p.message_id) as essence,
    (select count(*) from helpful_marks h where h.message_id = p.message_id) as helpful";

/// The latest message in the chat with this text fingerprint (a quote's source).
pub async fn post_by_fingerprint(
    conn: &mut SqliteConnection,
    chat_id: &str,
    fingerprint: i64,
) -> sqlx::Result<Option<PostRow>> {
    sqlx::query_as(&format!(
        "select {POST_COLUMNS} from content_posts p where p.chat_id = ? and p.fingerprint = ?
         order by p.at desc limit 1"
    ))
    .bind(chat_id)
    .bind(fingerprint)
    .fetch_optional(&mut *conn)
    .await
}

pub async fn post_by_id(
    conn: &mut SqliteConnection,
    message_id: &str,
) -> sqlx::Result<Option<PostRow>> {
    sqlx::query_as(&format!(
        "select {POST_COLUMNS} from content_posts p where p.message_id = ?"
    ))
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await
}

/// A member's latest messages, newest first (the console's member page).
pub async fn posts_by(
    conn: &mut SqliteConnection,
    author: &str,
    limit: i64,
) -> sqlx::Result<Vec<PostRow>> {
    sqlx::query_as(&format!(
        "select {POST_COLUMNS} from content_posts p where p.author = ?
         order by p.at desc, p.message_id limit ?"
    ))
    .bind(author)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// A 精华 or 有用 mark, as `mark_message` writes it.
#[derive(Debug, Clone, Copy)]
pub struct NewMark<'a> {
    pub mark: MessageMark,
    pub message_id: &'a str,
    pub chat_id: &'a str,
    pub author: &'a str,
    pub by: &'a str,
    pub at: DateTime<Utc>,
    pub day: NaiveDate,
}

/// The table a mark lives in: both have the same columns; 精华 is keyed by
/// the message, 有用 by the message and the giver (migration 0034).
fn mark_table(mark: MessageMark) -> &'static str {
    match mark {
        MessageMark::Essence => "essence_marks",
        MessageMark::Helpful => "helpful_marks",
    }
}

/// Records a 精华 or 有用 mark; false when it already was (精华: this
/// message; 有用: this message by this giver).
pub async fn mark_message(conn: &mut SqliteConnection, mark: &NewMark<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!(
        "insert into {} (message_id, chat_id, author, marked_by, marked_at, day)
         values (?, ?, ?, ?, ?, ?) on conflict do nothing",
        mark_table(mark.mark)
    ))
    .bind(mark.message_id)
    .bind(mark.chat_id)
    .bind(mark.author)
    .bind(mark.by)
    .bind(mark.at.timestamp())
    .bind(mark.day.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `by` marked this message 有用 before.
pub async fn helpful_marked_by(
    conn: &mut SqliteConnection,
    message_id: &str,
    by: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from helpful_marks where message_id = ? and marked_by = ?)",
    )
    .bind(message_id)
    .bind(by)
    .fetch_one(&mut *conn)
    .await
}

/// 有用 marks `by` handed out on a community day (the daily cap).
pub async fn helpful_given_on(
    conn: &mut SqliteConnection,
    by: &str,
    day: NaiveDate,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from helpful_marks where marked_by = ? and day = ?")
        .bind(by)
        .bind(day.to_string())
        .fetch_one(&mut *conn)
        .await
}

/// How many of the member's messages are 精华.
pub async fn essence_count(conn: &mut SqliteConnection, author: &str) -> sqlx::Result<u32> {
    let count: i64 = sqlx::query_scalar("select count(*) from essence_marks where author = ?")
        .bind(author)
        .fetch_one(&mut *conn)
        .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Records a board's post in a chat; false when it was already published.
pub async fn record_publication(
    conn: &mut SqliteConnection,
    board: &str,
    period: &str,
    chat_id: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "insert into honour_publications (board, period, chat_id, published_at)
         values (?, ?, ?, ?) on conflict do nothing",
    )
    .bind(board)
    .bind(period)
    .bind(chat_id)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Chats a board's period was already published to.
pub async fn published_chats(
    conn: &mut SqliteConnection,
    board: &str,
    period: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select chat_id from honour_publications where board = ? and period = ?")
        .bind(board)
        .bind(period)
        .fetch_all(&mut *conn)
        .await
}

/// Every row a board over `period` ranks.
pub async fn board_data(
    conn: &mut SqliteConnection,
    period: &PeriodRange,
) -> sqlx::Result<BoardData> {
    let (first, last) = (period.first.to_string(), period.last.to_string());
    let checkin_rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "select c.user_id, p.name, c.day from checkins c left join people p on p.user_id = c.user_id
         where c.day between ? and ?",
    )
    .bind(&first)
    .bind(&last)
    .fetch_all(&mut *conn)
    .await?;
    let checkins = checkin_rows
        .into_iter()
        .filter_map(|(user, name, day)| Some((user, name, day.parse().ok()?)))
        .collect();
    let points = metric(
        conn,
        "select l.user_id, p.name, sum(l.delta) from points_ledger l
         left join people p on p.user_id = l.user_id
         where l.delta > 0 and l.reason <> 'redeem_refund' and l.day between ? and ?
         group by l.user_id",
        &first,
        &last,
    )
    .await?;
    let essence = marks_received(conn, MessageMark::Essence, &first, &last).await?;
    let helpful = marks_received(conn, MessageMark::Helpful, &first, &last).await?;
    let showcase = metric(
        conn,
        &format!(
            "select l.user_id, p.name, count(*) from points_ledger l
             left join people p on p.user_id = l.user_id
             where l.reason = '{}' and l.day between ? and ? group by l.user_id",
            ugc::SHOWCASE
        ),
        &first,
        &last,
    )
    .await?;
    Ok(BoardData {
        period: Some(period.clone()),
        checkins,
        points,
        essence,
        showcase,
        helpful,
    })
}

/// Marks each author received in the period: 精华 (one per message) or 有用
/// (one per message and giver, so distinct marks).
async fn marks_received(
    conn: &mut SqliteConnection,
    mark: MessageMark,
    first: &str,
    last: &str,
) -> sqlx::Result<Vec<MetricRow>> {
    let sql = format!(
        "select m.author, p.name, count(*) from {} m
         left join people p on p.user_id = m.author
         where m.day between ? and ? group by m.author",
        mark_table(mark)
    );
    metric(conn, &sql, first, last).await
}

async fn metric(
    conn: &mut SqliteConnection,
    sql: &str,
    first: &str,
    last: &str,
) -> sqlx::Result<Vec<MetricRow>> {
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(sql)
        .bind(first)
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, name, value)| MetricRow {
            user_id,
            name,
            value,
        })
        .collect())
}

/// Rewarded posts (精华 marks and paid 晒单) on a community day (analytics).
/// 有用 marks are left out on purpose: they are peers' thanks, many per
/// message, not posts the operators rewarded; counting them would change what
/// the column has always meant (and count one message many times).
pub async fn rewarded_posts_on(conn: &mut SqliteConnection, day: NaiveDate) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!(
        "select (select count(*) from essence_marks where day = ?1)
              + (select count(*) from points_ledger where reason = '{}' and day = ?1)",
        ugc::SHOWCASE
    ))
    .bind(day.to_string())
    .fetch_one(&mut *conn)
    .await
}
