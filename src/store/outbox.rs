//! The outbox: messages decided on and waiting to be delivered.
//!
//! Life of a row: `pending` → claimed by a sender (`in_flight`, with a lease)
//! → `sent` | `awaiting_confirmation` (customer-group mass messages, until the
//! owner confirms) | back to `pending` (retry later) | `failed` (configuration
//! problem, waits for a manager) | `dead` (undeliverable or out of attempts).
//! `skipped` rows were never sendable on their route (or their moment passed
//! before their turn, like a welcome code's 20 s) and say why. A lease that
//! expires (sender crashed) makes the row claimable again. Every transition
//! out of `in_flight` checks the lease owner, so a sender whose lease was taken
//! over cannot overwrite the newer outcome.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::outbound::{plan_broadcast, Broadcast, OutboxEntry};
use crate::rules::Outbound;

/// How a message reaches WeCom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Route {
    /// `appchat/send` to an internal group the app created.
    AppGroup,
    /// Group robot `webhook/send?key=`.
    Webhook,
    /// A smart bot's one-shot `response_url`.
    SmartBot,
    /// `add_msg_template` to customer groups; the owner must confirm.
    CustomerGroupMass,
    /// `message/send` to members (1:1 with the app).
    Member,
    /// `send_welcome_msg` to a new customer (20 s window).
    WelcomeCode,
    /// `appchat/update` removing a member (`del_user_list`) from a chat the app created.
    AppChatRemove,
    /// `externalcontact/mark_tag` on an external contact (member tags synced).
    CustomerTag,
    /// `add_msg_template` 1:1 to one owner's external contacts; the owner must confirm.
    CustomerMass,
}

impl Route {
    pub const ALL: [Route; 9] = [
        Route::AppGroup,
        Route::Webhook,
        Route::SmartBot,
        Route::CustomerGroupMass,
        Route::Member,
        Route::WelcomeCode,
        Route::AppChatRemove,
        Route::CustomerTag,
        Route::CustomerMass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::AppGroup => "app_group",
            Route::Webhook => "webhook",
            Route::SmartBot => "smart_bot",
            Route::CustomerGroupMass => "customer_group_mass",
            Route::Member => "member",
            Route::WelcomeCode => "welcome_code",
            Route::AppChatRemove => "app_chat_remove",
            Route::CustomerTag => "customer_tag",
            Route::CustomerMass => "customer_mass",
        }
    }

    /// Claim order: welcome codes expire 20 s after the event, smart-bot
    /// users are waiting for an answer, everything else can queue.
    pub fn priority(self) -> i64 {
        match self {
            Route::WelcomeCode => 10,
            Route::SmartBot => 5,
            _ => 0,
        }
    }

    /// Whether sending this row again after a sender stopped mid-call cannot
    /// make WeCom deliver it twice: `message/send` deduplicates identical
    /// content (`enable_duplicate_check`), welcome codes and smart-bot
    /// `response_url`s are single-use, and removing a member twice removes
    /// them once, as does tagging a contact twice. Group chats, robots and
    /// mass-message tasks would repeat.
    pub fn resend_after_crash_is_safe(self) -> bool {
        match self {
            Route::Member
            | Route::WelcomeCode
            | Route::SmartBot
            | Route::AppChatRemove
            | Route::CustomerTag => true,
            Route::AppGroup | Route::Webhook | Route::CustomerGroupMass | Route::CustomerMass => {
                false
            }
        }
    }

    /// [`Self::resend_after_crash_is_safe`] for one row: a smart-bot answer
    /// over the long connection (target `longconn:…`) has no one-shot code,
    /// so a second send would post twice.
    pub fn resend_after_crash_is_safe_for(self, target: &str) -> bool {
        self.resend_after_crash_is_safe()
            && !target.starts_with(crate::wecom::longconn::ADDRESS_PREFIX)
    }

    /// [`Route::resend_after_crash_is_safe_for`] as an SQL condition on a row.
    fn resend_safe_sql() -> String {
        let names: Vec<String> = Route::ALL
            .iter()
            .filter(|route| route.resend_after_crash_is_safe())
            .map(|route| format!("'{}'", route.as_str()))
            .collect();
        format!(
            "(route in ({}) and target not like '{}%')",
            names.join(", "),
            crate::wecom::longconn::ADDRESS_PREFIX
        )
    }

    /// Targets that are credentials or one-shot URLs are not printed whole.
    fn target_is_sensitive(self) -> bool {
        matches!(self, Route::Webhook | Route::SmartBot | Route::WelcomeCode)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    InFlight,
    Sent,
    AwaitingConfirmation,
    Failed,
    Dead,
    Skipped,
}

impl OutboxStatus {
    pub const ALL: [OutboxStatus; 7] = [
        OutboxStatus::Pending,
        OutboxStatus::InFlight,
        OutboxStatus::Sent,
        OutboxStatus::AwaitingConfirmation,
        OutboxStatus::Failed,
        OutboxStatus::Dead,
        OutboxStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::InFlight => "in_flight",
            OutboxStatus::Sent => "sent",
            OutboxStatus::AwaitingConfirmation => "awaiting_confirmation",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Dead => "dead",
            OutboxStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox status {0:?} (expected one of pending, in_flight, sent, awaiting_confirmation, failed, dead, skipped)")]
pub struct UnknownStatus(String);

impl std::str::FromStr for OutboxStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OutboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

/// The columns of a new row (see [`insert_row`]).
#[derive(Debug, Clone)]
pub struct NewOutboxMessage<'a> {
    /// Natural key of the effect, e.g. `push:{schedule}:{fire_time}:{chat}`.
    pub idempotency_key: &'a str,
    pub route: Route,
    pub target: &'a str,
    /// Name of the configured app (secret, agent id); `None` for webhook and
    /// smart-bot rows, and for contact routes using the contacts secret.
    pub app: Option<&'a str>,
    pub payload_json: &'a str,
    pub created_at: i64,
    /// Earliest send time; `None` = now.
    pub not_before: Option<i64>,
    /// Set for effects the route cannot deliver (e.g. a welcome into a
    /// customer group): the row is stored as `skipped` with this reason so the
    /// manager sees it.
    pub skip_reason: Option<&'a str>,
    /// When the event this row answers happened, for routes whose validity
    /// runs from it (a welcome code: 20 s); `None` for the others.
    pub event_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(i64),
    /// The key was already in the outbox; nothing was added.
    Duplicate,
}

/// Queues an outgoing message in the caller's transaction, unless its
/// idempotency key is known (then nothing is added). A message its route
/// cannot post is stored as `skipped` with the reason, so a manager sees it.
/// `default_app` is the configured app that posts to app groups (see
/// [`OutboxEntry::of`]).
pub async fn enqueue(
    conn: &mut SqliteConnection,
    message: &Outbound,
    default_app: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Enqueued> {
    let entry = OutboxEntry::of(message, default_app);
    let payload = entry
        .payload_json()
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    insert_row(conn, &new_row(message, &entry, &payload, now)).await
}

/// [`enqueue`] for many messages at once (a push to thousands of chats), in
/// a few multi-row inserts. Returns how many rows were added.
pub async fn enqueue_all(
    conn: &mut SqliteConnection,
    messages: &[Outbound],
    default_app: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let entries: Vec<(OutboxEntry, String)> = messages
        .iter()
        .map(|message| {
            let entry = OutboxEntry::of(message, default_app);
            let payload = entry
                .payload_json()
                .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
            Ok((entry, payload))
        })
        .collect::<sqlx::Result<_>>()?;
    let rows: Vec<NewOutboxMessage<'_>> = messages
        .iter()
        .zip(&entries)
        .map(|(message, (entry, payload))| new_row(message, entry, payload, now))
        .collect();
    insert_rows(conn, &rows).await
}

fn new_row<'a>(
    message: &'a Outbound,
    entry: &'a OutboxEntry,
    payload: &'a str,
    now: DateTime<Utc>,
) -> NewOutboxMessage<'a> {
    NewOutboxMessage {
        idempotency_key: &message.idempotency_key,
        route: entry.route,
        target: &entry.target,
        app: entry.app.as_deref(),
        payload_json: payload,
        created_at: now.timestamp(),
        not_before: message.not_before.map(|at| at.timestamp()),
        skip_reason: entry.skip_reason.as_deref(),
        event_at: entry.event_at,
    }
}

