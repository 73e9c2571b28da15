//! Messages per second the outbox sender pushes to the WeCom simulator on
//! loopback, with no rate limit applying (every message goes to a different
//! member): claim, rate bookkeeping, HTTP call, outcome recorded, per row.
//!
//! `cargo bench --bench outbox`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qunyun::clock;
use qunyun::jobs::outbox::{AppCredentials, OutboxSender, RateLimits, SenderSettings};
use qunyun::sim::{Sim, SimConfig};
use qunyun::store::outbox::{self, NewOutboxMessage, Route};
use qunyun::wecom::api::{ApiClient, ApiConfig, Secret};

const CORP: &str = "wwBENCHCORP";
const SECRET: &str = "bench-secret";
const MESSAGES_PER_ITERATION: u64 = 200;

fn sender_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (pool, sender, _sim) = runtime.block_on(async {
        let pool = qunyun::store::open(&dir.path().join("bench.db"))
            .await
            .expect("database");
        let sim = Sim::spawn(SimConfig::new(CORP, SECRET), clock::system())
            .await
            .expect("simulator");
        let api = ApiClient::new(
            ApiConfig::new(sim.api_base_url(), CORP).with_timeout(Duration::from_secs(5)),
            clock::system(),
        )
        .expect("client");
        let settings = SenderSettings {
            apps: vec![AppCredentials {
                name: "ops".into(),
                agent_id: SimConfig::DEFAULT_AGENT_ID,
                secret: Secret::new(SECRET),
            }],
            batch_size: MESSAGES_PER_ITERATION as u32,
            rate_limits: RateLimits {
                calls_per_api: u32::MAX,
                ..RateLimits::default()
            },
            ..SenderSettings::default()
        };
        let sender = OutboxSender::new(pool.clone(), api, clock::system(), settings);
        (pool, sender, sim)
    });

    let next_message = AtomicU64::new(0);
    let mut group = c.benchmark_group("outbox");
    group.throughput(Throughput::Elements(MESSAGES_PER_ITERATION));
    group.sample_size(10);
    group.bench_function("member_messages_to_simulator", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut sending = Duration::ZERO;
                for _ in 0..iterations {
                    let mut conn = pool.acquire().await.expect("connection");
                    let now = clock::Clock::now(&clock::SystemClock).timestamp();
                    for _ in 0..MESSAGES_PER_ITERATION {
                        let n = next_message.fetch_add(1, Ordering::Relaxed);
                        let key = format!("bench-{n}");
                        let member = format!("member{n}");
                        let payload = format!(
                            r#"{{"msgtype":"text","text":{{"content":"benchmark message {n}"}}}}"#
                        );
                        outbox::insert_row(
                            &mut conn,
                            &NewOutboxMessage {
                                idempotency_key: &key,
                                route: Route::Member,
                                target: &member,
                                app: Some("ops"),
                                payload_json: &payload,
                                created_at: now,
                                not_before: None,
                                skip_reason: None,
                                event_at: None,
                            },
                        )
                        .await
                        .expect("enqueue");
                    }
                    drop(conn);
                    let started = Instant::now();
                    let mut sent = 0;
                    while sent < MESSAGES_PER_ITERATION as usize {
                        let outcome = sender.run_once().await.expect("run_once");
                        assert_eq!(outcome.sent, outcome.claimed, "{outcome:?}");
                        sent += outcome.sent;
                    }
                    sending += started.elapsed();
                }
                sending
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sender_throughput);
criterion_main!(benches);
