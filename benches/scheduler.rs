//! Planning one fire of a schedule for 10,000 target chats: claim the run row,
//! select targets, assign variants, render each chat's message and write its
//! outbox and delivery rows, committed in one transaction (SQLite file, WAL).
//!
//! `cargo bench --bench scheduler`

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qunyun::jobs::scheduler::{plan_fire, SchedulerSettings};
use qunyun::rules::schedule::{render, validate_all, ChatVars, PushContext};
use qunyun::rules::{ChatRoute, RuleSet};
use qunyun::store::chats::{self, NewChat};
use qunyun::store::schedules::RunKind;

const CHATS: usize = 10_000;

const RULES: &str = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "promo"
cron = "0 0 9 * * *"

[schedules.targets]
all_chats = true

[[schedules.variants]]
name = "A"
weight = 1
content = { kind = "text", body = "{{ chat.name }} 的 {{ chat.member_count }} 位朋友，早上好！今天是 {{ date }} {{ weekday }}。" }

[[schedules.variants]]
name = "B"
weight = 1
content = { kind = "markdown", body = "**{{ chat.name }}**：今天 {{ date }} 签到翻倍！" }
"#;

/// 80 % webhook robots, 10 % app groups, 10 % customer groups of 50 owners.
fn chat(i: usize) -> NewChat {
    let route = match i % 10 {
        0 => ChatRoute::AppGroup,
        1 => ChatRoute::CustomerGroup,
        _ => ChatRoute::internal_with_robot(format!("robot-key-{i}")),
    };
    NewChat {
        chat_id: format!("wr{i:06}"),
        name: format!("社群 {i}"),
        route,
        owner: Some(format!("owner{}", i % 50)),
        admins: vec![],
        tags: vec![],
        member_version: None,
    }
}

fn plan_one_fire(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = RuleSet::from_toml(RULES).expect("bench rule set");
    let schedules = validate_all(&rules.doc.schedules, rules.timezone).expect("schedules");
    let schedule = &schedules[0];
    let settings = SchedulerSettings::default();
    let start = Utc
        .with_ymd_and_hms(2025, 3, 3, 1, 0, 0)
        .single()
        .expect("time");
    let pool = runtime.block_on(async {
        let pool = qunyun::store::open(&dir.path().join("bench.db"))
            .await
            .expect("database");
        let mut tx = pool.begin().await.expect("tx");
        for i in 0..CHATS {
            chats::upsert_chat(&mut tx, &chat(i), start)
                .await
                .expect("chat");
        }
        tx.commit().await.expect("commit");
        pool
    });

    let next_fire = AtomicI64::new(0);
    let mut group = c.benchmark_group("scheduler");
    group.throughput(Throughput::Elements(CHATS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("plan_fire_10000_chats", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let n = next_fire.fetch_add(1, Ordering::Relaxed);
                    let fire = start + chrono::Duration::days(n);
                    let began = Instant::now();
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("tx");
                    let planned = plan_fire(
                        &mut tx,
                        schedule,
                        fire,
                        RunKind::Scheduled,
                        None,
                        &settings,
                        fire,
                    )
                    .await
                    .expect("plan")
                    .expect("new fire");
                    tx.commit().await.expect("commit");
                    total += began.elapsed();
                    assert_eq!(planned.chats, CHATS);
                }
                total
            })
        })
    });
    // The pure part alone, for comparison: variant + render for every chat.
    group.bench_function("render_10000_chats", |b| {
        b.iter(|| {
            for i in 0..CHATS {
                let chat_id = format!("wr{i:06}");
                let variant = schedule.variant_for(&chat_id);
                let context = PushContext {
                    fire_time: start,
                    chat: Some(ChatVars {
                        name: format!("社群 {i}"),
                        member_count: 42,
                    }),
                    leaderboard: Vec::new(),
                };
                render(schedule, variant, &context).expect("render");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, plan_one_fire);
criterion_main!(benches);
