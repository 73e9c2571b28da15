//! Verifiable lotteries through the real server and the simulator: the
//! commitment announced to the chat, keyword entries under the eligibility
//! rules (an ineligible member is told why), the draw at its time by the draw
//! job, the revealed seed recomputed by the real `qunyun lottery verify`
//! binary offline, prizes paid once however often the draw runs, item prizes
//! within stock, and entry points refunded when a lottery is cancelled.

use std::process::Output;

use chrono::Duration;
use qunyun::active_rules::ActiveRules;
use qunyun::jobs::lottery::LotteryDraws;
use qunyun::ops::chats::RouteChange;
use qunyun::ops::lottery::{self, LotteryInput};
use qunyun::ops::segments::SegmentFilter;
use qunyun::ops::{self, Actor, Role};
use qunyun::rules::lottery::Eligibility;
use qunyun::rules::segment_limit::SegmentRef;
use qunyun::sim::Route;
use qunyun::store::lottery::Prize;
use qunyun::store::{points, redemptions};

use crate::helpers::{spawn_app, ConfigFile, TestApp, APP};

const CHAT: &str = "CHAT-IT";
const ROBOT: &str = "robot-lottery";

pub(crate) fn manager() -> Actor {
    Actor::new("mei", Role::Operator)
}

/// A catalog with one 保温杯 in stock, and the bot's chat given a robot so
/// the announcement and the reveal are posted into it.
pub(crate) async fn community(app: &TestApp) {
    let body = format!(
        "[community]\napp = \"{APP}\"\n\n[[catalog]]\nitem = \"保温杯\"\ncost = 30\nstock = 1\n"
    );
    match ops::rules::apply(&app.ops(), &manager(), app.now(), &body)
        .await
        .unwrap()
    {
        ops::rules::Applied::Version(_) => {}
        ops::rules::Applied::Invalid(problems) => panic!("rule set refused: {problems:?}"),
    }
    // The first @-mention registers the chat as an internal group with the smart bot.
    app.mention_bot("M0", "zhangsan", "帮助").await;
    app.sim().add_robot(ROBOT, CHAT);
    let change = RouteChange {
        robot_key: Some(ROBOT.into()),
        ..RouteChange::default()
    };
    ops::chats::set_route(&app.ops(), &manager(), app.now(), CHAT, &change)
        .await
        .unwrap();
}

fn input(app: &TestApp, eligibility: Eligibility, prizes: Vec<Prize>) -> LotteryInput {
    LotteryInput {
        title: "周末福利".into(),
        chats: vec![CHAT.into()],
        tags: vec![],
        keyword: Some("抽奖".into()),
        eligibility,
        draw_at: app.now() + Duration::hours(1),
        prizes,
    }
}

/// Creates a lottery from [`input`] as the manager, now.
async fn create(app: &TestApp, eligibility: Eligibility, prizes: Vec<Prize>) -> lottery::Created {
    lottery::create(
        &app.ops(),
        &manager(),
        app.now(),
        &input(app, eligibility, prizes),
    )
    .await
    .unwrap()
}

fn points_prize(points: i64, winners: u32) -> Prize {
    Prize {
        name: "一等奖".into(),
        points,
        item: None,
        winners,
    }
}

fn draws(app: &TestApp) -> LotteryDraws {
    LotteryDraws::new(app.pool.clone(), ActiveRules::new())
}

async fn qunyun(args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qunyun"));
    command.args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
        command.env_remove(name);
    }
    tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
        .await
        .unwrap()
}

