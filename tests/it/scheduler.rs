//! The scheduler end to end: rule set in SQLite, `Scheduler::run_once` driven
//! with a manual clock, the real outbox sender delivering to the WeCom
//! simulator on 127.0.0.1:0, and the simulator's record as the ground truth.

use std::collections::BTreeMap;
use std::ops::Deref;

use chrono::{DateTime, Duration, TimeZone, Utc};
use qunyun::jobs::outbox::SenderSettings;
use qunyun::jobs::scheduler::{self, SchedulerSettings};
use qunyun::ops::schedules::{self, ChatOutcome};
use qunyun::ops::{Actor, Role};
use qunyun::rules::schedule::{validate_all, ScheduleDef};
use qunyun::rules::{ChatRoute, RuleSet};
use qunyun::sim::{Route as SimRoute, SeedAppChat, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::chats::{self, NewChat};
use qunyun::store::outbox::{self, OutboxStatus};
use qunyun::store::schedules::{RunKind, RunStatus};
use qunyun::store::{rule_sets, schedules as schedule_store};

use crate::helpers::{TestApp, TestConfig, APP};

/// Monday 2025-03-03 00:00 UTC = 08:00 in Shanghai.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 0, 0, 0).unwrap()
}

/// 09:00 Shanghai on day `day` after the start, in UTC.
fn nine_am(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 1, 0, 0).unwrap() + Duration::days(day)
}

fn manager() -> Actor {
    Actor::new("mei", Role::Operator)
}

/// The harness, plus the chats and rule sets these scenarios set up.
struct Harness {
    app: TestApp,
}

impl Deref for Harness {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Harness {
    async fn start() -> Self {
        let config = TestConfig::new()
            .starting_at(start())
            .with_contacts_app()
            .with_brisk_sender();
        Self {
            app: TestApp::start(config).await,
        }
    }

    fn set(&self, to: DateTime<Utc>) {
        self.set_clock(to);
    }

    /// What the service's scheduler runs with: a 15-minute grace, the
    /// default app.
    fn settings(&self) -> SchedulerSettings {
        let settings = self.scheduler_settings();
        assert_eq!(
            (settings.grace, settings.app.as_str()),
            (Duration::minutes(15), APP)
        );
        settings
    }

    async fn save_rules(&self, toml: &str) {
        RuleSet::from_toml(toml).expect("test rule set validates");
        let mut conn = self.pool.acquire().await.unwrap();
        rule_sets::save(&mut conn, toml, self.now()).await.unwrap();
    }

    async fn add_chat(&self, chat_id: &str, route: ChatRoute, owner: Option<&str>, tags: &[&str]) {
        let mut conn = self.pool.acquire().await.unwrap();
        chats::upsert_chat(
            &mut conn,
            &NewChat {
                chat_id: chat_id.into(),
                name: format!("群{chat_id}"),
                route,
                owner: owner.map(str::to_owned),
                admins: vec![],
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                member_version: None,
            },
            self.now(),
        )
        .await
        .unwrap();
    }

    /// A webhook chat whose robot the simulator knows.
    async fn add_robot_chat(&self, chat_id: &str, tags: &[&str]) {
        let key = format!("KEY-{chat_id}");
        self.sim().add_robot(key.clone(), chat_id);
        self.add_chat(chat_id, ChatRoute::internal_with_robot(key), None, tags)
            .await;
    }

    async fn count_outbox(&self) -> usize {
        let mut conn = self.pool.acquire().await.unwrap();
        outbox::list(&mut conn, None).await.unwrap().len()
    }

