//! Clicks on the smart bot's template cards (docs/wecom.md#template-cards).
//!
//! WeCom sends a click once (no retry) and takes the card update only as the
//! answer to that click, within 5 seconds: the passive answer of a callback
//! or `aibot_respond_update_msg` on the long connection. So a click is
//! handled inline, right after its inbox row is stored, in a transaction of
//! its own: [`answer`] records what the click means and returns the card to
//! show the clicking member. The card's `task_id` says whose card it is: a
//! card family claims a prefix (`poll_` for polls) and adds an arm to
//! [`answer`].

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::rules::polls::{self as rules_polls, VoteDecision};
use crate::store::polls;
use crate::wecom::message::{BotEvent, BotEventType, Event};

/// One click, from either transport.
#[derive(Debug, Clone, PartialEq)]
pub struct CardClick {
    pub chat_id: Option<String>,
    pub user_id: String,
    pub task_id: String,
    pub event_key: Option<String>,
    /// `event.template_card_event` whole (selected options and the like).
    pub detail: Value,
}

impl CardClick {
    /// The click in a callback or long-connection event; `None` for any
    /// other event.
    pub fn in_event(event: &Event) -> Option<CardClick> {
        match event {
            Event::BotEvent(event) => CardClick::of(event),
            _ => None,
        }
    }

    /// The click in a smart-bot event; `None` for other events.
    pub fn of(event: &BotEvent) -> Option<CardClick> {
        if event.event_type != BotEventType::TemplateCardEvent {
            return None;
        }
        Some(CardClick {
            chat_id: event.chat_id.clone(),
            user_id: event.from_user_id.clone()?,
            task_id: event.task_id.clone()?,
            event_key: event.event_key.clone(),
            detail: event.detail.clone(),
        })
    }
}

/// The card that replaces the clicked one, for the clicking member only.
#[derive(Debug, Clone, PartialEq)]
pub struct CardUpdate {
    pub userids: Vec<String>,
    pub template_card: Value,
}

impl CardUpdate {
    /// The answer body: the same JSON in a callback's passive answer and in
    /// `aibot_respond_update_msg`.
    pub fn body(&self) -> Value {
        json!({
            "response_type": "update_template_card",
            "userids": self.userids,
            "template_card": self.template_card,
        })
    }
}

/// What the click means, recorded; the card to show. `None`: a card nobody
/// here claims (answered with an empty body).
pub async fn answer(
    pool: &SqlitePool,
    rules: &ActiveRules,
    now: DateTime<Utc>,
    click: &CardClick,
) -> anyhow::Result<Option<CardUpdate>> {
    if let Some(poll_id) = rules_polls::poll_of_task(&click.task_id) {
        return poll_click(pool, rules, now, poll_id, click).await;
    }
    tracing::info!(task_id = %click.task_id, "card click for a card nobody claims; ignored");
    Ok(None)
}

/// [`answer`] for a transport that must answer now: a failure is logged
/// (with `bot`, the endpoint or bot name) and costs only the card update;
/// the click itself is already stored.
pub async fn answer_or_log(
    pool: &SqlitePool,
    rules: &ActiveRules,
    now: DateTime<Utc>,
    click: &CardClick,
    bot: &str,
) -> Option<CardUpdate> {
    match answer(pool, rules, now, click).await {
        Ok(update) => update,
        Err(error) => {
            tracing::error!(bot, error = %format!("{error:#}"), "card click not handled");
            None
        }
    }
}

/// A ballot by card: decided like a keyword ballot; the card shows the
/// member's ballot as "已投票", or why the click did not count.
async fn poll_click(
    pool: &SqlitePool,
    rules: &ActiveRules,
    now: DateTime<Utc>,
    poll_id: i64,
    click: &CardClick,
) -> anyhow::Result<Option<CardUpdate>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let Some(poll) = polls::get(&mut tx, poll_id).await? else {
        return Ok(None);
    };
    let eligible = match &click.chat_id {
        Some(chat_id) => polls::poll_has_chat(&mut tx, poll_id, chat_id).await?,
        None => false,
    };
    let previous = polls::previous_vote(&mut tx, poll_id, &click.user_id).await?;
    let mut ballot = polls::ballot(poll, previous.clone(), eligible);
    if ballot.segment.is_some() {
        let rules = rules.get(&mut tx).await?;
        let segment = ballot.segment.as_ref();
        ballot.in_segment =
            crate::ops::segments::member_of(&mut tx, &rules, segment, &click.user_id, now).await?;
    }
    let choice = rules_polls::card_choice(&click.detail);
    let decision = rules_polls::decide(&ballot, &choice, now);
    let (shown, button) = match &decision {
        VoteDecision::Record { options, .. } => {
            polls::record_vote(
                &mut tx,
                poll_id,
                &click.user_id,
                options,
                click.chat_id.as_deref(),
                "card",
                now,
            )
            .await?;
            (Some(options.clone()), "已投票")
        }
        VoteDecision::Refuse { .. } if now >= ballot.close_at => (previous, "投票已截止"),
        VoteDecision::Refuse { .. } if previous.is_some() => (previous, "已投票"),
        VoteDecision::Refuse { .. } => (None, "未计入"),
    };
    tx.commit().await?;
    let mut card = rules_polls::card(
        &click.task_id,
        &ballot.question,
        &ballot.options,
        ballot.multiple,
        Some(shown.as_deref().unwrap_or_default()),
    );
    card["submit_button"]["text"] = json!(button);
    tracing::info!(
        poll = poll_id,
        counted = matches!(decision, VoteDecision::Record { .. }),
        "poll card click"
    );
    Ok(Some(CardUpdate {
        userids: vec![click.user_id.clone()],
        template_card: card,
    }))
}
