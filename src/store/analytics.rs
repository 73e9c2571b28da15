//! Analytics tables (migration 0011): daily rollups, per-person activity,
//! lifecycle stages and their changes, alert episodes; and the reads of raw
//! facts the rollup is computed from.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::{Row, SqliteConnection};

use crate::analytics::lifecycle::{MemberFacts, Stage};
use crate::analytics::rollup::{
    ActivityRow, Checkin, DailyRow, Delivery, LedgerEntry, Membership, Violation,
};
use crate::analytics::{AlertKind, AlertLevel};
use crate::store::inbox::InboxRow;

fn parse_day(text: &str) -> sqlx::Result<NaiveDate> {
    text.parse()
        .map_err(|e: chrono::ParseError| sqlx::Error::Decode(Box::new(e)))
}

// --- raw facts -----------------------------------------------------------------

pub async fn chat_ids(conn: &mut SqliteConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select chat_id from chats order by chat_id")
        .fetch_all(&mut *conn)
        .await
}

/// Every membership row (the end-of-day member counts need the ones that
/// started before the window too).
pub async fn memberships(conn: &mut SqliteConnection) -> sqlx::Result<Vec<Membership>> {
    let rows: Vec<(String, String, i64, Option<i64>)> =
        sqlx::query_as("select chat_id, user_id, joined_at, left_at from chat_members")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, user_id, joined_at, left_at)| Membership {
            chat_id,
            user_id,
            joined_at,
            left_at,
        })
        .collect())
}

/// Inbox rows that may carry a posted message, received in `[since, until)`.
pub async fn message_events(
    conn: &mut SqliteConnection,
    since: i64,
    until: i64,
) -> sqlx::Result<Vec<InboxRow>> {
    sqlx::query_as(
        "select id, source, kind, dedupe_key, received_at, event_json, chat_id, status, attempts, last_error
         from inbox where kind in ('app_text', 'bot_message', 'ingest_message')
           and received_at >= ? and received_at < ? order by id",
    )
    .bind(since)
    .bind(until)
    .fetch_all(&mut *conn)
    .await
}

pub async fn checkins_from(
    conn: &mut SqliteConnection,
    first_day: NaiveDate,
) -> sqlx::Result<Vec<Checkin>> {
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select user_id, day, chat_id from checkins where day >= ?")
            .bind(first_day.to_string())
            .fetch_all(&mut *conn)
            .await?;
    rows.into_iter()
        .map(|(user_id, day, chat_id)| {
            Ok(Checkin {
                user_id,
                day: parse_day(&day)?,
                chat_id,
            })
        })
        .collect()
}

pub async fn ledger_from(
    conn: &mut SqliteConnection,
    first_day: NaiveDate,
) -> sqlx::Result<Vec<LedgerEntry>> {
    // A rewarded post is one the operators rewarded (精华) or a paid 晒单;
    // 有用 points (`helpful`) count as points issued but not as rewarded
    // posts: see `store::honour::rewarded_posts_on`.
    let rows: Vec<(Option<String>, String, i64, bool)> = sqlx::query_as(
        "select chat_id, day, delta, reason in ('essence', 'showcase')
         from points_ledger where day >= ?",
    )
    .bind(first_day.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(chat_id, day, delta, rewarded_post)| {
            Ok(LedgerEntry {
                chat_id,
                day: parse_day(&day)?,
                delta,
                rewarded_post,
            })
        })
        .collect()
}

/// Moderation decisions (dry runs included: the message violated a rule).
pub async fn violations_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> sqlx::Result<Vec<Violation>> {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("select chat_id, at from moderation_log where at >= ?")
            .bind(since)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, at)| Violation { chat_id, at })
        .collect())
}