/// What [`enqueue_broadcast`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastQueued {
    /// One message per addressed chat, as planned (route, skip reason).
    pub planned: Vec<Outbound>,
    /// Rows added (fewer than planned when this broadcast was queued before).
    pub added: u64,
}

/// Plans a manager's broadcast against the chat registry
/// ([`crate::outbound::plan_broadcast`]) and queues it, all in the caller's
/// transaction (the operations layer adds its audit row to the same one).
pub async fn enqueue_broadcast(
    conn: &mut SqliteConnection,
    broadcast: &Broadcast,
    default_app: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<BroadcastQueued> {
    let registered = crate::store::schedules::push_chats(conn).await?;
    let planned = plan_broadcast(broadcast, &registered);
    let added = enqueue_all(conn, &planned, default_app, now).await?;
    Ok(BroadcastQueued { planned, added })
}

/// Inserts a row as given unless its idempotency key is known. Writers use
/// [`enqueue`]; this is the primitive under it (and lets tests store rows
/// an older release, or a broken writer, could have left).
pub async fn insert_row(
    conn: &mut SqliteConnection,
    message: &NewOutboxMessage<'_>,
) -> sqlx::Result<Enqueued> {
    let status = if message.skip_reason.is_some() {
        OutboxStatus::Skipped
    } else {
        OutboxStatus::Pending
    };
    let id: Option<i64> = sqlx::query_scalar(
        "insert into outbox (idempotency_key, route, target, app, payload_json, priority, status,
                             next_attempt_at, last_error, created_at, updated_at, event_at)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (idempotency_key) do nothing
         returning id",
    )
    .bind(message.idempotency_key)
    .bind(message.route)
    .bind(message.target)
    .bind(message.app)
    .bind(message.payload_json)
    .bind(message.route.priority())
    .bind(status)
    .bind(message.not_before.unwrap_or(message.created_at))
    .bind(message.skip_reason)
    .bind(message.created_at)
    .bind(message.created_at)
    .bind(message.event_at)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map_or(Enqueued::Duplicate, Enqueued::New))
}

/// 12 values per row: 500 rows stay far below SQLite's bound-parameter limit.
const ENQUEUE_ROWS_PER_INSERT: usize = 500;

/// [`insert_row`] for many rows at once, with the same semantics: a known
/// idempotency key adds nothing, a `skip_reason` stores the row as
/// `skipped`. Returns how many rows were added.
pub async fn insert_rows(
    conn: &mut SqliteConnection,
    messages: &[NewOutboxMessage<'_>],
) -> sqlx::Result<u64> {
    let mut added = 0;
    for chunk in messages.chunks(ENQUEUE_ROWS_PER_INSERT) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into outbox (idempotency_key, route, target, app, payload_json, priority, status,
                                 next_attempt_at, last_error, created_at, updated_at, event_at) ",
        );
        builder.push_values(chunk, |mut row, message| {
            let status = if message.skip_reason.is_some() {
                OutboxStatus::Skipped
            } else {
                OutboxStatus::Pending
            };
            row.push_bind(message.idempotency_key)
                .push_bind(message.route)
                .push_bind(message.target)
                .push_bind(message.app)
                .push_bind(message.payload_json)
                .push_bind(message.route.priority())
                .push_bind(status)
                .push_bind(message.not_before.unwrap_or(message.created_at))
                .push_bind(message.skip_reason)
                .push_bind(message.created_at)
                .push_bind(message.created_at)
                .push_bind(message.event_at);
        });
        builder.push(" on conflict (idempotency_key) do nothing");
        added += builder.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(added)
}

/// A row a sender has leased.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: i64,
    pub idempotency_key: String,
    pub route: Route,
    pub target: String,
    pub app: Option<String>,
    pub payload_json: String,
    pub priority: i64,
    /// Including the attempt this claim starts.
    pub attempts: i64,
    pub created_at: i64,
    /// When an earlier call for this row started whose answer was lost (it
    /// may have been delivered); `None` when every earlier call was answered.
    pub answer_lost_at: Option<i64>,
    /// When the event it answers happened, where the route's validity runs
    /// from it (see [`NewOutboxMessage::event_at`]).
    pub event_at: Option<i64>,
}

/// Why a row is parked after its sender stopped mid-call (see `park_uncertain`).
pub const UNCERTAIN_REASON: &str = "uncertain: the sender stopped during the WeCom call \
     (crash or restart), so WeCom may already have delivered this message; it is not \
     sent again automatically. Check the chat, and retry it here if it is missing.";

/// Leases up to `limit` due rows to `owner` until `now + lease_secs` and counts
/// the attempt. Due means pending with `next_attempt_at <= now`, or in flight
/// with an expired lease (its sender died) when either its call never started
/// or sending it again is harmless (`Route::resend_after_crash_is_safe`).
/// Highest priority first, then the oldest event (a welcome code's 20 s run
/// from its event), then the longest due. One statement, so two senders never
/// claim the same row.
pub async fn claim_due(
    conn: &mut SqliteConnection,
    now: i64,
    lease_secs: i64,
    owner: &str,
    limit: i64,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    claim_due_on_routes(conn, now, lease_secs, owner, limit, None).await
}

/// `and route in (…)` for a sender limited to some routes; empty for all.
fn route_filter(routes: Option<&[Route]>) -> String {
    match routes {
        None => String::new(),
        Some(routes) => {
            let names: Vec<String> = routes
                .iter()
                .map(|route| format!("'{}'", route.as_str()))
                .collect();
            format!(" and route in ({})", names.join(", "))
        }
    }
}

