//! Points that expire and moderation review in tiers, end to end: archived
//! messages and bot reports into the inbox, the pipeline, the jobs as the
//! service runs them, the sender, and what the WeCom simulator received.

use std::ops::Deref;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use qunyun::clock::Clock;
use qunyun::ingest::{self, IngestMessage};
use qunyun::jobs::expiry::PointsExpiry;
use qunyun::jobs::review_sla::ReviewSla;
use qunyun::ops::review::ReviewDecision;
use qunyun::ops::rules::Applied;
use qunyun::ops::{self, Actor, OpsError, Role};
use qunyun::rules::ChatRoute;
use qunyun::sim::{Route as SimRoute, SeedAppChat};
use qunyun::store::{chats, moderation, points};

use crate::helpers::{ConfigFile, TestApp, TestConfig};

const CHAT: &str = "wrtiers";

struct Harness {
    app: TestApp,
    next: std::cell::Cell<u64>,
}

impl Deref for Harness {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

async fn harness(start: DateTime<Utc>, rules: &str) -> Harness {
    let config = TestConfig::new()
        .starting_at(start)
        .with_file(ConfigFile {
            app: "main".into(),
            ..ConfigFile::default()
        })
        .with_api_timeout(StdDuration::from_secs(5));
    let app = TestApp::start(config).await;
    app.sim().add_directory_members([
        "u1", "u2", "u3", "r1", "r2", "owner", "boss", "chief", "ops1",
    ]);
    app.sim().add_app_chat(SeedAppChat {
        chatid: CHAT.into(),
        name: "应用群".into(),
        owner: "owner".into(),
        userlist: vec!["owner".into(), "u1".into(), "u2".into(), "u3".into()],
        creator_agent_id: None,
    });
    let applied = ops::rules::apply(
        &app.ops(),
        &Actor::new("mei", Role::Operator),
        app.now(),
        rules,
    )
    .await
    .unwrap();
    assert!(matches!(applied, Applied::Version(_)), "{applied:?}");
    let chat = chats::NewChat {
        chat_id: CHAT.into(),
        name: "应用群".into(),
        route: ChatRoute::AppGroup,
        owner: Some("owner".into()),
        admins: Vec::new(),
        tags: Vec::new(),
        member_version: None,
    };
    let mut conn = app.pool.acquire().await.unwrap();
    chats::upsert_chat(&mut conn, &chat, app.clock.now())
        .await
        .unwrap();
    drop(conn);
    Harness {
        app,
        next: std::cell::Cell::new(1),
    }
}

impl Harness {
    fn n(&self) -> u64 {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }

    /// An archived message in the chat (answers go back through its route).
    async fn post(&self, user: &str, text: &str) {
        let message = IngestMessage {
            message_id: format!("m{}", self.n()),
            chat_id: Some(CHAT.into()),
            sender: user.into(),
            text: text.into(),
            sent_at: self.clock.now().timestamp(),
            msgtype: None,
        };
        let mut conn = self.pool.acquire().await.unwrap();
        ingest::ingest_messages(&mut conn, &[message], self.clock.now())
            .await
            .unwrap();
    }

    /// `举报` to the smart bot quoting `quoted`.
    async fn report(&self, reporter: &str, quoted: &str) {
        let n = self.n();
        self.store_bot_report(&format!("bot{n}"), CHAT, reporter, quoted)
            .await;
    }

    /// Pipeline then sender, one pass each.
    async fn run(&self) {
        let outcome = self.run_pipeline().await;
        assert_eq!((outcome.failed, outcome.parked), (0, 0), "{outcome:?}");
        self.send_once().await;
    }

    fn texts(&self, route: SimRoute) -> Vec<(String, String)> {
        self.sim()
            .messages()
            .into_iter()
            .filter(|d| d.route == route)
            .map(|d| (d.target.clone(), d.text().unwrap_or_default().to_string()))
            .collect()
    }

    fn app_messages_to(&self, user: &str) -> Vec<String> {
        self.texts(SimRoute::AppMessage)
            .into_iter()
            .filter(|(target, _)| target.split('|').any(|t| t == user))
            .map(|(_, text)| text)
            .collect()
    }

