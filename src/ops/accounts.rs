//! Console accounts and API tokens, and the credential primitives behind
//! them: argon2id password hashes, random secrets, hashed session and token
//! storage.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;
use subtle::ConstantTimeEq;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::{self, admin::ApiTokenRow};

/// Why a new account was refused because its name exists (the console
/// answers 409 Conflict for it).
pub const USERNAME_TAKEN: &str = "username already taken";

/// An account as the users page lists it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub username: String,
    pub role: String,
    pub created_at: i64,
    /// When an owner disabled the account; `None` while it is active.
    pub disabled_at: Option<i64>,
}

pub async fn users(ops: &Ops) -> OpsResult<Vec<Account>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::admin::list_users(&mut conn)
        .await?
        .into_iter()
        .map(|u| Account {
            username: u.username,
            role: u.role,
            created_at: u.created_at,
            disabled_at: u.disabled_at,
        })
        .collect())
}

pub async fn tokens(ops: &Ops) -> OpsResult<Vec<ApiTokenRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::admin::list_api_tokens(&mut conn).await?)
}

/// Adds a manager account. Refuses an empty or odd username, a password
/// shorter than 10 characters, or a name already taken.
pub async fn create_user(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    password: &str,
    role: Role,
) -> OpsResult<()> {
    actor.require(Role::Owner)?;
    let username = valid_username(username)
        .map_err(|e| OpsError::invalid("username", e.to_string()))?
        .to_owned();
    let hash = strong_password_hash(password).await?;
    let mut tx = ops.begin().await?;
    if store::admin::insert_user(&mut tx, &username, &hash, role.as_str(), now.timestamp())
        .await?
        .is_none()
    {
        return Err(OpsError::invalid("username", USERNAME_TAKEN));
    }
    audit(&mut tx, actor, now, "user.create", &username, role.as_str()).await?;
    tx.commit().await?;
    Ok(())
}

/// A bearer token for the JSON API acting as `username` (with that account's
/// role). Returns the token: it is shown once and only its hash is stored.
pub async fn create_token(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    label: &str,
) -> OpsResult<String> {
    create_token_expiring(ops, actor, now, username, label, None).await
}

/// The longest lifetime a token may be given, in days.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// [`create_token`] that stops working `valid_days` days from `now` (never when `None`).
pub async fn create_token_expiring(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    label: &str,
    valid_days: Option<u32>,
) -> OpsResult<String> {
    actor.require(Role::Owner)?;
    if valid_days.is_some_and(|days| !(1..=MAX_TOKEN_DAYS).contains(&days)) {
        return Err(OpsError::invalid(
            "expires_in_days",
            format!("must be between 1 and {MAX_TOKEN_DAYS}"),
        ));
    }
    let expires_at = valid_days.map(|days| now.timestamp() + i64::from(days) * 86_400);
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 64 {
        return Err(OpsError::invalid(
            "label",
            "a label of 1-64 characters is required",
        ));
    }
    let mut tx = ops.begin().await?;
    let user = store::admin::user_by_name(&mut tx, username)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("user {username}")))?;
    let token = format!("qy_{}", random_secret());
    store::admin::insert_api_token_until(
        &mut tx,
        &hash_secret(&token),
        user.id,
        label,
        now.timestamp(),
        expires_at,
    )
    .await?;
    let detail = match valid_days {
        Some(days) => format!("{username}, expires in {days} days"),
        None => username.to_owned(),
    };
    audit(&mut tx, actor, now, "token.create", label, &detail).await?;
    tx.commit().await?;
    Ok(token)
}

/// The token stops working at once.
pub async fn revoke_token(ops: &Ops, actor: &Actor, now: DateTime<Utc>, id: i64) -> OpsResult<()> {
    actor.require(Role::Owner)?;
    let mut tx = ops.begin().await?;
    if !store::admin::revoke_api_token(&mut tx, id, now.timestamp()).await? {
        return Err(OpsError::not_found(format!("API token {id}")));
    }
    audit(&mut tx, actor, now, "token.revoke", &id.to_string(), "").await?;
    tx.commit().await?;
    Ok(())
}

// --- account controls ------------------------------------------------------------

