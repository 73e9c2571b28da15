//! The scheduler: turns due fires of the active rule set's `[[schedules]]` into
//! outbox rows, exactly once.
//!
//! # Exactly once
//!
//! Each schedule is handled in one `BEGIN IMMEDIATE` transaction that
//! 1. reads how far the schedule was already checked (`schedule_state`),
//! 2. decides with the pure [`plan_catch_up`] which fire to send and which were
//!    missed (downtime beyond the grace period) or fell in quiet hours,
//! 3. claims each of those fires with a unique (schedule, fire time) run row,
//! 4. for the fire to send, inserts one outbox row per chat (keyed
//!    `push:{schedule}:{fire}:{chat}`) and a delivery row recording the variant,
//! 5. moves `checked_through` to now, and commits.
//!
//! A crash before the commit leaves nothing, so the next pass plans the fire
//! again (or records it missed if it is now too old); a crash after it leaves
//! the run row, so the fire is never planned twice. Sending is the outbox
//! sender's job, with its own leases, rate limits and idempotency keys.
//!
//! # Routes
//!
//! Each chat's route comes from [`route_for`] (the engine and broadcasts ask
//! the same function): app groups go out through `appchat/send`; internal
//! groups with a robot added, through the robot; customer groups (which
//! cannot hold a robot) need their owner, so they become
//! one owner-confirmed mass message per owner per run (per distinct rendered
//! text, at most 2,000 chats each) and stay `awaiting_confirmation` until the
//! owner confirms. Chats nothing can post to get a `skipped` outbox row
//! carrying the reason, so the run report shows them.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::active_rules::{ActiveRules, InForce};
use crate::jobs::Job;
use crate::outbound::Payload;
use crate::rules::schedule::{
    self, plan_catch_up, render, select_targets, ChatInfo, ChatVars, LeaderboardEntry, PushContext,
    RenderedMessage, ValidSchedule,
};
use crate::rules::{
    route_for, ChatRoute, Content, MessageKind, OutRoute, Outbound, RouteDecision, RuleSet,
};
use crate::store::outbox;
use crate::store::points;
use crate::store::schedules::{self as store, NewDelivery, NewRun, PushChat, RunKind, RunStatus};

/// WeCom takes at most this many chat ids in one customer-group mass message.
const MASS_CHATS_PER_MESSAGE: usize = 2_000;
/// Leaderboard rows offered to templates that use `leaderboard`.
const LEADERBOARD_SIZE: i64 = 10;
/// The A/B report's attribution window.
pub const FOLLOW_UP_WINDOW_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// A fire found this late (service down, slow pass) is still sent; an older
    /// one is recorded as missed.
    pub grace: Duration,
    /// The configured app whose agent posts to app groups.
    pub app: String,
    /// How often the loop looks for due fires.
    pub tick: std::time::Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            grace: Duration::minutes(15),
            app: "main".to_owned(),
            tick: std::time::Duration::from_secs(1),
        }
    }
}

/// What one `run_once` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerOutcome {
    /// Runs whose outbox rows were created.
    pub planned: Vec<PlannedRun>,
    /// Fires recorded as missed (too old, superseded).
    pub missed: usize,
    /// Fires recorded as held back by quiet hours.
    pub quiet: usize,
}

/// A run whose outbox rows were created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedRun {
    pub run_id: i64,
    pub schedule: String,
    pub fire_at: DateTime<Utc>,
    /// Chats with a deliverable outbox row (including mass-message chats).
    pub chats: usize,
    /// Chats recorded as skipped (their route cannot post this message).
    pub skipped: usize,
    /// Outbox rows created (mass messages carry many chats in one row).
    pub outbox_rows: usize,
}

pub struct Scheduler {
    pool: SqlitePool,
    settings: SchedulerSettings,
    rules: ActiveRules,
}

impl Scheduler {
    pub fn new(pool: SqlitePool, settings: SchedulerSettings) -> Self {
        Self {
            pool,
            settings,
            rules: ActiveRules::new(),
        }
    }

