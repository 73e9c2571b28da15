//! Issue 15: nobody forges a member, reaches our network, or locks out the
//! owner. Each test goes through the real server (or the real binary) and
//! looks at what WeCom, the inbox or the operator saw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use qunyun::admin::Role;
use qunyun::store::inbox::InboxKind;
use qunyun::store::outbox::OutboxStatus;
use qunyun::store::points;
use reqwest::header;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::config::{output, qunyun, rehearsal_config, text};
use crate::helpers::{spawn_app, spawn_app_with, Callback, TestApp};

/// WeCom's published sample EncodingAESKey (Tencent's sample programs).
const SAMPLE_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
/// Made with `openssl rand -base64 32 | tr -d '=+/' | cut -c1-43`.
const REAL_KEY: &str = "u4Hk9QzR2mWcX7pLs1VbN8dTfJ3yEa6GqK0oUiZ5rMn";

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

// ---- 1. no published or placeholder secrets ---------------------------------

#[tokio::test]
async fn serve_refuses_the_example_config_naming_each_placeholder_and_how_to_make_a_real_one() {
    let dir = TempDir::new().unwrap();
    let example = repo_file("config.example.toml").display().to_string();
    let db = dir.path().join("qunyun.db").display().to_string();
    let serve = |env: &[(&str, &str)]| {
        let mut command = qunyun(dir.path(), &["serve", "--config", &example]);
        command.env("QUNYUN_DATABASE__PATH", &db);
        for (key, value) in env {
            command.env(key, value);
        }
        output(command)
    };

    // As shipped, with only the secret filled in: the token is the first placeholder.
    let run = serve(&[("QUNYUN_WECOM__APPS__0__SECRET", "RealAppSecret0123456789")]).await;
    assert!(!run.status.success(), "the example config must not start");
    let stderr = text(&run.stderr);
    assert!(stderr.contains("wecom.apps[0].token"), "{stderr}");
    assert!(stderr.contains("openssl rand"), "{stderr}");

    // Each remaining placeholder, or WeCom's sample key, is named in turn.
    let mut env = vec![
        ("QUNYUN_WECOM__APPS__0__SECRET", "RealAppSecret0123456789"),
        ("QUNYUN_WECOM__APPS__0__TOKEN", "Tk3sP9aQ2wE7rY1uI5oL8kJ"),
    ];
    let steps = [
        (
            "wecom.apps[0].encoding_aes_key",
            ("QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY", SAMPLE_KEY),
        ),
        (
            "wecom.apps[0].encoding_aes_key",
            ("QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY", REAL_KEY),
        ),
        (
            "wecom.bots[0].token",
            ("QUNYUN_WECOM__BOTS__0__TOKEN", "Bt8mN2vC5xZ1aS4dF7gH0jK"),
        ),
        (
            "wecom.bots[0].encoding_aes_key",
            ("QUNYUN_WECOM__BOTS__0__ENCODING_AES_KEY", REAL_KEY),
        ),
    ];
    for (refused_field, fix) in steps {
        let run = serve(&env).await;
        let stderr = text(&run.stderr);
        assert!(!run.status.success(), "{refused_field}: {stderr}");
        assert!(
            stderr.contains(refused_field) && stderr.contains("openssl rand"),
            "expected {refused_field} to be named with a recipe: {stderr}"
        );
        env.push(fix);
    }
    // With everything real, the same file passes the offline check.
    let mut command = qunyun(dir.path(), &["check-config", "--config", &example]);
    command.env("QUNYUN_DATABASE__PATH", &db);
    for (key, value) in &env {
        command.env(key, value);
    }
    let run = output(command).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
}

#[tokio::test]
async fn the_published_sample_key_and_a_plain_http_api_base_are_refused_naming_the_field() {
    let dir = TempDir::new().unwrap();
    let cases = [
        (
            "QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY",
            SAMPLE_KEY,
            "wecom.apps[0].encoding_aes_key",
        ),
        (
            "QUNYUN_WECOM__API_BASE",
            "http://wecom-proxy.internal:8080/cgi-bin/",
            "wecom.api_base",
        ),
    ];
    for (var, value, field) in cases {
        let config = rehearsal_config().write(dir.path());
        let mut command = qunyun(
            dir.path(),
            &["serve", "--config", &config.display().to_string()],
        );
        command.env(var, value);
        let run = output(command).await;
        let stderr = text(&run.stderr);
        assert!(!run.status.success(), "{var}={value} started");
        assert!(stderr.contains(field), "{var}: {stderr}");
    }
}

