//! The analytics job: every few minutes it reads the raw facts under a read
//! snapshot, computes, and then, in one `BEGIN IMMEDIATE` transaction,
//! 1. upserts the recomputed daily rollups of recent days (and of any days
//!    missed while the service was down; 60 days on the first run),
//! 2. reclassifies every member's lifecycle stage, records the changes, and
//!    queues the at-risk action once per change (its outbox key names the change),
//! 3. measures each alert kind and opens, escalates or closes its episode,
//!    queueing one app message to the admins per open and per escalation
//!    (outbox key `alert:{episode}:{level}`).
//!
//! Re-running at the same instant changes nothing: the rollups are the same
//! rows, there are no new stage changes, and no episode crosses a new level.

use std::collections::BTreeMap;

use crate::active_rules::ActiveRules;
use crate::analytics::alerts::{self, Inputs};
use crate::analytics::lifecycle::{self, Stage};
use crate::analytics::rollup::{self, Facts, Message};
use crate::analytics::{AlertKind, AlertLevel, AlertStep, DayWindow, COMMUNITY};
use crate::inbox_event::domain_event;
use crate::jobs::Job;
use crate::rules::analytics::AtRiskAction;
use crate::rules::event::EventKind;
use crate::rules::route::route_to_members;
use crate::rules::{Content, Outbound, RuleSet};
use crate::store::{analytics as store, outbox};
use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

/// Why an admin notice has nobody to go to.
const NO_ADMINS: &str = "[alerts] admins 未配置（no admins configured）";
const NO_ADMINS_DASHBOARD_ONLY: &str =
    "[alerts] admins 未配置，预警只显示在运营后台（no admins configured: dashboard only）";

#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// Days recomputed every pass, today included (late events, retries).
    pub recompute_days: i64,
    /// Days computed on the very first pass.
    pub backfill_days: i64,
    /// How often the loop runs.
    pub interval: std::time::Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            recompute_days: 3,
            backfill_days: 60,
            interval: std::time::Duration::from_secs(5 * 60),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnalyticsOutcome {
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    pub rollup_rows: usize,
    pub stage_changes: usize,
    /// At-risk actions queued for sending / recorded as skipped.
    pub actions_queued: usize,
    pub actions_skipped: usize,
    pub alerts_opened: Vec<(AlertKind, AlertLevel)>,
    pub alerts_escalated: Vec<(AlertKind, AlertLevel)>,
    pub alerts_closed: Vec<AlertKind>,
}

pub struct Analytics {
    pool: SqlitePool,
    settings: AnalyticsSettings,
    rules: ActiveRules,
}

impl Analytics {
    pub fn new(pool: SqlitePool, settings: AnalyticsSettings) -> Self {
        Self {
            pool,
            settings,
            rules: ActiveRules::new(),
        }
    }

