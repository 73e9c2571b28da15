//! Members as people: purchase data (CSV and signed batches), RFM segments,
//! member tags and segments as push targets, through the real server, the
//! real CLI binary and the simulator.

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use qunyun::admin::Role;
use qunyun::config::Secret;
use qunyun::store::members;

use crate::helpers::{spawn_app_with, ConfigFile, TestApp};

const INGEST_SECRET: &str = "ingest-secret-for-tests";

async fn app_with_ingest() -> TestApp {
    spawn_app_with(|config| config.ingest.secret = Some(Secret::new(INGEST_SECRET))).await
}

async fn add_people(app: &TestApp, ids: &[&str]) {
    let mut conn = app.conn().await;
    for id in ids {
        members::ensure_person(&mut conn, id, Some(id), app.now())
            .await
            .unwrap();
    }
}

/// Runs `qunyun ARGS --config FILE` against the app's database.
async fn cli(config: &Path, args: &[&str]) -> Output {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A shop system's signed batch, signed here independently of qunyun.
async fn post_orders(app: &TestApp, body: &str) -> reqwest::Response {
    let timestamp = app.now().timestamp().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(INGEST_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    app.http
        .post(app.url("/ingest/orders"))
        .header("x-qunyun-timestamp", timestamp)
        .header(
            "x-qunyun-signature",
            hex::encode(mac.finalize().into_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn stored_orders(app: &TestApp) -> Vec<(String, String, i64)> {
    sqlx::query_as("select order_id, user_id, amount from orders order by order_id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test]
async fn an_order_csv_imported_twice_counts_once() {
    let app = app_with_ingest().await;
    add_people(&app, &["zhangsan", "wmCustomer1", "wmCustomer2"]).await;
    let config = ConfigFile::default().write(app.dir());
    let union = cli(&config, &["orders", "unionid", "wmCustomer2", "oUnion2"]).await;
    assert!(union.status.success(), "{}", text(&union.stderr));

    // By UserID, external userid and unionid; o4 refunds part of o1.
    let csv = write(
        app.dir(),
        "orders.csv",
        "member,order_id,amount,paid_at\n\
         zhangsan,o1,99.90,2026-07-01 10:00\n\
         wmCustomer1,o2,12,2026-07-02\n\
         oUnion2,o3,5.5,1782864000\n\
         zhangsan,o4,-9.90,2026-07-03T08:00:00+08:00\n",
    );
    let csv = csv.to_str().unwrap();
    let first = cli(&config, &["orders", "import", csv]).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("4 orders imported, 0 already stored"),
        "{}",
        text(&first.stdout)
    );
    let second = cli(&config, &["orders", "import", csv]).await;
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).contains("0 orders imported, 4 already stored"),
        "{}",
        text(&second.stdout)
    );
    let expected = vec![
        ("o1".to_owned(), "zhangsan".to_owned(), 9990),
        ("o2".to_owned(), "wmCustomer1".to_owned(), 1200),
        ("o3".to_owned(), "wmCustomer2".to_owned(), 550),
        ("o4".to_owned(), "zhangsan".to_owned(), -990),
    ];
    assert_eq!(stored_orders(&app).await, expected);

    // A bad file names each line and column and imports nothing.
    let bad = write(
        app.dir(),
        "bad.csv",
        "member,order_id,amount,paid_at\n\
         zhangsan,o9,ten,2026-07-01\n\
         nobody,o10,1,2026-07-01\n",
    );
    let refused = cli(&config, &["orders", "import", bad.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    let errors = text(&refused.stderr);
    assert!(errors.contains("line 2, column amount"), "{errors}");
    let unknown = write(
        app.dir(),
        "unknown.csv",
        "member,order_id,amount,paid_at\nzhangsan,o9,1,2026-07-01\nnobody,o10,1,2026-07-01\n",
    );
    let refused = cli(&config, &["orders", "import", unknown.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("line 3, column member: nobody"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(stored_orders(&app).await, expected, "nothing imported");

    // The same order ids in a signed batch are duplicates; an unknown member is refused.
    let batch = serde_json::json!({"orders": [
        {"member": "zhangsan", "order_id": "o1", "amount": 9990, "paid_at": 1782871200},
        {"member": "nobody", "order_id": "o11", "amount": 100, "paid_at": 1782871200},
        {"member": "wmCustomer1", "order_id": "o12", "amount": 300, "paid_at": 1782871200}
    ]})
    .to_string();
    let answer: serde_json::Value = post_orders(&app, &batch).await.json().await.unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["order_id"], "o11", "{answer}");
    assert_eq!(stored_orders(&app).await.len(), 5);
    let unsigned = app
        .http
        .post(app.url("/ingest/orders"))
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // The member page lists the orders, refunds as negative amounts; an
    // operator tags the member there.
    let console = app.console();
    let page = console
        .page_as(Role::Viewer, "/admin/members/zhangsan")
        .await;
    assert!(page.contains("o4") && page.contains("-9.90"), "{page}");
    let (session, _) = console.session_for("op", Role::Operator).await;
    let tagged = console
        .post_as(
            "/admin/members/zhangsan/tags",
            &session,
            &[("tags", "复购客户")],
        )
        .await;
    assert_eq!(tagged.status, 303, "{}", tagged.body);
    let page = console
        .page_as(Role::Viewer, "/admin/members/zhangsan")
        .await;
    assert!(page.contains("复购客户"), "{page}");
    app.stop().await;
}

/// Eight buyers, one per RFM segment. With 8 buyers, rank i (0-based,
/// ascending) scores 1 + 5i/8: ranks 0,1 → 1; 2,3 → 2; 4 → 3; 5,6 → 4; 7 → 5.
/// (user, days since last order, order amounts in yuan)
const HISTORY: [(&str, i64, &[i64]); 8] = [
    ("a", 1, &[100, 100, 100, 100, 100, 100, 100, 100]),
    ("b", 30, &[100, 100, 100, 100, 100, 100, 100]),
    ("c", 2, &[150, 150, 150, 150]),
    ("d", 40, &[200, 200, 150, -50]),
    ("e", 3, &[10, 10, 10, 10, 10, 10]),
    ("f", 4, &[20, 20]),
    ("g", 50, &[10, 10, 10, 10, 10]),
    ("h", 60, &[10]),
];

/// Worked by hand from HISTORY (see docs/rfm.md for the rule):
/// recency days 1,30,2,40,3,4,50,60 → R 5,2,4,2,4,3,1,1;
/// orders 8,7,4,3,6,2,5,1 (the refund is no order) → F 5,4,2,2,4,1,3,1;
/// net yuan 800,700,600,500,60,40,50,10 → M 5,4,4,3,2,1,2,1.
const EXPECTED: [(&str, i64, i64, i64, &str); 8] = [
    ("a", 5, 5, 5, "重要价值"),
    ("b", 2, 4, 4, "重要唤回"),
    ("c", 4, 2, 4, "重要深耕"),
    ("d", 2, 2, 3, "重要挽留"),
    ("e", 4, 4, 2, "潜力"),
    ("f", 3, 1, 1, "新客"),
    ("g", 1, 3, 2, "一般维持"),
    ("h", 1, 1, 1, "流失"),
];

#[tokio::test]
async fn rfm_segments_follow_from_a_fixed_order_history() {
    let app = app_with_ingest().await;
    let users: Vec<&str> = HISTORY.iter().map(|(user, _, _)| *user).collect();
    add_people(&app, &users).await;
    let now: DateTime<Utc> = app.now();
    let mut orders = Vec::new();
    for (user, days, amounts) in HISTORY {
        for (i, yuan) in amounts.iter().enumerate() {
            // The latest order `days` ago, the others a day apart before it.
            let paid_at = now - Duration::days(days + i as i64);
            orders.push(serde_json::json!({
                "member": user,
                "order_id": format!("{user}-{i}"),
                "amount": yuan * 100,
                "paid_at": paid_at.timestamp(),
            }));
        }
    }
    let batch = serde_json::json!({ "orders": orders }).to_string();
    let response = post_orders(&app, &batch).await;
    assert_eq!(response.status(), 200);
    app.analytics().run_once(now).await.unwrap();

    let console = app.console();
    for (user, r, f, m, segment) in EXPECTED {
        let profile = console
            .api_as(Role::Viewer, &format!("/admin/api/v1/members/{user}"))
            .await;
        let rfm = &profile["rfm"];
        assert_eq!(
            (
                rfm["r"].as_i64().unwrap(),
                rfm["f"].as_i64().unwrap(),
                rfm["m"].as_i64().unwrap(),
                rfm["segment"].as_str().unwrap()
            ),
            (r, f, m, segment),
            "{user}: {rfm}"
        );
    }
    // The CSV export carries the same table.
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let export = console.get("/admin/export/rfm.csv", Some(&session)).await;
    assert_eq!(export.status, 200, "{}", export.body);
    assert!(
        export.body.contains("d,40,3,50000,2,2,3,重要挽留"),
        "{}",
        export.body
    );
    // A second pass at the same instant gives the same table.
    app.analytics().run_once(now).await.unwrap();
    let again = console.get("/admin/export/rfm.csv", Some(&session)).await;
    assert_eq!(again.body.lines().count(), 9);
    app.stop().await;
}

/// Operator API calls with a token, answering JSON (status asserted).
async fn api(app: &TestApp, token: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = app
        .console()
        .api(reqwest::Method::POST, path, Some(token), &body.to_string())
        .await;
    assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// Saves a segment through the API; its id and the preview the console shows.
async fn save_segment(
    app: &TestApp,
    token: &str,
    name: &str,
    filter: serde_json::Value,
) -> (i64, serde_json::Value) {
    let saved = api(
        app,
        token,
        "/admin/api/v1/segments",
        serde_json::json!({"name": name, "filter": filter}),
    )
    .await;
    let id = saved["id"].as_i64().unwrap();
    let detail = app
        .console()
        .api_as(Role::Viewer, &format!("/admin/api/v1/segments/{id}"))
        .await;
    (id, detail["preview"].clone())
}

#[tokio::test]
async fn a_segment_push_previews_and_sends_to_exactly_its_members() {
    let app = app_with_ingest().await;
    add_people(&app, &["lisi", "wangwu", "zhaoliu", "wmGuest"]).await;
    // App messages go out from the community's app.
    let applied = qunyun::ops::rules::apply(
        &app.ops(),
        &qunyun::ops::Actor::new("mei", Role::Owner),
        app.now(),
        &format!("[community]\napp = \"{}\"\n", crate::helpers::APP),
    )
    .await
    .unwrap();
    assert!(
        matches!(applied, qunyun::ops::rules::Applied::Version(_)),
        "{applied:?}"
    );
    let console = app.console();
    let (_, token) = console.session_for("mei", Role::Operator).await;
    for (user, tag) in [("lisi", "vip"), ("wangwu", "vip"), ("wmGuest", "vip")] {
        let path = format!("/admin/api/v1/members/{user}/tags");
        let added = api(&app, &token, &path, serde_json::json!({"tags": [tag]})).await;
        assert_eq!(added["added"], serde_json::json!([tag]));
    }
    // A CSV import by the CLI names a bad line and imports nothing, then works.
    let config = ConfigFile::default().write(app.dir());
    let bad = write(
        app.dir(),
        "tags.csv",
        "member,tag\nzhaoliu,other\nnobody,vip\n",
    );
    let refused = cli(&config, &["tags", "import", bad.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("line 3, column member"),
        "{}",
        text(&refused.stderr)
    );
    let good = write(app.dir(), "tags.csv", "member,tag\nzhaoliu,other\n");
    let imported = cli(&config, &["tags", "import", good.to_str().unwrap()]).await;
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    // Tags show on the member page and in the profile.
    let profile = console
        .api_as(Role::Viewer, "/admin/api/v1/members/lisi")
        .await;
    assert_eq!(profile["tags"][0]["tag"], "vip");
    assert_eq!(profile["tags"][0]["source"], "manager");

    // A filter naming a stage that does not exist is refused, naming the field.
    let refused = console
        .api(
            reqwest::Method::POST,
            "/admin/api/v1/segments",
            Some(&token),
            r#"{"name":"x","filter":{"stages":["sleepy"]}}"#,
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("stages"), "{}", refused.body);

    let (id, preview) =
        save_segment(&app, &token, "VIP", serde_json::json!({"tags": ["vip"]})).await;
    assert_eq!(
        (
            preview["count"].as_i64(),
            preview["internal"].as_i64(),
            preview["external"].as_i64()
        ),
        (Some(3), Some(2), Some(1)),
        "{preview}"
    );
    let sample: Vec<&str> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(sample, ["lisi", "wangwu", "wmGuest"]);
    // The console's pages show the segment and its count.
    let page = console
        .page_as(Role::Viewer, &format!("/admin/segments/{id}"))
        .await;
    assert!(
        page.contains("tags=vip") && page.contains(r#"id="segment-count">3<"#),
        "{page}"
    );
    let list = console.page_as(Role::Viewer, "/admin/segments").await;
    assert!(list.contains("VIP"), "{list}");
    // Nothing is queued by previewing (the only row is wmGuest's tag sync,
    // skipped: no owner known).
    let queued = app.outbox_rows(None).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].route, OutboxRoute::CustomerTag);

    let pushed = api(
        &app,
        &token,
        &format!("/admin/api/v1/segments/{id}/push"),
        serde_json::json!({"text": "会员日：今晚八点开抢"}),
    )
    .await;
    assert_eq!(pushed["internal"], serde_json::json!(["lisi", "wangwu"]));
    assert_eq!(pushed["external"], serde_json::json!(["wmGuest"]));
    let deliveries = app.drain_outbox().await;
    let mut reached: Vec<(&str, Option<&str>)> = deliveries
        .iter()
        .map(|d| (d.target.as_str(), d.text()))
        .collect();
    reached.sort();
    assert_eq!(
        reached,
        [
            ("lisi", Some("会员日：今晚八点开抢")),
            ("wangwu", Some("会员日：今晚八点开抢")),
        ]
    );
    // The external contact (no known owner) is not silently dropped: a
    // skipped row says why (its tag sync is skipped for the same reason).
    let skipped: Vec<OutboxRow> = app
        .outbox_rows(Some(OutboxStatus::Skipped))
        .await
        .into_iter()
        .filter(|row| row.route == OutboxRoute::CustomerMass)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].payload_json.contains("wmGuest"));
    assert!(skipped[0]
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("no known owner"));
    // The segment can be read by other features.
    let mut conn = app.conn().await;
    let members = qunyun::ops::segments::segment_members(&mut conn, id, app.now())
        .await
        .unwrap();
    assert_eq!(members.len(), 3);
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn rule_tags_follow_their_condition_and_leave_manager_tags_alone() {
    let app = app_with_ingest().await;
    add_people(&app, &["lisi", "wangwu"]).await;
    let ops = app.ops();
    let owner = qunyun::ops::Actor::new("mei", Role::Owner);
    let refused = qunyun::ops::rules::apply(
        &ops,
        &owner,
        app.now(),
        "[[member_tags]]\ntag = \"坚持之星\"\nmin_streak = 0\n",
    )
    .await
    .unwrap();
    assert!(
        format!("{refused:?}").contains("member_tags[0].min_streak"),
        "a bad rule names its field: {refused:?}"
    );
    let applied = qunyun::ops::rules::apply(
        &ops,
        &owner,
        app.now(),
        "[[member_tags]]\ntag = \"坚持之星\"\nmin_streak = 7\n",
    )
    .await
    .unwrap();
    assert!(
        matches!(applied, qunyun::ops::rules::Applied::Version(_)),
        "{applied:?}"
    );
    // lisi checked in the last 7 days; wangwu 6 of them; a manager tagged
    // wangwu 坚持之星 by hand.
    let today = ops.in_force().await.unwrap().rules.community_day(app.now());
    {
        let mut conn = app.conn().await;
        for back in 0..7 {
            let day = today - Duration::days(back);
            qunyun::store::checkins::record_checkin(&mut conn, "lisi", day, app.now(), false, None)
                .await
                .unwrap();
            if back < 6 {
                qunyun::store::checkins::record_checkin(
                    &mut conn,
                    "wangwu",
                    day,
                    app.now(),
                    false,
                    None,
                )
                .await
                .unwrap();
            }
        }
    }
    let manager = qunyun::ops::Actor::new("mei", Role::Operator);
    qunyun::ops::member_tags::add(&ops, &manager, app.now(), "wangwu", &["坚持之星".into()])
        .await
        .unwrap();
    let tags = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "select user_id, tag, source from member_tags order by user_id",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    app.analytics().run_once(app.now()).await.unwrap();
    assert_eq!(
        tags().await,
        [
            (
                "lisi".to_owned(),
                "坚持之星".to_owned(),
                "rule:坚持之星".to_owned()
            ),
            (
                "wangwu".to_owned(),
                "坚持之星".to_owned(),
                "manager".to_owned()
            ),
        ]
    );
    // Two days without a check-in: the streak is over, the rule's tag goes,
    // the manager's stays.
    app.advance_clock(Duration::days(2));
    app.analytics().run_once(app.now()).await.unwrap();
    assert_eq!(
        tags().await,
        [(
            "wangwu".to_owned(),
            "坚持之星".to_owned(),
            "manager".to_owned()
        )]
    );
    app.stop().await;
}

/// `staff` adds `customer` in WeCom: the add_external_contact callback
/// through the real endpoint and pipeline (qunyun learns the owner).
async fn customer_added(app: &TestApp, staff: &str, customer: &str) {
    let code = app.sim().issue_welcome_code(staff, customer);
    let xml = format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_contact]]></Event>\
         <ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[{staff}]]></UserID>\
         <ExternalUserID><![CDATA[{customer}]]></ExternalUserID><State><![CDATA[shop]]></State>\
         <WelcomeCode><![CDATA[{code}]]></WelcomeCode></xml>",
        corp = crate::helpers::CORP_ID,
        now = app.now().timestamp(),
    );
    let reply = app.post_event(crate::helpers::Callback::App(xml)).await;
    assert_eq!(reply.status(), 200);
    app.run_pipeline().await;
}

async fn tag_member(app: &TestApp, token: &str, user: &str, tags: &[&str]) -> serde_json::Value {
    let path = format!("/admin/api/v1/members/{user}/tags");
    api(app, token, &path, serde_json::json!({ "tags": tags })).await
}

fn calls_to(app: &TestApp, path: &str) -> Vec<serde_json::Value> {
    app.sim()
        .calls()
        .into_iter()
        .filter(|call| call.path == path)
        .map(|call| call.body)
        .collect()
}

async fn rows_on(app: &TestApp, route: qunyun::store::outbox::Route) -> Vec<OutboxRow> {
    app.outbox_rows(None)
        .await
        .into_iter()
        .filter(|row| row.route == route)
        .collect()
}

/// (target, status) of every row on `route`, by target.
async fn states_on(app: &TestApp, route: OutboxRoute) -> Vec<(String, OutboxStatus)> {
    let mut states: Vec<(String, OutboxStatus)> = rows_on(app, route)
        .await
        .into_iter()
        .map(|r| (r.target, r.status))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    states
}

use qunyun::store::outbox::{OutboxRow, OutboxStatus, Route as OutboxRoute};

#[tokio::test]
async fn an_external_contacts_member_tags_follow_to_wecom_customer_tags() {
    let app = app_with_ingest().await;
    add_people(&app, &["lisi", "wmTagged", "wmStranger"]).await;
    customer_added(&app, "lisi", "wmTagged").await;
    app.drain_outbox().await; // the welcome
    let console = app.console();
    let (_, token) = console.session_for("mei", Role::Operator).await;
    let tag =
        |user: &'static str, tags: &'static [&'static str]| tag_member(&app, &token, user, tags);
    tag("wmTagged", &["vip"]).await;
    tag("lisi", &["vip"]).await; // internal: nothing to sync
    tag("wmStranger", &["vip"]).await; // no known owner
    app.drain_outbox().await;

    // The tag was created in the configured group and marked by the owner.
    assert_eq!(app.sim().contact_tags("wmTagged"), ["vip"]);
    let groups = app.sim().tag_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].group_name, "qunyun");
    let names: Vec<&str> = groups[0].tag.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["vip"]);
    let marks = calls_to(&app, "externalcontact/mark_tag");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["userid"], "lisi");
    assert_eq!(
        marks[0]["add_tag"],
        serde_json::json!([groups[0].tag[0].id])
    );
    let rows = rows_on(&app, OutboxRoute::CustomerTag).await;
    assert_eq!(
        states_on(&app, OutboxRoute::CustomerTag).await,
        [
            ("wmStranger".to_owned(), OutboxStatus::Skipped),
            ("wmTagged".to_owned(), OutboxStatus::Sent)
        ]
    );
    let stranger = rows.iter().find(|r| r.target == "wmStranger").unwrap();
    assert!(stranger
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("no known owner"));

    // Draining again, or the same change again, sends nothing twice.
    app.drain_outbox().await;
    tag("wmTagged", &["vip"]).await; // already tagged: no change
    app.drain_outbox().await;
    assert_eq!(calls_to(&app, "externalcontact/mark_tag").len(), 1);

    // Removing it removes it in WeCom; adding it again reuses the cached id.
    let removed = api(
        &app,
        &token,
        "/admin/api/v1/members/wmTagged/tags/remove",
        serde_json::json!({"tags": ["vip"]}),
    )
    .await;
    assert_eq!(removed["removed"], serde_json::json!(["vip"]));
    app.drain_outbox().await;
    assert!(app.sim().contact_tags("wmTagged").is_empty());
    tag("wmTagged", &["vip"]).await;
    app.drain_outbox().await;
    assert_eq!(app.sim().contact_tags("wmTagged"), ["vip"]);
    assert_eq!(calls_to(&app, "externalcontact/mark_tag").len(), 3);
    assert_eq!(calls_to(&app, "externalcontact/add_corp_tag").len(), 1);

    // WeCom refusing is visible: a failed row with WeCom's errcode.
    app.sim().inject(
        qunyun::sim::FaultRule::new(qunyun::sim::FaultKind::Errcode { errcode: 48002 })
            .on_path("externalcontact/mark_tag"),
    );
    tag("wmTagged", &["gold"]).await;
    app.drain_outbox().await;
    let failed = app.outbox_rows(Some(OutboxStatus::Failed)).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].route, OutboxRoute::CustomerTag);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("48002"),
        "{:?}",
        failed[0].last_error
    );
    assert_eq!(app.sim().contact_tags("wmTagged"), ["vip"]);
    app.stop().await;
}

