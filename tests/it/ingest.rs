//! `POST /ingest/messages`: signed archive batches land in the inbox once.

use hmac::{Hmac, Mac};
use qunyun::config::Secret;

use crate::helpers::spawn_app_with;

const SECRET: &str = "ingest-secret-for-tests";

/// What a puller sends: the timestamp header and the hex HMAC of
/// `<timestamp>.<body>`, computed here independently of qunyun's code.
fn sign_at(timestamp: &str, body: &str) -> (String, String) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    (
        timestamp.to_owned(),
        hex::encode(mac.finalize().into_bytes()),
    )
}

#[tokio::test]
async fn signed_batches_land_once_and_bad_ones_change_nothing() {
    let app = spawn_app_with(|config| config.ingest.secret = Some(Secret::new(SECRET))).await;
    let url = app.url("/ingest/messages");
    let batch = serde_json::json!({"messages": [
        {"message_id": "arch-1", "chat_id": "wrA", "sender": "wmX", "text": "签到", "sent_at": 1763776800},
        {"message_id": "arch-2", "chat_id": "wrA", "sender": "wmY", "text": "加 微 信", "sent_at": 1763776801}
    ]})
    .to_string();

    let now = app.now().timestamp().to_string();
    let sign = |body: &str| Some(sign_at(&now, body));
    let post = |body: String, signed: Option<(String, String)>| {
        let mut request = app.http.post(&url).body(body);
        if let Some((timestamp, signature)) = signed {
            request = request
                .header("x-qunyun-timestamp", timestamp)
                .header("x-qunyun-signature", signature);
        }
        request.send()
    };

    let response = post(batch.clone(), sign(&batch)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2);

    let again = post(batch.clone(), sign(&batch)).await.unwrap();
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_i64(), body["duplicates"].as_i64()),
        (Some(0), Some(2))
    );

    let stale = (app.now().timestamp() - 301).to_string();
    let future = (app.now().timestamp() + 301).to_string();
    let (_, signed_now) = sign_at(&now, &batch);
    let refusals = [
        (post(batch.clone(), None).await.unwrap(), 401, "unsigned"),
        (
            post(batch.clone(), Some(sign_at(&stale, &batch)))
                .await
                .unwrap(),
            400,
            "stamped over five minutes ago",
        ),
        (
            post(batch.clone(), Some(sign_at(&future, &batch)))
                .await
                .unwrap(),
            400,
            "stamped over five minutes ahead",
        ),
        (
            post(batch.clone(), Some(sign_at("soon", &batch)))
                .await
                .unwrap(),
            400,
            "timestamp not a number",
        ),
        (
            post(batch.clone(), Some((stale.clone(), signed_now)))
                .await
                .unwrap(),
            401,
            "timestamp changed after signing",
        ),
        (
            post(batch.clone(), sign("other")).await.unwrap(),
            401,
            "wrong signature",
        ),
        (
            post("{oops".into(), sign("{oops")).await.unwrap(),
            400,
            "not json",
        ),
    ];
    for (response, status, what) in refusals {
        assert_eq!(response.status().as_u16(), status, "{what}");
    }
    let missing_sender = r#"{"messages":[{"message_id":"arch-3","chat_id":null,"sender":"","text":"x","sent_at":1}]}"#;
    let response = post(missing_sender.into(), sign(missing_sender))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("messages[0].sender"));

    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), 2);
    assert!(inbox
        .iter()
        .all(|row| row.kind == qunyun::store::inbox::InboxKind::IngestMessage));
    app.stop().await;
}