async fn existing_user(
    conn: &mut SqliteConnection,
    username: &str,
) -> OpsResult<store::admin::UserRow> {
    store::admin::user_by_name(conn, username)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("user {username}")))
}

/// Disables an account (`disabled`) or enables it again. A disabled account
/// cannot sign in, and its sessions and API tokens stop working at once.
/// Nobody can disable their own account, so an owner cannot lock the last
/// owner out by mistake.
pub async fn set_disabled(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    disabled: bool,
) -> OpsResult<()> {
    actor.require(Role::Owner)?;
    if disabled && actor.name == username {
        return Err(OpsError::invalid(
            "username",
            "you cannot disable your own account",
        ));
    }
    let mut tx = ops.begin().await?;
    let user = existing_user(&mut tx, username).await?;
    let at = disabled.then(|| user.disabled_at.unwrap_or(now.timestamp()));
    store::admin::set_user_disabled(&mut tx, user.id, at).await?;
    let action = if disabled {
        store::admin::delete_user_sessions(&mut tx, user.id).await?;
        "user.disable"
    } else {
        "user.enable"
    };
    audit(&mut tx, actor, now, action, username, "").await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password for `username` and ends all its sessions.
pub async fn reset_password(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    password: &str,
) -> OpsResult<()> {
    actor.require(Role::Owner)?;
    let hash = strong_password_hash(password).await?;
    let mut tx = ops.begin().await?;
    let user = existing_user(&mut tx, username).await?;
    store::admin::set_password_hash(&mut tx, user.id, &hash).await?;
    let ended = store::admin::delete_user_sessions(&mut tx, user.id).await?;
    audit(
        &mut tx,
        actor,
        now,
        "user.reset_password",
        username,
        &format!("{ended} sessions ended"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Signs `username` out everywhere; returns how many sessions ended.
pub async fn end_sessions(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
) -> OpsResult<u64> {
    actor.require(Role::Owner)?;
    let mut tx = ops.begin().await?;
    let user = existing_user(&mut tx, username).await?;
    let ended = store::admin::delete_user_sessions(&mut tx, user.id).await?;
    audit(
        &mut tx,
        actor,
        now,
        "user.end_sessions",
        username,
        &format!("{ended} sessions ended"),
    )
    .await?;
    tx.commit().await?;
    Ok(ended)
}

// --- signing in -----------------------------------------------------------------

/// How hard sign-in is on guessing.
#[derive(Debug, Clone, Copy)]
pub struct SignInPolicy {
    /// Failures count within this many seconds.
    pub window_secs: i64,
    /// Failed sign-ins for one username from one client address that go
    /// without delay; after them each attempt waits [`retry_delay_secs`].
    pub max_failures: i64,
    /// Failed sign-ins allowed per client address (any username) within the window.
    pub failures_per_ip: i64,
    /// How long a session lasts.
    pub session_ttl_secs: i64,
}

/// Longest wait between attempts for one username from one address.
pub const MAX_RETRY_DELAY_SECS: i64 = 15 * 60;

/// After `failures` failures (from one address, for one name), how long the
/// next attempt waits after the latest: nothing for the first `free` ones,
/// then 1 s, 2 s, 4 s … up to [`MAX_RETRY_DELAY_SECS`]. A guesser is slowed
/// down exponentially; nobody is locked out, and the owner signing in from
/// another address is not slowed by someone else's guesses at all.
pub fn retry_delay_secs(failures: i64, free: i64) -> i64 {
    let over = failures - free;
    if over < 0 {
        return 0;
    }
    1i64.checked_shl(over.min(62) as u32)
        .unwrap_or(MAX_RETRY_DELAY_SECS)
        .min(MAX_RETRY_DELAY_SECS)
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum SignIn {
    /// Too many recent failures for this name from this address, or from
    /// this address at all; the password was not checked. Try again in
    /// `retry_after_secs`.
    Throttled { retry_after_secs: i64 },
    /// Unknown name or wrong password (the same answer, in the same time).
    Refused,
    /// A new session; `secret` goes into the session cookie.
    Started { secret: String },
}

/// At most this many argon2 checks run at once: a burst of sign-ins must not
/// take every core (or every blocking thread) from the service.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

fn password_checks() -> &'static tokio::sync::Semaphore {
    static CHECKS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CHECKS.get_or_init(|| tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS))
}

static THROTTLED_ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sign-in attempts refused unchecked since start-up. They are counted here
/// (and the first one past the limit is audited), not each written to the
/// audit log: a guesser must not be able to flood it.
pub fn throttled_attempts() -> u64 {
    THROTTLED_ATTEMPTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Checks a username and password and starts a session.
///
/// The throttle check and the recording of the attempt happen in one write
/// transaction: the attempt is counted as a failure *before* the password is
/// checked (and forgotten if it was right), so concurrent guesses cannot slip
/// past the limit together. The password check runs after that transaction,
/// holding no database connection, and at most [`CONCURRENT_PASSWORD_CHECKS`]
/// at a time. Failures and sign-ins are audited, and the failure after which
/// an address starts to wait adds `login.delayed`, the owners' notice that
/// somebody is guessing; throttled attempts are only counted.
pub async fn sign_in(
    ops: &Ops,
    now: DateTime<Utc>,
    username: &str,
    password: &str,
    ip: &str,
    policy: SignInPolicy,
) -> OpsResult<SignIn> {
    let username = username.trim();
    let at = now.timestamp();
    let window_start = at - policy.window_secs;
    let tried = Actor::new(username, Role::Viewer);
    let user = {
        let mut tx = ops.begin().await?;
        if !ip.is_empty()
            && store::admin::login_failures_from_ip_since(&mut tx, ip, window_start).await?
                >= policy.failures_per_ip
        {
            THROTTLED_ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(SignIn::Throttled {
                retry_after_secs: policy.window_secs,
            });
        }
        let (failures, latest) =
            store::admin::login_failures_for(&mut tx, username, ip, window_start).await?;
        let delay = retry_delay_secs(failures, policy.max_failures);
        let wait = latest.map_or(0, |latest| latest + delay - at);
        if wait > 0 {
            THROTTLED_ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(SignIn::Throttled {
                retry_after_secs: wait,
            });
        }
        store::admin::record_login_failure_from(&mut tx, username, ip, at).await?;
        let user = store::admin::user_by_name(&mut tx, username).await?;
        tx.commit().await?;
        (user, failures + 1)
    };
    let (user, failures) = user;
    // argon2 is deliberately slow: keep it off the async workers, outside any
    // transaction, and bounded. An unknown name is checked against a dummy
    // hash so it takes as long as a wrong password.
    let hash = user.as_ref().map_or_else(
        || dummy_password_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let password = password.to_owned();
    let verified = {
        let _permit = password_checks()
            .acquire()
            .await
            .map_err(|e| anyhow::anyhow!("password check: {e}"))?;
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| anyhow::anyhow!("password check: {e}"))?
    };
    let mut tx = ops.begin().await?;
    // A disabled account is refused like a wrong password.
    let Some(user) = user.filter(|u| verified && u.disabled_at.is_none()) else {
        audit(&mut tx, &tried, now, "login.failed", username, "").await?;
        if failures == policy.max_failures {
            // The owners' notice: from now on this address waits between tries.
            audit(&mut tx, &tried, now, "login.delayed", username, ip).await?;
        }
        tx.commit().await?;
        return Ok(SignIn::Refused);
    };
    store::admin::clear_login_failures_from(&mut tx, username, ip).await?;
    let secret = start_session(&mut tx, user.id, at, policy.session_ttl_secs).await?;
    audit(&mut tx, &tried, now, "login", &user.username, "").await?;
    tx.commit().await?;
    Ok(SignIn::Started { secret })
}

/// Ends the session whose cookie holds `secret` (if any).
pub async fn sign_out(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    username: &str,
    secret: Option<&str>,
) -> OpsResult<()> {
    let mut tx = ops.begin().await?;
    if let Some(secret) = secret {
        store::admin::delete_session(&mut tx, &hash_secret(secret)).await?;
    }
    audit(&mut tx, actor, now, "logout", username, "").await?;
    tx.commit().await?;
    Ok(())
}

/// Who holds a session or an API token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    /// The username for a session, `api:<label>` for a token.
    pub actor: Actor,
    /// The session's CSRF token; empty for a token.
    pub csrf: String,
}

/// The caller behind a live session cookie, if any.
pub async fn session_caller(
    ops: &Ops,
    now: DateTime<Utc>,
    secret: &str,
) -> OpsResult<Option<Caller>> {
    let mut conn = ops.pool.acquire().await?;
    let Some(session) =
        store::admin::live_session(&mut conn, &hash_secret(secret), now.timestamp()).await?
    else {
        return Ok(None);
    };
    let role = Role::parse(&session.role).ok_or(OpsError::Forbidden)?;
    Ok(Some(Caller {
        user_id: session.user_id,
        actor: Actor::new(session.username.clone(), role),
        username: session.username,
        csrf: session.csrf_token,
    }))
}

/// The caller behind a bearer token, if it is a live one at `now`.
pub async fn token_caller(ops: &Ops, now: DateTime<Utc>, token: &str) -> OpsResult<Option<Caller>> {
    let mut conn = ops.pool.acquire().await?;
    let Some((user, label)) =
        store::admin::api_token_user(&mut conn, &hash_secret(token), now.timestamp()).await?
    else {
        return Ok(None);
    };
    let role = Role::parse(&user.role).ok_or(OpsError::Forbidden)?;
    Ok(Some(Caller {
        user_id: user.user_id,
        username: user.username,
        actor: Actor::new(format!("api:{label}"), role),
        csrf: String::new(),
    }))
}

/// Starts a session; returns the cookie value (the session secret).
pub async fn start_session(
    conn: &mut SqliteConnection,
    user_id: i64,
    now: i64,
    ttl_secs: i64,
) -> sqlx::Result<String> {
    let secret = random_secret();
    store::admin::insert_session(
        conn,
        &hash_secret(&secret),
        user_id,
        &random_secret(),
        now,
        now + ttl_secs,
    )
    .await?;
    // Expired sessions are useless; sweep them while we are here.
    store::admin::delete_expired_sessions(conn, now).await?;
    Ok(secret)
}

// --- credentials ----------------------------------------------------------------

/// 32 random bytes, hex: session ids, CSRF tokens, API tokens.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Sessions and API tokens are stored hashed, so a copy of the database
/// cannot be used to sign in.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fixed hash to verify against when the username is unknown, so a wrong
/// username takes as long as a wrong password.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub fn check_password_strength(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < 10 {
        anyhow::bail!("password must have at least 10 characters");
    }
    Ok(())
}

pub fn valid_username(username: &str) -> anyhow::Result<&str> {
    let username = username.trim();
    let ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if !ok {
        anyhow::bail!("username must be 1-64 letters, digits, '_', '-', '.' or '@'");
    }
    Ok(username)
}

pub async fn issue_api_token(
    conn: &mut SqliteConnection,
    user_id: i64,
    label: &str,
    now: i64,
) -> sqlx::Result<String> {
    let token = format!("qy_{}", random_secret());
    store::admin::insert_api_token(conn, &hash_secret(&token), user_id, label, now).await?;
    Ok(token)
}

/// The argon2id hash of a new password, refused (field `password`) when it is
/// too weak. argon2 is deliberately slow: it runs off the async workers.
async fn strong_password_hash(password: &str) -> OpsResult<String> {
    check_password_strength(password).map_err(|e| OpsError::invalid("password", e.to_string()))?;
    let password = password.to_owned();
    Ok(
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))??,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_wrong_password_fails() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a phc string"));
    }

    #[test]
    fn retry_delay_doubles_after_the_free_failures_and_is_capped() {
        let delays: Vec<i64> = (0..9).map(|n| retry_delay_secs(n, 5)).collect();
        assert_eq!(delays, [0, 0, 0, 0, 0, 1, 2, 4, 8]);
        assert_eq!(retry_delay_secs(1000, 5), MAX_RETRY_DELAY_SECS);
        assert_eq!(retry_delay_secs(i64::MAX, 0), MAX_RETRY_DELAY_SECS);
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(valid_username(" mei ").is_ok());
        assert!(valid_username("").is_err());
        assert!(valid_username("a b").is_err());
        assert!(check_password_strength("short").is_err());
        assert!(check_password_strength("long enough pw").is_ok());
    }
}
