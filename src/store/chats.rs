//! The chat registry, plus per-chat rule state: merged-welcome windows and
//! auto-reply cooldowns.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Row, SqliteConnection};

use crate::rules::event::JoinScene;
use crate::rules::welcome::QueuedJoin;
use crate::rules::{ChatRoute, ChatSnapshot};

fn to_time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// A chat as registered (from groupchat sync, appchat/create or configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChat {
    pub chat_id: String,
    pub name: String,
    pub route: ChatRoute,
    pub owner: Option<String>,
    pub admins: Vec<String>,
    pub tags: Vec<String>,
    pub member_version: Option<String>,
}

/// The `route`, `robot_key` and `smart_bot` columns of a route.
pub(crate) fn route_columns(route: &ChatRoute) -> (&'static str, Option<String>, Option<String>) {
    match route {
        ChatRoute::AppGroup | ChatRoute::CustomerGroup => (route.name(), None, None),
        ChatRoute::InternalGroup {
            robot_key,
            smart_bot,
        } => (route.name(), robot_key.clone(), smart_bot.clone()),
    }
}

/// The route stored in the `route`, `robot_key` and `smart_bot` columns.
pub(crate) fn route_from_columns(
    route: &str,
    robot_key: Option<String>,
    smart_bot: Option<String>,
) -> ChatRoute {
    match route {
        "app_group" => ChatRoute::AppGroup,
        "internal_group" => ChatRoute::InternalGroup {
            robot_key,
            smart_bot,
        },
        _ => ChatRoute::CustomerGroup,
    }
}

