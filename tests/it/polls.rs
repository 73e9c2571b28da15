//! Polls through `qunyun serve` and the simulator: a vote card pushed by the
//! long-connection smart bot in an internal group, clicked by members (the
//! card updated to "已投票" on the connection), keyword ballots read from the
//! archive in a customer group, and the result announced once per chat at
//! close, with the voters paid.

use std::time::Duration;

use qunyun::app::WorkerHooks;
use qunyun::clock::Clock;
use qunyun::ops::{polls as ops_polls, Actor, Ops, Role};
use qunyun::rules::polls::PollSpec;
use qunyun::rules::ChatRoute;
use qunyun::sim::{ArchiveTextRequest, CallbackTargets, CardClickRequest, Delivery, Route};
use qunyun::store::outbox::{self, OutboxRow, OutboxStatus};
use qunyun::store::{chats, points, polls};
use serde_json::{json, Value};

use crate::helpers::{wait_until, wait_until_async, Service, TestConfig};

const WS_BOT: &str = "pollbot";
const BOT_ID: &str = "AIBOT-POLL";
const INTERNAL: &str = "CHAT-STAFF";
const CUSTOMERS: &str = "wrCUSTOMERS";
const INGEST_SECRET: &str = "poll-ingest-secret";

fn config() -> TestConfig {
    TestConfig::new()
        .with_ingest_secret(INGEST_SECRET)
        .with_websocket_bot(WS_BOT, BOT_ID)
}

/// The service, its bot subscribed, a member's first words to the bot in the
/// internal group (the bot may push only there), and a customer group with
/// its owner in the registry; the archive puller posts to qunyun.
async fn start() -> Service {
    let service = Service::start(config(), WorkerHooks::default()).await;
    assert!(
        wait_until(Duration::from_secs(20), || service
            .sim()
            .long_connection_live(BOT_ID))
        .await,
        "the bot subscribed"
    );
    service
        .sim()
        .set_callbacks(CallbackTargets::new(&service.base).with_ingest_secret(INGEST_SECRET));
    let mut conn = service.pool.acquire().await.unwrap();
    let now = service.clock.as_ref().unwrap().now();
    chats::upsert_chat(
        &mut conn,
        &chats::NewChat {
            chat_id: CUSTOMERS.into(),
            name: "顾客群".into(),
            route: ChatRoute::CustomerGroup,
            owner: Some("owner1".into()),
            admins: Vec::new(),
            tags: vec!["vip".into()],
            member_version: None,
        },
        now,
    )
    .await
    .unwrap();
    drop(conn);
    mention(&service, "staff0", "帮助");
    assert!(
        wait_until(Duration::from_secs(20), || !bot_deliveries(
            &service, "markdown"
        )
        .is_empty())
        .await,
        "the bot answered the first mention"
    );
    service
}

fn mention(service: &Service, user: &str, text: &str) {
    let msgid = format!("M-{user}-{}", rand_suffix());
    service
        .sim()
        .deliver_long_connection_message(
            BOT_ID,
            json!({
                "msgid": msgid, "aibotid": BOT_ID, "chatid": INTERNAL, "chattype": "group",
                "from": {"userid": user}, "msgtype": "text",
                "text": {"content": format!("@运营助手 {text}")}
            }),
        )
        .unwrap();
}

fn rand_suffix() -> u64 {
    rand::random::<u64>()
}

/// Until the poll job has pushed the vote card over the connection.
async fn wait_for_card(service: &Service) {
    assert!(
        wait_until(Duration::from_secs(20), || !bot_deliveries(
            service,
            "template_card"
        )
        .is_empty())
        .await,
        "the vote card was pushed"
    );
}

fn bot_deliveries(service: &Service, msgtype: &str) -> Vec<Delivery> {
    service
        .sim()
        .messages()
        .into_iter()
        .filter(|d| d.route == Route::BotResponse && d.sender == BOT_ID && d.msgtype == msgtype)
        .collect()
}

async fn create_poll(service: &Service, allow_change: bool) -> i64 {
    let now = service.clock.as_ref().unwrap().now();
    let ops = Ops::over(service.pool.clone());
    ops_polls::create(
        &ops,
        &Actor::new("mei", Role::Operator),
        now,
        PollSpec {
            question: "下次活动喝什么？".into(),
            options: vec!["奶茶".into(), "红茶".into(), "咖啡".into()],
            open_at: now,
            close_at: now + chrono::Duration::hours(1),
            chats: vec![INTERNAL.into()],
            tags: vec!["vip".into()],
            allow_change,
            points_per_vote: 5,
            points_cap: 0,
            multiple: false,
            segment_id: None,
        },
    )
    .await
    .unwrap()
}