    /// Shares the service's active-rules cache (`new` starts a private one).
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    /// How long the loop waits between passes.
    pub fn tick(&self) -> std::time::Duration {
        self.settings.tick
    }

    /// Handles every fire due up to `now` for every schedule of the active rule
    /// set: plans at most one per schedule, records the rest as missed or quiet.
    /// One schedule's failure does not stop the others. A run, a missed or a
    /// quiet fire records the version in force (the last good one while the
    /// newest stored set no longer validates).
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<SchedulerOutcome> {
        let in_force = {
            let mut conn = self.pool.acquire().await?;
            self.rules.in_force(&mut conn).await?
        };
        let (version, schedules) = schedules_in_force(&in_force)?;
        let mut outcome = SchedulerOutcome::default();
        for schedule in &schedules {
            match self.check_schedule(schedule, version, now).await {
                Ok(checked) => {
                    outcome.planned.extend(checked.planned);
                    outcome.missed += checked.missed;
                    outcome.quiet += checked.quiet;
                }
                Err(error) => tracing::error!(
                    schedule = schedule.name(),
                    error = format!("{error:#}"),
                    "schedule check failed"
                ),
            }
        }
        Ok(outcome)
    }

    async fn check_schedule(
        &self,
        schedule: &ValidSchedule,
        version: Option<i64>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<SchedulerOutcome> {
        let mut outcome = SchedulerOutcome::default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let state = store::state_or_activate(&mut tx, schedule.name(), now.timestamp()).await?;
        if state.paused {
            // Nothing advances while paused; resuming checks through "now".
            tx.commit().await?;
            return Ok(outcome);
        }
        let checked_through = to_time(state.checked_through);
        let plan = plan_catch_up(schedule, checked_through, now, self.settings.grace);
        let oldest_sendable = now - self.settings.grace;
        for missed in &plan.missed {
            let reason = if *missed < oldest_sendable {
                format!(
                    "not sent: found {} s after its fire time, beyond the {} s grace period (service down?)",
                    (now - *missed).num_seconds(),
                    self.settings.grace.num_seconds()
                )
            } else {
                "not sent: superseded by a newer fire found in the same pass".to_owned()
            };
            let run = NewRun {
                schedule: schedule.name(),
                fire_at: missed.timestamp(),
                kind: RunKind::Scheduled,
                status: RunStatus::Missed,
                reason: Some(&reason),
                rule_set_version: version,
                planned_at: now.timestamp(),
            };
            if store::claim_run(&mut tx, &run).await?.is_some() {
                outcome.missed += 1;
            }
        }
        for quiet in &plan.quiet {
            let reason = match schedule.quiet_hours() {
                Some(hours) => format!("not sent: inside quiet hours {hours}"),
                None => "not sent: inside quiet hours".to_owned(),
            };
            let run = NewRun {
                schedule: schedule.name(),
                fire_at: quiet.timestamp(),
                kind: RunKind::Scheduled,
                status: RunStatus::Quiet,
                reason: Some(&reason),
                rule_set_version: version,
                planned_at: now.timestamp(),
            };
            if store::claim_run(&mut tx, &run).await?.is_some() {
                outcome.quiet += 1;
            }
        }
        if let Some(fire) = plan.fire {
            let planned = plan_fire(
                &mut tx,
                schedule,
                fire,
                RunKind::Scheduled,
                version,
                &self.settings,
                now,
            )
            .await?;
            outcome.planned.extend(planned);
        }
        store::set_checked_through(&mut tx, schedule.name(), now.timestamp()).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// The version in force and its validated schedules (the built-in rules,
/// in force when no rule set was saved yet, have none).
pub async fn load_schedules(
    pool: &SqlitePool,
) -> anyhow::Result<(Option<i64>, Vec<ValidSchedule>)> {
    let mut conn = pool.acquire().await?;
    let in_force = ActiveRules::new()
        .in_force(&mut conn)
        .await
        .context("loading the active rule set")?;
    schedules_in_force(&in_force)
}

/// The schedules of the rule set in force, validated, with its version.
pub fn schedules_in_force(in_force: &InForce) -> anyhow::Result<(Option<i64>, Vec<ValidSchedule>)> {
    Ok((in_force.version, valid_schedules(&in_force.rules)?))
}

/// The rule set's schedules, validated (a stored set's always are; this
/// compiles them).
pub fn valid_schedules(rules: &RuleSet) -> anyhow::Result<Vec<ValidSchedule>> {
    schedule::validate_all(&rules.doc.schedules, rules.timezone).map_err(|errors| {
        anyhow::anyhow!(
            "schedules of the active rule set are invalid: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

impl Job for Scheduler {
    type Outcome = SchedulerOutcome;

    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<SchedulerOutcome> {
        let outcome = Scheduler::run_once(self, now).await?;
        crate::metrics::scheduler_fires(outcome.planned.len(), outcome.missed, outcome.quiet);
        Ok(outcome)
    }
}

async fn find_schedule(
    pool: &SqlitePool,
    name: &str,
) -> anyhow::Result<(Option<i64>, ValidSchedule)> {
    let (version, schedules) = load_schedules(pool).await?;
    let schedule = schedules
        .into_iter()
        .find(|schedule| schedule.name() == name)
        .with_context(|| format!("no schedule named {name:?} in the active rule set"))?;
    Ok((version, schedule))
}

/// Claims `fire` of `schedule` and creates the run's outbox and delivery rows,
/// inside the caller's transaction. `None` when this fire was already claimed.
pub async fn plan_fire(
    conn: &mut SqliteConnection,
    schedule: &ValidSchedule,
    fire: DateTime<Utc>,
    kind: RunKind,
    rule_set_version: Option<i64>,
    settings: &SchedulerSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PlannedRun>> {
    let run = NewRun {
        schedule: schedule.name(),
        fire_at: fire.timestamp(),
        kind,
        status: RunStatus::Planned,
        reason: None,
        rule_set_version,
        planned_at: now.timestamp(),
    };
    let Some(run_id) = store::claim_run(conn, &run).await? else {
        return Ok(None);
    };
    let chats = store::push_chats(conn).await?;
    let infos: Vec<ChatInfo> = chats.iter().map(chat_info).collect();
    let selected = select_targets(schedule.targets(), &infos);
    let by_id: BTreeMap<&str, &PushChat> = chats.iter().map(|c| (c.chat_id.as_str(), c)).collect();
    let key_prefix = match kind {
        RunKind::Scheduled => format!("push:{}:{}", schedule.name(), fire.timestamp()),
        RunKind::Manual => format!("push:{}:manual-{}", schedule.name(), fire.timestamp()),
    };
    let mut planned = PlannedRun {
        run_id,
        schedule: schedule.name().to_owned(),
        fire_at: fire,
        chats: 0,
        skipped: 0,
        outbox_rows: 0,
    };
    // Customer groups without a robot, grouped into one mass message per owner
    // and distinct text: (owner, variant, content) -> chats.
    let mut mass: BTreeMap<(String, String, MassKey), Vec<&str>> = BTreeMap::new();
    // Rows are collected first and written with a few multi-row inserts.
    let mut rows: Vec<PlannedRow<'_>> = Vec::with_capacity(by_id.len());
    for info in selected {
        let Some(chat) = by_id.get(info.id.as_str()) else {
            continue;
        };
        let variant = schedule.variant_for(&chat.chat_id);
        let leaderboard = if uses_leaderboard(schedule) {
            chat_leaderboard(conn, &chat.chat_id).await?
        } else {
            Vec::new()
        };
        let context = PushContext {
            fire_time: fire,
            chat: Some(ChatVars {
                name: chat.name.clone(),
                member_count: chat.member_count,
            }),
            leaderboard,
        };
        let key = format!("{key_prefix}:{}", chat.chat_id);
        let message = match render(schedule, variant, &context) {
            Ok(message) => {
                let content = Content::from(message);
                match route_for(chat.address(), MessageKind::Push, &content) {
                    RouteDecision::NeedsOwnerConfirmation { owner, .. } => {
                        planned.chats += 1;
                        mass.entry((owner, variant.name.clone(), MassKey(content)))
                            .or_default()
                            .push(chat.chat_id.as_str());
                        continue;
                    }
                    decision => Outbound::decided(key, decision, content),
                }
            }
            Err(error) => Outbound::decided(
                key,
                RouteDecision::Skip {
                    route: filed_route(chat),
                    reason: format!("message did not render: {error}"),
                },
                Content::text(""),
            ),
        };
        if message.skipped.is_some() {
            planned.skipped += 1;
        } else {
            planned.chats += 1;
        }
        rows.push(PlannedRow {
            message,
            chats: vec![chat.chat_id.as_str()],
            variant: &variant.name,
        });
    }
    for ((owner, variant, MassKey(content)), chat_ids) in &mass {
        // The text without its chats names the message (bounded key length).
        let tag = Payload::build(
            &OutRoute::CustomerGroupMass {
                owner: None,
                chat_ids: Vec::new(),
            },
            content,
        )
        .map(|payload| payload.to_json())
        .transpose()?
        .unwrap_or_default();
        for (part, chunk) in chat_ids.chunks(MASS_CHATS_PER_MESSAGE).enumerate() {
            let message = Outbound::new(
                format!(
                    "{key_prefix}:mass:{owner}:{variant}:{}:{part}",
                    short_hash(&tag)
                ),
                OutRoute::CustomerGroupMass {
                    owner: Some(owner.clone()),
                    chat_ids: chunk.iter().map(|id| (*id).to_owned()).collect(),
                },
                content.clone(),
            );
            rows.push(PlannedRow {
                message,
                chats: chunk.to_vec(),
                variant,
            });
        }
    }
    // 1:1 pushes to departments/tags need message/send's toparty/totag, which the
    // sender does not speak yet: record that visibly instead of dropping it.
    if let Some(members) = schedule.targets().members() {
        planned.skipped += 1;
        let reason = format!(
            "pushes to member departments {:?} / tags {:?} are not delivered yet \
             (no toparty/totag in the sender)",
            members.departments, members.tags
        );
        rows.push(PlannedRow {
            message: Outbound::decided(
                format!("{key_prefix}:members"),
                RouteDecision::Skip {
                    route: OutRoute::Member {
                        app: settings.app.clone(),
                        user_ids: Vec::new(),
                    },
                    reason,
                },
                Content::text(""),
            ),
            chats: Vec::new(),
            variant: "",
        });
    }
    let messages: Vec<Outbound> = rows.iter().map(|row| row.message.clone()).collect();
    let added = outbox::enqueue_all(conn, &messages, &settings.app, now).await?;
    planned.outbox_rows = usize::try_from(added).unwrap_or(usize::MAX);
    let deliveries: Vec<NewDelivery<'_>> = rows
        .iter()
        .flat_map(|row| {
            row.chats.iter().map(|chat_id| NewDelivery {
                chat_id,
                variant: row.variant,
                outbox_key: &row.message.idempotency_key,
            })
        })
        .collect();
    store::insert_deliveries(conn, run_id, &deliveries).await?;
    Ok(Some(planned))
}

/// One outbox row of a run and the chats it carries (one, or many for a
/// customer-group mass message).
struct PlannedRow<'a> {
    message: Outbound,
    chats: Vec<&'a str>,
    variant: &'a str,
}

/// Rendered content as a grouping key: chats whose message renders the same
/// share one mass message.
#[derive(PartialEq, Eq)]
struct MassKey(Content);

impl Ord for MassKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let json = |content: &Content| serde_json::to_string(content).unwrap_or_default();
        json(&self.0).cmp(&json(&other.0))
    }
}

impl PartialOrd for MassKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a chat's message is filed when it cannot be decided (it did not
/// render): the route its text would have taken.
fn filed_route(chat: &PushChat) -> OutRoute {
    match route_for(chat.address(), MessageKind::Push, &Content::text("")) {
        RouteDecision::Send { route } | RouteDecision::Skip { route, .. } => route,
        RouteDecision::NeedsOwnerConfirmation { owner, chat_id } => OutRoute::CustomerGroupMass {
            owner: Some(owner),
            chat_ids: vec![chat_id],
        },
    }
}

/// A short, stable tag for a text, to keep idempotency keys bounded.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

fn uses_leaderboard(schedule: &ValidSchedule) -> bool {
    use schedule::Content;
    schedule
        .variants()
        .iter()
        .any(|variant| match &variant.content {
            Content::Text { body } | Content::Markdown { body } => body.contains("leaderboard"),
            Content::News {
                title, description, ..
            } => {
                title.contains("leaderboard")
                    || description
                        .as_deref()
                        .is_some_and(|text| text.contains("leaderboard"))
            }
            Content::Image(_) => false,
        })
}

async fn chat_leaderboard(
    conn: &mut SqliteConnection,
    chat_id: &str,
) -> anyhow::Result<Vec<LeaderboardEntry>> {
    let rows = points::leaderboard(conn, None, Some(chat_id), LEADERBOARD_SIZE).await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| LeaderboardEntry {
            rank: u32::try_from(index + 1).unwrap_or(u32::MAX),
            name: row.name.unwrap_or(row.user_id),
            points: row.points,
        })
        .collect())
}

/// The registered chats a schedule's targets select, in order (what a run
/// would address; the console previews each).
pub fn target_chats<'a>(schedule: &ValidSchedule, chats: &'a [PushChat]) -> Vec<&'a PushChat> {
    let infos: Vec<ChatInfo> = chats.iter().map(chat_info).collect();
    let by_id: BTreeMap<&str, &PushChat> = chats.iter().map(|c| (c.chat_id.as_str(), c)).collect();
    select_targets(schedule.targets(), &infos)
        .into_iter()
        .filter_map(|info| by_id.get(info.id.as_str()).copied())
        .collect()
}

fn chat_info(chat: &PushChat) -> ChatInfo {
    ChatInfo {
        id: chat.chat_id.clone(),
        name: chat.name.clone(),
        tags: chat.tags.clone(),
        route: match chat.route {
            ChatRoute::AppGroup => schedule::ChatRoute::AppGroup,
            ChatRoute::CustomerGroup => schedule::ChatRoute::CustomerGroup,
            ChatRoute::InternalGroup { .. } if chat.route.robot_key().is_some() => {
                schedule::ChatRoute::WebhookRobot
            }
            ChatRoute::InternalGroup { .. } => schedule::ChatRoute::SmartBot,
        },
    }
}

fn to_time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

// --- previews ------------------------------------------------------------------

/// `qunyun schedules preview NAME --chat CHAT`: what that chat would get at
/// `at`, and how, without sending or recording anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub variant: String,
    pub message: RenderedMessage,
    /// Outbox route it would take (`webhook`, `app_group`, `customer_group_mass` …).
    pub route: String,
    /// Set when the chat's route cannot post it.
    pub skip_reason: Option<String>,
}