    /// Shares the service's active-rules cache, whose problem (a stored set
    /// that no longer validates) this job raises as an alert.
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    /// How long the loop waits between passes.
    pub fn interval(&self) -> std::time::Duration {
        self.settings.interval
    }

    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<AnalyticsOutcome> {
        // Loaded before the read snapshot: a newly stored set may stock new
        // catalog items, a write.
        let rules = {
            let mut conn = self.pool.acquire().await?;
            self.rules.get(&mut conn).await?
        };
        let invalid_rules_version = self.rules.problem().map(|problem| problem.version);
        // Read and compute under a read snapshot (WAL: the pipeline keeps
        // writing meanwhile); only the writes take the write lock.
        let mut read = self
            .pool
            .begin()
            .await
            .context("starting the analytics read")?;
        let mut outcome = AnalyticsOutcome::default();
        let today = rules.community_day(now);
        let window = self.window(&mut read, &rules, today).await?;
        outcome.first_day = Some(window.first);
        outcome.last_day = Some(window.last);
        let facts = load_facts(&mut read, &window, &rules).await?;
        read.commit().await.context("ending the analytics read")?;
        let (rows, activity) = rollup::compute(&window, &facts);
        drop(facts);

        // Rollups and activity are recomputed wholesale for the window, so
        // writing them after a concurrent write only lags one pass behind.
        let write_started = std::time::Instant::now();
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("starting the analytics transaction")?;
        store::upsert_daily(&mut tx, &rows, now.timestamp())
            .await
            .context("storing rollups")?;
        store::replace_activity(&mut tx, window.first, window.last, &activity)
            .await
            .context("storing member activity")?;
        outcome.rollup_rows = rows.len();

        if rules.doc.lifecycle.enabled {
            update_stages(&mut tx, &rules, now, today, &mut outcome)
                .await
                .context("updating lifecycle stages")?;
        }
        apply_member_tag_rules(&mut tx, &rules, now, today)
            .await
            .context("applying [[member_tags]]")?;
        let buyers = update_rfm(&mut tx, &rules, now, today)
            .await
            .context("recomputing RFM scores")?;
        step_alerts(
            &mut tx,
            &rules,
            now,
            today,
            invalid_rules_version,
            &mut outcome,
        )
        .await
        .context("stepping alerts")?;
        tx.commit().await.context("committing analytics")?;
        tracing::info!(
            write_ms = write_started.elapsed().as_millis() as u64,
            rows = outcome.rollup_rows,
            stage_changes = outcome.stage_changes,
            rfm_buyers = buyers,
            opened = outcome.alerts_opened.len(),
            escalated = outcome.alerts_escalated.len(),
            closed = outcome.alerts_closed.len(),
            "analytics pass"
        );
        Ok(outcome)
    }

    /// Recent days, reaching back to the last stored day if the service was
    /// down longer than that; the backfill on the first pass.
    async fn window(
        &self,
        conn: &mut SqliteConnection,
        rules: &RuleSet,
        today: NaiveDate,
    ) -> anyhow::Result<DayWindow> {
        let recent = today - Duration::days(self.settings.recompute_days.max(1) - 1);
        let first = match store::last_rollup_day(conn).await? {
            Some(last) => last.min(recent),
            None => today - Duration::days(self.settings.backfill_days.max(1) - 1),
        };
        Ok(DayWindow {
            first,
            last: today,
            tz: rules.timezone,
            cutover_hour: rules.doc.community.day_cutover_hour,
        })
    }
}

impl Job for Analytics {
    type Outcome = AnalyticsOutcome;

    fn name(&self) -> &'static str {
        "analytics"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<AnalyticsOutcome> {
        Analytics::run_once(self, now).await
    }
}

async fn load_facts(
    conn: &mut SqliteConnection,
    window: &DayWindow,
    rules: &RuleSet,
) -> anyhow::Result<Facts> {
    let start = window.start().timestamp();
    let end = window.end().timestamp();
    let mut messages = Vec::new();
    for row in store::message_events(conn, start, end).await? {
        // A row the pipeline cannot read is parked there; it is no message here.
        if let Ok(Some(event)) = domain_event(&row, &rules.doc.community.app) {
            if let EventKind::MessagePosted(posted) = event.kind {
                messages.push(Message {
                    chat_id: posted.chat_id,
                    user_id: posted.sender,
                    at: row.received_at,
                });
            }
        }
    }
    Ok(Facts {
        chats: store::chat_ids(conn).await?,
        memberships: store::memberships(conn).await?,
        messages,
        checkins: store::checkins_from(conn, window.first).await?,
        ledger: store::ledger_from(conn, window.first).await?,
        violations: store::violations_since(conn, start).await?,
        deliveries: store::deliveries_since(conn, start).await?,
        lottery_entries: store::lottery_entries_since(conn, start).await?,
        votes: store::ballots_since(conn, start).await?,
    })
}

