//! The sender: delivers outbox rows through the WeCom API.
//!
//! `run_once` leases due rows (welcome codes and bot replies first), sends to
//! different targets concurrently (one target's rows in order), and for each
//! row checks the rate limits and WeCom's API-wide pauses (a row over a limit
//! is postponed without spending an attempt, never sent for WeCom to drop
//! silently), calls the route's API and records the outcome right away: sent
//! (also when WeCom refuses a single-use code that our own earlier call used:
//! "confirmed by refusal"), awaiting the owner's confirmation (customer-group
//! mass messages), retried later with exponential backoff and jitter, failed
//! (configuration problem; waits for a manager) or dead (undeliverable, or out
//! of attempts). It then polls WeCom for mass messages awaiting confirmation.
//! `qunyun serve` runs two senders ([`SenderLane`]) so short deadlines never
//! queue behind other traffic.
//!
//! Nothing twice: each row's outcome is committed before that target's next
//! row is sent, and the start of each WeCom call is recorded with a lease for
//! that call. At start-up a sender recovers what a previous process left in
//! flight at once: rows whose call never started are due again; rows whose
//! call started are sent again only on routes where a second call cannot
//! deliver twice (single-use welcome codes and `response_url`s, removals,
//! `message/send` with WeCom's duplicate check on the resend). A row that
//! stopped mid-call on an appchat, robot or mass-message route may already be
//! in the chat, so it is parked as dead with an "uncertain" reason for a
//! person to check and retry; so is one whose call timed out or broke after
//! the request went out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use rand::Rng;
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::AppConfig;
use crate::jobs::longconn::LongConnections;
use crate::jobs::Job;
use crate::outbound::Payload;
use crate::store::outbox::{
    self as store, ClaimedMessage, OutboxStatus, Outcome, Route, CONFIRMED_BY_REFUSAL,
};
use crate::wecom::api::error::{RESPONSE_CODE_USED, WELCOME_CODE_USED};
use crate::wecom::api::{
    AddMsgTemplate, ApiClient, ApiError, AppChatSend, AppChatUpdate, AppMessage, BotResponse,
    ErrorClass, Secret, TagChange, WebhookMessage, WelcomeMessage,
    MAX_DUPLICATE_CHECK_INTERVAL_SECS,
};

/// A configured self-built app.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub name: String,
    pub agent_id: i64,
    pub secret: Secret,
}

impl From<&AppConfig> for AppCredentials {
    fn from(app: &AppConfig) -> Self {
        Self {
            name: app.name.clone(),
            agent_id: app.agent_id,
            secret: app.secret.clone(),
        }
    }
}

/// Per-minute ceilings, kept strictly below what WeCom silently drops or
/// rejects (docs/wecom.md#rate-limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Group robot: 20 per minute per robot.
    pub webhook_per_key: u32,
    /// `message/send`: 30 per minute per app per member.
    pub app_message_per_member: u32,
    /// `appchat/send`: each member ≤ 200 per minute; we count per chat.
    pub appchat_per_chat: u32,
    /// Per corp, per API: 10,000 calls per minute.
    pub calls_per_api: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            webhook_per_key: 20,
            app_message_per_member: 30,
            appchat_per_chat: 200,
            calls_per_api: 10_000,
        }
    }
}

/// Length of every rate-limit window.
const RATE_WINDOW_SECS: i64 = 60;
/// How far before the lost call the duplicate check of its resend reaches
/// (clock skew between us and WeCom, the call's own duration).
const DUPLICATE_CHECK_MARGIN_SECS: i64 = 60;
/// Slack on a row's per-call lease beyond the worst call.
const CALL_LEASE_MARGIN_SECS: i64 = 30;
/// `send_welcome_msg` must be called within 20 s of the event.
const WELCOME_CODE_LIFETIME_SECS: i64 = 20;
/// A smart bot's `response_url` is valid for one hour.
const RESPONSE_URL_LIFETIME_SECS: i64 = 3600;

#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub apps: Vec<AppCredentials>,
    /// Secret of the app listed under 客户联系 → 可调用接口的应用, for the
    /// customer-contact routes (mass messages, welcome codes). When absent,
    /// the row's app secret is used.
    pub contacts_secret: Option<Secret>,
    /// After this many failed attempts a row is dead.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long a claimed row stays ours; must exceed a batch's worth of
    /// calls (each bounded by the API timeout, twice with a token refresh).
    pub lease: Duration,
    pub batch_size: u32,
    /// Targets sent to at the same time within a pass (one slow or hanging
    /// call holds up only its own target).
    pub concurrency: usize,
    /// Which routes this sender claims; `None`: all. `qunyun serve` runs one
    /// sender for the short-deadline routes and one for the rest.
    pub routes: Option<Vec<Route>>,
    pub rate_limits: RateLimits,
    /// How long the loop (`jobs::run_loop`) waits after a pass that was not a full batch.
    pub idle_wait: Duration,
    /// How often a mass message awaiting confirmation is polled.
    pub mass_poll_interval: Duration,
    /// A mass message nobody confirmed within this time is dead.
    pub mass_confirmation_timeout: Duration,
    /// The WeCom customer-tag group member tags are synced into
    /// (`[wecom] customer_tag_group`).
    pub customer_tag_group: String,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            apps: Vec::new(),
            contacts_secret: None,
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(15 * 60),
            // A pass's claim; each call then takes its own lease when it starts.
            lease: Duration::from_secs(120),
            batch_size: 20,
            concurrency: 8,
            routes: None,
            rate_limits: RateLimits::default(),
            idle_wait: Duration::from_secs(1),
            mass_poll_interval: Duration::from_secs(10 * 60),
            mass_confirmation_timeout: Duration::from_secs(7 * 24 * 3600),
            customer_tag_group: crate::config::DEFAULT_CUSTOMER_TAG_GROUP.to_owned(),
        }
    }
}

