//! End to end in a real headless Chromium, driven through chromedriver's
//! WebDriver protocol (a few JSON POSTs, spoken here over reqwest): sign in,
//! see the dashboard's charts, make a rule mistake and see it inline, fix and
//! apply it, fulfil a redemption, sign out and be refused; sign in again,
//! revoke a strike (refused without a reason), preview and pause a schedule;
//! build a segment and preview a push to it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs them). Without
//! them this test FAILS on purpose: a browser suite that silently passes when
//! there is no browser proves nothing. Screenshots of every step are saved
//! under `target/admin-browser/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qunyun::admin::Role;
use qunyun::rules::event::JoinScene;
use qunyun::rules::ChatRoute;
use qunyun::store;
use serde_json::{json, Value};
use sqlx::SqlitePool;

// The integration tests' harness; this test stays its own binary because it
// needs a browser, but it drives the same served app.
#[path = "it"]
mod support {
    pub mod helpers;
}
use support::helpers::{TestApp, TestConfig};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver as a child process, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

/// Starts chromedriver on a port it picks itself and reads the port from its
/// banner (no fixed ports, no polling).
fn start_driver() -> Driver {
    let program = find_program(&["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver not found on PATH: install Debian's `chromium` and `chromium-driver` \
             packages (apt-get install -y chromium chromium-driver); scripts/test does this"
        )
    });
    let mut child = Command::new(program)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("chromedriver did not report its port");
    Driver { child, port }
}

