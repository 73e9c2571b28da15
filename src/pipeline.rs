//! The pipeline worker: inbox row → domain event (`inbox_event`) → snapshot
//! (`snapshot`) → `rules::evaluate` → apply. Each event's state changes, ledger
//! entries, outbox rows and its inbox status commit in **one** SQLite
//! transaction; a failing event is retried and parked after `max_attempts`, an
//! event whose handling panics is parked at once, and neither blocks other chats.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use futures_util::FutureExt;
use sqlx::{SqliteConnection, SqlitePool};

use crate::active_rules::ActiveRules;
use crate::clock::SharedClock;
use crate::inbox_event::domain_event;
use crate::jobs::{panic_message, Job};
use crate::rules::event::{MessagePosted, MessageReported};
use crate::rules::welcome::{self, QueuedJoin};
use crate::rules::{self, Action, ChatRoute, Event, EventKind, RuleSet};
use crate::snapshot::load_snapshot;
use crate::store::inbox::{self, InboxRow, InboxStatus};
use crate::store::inbox_writer::InboxWriter;
use crate::store::welcome::{self as store_welcome, DigestNewcomer};
use crate::store::{chats, checkins, members, moderation, outbox, points, redemptions};

#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    /// Attempts before an event is parked.
    pub max_attempts: i64,
    /// Inbox rows looked at per `run_once`.
    pub batch_size: i64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            batch_size: 200,
        }
    }
}