/// The two senders `qunyun serve` runs, so short deadlines never queue
/// behind other traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderLane {
    /// Welcome codes (20 s after the event) and smart-bot replies.
    Urgent,
    /// Everything else.
    Regular,
}

impl SenderLane {
    pub const ALL: [SenderLane; 2] = [SenderLane::Urgent, SenderLane::Regular];

    pub fn routes(self) -> Vec<Route> {
        Route::ALL
            .into_iter()
            .filter(|route| is_urgent(*route) == (self == SenderLane::Urgent))
            .collect()
    }
}

/// Routes whose rows expire within seconds to minutes of the event.
fn is_urgent(route: Route) -> bool {
    route.priority() > 0
}

/// What one `run_once` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    pub claimed: usize,
    pub sent: usize,
    pub awaiting_confirmation: usize,
    /// Failed attempts that will be tried again.
    pub retried: usize,
    /// Held back by a rate limit (ours or WeCom's 45009), or released at shutdown.
    pub postponed: usize,
    pub failed: usize,
    pub dead: usize,
    /// Rows whose moment passed before their turn (an expired welcome code).
    pub skipped: usize,
    /// Another sender took the row over after our lease expired.
    pub lease_lost: usize,
    /// Rows parked because an earlier sender stopped during their WeCom call
    /// on a route where sending again could deliver twice.
    pub uncertain: usize,
    /// Mass messages the poll found confirmed (sent) or given up (dead).
    pub confirmations_sent: usize,
    pub confirmations_dead: usize,
    /// Sent rows WeCom confirmed only by refusing a second use of a one-shot
    /// code after our earlier call lost its answer (also counted in `sent`).
    pub confirmed_by_refusal: usize,
    /// Rows a previous process held, recovered at start-up.
    pub recovered: store::Recovered,
}

impl SendOutcome {
    /// Adds one lane's per-row counts to this pass's.
    fn absorb(&mut self, lane: &SendOutcome) {
        self.sent += lane.sent;
        self.awaiting_confirmation += lane.awaiting_confirmation;
        self.retried += lane.retried;
        self.postponed += lane.postponed;
        self.failed += lane.failed;
        self.dead += lane.dead;
        self.skipped += lane.skipped;
        self.lease_lost += lane.lease_lost;
        self.confirmed_by_refusal += lane.confirmed_by_refusal;
    }

    /// Counts one row's outcome.
    fn count(&mut self, row: &Outcome) {
        match row {
            Outcome::Sent { note, .. } => {
                self.sent += 1;
                if note.is_some() {
                    self.confirmed_by_refusal += 1;
                }
            }
            Outcome::AwaitingConfirmation { .. } => self.awaiting_confirmation += 1,
            Outcome::Retry { .. } => self.retried += 1,
            Outcome::Postpone { .. } => self.postponed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Dead { .. } => self.dead += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
        }
    }

    /// True when nothing was due.
    pub fn is_idle(&self) -> bool {
        self.claimed == 0
            && self.uncertain == 0
            && self.confirmations_sent == 0
            && self.confirmations_dead == 0
            && self.recovered.total() == 0
    }
}

pub struct OutboxSender {
    pool: SqlitePool,
    api: ApiClient,
    clock: SharedClock,
    settings: SenderSettings,
    apps: HashMap<String, AppCredentials>,
    /// Identifies this sender's leases; a restarted sender gets a new one.
    owner: String,
    stopping: AtomicBool,
    /// Start-up recovery ran (once per process, before the first claim).
    recovered: AtomicBool,
    /// The smart bots' long connections, for answers sent over them.
    long_connections: LongConnections,
}

impl OutboxSender {
    pub fn new(
        pool: SqlitePool,
        api: ApiClient,
        clock: SharedClock,
        settings: SenderSettings,
    ) -> Self {
        let apps = settings
            .apps
            .iter()
            .map(|app| (app.name.clone(), app.clone()))
            .collect();
        let owner = format!("sender-{:016x}", rand::thread_rng().gen::<u64>());
        Self {
            pool,
            api,
            clock,
            settings,
            apps,
            owner,
            stopping: AtomicBool::new(false),
            recovered: AtomicBool::new(false),
            long_connections: LongConnections::default(),
        }
    }

    /// Sends smart-bot answers addressed to a long connection through `connections`.
    pub fn with_long_connections(mut self, connections: LongConnections) -> Self {
        self.long_connections = connections;
        self
    }

    /// How long the loop waits after a pass that found less than a full batch.
    pub fn idle_wait(&self) -> Duration {
        self.settings.idle_wait
    }

