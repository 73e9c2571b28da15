//! Polls, the chats they were opened in, and the ballots (one per member per poll).

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use crate::rules::polls::{Ballot, PollSpec, PollStatus};
use crate::rules::segment_limit::SegmentRef;

/// A stored poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Poll {
    pub id: i64,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub open_at: DateTime<Utc>,
    pub close_at: DateTime<Utc>,
    pub chats: Vec<String>,
    pub tags: Vec<String>,
    pub allow_change: bool,
    pub points_per_vote: i64,
    pub points_cap: i64,
    pub status: PollStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Only this saved segment's members may vote.
    pub segment: Option<SegmentRef>,
}

/// One ballot, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vote {
    pub user_id: String,
    pub options: Vec<u32>,
    pub chat_id: Option<String>,
    pub via: String,
    pub voted_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, question, options_json, multiple, open_at, close_at, chats_json, \
     tags_json, allow_change, points_per_vote, points_cap, status, created_by, created_at, segment_id, \
     (select name from segments where segments.id = polls.segment_id) as segment_name";

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

fn list_of<T: serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
    serde_json::from_str(json).unwrap_or_default()
}

fn poll_from(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<Poll> {
    let status: String = row.try_get("status")?;
    Ok(Poll {
        id: row.try_get("id")?,
        question: row.try_get("question")?,
        options: list_of(row.try_get("options_json")?),
        multiple: row.try_get("multiple")?,
        open_at: time(row.try_get("open_at")?),
        close_at: time(row.try_get("close_at")?),
        chats: list_of(row.try_get("chats_json")?),
        tags: list_of(row.try_get("tags_json")?),
        allow_change: row.try_get("allow_change")?,
        points_per_vote: row.try_get("points_per_vote")?,
        points_cap: row.try_get("points_cap")?,
        status: PollStatus::parse(&status).unwrap_or(PollStatus::Closed),
        created_by: row.try_get("created_by")?,
        created_at: time(row.try_get("created_at")?),
        segment: SegmentRef::stored(row.try_get("segment_id")?, row.try_get("segment_name")?),
    })
}

fn json(list: &impl serde::Serialize) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

pub async fn create(
    conn: &mut SqliteConnection,
    spec: &PollSpec,
    created_by: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "insert into polls (question, options_json, multiple, open_at, close_at, chats_json,
                            tags_json, allow_change, points_per_vote, points_cap, created_by, created_at,
                            segment_id)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id",
    )
    .bind(&spec.question)
    .bind(json(&spec.options))
    .bind(spec.multiple)
    .bind(spec.open_at.timestamp())
    .bind(spec.close_at.timestamp())
    .bind(json(&spec.chats))
    .bind(json(&spec.tags))
    .bind(spec.allow_change)
    .bind(spec.points_per_vote)
    .bind(spec.points_cap)
    .bind(created_by)
    .bind(now.timestamp())
    .bind(spec.segment_id)
    .fetch_one(&mut *conn)
    .await
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<Poll>> {
    let row = sqlx::query(&format!("select {COLUMNS} from polls where id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(poll_from).transpose()
}

/// Newest first.
pub async fn list(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<Poll>> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from polls order by id desc limit ?"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(poll_from).collect()
}

/// Scheduled polls whose open time has come.
pub async fn due_to_open(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Poll>> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from polls where status = 'scheduled' and open_at <= ? order by id"
    ))
    .bind(now.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(poll_from).collect()
}

/// Polls not yet closed whose close time has come.
pub async fn due_to_close(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Poll>> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from polls where status <> 'closed' and close_at <= ? order by id"
    ))
    .bind(now.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(poll_from).collect()
}

