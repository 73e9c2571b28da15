//! Pipeline throughput: archive-ingested `签到` messages, each processed in its own
//! transaction (snapshot → rules → check-in, ledger, reply outbox row, inbox done).
//! Run: `cargo bench --bench pipeline` (QUNYUN_BENCH_EVENTS overrides the count).

use std::time::Instant;

use chrono::Utc;
use qunyun::clock;
use qunyun::ingest::{self, IngestMessage};
use qunyun::pipeline::{Pipeline, PipelineSettings};
use qunyun::rules::ChatRoute;
use qunyun::store::{self, chats};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run tiny then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events: usize = if quick {
        20
    } else {
        std::env::var("QUNYUN_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(events))
}

async fn run(events: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = store::open(&dir.path().join("bench.db")).await?;
    let now = Utc::now();
    let mut conn = pool.acquire().await?;
    chats::upsert_chat(
        &mut conn,
        &chats::NewChat {
            chat_id: "wrBENCH".into(),
            name: "压测群".into(),
            route: ChatRoute::internal_with_robot("bench-robot"),
            owner: None,
            admins: Vec::new(),
            tags: Vec::new(),
            member_version: None,
        },
        now,
    )
    .await?;
    let messages: Vec<IngestMessage> = (0..events)
        .map(|i| IngestMessage {
            message_id: format!("bench-{i}"),
            chat_id: Some("wrBENCH".into()),
            sender: format!("wmUSER{i:06}"),
            text: "签到".into(),
            sent_at: now.timestamp(),
            msgtype: None,
        })
        .collect();
    for chunk in messages.chunks(500) {
        ingest::ingest_messages(&mut conn, chunk, now).await?;
    }
    drop(conn);

    let pipeline = Pipeline::new(
        pool.clone(),
        clock::system(),
        "ops",
        PipelineSettings::default(),
    );
    let started = Instant::now();
    let mut processed = 0;
    while processed < events {
        let outcome = pipeline.run_once().await?;
        anyhow::ensure!(outcome.processed > 0, "pipeline made no progress");
        processed += outcome.processed;
    }
    let elapsed = started.elapsed();
    println!(
        "pipeline: {events} check-in events in {elapsed:.2?}: {:.0} events/s",
        events as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
