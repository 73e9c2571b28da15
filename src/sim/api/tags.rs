//! Customer tags (developer.work.weixin.qq.com/document/path/92117 and
//! /92118): the corp's tag groups, and the tags a member marks on a customer
//! they have as a contact.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{fail, fields, required_str, string_list, ApiResult, WeComError};
use crate::sim::model::{CorpTag, TagGroup};
use crate::sim::state::{random_id, SimState};

/// `externalcontact/get_corp_tag_list`: every live group and tag, or those
/// named by `tag_id` / `group_id`.
pub(super) fn get_corp_tag_list(state: &SimState, body: &Value) -> ApiResult {
    let tag_ids = string_list(body, "tag_id").unwrap_or_default();
    let group_ids = string_list(body, "group_id").unwrap_or_default();
    let groups: Vec<TagGroup> = state
        .tag_groups
        .iter()
        .filter(|group| !group.deleted)
        .filter(|group| group_ids.is_empty() || group_ids.contains(&group.group_id))
        .map(|group| TagGroup {
            tag: group
                .tag
                .iter()
                .filter(|tag| !tag.deleted)
                .filter(|tag| tag_ids.is_empty() || tag_ids.contains(&tag.id))
                .cloned()
                .collect(),
            ..group.clone()
        })
        .filter(|group| tag_ids.is_empty() || !group.tag.is_empty())
        .collect();
    Ok(fields(json!({ "tag_group": groups })))
}

/// `externalcontact/add_corp_tag`: new tags into the group named by
/// `group_id`, or by `group_name` (created when no live group has it).
pub(super) fn add_corp_tag(state: &mut SimState, body: &Value, now: DateTime<Utc>) -> ApiResult {
    let names: Vec<String> = body
        .get("tag")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|tag| tag.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() || names.iter().any(|name| name.trim().is_empty()) {
        // plausible: 40058 (invalid parameter) for a missing tag name.
        return Err(fail(40058, "tag.name missing"));
    }
    let group_id = body.get("group_id").and_then(Value::as_str);
    let group_name = body.get("group_name").and_then(Value::as_str);
    let at = match (group_id, group_name) {
        (Some(id), _) => state
            .tag_groups
            .iter()
            .position(|g| g.group_id == id && !g.deleted)
            // plausible: 40068 (invalid tagid) for an unknown group.
            .ok_or_else(|| fail(40068, "invalid group_id"))?,
        (None, Some(name)) if !name.is_empty() => {
            match state
                .tag_groups
                .iter()
                .position(|g| g.group_name == name && !g.deleted)
            {
                Some(at) => at,
                None => {
                    state.tag_groups.push(TagGroup {
                        group_id: format!("et{}", random_id(20)),
                        group_name: name.to_owned(),
                        create_time: now.timestamp(),
                        order: 0,
                        deleted: false,
                        tag: Vec::new(),
                    });
                    state.tag_groups.len() - 1
                }
            }
        }
        _ => return Err(fail(40058, "group_id or group_name missing")),
    };
    let group = &mut state.tag_groups[at];
    if let Some(name) = names
        .iter()
        .find(|name| group.tag.iter().any(|t| &t.name == *name && !t.deleted))
    {
        // plausible: 40071 (tag name already exists) as for contact-book tags.
        return Err(fail(40071, format!("tag name {name} already exists")));
    }
    let added: Vec<CorpTag> = names
        .into_iter()
        .map(|name| CorpTag {
            id: format!("et{}", random_id(20)),
            name,
            create_time: now.timestamp(),
            order: 0,
            deleted: false,
        })
        .collect();
    group.tag.extend(added.iter().cloned());
    let answer = TagGroup {
        tag: added,
        ..group.clone()
    };
    Ok(fields(json!({ "tag_group": answer })))
}

/// `externalcontact/mark_tag`: `userid` adds and removes tags on a customer
/// of theirs.
pub(super) fn mark_tag(state: &mut SimState, body: &Value) -> ApiResult {
    let userid = required_str(body, "userid", 41009)?.to_owned();
    // plausible: 41035 for a missing external_userid.
    let external = required_str(body, "external_userid", 41035)?.to_owned();
    if !state.has_contact(&userid, &external) {
        return Err(fail(84061, "not external contact"));
    }
    let add = string_list(body, "add_tag").unwrap_or_default();
    let remove = string_list(body, "remove_tag").unwrap_or_default();
    if add.is_empty() && remove.is_empty() {
        // plausible: 40058 when neither list names a tag.
        return Err(fail(40058, "add_tag and remove_tag are both empty"));
    }
    if let Some(unknown) = add.iter().chain(&remove).find(|id| !live_tag(state, id)) {
        return Err(invalid_tag(unknown));
    }
    let marked = state.contact_tags.entry((userid, external)).or_default();
    marked.extend(add);
    for id in &remove {
        marked.remove(id);
    }
    Ok(fields(json!({})))
}

fn live_tag(state: &SimState, id: &str) -> bool {
    state
        .tag_groups
        .iter()
        .filter(|group| !group.deleted)
        .flat_map(|group| group.tag.iter())
        .any(|tag| tag.id == id && !tag.deleted)
}

fn invalid_tag(id: &str) -> WeComError {
    fail(40068, format!("invalid tagid {id}"))
}