    /// Simulator deliveries per target chat.
    fn delivered_per_chat(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for delivery in self.sim().messages() {
            *counts.entry(delivery.target.clone()).or_default() += 1;
        }
        counts
    }
}

fn daily_nine(extra: &str) -> String {
    format!(
        r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "morning"
cron = "0 0 9 * * *"
{extra}

[schedules.targets]
all_chats = true

[schedules.content]
kind = "text"
body = "早上好，{{{{ chat.name }}}}！今天是 {{{{ date }}}}。"
"#
    )
}

#[tokio::test]
async fn fires_exactly_on_cron_boundaries() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.add_robot_chat("wrA", &[]).await;
    let scheduler = h.scheduler();

    // First sight activates the schedule; one second before the boundary nothing is due.
    assert!(scheduler
        .run_once(h.now())
        .await
        .unwrap()
        .planned
        .is_empty());
    let boundary = nine_am(0);
    let before = scheduler
        .run_once(boundary - Duration::seconds(1))
        .await
        .unwrap();
    assert!(before.planned.is_empty(), "fired early: {before:?}");
    assert_eq!(h.count_outbox().await, 0);

    let at = scheduler.run_once(boundary).await.unwrap();
    assert_eq!(at.planned.len(), 1);
    assert_eq!(at.planned[0].fire_at, boundary);
    assert_eq!(at.planned[0].chats, 1);
    // Asking again in the same second, or a bit later, plans nothing more.
    assert!(scheduler
        .run_once(boundary)
        .await
        .unwrap()
        .planned
        .is_empty());
    assert!(scheduler
        .run_once(boundary + Duration::minutes(5))
        .await
        .unwrap()
        .planned
        .is_empty());

    let next = scheduler.run_once(nine_am(1)).await.unwrap();
    assert_eq!(next.planned.len(), 1);
    assert_eq!(next.planned[0].fire_at, nine_am(1));

    let runs = schedules::runs(&h.ops(), Some("morning"), 10)
        .await
        .unwrap();
    let fires: Vec<i64> = runs.iter().map(|run| run.fire_at).collect();
    assert_eq!(fires, [nine_am(1).timestamp(), nine_am(0).timestamp()]);
    assert!(runs.iter().all(|run| run.status == RunStatus::Planned));
}

#[tokio::test]
async fn restart_in_the_middle_of_a_run_sends_each_chat_exactly_once() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    let chat_ids: Vec<String> = (0..30).map(|i| format!("wrC{i:02}")).collect();
    for chat_id in &chat_ids {
        h.add_robot_chat(chat_id, &[]).await;
    }
    h.scheduler().run_once(h.now()).await.unwrap();
    h.set(nine_am(0));

    // Crash 1: the process dies while planning, before the commit.
    {
        let (_, schedules) = scheduler::load_schedules(&h.pool).await.unwrap();
        let mut tx = h.pool.begin().await.unwrap();
        let planned = scheduler::plan_fire(
            &mut tx,
            &schedules[0],
            nine_am(0),
            RunKind::Scheduled,
            None,
            &h.settings(),
            h.now(),
        )
        .await
        .unwrap();
        assert!(planned.is_some());
        drop(tx); // rolled back: nothing of it survives
    }
    assert_eq!(h.count_outbox().await, 0);

    // Two scheduler instances racing on the same due fire plan it once.
    let (one, two) = (h.scheduler(), h.scheduler());
    let (first, second) = tokio::join!(one.run_once(h.now()), two.run_once(h.now()));
    let planned = first.unwrap().planned.len() + second.unwrap().planned.len();
    assert_eq!(planned, 1);
    assert_eq!(h.count_outbox().await, 30);

    // Crash 2: the sender delivers part of the run, then everything restarts.
    let sender = h.sender_with(SenderSettings {
        batch_size: 7,
        apps: vec![],
        ..SenderSettings::default()
    });
    sender.run_once().await.unwrap();
    let partial = h.sim().messages().len();
    assert!(partial > 0 && partial < 30, "partial send: {partial}");
    drop(sender);

    // After the restart, within the grace period: the fire is not planned again.
    h.clock.advance(Duration::minutes(3));
    let after_restart = h.scheduler().run_once(h.now()).await.unwrap();
    assert!(after_restart.planned.is_empty());
    assert_eq!(h.count_outbox().await, 30);
    h.drain_outbox_stepping(Duration::seconds(5)).await;

    let per_chat = h.delivered_per_chat();
    assert_eq!(per_chat.len(), 30, "{per_chat:?}");
    assert!(per_chat.values().all(|n| *n == 1), "{per_chat:?}");
    assert_eq!(
        per_chat.keys().cloned().collect::<Vec<_>>(),
        chat_ids,
        "every chat got it"
    );
}