#[tokio::test]
async fn a_segment_push_sends_each_owner_one_mass_message_for_their_contacts() {
    let app = app_with_ingest().await;
    qunyun::ops::rules::apply(
        &app.ops(),
        &qunyun::ops::Actor::new("mei", Role::Owner),
        app.now(),
        &format!("[community]\napp = \"{}\"\n", crate::helpers::APP),
    )
    .await
    .unwrap();
    let people = ["lisi", "wangwu", "wmA", "wmB", "wmC", "wmD"];
    add_people(&app, &people).await;
    customer_added(&app, "lisi", "wmA").await;
    customer_added(&app, "lisi", "wmB").await;
    customer_added(&app, "wangwu", "wmC").await;
    app.drain_outbox().await; // the welcomes
    let console = app.console();
    let (_, token) = console.session_for("mei", Role::Operator).await;
    for user in people {
        tag_member(&app, &token, user, &["会员"]).await;
    }
    app.drain_outbox().await; // the tag syncs
    let (id, preview) =
        save_segment(&app, &token, "会员", serde_json::json!({"tags": ["会员"]})).await;
    let counts: Vec<i64> = [
        "count",
        "internal",
        "external",
        "external_by_owner",
        "owners",
        "external_no_owner",
    ]
    .iter()
    .map(|k| preview[k].as_i64().unwrap())
    .collect();
    assert_eq!(counts, [6, 2, 4, 3, 2, 1], "{preview}");

    let pushed = api(
        &app,
        &token,
        &format!("/admin/api/v1/segments/{id}/push"),
        serde_json::json!({"text": "会员日"}),
    )
    .await;
    assert_eq!(
        pushed["external_plan"]["by_owner"],
        serde_json::json!({"lisi": ["wmA", "wmB"], "wangwu": ["wmC"]})
    );
    assert_eq!(
        pushed["external_plan"]["no_owner"],
        serde_json::json!(["wmD"])
    );
    let delivered = app.drain_outbox().await;
    let mut reached: Vec<&str> = delivered.iter().map(|d| d.target.as_str()).collect();
    reached.sort();
    assert_eq!(reached, ["lisi", "wangwu"], "only app messages so far");
    let mut templates: Vec<(String, serde_json::Value, serde_json::Value)> =
        calls_to(&app, "externalcontact/add_msg_template")
            .into_iter()
            .map(|b| {
                (
                    b["sender"].as_str().unwrap().to_owned(),
                    b["chat_type"].clone(),
                    b["external_userid"].clone(),
                )
            })
            .collect();
    templates.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        templates,
        [
            (
                "lisi".to_owned(),
                "single".into(),
                serde_json::json!(["wmA", "wmB"])
            ),
            (
                "wangwu".to_owned(),
                "single".into(),
                serde_json::json!(["wmC"])
            ),
        ]
    );
    // Waiting for each owner, visibly; the contact without one is skipped.
    let mass = rows_on(&app, OutboxRoute::CustomerMass).await;
    assert_eq!(
        states_on(&app, OutboxRoute::CustomerMass).await,
        [
            ("lisi".to_owned(), OutboxStatus::AwaitingConfirmation),
            ("wangwu".to_owned(), OutboxStatus::AwaitingConfirmation),
            // The row not sent names the contact it could not reach.
            ("wmD".to_owned(), OutboxStatus::Skipped),
        ]
    );
    let skipped = mass.iter().find(|r| r.target == "wmD").unwrap();
    assert!(skipped.payload_json.contains("wmD"));
    assert!(skipped
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("no known owner"));

    // The owners confirm: each of their contacts gets it, once.
    for msgid in app.sim().pending_mass() {
        assert!(app.sim().confirm_mass(&msgid));
    }
    let confirmed = app.sim().messages();
    let mut customers: Vec<&str> = confirmed
        .iter()
        .filter(|d| d.route == qunyun::sim::Route::CustomerMass)
        .map(|d| d.target.as_str())
        .collect();
    customers.sort();
    assert_eq!(customers, ["wmA", "wmB", "wmC"]);
    app.advance_clock(Duration::hours(1));
    app.drain_outbox().await;
    let mass = rows_on(&app, OutboxRoute::CustomerMass).await;
    assert_eq!(
        mass.iter()
            .filter(|r| r.status == OutboxStatus::Sent)
            .count(),
        2
    );
    app.stop().await;
}
