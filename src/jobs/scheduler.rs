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
//! App groups go out through `appchat/send`; webhook groups, and customer or
//! smart-bot groups with a robot added, through the robot; customer groups
//! without a robot become one owner-confirmed mass message per owner per run
//! (per distinct rendered text, at most 2,000 chats each) and stay
//! `awaiting_confirmation` until the owner confirms. Chats nothing can post to
//! get a `skipped` outbox row carrying the reason, so the run report shows them.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::rules::schedule::{
    self, plan_catch_up, render, select_targets, ChatInfo, ChatVars, ImageSource, LeaderboardEntry,
    PushContext, RenderedMessage, ValidSchedule,
};
use crate::rules::{ChatRoute, RuleSet};
use crate::store::outbox::{NewOutboxMessage, Route};
use crate::store::schedules::{self as store, NewDelivery, NewRun, PushChat, RunKind, RunStatus};
use crate::store::{points, rule_sets};
use crate::wecom::api::{
    AppMessageContent, MassMessageContent, MediaRef, NewsArticle as WeComArticle, NewsContent,
    TextContent, WebhookMessage, WebhookText,
};

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
}

impl Scheduler {
    pub fn new(pool: SqlitePool, settings: SchedulerSettings) -> Self {
        Self { pool, settings }
    }

    /// Waits a tick, runs once, until cancelled. A failed pass is logged and
    /// retried next tick (its transaction rolled back, so nothing is lost).
    pub async fn run_loop(&self, clock: SharedClock, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.run_once(clock.now()).await {
                tracing::error!(error = format!("{error:#}"), "scheduler pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.tick) => {}
            }
        }
    }

    /// Handles every fire due up to `now` for every schedule of the active rule
    /// set: plans at most one per schedule, records the rest as missed or quiet.
    /// One schedule's failure does not stop the others.
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<SchedulerOutcome> {
        let (version, schedules) = load_schedules(&self.pool).await?;
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

/// The active rule set's version and its validated schedules (none when no
/// rule set was saved yet).
pub async fn load_schedules(
    pool: &SqlitePool,
) -> anyhow::Result<(Option<i64>, Vec<ValidSchedule>)> {
    let mut conn = pool.acquire().await?;
    let Some(stored) = rule_sets::active(&mut conn)
        .await
        .context("loading the active rule set")?
    else {
        return Ok((None, Vec::new()));
    };
    let rules = RuleSet::from_toml(&stored.body).context("active rule set no longer validates")?;
    Ok((Some(stored.version), valid_schedules(&rules)?))
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
    // and distinct text: (owner, variant, payload) -> chats.
    let mut mass: BTreeMap<(String, String, String), Vec<&str>> = BTreeMap::new();
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
        let decision = match render(schedule, variant, &context) {
            Ok(message) => delivery_for(chat, &message, &settings.app),
            Err(error) => Delivery::Skip {
                route: chat_outbox_route(&chat.route),
                reason: format!("message did not render: {error}"),
            },
        };
        let (route, target, app, payload, skip_reason) = match decision {
            Delivery::Send {
                route,
                target,
                app,
                payload,
            } => {
                planned.chats += 1;
                (route, target, app, payload, None)
            }
            Delivery::Mass { owner, payload } => {
                planned.chats += 1;
                mass.entry((owner, variant.name.clone(), payload))
                    .or_default()
                    .push(chat.chat_id.as_str());
                continue;
            }
            Delivery::Skip { route, reason } => {
                planned.skipped += 1;
                (
                    route,
                    chat.chat_id.clone(),
                    None,
                    "{}".to_owned(),
                    Some(reason),
                )
            }
        };
        rows.push(PlannedRow {
            key: format!("{key_prefix}:{}", chat.chat_id),
            route,
            target,
            app,
            payload,
            skip_reason,
            chats: vec![chat.chat_id.as_str()],
            variant: &variant.name,
        });
    }
    for ((owner, variant, content), chat_ids) in &mass {
        for (part, chunk) in chat_ids.chunks(MASS_CHATS_PER_MESSAGE).enumerate() {
            rows.push(PlannedRow {
                key: format!(
                    "{key_prefix}:mass:{owner}:{variant}:{}:{part}",
                    short_hash(content)
                ),
                route: Route::CustomerGroupMass,
                target: owner.clone(),
                app: None,
                payload: mass_payload(content, chunk)?,
                skip_reason: None,
                chats: chunk.to_vec(),
                variant,
            });
        }
    }
    // 1:1 pushes to departments/tags need message/send's toparty/totag, which the
    // sender does not speak yet: record that visibly instead of dropping it.
    if let Some(members) = schedule.targets().members() {
        planned.skipped += 1;
        rows.push(PlannedRow {
            key: format!("{key_prefix}:members"),
            route: Route::Member,
            target: format!(
                "departments {:?} tags {:?}",
                members.departments, members.tags
            ),
            app: Some(settings.app.clone()),
            payload: "{}".to_owned(),
            skip_reason: Some(
                "pushes to member departments/tags are not delivered yet (no toparty/totag in the sender)"
                    .to_owned(),
            ),
            chats: Vec::new(),
            variant: "",
        });
    }
    let created_at = now.timestamp();
    let messages: Vec<NewOutboxMessage<'_>> = rows
        .iter()
        .map(|row| NewOutboxMessage {
            idempotency_key: &row.key,
            route: row.route,
            target: &row.target,
            app: row.app.as_deref(),
            payload_json: &row.payload,
            created_at,
            not_before: None,
            skip_reason: row.skip_reason.as_deref(),
        })
        .collect();
    let added = crate::store::outbox::enqueue_many(conn, &messages).await?;
    planned.outbox_rows = usize::try_from(added).unwrap_or(usize::MAX);
    let deliveries: Vec<NewDelivery<'_>> = rows
        .iter()
        .flat_map(|row| {
            row.chats.iter().map(|chat_id| NewDelivery {
                chat_id,
                variant: row.variant,
                outbox_key: &row.key,
            })
        })
        .collect();
    store::insert_deliveries(conn, run_id, &deliveries).await?;
    Ok(Some(planned))
}

/// One outbox row of a run and the chats it carries (one, or many for a
/// customer-group mass message).
struct PlannedRow<'a> {
    key: String,
    route: Route,
    target: String,
    app: Option<String>,
    payload: String,
    skip_reason: Option<String>,
    chats: Vec<&'a str>,
    variant: &'a str,
}