    /// One pass: send a batch of due rows, then poll due mass-message results.
    #[tracing::instrument(skip_all, name = "outbox_run_once")]
    pub async fn run_once(&self) -> anyhow::Result<SendOutcome> {
        let now = self.now();
        let mut outcome = SendOutcome::default();
        if !self.recovered.load(Ordering::SeqCst) {
            outcome.recovered = self
                .recover_abandoned(now)
                .await
                .context("recovering rows a previous process held")?;
            self.recovered.store(true, Ordering::SeqCst);
        }
        let claimed = {
            let mut conn = self.pool.acquire().await.context("acquiring connection")?;
            store::prune_rate_log(&mut conn, now - 2 * RATE_WINDOW_SECS)
                .await
                .context("pruning rate log")?;
            outcome.uncertain = store::park_uncertain(&mut conn, now)
                .await
                .context("parking rows whose sender stopped mid-call")?
                as usize;
            if outcome.uncertain > 0 {
                tracing::warn!(
                    rows = outcome.uncertain,
                    "a sender stopped mid-call; rows WeCom may have delivered are parked for a person"
                );
            }
            store::claim_due_on_routes(
                &mut conn,
                now,
                self.settings.lease.as_secs() as i64,
                &self.owner,
                i64::from(self.settings.batch_size),
                self.settings.routes.as_deref(),
            )
            .await
            .context("claiming due outbox rows")?
        };
        outcome.claimed = claimed.len();

        // Stop sending while enough of the lease is left for one more call
        // (a token refresh plus a retry), so no row is sent after another
        // sender could have taken it over.
        let send_until = now + self.settings.lease.as_secs() as i64 - self.worst_call_secs();
        // Short-deadline rows (welcome codes, bot replies) go first and never
        // wait for other traffic; within each group, lanes of one target keep
        // their order while different targets are sent concurrently.
        let (urgent, regular): (Vec<_>, Vec<_>) =
            claimed.into_iter().partition(|m| is_urgent(m.route));
        for group in [urgent, regular] {
            let lane_outcomes: Vec<SendOutcome> = stream::iter(lanes_by_target(group))
                .map(|lane| self.send_lane(lane, send_until))
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            for lane in &lane_outcomes {
                outcome.absorb(lane);
            }
        }

        let (confirmed, given_up) = self.poll_mass_results().await?;
        outcome.confirmations_sent = confirmed;
        outcome.confirmations_dead = given_up;
        Ok(outcome)
    }

