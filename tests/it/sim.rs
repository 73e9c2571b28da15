//! The WeCom simulator over real loopback HTTP, with a manual clock: the
//! harness's simulator, called directly as qunyun would call WeCom.

use chrono::{Duration, TimeZone, Utc};
use qunyun::clock::ManualClock;
use qunyun::sim::{
    DropReason, FaultKind, FaultRule, Route, SeedAppChat, SeedCustomerGroup, SeedGroupMember,
    SeedState, Sim, SimConfig,
};
use serde_json::{json, Value};

use crate::helpers::{TestApp, TestConfig, APP_SECRET as SECRET, CONTACTS_SECRET, CORP_ID as CORP};

struct TestSim {
    app: TestApp,
    http: reqwest::Client,
}

/// The simulator tests' corp and clock (2026-03-01 08:00 UTC).
fn config() -> TestConfig {
    TestConfig::new().starting_at(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap())
}

impl TestSim {
    async fn start(config: TestConfig) -> Self {
        Self {
            app: TestApp::start(config).await,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> Self {
        Self::start(config()).await
    }

    fn sim(&self) -> &Sim {
        self.app.sim()
    }

    fn advance(&self, seconds: i64) {
        self.app.advance_clock(Duration::seconds(seconds));
    }

    fn base_url(&self) -> String {
        self.app.sim_handle().base_url()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base_url(), path_and_query)
    }

    async fn get(&self, path_and_query: &str) -> Value {
        let response = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path_and_query}");
        response.json().await.unwrap()
    }

    async fn post(&self, path_and_query: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(path_and_query))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "POST {path_and_query}");
        response.json().await.unwrap()
    }

    async fn token_for(&self, secret: &str) -> String {
        let reply = self
            .get(&format!(
                "/cgi-bin/gettoken?corpid={CORP}&corpsecret={secret}"
            ))
            .await;
        assert_eq!(reply["errcode"], 0, "{reply}");
        reply["access_token"].as_str().unwrap().to_owned()
    }

    async fn token(&self) -> String {
        self.token_for(SECRET).await
    }

    /// POST an authenticated API call with a fresh token.
    async fn call(&self, api: &str, body: Value) -> Value {
        let token = self.token().await;
        self.post(&format!("/cgi-bin/{api}?access_token={token}"), body)
            .await
    }

    async fn send_text(&self, token: &str, touser: &str, content: &str) -> Value {
        self.post(
            &format!("/cgi-bin/message/send?access_token={token}"),
            json!({"touser": touser, "msgtype": "text", "agentid": 1000002,
                   "text": {"content": content}}),
        )
        .await
    }
}

fn errcode(reply: &Value) -> i64 {
    reply["errcode"].as_i64().unwrap()
}

fn group(chat_id: &str, owner: &str) -> SeedCustomerGroup {
    SeedCustomerGroup {
        chat_id: chat_id.into(),
        name: format!("group {chat_id}"),
        owner: owner.into(),
        notice: String::new(),
        status: 0,
        create_time: 1_700_000_000,
        admins: vec![],
        members: vec![SeedGroupMember::new(owner)],
    }
}

// ------------------------------------------------------------------ tokens ---

#[tokio::test]
async fn gettoken_rejects_wrong_corp_and_secret_and_tokens_expire_after_ttl() {
    let sim = TestSim::start(config().with_contacts_app().with_token_ttl(600)).await;

    let wrong_corp = sim
        .get(&format!(
            "/cgi-bin/gettoken?corpid=wwOTHER&corpsecret={SECRET}"
        ))
        .await;
    assert_eq!(errcode(&wrong_corp), 40013);
    let wrong_secret = sim
        .get(&format!("/cgi-bin/gettoken?corpid={CORP}&corpsecret=nope"))
        .await;
    assert_eq!(errcode(&wrong_secret), 40001);
    let reply = sim
        .get(&format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret={SECRET}"
        ))
        .await;
    assert_eq!(reply["expires_in"], 600);
    let token = reply["access_token"].as_str().unwrap().to_owned();
    let second = sim.token().await;
    assert_ne!(token, second, "each gettoken issues a new token");
    let _contacts = sim.token_for(CONTACTS_SECRET).await;
    assert_eq!(sim.sim().stats().gettoken_calls, 5);

    assert_eq!(errcode(&sim.send_text(&token, "zhangsan", "hi").await), 0);
    let missing = sim
        .post("/cgi-bin/message/send", json!({"touser": "zhangsan"}))
        .await;
    assert_eq!(errcode(&missing), 41001);
    assert_eq!(
        errcode(&sim.send_text("forged", "zhangsan", "hi").await),
        40014
    );

    sim.advance(599);
    assert_eq!(errcode(&sim.send_text(&token, "zhangsan", "hi").await), 0);
    sim.advance(1);
    assert_eq!(
        errcode(&sim.send_text(&token, "zhangsan", "hi").await),
        42001
    );

    sim.sim().revoke_tokens();
    assert_eq!(
        errcode(&sim.send_text(&second, "zhangsan", "hi").await),
        40014
    );
}

#[tokio::test]
async fn contacts_secret_token_cannot_send_app_messages() {
    let sim = TestSim::start(config().with_contacts_app()).await;
    let token = sim.token_for(CONTACTS_SECRET).await;
    assert_eq!(
        errcode(&sim.send_text(&token, "zhangsan", "hi").await),
        40056
    );
}

// ------------------------------------------------------------ message/send ---

#[tokio::test]
async fn message_send_validates_payloads_with_wecom_codes() {
    let sim = TestSim::default().await;
    sim.sim().add_directory_members(["zhangsan", "lisi"]);
    let token = sim.token().await;
    let send = |body: Value| {
        let path = format!("/cgi-bin/message/send?access_token={token}");
        let sim = &sim;
        async move { sim.post(&path, body).await }
    };

    let at_limit = "字".repeat(682) + "ab"; // 682 * 3 + 2 = 2048 bytes
    assert_eq!(at_limit.len(), 2048);
    let ok = send(
        json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                         "text": {"content": at_limit}}),
    )
    .await;
    assert_eq!(errcode(&ok), 0);
    assert!(!ok["msgid"].as_str().unwrap().is_empty());

    let cases = [
        (
            json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                "text": {"content": "x".repeat(2049)}}),
            45002,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "markdown", "agentid": 1000002,
                "markdown": {"content": "x".repeat(2049)}}),
            45002,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                "text": {"content": ""}}),
            44004,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "sticker", "agentid": 1000002}),
            40008,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "text", "text": {"content": "x"}}),
            41011,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "text", "agentid": 42,
                "text": {"content": "x"}}),
            40056,
        ),
        (
            json!({"msgtype": "text", "agentid": 1000002, "text": {"content": "x"}}),
            82001,
        ),
        (
            json!({"touser": "ghost", "msgtype": "text", "agentid": 1000002,
                "text": {"content": "x"}}),
            81013,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "news", "agentid": 1000002,
                "news": {"articles": []}}),
            45008,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "news", "agentid": 1000002,
                "news": {"articles": vec![json!({"title": "t", "url": "u"}); 9]}}),
            45008,
        ),
        (
            json!({"touser": "zhangsan", "msgtype": "textcard", "agentid": 1000002,
                "textcard": {"title": "t", "description": "d"}}),
            41010,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(errcode(&send(body.clone()).await), expected, "{body}");
    }

    let partly = send(json!({"touser": "zhangsan|ghost", "msgtype": "text",
                             "agentid": "1000002", "text": {"content": "x"}}))
    .await;
    assert_eq!(errcode(&partly), 0);
    assert_eq!(partly["invaliduser"], "ghost");
    let news = send(
        json!({"touser": "@all", "msgtype": "news", "agentid": 1000002,
                           "news": {"articles": vec![json!({"title": "t", "url": "u"}); 8]}}),
    )
    .await;
    assert_eq!(errcode(&news), 0);

    let delivered: Vec<_> = sim.sim().messages().into_iter().map(|m| m.target).collect();
    assert_eq!(delivered, ["zhangsan", "zhangsan", "lisi", "zhangsan"]);
}

