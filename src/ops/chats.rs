//! The chat registry a manager controls: list, show (with what qunyun can do
//! there), set the route, tag, and create app groups. Routes follow WeCom's
//! chat kinds (docs/wecom.md#chat-kinds): a customer group can hold neither a
//! webhook robot nor a smart bot, so attaching one is refused with the reason.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::config::Secret;
use crate::rules::capabilities::{capabilities_with_push, CapabilityRow};
use crate::rules::{ChatRoute, ChatSnapshot};
use crate::store::admin::{self as q, ChatRow};
use crate::store::chats::{self, NewChat};
use crate::wecom::api::{ApiClient, AppChatCreate};

/// Every registered chat with its member count and recent activity.
pub async fn list(ops: &Ops, now: DateTime<Utc>) -> OpsResult<Vec<ChatRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::list_chats(&mut conn, now.timestamp()).await?)
}

/// One chat and, feature by feature, what qunyun can do there.
#[derive(Debug, Clone, Serialize)]
pub struct ChatDetail {
    pub chat: ChatSnapshot,
    pub kind: &'static str,
    pub robot: bool,
    pub smart_bot: Option<String>,
    pub capabilities: Vec<CapabilityRow>,
}

pub async fn show(ops: &Ops, chat_id: &str) -> OpsResult<ChatDetail> {
    let mut conn = ops.pool.acquire().await?;
    let chat = chats::get_chat(&mut conn, chat_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("chat {chat_id}")))?;
    let push = crate::store::smart_bots::chat_push(&mut conn, chat_id).await?;
    Ok(ChatDetail {
        kind: chat.route.name(),
        robot: chat.route.robot_key().is_some(),
        smart_bot: chat.route.smart_bot().map(str::to_owned),
        capabilities: capabilities_with_push(&chat, push),
        chat,
    })
}

/// What `chats set` changes; unset fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteChange {
    /// The webhook key of a robot added to the (internal) group.
    #[serde(default)]
    pub robot_key: Option<String>,
    /// The `[[wecom.bots]]` name of the smart bot sitting in the group.
    #[serde(default)]
    pub smart_bot: Option<String>,
    #[serde(default)]
    pub no_robot: bool,
    #[serde(default)]
    pub no_smart_bot: bool,
}

const CUSTOMER_GROUP_NO_ROBOT: &str = "a customer group cannot hold a webhook robot: WeCom \
     offers group robots in internal groups only; customer groups are reached by an \
     owner-confirmed mass message";
const CUSTOMER_GROUP_NO_SMART_BOT: &str = "a customer group cannot hold a smart bot: WeCom \
     offers smart bots in internal groups only";
const APP_GROUP_NEEDS_NONE: &str =
    "an app group posts through appchat/send itself; no robot or smart bot is needed";

/// The route `change` gives a chat now on `current`, or why it cannot.
pub fn changed_route(current: &ChatRoute, change: &RouteChange) -> OpsResult<ChatRoute> {
    let robot_key = change.robot_key.as_deref().map(str::trim);
    let smart_bot = change.smart_bot.as_deref().map(str::trim);
    if robot_key.is_some() && change.no_robot {
        return Err(OpsError::invalid(
            "robot_key",
            "give a robot key or --no-robot, not both",
        ));
    }
    if smart_bot.is_some() && change.no_smart_bot {
        return Err(OpsError::invalid(
            "smart_bot",
            "give a smart bot or --no-smart-bot, not both",
        ));
    }
    if robot_key == Some("") {
        return Err(OpsError::invalid("robot_key", "the robot key is empty"));
    }
    if smart_bot == Some("") {
        return Err(OpsError::invalid(
            "smart_bot",
            "the smart bot name is empty",
        ));
    }
    match current {
        ChatRoute::CustomerGroup => {
            if robot_key.is_some() {
                return Err(OpsError::invalid("robot_key", CUSTOMER_GROUP_NO_ROBOT));
            }
            if smart_bot.is_some() {
                return Err(OpsError::invalid("smart_bot", CUSTOMER_GROUP_NO_SMART_BOT));
            }
            Ok(ChatRoute::CustomerGroup)
        }
        ChatRoute::AppGroup => match (robot_key, smart_bot) {
            (Some(_), _) => Err(OpsError::invalid("robot_key", APP_GROUP_NEEDS_NONE)),
            (_, Some(_)) => Err(OpsError::invalid("smart_bot", APP_GROUP_NEEDS_NONE)),
            _ => Ok(ChatRoute::AppGroup),
        },
        ChatRoute::InternalGroup {
            robot_key: old_key,
            smart_bot: old_bot,
        } => Ok(ChatRoute::InternalGroup {
            robot_key: match robot_key {
                Some(key) => Some(key.to_owned()),
                None if change.no_robot => None,
                None => old_key.clone(),
            },
            smart_bot: match smart_bot {
                Some(bot) => Some(bot.to_owned()),
                None if change.no_smart_bot => None,
                None => old_bot.clone(),
            },
        }),
    }
}

