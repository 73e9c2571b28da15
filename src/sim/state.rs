//! The simulator's in-memory world. Plain data plus small helpers; the API
//! semantics live in `api.rs`, the HTTP glue in `sim.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::faults::Faults;
use super::model::{
    ApiCall, AppChatView, CustomerGroupView, Delivery, DropReason, Dropped, GroupWelcomeTemplate,
    Route, SeedAppChat, SeedCustomerGroup, SeedGroupMember, SeedState, Stats, WorldRefusal,
};

#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    /// Index into `SimConfig::apps`.
    pub app: usize,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct CustomerGroup {
    pub chat_id: String,
    pub name: String,
    pub owner: String,
    pub notice: String,
    pub status: u8,
    pub create_time: i64,
    pub admins: Vec<String>,
    pub members: Vec<SeedGroupMember>,
    version_counter: u64,
    pub member_version: String,
}

impl CustomerGroup {
    fn from_seed(seed: SeedCustomerGroup) -> Self {
        let mut group = Self {
            chat_id: seed.chat_id,
            name: seed.name,
            owner: seed.owner,
            notice: seed.notice,
            status: seed.status,
            create_time: seed.create_time,
            admins: seed.admins,
            members: seed.members,
            version_counter: 0,
            member_version: String::new(),
        };
        group.bump_member_version();
        group
    }

    /// A new opaque 32-hex version after every member change, like WeCom's
    /// `member_version`. Derived from the chat id and a counter so it never
    /// repeats within a chat.
    pub fn bump_member_version(&mut self) -> String {
        self.version_counter += 1;
        let digest = Sha256::digest(format!("{}/{}", self.chat_id, self.version_counter));
        self.member_version = hex::encode(&digest[..16]);
        self.member_version.clone()
    }

