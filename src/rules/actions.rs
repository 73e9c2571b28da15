//! What the rules decide. `pipeline` applies a `Vec<Action>` in one transaction.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::event::JoinScene;
use super::route::Content;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record (or re-record) a member in a chat.
    RecordJoin {
        chat_id: String,
        user_id: String,
        at: DateTime<Utc>,
        join_scene: JoinScene,
    },
    RecordLeave {
        chat_id: String,
        user_id: String,
        at: DateTime<Utc>,
    },
    /// Hold a join for the merged welcome of this chat's current window.
    QueueWelcome {
        chat_id: String,
        user_id: String,
        at: DateTime<Utc>,
        returning: bool,
        join_scene: JoinScene,
    },
    /// Drop a queued welcome and onboarding tip (the member left before they went out).
    CancelQueuedWelcome {
        chat_id: String,
        user_id: String,
    },
    /// Hold an onboarding tip for a first-time member until `due_at`.
    ScheduleOnboarding {
        chat_id: String,
        user_id: String,
        due_at: DateTime<Utc>,
    },
    /// An append-only ledger entry; `reference` is unique so a replay adds nothing.
    AwardPoints {
        user_id: String,
        delta: i64,
        reason: String,
        reference: String,
        chat_id: Option<String>,
        day: NaiveDate,
    },
    /// One check-in per person per community day (unique in the store).
    RecordCheckin {
        user_id: String,
        day: NaiveDate,
        at: DateTime<Utc>,
        makeup: bool,
        chat_id: Option<String>,
    },
    AwardBadge {
        user_id: String,
        badge: String,
        at: DateTime<Utc>,
    },
    /// Spend points on a catalog item. The store decrements stock and debits the
    /// balance atomically; if either is short, `sold_out` is sent instead of `success`.
    Redeem {
        user_id: String,
        item: String,
        cost: i64,
        reference: String,
        day: NaiveDate,
        success: Box<Outbound>,
        sold_out: Box<Outbound>,
    },
    /// Enter a member into a lottery (once: unique per lottery and member),
    /// debiting `cost` points under `rules::lottery::entry_reference`.
    EnterLottery {
        lottery_id: i64,
        user_id: String,
        cost: i64,
        chat_id: Option<String>,
        day: NaiveDate,
        at: DateTime<Utc>,
    },
    /// Remember that an auto-reply fired in a chat (for its cooldown).
    MarkAutoReplyFired {
        chat_id: String,
        rule: String,
        at: DateTime<Utc>,
    },
    /// The chat's member list cannot be trusted (lost/reordered callbacks): re-pull it.
    RequestResync {
        chat_id: String,
    },
    SetMemberVersion {
        chat_id: String,
        version: String,
    },
    /// Queue a message in the outbox.
    Send(Outbound),
    /// Remember which member has an external contact (add_external_contact):
    /// only they may tag the customer or send them a 1:1 mass message.
    RecordCustomerOwner {
        external_user_id: String,
        staff_user_id: String,
        at: DateTime<Utc>,
    },
    /// Remember a member's post (time and text fingerprint) for the
    /// behavioural moderation rules. Never the text itself.
    RecordPost {
        chat_id: Option<String>,
        user_id: String,
        at: DateTime<Utc>,
        fingerprint: Option<i64>,
    },
    /// A moderation decision: audit-log entry, plus its strike and owner task.
    Moderate(Box<super::moderate::ModerationRecord>),
    /// A member's appeal against a punishment: the store opens it in the
    /// owner tier when the member has an active strike and no open appeal,
    /// then `opened` and `notify` are queued; otherwise `refused`.
    Appeal {
        user_id: String,
        chat_id: Option<String>,
        why: String,
        /// `appeal:<event>`: one appeal per message.
        reference: String,
        at: DateTime<Utc>,
        opened: Box<Outbound>,
        refused: Box<Outbound>,
        notify: Box<Outbound>,
    },
    /// The member was told that points of an expiry month run out (told once).
    NoteExpiryNotice {
        user_id: String,
        period: String,
        at: DateTime<Utc>,
    },
    /// A member's ballot in a poll (replacing their earlier one when the
    /// rules allowed a change).
    RecordVote {
        poll_id: i64,
        user_id: String,
        options: Vec<u32>,
        chat_id: Option<String>,
        via: &'static str,
        at: DateTime<Utc>,
    },
    /// A member's report of a message (by the quoted text's fingerprint).
    RecordReport {
        chat_id: String,
        reporter: String,
        fingerprint: i64,
        at: DateTime<Utc>,
    },
    /// Remember a group message's id, author and text fingerprint (never the
    /// text), so `加精`, `有用` and the console can find it (`[ugc]`).
    RecordContentPost {
        message_id: String,
        chat_id: String,
        author: String,
        fingerprint: Option<i64>,
        is_image: bool,
        at: DateTime<Utc>,
    },
    /// Mark a message 精华 (once per message) or 有用 (once per message and
    /// giver); the reward is its own `AwardPoints`.
    MarkMessage {
        mark: super::ugc::MessageMark,
        message_id: String,
        chat_id: String,
        author: String,
        by: String,
        at: DateTime<Utc>,
        day: NaiveDate,
    },
}