/// One WebDriver session.
struct Browser {
    http: reqwest::Client,
    base: String,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(driver: &Driver) -> Browser {
        let chromium = find_program(&["chromium", "chromium-browser"])
            .expect("chromium not found on PATH: apt-get install -y chromium chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // Finding an element waits up to 10 s for it: after a click
                // that navigates, the next page's element is the signal.
                "timeouts": { "implicit": 10000 },
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--window-size=1280,1400",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let root = format!("http://127.0.0.1:{}", driver.port);
        let reply: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-browser");
        std::fs::create_dir_all(&screenshots).unwrap();
        Browser {
            http,
            base: format!("{root}/session/{session}"),
            screenshots,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", reply["value"]["message"]);
        }
        reply["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e[ELEMENT_KEY]
                    .as_str()
                    .unwrap_or_else(|| panic!("element reply {e}"))
                    .to_owned()
            })
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        assert!(!all.is_empty(), "no element {css} on {}", self.url().await);
        all[0].clone()
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Replaces a textarea's content (typing a whole rule set key by key is slow).
    async fn set_value(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "arguments[0].value = arguments[1];",
                "args": [{ ELEMENT_KEY: id }, text],
            })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.screenshots.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

fn rules(base_points: &str) -> String {
    format!(
        "[community]\napp = \"{}\"\nname = \"好物分享社群\"\ntimezone = \"Asia/Shanghai\"\n\n[checkin]\nkeywords = [\"签到\", \"打卡\"]\nbase_points = {base_points}\n{SCHEDULE}",
        support::helpers::APP
    )
}

/// A daily push, after the check-in section so rule-error line numbers stay put.
const SCHEDULE: &str = "\n[[schedules]]\nname = \"morning\"\ncron = \"0 0 9 * * *\"\n\n[schedules.targets]\nall_chats = true\n\n[schedules.content]\nkind = \"text\"\nbody = \"早上好，{{ chat.name }}！\"\n";

async fn seed(pool: &SqlitePool) -> i64 {
    let now = Utc::now();
    let mut conn = pool.acquire().await.unwrap();
    store::chats::upsert_chat(
        &mut conn,
        &store::chats::NewChat {
            chat_id: "wrOgAA1".into(),
            name: "好物分享1群".into(),
            route: ChatRoute::CustomerGroup,
            owner: Some("xiaomei".into()),
            admins: vec![],
            tags: vec!["vip".into()],
            member_version: None,
        },
        now,
    )
    .await
    .unwrap();
    for (i, user) in ["wmAlice", "wmBob", "wmCarol"].iter().enumerate() {
        let joined = now - chrono::Duration::days(3 * i as i64 + 1);
        store::members::record_join(&mut conn, "wrOgAA1", user, joined, JoinScene::QrCode)
            .await
            .unwrap();
    }
    store::members::record_leave(&mut conn, "wrOgAA1", "wmCarol", now)
        .await
        .unwrap();
    store::points::append(
        &mut conn,
        &store::points::NewLedgerEntry {
            user_id: "wmAlice",
            delta: 120,
            reason: "checkin",
            reference: "seed:1",
            chat_id: Some("wrOgAA1"),
            day: now.date_naive(),
            at: now,
        },
    )
    .await
    .unwrap();
    store::rule_sets::save(&mut conn, &rules("5"), now)
        .await
        .unwrap();
    // A strike for wmBob (an ad), for the moderation queue.
    store::moderation::record_decision(
        &mut conn,
        &qunyun::rules::moderate::ModerationRecord {
            event_id: "ev-ad".into(),
            at: now,
            chat_id: Some("wrOgAA1".into()),
            user_id: "wmBob".into(),
            rule: "term".into(),
            category: "ads".into(),
            severity: qunyun::rules::moderation::Severity::High,
            matched: "加微信".into(),
            excerpt: "加微信领红包".into(),
            action_taken: "warn,strike".into(),
            dry_run: false,
            strike: true,
            task: None,
        },
    )
    .await
    .unwrap();
    seed_history(&mut conn, now).await;
    store::redemptions::create(&mut conn, "wmAlice", "杯子", 50, "redeem:1", now)
        .await
        .unwrap()
        .unwrap()
}

/// Three weeks of a second group (joins, a few leaves, daily check-ins), so the
/// dashboard's 30-day charts have something to draw.
async fn seed_history(conn: &mut sqlx::SqliteConnection, now: chrono::DateTime<Utc>) {
    store::chats::upsert_chat(
        conn,
        &store::chats::NewChat {
            chat_id: "wrOgAA2".into(),
            name: "好物分享2群".into(),
            route: ChatRoute::CustomerGroup,
            owner: Some("xiaomei".into()),
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        now,
    )
    .await
    .unwrap();
    let shanghai = chrono_tz::Asia::Shanghai;
    for i in 0..10_i64 {
        let user = format!("wmFan{i:02}");
        let days = 20 - 2 * i;
        let joined = now - chrono::Duration::days(days) - chrono::Duration::hours(1);
        store::members::record_join(conn, "wrOgAA2", &user, joined, JoinScene::QrCode)
            .await
            .unwrap();
        if i % 4 == 1 {
            let left = joined + chrono::Duration::days(3);
            store::members::record_leave(conn, "wrOgAA2", &user, left)
                .await
                .unwrap();
            continue;
        }
        // A check-in every day since joining, with a gap now and then.
        for d in (0..=days).filter(|d| (d + i) % 5 != 4) {
            let at = now - chrono::Duration::days(d);
            let day = at.with_timezone(&shanghai).date_naive();
            store::checkins::record_checkin(conn, &user, day, at, false, Some("wrOgAA2"))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_works_the_console_in_a_real_browser() {
    let driver = start_driver();

    // The console shows "today": the manual clock starts at the real now.
    let now = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
    let app = TestApp::start(TestConfig::new().starting_at(now)).await;
    let pool = app.pool.clone();
    let redemption = seed(&pool).await;
    let owner = ("mei", "correct horse battery", Role::Owner);
    let ops = qunyun::ops::Ops::over(pool.clone());
    let cli = qunyun::ops::Actor::cli(Some("test"));
    qunyun::ops::accounts::create_user(&ops, &cli, Utc::now(), owner.0, owner.1, owner.2)
        .await
        .unwrap();
    // One analytics pass turns the history into the dashboard's daily rollups.
    app.analytics().run_once(app.now()).await.unwrap();
    let site = app.url("");

    let browser = Browser::open(&driver).await;

    // 1. Not signed in: the console sends us to the login page.
    browser.goto(&format!("{site}/admin")).await;
    assert!(browser.url().await.ends_with("/admin/login"));
    browser.screenshot("01-login").await;

    // 2. Sign in; the dashboard shows its numbers and charts.
    browser.type_into("#username", "mei").await;
    browser
        .type_into("#password", "correct horse battery")
        .await;
    browser.click("#login-submit").await;
    browser.find("#total-members").await;
    assert!(
        browser.url().await.ends_with("/admin"),
        "{}",
        browser.url().await
    );
    // wmAlice and wmBob, plus the seven of wrOgAA2 who stayed.
    assert_eq!(browser.text("#total-members").await, "9");
    let checkins_today: u32 = browser.text("#today-checkins").await.parse().unwrap();
    assert!(checkins_today > 0, "today's check-ins are counted");
    assert_eq!(browser.find_all("#charts svg").await.len(), 4);
    assert_eq!(browser.find_all("#charts polyline").await.len(), 6);
    assert!(browser.source().await.contains("入群与退群"));
    browser.screenshot("02-dashboard").await;

    // 3. A rule mistake is shown inline at its line, and nothing is saved.
    browser.goto(&format!("{site}/admin/rules")).await;
    browser.set_value("#rules-body", &rules("\"five\"")).await;
    browser.click("#rules-apply").await;
    let inline = browser.text(".field-error[data-line=\"8\"]").await;
    assert!(inline.contains("checkin.base_points"), "{inline}");
    browser.screenshot("03-rule-error").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(
            store::rule_sets::active_version(&mut conn).await.unwrap(),
            Some(1)
        );
    }

    // 4. Fix it: check shows the diff; apply saves version 2.
    browser.set_value("#rules-body", &rules("8")).await;
    browser.click("#rules-check").await;
    assert!(!browser.text("#rules-valid").await.is_empty());
    assert!(browser
        .text("#rules-diff")
        .await
        .contains("+ base_points = 8"));
    browser.screenshot("04-rule-diff").await;
    browser.click("#rules-apply").await;
    browser.find("#rules-applied").await;
    assert!(browser.url().await.contains("/admin/rules/history"));
    assert!(browser.text("#rules-applied").await.contains("v2"));
    browser.screenshot("05-rule-applied").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        let active = store::rule_sets::active(&mut conn).await.unwrap().unwrap();
        assert_eq!(active.version, 2);
        assert!(active.body.contains("base_points = 8"));
    }

    // 5. Fulfil the pending redemption.
    browser.goto(&format!("{site}/admin/queues")).await;
    browser.screenshot("06-queue").await;
    browser.click(&format!("#fulfil-{redemption}")).await;
    assert_eq!(
        browser.find_all("#no-redemptions").await.len(),
        1,
        "{}",
        browser.source().await
    );
    browser.screenshot("07-fulfilled").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        let shipped = store::redemptions::list(&mut conn, Some("fulfilled"))
            .await
            .unwrap();
        assert_eq!(shipped.len(), 1);
    }

    // 6. The English switch.
    browser.click("#lang-switch").await;
    browser.find("html[lang=\"en\"]").await;
    assert!(browser.source().await.contains("Redemptions to ship"));
    browser.screenshot("08-english").await;

    // 7. Sign out, then be refused.
    browser.click("#logout").await;
    browser.find("#login-form").await;
    assert!(browser.url().await.ends_with("/admin/login"));
    browser.goto(&format!("{site}/admin/queues")).await;
    assert!(browser.url().await.ends_with("/admin/login"));
    assert!(!browser.source().await.contains("wmAlice"));
    browser.screenshot("09-refused").await;

    // 8. Sign in again; the moderation queue shows wmBob's strike.
    browser.goto(&format!("{site}/admin/login")).await;
    browser.type_into("#username", "mei").await;
    browser
        .type_into("#password", "correct horse battery")
        .await;
    browser.click("#login-submit").await;
    browser.find("#nav-moderation").await;
    let strike: i64 =
        sqlx::query_scalar("select id from moderation_strikes where user_id = 'wmBob'")
            .fetch_one(&pool)
            .await
            .unwrap();
    browser.click("#nav-moderation").await;
    browser.find(&format!("#strike-{strike}")).await;
    assert!(browser.text("#strikes").await.contains("wmBob"));
    browser.screenshot("10-moderation").await;

    // 9. Revoking without a reason: the error shows at the field, nothing changes.
    browser.click(&format!("#revoke-{strike}")).await;
    let error = browser.text(&format!("#strike-{strike}-error")).await;
    assert!(error.contains("reason is required"), "{error}");
    assert_eq!(
        browser
            .find_all(&format!("#revoke-reason-{strike}[aria-invalid=\"true\"]"))
            .await
            .len(),
        1
    );
    browser.screenshot("11-revoke-needs-reason").await;
    let active = |pool: SqlitePool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from moderation_strikes where revoked_at is null",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(active(pool.clone()).await, 1);

    // 10. With a reason the strike is revoked and leaves the queue.
    browser
        .type_into(&format!("#revoke-reason-{strike}"), "误判：活动通知")
        .await;
    browser.click(&format!("#revoke-{strike}")).await;
    browser.find("#no-strikes").await;
    browser.screenshot("12-strike-revoked").await;
    assert_eq!(active(pool.clone()).await, 0);

    // 11. Schedules: next fires listed; open one, preview it, pause it.
    browser.click("#nav-schedules").await;
    browser.find("#schedule-morning").await;
    assert!(browser
        .text("#schedule-morning .next-fires")
        .await
        .contains("09:00"));
    browser.screenshot("13-schedules").await;
    browser.click("#schedule-morning a.schedule-link").await;
    browser.click("#schedule-preview").await;
    browser.find("#previews").await;
    assert!(
        browser
            .text("#previews")
            .await
            .contains("早上好，好物分享1群！"),
        "{}",
        browser.source().await
    );
    browser.screenshot("14-schedule-preview").await;
    browser.click("#schedule-pause").await;
    browser.find("#schedule-resume").await;
    assert!(browser.text("#schedule-state").await.contains("paused"));
    browser.screenshot("15-schedule-paused").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        let state = store::schedules::state(&mut conn, "morning")
            .await
            .unwrap()
            .unwrap();
        assert!(state.paused);
    }

    // 10. 群管理: tag a chat on its page (its capability table says what a
    // customer group allows), then send a broadcast to the tag and read each
    // chat's outcome.
    browser.goto(&format!("{site}/admin/chats/wrOgAA1")).await;
    assert!(
        browser
            .text("#capabilities")
            .await
            .contains("needs the owner's confirmation (xiaomei)"),
        "{}",
        browser.source().await
    );
    browser.type_into("#tag-input", "团购").await;
    browser.click("#tag-add").await;
    browser.find("#chat-tags").await;
    assert!(browser.text("#chat-tags").await.contains("团购"));
    browser.screenshot("16-chat-tagged").await;
    browser.goto(&format!("{site}/admin/chats")).await;
    browser.type_into("#broadcast-tags", "团购").await;
    browser.type_into("#broadcast-text", "周末团购开始啦").await;
    browser.click("#broadcast-send").await;
    browser.find("#broadcast-result").await;
    let outcome = browser.text("#broadcast-result").await;
    assert!(
        outcome.contains("wrOgAA1") && outcome.contains("xiaomei"),
        "{outcome}"
    );
    browser.screenshot("17-broadcast-sent").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        let queued: i64 = sqlx::query_scalar(
            "select count(*) from outbox where route = 'customer_group_mass' and target = 'xiaomei'
             and idempotency_key like 'broadcast:%:wrOgAA1'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(queued, 1, "one mass message for the owner to confirm");
    }

    // 11. 人群: build a segment of one chat's members, preview its count and
    // sample, save it, and preview a push (nothing is queued before "send").
    let in_chat: i64 = sqlx::query_scalar(
        "select count(*) from chat_members where chat_id = 'wrOgAA1' and left_at is null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    browser.goto(&format!("{site}/admin/segments")).await;
    browser.type_into("#segment-name", "一群成员").await;
    browser.type_into("#segment-chats", "wrOgAA1").await;
    browser.click("#segment-preview").await;
    browser.find("#segment-count").await;
    assert_eq!(browser.text("#segment-count").await, in_chat.to_string());
    browser.screenshot("18-segment-preview").await;
    browser.click("#segment-save").await;
    browser.find("#segment-push-text").await;
    assert!(browser.url().await.contains("/admin/segments/"));
    let outbox_before: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    browser.type_into("#segment-push-text", "本周会员日").await;
    browser.click("#segment-push-preview-button").await;
    browser.find("#segment-push-preview").await;
    assert!(browser
        .text("#push-preview-text")
        .await
        .contains("本周会员日"));
    let reached: i64 = browser
        .text("#push-preview-internal")
        .await
        .parse()
        .unwrap();
    let not_reached: i64 = browser
        .text("#push-preview-external")
        .await
        .parse()
        .unwrap();
    assert_eq!(reached + not_reached, in_chat);
    browser.screenshot("19-segment-push-preview").await;
    let outbox_after: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox_after, outbox_before, "a preview queues nothing");
    // 12. 投票: create a poll in the console, land on its live results.
    browser.click("#nav-polls").await;
    browser.find("#no-polls").await;
    browser
        .type_into("#poll-question", "周末活动去哪儿？")
        .await;
    browser
        .set_value("#poll-options", "公园\n博物馆\n海边")
        .await;
    browser.type_into("#poll-chats", "wrOgAA1").await;
    browser.type_into("#poll-hours", "2").await;
    browser.click("#poll-create").await;
    browser.find("#poll-results").await;
    assert!(
        browser
            .text("#poll-title")
            .await
            .contains("周末活动去哪儿？"),
        "{}",
        browser.source().await
    );
    assert_eq!(browser.find_all(".poll-option").await.len(), 3);
    browser.screenshot("20-poll-created").await;
    {
        let mut conn = pool.acquire().await.unwrap();
        let (options, chats): (String, String) =
            sqlx::query_as("select options_json, chats_json from polls where question = ?")
                .bind("周末活动去哪儿？")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(options, r#"["公园","博物馆","海边"]"#);
        assert_eq!(chats, r#"["wrOgAA1"]"#);
        let audited: i64 =
            sqlx::query_scalar("select count(*) from admin_audit where action = 'poll.create'")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(audited, 1);
    }

    browser.close().await;
    app.stop().await;
}
