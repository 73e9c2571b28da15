//! `externalcontact/mark_tag` for the sender: WeCom tags a customer by tag
//! id, the outbox row names our tag names. Names are resolved through the
//! ids cached in SQLite; a name not cached is looked up with
//! `get_corp_tag_list` and, when it is to be added and WeCom has no such tag
//! in the group, created with `add_corp_tag`
//! (developer.work.weixin.qq.com/document/path/92117 and /92118).

use sqlx::SqlitePool;

use crate::store::customer_tags::{self as store, CachedTag};
use crate::wecom::api::{
    AddCorpTag, ApiClient, ApiError, CorpTagGroup, MarkTag, NewCorpTag, Secret, TagChange,
};

/// Marks `change` on the contact, in the tag group `group`. Tags to remove
/// that WeCom never had are left out; when nothing is left, no call is made.
pub async fn mark(
    api: &ApiClient,
    pool: &SqlitePool,
    secret: &Secret,
    group: &str,
    change: &TagChange,
) -> Result<(), ApiError> {
    let add_tag = resolve(api, pool, secret, group, &change.add, true).await?;
    let remove_tag = resolve(api, pool, secret, group, &change.remove, false).await?;
    if add_tag.is_empty() && remove_tag.is_empty() {
        return Ok(());
    }
    let mark = MarkTag {
        userid: change.userid.clone(),
        external_userid: change.external_userid.clone(),
        add_tag,
        remove_tag,
    };
    let result = api.mark_tag(secret, &mark).await;
    if let Err(ApiError::WeCom { .. }) = &result {
        // A tag deleted in the WeCom admin keeps its cached id; forgetting the
        // group's ids makes the retry look them up again.
        if let Err(error) = forget(pool, group).await {
            tracing::warn!(%error, "clearing the customer tag id cache failed");
        }
    }
    result
}

/// WeCom's ids for `names` in `group`, in order; names WeCom has no tag for
/// are created when `create`, else left out.
async fn resolve(
    api: &ApiClient,
    pool: &SqlitePool,
    secret: &Secret,
    group: &str,
    names: &[String],
    create: bool,
) -> Result<Vec<String>, ApiError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut cached = cached(pool, group).await?;
    if names.iter().any(|name| find(&cached, name).is_none()) {
        let groups = api.get_corp_tag_list(secret).await?;
        remember(pool, group, &tags_of_group(&groups, group)).await?;
        cached = self::cached(pool, group).await?;
        let missing: Vec<NewCorpTag> = names
            .iter()
            .filter(|name| find(&cached, name).is_none())
            .map(|name| NewCorpTag { name: name.clone() })
            .collect();
        if create && !missing.is_empty() {
            // By the group's id when it exists, else by name (WeCom creates it).
            let group_id = cached.first().map(|tag| tag.group_id.clone());
            let added = api
                .add_corp_tag(
                    secret,
                    &AddCorpTag {
                        group_name: group_id.is_none().then(|| group.to_owned()),
                        group_id,
                        tag: missing,
                    },
                )
                .await?;
            remember(pool, group, &tags_of_group(&[added], group)).await?;
            cached = self::cached(pool, group).await?;
        }
    }
    Ok(names
        .iter()
        .filter_map(|name| find(&cached, name).map(|tag| tag.tag_id.clone()))
        .collect())
}

fn find<'a>(cached: &'a [CachedTag], name: &str) -> Option<&'a CachedTag> {
    cached.iter().find(|tag| tag.tag_name == name)
}

/// The live tags of the live group named `group` (pure).
pub fn tags_of_group(groups: &[CorpTagGroup], group: &str) -> Vec<CachedTag> {
    groups
        .iter()
        .filter(|g| g.group_name == group && !g.deleted)
        .flat_map(|g| {
            g.tag
                .iter()
                .filter(|tag| !tag.deleted)
                .map(|tag| CachedTag {
                    tag_name: tag.name.clone(),
                    tag_id: tag.id.clone(),
                    group_id: g.group_id.clone(),
                })
        })
        .collect()
}

/// The local cache failing means the call was never made: retry later.
fn local(error: sqlx::Error) -> ApiError {
    ApiError::Connect(format!("customer tag id cache: {error}"))
}

async fn cached(pool: &SqlitePool, group: &str) -> Result<Vec<CachedTag>, ApiError> {
    let mut conn = pool.acquire().await.map_err(local)?;
    store::cached_tags(&mut conn, group).await.map_err(local)
}

async fn remember(pool: &SqlitePool, group: &str, tags: &[CachedTag]) -> Result<(), ApiError> {
    let mut conn = pool.acquire().await.map_err(local)?;
    store::cache_tags(&mut conn, group, tags)
        .await
        .map_err(local)
}

async fn forget(pool: &SqlitePool, group: &str) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    store::forget_tags(&mut conn, group).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wecom::api::CorpTag;

    fn tag(id: &str, name: &str, deleted: bool) -> CorpTag {
        CorpTag {
            id: id.into(),
            name: name.into(),
            create_time: 0,
            order: 0,
            deleted,
        }
    }

    #[test]
    fn only_live_tags_of_the_named_group_count() {
        let groups = [
            CorpTagGroup {
                group_id: "g1".into(),
                group_name: "qunyun".into(),
                create_time: 0,
                order: 0,
                deleted: false,
                tag: vec![tag("t1", "vip", false), tag("t2", "old", true)],
            },
            CorpTagGroup {
                group_id: "g2".into(),
                group_name: "other".into(),
                create_time: 0,
                order: 0,
                deleted: false,
                tag: vec![tag("t3", "vip", false)],
            },
        ];
        let found = tags_of_group(&groups, "qunyun");
        assert_eq!(
            found,
            [CachedTag {
                tag_name: "vip".into(),
                tag_id: "t1".into(),
                group_id: "g1".into()
            }]
        );
        assert!(tags_of_group(&groups, "none").is_empty());
    }
}