    async fn earn(&self, user: &str, delta: i64, day: NaiveDate) {
        let reference = format!("test:{}", self.n());
        let entry = points::NewLedgerEntry {
            user_id: user,
            delta,
            reason: if delta > 0 { "test" } else { "test_spend" },
            reference: &reference,
            chat_id: None,
            day,
            at: self.clock.now(),
        };
        let mut conn = self.pool.acquire().await.unwrap();
        let appended = points::append(&mut conn, &entry).await.unwrap();
        assert!(matches!(appended, points::Appended::New(_)), "{appended:?}");
    }

    async fn balance(&self, user: &str) -> i64 {
        let mut conn = self.pool.acquire().await.unwrap();
        points::balance(&mut conn, user).await.unwrap()
    }

    async fn expiry_rows(&self) -> Vec<(String, i64, String)> {
        sqlx::query_as(
            "select user_id, delta, reference from points_ledger where reason = 'expiry' order by user_id, id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    fn expiry_job(&self) -> PointsExpiry {
        PointsExpiry::new(self.pool.clone(), self.app.ops().rules)
    }

    fn sla_job(&self) -> ReviewSla {
        ReviewSla::new(self.pool.clone(), self.app.ops().rules)
    }

    async fn audit(&self, action: &str) -> Vec<(String, String, String)> {
        sqlx::query_as("select actor, target, detail from admin_audit where action = ? order by id")
            .bind(action)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Local (Asia/Shanghai) wall time as UTC.
fn shanghai(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap() - Duration::hours(8)
}

const EXPIRY_RULES: &str = "[points.expiry]\nafter_months = 1\nnotice_days_before = 7\n";

#[tokio::test]
async fn expiry_removes_exactly_the_old_unspent_points_first_in_first_out() {
    let h = harness(shanghai(2026, 2, 20, 12), EXPIRY_RULES).await;
    // Points earned in January expire at the end of February, February's at
    // the end of March (after_months = 1).
    // u1: Jan 100, Feb 50, then spends 120: the spend eats January's 100
    //     first, so nothing of January is left; 30 of February remain.
    h.earn("u1", 100, day(2026, 1, 10)).await;
    h.earn("u1", 50, day(2026, 2, 5)).await;
    h.earn("u1", -120, day(2026, 2, 20)).await;
    // u2: Jan 40 and 10, spends 20: 30 of January remain.
    h.earn("u2", 40, day(2026, 1, 3)).await;
    h.earn("u2", 10, day(2026, 1, 25)).await;
    h.earn("u2", -20, day(2026, 2, 1)).await;
    // u3: 5 on the last day of February.
    h.earn("u3", 5, day(2026, 2, 28)).await;

    // Still February (the last valid day of January's points): nothing expires.
    h.set_clock(shanghai(2026, 2, 28, 23));
    assert_eq!(h.expiry_job().run_at(h.now()).await.unwrap(), 0);

    // 1 March, 02:00 local (still 28 February in UTC).
    h.set_clock(shanghai(2026, 3, 1, 2));
    let cli = Actor::cli(Some("mei"));
    let preview = ops::points::expire(&h.ops(), &cli, h.now(), true)
        .await
        .unwrap();
    let preview: Vec<(&str, &str, i64)> = preview
        .iter()
        .map(|p| (p.user_id.as_str(), p.period.as_str(), p.points))
        .collect();
    assert_eq!(preview, vec![("u2", "2026-02", 30)]);
    assert!(h.expiry_rows().await.is_empty(), "a dry run writes nothing");

    assert_eq!(h.expiry_job().run_at(h.now()).await.unwrap(), 1);
    // Again, as after a restart: the reference is unique, nothing more.
    assert_eq!(h.expiry_job().run_at(h.now()).await.unwrap(), 0);
    assert_eq!(
        h.expiry_rows().await,
        vec![("u2".to_string(), -30, "expiry:u2:2026-02".to_string())]
    );
    assert_eq!(
        (
            h.balance("u1").await,
            h.balance("u2").await,
            h.balance("u3").await
        ),
        (30, 0, 5)
    );

    // 1 April: February's points go (u1's 30, u3's 5), through the CLI's path.
    h.set_clock(shanghai(2026, 4, 1, 9));
    let done = ops::points::expire(&h.ops(), &cli, h.now(), false)
        .await
        .unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(
        h.expiry_rows().await,
        vec![
            ("u1".to_string(), -30, "expiry:u1:2026-03".to_string()),
            ("u2".to_string(), -30, "expiry:u2:2026-02".to_string()),
            ("u3".to_string(), -5, "expiry:u3:2026-03".to_string()),
        ]
    );
    let audit = h.audit("points.expire").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2, "2 entries, 35 points");

    // The ledger invariant: every balance is the sum of its entries, none negative.
    let negative: i64 = sqlx::query_scalar(
        "select count(*) from (select user_id from points_ledger group by user_id having sum(delta) < 0)",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(negative, 0);
    let mut conn = h.pool.acquire().await.unwrap();
    assert_eq!(points::total(&mut conn).await.unwrap(), 0);
}

#[tokio::test]
async fn a_member_hears_about_expiring_points_once_in_the_next_reply() {
    let h = harness(shanghai(2026, 2, 20, 12), EXPIRY_RULES).await;
    h.earn("u1", 20, day(2026, 1, 5)).await;
    h.earn("u1", 15, day(2026, 2, 10)).await;

    // More than seven days before 28 February: no notice yet.
    h.post("u1", "积分").await;
    h.run().await;
    // Inside the window.
    h.set_clock(shanghai(2026, 2, 23, 12));
    h.post("u1", "积分").await;
    h.run().await;
    h.post("u1", "积分").await;
    h.run().await;
    h.post("u1", "签到").await;
    h.run().await;

    let replies: Vec<String> = h
        .texts(SimRoute::Appchat)
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(replies.len(), 4, "{replies:?}");
    let notices: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, text)| text.contains("到期"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(notices, vec![1], "{replies:?}");
    assert!(
        replies[1].contains("20 积分将于 2026-02-28 到期"),
        "{}",
        replies[1]
    );
}

const REVIEW_RULES: &str = r#"
[moderation]
enabled = true
managers = ["boss"]
fuzzy = "review"
report_threshold = 2
terms = """
[ads:medium]
加微信
网赚
"""
[moderation.review]
owners = ["chief"]
operator_sla_hours = 2
owner_sla_hours = 24
[alerts]
admins = ["ops1"]
"#;

async fn open_items(h: &Harness) -> Vec<ops::review::ReviewView> {
    ops::review::list(&h.ops(), h.now(), false).await.unwrap()
}

#[tokio::test]
async fn an_escalated_report_reaches_an_owner_who_decides_it() {
    let h = harness(
        Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap(),
        REVIEW_RULES,
    )
    .await;
    let spam = "私聊我有内部渠道低价好货";
    h.post("u2", spam).await;
    h.run().await;
    h.report("r1", spam).await;
    h.report("r2", spam).await;
    h.run().await;

    let items = open_items(&h).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0].row;
    assert_eq!(
        (
            item.kind.as_str(),
            item.tier.as_str(),
            item.user_id.as_str()
        ),
        ("report", "operator", "u2")
    );
    let id = item.id;

    // An operator escalates it through the API, with a reason.
    let owner_ops = h.ops();
    let cli = Actor::cli(Some("root"));
    ops::accounts::create_user(
        &owner_ops,
        &cli,
        h.now(),
        "mei",
        "a long enough password",
        Role::Operator,
    )
    .await
    .unwrap();
    let token = ops::accounts::create_token(&owner_ops, &cli, h.now(), "mei", "crm")
        .await
        .unwrap();
    let reply = h
        .http
        .post(h.url(&format!("/admin/api/v1/moderation/review/{id}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "decision": "escalate", "note": "涉嫌诈骗，请负责人定夺" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    h.send_once().await;

    let to_chief = h.app_messages_to("chief");
    assert_eq!(to_chief.len(), 1, "{to_chief:?}");
    assert!(
        to_chief[0].contains("【升级复核】") && to_chief[0].contains("u2"),
        "{}",
        to_chief[0]
    );
    let items = open_items(&h).await;
    assert_eq!(items[0].row.tier, "owner");

    // In the owner tier an operator can no longer decide it.
    let operator = Actor::new("mei", Role::Operator);
    let refused = ops::review::decide(
        &h.ops(),
        &operator,
        h.now(),
        id,
        ReviewDecision::Confirm,
        "x",
    )
    .await;
    assert!(matches!(refused, Err(OpsError::Forbidden)), "{refused:?}");

    let owner = Actor::new("li", Role::Owner);
    let decided = ops::review::decide(
        &h.ops(),
        &owner,
        h.now(),
        id,
        ReviewDecision::Confirm,
        "确认广告引流",
    )
    .await
    .unwrap();
    assert_eq!(decided.status, "confirmed");
    let mut conn = h.pool.acquire().await.unwrap();
    assert_eq!(
        moderation::strikes_of(&mut conn, "u2").await.unwrap().len(),
        1
    );
    assert!(ops::moderation::reports(&h.ops()).await.unwrap().is_empty());
    assert!(ops::moderation::open_tasks(&h.ops())
        .await
        .unwrap()
        .is_empty());
    let escalated = h.audit("review.escalate").await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(
        (escalated[0].0.as_str(), escalated[0].1.as_str()),
        ("api:crm", "u2")
    );
    let confirmed = h.audit("review.confirm").await;
    assert_eq!(confirmed.len(), 1);
    assert_eq!(
        (confirmed[0].0.as_str(), confirmed[0].1.as_str()),
        ("li", "u2")
    );
}

#[tokio::test]
async fn an_sla_breach_raises_exactly_one_alert_per_tier() {
    let h = harness(
        Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap(),
        REVIEW_RULES,
    )
    .await;
    h.post("u1", "想赚钱的加我 Wang Zhuan 项目").await;
    h.run().await;
    let items = open_items(&h).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (items[0].row.kind.as_str(), items[0].row.tier.as_str()),
        ("hit", "operator")
    );
    let id = items[0].row.id;

    let sla = h.sla_job();
    h.advance_clock(Duration::minutes(119));
    assert_eq!(sla.run_at(h.now()).await.unwrap(), 0);
    h.advance_clock(Duration::minutes(1));
    assert_eq!(sla.run_at(h.now()).await.unwrap(), 1);
    // Later ticks find the breach already alerted.
    for _ in 0..3 {
        h.advance_clock(Duration::minutes(10));
        assert_eq!(sla.run_at(h.now()).await.unwrap(), 0);
    }
    h.send_once().await;
    let alerts: Vec<String> = h
        .app_messages_to("ops1")
        .into_iter()
        .filter(|text| text.contains("复核超时"))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains(&format!("#{id}")), "{}", alerts[0]);
    assert!(open_items(&h).await[0].overdue);

    // Escalated, the owner tier has its own clock and alerts once more.
    ops::review::decide(
        &h.ops(),
        &Actor::new("mei", Role::Operator),
        h.now(),
        id,
        ReviewDecision::Escalate,
        "拿不准",
    )
    .await
    .unwrap();
    h.advance_clock(Duration::hours(23));
    assert_eq!(sla.run_at(h.now()).await.unwrap(), 0);
    h.advance_clock(Duration::hours(1));
    assert_eq!(sla.run_at(h.now()).await.unwrap(), 1);
    assert_eq!(sla.run_at(h.now()).await.unwrap(), 0);
    h.send_once().await;
    let alerts = h
        .app_messages_to("ops1")
        .into_iter()
        .filter(|text| text.contains("复核超时"))
        .count();
    assert_eq!(alerts, 2);
}

#[tokio::test]
async fn an_appeal_lands_in_the_owner_tier_and_its_decision_is_audited() {
    let h = harness(
        Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap(),
        REVIEW_RULES,
    )
    .await;
    h.post("u2", "加微信领红包").await;
    h.run().await;
    let mut conn = h.pool.acquire().await.unwrap();
    assert_eq!(
        moderation::strikes_of(&mut conn, "u2").await.unwrap().len(),
        1
    );
    drop(conn);

    // Somebody without a punishment has nothing to appeal.
    h.post("u3", "申诉 我什么也没做").await;
    h.run().await;
    assert!(open_items(&h).await.is_empty());

    h.post("u2", "申诉 只是转发朋友的话，不是广告").await;
    h.run().await;
    // A second appeal while the first is open is refused.
    h.post("u2", "申诉 再申诉一次").await;
    h.run().await;

    let items = open_items(&h).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0].row;
    assert_eq!(
        (
            item.kind.as_str(),
            item.tier.as_str(),
            item.user_id.as_str()
        ),
        ("appeal", "owner", "u2")
    );
    assert!(item.excerpt.contains("不是广告"), "{}", item.excerpt);
    let replies: Vec<String> = h
        .texts(SimRoute::Appchat)
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(
        replies
            .iter()
            .filter(|t| t.contains("已收到你的申诉"))
            .count(),
        1,
        "{replies:?}"
    );
    assert_eq!(
        replies
            .iter()
            .filter(|t| t.contains("没有可申诉的处罚"))
            .count(),
        2,
        "{replies:?}"
    );
    let to_chief = h.app_messages_to("chief");
    assert_eq!(to_chief.len(), 1, "{to_chief:?}");
    assert!(to_chief[0].contains("【申诉待复核】"), "{}", to_chief[0]);

    // Confirm is for hits and reports; an appeal is upheld or overturned.
    let owner = Actor::new("li", Role::Owner);
    let wrong = ops::review::decide(
        &h.ops(),
        &owner,
        h.now(),
        item.id,
        ReviewDecision::Confirm,
        "x",
    )
    .await;
    assert!(
        matches!(
            wrong,
            Err(OpsError::Invalid {
                field: "decision",
                ..
            })
        ),
        "{wrong:?}"
    );
    // The owner overturns it on the console's moderation page.
    let console = h.console();
    let (session, _) = console.session_for("li", Role::Owner).await;
    let page = console.get("/admin/moderation", Some(&session)).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(
        page.body.contains(&format!("id=\"review-{}\"", item.id))
            && page.body.contains("value=\"overturn\""),
        "{}",
        page.body
    );
    let reply = console
        .post_as(
            &format!("/admin/moderation/review/{}", item.id),
            &session,
            &[("decision", "overturn"), ("note", "转发内容，不算广告")],
        )
        .await;
    assert_eq!(reply.status.as_u16(), 303, "{}", reply.body);
    h.send_once().await;

    let mut conn = h.pool.acquire().await.unwrap();
    let strikes = moderation::strikes_of(&mut conn, "u2").await.unwrap();
    assert_eq!(strikes.len(), 1);
    assert_eq!(strikes[0].revoked_by.as_deref(), Some("li"));
    let audit = h.audit("review.overturn").await;
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].0.as_str(), audit[0].1.as_str()), ("li", "u2"));
    assert!(audit[0].2.contains("appeal, owner tier"), "{}", audit[0].2);
    let answer = h.app_messages_to("u2");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(answer[0].contains("申诉已通过"), "{}", answer[0]);
}

