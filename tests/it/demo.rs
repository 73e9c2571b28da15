//! `qunyun demo --once` end to end: the simulator drives encrypted callbacks
//! into qunyun, the durable outbox and the sender deliver to the simulator,
//! and the report is checked against the simulator's own record. The demo
//! builds its own world (that is the feature under test), so this module
//! needs no harness.

use std::collections::HashMap;

use qunyun::demo::{deliveries_by_route, doors, run, DemoOptions};
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

    // The race for the last 保温杯 (in the internal group): exactly one
    // success reaches WeCom, and the loser hears it is sold out.
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
        bot_replies.iter().any(|text| text.contains("三日之约")),
        "{transcript}"
    );
    assert!(
        bot_replies.iter().any(|text| text.contains("补签")),
        "{transcript}"
    );
    // A colleague's 有用 (quoting the tip) pays its author, and the week's
    // board through the group robot ranks it under 热心助人.
    assert!(
        bot_replies
            .iter()
            .any(|text| text.contains("觉得有用：店长·婷婷 的热心回答获得 +2 积分")),
        "{transcript}"
    );
    assert!(
        texts(Route::Webhook)
            .iter()
            .any(|text| text.contains("【热心助人】\n1. 店长·婷婷 1 次")),
        "{transcript}"
    );

    // 小王 adds the group owner: a 1:1 welcome by welcome code; his 核心会员
    // tag reaches WeCom's customer tags; the segment push reaches him by one
    // 1:1 mass message the owner confirmed, and the staff by app message.
    assert_eq!(
        report
            .deliveries
            .iter()
            .filter(|d| d.route == Route::Welcome && d.target == "wmDEMO01")
            .count(),
        1,
        "{transcript}"
    );
    assert!(
        transcript.contains("小王 的企业微信客户标签（由群主·云营打上）：核心会员"),
        "{transcript}"
    );
    let pushed: Vec<&str> = report
        .deliveries
        .iter()
        .filter(|d| d.text().is_some_and(|t| t.starts_with("【核心会员】")))
        .map(|d| d.target.as_str())
        .collect();
    assert_eq!(pushed.len(), 3, "{transcript}");
    assert!(
        report
            .deliveries
            .iter()
            .any(|d| d.route == Route::CustomerMass && d.target == "wmDEMO01"),
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

    // No robot or smart-bot message inside a customer group: WeCom only
    // accepts owner-confirmed mass messages there, from its owner.
    let into_customers: Vec<_> = report
        .deliveries
        .iter()
        .filter(|d| d.target == doors::CUSTOMERS)
        .collect();
    assert!(!into_customers.is_empty(), "{transcript}");
    for delivery in &into_customers {
        assert_eq!(
            delivery.route,
            Route::CustomerGroupMass,
            "{delivery:?}\n{transcript}"
        );
        assert_eq!(delivery.sender, "yunying");
    }
    // The internal group hears the smart bot and the robot, never a mass message.
    let into_staff: Vec<Route> = report
        .deliveries
        .iter()
        .filter(|d| d.target == doors::STAFF_CHAT)
        .map(|d| d.route)
        .collect();
    assert!(into_staff.contains(&Route::BotResponse), "{transcript}");
    assert!(into_staff.contains(&Route::Webhook), "{transcript}");
    assert!(
        into_staff
            .iter()
            .all(|route| matches!(route, Route::BotResponse | Route::Webhook)),
        "{into_staff:?}"
    );

    // Joins exist only in the customer group: the internal group never
    // received a member-change event, and its messages came from the bot.
    let customer_events = |kind: &str| {
        report
            .events
            .iter()
            .filter(|(k, chat)| k == kind && chat.as_deref() == Some(doors::CUSTOMERS))
            .count()
    };
    assert!(
        customer_events("change_external_chat") > 0,
        "{:?}",
        report.events
    );
    assert!(customer_events("ingest_message") > 0, "{:?}", report.events);
    for (kind, chat) in &report.events {
        if chat.as_deref() == Some(doors::STAFF_CHAT) {
            assert_eq!(kind, "bot_message", "{:?}", report.events);
        }
    }
    assert!(report
        .events
        .iter()
        .any(|(_, chat)| chat.as_deref() == Some(doors::STAFF_CHAT)));

    // Every customer-group join is followed by the owner's digest (a 1:1 app
    // message), never by a group post: after a join line, the next outgoing
    // line is an app message to the owner.
    let lines = &report.transcript;
    for (i, line) in lines.iter().enumerate() {
        if !line.contains(doors::CUSTOMER_JOIN) {
            continue;
        }
        let next_out = lines[i + 1..]
            .iter()
            .find(|l| {
                l.contains("📨 [") || l.contains("📢 [") || l.contains("📣 [") || l.contains("🤖 [")
            })
            .unwrap_or_else(|| panic!("nothing followed {line}\n{transcript}"));
        assert!(
            next_out.contains("[应用消息 → 群主·云营]"),
            "{line} was followed by {next_out}\n{transcript}"
        );
    }
    let digest = report
        .outbox
        .iter()
        .find(|row| {
            row.idempotency_key
                .starts_with(&format!("owner_digest:welcome:{}", doors::CUSTOMERS))
        })
        .expect("an owner digest for the customer group");
    assert_eq!(digest.status, OutboxStatus::Sent, "{digest}");
    assert_eq!(digest.target, "yunying");
    // The group welcome material was kept in WeCom, once.
    assert!(transcript.contains("template_id tpl"), "{transcript}");
    // The owner turned one digest into a welcome mass message.
    let owner_welcome = report
        .outbox
        .iter()
        .find(|row| row.idempotency_key.starts_with("owner_welcome:"))
        .expect("the owner's welcome mass message");
    assert_eq!(owner_welcome.status, OutboxStatus::Sent, "{owner_welcome}");

    // At most one onboarding post (welcome mass or onboarding tip) per chat
    // and community day (cut-over 04:00 Shanghai = 20:00 UTC).
    let mut posts_per_chat_day: HashMap<(String, i64), usize> = HashMap::new();
    for row in report.outbox.iter().filter(|row| {
        row.status == OutboxStatus::Sent
            && (row.idempotency_key.starts_with("onboarding:")
                || row.idempotency_key.starts_with("owner_welcome:"))
    }) {
        let day = (row.created_at - 20 * 3600).div_euclid(86_400);
        *posts_per_chat_day
            .entry((row.target.clone(), day))
            .or_insert(0) += 1;
    }
    assert!(!posts_per_chat_day.is_empty(), "{transcript}");
    assert!(
        posts_per_chat_day.values().all(|n| *n == 1),
        "{posts_per_chat_day:?}\n{transcript}"
    );

    // What members typed in the customer group came through the archive;
    // the answers that could not be posted there say why.
    assert!(transcript.contains(doors::CUSTOMER_ARCHIVE), "{transcript}");
    assert!(transcript.contains("未自动发送 [客户群"), "{transcript}");
    let broadcast_rows: Vec<_> = report
        .outbox
        .iter()
        .filter(|row| row.idempotency_key.starts_with("broadcast:"))
        .collect();
    assert_eq!(broadcast_rows.len(), 2, "{transcript}");
    assert!(broadcast_rows
        .iter()
        .all(|row| row.status == OutboxStatus::Sent));

    // Each line about a message names its door.
    for line in &report.transcript {
        let about_a_message = [
            "👥",
            "🚪",
            "💬",
            "🤖",
            "📣",
            "🙋",
            "📨",
            "📢",
            "⚠️",
            "☠️",
            "❌ 发送",
        ]
        .iter()
        .any(|icon| line.contains(icon));
        if about_a_message {
            assert!(
                doors::ALL.iter().any(|door| line.contains(door))
                    || line.contains("[客户群 · ")
                    || line.contains("[内部群 · "),
                "no door named: {line}"
            );
        }
    }

    // Each sent row reached WeCom once: as many deliveries as sent rows
    // (counting one per member for app messages and one per customer for a
    // 1:1 mass message; a customer-tag change is no message), and no two
    // identical deliveries of the same route to the same target.
    let expected_deliveries: usize = report
        .outbox
        .iter()
        .filter(|row| row.status == OutboxStatus::Sent)
        .map(|row| match row.route.as_str() {
            "member" => row.target.split('|').count(),
            "customer_tag" => 0,
            "customer_mass" => {
                let payload: serde_json::Value = serde_json::from_str(&row.payload_json).unwrap();
                payload["external_userid"].as_array().map_or(0, Vec::len)
            }
            _ => 1,
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
    // Every delivery in the record appears in the transcript (indented;
    // what members typed carries a time stamp instead).
    let printed = report
        .transcript
        .iter()
        .filter(|line| {
            ["🤖 [", "📣 [", "🙋 [", "📨 [", "🗨 [", "📢 ["]
                .iter()
                .any(|icon| line.trim_start().starts_with(icon))
        })
        .count();
    assert_eq!(printed, report.deliveries.len(), "{transcript}");
}
