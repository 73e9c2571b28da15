//! The whole POST path: HTTP + verify + decrypt + parse + inbox commit, with many
//! distinct events from concurrent clients on loopback. Prints events/s and latency
//! percentiles. Run: `cargo bench --bench callback_http` (QUNYUN_BENCH_EVENTS,
//! QUNYUN_BENCH_CONCURRENCY override the defaults).

use std::sync::Arc;
use std::time::{Duration, Instant};

use qunyun::app::App;
use qunyun::clock;
use qunyun::config::Config;
use qunyun::wecom::crypto::MsgCrypt;

const CORP_ID: &str = "wwBENCH";
const TOKEN: &str = "BenchToken";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run tiny then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = if quick {
        50
    } else {
        env_usize("QUNYUN_BENCH_EVENTS", 20_000)
    };
    let concurrency = env_usize("QUNYUN_BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(events, concurrency))
}

async fn run(events: usize, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config::from_toml_str(&format!(
        r#"
[database]
path = "{}"
[wecom]
corp_id = "{CORP_ID}"
[[wecom.apps]]
name = "ops"
agent_id = 1000002
secret = "s"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
"#,
        dir.path().join("bench.db").display()
    ))?;
    let app = App::new(config, clock::system()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/wecom/apps/ops/callback", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    // Prepare every request up front so only the server's work is timed.
    let crypt = MsgCrypt::new(TOKEN, KEY, CORP_ID).map_err(|e| anyhow::anyhow!("{e}"))?;
    let requests: Vec<(String, String)> = (0..events)
        .map(|i| {
            let xml = format!(
                "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrBENCH{:06}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>3</JoinScene><MemChangeCnt>1</MemChangeCnt><MemChangeList><Item><![CDATA[wmMEMBER{i:08}]]></Item></MemChangeList><LastMemVer><![CDATA[v{i}]]></LastMemVer><CurMemVer><![CDATA[v{}]]></CurMemVer></xml>",
                i % 500,
                i + 1
            );
            let encrypt = crypt.encrypt(xml.as_bytes());
            let signature = crypt.signature("1700000100", "42", &encrypt);
            (
                format!("{url}?msg_signature={signature}&timestamp=1700000100&nonce=42"),
                format!("<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"),
            )
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = reqwest::Client::new();

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (requests, next, client) = (requests.clone(), next.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((url, body)) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let response = client.post(url).body(body.clone()).send().await?;
                anyhow::ensure!(response.status() == 200, "status {}", response.status());
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "callback POST path: {events} distinct events, {concurrency} concurrent clients: {:.0} events/s; latency p50 {:?}, p99 {:?}, max {:?}",
        events as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