/// (`_settings` no longer matters: the route decision does not depend on
/// the sending app.)
pub async fn preview(
    pool: &SqlitePool,
    _settings: &SchedulerSettings,
    name: &str,
    chat_id: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Preview> {
    let (_, schedule) = find_schedule(pool, name).await?;
    let mut conn = pool.acquire().await?;
    let chats = store::push_chats(&mut conn).await?;
    let chat = chats
        .iter()
        .find(|chat| chat.chat_id == chat_id)
        .with_context(|| format!("no chat {chat_id:?} is registered"))?;
    let variant = schedule.variant_for(chat_id);
    let leaderboard = if uses_leaderboard(&schedule) {
        chat_leaderboard(&mut conn, chat_id).await?
    } else {
        Vec::new()
    };
    let context = PushContext {
        fire_time: at,
        chat: Some(ChatVars {
            name: chat.name.clone(),
            member_count: chat.member_count,
        }),
        leaderboard,
    };
    let message = render(&schedule, variant, &context)?;
    let decision = route_for(
        chat.address(),
        MessageKind::Push,
        &Content::from(message.clone()),
    );
    Ok(Preview {
        variant: variant.name.clone(),
        message,
        route: decision.route_name().to_owned(),
        skip_reason: decision.skip_reason().map(str::to_owned),
    })
}