    pub fn view(&self) -> CustomerGroupView {
        CustomerGroupView {
            chat_id: self.chat_id.clone(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            status: self.status,
            member_version: self.member_version.clone(),
            members: self.members.clone(),
            admins: self.admins.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Robot {
    pub chat_id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AppChat {
    pub chatid: String,
    pub name: String,
    pub owner: String,
    pub userlist: Vec<String>,
    pub creator_agent_id: Option<i64>,
}

impl AppChat {
    pub fn view(&self) -> AppChatView {
        AppChatView {
            chatid: self.chatid.clone(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            userlist: self.userlist.clone(),
            creator_agent_id: self.creator_agent_id,
        }
    }

    /// Seeded chats without a creator are usable by every app.
    pub fn usable_by(&self, agent_id: Option<i64>) -> bool {
        self.creator_agent_id.is_none() || self.creator_agent_id == agent_id
    }
}

#[derive(Debug, Clone)]
pub(crate) struct WelcomeCode {
    pub userid: String,
    pub external_userid: String,
    pub issued_at: DateTime<Utc>,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ResponseCode {
    pub aibotid: String,
    /// Chat id for group mentions, user id for 1:1.
    pub target: String,
    pub is_group: bool,
    pub issued_at: DateTime<Utc>,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct MassTask {
    pub sender: String,
    pub chat_ids: Vec<String>,
    /// External contacts of a `chat_type = single` task (then no chats).
    pub external_userids: Vec<String>,
    pub msgtype: String,
    pub content: Value,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Timestamps of recent accepted sends for one rate-limited key.
#[derive(Debug, Default, Clone)]
pub(crate) struct SlidingWindow {
    hits: VecDeque<DateTime<Utc>>,
}

impl SlidingWindow {
    /// How many hits fall inside `(now - span, now]`.
    pub fn count_within(&self, now: DateTime<Utc>, span: Duration) -> usize {
        let since = now - span;
        self.hits.iter().filter(|hit| **hit > since).count()
    }

    /// Record a hit and forget those older than `keep`.
    pub fn record(&mut self, now: DateTime<Utc>, keep: Duration) {
        let since = now - keep;
        while self.hits.front().is_some_and(|hit| *hit <= since) {
            self.hits.pop_front();
        }
        self.hits.push_back(now);
    }
}

#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub tokens: HashMap<String, IssuedToken>,
    pub directory: BTreeSet<String>,
    pub customer_groups: BTreeMap<String, CustomerGroup>,
    pub robots: HashMap<String, Robot>,
    pub app_chats: BTreeMap<String, AppChat>,
    /// Groups where the smart bot has been @-mentioned: internal groups.
    pub smart_bot_chats: BTreeSet<String>,
    pub welcome_codes: HashMap<String, WelcomeCode>,
    pub response_codes: HashMap<String, ResponseCode>,
    pub mass_tasks: HashMap<String, MassTask>,
    pub welcome_templates: Vec<GroupWelcomeTemplate>,
    /// External userid → members who have the customer as a contact (an
    /// add_external_contact, i.e. an issued welcome code, or a seed).
    pub contacts: BTreeMap<String, BTreeSet<String>>,
    /// Corp customer tag groups, in creation order.
    pub tag_groups: Vec<super::model::TagGroup>,
    /// (member, external userid) → the tag ids that member marked on the customer.
    pub contact_tags: BTreeMap<(String, String), BTreeSet<String>>,
    /// Duplicate-check key → when that content was last delivered.
    pub duplicate_guard: HashMap<String, DateTime<Utc>>,
    /// (agent id, member) → app message hits.
    pub app_member_windows: HashMap<(i64, String), SlidingWindow>,
    /// member → appchat message hits (across all app chats).
    pub appchat_member_windows: HashMap<String, SlidingWindow>,
    /// robot key → webhook hits.
    pub webhook_windows: HashMap<String, SlidingWindow>,
    pub messages: Vec<Delivery>,
    pub dropped: Vec<Dropped>,
    pub calls: Vec<ApiCall>,
    pub stats: Stats,
    pub faults: Faults,
    next_seq: u64,
    /// Source of the 64-bit MsgIds the driver puts on app text messages.
    next_app_msg_id: u64,
}

/// One message as a send call hands it out: a [`Delivery`] but for its
/// target (one call may reach many) and its sequence number.
pub struct Sent<'a> {
    pub route: Route,
    pub msgtype: &'a str,
    pub content: &'a Value,
    pub now: DateTime<Utc>,
    pub msgid: &'a str,
    /// See [`Delivery::sender`].
    pub sender: &'a str,
}

impl SimState {
    /// Adds `seed` to the world, or refuses all of it when it describes a
    /// world WeCom does not offer (a robot in a customer group, a chat that
    /// is both kinds).
    pub fn seed(&mut self, seed: SeedState) -> Result<(), WorldRefusal> {
        self.check_seed(&seed)?;
        self.directory.extend(seed.members);
        for group in seed.customer_groups {
            self.customer_groups
                .insert(group.chat_id.clone(), CustomerGroup::from_seed(group));
        }
        for robot in seed.robots {
            self.robots.insert(
                robot.key,
                Robot {
                    chat_id: robot.chat_id,
                    name: robot.name,
                },
            );
        }
        for chat in seed.app_chats {
            self.insert_app_chat(chat);
        }
        Ok(())
    }

    fn check_seed(&self, seed: &SeedState) -> Result<(), WorldRefusal> {
        let new_group = |chat_id: &str| seed.customer_groups.iter().any(|g| g.chat_id == chat_id);
        for robot in &seed.robots {
            if self.customer_groups.contains_key(&robot.chat_id) || new_group(&robot.chat_id) {
                return Err(WorldRefusal::RobotInCustomerGroup {
                    chat_id: robot.chat_id.clone(),
                });
            }
        }
        for group in &seed.customer_groups {
            let why = self.internal_group_kind(&group.chat_id).or_else(|| {
                if seed.app_chats.iter().any(|c| c.chatid == group.chat_id) {
                    Some(APP_GROUP)
                } else {
                    None
                }
            });
            if let Some(why) = why {
                return Err(WorldRefusal::InternalGroupAsCustomerGroup {
                    chat_id: group.chat_id.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// What makes `chat_id` an internal group, if anything does: a group
    /// robot, the smart bot, or being an app group.
    pub fn internal_group_kind(&self, chat_id: &str) -> Option<&'static str> {
        if self.robots.values().any(|robot| robot.chat_id == chat_id) {
            Some("it has a group robot")
        } else if self.smart_bot_chats.contains(chat_id) {
            Some("the smart bot is in it")
        } else if self.app_chats.contains_key(chat_id) {
            Some(APP_GROUP)
        } else {
            None
        }
    }

    /// Refuses a `change_external_chat` join/leave for an internal group.
    pub fn check_member_change(&self, chat_id: &str) -> Result<(), WorldRefusal> {
        match self.internal_group_kind(chat_id) {
            Some(why) => Err(WorldRefusal::NoJoinEventsInInternalGroups {
                chat_id: chat_id.to_owned(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Records that the smart bot is in group `chat_id`, refused for a
    /// customer group.
    pub fn smart_bot_in(&mut self, chat_id: &str) -> Result<(), WorldRefusal> {
        if self.customer_groups.contains_key(chat_id) {
            return Err(WorldRefusal::SmartBotInCustomerGroup {
                chat_id: chat_id.to_owned(),
            });
        }
        self.smart_bot_chats.insert(chat_id.to_owned());
        Ok(())
    }

    pub fn insert_app_chat(&mut self, chat: SeedAppChat) {
        self.app_chats.insert(
            chat.chatid.clone(),
            AppChat {
                chatid: chat.chatid,
                name: chat.name,
                owner: chat.owner,
                userlist: chat.userlist,
                creator_agent_id: chat.creator_agent_id,
            },
        );
    }

    /// Forget records, counters, rate windows, duplicate guards, faults and
    /// pending one-shot codes; keep the world (directory, groups, robots,
    /// chats) and issued tokens so connected clients keep working.
    pub fn reset_records(&mut self) {
        self.messages.clear();
        self.dropped.clear();
        self.calls.clear();
        self.stats = Stats::default();
        self.faults.clear();
        self.duplicate_guard.clear();
        self.app_member_windows.clear();
        self.appchat_member_windows.clear();
        self.webhook_windows.clear();
        self.mass_tasks.clear();
        self.welcome_codes.clear();
        self.response_codes.clear();
    }

    /// Whether `userid` has `external_userid` as a customer contact.
    pub fn has_contact(&self, userid: &str, external_userid: &str) -> bool {
        self.contacts
            .get(external_userid)
            .is_some_and(|staff| staff.contains(userid))
    }

    /// The names of the live tags any member marked on the customer, sorted.
    pub fn contact_tag_names(&self, external_userid: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .contact_tags
            .iter()
            .filter(|((_, ext), _)| ext == external_userid)
            .flat_map(|(_, ids)| ids.iter())
            .filter_map(|id| {
                self.tag_groups
                    .iter()
                    .flat_map(|group| group.tag.iter())
                    .find(|tag| &tag.id == id && !tag.deleted)
                    .map(|tag| tag.name.clone())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn knows_member(&self, userid: &str) -> bool {
        self.directory.is_empty() || self.directory.contains(userid)
    }

    /// Records `sent` as delivered to `target`.
    pub fn deliver(&mut self, sent: &Sent, target: impl Into<String>) {
        let delivery = self.new_delivery(sent, target);
        self.messages.push(delivery);
    }

    /// Records `sent` as dropped on its way to `target`, and why.
    pub fn drop_delivery(&mut self, sent: &Sent, target: impl Into<String>, reason: DropReason) {
        let delivery = self.new_delivery(sent, target);
        self.dropped.push(Dropped { delivery, reason });
    }

    fn new_delivery(&mut self, sent: &Sent, target: impl Into<String>) -> Delivery {
        self.next_seq += 1;
        Delivery {
            seq: self.next_seq,
            route: sent.route,
            target: target.into(),
            msgtype: sent.msgtype.to_owned(),
            content: sent.content.clone(),
            time: sent.now.timestamp(),
            msgid: sent.msgid.to_owned(),
            sender: sent.sender.to_owned(),
        }
    }

    pub fn stats_snapshot(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.messages = self.messages.len();
        stats.dropped = self.dropped.len();
        stats
    }

    /// A fresh 64-bit message id above 2^53, like real `MsgId`s (docs/wecom.md#app-text-messages), so
    /// clients that parse through f64 get caught.
    pub fn next_app_msg_id(&mut self) -> u64 {
        self.next_app_msg_id += 1;
        7_300_000_000_000_000_000 + self.next_app_msg_id
    }
}

const APP_GROUP: &str = "it is an app group";

/// Random `[A-Za-z0-9]` text for tokens, ids and codes.
pub(crate) fn random_id(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