/// [`claim_due`] for a sender that handles only `routes` (`None`: all).
pub async fn claim_due_on_routes(
    conn: &mut SqliteConnection,
    now: i64,
    lease_secs: i64,
    owner: &str,
    limit: i64,
    routes: Option<&[Route]>,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    let sql = format!(
        "update outbox
         set status = 'in_flight', lease_owner = ?1, lease_expires_at = ?2 + ?3,
             attempts = attempts + 1, updated_at = ?2, call_started_at = null
         where id in (
             select id from outbox
             where ((status = 'pending' and next_attempt_at <= ?2)
                or (status = 'in_flight' and lease_expires_at <= ?2
                    and (call_started_at is null or {safe}))){only}
             order by priority desc, coalesce(event_at, next_attempt_at), id
             limit ?4)
         returning id, idempotency_key, route, target, app, payload_json, priority, attempts,
                   created_at, answer_lost_at, event_at",
        safe = Route::resend_safe_sql(),
        only = route_filter(routes),
    );
    let mut claimed: Vec<ClaimedMessage> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(now)
        .bind(lease_secs)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    // RETURNING gives no order guarantee.
    claimed.sort_by_key(|m| {
        (
            std::cmp::Reverse(m.priority),
            m.event_at.unwrap_or(i64::MIN),
            m.id,
        )
    });
    Ok(claimed)
}

/// Notes that the WeCom call for a leased row is about to start and sets the
/// row's own lease to `lease_until` (long enough for this one call). Returns
/// false if `owner` no longer holds the lease (then the call must not be made).
pub async fn mark_call_started(
    conn: &mut SqliteConnection,
    id: i64,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update outbox set call_started_at = ?, lease_expires_at = ?
         where id = ? and status = 'in_flight' and lease_owner = ?",
    )
    .bind(now)
    .bind(lease_until)
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// In-flight rows whose sender is gone, as a recovery finds them.
#[derive(Debug, Clone, Copy)]
enum Abandoned<'a> {
    /// Their lease ran out (the sender stopped, in this process or another).
    LeaseExpired { now: i64 },
    /// Held by any owner but this one: at start-up, a previous process.
    HeldByOthers { owner: &'a str },
}

impl<'a> Abandoned<'a> {
    /// `update outbox set <set> where status = 'in_flight' and <this>
    /// and <only>`; the caller adds its own conditions and runs it.
    fn update(
        self,
        set: impl FnOnce(&mut sqlx::QueryBuilder<'a, sqlx::Sqlite>),
    ) -> sqlx::QueryBuilder<'a, sqlx::Sqlite> {
        let mut query = sqlx::QueryBuilder::new("update outbox set ");
        set(&mut query);
        query.push(", lease_owner = null, lease_expires_at = null where status = 'in_flight' and ");
        match self {
            Abandoned::LeaseExpired { now } => query.push("lease_expires_at <= ").push_bind(now),
            Abandoned::HeldByOthers { owner } => query.push("lease_owner is not ").push_bind(owner),
        };
        query
    }

    /// Parks the rows whose call had started on a route where a second call
    /// could deliver twice: `dead`, with [`UNCERTAIN_REASON`], for a person
    /// to check and retry by hand.
    async fn park_uncertain(
        self,
        conn: &mut SqliteConnection,
        now: i64,
        routes: Option<&[Route]>,
    ) -> sqlx::Result<u64> {
        let mut query = self.update(|set| {
            set.push("status = 'dead', last_error = ")
                .push_bind(UNCERTAIN_REASON);
            set.push(", updated_at = ").push_bind(now);
        });
        query.push(" and call_started_at is not null and not ");
        query
            .push(Route::resend_safe_sql())
            .push(route_filter(routes));
        Ok(query.build().execute(&mut *conn).await?.rows_affected())
    }
}

/// Parks rows whose sender stopped during the WeCom call (its lease ran out)
/// on a route where a second send could deliver twice: `dead`, with
/// `UNCERTAIN_REASON`, for a person to check and retry by hand. Returns how
/// many were parked.
pub async fn park_uncertain(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<u64> {
    Abandoned::LeaseExpired { now }
        .park_uncertain(conn, now, None)
        .await
}

/// What [`recover_abandoned`] did with the rows a previous process held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Their call never started: pending again, due now, the attempt given back.
    pub never_started: u64,
    /// Their call started on a route where sending again cannot deliver
    /// twice: pending again, due now, marked as "answer lost".
    pub resent: u64,
    /// Their call started on a route where a second call could post twice:
    /// dead with [`UNCERTAIN_REASON`], for a person.
    pub uncertain: u64,
}

impl Recovered {
    pub fn total(&self) -> u64 {
        self.never_started + self.resent + self.uncertain
    }
}

/// At start-up: every row of `routes` (`None`: all) still `in_flight` under
/// another owner was held by a process that is gone (one `qunyun serve` per
/// database), so it is recovered at once instead of after its lease. Call in
/// one transaction.
pub async fn recover_abandoned(
    conn: &mut SqliteConnection,
    owner: &str,
    now: i64,
    routes: Option<&[Route]>,
) -> sqlx::Result<Recovered> {
    let abandoned = Abandoned::HeldByOthers { owner };
    let mut never_started = abandoned.update(|set| {
        set.push("status = 'pending', next_attempt_at = ")
            .push_bind(now);
        set.push(", attempts = max(attempts - 1, 0), updated_at = ")
            .push_bind(now);
    });
    never_started
        .push(" and call_started_at is null")
        .push(route_filter(routes));
    let never_started = never_started
        .build()
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let mut resend = abandoned.update(|set| {
        set.push("status = 'pending', next_attempt_at = ")
            .push_bind(now);
        set.push(", updated_at = ").push_bind(now);
        set.push(", answer_lost_at = coalesce(answer_lost_at, call_started_at)");
        set.push(", last_error = 'the sender stopped during the WeCom call; sent again'");
        set.push(", call_started_at = null");
    });
    resend.push(" and call_started_at is not null and ");
    resend
        .push(Route::resend_safe_sql())
        .push(route_filter(routes));
    let resent = resend.build().execute(&mut *conn).await?.rows_affected();
    let uncertain = abandoned.park_uncertain(conn, now, routes).await?;
    Ok(Recovered {
        never_started,
        resent,
        uncertain,
    })
}

/// Prefix of `delivery_note` for rows WeCom confirmed by refusing a second
/// use of a one-shot code.
pub const CONFIRMED_BY_REFUSAL: &str = "confirmed by refusal";

/// What becomes of a leased row after its attempt: every transition out of
/// `in_flight`, written by the one [`finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered. `note` says why when it is not a plain success answer (see
    /// [`CONFIRMED_BY_REFUSAL`]).
    Sent {
        msgid: Option<String>,
        note: Option<String>,
    },
    /// The mass-message task exists; the owner still has to confirm it. The
    /// row is polled again at `next_poll_at`.
    AwaitingConfirmation { msgid: String, next_poll_at: i64 },
    /// Failed attempt; try again at `at`. The attempt stays counted.
    /// `answer_lost_at` is the start of this attempt's call when its answer
    /// was lost (WeCom may have acted); the earliest such time is kept.
    Retry {
        at: i64,
        error: String,
        answer_lost_at: Option<i64>,
    },
    /// Not sent because of a rate limit (ours, or WeCom's 45009), a shutdown
    /// or a lease running out: due again at `until`. Waiting is not a
    /// failure, so the claim's attempt is given back.
    Postpone { until: i64, reason: String },
    /// A configuration problem (secret, permission, trusted IP): parked until
    /// a manager fixes it and retries.
    Failed { reason: String },
    /// Undeliverable, out of attempts, or uncertain; the reason is kept.
    Dead { reason: String },
    /// Never sent because its moment passed before its turn (a welcome code's
    /// 20 s after the event): `skipped` with the reason, like rows written as
    /// skipped, so it neither waits for a retry nor counts as a delivery failure.
    Skipped { reason: String },
}