#[tokio::test]
async fn downtime_longer_than_grace_records_one_missed_run_and_sends_nothing() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.add_robot_chat("wrA", &[]).await;
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();

    // Down from 08:00 to 11:00 Shanghai: the 09:00 fire is 2 h old, grace is 15 min.
    let back = nine_am(0) + Duration::hours(2);
    let outcome = scheduler.run_once(back).await.unwrap();
    assert!(outcome.planned.is_empty());
    assert_eq!(outcome.missed, 1);
    assert_eq!(h.count_outbox().await, 0, "no burst");
    let runs = schedules::runs(&h.ops(), Some("morning"), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Missed);
    assert_eq!(runs[0].fire_at, nine_am(0).timestamp());
    let reason = runs[0].reason.clone().unwrap();
    assert!(reason.contains("grace"), "{reason}");

    // Running again records nothing new.
    let again = scheduler
        .run_once(back + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(schedules::runs(&h.ops(), None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn downtime_across_many_fires_sends_only_the_latest_within_grace() {
    let hourly = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "hourly"
cron = "0 0 * * * *"

[schedules.targets]
all_chats = true

[schedules.content]
kind = "text"
body = "整点 {{ time }}"
"#;
    let h = Harness::start().await;
    h.save_rules(hourly).await;
    h.add_robot_chat("wrA", &[]).await;
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();

    // Down for five hours; back 10 minutes after the 05:00 UTC fire.
    let back = start() + Duration::hours(5) + Duration::minutes(10);
    h.set(back);
    let outcome = scheduler.run_once(back).await.unwrap();
    assert_eq!(outcome.planned.len(), 1);
    assert_eq!(outcome.planned[0].fire_at, start() + Duration::hours(5));
    assert_eq!(outcome.missed, 4);
    h.drain_outbox_stepping(Duration::seconds(5)).await;
    assert_eq!(h.sim().messages().len(), 1, "one send, not a burst");
    assert_eq!(h.sim().messages()[0].text(), Some("整点 13:00"));
}

#[tokio::test]
async fn quiet_hours_hold_back_fires_and_record_why() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("").replace(
        "cron = \"0 0 9 * * *\"",
        "cron = \"0 0 7,12 * * *\"\nquiet_hours = \"22:00-08:00\"",
    ))
    .await;
    h.add_robot_chat("wrA", &[]).await;
    let scheduler = h.scheduler();
    // Activated just after the first day's noon fire.
    scheduler
        .run_once(nine_am(0) + Duration::hours(3) + Duration::seconds(1))
        .await
        .unwrap();

    // 07:00 Shanghai on the next day is in quiet hours.
    let seven = nine_am(1) - Duration::hours(2);
    let quiet = scheduler.run_once(seven).await.unwrap();
    assert!(quiet.planned.is_empty());
    assert_eq!(quiet.quiet, 1);
    assert_eq!(h.count_outbox().await, 0);
    let noon = nine_am(1) + Duration::hours(3);
    let sent = scheduler.run_once(noon).await.unwrap();
    assert_eq!(sent.planned.len(), 1);

    let runs = schedules::runs(&h.ops(), None, 10).await.unwrap();
    let statuses: Vec<(i64, RunStatus)> = runs.iter().map(|r| (r.fire_at, r.status)).collect();
    assert_eq!(
        statuses,
        [
            (noon.timestamp(), RunStatus::Planned),
            (seven.timestamp(), RunStatus::Quiet)
        ]
    );
    assert!(runs[1].reason.as_deref().unwrap().contains("22:00-08:00"));
}

const AB_RULES: &str = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "promo"
cron = "0 0 9 * * *"

[schedules.targets]
chat_tags = ["vip"]

[[schedules.variants]]
name = "A"
weight = 1
content = { kind = "text", body = "A: {{ chat.name }}" }

[[schedules.variants]]
name = "B"
weight = 1
content = { kind = "text", body = "B: {{ chat.name }}" }
"#;

#[tokio::test]
async fn ab_variant_is_recorded_on_every_delivery_and_matches_what_was_sent() {
    let h = Harness::start().await;
    h.save_rules(AB_RULES).await;
    for i in 0..40 {
        h.add_robot_chat(&format!("wrV{i:02}"), &["vip"]).await;
    }
    h.add_robot_chat("wrNOTVIP", &[]).await;
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    h.set(nine_am(0));
    let outcome = scheduler.run_once(nine_am(0)).await.unwrap();
    let run_id = outcome.planned[0].run_id;
    h.drain_outbox_stepping(Duration::seconds(5)).await;

    let defs: RuleSet = RuleSet::from_toml(AB_RULES).unwrap();
    let valid = validate_all(&defs.doc.schedules, defs.timezone).unwrap();
    let report = schedules::run_report(&h.ops(), run_id).await.unwrap();
    assert_eq!(report.chats.len(), 40, "only the vip chats");
    let mut per_variant = BTreeMap::new();
    for chat in &report.chats {
        assert_eq!(chat.variant, valid[0].variant_for(&chat.chat_id).name);
        *per_variant.entry(chat.variant.clone()).or_insert(0) += 1;
    }
    assert_eq!(per_variant.len(), 2, "both arms used: {per_variant:?}");
    let sent: BTreeMap<String, String> = h
        .sim()
        .messages()
        .iter()
        .map(|d| (d.target.clone(), d.text().unwrap().to_owned()))
        .collect();
    for chat in &report.chats {
        assert_eq!(
            sent[&chat.chat_id],
            format!("{}: 群{}", chat.variant, chat.chat_id)
        );
    }
}

#[tokio::test]
async fn run_report_matches_the_simulator_record() {
    let h = Harness::start().await;
    // Same text for every chat, so one owner gets one mass message.
    h.save_rules(&daily_nine("").replace("{{ chat.name }}", "各位"))
        .await;
    // Two webhook chats, one with a robot WeCom does not know (93000).
    h.add_robot_chat("wrOK", &[]).await;
    h.add_chat(
        "wrBADKEY",
        ChatRoute::internal_with_robot("UNKNOWN"),
        None,
        &[],
    )
    .await;
    // An app group.
    h.sim().add_app_chat(SeedAppChat {
        chatid: "APPCHAT".into(),
        name: "ops".into(),
        owner: "zhangsan".into(),
        userlist: vec!["zhangsan".into(), "lisi".into()],
        creator_agent_id: None,
    });
    h.add_chat("APPCHAT", ChatRoute::AppGroup, Some("zhangsan"), &[])
        .await;
    // Two customer groups of one owner, no robot: one mass message.
    for chat_id in ["wrCUST1", "wrCUST2"] {
        h.sim().add_customer_group(SeedCustomerGroup {
            chat_id: chat_id.into(),
            name: "VIP".into(),
            owner: "zhangsan".into(),
            notice: String::new(),
            status: 0,
            create_time: 0,
            admins: vec![],
            members: vec![SeedGroupMember::new("wmCUSTOMER")],
        });
        h.add_chat(chat_id, ChatRoute::CustomerGroup, Some("zhangsan"), &[])
            .await;
    }
    // Routes that cannot post.
    h.add_chat(
        "wrSMART",
        ChatRoute::internal_with_smart_bot("bot"),
        None,
        &[],
    )
    .await;
    h.add_chat("wrNOOWNER", ChatRoute::CustomerGroup, None, &[])
        .await;

    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    h.set(nine_am(0));
    let planned = scheduler.run_once(nine_am(0)).await.unwrap().planned;
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].chats, 5);
    assert_eq!(planned[0].skipped, 2);
    // 3 direct rows + 1 mass row + 2 skipped rows.
    assert_eq!(planned[0].outbox_rows, 6);
    let run_id = planned[0].run_id;
    h.drain_outbox_stepping(Duration::seconds(5)).await;

    let report = schedules::run_report(&h.ops(), run_id).await.unwrap();
    let outcome_of = |chat: &str| {
        report
            .chats
            .iter()
            .find(|c| c.chat_id == chat)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome_of("wrOK"), ChatOutcome::Sent);
    assert_eq!(outcome_of("APPCHAT"), ChatOutcome::Sent);
    assert!(
        matches!(outcome_of("wrBADKEY"), ChatOutcome::Failed { reason } if reason.contains("93000")),
        "{:?}",
        outcome_of("wrBADKEY")
    );
    assert_eq!(outcome_of("wrCUST1"), ChatOutcome::AwaitingConfirmation);
    assert_eq!(outcome_of("wrCUST2"), ChatOutcome::AwaitingConfirmation);
    assert!(
        matches!(outcome_of("wrSMART"), ChatOutcome::Skipped { reason } if reason.contains("smart bot"))
    );
    assert!(
        matches!(outcome_of("wrNOOWNER"), ChatOutcome::Skipped { reason } if reason.contains("owner"))
    );

    // What the report calls sent is exactly what the simulator recorded.
    let recorded = h.delivered_per_chat();
    let sent: Vec<&str> = report
        .chats
        .iter()
        .filter(|c| c.outcome == ChatOutcome::Sent)
        .map(|c| c.chat_id.as_str())
        .collect();
    assert_eq!(
        recorded.keys().map(String::as_str).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(
        h.sim().pending_mass().len(),
        1,
        "one mass message per owner"
    );

    // The owner confirms: both customer groups become sent.
    let msgid = h.sim().pending_mass()[0].clone();
    assert!(h.sim().confirm_mass(&msgid));
    h.clock.advance(Duration::minutes(30));
    h.sender().poll_mass_results().await.unwrap();
    let report = schedules::run_report(&h.ops(), run_id).await.unwrap();
    assert_eq!(report.totals.sent, 4);
    assert_eq!(report.totals.failed, 1);
    assert_eq!(report.totals.skipped, 2);
    assert_eq!(report.totals.awaiting_confirmation, 0);
    let mass_targets: Vec<String> = h
        .sim()
        .messages()
        .iter()
        .filter(|d| d.route == SimRoute::CustomerGroupMass)
        .map(|d| d.target.clone())
        .collect();
    assert!(
        mass_targets.contains(&"wrCUST1".to_owned()),
        "{mass_targets:?}"
    );
}

