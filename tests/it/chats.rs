//! The chat registry through `qunyun serve`, the simulator and the CLI: group
//! sync discovers a customer group, a smart-bot @-mention discovers an
//! internal group, a robot key on the customer group is refused with the
//! reason, and a tag-targeted broadcast goes through each chat's route — the
//! route each chat's capability table announced.

use std::process::Output;
use std::time::Duration;

use qunyun::clock;
use qunyun::rules::ChatRoute;
use qunyun::sim::{
    AppCallback, BotCallback, BotMentionRequest, CallbackTargets, JoinRequest, JoinVia, NewMember,
    Route, SeedCustomerGroup, SeedGroupMember, Sim, SimConfig,
};
use qunyun::store::chats;

use crate::helpers::{
    wait_until, wait_until_async, ConfigFile, APP, APP_KEY, APP_TOKEN, BOT, BOT_KEY, BOT_TOKEN,
    CORP_ID,
};

/// The test config file, with WeCom at the simulator.
fn config_toml(db: &std::path::Path, api_base: &str) -> String {
    ConfigFile {
        api_base: api_base.to_owned(),
        ..ConfigFile::default()
    }
    .toml(db)
}

const CUSTOMER: &str = "wrCUSTOMER0000000000000000001";
const INTERNAL: &str = "wrINTERNAL0000000000000000001";

fn seed_member(userid: &str) -> SeedGroupMember {
    serde_json::from_value(serde_json::json!({ "userid": userid, "join_time": 1763700000 }))
        .unwrap()
}

/// Runs `qunyun ARGS --config FILE`.
async fn qunyun(config: &std::path::Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qunyun"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "mei");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
        command.env_remove(name);
    }
    tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn wait_for_chat(pool: &sqlx::SqlitePool, chat_id: &str) -> qunyun::rules::ChatSnapshot {
    // Polls the condition until a deadline (the service's workers run on their own).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let mut conn = pool.acquire().await.unwrap();
        if let Some(chat) = chats::get_chat(&mut conn, chat_id).await.unwrap() {
            return chat;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{chat_id} was never registered"
        );
    }
}

