//! The pipeline worker: inbox row → domain event → snapshot → `rules::evaluate`
//! → apply. Each event's state changes, ledger entries, outbox rows and its inbox
//! status commit in **one** SQLite transaction; a failing event is retried and
//! parked after `max_attempts`, and never blocks other chats.

mod durable_outbox;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use crate::clock::SharedClock;
use crate::rules::checkin::community_day;
use crate::rules::event::{
    CustomerAdded, JoinScene, MembersJoined, MembersLeft, MessagePosted, MessageReported,
    MessageSource, ReplyVia, REPORT_KEYWORD,
};
use crate::rules::moderate;
use crate::rules::welcome::{self, QueuedJoin};
use crate::rules::{
    self, Action, ChatRoute, Event, EventKind, LeaderboardEntry, Outbound, PersonSnapshot, RuleSet,
    Snapshot,
};
use crate::store::inbox::{self, InboxRow};
use crate::store::{chats, checkins, members, moderation, points, redemptions, rule_sets};
use crate::wecom::message::{self, BotChatType, ChatUpdateDetail, ContactChangeType};

pub use durable_outbox::DurableOutbox;

/// Where outbound messages go. Implemented over `store::outbox::enqueue`; it
/// must write through `conn` so the message commits with the event's effects,
/// and must ignore a duplicate idempotency key.
pub trait OutboxWriter: Send + Sync + 'static {
    fn enqueue(
        &self,
        conn: &mut SqliteConnection,
        message: &Outbound,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

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

/// Test seams. `before_commit` runs inside the event's transaction, after every
/// effect was written and before COMMIT (crash-safety tests drop the worker there).
#[derive(Clone, Default)]
pub struct PipelineHooks {
    pub before_commit: Option<Hook>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcome {
    pub processed: usize,
    pub failed: usize,
    pub parked: usize,
    pub welcomes_flushed: usize,
    pub onboarding_sent: usize,
}

pub struct Pipeline<O> {
    pool: SqlitePool,
    clock: SharedClock,
    outbox: O,
    settings: PipelineSettings,
    hooks: PipelineHooks,
    rules: tokio::sync::Mutex<Option<(i64, Arc<RuleSet>)>>,
}

impl<O: OutboxWriter> Pipeline<O> {
    pub fn new(
        pool: SqlitePool,
        clock: SharedClock,
        outbox: O,
        settings: PipelineSettings,
    ) -> Self {
        Self {
            pool,
            clock,
            outbox,
            settings,
            hooks: PipelineHooks::default(),
            rules: tokio::sync::Mutex::new(None),
        }
    }

    pub fn with_hooks(mut self, hooks: PipelineHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The active rule set: the newest stored version (re-read when it changes,
    /// so an import applies without a restart), or the built-in defaults.
    pub async fn current_rules(&self) -> anyhow::Result<Arc<RuleSet>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("acquiring connection for rules")?;
        let version = rule_sets::active_version(&mut conn).await?.unwrap_or(0);
        let mut cached = self.rules.lock().await;
        if let Some((cached_version, rules)) = cached.as_ref() {
            if *cached_version == version {
                return Ok(rules.clone());
            }
        }
        let rules = match rule_sets::active(&mut conn).await? {
            None => RuleSet::builtin(),
            Some(stored) => match RuleSet::from_toml(&stored.body) {
                Ok(rules) => rules,
                Err(err) => {
                    // Only validated sets are saved; keep running on what we had.
                    tracing::error!(version = stored.version, error = %err, "stored rule set is invalid");
                    match cached.as_ref() {
                        Some((_, previous)) => return Ok(previous.clone()),
                        None => RuleSet::builtin(),
                    }
                }
            },
        };
        let items: Vec<(String, i64)> = rules
            .doc
            .catalog
            .iter()
            .map(|item| (item.item.clone(), item.stock))
            .collect();
        redemptions::stock_new_items(&mut conn, &items).await?;
        let rules = Arc::new(rules);
        *cached = Some((version, rules.clone()));
        Ok(rules)
    }

    /// The worker loop for `serve`: a pass every `every` until `shutdown`.
    /// A failed pass is logged and the loop carries on.
    pub async fn run_loop(&self, every: std::time::Duration, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    if let Err(err) = self.run_once().await {
                        tracing::error!(error = %format!("{err:#}"), "pipeline pass failed");
                    }
                }
            }
        }
    }

    /// One pass: flush due welcome windows, then process pending inbox rows in
    /// arrival order. A chat whose event failed (and is not yet parked) is
    /// skipped for the rest of this pass so its events stay in order.
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self) -> anyhow::Result<RunOutcome> {
        let now = self.clock.now();
        let rules = self.current_rules().await?;
        let mut outcome = RunOutcome {
            welcomes_flushed: self.flush_welcomes(&rules, now).await?,
            onboarding_sent: self.send_due_onboarding(&rules, now).await?,
            ..RunOutcome::default()
        };
        let rows = {
            let mut conn = self.pool.acquire().await?;
            inbox::pending(&mut conn, self.settings.batch_size).await?
        };
        let mut blocked_chats: HashSet<String> = HashSet::new();
        for row in rows {
            if row
                .chat_id
                .as_ref()
                .is_some_and(|chat| blocked_chats.contains(chat))
            {
                continue;
            }
            match self.process_row(&rules, &row, now).await {
                Ok(()) => outcome.processed += 1,
                Err(err) => {
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
                    if status == "parked" {
                        outcome.parked += 1;
                    } else {
                        outcome.failed += 1;
                        if let Some(chat) = row.chat_id {
                            blocked_chats.insert(chat);
                        }
                    }
                }
            }
        }
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
            ensure_chat_registered(&mut tx, &event, now).await?;
            let snapshot = load_snapshot(&mut tx, rules, &event, now)
                .await
                .context("loading snapshot")?;
            let actions = rules::evaluate(rules, &snapshot, &event, now);
            apply(&mut tx, &self.outbox, &actions, now)
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
        Ok(())
    }

    /// Queues every onboarding tip whose time has come (each in its own transaction).
    async fn send_due_onboarding(
        &self,
        rules: &RuleSet,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let due = {
            let mut conn = self.pool.acquire().await?;
            chats::due_onboarding(&mut conn, now).await?
        };
        let mut sent = 0;
        for (chat_id, user_id) in due {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            if !chats::take_onboarding(&mut tx, &chat_id, &user_id).await? {
                continue;
            }
            let chat = chats::get_chat(&mut tx, &chat_id).await?;
            let name = members::person_name(&mut tx, &user_id)
                .await?
                .unwrap_or_else(|| user_id.clone());
            let tip = welcome::compose_onboarding(rules, chat.as_ref(), &chat_id, &user_id, &name);
            self.outbox.enqueue(&mut tx, &tip, now).await?;
            tx.commit().await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Turns every merge window that has closed into its welcome (or raid digest).
    async fn flush_welcomes(&self, rules: &RuleSet, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let opened_by = now - Duration::seconds(rules.doc.welcome.merge_window_secs);
        let due = {
            let mut conn = self.pool.acquire().await?;
            chats::due_welcome_windows(&mut conn, opened_by).await?
        };
        let mut flushed = 0;
        for (chat_id, _) in due {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let batch = chats::take_queued_welcomes(&mut tx, &chat_id).await?;
            let chat = chats::get_chat(&mut tx, &chat_id).await?;
            let (messages, raid_until) =
                welcome::compose_batch(rules, chat.as_ref(), &chat_id, &batch, now);
            for message in &messages {
                self.outbox.enqueue(&mut tx, message, now).await?;
            }
            if let Some(until) = raid_until {
                chats::set_raid_until(&mut tx, &chat_id, until).await?;
            }
            tx.commit().await?;
            flushed += messages.len();
        }
        Ok(flushed)
    }
}

/// A chat we hear about before any sync is registered as a customer group (the
/// only kind that sends change_external_chat) and flagged for a full resync.
async fn ensure_chat_registered(
    conn: &mut SqliteConnection,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let chat_id = match &event.kind {
        EventKind::MembersJoined(j) => &j.chat_id,
        EventKind::MembersLeft(l) => &l.chat_id,
        _ => return Ok(()),
    };
    if chats::get_chat(conn, chat_id).await?.is_none() {
        let chat = chats::NewChat {
            chat_id: chat_id.clone(),
            name: String::new(),
            route: ChatRoute::CustomerGroup { robot_key: None },
            owner: None,
            admins: Vec::new(),
            tags: Vec::new(),
            member_version: None,
        };
        chats::upsert_chat(conn, &chat, now).await?;
        chats::mark_needs_resync(conn, chat_id).await?;
    }
    Ok(())
}

/// Reads what `evaluate` needs for this event, inside the event's transaction.
pub async fn load_snapshot(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<Snapshot> {
    let today = community_day(now, rules.timezone, rules.doc.community.day_cutover_hour);
    let mut snapshot = Snapshot::default();
    let (chat_id, people): (Option<&str>, Vec<&str>) = match &event.kind {
        EventKind::MembersJoined(j) => (
            Some(&j.chat_id),
            j.user_ids.iter().map(String::as_str).collect(),
        ),
        EventKind::MembersLeft(l) => (
            Some(&l.chat_id),
            l.user_ids.iter().map(String::as_str).collect(),
        ),
        EventKind::MessagePosted(m) => (m.chat_id.as_deref(), vec![m.sender.as_str()]),
        EventKind::CustomerAdded(_) => (None, Vec::new()),
        EventKind::MessageReported(r) => (Some(r.chat_id.as_str()), Vec::new()),
    };
    if let Some(chat_id) = chat_id {
        snapshot.chat = chats::get_chat(conn, chat_id).await?;
    }
    for user_id in people {
        let person = load_person(conn, user_id, today).await?;
        snapshot.people.insert(user_id.to_string(), person);
    }
    if let EventKind::MessagePosted(message) = &event.kind {
        snapshot.checkins_today = checkins::count_on_day(conn, today).await?;
        // The leaderboard scans the week's ledger: only read it for 排行.
        if let Some(rules::commands::Command::Rank(scope)) =
            rules::commands::parse(rules, &message.text)
        {
            use rules::commands::RankPeriod;
            let since = match scope.period {
                RankPeriod::Week => {
                    Some(today - Duration::days(i64::from(today.weekday().num_days_from_monday())))
                }
                RankPeriod::Month => today.with_day(1),
                RankPeriod::AllTime => None,
            };
            let chat = if scope.this_chat {
                message.chat_id.as_deref()
            } else {
                None
            };
            snapshot.leaderboard = points::leaderboard(conn, since, chat, 10)
                .await?
                .into_iter()
                .map(|row| LeaderboardEntry {
                    name: row.name.unwrap_or(row.user_id),
                    points: row.points,
                })
                .collect();
        }
        snapshot.catalog_stock = redemptions::stock(conn).await?;
        let scope = message.chat_id.as_deref().unwrap_or(&message.sender);
        snapshot.autoreply_last_fired = chats::autoreply_last_fired(conn, scope).await?;
        if rules.moderation.enabled {
            snapshot.moderation = load_moderation(conn, rules, message, now).await?;
        }
    }
    if let EventKind::MessageReported(report) = &event.kind {
        if let Some(fingerprint) =
            moderate::stored_fingerprint(&rules.moderation, &report.quoted_text)
        {
            let history = &mut snapshot.moderation;
            history.reporter_reports_last_hour =
                moderation::reports_by_since(conn, &report.reporter, now - Duration::hours(1))
                    .await?;
            history.earlier_reporters =
                moderation::reporters_of(conn, &report.chat_id, fingerprint).await?;
            history.reported_author =
                moderation::author_of(conn, &report.chat_id, fingerprint).await?;
        }
    }
    Ok(snapshot)
}

/// The sender's posts, live strikes and join time, for the moderation rules.
async fn load_moderation(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    message: &MessagePosted,
    now: DateTime<Utc>,
) -> anyhow::Result<moderate::ModerationSnapshot> {
    let config = &rules.moderation;
    Ok(moderate::ModerationSnapshot {
        recent_posts: moderation::recent_posts(
            conn,
            &message.sender,
            now - config.history_window(),
        )
        .await?,
        active_strikes: moderation::active_strikes(
            conn,
            &message.sender,
            now - config.strike_window,
        )
        .await?,
        joined_at: match &message.chat_id {
            Some(chat_id) => moderation::joined_at(conn, chat_id, &message.sender).await?,
            None => None,
        },
        posts_in_chat: match (&message.chat_id, &config.new_member) {
            (Some(chat_id), Some(rule)) => {
                moderation::count_posts_in_chat(conn, chat_id, &message.sender, rule.first_messages)
                    .await?
            }
            _ => 0,
        },
        ..moderate::ModerationSnapshot::default()
    })
}

async fn load_person(
    conn: &mut SqliteConnection,
    user_id: &str,
    today: NaiveDate,
) -> anyhow::Result<PersonSnapshot> {
    let yesterday = today.pred_opt().unwrap_or(today);
    let month = format!("{:04}-{:02}", yesterday.year(), yesterday.month());
    Ok(PersonSnapshot {
        user_id: user_id.to_string(),
        name: members::person_name(conn, user_id).await?,
        balance: points::balance(conn, user_id).await?,
        lifetime_points: points::lifetime_earned(conn, user_id).await?,
        // Streak bonuses stop growing long before a year; older days don't matter.
        checkin_days: checkins::days_since(conn, user_id, today - Duration::days(400)).await?,
        makeups_this_month: checkins::makeups_in_month(conn, user_id, &month).await?,
        points_today: points::earned_on_day(conn, user_id, today).await?,
        redemptions_by_item: redemptions::count_by_item(conn, user_id).await?,
        badges: members::badges(conn, user_id).await?,
        seen_before: members::was_member_before(conn, user_id).await?,
    })
}

/// Applies the actions in order, all through the caller's transaction.
pub async fn apply<O: OutboxWriter>(
    conn: &mut SqliteConnection,
    outbox: &O,
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
                    outbox.enqueue(conn, sold_out, now).await?;
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
                    outbox.enqueue(conn, sold_out, now).await?;
                    continue;
                }
                redemptions::create(conn, user_id, item, *cost, reference, now).await?;
                outbox.enqueue(conn, success, now).await?;
            }
            Action::MarkAutoReplyFired { chat_id, rule, at } => {
                chats::mark_autoreply_fired(conn, chat_id, rule, *at).await?
            }
            Action::RequestResync { chat_id } => chats::mark_needs_resync(conn, chat_id).await?,
            Action::SetMemberVersion { chat_id, version } => {
                chats::set_member_version(conn, chat_id, version).await?
            }
            Action::Send(message) => outbox.enqueue(conn, message, now).await?,
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
                moderation::record_decision(conn, record).await?;
            }
            Action::RecordReport {
                chat_id,
                reporter,
                fingerprint,
                at,
            } => {
                moderation::record_report(conn, chat_id, reporter, *fingerprint, *at).await?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("inbox event_json is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("inbox event of kind {kind} lacks {field}")]
    MissingField { kind: String, field: &'static str },
}

/// Turns a stored inbox row into a domain event; `None` for events the rules
/// don't act on (enter_agent, stream refreshes, group create/dismiss, unknown).
pub fn domain_event(row: &InboxRow, default_app: &str) -> Result<Option<Event>, ConvertError> {
    let id = row.dedupe_key.clone();
    if row.kind == "ingest_message" {
        let message: IngestMessage = serde_json::from_str(&row.event_json)?;
        return Ok(Some(Event {
            id,
            kind: EventKind::MessagePosted(MessagePosted {
                source: MessageSource::Archive,
                chat_id: message.chat_id,
                sender: message.sender,
                text: message.text,
                message_id: message.message_id,
                reply_via: ReplyVia::ChatRoute,
            }),
        }));
    }
    let wecom: message::Event = serde_json::from_str(&row.event_json)?;
    let missing = |field: &'static str| ConvertError::MissingField {
        kind: row.kind.clone(),
        field,
    };
    let kind = match wecom {
        message::Event::ExternalChatChange(change) => {
            let last_member_version = change.last_mem_ver.filter(|v| !v.is_empty());
            let current_member_version = change.cur_mem_ver.filter(|v| !v.is_empty());
            match change.update_detail {
                Some(ChatUpdateDetail::AddMember) => EventKind::MembersJoined(MembersJoined {
                    chat_id: change.chat_id,
                    user_ids: change.mem_change_list,
                    join_scene: JoinScene::from_callback_code(change.join_scene.map(i64::from)),
                    last_member_version,
                    current_member_version,
                }),
                Some(ChatUpdateDetail::DelMember) => EventKind::MembersLeft(MembersLeft {
                    chat_id: change.chat_id,
                    user_ids: change.mem_change_list,
                    removed: change.quit_scene == Some(1),
                    last_member_version,
                    current_member_version,
                }),
                _ => return Ok(None),
            }
        }
        message::Event::ExternalContactChange(change) => match change.change_type {
            ContactChangeType::AddExternalContact | ContactChangeType::AddHalfExternalContact => {
                EventKind::CustomerAdded(CustomerAdded {
                    staff_user_id: change.user_id,
                    external_user_id: change.external_user_id,
                    welcome_code: change.welcome_code.filter(|c| !c.is_empty()),
                    state: change.state,
                })
            }
            _ => return Ok(None),
        },
        message::Event::AppText(text) => {
            let app = row
                .source
                .strip_prefix("app:")
                .map(str::to_string)
                .unwrap_or_else(|| default_app.to_string());
            EventKind::MessagePosted(MessagePosted {
                source: MessageSource::AppDirect,
                chat_id: None,
                sender: text.header.from_user_name,
                text: text.content,
                message_id: text.msg_id.to_string(),
                reply_via: ReplyVia::AppMessage { app },
            })
        }
        message::Event::BotMessage(bot) => {
            let response_url = bot.response_url.ok_or_else(|| missing("response_url"))?;
            let quoted = bot.quote.as_ref().and_then(|quote| quote.text.clone());
            if let (Some(quoted_text), Some(chat_id), true) = (
                quoted,
                bot.chat_id.clone(),
                bot.text.trim().starts_with(REPORT_KEYWORD),
            ) {
                return Ok(Some(Event {
                    id,
                    kind: EventKind::MessageReported(MessageReported {
                        chat_id,
                        reporter: bot.from_user_id,
                        quoted_text,
                        response_url: Some(response_url),
                    }),
                }));
            }
            EventKind::MessagePosted(MessagePosted {
                source: MessageSource::SmartBot,
                chat_id: match bot.chat_type {
                    BotChatType::Single => None,
                    _ => bot.chat_id,
                },
                sender: bot.from_user_id,
                text: bot.text,
                message_id: bot.msg_id,
                reply_via: ReplyVia::ResponseUrl(response_url),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(Event { id, kind }))
}

/// One normalized message from the archive ingest endpoint (`POST /ingest/messages`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestMessage {
    /// Unique per message (the archive's msgid): the inbox dedupe key.
    pub message_id: String,
    pub chat_id: Option<String>,
    pub sender: String,
    pub text: String,
    /// Unix seconds.
    pub sent_at: i64,
}

/// Stores a batch of archived messages in the inbox (duplicates are ignored).
/// The HTTP handler verifies the batch's HMAC before calling this.
pub async fn ingest_messages(
    conn: &mut SqliteConnection,
    messages: &[IngestMessage],
    received_at: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut inserted = 0;
    for message in messages {
        let json = serde_json::to_string(message)?;
        let key = format!("archive:{}", message.message_id);
        let row = inbox::NewInboxEvent {
            source: "ingest",
            kind: "ingest_message",
            dedupe_key: &key,
            received_at: received_at.timestamp(),
            event_json: &json,
            chat_id: message.chat_id.as_deref(),
        };
        if let inbox::Inserted::New(_) = inbox::insert_event(conn, &row).await? {
            inserted += 1;
        }
    }
    Ok(inserted)
}

/// Checks the ingest batch signature: hex HMAC-SHA256 of the raw body.
pub fn verify_ingest_signature(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

// --- outbox row shape ----------------------------------------------------------

/// The columns of an outbox row for an [`Outbound`], in the shapes the sender
/// job decodes (`msgtype` + body, target per route). Pure, so the adapter over
/// `store::outbox::enqueue` is a few lines.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxParts {
    /// `store::outbox::Route` name: app_group, webhook, smart_bot, member,
    /// welcome_code, customer_group_mass.
    pub route: &'static str,
    /// Chat id, webhook key, response_url, `|`-joined UserIDs, welcome code, or
    /// the owner who must confirm a mass message.
    pub target: String,
    /// The configured app whose secret/agent sends it (None: webhook, smart bot,
    /// contact routes using the contacts secret).
    pub app: Option<String>,
    pub payload: serde_json::Value,
}

pub fn outbox_parts(message: &Outbound, default_app: &str) -> OutboxParts {
    use crate::rules::OutRoute;
    use serde_json::json;
    let text = json!({ "content": message.text });
    let app_text = json!({ "msgtype": "text", "text": text });
    let (target, app, payload) = match &message.route {
        OutRoute::AppGroup { chat_id } => {
            (chat_id.clone(), Some(default_app.to_string()), app_text)
        }
        OutRoute::Member { app, user_ids } => (user_ids.join("|"), Some(app.clone()), app_text),
        OutRoute::Webhook { key } => (
            key.clone(),
            None,
            json!({
                "msgtype": "text",
                "text": { "content": message.text, "mentioned_list": message.mentions },
            }),
        ),
        OutRoute::SmartBotResponse { response_url } => (
            response_url.clone(),
            None,
            json!({ "msgtype": "markdown", "markdown": text }),
        ),
        OutRoute::WelcomeCode { code } => (code.clone(), None, json!({ "text": text })),
        OutRoute::CustomerGroupMass { chat_id, owner } => (
            owner.clone().unwrap_or_default(),
            None,
            json!({ "chat_id_list": [chat_id], "text": text }),
        ),
        OutRoute::AppChatRemove { chat_id, user_id } => (
            chat_id.clone(),
            Some(default_app.to_string()),
            json!({ "chatid": chat_id, "del_user_list": [user_id], "reason": message.text }),
        ),
    };
    OutboxParts {
        route: message.route.name(),
        target,
        app,
        payload,
    }
}

/// Applies a full groupchat/get result for a chat (the sync job calls this at
/// start, periodically, and for chats flagged by a member-version gap): the
/// member list is replaced, the version stored and the resync flag cleared, in
/// one transaction. Nobody is welcomed for joins we only learn about here.
pub async fn apply_group_snapshot(
    pool: &SqlitePool,
    chat: &chats::NewChat,
    members_now: &[members::SyncedMember],
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    chats::upsert_chat(&mut tx, chat, now).await?;
    let changes = members::replace_chat_members(&mut tx, &chat.chat_id, members_now, now).await?;
    if let Some(version) = &chat.member_version {
        chats::set_member_version(&mut tx, &chat.chat_id, version).await?;
    }
    chats::clear_needs_resync(&mut tx, &chat.chat_id).await?;
    tx.commit().await?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::OutRoute;

    fn outbound(route: OutRoute) -> Outbound {
        Outbound {
            idempotency_key: "k".into(),
            route,
            text: "你好".into(),
            mentions: vec!["u1".into()],
            not_before: None,
            skipped: None,
        }
    }

    #[test]
    fn outbox_parts_match_the_sender_payload_shapes() {
        let member = outbox_parts(
            &outbound(OutRoute::Member {
                app: "ops".into(),
                user_ids: vec!["a".into(), "b".into()],
            }),
            "main",
        );
        assert_eq!(
            (member.route, member.target.as_str(), member.app.as_deref()),
            ("member", "a|b", Some("ops"))
        );
        assert_eq!(
            member.payload,
            serde_json::json!({"msgtype": "text", "text": {"content": "你好"}})
        );

        let webhook = outbox_parts(&outbound(OutRoute::Webhook { key: "K".into() }), "main");
        assert_eq!(
            webhook.payload["text"]["mentioned_list"],
            serde_json::json!(["u1"])
        );
        assert_eq!(webhook.app, None);

        let bot = outbox_parts(
            &outbound(OutRoute::SmartBotResponse {
                response_url: "http://127.0.0.1/r".into(),
            }),
            "main",
        );
        assert_eq!(
            bot.payload,
            serde_json::json!({"msgtype": "markdown", "markdown": {"content": "你好"}})
        );

        let group = outbox_parts(
            &outbound(OutRoute::AppGroup {
                chat_id: "wr1".into(),
            }),
            "main",
        );
        assert_eq!(
            (group.target.as_str(), group.app.as_deref()),
            ("wr1", Some("main"))
        );

        let mass = outbox_parts(
            &outbound(OutRoute::CustomerGroupMass {
                chat_id: "wr2".into(),
                owner: Some("boss".into()),
            }),
            "main",
        );
        assert_eq!(mass.target, "boss");
        assert_eq!(mass.payload["chat_id_list"], serde_json::json!(["wr2"]));
    }
}