/// Inserts or updates a chat (name, route, owner, admins, tags; the member
/// version only when given).
pub async fn upsert_chat(
    conn: &mut SqliteConnection,
    chat: &NewChat,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let (route, robot_key, smart_bot) = route_columns(&chat.route);
    let admins = serde_json::to_string(&chat.admins).unwrap_or_else(|_| "[]".into());
    let tags = serde_json::to_string(&chat.tags).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "insert into chats (chat_id, name, route, robot_key, smart_bot, owner, admins_json, tags_json, member_version, updated_at)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (chat_id) do update set
            name = excluded.name, route = excluded.route, robot_key = excluded.robot_key,
            smart_bot = excluded.smart_bot,
            owner = excluded.owner, admins_json = excluded.admins_json, tags_json = excluded.tags_json,
            member_version = coalesce(excluded.member_version, chats.member_version),
            updated_at = excluded.updated_at",
    )
    .bind(&chat.chat_id)
    .bind(&chat.name)
    .bind(route)
    .bind(robot_key)
    .bind(smart_bot)
    .bind(&chat.owner)
    .bind(admins)
    .bind(tags)
    .bind(&chat.member_version)
    .bind(now.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The chat with its current member count, as the rules see it.
pub async fn get_chat(
    conn: &mut SqliteConnection,
    chat_id: &str,
) -> sqlx::Result<Option<ChatSnapshot>> {
    let row = sqlx::query(
        "select chat_id, name, route, robot_key, smart_bot, owner, admins_json, tags_json, member_version, raid_until,
                (select count(*) from chat_members m where m.chat_id = chats.chat_id and m.left_at is null) as members
         from chats where chat_id = ?",
    )
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let admins: String = row.try_get("admins_json")?;
    let tags: String = row.try_get("tags_json")?;
    let members: i64 = row.try_get("members")?;
    let raid_until: Option<i64> = row.try_get("raid_until")?;
    Ok(Some(ChatSnapshot {
        chat_id: row.try_get("chat_id")?,
        name: row.try_get("name")?,
        route: route_from_columns(
            row.try_get::<&str, _>("route")?,
            row.try_get("robot_key")?,
            row.try_get("smart_bot")?,
        ),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        owner: row.try_get("owner")?,
        admins: serde_json::from_str(&admins).unwrap_or_default(),
        member_count: u32::try_from(members).unwrap_or(0),
        member_version: row.try_get("member_version")?,
        raid_until: raid_until.map(to_time),
    }))
}

/// Sets a registered chat's route; `false` if no such chat.
pub async fn set_route(
    conn: &mut SqliteConnection,
    chat_id: &str,
    route: &ChatRoute,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let (route, robot_key, smart_bot) = route_columns(route);
    let done = sqlx::query(
        "update chats set route = ?, robot_key = ?, smart_bot = ?, updated_at = ? where chat_id = ?",
    )
    .bind(route)
    .bind(robot_key)
    .bind(smart_bot)
    .bind(now.timestamp())
    .bind(chat_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a registered chat's tags; `false` if no such chat.
pub async fn set_tags(
    conn: &mut SqliteConnection,
    chat_id: &str,
    tags: &[String],
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let tags = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query("update chats set tags_json = ?, updated_at = ? where chat_id = ?")
        .bind(tags)
        .bind(now.timestamp())
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_chat_ids(conn: &mut SqliteConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select chat_id from chats order by chat_id")
        .fetch_all(&mut *conn)
        .await
}

pub async fn set_member_version(
    conn: &mut SqliteConnection,
    chat_id: &str,
    version: &str,
) -> sqlx::Result<()> {
    sqlx::query("update chats set member_version = ? where chat_id = ?")
        .bind(version)
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Flags a chat whose member list must be re-pulled (groupchat/get).
pub async fn mark_needs_resync(conn: &mut SqliteConnection, chat_id: &str) -> sqlx::Result<()> {
    sqlx::query("update chats set needs_resync = 1 where chat_id = ?")
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn chats_needing_resync(conn: &mut SqliteConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select chat_id from chats where needs_resync = 1 order by chat_id")
        .fetch_all(&mut *conn)
        .await
}

pub async fn clear_needs_resync(conn: &mut SqliteConnection, chat_id: &str) -> sqlx::Result<()> {
    sqlx::query("update chats set needs_resync = 0 where chat_id = ?")
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_raid_until(
    conn: &mut SqliteConnection,
    chat_id: &str,
    until: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update chats set raid_until = ? where chat_id = ?")
        .bind(until.timestamp())
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Adds a join to the chat's open welcome window (a replay changes nothing).
pub async fn queue_welcome(
    conn: &mut SqliteConnection,
    chat_id: &str,
    join: &QueuedJoin,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into pending_welcomes (chat_id, user_id, name, joined_at, is_returning, join_scene)
         values (?, ?, ?, ?, ?, ?)
         on conflict (chat_id, user_id) do nothing",
    )
    .bind(chat_id)
    .bind(&join.user_id)
    .bind(&join.name)
    .bind(join.joined_at.timestamp())
    .bind(join.returning)
    .bind(join.join_scene.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn cancel_queued_welcome(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
) -> sqlx::Result<()> {
    forget_queued(conn, "pending_welcomes", chat_id, user_id).await
}

/// Chats whose welcome window opened at or before `opened_by`, oldest first.
pub async fn due_welcome_windows(
    conn: &mut SqliteConnection,
    opened_by: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    chats_due(conn, "pending_welcomes", "joined_at", opened_by).await
}

/// Removes and returns the chat's queued joins, in join order.
pub async fn take_queued_welcomes(
    conn: &mut SqliteConnection,
    chat_id: &str,
) -> sqlx::Result<Vec<QueuedJoin>> {
    let rows: Vec<(String, Option<String>, i64, bool, String)> = sqlx::query_as(
        "delete from pending_welcomes where chat_id = ?
         returning user_id, name, joined_at, is_returning, join_scene",
    )
    .bind(chat_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut joins: Vec<QueuedJoin> = rows
        .into_iter()
        .map(|(user_id, name, joined_at, returning, scene)| QueuedJoin {
            user_id,
            name,
            joined_at: to_time(joined_at),
            returning,
            join_scene: match scene.as_str() {
                "invited" => JoinScene::Invited,
                "qrcode" => JoinScene::QrCode,
                _ => JoinScene::Unknown,
            },
            inviter: None,
        })
        .collect();
    joins.sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
    Ok(joins)
}

/// When each auto-reply rule last fired in a scope (chat id, or sender for 1:1).
pub async fn autoreply_last_fired(
    conn: &mut SqliteConnection,
    scope: &str,
) -> sqlx::Result<BTreeMap<String, DateTime<Utc>>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select rule, fired_at from autoreply_fired where scope = ?")
            .bind(scope)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(rule, at)| (rule, to_time(at)))
        .collect())
}

pub async fn mark_autoreply_fired(
    conn: &mut SqliteConnection,
    scope: &str,
    rule: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into autoreply_fired (scope, rule, fired_at) values (?, ?, ?)
         on conflict (scope, rule) do update set fired_at = excluded.fired_at",
    )
    .bind(scope)
    .bind(rule)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn schedule_onboarding(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
    due_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into pending_onboarding (chat_id, user_id, due_at) values (?, ?, ?)
         on conflict (chat_id, user_id) do nothing",
    )
    .bind(chat_id)
    .bind(user_id)
    .bind(due_at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn cancel_onboarding(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
) -> sqlx::Result<()> {
    forget_queued(conn, "pending_onboarding", chat_id, user_id).await
}

/// Chats with an onboarding tip due by `now`, with their first due time,
/// oldest first.
pub async fn chats_with_due_onboarding(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    chats_due(conn, "pending_onboarding", "due_at", now).await
}

/// The two per-chat batching queues (`pending_welcomes`, `pending_onboarding`)
/// share their shape: one row per member waiting for the chat's merged post.
/// `table` and `column` are always one of those names, never user input.
async fn forget_queued(
    conn: &mut SqliteConnection,
    table: &'static str,
    chat_id: &str,
    user_id: &str,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "delete from {table} where chat_id = ? and user_id = ?"
    ))
    .bind(chat_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Chats of a batching queue whose earliest `column` time is at or before
/// `by`, with that time, oldest first.
async fn chats_due(
    conn: &mut SqliteConnection,
    table: &'static str,
    column: &'static str,
    by: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "select chat_id, min({column}) as first from {table}
         group by chat_id having min({column}) <= ? order by first, chat_id"
    ))
    .bind(by.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(chat, at)| (chat, to_time(at)))
        .collect())
}

/// Removes and returns the chat's tips due before `until` (user ids, in due
/// order); empty if another pass took them first.
pub async fn take_onboarding_before(
    conn: &mut SqliteConnection,
    chat_id: &str,
    until: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    let mut rows: Vec<(String, i64)> = sqlx::query_as(
        "delete from pending_onboarding where chat_id = ? and due_at < ?
         returning user_id, due_at",
    )
    .bind(chat_id)
    .bind(until.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    Ok(rows.into_iter().map(|(user, _)| user).collect())
}
