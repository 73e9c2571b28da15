//! Daily rollups per chat and for the whole community, from raw facts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use super::days::DayWindow;

/// The `chat_id` of the community-wide row.
pub const COMMUNITY: &str = "";

/// A person's membership of a chat (one row per chat and person; a rejoin
/// moves `joined_at`, so an earlier stint is not seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub chat_id: String,
    pub user_id: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

/// A message qunyun saw (callback or archive), in a chat or 1:1 (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub chat_id: Option<String>,
    pub user_id: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    pub user_id: String,
    pub day: NaiveDate,
    pub chat_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub chat_id: Option<String>,
    pub day: NaiveDate,
    pub delta: i64,
    /// A 精华 or 晒单 reward: one rewarded post.
    pub rewarded_post: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub chat_id: Option<String>,
    pub at: i64,
}

/// Something a member did at `at` in a chat (or 1:1 / through a manager:
/// `None`): a lottery entry, a poll ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    pub chat_id: Option<String>,
    pub at: i64,
}

/// An outbox row that was sent or failed (failed or dead) at `at`; `chats`
/// are the chats it carried a scheduled push to (empty for other messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub chats: Vec<String>,
    pub at: i64,
    pub failed: bool,
}

/// Everything the rollup of a window needs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Known chats: each gets a row every day, even a quiet one.
    pub chats: Vec<String>,
    pub memberships: Vec<Membership>,
    pub messages: Vec<Message>,
    pub checkins: Vec<Checkin>,
    pub ledger: Vec<LedgerEntry>,
    pub violations: Vec<Violation>,
    pub deliveries: Vec<Delivery>,
    pub lottery_entries: Vec<ChatEvent>,
    pub votes: Vec<ChatEvent>,
}

/// One day of one chat (or of the community, `chat_id == ""`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DailyRow {
    pub day: NaiveDate,
    pub chat_id: String,
    pub joins: i64,
    pub leaves: i64,
    /// Members at the end of the day (community: distinct people).
    pub members: i64,
    /// Distinct people who posted or checked in.
    pub active_members: i64,
    pub messages: i64,
    pub checkins: i64,
    pub points_issued: i64,
    pub points_redeemed: i64,
    pub violations: i64,
    /// Community: every outbox message sent / failed or dead. Chat: the
    /// scheduled pushes to that chat.
    pub pushes_sent: i64,
    pub pushes_failed: i64,
    pub lottery_entries: i64,
    /// Poll ballots cast that day (a changed ballot counts once, when first cast).
    pub votes: i64,
    /// Posts rewarded that day (精华 marks and 晒单 images that earned points).
    /// 有用 marks are not counted: they are members' thanks (many per
    /// message, one per giver), not posts the community rewarded; their
    /// points still count in `points_issued`.
    pub rewarded_posts: i64,
}

/// A person's activity in a chat on a day (`chat_id == ""`: 1:1 or unknown chat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRow {
    pub day: NaiveDate,
    pub user_id: String,
    pub chat_id: String,
    pub messages: i64,
    pub checkins: i64,
}

/// Adds to the community row and, when the fact has a chat, to that chat's row.
fn add_to(
    rows: &mut BTreeMap<(NaiveDate, String), DailyRow>,
    day: NaiveDate,
    chat: Option<&str>,
    f: &dyn Fn(&mut DailyRow),
) {
    for key in std::iter::once(COMMUNITY).chain(chat.filter(|c| !c.is_empty())) {
        add_chat_only(rows, day, key, f);
    }
}

fn add_chat_only(
    rows: &mut BTreeMap<(NaiveDate, String), DailyRow>,
    day: NaiveDate,
    chat: &str,
    f: &dyn Fn(&mut DailyRow),
) {
    let row = rows
        .entry((day, chat.to_string()))
        .or_insert_with(|| DailyRow {
            day,
            chat_id: chat.to_string(),
            ..DailyRow::default()
        });
    f(row);
}

