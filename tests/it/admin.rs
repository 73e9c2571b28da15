//! HTTP-level tests of the web console: sign-in, sessions, CSRF, rate limits,
//! every role against every mutating route and API call, and the audit log.

use std::ops::Deref;

use axum::http::{header, Method, StatusCode};
use chrono::{TimeZone, Utc};
use qunyun::admin::{auth, Role};
use qunyun::ops::{accounts, Actor, Ops, OpsResult};
use qunyun::rules::event::JoinScene;
use qunyun::rules::ChatRoute;
use qunyun::store::{self, admin as q};
use sqlx::SqlitePool;

use crate::helpers::{self, Reply, Session, TestApp, TestConfig};

/// A console account, created as the command line would (audited as `cli:test`).
async fn create_user(pool: &SqlitePool, name: &str, password: &str, role: Role) -> OpsResult<()> {
    let ops = Ops::over(pool.clone());
    accounts::create_user(&ops, &cli(), Utc::now(), name, password, role).await
}

fn cli() -> Actor {
    Actor::cli(Some("test"))
}

/// The served console of a seeded community, and a browser for it.
struct Console {
    /// Keeps the server (and its simulator) running.
    _app: TestApp,
    client: helpers::Console,
}

impl Deref for Console {
    type Target = helpers::Console;
    fn deref(&self) -> &helpers::Console {
        &self.client
    }
}

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 4, 0, 0).unwrap()
}

async fn console() -> Console {
    console_with(TestConfig::new()).await
}

async fn console_with(config: TestConfig) -> Console {
    let app = TestApp::start(config.starting_at(start())).await;
    seed(&app.pool).await;
    let client = app.console();
    Console { _app: app, client }
}

/// A small community: one chat, a member with points, a pending redemption,
/// a parked inbox event, one stored rule-set version.
async fn seed(pool: &SqlitePool) {
    let now = start();
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
    store::members::record_join(&mut conn, "wrOgAA1", "wmAlice", now, JoinScene::QrCode)
        .await
        .unwrap();
    store::points::append(
        &mut conn,
        &store::points::NewLedgerEntry {
            user_id: "wmAlice",
            delta: 100,
            reason: "checkin",
            reference: "seed:1",
            chat_id: Some("wrOgAA1"),
            day: now.date_naive(),
            at: now,
        },
    )
    .await
    .unwrap();
    store::redemptions::create(&mut conn, "wmAlice", "杯子", 50, "redeem:1", now)
        .await
        .unwrap();
    let inserted = store::inbox::insert_event(
        &mut conn,
        &store::inbox::NewInboxEvent {
            source: "app:main",
            kind: store::inbox::InboxKind::ChangeExternalChat,
            dedupe_key: "k1",
            received_at: now.timestamp(),
            event_json: "{}",
            chat_id: Some("wrOgAA1"),
        },
    )
    .await
    .unwrap();
    let store::inbox::Inserted::New(id) = inserted else {
        panic!("seed event not inserted")
    };
    store::inbox::record_failure(&mut conn, id, "boom", 1, now.timestamp())
        .await
        .unwrap();
    store::rule_sets::save(&mut conn, &valid_rules(5), now)
        .await
        .unwrap();
    // A webhook message the sender gave up on; its target is a robot key (a credential).
    sqlx::query(
        "insert into outbox (idempotency_key, route, target, payload_json, status, attempts,
                             next_attempt_at, last_error, created_at, updated_at)
         values ('push:1', 'webhook', 'robotkey-0123456789-secret', '{}', 'dead', 5, 0, 'errcode 93000', ?, ?)",
    )
    .bind(now.timestamp())
    .bind(now.timestamp())
    .execute(&mut *conn)
    .await
    .unwrap();
}

fn valid_rules(base_points: i64) -> String {
    format!(
        "[community]\napp = \"{}\"\nname = \"好物分享社群\"\ntimezone = \"Asia/Shanghai\"\n\n[checkin]\nkeywords = [\"签到\"]\nbase_points = {base_points}\n",
        helpers::APP
    )
}

impl Console {
    async fn rule_set_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from rule_sets")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn audit_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from admin_audit")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn first_redemption_id(&self) -> i64 {
        sqlx::query_scalar("select id from redemptions order by id limit 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn first_inbox_id(&self) -> i64 {
        sqlx::query_scalar("select id from inbox order by id limit 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn first_outbox_id(&self) -> i64 {
        sqlx::query_scalar("select id from outbox order by id limit 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn first_token_id(&self) -> i64 {
        sqlx::query_scalar("select id from admin_api_tokens order by id limit 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn set_cookie_pair(reply: &Reply, name: &str) -> Option<String> {
    reply.set_cookie(name)
}

/// Signs in through the login form, as a browser would.
async fn sign_in(console: &Console, username: &str, password: &str) -> Reply {
    console.client.sign_in(username, password).await
}

// --- sign-in, sessions ------------------------------------------------------------

#[tokio::test]
async fn owner_signs_in_with_password_and_sees_the_dashboard() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    let reply = sign_in(&console, "mei", "correct horse battery").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/admin");
    let set_cookie = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(auth::SESSION_COOKIE))
        .unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "Secure only behind TLS");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let dashboard = console
        .get(
            "/admin",
            Some(&Session {
                cookie,
                csrf: String::new(),
            }),
        )
        .await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("概览"), "Chinese by default");
    assert_eq!(
        dashboard.body.matches("<svg").count(),
        4,
        "three line charts and the funnel"
    );
    let mut conn = console.pool.acquire().await.unwrap();
    let audit = q::recent_audit(&mut conn, None, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "login" && a.actor == "mei"));
}

#[tokio::test]
async fn wrong_password_is_refused_and_rate_limited_after_five_failures() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    for _ in 0..5 {
        let reply = sign_in(&console, "mei", "wrong password!").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(set_cookie_pair(&reply, auth::SESSION_COOKIE).is_none());
    }
    // Even the right password is refused while throttled.
    let throttled = sign_in(&console, "mei", "correct horse battery").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie_pair(&throttled, auth::SESSION_COOKIE).is_none());
    // After the window the right password works again.
    console.clock.advance(chrono::Duration::minutes(16));
    let reply = sign_in(&console, "mei", "correct horse battery").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn unknown_user_is_refused_like_a_wrong_password() {
    let console = console().await;
    let reply = sign_in(&console, "nobody", "whatever password").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("用户名或密码错误"));
}

