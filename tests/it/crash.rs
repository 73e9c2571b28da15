//! A crash under load: the real `qunyun serve` process is flooded with distinct
//! callbacks from several clients and killed with SIGKILL mid-flood. After a
//! restart on the same database, every event a client saw answered 200 is in
//! the inbox, and sending every event again stores each exactly once.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qunyun::wecom::crypto::MsgCrypt;

use crate::helpers::{wait_until, ConfigFile, ServeProcess as Serve, APP_KEY, APP_TOKEN, CORP_ID};

/// The app the built-in rule set answers through, so `serve` starts without a rule import.
const APP: &str = "main";

/// Clients flooding the service at once.
const CLIENTS: usize = 8;
/// Acknowledged events before the kill: well into the flood.
const ACKED_BEFORE_KILL: usize = 1_000;

/// Event `i` as WeCom would deliver it: a member joins chat `wrCRASH<i>`, so
/// the inbox row's chat id says which event it is.
fn callback(crypt: &MsgCrypt, i: usize) -> (String, String) {
    let xml = format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[{}]]></ChatId>\
         <ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>\
         <JoinScene>3</JoinScene><MemChangeCnt>1</MemChangeCnt>\
         <MemChangeList><Item><![CDATA[wmCRASH{i}]]></Item></MemChangeList></xml>",
        chat(i)
    );
    let encrypt = crypt.encrypt(xml.as_bytes());
    let nonce = i.to_string();
    // `serve` runs on the system clock and refuses stale timestamps.
    let timestamp = chrono::Utc::now().timestamp();
    let signature = crypt.signature(&timestamp.to_string(), &nonce, &encrypt);
    (
        format!("/wecom/apps/{APP}/callback?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
        format!("<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
    )
}

fn chat(i: usize) -> String {
    format!("wrCRASH{i:08}")
}

async fn post(http: &reqwest::Client, base: &str, crypt: &MsgCrypt, i: usize) -> Option<u16> {
    let (path, body) = callback(crypt, i);
    let reply = http
        .post(format!("{base}{path}"))
        .body(body)
        .send()
        .await
        .ok()?;
    Some(reply.status().as_u16())
}

/// The chat ids of every inbox row, and the row count.
async fn stored(db: &Path) -> (HashSet<String>, usize) {
    let pool = qunyun::store::open(db).await.unwrap();
    let chats: Vec<Option<String>> = sqlx::query_scalar("select chat_id from inbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let count = chats.len();
    (chats.into_iter().flatten().collect(), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_callbacks_survive_sigkill_and_resending_stores_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile {
        app: APP.into(),
        ..ConfigFile::default()
    }
    .write(dir.path());
    let db = dir.path().join("qunyun.db");
    let crypt = Arc::new(MsgCrypt::new(APP_TOKEN, APP_KEY, CORP_ID).unwrap());

    let serve = Serve::start(&config);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (base, crypt, next, acked) = (
                serve.base.clone(),
                crypt.clone(),
                next.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    match post(&http, &base, &crypt, i).await {
                        Some(200) => acked.lock().unwrap().push(i),
                        Some(status) => panic!("event {i} answered {status} before the kill"),
                        // The process is gone: this client's flood is over.
                        None => return,
                    }
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || acked.lock().unwrap().len()
            >= ACKED_BEFORE_KILL)
        .await,
        "the flood never got going"
    );
    serve.kill();
    for client in clients {
        client.await.unwrap();
    }
    let acked: Vec<usize> = acked.lock().unwrap().clone();
    let attempted = next.load(Ordering::SeqCst);

    let serve = Serve::start(&config);
    let (chats, rows) = stored(&db).await;
    let lost: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|&i| !chats.contains(&chat(i)))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(chats.len(), rows, "an event is stored twice");

    // Resending what was acknowledged adds nothing.
    let http = reqwest::Client::new();
    for &i in &acked {
        assert_eq!(post(&http, &serve.base, &crypt, i).await, Some(200));
    }
    assert_eq!(stored(&db).await.1, rows);

    // Resending every event attempted stores each of them exactly once.
    for i in 0..attempted {
        assert_eq!(post(&http, &serve.base, &crypt, i).await, Some(200));
    }
    let (chats, rows) = stored(&db).await;
    assert_eq!(rows, attempted);
    assert!((0..attempted).all(|i| chats.contains(&chat(i))));
    serve.kill();
}
