//! HTTP-level tests of the web console: sign-in, sessions, CSRF, rate limits,
//! every role against every mutating route and API call, and the audit log.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use qunyun::admin::{self, auth, AdminSettings, AdminState, Role};
use qunyun::clock::ManualClock;
use qunyun::rules::event::JoinScene;
use qunyun::rules::ChatRoute;
use qunyun::store::{self, admin as q};
use sqlx::SqlitePool;
use tower::ServiceExt;

struct Console {
    router: Router,
    pool: SqlitePool,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A signed-in browser: its session cookie and the session's CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 4, 0, 0).unwrap()
}

async fn console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&dir.path().join("admin.db")).await.unwrap();
    let clock = ManualClock::new(start());
    let state = AdminState::new(pool.clone(), clock.clone(), AdminSettings::default()).unwrap();
    seed(&pool).await;
    Console {
        router: admin::router(state),
        pool,
        clock,
        _dir: dir,
    }
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
            route: ChatRoute::CustomerGroup { robot_key: None },
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
            kind: "change_external_chat",
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
        "[community]\nname = \"好物分享社群\"\ntimezone = \"Asia/Shanghai\"\n\n[checkin]\nkeywords = [\"签到\"]\nbase_points = {base_points}\n"
    )
}

impl Console {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> Reply {
        let mut request = Request::get(path);
        if let Some(s) = session {
            request = request.header(header::COOKIE, &s.cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn api(&self, method: Method, path: &str, token: Option<&str>, json: &str) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from(json.to_owned())).unwrap())
            .await
    }

    /// A user with `role` and a live session (bypassing the password form,
    /// which has its own tests).
    async fn session_for(&self, username: &str, role: Role) -> (Session, String) {
        let mut conn = self.pool.acquire().await.unwrap();
        let now = self.clock_now();
        let id = match q::user_by_name(&mut conn, username).await.unwrap() {
            Some(user) => user.id,
            None => q::insert_user(&mut conn, username, "x", role.as_str(), now)
                .await
                .unwrap()
                .unwrap(),
        };
        let secret = auth::start_session(&mut conn, id, now, 3600).await.unwrap();
        let live = q::live_session(&mut conn, &auth::hash_secret(&secret), now)
            .await
            .unwrap()
            .unwrap();
        let token = auth::issue_api_token(&mut conn, id, "test", now)
            .await
            .unwrap();
        (
            Session {
                cookie: format!("{}={secret}", auth::SESSION_COOKIE),
                csrf: live.csrf_token,
            },
            token,
        )
    }

    fn clock_now(&self) -> i64 {
        use qunyun::clock::Clock;
        self.clock.now().timestamp()
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

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn hidden_value<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page"))
        + marker.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

fn set_cookie_pair(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// Signs in through the login form, as a browser would.
async fn sign_in(console: &Console, username: &str, password: &str) -> Reply {
    let form = console.get("/admin/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let login_cookie = set_cookie_pair(&form, auth::LOGIN_CSRF_COOKIE).unwrap();
    let csrf = hidden_value(&form.body, "csrf").to_owned();
    console
        .post_form(
            "/admin/login",
            Some(&login_cookie),
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
        .await
}

// --- sign-in, sessions ------------------------------------------------------------

#[tokio::test]
async fn owner_signs_in_with_password_and_sees_the_dashboard() {
    let console = console().await;
    admin::create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
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
    admin::create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
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
    admin::create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
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
            path: "/admin/users".into(),
            need: Role::Owner,
            fields: vec![
                ("username", "newbie".into()),
                ("password", "long enough password".into()),
                ("role", "viewer".into()),
            ],
        },
        FormRoute {
            path: "/admin/tokens".into(),
            need: Role::Owner,
            fields: vec![("label", "crm".into())],
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
    // The problem sits right under line 7 (base_points), naming the field.
    let line = reply.body.find("id=\"line-7\"").expect("annotated line 7");
    let error = reply
        .body
        .find("data-line=\"7\"")
        .expect("error placed at line 7");
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
    let request = Request::get("/admin/lang/en")
        .header(header::REFERER, "http://127.0.0.1:1/admin/chats")
        .body(Body::empty())
        .unwrap();
    let reply = console.send(request).await;
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
    assert_eq!(json["problems"][0]["line"], 7);
}

#[tokio::test]
async fn create_user_refuses_duplicates_and_weak_passwords() {
    let console = console().await;
    admin::create_user(&console.pool, "mei", "correct horse battery", Role::Owner)
        .await
        .unwrap();
    assert!(
        admin::create_user(&console.pool, "mei", "another long password", Role::Viewer)
            .await
            .is_err()
    );
    assert!(
        admin::create_user(&console.pool, "lei", "short", Role::Viewer)
            .await
            .is_err()
    );
    let token = admin::create_api_token(&console.pool, "mei", "crm")
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