    /// Sends one target's rows in order, recording each outcome before the next.
    async fn send_lane(&self, lane: Vec<ClaimedMessage>, send_until: i64) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for message in lane {
            let verdict = if self.stopping.load(Ordering::SeqCst) {
                Outcome::Postpone {
                    until: self.now(),
                    reason: "sender shutting down".to_owned(),
                }
            } else if self.now() >= send_until {
                Outcome::Postpone {
                    until: self.now(),
                    reason: "lease running out; handed back".to_owned(),
                }
            } else {
                self.attempt(&message).await
            };
            // One row's database trouble must not stop the others.
            if let Err(error) = self.record(&message, &verdict, &mut outcome).await {
                tracing::error!(
                    outbox_id = message.id,
                    error = format!("{error:#}"),
                    "recording outbox outcome failed; the lease will expire and the row be retried"
                );
            }
        }
        outcome
    }

    /// Checks customer-group mass messages awaiting their owner's
    /// confirmation; returns how many ended sent and how many dead.
    pub async fn poll_mass_results(&self) -> anyhow::Result<(usize, usize)> {
        let now = self.now();
        let due = {
            let mut conn = self.pool.acquire().await.context("acquiring connection")?;
            store::due_confirmations(&mut conn, now, i64::from(self.settings.batch_size))
                .await
                .context("loading mass messages awaiting confirmation")?
        };
        let (mut sent, mut dead) = (0, 0);
        for row in due {
            let next_poll = now + self.settings.mass_poll_interval.as_secs() as i64;
            let timed_out =
                now - row.created_at > self.settings.mass_confirmation_timeout.as_secs() as i64;
            let secret = match self.contacts_secret(row.app.as_deref()) {
                Ok(secret) => secret,
                Err(reason) => {
                    self.reschedule_poll(row.id, next_poll, &reason).await;
                    continue;
                }
            };
            let results = self
                .api
                .get_groupmsg_send_result_all(secret, &row.wecom_msgid, &row.target)
                .await;
            let mut conn = self.pool.acquire().await.context("acquiring connection")?;
            let results = match results {
                Ok(results) => results,
                Err(error) => {
                    tracing::warn!(outbox_id = row.id, %error, "polling mass message result failed");
                    drop(conn);
                    self.reschedule_poll(row.id, next_poll, &format!("poll failed: {error}"))
                        .await;
                    continue;
                }
            };
            let total = results.len();
            let delivered = results.iter().filter(|r| r.status == 1).count();
            let unsent = results.iter().filter(|r| r.status == 0).count();
            // How the wait ends now, if it does: the status and its note.
            let ending = if total == 0 || unsent > 0 {
                if timed_out {
                    let reason = format!(
                        "{} did not confirm in time: {delivered} of {total} sent",
                        row.target
                    );
                    Some((OutboxStatus::Dead, Some(reason)))
                } else {
                    let note = format!(
                        "waiting for {} to confirm: {delivered} of {total} sent",
                        row.target
                    );
                    store::reschedule_confirmation_poll(&mut conn, row.id, next_poll, Some(&note))
                        .await?;
                    None
                }
            } else if delivered > 0 {
                let note =
                    (delivered < total).then(|| format!("{delivered} of {total} received it"));
                Some((OutboxStatus::Sent, note))
            } else {
                let reason = format!("no recipient received it ({total} failed)");
                Some((OutboxStatus::Dead, Some(reason)))
            };
            if let Some((status, note)) = ending {
                if store::finish_confirmation(&mut conn, row.id, now, status, note.as_deref())
                    .await?
                {
                    if status == OutboxStatus::Sent {
                        sent += 1;
                    } else {
                        dead += 1;
                    }
                }
            }
        }
        Ok((sent, dead))
    }

    async fn reschedule_poll(&self, id: i64, next_poll: i64, note: &str) {
        let result = async {
            let mut conn = self.pool.acquire().await?;
            store::reschedule_confirmation_poll(&mut conn, id, next_poll, Some(note)).await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(outbox_id = id, %error, "rescheduling mass-message poll failed");
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// The longest one call can take: a token refresh plus the call and its
    /// retry, each bounded by the API timeout.
    fn worst_call_secs(&self) -> i64 {
        3 * self.api.config().timeout.as_secs().max(1) as i64
    }

    /// Records the call start and takes the row's own lease for this call.
    async fn mark_call_started(&self, id: i64, now: i64) -> sqlx::Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let lease_until = now + self.worst_call_secs() + CALL_LEASE_MARGIN_SECS;
        store::mark_call_started(&mut conn, id, &self.owner, now, lease_until).await
    }

    /// Once per process, before the first claim: rows a previous process
    /// left in flight are recovered now rather than when their leases expire.
    async fn recover_abandoned(&self, now: i64) -> anyhow::Result<store::Recovered> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let recovered =
            store::recover_abandoned(&mut tx, &self.owner, now, self.settings.routes.as_deref())
                .await?;
        tx.commit().await?;
        if recovered.total() > 0 {
            tracing::warn!(
                never_started = recovered.never_started,
                resent = recovered.resent,
                uncertain = recovered.uncertain,
                "recovered outbox rows a previous process held: never-started calls and \
                 resend-safe routes are due now, calls that may have posted are parked as uncertain"
            );
        } else {
            tracing::info!("no outbox rows were left in flight by a previous process");
        }
        Ok(recovered)
    }

    /// Pauses the whole API after a frequency/concurrency refusal, and lifts
    /// a pause once a probe call got any other answer from WeCom.
    async fn note_api_answer(&self, pause_key: &str, result: &Result<Delivered, ApiError>) {
        let now = self.now();
        let outcome = async {
            let mut conn = self.pool.acquire().await?;
            match result {
                Err(error) => match error.class() {
                    ErrorClass::BackOff { wait } => {
                        let until = now + wait.as_secs().max(1) as i64;
                        tracing::warn!(
                            api = rate_kind(pause_key),
                            until,
                            %error,
                            "WeCom limit: pausing every call to this API"
                        );
                        store::pause_api(&mut conn, pause_key, until, &error.to_string()).await
                    }
                    _ if error.errcode().is_some() => store::resume_api(&mut conn, pause_key).await,
                    // No answer from WeCom: the probe stays out until stale.
                    _ => Ok(()),
                },
                Ok(_) => store::resume_api(&mut conn, pause_key).await,
            }
        }
        .await;
        if let Err(error) = outcome {
            tracing::error!(%error, "recording the API pause state failed");
        }
    }

    /// Decides and performs one delivery attempt. Never fails: every problem
    /// becomes a verdict for the row.
    #[tracing::instrument(skip_all, fields(outbox_id = message.id, route = %message.route, attempt = message.attempts))]
    async fn attempt(&self, message: &ClaimedMessage) -> Outcome {
        let now = self.now();
        if message.attempts > i64::from(self.settings.max_attempts) {
            // Only reachable when leases kept expiring (a sender died mid-call).
            return Outcome::Dead {
                reason: format!(
                    "gave up after {} attempts (leases expired)",
                    self.settings.max_attempts
                ),
            };
        }
        let request = match self.prepare(message, now) {
            Ok(request) => request,
            Err(verdict) => return verdict,
        };
        match self
            .reserve_rate(&request.rate_keys, &request.pause_key, now)
            .await
        {
            Ok(None) => {}
            Ok(Some(postpone)) => return postpone,
            Err(error) => {
                return Outcome::Retry {
                    at: now + 1,
                    error: format!("rate-limit bookkeeping failed: {error:#}"),
                    answer_lost_at: None,
                }
            }
        }
        // From here on WeCom may deliver the message even if we never learn
        // the answer; a lease that expires now means "maybe sent".
        match self.mark_call_started(message.id, now).await {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::Postpone {
                    until: now,
                    reason: "lease lost before the call".to_owned(),
                }
            }
            Err(error) => {
                return Outcome::Retry {
                    at: now + 1,
                    error: format!("recording the call start failed: {error:#}"),
                    answer_lost_at: None,
                }
            }
        }
        let result = self.send(request.call).await;
        self.note_api_answer(&request.pause_key, &result).await;
        let verdict = self.judge(message, now, result);
        match &verdict {
            Outcome::Sent { .. } | Outcome::AwaitingConfirmation { .. } => {
                tracing::debug!("delivered")
            }
            Outcome::Retry { error, .. } => tracing::info!(error, "attempt failed; will retry"),
            Outcome::Postpone { reason, .. } => tracing::info!(reason, "postponed"),
            Outcome::Failed { reason } => tracing::warn!(reason, "configuration error"),
            Outcome::Dead { reason } => tracing::warn!(reason, "dead letter"),
            Outcome::Skipped { reason } => tracing::warn!(reason, "skipped"),
        }
        verdict
    }

    /// Validates the row and builds the call, or says why it cannot be made.
    fn prepare<'a>(
        &'a self,
        message: &'a ClaimedMessage,
        now: i64,
    ) -> Result<Prepared<'a>, Outcome> {
        // Both one-shot routes are valid for a while after their event; rows
        // written before the event time was kept count from the row.
        let age = now - message.event_at.unwrap_or(message.created_at);
        let limits = &self.settings.rate_limits;
        let target = message.target.as_str();
        let api_key = |path: &str| (format!("api:{path}"), limits.calls_per_api);
        let payload = decode_payload(message)?;
        let prepared = match payload {
            Payload::Member(content) => {
                let app = self.app(message.app.as_deref())?;
                let mut rate_keys: Vec<(String, u32)> = target
                    .split('|')
                    .filter(|userid| !userid.is_empty())
                    .map(|userid| {
                        (
                            format!("member:{}:{userid}", app.name),
                            limits.app_message_per_member,
                        )
                    })
                    .collect();
                rate_keys.push(api_key("message/send"));
                Prepared {
                    rate_keys,
                    pause_key: api_key("message/send").0,
                    call: Call::Member {
                        secret: &app.secret,
                        message: with_duplicate_check(
                            AppMessage::new(target, app.agent_id, content),
                            message.answer_lost_at,
                            now,
                        ),
                    },
                }
            }
            Payload::AppGroup(content) => {
                let app = self.app(message.app.as_deref())?;
                Prepared {
                    rate_keys: vec![
                        (format!("appchat:{target}"), limits.appchat_per_chat),
                        api_key("appchat/send"),
                    ],
                    pause_key: api_key("appchat/send").0,
                    call: Call::AppGroup {
                        secret: &app.secret,
                        message: AppChatSend::new(target, content),
                    },
                }
            }
            Payload::Webhook(content) => Prepared {
                rate_keys: vec![
                    (format!("webhook:{target}"), limits.webhook_per_key),
                    api_key("webhook/send"),
                ],
                // A robot's limit is its own (docs/wecom.md#rate-limits).
                pause_key: format!("webhook:{target}"),
                call: Call::Webhook {
                    key: target,
                    message: content,
                },
            },
            Payload::SmartBot(response) => {
                // An answer over the bot's long connection (docs/wecom.md#smart-bot-long-connection).
                if let Some(prepared) = crate::jobs::longconn::prepare(target, &response, age) {
                    return prepared
                        .map(|prepared| Prepared {
                            rate_keys: prepared.rate_keys,
                            pause_key: prepared.pause_key,
                            call: Call::LongConn(prepared.reply),
                        })
                        .map_err(|reason| Outcome::Dead { reason });
                }
                if age > RESPONSE_URL_LIFETIME_SECS {
                    return Err(Outcome::Dead {
                        reason: "response_url expired (valid for 1 hour)".to_owned(),
                    });
                }
                Prepared {
                    rate_keys: vec![api_key("aibot/response")],
                    pause_key: api_key("aibot/response").0,
                    call: Call::SmartBot {
                        response_url: target,
                        response,
                    },
                }
            }
            Payload::CustomerGroupMass(content) => {
                self.contacts_call(message, "externalcontact/add_msg_template", |secret| {
                    Call::Mass {
                        secret,
                        template: AddMsgTemplate::for_groups(target, content),
                    }
                })?
            }
            Payload::CustomerMass(content) => {
                self.contacts_call(message, "externalcontact/add_msg_template", |secret| {
                    Call::Mass {
                        secret,
                        template: AddMsgTemplate::for_contacts(target, content),
                    }
                })?
            }
            Payload::CustomerTag(change) => {
                self.contacts_call(message, "externalcontact/mark_tag", |secret| {
                    Call::CustomerTag { secret, change }
                })?
            }
            Payload::AppChatRemove(removal) => {
                let app = self.app(message.app.as_deref())?;
                Prepared {
                    rate_keys: vec![api_key("appchat/update")],
                    pause_key: api_key("appchat/update").0,
                    call: Call::AppChatRemove {
                        secret: &app.secret,
                        update: AppChatUpdate {
                            chatid: target.to_owned(),
                            name: None,
                            owner: None,
                            add_user_list: Vec::new(),
                            del_user_list: removal.del_user_list,
                        },
                    },
                }
            }
            Payload::WelcomeCode(content) => {
                if age > WELCOME_CODE_LIFETIME_SECS {
                    return Err(Outcome::Skipped {
                        reason: format!(
                            "welcome code expired: {age} s after the event, WeCom accepts it \
                             for {WELCOME_CODE_LIFETIME_SECS} s (docs/wecom.md#customer-welcome)"
                        ),
                    });
                }
                self.contacts_call(message, "externalcontact/send_welcome_msg", |secret| {
                    Call::Welcome {
                        secret,
                        message: WelcomeMessage {
                            welcome_code: target.to_owned(),
                            content,
                        },
                    }
                })?
            }
        };
        Ok(prepared)
    }

    /// A customer-contact call (contacts secret) counted and paused per API.
    fn contacts_call<'a>(
        &'a self,
        message: &ClaimedMessage,
        path: &str,
        call: impl FnOnce(&'a Secret) -> Call<'a>,
    ) -> Result<Prepared<'a>, Outcome> {
        let secret = self
            .contacts_secret(message.app.as_deref())
            .map_err(|reason| Outcome::Failed { reason })?;
        let key = format!("api:{path}");
        Ok(Prepared {
            rate_keys: vec![(key.clone(), self.settings.rate_limits.calls_per_api)],
            pause_key: key,
            call: call(secret),
        })
    }

    fn app(&self, name: Option<&str>) -> Result<&AppCredentials, Outcome> {
        let Some(name) = name else {
            return Err(Outcome::Failed {
                reason: "row names no app".to_owned(),
            });
        };
        self.apps.get(name).ok_or_else(|| Outcome::Failed {
            reason: format!("no app named {name:?} is configured"),
        })
    }

    /// The secret for customer-contact APIs: the contacts secret, else the
    /// row's app secret.
    fn contacts_secret(&self, app: Option<&str>) -> Result<&Secret, String> {
        if let Some(secret) = &self.settings.contacts_secret {
            return Ok(secret);
        }
        match app.and_then(|name| self.apps.get(name)) {
            Some(app) => Ok(&app.secret),
            None => Err("no contacts secret configured and the row names no known app".to_owned()),
        }
    }

    /// Checks every limit for this call; if all have room, logs the call
    /// under each key (before sending: a call WeCom rejects still counts
    /// there). Otherwise returns when the fullest window frees a slot. One
    /// `BEGIN IMMEDIATE` transaction, so two senders cannot both take the
    /// last slot.
    async fn reserve_rate(
        &self,
        rate_keys: &[(String, u32)],
        pause_key: &str,
        now: i64,
    ) -> anyhow::Result<Option<Outcome>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // WeCom paused this API (45009/45033): wait without spending an
        // attempt; after the pause one call probes, the others wait for it.
        if let Err((until, reason)) =
            store::api_gate(&mut tx, pause_key, now, self.worst_call_secs()).await?
        {
            tx.rollback().await?;
            return Ok(Some(Outcome::Postpone {
                until: until.max(now + 1),
                reason: format!("API paused by WeCom: {reason}"),
            }));
        }
        let mut until: Option<i64> = None;
        let mut full_limit = String::new();
        for (key, limit) in rate_keys {
            let (window, per) = match key.ends_with(store::HOURLY_RATE_SUFFIX) {
                true => (store::HOURLY_RATE_WINDOW_SECS, "h"),
                false => (RATE_WINDOW_SECS, "min"),
            };
            let (count, oldest) = store::rate_window(&mut tx, key, now - window).await?;
            if count >= i64::from(*limit) {
                let frees_at = oldest.unwrap_or(now) + window;
                if until.is_none_or(|u| frees_at > u) {
                    until = Some(frees_at);
                    full_limit = format!("{} {limit}/{per}", rate_kind(key));
                }
            }
        }
        if let Some(until) = until {
            tx.rollback().await?;
            return Ok(Some(Outcome::Postpone {
                until: until.max(now + 1),
                reason: format!("rate limit: {full_limit}"),
            }));
        }
        let keys: Vec<String> = rate_keys.iter().map(|(key, _)| key.clone()).collect();
        store::record_calls(&mut tx, &keys, now).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn send(&self, call: Call<'_>) -> Result<Delivered, ApiError> {
        // Message/send and mass templates answer with something to keep; every
        // other call answers only success: sent, with no msgid.
        match call {
            Call::Member { secret, message } => {
                let response = self.api.send_message(secret, &message).await?;
                if response
                    .invaliduser
                    .as_deref()
                    .is_some_and(|u| !u.is_empty())
                {
                    tracing::warn!("message/send reported invalid recipients");
                }
                return Ok(Delivered::Sent {
                    msgid: response.msgid,
                });
            }
            Call::AppGroup { secret, message } => self.api.appchat_send(secret, &message).await?,
            Call::Webhook { key, message } => self.api.webhook_send(key, &message).await?,
            Call::SmartBot {
                response_url,
                response,
            } => self.api.respond_to_bot(response_url, &response).await?,
            Call::Mass { secret, template } => {
                let response = self.api.add_msg_template(secret, &template).await?;
                if !response.fail_list.is_empty() {
                    tracing::warn!(
                        failed = response.fail_list.len(),
                        "add_msg_template could not include some targets"
                    );
                }
                return Ok(Delivered::AwaitingConfirmation {
                    msgid: response.msgid,
                });
            }
            Call::Welcome { secret, message } => {
                self.api.send_welcome_msg(secret, &message).await?
            }
            Call::AppChatRemove { secret, update } => {
                self.api.appchat_update(secret, &update).await?
            }
            Call::CustomerTag { secret, change } => {
                crate::jobs::customer_tags::mark(
                    &self.api,
                    &self.pool,
                    secret,
                    &self.settings.customer_tag_group,
                    &change,
                )
                .await?
            }
            Call::LongConn(reply) => reply.send(&self.long_connections).await?,
        }
        Ok(Delivered::Sent { msgid: None })
    }

    /// The row's verdict after its call (started at `call_started`) answered
    /// `result`.
    fn judge(
        &self,
        message: &ClaimedMessage,
        call_started: i64,
        result: Result<Delivered, ApiError>,
    ) -> Outcome {
        let now = self.now();
        let error = match result {
            Ok(Delivered::Sent { msgid }) => return Outcome::Sent { msgid, note: None },
            Ok(Delivered::AwaitingConfirmation { msgid }) => {
                return Outcome::AwaitingConfirmation {
                    msgid,
                    next_poll_at: now + self.settings.mass_poll_interval.as_secs() as i64,
                }
            }
            Err(error) => error,
        };
        if let Some(note) = confirmed_by_refusal(message, &error) {
            return Outcome::Sent {
                msgid: None,
                note: Some(note),
            };
        }
        if error.may_have_been_delivered()
            && !message
                .route
                .resend_after_crash_is_safe_for(&message.target)
        {
            // Retrying could post it twice; a person decides.
            return Outcome::Dead {
                reason: format!(
                    "uncertain: {error}, so WeCom may already have delivered this message; \
                     it is not sent again automatically. Check the chat, and retry it here \
                     if it is missing."
                ),
            };
        }
        match error.class() {
            // The client already refreshed the token and retried once inline;
            // a second rejection is treated like any transient failure.
            ErrorClass::Retry | ErrorClass::RefreshToken => {
                if message.attempts >= i64::from(self.settings.max_attempts) {
                    Outcome::Dead {
                        reason: format!("gave up after {} attempts: {error}", message.attempts),
                    }
                } else {
                    Outcome::Retry {
                        at: now + self.backoff_secs(message.attempts),
                        error: error.to_string(),
                        // Only a failed connect proves the request never
                        // left; WeCom can act and still answer -1 or a 5xx.
                        answer_lost_at: (!matches!(error, ApiError::Connect(_)))
                            .then_some(call_started),
                    }
                }
            }
            ErrorClass::BackOff { wait } => Outcome::Postpone {
                until: now + wait.as_secs().max(1) as i64,
                reason: error.to_string(),
            },
            ErrorClass::Config => Outcome::Failed {
                reason: error.to_string(),
            },
            ErrorClass::Drop => Outcome::Dead {
                reason: error.to_string(),
            },
        }
    }

    /// Exponential backoff with jitter: base × 2^(attempt−1), capped, then a
    /// random point in its upper half so retries of a burst spread out.
    fn backoff_secs(&self, attempts: i64) -> i64 {
        backoff_secs(
            self.settings.backoff_base,
            self.settings.backoff_cap,
            attempts,
            rand::thread_rng().gen_range(0.5..=1.0),
        )
    }

    async fn record(
        &self,
        message: &ClaimedMessage,
        verdict: &Outcome,
        outcome: &mut SendOutcome,
    ) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        outcome.count(verdict);
        let kept_lease =
            store::finish(&mut conn, message.id, &self.owner, self.now(), verdict).await?;
        if !kept_lease {
            outcome.lease_lost += 1;
            tracing::warn!(
                outbox_id = message.id,
                "lease lost before the outcome was recorded; another sender owns the row"
            );
        }
        Ok(())
    }
}

