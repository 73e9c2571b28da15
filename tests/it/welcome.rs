//! Customer-group welcomes the ways WeCom allows, through the real server and
//! the simulator: the rule set's group welcome material is kept in WeCom
//! (added once, edited after a change), and the owner of a customer group gets
//! one merged digest of newcomers, which a manager turns into an
//! owner-confirmed mass message with one API call.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use qunyun::config::Secret;
use qunyun::jobs::welcome_material::{MaterialOutcome, WelcomeMaterialSync};
use qunyun::ops::{self, Actor, Ops, Role};
use qunyun::sim::{JoinRequest, NewMember, Route, SeedCustomerGroup, SeedGroupMember};

use crate::helpers::{TestApp, TestConfig, APP};

const CHAT: &str = "wrWELCOME00000000000000000001";
const OWNER: &str = "owner1";

fn seed_member(userid: &str) -> SeedGroupMember {
    serde_json::from_value(serde_json::json!({ "userid": userid, "join_time": 1763700000 }))
        .unwrap()
}

fn cli() -> Actor {
    Actor::new("cli:test", Role::Owner)
}

/// The service's app with one customer group in WeCom, its callbacks pointed at qunyun.
async fn world() -> TestApp {
    let app = TestApp::start(
        TestConfig::new().with_sender(|s| s.mass_poll_interval = StdDuration::from_secs(30)),
    )
    .await;
    app.sim().add_directory_members([OWNER]);
    app.sim().add_customer_group(SeedCustomerGroup {
        chat_id: CHAT.into(),
        name: "客户欢迎群".into(),
        owner: OWNER.into(),
        notice: String::new(),
        status: 0,
        create_time: 1763000000,
        admins: vec![],
        members: vec![seed_member(OWNER)],
    });
    app.sim().set_callbacks(app.callback_targets());
    app
}

fn contacts_secret(app: &TestApp) -> Secret {
    app.config
        .wecom
        .contacts_app()
        .expect("a customer-contact app")
        .secret
        .clone()
}

async fn apply_rules(app: &TestApp, body: &str) {
    let ops = Ops::over(app.pool.clone());
    match ops::rules::apply(&ops, &cli(), Utc::now(), body)
        .await
        .unwrap()
    {
        ops::rules::Applied::Version(_) => {}
        ops::rules::Applied::Invalid(problems) => panic!("rule set refused: {problems:?}"),
    }
}

#[tokio::test]
async fn group_welcome_material_is_added_once_then_edited_after_a_change() {
    let app = world().await;
    let material =
        WelcomeMaterialSync::new(app.pool.clone(), app.api().clone(), contacts_secret(&app));

    // No material in the rule set: nothing is sent to WeCom.
    assert_eq!(
        material.sync(Utc::now()).await.unwrap(),
        MaterialOutcome::UpToDate
    );
    assert!(app.sim().group_welcome_templates().is_empty());

    apply_rules(
        &app,
        "[welcome]\ngroup_material = \"欢迎 %NICKNAME% 入群！\"\n",
    )
    .await;
    let MaterialOutcome::Added { template_id } = material.sync(Utc::now()).await.unwrap() else {
        panic!("expected the material to be added");
    };
    let held = app.sim().group_welcome_templates();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].template_id, template_id);
    assert_eq!(held[0].body["text"]["content"], "欢迎 %NICKNAME% 入群！");
    assert_eq!(
        material.sync(Utc::now()).await.unwrap(),
        MaterialOutcome::UpToDate
    );

    // Shown with its template id.
    let ops = Ops::over(app.pool.clone());
    let status = ops::welcome::material(&ops).await.unwrap();
    assert!(status.in_sync);
    assert!(
        status.describe().contains(&template_id),
        "{}",
        status.describe()
    );

    // A changed text edits the same template; WeCom answers `get` with it.
    apply_rules(
        &app,
        "[welcome]\ngroup_material = \"新人你好 %NICKNAME%\"\n",
    )
    .await;
    assert!(!ops::welcome::material(&ops).await.unwrap().in_sync);
    assert_eq!(
        material.sync(Utc::now()).await.unwrap(),
        MaterialOutcome::Edited {
            template_id: template_id.clone()
        }
    );
    assert_eq!(
        app.sim().group_welcome_templates().len(),
        1,
        "no second template"
    );
    let got = app
        .api()
        .group_welcome_template_get(&contacts_secret(&app), &template_id)
        .await
        .unwrap();
    assert_eq!(got.text.unwrap().content, "新人你好 %NICKNAME%");
    assert!(ops::welcome::material(&ops).await.unwrap().in_sync);

    app.stop().await;
}