#[test]
fn the_docker_image_does_not_ship_the_example_as_its_config() {
    let dockerfile = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    assert!(
        !dockerfile.contains("config.example.toml"),
        "the image must take its config from a mount or the environment"
    );
}

// ---- 2. outbound calls only to WeCom ------------------------------------------

/// A TCP listener that counts every connection: any contact is an SSRF.
async fn trap() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{addr}"), hits)
}

fn mention(msgid: &str, response_url: &str) -> String {
    serde_json::json!({
        "msgid": msgid, "aibotid": "AIBOT-IT", "chatid": "CHAT-IT", "chattype": "group",
        "from": {"userid": "wmA"}, "response_url": response_url,
        "msgtype": "text", "text": {"content": "@运营助手 签到"}
    })
    .to_string()
}

#[tokio::test]
async fn a_response_url_outside_the_wecom_base_is_never_contacted_and_the_row_is_dead() {
    let app = spawn_app().await;
    let (trap_base, hits) = trap().await;
    let base = app.config.wecom.api_base.clone(); // http://127.0.0.1:PORT/cgi-bin/
    let sim_origin = base.trim_end_matches("/cgi-bin/").to_owned();
    let port = sim_origin.rsplit(':').next().unwrap().to_owned();
    let forged = [
        format!("{trap_base}/cgi-bin/aibot/response?response_code=A"),
        format!("{trap_base}/"),
        format!("http://localhost:{port}/cgi-bin/aibot/response?response_code=B"),
        format!("{sim_origin}/cgi-bin/message/send?response_code=C"),
        format!("{sim_origin}/cgi-bin/aibot/response/../../sim/messages"),
        format!("http://user@127.0.0.1:{port}/cgi-bin/aibot/response?response_code=D"),
        format!("https://127.0.0.1:{port}/cgi-bin/aibot/response?response_code=E"),
        "file:///etc/passwd".to_owned(),
    ];
    for (i, url) in forged.iter().enumerate() {
        let response = app
            .post_event(Callback::Bot(mention(&format!("SSRF-{i}"), url)))
            .await;
        assert_eq!(response.status(), 200);
    }
    app.run_pipeline().await;
    app.drain_outbox().await;

    assert_eq!(hits.load(Ordering::SeqCst), 0, "the trap was contacted");
    let stats = app.sim().stats();
    assert_eq!(stats.calls_to("aibot/response"), 0);
    assert_eq!(stats.calls_to("message/send"), 0);
    let dead = app.outbox_rows(Some(OutboxStatus::Dead)).await;
    assert_eq!(dead.len(), forged.len(), "{dead:?}");
    for row in &dead {
        let reason = row.last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("response_url"), "{reason}");
        assert!(
            !reason.contains("response_code"),
            "reason leaks the code: {reason}"
        );
    }

    // The genuine one (same host, port and path as the API base) is answered.
    let code = app.sim().issue_response_code("AIBOT-IT", "CHAT-IT", true);
    app.post_event(Callback::Bot(mention(
        "GENUINE",
        &app.sim().response_url(&code),
    )))
    .await;
    app.run_pipeline().await;
    let delivered = app.drain_outbox().await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    app.stop().await;
}

// ---- 3. authentic but unparseable callbacks are kept --------------------------

#[tokio::test]
async fn an_authentic_callback_that_does_not_parse_is_kept_as_unknown_and_answered_200() {
    let app = spawn_app().await;
    let odd = [
        Callback::App("hello, not xml".to_owned()),
        Callback::App(format!(
            "<xml><ToUserName>x</ToUserName><MsgType>text</MsgType><MsgId>not-a-number</MsgId>\
             <CreateTime>{}</CreateTime><Content>hi</Content></xml>",
            app.now().timestamp()
        )),
        Callback::Bot("{\"msgtype\": 42}".to_owned()),
    ];
    let raws: Vec<String> = odd
        .iter()
        .map(|c| match c {
            Callback::App(t) | Callback::Bot(t) => t.clone(),
        })
        .collect();
    let unparsed_before = unparsed_count(&app).await;
    for callback in odd {
        let response = app.post_event(callback).await;
        assert_eq!(response.status(), 200);
    }
    // Counted for monitoring (other tests in this process may add to it too).
    assert!(unparsed_count(&app).await >= unparsed_before + raws.len() as u64);
    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), raws.len(), "{inbox:?}");
    for (row, raw) in inbox.iter().zip(&raws) {
        assert_eq!(row.kind, InboxKind::Unknown);
        let event: serde_json::Value = serde_json::from_str(&row.event_json).unwrap();
        assert_eq!(
            event["raw"].as_str(),
            Some(raw.as_str()),
            "{}",
            row.event_json
        );
    }
    // The pipeline passes over them without parking anything or sending.
    app.run_pipeline().await;
    assert!(app.drain_outbox().await.is_empty());
    app.stop().await;
}