async fn click(service: &Service, user: &str, task_id: &str, option: &str) {
    service
        .sim()
        .drive_card_click(CardClickRequest {
            chat_id: INTERNAL.into(),
            from: user.into(),
            task_id: task_id.into(),
            option_ids: vec![option.into()],
        })
        .await
        .unwrap();
}

async fn archive_text(service: &Service, user: &str, text: &str) {
    let outcome = service
        .sim()
        .drive_archive_text(ArchiveTextRequest {
            chat_id: CUSTOMERS.into(),
            from: user.into(),
            content: text.into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome.status, Some(200), "{outcome:?}");
}

async fn outbox_rows(service: &Service) -> Vec<OutboxRow> {
    let mut conn = service.pool.acquire().await.unwrap();
    outbox::list(&mut conn, None).await.unwrap()
}

async fn ballots(service: &Service, poll: i64) -> Vec<(String, Vec<u32>)> {
    let mut conn = service.pool.acquire().await.unwrap();
    polls::votes(&mut conn, poll)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.user_id, v.options))
        .collect()
}

async fn inbox_done(service: &Service) -> bool {
    service
        .inbox()
        .await
        .iter()
        .all(|row| row.status.as_str() == "done")
}

fn update_for(service: &Service, nth: usize) -> Value {
    bot_deliveries(service, "update_template_card")[nth]
        .content
        .clone()
}