#[tokio::test]
async fn discovered_chats_are_configured_from_the_cli_and_a_tag_broadcast_takes_each_route() {
    let clock = clock::system();
    let sim = Sim::spawn(SimConfig::new(CORP_ID, "app-secret"), clock.clone())
        .await
        .unwrap();
    sim.add_customer_group(SeedCustomerGroup {
        chat_id: CUSTOMER.into(),
        name: "VIP客户群".into(),
        owner: "owner1".into(),
        notice: String::new(),
        status: 0,
        create_time: 1763000000,
        admins: vec![],
        members: vec![seed_member("owner1"), seed_member("wmA")],
    });
    sim.add_robot("KEY-INTERNAL", INTERNAL);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qunyun.db");
    let config_path = dir.path().join("qunyun.toml");
    let toml = config_toml(&db, sim.api_base_url().as_str());
    std::fs::write(&config_path, &toml).unwrap();
    let config = qunyun::config::Config::from_toml_str(&toml).unwrap();
    let pool = qunyun::store::open(&db).await.unwrap();
    // [[chat_tags]] tags the customer group when group sync registers it.
    let mut conn = pool.acquire().await.unwrap();
    qunyun::store::rule_sets::save(
        &mut conn,
        "[[chat_tags]]\ntag = \"vip\"\nname_pattern = \"VIP*\"\n",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    drop(conn);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(qunyun::app::run(config, clock, listener, async {
        let _ = stopped.await;
    }));
    sim.set_callbacks(
        CallbackTargets::new(base)
            .with_app(AppCallback {
                name: APP.into(),
                token: APP_TOKEN.into(),
                encoding_aes_key: APP_KEY.into(),
                agent_id: SimConfig::DEFAULT_AGENT_ID,
            })
            .with_bot(BotCallback {
                name: BOT.into(),
                token: BOT_TOKEN.into(),
                encoding_aes_key: BOT_KEY.into(),
                aibotid: "AIBOT-IT".into(),
                bot_name: "运营助手".into(),
            }),
    );

    // Group sync registers the customer group, tagged by the rule set.
    let customer = wait_for_chat(&pool, CUSTOMER).await;
    assert_eq!(customer.route, ChatRoute::CustomerGroup);
    assert_eq!(customer.tags, ["vip"]);

    // An @-mention of the smart bot registers its internal group with it, and
    // the check-in is answered through the smart bot.
    let mention = sim
        .drive_bot_mention(BotMentionRequest {
            bot: None,
            chat_id: Some(INTERNAL.into()),
            from: "zhangsan".into(),
            content: "签到".into(),
            quote: None,
        })
        .await
        .unwrap();
    assert_eq!(mention.status, Some(200));
    let internal = wait_for_chat(&pool, INTERNAL).await;
    assert_eq!(internal.route, ChatRoute::internal_with_smart_bot(BOT));
    let replied = wait_until(Duration::from_secs(20), || {
        sim.messages()
            .iter()
            .any(|d| d.route == Route::BotResponse && d.content.to_string().contains("签到"))
    })
    .await;
    assert!(replied, "the check-in was answered: {:?}", sim.messages());

    // A robot key on the customer group is refused with the reason.
    let refused = qunyun(
        &config_path,
        &["chats", "set", CUSTOMER, "--robot-key", "K"],
    )
    .await;
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("robot_key: a customer group cannot hold a webhook robot"),
        "{error}"
    );

    // The internal group gets its robot and the tag from the CLI.
    let set = qunyun(
        &config_path,
        &["chats", "set", INTERNAL, "--robot-key", "KEY-INTERNAL"],
    )
    .await;
    assert!(set.status.success(), "{set:?}");
    let tagged = qunyun(&config_path, &["chats", "tag", INTERNAL, "vip", "staff"]).await;
    assert!(tagged.status.success(), "{tagged:?}");
    assert_eq!(
        stdout(&tagged).trim(),
        format!("{INTERNAL}: tags vip,staff")
    );

    // What each chat's table says…
    let shown = stdout(&qunyun(&config_path, &["chats", "show", INTERNAL]).await);
    for line in [
        "kind: internal_group",
        "robot: yes",
        "smart bot: helper",
        "checkin_reply: automatic via smart_bot",
        "push: automatic via webhook",
        "moderation_removal: task for a person",
    ] {
        assert!(shown.contains(line), "{line} in\n{shown}");
    }
    let shown = stdout(&qunyun(&config_path, &["chats", "show", CUSTOMER]).await);
    assert!(
        shown.contains("push: needs the owner's confirmation (owner1)"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "welcome: group welcome material (posted by WeCom) + newcomer digest to the owner (owner1)"
        ),
        "{shown}"
    );

    // …is what the broadcast does.
    let sent = qunyun(
        &config_path,
        &["broadcast", "--tag", "vip", "--text", "周末活动"],
    )
    .await;
    assert!(sent.status.success(), "{sent:?}");
    let report = stdout(&sent);
    assert!(
        report.contains(&format!("{INTERNAL}: queued via webhook")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{CUSTOMER}: awaiting the owner's confirmation (owner1)"
        )),
        "{report}"
    );
    let delivered = wait_until(Duration::from_secs(20), || {
        sim.messages().iter().any(|d| {
            d.route == Route::Webhook
                && d.target == INTERNAL
                && d.content.to_string().contains("周末活动")
        })
    })
    .await;
    assert!(delivered, "the robot posted it: {:?}", sim.messages());

    // The customer group's welcome row is what the engine does: a newcomer
    // is welcomed by a digest to the owner, not by a post into the group.
    let joined = sim
        .drive_join(JoinRequest {
            app: Some(APP.into()),
            chat_id: CUSTOMER.into(),
            members: vec![NewMember::new("wmNEWCOMER")],
            via: JoinVia::QrCode,
            lose_callback: false,
        })
        .await
        .unwrap();
    assert_eq!(joined.status, Some(200));
    let digest_key = format!("owner_digest:welcome:{CUSTOMER}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let digest =
        loop {
            let mut conn = pool.acquire().await.unwrap();
            let rows = qunyun::store::outbox::list(&mut conn, None).await.unwrap();
            drop(conn);
            if let Some(row) = rows
                .iter()
                .find(|row| row.idempotency_key.starts_with(&digest_key))
            {
                // Nothing of the welcome window was filed for the group itself.
                assert!(
                    !rows.iter().any(|r| r.target == CUSTOMER
                        && matches!(r.route.as_str(), "webhook" | "smart_bot")),
                    "{rows:?}"
                );
                break row.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no owner digest: {rows:?}"
            );
            // Until the outbox has a row we have not looked at yet.
            let seen = rows.len();
            wait_until_async(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                || async {
                    let mut conn = pool.acquire().await.unwrap();
                    qunyun::store::outbox::list(&mut conn, None)
                        .await
                        .unwrap()
                        .len()
                        > seen
                },
            )
            .await;
        };
    assert_eq!(digest.route.as_str(), "member", "{digest}");
    assert_eq!(digest.target, "owner1", "{digest}");
    assert!(
        !sim.messages()
            .iter()
            .any(|d| d.target == CUSTOMER && d.route != Route::CustomerGroupMass),
        "nothing but an owner-confirmed mass message reaches the customer group"
    );

    // Every change is audited, naming the CLI user.
    let mut conn = pool.acquire().await.unwrap();
    let actions: Vec<String> =
        sqlx::query_scalar("select action from admin_audit where actor = 'cli:mei' order by id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(actions, ["chat.set_route", "chat.tag", "broadcast.send"]);
    drop(conn);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `chats create-appchat` asks WeCom (the simulator) for the group and
/// registers what WeCom created as an app group, tagged by `[[chat_tags]]`;
/// a group WeCom refuses is not registered.
#[tokio::test]
async fn create_appchat_registers_the_group_wecom_created() {
    let sim = Sim::spawn(SimConfig::new(CORP_ID, "app-secret"), clock::system())
        .await
        .unwrap();
    sim.add_directory_members(["zhangsan", "lisi", "wangwu"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qunyun.db");
    let config_path = dir.path().join("qunyun.toml");
    let toml = config_toml(&db, sim.api_base_url().as_str());
    std::fs::write(&config_path, toml).unwrap();
    let pool = qunyun::store::open(&db).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    qunyun::store::rule_sets::save(
        &mut conn,
        "[[chat_tags]]\ntag = \"staff\"\nowner = \"zhangsan\"\n",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    drop(conn);

    let created = qunyun(
        &config_path,
        &[
            "chats",
            "create-appchat",
            "--name",
            "运营群",
            "--owner",
            "zhangsan",
            "--members",
            "lisi,wangwu",
        ],
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    let line = stdout(&created);
    let chat_id = line
        .strip_prefix("app group ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let in_wecom = sim.app_chat(&chat_id).expect("WeCom has the group");
    assert_eq!(in_wecom.owner, "zhangsan");
    assert_eq!(in_wecom.userlist, ["zhangsan", "lisi", "wangwu"]);
    let mut conn = pool.acquire().await.unwrap();
    let chat = chats::get_chat(&mut conn, &chat_id).await.unwrap().unwrap();
    assert_eq!(chat.route, ChatRoute::AppGroup);
    assert_eq!(chat.tags, ["staff"]);
    let before = chats::list_chat_ids(&mut conn).await.unwrap();
    drop(conn);

    // An unknown member: WeCom refuses, nothing is registered.
    let refused = qunyun(
        &config_path,
        &[
            "chats",
            "create-appchat",
            "--name",
            "坏群",
            "--owner",
            "zhangsan",
            "--members",
            "nobody",
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("appchat: WeCom refused"),
        "{refused:?}"
    );
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(chats::list_chat_ids(&mut conn).await.unwrap(), before);
}
