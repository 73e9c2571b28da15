//! Daily check-ins: one per person per community day, streaks, bonus curve,
//! milestone badges, make-up check-ins (补签) and today's rank.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::points::{capped_award, level_for};
use super::templates::{CheckinAlreadyVars, CheckinOkVars, MakeupDeniedVars, MakeupOkVars};
use super::{Action, MessageContext, RuleSet};

/// The community day an instant belongs to: day D runs from D at the cut-over
/// hour (local wall time) to D+1 at the cut-over hour. Working on the local wall
/// clock makes this right across DST changes for any timezone.
pub fn community_day(at: DateTime<Utc>, timezone: Tz, cutover_hour: u32) -> NaiveDate {
    let local = at.with_timezone(&timezone).naive_local();
    (local - Duration::hours(i64::from(cutover_hour))).date()
}

/// Length of the run of consecutive days ending at `day` (0 if `day` is absent).
pub fn streak_ending(days: &[NaiveDate], day: NaiveDate) -> u32 {
    let mut streak = 0;
    let mut current = day;
    while days.contains(&current) {
        streak += 1;
        match current.pred_opt() {
            Some(previous) => current = previous,
            None => break,
        }
    }
    streak
}

/// Bonus for the n-th consecutive day (n >= 1), from the curve, capped.
pub fn streak_bonus(rules: &RuleSet, streak: u32) -> i64 {
    let curve = &rules.doc.checkin.streak_bonus;
    let Some(last) = curve.last() else {
        return 0;
    };
    let index = (streak.max(1) - 1) as usize;
    let bonus = curve.get(index).unwrap_or(last);
    (*bonus).min(rules.doc.checkin.streak_bonus_cap)
}

pub fn is_checkin(rules: &RuleSet, text: &str) -> bool {
    rules
        .doc
        .checkin
        .keywords
        .iter()
        .any(|keyword| text == keyword.trim())
}

pub fn on_checkin(cx: &MessageContext) -> Vec<Action> {
    let config = &cx.rules.doc.checkin;
    let day = cx.rules.community_day(cx.now);
    let person = cx.snapshot.person(&cx.message.sender);
    let name = person.display_name();

    if person.checkin_days.iter().any(|d| *d >= day) {
        let streak = streak_ending(&person.checkin_days, day);
        let text = cx
            .rules
            .render("checkin_already", &CheckinAlreadyVars { name, streak });
        return vec![cx.reply(text)];
    }

    let mut days = person.checkin_days.clone();
    days.push(day);
    let streak = streak_ending(&days, day);
    let earned = capped_award(
        cx.rules,
        &person,
        "checkin",
        config.base_points + streak_bonus(cx.rules, streak),
    );
    let mut actions = vec![Action::RecordCheckin {
        user_id: person.user_id.clone(),
        day,
        at: cx.now,
        makeup: false,
        chat_id: cx.message.chat_id.clone(),
    }];
    let mut total = 0;
    if earned > 0 {
        total += earned;
        actions.push(Action::AwardPoints {
            user_id: person.user_id.clone(),
            delta: earned,
            reason: "checkin".into(),
            reference: format!("checkin:{}:{day}", person.user_id),
            chat_id: cx.message.chat_id.clone(),
            day,
        });
    }
    let mut new_badge = None;
    for milestone in &config.milestones {
        if milestone.days == streak && !person.badges.contains(&milestone.badge) {
            actions.push(Action::AwardBadge {
                user_id: person.user_id.clone(),
                badge: milestone.badge.clone(),
                at: cx.now,
            });
            if milestone.points > 0 {
                total += milestone.points;
                actions.push(Action::AwardPoints {
                    user_id: person.user_id.clone(),
                    delta: milestone.points,
                    reason: "milestone".into(),
                    reference: format!("milestone:{}:{}", person.user_id, milestone.badge),
                    chat_id: cx.message.chat_id.clone(),
                    day,
                });
            }
            new_badge = Some(milestone.badge.clone());
        }
    }
    let levels = &cx.rules.doc.points.levels;
    let level_before = level_for(levels, person.lifetime_points).0;
    let level_after = level_for(levels, person.lifetime_points + total).0;
    let level_up = match level_after {
        Some(level) if level_before != level_after => level.name.clone(),
        _ => String::new(),
    };
    let text = cx.rules.render(
        "checkin_ok",
        &CheckinOkVars {
            name,
            points: total,
            streak,
            rank: cx.snapshot.checkins_today + 1,
            balance: person.balance + total,
            badge: new_badge.unwrap_or_default(),
            level_up,
        },
    );
    actions.push(cx.reply(text));
    actions
}

