//! `qunyun demo --once` end to end: the simulator drives encrypted callbacks
//! into qunyun, the durable outbox and the sender deliver to the simulator,
//! and the report is checked against the simulator's own record. The demo
//! builds its own world (that is the feature under test), so this module
//! needs no harness.

use std::collections::HashMap;

use qunyun::demo::{deliveries_by_route, run, DemoOptions};
use qunyun::sim::Route;
use qunyun::store::outbox::OutboxStatus;

#[tokio::test]
async fn demo_once_plays_the_script_through_encrypted_callbacks() {
    let print = std::env::var_os("DEMO_PRINT").is_some();
    let report = run(DemoOptions { once: true, print }).await.unwrap();
    let t = &report.totals;
    let transcript = report.transcript.join("\n");

    // Every callback accepted on the first try and processed.
    assert_eq!(t.callbacks_rejected, 0, "{transcript}");
    assert_eq!(t.inbox_parked, 0);
    assert_eq!(t.inbox_done, t.callbacks_posted);
    assert_eq!(
        t.members_current,
        t.members_joined - 1,
        "one member left early"
    );
    assert_eq!(t.redemptions, 2, "one 保温杯 (race) + one 帆布袋");

    let texts = |route: Route| -> Vec<&str> {
        report
            .deliveries
            .iter()
            .filter(|d| d.route == route)
            .filter_map(|d| d.text())
            .collect()
    };
    let bot_replies = texts(Route::BotResponse);

    // The race for the last 保温杯: exactly one success reaches WeCom, and the
    // loser hears it is sold out.
    assert_eq!(
        bot_replies
            .iter()
            .filter(|text| text.contains("兑换「保温杯」成功"))
            .count(),
        1,
        "{transcript}"
    );
    assert!(
        bot_replies.iter().any(|text| text.contains("已经兑完了")),
        "{transcript}"
    );
    assert!(
        bot_replies.iter().any(|text| text.contains("今天第 10 位")),
        "{transcript}"
    );
    assert!(
        bot_replies.iter().any(|text| text.contains("三日之约")),
        "{transcript}"
    );
    assert!(
        bot_replies.iter().any(|text| text.contains("补签")),
        "{transcript}"
    );

    // The raid digest: one outbox row, sent, and one app message per
    // recipient (owner and admin) carrying its text — no more.
    let raid_rows: Vec<_> = report
        .outbox
        .iter()
        .filter(|row| row.idempotency_key.starts_with("raid:"))
        .collect();
    assert_eq!(raid_rows.len(), 1, "{transcript}");
    assert_eq!(raid_rows[0].status, OutboxStatus::Sent);
    let raid_deliveries: Vec<_> = report
        .deliveries
        .iter()
        .filter(|d| d.route == Route::AppMessage)
        .filter(|d| {
            raid_rows[0]
                .payload_json
                .contains(d.text().unwrap_or("\u{0}"))
        })
        .collect();
    let mut recipients: Vec<&str> = raid_deliveries.iter().map(|d| d.target.as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, ["xiaomei", "yunying"], "{transcript}");
    assert_eq!(t.raid_digests, 1);

    // The VIP group is a customer group: its welcome is one digest to its
    // owner (a 1:1 app message), never a post into the group.
    let vip_digest = report
        .outbox
        .iter()
        .find(|row| {
            row.idempotency_key
                .starts_with("owner_digest:welcome:wrDEMO0000000000000000000000B2")
        })
        .expect("an owner digest for the VIP group");
    assert_eq!(vip_digest.status, OutboxStatus::Sent, "{vip_digest}");
    assert_eq!(vip_digest.target, "yunying");
    // The group welcome material was kept in WeCom, once.
    assert!(transcript.contains("template_id tpl"), "{transcript}");

    // No robot or smart-bot message inside a customer group: WeCom only
    // accepts owner-confirmed mass messages there.
    let customer_groups = ["wrDEMO0000000000000000000000B2"];
    for delivery in &report.deliveries {
        if customer_groups.contains(&delivery.target.as_str()) {
            assert!(
                !matches!(delivery.route, Route::Webhook | Route::BotResponse),
                "{delivery:?}\n{transcript}"
            );
        }
    }

    // Everything that reached the VIP group (the operator's broadcast, the
    // merged onboarding post) is a mass message its owner confirmed.
    let into_vip: Vec<_> = report
        .deliveries
        .iter()
        .filter(|d| d.target == "wrDEMO0000000000000000000000B2")
        .collect();
    assert!(!into_vip.is_empty(), "{transcript}");
    for delivery in &into_vip {
        assert_eq!(delivery.route, Route::CustomerGroupMass, "{transcript}");
        assert_eq!(delivery.sender, "yunying");
    }
    let broadcast = report
        .outbox
        .iter()
        .find(|row| row.idempotency_key.starts_with("broadcast:"))
        .expect("the broadcast row");
    assert_eq!(broadcast.status, OutboxStatus::Sent, "{broadcast}");
    assert!(
        transcript.contains("群主确认后发送 → VIP 内测群"),
        "{transcript}"
    );
    assert!(transcript.contains("未自动发送"), "{transcript}");
    assert!(t.welcomes_sent >= 2, "{t:?}");

    // Each sent row reached WeCom once: as many deliveries as sent rows
    // (counting one per member for app messages), and no two identical
    // deliveries of the same route to the same target.
    let expected_deliveries: usize = report
        .outbox
        .iter()
        .filter(|row| row.status == OutboxStatus::Sent)
        .map(|row| {
            if row.route.as_str() == "member" {
                row.target.split('|').count()
            } else {
                1
            }
        })
        .sum();
    assert_eq!(report.deliveries.len(), expected_deliveries, "{transcript}");
    let mut seen: HashMap<(Route, &str, &str), usize> = HashMap::new();
    for delivery in &report.deliveries {
        *seen
            .entry((
                delivery.route,
                delivery.target.as_str(),
                delivery.text().unwrap_or(""),
            ))
            .or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicate deliveries: {duplicates:?}"
    );
    assert_eq!(t.dead, 0, "{transcript}");
    assert_eq!(t.failed, 0, "{transcript}");
    assert_eq!(t.unfinished, 0, "{transcript}");

    // The group robot never got more than 20 messages in a minute (WeCom
    // would drop the rest); the sender held one back and the demo moved the
    // clock instead of sleeping.
    let webhook_times: Vec<i64> = report
        .deliveries
        .iter()
        .filter(|d| d.route == Route::Webhook)
        .map(|d| d.time)
        .collect();
    for (i, start) in webhook_times.iter().enumerate() {
        let in_window = webhook_times[i..]
            .iter()
            .take_while(|t| **t < start + 60)
            .count();
        assert!(
            in_window <= 20,
            "{in_window} robot messages within a minute"
        );
    }

    // Onboarding tips are merged: no chat gets more than one a day, and the
    // main group's names its first-timers with capped mentions.
    let mut tips_per_chat_day: HashMap<(String, i64), usize> = HashMap::new();
    for row in report
        .outbox
        .iter()
        .filter(|row| row.idempotency_key.starts_with("onboarding:"))
    {
        let chat = row.idempotency_key.split(':').nth(1).unwrap_or("");
        *tips_per_chat_day
            .entry((chat.to_string(), row.created_at / 86_400))
            .or_insert(0) += 1;
    }
    assert!(!tips_per_chat_day.is_empty(), "{transcript}");
    assert!(
        tips_per_chat_day.values().all(|n| *n == 1),
        "{tips_per_chat_day:?}\n{transcript}"
    );
    assert!(report.deliveries.iter().any(|d| d
        .text()
        .is_some_and(|text| text.contains(" 等 ") && text.contains("加入"))));

    // The printed totals are the simulator's record.
    assert_eq!(t.deliveries_total, report.deliveries.len());
    assert_eq!(
        t.deliveries_by_route,
        deliveries_by_route(&report.deliveries)
    );
    assert!(
        transcript.contains(&format!("企业微信收到 {} 条", report.deliveries.len())),
        "{transcript}"
    );
    assert_eq!(
        t.skipped,
        report
            .outbox
            .iter()
            .filter(|row| row.status == OutboxStatus::Skipped)
            .count()
    );
    // Every delivery in the record appears in the transcript.
    let printed = report
        .transcript
        .iter()
        .filter(|line| {
            ["🤖 [", "📣 [", "🙋 [", "📨 [", "💬 [", "📢 ["]
                .iter()
                .any(|icon| line.contains(icon))
        })
        .count();
    assert_eq!(printed, report.deliveries.len(), "{transcript}");
}
