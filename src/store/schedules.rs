//! Scheduled-push bookkeeping: per-schedule state (paused, checked through),
//! run rows (the unique claim of one fire) and per-chat delivery rows, plus the
//! reads behind `schedules runs|report`.
//!
//! A run row is unique per (schedule, fire time, kind). The scheduler inserts
//! it in the same transaction as the run's outbox rows, so a fire is planned
//! once or not at all, whatever crashes in between.

use std::collections::BTreeMap;

use sqlx::{Row, SqliteConnection};

use crate::rules::ChatRoute;
use crate::store::outbox::{OutboxStatus, Route};

/// A schedule's state as the scheduler keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    pub name: String,
    pub paused: bool,
    /// Fires at or before this instant (unix seconds) were handled.
    pub checked_through: i64,
}

/// The state of `name`, creating it (checked through `now`, not paused) when
/// the schedule is seen for the first time: a new schedule never fires for
/// times before it existed.
pub async fn state_or_activate(
    conn: &mut SqliteConnection,
    name: &str,
    now: i64,
) -> sqlx::Result<ScheduleState> {
    sqlx::query(
        "insert into schedule_state (name, paused, checked_through, updated_at)
         values (?1, 0, ?2, ?2) on conflict (name) do nothing",
    )
    .bind(name)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("select paused, checked_through from schedule_state where name = ?")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(ScheduleState {
        name: name.to_owned(),
        paused: row.try_get::<i64, _>("paused")? != 0,
        checked_through: row.try_get("checked_through")?,
    })
}

/// The state of `name`, if the scheduler has seen it.
pub async fn state(conn: &mut SqliteConnection, name: &str) -> sqlx::Result<Option<ScheduleState>> {
    let row = sqlx::query("select paused, checked_through from schedule_state where name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        Ok(ScheduleState {
            name: name.to_owned(),
            paused: row.try_get::<i64, _>("paused")? != 0,
            checked_through: row.try_get("checked_through")?,
        })
    })
    .transpose()
}

/// Records that fires up to `through` were handled.
pub async fn set_checked_through(
    conn: &mut SqliteConnection,
    name: &str,
    through: i64,
) -> sqlx::Result<()> {
    sqlx::query("update schedule_state set checked_through = ?2, updated_at = ?2 where name = ?1")
        .bind(name)
        .bind(through)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Pauses a schedule (creating its state if needed).
pub async fn pause(conn: &mut SqliteConnection, name: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "insert into schedule_state (name, paused, checked_through, updated_at)
         values (?1, 1, ?2, ?2)
         on conflict (name) do update set paused = 1, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Resumes a schedule. Fires that fell while it was paused are skipped, not
/// caught up: the schedule is checked through `now`.
pub async fn resume(conn: &mut SqliteConnection, name: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "insert into schedule_state (name, paused, checked_through, updated_at)
         values (?1, 0, ?2, ?2)
         on conflict (name) do update set paused = 0,
            checked_through = max(schedule_state.checked_through, excluded.checked_through),
            updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A cron fire.
    Scheduled,
    /// `schedules run NAME`.
    Manual,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Outbox rows were created.
    Planned,
    /// Not sent: too old when the scheduler saw it (downtime), or superseded.
    Missed,
    /// Not sent: inside the schedule's quiet hours.
    Quiet,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planned => "planned",
            RunStatus::Missed => "missed",
            RunStatus::Quiet => "quiet",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub schedule: &'a str,
    pub fire_at: i64,
    pub kind: RunKind,
    pub status: RunStatus,
    pub reason: Option<&'a str>,
    pub rule_set_version: Option<i64>,
    pub planned_at: i64,
}

/// Claims a fire: inserts the run row, or returns `None` when this (schedule,
/// fire time, kind) already has one.
pub async fn claim_run(conn: &mut SqliteConnection, run: &NewRun<'_>) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "insert into schedule_runs (schedule, fire_at, kind, status, reason, rule_set_version, planned_at)
         values (?, ?, ?, ?, ?, ?, ?)
         on conflict (schedule, fire_at, kind) do nothing
         returning id",
    )
    .bind(run.schedule)
    .bind(run.fire_at)
    .bind(run.kind)
    .bind(run.status)
    .bind(run.reason)
    .bind(run.rule_set_version)
    .bind(run.planned_at)
    .fetch_optional(&mut *conn)
    .await
}

#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub chat_id: &'a str,
    pub variant: &'a str,
    pub outbox_key: &'a str,
}

/// Rows per multi-row insert: 4,000 bound values, far below SQLite's 32,766.
const ROWS_PER_INSERT: usize = 1_000;

/// Inserts many delivery rows with few statements (a 10,000-chat run would
/// otherwise spend most of its time on per-statement round trips).
pub async fn insert_deliveries(
    conn: &mut SqliteConnection,
    run_id: i64,
    deliveries: &[NewDelivery<'_>],
) -> sqlx::Result<()> {
    for chunk in deliveries.chunks(ROWS_PER_INSERT) {
        let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "insert into schedule_deliveries (run_id, chat_id, variant, outbox_key) ",
        );
        builder.push_values(chunk, |mut row, delivery| {
            row.push_bind(run_id)
                .push_bind(delivery.chat_id)
                .push_bind(delivery.variant)
                .push_bind(delivery.outbox_key);
        });
        builder.build().execute(&mut *conn).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub schedule: String,
    pub fire_at: i64,
    pub kind: RunKind,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub rule_set_version: Option<i64>,
    pub planned_at: i64,
}

/// Runs, newest fire first; all schedules when `schedule` is `None`.
pub async fn list_runs(
    conn: &mut SqliteConnection,
    schedule: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(
        "select id, schedule, fire_at, kind, status, reason, rule_set_version, planned_at
         from schedule_runs where (?1 is null or schedule = ?1)
         order by fire_at desc, id desc limit ?2",
    )
    .bind(schedule)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

pub async fn get_run(conn: &mut SqliteConnection, run_id: i64) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as(
        "select id, schedule, fire_at, kind, status, reason, rule_set_version, planned_at
         from schedule_runs where id = ?",
    )
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await
}

/// One chat of a run, joined with the outbox row that carries it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub chat_id: String,
    pub variant: String,
    pub outbox_key: String,
    /// `None` only if the outbox row was deleted.
    pub route: Option<Route>,
    pub status: Option<OutboxStatus>,
    /// WeCom's reason for a failure, or why the row was skipped.
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
}

