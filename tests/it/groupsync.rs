//! Customer-group reconciliation: a lost callback leaves a member-version gap,
//! the pipeline flags the chat, and the sync job replaces our member list with
//! what groupchat/get reports.

use qunyun::sim::{JoinRequest, NewMember, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::members;

use crate::helpers::{spawn_app, TestApp};

const CHAT: &str = "wrSYNC000000000000000000000001";

fn seed_member(userid: &str) -> SeedGroupMember {
    serde_json::from_value(serde_json::json!({ "userid": userid, "join_time": 1763700000 }))
        .unwrap()
}

/// One customer group in WeCom, its callbacks pointed at `app`.
fn world(app: &TestApp, name: &str, members: Vec<SeedGroupMember>) {
    app.sim().add_customer_group(SeedCustomerGroup {
        chat_id: CHAT.into(),
        name: name.into(),
        owner: "owner1".into(),
        notice: String::new(),
        status: 0,
        create_time: 1763000000,
        admins: vec!["admin1".into()],
        members,
    });
    app.sim().set_callbacks(app.callback_targets());
}

#[tokio::test]
async fn lost_callback_gap_is_repaired_from_groupchat_get() {
    let app = spawn_app().await;
    world(
        &app,
        "同步测试群",
        vec![
            seed_member("owner1"),
            seed_member("wmA"),
            seed_member("wmB"),
        ],
    );
    let (sim, sync) = (app.sim(), app.group_sync());
    let current = || async {
        let mut conn = app.pool.acquire().await.unwrap();
        let mut ids = members::current_members(&mut conn, CHAT).await.unwrap();
        ids.sort();
        ids
    };

    // The start-up full sync registers the chat with WeCom's member list.
    let outcome = sync.run_once(true).await.unwrap();
    assert_eq!(outcome.chats_synced, 1);
    assert_eq!(current().await, ["owner1", "wmA", "wmB"]);

    // wmC joins but WeCom's callback is lost; then wmD joins with a callback
    // whose LastMemVer no longer matches ours.
    let join = |userid: &str, lose_callback: bool| JoinRequest {
        app: None,
        chat_id: CHAT.into(),
        members: vec![NewMember::new(userid)],
        via: Default::default(),
        lose_callback,
    };
    sim.drive_join(join("wmC", true)).await.unwrap();
    let delivered = sim.drive_join(join("wmD", false)).await.unwrap();
    assert_eq!(delivered.status, Some(200));
    app.run_pipeline().await;
    let mut conn = app.pool.acquire().await.unwrap();
    let flagged = qunyun::store::chats::chats_needing_resync(&mut conn)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(flagged, [CHAT], "the version gap flags the chat");
    assert!(
        !current().await.contains(&"wmC".to_string()),
        "wmC is unknown so far"
    );

    // The sync job repairs the list and clears the flag.
    let outcome = sync.run_once(false).await.unwrap();
    assert_eq!(outcome.chats_synced, 1);
    assert_eq!(current().await, ["owner1", "wmA", "wmB", "wmC", "wmD"]);
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(qunyun::store::chats::chats_needing_resync(&mut conn)
        .await
        .unwrap()
        .is_empty());
    drop(conn);
    app.stop().await;
}

fn invited(userid: &str, inviter: &str, join_time: i64) -> SeedGroupMember {
    serde_json::from_value(serde_json::json!({
        "userid": userid, "join_time": join_time, "join_scene": 1, "invitor": inviter
    }))
    .unwrap()
}

#[tokio::test]
async fn invite_rewards_are_paid_once_after_the_stay_and_never_for_early_leavers() {
    use chrono::Duration;
    use qunyun::clock::Clock;
    use qunyun::sim::LeaveRequest;
    use qunyun::store::points;

    let app = spawn_app().await;
    let now = app.clock.now().timestamp();
    world(
        &app,
        "邀请测试群",
        vec![
            seed_member("owner1"),
            seed_member("wmA"),
            invited("wmOld", "wmA", now - 4 * 86400),
            invited("wmNew", "wmA", now - 3600),
            invited("wmGone", "wmA", now - 3600),
        ],
    );
    let (sim, sync) = (app.sim(), app.group_sync());
    let rewards = app.invite_rewards();
    let balance = |user: &'static str| {
        let pool = app.pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            points::balance(&mut conn, user).await.unwrap()
        }
    };

    sync.run_once(true).await.unwrap();
    // Default rules: 20 points after 72 hours. Only wmOld has stayed long enough.
    assert_eq!(rewards.run_once().await.unwrap(), 1);
    assert_eq!(balance("wmA").await, 20);
    assert_eq!(rewards.run_once().await.unwrap(), 0, "paid once");

    // wmGone leaves the next day, before the 72 hours are up.
    app.clock.advance(Duration::hours(24));
    let left = sim
        .drive_leave(LeaveRequest {
            app: None,
            chat_id: CHAT.into(),
            userids: vec!["wmGone".into()],
            removed: false,
            lose_callback: false,
        })
        .await
        .unwrap();
    assert_eq!(left.status, Some(200));
    app.run_pipeline().await;

    app.clock.advance(Duration::hours(72));
    assert_eq!(
        rewards.run_once().await.unwrap(),
        1,
        "only wmNew, who stayed"
    );
    assert_eq!(balance("wmA").await, 40);
    assert_eq!(rewards.run_once().await.unwrap(), 0);
    app.stop().await;
}
