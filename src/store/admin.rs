//! The web console's tables (accounts, sessions, API tokens, login failures,
//! audit log) and the read-only queries behind its pages.

use sqlx::{Row, SqliteConnection};

// --- accounts -----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    /// When an owner disabled the account (migration 0018); `None` = active.
    pub disabled_at: Option<i64>,
}

/// Inserts a user; `None` when the username is taken.
pub async fn insert_user(
    conn: &mut SqliteConnection,
    username: &str,
    password_hash: &str,
    role: &str,
    at: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "insert into admin_users (username, password_hash, role, created_at) values (?, ?, ?, ?)
         on conflict (username) do nothing returning id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await
}

pub async fn user_by_name(
    conn: &mut SqliteConnection,
    username: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(
        "select id, username, password_hash, role, created_at, disabled_at
         from admin_users where username = ?",
    )
    .bind(username)
    .fetch_optional(&mut *conn)
    .await
}

pub async fn list_users(conn: &mut SqliteConnection) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(
        "select id, username, password_hash, role, created_at, disabled_at
         from admin_users order by id",
    )
    .fetch_all(&mut *conn)
    .await
}

/// Disables (`Some(at)`) or re-enables (`None`) an account; false if no such user.
pub async fn set_user_disabled(
    conn: &mut SqliteConnection,
    user_id: i64,
    disabled_at: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query("update admin_users set disabled_at = ? where id = ?")
        .bind(disabled_at)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(
    conn: &mut SqliteConnection,
    user_id: i64,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query("update admin_users set password_hash = ? where id = ?")
        .bind(password_hash)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// --- sessions -----------------------------------------------------------------

/// Ends every session of one user; returns how many there were.
pub async fn delete_user_sessions(conn: &mut SqliteConnection, user_id: i64) -> sqlx::Result<u64> {
    let result = sqlx::query("delete from admin_sessions where user_id = ?")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

pub async fn insert_session(
    conn: &mut SqliteConnection,
    token_hash: &str,
    user_id: i64,
    csrf_token: &str,
    at: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into admin_sessions (token_hash, user_id, csrf_token, created_at, expires_at)
         values (?, ?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(csrf_token)
    .bind(at)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A live session with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub csrf_token: String,
}

/// The session for this token hash, if it exists and has not expired at `now`.
pub async fn live_session(
    conn: &mut SqliteConnection,
    token_hash: &str,
    now: i64,
) -> sqlx::Result<Option<SessionRow>> {
    let row = sqlx::query(
        "select s.user_id, u.username, u.role, s.csrf_token
         from admin_sessions s join admin_users u on u.id = s.user_id
         where s.token_hash = ? and s.expires_at > ? and u.disabled_at is null",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(SessionRow {
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            role: row.try_get("role")?,
            csrf_token: row.try_get("csrf_token")?,
        })
    })
    .transpose()
}

pub async fn delete_session(conn: &mut SqliteConnection, token_hash: &str) -> sqlx::Result<()> {
    sqlx::query("delete from admin_sessions where token_hash = ?")
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn delete_expired_sessions(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<u64> {
    let result = sqlx::query("delete from admin_sessions where expires_at <= ?")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

// --- API tokens ---------------------------------------------------------------

pub async fn insert_api_token(
    conn: &mut SqliteConnection,
    token_hash: &str,
    user_id: i64,
    label: &str,
    at: i64,
) -> sqlx::Result<i64> {
    insert_api_token_until(conn, token_hash, user_id, label, at, None).await
}

/// A token that stops working at `expires_at` (never when `None`).
pub async fn insert_api_token_until(
    conn: &mut SqliteConnection,
    token_hash: &str,
    user_id: i64,
    label: &str,
    at: i64,
    expires_at: Option<i64>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "insert into admin_api_tokens (token_hash, user_id, label, created_at, expires_at)
         values (?, ?, ?, ?, ?) returning id",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(label)
    .bind(at)
    .bind(expires_at)
    .fetch_one(&mut *conn)
    .await
}

/// The token's owner (with the token label) if the token exists, is not
/// revoked or expired at `now`, and its account is not disabled.
pub async fn api_token_user(
    conn: &mut SqliteConnection,
    token_hash: &str,
    now: i64,
) -> sqlx::Result<Option<(SessionRow, String)>> {
    let row = sqlx::query(
        "select t.user_id, u.username, u.role, t.label
         from admin_api_tokens t join admin_users u on u.id = t.user_id
         where t.token_hash = ? and t.revoked_at is null
           and (t.expires_at is null or t.expires_at > ?) and u.disabled_at is null",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok((
            SessionRow {
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                role: row.try_get("role")?,
                csrf_token: String::new(),
            },
            row.try_get("label")?,
        ))
    })
    .transpose()
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApiTokenRow {
    pub id: i64,
    pub username: String,
    pub label: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
}

pub async fn list_api_tokens(conn: &mut SqliteConnection) -> sqlx::Result<Vec<ApiTokenRow>> {
    sqlx::query_as(
        "select t.id, u.username, t.label, t.created_at, t.revoked_at, t.expires_at
         from admin_api_tokens t join admin_users u on u.id = t.user_id order by t.id",
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn revoke_api_token(conn: &mut SqliteConnection, id: i64, at: i64) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update admin_api_tokens set revoked_at = ? where id = ? and revoked_at is null",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

// --- login rate limiting --------------------------------------------------------

pub async fn login_failures_since(
    conn: &mut SqliteConnection,
    username: &str,
    since: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from admin_login_failures where username = ? and at >= ?")
        .bind(username)
        .bind(since)
        .fetch_one(&mut *conn)
        .await
}

pub async fn clear_login_failures(conn: &mut SqliteConnection, username: &str) -> sqlx::Result<()> {
    sqlx::query("delete from admin_login_failures where username = ?")
        .bind(username)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A failed sign-in with the client address it came from (migration 0012).
pub async fn record_login_failure_from(
    conn: &mut SqliteConnection,
    username: &str,
    ip: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query("insert into admin_login_failures (username, ip, at) values (?, ?, ?)")
        .bind(username)
        .bind(ip)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Failed sign-ins for `username` from client address `ip` since `since`: how
/// many, and when the latest was.
pub async fn login_failures_for(
    conn: &mut SqliteConnection,
    username: &str,
    ip: &str,
    since: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as(
        "select count(*), max(at) from admin_login_failures
         where username = ? and ip = ? and at >= ?",
    )
    .bind(username)
    .bind(ip)
    .bind(since)
    .fetch_one(&mut *conn)
    .await
}

/// Forgets the failures of `username` from `ip` (after it signed in from there).
pub async fn clear_login_failures_from(
    conn: &mut SqliteConnection,
    username: &str,
    ip: &str,
) -> sqlx::Result<()> {
    sqlx::query("delete from admin_login_failures where username = ? and ip = ?")
        .bind(username)
        .bind(ip)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Failed sign-ins from one client address since `since`, whatever the username.
pub async fn login_failures_from_ip_since(
    conn: &mut SqliteConnection,
    ip: &str,
    since: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from admin_login_failures where ip = ? and at >= ?")
        .bind(ip)
        .bind(since)
        .fetch_one(&mut *conn)
        .await
}

// --- audit log ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub async fn append_audit(
    conn: &mut SqliteConnection,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into admin_audit (at, actor, action, target, detail) values (?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The newest entries first; `target` narrows to one target (e.g. a member).
pub async fn recent_audit(
    conn: &mut SqliteConnection,
    target: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as(
        "select id, at, actor, action, target, detail from admin_audit
         where (?1 is null or target = ?1) order by id desc limit ?2",
    )
    .bind(target)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

// --- dashboard ----------------------------------------------------------------

/// The headline numbers on the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub chats: i64,
    pub members: i64,
    pub people: i64,
    pub pending_redemptions: i64,
    pub parked_events: i64,
}

pub async fn totals(conn: &mut SqliteConnection) -> sqlx::Result<Totals> {
    let row = sqlx::query(
        "select (select count(*) from chats) as chats,
                (select count(distinct user_id) from chat_members where left_at is null) as members,
                (select count(*) from people) as people,
                (select count(*) from redemptions where status = 'pending') as pending_redemptions,
                (select count(*) from inbox where status = 'parked') as parked_events",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Totals {
        chats: row.try_get("chats")?,
        members: row.try_get("members")?,
        people: row.try_get("people")?,
        pending_redemptions: row.try_get("pending_redemptions")?,
        parked_events: row.try_get("parked_events")?,
    })
}

// --- members ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberRow {
    pub user_id: String,
    pub name: Option<String>,
    pub chats: i64,
    pub balance: i64,
    pub last_checkin: Option<String>,
}

/// People whose id or name contains `query` (all when empty), by id.
pub async fn search_members(
    conn: &mut SqliteConnection,
    query: &str,
    limit: i64,
) -> sqlx::Result<Vec<MemberRow>> {
    let pattern = format!(
        "%{}%",
        query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "select p.user_id, p.name,
                (select count(*) from chat_members m where m.user_id = p.user_id and m.left_at is null) as chats,
                (select coalesce(sum(delta), 0) from points_ledger l where l.user_id = p.user_id) as balance,
                (select max(day) from checkins k where k.user_id = p.user_id) as last_checkin
         from people p
         where p.user_id like ?1 escape '\\' or coalesce(p.name, '') like ?1 escape '\\'
         order by p.user_id limit ?2",
    )
    .bind(pattern)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(MemberRow {
                user_id: row.try_get("user_id")?,
                name: row.try_get("name")?,
                chats: row.try_get("chats")?,
                balance: row.try_get("balance")?,
                last_checkin: row.try_get("last_checkin")?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct MembershipRow {
    pub chat_id: String,
    pub chat_name: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub join_scene: Option<String>,
}

pub async fn memberships(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Vec<MembershipRow>> {
    sqlx::query_as(
        "select m.chat_id, coalesce(c.name, '') as chat_name, m.joined_at, m.left_at, m.join_scene
         from chat_members m left join chats c on c.chat_id = m.chat_id
         where m.user_id = ? order by m.joined_at",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await
}

/// The days `user_id` checked in on from `since_day` (for the calendar).
pub async fn checkin_days(
    conn: &mut SqliteConnection,
    user_id: &str,
    since_day: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("select day from checkins where user_id = ? and day >= ? order by day")
        .bind(user_id)
        .bind(since_day)
        .fetch_all(&mut *conn)
        .await
}

pub async fn person_exists(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from people where user_id = ?)")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
}

// --- chats --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatRow {
    pub chat_id: String,
    pub name: String,
    pub route: String,
    pub has_robot: bool,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub members: i64,
    pub joins_7d: i64,
    pub leaves_7d: i64,
    pub needs_resync: bool,
}

pub async fn list_chats(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<Vec<ChatRow>> {
    let week_ago = now - 7 * 86_400;
    let rows = sqlx::query(
        "select c.chat_id, c.name, c.route, c.robot_key is not null as has_robot, c.owner, c.tags_json,
                c.needs_resync,
                (select count(*) from chat_members m where m.chat_id = c.chat_id and m.left_at is null) as members,
                (select count(*) from chat_members m where m.chat_id = c.chat_id and m.joined_at >= ?1) as joins_7d,
                (select count(*) from chat_members m where m.chat_id = c.chat_id and m.left_at >= ?1) as leaves_7d
         from chats c order by c.name, c.chat_id",
    )
    .bind(week_ago)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let tags: String = row.try_get("tags_json")?;
            Ok(ChatRow {
                chat_id: row.try_get("chat_id")?,
                name: row.try_get("name")?,
                route: row.try_get("route")?,
                has_robot: row.try_get("has_robot")?,
                owner: row.try_get("owner")?,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                members: row.try_get("members")?,
                joins_7d: row.try_get("joins_7d")?,
                leaves_7d: row.try_get("leaves_7d")?,
                needs_resync: row.try_get("needs_resync")?,
            })
        })
        .collect()
}

// --- queues -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ParkedEventRow {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub received_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Inbox events the pipeline gave up on (their body is not shown: it may hold message text).
pub async fn parked_events(conn: &mut SqliteConnection) -> sqlx::Result<Vec<ParkedEventRow>> {
    sqlx::query_as(
        "select id, source, kind, received_at, attempts, last_error from inbox
         where status = 'parked' order by id",
    )
    .fetch_all(&mut *conn)
    .await
}

// --- rule sets ----------------------------------------------------------------

pub async fn rule_set_version(
    conn: &mut SqliteConnection,
    version: i64,
) -> sqlx::Result<Option<super::rule_sets::StoredRuleSet>> {
    sqlx::query_as("select version, body, created_at from rule_sets where version = ?")
        .bind(version)
        .fetch_optional(&mut *conn)
        .await
}