/// A message for the outbox: where it goes (usually decided by
/// [`super::route::route_for`]) and what it says. `skipped` is set when the
/// route cannot post: the row is still written (status skipped, with the
/// reason) so the manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    pub idempotency_key: String,
    pub route: OutRoute,
    pub content: Content,
    pub not_before: Option<DateTime<Utc>>,
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutRoute {
    /// appchat/send to a group the app created.
    AppGroup { chat_id: String },
    /// Classic group robot webhook.
    Webhook { key: String },
    /// Smart-bot asynchronous reply.
    SmartBotResponse { response_url: String },
    /// A group where only a smart bot sits: it answers @-mentions and cannot
    /// post on its own, so this route only files skipped rows.
    SmartBotChat { chat_id: String },
    /// A smart bot on a long connection pushing into a chat
    /// (`aibot_send_msg`), allowed once a member has written to it there.
    SmartBotPush { bot: String, chat_id: String },
    /// message/send to members, from the named app.
    Member { app: String, user_ids: Vec<String> },
    /// externalcontact/send_welcome_msg (1:1 to a new customer). The code is
    /// valid for 20 s from `event_at`, the add_external_contact event's time.
    WelcomeCode {
        code: String,
        event_at: DateTime<Utc>,
    },
    /// Customer groups with no automatic route: one mass message the owner
    /// confirms (`owner` is `None` when unknown; such rows are skipped).
    CustomerGroupMass {
        owner: Option<String>,
        chat_ids: Vec<String>,
    },
    /// appchat/update with `del_user_list`: remove a member from a chat the
    /// app created (the content is the reason, kept for the manager, never sent).
    AppChatRemove { chat_id: String, user_id: String },
    /// externalcontact/mark_tag: add or remove WeCom customer tags (by our
    /// tag names; the sender resolves WeCom's ids) on an external contact, as
    /// `staff`, a member who has the contact (`None` when no owner is known;
    /// such rows are skipped). The content is a note for the manager, never sent.
    CustomerTag {
        staff: Option<String>,
        external_user_id: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// add_msg_template with `chat_type = single`: one 1:1 mass message to
    /// `owner`'s external contacts that the owner confirms in the client
    /// (`owner` is `None` when unknown; such rows are skipped).
    CustomerMass {
        owner: Option<String>,
        external_user_ids: Vec<String>,
    },
}

impl OutRoute {
    /// The outbox's route name.
    pub fn name(&self) -> &'static str {
        match self {
            OutRoute::AppGroup { .. } => "app_group",
            OutRoute::Webhook { .. } => "webhook",
            OutRoute::SmartBotResponse { .. }
            | OutRoute::SmartBotChat { .. }
            | OutRoute::SmartBotPush { .. } => "smart_bot",
            OutRoute::Member { .. } => "member",
            OutRoute::WelcomeCode { .. } => "welcome_code",
            OutRoute::CustomerGroupMass { .. } => "customer_group_mass",
            OutRoute::AppChatRemove { .. } => "app_chat_remove",
            OutRoute::CustomerTag { .. } => "customer_tag",
            OutRoute::CustomerMass { .. } => "customer_mass",
        }
    }
}
