//! The points economy's loose ends, through the real server: a new rule-set
//! version restocks an item (what was sold stays sold, the restock is a stock
//! event), and a manager cancels a redemption over the API — points refunded
//! through the ledger, the unit back in stock, the member told 1:1, audited.

use chrono::Utc;
use qunyun::ops::{self, Actor, Ops, Role};
use qunyun::sim::Route;
use qunyun::store::{points, redemptions};

use crate::helpers::{spawn_app, TestApp, APP};

fn cli() -> Actor {
    Actor::new("cli:test", Role::Owner)
}

async fn apply_rules(app: &TestApp, stock: i64) {
    let body = format!(
        "[community]\napp = \"{APP}\"\n\n[[catalog]]\nitem = \"保温杯\"\ncost = 30\nstock = {stock}\n"
    );
    match ops::rules::apply(&app.ops(), &cli(), Utc::now(), &body)
        .await
        .unwrap()
    {
        ops::rules::Applied::Version(_) => {}
        ops::rules::Applied::Invalid(problems) => panic!("rule set refused: {problems:?}"),
    }
}

/// A member @-mentions the smart bot; returns the texts WeCom received.
async fn say(app: &TestApp, msgid: &str, user: &str, words: &str) -> Vec<String> {
    app.mention_bot(msgid, user, words).await
}

async fn stock(app: &TestApp) -> i64 {
    redemptions::stock(&mut *app.conn().await).await.unwrap()["保温杯"]
}

#[tokio::test]
async fn a_new_stock_figure_restocks_and_a_cancelled_redemption_is_refunded_and_returned() {
    let app = spawn_app().await;
    apply_rules(&app, 1).await;
    for user in ["zhangsan", "lisi"] {
        qunyun::store::members::ensure_person(&mut *app.conn().await, user, None, app.now())
            .await
            .unwrap();
        ops::points::adjust(&app.ops(), &cli(), app.now(), user, 100, "活动奖励")
            .await
            .unwrap();
    }
    let ok = say(&app, "R1", "zhangsan", "兑换 保温杯").await;
    assert!(ok[0].contains("兑换「保温杯」成功"), "{ok:?}");
    let sold_out = say(&app, "R2", "lisi", "兑换 保温杯").await;
    assert!(sold_out[0].contains("已经兑完了"), "{sold_out:?}");
    assert_eq!(stock(&app).await, 0);

    // The manager raises the stock to 3: one was sold, so two are left.
    apply_rules(&app, 3).await;
    let again = say(&app, "R3", "lisi", "兑换 保温杯").await;
    assert!(again[0].contains("成功"), "{again:?}");
    assert_eq!(stock(&app).await, 1);
    let events = redemptions::stock_events(&mut *app.conn().await, "保温杯")
        .await
        .unwrap();
    let changes: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.delta, e.reason.as_str()))
        .collect();
    assert_eq!(changes, vec![(1, "initial"), (2, "restock")]);

    // wmA's redemption is cancelled over the API.
    let ops = Ops::over(app.pool.clone());
    let pending = ops::queues::redemptions(&ops, Some("pending"))
        .await
        .unwrap();
    let id = pending.iter().find(|r| r.user_id == "zhangsan").unwrap().id;
    ops::accounts::create_user(
        &ops,
        &cli(),
        Utc::now(),
        "mei",
        "a long enough password",
        Role::Operator,
    )
    .await
    .unwrap();
    let token = ops::accounts::create_token(&ops, &cli(), Utc::now(), "mei", "crm")
        .await
        .unwrap();
    let cancel = || {
        app.http
            .post(app.url(&format!("/admin/api/v1/redemptions/{id}/cancel")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "reason": "缺货" }))
            .send()
    };
    let reply = cancel().await.unwrap();
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    assert_eq!(cancel().await.unwrap().status(), 400, "cancelled once only");

    assert_eq!(
        points::balance(&mut *app.conn().await, "zhangsan")
            .await
            .unwrap(),
        100
    );
    assert_eq!(stock(&app).await, 2);
    let told = app.drain_outbox().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].route, told[0].target.as_str()),
        (Route::AppMessage, "zhangsan")
    );
    assert!(
        told[0]
            .text()
            .unwrap_or_default()
            .contains("「保温杯」已被取消，30 积分已退回，当前积分 100"),
        "{told:?}"
    );
    let audit = ops::audit::recent(&ops, None, 10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "redemption.cancel" && e.detail.contains("缺货")),
        "{audit:?}"
    );
    // The refund gives points back; it does not count as earned (level).
    assert_eq!(
        points::lifetime_earned(&mut *app.conn().await, "zhangsan")
            .await
            .unwrap(),
        100
    );
    app.stop().await;
}