/// Changes a chat's robot or smart bot. A chat not registered yet becomes an
/// internal group (no callback tells us about those unless the smart bot is
/// @-mentioned there). The audit row never holds the robot key: it posts.
pub async fn set_route(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    chat_id: &str,
    change: &RouteChange,
) -> OpsResult<ChatRoute> {
    actor.require(Role::Operator)?;
    let chat_id = chat_id.trim();
    if chat_id.is_empty() {
        return Err(OpsError::invalid("chat_id", "a chat id is required"));
    }
    let mut tx = ops.begin().await?;
    let existing = chats::get_chat(&mut tx, chat_id).await?;
    let current = existing.as_ref().map_or(
        ChatRoute::InternalGroup {
            robot_key: None,
            smart_bot: None,
        },
        |chat| chat.route.clone(),
    );
    let route = changed_route(&current, change)?;
    if existing.is_some() {
        chats::set_route(&mut tx, chat_id, &route, now).await?;
    } else {
        register(ops, &mut tx, now, chat_id, "", route.clone(), None).await?;
    }
    audit(
        &mut tx,
        actor,
        now,
        "chat.set_route",
        chat_id,
        &route.describe(),
    )
    .await?;
    tx.commit().await.context("committing the route")?;
    Ok(route)
}

fn clean_tags(tags: &[String]) -> OpsResult<Vec<String>> {
    let tags: Vec<String> = tags.iter().map(|t| t.trim().to_owned()).collect();
    if tags.is_empty() {
        return Err(OpsError::invalid("tags", "name at least one tag"));
    }
    if let Some(bad) = tags
        .iter()
        .find(|t| t.is_empty() || t.chars().any(|c| c == ',' || c.is_whitespace()))
    {
        return Err(OpsError::invalid(
            "tags",
            format!("'{bad}' is not a tag (no spaces or commas, not empty)"),
        ));
    }
    Ok(tags)
}

/// Whether a tag change adds or removes the tags it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChange {
    Add,
    Remove,
}

/// Adds or removes tags on a chat; returns its tags afterwards.
pub async fn change_tags(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    chat_id: &str,
    change: TagChange,
    tags: &[String],
) -> OpsResult<Vec<String>> {
    actor.require(Role::Operator)?;
    let tags = clean_tags(tags)?;
    let mut tx = ops.begin().await?;
    let chat = chats::get_chat(&mut tx, chat_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("chat {chat_id}")))?;
    let mut current = chat.tags;
    for tag in &tags {
        match change {
            TagChange::Add if !current.contains(tag) => current.push(tag.clone()),
            TagChange::Add => {}
            TagChange::Remove => current.retain(|t| t != tag),
        }
    }
    let action = match change {
        TagChange::Add => "chat.tag",
        TagChange::Remove => "chat.untag",
    };
    chats::set_tags(&mut tx, chat_id, &current, now).await?;
    audit(&mut tx, actor, now, action, chat_id, &tags.join(",")).await?;
    tx.commit().await.context("committing the tags")?;
    Ok(current)
}