/// `qunyun points expire --dry-run` through the real binary lists what is
/// due and writes nothing; without `--dry-run` it writes and is audited.
#[tokio::test]
async fn the_cli_previews_then_writes_off_expired_points() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::default().write(dir.path());
    let pool = qunyun::store::open(&dir.path().join("qunyun.db"))
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let now = Utc::now();
    qunyun::store::rule_sets::save(&mut conn, EXPIRY_RULES, now)
        .await
        .unwrap();
    // Long ago: January 2020's points expired at the end of February 2020.
    for (reference, delta, day) in [
        ("a", 40, day(2020, 1, 9)),
        ("b", -15, day(2020, 1, 20)),
        ("c", 8, day(2020, 2, 2)),
    ] {
        let entry = points::NewLedgerEntry {
            user_id: "u1",
            delta,
            reason: "test",
            reference,
            chat_id: None,
            day,
            at: now,
        };
        points::append(&mut conn, &entry).await.unwrap();
    }
    drop(conn);
    let run = |args: &'static [&'static str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qunyun"));
        command
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("USER", "mei")
            .env_remove("LOGNAME");
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
            command.env_remove(name);
        }
        tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
    };
    let preview = run(&["points", "expire", "--dry-run"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&preview.stdout).to_string();
    assert!(preview.status.success(), "{stdout} {:?}", preview.stderr);
    assert!(
        stdout.contains("u1: would expire 25 points of 2020-02")
            && stdout.contains("u1: would expire 8 points of 2020-03"),
        "{stdout}"
    );
    let count = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from points_ledger where reason = 'expiry'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 0);

    let real = run(&["points", "expire"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&real.stdout).to_string();
    assert!(real.status.success(), "{stdout}");
    assert!(stdout.contains("2 entries, 33 points expired"), "{stdout}");
    assert_eq!(count().await, 2);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(points::balance(&mut conn, "u1").await.unwrap(), 0);
    let actor: String =
        sqlx::query_scalar("select actor from admin_audit where action = 'points.expire'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(actor, "cli:mei");
}