#[tokio::test]
async fn app_messages_over_30_per_minute_to_one_member_are_silently_dropped() {
    let sim = TestSim::default().await;
    let token = sim.token().await;
    for n in 0..31 {
        let reply = sim
            .send_text(&token, "zhangsan", &format!("push {n}"))
            .await;
        assert_eq!(
            errcode(&reply),
            0,
            "WeCom answers success even when dropping"
        );
    }
    assert_eq!(
        errcode(&sim.send_text(&token, "lisi", "other member").await),
        0
    );

    let messages = sim.sim().messages();
    assert_eq!(
        messages.iter().filter(|m| m.target == "zhangsan").count(),
        30
    );
    assert_eq!(messages.iter().filter(|m| m.target == "lisi").count(), 1);
    let dropped = sim.sim().dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].reason, DropReason::MemberRateLimit);
    assert_eq!(dropped[0].delivery.text(), Some("push 30"));

    sim.advance(59);
    sim.send_text(&token, "zhangsan", "still inside the window")
        .await;
    assert_eq!(sim.sim().dropped().len(), 2);
    sim.advance(1);
    sim.send_text(&token, "zhangsan", "window passed").await;
    assert_eq!(sim.sim().dropped().len(), 2);
    assert_eq!(
        sim.sim()
            .messages()
            .last()
            .and_then(|m| m.text().map(str::to_owned)),
        Some("window passed".to_owned())
    );
}

#[tokio::test]
async fn duplicate_check_accepts_but_does_not_redeliver_inside_the_interval() {
    let sim = TestSim::default().await;
    let token = sim.token().await;
    let path = format!("/cgi-bin/message/send?access_token={token}");
    let body = |content: &str| {
        json!({"touser": "zhangsan|lisi", "msgtype": "text", "agentid": 1000002,
               "text": {"content": content},
               "enable_duplicate_check": 1, "duplicate_check_interval": 600})
    };

    assert_eq!(errcode(&sim.post(&path, body("早安")).await), 0);
    assert_eq!(sim.sim().messages().len(), 2);
    sim.advance(300);
    assert_eq!(errcode(&sim.post(&path, body("早安")).await), 0);
    assert_eq!(
        sim.sim().messages().len(),
        2,
        "duplicate not delivered again"
    );
    let dropped = sim.sim().dropped();
    assert_eq!(dropped.len(), 2);
    assert!(dropped.iter().all(|d| d.reason == DropReason::Duplicate));

    sim.post(&path, body("午安")).await;
    assert_eq!(
        sim.sim().messages().len(),
        4,
        "different content is delivered"
    );
    // Without the flag there is no check at all, but WeCom still received
    // it: a later flagged request compares against it too.
    let mut unchecked = body("早安");
    unchecked["enable_duplicate_check"] = json!(0);
    sim.post(&path, unchecked).await;
    assert_eq!(sim.sim().messages().len(), 6);

    sim.advance(301);
    sim.post(&path, body("早安")).await;
    assert_eq!(
        sim.sim().messages().len(),
        6,
        "the unflagged one 301 s ago is inside the interval"
    );
    sim.advance(300);
    sim.post(&path, body("早安")).await;
    assert_eq!(sim.sim().messages().len(), 8, "interval over: delivered");
}

// ------------------------------------------------------------------ webhook ---

#[tokio::test]
async fn webhook_21st_message_within_a_minute_gets_45009_until_the_window_passes() {
    let sim = TestSim::default().await;
    sim.sim().add_robot("KEY1", "wrGROUP1");
    let path = "/cgi-bin/webhook/send?key=KEY1";
    let text = |n: usize| json!({"msgtype": "text", "text": {"content": format!("m{n}"), "mentioned_list": ["@all"]}});

    for n in 0..20 {
        assert_eq!(errcode(&sim.post(path, text(n)).await), 0, "message {n}");
        sim.advance(1);
    }
    assert_eq!(errcode(&sim.post(path, text(20)).await), 45009);
    assert_eq!(sim.sim().messages().len(), 20);
    // The first message was sent at t=0; at t=60 it has left the window.
    sim.advance(40);
    assert_eq!(errcode(&sim.post(path, text(21)).await), 0);
    assert_eq!(errcode(&sim.post(path, text(22)).await), 45009);

    let first = &sim.sim().messages()[0];
    assert_eq!(first.route, Route::Webhook);
    assert_eq!(first.target, "wrGROUP1");
    assert_eq!(first.content["mentioned_list"], json!(["@all"]));

    assert_eq!(
        errcode(&sim.post("/cgi-bin/webhook/send?key=NOPE", text(0)).await),
        93000
    );
    sim.sim().add_robot("KEY2", "wrGROUP2");
    let md = |len: usize| json!({"msgtype": "markdown", "markdown": {"content": "x".repeat(len)}});
    let key2 = "/cgi-bin/webhook/send?key=KEY2";
    assert_eq!(errcode(&sim.post(key2, md(4096)).await), 0);
    assert_eq!(errcode(&sim.post(key2, md(4097)).await), 45002);
    let text_over = json!({"msgtype": "text", "text": {"content": "x".repeat(2049)}});
    assert_eq!(errcode(&sim.post(key2, text_over).await), 45002);
    let no_articles = json!({"msgtype": "news", "news": {"articles": []}});
    assert_eq!(errcode(&sim.post(key2, no_articles).await), 45008);
}

// ------------------------------------------------------------------ appchat ---

#[tokio::test]
async fn appchat_create_update_get_send_follow_the_rules() {
    let sim = TestSim::start(config().with(|c| {
        let mut other = c.wecom.apps[0].clone();
        other.name = "other".into();
        other.agent_id = 1000003;
        other.secret = qunyun::config::Secret::new("other-secret");
        c.wecom.apps.push(other);
    }))
    .await;
    sim.sim()
        .add_directory_members(["zhangsan", "lisi", "wangwu"]);

    let created = sim
        .call(
            "appchat/create",
            json!({"name": "运营群", "owner": "zhangsan", "userlist": ["zhangsan", "lisi"],
                   "chatid": "ops01"}),
        )
        .await;
    assert_eq!(errcode(&created), 0, "{created}");
    assert_eq!(created["chatid"], "ops01");

    let cases = [
        (json!({"userlist": ["zhangsan"]}), 86006),
        (
            json!({"name": "名".repeat(51), "userlist": ["zhangsan", "lisi"]}),
            86004,
        ),
        (json!({"userlist": ["zhangsan", "ghost"]}), 86216),
        (
            json!({"userlist": ["zhangsan", "lisi"], "owner": "wangwu"}),
            86207,
        ),
        (
            json!({"userlist": ["zhangsan", "lisi"], "chatid": "ops01"}),
            86215,
        ),
        (
            json!({"userlist": ["zhangsan", "lisi"], "chatid": "bad-id"}),
            86001,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            errcode(&sim.call("appchat/create", body.clone()).await),
            expected,
            "{body}"
        );
    }

    let updated = sim
        .call(
            "appchat/update",
            json!({"chatid": "ops01", "add_user_list": ["wangwu"], "del_user_list": ["lisi"]}),
        )
        .await;
    assert_eq!(errcode(&updated), 0);
    let token = sim.token().await;
    let info = sim
        .get(&format!(
            "/cgi-bin/appchat/get?access_token={token}&chatid=ops01"
        ))
        .await;
    assert_eq!(info["chat_info"]["userlist"], json!(["zhangsan", "wangwu"]));
    let unknown = sim
        .get(&format!(
            "/cgi-bin/appchat/get?access_token={token}&chatid=nope"
        ))
        .await;
    assert_eq!(errcode(&unknown), 86003);

    let sent = sim
        .call(
            "appchat/send",
            json!({"chatid": "ops01", "msgtype": "text", "text": {"content": "今日推送"}}),
        )
        .await;
    assert_eq!(errcode(&sent), 0);
    let message = sim.sim().messages().pop().unwrap();
    assert_eq!(
        (message.route, message.target.as_str()),
        (Route::Appchat, "ops01")
    );
    let to_unknown = sim
        .call(
            "appchat/send",
            json!({"chatid": "nope", "msgtype": "text", "text": {"content": "x"}}),
        )
        .await;
    assert_eq!(errcode(&to_unknown), 86003);

    // Another app may not touch this app's chat.
    let other = sim.token_for("other-secret").await;
    let foreign = sim
        .post(
            &format!("/cgi-bin/appchat/update?access_token={other}"),
            json!({"chatid": "ops01", "name": "mine now"}),
        )
        .await;
    assert_eq!(errcode(&foreign), 86008);
}

#[tokio::test]
async fn appchat_member_over_200_per_minute_is_dropped_silently() {
    let sim = TestSim::default().await;
    sim.sim().add_app_chat(SeedAppChat {
        chatid: "big".into(),
        name: String::new(),
        owner: "a".into(),
        userlist: vec!["a".into(), "b".into()],
        creator_agent_id: None,
    });
    let token = sim.token().await;
    let path = format!("/cgi-bin/appchat/send?access_token={token}");
    for n in 0..201 {
        let reply = sim
            .post(
                &path,
                json!({"chatid": "big", "msgtype": "text", "text": {"content": format!("{n}")}}),
            )
            .await;
        assert_eq!(errcode(&reply), 0);
    }
    let dropped: Vec<_> = sim
        .sim()
        .dropped()
        .into_iter()
        .map(|d| d.delivery.target)
        .collect();
    assert_eq!(dropped, ["big:a", "big:b"]);
}