impl Outcome {
    pub fn status(&self) -> OutboxStatus {
        match self {
            Outcome::Sent { .. } => OutboxStatus::Sent,
            Outcome::AwaitingConfirmation { .. } => OutboxStatus::AwaitingConfirmation,
            Outcome::Retry { .. } | Outcome::Postpone { .. } => OutboxStatus::Pending,
            Outcome::Failed { .. } => OutboxStatus::Failed,
            Outcome::Dead { .. } => OutboxStatus::Dead,
            Outcome::Skipped { .. } => OutboxStatus::Skipped,
        }
    }
}

/// Records `outcome` for a row `owner` leased, and releases the lease.
/// Returns false (and changes nothing) if `owner` no longer holds the lease,
/// so a sender whose lease was taken over cannot overwrite the newer outcome.
pub async fn finish(
    conn: &mut SqliteConnection,
    id: i64,
    owner: &str,
    now: i64,
    outcome: &Outcome,
) -> sqlx::Result<bool> {
    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new("update outbox set status = ");
    query.push_bind(outcome.status());
    query.push(", updated_at = ").push_bind(now);
    match outcome {
        Outcome::Sent { msgid, note } => {
            query.push(", sent_at = ").push_bind(now);
            query.push(", wecom_msgid = ").push_bind(msgid.clone());
            query.push(", delivery_note = ").push_bind(note.clone());
            query.push(", last_error = null");
        }
        Outcome::AwaitingConfirmation {
            msgid,
            next_poll_at,
        } => {
            query.push(", wecom_msgid = ").push_bind(msgid.clone());
            query.push(", next_attempt_at = ").push_bind(*next_poll_at);
            query.push(", last_error = null");
        }
        Outcome::Retry {
            at,
            error,
            answer_lost_at,
        } => {
            query.push(", next_attempt_at = ").push_bind(*at);
            query.push(", last_error = ").push_bind(error.clone());
            query.push(", answer_lost_at = coalesce(answer_lost_at, ");
            query.push_bind(*answer_lost_at).push(")");
        }
        Outcome::Postpone { until, reason } => {
            query.push(", next_attempt_at = ").push_bind(*until);
            query.push(", last_error = ").push_bind(reason.clone());
            query.push(", attempts = max(attempts - 1, 0)");
        }
        Outcome::Failed { reason } | Outcome::Dead { reason } | Outcome::Skipped { reason } => {
            query.push(", last_error = ").push_bind(reason.clone());
        }
    }
    query.push(", lease_owner = null, lease_expires_at = null where id = ");
    query.push_bind(id);
    query.push(" and status = 'in_flight' and lease_owner = ");
    query.push_bind(owner.to_owned());
    Ok(query.build().execute(&mut *conn).await?.rows_affected() == 1)
}

/// A mass message waiting for its owner, due for a result poll.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AwaitingConfirmation {
    pub id: i64,
    pub target: String,
    pub app: Option<String>,
    pub wecom_msgid: String,
    pub updated_at: i64,
    pub created_at: i64,
}

/// Rows in `awaiting_confirmation` whose next poll is due. Polling only
/// reads from WeCom, so no lease is needed.
pub async fn due_confirmations(
    conn: &mut SqliteConnection,
    now: i64,
    limit: i64,
) -> sqlx::Result<Vec<AwaitingConfirmation>> {
    sqlx::query_as(
        "select id, target, app, wecom_msgid, updated_at, created_at from outbox
         where status = 'awaiting_confirmation' and next_attempt_at <= ? and wecom_msgid is not null
         order by next_attempt_at, id
         limit ?",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Ends a confirmation wait: `sent` (the owner sent it) or `dead` (never
/// confirmed, or every group failed) with a reason.
pub async fn finish_confirmation(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    status: OutboxStatus,
    note: Option<&str>,
) -> sqlx::Result<bool> {
    let sent_at = (status == OutboxStatus::Sent).then_some(now);
    let result = sqlx::query(
        "update outbox
         set status = ?, sent_at = coalesce(?, sent_at), last_error = ?, updated_at = ?
         where id = ? and status = 'awaiting_confirmation'",
    )
    .bind(status)
    .bind(sent_at)
    .bind(note)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Still waiting for the owner (or the poll failed): poll again at `next_poll_at`.
pub async fn reschedule_confirmation_poll(
    conn: &mut SqliteConnection,
    id: i64,
    next_poll_at: i64,
    note: Option<&str>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "update outbox set next_attempt_at = ?, last_error = ?
         where id = ? and status = 'awaiting_confirmation'",
    )
    .bind(next_poll_at)
    .bind(note)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// One outbox row as `qunyun outbox list` prints it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub route: Route,
    pub target: String,
    pub app: Option<String>,
    pub payload_json: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub wecom_msgid: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// Why a sent row counts as delivered without a success answer (see
    /// [`CONFIRMED_BY_REFUSAL`]).
    pub delivery_note: Option<String>,
}

impl OutboxRow {
    /// The target as safe to print: webhook keys, response URLs and welcome
    /// codes are credentials, so only their first characters are shown.
    pub fn display_target(&self) -> String {
        if self.route.target_is_sensitive() {
            let prefix: String = self.target.chars().take(6).collect();
            format!("{prefix}…")
        } else {
            self.target.clone()
        }
    }
}

fn format_time(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// One line per row, no message bodies (they may hold personal data).
impl fmt::Display for OutboxRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{id} {status} {route} target={target} app={app} attempts={attempts} created={created}",
            id = self.id,
            status = self.status,
            route = self.route,
            target = self.display_target(),
            app = self.app.as_deref().unwrap_or("-"),
            attempts = self.attempts,
            created = format_time(self.created_at),
        )?;
        match self.status {
            OutboxStatus::Pending | OutboxStatus::AwaitingConfirmation => {
                write!(f, " next={}", format_time(self.next_attempt_at))?
            }
            OutboxStatus::Sent => {
                if let Some(sent_at) = self.sent_at {
                    write!(f, " sent={}", format_time(sent_at))?
                }
            }
            _ => {}
        }
        if let Some(msgid) = &self.wecom_msgid {
            write!(f, " msgid={msgid}")?;
        }
        if let Some(note) = &self.delivery_note {
            write!(f, " note={note:?}")?;
        }
        if let Some(error) = &self.last_error {
            write!(f, " last_error={error:?}")?;
        }
        write!(f, " key={}", self.idempotency_key)
    }
}

const ROW_COLUMNS: &str = "id, idempotency_key, route, target, app, payload_json, status, attempts,
     next_attempt_at, last_error, wecom_msgid, created_at, sent_at, delivery_note";