/// Which day a 补签 asks to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MakeupTarget {
    /// `补签`: the most recent missed day within the window.
    LatestMissed,
    /// `补签 3` / `补签 3天前`: that many community days ago.
    DaysAgo(u32),
    /// `补签 2026-03-01`.
    Day(NaiveDate),
}

impl MakeupTarget {
    /// What follows the make-up keyword: nothing, a number of days ago, or a date.
    pub fn parse(rest: &str) -> Option<MakeupTarget> {
        let rest = rest.trim();
        if rest.is_empty() {
            return Some(MakeupTarget::LatestMissed);
        }
        let days = rest.strip_suffix("天前").unwrap_or(rest).trim();
        if let Ok(n) = days.parse::<u32>() {
            return Some(MakeupTarget::DaysAgo(n));
        }
        rest.parse::<NaiveDate>().ok().map(MakeupTarget::Day)
    }
}

/// 补签: fill a missed check-in within the last `makeup_window_days` days, at
/// a points cost, limited per month of the day filled.
pub fn on_makeup(cx: &MessageContext, target: MakeupTarget) -> Vec<Action> {
    let config = &cx.rules.doc.checkin;
    let today = cx.rules.community_day(cx.now);
    let person = cx.snapshot.person(&cx.message.sender);
    let name = person.display_name();
    let window = i64::from(config.makeup_window_days);
    let denied = |reason: String| {
        let text = cx.rules.render(
            "makeup_denied",
            &MakeupDeniedVars {
                name: name.clone(),
                reason,
            },
        );
        vec![cx.reply(text)]
    };
    let oldest = today - Duration::days(window);
    let day = match target {
        MakeupTarget::LatestMissed => {
            let missed = (1..=window)
                .map(|back| today - Duration::days(back))
                .find(|d| !person.checkin_days.contains(d));
            match missed {
                Some(day) => day,
                None => {
                    return denied(format!("最近 {window} 天都签过到了，不需要补签"));
                }
            }
        }
        MakeupTarget::DaysAgo(back) => today - Duration::days(i64::from(back)),
        MakeupTarget::Day(day) => day,
    };
    if day >= today {
        return denied("今天的签到请直接发送签到".into());
    }
    if day < oldest {
        return denied(format!("只能补签最近 {window} 天内的日期"));
    }
    if person.checkin_days.contains(&day) {
        return denied(format!("{day} 已经签过到了，不需要补签"));
    }
    // The allowance is per month of the day being filled.
    let used = person
        .makeup_days
        .iter()
        .filter(|d| (d.year(), d.month()) == (day.year(), day.month()))
        .count() as u32;
    if used >= config.makeup_per_month {
        return denied(format!(
            "{} 月的补签次数（{} 次）已用完",
            day.month(),
            config.makeup_per_month
        ));
    }
    if person.balance < config.makeup_cost {
        return denied(format!("积分不足，补签需要 {} 积分", config.makeup_cost));
    }
    let mut days = person.checkin_days.clone();
    days.push(day);
    // The streak running now: through today if checked in today, else through
    // yesterday (0 when yesterday is still missing: the run is broken).
    let streak_day = today.pred_opt().map_or(today, |yesterday| {
        if days.contains(&today) {
            today
        } else {
            yesterday
        }
    });
    let streak = streak_ending(&days, streak_day);
    let mut actions = vec![Action::RecordCheckin {
        user_id: person.user_id.clone(),
        day,
        at: cx.now,
        makeup: true,
        chat_id: cx.message.chat_id.clone(),
    }];
    if config.makeup_cost > 0 {
        actions.push(Action::AwardPoints {
            user_id: person.user_id.clone(),
            delta: -config.makeup_cost,
            reason: "makeup".into(),
            reference: format!("makeup:{}:{day}", person.user_id),
            chat_id: cx.message.chat_id.clone(),
            day: today,
        });
    }
    let text = cx.rules.render(
        "makeup_ok",
        &MakeupOkVars {
            name: name.clone(),
            day: day.to_string(),
            cost: config.makeup_cost,
            streak,
            remaining: config.makeup_per_month - used - 1,
        },
    );
    actions.push(cx.reply(text));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::event::{Event, EventKind, MessagePosted, MessageSource, ReplyVia};
    use crate::rules::{PersonSnapshot, Snapshot};
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn message(text: &str) -> (Event, MessagePosted) {
        let message = MessagePosted {
            source: MessageSource::AppDirect,
            chat_id: None,
            sender: "zhangsan".into(),
            text: text.into(),
            message_id: "1".into(),
            reply_via: ReplyVia::AppMessage { app: "main".into() },
        };
        (
            Event {
                id: "msg:1".into(),
                kind: EventKind::MessagePosted(message.clone()),
            },
            message,
        )
    }

    fn snapshot_with(person: PersonSnapshot, checkins_today: u32) -> Snapshot {
        let mut snapshot = Snapshot {
            checkins_today,
            ..Snapshot::default()
        };
        snapshot.people.insert(person.user_id.clone(), person);
        snapshot
    }

    fn points(actions: &[Action]) -> i64 {
        actions
            .iter()
            .map(|a| match a {
                Action::AwardPoints { delta, .. } => *delta,
                _ => 0,
            })
            .sum()
    }

    fn reply_text(actions: &[Action]) -> String {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Send(out) => Some(out.text().to_owned()),
                _ => None,
            })
            .unwrap()
    }

    /// Each `(instant, cut-over hour, community day)` holds in `timezone`.
    fn assert_community_days(timezone: &str, cases: &[(DateTime<Utc>, u32, NaiveDate)]) {
        let tz: Tz = timezone.parse().unwrap();
        for &(at, cutover_hour, day) in cases {
            assert_eq!(
                community_day(at, tz, cutover_hour),
                day,
                "{at} in {timezone}, cut-over {cutover_hour}:00"
            );
        }
    }

    #[test]
    fn day_boundary_uses_timezone_and_cutover_hour() {
        assert_community_days(
            "Asia/Shanghai",
            &[
                // 2026-03-01 15:59 UTC = 23:59 Shanghai.
                (utc(2026, 3, 1, 15, 59), 0, date(2026, 3, 1)),
                (utc(2026, 3, 1, 16, 0), 0, date(2026, 3, 2)),
                // With a 04:00 cut-over, 03:59 local still belongs to the previous day.
                (utc(2026, 3, 1, 19, 59), 4, date(2026, 3, 1)),
                (utc(2026, 3, 1, 20, 0), 4, date(2026, 3, 2)),
            ],
        );
    }

    #[test]
    fn day_boundary_follows_dst_in_new_york() {
        assert_community_days(
            "America/New_York",
            &[
                // 2026-03-08 DST starts at 02:00 local (07:00 UTC). Cut-over 03:00
                // local is 07:00 UTC after the change (EDT = UTC-4), not 08:00.
                (utc(2026, 3, 8, 6, 59), 3, date(2026, 3, 7)),
                (utc(2026, 3, 8, 7, 0), 3, date(2026, 3, 8)),
                // 2026-11-01 DST ends: 03:00 EST = 08:00 UTC.
                (utc(2026, 11, 1, 7, 59), 3, date(2026, 10, 31)),
                (utc(2026, 11, 1, 8, 0), 3, date(2026, 11, 1)),
            ],
        );
    }

    proptest! {
        #[test]
        fn community_days_never_go_backwards(
            start in 1_700_000_000i64..1_900_000_000,
            steps in proptest::collection::vec(1i64..7200, 1..50),
            cutover in 0u32..24,
            zone in 0usize..4,
        ) {
            let tz: Tz = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe"][zone]
                .parse().unwrap();
            let mut at = start;
            let mut previous = community_day(Utc.timestamp_opt(at, 0).unwrap(), tz, cutover);
            for step in steps {
                at += step;
                let day = community_day(Utc.timestamp_opt(at, 0).unwrap(), tz, cutover);
                prop_assert!(day >= previous);
                prop_assert!((day - previous).num_days() <= 1 || step > 86_400);
                previous = day;
            }
        }
    }

    #[test]
    fn streak_counts_consecutive_days_only() {
        let days = [
            date(2026, 1, 1),
            date(2026, 1, 3),
            date(2026, 1, 4),
            date(2026, 1, 5),
        ];
        assert_eq!(streak_ending(&days, date(2026, 1, 5)), 3);
        assert_eq!(streak_ending(&days, date(2026, 1, 1)), 1);
        assert_eq!(streak_ending(&days, date(2026, 1, 2)), 0);
    }

    #[test]
    fn bonus_curve_is_capped_and_extends_its_last_value() {
        let rules = RuleSet::builtin(); // [0, 1, 2, 3, 5], cap 5
        assert_eq!(streak_bonus(&rules, 1), 0);
        assert_eq!(streak_bonus(&rules, 4), 3);
        assert_eq!(streak_bonus(&rules, 30), 5);
        let capped =
            RuleSet::from_toml("[checkin]\nstreak_bonus = [1, 10]\nstreak_bonus_cap = 4\n")
                .unwrap();
        assert_eq!(streak_bonus(&capped, 2), 4);
    }

    #[test]
    fn first_checkin_awards_base_points_and_rank() {
        let rules = RuleSet::builtin();
        let (event, msg) = message("签到");
        let actions = on_checkin(&MessageContext {
            rules: &rules,
            snapshot: &snapshot_with(PersonSnapshot::new("zhangsan"), 11),
            event: &event,
            message: &msg,
            now: utc(2026, 3, 1, 2, 0),
        });
        assert_eq!(points(&actions), 5);
        let text = reply_text(&actions);
        assert!(text.contains("今天第 12 位"), "{text}");
        assert!(text.contains("+5 积分"), "{text}");
        assert!(actions.iter().any(|a| matches!(a, Action::RecordCheckin { day, makeup: false, .. } if *day == date(2026, 3, 1))));
    }

    #[test]
    fn second_checkin_same_day_awards_no_points() {
        let rules = RuleSet::builtin();
        let (event, msg) = message("签到");
        let mut person = PersonSnapshot::new("zhangsan");
        person.checkin_days = vec![date(2026, 3, 1)];
        let actions = on_checkin(&MessageContext {
            rules: &rules,
            snapshot: &snapshot_with(person, 3),
            event: &event,
            message: &msg,
            now: utc(2026, 3, 1, 9, 0),
        });
        assert_eq!(points(&actions), 0);
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::RecordCheckin { .. })));
        assert!(reply_text(&actions).contains("已经签过到"));
    }

    #[test]
    fn third_day_in_a_row_earns_bonus_and_milestone_badge() {
        let rules = RuleSet::builtin();
        let (event, msg) = message("打卡");
        let mut person = PersonSnapshot::new("zhangsan");
        person.checkin_days = vec![date(2026, 2, 27), date(2026, 2, 28)];
        let actions = on_checkin(&MessageContext {
            rules: &rules,
            snapshot: &snapshot_with(person, 0),
            event: &event,
            message: &msg,
            now: utc(2026, 3, 1, 2, 0),
        });
        // base 5 + bonus for day 3 (2) + milestone 三日之约 (10).
        assert_eq!(points(&actions), 17);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::AwardBadge { badge, .. } if badge == "三日之约")));
        let text = reply_text(&actions);
        assert!(text.contains("连续签到 3 天"), "{text}");
    }

    #[test]
    fn daily_cap_limits_checkin_points() {
        let rules = RuleSet::from_toml("[points.daily_caps]\ncheckin = 3\n").unwrap();
        let (event, msg) = message("签到");
        let actions = on_checkin(&MessageContext {
            rules: &rules,
            snapshot: &snapshot_with(PersonSnapshot::new("zhangsan"), 0),
            event: &event,
            message: &msg,
            now: utc(2026, 3, 1, 2, 0),
        });
        assert_eq!(points(&actions), 3);
    }

    #[test]
    fn makeup_fills_yesterday_and_joins_the_streak() {
        let rules = RuleSet::builtin();
        let (event, msg) = message("补签");
        let mut person = PersonSnapshot::new("zhangsan");
        person.balance = 50;
        person.checkin_days = vec![date(2026, 3, 2), date(2026, 3, 4)];
        let actions = on_makeup(
            &MessageContext {
                rules: &rules,
                snapshot: &snapshot_with(person, 0),
                event: &event,
                message: &msg,
                now: utc(2026, 3, 4, 2, 0),
            },
            MakeupTarget::LatestMissed,
        );
        assert_eq!(points(&actions), -20);
        assert!(actions.iter().any(|a| matches!(a, Action::RecordCheckin { day, makeup: true, .. } if *day == date(2026, 3, 3))));
        assert!(reply_text(&actions).contains("连续签到 3 天"));
    }

    #[test]
    fn makeup_is_refused_without_points_or_allowance() {
        let rules = RuleSet::builtin();
        let (event, msg) = message("补签");
        let mut poor = PersonSnapshot::new("zhangsan");
        poor.balance = 19;
        let actions = on_makeup(
            &MessageContext {
                rules: &rules,
                snapshot: &snapshot_with(poor, 0),
                event: &event,
                message: &msg,
                now: utc(2026, 3, 4, 2, 0),
            },
            MakeupTarget::DaysAgo(1),
        );
        assert_eq!(points(&actions), 0);
        assert!(reply_text(&actions).contains("积分不足"));

        let mut used_up = PersonSnapshot::new("zhangsan");
        used_up.balance = 100;
        used_up.makeup_days = vec![date(2026, 3, 1), date(2026, 3, 2)];
        let actions = on_makeup(
            &MessageContext {
                rules: &rules,
                snapshot: &snapshot_with(used_up.clone(), 0),
                event: &event,
                message: &msg,
                now: utc(2026, 3, 4, 2, 0),
            },
            MakeupTarget::DaysAgo(1),
        );
        assert_eq!(points(&actions), 0);
        assert!(reply_text(&actions).contains("补签次数"));
        // February's allowance is separate from March's.
        let actions = on_makeup(
            &MessageContext {
                rules: &rules,
                snapshot: &snapshot_with(used_up, 0),
                event: &event,
                message: &msg,
                now: utc(2026, 3, 4, 2, 0),
            },
            MakeupTarget::Day(date(2026, 2, 27)),
        );
        assert_eq!(points(&actions), -20);
    }

    #[test]
    fn makeup_stays_inside_the_window_and_skips_checked_days() {
        let rules = RuleSet::builtin(); // window 7 days
        let (event, msg) = message("补签");
        let mut person = PersonSnapshot::new("zhangsan");
        person.balance = 100;
        person.checkin_days = vec![date(2026, 3, 3)];
        let now = utc(2026, 3, 4, 2, 0);
        let run = |target| {
            let cx = MessageContext {
                rules: &rules,
                snapshot: &snapshot_with(person.clone(), 0),
                event: &event,
                message: &msg,
                now,
            };
            on_makeup(&cx, target)
        };
        assert!(reply_text(&run(MakeupTarget::DaysAgo(8))).contains("最近 7 天"));
        assert!(reply_text(&run(MakeupTarget::DaysAgo(0))).contains("直接发送签到"));
        assert!(reply_text(&run(MakeupTarget::DaysAgo(1))).contains("已经签过到"));
        // The latest missed day is the day before yesterday.
        let actions = run(MakeupTarget::LatestMissed);
        assert!(actions.iter().any(|a| matches!(a, Action::RecordCheckin { day, makeup: true, .. } if *day == date(2026, 3, 2))));
        assert_eq!(
            MakeupTarget::parse(" 3天前"),
            Some(MakeupTarget::DaysAgo(3))
        );
        assert_eq!(
            MakeupTarget::parse("2026-03-01"),
            Some(MakeupTarget::Day(date(2026, 3, 1)))
        );
        assert_eq!(MakeupTarget::parse("昨天吧"), None);
    }
}