/// What `chats create-appchat` asks WeCom for.
#[derive(Debug, Clone, Deserialize)]
pub struct NewAppChat {
    pub name: String,
    pub owner: String,
    /// At least two members besides or including the owner (WeCom's rule).
    pub members: Vec<String>,
}

/// Creates an app group through `appchat/create` and registers it (with the
/// tags the rule set's `[[chat_tags]]` give it). The WeCom call comes first:
/// a group WeCom refused is never registered.
pub async fn create_appchat(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    api: &ApiClient,
    secret: &Secret,
    input: &NewAppChat,
) -> OpsResult<String> {
    actor.require(Role::Operator)?;
    let name = input.name.trim();
    let owner = input.owner.trim();
    if name.is_empty() {
        return Err(OpsError::invalid("name", "a group name is required"));
    }
    if owner.is_empty() {
        return Err(OpsError::invalid("owner", "an owner (UserID) is required"));
    }
    let mut members: Vec<String> = input
        .members
        .iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    if !members.iter().any(|m| m == owner) {
        members.insert(0, owner.to_owned());
    }
    members.dedup();
    if members.len() < 2 {
        return Err(OpsError::invalid(
            "members",
            "an app group needs at least two members",
        ));
    }
    let request = AppChatCreate {
        name: name.to_owned(),
        owner: Some(owner.to_owned()),
        userlist: members.clone(),
        chatid: None,
    };
    let chat_id = api
        .appchat_create(secret, &request)
        .await
        .map_err(|error| OpsError::invalid("appchat", format!("WeCom refused: {error}")))?;
    let mut tx = ops.begin().await?;
    register(
        ops,
        &mut tx,
        now,
        &chat_id,
        name,
        ChatRoute::AppGroup,
        Some(owner),
    )
    .await?;
    audit(
        &mut tx,
        actor,
        now,
        "chat.create_appchat",
        &chat_id,
        &format!("{name}; owner {owner}; {} members", members.len()),
    )
    .await?;
    tx.commit().await.context("committing the app group")?;
    Ok(chat_id)
}

/// Registers a chat qunyun did not know, tagged as the rule set in force
/// tags a chat of that name and owner.
async fn register(
    ops: &Ops,
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    now: DateTime<Utc>,
    chat_id: &str,
    name: &str,
    route: ChatRoute,
    owner: Option<&str>,
) -> OpsResult<()> {
    let rules = ops.rules.get(tx).await?;
    let chat = NewChat {
        chat_id: chat_id.to_owned(),
        name: name.to_owned(),
        route,
        owner: owner.map(str::to_owned),
        admins: Vec::new(),
        tags: rules.chat_tags_for(name, owner),
        member_version: None,
    };
    chats::upsert_chat(tx, &chat, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(robot: Option<&str>, bot: Option<&str>) -> RouteChange {
        RouteChange {
            robot_key: robot.map(str::to_owned),
            smart_bot: bot.map(str::to_owned),
            ..RouteChange::default()
        }
    }

    #[test]
    fn a_customer_group_refuses_robot_and_smart_bot_naming_the_field() {
        let refused = changed_route(&ChatRoute::CustomerGroup, &change(Some("K"), None));
        let error = refused.unwrap_err().to_string();
        assert!(error.starts_with("robot_key: a customer group cannot hold a webhook robot"));
        let refused = changed_route(&ChatRoute::CustomerGroup, &change(None, Some("bot")));
        assert!(refused.unwrap_err().to_string().starts_with("smart_bot:"));
    }

    #[test]
    fn an_internal_group_keeps_what_the_change_does_not_name() {
        let current = ChatRoute::internal_with_smart_bot("helper");
        let route = changed_route(&current, &change(Some("K"), None)).unwrap();
        assert_eq!(route.robot_key(), Some("K"));
        assert_eq!(route.smart_bot(), Some("helper"));
        let cleared = changed_route(
            &route,
            &RouteChange {
                no_robot: true,
                ..RouteChange::default()
            },
        )
        .unwrap();
        assert_eq!(cleared, current);
    }
}
