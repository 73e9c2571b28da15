//! External contacts in WeCom's customer-contact APIs: who owns each one,
//! the log of their member-tag changes with the outbox rows syncing them to
//! WeCom customer tags, and WeCom's ids for our tag names.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::rules::member_tags::{customer_tag_sync, TagChangeKind};
use crate::rules::route::is_external_contact;
use crate::store::outbox::{self, Enqueued};

/// Remembers that `staff` has the external contact (an add_external_contact
/// event); a later event for the same contact names the current owner.
pub async fn record_owner(
    conn: &mut SqliteConnection,
    external_user_id: &str,
    staff_user_id: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into customer_owners (external_user_id, staff_user_id, added_at) values (?, ?, ?)
         on conflict (external_user_id) do update set
            staff_user_id = excluded.staff_user_id, added_at = excluded.added_at",
    )
    .bind(external_user_id)
    .bind(staff_user_id)
    .bind(at.timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The member who has this external contact, when known.
pub async fn owner_of(
    conn: &mut SqliteConnection,
    external_user_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("select staff_user_id from customer_owners where external_user_id = ?")
        .bind(external_user_id)
        .fetch_optional(&mut *conn)
        .await
}

/// Every known owner, by external contact.
pub async fn owners(conn: &mut SqliteConnection) -> sqlx::Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select external_user_id, staff_user_id from customer_owners")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// After a member's tag changed: for an external contact, logs the change
/// and queues its sync to WeCom (skipped, saying why, when no owner is
/// known), in the caller's transaction. Internal members have no customer
/// tags: nothing happens. Returns the outbox row when one was added.
pub async fn queue_sync(
    conn: &mut SqliteConnection,
    user_id: &str,
    tag: &str,
    change: TagChangeKind,
    at: i64,
) -> sqlx::Result<Option<i64>> {
    if !is_external_contact(user_id) {
        return Ok(None);
    }
    let change_id: i64 = sqlx::query_scalar(
        "insert into member_tag_changes (user_id, tag, change, at) values (?, ?, ?, ?)
         returning id",
    )
    .bind(user_id)
    .bind(tag)
    .bind(change.as_str())
    .bind(at)
    .fetch_one(&mut *conn)
    .await?;
    let owner = owner_of(conn, user_id).await?;
    let message = customer_tag_sync(user_id, owner.as_deref(), tag, change, change_id);
    let now = DateTime::from_timestamp(at, 0).unwrap_or_default();
    // The contact route sends with the contacts secret, never a named app.
    match outbox::enqueue(conn, &message, "", now).await? {
        Enqueued::New(id) => Ok(Some(id)),
        Enqueued::Duplicate => Ok(None),
    }
}

/// One WeCom customer tag of our group: our name, WeCom's ids.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CachedTag {
    pub tag_name: String,
    pub tag_id: String,
    pub group_id: String,
}

pub async fn cached_tags(conn: &mut SqliteConnection, group: &str) -> sqlx::Result<Vec<CachedTag>> {
    sqlx::query_as(
        "select tag_name, tag_id, group_id from wecom_customer_tags
         where group_name = ? order by tag_name",
    )
    .bind(group)
    .fetch_all(&mut *conn)
    .await
}

/// Stores WeCom's ids for tags of `group` (replacing older ids of the same names).
pub async fn cache_tags(
    conn: &mut SqliteConnection,
    group: &str,
    tags: &[CachedTag],
) -> sqlx::Result<()> {
    for tag in tags {
        sqlx::query(
            "insert into wecom_customer_tags (group_name, tag_name, tag_id, group_id)
             values (?, ?, ?, ?)
             on conflict (group_name, tag_name) do update set
                tag_id = excluded.tag_id, group_id = excluded.group_id",
        )
        .bind(group)
        .bind(&tag.tag_name)
        .bind(&tag.tag_id)
        .bind(&tag.group_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Forgets the cached ids of `group` (looked up again on the next sync).
pub async fn forget_tags(conn: &mut SqliteConnection, group: &str) -> sqlx::Result<()> {
    sqlx::query("delete from wecom_customer_tags where group_name = ?")
        .bind(group)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::{OutboxStatus, Route};

    async fn test_db() -> (tempfile::TempDir, sqlx::SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("test.db"))
            .await
            .unwrap();
        (dir, pool)
    }

    #[tokio::test]
    async fn a_tag_change_of_an_external_contact_queues_one_sync_per_change() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        record_owner(&mut conn, "wmA", "lisi", at).await.unwrap();
        record_owner(&mut conn, "wmA", "wangwu", at).await.unwrap();
        assert_eq!(
            owner_of(&mut conn, "wmA").await.unwrap().as_deref(),
            Some("wangwu")
        );
        assert_eq!(owners(&mut conn).await.unwrap().len(), 1);

        let t = at.timestamp();
        assert_eq!(
            queue_sync(&mut conn, "lisi", "vip", TagChangeKind::Add, t)
                .await
                .unwrap(),
            None,
            "internal members have no customer tags"
        );
        let first = queue_sync(&mut conn, "wmA", "vip", TagChangeKind::Add, t)
            .await
            .unwrap();
        let second = queue_sync(&mut conn, "wmA", "vip", TagChangeKind::Remove, t)
            .await
            .unwrap();
        let stranger = queue_sync(&mut conn, "wmB", "vip", TagChangeKind::Add, t)
            .await
            .unwrap();
        assert!(first.is_some() && second.is_some() && first != second);
        let rows = crate::store::outbox::list(&mut conn, None).await.unwrap();
        let mut rows: Vec<(String, String, OutboxStatus)> = rows
            .into_iter()
            .filter(|row| row.route == Route::CustomerTag)
            .map(|row| (row.idempotency_key, row.target, row.status))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            rows,
            [
                (
                    "mark_tag:wmA:vip:add:1".to_owned(),
                    "wmA".to_owned(),
                    OutboxStatus::Pending
                ),
                (
                    "mark_tag:wmA:vip:remove:2".to_owned(),
                    "wmA".to_owned(),
                    OutboxStatus::Pending
                ),
                (
                    "mark_tag:wmB:vip:add:3".to_owned(),
                    "wmB".to_owned(),
                    OutboxStatus::Skipped
                ),
            ]
        );
        assert!(stranger.is_some());
    }

    #[tokio::test]
    async fn cached_tag_ids_are_kept_per_group_and_forgotten_together() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let tag = |name: &str, id: &str| CachedTag {
            tag_name: name.into(),
            tag_id: id.into(),
            group_id: "g1".into(),
        };
        cache_tags(&mut conn, "qunyun", &[tag("vip", "t1"), tag("gold", "t2")])
            .await
            .unwrap();
        cache_tags(&mut conn, "qunyun", &[tag("vip", "t9")])
            .await
            .unwrap();
        cache_tags(&mut conn, "other", &[tag("vip", "t3")])
            .await
            .unwrap();
        assert_eq!(
            cached_tags(&mut conn, "qunyun").await.unwrap(),
            [tag("gold", "t2"), tag("vip", "t9")]
        );
        forget_tags(&mut conn, "qunyun").await.unwrap();
        assert!(cached_tags(&mut conn, "qunyun").await.unwrap().is_empty());
        assert_eq!(cached_tags(&mut conn, "other").await.unwrap().len(), 1);
    }
}