#[tokio::test]
async fn paused_schedules_do_not_fire_and_resume_does_not_catch_up() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.add_robot_chat("wrA", &[]).await;
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    schedules::pause(&h.ops(), &manager(), h.now(), "morning")
        .await
        .unwrap();
    assert!(schedules::list(&h.ops(), h.now()).await.unwrap()[0].paused);

    assert!(scheduler
        .run_once(nine_am(0))
        .await
        .unwrap()
        .planned
        .is_empty());
    schedules::resume(
        &h.ops(),
        &manager(),
        nine_am(0) + Duration::minutes(1),
        "morning",
    )
    .await
    .unwrap();
    let after = scheduler
        .run_once(nine_am(0) + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(
        after,
        Default::default(),
        "the paused fire is not caught up"
    );
    assert_eq!(
        scheduler.run_once(nine_am(1)).await.unwrap().planned.len(),
        1
    );
    assert!(schedules::pause(&h.ops(), &manager(), h.now(), "nope")
        .await
        .is_err());
}

#[tokio::test]
async fn run_now_plans_a_manual_run_and_preview_sends_nothing() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.add_robot_chat("wrA", &[]).await;
    let settings = h.settings();

    let preview = scheduler::preview(&h.pool, &settings, "morning", "wrA", nine_am(0))
        .await
        .unwrap();
    assert_eq!(preview.variant, "default");
    assert_eq!(preview.route, "webhook");
    assert_eq!(preview.skip_reason, None);
    assert_eq!(
        preview.message,
        qunyun::rules::schedule::RenderedMessage::Text {
            content: "早上好，群wrA！今天是 2025-03-03。".into()
        }
    );
    assert_eq!(h.count_outbox().await, 0);
    assert!(schedules::runs(&h.ops(), None, 10)
        .await
        .unwrap()
        .is_empty());

    let run = schedules::run_now(&h.ops(), &manager(), h.now(), "morning")
        .await
        .unwrap();
    assert_eq!(run.chats, 1);
    assert!(
        schedules::run_now(&h.ops(), &manager(), h.now(), "morning")
            .await
            .is_err(),
        "the same second twice is refused"
    );
    h.drain_outbox_stepping(Duration::seconds(5)).await;
    assert_eq!(h.sim().messages().len(), 1);
    let runs = schedules::runs(&h.ops(), None, 10).await.unwrap();
    assert_eq!(runs[0].kind, RunKind::Manual);
    // A manual run does not consume the 09:00 fire.
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    assert_eq!(
        scheduler.run_once(nine_am(0)).await.unwrap().planned.len(),
        1
    );
}

