//! Lotteries, their prizes, entries and winners (migration 0027).

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use crate::rules::lottery::{ChatTarget, Eligibility, OpenLottery};
use crate::rules::segment_limit::SegmentRef;

fn to_time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prize {
    pub name: String,
    pub points: i64,
    pub item: Option<String>,
    pub winners: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLottery<'a> {
    pub title: &'a str,
    pub chats: &'a [String],
    pub tags: &'a [String],
    /// `None`: every eligible member of the chats enters at the draw.
    pub keyword: Option<&'a str>,
    pub eligibility: &'a Eligibility,
    pub draw_at: DateTime<Utc>,
    pub seed_hex: &'a str,
    pub commitment: &'a str,
    pub prizes: &'a [Prize],
    pub created_by: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lottery {
    pub id: i64,
    pub title: String,
    pub chats: Vec<String>,
    pub tags: Vec<String>,
    pub keyword: Option<String>,
    pub eligibility: Eligibility,
    pub draw_at: DateTime<Utc>,
    /// Secret until `status` is drawn: never show it before.
    pub seed_hex: String,
    pub commitment: String,
    pub status: String,
    pub entrants_digest: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub drawn_at: Option<DateTime<Utc>>,
    pub prizes: Vec<Prize>,
}

impl Lottery {
    /// The seed once revealed (after the draw), else `None`.
    pub fn revealed_seed(&self) -> Option<&str> {
        (self.status == "drawn").then_some(self.seed_hex.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Winner {
    pub user_id: String,
    pub draw_position: i64,
    pub prize_position: i64,
    pub outcome: String,
}

pub async fn insert(
    conn: &mut SqliteConnection,
    new: &NewLottery<'_>,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "insert into lotteries (title, chats_json, tags_json, keyword, checked_in_today, min_level,
             joined_before, entry_cost, draw_at, seed_hex, commitment, created_by, created_at,
             segment_id)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id",
    )
    .bind(new.title)
    .bind(serde_json::to_string(new.chats).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(new.tags).unwrap_or_else(|_| "[]".into()))
    .bind(new.keyword)
    .bind(new.eligibility.checked_in_today)
    .bind(new.eligibility.min_level.map(i64::from))
    .bind(new.eligibility.joined_before.map(|t| t.timestamp()))
    .bind(new.eligibility.entry_cost)
    .bind(new.draw_at.timestamp())
    .bind(new.seed_hex)
    .bind(new.commitment)
    .bind(new.created_by)
    .bind(at.timestamp())
    .bind(new.eligibility.segment.as_ref().map(|s| s.id))
    .fetch_one(&mut *conn)
    .await?;
    for (position, prize) in new.prizes.iter().enumerate() {
        sqlx::query(
            "insert into lottery_prizes (lottery_id, position, name, points, item, winners)
             values (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(&prize.name)
        .bind(prize.points)
        .bind(&prize.item)
        .bind(i64::from(prize.winners))
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

const COLUMNS: &str = "id, title, chats_json, tags_json, keyword, checked_in_today, min_level,
    joined_before, entry_cost, draw_at, seed_hex, commitment, status, entrants_digest, created_by,
    created_at, drawn_at, segment_id,
    (select name from segments where segments.id = lotteries.segment_id) as segment_name";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<Lottery> {
    let chats: String = row.try_get("chats_json")?;
    let tags: String = row.try_get("tags_json")?;
    let min_level: Option<i64> = row.try_get("min_level")?;
    let joined_before: Option<i64> = row.try_get("joined_before")?;
    let drawn_at: Option<i64> = row.try_get("drawn_at")?;
    Ok(Lottery {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        chats: serde_json::from_str(&chats).unwrap_or_default(),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        keyword: row.try_get("keyword")?,
        eligibility: Eligibility {
            checked_in_today: row.try_get("checked_in_today")?,
            min_level: min_level.and_then(|l| u32::try_from(l).ok()),
            joined_before: joined_before.map(to_time),
            entry_cost: row.try_get("entry_cost")?,
            segment: SegmentRef::stored(row.try_get("segment_id")?, row.try_get("segment_name")?),
        },
        draw_at: to_time(row.try_get("draw_at")?),
        seed_hex: row.try_get("seed_hex")?,
        commitment: row.try_get("commitment")?,
        status: row.try_get("status")?,
        entrants_digest: row.try_get("entrants_digest")?,
        created_by: row.try_get("created_by")?,
        created_at: to_time(row.try_get("created_at")?),
        drawn_at: drawn_at.map(to_time),
        prizes: Vec::new(),
    })
}

async fn with_prizes(conn: &mut SqliteConnection, mut lottery: Lottery) -> sqlx::Result<Lottery> {
    let rows: Vec<(String, i64, Option<String>, i64)> = sqlx::query_as(
        "select name, points, item, winners from lottery_prizes where lottery_id = ? order by position",
    )
    .bind(lottery.id)
    .fetch_all(&mut *conn)
    .await?;
    lottery.prizes = rows
        .into_iter()
        .map(|(name, points, item, winners)| Prize {
            name,
            points,
            item,
            winners: u32::try_from(winners).unwrap_or(0),
        })
        .collect();
    Ok(lottery)
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<Lottery>> {
    let row = sqlx::query(&format!("select {COLUMNS} from lotteries where id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Some(with_prizes(conn, from_row(&row)?).await?)),
        None => Ok(None),
    }
}

/// Every lottery, newest first.
pub async fn list(conn: &mut SqliteConnection) -> sqlx::Result<Vec<Lottery>> {
    let rows = sqlx::query(&format!("select {COLUMNS} from lotteries order by id desc"))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(with_prizes(conn, from_row(row)?).await?);
    }
    Ok(out)
}

/// Open lotteries whose draw time has come, oldest first.
pub async fn due(conn: &mut SqliteConnection, now: DateTime<Utc>) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "select id from lotteries where status = 'open' and draw_at <= ? order by draw_at, id",
    )
    .bind(now.timestamp())
    .fetch_all(&mut *conn)
    .await
}

/// Open lotteries taking entries by `keyword`, with whether `user_id` entered.
pub async fn open_by_keyword(
    conn: &mut SqliteConnection,
    keyword: &str,
    user_id: &str,
) -> sqlx::Result<Vec<OpenLottery>> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS}, exists (select 1 from lottery_entries e where e.lottery_id = lotteries.id and e.user_id = ?)
            as entered
         from lotteries where status = 'open' and keyword = ? order by id"
    ))
    .bind(user_id)
    .bind(keyword)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let lottery = from_row(row)?;
            Ok(OpenLottery {
                id: lottery.id,
                title: lottery.title,
                keyword: lottery.keyword.unwrap_or_default(),
                chats: lottery.chats,
                tags: lottery.tags,
                eligibility: lottery.eligibility,
                draw_at: lottery.draw_at,
                commitment: lottery.commitment,
                entered: row.try_get("entered")?,
                in_segment: false,
            })
        })
        .collect()
}

