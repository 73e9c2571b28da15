//! Member tags set by managers (console, API, CLI, CSV import). Tags set by
//! rules carry `rule:<name>` as their source; a manager's carry `manager`.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::segments as store;

/// Longest tag.
const MAX_TAG_CHARS: usize = 30;

fn clean_tags(tags: &[String]) -> OpsResult<Vec<String>> {
    let mut clean: Vec<String> = tags
        .iter()
        .flat_map(|tag| tag.split(','))
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .collect();
    if clean.is_empty() {
        return Err(OpsError::invalid("tags", "name at least one tag"));
    }
    if let Some(long) = clean.iter().find(|t| t.chars().count() > MAX_TAG_CHARS) {
        return Err(OpsError::invalid(
            "tags",
            format!("{long}: longer than {MAX_TAG_CHARS} characters"),
        ));
    }
    clean.sort();
    clean.dedup();
    Ok(clean)
}

/// Adds tags to a member (operator or owner); the tags the member did not
/// have yet.
pub async fn add(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    user_id: &str,
    tags: &[String],
) -> OpsResult<Vec<String>> {
    change(ops, actor, now, user_id, tags, Change::Add).await
}

/// Removes tags from a member (operator or owner); the tags it had.
pub async fn remove(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    user_id: &str,
    tags: &[String],
) -> OpsResult<Vec<String>> {
    change(ops, actor, now, user_id, tags, Change::Remove).await
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}

/// [`add`] or [`remove`]: the tags that changed, audited as one row.
async fn change(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    user_id: &str,
    tags: &[String],
    change: Change,
) -> OpsResult<Vec<String>> {
    actor.require(Role::Operator)?;
    let tags = clean_tags(tags)?;
    let mut tx = ops.begin().await?;
    if !crate::store::admin::person_exists(&mut tx, user_id).await? {
        return Err(OpsError::not_found(format!("member {user_id}")));
    }
    let mut changed = Vec::new();
    for tag in &tags {
        let done = match change {
            Change::Add => {
                store::add_tag(&mut tx, user_id, tag, "manager", now.timestamp()).await?
            }
            Change::Remove => store::remove_tag(&mut tx, user_id, tag, now.timestamp()).await?,
        };
        if done {
            changed.push(tag.clone());
        }
    }
    let action = match change {
        Change::Add => "member.tag",
        Change::Remove => "member.untag",
    };
    audit(&mut tx, actor, now, action, user_id, &changed.join(",")).await?;
    tx.commit().await.context("committing member tags")?;
    Ok(changed)
}

/// Imports `member,tag` lines (header first; member by UserID, external
/// userid or unionid) in one transaction: all, or nothing when a line is
/// wrong (each named). Returns how many tags were new.
pub async fn import_csv(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    text: &str,
) -> OpsResult<usize> {
    actor.require(Role::Operator)?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .map(|(_, h)| h.split(',').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    if header != ["member", "tag"] {
        return Err(OpsError::invalid(
            "file",
            "line 1: the header must be member,tag",
        ));
    }
    let mut tx = ops.begin().await?;
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    for (line, text) in lines {
        let cells: Vec<&str> = text
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let [member, tag] = cells.as_slice() else {
            errors.push(format!("line {line}: {} columns, expected 2", cells.len()));
            continue;
        };
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            errors.push(format!(
                "line {line}, column tag: must be 1 to {MAX_TAG_CHARS} characters"
            ));
            continue;
        }
        match crate::store::orders::resolve_member(&mut tx, member).await? {
            Some(user_id) => rows.push((user_id, (*tag).to_owned())),
            None => errors.push(format!(
                "line {line}, column member: {member} is no known member"
            )),
        }
    }
    if !errors.is_empty() {
        return Err(OpsError::invalid("file", errors.join("\n")));
    }
    let mut added = 0;
    for (user_id, tag) in &rows {
        if store::add_tag(&mut tx, user_id, tag, "csv", now.timestamp()).await? {
            added += 1;
        }
    }
    audit(
        &mut tx,
        actor,
        now,
        "member.tag_import",
        "member_tags",
        &format!("{} lines, {added} new", rows.len()),
    )
    .await?;
    tx.commit().await.context("committing a tag import")?;
    Ok(added)
}