type Hook = Arc<dyn Fn(i64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Test seams; production never sets them. `before_commit` runs inside the
/// event's transaction, after every effect was written and before COMMIT
/// (crash-safety tests drop the worker there, supervision tests panic there).
/// `before_pass` runs at the start of every pass, outside any row (supervision
/// tests panic there to stop the whole worker).
#[derive(Clone, Default)]
pub struct PipelineHooks {
    pub before_commit: Option<Hook>,
    pub before_pass: Option<Arc<dyn Fn() + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcome {
    pub processed: usize,
    pub failed: usize,
    /// Parked this pass: out of attempts, or panicked (also counted in `panicked`).
    pub parked: usize,
    pub panicked: usize,
    pub welcomes_flushed: usize,
    /// Merged onboarding posts queued (one per chat and batch).
    pub onboarding_sent: usize,
    /// The batch was full: more rows may be pending.
    pub batch_full: bool,
}

pub struct Pipeline {
    pool: SqlitePool,
    clock: SharedClock,
    /// The configured app that posts to app groups (`store::outbox::enqueue`).
    default_app: String,
    settings: PipelineSettings,
    hooks: PipelineHooks,
    rules: ActiveRules,
    /// The callbacks' group-commit writer, whose waiting requests go first.
    ingest: Option<InboxWriter>,
}

/// The longest the pipeline waits for the inbox writer before each event: in
/// a burst the events already stored wait a little for the acknowledgements of
/// new ones, and the pipeline still handles at least 100 events a second.
const MAX_YIELD_TO_INGEST: std::time::Duration = std::time::Duration::from_millis(10);

impl Pipeline {
    pub fn new(
        pool: SqlitePool,
        clock: SharedClock,
        default_app: impl Into<String>,
        settings: PipelineSettings,
    ) -> Self {
        Self {
            pool,
            clock,
            default_app: default_app.into(),
            settings,
            hooks: PipelineHooks::default(),
            rules: ActiveRules::new(),
            ingest: None,
        }
    }

    /// Let the callbacks' inbox writer go first (see [`MAX_YIELD_TO_INGEST`]).
    pub fn with_ingest(mut self, writer: InboxWriter) -> Self {
        self.ingest = Some(writer);
        self
    }

    pub fn with_hooks(mut self, hooks: PipelineHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Shares the service's active-rules cache (`new` starts a private one).
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    /// [`run_at`](Self::run_at) the clock's now.
    pub async fn run_once(&self) -> anyhow::Result<RunOutcome> {
        self.run_at(self.clock.now()).await
    }

    /// One pass: flush due welcome windows, then process pending inbox rows in
    /// arrival order. A chat whose event failed (and is not yet parked) is
    /// skipped for the rest of this pass so its events stay in order.
    #[tracing::instrument(skip_all)]
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<RunOutcome> {
        if let Some(hook) = &self.hooks.before_pass {
            hook();
        }
        let rules = {
            let mut conn = self.pool.acquire().await?;
            self.rules.get(&mut conn).await?
        };
        let mut outcome = RunOutcome {
            welcomes_flushed: self.flush_welcomes(&rules, now).await?,
            onboarding_sent: self.send_due_onboarding(&rules, now).await?,
            ..RunOutcome::default()
        };
        let rows = {
            let mut conn = self.pool.acquire().await?;
            inbox::pending(&mut conn, self.settings.batch_size).await?
        };
        outcome.batch_full = rows.len() as i64 >= self.settings.batch_size;
        let mut blocked_chats: HashSet<String> = HashSet::new();
        for row in rows {
            if row
                .chat_id
                .as_ref()
                .is_some_and(|chat| blocked_chats.contains(chat))
            {
                continue;
            }
            if let Some(writer) = &self.ingest {
                writer.wait_until_idle(MAX_YIELD_TO_INGEST).await;
            }
            // A panic in one row's handling must not take the worker down: its
            // transaction is dropped (rolled back) and the row parked.
            let handled = AssertUnwindSafe(self.process_row(&rules, &row, now))
                .catch_unwind()
                .await;
            match handled {
                Ok(Ok(())) => outcome.processed += 1,
                Ok(Err(err)) => {
                    let error = format!("{err:#}");
                    tracing::warn!(inbox_id = row.id, kind = %row.kind, error = %error, "event failed");
                    let mut conn = self.pool.acquire().await?;
                    let status = inbox::record_failure(
                        &mut conn,
                        row.id,
                        &error,
                        self.settings.max_attempts,
                        now.timestamp(),
                    )
                    .await?;
                    if status == InboxStatus::Parked {
                        outcome.parked += 1;
                    } else {
                        outcome.failed += 1;
                        if let Some(chat) = row.chat_id {
                            blocked_chats.insert(chat);
                        }
                    }
                }
                Err(payload) => {
                    let reason = format!("panicked: {}", panic_message(&*payload));
                    tracing::error!(inbox_id = row.id, kind = %row.kind, reason, "event handling panicked; parked");
                    let mut conn = self.pool.acquire().await?;
                    if inbox::park(&mut conn, row.id, &reason, now.timestamp()).await? {
                        outcome.parked += 1;
                        outcome.panicked += 1;
                    }
                }
            }
        }
        crate::metrics::events_not_handled(outcome.failed, outcome.parked);
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, fields(inbox_id = row.id, kind = %row.kind))]
    async fn process_row(
        &self,
        rules: &RuleSet,
        row: &InboxRow,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        // IMMEDIATE: take the write lock first, so the snapshot we decide on is
        // the state we write to (two workers cannot both sell the last item).
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("beginning transaction")?;
        if let Some(event) = domain_event(row, &rules.doc.community.app)? {
            ensure_chat_registered(&mut tx, rules, &row.source, &event, now).await?;
            let snapshot = load_snapshot(&mut tx, rules, &event, now)
                .await
                .context("loading snapshot")?;
            let actions = rules::evaluate(rules, &snapshot, &event, now);
            apply(&mut tx, &self.default_app, &actions, now)
                .await
                .context("applying actions")?;
        }
        if !inbox::mark_done(&mut tx, row.id, now.timestamp()).await? {
            // Someone finished it meanwhile: our work is dropped with the transaction.
            return Ok(());
        }
        if let Some(hook) = &self.hooks.before_commit {
            hook(row.id).await;
        }
        tx.commit().await.context("committing event")?;
        crate::metrics::event_handled(row.received_at, now.timestamp());
        Ok(())
    }

    /// Queues one merged onboarding post per chat whose first tip has come due.
    /// The post takes every tip of that chat falling due before the community
    /// day ends, so a chat gets at most one tip post a day (with the default
    /// one-day delay, every newcomer of yesterday in one morning post).
    async fn send_due_onboarding(
        &self,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            chats::chats_with_due_onboarding(&mut conn, now).await?
        };
        let today = rules.community_day(now);
        let day_ends = crate::analytics::days::day_start(
            today + Duration::days(1),
            rules.timezone,
            rules.doc.community.day_cutover_hour,
        );
        let mut sent = 0;
        for (chat_id, first_due) in due {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let user_ids = chats::take_onboarding_before(&mut tx, &chat_id, day_ends).await?;
            let mut newcomers = Vec::with_capacity(user_ids.len());
            for user_id in user_ids {
                let name = members::person_name(&mut tx, &user_id).await?;
                newcomers.push(welcome::Newcomer { user_id, name });
            }
            let chat = chats::get_chat(&mut tx, &chat_id).await?;
            let Some(tip) =
                welcome::compose_onboarding(rules, chat.as_ref(), &chat_id, &newcomers, first_due)
            else {
                continue;
            };
            outbox::enqueue(&mut tx, &tip, &self.default_app, now).await?;
            tx.commit().await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Turns every merge window that has closed into its welcome, raid digest,
    /// or (customer groups) owner digest.
    async fn flush_welcomes(&self, rules: &RuleSet, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let opened_by = now - Duration::seconds(rules.doc.welcome.merge_window_secs);
        let due = {
            let mut conn = self.pool.acquire().await?;
            chats::due_welcome_windows(&mut conn, opened_by).await?
        };
        let mut flushed = 0;
        for (chat_id, _) in due {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut batch = chats::take_queued_welcomes(&mut tx, &chat_id).await?;
            for join in &mut batch {
                // Known once group sync read the member record (WeCom's `invitor`).
                join.inviter = members::inviter_name(&mut tx, &chat_id, &join.user_id).await?;
            }
            let chat = chats::get_chat(&mut tx, &chat_id).await?;
            let plan = welcome::compose_window(rules, chat.as_ref(), &chat_id, &batch, now);
            for message in &plan.messages {
                outbox::enqueue(&mut tx, message, &self.default_app, now).await?;
            }
            if let Some(digest) = &plan.owner_digest {
                let newcomers: Vec<DigestNewcomer> = digest
                    .newcomers
                    .iter()
                    .map(|n| DigestNewcomer {
                        user_id: n.user_id.clone(),
                        name: n.name.clone(),
                    })
                    .collect();
                store_welcome::record_digest(
                    &mut tx,
                    &digest.chat_id,
                    &digest.owner,
                    &newcomers,
                    &digest.suggestion,
                    now,
                )
                .await?;
            }
            if let Some(until) = plan.raid_until {
                chats::set_raid_until(&mut tx, &chat_id, until).await?;
            }
            tx.commit().await?;
            flushed += plan.messages.len();
        }
        Ok(flushed)
    }
}

impl Job for Pipeline {
    type Outcome = RunOutcome;

    fn name(&self) -> &'static str {
        "pipeline"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<RunOutcome> {
        self.run_at(now).await
    }

    fn more_waiting(&self, outcome: &RunOutcome) -> bool {
        // Only when the full batch went through: a failed row would be retried at once.
        outcome.batch_full && outcome.failed == 0
    }
}

/// Registers a chat we hear about before anyone configured it, as what the
/// event proves it is (docs/wecom.md#chat-kinds): a chat sending join/leave
/// events is a customer group (flagged for a full resync); a chat where the
/// smart bot is @-mentioned is an internal group with that smart bot (a chat
/// already registered as an internal group gains the smart bot).
async fn ensure_chat_registered(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    source: &str,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let smart_bot = source.strip_prefix("bot:").map(str::to_owned);
    let (chat_id, route) = match (&event.kind, smart_bot) {
        (EventKind::MembersJoined(j), _) => (&j.chat_id, ChatRoute::CustomerGroup),
        (EventKind::MembersLeft(l), _) => (&l.chat_id, ChatRoute::CustomerGroup),
        (
            EventKind::MessagePosted(MessagePosted {
                chat_id: Some(chat_id),
                ..
            })
            | EventKind::ImagePosted(MessagePosted {
                chat_id: Some(chat_id),
                ..
            })
            | EventKind::MessageReported(MessageReported { chat_id, .. })
            | EventKind::ContentFeatured(crate::rules::event::QuotedMark { chat_id, .. })
            | EventKind::MarkedHelpful(crate::rules::event::QuotedMark { chat_id, .. }),
            Some(bot),
        ) => (chat_id, ChatRoute::internal_with_smart_bot(bot)),
        _ => return Ok(()),
    };
    match chats::get_chat(conn, chat_id).await? {
        None => {
            let chat = chats::NewChat {
                chat_id: chat_id.clone(),
                name: String::new(),
                tags: rules.chat_tags_for("", None),
                route: route.clone(),
                owner: None,
                admins: Vec::new(),
                member_version: None,
            };
            chats::upsert_chat(conn, &chat, now).await?;
            if route == ChatRoute::CustomerGroup {
                chats::mark_needs_resync(conn, chat_id).await?;
            }
        }
        Some(known) => {
            if let (
                ChatRoute::InternalGroup {
                    robot_key,
                    smart_bot: None,
                },
                Some(bot),
            ) = (&known.route, route.smart_bot())
            {
                let with_bot = ChatRoute::InternalGroup {
                    robot_key: robot_key.clone(),
                    smart_bot: Some(bot.to_owned()),
                };
                chats::set_route(conn, chat_id, &with_bot, now).await?;
            }
        }
    }
    Ok(())
}

/// Applies the actions in order, all through the caller's transaction.
/// Messages go to the outbox through `store::outbox::enqueue` (a duplicate
/// idempotency key adds nothing); `default_app` posts to app groups.
pub async fn apply(
    conn: &mut SqliteConnection,
    default_app: &str,
    actions: &[Action],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for action in actions {
        match action {
            Action::RecordJoin {
                chat_id,
                user_id,
                at,
                join_scene,
            } => members::record_join(conn, chat_id, user_id, *at, *join_scene).await?,
            Action::RecordLeave {
                chat_id,
                user_id,
                at,
            } => members::record_leave(conn, chat_id, user_id, *at).await?,
            Action::QueueWelcome {
                chat_id,
                user_id,
                at,
                returning,
                join_scene,
            } => {
                let join = QueuedJoin {
                    user_id: user_id.clone(),
                    name: members::person_name(conn, user_id).await?,
                    joined_at: *at,
                    returning: *returning,
                    join_scene: *join_scene,
                    inviter: None,
                };
                chats::queue_welcome(conn, chat_id, &join).await?;
            }
            Action::CancelQueuedWelcome { chat_id, user_id } => {
                chats::cancel_queued_welcome(conn, chat_id, user_id).await?;
                chats::cancel_onboarding(conn, chat_id, user_id).await?;
            }
            Action::ScheduleOnboarding {
                chat_id,
                user_id,
                due_at,
            } => chats::schedule_onboarding(conn, chat_id, user_id, *due_at).await?,
            Action::AwardPoints {
                user_id,
                delta,
                reason,
                reference,
                chat_id,
                day,
            } => {
                let entry = points::NewLedgerEntry {
                    user_id,
                    delta: *delta,
                    reason,
                    reference,
                    chat_id: chat_id.as_deref(),
                    day: *day,
                    at: now,
                };
                if points::append(conn, &entry).await? == points::Appended::InsufficientBalance {
                    bail!("ledger entry {reference} would make the balance negative");
                }
            }
            Action::RecordCheckin {
                user_id,
                day,
                at,
                makeup,
                chat_id,
            } => {
                checkins::record_checkin(conn, user_id, *day, *at, *makeup, chat_id.as_deref())
                    .await?;
            }
            Action::AwardBadge { user_id, badge, at } => {
                members::award_badge(conn, user_id, badge, *at).await?
            }
            Action::RecordCustomerOwner {
                external_user_id,
                staff_user_id,
                at,
            } => {
                crate::store::customer_tags::record_owner(
                    conn,
                    external_user_id,
                    staff_user_id,
                    *at,
                )
                .await?
            }
            Action::Redeem {
                user_id,
                item,
                cost,
                reference,
                day,
                success,
                sold_out,
            } => {
                if redemptions::exists(conn, reference).await? {
                    continue; // a replay: stock and ledger were already settled
                }
                if !redemptions::take_one(conn, item).await? {
                    outbox::enqueue(conn, sold_out, default_app, now).await?;
                    continue;
                }
                let debit = points::NewLedgerEntry {
                    user_id,
                    delta: -cost,
                    reason: "redeem",
                    reference,
                    chat_id: None,
                    day: *day,
                    at: now,
                };
                if points::append(conn, &debit).await? == points::Appended::InsufficientBalance {
                    redemptions::put_back_one(conn, item).await?;
                    outbox::enqueue(conn, sold_out, default_app, now).await?;
                    continue;
                }
                redemptions::create(conn, user_id, item, *cost, reference, now).await?;
                outbox::enqueue(conn, success, default_app, now).await?;
            }
            Action::EnterLottery {
                lottery_id,
                user_id,
                cost,
                chat_id,
                day,
                at,
            } => {
                crate::ops::lottery::apply_entry(
                    conn,
                    *lottery_id,
                    user_id,
                    *cost,
                    chat_id.as_deref(),
                    *day,
                    *at,
                )
                .await?;
            }
            Action::MarkAutoReplyFired { chat_id, rule, at } => {
                chats::mark_autoreply_fired(conn, chat_id, rule, *at).await?
            }
            Action::RequestResync { chat_id } => chats::mark_needs_resync(conn, chat_id).await?,
            Action::SetMemberVersion { chat_id, version } => {
                chats::set_member_version(conn, chat_id, version).await?
            }
            Action::Send(message) => {
                outbox::enqueue(conn, message, default_app, now).await?;
            }
            Action::RecordPost {
                chat_id,
                user_id,
                at,
                fingerprint,
            } => {
                moderation::record_post(conn, chat_id.as_deref(), user_id, *at, *fingerprint)
                    .await?
            }
            Action::Moderate(record) => {
                crate::metrics::moderation_decision(record);
                moderation::record_decision(conn, record).await?;
            }
            Action::RecordVote {
                poll_id,
                user_id,
                options,
                chat_id,
                via,
                at,
            } => {
                crate::store::polls::record_vote(
                    conn,
                    *poll_id,
                    user_id,
                    options,
                    chat_id.as_deref(),
                    via,
                    *at,
                )
                .await?;
            }
            Action::RecordReport {
                chat_id,
                reporter,
                fingerprint,
                at,
            } => {
                moderation::record_report(conn, chat_id, reporter, *fingerprint, *at).await?;
            }
            Action::Appeal {
                user_id,
                chat_id,
                why,
                reference,
                at,
                opened,
                refused,
                notify,
            } => {
                let appeal = crate::store::review::NewAppeal {
                    source_key: reference,
                    user_id,
                    chat_id: chat_id.as_deref(),
                    why,
                    at: *at,
                };
                if crate::store::review::open_appeal(conn, &appeal).await? {
                    outbox::enqueue(conn, opened, default_app, now).await?;
                    outbox::enqueue(conn, notify, default_app, now).await?;
                } else {
                    outbox::enqueue(conn, refused, default_app, now).await?;
                }
            }
            Action::NoteExpiryNotice {
                user_id,
                period,
                at,
            } => {
                crate::store::points::record_expiry_notice(conn, user_id, period, *at).await?;
            }
            Action::RecordContentPost {
                message_id,
                chat_id,
                author,
                fingerprint,
                is_image,
                at,
            } => {
                crate::store::honour::record_post(
                    conn,
                    message_id,
                    chat_id,
                    author,
                    *fingerprint,
                    *is_image,
                    *at,
                )
                .await?
            }
            Action::MarkMessage {
                mark,
                message_id,
                chat_id,
                author,
                by,
                at,
                day,
            } => {
                let row = crate::store::honour::NewMark {
                    mark: *mark,
                    message_id,
                    chat_id,
                    author,
                    by,
                    at: *at,
                    day: *day,
                };
                crate::store::honour::mark_message(conn, &row).await?;
            }
        }
    }
    Ok(())
}