/// Whether any open lottery takes entries by `keyword` (a cheap test before loading).
pub async fn is_open_keyword(conn: &mut SqliteConnection, keyword: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from lotteries where status = 'open' and keyword = ?)",
    )
    .bind(keyword)
    .fetch_one(&mut *conn)
    .await
}

/// The chats `user_id` is a current member of, with their tags.
pub async fn member_chats(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Vec<ChatTarget>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select c.chat_id, c.tags_json from chat_members m join chats c on c.chat_id = m.chat_id
         where m.user_id = ? and m.left_at is null order by c.chat_id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, tags)| ChatTarget {
            chat_id,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
        })
        .collect())
}

/// Every registered chat a lottery targets (by id or tag), sorted.
pub async fn target_chats(
    conn: &mut SqliteConnection,
    chats: &[String],
    tags: &[String],
) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select chat_id, tags_json from chats order by chat_id")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter(|(chat_id, tags_json)| {
            let chat_tags: Vec<String> = serde_json::from_str(tags_json).unwrap_or_default();
            chats.contains(chat_id) || chat_tags.iter().any(|t| tags.contains(t))
        })
        .map(|(chat_id, _)| chat_id)
        .collect())
}

/// Current members of `chat_ids` (for automatic entry), sorted, each once.
pub async fn current_members_of(
    conn: &mut SqliteConnection,
    chat_ids: &[String],
) -> sqlx::Result<Vec<String>> {
    let mut members = Vec::new();
    for chat_id in chat_ids {
        let ids: Vec<String> = sqlx::query_scalar(
            "select user_id from chat_members where chat_id = ? and left_at is null",
        )
        .bind(chat_id)
        .fetch_all(&mut *conn)
        .await?;
        members.extend(ids);
    }
    members.sort();
    members.dedup();
    Ok(members)
}

