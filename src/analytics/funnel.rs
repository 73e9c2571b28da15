//! The purchase funnel: of the members who joined a chat in a week, how many
//! were active afterwards, placed a first order, and a repeat order. Pure:
//! the caller loads joins, last active days and order days (community days).

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

/// One member's (latest) join of one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub chat_id: String,
    pub user_id: String,
    pub day: NaiveDate,
}

/// One cohort: a chat (`""` = the whole community, each person once, by
/// their earliest join) and the Monday of the week they joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunnelRow {
    pub chat_id: String,
    pub week: NaiveDate,
    pub joined: i64,
    /// Posted or checked in on or after the join day.
    pub active: i64,
    /// At least one paid order on or after the join day.
    pub first_order: i64,
    /// At least two.
    pub repeat_order: i64,
}

fn monday(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Cohort rows, newest week first, the community row before the chats.
/// `last_active` is each person's latest active day; `order_days` the days of
/// their orders with a positive amount.
pub fn compute(
    joins: &[Join],
    last_active: &HashMap<String, NaiveDate>,
    order_days: &HashMap<String, Vec<NaiveDate>>,
) -> Vec<FunnelRow> {
    let mut earliest: BTreeMap<&str, &Join> = BTreeMap::new();
    for join in joins {
        let slot = earliest.entry(&join.user_id).or_insert(join);
        if join.day < slot.day {
            *slot = join;
        }
    }
    let mut cohorts: BTreeMap<(std::cmp::Reverse<NaiveDate>, String), FunnelRow> = BTreeMap::new();
    let community = earliest.values().map(|join| ("", *join));
    let chats = joins.iter().map(|join| (join.chat_id.as_str(), join));
    for (chat_id, join) in community.chain(chats) {
        let week = monday(join.day);
        let row = cohorts
            .entry((std::cmp::Reverse(week), chat_id.to_owned()))
            .or_insert_with(|| FunnelRow {
                chat_id: chat_id.to_owned(),
                week,
                joined: 0,
                active: 0,
                first_order: 0,
                repeat_order: 0,
            });
        row.joined += 1;
        if last_active
            .get(&join.user_id)
            .is_some_and(|day| *day >= join.day)
        {
            row.active += 1;
        }
        let orders = order_days.get(&join.user_id).map_or(0, |days| {
            days.iter().filter(|day| **day >= join.day).count()
        });
        if orders >= 1 {
            row.first_order += 1;
        }
        if orders >= 2 {
            row.repeat_order += 1;
        }
    }
    cohorts.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn cohorts_count_each_step_after_the_join() {
        let join = |chat: &str, user: &str, d: &str| Join {
            chat_id: chat.into(),
            user_id: user.into(),
            day: day(d),
        };
        // 2026-07-06 is a Monday.
        let joins = [
            join("wrA", "u1", "2026-07-06"),
            join("wrA", "u2", "2026-07-08"),
            join("wrB", "u1", "2026-07-14"),
            join("wrB", "u3", "2026-07-13"),
        ];
        let active = HashMap::from([
            ("u1".to_owned(), day("2026-07-15")),
            ("u2".to_owned(), day("2026-07-07")),
        ]);
        let orders = HashMap::from([
            ("u1".to_owned(), vec![day("2026-07-10"), day("2026-07-16")]),
            ("u3".to_owned(), vec![day("2026-07-01")]),
        ]);
        let rows = compute(&joins, &active, &orders);
        let summary: Vec<(&str, String, [i64; 4])> = rows
            .iter()
            .map(|r| {
                (
                    r.chat_id.as_str(),
                    r.week.to_string(),
                    [r.joined, r.active, r.first_order, r.repeat_order],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                // u3 bought before joining: no first order after it.
                ("", "2026-07-13".into(), [1, 0, 0, 0]),
                ("wrB", "2026-07-13".into(), [2, 1, 1, 0]),
                ("", "2026-07-06".into(), [2, 1, 1, 1]),
                ("wrA", "2026-07-06".into(), [2, 1, 1, 1]),
            ]
        );
    }
}