/// Rows, newest first, optionally only one status (`qunyun outbox list [--status S]`).
pub async fn list(
    conn: &mut SqliteConnection,
    status: Option<OutboxStatus>,
) -> sqlx::Result<Vec<OutboxRow>> {
    let sql = format!(
        "select {ROW_COLUMNS} from outbox where ?1 is null or status = ?1 order by id desc"
    );
    sqlx::query_as(&sql)
        .bind(status)
        .fetch_all(&mut *conn)
        .await
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> sqlx::Result<Option<OutboxRow>> {
    let sql = format!("select {ROW_COLUMNS} from outbox where id = ?");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Back to pending with a fresh attempt budget, due now.
    Requeued,
    NotFound,
    /// Only `failed` and `dead` rows can be retried by hand.
    NotRetryable(OutboxStatus),
}

/// `qunyun outbox retry ID`: requeue a failed or dead row, due immediately,
/// with its attempt counter reset.
pub async fn retry(conn: &mut SqliteConnection, id: i64, now: i64) -> sqlx::Result<RetryOutcome> {
    let result = sqlx::query(
        "update outbox
         set status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?
         where id = ? and status in ('failed', 'dead')",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if result.rows_affected() == 1 {
        return Ok(RetryOutcome::Requeued);
    }
    Ok(match get(conn, id).await? {
        Some(row) => RetryOutcome::NotRetryable(row.status),
        None => RetryOutcome::NotFound,
    })
}

/// Requeue every row parked as uncertain (`park_uncertain`, or a timeout on a
/// route WeCom does not deduplicate), once a person has checked the chats.
pub async fn retry_uncertain(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "update outbox
         set status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?
         where status = 'dead' and last_error like 'uncertain:%'",
    )
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Requeue every `failed` row, e.g. after a secret or trusted IP was fixed.
pub async fn retry_all_failed(conn: &mut SqliteConnection, now: i64) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "update outbox
         set status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?
         where status = 'failed'",
    )
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Number of rows per status (for metrics and the console).
pub async fn count_by_status(
    conn: &mut SqliteConnection,
) -> sqlx::Result<Vec<(OutboxStatus, i64)>> {
    sqlx::query_as("select status, count(*) from outbox group by status order by status")
        .fetch_all(&mut *conn)
        .await
}

// ---- rate-limit log -----------------------------------------------------

/// Calls logged under `rate_key` after `since` (exclusive), and the oldest of
/// them (which decides when the window frees a slot).
pub async fn rate_window(
    conn: &mut SqliteConnection,
    rate_key: &str,
    since: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as("select count(*), min(at) from outbox_rate_log where rate_key = ? and at > ?")
        .bind(rate_key)
        .bind(since)
        .fetch_one(&mut *conn)
        .await
}

