//! Opens and closes polls on time (see `rules::polls`).
//!
//! Opening a poll resolves its chats (named chats and chats carrying its
//! tags), then in one transaction marks it open, records the chats and queues
//! one message per chat: a `vote_interaction` card pushed by the smart bot
//! where a long-connection bot sits (the only in-group clickable poll,
//! docs/wecom.md#template-cards), the announcement through the chat's route
//! everywhere else (customer groups: the owner's confirmation, or skipped with
//! the reason). Closing it, in one transaction, marks it closed, queues the
//! result once per chat the same way and pays the voters (ledger reference
//! `poll:<id>:<user>`). The status change is the claim: a second pass, or a
//! second instance, finds nothing to do.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use crate::active_rules::ActiveRules;
use crate::jobs::Job;
use crate::outbound::Payload;
use crate::rules::polls::{self as rules_polls, PollStatus};
use crate::rules::{ChatAddress, Content, MessageKind, Outbound, RuleSet};
use crate::store::outbox::{self, NewOutboxMessage};
use crate::store::points;
use crate::store::polls::{self, Poll};
use crate::store::schedules::{push_chats, PushChat};
use crate::wecom::api::BotResponse;
use crate::wecom::longconn::PushAddress;

/// The ledger reason of a voter's reward.
pub const REWARD_REASON: &str = "poll_vote";

pub struct PollJob {
    pool: SqlitePool,
    rules: ActiveRules,
    default_app: String,
    /// Smart bots in long-connection mode: only they can push a card.
    websocket_bots: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollPass {
    pub opened: usize,
    pub closed: usize,
}

/// What a pass does to a due poll, opens first.
#[derive(Debug, Clone, Copy)]
enum Step {
    Open,
    Close,
}

impl PollJob {
    pub fn new(
        pool: SqlitePool,
        rules: ActiveRules,
        default_app: impl Into<String>,
        websocket_bots: Vec<String>,
    ) -> Self {
        Self {
            pool,
            rules,
            default_app: default_app.into(),
            websocket_bots,
        }
    }

    /// Opens every poll due at `now`, then closes every poll due (a poll
    /// whose whole window passed while qunyun was down is opened, then closed).
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<PollPass> {
        let rules = {
            let mut conn = self.pool.acquire().await?;
            self.rules.get(&mut conn).await?
        };
        let opened = self.take_due(Step::Open, &rules, now).await?;
        let closed = self.take_due(Step::Close, &rules, now).await?;
        Ok(PollPass { opened, closed })
    }

    /// Moves every poll due for `step` on, each in a transaction of its own
    /// that the status change claims; how many it moved.
    async fn take_due(
        &self,
        step: Step,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            match step {
                Step::Open => polls::due_to_open(&mut conn, now).await?,
                Step::Close => polls::due_to_close(&mut conn, now).await?,
            }
        };
        let (from, to) = match step {
            Step::Open => (PollStatus::Scheduled, PollStatus::Open),
            Step::Close => (PollStatus::Open, PollStatus::Closed),
        };
        let mut moved = 0;
        for poll in due {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            if !polls::transition(&mut tx, poll.id, from, to, now).await? {
                continue;
            }
            match step {
                Step::Open => self
                    .open(&mut tx, rules, &poll, now)
                    .await
                    .with_context(|| format!("opening poll {}", poll.id))?,
                Step::Close => self
                    .close(&mut tx, rules, &poll, now)
                    .await
                    .with_context(|| format!("closing poll {}", poll.id))?,
            }
            tx.commit().await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// The long-connection smart bot sitting in `chat` that may push there
    /// (WeCom takes pushes only where a member has written to the bot).
    fn pushing_bot<'a>(&self, chat: &'a PushChat) -> Option<&'a str> {
        if chat.smart_bot_push != crate::rules::route::SmartBotPush::Ready {
            return None;
        }
        chat.route
            .smart_bot()
            .filter(|bot| self.websocket_bots.iter().any(|b| b == bot))
    }

    async fn open(
        &self,
        conn: &mut SqliteConnection,
        rules: &RuleSet,
        poll: &Poll,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let registered = push_chats(conn).await?;
        let chats = addressed(poll, &registered);
        let close_at = poll
            .close_at
            .with_timezone(&rules.timezone)
            .format("%m-%d %H:%M")
            .to_string();
        let text = rules_polls::open_text(&poll.question, &poll.options, poll.multiple, &close_at);
        for (n, (chat_id, chat)) in chats.iter().enumerate() {
            let key = format!("poll:{}:open:{chat_id}", poll.id);
            if let Some(bot) = chat.and_then(|chat| self.pushing_bot(chat)) {
                let task_id = rules_polls::task_id(poll.id, n);
                polls::add_chat(conn, poll.id, chat_id, Some(&task_id)).await?;
                let card =
                    rules_polls::card(&task_id, &poll.question, &poll.options, poll.multiple, None);
                let body = BotResponse::TemplateCard {
                    template_card: card,
                };
                push(conn, &key, bot, chat_id, &body, now).await?;
            } else {
                polls::add_chat(conn, poll.id, chat_id, None).await?;
                let message = to_chat(&key, chat_id, *chat, &text);
                outbox::enqueue(conn, &message, &self.default_app, now).await?;
            }
        }
        Ok(())
    }

