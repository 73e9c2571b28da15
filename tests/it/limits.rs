//! The server's limits against misbehaving clients: slow headers are cut off,
//! a stalled body times out, an oversized body is refused before it is read,
//! idle connections do not keep callbacks out, and the console can live on
//! its own listener.

use std::time::Duration;

use qunyun::app::App;
use qunyun::clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, spawn_app_with, Callback, TestConfig};

#[tokio::test]
async fn a_client_sending_headers_one_byte_per_second_is_cut_off() {
    let app = spawn_app_with(|config| config.server.header_read_timeout_secs = 2).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: qunyun\r\nX-Slow: one byte per second\r\n\r\n";
    let (mut reader, mut writer) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    let mut answer = Vec::new();
    let cut_off = loop {
        tokio::select! {
            _ = tick.tick() => {
                if sent == request.len() {
                    break false;
                }
                if writer.write_all(&request[sent..=sent]).await.is_err() {
                    break true;
                }
                sent += 1;
            }
            // Reading ends only when the server closes the connection (or resets it).
            _ = reader.read_to_end(&mut answer) => break true,
        }
    };
    let elapsed = started.elapsed();
    assert!(cut_off, "the slow client sent its whole request");
    assert!(sent < request.len(), "cut off only after {sent} bytes");
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "cut off after {elapsed:?} (header timeout 2 s)"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_after_the_request_timeout() {
    let app = spawn_app_with(|config| config.server.request_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // A fresh timestamp, so the request gets past the timestamp window to its body.
    let path = format!(
        "/wecom/apps/{}/callback?msg_signature={}&timestamp={}&nonce=1",
        crate::helpers::APP,
        "0".repeat(40),
        app.now().timestamp()
    );
    // Headers promise 100 bytes of body; 10 arrive, then nothing.
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: qunyun\r\nContent-Length: 100\r\n\r\n0123456789");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the test's own deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(app.inbox().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let app = spawn_app_with(|config| config.server.max_body_bytes = 1024).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let path = format!(
        "/wecom/apps/{}/callback?msg_signature={}&timestamp=1&nonce=1",
        crate::helpers::APP,
        "0".repeat(40)
    );
    // Only the headers are sent: the refusal cannot have waited for the body.
    let head = format!("POST {path} HTTP/1.1\r\nHost: qunyun\r\nContent-Length: 5000000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_idle_connections_do_not_keep_a_callback_out() {
    let app = spawn_app().await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let response = app
        .post_event(Callback::App(chat_join_xml("wmIDLE", 1763776800)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.inbox().await.len(), 1);
    // The idle connections were all still open while the callback was answered.
    let mut probe = [0u8; 1];
    for stream in &idle {
        assert!(
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
    drop(idle);
    app.stop().await;
}

#[tokio::test]
async fn the_console_on_its_own_listener_is_not_on_the_callback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().build(&dir.path().join("qunyun.db"));
    let app = App::new(config, clock::system()).await.unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_url, admin_url) = (
        format!("http://{}", main.local_addr().unwrap()),
        format!("http://{}", admin.local_addr().unwrap()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_listeners(main, Some(admin), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("{admin_url}/admin/login")).await, 200);
    assert_eq!(status(format!("{main_url}/admin/login")).await, 404);
    assert_eq!(status(format!("{main_url}/healthz")).await, 200);
    assert_eq!(status(format!("{admin_url}/healthz")).await, 404);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