/// WeCom's duplicate check drops a `message/send` identical to one sent to the
/// same members inside the interval (docs/wecom.md#app-messages). On every
/// call it would swallow a genuine second reply (积分 asked twice, same
/// balance). So a row's calls carry it only when an earlier call of this row
/// may have been delivered (its answer was lost), with an interval reaching
/// back just past that call: the resend is dropped if the first arrived, and
/// an identical reply to another event sent before that is not affected by
/// the window any more than the lost call itself.
fn with_duplicate_check(
    mut message: AppMessage,
    answer_lost_at: Option<i64>,
    now: i64,
) -> AppMessage {
    match answer_lost_at {
        Some(lost_at) => {
            let reach_back = (now - lost_at).max(0) + DUPLICATE_CHECK_MARGIN_SECS;
            message.enable_duplicate_check = 1;
            message.duplicate_check_interval =
                reach_back.min(i64::from(MAX_DUPLICATE_CHECK_INTERVAL_SECS)) as u32;
        }
        None => message.enable_duplicate_check = 0,
    }
    message
}

/// Claimed rows grouped by (route, target) in claim order: one lane per
/// chat, member list, robot or code, so a chat's messages stay in order.
fn lanes_by_target(rows: Vec<ClaimedMessage>) -> Vec<Vec<ClaimedMessage>> {
    let mut lanes: Vec<Vec<ClaimedMessage>> = Vec::new();
    let mut index: HashMap<(Route, String), usize> = HashMap::new();
    for row in rows {
        match index.get(&(row.route, row.target.clone())) {
            Some(&at) => lanes[at].push(row),
            None => {
                index.insert((row.route, row.target.clone()), lanes.len());
                lanes.push(vec![row]);
            }
        }
    }
    lanes
}