/// Logs one call at `at` under each key.
pub async fn record_calls(
    conn: &mut SqliteConnection,
    rate_keys: &[String],
    at: i64,
) -> sqlx::Result<()> {
    for key in rate_keys {
        sqlx::query("insert into outbox_rate_log (rate_key, at) values (?, ?)")
            .bind(key)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// An API-wide pause after WeCom's 45009/45033 (see [`api_gate`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiPause {
    pub rate_key: String,
    pub paused_until: i64,
    pub probe_started_at: Option<i64>,
    pub reason: String,
}

/// May a call to the API under `rate_key` start now? `Ok(())` when no pause
/// holds, or when this call becomes the one probe after a pause (recorded, so
/// no other call joins it; a probe older than `probe_stale_secs` is presumed
/// lost and replaced). Otherwise `Err(until)`: postpone to then. Call inside
/// the rate-reservation transaction.
pub async fn api_gate(
    conn: &mut SqliteConnection,
    rate_key: &str,
    now: i64,
    probe_stale_secs: i64,
) -> sqlx::Result<Result<(), (i64, String)>> {
    let pause: Option<ApiPause> = sqlx::query_as(
        "select rate_key, paused_until, probe_started_at, reason from outbox_api_pause
         where rate_key = ?",
    )
    .bind(rate_key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(pause) = pause else {
        return Ok(Ok(()));
    };
    if pause.paused_until > now {
        return Ok(Err((pause.paused_until, pause.reason)));
    }
    if let Some(started) = pause.probe_started_at {
        if started + probe_stale_secs > now {
            // Someone else's probe is out; wait for its answer.
            return Ok(Err((
                now + 1,
                format!("{} (waiting for the probe call)", pause.reason),
            )));
        }
    }
    sqlx::query("update outbox_api_pause set probe_started_at = ? where rate_key = ?")
        .bind(now)
        .bind(rate_key)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}

/// Pauses every call to the API under `rate_key` until `until` (a later
/// pause wins); the next call after it is a single probe.
pub async fn pause_api(
    conn: &mut SqliteConnection,
    rate_key: &str,
    until: i64,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into outbox_api_pause (rate_key, paused_until, probe_started_at, reason)
         values (?1, ?2, null, ?3)
         on conflict (rate_key) do update
         set paused_until = max(paused_until, ?2), probe_started_at = null, reason = ?3",
    )
    .bind(rate_key)
    .bind(until)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// WeCom answered a call under `rate_key` without a limit refusal: the pause
/// (if any) is over and the probe has done its job.
pub async fn resume_api(conn: &mut SqliteConnection, rate_key: &str) -> sqlx::Result<()> {
    sqlx::query("delete from outbox_api_pause where rate_key = ? and probe_started_at is not null")
        .bind(rate_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Outcomes as managers need them apart: a delivery WeCom confirmed only by
/// refusing a used code is delivered, an uncertain row may be, a dead one is
/// not, a failed one waits for a configuration fix.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct DeliveryCounts {
    /// Sent, including `confirmed_by_refusal`.
    pub sent: i64,
    pub confirmed_by_refusal: i64,
    /// Dead letters parked as `uncertain:` (may have been delivered).
    pub uncertain: i64,
    /// Dead letters that were not delivered.
    pub dead: i64,
    pub failed: i64,
}

pub async fn delivery_counts(conn: &mut SqliteConnection) -> sqlx::Result<DeliveryCounts> {
    sqlx::query_as(
        "select
             coalesce(sum(status = 'sent'), 0) as sent,
             coalesce(sum(status = 'sent' and delivery_note like ?1), 0) as confirmed_by_refusal,
             coalesce(sum(status = 'dead' and last_error like 'uncertain:%'), 0) as uncertain,
             coalesce(sum(status = 'dead' and coalesce(last_error, '') not like 'uncertain:%'), 0)
                 as dead,
             coalesce(sum(status = 'failed'), 0) as failed
         from outbox",
    )
    .bind(format!("{CONFIRMED_BY_REFUSAL}%"))
    .fetch_one(&mut *conn)
    .await
}

/// Sent rows whose delivery WeCom confirmed only by refusing a second use of
/// a one-shot code (for metrics and the console).
pub async fn count_confirmed_by_refusal(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from outbox where status = 'sent' and delivery_note like ?")
        .bind(format!("{CONFIRMED_BY_REFUSAL}%"))
        .fetch_one(&mut *conn)
        .await
}

/// Forgets calls at or before `before`; returns how many were removed.
pub async fn prune_rate_log(conn: &mut SqliteConnection, before: i64) -> sqlx::Result<u64> {
    // Hourly windows keep their calls an hour longer.
    let result = sqlx::query(
        "delete from outbox_rate_log where at <= ?1
            and (substr(rate_key, -length(?2)) != ?2 or at <= ?1 - ?3)",
    )
    .bind(before)
    .bind(HOURLY_RATE_SUFFIX)
    .bind(HOURLY_RATE_WINDOW_SECS)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// A rate key ending in this counts calls over an hour
/// ([`HOURLY_RATE_WINDOW_SECS`]) instead of a minute: the smart bot's long
/// connection allows 1000 an hour per conversation.
pub const HOURLY_RATE_SUFFIX: &str = "@hour";
pub const HOURLY_RATE_WINDOW_SECS: i64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqlitePool;

    async fn test_db() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("test.db"))
            .await
            .unwrap();
        (dir, pool)
    }

    fn message<'a>(key: &'a str, route: Route, target: &'a str) -> NewOutboxMessage<'a> {
        NewOutboxMessage {
            idempotency_key: key,
            route,
            target,
            app: Some("ops"),
            payload_json: r#"{"msgtype":"text","text":{"content":"hi"}}"#,
            created_at: 1_000,
            not_before: None,
            skip_reason: None,
            event_at: None,
        }
    }

    async fn enqueue_one(conn: &mut SqliteConnection, key: &str, route: Route) -> i64 {
        match insert_row(conn, &message(key, route, "target"))
            .await
            .unwrap()
        {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("unexpected duplicate {key}"),
        }
    }

    async fn status_of(conn: &mut SqliteConnection, id: i64) -> OutboxRow {
        get(conn, id).await.unwrap().unwrap()
    }

    /// Claims up to ten due rows for `owner` with a 60 s lease.
    async fn claim(conn: &mut SqliteConnection, now: i64, owner: &str) -> Vec<ClaimedMessage> {
        claim_due(conn, now, 60, owner, 10).await.unwrap()
    }

    /// `finish` for a row `owner` holds; true when the verdict was recorded.
    async fn settle(
        conn: &mut SqliteConnection,
        id: i64,
        owner: &str,
        now: i64,
        outcome: Outcome,
    ) -> bool {
        finish(conn, id, owner, now, &outcome).await.unwrap()
    }

    fn sent(msgid: Option<&str>) -> Outcome {
        Outcome::Sent {
            msgid: msgid.map(str::to_string),
            note: None,
        }
    }

    fn dead(reason: &str) -> Outcome {
        Outcome::Dead {
            reason: reason.to_string(),
        }
    }

    fn failed(reason: &str) -> Outcome {
        Outcome::Failed {
            reason: reason.to_string(),
        }
    }

    #[tokio::test]
    async fn enqueue_inserts_once_per_idempotency_key() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let first = insert_row(&mut conn, &message("k1", Route::Member, "zhangsan"))
            .await
            .unwrap();
        let again = insert_row(&mut conn, &message("k1", Route::Member, "lisi"))
            .await
            .unwrap();
        assert!(matches!(first, Enqueued::New(_)));
        assert_eq!(again, Enqueued::Duplicate);
        let rows = list(&mut conn, None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].target, "zhangsan");
        assert_eq!(rows[0].status, OutboxStatus::Pending);
        assert_eq!(rows[0].next_attempt_at, 1_000);
    }

    #[tokio::test]
    async fn enqueue_inside_a_rolled_back_transaction_leaves_nothing() {
        let (_dir, pool) = test_db().await;
        let mut tx = pool.begin().await.unwrap();
        insert_row(&mut tx, &message("k1", Route::Member, "zhangsan"))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        assert!(list(&mut conn, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn enqueue_with_skip_reason_stores_a_skipped_row_that_is_never_claimed() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let mut skipped = message("k1", Route::CustomerGroupMass, "owner");
        skipped.skip_reason = Some("customer groups cannot receive automatic welcomes");
        insert_row(&mut conn, &skipped).await.unwrap();
        let row = &list(&mut conn, Some(OutboxStatus::Skipped)).await.unwrap()[0];
        assert_eq!(row.last_error.as_deref(), skipped.skip_reason);
        assert!(claim(&mut conn, 5_000, "s1").await.is_empty());
    }

    #[tokio::test]
    async fn claim_due_leases_due_rows_priority_first_and_never_twice() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let member = enqueue_one(&mut conn, "a", Route::Member).await;
        let welcome = enqueue_one(&mut conn, "b", Route::WelcomeCode).await;
        let mut later = message("c", Route::Member, "t");
        later.not_before = Some(2_000);
        insert_row(&mut conn, &later).await.unwrap();

        let claimed = claim(&mut conn, 1_500, "s1").await;
        let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            [welcome, member],
            "welcome code first, future row not due"
        );
        assert!(claimed.iter().all(|m| m.attempts == 1));
        let row = status_of(&mut conn, member).await;
        assert_eq!(row.status, OutboxStatus::InFlight);

        // Another sender inside the lease gets nothing.
        assert!(claim(&mut conn, 1_550, "s2").await.is_empty());
    }

    #[tokio::test]
    async fn claim_due_respects_the_limit() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        for key in ["a", "b", "c"] {
            enqueue_one(&mut conn, key, Route::Member).await;
        }
        for expected in [2, 1] {
            let claimed = claim_due(&mut conn, 1_000, 60, "s1", 2).await.unwrap();
            assert_eq!(claimed.len(), expected);
        }
    }

    #[tokio::test]
    async fn claim_due_reclaims_expired_leases_and_the_old_owner_loses_its_say() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = enqueue_one(&mut conn, "a", Route::Member).await;
        claim(&mut conn, 1_000, "crashed").await;
        assert!(claim(&mut conn, 1_059, "s2").await.is_empty());
        let reclaimed = claim(&mut conn, 1_060, "s2").await;
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(reclaimed[0].attempts, 2);
        assert!(!settle(&mut conn, id, "crashed", 1_061, sent(None)).await);
        assert!(settle(&mut conn, id, "s2", 1_061, sent(Some("MSG"))).await);
    }

    #[tokio::test]
    async fn retry_uncertain_requeues_only_uncertain_dead_letters() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let uncertain = enqueue_one(&mut conn, "cut-off", Route::Webhook).await;
        let gone = enqueue_one(&mut conn, "gone", Route::Webhook).await;
        claim(&mut conn, 1_000, "s1").await;
        assert!(mark_call_started(&mut conn, uncertain, "s1", 1_001, 1_060)
            .await
            .unwrap());
        assert!(
            settle(
                &mut conn,
                gone,
                "s1",
                1_001,
                dead("93000 invalid webhook key")
            )
            .await
        );
        assert_eq!(park_uncertain(&mut conn, 1_060).await.unwrap(), 1);

        assert_eq!(retry_uncertain(&mut conn, 1_070).await.unwrap(), 1);
        let row = status_of(&mut conn, uncertain).await;
        assert_eq!(
            (row.status, row.attempts, row.next_attempt_at),
            (OutboxStatus::Pending, 0, 1_070)
        );
        assert_eq!(status_of(&mut conn, gone).await.status, OutboxStatus::Dead);
        assert_eq!(retry_uncertain(&mut conn, 1_071).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_call_cut_off_mid_flight_is_resent_only_where_wecom_deduplicates() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let robot = enqueue_one(&mut conn, "robot", Route::Webhook).await;
        let member = enqueue_one(&mut conn, "member", Route::Member).await;
        let untouched = enqueue_one(&mut conn, "untouched", Route::AppGroup).await;
        claim(&mut conn, 1_000, "crashed").await;
        for id in [robot, member] {
            assert!(mark_call_started(&mut conn, id, "crashed", 1_001, 1_060)
                .await
                .unwrap());
        }
        assert!(
            !mark_call_started(&mut conn, untouched, "someone-else", 1_001, 1_060)
                .await
                .unwrap()
        );

        // Nothing happens while the leases hold. Once expired, the rows
        // whose resend is harmless (or whose call never started) are claimed
        // again; the robot row is not, and parking makes it visible.
        assert_eq!(park_uncertain(&mut conn, 1_059).await.unwrap(), 0);
        let mut ids: Vec<i64> = claim(&mut conn, 1_060, "s2")
            .await
            .iter()
            .map(|m| m.id)
            .collect();
        ids.sort();
        assert_eq!(ids, [member, untouched]);
        assert_eq!(park_uncertain(&mut conn, 1_060).await.unwrap(), 1);
        let parked = status_of(&mut conn, robot).await;
        assert_eq!(parked.status, OutboxStatus::Dead);
        assert_eq!(parked.last_error.as_deref(), Some(UNCERTAIN_REASON));

        // A manager's retry sends it again, with a clean call marker.
        assert_eq!(
            retry(&mut conn, robot, 1_100).await.unwrap(),
            RetryOutcome::Requeued
        );
        assert_eq!(claim(&mut conn, 1_100, "s2").await.len(), 1);
        assert_eq!(park_uncertain(&mut conn, 1_200).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn mark_sent_records_time_and_msgid() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = enqueue_one(&mut conn, "a", Route::Member).await;
        claim(&mut conn, 1_000, "s1").await;
        assert!(settle(&mut conn, id, "s1", 1_001, sent(Some("MSG1"))).await);
        let row = status_of(&mut conn, id).await;
        assert_eq!(row.status, OutboxStatus::Sent);
        assert_eq!(row.sent_at, Some(1_001));
        assert_eq!(row.wecom_msgid.as_deref(), Some("MSG1"));
        // Sent rows are never claimed again.
        assert!(claim(&mut conn, 9_999, "s1").await.is_empty());
    }

    #[tokio::test]
    async fn mark_retry_keeps_the_attempt_and_reschedules() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = enqueue_one(&mut conn, "a", Route::Member).await;
        claim(&mut conn, 1_000, "s1").await;
        let retry_later = Outcome::Retry {
            at: 1_030,
            error: "WeCom errcode -1".to_string(),
            answer_lost_at: None,
        };
        assert!(settle(&mut conn, id, "s1", 1_001, retry_later).await);
        let row = status_of(&mut conn, id).await;
        assert_eq!(
            (row.status, row.attempts, row.next_attempt_at),
            (OutboxStatus::Pending, 1, 1_030)
        );
        assert_eq!(row.last_error.as_deref(), Some("WeCom errcode -1"));
        assert!(claim(&mut conn, 1_029, "s1").await.is_empty());
        assert_eq!(claim(&mut conn, 1_030, "s1").await[0].attempts, 2);
    }

    #[tokio::test]
    async fn postpone_gives_the_attempt_back() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = enqueue_one(&mut conn, "a", Route::Webhook).await;
        claim(&mut conn, 1_000, "s1").await;
        let postpone = Outcome::Postpone {
            until: 1_060,
            reason: "rate limit".to_string(),
        };
        assert!(settle(&mut conn, id, "s1", 1_000, postpone).await);
        let row = status_of(&mut conn, id).await;
        assert_eq!(
            (row.status, row.attempts, row.next_attempt_at),
            (OutboxStatus::Pending, 0, 1_060)
        );
    }

    #[tokio::test]
    async fn mark_failed_and_mark_dead_keep_their_reason() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let failing = enqueue_one(&mut conn, "a", Route::Member).await;
        let gone = enqueue_one(&mut conn, "b", Route::Member).await;
        claim(&mut conn, 1_000, "s1").await;
        assert!(settle(&mut conn, failing, "s1", 1_001, failed("errcode 60020")).await);
        assert!(settle(&mut conn, gone, "s1", 1_001, dead("errcode 81013")).await);
        assert_eq!(
            status_of(&mut conn, failing).await.status,
            OutboxStatus::Failed
        );
        let row = status_of(&mut conn, gone).await;
        assert_eq!(row.status, OutboxStatus::Dead);
        assert_eq!(row.last_error.as_deref(), Some("errcode 81013"));
        // Not in flight any more: a second verdict changes nothing.
        assert!(!settle(&mut conn, gone, "s1", 1_002, sent(None)).await);
    }

    #[tokio::test]
    async fn confirmation_rows_are_polled_then_finished() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let id = enqueue_one(&mut conn, "a", Route::CustomerGroupMass).await;
        claim(&mut conn, 1_000, "s1").await;
        let awaiting = Outcome::AwaitingConfirmation {
            msgid: "msgGROUP".to_string(),
            next_poll_at: 1_600,
        };
        assert!(settle(&mut conn, id, "s1", 1_001, awaiting).await);
        assert!(claim(&mut conn, 9_999, "s1").await.is_empty());

        assert!(due_confirmations(&mut conn, 1_599, 10)
            .await
            .unwrap()
            .is_empty());
        let due = due_confirmations(&mut conn, 1_600, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].wecom_msgid, "msgGROUP");

        assert!(
            reschedule_confirmation_poll(&mut conn, id, 2_200, Some("0/1 sent"))
                .await
                .unwrap()
        );
        assert!(due_confirmations(&mut conn, 2_199, 10)
            .await
            .unwrap()
            .is_empty());

        assert!(
            finish_confirmation(&mut conn, id, 2_200, OutboxStatus::Sent, None)
                .await
                .unwrap()
        );
        let row = status_of(&mut conn, id).await;
        assert_eq!((row.status, row.sent_at), (OutboxStatus::Sent, Some(2_200)));
        assert!(
            !finish_confirmation(&mut conn, id, 2_300, OutboxStatus::Dead, Some("x"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn list_filters_by_status_newest_first() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let a = enqueue_one(&mut conn, "a", Route::Member).await;
        let b = enqueue_one(&mut conn, "b", Route::Member).await;
        claim_due(&mut conn, 1_000, 60, "s1", 1).await.unwrap();
        settle(&mut conn, a, "s1", 1_001, sent(None)).await;
        let all: Vec<i64> = list(&mut conn, None)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(all, [b, a]);
        let pending = list(&mut conn, Some(OutboxStatus::Pending)).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, b);
        assert!(list(&mut conn, Some(OutboxStatus::Dead))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn printed_rows_hide_webhook_keys_and_bodies() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let key = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
        insert_row(&mut conn, &message("a", Route::Webhook, key))
            .await
            .unwrap();
        let line = list(&mut conn, None).await.unwrap()[0].to_string();
        assert!(!line.contains(key), "{line}");
        assert!(!line.contains("hi"), "{line}");
        assert!(line.contains("pending webhook"), "{line}");
        assert_eq!("dead".parse::<OutboxStatus>(), Ok(OutboxStatus::Dead));
        assert!("nope".parse::<OutboxStatus>().is_err());
    }

    #[tokio::test]
    async fn retry_requeues_failed_and_dead_rows_only() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let gone = enqueue_one(&mut conn, "a", Route::Member).await;
        let pending = enqueue_one(&mut conn, "b", Route::Member).await;
        claim_due(&mut conn, 1_000, 60, "s1", 1).await.unwrap();
        settle(&mut conn, gone, "s1", 1_001, dead("gone")).await;

        assert_eq!(
            retry(&mut conn, gone, 5_000).await.unwrap(),
            RetryOutcome::Requeued
        );
        let row = status_of(&mut conn, gone).await;
        assert_eq!(
            (row.status, row.attempts, row.next_attempt_at),
            (OutboxStatus::Pending, 0, 5_000)
        );
        assert_eq!(
            retry(&mut conn, pending, 5_000).await.unwrap(),
            RetryOutcome::NotRetryable(OutboxStatus::Pending)
        );
        assert_eq!(
            retry(&mut conn, 999, 5_000).await.unwrap(),
            RetryOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn retry_all_failed_requeues_every_failed_row() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let mut ids = Vec::new();
        for key in ["a", "b", "c"] {
            ids.push(enqueue_one(&mut conn, key, Route::Member).await);
        }
        claim(&mut conn, 1_000, "s1").await;
        settle(&mut conn, ids[0], "s1", 1_001, failed("60020")).await;
        settle(&mut conn, ids[1], "s1", 1_001, failed("60020")).await;
        settle(&mut conn, ids[2], "s1", 1_001, dead("81013")).await;
        assert_eq!(retry_all_failed(&mut conn, 2_000).await.unwrap(), 2);
        assert_eq!(
            status_of(&mut conn, ids[2]).await.status,
            OutboxStatus::Dead
        );
        assert_eq!(claim(&mut conn, 2_000, "s1").await.len(), 2);
    }

    #[tokio::test]
    async fn delivery_counts_keep_refusal_confirmed_uncertain_and_dead_apart() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let plain = enqueue_one(&mut conn, "plain", Route::Member).await;
        let refused = enqueue_one(&mut conn, "refused", Route::SmartBot).await;
        let cut_off = enqueue_one(&mut conn, "cut-off", Route::Webhook).await;
        let gone = enqueue_one(&mut conn, "gone", Route::Webhook).await;
        claim(&mut conn, 1_000, "s1").await;
        let confirmed_by_refusal = Outcome::Sent {
            msgid: None,
            note: Some(format!("{CONFIRMED_BY_REFUSAL}: 42022")),
        };
        settle(&mut conn, plain, "s1", 1_001, sent(None)).await;
        settle(&mut conn, refused, "s1", 1_001, confirmed_by_refusal).await;
        settle(&mut conn, cut_off, "s1", 1_001, dead(UNCERTAIN_REASON)).await;
        settle(&mut conn, gone, "s1", 1_001, dead("WeCom errcode 93000")).await;
        assert_eq!(
            delivery_counts(&mut conn).await.unwrap(),
            DeliveryCounts {
                sent: 2,
                confirmed_by_refusal: 1,
                uncertain: 1,
                dead: 1,
                failed: 0,
            }
        );
        assert_eq!(count_confirmed_by_refusal(&mut conn).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn recovery_at_start_up_frees_never_started_rows_at_once() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let idle = enqueue_one(&mut conn, "idle", Route::Member).await;
        let member = enqueue_one(&mut conn, "member", Route::Member).await;
        let robot = enqueue_one(&mut conn, "robot", Route::Webhook).await;
        claim_due(&mut conn, 1_000, 600, "old", 10).await.unwrap();
        for id in [member, robot] {
            assert!(mark_call_started(&mut conn, id, "old", 1_001, 1_600)
                .await
                .unwrap());
        }
        // Long before any lease expires.
        let recovered = recover_abandoned(&mut conn, "new", 1_005, None)
            .await
            .unwrap();
        assert_eq!(
            recovered,
            Recovered {
                never_started: 1,
                resent: 1,
                uncertain: 1
            }
        );
        let idle_row = status_of(&mut conn, idle).await;
        assert_eq!(
            (idle_row.status, idle_row.attempts, idle_row.next_attempt_at),
            (OutboxStatus::Pending, 0, 1_005)
        );
        assert_eq!(
            status_of(&mut conn, member).await.status,
            OutboxStatus::Pending
        );
        assert_eq!(status_of(&mut conn, robot).await.status, OutboxStatus::Dead);
        let claimed = claim(&mut conn, 1_005, "new").await;
        let lost: Vec<(i64, Option<i64>)> =
            claimed.iter().map(|m| (m.id, m.answer_lost_at)).collect();
        assert_eq!(lost, [(idle, None), (member, Some(1_001))]);
        // A second recovery leaves the new owner's rows alone.
        let again = recover_abandoned(&mut conn, "new", 1_006, None)
            .await
            .unwrap();
        assert_eq!(again.total(), 0);
    }

    #[tokio::test]
    async fn count_by_status_groups_rows() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let a = enqueue_one(&mut conn, "a", Route::Member).await;
        enqueue_one(&mut conn, "b", Route::Member).await;
        enqueue_one(&mut conn, "c", Route::Member).await;
        claim_due(&mut conn, 1_000, 60, "s1", 1).await.unwrap();
        settle(&mut conn, a, "s1", 1_000, sent(None)).await;
        let counts = count_by_status(&mut conn).await.unwrap();
        assert_eq!(
            counts,
            [(OutboxStatus::Pending, 2), (OutboxStatus::Sent, 1)]
        );
    }

    #[tokio::test]
    async fn rate_window_counts_calls_after_since_and_prune_forgets_old_ones() {
        let (_dir, pool) = test_db().await;
        let mut conn = pool.acquire().await.unwrap();
        let keys = vec!["webhook:k".to_owned(), "api:webhook/send".to_owned()];
        record_calls(&mut conn, &keys, 100).await.unwrap();
        record_calls(&mut conn, &keys[..1], 130).await.unwrap();
        let expected = [
            ("webhook:k", 99, (2, Some(100))),
            ("webhook:k", 100, (1, Some(130))),
            ("api:webhook/send", 99, (1, Some(100))),
            ("other", 0, (0, None)),
        ];
        for (key, since, window) in expected {
            assert_eq!(rate_window(&mut conn, key, since).await.unwrap(), window);
        }
        assert_eq!(prune_rate_log(&mut conn, 100).await.unwrap(), 2);
        assert_eq!(
            rate_window(&mut conn, "webhook:k", 0).await.unwrap(),
            (1, Some(130))
        );
    }
}