/// How one chat receives one rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Send {
        route: Route,
        target: String,
        app: Option<String>,
        payload: String,
    },
    /// Part of an owner's mass message; `payload` is the mass content without
    /// the chat list.
    Mass {
        owner: String,
        payload: String,
    },
    Skip {
        route: Route,
        reason: String,
    },
}

fn delivery_for(chat: &PushChat, message: &RenderedMessage, app: &str) -> Delivery {
    let robot = match &chat.route {
        ChatRoute::Webhook { key } => Some(key.as_str()),
        ChatRoute::CustomerGroup { robot_key } | ChatRoute::SmartBot { robot_key } => {
            robot_key.as_deref()
        }
        ChatRoute::AppGroup => None,
    };
    let skip = |route: Route, reason: &str| Delivery::Skip {
        route,
        reason: reason.to_owned(),
    };
    match (&chat.route, robot) {
        (ChatRoute::AppGroup, _) => match app_content(message) {
            Some(content) => match serde_json::to_string(&content) {
                Ok(payload) => Delivery::Send {
                    route: Route::AppGroup,
                    target: chat.chat_id.clone(),
                    app: Some(app.to_owned()),
                    payload,
                },
                Err(error) => skip(Route::AppGroup, &format!("payload error: {error}")),
            },
            None => skip(
                Route::AppGroup,
                "app groups need an uploaded media id for images, not a URL",
            ),
        },
        (_, Some(key)) if !key.is_empty() => match webhook_content(message) {
            Some(content) => match serde_json::to_string(&content) {
                Ok(payload) => Delivery::Send {
                    route: Route::Webhook,
                    target: key.to_owned(),
                    app: None,
                    payload,
                },
                Err(error) => skip(Route::Webhook, &format!("payload error: {error}")),
            },
            None => skip(
                Route::Webhook,
                "webhook robots cannot post an image by URL or media id",
            ),
        },
        (ChatRoute::CustomerGroup { .. }, _) => match &chat.owner {
            Some(owner) if !owner.is_empty() => match mass_content(message) {
                Ok(payload) => Delivery::Mass {
                    owner: owner.clone(),
                    payload,
                },
                Err(error) => skip(Route::CustomerGroupMass, &format!("payload error: {error}")),
            },
            _ => skip(
                Route::CustomerGroupMass,
                "customer group has no known owner to confirm a mass message and no robot",
            ),
        },
        (ChatRoute::SmartBot { .. }, _) => skip(
            Route::SmartBot,
            "a smart bot can only answer @-mentions; add a webhook robot to push here",
        ),
        (ChatRoute::Webhook { .. }, _) => skip(Route::Webhook, "webhook chat has no robot key"),
    }
}

