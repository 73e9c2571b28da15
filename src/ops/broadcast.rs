//! "Send now": a manager's message to chosen chats and tags. Planned with
//! [`crate::outbound::plan_broadcast`] (each chat through `route_for`) and
//! queued with its audit row in one transaction; the answer says, chat by
//! chat, what happened to it.
//!
//! A request may carry a one-time key (the console form's hidden key, the
//! API's `Idempotency-Key` header): a repeat with the same key answers what
//! the first request got and queues nothing, because a broadcast's own id is
//! time + random and cannot tell a double submit from a new message.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

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
    /// The request's one-time key; never read from a JSON body (the API
    /// takes it from the `Idempotency-Key` header).
    #[serde(skip)]
    pub request_key: Option<String>,
}

/// Longest accepted one-time key.
const MAX_REQUEST_KEY: usize = 200;

/// What happened to the broadcast in one chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatOutcome {
    pub chat_id: String,
    /// `queued`, `awaiting_owner` or `skipped`.
    pub outcome: String,
    pub route: String,
    /// The owner who must confirm, or why it was skipped.
    pub detail: Option<String>,
}

impl ChatOutcome {
    pub fn describe(&self) -> String {
        match (self.outcome.as_str(), &self.detail) {
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    let route = planned.route.name().to_owned();
    match (&planned.skipped, &planned.route) {
        (Some(reason), _) => ChatOutcome {
            chat_id,
            outcome: "skipped".to_owned(),
            route,
            detail: Some(reason.clone()),
        },
        (None, OutRoute::CustomerGroupMass { owner, .. }) => ChatOutcome {
            chat_id,
            outcome: "awaiting_owner".to_owned(),
            route,
            detail: owner.clone(),
        },
        (None, _) => ChatOutcome {
            chat_id,
            outcome: "queued".to_owned(),
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
    let request_key = input
        .request_key
        .as_deref()
        .map(str::trim)
        .filter(|key| !key.is_empty());
    if request_key.is_some_and(|key| key.len() > MAX_REQUEST_KEY) {
        return Err(OpsError::invalid(
            "idempotency_key",
            format!("longer than {MAX_REQUEST_KEY} characters"),
        ));
    }
    let request = serde_json::json!({
        "chats": chats,
        "tags": tags,
        "text": text,
        "markdown": input.markdown,
    })
    .to_string();
    let broadcast = Broadcast {
        id: format!("{}-{:08x}", now.timestamp_millis(), rand::random::<u32>()),
        chats,
        tags,
        content,
    };
    // BEGIN IMMEDIATE: a concurrent repeat waits here and then finds the key.
    let mut tx = ops.begin().await?;
    if let Some(key) = request_key {
        if let Some((earlier_request, answer)) = earlier_answer(&mut tx, actor, key).await? {
            if earlier_request != request {
                return Err(OpsError::invalid(
                    "idempotency_key",
                    "this key was already used for a different broadcast",
                ));
            }
            let sent =
                serde_json::from_str(&answer).context("reading a stored broadcast answer")?;
            return Ok(sent);
        }
    }
    let app = ops.rules.get(&mut tx).await?.doc.community.app.clone();
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
    let sent = BroadcastSent {
        id: broadcast.id,
        chats: outcomes,
    };
    if let Some(key) = request_key {
        remember_answer(&mut tx, actor, key, &request, &sent, now).await?;
    }
    tx.commit().await.context("committing the broadcast")?;
    Ok(sent)
}

/// The normalised request and the answer stored under `key`, if any.
async fn earlier_answer(
    conn: &mut SqliteConnection,
    actor: &Actor,
    key: &str,
) -> anyhow::Result<Option<(String, String)>> {
    sqlx::query_as(
        "select request, answer from broadcast_requests where actor = ? and request_key = ?",
    )
    .bind(&actor.name)
    .bind(key)
    .fetch_optional(conn)
    .await
    .context("looking up a broadcast request key")
}

async fn remember_answer(
    conn: &mut SqliteConnection,
    actor: &Actor,
    key: &str,
    request: &str,
    sent: &BroadcastSent,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into broadcast_requests
             (actor, request_key, request, broadcast_id, answer, created_at)
         values (?, ?, ?, ?, ?, ?)",
    )
    .bind(&actor.name)
    .bind(key)
    .bind(request)
    .bind(&sent.id)
    .bind(serde_json::to_string(sent)?)
    .bind(now.timestamp())
    .execute(conn)
    .await
    .context("storing a broadcast request key")?;
    Ok(())
}
