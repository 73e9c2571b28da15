//! Member tags, saved segments, and the per-person facts a segment filters on.

use serde::Serialize;
use sqlx::SqliteConnection;

use crate::rules::member_tags::TagChangeKind;

/// One tag on a member and who set it (`manager`, `rule:<name>`, `csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MemberTag {
    pub tag: String,
    pub source: String,
    pub created_at: i64,
}

pub async fn tags_of(conn: &mut SqliteConnection, user_id: &str) -> sqlx::Result<Vec<MemberTag>> {
    sqlx::query_as("select tag, source, created_at from member_tags where user_id = ? order by tag")
        .bind(user_id)
        .fetch_all(conn)
        .await
}

/// Adds the tag unless the member has it; true when it was new. A new tag
/// on an external contact also queues its sync to WeCom
/// ([`super::customer_tags::queue_sync`]), so no writer can forget it.
pub async fn add_tag(
    conn: &mut SqliteConnection,
    user_id: &str,
    tag: &str,
    source: &str,
    at: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "insert into member_tags (user_id, tag, source, created_at) values (?, ?, ?, ?)
         on conflict (user_id, tag) do nothing",
    )
    .bind(user_id)
    .bind(tag)
    .bind(source)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    let added = done.rows_affected() == 1;
    if added {
        super::customer_tags::queue_sync(conn, user_id, tag, TagChangeKind::Add, at).await?;
    }
    Ok(added)
}

/// Removes the tag; true when the member had it (then, for an external
/// contact, its sync to WeCom is queued as for [`add_tag`]).
pub async fn remove_tag(
    conn: &mut SqliteConnection,
    user_id: &str,
    tag: &str,
    at: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query("delete from member_tags where user_id = ? and tag = ?")
        .bind(user_id)
        .bind(tag)
        .execute(&mut *conn)
        .await?;
    let removed = done.rows_affected() == 1;
    if removed {
        super::customer_tags::queue_sync(conn, user_id, tag, TagChangeKind::Remove, at).await?;
    }
    Ok(removed)
}

/// What a segment filter looks at, for one person.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MemberFacts {
    pub user_id: String,
    pub name: Option<String>,
    pub stage: Option<String>,
    pub last_active_day: Option<String>,
    pub lifetime_points: i64,
    pub rfm_segment: Option<String>,
    pub tags: Vec<String>,
    /// Chats they are a current member of.
    pub chats: Vec<String>,
}

/// Every person's facts, by user id.
pub async fn member_facts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<MemberFacts>> {
    facts_of(conn, None).await
}

/// One person's facts (`None` when nobody by that id was ever seen).
pub async fn member_facts_of(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> sqlx::Result<Option<MemberFacts>> {
    Ok(facts_of(conn, Some(user_id)).await?.pop())
}

/// The facts of everyone, or of `only` that person.
async fn facts_of(
    conn: &mut SqliteConnection,
    only: Option<&str>,
) -> sqlx::Result<Vec<MemberFacts>> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select p.user_id, p.name, s.stage, s.last_active_day,
                (select coalesce(sum(delta), 0) from points_ledger l
                 where l.user_id = p.user_id and delta > 0 and reason <> 'redeem_refund'),
                r.segment,
                (select group_concat(tag, char(31)) from member_tags t where t.user_id = p.user_id),
                (select group_concat(chat_id, char(31)) from chat_members m
                 where m.user_id = p.user_id and m.left_at is null)
         from people p
         left join member_stages s on s.user_id = p.user_id
         left join member_rfm r on r.user_id = p.user_id
         where ?1 is null or p.user_id = ?1
         order by p.user_id",
    )
    .bind(only)
    .fetch_all(conn)
    .await?;
    let split = |list: Option<String>| -> Vec<String> {
        let mut items: Vec<String> = list
            .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
            .unwrap_or_default();
        items.sort();
        items
    };
    Ok(rows
        .into_iter()
        .map(
            |(user_id, name, stage, last_active_day, lifetime_points, rfm_segment, tags, chats)| {
                MemberFacts {
                    user_id,
                    name,
                    stage,
                    last_active_day,
                    lifetime_points,
                    rfm_segment,
                    tags: split(tags),
                    chats: split(chats),
                }
            },
        )
        .collect())
}

/// A saved segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SegmentRow {
    pub id: i64,
    pub name: String,
    pub filter_json: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn list(conn: &mut SqliteConnection) -> sqlx::Result<Vec<SegmentRow>> {
    sqlx::query_as(
        "select id, name, filter_json, created_by, created_at, updated_at from segments order by name",
    )
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<SegmentRow>> {
    sqlx::query_as(
        "select id, name, filter_json, created_by, created_at, updated_at from segments where id = ?",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Creates the segment, or replaces the filter of the one with this name; its id.
pub async fn save(
    conn: &mut SqliteConnection,
    name: &str,
    filter_json: &str,
    actor: &str,
    at: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "insert into segments (name, filter_json, created_by, created_at, updated_at)
         values (?, ?, ?, ?, ?)
         on conflict (name) do update set filter_json = excluded.filter_json,
             updated_at = excluded.updated_at
         returning id",
    )
    .bind(name)
    .bind(filter_json)
    .bind(actor)
    .bind(at)
    .bind(at)
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("delete from segments where id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every (user, day) check-in on or after `since` ('YYYY-MM-DD').
pub async fn checkins_since(
    conn: &mut SqliteConnection,
    since: &str,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("select user_id, day from checkins where day >= ? order by user_id, day")
        .bind(since)
        .fetch_all(conn)
        .await
}

/// Every tag a rule set (source `rule:…`): (user, tag).
pub async fn rule_tags(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("select user_id, tag from member_tags where source like 'rule:%'")
        .fetch_all(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_members_facts_are_those_of_the_full_list() {
        let (_dir, pool) = crate::store::test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        for user in ["lisi", "wangwu"] {
            sqlx::query("insert into people (user_id, first_seen_at) values (?, 0)")
                .bind(user)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        add_tag(&mut conn, "lisi", "核心会员", "manager", 0)
            .await
            .unwrap();
        let all = member_facts(&mut conn).await.unwrap();
        let lisi = member_facts_of(&mut conn, "lisi").await.unwrap().unwrap();
        assert_eq!(lisi.tags, ["核心会员"]);
        assert_eq!(Some(&lisi), all.iter().find(|m| m.user_id == "lisi"));
        assert_eq!(all.len(), 2);
        assert_eq!(member_facts_of(&mut conn, "nobody").await.unwrap(), None);
    }
}
