//! "Send now": a manager's message to chosen chats and tags. Planned with
//! [`crate::outbound::plan_broadcast`] (each chat through `route_for`) and
//! queued with its audit row in one transaction; the answer says, chat by
//! chat, what happened to it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::outbound::Broadcast;
use crate::rules::{Content, OutRoute, Outbound};
use crate::store::outbox::enqueue_broadcast;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BroadcastInput {
    #[serde(default)]
    pub chats: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub text: String,
    /// Send `text` as markdown (app groups, robots) instead of plain text.
    #[serde(default)]
    pub markdown: bool,
}

/// What happened to the broadcast in one chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatOutcome {
    pub chat_id: String,
    /// `queued`, `awaiting_owner` or `skipped`.
    pub outcome: &'static str,
    pub route: &'static str,
    /// The owner who must confirm, or why it was skipped.
    pub detail: Option<String>,
}

impl ChatOutcome {
    pub fn describe(&self) -> String {
        match (self.outcome, &self.detail) {
            ("queued", _) => format!("{}: queued via {}", self.chat_id, self.route),
            ("awaiting_owner", owner) => format!(
                "{}: awaiting the owner's confirmation ({})",
                self.chat_id,
                owner.as_deref().unwrap_or("?")
            ),
            (_, reason) => format!(
                "{}: skipped: {}",
                self.chat_id,
                reason.as_deref().unwrap_or("")
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BroadcastSent {
    pub id: String,
    pub chats: Vec<ChatOutcome>,
}

fn outcome(broadcast_id: &str, planned: &Outbound) -> ChatOutcome {
    let prefix = format!("broadcast:{broadcast_id}:");
    let chat_id = planned
        .idempotency_key
        .strip_prefix(&prefix)
        .unwrap_or(&planned.idempotency_key)
        .to_owned();
    let route = planned.route.name();
    match (&planned.skipped, &planned.route) {
        (Some(reason), _) => ChatOutcome {
            chat_id,
            outcome: "skipped",
            route,
            detail: Some(reason.clone()),
        },
        (None, OutRoute::CustomerGroupMass { owner, .. }) => ChatOutcome {
            chat_id,
            outcome: "awaiting_owner",
            route,
            detail: owner.clone(),
        },
        (None, _) => ChatOutcome {
            chat_id,
            outcome: "queued",
            route,
            detail: None,
        },
    }
}

/// Queues the message for every chosen chat and every chat carrying one of
/// the tags (operator or owner).
pub async fn send(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    input: &BroadcastInput,
) -> OpsResult<BroadcastSent> {
    actor.require(Role::Operator)?;
    let text = input.text.trim();
    if text.is_empty() {
        return Err(OpsError::invalid("text", "the message is empty"));
    }
    let clean = |list: &[String]| -> Vec<String> {
        list.iter()
            .flat_map(|item| item.split(','))
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    };
    let chats = clean(&input.chats);
    let tags = clean(&input.tags);
    if chats.is_empty() && tags.is_empty() {
        return Err(OpsError::invalid(
            "chats",
            "choose at least one chat or tag",
        ));
    }
    let content = if input.markdown {
        Content::Markdown {
            text: text.to_owned(),
        }
    } else {
        Content::text(text)
    };
    let broadcast = Broadcast {
        id: format!("{}-{:08x}", now.timestamp_millis(), rand::random::<u32>()),
        chats,
        tags,
        content,
    };
    let mut tx = ops.begin().await?;
    let app = ops
        .rules
        .in_force(&mut tx)
        .await?
        .rules
        .doc
        .community
        .app
        .clone();
    let queued = enqueue_broadcast(&mut tx, &broadcast, &app, now).await?;
    if queued.planned.is_empty() {
        return Err(OpsError::invalid(
            "tags",
            "no registered chat carries these tags",
        ));
    }
    let outcomes: Vec<ChatOutcome> = queued
        .planned
        .iter()
        .map(|planned| outcome(&broadcast.id, planned))
        .collect();
    let count = |what: &str| outcomes.iter().filter(|o| o.outcome == what).count();
    let detail = format!(
        "chats: {}; tags: {}; queued {}, awaiting owner {}, skipped {}",
        broadcast.chats.join(","),
        broadcast.tags.join(","),
        count("queued"),
        count("awaiting_owner"),
        count("skipped"),
    );
    audit(
        &mut tx,
        actor,
        now,
        "broadcast.send",
        &broadcast.id,
        &detail,
    )
    .await?;
    tx.commit().await.context("committing the broadcast")?;
    Ok(BroadcastSent {
        id: broadcast.id,
        chats: outcomes,
    })
}
