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