/// Moves a poll from `from` to `to`; false when it was not in `from` (someone
/// else did it first), so each transition happens once.
pub async fn transition(
    conn: &mut SqliteConnection,
    id: i64,
    from: PollStatus,
    to: PollStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let column = match to {
        PollStatus::Closed => "closed_at",
        _ => "opened_at",
    };
    let done = sqlx::query(&format!(
        "update polls set status = ?, {column} = ? where id = ? and status = ?"
    ))
    .bind(to.as_str())
    .bind(now.timestamp())
    .bind(id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Brings a poll's close time forward to `now` (a manager's "close now").
pub async fn close_early(
    conn: &mut SqliteConnection,
    id: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update polls set close_at = max(?, open_at + 1) where id = ? and status <> 'closed' and close_at > ?",
    )
    .bind(now.timestamp())
    .bind(id)
    .bind(now.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn add_chat(
    conn: &mut SqliteConnection,
    poll_id: i64,
    chat_id: &str,
    card_task_id: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into poll_chats (poll_id, chat_id, card_task_id) values (?, ?, ?)
         on conflict (poll_id, chat_id) do nothing",
    )
    .bind(poll_id)
    .bind(chat_id)
    .bind(card_task_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The chats a poll was opened in, in order.
pub async fn chats(conn: &mut SqliteConnection, poll_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select chat_id from poll_chats where poll_id = ? order by rowid")
        .bind(poll_id)
        .fetch_all(&mut *conn)
        .await
}

/// Every ballot of a poll, in the order they were first cast.
pub async fn votes(conn: &mut SqliteConnection, poll_id: i64) -> sqlx::Result<Vec<Vote>> {
    let rows = sqlx::query(
        "select user_id, options_json, chat_id, via, voted_at from poll_votes
         where poll_id = ? order by voted_at, user_id",
    )
    .bind(poll_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Vote {
                user_id: row.try_get("user_id")?,
                options: list_of(row.try_get("options_json")?),
                chat_id: row.try_get("chat_id")?,
                via: row.try_get("via")?,
                voted_at: time(row.try_get("voted_at")?),
            })
        })
        .collect()
}

/// Stores a ballot, replacing the member's earlier one (the rules decided
/// whether a change is allowed).
pub async fn record_vote(
    conn: &mut SqliteConnection,
    poll_id: i64,
    user_id: &str,
    options: &[u32],
    chat_id: Option<&str>,
    via: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into poll_votes (poll_id, user_id, options_json, chat_id, via, voted_at)
         values (?, ?, ?, ?, ?, ?)
         on conflict (poll_id, user_id) do update
             set options_json = excluded.options_json, changed_at = excluded.voted_at",
    )
    .bind(poll_id)
    .bind(user_id)
    .bind(json(&options))
    .bind(chat_id)
    .bind(via)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How long after closing a poll a late ballot is still matched to it (and
/// refused as late) rather than answered with "no poll".
const LATE_BALLOT_SECS: i64 = 24 * 3600;

/// The poll a ballot from `user_id` (in `chat_id`, or 1:1) is for: the
/// newest open poll of that chat (1:1: of a chat the member belongs to),
/// else the one that closed there most recently (within a day), with the
/// member's earlier ballot. `None` when there is none.
pub async fn ballot_for(
    conn: &mut SqliteConnection,
    chat_id: Option<&str>,
    user_id: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Ballot>> {
    let late = now.timestamp() - LATE_BALLOT_SECS;
    let chats_clause = match chat_id {
        Some(_) => "pc.chat_id = ?1",
        None => {
            "pc.chat_id in (select chat_id from chat_members where user_id = ?2 and left_at is null)
             or exists (select 1 from poll_votes v where v.poll_id = p.id and v.user_id = ?2)"
        }
    };
    let row = sqlx::query(&format!(
        "select p.id from polls p
         where p.status <> 'scheduled'
           and (p.status = 'open' or p.closed_at >= ?3)
           and exists (select 1 from poll_chats pc where pc.poll_id = p.id and ({chats_clause}))
         order by (p.status = 'open') desc, p.close_at desc, p.id desc limit 1"
    ))
    .bind(chat_id.unwrap_or_default())
    .bind(user_id)
    .bind(late)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: i64 = row.try_get("id")?;
    let Some(poll) = get(conn, id).await? else {
        return Ok(None);
    };
    let previous = previous_vote(conn, id, user_id).await?;
    Ok(Some(ballot(poll, previous, true)))
}

/// The member's ballot so far.
pub async fn previous_vote(
    conn: &mut SqliteConnection,
    poll_id: i64,
    user_id: &str,
) -> sqlx::Result<Option<Vec<u32>>> {
    let json: Option<String> =
        sqlx::query_scalar("select options_json from poll_votes where poll_id = ? and user_id = ?")
            .bind(poll_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(json.map(|json| list_of(&json)))
}

/// Whether `chat_id` is one of the chats the poll was opened in.
pub async fn poll_has_chat(
    conn: &mut SqliteConnection,
    poll_id: i64,
    chat_id: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from poll_chats where poll_id = ? and chat_id = ?)")
        .bind(poll_id)
        .bind(chat_id)
        .fetch_one(&mut *conn)
        .await
}

pub fn ballot(poll: Poll, previous: Option<Vec<u32>>, eligible: bool) -> Ballot {
    Ballot {
        poll_id: poll.id,
        question: poll.question,
        options: poll.options,
        multiple: poll.multiple,
        allow_change: poll.allow_change,
        status: poll.status,
        open_at: poll.open_at,
        close_at: poll.close_at,
        previous,
        eligible,
        segment: poll.segment,
        in_segment: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_polls_segment_reads_back_with_its_name_into_the_ballot() {
        let (_dir, pool) = crate::store::test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let segment = crate::store::segments::save(&mut conn, "核心会员", "{}", "mei", 0)
            .await
            .unwrap();
        let now = time(1_700_000_000);
        let spec = PollSpec {
            question: "喝什么？".into(),
            options: vec!["茶".into(), "咖啡".into()],
            open_at: now,
            close_at: now + chrono::Duration::hours(1),
            chats: vec!["wrA".into()],
            segment_id: Some(segment),
            ..PollSpec::default()
        };
        let id = create(&mut conn, &spec, "mei", now).await.unwrap();
        let poll = get(&mut conn, id).await.unwrap().unwrap();
        let named = Some(SegmentRef {
            id: segment,
            name: Some("核心会员".into()),
        });
        assert_eq!(poll.segment, named);
        assert_eq!(ballot(poll, None, true).segment, named);
        let plain = PollSpec {
            segment_id: None,
            ..spec
        };
        let id = create(&mut conn, &plain, "mei", now).await.unwrap();
        assert_eq!(get(&mut conn, id).await.unwrap().unwrap().segment, None);
    }
}