fn chat_outbox_route(route: &ChatRoute) -> Route {
    match route {
        ChatRoute::AppGroup => Route::AppGroup,
        ChatRoute::Webhook { .. } => Route::Webhook,
        ChatRoute::SmartBot { .. } => Route::SmartBot,
        ChatRoute::CustomerGroup { .. } => Route::CustomerGroupMass,
    }
}

fn wecom_articles(articles: &[schedule::NewsArticle]) -> Vec<WeComArticle> {
    articles
        .iter()
        .map(|article| WeComArticle {
            title: article.title.clone(),
            description: article.description.clone(),
            url: Some(article.url.clone()),
            picurl: article.picurl.clone(),
        })
        .collect()
}

fn app_content(message: &RenderedMessage) -> Option<AppMessageContent> {
    Some(match message {
        RenderedMessage::Text { content } => AppMessageContent::Text {
            text: TextContent::new(content.clone()),
        },
        RenderedMessage::Markdown { content } => AppMessageContent::Markdown {
            markdown: TextContent::new(content.clone()),
        },
        RenderedMessage::News { articles } => AppMessageContent::News {
            news: NewsContent {
                articles: wecom_articles(articles),
            },
        },
        RenderedMessage::Image {
            source: ImageSource::MediaId(media_id),
        } => AppMessageContent::Image {
            image: MediaRef {
                media_id: media_id.clone(),
            },
        },
        RenderedMessage::Image {
            source: ImageSource::Url(_),
        } => return None,
    })
}

fn webhook_content(message: &RenderedMessage) -> Option<WebhookMessage> {
    Some(match message {
        RenderedMessage::Text { content } => WebhookMessage::Text {
            text: WebhookText {
                content: content.clone(),
                mentioned_list: Vec::new(),
                mentioned_mobile_list: Vec::new(),
            },
        },
        RenderedMessage::Markdown { content } => WebhookMessage::Markdown {
            markdown: TextContent::new(content.clone()),
        },
        RenderedMessage::News { articles } => WebhookMessage::News {
            news: NewsContent {
                articles: wecom_articles(articles),
            },
        },
        RenderedMessage::Image { .. } => return None,
    })
}

/// The mass-message content without its chat list, as JSON (also the grouping
/// key: chats whose text renders the same share one message).
fn mass_content(message: &RenderedMessage) -> serde_json::Result<String> {
    use serde_json::json;
    let content = match message {
        RenderedMessage::Text { content } | RenderedMessage::Markdown { content } => {
            MassMessageContent {
                chat_id_list: Vec::new(),
                text: Some(TextContent::new(content.clone())),
                attachments: Vec::new(),
            }
        }
        RenderedMessage::News { articles } => MassMessageContent {
            chat_id_list: Vec::new(),
            text: None,
            attachments: articles
                .iter()
                .map(|article| {
                    json!({"msgtype": "link", "link": {
                        "title": article.title,
                        "desc": article.description,
                        "url": article.url,
                        "picurl": article.picurl,
                    }})
                })
                .collect(),
        },
        RenderedMessage::Image { source } => MassMessageContent {
            chat_id_list: Vec::new(),
            text: None,
            attachments: vec![match source {
                ImageSource::MediaId(media_id) => {
                    json!({"msgtype": "image", "image": {"media_id": media_id}})
                }
                ImageSource::Url(url) => json!({"msgtype": "image", "image": {"pic_url": url}}),
            }],
        },
    };
    serde_json::to_string(&content)
}

fn mass_payload(content: &str, chat_ids: &[&str]) -> anyhow::Result<String> {
    let mut content: MassMessageContent = serde_json::from_str(content)?;
    content.chat_id_list = chat_ids.iter().map(|id| (*id).to_owned()).collect();
    Ok(serde_json::to_string(&content)?)
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
            ChatRoute::CustomerGroup { .. } => schedule::ChatRoute::CustomerGroup,
            ChatRoute::Webhook { .. } => schedule::ChatRoute::WebhookRobot,
            ChatRoute::SmartBot { .. } => schedule::ChatRoute::SmartBot,
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

pub async fn preview(
    pool: &SqlitePool,
    settings: &SchedulerSettings,
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
    let (route, skip_reason) = match delivery_for(chat, &message, &settings.app) {
        Delivery::Send { route, .. } => (route, None),
        Delivery::Mass { .. } => (Route::CustomerGroupMass, None),
        Delivery::Skip { route, reason } => (route, Some(reason)),
    };
    Ok(Preview {
        variant: variant.name.clone(),
        message,
        route: route.as_str().to_owned(),
        skip_reason,
    })
}
