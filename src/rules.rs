//! The pure core: `evaluate(rules, snapshot, event, now) -> Vec<Action>`.
//! No I/O, no clock reads; `pipeline` loads the [`Snapshot`] and applies the actions.
//! This module imports nothing from `wecom`, `store` or axum.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod actions;
pub mod analytics;
pub mod autoreply;
pub mod capabilities;
pub mod chat_tags;
pub mod checkin;
pub mod commands;
pub mod event;
pub mod expiry;
pub mod honour;
pub mod invites;
pub mod lottery;
pub mod member_tags;
pub mod moderate;
pub mod moderation;
pub mod points;
pub mod polls;
pub mod review;
pub mod route;
pub mod ruleset;
pub mod schedule;
pub mod segment_limit;
pub mod templates;
pub mod ugc;
pub mod welcome;

pub use actions::{Action, OutRoute, Outbound};
pub use event::{Event, EventKind};
pub use route::{route_for, ChatAddress, Content, MessageKind, RouteDecision};
pub use ruleset::{RuleSet, RuleSetError};

/// The kind of a chat, as WeCom has them (docs/wecom.md#chat-kinds), and
/// what it holds that qunyun can post through.
///
/// Robots and smart bots exist only in internal groups, so a customer group
/// carries neither; internal groups send no join/leave events, so only
/// customer groups (and app groups, which qunyun manages) have a known roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatRoute {
    /// An internal group qunyun created (应用群聊): `appchat/send`, automatic.
    AppGroup,
    /// A customer group (客户群): reached only by an owner-confirmed mass
    /// message, the group welcome material and the message archive.
    CustomerGroup,
    /// An internal group (内部群): posted to through a webhook robot someone
    /// added (its key); the smart bot sitting in it (its name in
    /// `[[wecom.bots]]`) can only answer @-mentions. Either may be missing.
    InternalGroup {
        robot_key: Option<String>,
        smart_bot: Option<String>,
    },
}

impl ChatRoute {
    pub fn name(&self) -> &'static str {
        match self {
            ChatRoute::AppGroup => "app_group",
            ChatRoute::CustomerGroup => "customer_group",
            ChatRoute::InternalGroup { .. } => "internal_group",
        }
    }

    /// An internal group with a webhook robot and no smart bot.
    pub fn internal_with_robot(key: impl Into<String>) -> Self {
        ChatRoute::InternalGroup {
            robot_key: Some(key.into()),
            smart_bot: None,
        }
    }

    /// An internal group where the smart bot `bot` sits, without robot.
    pub fn internal_with_smart_bot(bot: impl Into<String>) -> Self {
        ChatRoute::InternalGroup {
            robot_key: None,
            smart_bot: Some(bot.into()),
        }
    }

    /// The webhook robot's key, when there is a (non-empty) one.
    pub fn robot_key(&self) -> Option<&str> {
        match self {
            ChatRoute::InternalGroup { robot_key, .. } => {
                robot_key.as_deref().filter(|key| !key.is_empty())
            }
            _ => None,
        }
    }

    /// The smart bot sitting in the chat (an empty name: one whose name was
    /// not recorded).
    pub fn smart_bot(&self) -> Option<&str> {
        match self {
            ChatRoute::InternalGroup { smart_bot, .. } => smart_bot.as_deref(),
            _ => None,
        }
    }

    /// One line for people: kind, whether a robot is attached (never its
    /// key: it is a credential) and the smart bot's name.
    pub fn describe(&self) -> String {
        format!(
            "{}; robot: {}; smart bot: {}",
            self.name(),
            if self.robot_key().is_some() {
                "yes"
            } else {
                "no"
            },
            self.smart_bot().unwrap_or("none")
        )
    }
}

/// What the rules know about the chat an event happened in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSnapshot {
    pub chat_id: String,
    pub name: String,
    pub route: ChatRoute,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub admins: Vec<String>,
    /// Current members (after any joins already applied).
    pub member_count: u32,
    pub member_version: Option<String>,
    /// Raid mode lasts until this instant (extended by each join during a raid).
    pub raid_until: Option<DateTime<Utc>>,
}

/// What the rules know about one person (community-wide, not per chat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonSnapshot {
    pub user_id: String,
    pub name: Option<String>,
    pub balance: i64,
    /// Sum of all positive ledger entries (decides the level).
    pub lifetime_points: i64,
    /// Recent check-in days, ascending.
    pub checkin_days: Vec<NaiveDate>,
    /// Recent days filled by make-up check-ins (补签 is limited per month of the day filled).
    pub makeup_days: Vec<NaiveDate>,
    /// Points earned today, by reason (for daily caps).
    pub points_today: BTreeMap<String, i64>,
    pub redemptions_by_item: BTreeMap<String, u32>,
    pub badges: Vec<String>,
    /// True when this person was ever a member of any chat before.
    pub seen_before: bool,
    /// Points expiring soon that this person was not told about yet (loaded
    /// for 签到 and 积分 only, see `rules::expiry`).
    pub expiry_notice: Option<expiry::Expiring>,
}