/// A refusal that proves delivery: after a call of ours whose answer was lost
/// (`answer_lost_at`), WeCom refusing the single-use code as used means that
/// call went through (a `response_code` or welcome code is ours alone). 42022
/// only counts on a smart-bot reply, 41051 only on a welcome code; without a
/// lost answer before, the same codes mean the row cannot be delivered.
fn confirmed_by_refusal(message: &ClaimedMessage, error: &ApiError) -> Option<String> {
    let lost_at = message.answer_lost_at?;
    let proves = matches!(
        (message.route, error.errcode()?),
        (Route::SmartBot, RESPONSE_CODE_USED) | (Route::WelcomeCode, WELCOME_CODE_USED)
    );
    proves.then(|| {
        format!(
            "{CONFIRMED_BY_REFUSAL}: the call at {lost_at} lost its answer and WeCom now \
             refuses the code as used ({error})"
        )
    })
}

/// `base × 2^(attempts−1)` capped at `cap`, scaled by `jitter` (0.5..=1.0),
/// at least one second.
fn backoff_secs(base: Duration, cap: Duration, attempts: i64, jitter: f64) -> i64 {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let delay = base.saturating_mul(2u32.saturating_pow(exponent)).min(cap);
    (delay.as_secs_f64() * jitter).round().max(1.0) as i64
}