    async fn close(
        &self,
        conn: &mut SqliteConnection,
        rules: &RuleSet,
        poll: &Poll,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let votes = polls::votes(conn, poll.id).await?;
        let ballots: Vec<Vec<u32>> = votes.iter().map(|v| v.options.clone()).collect();
        let counts = rules_polls::tally(poll.options.len(), &ballots);
        let text = rules_polls::result_text(&poll.question, &poll.options, &counts, votes.len());
        let registered = push_chats(conn).await?;
        for chat_id in polls::chats(conn, poll.id).await? {
            let chat = registered.iter().find(|c| c.chat_id == chat_id);
            let key = format!("poll:{}:result:{chat_id}", poll.id);
            // The result is text: the chat's route decides (a long-connection
            // bot pushes it, a customer group's owner confirms it, ...).
            let message = to_chat(&key, &chat_id, chat, &text);
            outbox::enqueue(conn, &message, &self.default_app, now).await?;
        }
        let voters: Vec<String> = votes.iter().map(|v| v.user_id.clone()).collect();
        let day = rules.community_day(now);
        for (user_id, amount) in
            rules_polls::rewards(&voters, poll.points_per_vote, poll.points_cap)
        {
            let chat_id = votes
                .iter()
                .find(|v| v.user_id == user_id)
                .and_then(|v| v.chat_id.clone());
            let reference = format!("poll:{}:{user_id}", poll.id);
            let entry = points::NewLedgerEntry {
                user_id: &user_id,
                delta: amount,
                reason: REWARD_REASON,
                reference: &reference,
                chat_id: chat_id.as_deref(),
                day,
                at: now,
            };
            points::append(conn, &entry).await?;
        }
        Ok(())
    }
}

/// The poll's chats: registered chats named or tagged, then named chats
/// not (yet) registered (their rows are skipped with the reason).
fn addressed<'a>(
    poll: &'a Poll,
    registered: &'a [PushChat],
) -> Vec<(&'a str, Option<&'a PushChat>)> {
    let mut chats: Vec<(&str, Option<&PushChat>)> = registered
        .iter()
        .filter(|chat| {
            poll.chats.contains(&chat.chat_id) || chat.tags.iter().any(|t| poll.tags.contains(t))
        })
        .map(|chat| (chat.chat_id.as_str(), Some(chat)))
        .collect();
    for chat_id in &poll.chats {
        if !registered.iter().any(|chat| &chat.chat_id == chat_id) {
            chats.push((chat_id.as_str(), None));
        }
    }
    chats
}

/// A poll message through the chat's route (as a broadcast: a customer group's
/// owner may confirm it later).
fn to_chat(key: &str, chat_id: &str, chat: Option<&PushChat>, text: &str) -> Outbound {
    let address = match chat {
        Some(chat) => chat.address(),
        None => ChatAddress::unknown(chat_id),
    };
    Outbound::to_chat(key, address, MessageKind::Broadcast, Content::text(text))
}

/// Queues a card push (`aibot_send_msg`) over `bot`'s long connection: the
/// outbox row a text push gets from the route decision, with a card body.
async fn push(
    conn: &mut SqliteConnection,
    key: &str,
    bot: &str,
    chat_id: &str,
    body: &BotResponse,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let target = PushAddress {
        bot: bot.to_owned(),
        conversation: chat_id.to_owned(),
    }
    .render();
    let payload = Payload::SmartBot(body.clone()).to_json()?;
    let entry = NewOutboxMessage {
        idempotency_key: key,
        route: crate::store::outbox::Route::SmartBot,
        target: &target,
        app: None,
        payload_json: &payload,
        created_at: now.timestamp(),
        not_before: None,
        skip_reason: None,
        event_at: None,
    };
    outbox::insert_row(conn, &entry).await?;
    Ok(())
}

impl Job for PollJob {
    type Outcome = PollPass;

    fn name(&self) -> &'static str {
        "polls"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<PollPass> {
        self.run_at(now).await
    }
}