#[tokio::test]
async fn variant_report_counts_what_followed_within_24_hours() {
    let h = Harness::start().await;
    h.save_rules(AB_RULES).await;
    for i in 0..10 {
        h.add_robot_chat(&format!("wrV{i:02}"), &["vip"]).await;
    }
    let scheduler = h.scheduler();
    scheduler.run_once(h.now()).await.unwrap();
    h.set(nine_am(0));
    scheduler.run_once(nine_am(0)).await.unwrap();
    h.drain_outbox_stepping(Duration::seconds(5)).await;

    let defs = RuleSet::from_toml(AB_RULES).unwrap();
    let valid = validate_all(&defs.doc.schedules, defs.timezone).unwrap();
    // One check-in per chat an hour after the push, one more 2 days later (outside).
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    {
        let mut conn = h.pool.acquire().await.unwrap();
        for i in 0..10 {
            let chat = format!("wrV{i:02}");
            for (n, at) in [
                nine_am(0) + Duration::hours(1),
                nine_am(0) + Duration::days(2),
            ]
            .into_iter()
            .enumerate()
            {
                sqlx::query(
                    "insert into checkins (user_id, day, at, makeup, chat_id) values (?, ?, ?, 0, ?)",
                )
                .bind(format!("u{i}"))
                .bind(format!("2025-03-0{}", 3 + n * 2))
                .bind(at.timestamp())
                .bind(&chat)
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            *expected
                .entry(valid[0].variant_for(&chat).name.clone())
                .or_default() += 1;
        }
    }
    let report = schedules::variant_report(&h.ops(), "promo").await.unwrap();
    let got: BTreeMap<String, (i64, i64)> = report
        .iter()
        .map(|v| (v.variant.clone(), (v.deliveries, v.checkins)))
        .collect();
    let want: BTreeMap<String, (i64, i64)> =
        expected.into_iter().map(|(v, n)| (v, (n, n))).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn rule_set_validation_reports_schedule_field_paths() {
    let text = r#"
[[schedules]]
name = "ok"
cron = "0 0 9 * * *"
targets = { all_chats = true }
content = { kind = "text", body = "hi" }

[[schedules]]
name = "broken"
cron = "0 9 * * *"
targets = { all_chats = true }
content = { kind = "text", body = "hi" }
"#;
    let error = RuleSet::from_toml(text).unwrap_err();
    assert!(
        error.0.iter().any(|e| e.path == "schedules[1].cron"),
        "{error}"
    );
    // And a valid set round-trips through export.
    let valid = text.replace("\"0 9 * * *\"", "\"0 0 10 * * *\"");
    let rules = RuleSet::from_toml(&valid).unwrap();
    assert_eq!(rules.doc.schedules.len(), 2);
    let again = RuleSet::from_toml(&rules.to_toml()).unwrap();
    assert_eq!(again.doc.schedules, rules.doc.schedules);
    let _: &[ScheduleDef] = &again.doc.schedules;
}

#[tokio::test]
async fn schedule_state_survives_a_new_scheduler_instance() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.scheduler().run_once(h.now()).await.unwrap();
    let mut conn = h.pool.acquire().await.unwrap();
    let state = schedule_store::state(&mut conn, "morning")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.checked_through, start().timestamp());
    assert!(!state.paused);
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use qunyun::rules::schedule::fires_between;

    const HOURLY: &str = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "hourly"
cron = "0 0 * * * *"

[schedules.targets]
all_chats = true

[schedules.content]
kind = "text"
body = "hi"
"#;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// However irregularly the scheduler runs (gaps of seconds to hours,
        /// repeated instants), every fire gets exactly one run row, is sent
        /// only if found within the grace period, and never twice.
        #[test]
        fn every_fire_is_recorded_exactly_once(gaps in proptest::collection::vec(0i64..4 * 3600, 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let h = Harness::start().await;
                let mut conn = h.conn().await;
                rule_sets::save(&mut conn, HOURLY, start()).await.unwrap();
                drop(conn);
                let scheduler = h.scheduler();
                let mut now = start();
                scheduler.run_once(now).await.unwrap();
                for gap in &gaps {
                    now += Duration::seconds(*gap);
                    for planned in scheduler.run_once(now).await.unwrap().planned {
                        assert!(now - planned.fire_at <= Duration::minutes(15));
                    }
                }
                let rules = RuleSet::from_toml(HOURLY).unwrap();
                let valid = validate_all(&rules.doc.schedules, rules.timezone).unwrap();
                let expected: Vec<i64> = fires_between(&valid[0], start(), now)
                    .iter()
                    .map(DateTime::timestamp)
                    .collect();
                let mut recorded: Vec<i64> = schedules::runs(&h.ops(), None, 100_000)
                    .await
                    .unwrap()
                    .iter()
                    .map(|run| run.fire_at)
                    .collect();
                recorded.sort_unstable();
                assert_eq!(recorded, expected);
            });
        }
    }
}