#[tokio::test]
async fn customer_group_newcomers_reach_the_owner_in_one_digest_then_one_confirmed_welcome() {
    let app = world().await;
    // The owner digest goes out through the community's app.
    apply_rules(&app, &format!("[community]\napp = \"{APP}\"\n")).await;
    app.group_sync().run_once(true).await.unwrap();

    // Three newcomers within the merge window, in two callbacks.
    for members in [vec!["wmA", "wmB"], vec!["wmC"]] {
        let delivered = app
            .sim()
            .drive_join(JoinRequest {
                app: None,
                chat_id: CHAT.into(),
                members: members.into_iter().map(NewMember::new).collect(),
                via: Default::default(),
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(delivered.status, Some(200));
        app.run_pipeline().await;
        app.clock.advance(Duration::seconds(3));
    }
    app.clock.advance(Duration::seconds(10));
    app.run_pipeline().await;
    app.send_once().await;

    // The owner got one 1:1 app message naming all three; nothing went into the group.
    let to_owner: Vec<_> = app
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::AppMessage && d.target == OWNER)
        .collect();
    assert_eq!(to_owner.len(), 1, "{to_owner:?}");
    let digest_text = to_owner[0].text().unwrap_or_default().to_string();
    assert!(digest_text.contains("wmA、wmB、wmC"), "{digest_text}");
    assert!(digest_text.contains("建议欢迎语"), "{digest_text}");
    assert!(app.sim().messages().iter().all(|d| d.target != CHAT));

    // A manager turns the digest into a mass message with one API call.
    let ops = Ops::over(app.pool.clone());
    let digests = ops::welcome::digests(&ops, 10).await.unwrap();
    assert_eq!(digests.len(), 1);
    let digest_id = digests[0].id;
    ops::accounts::create_user(
        &ops,
        &cli(),
        Utc::now(),
        "mei",
        "a long enough password",
        Role::Operator,
    )
    .await
    .unwrap();
    let token = ops::accounts::create_token(&ops, &cli(), Utc::now(), "mei", "crm")
        .await
        .unwrap();
    let send = || {
        app.http
            .post(app.url(&format!(
                "/admin/api/v1/welcome/digests/{digest_id}/send-to-owner"
            )))
            .bearer_auth(&token)
            .send()
    };
    let reply = send().await.unwrap();
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    let again = send().await.unwrap();
    assert_eq!(
        again.status(),
        400,
        "a digest becomes one mass message only"
    );

    let first = app.send_once().await;
    assert_eq!(first.awaiting_confirmation, 1, "{first:?}");
    let pending = app.sim().pending_mass();
    assert_eq!(pending.len(), 1);
    assert!(app.sim().confirm_mass(&pending[0]));
    app.clock.advance(Duration::seconds(31));
    app.send_once().await;

    let into_chat: Vec<_> = app
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.target == CHAT)
        .collect();
    assert_eq!(into_chat.len(), 1);
    assert_eq!(into_chat[0].route, Route::CustomerGroupMass);
    assert_eq!(into_chat[0].sender, OWNER);
    assert_eq!(
        into_chat[0].text().unwrap_or_default(),
        digests[0].suggestion
    );
    let audit = ops::audit::recent(&ops, None, 10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|entry| entry.action == "welcome.send_to_owner" && entry.actor.starts_with("api:")),
        "{audit:?}"
    );

    app.stop().await;
}
