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

/// One @-mention to the smart bot; returns what WeCom received in answer.
async fn say(app: &crate::helpers::TestApp, msgid: &str, words: &str) -> Vec<String> {
    app.mention_bot(msgid, "wmA", words).await
}

#[tokio::test]
async fn makeup_fills_a_day_three_days_back_and_the_streak_runs_across_it() {
    use chrono::{Duration, TimeZone, Utc};
    let app = spawn_app().await;
    // 10:00 in Shanghai on 2026-03-01, 03, 04 and 05: 03-02 is missed.
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 2, 0, 0).unwrap();
    for (i, d) in [1, 3, 4, 5].into_iter().enumerate() {
        app.set_clock(day(d));
        let reply = say(&app, &format!("C{i}"), "签到").await;
        assert!(reply[0].contains("签到成功"), "{reply:?}");
    }
    assert!(say(&app, "C9", "等级").await[0].contains("新人"));
    let before = points::balance(&mut *app.conn().await, "wmA")
        .await
        .unwrap();

    // Eight days back is outside the 7-day window.
    let refused = say(&app, "M0", "补签 8").await;
    assert!(refused[0].contains("最近 7 天"), "{refused:?}");
    let reply = say(&app, "M1", "补签 3").await;
    assert_eq!(
        reply,
        vec!["wmA 补签 2026-03-02 成功，消耗 20 积分，当前连续签到 5 天。本月还可补签 1 次。"]
    );
    assert_eq!(
        points::balance(&mut *app.conn().await, "wmA")
            .await
            .unwrap(),
        before - 20
    );
    // The filled day counts for the next check-in's streak too.
    app.set_clock(day(5) + Duration::days(1));
    let next = say(&app, "C6", "签到").await;
    assert!(next[0].contains("已连续签到 6 天"), "{next:?}");
    app.stop().await;
}
