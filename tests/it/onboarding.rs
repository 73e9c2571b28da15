//! Merged group posts through the real server and the simulator: a day after
//! a wave of newcomers, their customer group gets **one** onboarding post
//! naming them (capped mentions), which reaches WeCom as one owner-confirmed
//! mass message.

use std::time::Duration as StdDuration;

use chrono::Duration;
use qunyun::sim::{JoinRequest, NewMember, Route, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::outbox::OutboxStatus;

use crate::helpers::{TestApp, TestConfig};

const CHAT: &str = "wrONBOARD000000000000000000001";
const OWNER: &str = "owner1";

fn seed_member(userid: &str) -> SeedGroupMember {
    serde_json::from_value(serde_json::json!({ "userid": userid, "join_time": 1763700000 }))
        .unwrap()
}

#[tokio::test]
async fn nineteen_newcomers_get_one_onboarding_post_the_next_morning() {
    let app = TestApp::start(
        TestConfig::new().with_sender(|s| s.mass_poll_interval = StdDuration::from_secs(30)),
    )
    .await;
    let sim = app.sim();
    sim.add_customer_group(SeedCustomerGroup {
        chat_id: CHAT.into(),
        name: "新人测试群".into(),
        owner: OWNER.into(),
        notice: String::new(),
        status: 0,
        create_time: 1763000000,
        admins: vec![],
        members: vec![seed_member(OWNER)],
    });
    sim.set_callbacks(app.callback_targets());
    let pipeline = app.pipeline();
    app.group_sync().run_once(true).await.unwrap();

    // 19 newcomers over half an hour, in five callbacks.
    for wave in 0..5 {
        let members = (wave * 4..(wave * 4 + 4).min(19))
            .map(|i| NewMember::new(format!("wmNEW{i:02}")))
            .collect();
        let delivered = sim
            .drive_join(JoinRequest {
                app: None,
                chat_id: CHAT.into(),
                members,
                via: Default::default(),
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(delivered.status, Some(200));
        pipeline.run_once().await.unwrap();
        app.clock.advance(Duration::minutes(7));
    }
    pipeline.run_once().await.unwrap();

    // The next morning, one minute after the first tip fell due (the others
    // are due within the next half hour): all 19 go out as one post.
    app.clock
        .advance(Duration::hours(23) + Duration::minutes(26));
    let outcome = pipeline.run_once().await.unwrap();
    assert_eq!(outcome.onboarding_sent, 1);
    app.clock.advance(Duration::hours(1));
    assert_eq!(
        pipeline.run_once().await.unwrap().onboarding_sent,
        0,
        "the later tips of that day went out in the first post"
    );

    let first = app.send_once().await;
    assert_eq!(first.awaiting_confirmation, 1, "{first:?}");
    let pending = sim.pending_mass();
    assert_eq!(pending.len(), 1);
    assert!(sim.confirm_mass(&pending[0]), "the owner confirms");
    app.clock.advance(Duration::seconds(31));
    app.send_once().await;

    let into_chat: Vec<_> = sim
        .messages()
        .into_iter()
        .filter(|d| d.target == CHAT)
        .collect();
    assert_eq!(into_chat.len(), 1, "{into_chat:?}");
    assert_eq!(into_chat[0].route, Route::CustomerGroupMass);
    assert_eq!(into_chat[0].sender, OWNER);
    let text = into_chat[0].text().unwrap_or_default();
    assert!(text.contains("等 19 人"), "{text}");
    assert!(text.contains("wmNEW00、wmNEW01"), "{text}");

    let mut conn = app.pool.acquire().await.unwrap();
    let rows = qunyun::store::outbox::list(&mut conn, None).await.unwrap();
    let tips: Vec<_> = rows
        .iter()
        .filter(|row| row.idempotency_key.starts_with("onboarding:"))
        .collect();
    assert_eq!(tips.len(), 1);
    assert_eq!(tips[0].status, OutboxStatus::Sent);
    drop(conn);
    app.stop().await;
}