#[tokio::test]
async fn a_poll_by_card_clicks_and_keywords_counts_each_member_once_and_announces_once() {
    let mut service = start().await;
    let poll = create_poll(&service, false).await;

    // Opened by the poll job: the card goes to the internal group over the connection.
    wait_for_card(&service).await;
    let cards = bot_deliveries(&service, "template_card");
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!(cards[0].target, INTERNAL);
    assert_eq!(cards[0].content["card_type"], "vote_interaction");
    let task_id = cards[0].content["task_id"].as_str().unwrap().to_owned();

    // Card clicks: each answered with the clicker's card marked 已投票.
    click(&service, "staff1", &task_id, "2").await;
    click(&service, "staff2", &task_id, "2").await;
    click(&service, "staff3", &task_id, "1").await;
    // A second click without allow_change changes nothing.
    click(&service, "staff1", &task_id, "1").await;
    assert!(
        wait_until(Duration::from_secs(20), || bot_deliveries(
            &service,
            "update_template_card"
        )
        .len()
            == 4)
        .await,
        "every click was answered with a card update: {:?}",
        bot_deliveries(&service, "update_template_card")
    );
    for nth in 0..4 {
        let card = update_for(&service, nth);
        assert_eq!(card["task_id"], task_id.as_str());
        assert_eq!(card["submit_button"]["text"], "已投票", "{card}");
    }
    let second = update_for(&service, 3);
    assert_eq!(
        second["checkbox"]["option_list"][1]["is_checked"], true,
        "still option 2: {second}"
    );
    assert_eq!(
        second["checkbox"]["option_list"][0]["is_checked"], false,
        "{second}"
    );

    // Keyword ballots in the customer group, read from the archive.
    archive_text(&service, "wmCust1", "投 2").await;
    archive_text(&service, "wmCust2", "投 3").await;
    archive_text(&service, "wmCust1", "投 1").await;
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            inbox_done(&service).await && ballots(&service, poll).await.len() == 5
        })
        .await,
        "ballots {:?}",
        ballots(&service, poll).await
    );
    let mut cast = ballots(&service, poll).await;
    cast.sort();
    assert_eq!(
        cast,
        vec![
            ("staff1".to_owned(), vec![2]),
            ("staff2".to_owned(), vec![2]),
            ("staff3".to_owned(), vec![1]),
            ("wmCust1".to_owned(), vec![2]),
            ("wmCust2".to_owned(), vec![3]),
        ]
    );
    // The daily rollup counts the ballots where they were cast.
    let now = service.clock.as_ref().unwrap().now();
    qunyun::jobs::analytics::Analytics::new(service.pool.clone(), Default::default())
        .run_once(now)
        .await
        .unwrap();
    let counted: Vec<(String, i64)> = sqlx::query_as(
        "select chat_id, sum(votes) from analytics_daily group by chat_id
         having sum(votes) > 0 order by chat_id",
    )
    .fetch_all(&service.pool)
    .await
    .unwrap();
    assert_eq!(
        counted,
        [
            (String::new(), 5),
            (INTERNAL.to_owned(), 3),
            (CUSTOMERS.to_owned(), 2)
        ]
    );
    // Customer groups carry no automatic answers: the refusal is filed as skipped.
    let rows = outbox_rows(&service).await;
    let refused = rows
        .iter()
        .filter(|r| r.route.as_str() == "customer_group_mass" && r.status == OutboxStatus::Skipped)
        .count();
    assert_eq!(
        refused, 3,
        "three keyword answers skipped with a reason: {rows:?}"
    );

    // Close: the clock passes the close time; the job announces once per chat.
    service
        .clock
        .as_ref()
        .unwrap()
        .advance(chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    assert!(
        wait_until(Duration::from_secs(20), || bot_deliveries(
            &service, "markdown"
        )
        .iter()
        .any(|d| d.text().unwrap_or_default().contains("投票结果")))
        .await,
        "the result was pushed to the internal group"
    );
    let result = bot_deliveries(&service, "markdown")
        .into_iter()
        .find(|d| d.text().unwrap_or_default().contains("投票结果"))
        .unwrap();
    let text = result.text().unwrap().to_owned();
    assert_eq!(result.target, INTERNAL);
    assert!(text.contains("胜出：2. 红茶"), "{text}");
    assert!(text.contains("2. 红茶：3 票（60%）"), "{text}");
    assert!(text.contains("1. 奶茶：1 票"), "{text}");
    assert!(text.contains("3. 咖啡：1 票"), "{text}");
    assert!(text.contains("共 5 人参与"), "{text}");
    let rows = outbox_rows(&service).await;
    let to_customers: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.idempotency_key == format!("poll:{poll}:result:{CUSTOMERS}"))
        .collect();
    assert_eq!(to_customers.len(), 1, "{rows:?}");
    assert_eq!(to_customers[0].route.as_str(), "customer_group_mass");
    assert_ne!(
        to_customers[0].status,
        OutboxStatus::Skipped,
        "the owner confirms it"
    );

    // Voters are paid once, the ledger naming the poll.
    let mut conn = service.pool.acquire().await.unwrap();
    for voter in ["staff1", "staff2", "staff3", "wmCust1", "wmCust2"] {
        assert_eq!(
            points::balance(&mut conn, voter).await.unwrap(),
            5,
            "{voter}"
        );
    }
    drop(conn);

    // After close: a keyword ballot is refused with a reply, a click changes nothing.
    mention(&service, "staff4", "投 1");
    click(&service, "staff5", &task_id, "3").await;
    assert!(
        wait_until(Duration::from_secs(20), || {
            bot_deliveries(&service, "markdown")
                .iter()
                .any(|d| d.text().unwrap_or_default().contains("已截止"))
                && bot_deliveries(&service, "update_template_card").len() == 5
        })
        .await,
        "the late ballots were refused: {:?}",
        service.sim().messages()
    );
    assert_eq!(
        update_for(&service, 4)["submit_button"]["text"],
        "投票已截止"
    );
    assert!(
        wait_until_async(Duration::from_secs(20), || inbox_done(&service)).await,
        "inbox settled"
    );
    assert_eq!(
        ballots(&service, poll).await.len(),
        5,
        "no late ballot counted"
    );
    let results = bot_deliveries(&service, "markdown")
        .into_iter()
        .filter(|d| d.text().unwrap_or_default().contains("投票结果"))
        .count();
    assert_eq!(results, 1, "the result went out once");
    let result_rows = outbox_rows(&service)
        .await
        .into_iter()
        .filter(|r| {
            r.idempotency_key
                .starts_with(&format!("poll:{poll}:result:"))
        })
        .count();
    assert_eq!(result_rows, 2, "one result row per chat");
    service.shutdown().await;
}