/// The `N. user` lines `qunyun lottery verify` prints, in order.
fn drawn_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (number, user) = line.split_once(". ")?;
            number.parse::<usize>().ok()?;
            Some(user.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn keyword_entries_follow_the_rules_and_the_draw_at_its_time_is_recomputed_by_the_cli() {
    let app = spawn_app().await;
    community(&app).await;
    let eligibility = Eligibility {
        checked_in_today: true,
        ..Eligibility::default()
    };
    let created = create(&app, eligibility, vec![points_prize(50, 2)]).await;
    assert_eq!(created.announced.len(), 1, "{:?}", created.announced);
    let announced = app.drain_outbox().await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        (announced[0].route, announced[0].target.as_str()),
        (Route::Webhook, CHAT)
    );
    assert!(
        announced[0]
            .text()
            .unwrap_or_default()
            .contains(&created.commitment),
        "the announcement publishes SHA-256(seed): {announced:?}"
    );
    // The seed stays secret until the draw.
    let before = lottery::show(&app.ops(), created.id).await.unwrap();
    assert_eq!(before.seed(), None);

    // lisi has not checked in today: told why, not entered.
    let refused = app.mention_bot("L1", "lisi", "抽奖").await;
    assert!(refused[0].contains("需要今天先签到"), "{refused:?}");
    for (i, user) in ["zhangsan", "wangwu", "zhaoliu", "sunqi"]
        .iter()
        .enumerate()
    {
        app.mention_bot(&format!("C{i}"), user, "签到").await;
        let entered = app.mention_bot(&format!("E{i}"), user, "抽奖").await;
        assert!(entered[0].contains("参加「周末福利」成功"), "{entered:?}");
    }
    let again = app.mention_bot("E9", "zhangsan", "抽奖").await;
    assert!(again[0].contains("已经参加"), "{again:?}");
    // The daily rollup counts the entries, in the chat and community-wide.
    let pass = app.analytics().run_once(app.now()).await.unwrap();
    let day = pass.last_day.expect("a rollup day");
    for chat in [qunyun::analytics::COMMUNITY, CHAT] {
        let rows = qunyun::store::analytics::daily_rows(&mut *app.conn().await, chat, day)
            .await
            .unwrap();
        assert_eq!(rows[0].lottery_entries, 4, "{chat}: {rows:?}");
    }

    // Not yet time: the job draws nothing.
    assert!(draws(&app).run_at(app.now()).await.unwrap().is_empty());
    app.advance_clock(Duration::hours(1));
    let drawn = draws(&app).run_at(app.now()).await.unwrap();
    assert_eq!(drawn.len(), 1);
    assert_eq!(drawn[0].entrants, 4);
    assert_eq!(drawn[0].winners.len(), 2);
    // The job running again draws nothing and pays nothing.
    assert!(draws(&app).run_at(app.now()).await.unwrap().is_empty());

    let view = lottery::show(&app.ops(), created.id).await.unwrap();
    assert_eq!(view.verification, Some(Ok(())));
    let seed = view.seed().expect("revealed").to_owned();
    let winners: Vec<String> = view.winners.iter().map(|w| w.user_id.clone()).collect();
    let sent = app.drain_outbox().await;
    let reveal = sent
        .iter()
        .find(|d| d.route == Route::Webhook)
        .expect("the reveal is posted to the chat");
    let reveal_text = reveal.text().unwrap_or_default();
    assert!(
        reveal_text.contains(&seed) && reveal_text.contains(&created.commitment),
        "{reveal_text}"
    );
    let mut told: Vec<&str> = sent
        .iter()
        .filter(|d| d.route == Route::AppMessage)
        .map(|d| d.target.as_str())
        .collect();
    told.sort_unstable();
    let mut expected: Vec<&str> = winners.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(told, expected, "each winner is told 1:1");
    for user in ["zhangsan", "wangwu", "zhaoliu", "sunqi"] {
        let prizes: Vec<i64> = points::entries_for(&mut *app.conn().await, user)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.reason == "lottery_prize")
            .map(|e| e.delta)
            .collect();
        let expected = if winners.iter().any(|w| w == user) {
            vec![50]
        } else {
            vec![]
        };
        assert_eq!(prizes, expected, "{user}");
    }

    // Anyone recomputes the winners offline with the real binary.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("entrants.txt");
    std::fs::write(&file, qunyun::rules::lottery::entrants_file(&view.entrants)).unwrap();
    let file = file.to_str().unwrap();
    let id = created.id.to_string();
    let verify = |commitment: String, file: String| {
        let (id, seed) = (id.clone(), seed.clone());
        async move {
            qunyun(&[
                "lottery",
                "verify",
                &id,
                "--seed",
                &seed,
                "--entrants",
                &file,
                "--commitment",
                &commitment,
                "--winners",
                "2",
            ])
            .await
        }
    };
    let out = verify(created.commitment.clone(), file.to_owned()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("commitment: ok"), "{stdout}");
    assert_eq!(drawn_lines(&stdout), winners);
    // A different commitment is caught.
    let wrong = verify("00".repeat(32), file.to_owned()).await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("FAILED"));
    // The entrant file the CLI prints is the one verified above, and the
    // database-backed check agrees with the recorded winners.
    let config = ConfigFile::default().write(app.dir());
    let config = config.to_str().unwrap();
    let listed = qunyun(&["lottery", "entrants", &id, "--config", config]).await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        std::fs::read_to_string(file).unwrap()
    );
    let recorded = qunyun(&["lottery", "verify", &id, "--config", config]).await;
    let stdout = String::from_utf8_lossy(&recorded.stdout);
    assert!(
        recorded.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    assert!(stdout.contains("ok: the revealed seed"), "{stdout}");
    app.stop().await;
}