/// The rollup rows for every day of the window, for the community and every
/// chat, plus per-person activity. Deterministic: the same facts give the same rows.
pub fn compute(window: &DayWindow, facts: &Facts) -> (Vec<DailyRow>, Vec<ActivityRow>) {
    let days: Vec<NaiveDate> = window.days().collect();
    let mut rows: BTreeMap<(NaiveDate, String), DailyRow> = BTreeMap::new();
    let mut chats: BTreeSet<&str> = facts.chats.iter().map(String::as_str).collect();
    chats.extend(facts.memberships.iter().map(|m| m.chat_id.as_str()));
    for day in &days {
        for chat in std::iter::once(COMMUNITY).chain(chats.iter().copied()) {
            rows.insert(
                (*day, chat.to_string()),
                DailyRow {
                    day: *day,
                    chat_id: chat.to_string(),
                    ..DailyRow::default()
                },
            );
        }
    }
    for m in &facts.memberships {
        if let Some(day) = window.day_of(m.joined_at) {
            add_to(&mut rows, day, Some(&m.chat_id), &|r| r.joins += 1);
        }
        if let Some(day) = m.left_at.and_then(|at| window.day_of(at)) {
            add_to(&mut rows, day, Some(&m.chat_id), &|r| r.leaves += 1);
        }
    }
    for c in &facts.checkins {
        if (window.first..=window.last).contains(&c.day) {
            add_to(&mut rows, c.day, c.chat_id.as_deref(), &|r| r.checkins += 1);
        }
    }
    for m in &facts.messages {
        if let Some(day) = window.day_of(m.at) {
            add_to(&mut rows, day, m.chat_id.as_deref(), &|r| r.messages += 1);
        }
    }
    for l in &facts.ledger {
        if (window.first..=window.last).contains(&l.day) {
            let (delta, rewarded) = (l.delta, i64::from(l.rewarded_post));
            add_to(&mut rows, l.day, l.chat_id.as_deref(), &|r| {
                r.rewarded_posts += rewarded;
                if delta > 0 {
                    r.points_issued += delta;
                } else {
                    r.points_redeemed -= delta;
                }
            });
        }
    }
    for v in &facts.violations {
        if let Some(day) = window.day_of(v.at) {
            add_to(&mut rows, day, v.chat_id.as_deref(), &|r| r.violations += 1);
        }
    }
    for e in &facts.lottery_entries {
        if let Some(day) = window.day_of(e.at) {
            add_to(&mut rows, day, e.chat_id.as_deref(), &|r| {
                r.lottery_entries += 1
            });
        }
    }
    for v in &facts.votes {
        if let Some(day) = window.day_of(v.at) {
            add_to(&mut rows, day, v.chat_id.as_deref(), &|r| r.votes += 1);
        }
    }
    for d in &facts.deliveries {
        let Some(day) = window.day_of(d.at) else {
            continue;
        };
        let failed = d.failed;
        let count = move |r: &mut DailyRow| {
            if failed {
                r.pushes_failed += 1;
            } else {
                r.pushes_sent += 1;
            }
        };
        add_to(&mut rows, day, None, &count);
        for chat in &d.chats {
            add_chat_only(&mut rows, day, chat, &count);
        }
    }

    // Members at the end of each day.
    for day in &days {
        let end = window.end_of(*day).timestamp();
        let mut people: BTreeSet<&str> = BTreeSet::new();
        let mut per_chat: BTreeMap<&str, i64> = BTreeMap::new();
        for m in &facts.memberships {
            if m.joined_at < end && m.left_at.is_none_or(|left| left >= end) {
                people.insert(&m.user_id);
                *per_chat.entry(&m.chat_id).or_default() += 1;
            }
        }
        if let Some(row) = rows.get_mut(&(*day, COMMUNITY.to_string())) {
            row.members = people.len() as i64;
        }
        for (chat, n) in per_chat {
            if let Some(row) = rows.get_mut(&(*day, chat.to_string())) {
                row.members = n;
            }
        }
    }

    // Activity: (day, user, chat) -> (messages, check-ins).
    let mut activity: BTreeMap<(NaiveDate, &str, &str), (i64, i64)> = BTreeMap::new();
    for m in &facts.messages {
        if let Some(day) = window.day_of(m.at) {
            let chat = m.chat_id.as_deref().unwrap_or(COMMUNITY);
            activity.entry((day, &m.user_id, chat)).or_default().0 += 1;
        }
    }
    for c in &facts.checkins {
        if (window.first..=window.last).contains(&c.day) {
            let chat = c.chat_id.as_deref().unwrap_or(COMMUNITY);
            activity.entry((c.day, &c.user_id, chat)).or_default().1 += 1;
        }
    }
    let mut active: BTreeMap<(NaiveDate, &str), BTreeSet<&str>> = BTreeMap::new();
    for (day, user, chat) in activity.keys() {
        active.entry((*day, COMMUNITY)).or_default().insert(user);
        if !chat.is_empty() {
            active.entry((*day, chat)).or_default().insert(user);
        }
    }
    for ((day, chat), people) in active {
        if let Some(row) = rows.get_mut(&(day, chat.to_string())) {
            row.active_members = people.len() as i64;
        }
    }
    let activity = activity
        .into_iter()
        .map(|((day, user, chat), (messages, checkins))| ActivityRow {
            day,
            user_id: user.to_string(),
            chat_id: chat.to_string(),
            messages,
            checkins,
        })
        .collect();
    (rows.into_values().collect(), activity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use chrono_tz::Asia::Shanghai;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// Unix seconds of a Shanghai wall-clock time.
    fn sh(y: i32, mo: u32, day: u32, h: u32, mi: u32) -> i64 {
        Shanghai
            .with_ymd_and_hms(y, mo, day, h, mi, 0)
            .unwrap()
            .timestamp()
    }

    fn window() -> DayWindow {
        DayWindow {
            first: d("2026-03-01"),
            last: d("2026-03-02"),
            tz: Shanghai,
            cutover_hour: 0,
        }
    }

    fn row<'a>(rows: &'a [DailyRow], day: &str, chat: &str) -> &'a DailyRow {
        rows.iter()
            .find(|r| r.day == d(day) && r.chat_id == chat)
            .unwrap()
    }

    #[test]
    fn facts_around_shanghai_midnight_land_on_their_local_day() {
        let facts = Facts {
            chats: vec!["wrA".into(), "wrQuiet".into()],
            memberships: vec![
                Membership {
                    chat_id: "wrA".into(),
                    user_id: "u1".into(),
                    joined_at: sh(2026, 3, 1, 23, 59),
                    left_at: None,
                },
                Membership {
                    chat_id: "wrA".into(),
                    user_id: "u2".into(),
                    joined_at: sh(2026, 3, 2, 0, 0),
                    left_at: Some(sh(2026, 3, 2, 8, 0)),
                },
            ],
            messages: vec![
                Message {
                    chat_id: Some("wrA".into()),
                    user_id: "u1".into(),
                    at: sh(2026, 3, 1, 23, 59),
                },
                Message {
                    chat_id: Some("wrA".into()),
                    user_id: "u1".into(),
                    at: sh(2026, 3, 2, 0, 1),
                },
                Message {
                    chat_id: None,
                    user_id: "u2".into(),
                    at: sh(2026, 3, 2, 0, 2),
                },
            ],
            checkins: vec![Checkin {
                user_id: "u1".into(),
                day: d("2026-03-02"),
                chat_id: Some("wrA".into()),
            }],
            ledger: vec![
                LedgerEntry {
                    chat_id: Some("wrA".into()),
                    day: d("2026-03-02"),
                    delta: 5,
                    rewarded_post: false,
                },
                LedgerEntry {
                    chat_id: None,
                    day: d("2026-03-02"),
                    delta: -3,
                    rewarded_post: false,
                },
            ],
            violations: vec![Violation {
                chat_id: Some("wrA".into()),
                at: sh(2026, 3, 2, 9, 0),
            }],
            deliveries: vec![
                Delivery {
                    chats: vec!["wrA".into(), "wrQuiet".into()],
                    at: sh(2026, 3, 2, 9, 0),
                    failed: false,
                },
                Delivery {
                    chats: vec![],
                    at: sh(2026, 3, 2, 9, 0),
                    failed: true,
                },
            ],
            lottery_entries: vec![
                ChatEvent {
                    chat_id: Some("wrA".into()),
                    at: sh(2026, 3, 2, 9, 0),
                },
                ChatEvent {
                    chat_id: None,
                    at: sh(2026, 3, 2, 9, 5),
                },
            ],
            votes: vec![
                ChatEvent {
                    chat_id: Some("wrA".into()),
                    at: sh(2026, 3, 1, 20, 0),
                },
                ChatEvent {
                    chat_id: Some("wrA".into()),
                    at: sh(2026, 3, 2, 8, 0),
                },
            ],
        };
        let (rows, activity) = compute(&window(), &facts);
        assert_eq!(rows.len(), 6, "2 days x (community + 2 chats)");
        let first = row(&rows, "2026-03-01", "wrA");
        assert_eq!((first.joins, first.messages, first.members), (1, 1, 1));
        assert_eq!(first.active_members, 1);
        let second = row(&rows, "2026-03-02", "wrA");
        assert_eq!(
            (second.joins, second.leaves, second.members),
            (1, 1, 1),
            "u2 joined and left on the 2nd"
        );
        assert_eq!((second.messages, second.checkins), (1, 1));
        assert_eq!((second.points_issued, second.points_redeemed), (5, 0));
        assert_eq!(second.violations, 1);
        assert_eq!((second.pushes_sent, second.pushes_failed), (1, 0));
        assert_eq!(second.lottery_entries, 1);
        assert_eq!((first.votes, second.votes), (1, 1), "one ballot a day");
        let community = row(&rows, "2026-03-02", COMMUNITY);
        assert_eq!(
            community.messages, 2,
            "1:1 messages count for the community"
        );
        assert_eq!(community.active_members, 2);
        assert_eq!((community.points_issued, community.points_redeemed), (5, 3));
        assert_eq!((community.pushes_sent, community.pushes_failed), (1, 1));
        assert_eq!(
            community.lottery_entries, 2,
            "1:1 entries count for the community"
        );
        let quiet = row(&rows, "2026-03-02", "wrQuiet");
        assert_eq!((quiet.pushes_sent, quiet.messages), (1, 0));
        assert_eq!(activity.len(), 3);
        assert_eq!(
            compute(&window(), &facts),
            (rows, activity),
            "deterministic"
        );
    }

    #[test]
    fn facts_outside_the_window_are_ignored() {
        let before = Utc
            .with_ymd_and_hms(2026, 2, 28, 15, 59, 59)
            .unwrap()
            .timestamp();
        let facts = Facts {
            violations: vec![Violation {
                chat_id: None,
                at: before,
            }],
            ..Facts::default()
        };
        let (rows, _) = compute(&window(), &facts);
        assert!(rows.iter().all(|r| r.violations == 0));
        assert_eq!(rows.len(), 2);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const CHATS: [&str; 3] = ["wrA", "wrB", "wrC"];

        fn facts() -> impl Strategy<Value = Facts> {
            let base = sh(2026, 2, 27, 0, 0);
            let at = move || base..base + 5 * 86_400;
            let chat = || (0usize..3).prop_map(|i| CHATS[i].to_string());
            let user = || (0u8..6).prop_map(|u| format!("u{u}"));
            (
                proptest::collection::vec(
                    (chat(), user(), at(), proptest::option::of(0i64..200_000)),
                    0..20,
                ),
                proptest::collection::vec((proptest::option::of(chat()), user(), at()), 0..30),
                proptest::collection::vec((proptest::option::of(chat()), at()), 0..10),
            )
                .prop_map(|(memberships, messages, violations)| Facts {
                    chats: CHATS.iter().map(|c| c.to_string()).collect(),
                    memberships: memberships
                        .into_iter()
                        .map(|(chat_id, user_id, joined_at, stay)| Membership {
                            chat_id,
                            user_id,
                            joined_at,
                            left_at: stay.map(|s| joined_at + s),
                        })
                        .collect(),
                    messages: messages
                        .into_iter()
                        .map(|(chat_id, user_id, at)| Message {
                            chat_id,
                            user_id,
                            at,
                        })
                        .collect(),
                    violations: violations
                        .into_iter()
                        .map(|(chat_id, at)| Violation { chat_id, at })
                        .collect(),
                    ..Facts::default()
                })
        }

        proptest! {
            #[test]
            fn chat_rows_add_up_to_the_community_and_a_rerun_is_identical(facts in facts()) {
                let (rows, activity) = compute(&window(), &facts);
                for day in window().days() {
                    let of_day: Vec<&DailyRow> = rows.iter().filter(|r| r.day == day).collect();
                    let community = of_day.iter().find(|r| r.chat_id == COMMUNITY).unwrap();
                    let chats: Vec<&&DailyRow> = of_day.iter().filter(|r| r.chat_id != COMMUNITY).collect();
                    let sum = |pick: fn(&DailyRow) -> i64| chats.iter().map(|r| pick(r)).sum::<i64>();
                    prop_assert_eq!(community.joins, sum(|r| r.joins));
                    prop_assert_eq!(community.leaves, sum(|r| r.leaves));
                    prop_assert!(community.messages >= sum(|r| r.messages));
                    prop_assert!(community.violations >= sum(|r| r.violations));
                    prop_assert!(community.members <= sum(|r| r.members));
                    prop_assert!(chats.iter().all(|r| r.active_members <= community.active_members));
                }
                // Every in-window message is counted once for the community.
                let counted: i64 = rows.iter().filter(|r| r.chat_id == COMMUNITY).map(|r| r.messages).sum();
                let in_window = facts.messages.iter().filter(|m| window().day_of(m.at).is_some()).count();
                prop_assert_eq!(counted, in_window as i64);
                prop_assert_eq!(compute(&window(), &facts), (rows, activity));
            }
        }
    }
}