/// A readable name for a rate key that never includes the key's secret part
/// (a webhook key is a credential).
fn rate_kind(key: &str) -> &str {
    match key.split(':').next() {
        Some("webhook") => "webhook robot",
        Some("member") => "app messages per member",
        Some("appchat") => "app group messages per chat",
        Some("api") => "calls per API",
        Some("longconn") => "smart-bot answers and pushes per conversation",
        _ => "limit",
    }
}

/// The row's payload in its route's shape (the one [`Payload`] every writer
/// stores through `store::outbox::enqueue`).
fn decode_payload(message: &ClaimedMessage) -> Result<Payload, Outcome> {
    Payload::decode(message.route, &message.payload_json).map_err(|error| Outcome::Dead {
        // Position only: the payload is message content and stays out of logs.
        reason: format!(
            "payload is not a valid {} message ({:?} error at line {} column {})",
            message.route,
            error.classify(),
            error.line(),
            error.column()
        ),
    })
}

struct Prepared<'a> {
    rate_keys: Vec<(String, u32)>,
    /// The scope WeCom's 45009/45033 applies to: the API (per corp), or for
    /// a group robot the robot's key.
    pause_key: String,
    call: Call<'a>,
}

enum Call<'a> {
    Member {
        secret: &'a Secret,
        message: AppMessage,
    },
    AppGroup {
        secret: &'a Secret,
        message: AppChatSend,
    },
    Webhook {
        key: &'a str,
        message: WebhookMessage,
    },
    SmartBot {
        response_url: &'a str,
        response: BotResponse,
    },
    Mass {
        secret: &'a Secret,
        template: AddMsgTemplate,
    },
    Welcome {
        secret: &'a Secret,
        message: WelcomeMessage,
    },
    AppChatRemove {
        secret: &'a Secret,
        update: AppChatUpdate,
    },
    CustomerTag {
        secret: &'a Secret,
        change: TagChange,
    },
    LongConn(crate::jobs::longconn::Reply),
}

