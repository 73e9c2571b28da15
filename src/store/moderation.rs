//! Moderation tables: post fingerprints, the audit log, strikes, owner tasks
//! and member reports (migration 0004).

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::rules::moderate::{ModerationRecord, StoredPost, StoredStrike};
use crate::rules::moderation::Severity;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

pub async fn record_post(
    conn: &mut SqliteConnection,
    chat_id: Option<&str>,
    user_id: &str,
    when: DateTime<Utc>,
    fingerprint: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into moderation_posts (chat_id, user_id, at, fingerprint) values (?, ?, ?, ?)",
    )
    .bind(chat_id.unwrap_or_default())
    .bind(user_id)
    .bind(when.timestamp())
    .bind(fingerprint)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The member's posts since `since` in any chat, oldest first.
pub async fn recent_posts(
    conn: &mut SqliteConnection,
    user_id: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<StoredPost>> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "select chat_id, at, fingerprint from moderation_posts
         where user_id = ? and at > ? order by at, id",
    )
    .bind(user_id)
    .bind(since.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, seconds, fingerprint)| StoredPost {
            chat_id,
            at: at(seconds),
            fingerprint,
        })
        .collect())
}

/// The member's posts in a chat, counted up to `cap` (enough to tell a new
/// member from a trusted one without scanning a long history).
pub async fn count_posts_in_chat(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
    cap: u32,
) -> sqlx::Result<u32> {
    let count: i64 = sqlx::query_scalar(
        "select count(*) from (select 1 from moderation_posts
         where user_id = ? and chat_id = ? limit ?)",
    )
    .bind(user_id)
    .bind(chat_id)
    .bind(i64::from(cap))
    .fetch_one(&mut *conn)
    .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Who last posted a text with this fingerprint in the chat (the author of a
/// quoted message).
pub async fn author_of(
    conn: &mut SqliteConnection,
    chat_id: &str,
    fingerprint: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select user_id from moderation_posts where chat_id = ? and fingerprint = ?
         order by at desc, id desc limit 1",
    )
    .bind(chat_id)
    .bind(fingerprint)
    .fetch_optional(&mut *conn)
    .await
}

/// When the member (last) joined the chat, if we know them there.
pub async fn joined_at(
    conn: &mut SqliteConnection,
    chat_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let seconds: Option<i64> =
        sqlx::query_scalar("select joined_at from chat_members where chat_id = ? and user_id = ?")
            .bind(chat_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(seconds.map(at))
}

/// Writes a decision (and its strike and task). Returns the log id, or `None`
/// when this event was already decided.
pub async fn record_decision(
    conn: &mut SqliteConnection,
    record: &ModerationRecord,
) -> sqlx::Result<Option<i64>> {
    let log_id: Option<i64> = sqlx::query_scalar(
        "insert into moderation_log (event_key, at, chat_id, user_id, rule, category, severity,
             matched, excerpt, action_taken, dry_run)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (event_key) do nothing returning id",
    )
    .bind(&record.event_id)
    .bind(record.at.timestamp())
    .bind(&record.chat_id)
    .bind(&record.user_id)
    .bind(&record.rule)
    .bind(&record.category)
    .bind(record.severity.as_str())
    .bind(&record.matched)
    .bind(&record.excerpt)
    .bind(&record.action_taken)
    .bind(record.dry_run)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(log_id) = log_id else {
        return Ok(None);
    };
    if record.strike {
        sqlx::query(
            "insert into moderation_strikes (log_id, user_id, chat_id, at, severity)
             values (?, ?, ?, ?, ?)",
        )
        .bind(log_id)
        .bind(&record.user_id)
        .bind(&record.chat_id)
        .bind(record.at.timestamp())
        .bind(record.severity.as_str())
        .execute(&mut *conn)
        .await?;
    }
    if let Some(task) = &record.task {
        let assignees = serde_json::to_string(&task.assignees).unwrap_or_else(|_| "[]".into());
        let task_id: i64 = sqlx::query_scalar(
            "insert into moderation_tasks (log_id, kind, chat_id, user_id, assignees_json, created_at)
             values (?, ?, ?, ?, ?, ?) returning id",
        )
        .bind(log_id)
        .bind(task.kind.as_str())
        .bind(&record.chat_id)
        .bind(&record.user_id)
        .bind(assignees)
        .bind(record.at.timestamp())
        .fetch_one(&mut *conn)
        .await?;
        // Every review task enters the tiered review queue (operator tier).
        if task.kind == crate::rules::moderate::TaskKind::Review {
            super::review::open_for_task(conn, task_id, log_id, record).await?;
        }
    }
    Ok(Some(log_id))
}

