//! 排行 variants through the pipeline: week / month / all time, community or this chat.

use chrono::{Duration, NaiveDate};
use qunyun::clock::Clock;
use qunyun::store::{outbox, points};

use crate::helpers::{spawn_app, Callback};

fn mention(msgid: &str, chat: &str, text: &str) -> String {
    serde_json::json!({
        "msgid": msgid, "aibotid": "AIBOT-IT", "chatid": chat, "chattype": "group",
        "from": {"userid": "asker"},
        "response_url": format!("http://127.0.0.1:1/cgi-bin/aibot/response?response_code={msgid}"),
        "msgtype": "text", "text": {"content": format!("@运营助手 {text}")}
    })
    .to_string()
}

#[tokio::test]
async fn rank_command_answers_the_requested_board() {
    let app = spawn_app().await;
    let now = app.clock.now(); // 2026-11-22 10:00 in Shanghai (a Sunday)
    let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    // (user, points, chat, day): wmOld earned long ago, wmMonth earlier this month,
    // wmWeek this week; wmOther earned in another chat.
    for (user, delta, chat, day) in [
        ("wmOld", 500, "CHAT-IT", today - Duration::days(60)),
        ("wmMonth", 300, "CHAT-IT", today - Duration::days(10)),
        ("wmWeek", 100, "CHAT-IT", today),
        ("wmOther", 200, "CHAT-OTHER", today),
    ] {
        let reference = format!("seed:{user}");
        let entry = points::NewLedgerEntry {
            user_id: user,
            delta,
            reason: "seed",
            reference: &reference,
            chat_id: Some(chat),
            day,
            at: now,
        };
        points::append(&mut conn, &entry).await.unwrap();
    }
    drop(conn);

    for (i, text) in ["排行", "排行 月", "总榜", "本群排行 总"]
        .iter()
        .enumerate()
    {
        let response = app
            .post_event(Callback::Bot(mention(
                &format!("RANK-{i}"),
                "CHAT-IT",
                text,
            )))
            .await;
        assert_eq!(response.status(), 200);
    }
    app.run_pipeline().await;

    let mut conn = app.pool.acquire().await.unwrap();
    let mut rows = outbox::list(&mut conn, None).await.unwrap();
    rows.sort_by_key(|row| row.id);
    let replies: Vec<String> = rows
        .iter()
        .map(|row| {
            let payload: serde_json::Value = serde_json::from_str(&row.payload_json).unwrap();
            payload["markdown"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    let order = |text: &str| -> Vec<&str> {
        ["wmOld", "wmMonth", "wmWeek", "wmOther"]
            .into_iter()
            .filter(|user| text.contains(user))
            .collect()
    };
    assert!(replies[0].starts_with("本周积分排行"), "{}", replies[0]);
    assert_eq!(order(&replies[0]).len(), 2, "this week: wmWeek and wmOther");
    assert!(replies[1].starts_with("本月积分排行"));
    assert_eq!(order(&replies[1]), ["wmMonth", "wmWeek", "wmOther"]);
    assert!(replies[2].starts_with("积分总榜"));
    assert_eq!(
        order(&replies[2]),
        ["wmOld", "wmMonth", "wmWeek", "wmOther"]
    );
    assert!(replies[3].starts_with("本群积分总榜"));
    assert_eq!(
        order(&replies[3]),
        ["wmOld", "wmMonth", "wmWeek"],
        "not the other chat"
    );
    // Ranks follow points: wmOld (500) before wmMonth (300) on the all-time board.
    let all_time = &replies[2];
    assert!(all_time.find("wmOld").unwrap() < all_time.find("wmMonth").unwrap());
    drop(conn);
    app.stop().await;
}