/// `qunyun_callbacks_unparsed_total` as `/metrics` shows it (loopback: no token needed).
async fn unparsed_count(app: &TestApp) -> u64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("qunyun_callbacks_unparsed_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no unparsed counter in:\n{text}"))
}

// ---- 5. console ----------------------------------------------------------------

async fn login_cookie_header(app: &TestApp) -> String {
    let reply = app.console().get("/admin/login", None).await;
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn cookies_are_secure_by_default_unless_the_console_listens_on_loopback() {
    let public = spawn_app_with(|c| c.server.listen = "0.0.0.0:8080".into()).await;
    let cookies = login_cookie_header(&public).await;
    assert!(cookies.contains("; Secure"), "{cookies}");
    public.stop().await;

    let local = spawn_app().await; // listens on 127.0.0.1
    let cookies = login_cookie_header(&local).await;
    assert!(
        !cookies.is_empty() && !cookies.contains("Secure"),
        "{cookies}"
    );
    local.stop().await;

    let forced = spawn_app_with(|c| c.admin.secure_cookies = Some(true)).await;
    assert!(login_cookie_header(&forced).await.contains("; Secure"));
    forced.stop().await;
}

// ---- 6. CSV --------------------------------------------------------------------

#[tokio::test]
async fn csv_cells_a_spreadsheet_would_run_are_defused_including_tab_and_cr() {
    let app = spawn_app().await;
    let names = ["\t=HYPERLINK(1)", "\r=1+1", "@SUM(A1)", "=cmd", "+1-2"];
    for (i, name) in names.iter().enumerate() {
        qunyun::store::members::ensure_person(
            &mut *app.conn().await,
            &format!("wmCSV{i}"),
            Some(name),
            app.now(),
        )
        .await
        .unwrap();
    }
    let console = app.console();
    let (session, _) = console.session_for("viewer", Role::Viewer).await;
    let reply = console
        .get("/admin/export/members.csv", Some(&session))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    for name in names {
        assert!(
            reply.body.contains(&format!("'{name}")),
            "{name:?} not defused in {:?}",
            reply.body
        );
    }
    app.stop().await;
}

// ---- 7. bounded point adjustments ----------------------------------------------

#[tokio::test]
async fn a_points_adjustment_beyond_the_configured_bound_is_refused_naming_the_field() {
    let app = spawn_app_with(|c| c.admin.max_point_adjustment = 500).await;
    qunyun::store::members::ensure_person(&mut *app.conn().await, "wmA", None, app.now())
        .await
        .unwrap();
    let console = app.console();
    let (session, _) = console.session_for("op", Role::Operator).await;
    for delta in ["501", "-501", &i64::MAX.to_string(), &i64::MIN.to_string()] {
        let reply = console
            .post_as(
                "/admin/members/wmA/points",
                &session,
                &[("delta", delta), ("reason", "typo")],
            )
            .await;
        assert_ne!(reply.status, StatusCode::SEE_OTHER, "{delta} accepted");
        assert!(
            reply.body.contains("admin.max_point_adjustment"),
            "{delta}: {}",
            reply.body
        );
    }
    let balance = points::balance(&mut *app.conn().await, "wmA")
        .await
        .unwrap();
    assert_eq!(balance, 0);
    let ok = console
        .post_as(
            "/admin/members/wmA/points",
            &session,
            &[("delta", "500"), ("reason", "prize")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    app.stop().await;
}

// ---- 8. the simulator's secret stays off the command line ---------------------

#[tokio::test]
async fn sim_takes_its_secret_from_the_environment_not_the_command_line() {
    let dir = TempDir::new().unwrap();
    let on_command_line = qunyun(
        dir.path(),
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--corp-id",
            "ww1",
            "--secret",
            "s3cret",
        ],
    );
    let run = output(on_command_line).await;
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("--secret"),
        "{}",
        text(&run.stderr)
    );

    let missing = qunyun(
        dir.path(),
        &["sim", "--listen", "127.0.0.1:0", "--corp-id", "ww1"],
    );
    let run = output(missing).await;
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("QUNYUN_SIM_SECRET"),
        "{}",
        text(&run.stderr)
    );
}