// ---------------------------------------------------------- customer groups ---

#[tokio::test]
async fn groupchat_list_pages_through_every_group_exactly_once() {
    let sim = TestSim::default().await;
    for n in 0..5 {
        let mut seed = group(
            &format!("wr{n:02}"),
            if n % 2 == 0 { "zhangsan" } else { "lisi" },
        );
        seed.status = if n == 4 { 1 } else { 0 };
        sim.sim().add_customer_group(seed);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = sim
            .call(
                "externalcontact/groupchat/list",
                json!({"limit": 2, "cursor": cursor}),
            )
            .await;
        assert_eq!(errcode(&page), 0, "{page}");
        pages += 1;
        for item in page["group_chat_list"].as_array().unwrap() {
            seen.push(item["chat_id"].as_str().unwrap().to_owned());
        }
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
        // A group created between pages doesn't disturb the walk.
        if pages == 1 {
            sim.sim().add_customer_group(group("wr00a", "zhangsan"));
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["wr00", "wr01", "wr02", "wr03", "wr04"]);

    let owned = sim
        .call(
            "externalcontact/groupchat/list",
            json!({"limit": 100, "owner_filter": {"userid_list": ["lisi"]}}),
        )
        .await;
    assert_eq!(
        owned["group_chat_list"],
        json!([{"chat_id": "wr01", "status": 0}, {"chat_id": "wr03", "status": 0}])
    );
    let left = sim
        .call(
            "externalcontact/groupchat/list",
            json!({"limit": 100, "status_filter": 1}),
        )
        .await;
    assert_eq!(
        left["group_chat_list"],
        json!([{"chat_id": "wr04", "status": 1}])
    );

    for limit in [json!(0), json!(1001), json!(null)] {
        let reply = sim
            .call("externalcontact/groupchat/list", json!({"limit": limit}))
            .await;
        assert_eq!(errcode(&reply), 40058, "limit {limit}");
    }
    let bad_cursor = sim
        .call(
            "externalcontact/groupchat/list",
            json!({"limit": 10, "cursor": "zz"}),
        )
        .await;
    assert_eq!(errcode(&bad_cursor), 50100);
}

#[tokio::test]
async fn groupchat_get_describes_members_as_wecom_does() {
    let sim = TestSim::default().await;
    let mut seed = group("wrG", "zhangsan");
    seed.admins = vec!["lisi".into()];
    let mut customer = SeedGroupMember::new("wmCUSTOMER");
    customer.join_scene = 3;
    customer.join_time = 1_700_000_500;
    customer.group_nickname = "小王".into();
    customer.name = "王先生".into();
    customer.invitor = Some("lisi".into());
    seed.members.push(customer);
    sim.sim().add_customer_group(seed);

    let reply = sim
        .call(
            "externalcontact/groupchat/get",
            json!({"chat_id": "wrG", "need_name": 1}),
        )
        .await;
    assert_eq!(errcode(&reply), 0);
    let chat = &reply["group_chat"];
    assert_eq!(chat["owner"], "zhangsan");
    assert_eq!(chat["admin_list"], json!([{"userid": "lisi"}]));
    assert_eq!(chat["member_list"][0]["type"], 1);
    let member = &chat["member_list"][1];
    assert_eq!(member["type"], 2);
    assert_eq!(member["join_scene"], 3);
    assert_eq!(member["join_time"], 1_700_000_500);
    assert_eq!(member["invitor"]["userid"], "lisi");
    assert_eq!(member["group_nickname"], "小王");
    assert_eq!(member["name"], "王先生");
    let version = chat["member_version"].as_str().unwrap();
    assert_eq!(version.len(), 32);
    assert_eq!(
        version,
        sim.sim().customer_group("wrG").unwrap().member_version
    );

    let without_names = sim
        .call("externalcontact/groupchat/get", json!({"chat_id": "wrG"}))
        .await;
    assert!(without_names["group_chat"]["member_list"][1]
        .get("name")
        .is_none());
    let unknown = sim
        .call(
            "externalcontact/groupchat/get",
            json!({"chat_id": "wrNOPE"}),
        )
        .await;
    assert_eq!(errcode(&unknown), 40050);
}

// ------------------------------------------------------------ mass messages ---

#[tokio::test]
async fn mass_message_is_delivered_only_after_the_owner_confirms() {
    let sim = TestSim::default().await;
    for chat in ["wrA", "wrB", "wrC"] {
        sim.sim().add_customer_group(group(chat, "zhangsan"));
    }
    sim.sim().add_customer_group(group("wrOTHER", "lisi"));

    let created = sim
        .call(
            "externalcontact/add_msg_template",
            json!({"chat_type": "group", "sender": "zhangsan",
                   "chat_id_list": ["wrA", "wrB", "wrC", "wrOTHER", "wrMISSING"],
                   "text": {"content": "周末福利"},
                   "attachments": [{"msgtype": "link", "link": {"title": "t", "url": "https://example.invalid"}}]}),
        )
        .await;
    assert_eq!(errcode(&created), 0, "{created}");
    assert_eq!(created["fail_list"], json!(["wrOTHER", "wrMISSING"]));
    let msgid = created["msgid"].as_str().unwrap().to_owned();
    assert!(
        sim.sim().messages().is_empty(),
        "nothing before confirmation"
    );
    assert_eq!(sim.sim().pending_mass(), vec![msgid.clone()]);

    let result =
        |cursor: &str| json!({"msgid": msgid, "userid": "zhangsan", "limit": 2, "cursor": cursor});
    let before = sim
        .call("externalcontact/get_groupmsg_send_result", result(""))
        .await;
    assert_eq!(before["send_list"][0]["status"], 0);

    sim.advance(90);
    let confirm = sim
        .http
        .post(sim.url(&format!("/sim/confirm_mass/{msgid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let again = sim
        .http
        .post(sim.url(&format!("/sim/confirm_mass/{msgid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a task is confirmed once");

    let delivered = sim.sim().messages();
    let targets: Vec<_> = delivered.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["wrA", "wrB", "wrC"]);
    assert!(delivered
        .iter()
        .all(|m| m.route == Route::CustomerGroupMass && m.msgid == msgid));
    assert_eq!(delivered[0].text(), Some("周末福利"));

    let first = sim
        .call("externalcontact/get_groupmsg_send_result", result(""))
        .await;
    let rows = first["send_list"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], 1);
    assert_eq!(rows[0]["send_time"], sim.sim().now().timestamp());
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert!(!cursor.is_empty());
    let second = sim
        .call("externalcontact/get_groupmsg_send_result", result(&cursor))
        .await;
    assert_eq!(second["send_list"][0]["chat_id"], "wrC");
    assert_eq!(second["next_cursor"], "");

    let no_sender = sim
        .call(
            "externalcontact/add_msg_template",
            json!({"chat_type": "group", "text": {"content": "x"}}),
        )
        .await;
    assert_eq!(errcode(&no_sender), 41009);
    let too_long = sim
        .call(
            "externalcontact/add_msg_template",
            json!({"chat_type": "group", "sender": "zhangsan", "text": {"content": "x".repeat(4001)}}),
        )
        .await;
    assert_eq!(errcode(&too_long), 45002);
    let attachment =
        json!({"msgtype": "image", "image": {"pic_url": "https://example.invalid/a.png"}});
    let too_many = sim
        .call(
            "externalcontact/add_msg_template",
            json!({"chat_type": "group", "sender": "zhangsan",
                   "attachments": vec![attachment; 10]}),
        )
        .await;
    assert_eq!(errcode(&too_many), 40058);
    let unknown = sim
        .call(
            "externalcontact/get_groupmsg_send_result",
            json!({"msgid": "nope", "userid": "zhangsan"}),
        )
        .await;
    assert_eq!(errcode(&unknown), 41047);
}

#[tokio::test]
async fn auto_confirm_mode_delivers_mass_messages_at_once() {
    let sim = TestSim::start(config().with_auto_confirm_mass()).await;
    sim.sim().add_customer_group(group("wrA", "zhangsan"));
    let created = sim
        .call(
            "externalcontact/add_msg_template",
            json!({"chat_type": "group", "sender": "zhangsan", "text": {"content": "hi"}}),
        )
        .await;
    assert_eq!(errcode(&created), 0);
    assert_eq!(sim.sim().messages().len(), 1);
    assert!(sim.sim().pending_mass().is_empty());
}

// ------------------------------------------------------------------ welcome ---

#[tokio::test]
async fn welcome_code_works_once_within_20_seconds() {
    let sim = TestSim::default().await;
    let welcome = |code: &str| json!({"welcome_code": code, "text": {"content": "欢迎！"}});

    let code = sim.sim().issue_welcome_code("zhangsan", "wmNEW");
    sim.advance(20);
    let first = sim
        .call("externalcontact/send_welcome_msg", welcome(&code))
        .await;
    assert_eq!(errcode(&first), 0);
    let reuse = sim
        .call("externalcontact/send_welcome_msg", welcome(&code))
        .await;
    assert_eq!(errcode(&reuse), 41051);
    let delivered = sim.sim().messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].route, delivered[0].target.as_str()),
        (Route::Welcome, "wmNEW")
    );
    assert_eq!(delivered[0].sender, "zhangsan");

    let late = sim.sim().issue_welcome_code("zhangsan", "wmLATE");
    sim.advance(21);
    let expired = sim
        .call("externalcontact/send_welcome_msg", welcome(&late))
        .await;
    assert_eq!(errcode(&expired), 41050);
    let unknown = sim
        .call("externalcontact/send_welcome_msg", welcome("nope"))
        .await;
    assert_eq!(errcode(&unknown), 41050);
    let missing = sim
        .call(
            "externalcontact/send_welcome_msg",
            json!({"text": {"content": "x"}}),
        )
        .await;
    assert_eq!(errcode(&missing), 41049);
}

#[tokio::test]
async fn group_welcome_templates_are_stored() {
    let sim = TestSim::default().await;
    let reply = sim
        .call(
            "externalcontact/group_welcome_template/add",
            json!({"text": {"content": "欢迎入群"}, "notify": 1}),
        )
        .await;
    assert_eq!(errcode(&reply), 0);
    let templates = sim.sim().group_welcome_templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(
        templates[0].template_id,
        reply["template_id"].as_str().unwrap()
    );
    let empty = sim
        .call("externalcontact/group_welcome_template/add", json!({}))
        .await;
    assert_eq!(errcode(&empty), 44004);
}

// ---------------------------------------------------------------- smart bot ---

#[tokio::test]
async fn bot_response_url_is_single_use_and_expires_after_an_hour() {
    let sim = TestSim::default().await;
    let code = sim.sim().issue_response_code("AIBOT1", "wrGROUP1", true);
    let url = sim.sim().response_url(&code);
    assert!(url.starts_with(&sim.base_url()));
    let answer =
        |len: usize| json!({"msgtype": "markdown", "markdown": {"content": "好".repeat(len)}});
    let path = format!("/cgi-bin/aibot/response?response_code={code}");

    assert_eq!(
        errcode(&sim.post(&path, answer(6827)).await),
        45002,
        "20481 bytes"
    );
    let card = json!({"msgtype": "template_card", "template_card": {"card_type": "text_notice"}});
    assert_eq!(
        errcode(&sim.post(&path, card).await),
        40058,
        "cards only in 1:1"
    );
    assert_eq!(
        errcode(&sim.post(&path, answer(6826)).await),
        0,
        "20478 bytes"
    );
    assert_eq!(errcode(&sim.post(&path, answer(1)).await), 42022);
    let delivered = sim.sim().messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].route, Route::BotResponse);
    assert_eq!(delivered[0].target, "wrGROUP1");

    let late = sim.sim().issue_response_code("AIBOT1", "wrGROUP1", true);
    sim.advance(3601);
    let expired = sim
        .post(
            &format!("/cgi-bin/aibot/response?response_code={late}"),
            answer(1),
        )
        .await;
    assert_eq!(errcode(&expired), 40058);
}

