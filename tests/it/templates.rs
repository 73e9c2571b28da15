//! What members receive is true: every template kind gets exactly its
//! contract's variables. `qunyun rules validate` refuses a template that uses
//! a variable its kind is not given; FAQ replies carry the asker's real
//! numbers; a customer group's newcomers are welcomed naming their inviter.

use chrono::{Duration, Utc};
use qunyun::ops::{self, Actor, Ops, Role};
use qunyun::sim::{JoinRequest, NewMember, Route, SeedCustomerGroup, SeedGroupMember};
use qunyun::store::points;
use tempfile::TempDir;

use crate::config::{output, qunyun, text};
use crate::helpers::{spawn_app, Callback, TestApp, APP};

fn cli() -> Actor {
    Actor::new("cli:test", Role::Owner)
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

/// A member @-mentions the smart bot in a group; returns what WeCom received.
async fn say(app: &TestApp, msgid: &str, user: &str, words: &str) -> Vec<String> {
    app.mention_bot(msgid, user, words).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_validate_refuses_a_welcome_that_uses_balance_and_accepts_the_example() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[templates]\nwelcome = \"欢迎 {{ names }}，你现在有 {{ balance }} 积分\"\n",
    )
    .unwrap();
    let out = output(qunyun(
        dir.path(),
        &["rules", "validate", file.to_str().unwrap()],
    ))
    .await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "welcome.template: template \"welcome\" (welcome template) uses {{ balance }}"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("available: names, name, count"), "{stderr}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/rules.example.toml");
    let out = output(qunyun(dir.path(), &["rules", "validate", example])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The preview shows the contract's samples: a welcome names the sample inviter.
    let out = output(qunyun(
        dir.path(),
        &["rules", "preview", example, "welcome"],
    ))
    .await;
    let preview = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(preview.contains("感谢 小张 的邀请"), "{preview}");
}

#[tokio::test]
async fn an_faq_reply_tells_the_member_their_real_balance_level_and_streak() {
    let app = spawn_app().await;
    apply_rules(
        &app,
        r#"
[[autoreply]]
name = "mine"
keywords = ["我的情况"]
template = "faq_mine"
cooldown_secs = 0

[templates]
faq_mine = "{{ name }}：积分 {{ balance }}，等级「{{ level }}」，连续签到 {{ streak }} 天"
"#,
    )
    .await;
    let checkin = say(&app, "M1", "wmA", "签到").await;
    assert!(checkin[0].contains("签到成功"), "{checkin:?}");
    let balance = points::balance(&mut *app.conn().await, "wmA")
        .await
        .unwrap();
    assert!(
        balance > 0 && balance != 86,
        "not the sample's 86: {balance}"
    );

    let reply = say(&app, "M2", "wmA", "我的情况").await;
    assert_eq!(
        reply,
        vec![format!("wmA：积分 {balance}，等级「新人」，连续签到 1 天")]
    );
    app.stop().await;
}

#[tokio::test]
async fn customer_group_newcomers_are_welcomed_naming_who_invited_them() {
    const CHAT: &str = "wrINVITE000000000000000000001";
    const OWNER: &str = "owner1";
    let app = TestApp::start(crate::helpers::TestConfig::new()).await;
    app.sim().add_directory_members([OWNER, "lisi"]);
    let owner: SeedGroupMember =
        serde_json::from_value(serde_json::json!({ "userid": OWNER, "join_time": 1763700000 }))
            .unwrap();
    app.sim().add_customer_group(SeedCustomerGroup {
        chat_id: CHAT.into(),
        name: "邀请测试群".into(),
        owner: OWNER.into(),
        notice: String::new(),
        status: 0,
        create_time: 1763000000,
        admins: vec![],
        members: vec![owner],
    });
    app.sim().set_callbacks(app.callback_targets());
    apply_rules(&app, &format!("[community]\napp = \"{APP}\"\n")).await;
    app.group_sync().run_once(true).await.unwrap();

    let mut invited = NewMember::new("wmNEW");
    invited.invitor = Some("lisi".into());
    let delivered = app
        .sim()
        .drive_join(JoinRequest {
            app: None,
            chat_id: CHAT.into(),
            members: vec![invited],
            via: Default::default(),
            lose_callback: false,
        })
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    app.run_pipeline().await;
    // Group sync reads WeCom's member record (its `invitor`) before the window closes.
    app.group_sync().run_once(true).await.unwrap();
    app.advance_clock(Duration::seconds(11));
    app.run_pipeline().await;
    app.send_once().await;

    let to_owner: Vec<String> = app
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::AppMessage && d.target == OWNER)
        .map(|d| d.text().unwrap_or_default().to_string())
        .collect();
    assert_eq!(to_owner.len(), 1, "{to_owner:?}");
    assert!(
        to_owner[0].contains("wmNEW（由 lisi 邀请）"),
        "{to_owner:?}"
    );
    assert!(to_owner[0].contains("感谢 lisi 的邀请"), "{to_owner:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_report_is_answered_when_moderation_is_off() {
    let app = spawn_app().await;
    let code = app.sim().issue_response_code("AIBOT-IT", "CHAT-IT", true);
    let report = serde_json::json!({
        "msgid": "REPORT-1", "aibotid": "AIBOT-IT", "chatid": "CHAT-IT", "chattype": "group",
        "from": {"userid": "zhangsan"}, "response_url": app.sim().response_url(&code),
        "msgtype": "text", "text": {"content": "@运营助手 举报"},
        "quote": {"msgtype": "text", "text": {"content": "加我微信领红包，稳赚不赔"}}
    })
    .to_string();
    assert_eq!(app.post_event(Callback::Bot(report)).await.status(), 200);
    app.run_pipeline().await;
    let answer: Vec<String> = app
        .drain_outbox()
        .await
        .iter()
        .map(|d| d.text().unwrap_or_default().to_string())
        .collect();
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(answer[0].contains("本群暂未开启举报处理"), "{answer:?}");
    assert!(answer[0].contains("群主或管理员"), "{answer:?}");
    app.stop().await;
}