#[tokio::test]
async fn login_without_the_login_csrf_cookie_is_refused() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    let reply = console
        .post_form(
            "/admin/login",
            None,
            &[
                ("username", "mei"),
                ("password", "correct horse battery"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_expire() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    assert_eq!(
        console.get("/admin", Some(&session)).await.status,
        StatusCode::OK
    );
    console.clock.advance(chrono::Duration::hours(2));
    let reply = console.get("/admin", Some(&session)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/admin/login");
}

#[tokio::test]
async fn after_logout_the_old_cookie_is_refused() {
    let console = console().await;
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .post_form(
            "/admin/logout",
            Some(&session.cookie),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(set_cookie_pair(&reply, auth::SESSION_COOKIE).is_some());
    let again = console.get("/admin", Some(&session)).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
}

// --- nothing answers without a session or token -----------------------------------

const PAGES: &[&str] = &[
    "/admin",
    "/admin/chats",
    "/admin/members",
    "/admin/members/wmAlice",
    "/admin/rules",
    "/admin/rules/history",
    "/admin/rules/versions/1",
    "/admin/queues",
    "/admin/audit",
    "/admin/users",
    "/admin/export/members.csv",
    "/admin/export/ledger.csv",
    "/admin/export/moderation.csv",
    "/admin/export/audit.csv",
];

#[tokio::test]
async fn no_page_answers_without_a_valid_session() {
    let console = console().await;
    let forged = Session {
        cookie: format!("{}=0123abcd", auth::SESSION_COOKIE),
        csrf: String::new(),
    };
    for path in PAGES {
        for session in [None, Some(&forged)] {
            let reply = console.get(path, session).await;
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(reply.headers[header::LOCATION], "/admin/login", "{path}");
            assert!(!reply.body.contains("wmAlice"), "{path} leaked data");
        }
    }
}

#[tokio::test]
async fn every_page_renders_for_a_viewer() {
    let console = console().await;
    let (session, _) = console.session_for("owner", Role::Owner).await;
    for path in PAGES {
        let reply = console.get(path, Some(&session)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    for path in PAGES.iter().filter(|p| **p != "/admin/users") {
        let reply = console.get(path, Some(&viewer)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            !reply.body.contains("name=\"body\""),
            "{path} shows an edit form to a viewer"
        );
    }
    assert_eq!(
        console.get("/admin/users", Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
}

const API_READS: &[&str] = &[
    "/admin/api/v1/dashboard",
    "/admin/api/v1/chats",
    "/admin/api/v1/members",
    "/admin/api/v1/members/wmAlice",
    "/admin/api/v1/rules",
    "/admin/api/v1/rules/versions",
    "/admin/api/v1/redemptions",
    "/admin/api/v1/parked",
    "/admin/api/v1/dead-letters",
    "/admin/api/v1/audit",
];

#[tokio::test]
async fn no_api_call_answers_without_a_valid_token() {
    let console = console().await;
    let (session, token) = console.session_for("viewer", Role::Viewer).await;
    for path in API_READS {
        for bad in [None, Some("qy_forged"), Some("")] {
            let reply = console.api(Method::GET, path, bad, "").await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(!reply.body.contains("wmAlice"));
        }
        // A session cookie is not a token.
        let reply = console.get(path, Some(&session)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{path} accepted a cookie"
        );
        let reply = console.api(Method::GET, path, Some(&token), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let console = console().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let mut conn = console.pool.acquire().await.unwrap();
    let id = console.first_token_id().await;
    q::revoke_api_token(&mut conn, id, 0).await.unwrap();
    let reply = console
        .api(Method::GET, "/admin/api/v1/dashboard", Some(&token), "")
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

// --- every role against every mutating route --------------------------------------

/// A mutating form route, the least role it needs, and the form to send.
struct FormRoute {
    path: String,
    need: Role,
    fields: Vec<(&'static str, String)>,
}

async fn form_routes(console: &Console) -> Vec<FormRoute> {
    let redemption = console.first_redemption_id().await;
    let parked = console.first_inbox_id().await;
    let token = console.first_token_id().await;
    let dead = console.first_outbox_id().await;
    vec![
        FormRoute {
            path: format!("/admin/outbox/{dead}/retry"),
            need: Role::Operator,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/outbox/retry-uncertain".into(),
            need: Role::Operator,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/members/wmAlice/points".into(),
            need: Role::Operator,
            fields: vec![("delta", "5".into()), ("reason", "活动奖励".into())],
        },
        FormRoute {
            path: "/admin/rules/check".into(),
            need: Role::Operator,
            fields: vec![("body", valid_rules(6))],
        },
        FormRoute {
            path: "/admin/rules/apply".into(),
            need: Role::Operator,
            fields: vec![("body", valid_rules(7))],
        },
        FormRoute {
            path: "/admin/rules/versions/1/rollback".into(),
            need: Role::Operator,
            fields: vec![],
        },
        FormRoute {
            path: format!("/admin/redemptions/{redemption}/fulfil"),
            need: Role::Operator,
            fields: vec![],
        },
        FormRoute {
            path: format!("/admin/inbox/{parked}/retry"),
            need: Role::Operator,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/chats/wrOgAA1/tags".into(),
            need: Role::Operator,
            fields: vec![("tags", "团购".into()), ("op", "tag".into())],
        },
        FormRoute {
            path: "/admin/broadcasts".into(),
            need: Role::Operator,
            fields: vec![
                ("chats", String::new()),
                ("tags", "vip".into()),
                ("text", "周末活动".into()),
            ],
        },
        FormRoute {
            path: "/admin/users".into(),
            need: Role::Owner,
            fields: vec![
                ("username", "newbie".into()),
                ("password", "long enough password".into()),
                ("role", "viewer".into()),
            ],
        },
        FormRoute {
            path: "/admin/users/newbie/password".into(),
            need: Role::Owner,
            fields: vec![("password", "another long password".into())],
        },
        FormRoute {
            path: "/admin/users/newbie/sessions/end".into(),
            need: Role::Owner,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/users/newbie/disable".into(),
            need: Role::Owner,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/users/newbie/enable".into(),
            need: Role::Owner,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/tokens".into(),
            need: Role::Owner,
            fields: vec![("label", "crm".into()), ("expires_in_days", "30".into())],
        },
        FormRoute {
            path: format!("/admin/tokens/{token}/revoke"),
            need: Role::Owner,
            fields: vec![],
        },
        FormRoute {
            path: "/admin/logout".into(),
            need: Role::Viewer,
            fields: vec![],
        },
    ]
}

fn with_csrf(fields: &[(&'static str, String)], csrf: &str) -> Vec<(&'static str, String)> {
    let mut all = fields.to_vec();
    all.push(("csrf", csrf.to_owned()));
    all
}

async fn post(
    console: &Console,
    route: &FormRoute,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> Reply {
    let fields = match csrf {
        Some(csrf) => with_csrf(&route.fields, csrf),
        None => route.fields.clone(),
    };
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    console.post_form(&route.path, cookie, &pairs).await
}

#[tokio::test]
async fn every_role_against_every_mutating_form_route() {
    for role in [Role::Viewer, Role::Operator, Role::Owner] {
        // A fresh community per role, so each route acts on pending work.
        let console = console().await;
        let (session, _) = console.session_for(role.as_str(), role).await;
        for route in form_routes(&console).await {
            // A forged or missing CSRF token changes nothing, whatever the role.
            let before = console.audit_count().await;
            let forged = post(&console, &route, Some(&session.cookie), Some("forged")).await;
            assert_eq!(
                forged.status,
                StatusCode::FORBIDDEN,
                "{} as {role:?} with a forged token",
                route.path
            );
            let missing = post(&console, &route, Some(&session.cookie), None).await;
            assert!(
                missing.status.is_client_error(),
                "{} without a token: {}",
                route.path,
                missing.status
            );
            // No session: sent to the login page.
            let anonymous = post(&console, &route, None, Some(&session.csrf)).await;
            assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{}", route.path);
            assert_eq!(
                console.audit_count().await,
                before,
                "{}: refused requests wrote audit",
                route.path
            );

            let reply = post(&console, &route, Some(&session.cookie), Some(&session.csrf)).await;
            if role >= route.need {
                assert!(
                    reply.status.is_success() || reply.status.is_redirection(),
                    "{} as {role:?}: {} {}",
                    route.path,
                    reply.status,
                    reply.body
                );
                // rules/check only looks; every other mutation is audited.
                if route.path != "/admin/rules/check" {
                    assert!(
                        console.audit_count().await > before,
                        "{} as {role:?} not audited",
                        route.path
                    );
                }
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{} as {role:?}",
                    route.path
                );
                assert_eq!(
                    console.audit_count().await,
                    before,
                    "{} as {role:?}",
                    route.path
                );
            }
        }
    }
}

#[tokio::test]
async fn every_role_against_every_mutating_api_call() {
    for role in [Role::Viewer, Role::Operator, Role::Owner] {
        let console = console().await;
        let (_, token) = console.session_for(role.as_str(), role).await;
        let redemption = console.first_redemption_id().await;
        let parked = console.first_inbox_id().await;
        let dead = console.first_outbox_id().await;
        let calls = [
            (format!("/admin/api/v1/outbox/{dead}/retry"), String::new()),
            (
                "/admin/api/v1/outbox/retry-uncertain".to_owned(),
                String::new(),
            ),
            (
                "/admin/api/v1/members/wmAlice/points".to_owned(),
                r#"{"delta": 5, "reason": "api"}"#.to_owned(),
            ),
            (
                "/admin/api/v1/rules".to_owned(),
                serde_json::json!({ "body": valid_rules(9) }).to_string(),
            ),
            (
                "/admin/api/v1/rules/versions/1/rollback".to_owned(),
                String::new(),
            ),
            (
                format!("/admin/api/v1/redemptions/{redemption}/fulfil"),
                String::new(),
            ),
            (
                format!("/admin/api/v1/parked/{parked}/retry"),
                String::new(),
            ),
            (
                "/admin/api/v1/chats/wrOgAA1/tags".to_owned(),
                r#"{"tags": ["团购"]}"#.to_owned(),
            ),
            (
                "/admin/api/v1/broadcasts".to_owned(),
                r#"{"tags": ["vip"], "text": "周末活动"}"#.to_owned(),
            ),
        ];
        for (path, body) in calls {
            let before = console.audit_count().await;
            let anonymous = console.api(Method::POST, &path, None, &body).await;
            assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
            let reply = console.api(Method::POST, &path, Some(&token), &body).await;
            if role >= Role::Operator {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{path} as {role:?}: {}",
                    reply.body
                );
                let audit = {
                    let mut conn = console.pool.acquire().await.unwrap();
                    q::recent_audit(&mut conn, None, 1).await.unwrap()
                };
                assert!(console.audit_count().await > before, "{path} not audited");
                assert_eq!(audit[0].actor, "api:test");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} as viewer");
                assert_eq!(console.audit_count().await, before);
            }
        }
    }
}

// --- the pages' work ----------------------------------------------------------------

/// WeCom has no robots or smart bots in customer groups: the console and the
/// API refuse to attach one, naming the field and the reason, and change nothing.
#[tokio::test]
async fn a_robot_key_on_a_customer_group_is_refused_with_the_reason_in_console_and_api() {
    let console = console().await;
    let (session, token) = console.session_for("op", Role::Operator).await;
    let before = console.audit_count().await;
    let page = console
        .post_form(
            "/admin/chats/wrOgAA1/route",
            Some(&session.cookie),
            &[
                ("csrf", &session.csrf),
                ("robot_key", "KEY1"),
                ("smart_bot", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body
            .contains("robot_key: a customer group cannot hold a webhook robot"),
        "{}",
        page.body
    );
    let api = console
        .api(
            Method::POST,
            "/admin/api/v1/chats/wrOgAA1/route",
            Some(&token),
            r#"{"smart_bot": "helper"}"#,
        )
        .await;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert!(
        api.body
            .contains("smart_bot: a customer group cannot hold a smart bot"),
        "{}",
        api.body
    );
    assert_eq!(console.audit_count().await, before, "nothing changed");

    // The chat's page says what can be done there instead.
    let shown = console.get("/admin/chats/wrOgAA1", Some(&session)).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(
        shown
            .body
            .contains("needs the owner&#x27;s confirmation (xiaomei)")
            || shown
                .body
                .contains("needs the owner's confirmation (xiaomei)"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("task for a person"), "{}", shown.body);
}

#[tokio::test]
async fn a_console_broadcast_shows_each_chats_outcome() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let reply = console
        .post_form(
            "/admin/broadcasts",
            Some(&session.cookie),
            &[
                ("csrf", &session.csrf),
                ("chats", "wrGONE"),
                ("tags", "vip"),
                ("text", "周末活动"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("broadcast-result"), "{}", reply.body);
    assert!(
        reply.body.contains("wrOgAA1: 等待群主确认 (xiaomei)"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("wrGONE: 已跳过: unknown chat"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_rule_mistake_is_shown_inline_at_its_line_and_nothing_is_saved() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let broken = valid_rules(5).replace("base_points = 5", "base_points = \"five\"");
    let reply = console
        .post_form(
            "/admin/rules/apply",
            Some(&session.cookie),
            &[("body", &broken), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The problem sits right under line 8 (base_points), naming the field.
    let line = reply.body.find("id=\"line-8\"").expect("annotated line 8");
    let error = reply
        .body
        .find("data-line=\"8\"")
        .expect("error placed at line 8");
    assert!(error > line);
    assert!(reply.body[error..].contains("checkin.base_points"));
    assert!(reply.body.contains("aria-invalid=\"true\""));
    let mut conn = console.pool.acquire().await.unwrap();
    assert_eq!(
        store::rule_sets::active_version(&mut conn).await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn applying_shows_a_diff_first_then_saves_a_version_and_rollback_restores_it() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let check = console
        .post_form(
            "/admin/rules/check",
            Some(&session.cookie),
            &[("body", &valid_rules(8)), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(check.status, StatusCode::OK);
    assert!(
        check.body.contains("class=\"removed\">- base_points = 5"),
        "{}",
        check.body
    );
    assert!(check.body.contains("class=\"added\">+ base_points = 8"));
    let apply = console
        .post_form(
            "/admin/rules/apply",
            Some(&session.cookie),
            &[("body", &valid_rules(8)), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(apply.status, StatusCode::SEE_OTHER);
    let mut conn = console.pool.acquire().await.unwrap();
    let active = store::rule_sets::active(&mut conn).await.unwrap().unwrap();
    assert_eq!(
        (active.version, active.body.contains("base_points = 8")),
        (2, true)
    );
    let rollback = console
        .post_form(
            "/admin/rules/versions/1/rollback",
            Some(&session.cookie),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(rollback.status, StatusCode::SEE_OTHER);
    let active = store::rule_sets::active(&mut conn).await.unwrap().unwrap();
    assert_eq!(
        active.version, 3,
        "a rollback is a new version; history stays"
    );
    assert_eq!(active.body, valid_rules(5));
}

#[tokio::test]
async fn fulfilling_a_redemption_marks_it_shipped_once() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let id = console.first_redemption_id().await;
    let path = format!("/admin/redemptions/{id}/fulfil");
    let first = console
        .post_form(&path, Some(&session.cookie), &[("csrf", &session.csrf)])
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let second = console
        .post_form(&path, Some(&session.cookie), &[("csrf", &session.csrf)])
        .await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    let mut conn = console.pool.acquire().await.unwrap();
    let rows = store::redemptions::list(&mut conn, Some("fulfilled"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let queues = console.get("/admin/queues", Some(&session)).await;
    assert!(queues.body.contains("id=\"no-redemptions\""));
}

#[tokio::test]
async fn adjusting_points_needs_a_reason_and_cannot_overdraw() {
    let console = console().await;
    let (session, _) = console.session_for("op", Role::Operator).await;
    let path = "/admin/members/wmAlice/points";
    let no_reason = console
        .post_form(
            path,
            Some(&session.cookie),
            &[("delta", "5"), ("reason", " "), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let overdraw = console
        .post_form(
            path,
            Some(&session.cookie),
            &[
                ("delta", "-500"),
                ("reason", "oops"),
                ("csrf", &session.csrf),
            ],
        )
        .await;
    assert_eq!(overdraw.status, StatusCode::BAD_REQUEST);
    let ok = console
        .post_form(
            path,
            Some(&session.cookie),
            &[
                ("delta", "-30"),
                ("reason", "补偿扣回"),
                ("csrf", &session.csrf),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let mut conn = console.pool.acquire().await.unwrap();
    assert_eq!(
        store::points::balance(&mut conn, "wmAlice").await.unwrap(),
        70
    );
    let profile = console.get("/admin/members/wmAlice", Some(&session)).await;
    assert!(profile.body.contains("id=\"balance\">70<"));
    assert!(profile.body.contains("补偿扣回"));
}

#[tokio::test]
async fn english_switch_sets_a_cookie_and_returns_to_the_page() {
    let console = console().await;
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .get_with(
            "/admin/lang/en",
            None,
            &[("referer", "http://127.0.0.1:1/admin/chats")],
        )
        .await;
    assert_eq!(reply.headers[header::LOCATION], "/admin/chats");
    let lang = set_cookie_pair(&reply, auth::LANG_COOKIE).unwrap();
    let english = Session {
        cookie: format!("{}; {lang}", session.cookie),
        csrf: String::new(),
    };
    let page = console.get("/admin/chats", Some(&english)).await;
    assert!(page.body.contains("Customer group"), "{}", page.body);
    assert!(page.body.contains("owner-confirmed mass messages only"));
}

#[tokio::test]
async fn csv_export_quotes_cells_and_is_audited() {
    let console = console().await;
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .get("/admin/export/ledger.csv", Some(&session))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let mut lines = reply.body.lines();
    assert_eq!(
        lines.next(),
        Some("id,user_id,delta,reason,reference,chat_id,day,created_at")
    );
    assert!(lines
        .next()
        .unwrap()
        .contains("wmAlice,100,checkin,seed:1,wrOgAA1"));
    let mut conn = console.pool.acquire().await.unwrap();
    let audit = q::recent_audit(&mut conn, None, 1).await.unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].target.as_str()),
        ("export", "ledger.csv")
    );
    assert_eq!(
        console
            .get("/admin/export/secrets.csv", Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_csv_export_larger_than_one_chunk_streams_every_row_in_order_defused() {
    let console = console().await;
    // Enough rows for several chunks; every reason would run as a formula.
    sqlx::query(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
         insert into points_ledger (user_id, delta, reason, reference, chat_id, day, created_at)
         select 'wmBulk', i, '=bonus', 'bulk:' || i, 'wrOgAA1', '2025-03-10', 1741579200 from n",
    )
    .execute(&console.pool)
    .await
    .unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from points_ledger")
        .fetch_one(&console.pool)
        .await
        .unwrap();
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .get("/admin/export/ledger.csv", Some(&session))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body.len() > 3 * qunyun::ops::audit::CSV_CHUNK_BYTES,
        "{} bytes is not several chunks",
        reply.body.len()
    );
    assert!(reply.body.ends_with("\r\n"));
    let lines: Vec<&str> = reply.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "id,user_id,delta,reason,reference,chat_id,day,created_at"
    );
    assert_eq!(lines.len() as i64, rows + 1, "a header and every row");
    let ids: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "rows in id order, none twice"
    );
    let bulk: Vec<&&str> = lines.iter().filter(|l| l.contains(",wmBulk,")).collect();
    assert_eq!(bulk.len(), 5000);
    assert!(
        bulk.iter().all(|l| l.contains(",'=bonus,")),
        "every chunk defused"
    );
    assert!(lines.last().unwrap().contains(",5000,'=bonus,bulk:5000,"));
}

// --- account controls from the console ---------------------------------------------

#[tokio::test]
async fn owners_control_accounts_from_the_users_page_and_others_are_refused() {
    let console = console().await;
    let (owner, _) = console.session_for("boss", Role::Owner).await;
    create_user(&console.pool, "op", "first password 1", Role::Operator)
        .await
        .unwrap();
    let signed_in = sign_in(&console, "op", "first password 1").await;
    let op = Session {
        cookie: set_cookie_pair(&signed_in, auth::SESSION_COOKIE).unwrap(),
        csrf: String::new(),
    };
    assert_eq!(
        console.get("/admin/chats", Some(&op)).await.status,
        StatusCode::OK
    );
    let page = console.get("/admin/users", Some(&owner)).await.body;
    assert!(
        page.contains("action=\"/admin/users/op/disable\""),
        "{page}"
    );

    // Disable: the session stops working, the page says so, the act is audited.
    let reply = console
        .post_as("/admin/users/op/disable", &owner, &[])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), Some("/admin/users?notice=disabled"));
    assert_eq!(
        console.get("/admin/chats", Some(&op)).await.status,
        StatusCode::SEE_OTHER,
        "a disabled account's session is sent to the login page"
    );
    let page = console
        .get("/admin/users?notice=disabled", Some(&owner))
        .await
        .body;
    assert!(page.contains("id=\"notice\""), "{page}");
    assert!(page.contains("action=\"/admin/users/op/enable\""), "{page}");
    let mut conn = console.pool.acquire().await.unwrap();
    let audit = q::recent_audit(&mut conn, None, 1).await.unwrap();
    assert_eq!(
        (
            audit[0].actor.as_str(),
            audit[0].action.as_str(),
            audit[0].target.as_str()
        ),
        ("boss", "user.disable", "op")
    );
    drop(conn);
    // Unknown notices are not echoed.
    let page = console
        .get("/admin/users?notice=<b>hi</b>", Some(&owner))
        .await
        .body;
    assert!(!page.contains("id=\"notice\"") && !page.contains("<b>hi"));

    let reply = console.post_as("/admin/users/op/enable", &owner, &[]).await;
    assert_eq!(reply.location(), Some("/admin/users?notice=enabled"));

    // Reset password: the old one is refused, the new one accepted, and the
    // sessions started with the old one end.
    let before_reset = sign_in(&console, "op", "first password 1").await;
    let op = Session {
        cookie: set_cookie_pair(&before_reset, auth::SESSION_COOKIE).unwrap(),
        csrf: String::new(),
    };
    let weak = console
        .post_as("/admin/users/op/password", &owner, &[("password", "short")])
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert!(
        weak.body.contains("class=\"error\"") && weak.body.contains("10"),
        "{}",
        weak.body
    );
    let reply = console
        .post_as(
            "/admin/users/op/password",
            &owner,
            &[("password", "second password 2")],
        )
        .await;
    assert_eq!(reply.location(), Some("/admin/users?notice=password_reset"));
    assert_eq!(
        console.get("/admin/chats", Some(&op)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in(&console, "op", "first password 1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let after_reset = sign_in(&console, "op", "second password 2").await;
    assert_eq!(after_reset.status, StatusCode::SEE_OTHER);
    let op = Session {
        cookie: set_cookie_pair(&after_reset, auth::SESSION_COOKIE).unwrap(),
        csrf: String::new(),
    };

    // End all sessions.
    let reply = console
        .post_as("/admin/users/op/sessions/end", &owner, &[])
        .await;
    assert_eq!(reply.location(), Some("/admin/users?notice=sessions_ended"));
    assert_eq!(
        console.get("/admin/chats", Some(&op)).await.status,
        StatusCode::SEE_OTHER
    );

    // Mistakes are shown inline: oneself, an unknown account, a bad expiry.
    let own = console
        .post_as("/admin/users/boss/disable", &owner, &[])
        .await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST);
    assert!(own.body.contains("class=\"error\""), "{}", own.body);
    let missing = console
        .post_as("/admin/users/ghost/disable", &owner, &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("ghost"), "{}", missing.body);
    let bad_expiry = console
        .post_as(
            "/admin/tokens",
            &owner,
            &[("label", "crm"), ("expires_in_days", "0")],
        )
        .await;
    assert_eq!(bad_expiry.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_expiry.body.contains("expires_in_days"),
        "{}",
        bad_expiry.body
    );

    // A token with an expiry works until then, and the page shows when.
    let created = console
        .post_as(
            "/admin/tokens",
            &owner,
            &[("label", "crm"), ("expires_in_days", "2")],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = created
        .body
        .split("<code id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    let mut conn = console.pool.acquire().await.unwrap();
    let tokens = q::list_api_tokens(&mut conn).await.unwrap();
    let crm = tokens.iter().find(|t| t.label == "crm").unwrap();
    assert_eq!(crm.expires_at, Some(crm.created_at + 2 * 86_400));
    drop(conn);
    let chats = |console: &Console, token: String| {
        let console = console.client.clone();
        async move {
            console
                .api(Method::GET, "/admin/api/v1/chats", Some(&token), "")
                .await
                .status
        }
    };
    assert_eq!(chats(&console, token.clone()).await, StatusCode::OK);
    console.clock.advance(chrono::Duration::days(3));
    assert_eq!(chats(&console, token).await, StatusCode::UNAUTHORIZED);

    // Nobody but an owner may use the controls.
    for role in [Role::Viewer, Role::Operator] {
        let (session, _) = console
            .session_for(&format!("{}2", role.as_str()), role)
            .await;
        let before = console.audit_count().await;
        for path in [
            "/admin/users/op/disable",
            "/admin/users/op/enable",
            "/admin/users/op/sessions/end",
        ] {
            let reply = console.post_as(path, &session, &[]).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} as {role:?}");
        }
        let reply = console
            .post_as(
                "/admin/users/op/password",
                &session,
                &[("password", "taken over 123")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "password as {role:?}");
        assert_eq!(console.audit_count().await, before);
    }
    assert_eq!(
        sign_in(&console, "op", "second password 2").await.status,
        StatusCode::SEE_OTHER,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn api_rejects_an_invalid_rule_set_with_located_problems() {
    let console = console().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let body = serde_json::json!({ "body": valid_rules(5).replace("base_points = 5", "base_points = -1x") });
    let reply = console
        .api(
            Method::POST,
            "/admin/api/v1/rules",
            Some(&token),
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["problems"][0]["line"], 8);
}

#[tokio::test]
async fn api_refuses_a_rule_set_naming_an_app_the_config_does_not_have() {
    let console = console().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let versions_before = console.rule_set_count().await;
    let rules = valid_rules(5).replace(
        &format!("app = \"{}\"", helpers::APP),
        "app = \"no-such-app\"",
    );
    let body = serde_json::json!({ "body": rules });
    let reply = console
        .api(
            Method::POST,
            "/admin/api/v1/rules",
            Some(&token),
            &body.to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["problems"][0]["path"], "community.app", "{json}");
    assert_eq!(json["problems"][0]["line"], 2, "{json}");
    let reason = json["problems"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"no-such-app\"") && reason.contains("wecom.apps"),
        "{reason}"
    );
    assert_eq!(console.rule_set_count().await, versions_before);
}

#[tokio::test]
async fn create_user_refuses_duplicates_and_weak_passwords() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    assert!(
        create_user(&console.pool, "mei", "another long password", Role::Viewer)
            .await
            .is_err()
    );
    assert!(create_user(&console.pool, "lei", "short", Role::Viewer)
        .await
        .is_err());
    let ops = Ops::over(console.pool.clone());
    let token = accounts::create_token(&ops, &cli(), Utc::now(), "mei", "crm")
        .await
        .unwrap();
    let reply = console
        .api(Method::GET, "/admin/api/v1/chats", Some(&token), "")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("好物分享1群"));
}

#[tokio::test]
async fn dead_letters_are_listed_without_credentials_and_can_be_retried() {
    let console = console().await;
    let (session, token) = console.session_for("op", Role::Operator).await;
    let page = console.get("/admin/queues", Some(&session)).await;
    assert!(page.body.contains("errcode 93000"));
    assert!(page.body.contains("robotk…"), "{}", page.body);
    assert!(
        !page.body.contains("robotkey-0123456789-secret"),
        "webhook key leaked"
    );
    let api = console
        .api(Method::GET, "/admin/api/v1/dead-letters", Some(&token), "")
        .await;
    assert!(
        !api.body.contains("robotkey-0123456789-secret"),
        "webhook key leaked"
    );
    let id = console.first_outbox_id().await;
    let path = format!("/admin/outbox/{id}/retry");
    let reply = console
        .post_form(&path, Some(&session.cookie), &[("csrf", &session.csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let status: String = sqlx::query_scalar("select status from outbox where id = ?")
        .bind(id)
        .fetch_one(&console.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending");
    // A pending row cannot be "retried" again.
    let again = console
        .post_form(&path, Some(&session.cookie), &[("csrf", &session.csrf)])
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}

/// A robot message whose sender stopped mid-call: parked as uncertain.
async fn park_an_uncertain_message(console: &Console) -> i64 {
    use store::outbox::{self, Enqueued, NewOutboxMessage, Route};
    let now = start().timestamp();
    let mut conn = console.pool.acquire().await.unwrap();
    let message = NewOutboxMessage {
        idempotency_key: "push:cut-off",
        route: Route::Webhook,
        target: "robotkey-cut-off",
        app: None,
        payload_json: r#"{"msgtype":"text","text":{"content":"早上好"}}"#,
        created_at: now,
        not_before: None,
        skip_reason: None,
        event_at: None,
    };
    let Enqueued::New(id) = outbox::insert_row(&mut conn, &message).await.unwrap() else {
        panic!("fresh key")
    };
    // Claim only this row (the seed's other rows are not pending).
    let claimed = outbox::claim_due(&mut conn, now, 60, "crashed", 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        outbox::mark_call_started(&mut conn, id, "crashed", now, now + 60)
            .await
            .unwrap()
    );
    assert_eq!(
        outbox::park_uncertain(&mut conn, now + 60).await.unwrap(),
        1
    );
    id
}

#[tokio::test]
async fn uncertain_dead_letters_are_explained_and_resent_in_bulk_by_an_operator() {
    let console = console().await;
    let id = park_an_uncertain_message(&console).await;
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    let (op, token) = console.session_for("op", Role::Operator).await;

    let page = console.get("/admin/queues", Some(&viewer)).await;
    assert!(page.body.contains("id=\"uncertain-note\""), "{}", page.body);
    assert!(!page.body.contains("id=\"retry-uncertain\""));
    let page = console.get("/admin/queues", Some(&op)).await;
    assert!(page.body.contains("(1)</button>"), "{}", page.body);

    let reply = console
        .post_form(
            "/admin/outbox/retry-uncertain",
            Some(&op.cookie),
            &[("csrf", &op.csrf)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let status: String = sqlx::query_scalar("select status from outbox where id = ?")
        .bind(id)
        .fetch_one(&console.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending");
    // The seed's other dead letter (a bad robot key) is not touched.
    let dead: i64 = sqlx::query_scalar("select count(*) from outbox where status = 'dead'")
        .fetch_one(&console.pool)
        .await
        .unwrap();
    assert_eq!(dead, 1);
    let audit = console.last_audit().await;
    assert_eq!(
        (audit.action.as_str(), audit.detail.as_str()),
        ("outbox.retry_uncertain", "1 messages")
    );
    let page = console.get("/admin/queues", Some(&op)).await;
    assert!(!page.body.contains("id=\"uncertain-note\""));

    let api = console
        .api(
            Method::POST,
            "/admin/api/v1/outbox/retry-uncertain",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.body, r#"{"requeued":0}"#);
}

// --- schedules and the moderation queue (issue #7) ------------------------------------

/// The seed rule set plus one daily push at 09:00 community time to every chat.
fn rules_with_schedule() -> String {
    format!(
        "{}\n[[schedules]]\nname = \"morning\"\ncron = \"0 0 9 * * *\"\n\n[schedules.targets]\nall_chats = true\n\n[schedules.content]\nkind = \"text\"\nbody = \"早上好，{{{{ chat.name }}}}！\"\n",
        valid_rules(5)
    )
}

/// Moderation work and a schedule on top of [`seed`]: a strike and a review task
/// for wmAlice, two reports of a message wmBob wrote, a webhook chat.
async fn seed_queues(console: &Console) {
    use qunyun::rules::moderate::{ModerationRecord, OwnerTask, TaskKind};
    use qunyun::rules::moderation::Severity;
    let now = start();
    let mut conn = console.pool.acquire().await.unwrap();
    store::rule_sets::save(&mut conn, &rules_with_schedule(), now)
        .await
        .unwrap();
    store::chats::upsert_chat(
        &mut conn,
        &store::chats::NewChat {
            chat_id: "wrWeb".into(),
            name: "技术交流群".into(),
            route: ChatRoute::internal_with_robot("robot-key-1"),
            owner: None,
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        now,
    )
    .await
    .unwrap();
    store::moderation::record_decision(
        &mut conn,
        &ModerationRecord {
            event_id: "ev-1".into(),
            at: now,
            chat_id: Some("wrOgAA1".into()),
            user_id: "wmAlice".into(),
            rule: "term".into(),
            category: "ads".into(),
            severity: Severity::High,
            matched: "加微信".into(),
            excerpt: "加微信领红包".into(),
            action_taken: "warn,strike".into(),
            dry_run: false,
            strike: true,
            task: Some(OwnerTask {
                kind: TaskKind::Review,
                assignees: vec!["xiaomei".into()],
            }),
        },
    )
    .await
    .unwrap()
    .unwrap();
    store::members::record_join(&mut conn, "wrOgAA1", "wmBob", now, JoinScene::QrCode)
        .await
        .unwrap();
    store::moderation::record_post(&mut conn, Some("wrOgAA1"), "wmBob", now, Some(42))
        .await
        .unwrap();
    for reporter in ["wmAlice", "wmCarol"] {
        store::moderation::record_report(&mut conn, "wrOgAA1", reporter, 42, now)
            .await
            .unwrap();
    }
}

async fn queue_console() -> Console {
    let console = console().await;
    seed_queues(&console).await;
    console
}

impl Console {
    async fn strike_id(&self, user_id: &str) -> i64 {
        sqlx::query_scalar(
            "select id from moderation_strikes where user_id = ? order by id limit 1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn strike_revoked(&self, id: i64) -> bool {
        let revoked: Option<i64> =
            sqlx::query_scalar("select revoked_at from moderation_strikes where id = ?")
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        revoked.is_some()
    }

    async fn first_task_id(&self) -> i64 {
        sqlx::query_scalar("select id from moderation_tasks order by id limit 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    async fn paused(&self, name: &str) -> bool {
        let mut conn = self.pool.acquire().await.unwrap();
        store::schedules::state(&mut conn, name)
            .await
            .unwrap()
            .is_some_and(|s| s.paused)
    }

    async fn last_audit(&self) -> q::AuditRow {
        let mut conn = self.pool.acquire().await.unwrap();
        q::recent_audit(&mut conn, None, 1).await.unwrap().remove(0)
    }

    /// What a refused request must leave untouched.
    async fn queue_state(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for sql in [
            "select count(*) from admin_audit",
            "select count(*) from outbox",
            "select count(*) from schedule_runs",
            "select count(*) from schedule_state where paused = 1",
            "select count(*) from moderation_strikes where revoked_at is null",
            "select count(*) from moderation_tasks where status = 'open'",
            "select count(*) from moderation_reports where handled_at is null",
        ] {
            out.push(self.count(sql).await);
        }
        out
    }
}

#[tokio::test]
async fn schedules_page_shows_next_fire_times_in_the_community_timezone() {
    let console = queue_console().await;
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    // 2025-03-10 04:00 UTC is 12:00 in Shanghai: today's 09:00 has passed.
    let page = console.get("/admin/schedules", Some(&viewer)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("href=\"/admin/schedules/morning\""));
    for day in [
        "2025-03-11 09:00 CST",
        "2025-03-12 09:00 CST",
        "2025-03-13 09:00 CST",
    ] {
        assert!(page.body.contains(day), "{day} missing: {}", page.body);
    }
    // minijinja escapes the slash.
    assert!(page.body.contains("Asia&#x2f;Shanghai"), "{}", page.body);
    assert!(page.body.contains("id=\"nav-schedules\""));
    let detail = console.get("/admin/schedules/morning", Some(&viewer)).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("2025-03-11 09:00 CST"));
    assert!(detail.body.contains("id=\"no-runs\""));
    // A viewer sees no forms.
    assert!(!detail.body.contains("id=\"schedule-pause\""));
    let missing = console.get("/admin/schedules/nope", Some(&viewer)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pause_resume_and_run_now_change_state_and_are_audited() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let csrf = [("csrf", op.csrf.as_str())];

    let paused = console
        .post_form("/admin/schedules/morning/pause", Some(&op.cookie), &csrf)
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    assert!(console.paused("morning").await);
    let audit = console.last_audit().await;
    assert_eq!(
        (
            audit.actor.as_str(),
            audit.action.as_str(),
            audit.target.as_str()
        ),
        ("op", "schedule.pause", "morning")
    );
    let page = console.get("/admin/schedules/morning", Some(&op)).await;
    assert!(page.body.contains("id=\"schedule-resume\""));

    let resumed = console
        .post_form("/admin/schedules/morning/resume", Some(&op.cookie), &csrf)
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert!(!console.paused("morning").await);
    assert_eq!(console.last_audit().await.action, "schedule.resume");

    let outbox_before = console.count("select count(*) from outbox").await;
    let ran = console
        .post_form("/admin/schedules/morning/run", Some(&op.cookie), &csrf)
        .await;
    assert_eq!(ran.status, StatusCode::SEE_OTHER, "{}", ran.body);
    let location = ran.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/admin/schedules/morning?ran="),
        "{location}"
    );
    // One row for the webhook chat, one owner-confirmed mass message for the customer group.
    assert_eq!(
        console.count("select count(*) from outbox").await,
        outbox_before + 2
    );
    assert_eq!(
        console
            .count(
                "select count(*) from schedule_runs where kind = 'manual' and schedule = 'morning'"
            )
            .await,
        1
    );
    assert_eq!(
        console
            .count("select count(*) from schedule_deliveries")
            .await,
        2
    );
    let audit = console.last_audit().await;
    assert_eq!(
        (audit.action.as_str(), audit.target.as_str()),
        ("schedule.run_now", "morning")
    );
    // The run and its per-chat outcomes show on the schedule's page.
    let page = console.get(&location, Some(&op)).await;
    assert!(page.body.contains("id=\"run-started\""), "{}", page.body);
    assert!(page.body.contains("wrWeb") && page.body.contains("wrOgAA1"));
    assert!(
        page.body.contains("2025-03-10 12:00 CST"),
        "run time in community time"
    );
    assert!(
        page.body.contains("outcome-pending")
            || page.body.contains("outcome-awaiting_confirmation")
    );

    // Preview renders each target chat's text and sends nothing.
    let outbox_before = console.count("select count(*) from outbox").await;
    let preview = console
        .post_form("/admin/schedules/morning/preview", Some(&op.cookie), &csrf)
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(
        preview.body.contains("早上好，技术交流群！"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("早上好，好物分享1群！"));
    assert_eq!(
        console.count("select count(*) from outbox").await,
        outbox_before
    );
    assert_eq!(console.last_audit().await.action, "schedule.preview");
}

#[tokio::test]
async fn a_skipped_chat_shows_its_reason_in_the_run_history() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    // A smart-bot chat without a robot cannot receive pushes.
    let mut conn = console.pool.acquire().await.unwrap();
    store::chats::upsert_chat(
        &mut conn,
        &store::chats::NewChat {
            chat_id: "wrBot".into(),
            name: "机器人群".into(),
            route: ChatRoute::internal_with_smart_bot("bot"),
            owner: None,
            admins: vec![],
            tags: vec![],
            member_version: None,
        },
        start(),
    )
    .await
    .unwrap();
    drop(conn);
    let ran = console
        .post_form(
            "/admin/schedules/morning/run",
            Some(&op.cookie),
            &[("csrf", &op.csrf)],
        )
        .await;
    assert_eq!(ran.status, StatusCode::SEE_OTHER);
    let page = console.get("/admin/schedules/morning", Some(&op)).await;
    assert!(page.body.contains("outcome-skipped"), "{}", page.body);
    assert!(page.body.contains("已跳过"));
}

#[tokio::test]
async fn revoking_a_strike_without_a_reason_is_refused_at_the_field() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let strike = console.strike_id("wmAlice").await;
    let before = console.queue_state().await;
    for reason in ["", "   "] {
        let reply = console
            .post_form(
                &format!("/admin/moderation/strikes/{strike}/revoke"),
                Some(&op.cookie),
                &[("csrf", &op.csrf), ("reason", reason)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            reply
                .body
                .contains(&format!("id=\"strike-{strike}-error\"")),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("必须填写原因"));
        assert!(reply.body.contains("aria-invalid=\"true\""));
    }
    assert!(!console.strike_revoked(strike).await);
    assert_eq!(console.queue_state().await, before, "nothing changed");
}

#[tokio::test]
async fn revoking_a_strike_with_a_reason_deactivates_it_and_is_audited() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let strike = console.strike_id("wmAlice").await;
    let page = console.get("/admin/moderation", Some(&op)).await;
    assert!(page.body.contains(&format!("id=\"revoke-{strike}\"")));
    let reply = console
        .post_form(
            &format!("/admin/moderation/strikes/{strike}/revoke"),
            Some(&op.cookie),
            &[("csrf", &op.csrf), ("reason", "误判：是活动通知")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(console.strike_revoked(strike).await);
    let audit = console.last_audit().await;
    assert_eq!(audit.action, "strike.revoke");
    assert_eq!(audit.target, "wmAlice");
    assert!(audit.detail.contains("误判：是活动通知"));
    // Gone from the queue; on the member's profile as revoked, with the audit entry.
    let page = console.get("/admin/moderation", Some(&op)).await;
    assert!(!page.body.contains(&format!("id=\"revoke-{strike}\"")));
    let profile = console.get("/admin/members/wmAlice", Some(&op)).await;
    assert!(profile.body.contains("strike-revoked"), "{}", profile.body);
    assert!(profile.body.contains("误判：是活动通知"));
    assert!(profile.body.contains("strike.revoke"));
    // Revoking twice is refused.
    let again = console
        .post_form(
            &format!("/admin/moderation/strikes/{strike}/revoke"),
            Some(&op.cookie),
            &[("csrf", &op.csrf), ("reason", "again")],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_strike_can_be_revoked_from_the_member_profile() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    let strike = console.strike_id("wmAlice").await;
    let form = format!("id=\"member-revoke-{strike}\"");
    assert!(console
        .get("/admin/members/wmAlice", Some(&op))
        .await
        .body
        .contains(&form));
    assert!(!console
        .get("/admin/members/wmAlice", Some(&viewer))
        .await
        .body
        .contains(&form));
    // Afterwards the manager is back on the profile (see `back_to` for the rest).
    let reply = console
        .post_form(
            &format!("/admin/moderation/strikes/{strike}/revoke"),
            Some(&op.cookie),
            &[
                ("csrf", &op.csrf),
                ("reason", "申诉通过"),
                ("back", "/admin/members/wmAlice"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.headers[header::LOCATION], "/admin/members/wmAlice");
    assert!(console.strike_revoked(strike).await);
    let profile = console.get("/admin/members/wmAlice", Some(&op)).await;
    assert!(!profile.body.contains(&form));
    assert!(profile.body.contains("申诉通过"));
}

#[tokio::test]
async fn marking_a_task_done_keeps_the_note_and_is_audited() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let task = console.first_task_id().await;
    let page = console.get("/admin/moderation", Some(&op)).await;
    assert!(page.body.contains(&format!("id=\"task-{task}\"")));
    let reply = console
        .post_form(
            &format!("/admin/moderation/tasks/{task}/done"),
            Some(&op.cookie),
            &[("csrf", &op.csrf), ("note", "已提醒")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        console
            .count(
                "select count(*) from moderation_tasks where status = 'done' and note = '已提醒'"
            )
            .await,
        1
    );
    let audit = console.last_audit().await;
    assert_eq!(
        (audit.action.as_str(), audit.target.as_str()),
        ("moderation_task.done", "wmAlice")
    );
    let page = console.get("/admin/moderation", Some(&op)).await;
    assert!(page.body.contains("id=\"no-tasks\""));
    assert!(
        page.body.contains("task done: 已提醒"),
        "the log shows the review"
    );
}

#[tokio::test]
async fn a_report_shows_its_reporters_and_can_strike_the_reported_member() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let page = console.get("/admin/moderation", Some(&op)).await;
    assert!(
        page.body.contains("id=\"report-wrOgAA1-42\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("wmAlice, wmCarol"));
    assert!(page.body.contains("href=\"/admin/members/wmBob\""));
    let form = |reason: &'static str| {
        vec![
            ("csrf", op.csrf.clone()),
            ("chat_id", "wrOgAA1".to_owned()),
            ("fingerprint", "42".to_owned()),
            ("action", "strike".to_owned()),
            ("reason", reason.to_owned()),
        ]
    };
    let before = console.queue_state().await;
    let pairs = form("");
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = console
        .post_form("/admin/moderation/reports", Some(&op.cookie), &pairs)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("id=\"report-wrOgAA1-42-error\""));
    assert_eq!(console.queue_state().await, before);

    let pairs = form("广告");
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = console
        .post_form("/admin/moderation/reports", Some(&op.cookie), &pairs)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        console
            .count("select count(*) from moderation_strikes where user_id = 'wmBob' and revoked_at is null")
            .await,
        1
    );
    assert_eq!(
        console
            .count("select count(*) from moderation_reports where handled_at is null")
            .await,
        0
    );
    let audit = console.last_audit().await;
    assert_eq!(
        (audit.action.as_str(), audit.target.as_str()),
        ("report.strike", "wmBob")
    );
    let profile = console.get("/admin/members/wmBob", Some(&op)).await;
    assert!(profile.body.contains("strike-active"));
    assert!(profile.body.contains("strike by op"));
}

#[tokio::test]
async fn the_moderation_log_exports_as_csv() {
    let console = queue_console().await;
    let (viewer, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .get("/admin/export/moderation.csv", Some(&viewer))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let lines: Vec<&str> = reply.body.lines().collect();
    assert_eq!(
        lines[0],
        "id,at,chat_id,user_id,rule,category,severity,matched,excerpt,action_taken,dry_run,reviewed_by,review_note"
    );
    assert_eq!(lines.len(), 2, "{}", reply.body);
    assert!(
        lines[1]
            .contains(",wrOgAA1,wmAlice,term,ads,high,加微信,加微信领红包,\"warn,strike\",false,"),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn the_moderation_log_filters_by_member_and_action() {
    let console = queue_console().await;
    let (viewer, token) = console.session_for("viewer", Role::Viewer).await;
    let all = console.get("/admin/moderation", Some(&viewer)).await;
    assert_eq!(all.body.matches("class=\"log-entry\"").count(), 1);
    assert!(
        all.body.contains(" CST</td>"),
        "times in the community timezone"
    );
    assert!(!all.body.contains("id=\"revoke-"), "viewers get no forms");
    let by_member = console
        .get(
            "/admin/moderation?member=wmAlice&action=strike",
            Some(&viewer),
        )
        .await;
    assert_eq!(by_member.body.matches("class=\"log-entry\"").count(), 1);
    let other = console
        .get("/admin/moderation?member=wmBob", Some(&viewer))
        .await;
    assert!(other.body.contains("id=\"no-log\""));
    let api = console
        .api(
            Method::GET,
            "/admin/api/v1/moderation/log?action=ban",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(api.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_api_lists_schedules_and_refuses_a_revoke_without_reason() {
    let console = queue_console().await;
    let (_, token) = console.session_for("op", Role::Operator).await;
    let list = console
        .api(Method::GET, "/admin/api/v1/schedules", Some(&token), "")
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(json["schedules"][0]["name"], "morning");
    assert_eq!(
        json["schedules"][0]["next_fires"][0]["local"],
        "2025-03-11 09:00 CST"
    );
    let detail = console
        .api(
            Method::GET,
            "/admin/api/v1/schedules/morning",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    let strikes = console
        .api(
            Method::GET,
            "/admin/api/v1/moderation/strikes",
            Some(&token),
            "",
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&strikes.body).unwrap();
    let strike = json["strikes"][0]["id"].as_i64().unwrap();
    let refused = console
        .api(
            Method::POST,
            &format!("/admin/api/v1/moderation/strikes/{strike}/revoke"),
            Some(&token),
            r#"{"reason": ""}"#,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let json: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(json["field"], "reason");
    assert!(!console.strike_revoked(strike).await);
    let tasks = console
        .api(
            Method::GET,
            "/admin/api/v1/moderation/tasks",
            Some(&token),
            "",
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&tasks.body).unwrap();
    assert_eq!(json["tasks"][0]["assignees"][0], "xiaomei");
    let preview = console
        .api(
            Method::POST,
            "/admin/api/v1/schedules/morning/preview",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("早上好，技术交流群！"));
}

/// Every new mutating form route, the form it needs.
async fn queue_form_routes(console: &Console) -> Vec<(String, Vec<(&'static str, String)>)> {
    let strike = console.strike_id("wmAlice").await;
    let task = console.first_task_id().await;
    vec![
        ("/admin/schedules/morning/pause".into(), vec![]),
        ("/admin/schedules/morning/resume".into(), vec![]),
        ("/admin/schedules/morning/run".into(), vec![]),
        ("/admin/schedules/morning/preview".into(), vec![]),
        (
            format!("/admin/moderation/strikes/{strike}/revoke"),
            vec![("reason", "误判".into())],
        ),
        (
            format!("/admin/moderation/tasks/{task}/done"),
            vec![("note", "ok".into())],
        ),
        (
            "/admin/moderation/reports".into(),
            vec![
                ("chat_id", "wrOgAA1".into()),
                ("fingerprint", "42".into()),
                ("action", "dismiss".into()),
                ("reason", "不是广告".into()),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_role_against_every_new_form_route() {
    for role in [Role::Viewer, Role::Operator, Role::Owner] {
        let console = queue_console().await;
        let (session, _) = console.session_for(role.as_str(), role).await;
        for (path, fields) in queue_form_routes(&console).await {
            let before = console.queue_state().await;
            let forged = with_csrf(&fields, "forged");
            let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = console
                .post_form(&path, Some(&session.cookie), &forged)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{path} forged as {role:?}"
            );
            let anonymous = console.post_form(&path, None, &forged).await;
            assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(
                console.queue_state().await,
                before,
                "{path}: refused but changed"
            );

            let good = with_csrf(&fields, &session.csrf);
            let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = console.post_form(&path, Some(&session.cookie), &good).await;
            if role >= Role::Operator {
                assert!(
                    reply.status.is_success() || reply.status.is_redirection(),
                    "{path} as {role:?}: {} {}",
                    reply.status,
                    reply.body
                );
                assert!(
                    console.count("select count(*) from admin_audit").await > before[0],
                    "{path} as {role:?} not audited"
                );
                assert_eq!(console.last_audit().await.actor, role.as_str());
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} as viewer");
                assert_eq!(
                    console.queue_state().await,
                    before,
                    "{path} as viewer changed"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_role_against_every_new_api_call() {
    for role in [Role::Viewer, Role::Operator, Role::Owner] {
        let console = queue_console().await;
        let (_, token) = console.session_for(role.as_str(), role).await;
        let strike = console.strike_id("wmAlice").await;
        let task = console.first_task_id().await;
        let calls = [
            ("/admin/api/v1/schedules/morning/pause".to_owned(), String::new()),
            ("/admin/api/v1/schedules/morning/resume".to_owned(), String::new()),
            ("/admin/api/v1/schedules/morning/run".to_owned(), String::new()),
            ("/admin/api/v1/schedules/morning/preview".to_owned(), String::new()),
            (
                format!("/admin/api/v1/moderation/strikes/{strike}/revoke"),
                r#"{"reason": "误判"}"#.to_owned(),
            ),
            (
                format!("/admin/api/v1/moderation/tasks/{task}/done"),
                r#"{"note": "ok"}"#.to_owned(),
            ),
            (
                "/admin/api/v1/moderation/reports".to_owned(),
                r#"{"chat_id": "wrOgAA1", "fingerprint": 42, "action": "strike", "reason": "广告"}"#
                    .to_owned(),
            ),
        ];
        for (path, body) in calls {
            let before = console.queue_state().await;
            let anonymous = console.api(Method::POST, &path, None, &body).await;
            assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
            let reply = console.api(Method::POST, &path, Some(&token), &body).await;
            if role >= Role::Operator {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{path} as {role:?}: {}",
                    reply.body
                );
                assert!(
                    console.count("select count(*) from admin_audit").await > before[0],
                    "{path} not audited"
                );
                assert_eq!(console.last_audit().await.actor, "api:test");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} as viewer");
                assert_eq!(
                    console.queue_state().await,
                    before,
                    "{path} as viewer changed"
                );
            }
        }
    }
}

// --- per-IP login throttling ----------------------------------------------------------

impl Console {
    /// A sign-in through the form, from peer `ip` (a loopback address the
    /// test client binds to, so the server sees it as the peer).
    async fn sign_in_from(&self, ip: &str, username: &str, password: &str) -> Reply {
        self.sign_in_via(ip, None, username, password).await
    }

    /// A sign-in from peer `ip`, optionally through a proxy that sent `forwarded_for`.
    async fn sign_in_via(
        &self,
        ip: &str,
        forwarded_for: Option<&str>,
        username: &str,
        password: &str,
    ) -> Reply {
        let headers: Vec<(&str, &str)> = forwarded_for
            .map(|value| ("x-forwarded-for", value))
            .into_iter()
            .collect();
        self.client
            .reached_from(ip)
            .sign_in_with(&headers, username, password)
            .await
    }
}

#[tokio::test]
async fn twenty_failures_from_one_address_throttle_it_across_usernames() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    // 20 failures spread over usernames, each below its own limit of 5.
    for i in 0..20 {
        let reply = console
            .sign_in_from("127.0.0.9", &format!("guess{}", i % 5), "wrong password!")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {}", i + 1);
    }
    // The 21st attempt from that address is refused, even for a fresh username
    // with the right password; it is counted, not written to the audit log.
    let audited = console.count("select count(*) from admin_audit").await;
    let throttled = console
        .sign_in_from("127.0.0.9", "mei", "correct horse battery")
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        throttled.body.contains("id=\"login-form\""),
        "the login page again"
    );
    assert!(set_cookie_pair(&throttled, auth::SESSION_COOKIE).is_none());
    assert_eq!(
        console.count("select count(*) from admin_audit").await,
        audited
    );
    // Another address is not affected.
    let elsewhere = console
        .sign_in_from("127.0.0.5", "mei", "correct horse battery")
        .await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);
    // After the window the address may try again.
    console.clock.advance(chrono::Duration::minutes(16));
    let later = console
        .sign_in_from("127.0.0.9", "mei", "correct horse battery")
        .await;
    assert_eq!(later.status, StatusCode::SEE_OTHER);
}

/// Through `App::serve` on a real socket: the peer address reaches the login
/// handler, and `[admin] login_failures_per_ip` is honoured.
#[tokio::test]
async fn the_served_app_throttles_by_peer_address() {
    let app = TestApp::start(
        TestConfig::new()
            .starting_at(start())
            .with(|c| c.admin.login_failures_per_ip = 2),
    )
    .await;
    create_user(&app.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    let console = app.console();
    let attempt = |username: &'static str, password: &'static str| {
        let console = console.clone();
        async move { console.sign_in(username, password).await.status }
    };
    assert_eq!(
        attempt("a", "wrong password!").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("b", "wrong password!").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("mei", "correct horse battery").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

#[tokio::test]
async fn new_pages_and_api_reads_need_a_session_or_a_token() {
    let console = queue_console().await;
    let (viewer, token) = console.session_for("viewer", Role::Viewer).await;
    for path in [
        "/admin/schedules",
        "/admin/schedules/morning",
        "/admin/moderation",
    ] {
        let anonymous = console.get(path, None).await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{path}");
        let reply = console.get(path, Some(&viewer)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert!(
            !reply.body.contains("name=\"reason\""),
            "{path} shows a form to a viewer"
        );
    }
    for path in [
        "/admin/api/v1/schedules",
        "/admin/api/v1/schedules/morning",
        "/admin/api/v1/moderation/tasks",
        "/admin/api/v1/moderation/strikes",
        "/admin/api/v1/moderation/reports",
        "/admin/api/v1/moderation/log",
    ] {
        for bad in [None, Some("qy_forged")] {
            let reply = console.api(Method::GET, path, bad, "").await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(!reply.body.contains("wmAlice"));
        }
        let reply = console.api(Method::GET, path, Some(&token), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_schedule_page_shows_sent_and_failed_chats_and_the_variant_report() {
    let console = queue_console().await;
    let promo = format!(
        "{}\n[[schedules]]\nname = \"promo\"\ncron = \"0 0 9 * * *\"\n\n[schedules.targets]\nall_chats = true\n\n[[schedules.variants]]\nname = \"A\"\nweight = 1\ncontent = {{ kind = \"text\", body = \"A: {{{{ chat.name }}}}\" }}\n\n[[schedules.variants]]\nname = \"B\"\nweight = 1\ncontent = {{ kind = \"text\", body = \"B: {{{{ chat.name }}}}\" }}\n",
        valid_rules(5)
    );
    {
        let mut conn = console.pool.acquire().await.unwrap();
        store::rule_sets::save(&mut conn, &promo, start())
            .await
            .unwrap();
    }
    let (op, token) = console.session_for("op", Role::Operator).await;
    let ran = console
        .api(
            Method::POST,
            "/admin/api/v1/schedules/promo/run",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.body);
    // The sender's results: the webhook chat got it, the mass message died.
    sqlx::query(
        "update outbox set status = case route when 'webhook' then 'sent' else 'dead' end,
             sent_at = case route when 'webhook' then ? end,
             last_error = case route when 'webhook' then null else 'errcode 41063' end
         where idempotency_key like 'push:promo:%'",
    )
    .bind(start().timestamp())
    .execute(&console.pool)
    .await
    .unwrap();
    let page = console.get("/admin/schedules/promo", Some(&op)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("outcome-sent"), "{}", page.body);
    assert!(page.body.contains("outcome-failed"));
    assert!(page.body.contains("errcode 41063"));
    assert!(page.body.contains("id=\"variant-report\""));
    let detail = console
        .api(
            Method::GET,
            "/admin/api/v1/schedules/promo",
            Some(&token),
            "",
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&detail.body).unwrap();
    let delivered: i64 = json["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["deliveries"].as_i64().unwrap())
        .sum();
    assert_eq!(delivered, 1, "{json}");
    assert_eq!(json["runs"][0]["totals"]["sent"], 1);
    assert_eq!(json["runs"][0]["totals"]["failed"], 1);
    assert_eq!(json["schedule"]["variants"], serde_json::json!(["A", "B"]));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_forwarded_address_is_counted() {
    let console = console_with(TestConfig::new().with(|c| {
        c.admin.login_failures_per_ip = 2;
        c.admin.trust_forwarded_for = true;
    }))
    .await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    // Every request comes from the proxy; the client in front of it is the last entry.
    let proxy = "127.0.0.2";
    for user in ["a", "b"] {
        let reply = console
            .sign_in_via(
                proxy,
                Some("6.6.6.6, 198.51.100.9"),
                user,
                "wrong password!",
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // A spoofed left-hand entry does not help the throttled client.
    let spoofed = console
        .sign_in_via(
            proxy,
            Some("7.7.7.7, 198.51.100.9"),
            "mei",
            "correct horse battery",
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    // Other clients behind the same proxy are not throttled.
    let other = console
        .sign_in_via(proxy, Some("127.0.0.5"), "mei", "correct horse battery")
        .await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
}

/// Guessing one name from one address slows that address down, doubling the
/// wait after each further failure; the owner signing in from elsewhere is
/// not held up at all, owners get one `login.delayed` notice, and refused
/// attempts are counted, not each audited.
#[tokio::test]
async fn guesses_slow_the_guessing_address_down_but_never_lock_the_owner_out() {
    let console = console().await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    let guesser = "127.0.0.9";
    for i in 0..5 {
        let reply = console
            .sign_in_from(guesser, "mei", "wrong password!")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "guess {}", i + 1);
    }
    let notices = "select count(*) from admin_audit where action = 'login.delayed'";
    assert_eq!(console.count(notices).await, 1);
    let audited = console.count("select count(*) from admin_audit").await;
    for _ in 0..3 {
        let reply = console
            .sign_in_from(guesser, "mei", "correct horse battery")
            .await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    }
    assert_eq!(
        console.count("select count(*) from admin_audit").await,
        audited,
        "throttled attempts are not audited one by one"
    );
    // The owner, elsewhere, signs in at once.
    let owner = console
        .sign_in_from("127.0.0.5", "mei", "correct horse battery")
        .await;
    assert_eq!(owner.status, StatusCode::SEE_OTHER, "{}", owner.body);
    // The guesser may try again after the wait; the next wait is twice as long.
    console.clock.advance(chrono::Duration::seconds(1));
    let reply = console
        .sign_in_from(guesser, "mei", "wrong password!")
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = console
        .sign_in_from(guesser, "mei", "wrong password!")
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers[header::RETRY_AFTER], "2");
    assert_eq!(console.count(notices).await, 1, "one notice per burst");
}

/// One IPv6 client holds a whole /64: its addresses are throttled together.
#[tokio::test]
async fn ipv6_clients_are_throttled_by_their_64_network() {
    let console = console_with(TestConfig::new().with(|c| {
        c.admin.login_failures_per_ip = 2;
        c.admin.trust_forwarded_for = true;
    }))
    .await;
    create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    let proxy = "127.0.0.2";
    for (client, user) in [("2001:db8:1:2::a", "a"), ("2001:db8:1:2:ffff::b", "b")] {
        let reply = console
            .sign_in_via(proxy, Some(client), user, "wrong password!")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let same_network = console
        .sign_in_via(
            proxy,
            Some("2001:db8:1:2:1234::c"),
            "mei",
            "correct horse battery",
        )
        .await;
    assert_eq!(same_network.status, StatusCode::TOO_MANY_REQUESTS);
    let other_network = console
        .sign_in_via(
            proxy,
            Some("2001:db8:1:3::c"),
            "mei",
            "correct horse battery",
        )
        .await;
    assert_eq!(other_network.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_new_pages_speak_english_after_the_switch() {
    let console = queue_console().await;
    let (op, _) = console.session_for("op", Role::Operator).await;
    let english = Session {
        cookie: format!("{}; {}=en", op.cookie, auth::LANG_COOKIE),
        csrf: op.csrf.clone(),
    };
    let schedules = console.get("/admin/schedules", Some(&english)).await;
    assert!(schedules.body.contains("Next fires"), "{}", schedules.body);
    let schedule = console
        .get("/admin/schedules/morning", Some(&english))
        .await;
    assert!(schedule.body.contains("Run now") && schedule.body.contains("Preview"));
    let moderation = console.get("/admin/moderation", Some(&english)).await;
    assert!(
        moderation.body.contains("Active strikes") && moderation.body.contains("Revoke strike")
    );
    let chinese = console.get("/admin/moderation", Some(&op)).await;
    assert!(chinese.body.contains("生效中的警告") && chinese.body.contains("撤销警告"));
}