/// The member's strikes since `since` that were not revoked.
pub async fn active_strikes(
    conn: &mut SqliteConnection,
    user_id: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<StoredStrike>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "select at, severity from moderation_strikes
         where user_id = ? and at > ? and revoked_at is null order by at",
    )
    .bind(user_id)
    .bind(since.timestamp())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seconds, severity)| StoredStrike {
            at: at(seconds),
            severity: severity.parse().unwrap_or(Severity::Medium),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StrikeRow {
    pub id: i64,
    pub log_id: i64,
    pub user_id: String,
    pub chat_id: Option<String>,
    pub at: i64,
    pub severity: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

/// The columns of a [`StrikeRow`].
const STRIKE_COLUMNS: &str =
    "id, log_id, user_id, chat_id, at, severity, revoked_at, revoked_by, revoke_reason";

pub async fn strikes_of(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Vec<StrikeRow>> {
    sqlx::query_as(&format!(
        "select {STRIKE_COLUMNS} from moderation_strikes where user_id = ? order by id"
    ))
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await
}

/// Revokes a strike and notes it on its log entry. `false` when there is no
/// such strike or it was already revoked.
pub async fn revoke_strike(
    conn: &mut SqliteConnection,
    strike_id: i64,
    by: &str,
    reason: &str,
    when: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let log_id: Option<i64> = sqlx::query_scalar(
        "update moderation_strikes set revoked_at = ?, revoked_by = ?, revoke_reason = ?
         where id = ? and revoked_at is null returning log_id",
    )
    .bind(when.timestamp())
    .bind(by)
    .bind(reason)
    .bind(strike_id)
    .fetch_optional(&mut *conn)
    .await?;
    note_review(conn, log_id, by, &format!("strike revoked: {reason}"), when).await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub event_key: String,
    pub at: i64,
    pub chat_id: Option<String>,
    pub user_id: String,
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub matched: String,
    pub excerpt: String,
    pub action_taken: String,
    pub dry_run: bool,
    pub reviewed_by: Option<String>,
    pub review_note: Option<String>,
}

/// The newest `limit` log entries, newest first (optionally one member's).
pub async fn log(
    conn: &mut SqliteConnection,
    user_id: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<LogRow>> {
    sqlx::query_as(
        "select id, event_key, at, chat_id, user_id, rule, category, severity, matched, excerpt,
             action_taken, dry_run, reviewed_by, review_note
         from moderation_log where (?1 is null or user_id = ?1) order by id desc limit ?2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub log_id: i64,
    pub kind: String,
    pub chat_id: Option<String>,
    pub user_id: String,
    pub assignees_json: String,
    pub status: String,
    pub created_at: i64,
    pub done_by: Option<String>,
}

/// Tasks, oldest first; only open ones unless `all`.
pub async fn tasks(conn: &mut SqliteConnection, all: bool) -> sqlx::Result<Vec<TaskRow>> {
    sqlx::query_as(
        "select id, log_id, kind, chat_id, user_id, assignees_json, status, created_at, done_by
         from moderation_tasks where (? or status = 'open') order by id",
    )
    .bind(all)
    .fetch_all(&mut *conn)
    .await
}

/// Marks an open task done; `false` when it does not exist or is done.
pub async fn complete_task(
    conn: &mut SqliteConnection,
    task_id: i64,
    by: &str,
    note: &str,
    when: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let log_id: Option<i64> = sqlx::query_scalar(
        "update moderation_tasks set status = 'done', done_at = ?, done_by = ?, note = ?
         where id = ? and status = 'open' returning log_id",
    )
    .bind(when.timestamp())
    .bind(by)
    .bind(note)
    .bind(task_id)
    .fetch_optional(&mut *conn)
    .await?;
    if log_id.is_some() {
        // A review task closed here closes its tiered review item too.
        sqlx::query(
            "update review_items set status = 'dismissed', decided_by = ?, decided_at = ?, note = ?
             where task_id = ? and status = 'open'",
        )
        .bind(by)
        .bind(when.timestamp())
        .bind(format!("task done: {note}"))
        .bind(task_id)
        .execute(&mut *conn)
        .await?;
    }
    note_review(conn, log_id, by, &format!("task done: {note}"), when).await
}

/// Notes a manager's review on the log entry a strike or task came from;
/// `false` when there was nothing to review (`log_id` is `None`).
async fn note_review(
    conn: &mut SqliteConnection,
    log_id: Option<i64>,
    by: &str,
    note: &str,
    when: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let Some(log_id) = log_id else {
        return Ok(false);
    };
    sqlx::query(
        "update moderation_log set reviewed_by = ?, review_note = ?, reviewed_at = ? where id = ?",
    )
    .bind(by)
    .bind(note)
    .bind(when.timestamp())
    .bind(log_id)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Records a report; a repeat by the same reporter is ignored (`false`).
pub async fn record_report(
    conn: &mut SqliteConnection,
    chat_id: &str,
    reporter: &str,
    fingerprint: i64,
    when: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into moderation_reports (chat_id, reporter, fingerprint, at) values (?, ?, ?, ?)
         on conflict do nothing",
    )
    .bind(chat_id)
    .bind(reporter)
    .bind(fingerprint)
    .bind(when.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Distinct reporters of a text in a chat.
pub async fn reporters_of(
    conn: &mut SqliteConnection,
    chat_id: &str,
    fingerprint: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "select reporter from moderation_reports where chat_id = ? and fingerprint = ? order by id",
    )
    .bind(chat_id)
    .bind(fingerprint)
    .fetch_all(&mut *conn)
    .await
}

/// How many reports the member filed since `since`.
pub async fn reports_by_since(
    conn: &mut SqliteConnection,
    reporter: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<u32> {
    let count: i64 =
        sqlx::query_scalar("select count(*) from moderation_reports where reporter = ? and at > ?")
            .bind(reporter)
            .bind(since.timestamp())
            .fetch_one(&mut *conn)
            .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

// --- the console's moderation queue -------------------------------------------

/// Strikes not revoked, newest first, every member.
pub async fn open_strikes(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<StrikeRow>> {
    sqlx::query_as(&format!(
        "select {STRIKE_COLUMNS} from moderation_strikes where revoked_at is null order by id desc limit ?"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

pub async fn strike_by_id(
    conn: &mut SqliteConnection,
    strike_id: i64,
) -> sqlx::Result<Option<StrikeRow>> {
    sqlx::query_as(&format!(
        "select {STRIKE_COLUMNS} from moderation_strikes where id = ?"
    ))
    .bind(strike_id)
    .fetch_optional(&mut *conn)
    .await
}

pub async fn task_by_id(
    conn: &mut SqliteConnection,
    task_id: i64,
) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(
        "select id, log_id, kind, chat_id, user_id, assignees_json, status, created_at, done_by
         from moderation_tasks where id = ?",
    )
    .bind(task_id)
    .fetch_optional(&mut *conn)
    .await
}

/// The newest `limit` log entries, newest first, narrowed to a member and/or
/// an action (a rule name, or a word of what was done: `warn`, `strike` …).
pub async fn log_filtered(
    conn: &mut SqliteConnection,
    user_id: Option<&str>,
    action: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<LogRow>> {
    sqlx::query_as(
        "select id, event_key, at, chat_id, user_id, rule, category, severity, matched, excerpt,
             action_taken, dry_run, reviewed_by, review_note
         from moderation_log
         where (?1 is null or user_id = ?1)
           and (?2 is null or rule = ?2 or instr(action_taken, ?2) > 0)
         order by id desc limit ?3",
    )
    .bind(user_id)
    .bind(action)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// The reports of one quoted message in one chat, not yet handled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportGroup {
    pub chat_id: String,
    pub fingerprint: i64,
    pub reporters: Vec<String>,
    pub first_at: i64,
    pub last_at: i64,
    /// Who last posted that text in the chat, if we saw it.
    pub author: Option<String>,
}

/// Unhandled reports grouped by (chat, message), newest first.
pub async fn open_report_groups(
    conn: &mut SqliteConnection,
    limit: i64,
) -> sqlx::Result<Vec<ReportGroup>> {
    let rows: Vec<(String, i64, String, i64, i64)> = sqlx::query_as(
        "select chat_id, fingerprint, group_concat(reporter, char(10)), min(at), max(at)
         from moderation_reports where handled_at is null
         group by chat_id, fingerprint order by max(at) desc limit ?",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for (chat_id, fingerprint, reporters, first_at, last_at) in rows {
        let author = author_of(conn, &chat_id, fingerprint).await?;
        groups.push(ReportGroup {
            reporters: reporters.split('\n').map(str::to_owned).collect(),
            chat_id,
            fingerprint,
            first_at,
            last_at,
            author,
        });
    }
    Ok(groups)
}

/// Marks every unhandled report of a message handled; returns how many.
pub async fn handle_reports(
    conn: &mut SqliteConnection,
    chat_id: &str,
    fingerprint: i64,
    by: &str,
    handling: &str,
    when: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "update moderation_reports set handled_at = ?, handled_by = ?, handling = ?
         where chat_id = ? and fingerprint = ? and handled_at is null",
    )
    .bind(when.timestamp())
    .bind(by)
    .bind(handling)
    .bind(chat_id)
    .bind(fingerprint)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderate::{OwnerTask, TaskKind};

    async fn conn() -> (tempfile::TempDir, sqlx::pool::PoolConnection<sqlx::Sqlite>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::store::open(&dir.path().join("m.db"))
            .await
            .expect("open");
        let conn = pool.acquire().await.expect("conn");
        (dir, conn)
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        at(1_700_000_000 + seconds)
    }

    fn record(event: &str, strike: bool, task: bool) -> ModerationRecord {
        ModerationRecord {
            event_id: event.into(),
            at: t(10),
            chat_id: Some("wr1".into()),
            user_id: "u1".into(),
            rule: "term".into(),
            category: "ads".into(),
            severity: Severity::High,
            matched: "加微信".into(),
            excerpt: "来加微信".into(),
            action_taken: "strike,warn".into(),
            dry_run: false,
            strike,
            task: task.then(|| OwnerTask {
                kind: TaskKind::Remove,
                assignees: vec!["owner".into()],
            }),
        }
    }

    #[tokio::test]
    async fn posts_are_listed_since_and_give_the_author_of_a_fingerprint() {
        let (_dir, mut conn) = conn().await;
        record_post(&mut conn, Some("wr1"), "u1", t(1), Some(42))
            .await
            .expect("post");
        record_post(&mut conn, None, "u1", t(5), None)
            .await
            .expect("post");
        record_post(&mut conn, Some("wr1"), "u2", t(6), Some(42))
            .await
            .expect("post");
        let posts = recent_posts(&mut conn, "u1", t(2)).await.expect("posts");
        assert_eq!(
            count_posts_in_chat(&mut conn, "wr1", "u1", 5)
                .await
                .expect("count"),
            1
        );
        record_post(&mut conn, Some("wr1"), "u1", t(7), None)
            .await
            .expect("post");
        assert_eq!(
            count_posts_in_chat(&mut conn, "wr1", "u1", 1)
                .await
                .expect("count"),
            1,
            "capped"
        );
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].chat_id, "");
        assert_eq!(
            author_of(&mut conn, "wr1", 42).await.expect("author"),
            Some("u2".into())
        );
        assert_eq!(author_of(&mut conn, "wr2", 42).await.expect("author"), None);
    }

    #[tokio::test]
    async fn a_decision_is_written_once_with_its_strike_and_task() {
        let (_dir, mut conn) = conn().await;
        let first = record_decision(&mut conn, &record("e1", true, true))
            .await
            .expect("write");
        assert!(first.is_some());
        let again = record_decision(&mut conn, &record("e1", true, true))
            .await
            .expect("write");
        assert_eq!(again, None);
        assert_eq!(
            active_strikes(&mut conn, "u1", t(0))
                .await
                .expect("strikes")
                .len(),
            1
        );
        assert_eq!(
            active_strikes(&mut conn, "u1", t(10))
                .await
                .expect("strikes")
                .len(),
            0
        );
        let open = tasks(&mut conn, false).await.expect("tasks");
        assert_eq!(open.len(), 1);
        assert!(
            complete_task(&mut conn, open[0].id, "owner", "removed", t(20))
                .await
                .expect("done")
        );
        assert!(
            !complete_task(&mut conn, open[0].id, "owner", "again", t(21))
                .await
                .expect("done")
        );
        assert!(tasks(&mut conn, false).await.expect("tasks").is_empty());
        assert_eq!(tasks(&mut conn, true).await.expect("tasks").len(), 1);
        let entries = log(&mut conn, Some("u1"), 10).await.expect("log");
        assert_eq!(entries[0].reviewed_by.as_deref(), Some("owner"));
    }

    #[tokio::test]
    async fn a_revoked_strike_stops_counting_and_is_noted_in_the_log() {
        let (_dir, mut conn) = conn().await;
        record_decision(&mut conn, &record("e1", true, false))
            .await
            .expect("write");
        let strike = strikes_of(&mut conn, "u1").await.expect("strikes")[0].id;
        assert!(
            revoke_strike(&mut conn, strike, "boss", "false positive", t(30))
                .await
                .expect("revoke")
        );
        assert!(!revoke_strike(&mut conn, strike, "boss", "again", t(31))
            .await
            .expect("revoke"));
        assert!(active_strikes(&mut conn, "u1", t(0))
            .await
            .expect("strikes")
            .is_empty());
        let entry = &log(&mut conn, None, 10).await.expect("log")[0];
        assert_eq!(entry.reviewed_by.as_deref(), Some("boss"));
        assert_eq!(
            entry.review_note.as_deref(),
            Some("strike revoked: false positive")
        );
    }

    #[tokio::test]
    async fn reports_are_unique_per_reporter_and_counted_per_hour() {
        let (_dir, mut conn) = conn().await;
        assert!(record_report(&mut conn, "wr1", "a", 7, t(1))
            .await
            .expect("report"));
        assert!(!record_report(&mut conn, "wr1", "a", 7, t(2))
            .await
            .expect("report"));
        assert!(record_report(&mut conn, "wr1", "b", 7, t(3))
            .await
            .expect("report"));
        assert_eq!(
            reporters_of(&mut conn, "wr1", 7).await.expect("reporters"),
            vec!["a", "b"]
        );
        assert_eq!(
            reports_by_since(&mut conn, "a", t(0)).await.expect("count"),
            1
        );
        assert_eq!(
            reports_by_since(&mut conn, "a", t(1)).await.expect("count"),
            0
        );
    }

    #[tokio::test]
    async fn the_console_queue_lists_open_strikes_filters_the_log_and_groups_reports() {
        let (_dir, mut conn) = conn().await;
        record_decision(&mut conn, &record("e1", true, true))
            .await
            .expect("decide");
        let mut other = record("e2", true, false);
        other.user_id = "u2".into();
        other.rule = "flood".into();
        other.action_taken = "warn".into();
        record_decision(&mut conn, &other).await.expect("decide");
        let strikes = open_strikes(&mut conn, 10).await.expect("strikes");
        assert_eq!(strikes.len(), 2);
        assert_eq!(strikes[0].user_id, "u2", "newest first");
        assert!(
            revoke_strike(&mut conn, strikes[0].id, "mei", "oops", t(20))
                .await
                .expect("revoke")
        );
        assert_eq!(open_strikes(&mut conn, 10).await.expect("strikes").len(), 1);
        let revoked = strike_by_id(&mut conn, strikes[0].id)
            .await
            .expect("strike")
            .expect("exists");
        assert_eq!(revoked.revoke_reason.as_deref(), Some("oops"));
        let task = tasks(&mut conn, false).await.expect("tasks").remove(0);
        assert_eq!(
            task_by_id(&mut conn, task.id).await.expect("task"),
            Some(task)
        );

        let cases: [(Option<&str>, Option<&str>, usize); 5] = [
            (None, None, 2),
            (Some("u1"), None, 1),
            (None, Some("flood"), 1),
            (None, Some("strike"), 1),
            (Some("u2"), Some("strike"), 0),
        ];
        for (user, action, expected) in cases {
            let rows = log_filtered(&mut conn, user, action, 10)
                .await
                .expect("log");
            assert_eq!(rows.len(), expected, "{user:?} {action:?}");
        }

        record_post(&mut conn, Some("wr1"), "spammer", t(1), Some(7))
            .await
            .expect("post");
        for reporter in ["a", "b"] {
            record_report(&mut conn, "wr1", reporter, 7, t(2))
                .await
                .expect("report");
        }
        record_report(&mut conn, "wr1", "a", 8, t(3))
            .await
            .expect("report");
        let groups = open_report_groups(&mut conn, 10).await.expect("groups");
        assert_eq!(groups.len(), 2);
        let seven = groups.iter().find(|g| g.fingerprint == 7).expect("group");
        assert_eq!(seven.reporters, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(seven.author.as_deref(), Some("spammer"));
        assert_eq!(
            handle_reports(&mut conn, "wr1", 7, "mei", "dismiss", t(4))
                .await
                .expect("handle"),
            2
        );
        let groups = open_report_groups(&mut conn, 10).await.expect("groups");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].author, None);
    }
}