// ---------------------------------------------------------- fault injection ---

#[tokio::test]
async fn injected_errcode_and_http_500_hit_the_next_n_matching_calls() {
    let sim = TestSim::default().await;
    sim.sim().add_robot("KEY", "wrG");
    let path = "/cgi-bin/webhook/send?key=KEY";
    let text = json!({"msgtype": "text", "text": {"content": "x"}});

    sim.sim().inject(
        FaultRule::new(FaultKind::busy())
            .on_path("webhook/send")
            .times(2),
    );
    // A token call doesn't consume a webhook fault.
    let _ = sim.token().await;
    assert_eq!(errcode(&sim.post(path, text.clone()).await), -1);
    assert_eq!(errcode(&sim.post(path, text.clone()).await), -1);
    assert_eq!(errcode(&sim.post(path, text.clone()).await), 0);
    assert_eq!(
        sim.sim().messages().len(),
        1,
        "failed calls deliver nothing"
    );

    // Same through the JSON control endpoint.
    let faults = sim
        .post(
            "/sim/faults",
            json!({"rules": [{"kind": "http500", "path": "webhook"}]}),
        )
        .await;
    assert_eq!(faults["ok"], true);
    let response = sim
        .http
        .post(sim.url(path))
        .json(&text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(errcode(&sim.post(path, text.clone()).await), 0);

    // A lost answer: the message is delivered, the client sees a 500.
    sim.sim().inject(
        FaultRule::new(FaultKind::Http500)
            .on_path("webhook")
            .after_effect(),
    );
    let response = sim
        .http
        .post(sim.url(path))
        .json(&text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(sim.sim().messages().len(), 3);

    let stats = sim.sim().stats();
    assert_eq!(stats.faults_injected, 4);
    assert_eq!(stats.calls_to("webhook/send"), 6);
}

#[tokio::test]
async fn hanging_call_never_answers_and_client_times_out() {
    let sim = TestSim::default().await;
    sim.sim()
        .inject(FaultRule::new(FaultKind::Hang).on_path("gettoken"));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let url = sim.url(&format!(
        "/cgi-bin/gettoken?corpid={CORP}&corpsecret={SECRET}"
    ));
    let error = client.get(&url).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // Only that one call hangs.
    let reply: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(errcode(&reply), 0);
    // Shutdown releases the hung handler instead of waiting forever.
    sim.app.stop().await.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_fault_delays_the_answer_by_the_configured_time() {
    use tower::ServiceExt;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap());
    let sim = Sim::new(SimConfig::new(CORP, SECRET), clock);
    sim.inject(FaultRule::new(FaultKind::Slow { delay_ms: 4_000 }));
    let request = || {
        axum::http::Request::get(format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret={SECRET}"
        ))
        .body(axum::body::Body::empty())
        .unwrap()
    };
    let started = tokio::time::Instant::now();
    let response = sim.router().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(4_000));

    let started = tokio::time::Instant::now();
    sim.router().oneshot(request()).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_millis(4_000));

    // And a hang under paused time: still unanswered after an hour.
    sim.inject(FaultRule::new(FaultKind::Hang));
    let hung = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        sim.router().oneshot(request()),
    )
    .await;
    assert!(hung.is_err());
}

#[tokio::test]
async fn random_faults_are_reproducible_for_a_seed() {
    async fn run(seed: u64) -> Vec<u16> {
        let sim = TestSim::default().await;
        sim.post(
            "/sim/faults",
            json!({"random": {"seed": seed, "errcode": 0.3, "http500": 0.3, "path": "gettoken"}}),
        )
        .await;
        let url = sim.url(&format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret={SECRET}"
        ));
        let mut outcomes = Vec::new();
        for _ in 0..40 {
            let response = sim.http.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = if status == 200 {
                response.json().await.unwrap()
            } else {
                json!({})
            };
            outcomes.push(if status == 200 && errcode(&body) == -1 {
                1
            } else {
                status
            });
        }
        outcomes
    }
    let first = run(42).await;
    assert_eq!(first, run(42).await);
    assert_ne!(first, run(43).await);
    assert!(first.contains(&1) && first.contains(&500) && first.contains(&200));
}

// ------------------------------------------------------------ record / reset ---