#[tokio::test]
async fn prizes_are_paid_once_when_draws_race_and_item_prizes_respect_stock() {
    let app = spawn_app().await;
    community(&app).await;
    let prizes = vec![Prize {
        name: "实物奖".into(),
        points: 0,
        item: Some("保温杯".into()),
        winners: 2,
    }];
    let created = create(&app, Eligibility::default(), prizes).await;
    for (i, user) in ["zhangsan", "wangwu", "zhaoliu"].iter().enumerate() {
        let entered = app.mention_bot(&format!("E{i}"), user, "抽奖").await;
        assert!(entered.iter().any(|t| t.contains("成功")), "{entered:?}");
    }
    app.advance_clock(Duration::hours(2));
    let now = app.now();
    let (job_a, job_b, ops, actor) = (draws(&app), draws(&app), app.ops(), manager());
    let (first, second, manual) = tokio::join!(
        job_a.run_at(now),
        job_b.run_at(now),
        lottery::draw(&ops, &actor, now, created.id),
    );
    let draws_made = first.unwrap().len() + second.unwrap().len() + usize::from(manual.is_ok());
    assert_eq!(draws_made, 1, "one draw however many run");

    let view = lottery::show(&app.ops(), created.id).await.unwrap();
    let outcomes: Vec<&str> = view.winners.iter().map(|w| w.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        vec!["redeemed", "out_of_stock"],
        "one 保温杯 in stock"
    );
    let stock = redemptions::stock(&mut *app.conn().await).await.unwrap();
    assert_eq!(stock["保温杯"], 0);
    let pending = redemptions::list(&mut *app.conn().await, Some("pending"))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].user_id, view.winners[0].user_id);
    assert_eq!(view.verification, Some(Ok(())));
    app.stop().await;
}