/// Outbox rows sent (by `sent_at`) or failed/dead (by `updated_at`; not the
/// uncertain ones, which may have been delivered) since
/// `since`, with the chats of the scheduled pushes they carried.
pub async fn deliveries_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> sqlx::Result<Vec<Delivery>> {
    let rows = sqlx::query(
        "select o.status in ('failed', 'dead') as failed,
                case when o.status = 'sent' then o.sent_at else o.updated_at end as at,
                (select group_concat(d.chat_id, char(31)) from schedule_deliveries d
                  where d.outbox_key = o.idempotency_key) as chats
         from outbox o
         where (o.status = 'sent' and o.sent_at >= ?1)
            or (o.status in ('failed', 'dead') and o.updated_at >= ?1
                -- an uncertain dead letter may have been delivered: not a failure
                and coalesce(o.last_error, '') not like 'uncertain:%')",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let chats: Option<String> = row.try_get("chats")?;
            Ok(Delivery {
                failed: row.try_get("failed")?,
                at: row.try_get("at")?,
                chats: chats
                    .map(|c| c.split('\u{1f}').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn parked_event_count(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from inbox where status = 'parked'")
        .fetch_one(&mut *conn)
        .await
}

// --- rollups --------------------------------------------------------------------

/// The last day with a stored rollup.
pub async fn last_rollup_day(conn: &mut SqliteConnection) -> sqlx::Result<Option<NaiveDate>> {
    let day: Option<String> = sqlx::query_scalar("select max(day) from analytics_daily")
        .fetch_one(&mut *conn)
        .await?;
    day.as_deref().map(parse_day).transpose()
}

/// Inserts or replaces the rows (keyed by day and chat).
pub async fn upsert_daily(
    conn: &mut SqliteConnection,
    rows: &[DailyRow],
    computed_at: i64,
) -> sqlx::Result<()> {
    for r in rows {
        sqlx::query(
            "insert into analytics_daily (day, chat_id, joins, leaves, members, active_members,
                 messages, checkins, points_issued, points_redeemed, violations, pushes_sent,
                 pushes_failed, lottery_entries, computed_at, rewarded_posts, votes)
             values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             on conflict (day, chat_id) do update set
                 joins = excluded.joins, leaves = excluded.leaves, members = excluded.members,
                 active_members = excluded.active_members, messages = excluded.messages,
                 checkins = excluded.checkins, points_issued = excluded.points_issued,
                 points_redeemed = excluded.points_redeemed, violations = excluded.violations,
                 pushes_sent = excluded.pushes_sent, pushes_failed = excluded.pushes_failed,
                 lottery_entries = excluded.lottery_entries, computed_at = excluded.computed_at,
                 rewarded_posts = excluded.rewarded_posts, votes = excluded.votes",
        )
        .bind(r.day.to_string())
        .bind(&r.chat_id)
        .bind(r.joins)
        .bind(r.leaves)
        .bind(r.members)
        .bind(r.active_members)
        .bind(r.messages)
        .bind(r.checkins)
        .bind(r.points_issued)
        .bind(r.points_redeemed)
        .bind(r.violations)
        .bind(r.pushes_sent)
        .bind(r.pushes_failed)
        .bind(r.lottery_entries)
        .bind(computed_at)
        .bind(r.rewarded_posts)
        .bind(r.votes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces the activity of the days `first..=last` with `rows`.
pub async fn replace_activity(
    conn: &mut SqliteConnection,
    first: NaiveDate,
    last: NaiveDate,
    rows: &[ActivityRow],
) -> sqlx::Result<()> {
    sqlx::query("delete from member_activity where day >= ? and day <= ?")
        .bind(first.to_string())
        .bind(last.to_string())
        .execute(&mut *conn)
        .await?;
    // 5 values per row: 500 rows stay far below SQLite's bound-parameter limit.
    for chunk in rows.chunks(500) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into member_activity (day, user_id, chat_id, messages, checkins) ",
        );
        builder.push_values(chunk, |mut row, r| {
            row.push_bind(r.day.to_string())
                .push_bind(&r.user_id)
                .push_bind(&r.chat_id)
                .push_bind(r.messages)
                .push_bind(r.checkins);
        });
        builder.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Stored rollup rows of one chat (`""`: the community) from `first` on, by day.
pub async fn daily_rows(
    conn: &mut SqliteConnection,
    chat_id: &str,
    first: NaiveDate,
) -> sqlx::Result<Vec<DailyRow>> {
    let rows = sqlx::query(
        "select day, chat_id, joins, leaves, members, active_members, messages, checkins,
                points_issued, points_redeemed, violations, pushes_sent, pushes_failed, lottery_entries,
                rewarded_posts, votes
         from analytics_daily where chat_id = ? and day >= ? order by day",
    )
    .bind(chat_id)
    .bind(first.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let day: String = row.try_get("day")?;
            Ok(DailyRow {
                day: parse_day(&day)?,
                chat_id: row.try_get("chat_id")?,
                joins: row.try_get("joins")?,
                leaves: row.try_get("leaves")?,
                members: row.try_get("members")?,
                active_members: row.try_get("active_members")?,
                messages: row.try_get("messages")?,
                checkins: row.try_get("checkins")?,
                points_issued: row.try_get("points_issued")?,
                points_redeemed: row.try_get("points_redeemed")?,
                violations: row.try_get("violations")?,
                pushes_sent: row.try_get("pushes_sent")?,
                pushes_failed: row.try_get("pushes_failed")?,
                lottery_entries: row.try_get("lottery_entries")?,
                rewarded_posts: row.try_get("rewarded_posts")?,
                votes: row.try_get("votes")?,
            })
        })
        .collect()
}

// --- lifecycle --------------------------------------------------------------------

/// Per person with a membership: first join, whether still in a chat, last
/// active day, and active days from `window_first` on.
pub async fn member_facts(
    conn: &mut SqliteConnection,
    window_first: NaiveDate,
) -> sqlx::Result<Vec<MemberFacts>> {
    let rows = sqlx::query(
        "with a as (select user_id, max(day) as last_day,
                           count(distinct case when day >= ? then day end) as active_days
                    from member_activity group by user_id)
         select m.user_id, min(m.joined_at) as first_joined_at,
                max(m.left_at is null) as is_member,
                max(a.last_day) as last_day, coalesce(max(a.active_days), 0) as active_days
         from chat_members m left join a on a.user_id = m.user_id
         group by m.user_id order by m.user_id",
    )
    .bind(window_first.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let last: Option<String> = row.try_get("last_day")?;
            Ok(MemberFacts {
                user_id: row.try_get("user_id")?,
                first_joined_at: row.try_get("first_joined_at")?,
                is_member: row.try_get("is_member")?,
                last_active_day: last.as_deref().map(parse_day).transpose()?,
                active_days_in_window: row.try_get("active_days")?,
            })
        })
        .collect()
}

pub async fn stages(conn: &mut SqliteConnection) -> sqlx::Result<BTreeMap<String, Stage>> {
    let rows: Vec<(String, String)> = sqlx::query_as("select user_id, stage from member_stages")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(user, stage)| Stage::parse(&stage).map(|s| (user, s)))
        .collect())
}

pub async fn set_stage(
    conn: &mut SqliteConnection,
    user_id: &str,
    stage: Stage,
    last_active_day: Option<NaiveDate>,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into member_stages (user_id, stage, since, last_active_day, updated_at)
         values (?1, ?2, ?3, ?4, ?3)
         on conflict (user_id) do update set stage = excluded.stage, since = excluded.since,
             last_active_day = excluded.last_active_day, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(stage.as_str())
    .bind(at)
    .bind(last_active_day.map(|d| d.to_string()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A stage change stored without an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStageChange<'a> {
    pub user_id: &'a str,
    pub from: Option<Stage>,
    pub to: Stage,
    pub last_active_day: Option<NaiveDate>,
}

/// Records many stage changes (history rows and current stages) in a few statements.
pub async fn record_stage_changes(
    conn: &mut SqliteConnection,
    changes: &[NewStageChange<'_>],
    at: i64,
) -> sqlx::Result<()> {
    // 5 values per row: 500 rows stay far below SQLite's bound-parameter limit.
    for chunk in changes.chunks(500) {
        let mut history = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into member_stage_changes (user_id, from_stage, to_stage, at) ",
        );
        history.push_values(chunk, |mut row, c| {
            row.push_bind(c.user_id)
                .push_bind(c.from.map(Stage::as_str))
                .push_bind(c.to.as_str())
                .push_bind(at);
        });
        history.build().execute(&mut *conn).await?;
        let mut current = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into member_stages (user_id, stage, since, last_active_day, updated_at) ",
        );
        current.push_values(chunk, |mut row, c| {
            row.push_bind(c.user_id)
                .push_bind(c.to.as_str())
                .push_bind(at)
                .push_bind(c.last_active_day.map(|d| d.to_string()))
                .push_bind(at);
        });
        current.push(
            " on conflict (user_id) do update set stage = excluded.stage, since = excluded.since,
              last_active_day = excluded.last_active_day, updated_at = excluded.updated_at",
        );
        current.build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn insert_stage_change(
    conn: &mut SqliteConnection,
    user_id: &str,
    from: Option<Stage>,
    to: Stage,
    at: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "insert into member_stage_changes (user_id, from_stage, to_stage, at)
         values (?, ?, ?, ?) returning id",
    )
    .bind(user_id)
    .bind(from.map(Stage::as_str))
    .bind(to.as_str())
    .bind(at)
    .fetch_one(&mut *conn)
    .await
}

/// Records what the at-risk action did for a change.
pub async fn record_stage_action(
    conn: &mut SqliteConnection,
    change_id: i64,
    action: &str,
    status: &str,
    reason: Option<&str>,
    outbox_key: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update member_stage_changes set action = ?, action_status = ?, action_reason = ?,
             outbox_key = ? where id = ?",
    )
    .bind(action)
    .bind(status)
    .bind(reason)
    .bind(outbox_key)
    .bind(change_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct StageChangeRow {
    pub id: i64,
    pub user_id: String,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at: i64,
    pub action: Option<String>,
    pub action_status: Option<String>,
    pub action_reason: Option<String>,
    pub outbox_key: Option<String>,
}

/// Stage changes, newest first; `user_id` narrows to one person.
pub async fn stage_changes(
    conn: &mut SqliteConnection,
    user_id: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<StageChangeRow>> {
    sqlx::query_as(
        "select id, user_id, from_stage, to_stage, at, action, action_status, action_reason, outbox_key
         from member_stage_changes where (?1 is null or user_id = ?1) order by id desc limit ?2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// The latest changes into `at_risk` from a known stage (the ones the
/// at-risk action fires for), newest first.
pub async fn at_risk_changes(
    conn: &mut SqliteConnection,
    limit: i64,
) -> sqlx::Result<Vec<StageChangeRow>> {
    sqlx::query_as(
        "select id, user_id, from_stage, to_stage, at, action, action_status, action_reason, outbox_key
         from member_stage_changes where to_stage = 'at_risk' and from_stage is not null
         order by id desc limit ?",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// People per current stage.
pub async fn stage_counts(conn: &mut SqliteConnection) -> sqlx::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select stage, count(*) from member_stages group by stage")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

// --- alerts ---------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertEpisode {
    pub id: i64,
    pub kind: AlertKind,
    /// The highest level announced.
    pub level: AlertLevel,
    pub value: i64,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

fn episode(row: sqlx::sqlite::SqliteRow) -> sqlx::Result<AlertEpisode> {
    let kind: String = row.try_get("kind")?;
    let level: String = row.try_get("level")?;
    let bad = |what: &str, text: &str| sqlx::Error::Decode(format!("unknown {what} {text}").into());
    Ok(AlertEpisode {
        id: row.try_get("id")?,
        kind: AlertKind::parse(&kind).ok_or_else(|| bad("alert kind", &kind))?,
        level: AlertLevel::parse(&level).ok_or_else(|| bad("alert level", &level))?,
        value: row.try_get("value")?,
        opened_at: row.try_get("opened_at")?,
        updated_at: row.try_get("updated_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

pub async fn open_episodes(conn: &mut SqliteConnection) -> sqlx::Result<Vec<AlertEpisode>> {
    let rows = sqlx::query(
        "select id, kind, level, value, opened_at, updated_at, closed_at from alert_episodes
         where closed_at is null order by id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(episode).collect()
}

/// Episodes opened at or after `since`, newest first (open and closed).
pub async fn episodes_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> sqlx::Result<Vec<AlertEpisode>> {
    let rows = sqlx::query(
        "select id, kind, level, value, opened_at, updated_at, closed_at from alert_episodes
         where opened_at >= ? or closed_at is null order by id desc",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(episode).collect()
}

pub async fn open_episode(
    conn: &mut SqliteConnection,
    kind: AlertKind,
    level: AlertLevel,
    value: i64,
    at: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "insert into alert_episodes (kind, level, value, opened_at, updated_at)
         values (?, ?, ?, ?, ?) returning id",
    )
    .bind(kind.as_str())
    .bind(level.as_str())
    .bind(value)
    .bind(at)
    .bind(at)
    .fetch_one(&mut *conn)
    .await
}

/// Refreshes an open episode's value (and level, when it escalated).
pub async fn update_episode(
    conn: &mut SqliteConnection,
    id: i64,
    level: AlertLevel,
    value: i64,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query("update alert_episodes set level = ?, value = ?, updated_at = ? where id = ?")
        .bind(level.as_str())
        .bind(value)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn close_episode(
    conn: &mut SqliteConnection,
    id: i64,
    value: i64,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "update alert_episodes set value = ?, updated_at = ?, closed_at = ? where id = ? and closed_at is null",
    )
    .bind(value)
    .bind(at)
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What members did in chats since `since` (unix seconds), for the rollups:
/// `(chat_id, time)` of each row of `table`. Tables and columns are ours,
/// never input.
async fn chat_events_since(
    conn: &mut SqliteConnection,
    table: &str,
    time_column: &str,
    since: i64,
) -> sqlx::Result<Vec<crate::analytics::rollup::ChatEvent>> {
    let sql = format!("select chat_id, {time_column} from {table} where {time_column} >= ?");
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(&sql)
        .bind(since)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, at)| crate::analytics::rollup::ChatEvent { chat_id, at })
        .collect())
}

/// Lottery entries since `since`.
pub async fn lottery_entries_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> sqlx::Result<Vec<crate::analytics::rollup::ChatEvent>> {
    chat_events_since(conn, "lottery_entries", "entered_at", since).await
}

/// Poll ballots first cast since `since` (a changed ballot keeps its first time).
pub async fn ballots_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> sqlx::Result<Vec<crate::analytics::rollup::ChatEvent>> {
    chat_events_since(conn, "poll_votes", "voted_at", since).await
}