async fn update_stages(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    now: DateTime<Utc>,
    today: NaiveDate,
    outcome: &mut AnalyticsOutcome,
) -> anyhow::Result<()> {
    let doc = &rules.doc.lifecycle;
    let window_first = today - Duration::days(doc.core_window_days - 1);
    let facts = store::member_facts(conn, window_first).await?;
    let current: Vec<(String, Stage)> = facts
        .iter()
        .map(|f| (f.user_id.clone(), lifecycle::stage_of(doc, f, now, today)))
        .collect();
    let last_active: BTreeMap<&str, Option<NaiveDate>> = facts
        .iter()
        .map(|f| (f.user_id.as_str(), f.last_active_day))
        .collect();
    let previous = store::stages(conn).await?;
    let at = now.timestamp();
    let changes = lifecycle::changes(&previous, &current);
    outcome.stage_changes = changes.len();
    let last_day = |user: &str| last_active.get(user).copied().flatten();
    // Most changes need no action: stored in bulk (a first pass classifies everyone).
    let acts = |c: &lifecycle::Change| {
        c.triggers_at_risk_action && doc.at_risk_action != AtRiskAction::None
    };
    let (acting, plain): (Vec<_>, Vec<_>) = changes.iter().partition(|c| acts(c));
    let plain: Vec<store::NewStageChange> = plain
        .into_iter()
        .map(|c| store::NewStageChange {
            user_id: &c.user_id,
            from: c.from,
            to: c.to,
            last_active_day: last_day(&c.user_id),
        })
        .collect();
    store::record_stage_changes(conn, &plain, at).await?;
    for change in acting {
        let last = last_day(&change.user_id);
        let id =
            store::insert_stage_change(conn, &change.user_id, change.from, change.to, at).await?;
        store::set_stage(conn, &change.user_id, change.to, last, at).await?;
        let silent_days = last.map_or(doc.at_risk_silent_days, |d| (today - d).num_days());
        let queued = at_risk_action(conn, rules, id, &change.user_id, silent_days, now).await?;
        if queued {
            outcome.actions_queued += 1;
        } else {
            outcome.actions_skipped += 1;
        }
    }
    Ok(())
}