impl PersonSnapshot {
    pub fn new(user_id: &str) -> Self {
        Self {
            user_id: user_id.to_string(),
            ..Self::default()
        }
    }

    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.user_id.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    pub name: String,
    pub points: i64,
}

/// Everything `evaluate` may look at. `pipeline` fills what the event needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub chat: Option<ChatSnapshot>,
    /// The sender of a message, or the people joining/leaving, keyed by user id.
    pub people: BTreeMap<String, PersonSnapshot>,
    /// How many people have checked in today before this event.
    pub checkins_today: u32,
    /// The leaderboard 排行 asked for (loaded only for that command).
    pub leaderboard: Vec<LeaderboardEntry>,
    /// Remaining stock by catalog item.
    pub catalog_stock: BTreeMap<String, i64>,
    /// When each auto-reply rule last fired in this chat.
    pub autoreply_last_fired: BTreeMap<String, DateTime<Utc>>,
    /// Welcomes already queued for this chat's open merge window (joined_at of the first).
    pub open_welcome_window: Option<DateTime<Utc>>,
    /// Joins already queued in the open window.
    pub queued_welcomes: usize,
    /// The sender's recent posts, strikes and report counts (moderation on only).
    #[serde(skip)]
    pub moderation: moderate::ModerationSnapshot,
    /// Open lotteries whose keyword the message is (loaded only then).
    pub lotteries: lottery::LotteryContext,
    /// The first honour board's current period (loaded only for 荣誉榜).
    #[serde(default)]
    pub honour: Option<honour::BoardData>,
    /// The message a `加精` quotes, when the store knows it.
    #[serde(default)]
    pub featured: Option<ugc::FeaturedTarget>,
    /// The message a `有用` quotes, when the store knows it, with the giver's
    /// earlier marks.
    #[serde(default)]
    pub helpful: Option<ugc::HelpfulTarget>,
    /// The poll a `投 N` ballot is for (loaded only for that command).
    #[serde(default)]
    pub ballot: Option<polls::Ballot>,
}

impl Snapshot {
    pub fn person(&self, user_id: &str) -> PersonSnapshot {
        self.people
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| PersonSnapshot::new(user_id))
    }
}

/// A posted message and what the rules that answer it read: the one argument
/// of the handlers for members' messages.
#[derive(Clone, Copy)]
pub struct MessageContext<'a> {
    pub rules: &'a RuleSet,
    pub snapshot: &'a Snapshot,
    pub event: &'a Event,
    pub message: &'a event::MessagePosted,
    pub now: DateTime<Utc>,
}

impl MessageContext<'_> {
    /// `text` sent back the way the message came in (see [`commands::reply`]).
    pub fn reply(&self, text: String) -> Action {
        Action::Send(commands::reply(
            self.snapshot,
            self.event,
            self.message,
            text,
        ))
    }
}

/// Decides what an event should do. Pure: the same inputs give the same actions.
pub fn evaluate(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    now: DateTime<Utc>,
) -> Vec<Action> {
    // Posted text and posted images are answered from the same context.
    let context = |message| MessageContext {
        rules,
        snapshot,
        event,
        message,
        now,
    };
    match &event.kind {
        EventKind::MembersJoined(joined) => {
            welcome::on_members_joined(rules, snapshot, event, joined, now)
        }
        EventKind::MembersLeft(left) => welcome::on_members_left(snapshot, left, now),
        EventKind::CustomerAdded(added) => welcome::on_customer_added(rules, event, added),
        EventKind::MessagePosted(message) => {
            let cx = context(message);
            let (mut actions, violation) = moderate::on_message(&cx);
            actions.extend(ugc::on_message(rules, message, now));
            if violation {
                return actions;
            }
            let replies = commands::on_message(&cx);
            let replies = if replies.is_empty() {
                lottery::on_message(&cx)
            } else {
                replies
            };
            if replies.is_empty() {
                actions.extend(autoreply::on_message(&cx));
            } else {
                actions.extend(replies);
            }
            actions
        }
        EventKind::MessageReported(report) => {
            moderate::on_report(rules, snapshot, event, report, now)
        }
        EventKind::ContentFeatured(featured) => {
            ugc::on_featured(rules, snapshot, event, featured, now)
        }
        EventKind::MarkedHelpful(mark) => ugc::on_helpful(rules, snapshot, event, mark, now),
        EventKind::ImagePosted(message) => {
            let cx = context(message);
            let mut actions = ugc::on_image(&cx);
            if !message.text.trim().is_empty() {
                let text = Event {
                    id: event.id.clone(),
                    kind: EventKind::MessagePosted(message.clone()),
                };
                actions.extend(evaluate(rules, snapshot, &text, now));
            }
            actions
        }
    }
}