/// (zhangsan's balance, 保温杯 left, the redemption's status).
async fn state(app: &TestApp, id: i64) -> (i64, i64, String) {
    let mut conn = app.conn().await;
    let balance = points::balance(&mut conn, "zhangsan").await.unwrap();
    let status = redemptions::get(&mut conn, id)
        .await
        .unwrap()
        .unwrap()
        .status;
    drop(conn);
    (balance, stock(app).await, status)
}

#[tokio::test]
async fn the_console_cancel_button_refunds_restocks_and_a_second_cancel_is_refused() {
    let app = spawn_app().await;
    apply_rules(&app, 1).await;
    qunyun::store::members::ensure_person(&mut *app.conn().await, "zhangsan", None, app.now())
        .await
        .unwrap();
    ops::points::adjust(&app.ops(), &cli(), app.now(), "zhangsan", 100, "活动奖励")
        .await
        .unwrap();
    let ok = say(&app, "C1", "zhangsan", "兑换 保温杯").await;
    assert!(ok[0].contains("成功"), "{ok:?}");
    let pending = ops::queues::redemptions(&app.ops(), Some("pending"))
        .await
        .unwrap();
    let id = pending[0].id;
    assert_eq!(state(&app, id).await, (70, 0, "pending".to_string()));

    let console = app.console();
    let (op, _) = console.session_for("mei", Role::Operator).await;
    let queues = console.get("/admin/queues", Some(&op)).await;
    assert!(
        queues.body.contains(&format!("id=\"cancel-{id}\"")),
        "{}",
        queues.body
    );
    let path = format!("/admin/redemptions/{id}/cancel");

    // With a token that is not the session's, nothing happens.
    let forged = console
        .post_form(
            &path,
            Some(&op.cookie),
            &[("csrf", "not-this-session"), ("reason", "缺货")],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(state(&app, id).await, (70, 0, "pending".to_string()));

    let done = console
        .post_form(
            &path,
            Some(&op.cookie),
            &[("csrf", &op.csrf), ("reason", "缺货")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/admin/queues"));
    assert_eq!(state(&app, id).await, (100, 1, "cancelled".to_string()));
    let told = app.drain_outbox().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].route, told[0].target.as_str()),
        (Route::AppMessage, "zhangsan")
    );
    assert!(
        told[0].text().unwrap_or_default().contains("30 积分已退回"),
        "{told:?}"
    );

    // A second press is refused with the reason and changes nothing.
    let again = console
        .post_form(
            &path,
            Some(&op.cookie),
            &[("csrf", &op.csrf), ("reason", "缺货")],
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(
        again.body.contains("only a pending one can be cancelled"),
        "{}",
        again.body
    );
    assert_eq!(state(&app, id).await, (100, 1, "cancelled".to_string()));
    assert!(app.drain_outbox().await.is_empty());
    let audit = ops::audit::recent(&app.ops(), None, 20).await.unwrap();
    let cancels: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "redemption.cancel")
        .collect();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0].actor, "mei");
    assert!(cancels[0].detail.contains("缺货"), "{cancels:?}");
    app.stop().await;
}