// ---- 5. account controls -------------------------------------------------------

#[tokio::test]
async fn owners_disable_accounts_reset_passwords_end_sessions_and_expire_tokens() {
    let app = spawn_app().await;
    let console = app.console();
    let (_, owner_token) = console.session_for("boss", Role::Owner).await;
    qunyun::ops::accounts::create_user(
        &app.ops(),
        &qunyun::ops::Actor::new("boss", Role::Owner),
        app.now(),
        "op",
        "first password 1",
        Role::Operator,
    )
    .await
    .unwrap();
    let (op_session, op_token) = console.session_for("op", Role::Operator).await;
    let owner_api = |path: String, body: serde_json::Value| {
        let console = console.clone();
        let token = owner_token.clone();
        async move {
            console
                .api(
                    reqwest::Method::POST,
                    &path,
                    Some(&token),
                    &body.to_string(),
                )
                .await
        }
    };
    let signed_in = |session| {
        let console = console.clone();
        async move { console.get("/admin/chats", Some(&session)).await.status == StatusCode::OK }
    };
    let token_works = |token: String| {
        let console = console.clone();
        async move {
            console
                .api(
                    reqwest::Method::GET,
                    "/admin/api/v1/chats",
                    Some(&token),
                    "",
                )
                .await
                .status
                == StatusCode::OK
        }
    };
    assert!(signed_in(op_session.clone()).await);
    assert!(token_works(op_token.clone()).await);

    // Disable: sessions, tokens and the password all stop working.
    let reply = owner_api(
        "/admin/api/v1/users/op/disable".into(),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!signed_in(op_session.clone()).await);
    assert!(!token_works(op_token.clone()).await);
    let refused = console.sign_in("op", "first password 1").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // Enable again: the password works.
    let reply = owner_api(
        "/admin/api/v1/users/op/enable".into(),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        console.sign_in("op", "first password 1").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(token_works(op_token.clone()).await);

    // Reset the password: the old one is refused, sessions end.
    let (op_session, _) = console.session_for("op", Role::Operator).await;
    let reply = owner_api(
        "/admin/api/v1/users/op/password".into(),
        serde_json::json!({"password": "second password 2"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!signed_in(op_session).await);
    assert_eq!(
        console.sign_in("op", "first password 1").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        console.sign_in("op", "second password 2").await.status,
        StatusCode::SEE_OTHER
    );

    // End all sessions.
    let (op_session, _) = console.session_for("op", Role::Operator).await;
    let reply = owner_api(
        "/admin/api/v1/users/op/end-sessions".into(),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!signed_in(op_session).await);

    // A token that expires in one day.
    let reply = owner_api(
        "/admin/api/v1/tokens".into(),
        serde_json::json!({"username": "op", "label": "nightly", "expires_in_days": 1}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let expiring: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let expiring = expiring["token"].as_str().unwrap().to_owned();
    assert!(token_works(expiring.clone()).await);
    app.advance_clock(chrono::Duration::hours(25));
    assert!(!token_works(expiring).await);

    // Only owners may do any of this, nobody may disable themselves, and all is audited.
    let (_, op_token) = console.session_for("op", Role::Operator).await;
    let forbidden = console
        .api(
            reqwest::Method::POST,
            "/admin/api/v1/users/boss/disable",
            Some(&op_token),
            "{}",
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let audit = qunyun::store::admin::recent_audit(&mut *app.conn().await, None, 50)
        .await
        .unwrap();
    for action in [
        "user.disable",
        "user.enable",
        "user.reset_password",
        "user.end_sessions",
        "token.create",
    ] {
        assert!(
            audit.iter().any(|a| a.action == action),
            "{action} not audited"
        );
    }
    let own = qunyun::ops::accounts::set_disabled(
        &app.ops(),
        &qunyun::ops::Actor::new("boss", Role::Owner),
        app.now(),
        "boss",
        true,
    )
    .await;
    assert!(own.is_err());
    app.stop().await;
}