/// Keeps `[[member_tags]]` tags on exactly the people whose condition holds
/// now: adds missing ones, removes a rule's tag where it no longer holds.
/// Tags a manager set (another source) are left alone.
async fn apply_member_tag_rules(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> anyhow::Result<()> {
    use crate::store::segments as tags;
    use std::collections::{BTreeMap, BTreeSet};
    let wanted_rules = &rules.doc.member_tags;
    let existing: BTreeSet<(String, String)> = tags::rule_tags(conn).await?.into_iter().collect();
    if wanted_rules.is_empty() && existing.is_empty() {
        return Ok(());
    }
    let since = today - Duration::days(i64::from(crate::rules::member_tags::MAX_STREAK) + 1);
    let mut days: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
    for (user, day) in tags::checkins_since(conn, &since.to_string()).await? {
        if let Ok(day) = day.parse() {
            days.entry(user).or_default().push(day);
        }
    }
    let stages = store::stages(conn).await?;
    let people: BTreeSet<&String> = days.keys().chain(stages.keys()).collect();
    let mut wanted: BTreeMap<(String, String), String> = BTreeMap::new();
    for user in people {
        let checked = days.get(user).map(Vec::as_slice).unwrap_or_default();
        let yesterday = today.pred_opt().unwrap_or(today);
        let streak = crate::rules::checkin::streak_ending(checked, today)
            .max(crate::rules::checkin::streak_ending(checked, yesterday));
        let stage = stages.get(user).map(|s| s.as_str());
        for rule in wanted_rules.iter().filter(|rule| rule.holds(stage, streak)) {
            wanted.insert((user.clone(), rule.tag.trim().to_owned()), rule.source());
        }
    }
    for ((user, tag), source) in &wanted {
        tags::add_tag(conn, user, tag, source, now.timestamp()).await?;
    }
    for (user, tag) in existing {
        if !wanted.contains_key(&(user.clone(), tag.clone())) {
            tags::remove_tag(conn, &user, &tag, now.timestamp()).await?;
        }
    }
    Ok(())
}

/// Recomputes every buyer's RFM scores from the orders (`analytics::rfm`);
/// returns how many buyers were scored.
async fn update_rfm(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> anyhow::Result<usize> {
    let orders = crate::store::orders::all_orders(conn).await?;
    let day_of = |at: i64| rules.community_day(DateTime::from_timestamp(at, 0).unwrap_or(now));
    let buyers = crate::analytics::rfm::purchases(&orders, day_of);
    let scores = crate::analytics::rfm::score(&buyers, today);
    crate::store::orders::replace_rfm(conn, &scores, now).await?;
    Ok(scores.len())
}

/// Queues the configured at-risk action for stage change `change_id`, or
/// records why it cannot be done. Returns whether a message was queued.
async fn at_risk_action(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    change_id: i64,
    user_id: &str,
    silent_days: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let doc = &rules.doc.lifecycle;
    let app = rules.doc.community.app.clone();
    let name = crate::store::members::person_name(conn, user_id)
        .await?
        .unwrap_or_else(|| user_id.to_owned());
    let (action, user_ids, text, if_nobody) = match doc.at_risk_action {
        AtRiskAction::None => return Ok(false),
        AtRiskAction::Nudge => {
            let text = rules.render(
                &doc.nudge_template,
                &crate::rules::templates::NudgeVars {
                    name,
                    silent_days,
                    group_name: rules.doc.community.name.clone(),
                },
            );
            ("nudge", vec![user_id.to_owned()], text, "")
        }
        AtRiskAction::NotifyAdmins => {
            let text = format!(
                "【{}】流失预警：{name}（{user_id}）已 {silent_days} 天没有发言或签到，建议私聊关怀。",
                rules.doc.community.name
            );
            let admins = rules.doc.alerts.admins.clone();
            ("notify_admins", admins, text, NO_ADMINS)
        }
    };
    let key = format!("lifecycle:{change_id}:{action}");
    let message = Outbound::decided(
        key.clone(),
        route_to_members(&app, &user_ids, if_nobody),
        Content::text(text),
    );
    outbox::enqueue(conn, &message, &app, now).await?;
    let skipped = message.skipped;
    let status = if skipped.is_some() {
        "skipped"
    } else {
        "queued"
    };
    store::record_stage_action(
        conn,
        change_id,
        action,
        status,
        skipped.as_deref(),
        Some(&key),
    )
    .await?;
    Ok(skipped.is_none())
}

async fn step_alerts(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    now: DateTime<Utc>,
    today: NaiveDate,
    invalid_rules_version: Option<i64>,
    outcome: &mut AnalyticsOutcome,
) -> anyhow::Result<()> {
    let doc = &rules.doc.alerts;
    let trailing = doc.checkin_drop.trailing_days.max(1);
    let first = today - Duration::days(trailing + 1);
    let rows: BTreeMap<NaiveDate, _> = store::daily_rows(conn, COMMUNITY, first)
        .await?
        .into_iter()
        .map(|row| (row.day, row))
        .collect();
    let on = |day: NaiveDate, pick: fn(&rollup::DailyRow) -> i64| rows.get(&day).map_or(0, pick);
    let inputs = Inputs {
        leaves_today: on(today, |r| r.leaves),
        violations_today: on(today, |r| r.violations),
        checkins_last_day: on(today - Duration::days(1), |r| r.checkins),
        checkins_trailing: (2..trailing + 2)
            .map(|n| on(today - Duration::days(n), |r| r.checkins))
            .collect(),
        failures_today: on(today, |r| r.pushes_failed),
        parked_now: store::parked_event_count(conn).await?,
        invalid_rules_version,
    };
    let open: BTreeMap<AlertKind, store::AlertEpisode> = store::open_episodes(conn)
        .await?
        .into_iter()
        .map(|e| (e.kind, e))
        .collect();
    let at = now.timestamp();
    for m in alerts::measure(doc, &inputs) {
        let episode = open.get(&m.kind);
        match alerts::step(episode.map(|e| e.level), m.level) {
            AlertStep::Nothing => {
                if let Some(e) = episode {
                    if e.value != m.value {
                        store::update_episode(conn, e.id, e.level, m.value, at).await?;
                    }
                }
            }
            AlertStep::Open(level) => {
                let id = store::open_episode(conn, m.kind, level, m.value, at).await?;
                notify_admins(conn, rules, id, m.kind, level, m.value, false, now).await?;
                outcome.alerts_opened.push((m.kind, level));
            }
            AlertStep::Escalate(level) => {
                let Some(e) = episode else { continue };
                store::update_episode(conn, e.id, level, m.value, at).await?;
                notify_admins(conn, rules, e.id, m.kind, level, m.value, true, now).await?;
                outcome.alerts_escalated.push((m.kind, level));
            }
            AlertStep::Close => {
                let Some(e) = episode else { continue };
                store::close_episode(conn, e.id, m.value, at).await?;
                outcome.alerts_closed.push(m.kind);
            }
        }
    }
    Ok(())
}

/// One app message to the admins for an episode reaching `level`; its key
/// (`alert:{episode}:{level}`) makes a repeat impossible. Without admins the
/// row is recorded as skipped with the reason.
#[allow(clippy::too_many_arguments)]
async fn notify_admins(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    episode_id: i64,
    kind: AlertKind,
    level: AlertLevel,
    value: i64,
    escalated: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let doc = &rules.doc.alerts;
    let app = rules.doc.community.app.clone();
    let text = alerts::message_text(
        &rules.doc.community.name,
        doc,
        kind,
        level,
        value,
        escalated,
    );
    let message = Outbound::decided(
        format!("alert:{episode_id}:{level}"),
        route_to_members(&app, &doc.admins, NO_ADMINS_DASHBOARD_ONLY),
        Content::text(text),
    );
    outbox::enqueue(conn, &message, &app, now).await?;
    Ok(())
}

/// `qunyun analytics show`: the community's (or one chat's) rollup of the
/// last `days` days as stored by the last pass, one line per day, plus
/// people per stage and open alerts.
pub async fn report(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    days: i64,
    chat_id: Option<&str>,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut conn = pool.acquire().await?;
    let rules = ActiveRules::new().get(&mut conn).await?;
    let today = rules.community_day(now);
    let first = today - Duration::days(days.max(1) - 1);
    let rows = store::daily_rows(&mut conn, chat_id.unwrap_or(COMMUNITY), first).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>5} {:>5} {:>7} {:>6} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5} {:>6}",
        "day",
        "joins",
        "leave",
        "members",
        "active",
        "messages",
        "checkins",
        "pts+",
        "pts-",
        "viol",
        "sent",
        "failed"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:>5} {:>7} {:>6} {:>8} {:>8} {:>7} {:>7} {:>5} {:>5} {:>6}",
            r.day.to_string(),
            r.joins,
            r.leaves,
            r.members,
            r.active_members,
            r.messages,
            r.checkins,
            r.points_issued,
            r.points_redeemed,
            r.violations,
            r.pushes_sent,
            r.pushes_failed
        );
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no rollups yet: run `qunyun analytics run`)");
    }
    let stages = store::stage_counts(&mut conn).await?;
    let stages: Vec<String> = Stage::ALL
        .iter()
        .map(|s| format!("{s} {}", stages.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(out, "stages: {}", stages.join(", "));
    let open = store::open_episodes(&mut conn).await?;
    if open.is_empty() {
        let _ = writeln!(out, "alerts: none open");
    }
    for e in open {
        let _ = writeln!(
            out,
            "alert #{} {} {} value {} since {}",
            e.id,
            e.kind,
            e.level,
            e.value,
            DateTime::from_timestamp(e.opened_at, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        );
    }
    Ok(out)
}
