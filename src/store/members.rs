//! Members per chat, people across chats, badges.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::rules::event::JoinScene;

/// Records a join (again, for a returning member: clears `left_at`).
pub async fn record_join(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
    at: DateTime<Utc>,
    scene: JoinScene,
) -> sqlx::Result<()> {
    ensure_person(conn, user_id, None, at).await?;
    sqlx::query(
        "insert into chat_members (chat_id, user_id, joined_at, join_scene) values (?, ?, ?, ?)
         on conflict (chat_id, user_id) do update set
            joined_at = excluded.joined_at, left_at = null, join_scene = excluded.join_scene",
    )
    .bind(chat_id)
    .bind(user_id)
    .bind(at.timestamp())
    .bind(scene.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn record_leave(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update chat_members set left_at = ? where chat_id = ? and user_id = ? and left_at is null",
    )
    .bind(at.timestamp())
    .bind(chat_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates the person if unknown; sets the name when one is given.
pub async fn ensure_person(
    conn: &mut SqliteConnection,
    user_id: &str,
    name: Option<&str>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into people (user_id, name, first_seen_at) values (?, ?, ?)
         on conflict (user_id) do update set name = coalesce(excluded.name, people.name)",
    )
    .bind(user_id)
    .bind(name)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn person_name(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Option<String>> {
    let name: Option<Option<String>> =
        sqlx::query_scalar("select name from people where user_id = ?")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(name.flatten())
}

/// Who invited `user_id` into `chat_id`, by display name (their user id when
/// no name is known), when WeCom's member record named an inviter.
pub async fn inviter_name(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<String>> {
    let inviter: Option<String> = sqlx::query_scalar(
        "select coalesce(p.name, m.inviter) from chat_members m
         left join people p on p.user_id = m.inviter
         where m.chat_id = ? and m.user_id = ? and m.inviter is not null and m.inviter <> ''",
    )
    .bind(chat_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inviter)
}

/// Whether the person was ever a member of any chat (a returning member).
pub async fn was_member_before(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from chat_members where user_id = ?)")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
}

/// Current members of a chat (user ids, join order).
pub async fn current_members(
    conn: &mut SqliteConnection,
    chat_id: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select user_id from chat_members where chat_id = ? and left_at is null order by joined_at, user_id",
    )
    .bind(chat_id)
    .fetch_all(&mut *conn)
    .await
}

pub async fn award_badge(
    conn: &mut SqliteConnection,
    user_id: &str,
    badge: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into badges (user_id, badge, awarded_at) values (?, ?, ?) on conflict do nothing",
    )
    .bind(user_id)
    .bind(badge)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn badges(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select badge from badges where user_id = ? order by awarded_at, badge")
        .bind(user_id)
        .fetch_all(&mut *conn)
        .await
}

/// One member as groupchat/get reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedMember {
    pub user_id: String,
    pub name: Option<String>,
    pub joined_at: DateTime<Utc>,
    pub join_scene: JoinScene,
    pub inviter: Option<String>,
}

/// Replaces a chat's member list with the authoritative one: members missing
/// from it are marked left now, new ones are added with their real join time.
/// Returns (added, removed).
pub async fn replace_chat_members(
    conn: &mut SqliteConnection,
    chat_id: &str,
    members: &[SyncedMember],
    now: DateTime<Utc>,
) -> sqlx::Result<(usize, usize)> {
    let current = current_members(conn, chat_id).await?;
    let mut removed = 0;
    for user_id in &current {
        if !members.iter().any(|m| &m.user_id == user_id) {
            record_leave(conn, chat_id, user_id, now).await?;
            removed += 1;
        }
    }
    let mut added = 0;
    for member in members {
        ensure_person(conn, &member.user_id, member.name.as_deref(), now).await?;
        if current.contains(&member.user_id) {
            // A join callback recorded them without WeCom's `invitor`; the
            // member record is the only place it appears (welcomes, invite rewards).
            if let Some(inviter) = member.inviter.as_deref().filter(|i| !i.is_empty()) {
                sqlx::query(
                    "update chat_members set inviter = ?
                     where chat_id = ? and user_id = ? and (inviter is null or inviter = '')",
                )
                .bind(inviter)
                .bind(chat_id)
                .bind(&member.user_id)
                .execute(&mut *conn)
                .await?;
            }
            continue;
        }
        sqlx::query(
            "insert into chat_members (chat_id, user_id, joined_at, join_scene, inviter) values (?, ?, ?, ?, ?)
             on conflict (chat_id, user_id) do update set
                joined_at = excluded.joined_at, left_at = null,
                join_scene = excluded.join_scene, inviter = excluded.inviter",
        )
        .bind(chat_id)
        .bind(&member.user_id)
        .bind(member.joined_at.timestamp())
        .bind(member.join_scene.as_str())
        .bind(&member.inviter)
        .execute(&mut *conn)
        .await?;
        added += 1;
    }
    Ok((added, removed))
}
