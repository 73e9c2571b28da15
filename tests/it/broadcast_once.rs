//! A broadcast submitted twice queues once: the console form carries a
//! one-time key from its render, the API an `Idempotency-Key` header.

use axum::http::{Method, StatusCode};
use chrono::{TimeZone, Utc};
use qunyun::admin::Role;
use qunyun::rules::ChatRoute;
use qunyun::store;

use crate::helpers::{self, TestApp, TestConfig};

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 4, 0, 0).unwrap()
}

/// A served console with one customer group tagged `vip`.
async fn served() -> (TestApp, helpers::Console) {
    let app = TestApp::start(TestConfig::new().starting_at(start())).await;
    let mut conn = app.pool.acquire().await.unwrap();
    store::chats::upsert_chat(
        &mut conn,
        &store::chats::NewChat {
            chat_id: "wrOgAA1".into(),
            name: "好物分享1群".into(),
            route: ChatRoute::CustomerGroup,
            owner: Some("xiaomei".into()),
            admins: vec![],
            tags: vec!["vip".into()],
            member_version: None,
        },
        start(),
    )
    .await
    .unwrap();
    drop(conn);
    let console = app.console();
    (app, console)
}

/// The broadcast rows in the outbox: (idempotency key, route).
async fn broadcast_rows(console: &helpers::Console) -> Vec<(String, String)> {
    sqlx::query_as(
        "select idempotency_key, route from outbox
         where idempotency_key like 'broadcast:%' order by id",
    )
    .fetch_all(&console.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_same_console_form_submitted_twice_queues_once() {
    let (_app, console) = served().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let page = console.get("/admin/chats", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let key = helpers::hidden_value(&page.body, "request_key").to_owned();
    assert!(key.len() >= 32, "{key}");
    let form = [
        ("csrf", session.csrf.as_str()),
        ("chats", ""),
        ("tags", "vip"),
        ("text", "周末活动"),
        ("request_key", key.as_str()),
    ];
    let first = console
        .post_form("/admin/broadcasts", Some(&session.cookie), &form)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let rows = broadcast_rows(&console).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "customer_group_mass");
    let again = console
        .post_form("/admin/broadcasts", Some(&session.cookie), &form)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(
        again.body.contains("wrOgAA1: 等待群主确认 (xiaomei)"),
        "the repeat shows the first outcome: {}",
        again.body
    );
    assert_eq!(
        broadcast_rows(&console).await,
        rows,
        "a repeat queues nothing"
    );
    // The answer page carries a new key: the next message is a new broadcast.
    let next_key = helpers::hidden_value(&again.body, "request_key").to_owned();
    assert_ne!(next_key, key);
    let next = console
        .post_form(
            "/admin/broadcasts",
            Some(&session.cookie),
            &[
                ("csrf", session.csrf.as_str()),
                ("tags", "vip"),
                ("text", "下周活动"),
                ("request_key", next_key.as_str()),
            ],
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(broadcast_rows(&console).await.len(), 2);
}

#[tokio::test]
async fn the_same_api_key_twice_gets_the_same_answer_and_queues_once() {
    let (_app, console) = served().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let body = r#"{"tags": ["vip"], "text": "周末活动"}"#;
    let call = |key: &'static str, body: &'static str| {
        let console = console.clone();
        let token = token.clone();
        async move {
            console
                .api_with(
                    Method::POST,
                    "/admin/api/v1/broadcasts",
                    Some(&token),
                    &[("idempotency-key", key)],
                    body,
                )
                .await
        }
    };
    let first = call("order-42", body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let rows = broadcast_rows(&console).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let again = call("order-42", body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let first: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let again: serde_json::Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(again, first, "a repeat answers the first result");
    assert_eq!(
        broadcast_rows(&console).await,
        rows,
        "a repeat queues nothing"
    );

    // The key names one message: reused for another text, it is refused.
    let other = call("order-42", r#"{"tags": ["vip"], "text": "别的"}"#).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST, "{}", other.body);
    assert!(other.body.contains("idempotency_key"), "{}", other.body);
    // Without a key each call is a new broadcast.
    for _ in 0..2 {
        let plain = console
            .api(Method::POST, "/admin/api/v1/broadcasts", Some(&token), body)
            .await;
        assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    }
    assert_eq!(broadcast_rows(&console).await.len(), 3);
}

#[tokio::test]
async fn two_concurrent_requests_with_one_key_queue_once() {
    let (_app, console) = served().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let body = r#"{"tags": ["vip"], "text": "周末活动"}"#;
    let headers = [("idempotency-key", "double-click")];
    let path = "/admin/api/v1/broadcasts";
    let (a, b) = tokio::join!(
        console.api_with(Method::POST, path, Some(&token), &headers, body),
        console.api_with(Method::POST, path, Some(&token), &headers, body),
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    let a: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let b: serde_json::Value = serde_json::from_str(&b.body).unwrap();
    assert_eq!(a["id"], b["id"], "both answer the one broadcast");
    assert_eq!(broadcast_rows(&console).await.len(), 1);
}