pub async fn run_deliveries(
    conn: &mut SqliteConnection,
    run_id: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "select d.chat_id, d.variant, d.outbox_key, o.route, o.status, o.last_error, o.sent_at
         from schedule_deliveries d left join outbox o on o.idempotency_key = d.outbox_key
         where d.run_id = ? order by d.chat_id",
    )
    .bind(run_id)
    .fetch_all(&mut *conn)
    .await
}

/// A chat as a push sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushChat {
    pub chat_id: String,
    pub name: String,
    pub route: ChatRoute,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub member_count: u32,
    /// Whether the chat's smart bot can push (a long connection, and a
    /// member has written to it here).
    pub smart_bot_push: crate::rules::route::SmartBotPush,
}

impl PushChat {
    /// What the route decision needs to know about this chat.
    pub fn address(&self) -> crate::rules::ChatAddress<'_> {
        crate::rules::ChatAddress {
            chat_id: &self.chat_id,
            route: Some(&self.route),
            owner: self.owner.as_deref(),
            smart_bot_push: self.smart_bot_push,
        }
    }
}

/// Every registered chat with its current member count, ordered by chat id.
/// One query, however many chats: a push to 10,000 chats must not do 10,000.
pub async fn push_chats(conn: &mut SqliteConnection) -> sqlx::Result<Vec<PushChat>> {
    let rows = sqlx::query(&format!(
        "select c.chat_id, c.name, c.route, c.robot_key, c.smart_bot, c.owner, c.tags_json,
                coalesce(m.members, 0) as members, {}
         from chats c left join (
             select chat_id, count(*) as members from chat_members
             where left_at is null group by chat_id
         ) m on m.chat_id = c.chat_id
         order by c.chat_id",
        super::smart_bots::PUSH_COLUMNS
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let route = super::chats::route_from_columns(
                row.try_get::<&str, _>("route")?,
                row.try_get("robot_key")?,
                row.try_get("smart_bot")?,
            );
            let tags: String = row.try_get("tags_json")?;
            let members: i64 = row.try_get("members")?;
            Ok(PushChat {
                chat_id: row.try_get("chat_id")?,
                name: row.try_get("name")?,
                route,
                owner: row.try_get("owner")?,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                member_count: u32::try_from(members).unwrap_or(0),
                smart_bot_push: super::smart_bots::push_of_row(&row)?,
            })
        })
        .collect()
}

/// What followed a schedule's deliveries, per variant.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VariantFollowUp {
    pub variant: String,
    /// (run, chat) pairs whose message was sent.
    pub deliveries: i64,
    /// Check-ins in those chats within the window after the fire.
    pub checkins: i64,
    /// Messages received from those chats within the window.
    pub messages: i64,
    /// Redemptions by members of those chats within the window.
    pub redemptions: i64,
}

/// Inbox kinds that are a message someone wrote in a chat.
const MESSAGE_KINDS: &str = "('bot_message', 'app_text', 'ingest_message')";

/// Compares a schedule's variants by what happened in the receiving chats
/// within `window_secs` after each fire. Only sent deliveries count.
pub async fn variant_follow_ups(
    conn: &mut SqliteConnection,
    schedule: &str,
    window_secs: i64,
) -> sqlx::Result<Vec<VariantFollowUp>> {
    let sql = format!(
        "with delivered as (
             select d.variant, d.chat_id, r.fire_at as from_at, r.fire_at + ?2 as until_at
             from schedule_deliveries d
             join schedule_runs r on r.id = d.run_id
             join outbox o on o.idempotency_key = d.outbox_key
             where r.schedule = ?1 and r.status = 'planned' and o.status = 'sent'
         )
         select v.variant,
                count(*) as deliveries,
                coalesce(sum((select count(*) from checkins c where c.chat_id = v.chat_id
                              and c.at >= v.from_at and c.at < v.until_at)), 0) as checkins,
                coalesce(sum((select count(*) from inbox i where i.chat_id = v.chat_id
                              and i.kind in {MESSAGE_KINDS}
                              and i.received_at >= v.from_at and i.received_at < v.until_at)), 0) as messages,
                coalesce(sum((select count(*) from redemptions x
                              join chat_members m on m.user_id = x.user_id and m.chat_id = v.chat_id
                              where x.created_at >= v.from_at and x.created_at < v.until_at)), 0) as redemptions
         from delivered v group by v.variant order by v.variant"
    );
    let rows = sqlx::query(&sql)
        .bind(schedule)
        .bind(window_secs)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_variant = BTreeMap::new();
    for row in rows {
        let variant: String = row.try_get("variant")?;
        by_variant.insert(
            variant.clone(),
            VariantFollowUp {
                variant,
                deliveries: row.try_get("deliveries")?,
                checkins: row.try_get("checkins")?,
                messages: row.try_get("messages")?,
                redemptions: row.try_get("redemptions")?,
            },
        );
    }
    Ok(by_variant.into_values().collect())
}