#[tokio::test]
async fn entry_points_are_debited_once_and_refunded_when_the_lottery_is_cancelled() {
    let app = spawn_app().await;
    community(&app).await;
    for user in ["zhangsan", "lisi"] {
        qunyun::store::members::ensure_person(&mut *app.conn().await, user, None, app.now())
            .await
            .unwrap();
    }
    ops::points::adjust(&app.ops(), &manager(), app.now(), "zhangsan", 20, "活动")
        .await
        .unwrap();
    let eligibility = Eligibility {
        entry_cost: 15,
        ..Eligibility::default()
    };
    let created = create(&app, eligibility, vec![points_prize(100, 1)]).await;
    let paid = app.mention_bot("P1", "zhangsan", "抽奖").await;
    assert!(paid[0].contains("已扣 15 积分"), "{paid:?}");
    let twice = app.mention_bot("P2", "zhangsan", "抽奖").await;
    assert!(twice[0].contains("已经参加"), "{twice:?}");
    let poor = app.mention_bot("P3", "lisi", "抽奖").await;
    assert!(poor[0].contains("参加需要 15 积分"), "{poor:?}");
    let balance = |user: &'static str| {
        let app = &app;
        async move { points::balance(&mut *app.conn().await, user).await.unwrap() }
    };
    assert_eq!(balance("zhangsan").await, 5);

    let refunded = lottery::cancel(&app.ops(), &manager(), app.now(), created.id, "改期")
        .await
        .unwrap();
    assert_eq!(refunded, 1);
    assert_eq!(balance("zhangsan").await, 20);
    assert!(
        lottery::cancel(&app.ops(), &manager(), app.now(), created.id, "")
            .await
            .is_err(),
        "cancelled once"
    );
    // A cancelled lottery is never drawn.
    app.advance_clock(Duration::hours(2));
    assert!(draws(&app).run_at(app.now()).await.unwrap().is_empty());
    let audit = ops::audit::recent(&app.ops(), None, 20).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "lottery.cancel"),
        "{audit:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_console_creates_a_lottery_and_shows_the_seed_only_after_the_draw_with_its_check() {
    use axum::http::{Method, StatusCode};
    let app = spawn_app().await;
    community(&app).await;
    let console = app.console();
    let (session, token) = console.session_for("mei", Role::Operator).await;
    let draw_at = (app.now() + Duration::hours(1)).to_rfc3339();
    let created = console
        .post_as(
            "/admin/lotteries",
            &session,
            &[
                ("title", "周末福利"),
                ("chats", CHAT),
                ("keyword", "抽奖"),
                ("draw_at", &draw_at),
                ("prizes", "一等奖:points=20:winners=1"),
            ],
        )
        .await;
    assert_eq!(
        created.location(),
        Some("/admin/lotteries/1"),
        "{}",
        created.body
    );
    let page = console.get("/admin/lotteries/1", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("lottery-seed-secret"), "{}", page.body);
    let secret = lottery::show(&app.ops(), 1).await.unwrap().lottery.seed_hex;
    assert!(
        !page.body.contains(&secret),
        "the seed leaked before the draw"
    );
    let before = console
        .api(Method::GET, "/admin/api/v1/lotteries/1", Some(&token), "")
        .await;
    let before: serde_json::Value = serde_json::from_str(&before.body).unwrap();
    assert!(before["lottery"]["seed"].is_null(), "{before}");

    for (i, user) in ["zhangsan", "wangwu"].iter().enumerate() {
        app.mention_bot(&format!("E{i}"), user, "抽奖").await;
    }
    let (_, viewer_token) = console.session_for("guest", Role::Viewer).await;
    let refused = console
        .api(
            Method::POST,
            "/admin/api/v1/lotteries/1/draw",
            Some(&viewer_token),
            "",
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let drawn = console
        .api(
            Method::POST,
            "/admin/api/v1/lotteries/1/draw",
            Some(&token),
            "",
        )
        .await;
    assert_eq!(drawn.status, StatusCode::OK, "{}", drawn.body);
    let drawn: serde_json::Value = serde_json::from_str(&drawn.body).unwrap();
    assert_eq!(drawn["lottery"]["seed"], secret.as_str());
    assert_eq!(drawn["verified"], true, "{drawn}");
    assert_eq!(drawn["winners"].as_array().unwrap().len(), 1);

    let page = console.get("/admin/lotteries/1", Some(&session)).await;
    assert!(page.body.contains(&secret), "{}", page.body);
    assert!(
        page.body
            .contains("id=\"lottery-verification\" class=\"ok\""),
        "{}",
        page.body
    );
    let file = console
        .get("/admin/lotteries/1/entrants.txt", Some(&session))
        .await;
    assert_eq!(file.body, "wangwu\nzhangsan\n");
    app.stop().await;
}