#[tokio::test]
async fn run_loop_makes_a_pass_and_stops_on_cancel() {
    let h = Harness::start().await;
    h.save_rules(&daily_nine("")).await;
    h.add_robot_chat("wrA", &[]).await;
    h.scheduler().run_once(h.now()).await.unwrap();
    h.set(nine_am(0));
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();
    // Already cancelled: exactly one pass, then the loop returns.
    let clock: qunyun::clock::SharedClock = h.clock.clone();
    let scheduler = h.scheduler();
    qunyun::jobs::run_loop(&scheduler, &clock, scheduler.tick(), &shutdown).await;
    assert_eq!(h.count_outbox().await, 1);
}

/// A manager's "send now" to a tag: one row per tagged chat through the same
/// route decision as pushes. The app group and the robot chat receive it in
/// the simulator; the customer group without a robot waits for its owner;
/// the smart-bot group and the chosen chat nobody registered are recorded as
/// skipped with the reason; an untagged chat gets nothing; queueing the same
/// broadcast again adds nothing.
#[tokio::test]
async fn a_broadcast_to_a_tag_goes_through_each_chats_route() {
    use qunyun::outbound::Broadcast;
    use qunyun::rules::route::reasons;
    use qunyun::rules::Content;

    let h = Harness::start().await;
    h.sim().add_app_chat(SeedAppChat {
        chatid: "APPCHAT".into(),
        name: "ops".into(),
        owner: "zhangsan".into(),
        userlist: vec!["zhangsan".into(), "lisi".into()],
        creator_agent_id: None,
    });
    h.add_chat("APPCHAT", ChatRoute::AppGroup, Some("zhangsan"), &["vip"])
        .await;
    h.add_robot_chat("wrROBOT", &["vip"]).await;
    h.add_robot_chat("wrOTHER", &["other"]).await;
    h.sim().add_customer_group(SeedCustomerGroup {
        chat_id: "wrCUST".into(),
        name: "VIP 客户".into(),
        owner: "zhangsan".into(),
        notice: String::new(),
        status: 0,
        create_time: 0,
        admins: vec![],
        members: vec![SeedGroupMember::new("wmCUSTOMER")],
    });
    h.add_chat(
        "wrCUST",
        ChatRoute::CustomerGroup,
        Some("zhangsan"),
        &["vip"],
    )
    .await;
    h.add_chat(
        "wrSMART",
        ChatRoute::internal_with_smart_bot("bot"),
        None,
        &["vip"],
    )
    .await;

    let broadcast = Broadcast {
        id: "b1".into(),
        chats: vec!["wrGONE".into()],
        tags: vec!["vip".into()],
        content: Content::text("【上新】保温杯 2.0 今晚八点开抢"),
    };
    let mut tx = h.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let queued = outbox::enqueue_broadcast(&mut tx, &broadcast, APP, h.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(queued.added, 5, "{:?}", queued.planned);

    h.drain_outbox_stepping(Duration::seconds(5)).await;
    let received: BTreeMap<String, (SimRoute, String)> = h
        .sim()
        .messages()
        .iter()
        .map(|d| {
            (
                d.target.clone(),
                (d.route, d.text().unwrap_or_default().to_owned()),
            )
        })
        .collect();
    let text = "【上新】保温杯 2.0 今晚八点开抢".to_owned();
    assert_eq!(
        received.get("APPCHAT"),
        Some(&(SimRoute::Appchat, text.clone()))
    );
    assert_eq!(
        received.get("wrROBOT"),
        Some(&(SimRoute::Webhook, text.clone()))
    );
    assert!(!received.contains_key("wrOTHER"), "{received:?}");

    let mut conn = h.pool.acquire().await.unwrap();
    let rows = outbox::list(&mut conn, None).await.unwrap();
    let row = |chat: &str| {
        rows.iter()
            .find(|row| row.idempotency_key == format!("broadcast:b1:{chat}"))
            .unwrap_or_else(|| panic!("no row for {chat}: {rows:?}"))
    };
    assert_eq!(row("APPCHAT").status, OutboxStatus::Sent);
    assert_eq!(row("wrROBOT").status, OutboxStatus::Sent);
    assert_eq!(
        (row("wrCUST").status, row("wrCUST").target.as_str()),
        (OutboxStatus::AwaitingConfirmation, "zhangsan")
    );
    assert_eq!(h.sim().pending_mass().len(), 1);
    for (chat, reason) in [
        ("wrSMART", reasons::SMART_BOT_ONLY),
        ("wrGONE", reasons::UNKNOWN_CHAT),
    ] {
        assert_eq!(row(chat).status, OutboxStatus::Skipped, "{chat}");
        assert_eq!(row(chat).last_error.as_deref(), Some(reason), "{chat}");
    }

    // The same broadcast again (a double click) adds nothing.
    let again = outbox::enqueue_broadcast(&mut conn, &broadcast, APP, h.now())
        .await
        .unwrap();
    assert_eq!(again.added, 0);
}