enum Delivered {
    Sent { msgid: Option<String> },
    AwaitingConfirmation { msgid: String },
}

/// The loop: a full batch is followed by the next pass at once. A shutdown
/// lets the row being sent finish and hands the rest of the batch back.
impl Job for OutboxSender {
    type Outcome = SendOutcome;

    fn name(&self) -> &'static str {
        let urgent_only = self
            .settings
            .routes
            .as_deref()
            .is_some_and(|routes| routes.iter().all(|route| is_urgent(*route)));
        if urgent_only {
            "sender-urgent"
        } else {
            "sender"
        }
    }

    /// The sender reads the clock itself, before each row (a pass can be long).
    async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<SendOutcome> {
        OutboxSender::run_once(self).await
    }

    fn more_waiting(&self, outcome: &SendOutcome) -> bool {
        outcome.claimed >= self.settings.batch_size as usize
    }

    fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_attempt_up_to_the_cap() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(60);
        let full: Vec<i64> = (1..=6).map(|a| backoff_secs(base, cap, a, 1.0)).collect();
        assert_eq!(full, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff_secs(base, cap, 3, 0.5), 10);
        assert_eq!(backoff_secs(Duration::ZERO, cap, 1, 1.0), 1, "never zero");
        assert_eq!(backoff_secs(base, cap, i64::MAX, 1.0), 60);
    }

    #[test]
    fn rate_kind_never_shows_the_key() {
        assert_eq!(rate_kind("webhook:secret-key"), "webhook robot");
        assert_eq!(rate_kind("member:ops:zhangsan"), "app messages per member");
    }
}
