//! The retention job: old handled inbox events, audit rows and sign-in
//! failures go, in small batches; recent rows and unhandled events stay.

use chrono::Duration;
use qunyun::config::Config;
use qunyun::jobs::retention::{Retention, RetentionSettings};
use qunyun::jobs::Job;
use qunyun::store::inbox::{self, InboxStatus};

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, Callback, TestApp};

async fn join(app: &TestApp, member: &str) {
    let at = app.now().timestamp();
    let reply = app
        .post_event(Callback::App(chat_join_xml(member, at)))
        .await;
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn old_handled_events_audit_rows_and_login_failures_are_pruned_in_batches() {
    let app = spawn_app().await;
    let now = app.now();
    let old = now - Duration::days(40);

    // Old and recent events, handled by the pipeline.
    app.set_clock(old);
    join(&app, "old-done-1").await;
    join(&app, "old-done-2").await;
    app.set_clock(now);
    join(&app, "recent-done").await;
    app.run_pipeline().await;
    // Old events never handled: one pending, one parked.
    app.set_clock(old);
    join(&app, "old-pending").await;
    join(&app, "old-parked").await;
    app.set_clock(now);
    join(&app, "recent-pending").await;
    let parked_id = app.inbox().await[4].id;
    let mut conn = app.conn().await;
    inbox::park(&mut conn, parked_id, "test", old.timestamp())
        .await
        .unwrap();
    for at in [now - Duration::days(400), now - Duration::days(1)] {
        sqlx::query("insert into admin_audit (at, actor, action) values (?, 'mei', 'rules.apply')")
            .bind(at.timestamp())
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    for at in [now - Duration::days(40), now - Duration::hours(1)] {
        sqlx::query(
            "insert into admin_login_failures (username, ip, at) values ('mei', '192.0.2.1', ?)",
        )
        .bind(at.timestamp())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    drop(conn);

    let job = Retention::new(
        app.pool.clone(),
        RetentionSettings {
            inbox_days: 30,
            audit_days: 365,
            login_failures_days: 30,
            batch: 1,
        },
    );
    let (mut passes, mut inbox_pruned) = (0, 0);
    loop {
        let pruned = job.run_once(now).await.unwrap();
        passes += 1;
        inbox_pruned += pruned.inbox;
        if !job.more_waiting(&pruned) {
            break;
        }
    }
    assert_eq!(inbox_pruned, 2);
    assert!(passes >= 3, "one row per delete: {passes} passes");

    let left: Vec<(String, InboxStatus)> = app
        .inbox()
        .await
        .into_iter()
        .map(|row| (row.event_json, row.status))
        .collect();
    let kept = |member: &str| {
        left.iter()
            .find(|(json, _)| json.contains(member))
            .map(|(_, s)| *s)
    };
    assert_eq!(kept("old-done-1"), None);
    assert_eq!(kept("old-done-2"), None);
    assert_eq!(kept("recent-done"), Some(InboxStatus::Done));
    assert_eq!(kept("old-pending"), Some(InboxStatus::Pending));
    assert_eq!(kept("old-parked"), Some(InboxStatus::Parked));
    assert_eq!(kept("recent-pending"), Some(InboxStatus::Pending));

    let mut conn = app.conn().await;
    let audit: Vec<i64> = sqlx::query_scalar("select at from admin_audit")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(audit, [(now - Duration::days(1)).timestamp()]);
    let failures: Vec<i64> = sqlx::query_scalar("select at from admin_login_failures")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(failures, [(now - Duration::hours(1)).timestamp()]);

    // A kept event's dedupe key still stops its redelivery.
    let before = app.inbox().await.len();
    join(&app, "recent-done").await;
    assert_eq!(app.inbox().await.len(), before);
}

#[test]
fn a_retention_shorter_than_the_dedupe_floor_is_refused_naming_the_field() {
    let error = Config::from_toml_str("[retention]\ninbox_days = 3\n").unwrap_err();
    assert!(
        error.to_string().contains("retention.inbox_days"),
        "{error:#}"
    );
    let from_env = Config::load(
        None,
        [("QUNYUN_RETENTION__INBOX_DAYS".to_owned(), "2".to_owned())],
    )
    .unwrap_err();
    assert!(
        from_env.to_string().contains("retention.inbox_days"),
        "{from_env:#}"
    );
    // 0 keeps events forever; the floor itself is accepted.
    for days in [0, 7] {
        let config = Config::from_toml_str(&format!("[retention]\ninbox_days = {days}\n")).unwrap();
        assert_eq!(config.retention.inbox_days, days);
    }
}