/// `GET /sim/calls` shows each API call as it arrived, faulted or not, with
/// credentials left out; scripted faults can let calls through first
/// (`skip`) and make a call take time on the simulator's clock (`takes`).
#[tokio::test]
async fn calls_are_recorded_without_credentials_and_faults_skip_and_take_clock_time() {
    let sim = TestSim::default().await;
    sim.post(
        "/sim/faults",
        json!({"rules": [
            {"kind": "errcode", "errcode": 45009, "path": "message/send", "skip": 1},
            {"kind": "takes", "secs": 50, "path": "gettoken"}
        ]}),
    )
    .await;
    let before = sim.app.now();
    let token = sim.token().await;
    assert_eq!(
        sim.app.now() - before,
        Duration::seconds(50),
        "the token took 50 s"
    );
    let codes: Vec<i64> = [
        sim.send_text(&token, "zhangsan", "one").await,
        sim.send_text(&token, "zhangsan", "two").await,
        sim.send_text(&token, "zhangsan", "three").await,
    ]
    .iter()
    .map(errcode)
    .collect();
    assert_eq!(codes, [0, 45009, 0], "the second call fails, once");

    let calls = sim.get("/sim/calls").await;
    let calls = calls.as_array().unwrap();
    let paths: Vec<&str> = calls.iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["gettoken", "message/send", "message/send", "message/send"]
    );
    assert_eq!(calls[0]["query"]["corpid"], CORP);
    assert_eq!(calls[2]["body"]["text"]["content"], "two");
    let text = serde_json::to_string(calls).unwrap();
    assert!(!text.contains(SECRET) && !text.contains(&token), "{text}");
    assert_eq!(sim.sim().calls().len(), 4);
}

#[tokio::test]
async fn records_stats_and_reset_over_http() {
    let sim = TestSim::default().await;
    sim.post(
        "/sim/state",
        json!({"members": ["zhangsan"], "robots": [{"key": "K", "chat_id": "wrG", "name": "播报"}]}),
    )
    .await;
    sim.post(
        "/cgi-bin/webhook/send?key=K",
        json!({"msgtype": "text", "text": {"content": "hello"}}),
    )
    .await;
    let token = sim.token().await;
    sim.send_text(&token, "zhangsan", "你好").await;

    let messages = sim.get("/sim/messages").await;
    assert_eq!(messages.as_array().unwrap().len(), 2);
    assert_eq!(messages[0]["route"], "webhook");
    assert_eq!(messages[0]["target"], "wrG");
    assert_eq!(messages[0]["sender"], "播报");
    assert_eq!(messages[0]["msgtype"], "text");
    assert_eq!(messages[0]["content"]["content"], "hello");
    assert_eq!(messages[1]["route"], "app_message");
    assert!(messages[1]["time"].is_i64() && messages[1]["msgid"].is_string());

    let stats = sim.get("/sim/stats").await;
    assert_eq!(stats["gettoken_calls"], 1);
    assert_eq!(stats["calls"]["message/send"], 1);
    assert_eq!(stats["messages"], 2);
    assert_eq!(sim.get("/sim/dropped").await, json!([]));

    sim.post("/sim/reset", json!({})).await;
    assert_eq!(sim.get("/sim/messages").await, json!([]));
    assert_eq!(sim.get("/sim/stats").await["gettoken_calls"], 0);
    // The world and the token survive a reset.
    assert_eq!(
        errcode(&sim.send_text(&token, "zhangsan", "again").await),
        0
    );
    let state = sim.get("/sim/state").await;
    assert_eq!(state["robots"][0]["key"], "K");
    assert_eq!(state["members"], json!(["zhangsan"]));
}

