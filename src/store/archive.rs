//! The message archive's rows: the cursor, the records pulled, the alerts
//! raised (migration 0025). The puller writes a page's records, their inbox
//! events and the new cursor in one transaction.

use sqlx::SqliteConnection;

/// Where the pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Cursor {
    /// The highest `seq` stored; the next pull starts after it.
    pub seq: i64,
    /// When a pull last reached the archive's end (unix seconds).
    pub caught_up_at: i64,
    pub lag_alerted_for: Option<i64>,
}

/// The cursor, created at `seq` 0 (the oldest the archive still has) on first use.
pub async fn cursor(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<Cursor> {
    sqlx::query(
        "insert into archive_cursor (id, seq, updated_at, caught_up_at) values (1, 0, ?, ?)
         on conflict (id) do nothing",
    )
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as("select seq, caught_up_at, lag_alerted_for from archive_cursor where id = 1")
        .fetch_one(&mut *conn)
        .await
}

/// Moves the cursor to `seq` (never backwards); `caught_up` when this page
/// reached the archive's end.
pub async fn advance(
    conn: &mut SqliteConnection,
    seq: i64,
    caught_up: bool,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "update archive_cursor set seq = max(seq, ?), updated_at = ?,
            caught_up_at = case when ? then ? else caught_up_at end
         where id = 1",
    )
    .bind(seq)
    .bind(now)
    .bind(caught_up)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Notes that the lag episode starting at `caught_up_at` was alerted.
pub async fn lag_alerted(conn: &mut SqliteConnection, caught_up_at: i64) -> sqlx::Result<()> {
    sqlx::query("update archive_cursor set lag_alerted_for = ? where id = 1")
        .bind(caught_up_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One pulled record, decrypted or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub msgid: String,
    pub seq: i64,
    pub publickey_ver: i64,
    pub action: Option<String>,
    pub msgtype: Option<String>,
    pub room_id: Option<String>,
    pub sender: Option<String>,
    pub msg_time: Option<i64>,
    pub body_json: Option<String>,
    /// Why it did not decrypt; the ciphertext is kept beside it.
    pub failure: Option<String>,
    pub encrypt_random_key: Option<String>,
    pub encrypt_chat_msg: Option<String>,
}

/// Stores a record unless its msgid is known; `true` when stored.
pub async fn insert_record(
    conn: &mut SqliteConnection,
    record: &NewRecord,
    now: i64,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into archive_messages (msgid, seq, publickey_ver, action, msgtype, room_id, sender,
            msg_time, body_json, failure, encrypt_random_key, encrypt_chat_msg, pulled_at)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (msgid) do nothing",
    )
    .bind(&record.msgid)
    .bind(record.seq)
    .bind(record.publickey_ver)
    .bind(&record.action)
    .bind(&record.msgtype)
    .bind(&record.room_id)
    .bind(&record.sender)
    .bind(record.msg_time)
    .bind(&record.body_json)
    .bind(&record.failure)
    .bind(&record.encrypt_random_key)
    .bind(&record.encrypt_chat_msg)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Marks `msgid` recalled by the recall record `by`; `false` when that
/// message is not stored (pulled before the archive was enabled).
pub async fn mark_recalled(
    conn: &mut SqliteConnection,
    msgid: &str,
    by: &str,
) -> sqlx::Result<bool> {
    let result = sqlx::query("update archive_messages set recalled_by = ? where msgid = ?")
        .bind(by)
        .bind(msgid)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Records an alert unless one of this kind and subject exists; `true` when new.
pub async fn raise_alert(
    conn: &mut SqliteConnection,
    kind: &str,
    subject: &str,
    detail: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into archive_alerts (kind, subject, detail, raised_at) values (?, ?, ?, ?)
         on conflict (kind, subject) do nothing",
    )
    .bind(kind)
    .bind(subject)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records stored, and of them those that did not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct Counts {
    pub records: i64,
    pub failed: i64,
    pub recalled: i64,
}

pub async fn counts(conn: &mut SqliteConnection) -> sqlx::Result<Counts> {
    sqlx::query_as(
        "select count(*) as records, count(failure) as failed, count(recalled_by) as recalled
         from archive_messages",
    )
    .fetch_one(&mut *conn)
    .await
}

/// The id of the newest `msgaudit_notify` callback after inbox row `after`
/// (WeCom's hint that new archive data is there).
pub async fn notify_after(conn: &mut SqliteConnection, after: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "select max(id) from inbox where id > ? and kind = 'unknown'
           and json_extract(event_json, '$.event') = 'msgaudit_notify'",
    )
    .bind(after)
    .fetch_one(&mut *conn)
    .await
}

/// The newest inbox row id (where watching for notifications starts).
pub async fn last_inbox_id(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select coalesce(max(id), 0) from inbox")
        .fetch_one(&mut *conn)
        .await
}