#[tokio::test]
async fn the_console_buttons_draw_one_lottery_and_cancel_another() {
    let app = spawn_app().await;
    community(&app).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let created = create(&app, Eligibility::default(), vec![points_prize(40, 1)]).await;
        ids.push(created.id);
    }
    app.mention_bot("E1", "zhangsan", "抽奖").await;
    let console = app.console();
    let (session, _) = console.session_for("mei", Role::Operator).await;
    let status = |id: i64| {
        let app = &app;
        async move { lottery::show(&app.ops(), id).await.unwrap().lottery.status }
    };

    let draw = format!("/admin/lotteries/{}/draw", ids[0]);
    let no_csrf = console.post_form(&draw, Some(&session.cookie), &[]).await;
    assert_ne!(no_csrf.status, axum::http::StatusCode::SEE_OTHER);
    assert_eq!(status(ids[0]).await, "open");
    for (id, button, form, after) in [
        (ids[0], "draw", vec![], "drawn"),
        (ids[1], "cancel", vec![("reason", "改期")], "cancelled"),
    ] {
        let path = format!("/admin/lotteries/{id}/{button}");
        let reply = console.post_as(&path, &session, &form).await;
        let back = format!("/admin/lotteries/{id}");
        assert_eq!(reply.location(), Some(back.as_str()), "{}", reply.body);
        assert_eq!(status(id).await, after, "after {button}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_draw_that_fails_midway_leaves_nothing_and_the_next_pass_draws_once() {
    let app = spawn_app().await;
    community(&app).await;
    let created = create(&app, Eligibility::default(), vec![points_prize(40, 1)]).await;
    app.drain_outbox().await;
    for (i, user) in ["zhangsan", "wangwu"].iter().enumerate() {
        app.mention_bot(&format!("E{i}"), user, "抽奖").await;
    }
    app.advance_clock(Duration::hours(2));
    // The draw's last write (its audit row) fails, as a crash before COMMIT would.
    sqlx::query(
        "create trigger refuse_audit before insert on admin_audit
         begin select raise(abort, 'injected failure'); end",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(draws(&app).run_at(app.now()).await.is_err());
    let view = lottery::show(&app.ops(), created.id).await.unwrap();
    assert_eq!(view.lottery.status, "open");
    assert!(view.winners.is_empty());
    assert_eq!(
        view.seed(),
        None,
        "nothing revealed by a draw that did not happen"
    );
    assert!(
        app.drain_outbox().await.is_empty(),
        "no message of the failed draw"
    );

    sqlx::query("drop trigger refuse_audit")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(draws(&app).run_at(app.now()).await.unwrap().len(), 1);
    assert!(draws(&app).run_at(app.now()).await.unwrap().is_empty());
    let view = lottery::show(&app.ops(), created.id).await.unwrap();
    assert_eq!(view.winners.len(), 1);
    let mut paid = 0;
    for user in ["zhangsan", "wangwu"] {
        paid += points::entries_for(&mut *app.conn().await, user)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.reason == "lottery_prize")
            .count();
    }
    assert_eq!(paid, 1, "the prize is paid once");
    app.stop().await;
}

/// A saved segment of members tagged 核心会员, with zhangsan tagged and lisi
/// not (both known members); its id.
pub(crate) async fn core_members(app: &TestApp) -> i64 {
    let mut conn = app.conn().await;
    for user in ["zhangsan", "lisi"] {
        qunyun::store::members::ensure_person(&mut conn, user, None, app.now())
            .await
            .unwrap();
    }
    qunyun::store::segments::add_tag(&mut conn, "zhangsan", "核心会员", "manager", 0)
        .await
        .unwrap();
    drop(conn);
    let filter = SegmentFilter {
        tags: vec!["核心会员".into()],
        ..SegmentFilter::default()
    };
    ops::segments::save(&app.ops(), &manager(), app.now(), "核心会员", filter)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lottery_limited_to_a_segment_takes_its_members_and_tells_the_others_why() {
    let app = spawn_app().await;
    community(&app).await;
    let segment = core_members(&app).await;
    let limited = |id: i64| Eligibility {
        segment: Some(SegmentRef::id(id)),
        ..Eligibility::default()
    };

    // An unknown segment: refused naming the field, nothing created or announced.
    let refused = lottery::create(
        &app.ops(),
        &manager(),
        app.now(),
        &input(&app, limited(segment + 100), vec![points_prize(10, 1)]),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().starts_with("segment_id:"), "{refused}");
    assert!(lottery::list(&app.ops()).await.unwrap().is_empty());
    assert!(app.drain_outbox().await.is_empty());

    let created = create(&app, limited(segment), vec![points_prize(10, 1)]).await;
    app.drain_outbox().await;
    // lisi is not tagged: told why through the bot's reply, not entered.
    let outside = app.mention_bot("S1", "lisi", "抽奖").await;
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert!(
        outside[0].contains("暂时不能参加「周末福利」：本次活动只限「核心会员」参加"),
        "{outside:?}"
    );
    let inside = app.mention_bot("S2", "zhangsan", "抽奖").await;
    assert!(inside[0].contains("参加「周末福利」成功"), "{inside:?}");
    let view = lottery::show(&app.ops(), created.id).await.unwrap();
    assert_eq!(view.entrants, ["zhangsan"]);
    assert_eq!(
        view.lottery.eligibility.segment.unwrap().name.as_deref(),
        Some("核心会员")
    );
    // The console's lottery page names the segment.
    let page = app
        .console()
        .page_as(
            qunyun::admin::Role::Viewer,
            &format!("/admin/lotteries/{}", created.id),
        )
        .await;
    assert!(page.contains("id=\"lottery-segment\""), "{page}");
    assert!(page.contains("核心会员"), "{page}");
}