/// When `user_id` first joined any chat, or was first seen.
pub async fn joined_at(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let secs: Option<i64> = sqlx::query_scalar(
        "select min(t) from (
            select min(joined_at) as t from chat_members where user_id = ?1
            union all select first_seen_at from people where user_id = ?1)",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(secs.map(to_time))
}

/// Records an entry; `false` when the member had already entered.
pub async fn insert_entry(
    conn: &mut SqliteConnection,
    lottery_id: i64,
    user_id: &str,
    cost: i64,
    chat_id: Option<&str>,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into lottery_entries (lottery_id, user_id, cost, chat_id, entered_at)
         values (?, ?, ?, ?, ?) on conflict do nothing",
    )
    .bind(lottery_id)
    .bind(user_id)
    .bind(cost)
    .bind(chat_id)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// (user, points paid) of every entry, sorted by user.
pub async fn entries(
    conn: &mut SqliteConnection,
    lottery_id: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "select user_id, cost from lottery_entries where lottery_id = ? order by user_id",
    )
    .bind(lottery_id)
    .fetch_all(&mut *conn)
    .await
}

/// Moves an open lottery to drawn with its entrant digest; `false` when it
/// was not open (drawn or cancelled meanwhile), so a draw happens once.
pub async fn mark_drawn(
    conn: &mut SqliteConnection,
    id: i64,
    entrants_digest: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update lotteries set status = 'drawn', entrants_digest = ?, drawn_at = ? where id = ? and status = 'open'",
    )
    .bind(entrants_digest)
    .bind(at.timestamp())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Moves an open lottery to cancelled; `false` when it was not open.
pub async fn mark_cancelled(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<bool> {
    let result =
        sqlx::query("update lotteries set status = 'cancelled' where id = ? and status = 'open'")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Records a winner; `false` when this member already won in this lottery.
pub async fn insert_winner(
    conn: &mut SqliteConnection,
    lottery_id: i64,
    winner: &Winner,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into lottery_winners (lottery_id, user_id, draw_position, prize_position, outcome)
         values (?, ?, ?, ?, ?) on conflict do nothing",
    )
    .bind(lottery_id)
    .bind(&winner.user_id)
    .bind(winner.draw_position)
    .bind(winner.prize_position)
    .bind(&winner.outcome)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Winners in draw order.
pub async fn winners(conn: &mut SqliteConnection, lottery_id: i64) -> sqlx::Result<Vec<Winner>> {
    sqlx::query_as(
        "select user_id, draw_position, prize_position, outcome from lottery_winners
         where lottery_id = ? order by draw_position",
    )
    .bind(lottery_id)
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lotterys_segment_reads_back_with_its_current_name() {
        let (_dir, pool) = crate::store::test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let segment = crate::store::segments::save(&mut conn, "核心会员", "{}", "mei", 0)
            .await
            .unwrap();
        let at = to_time(1_700_000_000);
        let eligibility = Eligibility {
            segment: Some(SegmentRef::id(segment)),
            ..Eligibility::default()
        };
        let new = NewLottery {
            title: "周末福利",
            chats: &["wrA".to_owned()],
            tags: &[],
            keyword: Some("抽奖"),
            eligibility: &eligibility,
            draw_at: at,
            seed_hex: "00",
            commitment: "c",
            prizes: &[],
            created_by: "mei",
        };
        let id = insert(&mut conn, &new, at).await.unwrap();
        let named = Some(SegmentRef {
            id: segment,
            name: Some("核心会员".into()),
        });
        let stored = get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!(stored.eligibility.segment, named);
        let open = open_by_keyword(&mut conn, "抽奖", "lisi").await.unwrap();
        assert_eq!(open[0].eligibility.segment, named);
        crate::store::segments::delete(&mut conn, segment)
            .await
            .unwrap();
        let orphan = get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!(orphan.eligibility.segment, Some(SegmentRef::id(segment)));
    }
}
