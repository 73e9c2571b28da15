//! A member's check-in along the whole path the service takes, driven step by
//! step: an encrypted callback in, a pipeline pass, sender passes, WeCom's
//! record; then a manager's correction through the console.

use qunyun::admin::Role;
use qunyun::sim::Route;
use qunyun::store::points;
use reqwest::StatusCode;

use crate::helpers::{spawn_app, Callback};

#[tokio::test]
async fn a_checkin_is_answered_once_and_a_manager_corrects_the_points_in_the_console() {
    let app = spawn_app().await;
    let code = app.sim().issue_response_code("AIBOT-IT", "CHAT-IT", true);
    let mention = serde_json::json!({
        "msgid": "CHECKIN-1", "aibotid": "AIBOT-IT", "chatid": "CHAT-IT", "chattype": "group",
        "from": {"userid": "wmA"}, "response_url": app.sim().response_url(&code),
        "msgtype": "text", "text": {"content": "@运营助手 签到"}
    })
    .to_string();
    // WeCom delivers the callback again when it thinks the first was lost.
    for _ in 0..2 {
        let response = app.post_event(Callback::Bot(mention.clone())).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.run_pipeline().await.processed, 1);
    let delivered = app.drain_outbox().await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].route, Route::BotResponse);
    assert!(
        delivered[0].text().unwrap_or_default().contains("签到成功"),
        "{delivered:?}"
    );
    assert!(app.drain_outbox().await.is_empty(), "nothing sent twice");

    let earned = points::balance(&mut *app.conn().await, "wmA")
        .await
        .unwrap();
    assert!(earned > 0);
    // The manager finds the member in the community's directory.
    qunyun::store::members::ensure_person(&mut *app.conn().await, "wmA", None, app.now())
        .await
        .unwrap();
    let console = app.console();
    let (session, _) = console.session_for("op", Role::Operator).await;
    let reply = console
        .post_as(
            "/admin/members/wmA/points",
            &session,
            &[("delta", "5"), ("reason", "活动奖励")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        points::balance(&mut *app.conn().await, "wmA")
            .await
            .unwrap(),
        earned + 5
    );
    app.stop().await;
}