#[tokio::test]
async fn seeding_from_rust_is_visible_through_the_api() {
    let sim = TestSim::default().await;
    sim.sim()
        .seed(SeedState {
            members: vec!["a".into(), "b".into()],
            customer_groups: vec![group("wrSEED", "a")],
            ..SeedState::default()
        })
        .unwrap();
    let reply = sim
        .call("externalcontact/groupchat/list", json!({"limit": 10}))
        .await;
    assert_eq!(reply["group_chat_list"][0]["chat_id"], "wrSEED");
    let unknown_api = sim
        .http
        .get(sim.url("/cgi-bin/no/such/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_api.status(), 404);
    let bad_json = sim
        .http
        .post(sim.url(&format!(
            "/cgi-bin/message/send?access_token={}",
            sim.token().await
        )))
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body: Value = bad_json.json().await.unwrap();
    assert_eq!(errcode(&body), 47001);
}

// ------------------------------------------------------------- standalone ---

#[tokio::test]
async fn run_serves_a_scenario_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("community.toml");
    std::fs::write(
        &path,
        r#"
auto_confirm_mass = true
[state]
members = ["zhangsan"]
[[state.customer_groups]]
chat_id = "wrFILE"
owner = "zhangsan"
[[state.robots]]
key = "FILEKEY"
chat_id = "wrFILESTAFF"
"#,
    )
    .unwrap();
    let config = SimConfig::from_args(CORP, SECRET, Some(60), Some(&path)).unwrap();
    assert_eq!(config.token_ttl_secs, 60);
    assert!(SimConfig::from_args(CORP, SECRET, Some(0), None).is_err());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(qunyun::sim::run(config, listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let token: Value = http
        .get(format!(
            "{base}/cgi-bin/gettoken?corpid={CORP}&corpsecret={SECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 60);
    let token = token["access_token"].as_str().unwrap();
    let sent: Value = http
        .post(format!(
            "{base}/cgi-bin/externalcontact/add_msg_template?access_token={token}"
        ))
        .json(&json!({"chat_type": "group", "sender": "zhangsan", "text": {"content": "hi"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&sent), 0);
    let messages: Value = http
        .get(format!("{base}/sim/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        messages[0]["target"], "wrFILE",
        "auto-confirmed from the file"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// ------------------------------------------------------------------- driver ---

mod driver {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    use aes::cipher::block_padding::NoPadding;
    use aes::cipher::{BlockDecryptMut, KeyIvInit};
    use axum::extract::{Path, Query, State};
    use axum::routing::post;
    use axum::Router;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
    use base64::{alphabet, Engine};
    use qunyun::sim::{
        AddContactRequest, AppCallback, AppTextRequest, BotCallback, BotMentionRequest,
        CallbackTargets, JoinRequest, JoinVia, LeaveRequest, NewMember, VerifyRequest,
    };
    use qunyun::wecom::crypto::MsgCrypt;
    use sha1::{Digest, Sha1};
    use tokio::sync::mpsc;

    use super::*;

    /// Tencent's sample EncodingAESKey (surplus bits set in the last char).
    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const APP_TOKEN: &str = "QDG6eK";
    const BOT_TOKEN: &str = "botToken123";

    /// One request the fake qunyun received.
    #[derive(Debug, Clone)]
    struct Received {
        path: String,
        query: HashMap<String, String>,
        body: String,
    }

    /// A stand-in for qunyun's callback server: records every request and
    /// answers with scripted statuses (200 when the script is empty).
    #[derive(Clone)]
    struct Receiver {
        seen: mpsc::UnboundedSender<Received>,
        statuses: Arc<Mutex<VecDeque<u16>>>,
    }

    async fn app_post(
        State(receiver): State<Receiver>,
        Path(name): Path<String>,
        Query(query): Query<HashMap<String, String>>,
        body: String,
    ) -> axum::http::StatusCode {
        receiver.record(format!("apps/{name}"), query, body)
    }

    async fn bot_post(
        State(receiver): State<Receiver>,
        Path(name): Path<String>,
        Query(query): Query<HashMap<String, String>>,
        body: String,
    ) -> axum::http::StatusCode {
        receiver.record(format!("bots/{name}"), query, body)
    }

    /// GET URL verification: answer the decrypted echostr, as qunyun must.
    async fn app_verify(Query(query): Query<HashMap<String, String>>) -> String {
        open(APP_TOKEN, CORP, &query, &query["echostr"])
    }

    impl Receiver {
        fn record(
            &self,
            path: String,
            query: HashMap<String, String>,
            body: String,
        ) -> axum::http::StatusCode {
            let _ = self.seen.send(Received { path, query, body });
            let status = self.statuses.lock().unwrap().pop_front().unwrap_or(200);
            axum::http::StatusCode::from_u16(status).unwrap()
        }
    }

    struct Fixture {
        sim: TestSim,
        seen: mpsc::UnboundedReceiver<Received>,
        statuses: Arc<Mutex<VecDeque<u16>>>,
    }

    async fn fixture() -> Fixture {
        let (tx, seen) = mpsc::unbounded_channel();
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let receiver = Receiver {
            seen: tx,
            statuses: statuses.clone(),
        };
        let app = Router::new()
            .route(
                "/wecom/apps/{name}/callback",
                post(app_post).get(app_verify),
            )
            .route("/wecom/bots/{name}/callback", post(bot_post))
            .with_state(receiver);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let sim = TestSim::default().await;
        let mut seed = group("wrGROUP", "zhangsan");
        seed.members.push(SeedGroupMember::new("wmOLD"));
        sim.sim().add_customer_group(seed);
        sim.sim().set_callbacks(
            CallbackTargets::new(base_url)
                .with_app(AppCallback {
                    name: "main".into(),
                    token: APP_TOKEN.into(),
                    encoding_aes_key: AES_KEY.into(),
                    agent_id: 1000002,
                })
                .with_bot(BotCallback {
                    name: "helper".into(),
                    token: BOT_TOKEN.into(),
                    encoding_aes_key: AES_KEY.into(),
                    aibotid: "AIBOT1".into(),
                    bot_name: "运营助手".into(),
                }),
        );
        Fixture {
            sim,
            seen,
            statuses,
        }
    }

    /// Independent opener (not the simulator's code): check the SHA-1
    /// signature over the sorted strings, AES-256-CBC decrypt with IV =
    /// key[..16], strip the 32-byte PKCS#7 pad, check the receive id.
    fn open(
        token: &str,
        receive_id: &str,
        query: &HashMap<String, String>,
        encrypt: &str,
    ) -> String {
        let mut parts = [token, &query["timestamp"], &query["nonce"], encrypt];
        parts.sort_unstable();
        let signature = hex::encode(Sha1::digest(parts.concat().as_bytes()));
        assert_eq!(signature, query["msg_signature"], "signature");
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let key = lenient.decode(format!("{AES_KEY}=")).unwrap();
        let mut buf = STANDARD.decode(encrypt).unwrap();
        let plain = cbc::Decryptor::<aes::Aes256>::new(key[..].into(), key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .unwrap()
            .to_vec();
        assert_eq!(plain.len() % 32, 0, "padded to 32-byte blocks");
        let pad = *plain.last().unwrap() as usize;
        assert!((1..=32).contains(&pad));
        assert!(plain[plain.len() - pad..]
            .iter()
            .all(|b| *b as usize == pad));
        let len = u32::from_be_bytes(plain[16..20].try_into().unwrap()) as usize;
        let msg = &plain[20..20 + len];
        assert_eq!(
            &plain[20 + len..plain.len() - pad],
            receive_id.as_bytes(),
            "receive id"
        );
        let independent = String::from_utf8(msg.to_vec()).unwrap();

        // And qunyun's own crypto module accepts it.
        let crypt = MsgCrypt::new(token, AES_KEY, receive_id).unwrap();
        let opened = crypt
            .verify_and_decrypt(
                &query["msg_signature"],
                &query["timestamp"],
                &query["nonce"],
                encrypt,
            )
            .unwrap();
        assert_eq!(opened, independent.as_bytes());
        let wrong_receiver = MsgCrypt::new(token, AES_KEY, "wwSOMEONEELSE").unwrap();
        assert!(
            wrong_receiver.decrypt(encrypt).is_err(),
            "receive id is checked"
        );
        independent
    }

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let from = text
            .find(start)
            .unwrap_or_else(|| panic!("{start} in {text}"))
            + start.len();
        let to = text[from..].find(end).unwrap() + from;
        &text[from..to]
    }

    fn open_app(received: &Received) -> String {
        let encrypt = between(&received.body, "<Encrypt><![CDATA[", "]]></Encrypt>");
        open(APP_TOKEN, CORP, &received.query, encrypt)
    }

    #[tokio::test]
    async fn join_and_leave_send_sealed_member_changes_with_a_consistent_version_chain() {
        let mut f = fixture().await;
        let before = f
            .sim
            .sim()
            .customer_group("wrGROUP")
            .unwrap()
            .member_version;
        f.sim.advance(100);

        let outcome = f
            .sim
            .sim()
            .drive_join(JoinRequest {
                app: None,
                chat_id: "wrGROUP".into(),
                members: vec![NewMember::new("wmNEW1"), NewMember::new("wmNEW2")],
                via: JoinVia::QrCode,
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!((outcome.status, outcome.attempts), (Some(200), 1));
        let received = f.seen.recv().await.unwrap();
        assert_eq!(received.path, "apps/main");
        assert!(received
            .body
            .contains(&format!("<ToUserName><![CDATA[{CORP}]]></ToUserName>")));
        assert!(
            received.body.contains("<AgentID><![CDATA[]]></AgentID>"),
            "客户联系 events carry no agent"
        );
        let xml = open_app(&received);
        let after_join = f.sim.sim().customer_group("wrGROUP").unwrap();
        assert_eq!(
            outcome.member_version.as_deref(),
            Some(after_join.member_version.as_str())
        );
        for expected in [
            "<Event><![CDATA[change_external_chat]]></Event>",
            "<ChatId><![CDATA[wrGROUP]]></ChatId>",
            "<ChangeType><![CDATA[update]]></ChangeType>",
            "<UpdateDetail><![CDATA[add_member]]></UpdateDetail>",
            "<JoinScene>3</JoinScene>",
            "<MemChangeCnt>2</MemChangeCnt>",
            "<Item><![CDATA[wmNEW1]]></Item><Item><![CDATA[wmNEW2]]></Item>",
            "<FromUserName><![CDATA[sys]]></FromUserName>",
        ] {
            assert!(xml.contains(expected), "{expected} missing in {xml}");
        }
        assert_eq!(between(&xml, "<LastMemVer><![CDATA[", "]]>"), before);
        assert_eq!(
            between(&xml, "<CurMemVer><![CDATA[", "]]>"),
            after_join.member_version
        );
        assert_eq!(
            between(&xml, "<CreateTime>", "</CreateTime>"),
            f.sim.sim().now().timestamp().to_string()
        );

        // The API agrees: API code space for join_scene, join_time = now.
        let got = f
            .sim
            .call(
                "externalcontact/groupchat/get",
                json!({"chat_id": "wrGROUP"}),
            )
            .await;
        let new = &got["group_chat"]["member_list"][2];
        assert_eq!(
            (new["userid"].as_str(), new["type"].as_i64()),
            (Some("wmNEW1"), Some(2))
        );
        assert_eq!(new["join_scene"], 3);
        assert_eq!(new["join_time"], f.sim.sim().now().timestamp());
        assert_eq!(
            got["group_chat"]["member_version"],
            after_join.member_version.as_str()
        );

        // Leave, removed by the owner.
        let outcome = f
            .sim
            .sim()
            .drive_leave(LeaveRequest {
                app: Some("main".into()),
                chat_id: "wrGROUP".into(),
                userids: vec!["wmOLD".into()],
                removed: true,
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        let xml = open_app(&f.seen.recv().await.unwrap());
        assert!(xml.contains("<UpdateDetail><![CDATA[del_member]]></UpdateDetail>"));
        assert!(xml.contains("<QuitScene>1</QuitScene>"));
        assert_eq!(
            between(&xml, "<LastMemVer><![CDATA[", "]]>"),
            after_join.member_version
        );
        let members: Vec<_> = f
            .sim
            .sim()
            .customer_group("wrGROUP")
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.userid)
            .collect();
        assert_eq!(members, ["zhangsan", "wmNEW1", "wmNEW2"]);
    }

    #[tokio::test]
    async fn a_lost_callback_changes_state_and_leaves_a_version_gap() {
        let mut f = fixture().await;
        let join = |userid: &str, lose_callback: bool| JoinRequest {
            app: None,
            chat_id: "wrGROUP".into(),
            members: vec![NewMember::new(userid)],
            via: JoinVia::Invite,
            lose_callback,
        };
        let lost = f.sim.sim().drive_join(join("wmLOST", true)).await.unwrap();
        assert_eq!(lost.status, None);
        assert!(f.seen.try_recv().is_err(), "nothing was sent");
        assert!(f
            .sim
            .sim()
            .customer_group("wrGROUP")
            .unwrap()
            .members
            .iter()
            .any(|m| m.userid == "wmLOST"));

        f.sim.sim().drive_join(join("wmNEXT", false)).await.unwrap();
        let xml = open_app(&f.seen.recv().await.unwrap());
        assert!(xml.contains("<JoinScene>0</JoinScene>"));
        // LastMemVer is the lost event's CurMemVer, which the receiver never
        // saw: that is how qunyun notices it must re-pull the group.
        assert_eq!(
            between(&xml, "<LastMemVer><![CDATA[", "]]>"),
            lost.member_version.unwrap()
        );
    }

    #[tokio::test]
    async fn add_contact_carries_a_welcome_code_the_simulator_accepts() {
        let mut f = fixture().await;
        let outcome = f
            .sim
            .sim()
            .drive_add_contact(AddContactRequest {
                app: None,
                userid: "zhangsan".into(),
                external_userid: "wmFRIEND".into(),
                state: "poster_2026".into(),
            })
            .await
            .unwrap();
        let xml = open_app(&f.seen.recv().await.unwrap());
        assert!(xml.contains("<ChangeType><![CDATA[add_external_contact]]></ChangeType>"));
        assert!(xml.contains("<State><![CDATA[poster_2026]]></State>"));
        let code = between(&xml, "<WelcomeCode><![CDATA[", "]]>").to_owned();
        assert_eq!(Some(code.clone()), outcome.welcome_code);

        f.sim.advance(5);
        let reply = f
            .sim
            .call(
                "externalcontact/send_welcome_msg",
                json!({"welcome_code": code, "text": {"content": "你好"}}),
            )
            .await;
        assert_eq!(errcode(&reply), 0);
        assert_eq!(f.sim.sim().messages()[0].target, "wmFRIEND");
    }

    #[tokio::test]
    async fn app_text_has_a_64_bit_msgid_and_the_agent_id() {
        let mut f = fixture().await;
        let outcome = f
            .sim
            .sim()
            .drive_app_text(AppTextRequest {
                app: None,
                from: "lisi".into(),
                content: "签到\n第二行 ]]> 😀".into(),
            })
            .await
            .unwrap();
        let msg_id = outcome.msg_id.unwrap();
        assert!(msg_id > 1 << 53, "beyond f64 precision");
        let received = f.seen.recv().await.unwrap();
        assert!(received
            .body
            .contains("<AgentID><![CDATA[1000002]]></AgentID>"));
        let xml = open_app(&received);
        assert!(xml.contains(&format!("<MsgId>{msg_id}</MsgId>")));
        assert!(xml.contains("<FromUserName><![CDATA[lisi]]></FromUserName>"));
        assert!(xml.contains("<MsgType><![CDATA[text]]></MsgType>"));
        // The CDATA terminator inside the content is split, nothing is lost.
        assert!(xml.contains("<Content><![CDATA[签到\n第二行 ]]]]><![CDATA[> 😀]]></Content>"));
        let second = f
            .sim
            .sim()
            .drive_app_text(AppTextRequest {
                app: None,
                from: "lisi".into(),
                content: "x".into(),
            })
            .await
            .unwrap();
        assert_ne!(second.msg_id, Some(msg_id));
    }

    /// WeCom offers robots and the smart bot only in internal groups
    /// (docs/wecom.md#chat-kinds): the simulator refuses to put either into
    /// a customer group, and no callback reaches qunyun.
    #[tokio::test]
    async fn a_robot_or_smart_bot_in_a_customer_group_is_refused_with_the_reason() {
        use qunyun::sim::{DriveError, SeedRobot, WorldRefusal};

        let mut f = fixture().await;
        let sim = f.sim.sim();
        let refusal = sim.try_add_robot("KEY-CUSTOMER", "wrGROUP").unwrap_err();
        assert_eq!(
            refusal,
            WorldRefusal::RobotInCustomerGroup {
                chat_id: "wrGROUP".into()
            }
        );
        assert!(
            refusal.to_string().contains("only in internal groups"),
            "{refusal}"
        );
        // Not added: WeCom knows no such robot key.
        let text = json!({"msgtype": "text", "text": {"content": "x"}});
        let reply = f
            .sim
            .post("/cgi-bin/webhook/send?key=KEY-CUSTOMER", text.clone())
            .await;
        assert_eq!(errcode(&reply), 93000);

        // The same through the control API: refused, nothing seeded.
        let response = f
            .sim
            .http
            .post(f.sim.url("/sim/state"))
            .json(&json!({"robots": [{"key": "KEY-2", "chat_id": "wrGROUP"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("wrGROUP is a customer group"),
            "{body}"
        );
        let state = f.sim.get("/sim/state").await;
        assert_eq!(state["robots"], json!([]), "{state}");

        // A chat with a robot is an internal group; it cannot become a
        // customer group later, not even in one seed with its robot.
        sim.add_robot("KEY-STAFF", "wrSTAFF");
        let refusal = sim
            .seed(SeedState {
                customer_groups: vec![group("wrSTAFF", "zhangsan")],
                ..SeedState::default()
            })
            .unwrap_err();
        assert!(matches!(
            refusal,
            WorldRefusal::InternalGroupAsCustomerGroup { .. }
        ));
        let refusal = sim
            .seed(SeedState {
                customer_groups: vec![group("wrBOTH", "zhangsan")],
                robots: vec![SeedRobot {
                    key: "KEY-BOTH".into(),
                    chat_id: "wrBOTH".into(),
                    name: String::new(),
                }],
                ..SeedState::default()
            })
            .unwrap_err();
        assert!(matches!(refusal, WorldRefusal::RobotInCustomerGroup { .. }));
        assert!(sim.customer_group("wrBOTH").is_none());
        assert!(sim.customer_group("wrSTAFF").is_none());
        // The robot in the internal group works.
        let reply = f
            .sim
            .post("/cgi-bin/webhook/send?key=KEY-STAFF", text)
            .await;
        assert_eq!(errcode(&reply), 0);

        // Nobody can @-mention the smart bot in a customer group.
        let error = sim
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: Some("wrGROUP".into()),
                from: "lisi".into(),
                content: "签到".into(),
                quote: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                DriveError::Refused(WorldRefusal::SmartBotInCustomerGroup { .. })
            ),
            "{error}"
        );
        assert!(f.seen.try_recv().is_err(), "no callback was sent");
    }

    /// `change_external_chat` exists only for customer groups: a join or a
    /// leave in an internal group (robot, smart bot or app group) is refused,
    /// also when faked through the raw driver, while the customer group next
    /// to it still gets its events.
    #[tokio::test]
    async fn internal_groups_get_no_join_or_leave_events() {
        use qunyun::sim::{DriveError, RawRequest, WorldRefusal};

        let mut f = fixture().await;
        let sim = f.sim.sim();
        sim.add_robot("KEY-STAFF", "wrSTAFF");
        sim.add_app_chat(SeedAppChat {
            chatid: "wrAPPCHAT".into(),
            name: "ops".into(),
            owner: "zhangsan".into(),
            userlist: vec!["zhangsan".into(), "lisi".into()],
            creator_agent_id: None,
        });
        let mention = sim
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: Some("wrBOTCHAT".into()),
                from: "lisi".into(),
                content: "签到".into(),
                quote: None,
            })
            .await
            .unwrap();
        assert_eq!(mention.status, Some(200));
        f.seen.recv().await.unwrap();

        for chat in ["wrSTAFF", "wrBOTCHAT", "wrAPPCHAT"] {
            let join = sim
                .drive_join(JoinRequest {
                    app: None,
                    chat_id: chat.into(),
                    members: vec![NewMember::new("wangwu")],
                    via: JoinVia::Invite,
                    lose_callback: false,
                })
                .await
                .unwrap_err();
            assert!(
                matches!(
                    join,
                    DriveError::Refused(WorldRefusal::NoJoinEventsInInternalGroups { .. })
                ),
                "{chat}: {join}"
            );
            assert!(
                join.to_string().contains("only for customer groups"),
                "{join}"
            );
            let leave = sim
                .drive_leave(LeaveRequest {
                    app: None,
                    chat_id: chat.into(),
                    userids: vec!["lisi".into()],
                    removed: false,
                    lose_callback: false,
                })
                .await
                .unwrap_err();
            assert!(matches!(leave, DriveError::Refused(_)), "{chat}: {leave}");
        }
        let faked = format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>1772352000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrSTAFF]]></ChatId>\
             <ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail></xml>"
        );
        let raw = sim
            .drive_raw(RawRequest {
                plaintext: faked,
                ..RawRequest::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(raw, DriveError::Refused(_)), "{raw}");
        assert!(f.seen.try_recv().is_err(), "no callback was sent");

        // The customer group still has its joins.
        let join = sim
            .drive_join(JoinRequest {
                app: None,
                chat_id: "wrGROUP".into(),
                members: vec![NewMember::new("wmNEW")],
                via: JoinVia::QrCode,
                lose_callback: false,
            })
            .await
            .unwrap();
        assert_eq!(join.status, Some(200));
        assert_eq!(f.seen.recv().await.unwrap().path, "apps/main");
    }

    #[tokio::test]
    async fn bot_mention_is_a_json_envelope_with_empty_receive_id_and_a_working_response_url() {
        let mut f = fixture().await;
        let outcome = f
            .sim
            .sim()
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: Some("wrINTERNAL".into()),
                from: "lisi".into(),
                content: "签到".into(),
                quote: None,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        let received = f.seen.recv().await.unwrap();
        assert_eq!(received.path, "bots/helper");
        let envelope: Value = serde_json::from_str(&received.body).unwrap();
        let encrypt = envelope["encrypt"].as_str().unwrap();
        let message: Value =
            serde_json::from_str(&open(BOT_TOKEN, "", &received.query, encrypt)).unwrap();
        assert_eq!(message["chattype"], "group");
        assert_eq!(message["chatid"], "wrINTERNAL");
        assert_eq!(message["aibotid"], "AIBOT1");
        assert_eq!(message["from"]["userid"], "lisi");
        assert_eq!(message["msgtype"], "text");
        assert_eq!(message["text"]["content"], "@运营助手 签到");
        assert_eq!(message["msgid"].as_str(), outcome.bot_msgid.as_deref());
        let response_url = message["response_url"].as_str().unwrap();
        assert_eq!(Some(response_url), outcome.response_url.as_deref());

        let reply: Value = f
            .sim
            .http
            .post(response_url)
            .json(&json!({"msgtype": "markdown", "markdown": {"content": "已签到 ✅"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(errcode(&reply), 0);
        let delivered = f.sim.sim().messages();
        assert_eq!(
            (delivered[0].route, delivered[0].target.as_str()),
            (Route::BotResponse, "wrINTERNAL")
        );
    }

    #[tokio::test]
    async fn failed_deliveries_are_retried_like_wecom_with_the_same_envelope() {
        let mut f = fixture().await;
        f.statuses.lock().unwrap().extend([500, 503]);
        let outcome = f
            .sim
            .sim()
            .drive_app_text(AppTextRequest {
                app: None,
                from: "lisi".into(),
                content: "hi".into(),
            })
            .await
            .unwrap();
        assert_eq!((outcome.status, outcome.attempts), (Some(200), 3));
        let first = f.seen.recv().await.unwrap();
        for _ in 0..2 {
            let again = f.seen.recv().await.unwrap();
            assert_eq!((&again.query, &again.body), (&first.query, &first.body));
        }

        // Always failing: 1 delivery + 3 retries, then the last status.
        f.statuses.lock().unwrap().extend([500; 4]);
        let outcome = f
            .sim
            .sim()
            .drive_app_text(AppTextRequest {
                app: None,
                from: "lisi".into(),
                content: "hi".into(),
            })
            .await
            .unwrap();
        assert_eq!((outcome.status, outcome.attempts), (Some(500), 4));
    }

    #[tokio::test]
    async fn url_verification_expects_the_decrypted_echostr_back() {
        let f = fixture().await;
        let outcome = f
            .sim
            .sim()
            .drive_verify_url(VerifyRequest::default())
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
        assert_eq!(outcome.verified, Some(true), "body was {}", outcome.body);
        assert!(outcome.body.parse::<u64>().is_ok());
        // The fake bot route has no GET handler: verification fails.
        let bot = f
            .sim
            .sim()
            .drive_verify_url(VerifyRequest {
                app: None,
                bot: Some(crate::helpers::BOT.into()),
            })
            .await
            .unwrap();
        assert_eq!(bot.verified, Some(false));
    }

    #[tokio::test]
    async fn raw_plaintext_is_sealed_for_apps_and_bots() {
        let mut f = fixture().await;
        let xml = "<xml><ToUserName><![CDATA[ww]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>1000002</AgentID></xml>";
        let outcome = f
            .sim
            .post(
                "/sim/drive/raw",
                json!({"plaintext": xml, "with_agent": true}),
            )
            .await;
        assert_eq!(outcome["status"], 200);
        let received = f.seen.recv().await.unwrap();
        assert!(received
            .body
            .contains("<AgentID><![CDATA[1000002]]></AgentID>"));
        assert_eq!(open_app(&received), xml);

        let event = r#"{"msgid":"m1","aibotid":"AIBOT1","chattype":"single","from":{"userid":"lisi"},"msgtype":"event","event":{"eventtype":"enter_chat"}}"#;
        f.sim
            .post(
                "/sim/drive/raw",
                json!({"bot": "helper", "plaintext": event}),
            )
            .await;
        let received = f.seen.recv().await.unwrap();
        assert_eq!(received.path, "bots/helper");
        let envelope: Value = serde_json::from_str(&received.body).unwrap();
        let opened = open(
            BOT_TOKEN,
            "",
            &received.query,
            envelope["encrypt"].as_str().unwrap(),
        );
        assert_eq!(opened, event);
    }

    #[tokio::test]
    async fn driving_over_http_and_scenario_steps() {
        let mut f = fixture().await;
        let outcome = f
            .sim
            .post(
                "/sim/drive/join",
                json!({"chat_id": "wrGROUP", "members": [{"userid": "wmHTTP"}], "via": "invite_link"}),
            )
            .await;
        assert_eq!(outcome["status"], 200);
        assert!(open_app(&f.seen.recv().await.unwrap()).contains("wmHTTP"));
        let member = f
            .sim
            .sim()
            .customer_group("wrGROUP")
            .unwrap()
            .members
            .pop()
            .unwrap();
        assert_eq!(member.join_scene, 2, "invite link: API join_scene 2");

        let steps = f
            .sim
            .post(
                "/sim/drive/steps",
                json!([
                    {"action": "app_text", "from": "lisi", "content": "积分"},
                    {"action": "join", "chat_id": "wrMISSING", "members": [{"userid": "wmX"}]},
                    {"action": "leave", "chat_id": "wrGROUP", "userids": ["wmHTTP"]}
                ]),
            )
            .await;
        assert_eq!(steps[0]["status"], 200);
        assert_eq!(steps[0]["step"], "0:app_text");
        assert!(steps[1]["error"].as_str().unwrap().contains("wrMISSING"));
        assert_eq!(steps[2]["status"], 200);
        assert!(
            open_app(&f.seen.recv().await.unwrap()).contains("<Content><![CDATA[积分]]></Content>")
        );
        assert!(open_app(&f.seen.recv().await.unwrap()).contains("del_member"));

        let unknown = f
            .sim
            .http
            .post(f.sim.url("/sim/drive/app_text"))
            .json(&json!({"app": "nope", "from": "a", "content": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
    }
}

// ------------------------------------------------ end to end with qunyun ---

/// The driver against qunyun's real callback server: every kind of callback
/// is verified, decrypted, parsed and stored (HTTP 200), and WeCom-style
/// re-deliveries of one event land in the inbox once.
#[tokio::test]
async fn driver_callbacks_are_accepted_by_the_real_callback_server() {
    use qunyun::sim::{
        AddContactRequest, AppTextRequest, BotMentionRequest, JoinRequest, JoinVia, NewMember,
        RawRequest, VerifyRequest,
    };

    let sim = TestSim::default().await;
    let pool = sim.app.pool.clone();
    sim.sim().add_customer_group(group("wrE2E", "zhangsan"));
    sim.sim().set_callbacks(sim.app.callback_targets());
    let driver = sim.sim();

    let verified = driver
        .drive_verify_url(VerifyRequest::default())
        .await
        .unwrap();
    assert_eq!(verified.verified, Some(true), "app URL verification");
    let bot_verified = driver
        .drive_verify_url(VerifyRequest {
            app: None,
            bot: Some(crate::helpers::BOT.into()),
        })
        .await
        .unwrap();
    assert_eq!(bot_verified.verified, Some(true), "bot URL verification");

    let outcomes = [
        driver
            .drive_join(JoinRequest {
                app: None,
                chat_id: "wrE2E".into(),
                members: vec![NewMember::new("wmJOIN")],
                via: JoinVia::QrCode,
                lose_callback: false,
            })
            .await
            .unwrap(),
        driver
            .drive_add_contact(AddContactRequest {
                app: None,
                userid: "zhangsan".into(),
                external_userid: "wmFRIEND".into(),
                state: String::new(),
            })
            .await
            .unwrap(),
        driver
            .drive_app_text(AppTextRequest {
                app: None,
                from: "lisi".into(),
                content: "签到".into(),
            })
            .await
            .unwrap(),
        driver
            .drive_bot_mention(BotMentionRequest {
                bot: None,
                chat_id: Some("wrINTERNAL".into()),
                from: "lisi".into(),
                content: "积分".into(),
                quote: None,
            })
            .await
            .unwrap(),
    ];
    for outcome in &outcomes {
        assert_eq!(
            (outcome.status, outcome.attempts),
            (Some(200), 1),
            "{outcome:?}"
        );
    }
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(qunyun::store::inbox::count(&mut conn).await.unwrap(), 4);

    // The same plaintext delivered twice (a WeCom retry) is stored once.
    let text = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName><CreateTime>1772352000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[again]]></Content><MsgId>7300000000000009999</MsgId><AgentID>1000002</AgentID></xml>"
    );
    for _ in 0..2 {
        let outcome = driver
            .drive_raw(RawRequest {
                app: None,
                bot: None,
                plaintext: text.clone(),
                with_agent: true,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
    }
    assert_eq!(qunyun::store::inbox::count(&mut conn).await.unwrap(), 5);
    drop(conn);

    sim.app.stop().await;
}