#[tokio::test]
async fn a_poll_that_allows_changes_takes_the_second_click() {
    let mut service = start().await;
    let poll = create_poll(&service, true).await;
    wait_for_card(&service).await;
    let task_id = bot_deliveries(&service, "template_card")[0].content["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    click(&service, "staff1", &task_id, "2").await;
    click(&service, "staff1", &task_id, "3").await;
    assert!(
        wait_until(Duration::from_secs(20), || bot_deliveries(
            &service,
            "update_template_card"
        )
        .len()
            == 2)
        .await,
        "both clicks answered"
    );
    assert_eq!(
        ballots(&service, poll).await,
        vec![("staff1".to_owned(), vec![3])]
    );
    let card = update_for(&service, 1);
    assert_eq!(
        card["checkbox"]["option_list"][2]["is_checked"], true,
        "{card}"
    );
    service.shutdown().await;
}

/// Callback mode: the click's answer is the encrypted passive
/// `update_template_card` for the clicking member; a second click of a poll
/// without allow_change stores nothing new and shows the first ballot.
#[tokio::test]
async fn a_card_click_by_callback_is_answered_with_the_passive_card_update() {
    use crate::helpers::{Callback, TestApp};
    use qunyun::jobs::polls::PollJob;

    let app = TestApp::start(TestConfig::new()).await;
    let now = app.now();
    let poll = ops_polls::create(
        &app.ops(),
        &Actor::new("mei", Role::Operator),
        now,
        PollSpec {
            question: "午饭吃什么？".into(),
            options: vec!["面".into(), "饭".into()],
            open_at: now,
            close_at: now + chrono::Duration::hours(1),
            chats: vec!["CHAT-IT".into()],
            ..PollSpec::default()
        },
    )
    .await
    .unwrap();
    let job = PollJob::new(
        app.pool.clone(),
        qunyun::active_rules::ActiveRules::new(),
        "ops",
        Vec::new(),
    );
    assert_eq!(job.run_at(now).await.unwrap().opened, 1);
    let task_id = qunyun::rules::polls::task_id(poll, 0);
    let click = |msgid: &str, option: &str| {
        json!({
            "msgid": msgid, "aibotid": "AIBOT-IT", "chatid": "CHAT-IT", "chattype": "group",
            "from": {"userid": "lisi"}, "msgtype": "event", "create_time": now.timestamp(),
            "event": {"eventtype": "template_card_event", "template_card_event": {
                "card_type": "vote_interaction", "event_key": "poll_submit", "task_id": task_id,
                "selected_items": {"selected_item": [
                    {"question_key": "poll", "option_ids": {"option_id": [option]}}
                ]}
            }}
        })
        .to_string()
    };
    let mut answers = Vec::new();
    for (msgid, option) in [("CLICK-1", "2"), ("CLICK-2", "1")] {
        let response = app.post_event(Callback::Bot(click(msgid, option))).await;
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let plain = app
            .bot_crypt
            .decrypt(body["encrypt"].as_str().unwrap())
            .unwrap();
        answers.push(serde_json::from_slice::<Value>(&plain).unwrap());
    }
    for answer in &answers {
        assert_eq!(answer["response_type"], "update_template_card");
        assert_eq!(answer["userids"], json!(["lisi"]));
        assert_eq!(answer["template_card"]["task_id"], task_id.as_str());
        assert_eq!(answer["template_card"]["submit_button"]["text"], "已投票");
        assert_eq!(
            answer["template_card"]["checkbox"]["option_list"][1]["is_checked"], true,
            "the first ballot stays: {answer}"
        );
    }
    let mut conn = app.pool.acquire().await.unwrap();
    let votes = polls::votes(&mut conn, poll).await.unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(
        (votes[0].user_id.as_str(), votes[0].options.clone()),
        ("lisi", vec![2])
    );
    assert_eq!(votes[0].via, "card");
}

/// The console form, the JSON API and the audit log: a poll made through each
/// adapter is the same `ops` action; mistakes name their field; a viewer is refused.
#[tokio::test]
async fn polls_are_created_through_the_console_and_the_api_with_field_errors_and_roles() {
    use crate::helpers::TestApp;
    use qunyun::admin::Role as AdminRole;
    use reqwest::{Method, StatusCode};

    let app = TestApp::start(TestConfig::new()).await;
    let console = app.console();
    let (session, token) = console.session_for("mei", AdminRole::Operator).await;
    let form = [
        ("question", "周末去哪儿？"),
        ("options", "公园\r\n海边"),
        ("chats", "wrA, wrB"),
        ("open_in_minutes", "0"),
        ("hours", "2"),
        ("points", "3"),
    ];
    let created = console.post_as("/admin/polls", &session, &form).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let page = created.location().unwrap().to_owned();
    let detail = console.get(&page, Some(&session)).await;
    assert!(detail.body.contains("周末去哪儿？"), "{}", detail.body);
    assert_eq!(detail.body.matches("class=\"poll-option\"").count(), 2);

    let one_option = [
        ("question", "q"),
        ("options", "只有一个"),
        ("chats", "wrA"),
        ("hours", "2"),
    ];
    let refused = console.post_as("/admin/polls", &session, &one_option).await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(
        refused.body.contains("options: a poll has 2 to 20 options"),
        "{}",
        refused.body
    );

    let body = json!({
        "question": "API 投票", "options": ["A", "B", "C"], "tags": ["vip"],
        "open_at": app.now().to_rfc3339(),
        "close_at": (app.now() + chrono::Duration::hours(3)).to_rfc3339(),
    });
    let reply = console
        .api(
            Method::POST,
            "/admin/api/v1/polls",
            Some(&token),
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let id = serde_json::from_str::<Value>(&reply.body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let shown = console
        .api_as(AdminRole::Viewer, &format!("/admin/api/v1/polls/{id}"))
        .await;
    assert_eq!(shown["counts"], json!([0, 0, 0]));
    let mut bad = body.clone();
    bad["close_at"] = bad["open_at"].clone();
    let reply = console
        .api(
            Method::POST,
            "/admin/api/v1/polls",
            Some(&token),
            &bad.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body.contains("close_at"), "{}", reply.body);

    let (_, viewer) = console.session_for("viewer", AdminRole::Viewer).await;
    let reply = console
        .api(
            Method::POST,
            "/admin/api/v1/polls",
            Some(&viewer),
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    let mut conn = app.pool.acquire().await.unwrap();
    let audited: Vec<(String, String)> = sqlx::query_as(
        "select actor, action from admin_audit where action like 'poll.%' order by id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        audited,
        vec![
            ("mei".to_owned(), "poll.create".to_owned()),
            ("api:test".to_owned(), "poll.create".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_poll_limited_to_a_segment_counts_only_the_ballots_of_its_members() {
    use crate::lottery::{community, core_members, manager};
    use qunyun::active_rules::ActiveRules;
    use qunyun::admin::Role as AdminRole;
    use qunyun::jobs::polls::PollJob;

    let app = crate::helpers::spawn_app().await;
    community(&app).await;
    let segment = core_members(&app).await;
    let ops = app.ops();
    let spec = |segment_id: i64| PollSpec {
        question: "下次活动喝什么？".into(),
        options: vec!["奶茶".into(), "咖啡".into()],
        open_at: app.now(),
        close_at: app.now() + chrono::Duration::hours(1),
        chats: vec!["CHAT-IT".into()],
        segment_id: Some(segment_id),
        ..PollSpec::default()
    };
    // An unknown segment: refused naming the field, no poll created.
    let refused = ops_polls::create(&ops, &manager(), app.now(), spec(segment + 100))
        .await
        .unwrap_err();
    assert!(refused.to_string().starts_with("segment_id:"), "{refused}");
    let (_, token) = app.console().session_for("mei", AdminRole::Operator).await;
    let mut body = serde_json::to_value(spec(segment + 100)).unwrap();
    body["segment_id"] = json!(segment + 100);
    let reply = app
        .console()
        .api(
            reqwest::Method::POST,
            "/admin/api/v1/polls",
            Some(&token),
            &body.to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::BAD_REQUEST,
        "{}",
        reply.body
    );
    assert!(reply.body.contains("segment_id"), "{}", reply.body);
    assert!(ops_polls::list(&ops, &manager()).await.unwrap().is_empty());

    let poll = ops_polls::create(&ops, &manager(), app.now(), spec(segment))
        .await
        .unwrap();
    PollJob::new(
        app.pool.clone(),
        ActiveRules::new(),
        crate::helpers::APP,
        Vec::new(),
    )
    .run_at(app.now())
    .await
    .unwrap();
    app.drain_outbox().await;
    // lisi is not in the segment: told why, the ballot not counted.
    let outside = app.mention_bot("V1", "lisi", "投 1").await;
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert!(
        outside[0].contains("本次活动只限「核心会员」参加，本次投票未计入"),
        "{outside:?}"
    );
    let inside = app.mention_bot("V2", "zhangsan", "投 2").await;
    assert!(inside[0].contains("投票成功：2. 咖啡"), "{inside:?}");
    let results = ops_polls::show(&ops, &manager(), poll).await.unwrap();
    assert_eq!((results.counts, results.voters), (vec![0, 1], 1));
    let voters: Vec<String> = results.votes.into_iter().map(|v| v.user_id).collect();
    assert_eq!(voters, ["zhangsan"]);
    // The console's poll page names the segment.
    let page = app
        .console()
        .page_as(AdminRole::Viewer, &format!("/admin/polls/{poll}"))
        .await;
    assert!(page.contains("id=\"poll-segment\""), "{page}");
    assert!(page.contains("核心会员"), "{page}");
}
