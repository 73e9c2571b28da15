//! The honour board (荣誉榜) and badges (勋章): which period a board covers,
//! when it is due, who tops each metric, and the replies to `荣誉榜` and
//! `勋章`. Pure: the store loads the rows ([`BoardData`]), `jobs::honour`
//! publishes.
//!
//! Metrics, each over the board's period (community days, first..=last):
//! - `streak`: the longest run of consecutive check-in days (补签 included);
//! - `points`: points earned (positive ledger entries, refunds excluded);
//! - `essence`: the member's messages a manager marked 精华;
//! - `showcase`: the member's 晒单 images that earned points;
//! - `helpful`: distinct 有用 marks other members gave the member's messages
//!   (热心助人; one per message and giver).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::templates::{BadgesVars, HonourBoardVars, HonourSection, RankEntry};
use super::{Action, MessageContext, RuleSet};

/// `[honour]`: the boards. The first board also answers `荣誉榜`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HonourDoc {
    pub boards: Vec<BoardDoc>,
}

impl Default for HonourDoc {
    fn default() -> Self {
        Self {
            boards: vec![BoardDoc::default()],
        }
    }
}

/// One board (`[[honour.boards]]`). Without targets it is only asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardDoc {
    /// Stable name: part of each post's unique key.
    pub name: String,
    pub title: String,
    pub period: Period,
    pub metrics: Vec<Metric>,
    /// Members shown per metric.
    pub top: usize,
    /// Publish to every chat qunyun knows.
    pub all_chats: bool,
    /// Publish to chats carrying any of these tags.
    pub chat_tags: Vec<String>,
    /// Publish to these chats.
    pub chat_ids: Vec<String>,
    /// Local hour on the first day of the next period when the finished
    /// period's board goes out (Monday for weekly boards, the 1st for monthly).
    pub publish_hour: u32,
}

impl Default for BoardDoc {
    fn default() -> Self {
        Self {
            name: "weekly".into(),
            title: "本周荣誉榜".into(),
            period: Period::Week,
            metrics: vec![
                Metric::Streak,
                Metric::Points,
                Metric::Essence,
                Metric::Helpful,
            ],
            top: 3,
            all_chats: false,
            chat_tags: Vec::new(),
            chat_ids: Vec::new(),
            publish_hour: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Streak,
    Points,
    Essence,
    Showcase,
    Helpful,
}

impl Metric {
    fn title(self) -> &'static str {
        match self {
            Metric::Streak => "连续签到",
            Metric::Points => "积分达人",
            Metric::Essence => "精华作者",
            Metric::Showcase => "晒单之星",
            Metric::Helpful => "热心助人",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Streak => " 天",
            Metric::Points => " 分",
            Metric::Essence | Metric::Showcase => " 条",
            Metric::Helpful => " 次",
        }
    }
}

/// The community days one board covers, and its key (`2026-W47`, `2026-11`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRange {
    pub key: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl PeriodRange {
    /// "2026-11-16 ~ 2026-11-22".
    pub fn label(&self) -> String {
        format!("{} ~ {}", self.first, self.last)
    }
}

/// The period of `period` that contains `day`.
pub fn period_containing(period: Period, day: NaiveDate) -> PeriodRange {
    match period {
        Period::Week => {
            let first = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
            let week = first.iso_week();
            PeriodRange {
                key: format!("{}-W{:02}", week.year(), week.week()),
                first,
                last: first + Duration::days(6),
            }
        }
        Period::Month => {
            let first = day.with_day(1).unwrap_or(day);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            };
            PeriodRange {
                key: format!("{}-{:02}", first.year(), first.month()),
                first,
                last: next.map_or(first, |next| next - Duration::days(1)),
            }
        }
    }
}

/// The finished period whose board is due at `now`: the previous period, once
/// the current one's first community day has reached `publish_hour` local
/// time. Publishing is keyed by period, so a late start still posts it once.
pub fn due_period(rules: &RuleSet, board: &BoardDoc, now: DateTime<Utc>) -> Option<PeriodRange> {
    let today = rules.community_day(now);
    let current = period_containing(board.period, today);
    let local_hour = now.with_timezone(&rules.timezone).hour();
    if today == current.first && local_hour < board.publish_hour {
        return None;
    }
    Some(period_containing(
        board.period,
        current.first - Duration::days(1),
    ))
}

/// One member's value for one metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRow {
    pub user_id: String,
    pub name: Option<String>,
    pub value: i64,
}

/// Everything a board shows, for one period, as the store reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardData {
    pub period: Option<PeriodRange>,
    /// Check-in days in the period: `(user, name, day)`, any order.
    pub checkins: Vec<(String, Option<String>, NaiveDate)>,
    pub points: Vec<MetricRow>,
    pub essence: Vec<MetricRow>,
    pub showcase: Vec<MetricRow>,
    /// 有用 marks received (older snapshots have none).
    #[serde(default)]
    pub helpful: Vec<MetricRow>,
}

/// Each member's longest run of consecutive days.
pub fn longest_runs(checkins: &[(String, Option<String>, NaiveDate)]) -> Vec<MetricRow> {
    let mut by_user: BTreeMap<&str, (Option<&String>, Vec<NaiveDate>)> = BTreeMap::new();
    for (user, name, day) in checkins {
        let entry = by_user.entry(user).or_insert((name.as_ref(), Vec::new()));
        entry.1.push(*day);
    }
    by_user
        .into_iter()
        .map(|(user, (name, mut days))| {
            days.sort_unstable();
            days.dedup();
            let (mut best, mut run) = (0, 0);
            for (i, day) in days.iter().enumerate() {
                run = if i > 0 && days[i - 1] + Duration::days(1) == *day {
                    run + 1
                } else {
                    1
                };
                best = best.max(run);
            }
            MetricRow {
                user_id: user.to_string(),
                name: name.cloned(),
                value: best,
            }
        })
        .collect()
}

/// The best `top` of `rows` (value descending, then user id), zeros left out.
pub fn top(rows: &[MetricRow], top: usize) -> Vec<RankEntry> {
    let mut rows: Vec<&MetricRow> = rows.iter().filter(|row| row.value > 0).collect();
    rows.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    rows.into_iter()
        .take(top)
        .map(|row| RankEntry {
            name: row.name.clone().unwrap_or_else(|| row.user_id.clone()),
            points: row.value,
        })
        .collect()
}

/// The board's text for the data's period.
pub fn render(rules: &RuleSet, board: &BoardDoc, data: &BoardData) -> String {
    let sections = board
        .metrics
        .iter()
        .map(|metric| {
            let rows = match metric {
                Metric::Streak => longest_runs(&data.checkins),
                Metric::Points => data.points.clone(),
                Metric::Essence => data.essence.clone(),
                Metric::Showcase => data.showcase.clone(),
                Metric::Helpful => data.helpful.clone(),
            };
            HonourSection {
                title: metric.title().into(),
                unit: metric.unit().into(),
                entries: top(&rows, board.top),
            }
        })
        .collect();
    rules.render(
        "honour_board",
        &HonourBoardVars {
            title: board.title.clone(),
            period: data
                .period
                .as_ref()
                .map(PeriodRange::label)
                .unwrap_or_default(),
            sections,
        },
    )
}

/// The chats a board goes to, from `(chat id, tags)` of every known chat.
pub fn targets<'a>(board: &BoardDoc, chats: &'a [(String, Vec<String>)]) -> Vec<&'a str> {
    chats
        .iter()
        .filter(|(chat_id, tags)| {
            board.all_chats
                || board.chat_ids.contains(chat_id)
                || tags.iter().any(|tag| board.chat_tags.contains(tag))
        })
        .map(|(chat_id, _)| chat_id.as_str())
        .collect()
}

/// `荣誉榜`: the first board over its current period so far.
pub fn on_board(cx: &MessageContext) -> Vec<Action> {
    let board = cx
        .rules
        .doc
        .honour
        .boards
        .first()
        .cloned()
        .unwrap_or_default();
    let data = cx.snapshot.honour.clone().unwrap_or_default();
    let text = render(cx.rules, &board, &data);
    vec![cx.reply(text)]
}

/// `勋章`: the sender's badges and what the next ones need.
pub fn on_badges(cx: &MessageContext) -> Vec<Action> {
    let person = cx.snapshot.person(&cx.message.sender);
    let text = cx.rules.render(
        "badges",
        &BadgesVars {
            name: person.display_name(),
            badges: person.badges.join("、"),
            next: next_badges(cx.rules, &person.badges).join("；"),
        },
    );
    vec![cx.reply(text)]
}

/// The badges not held yet, with what each needs, in the rule set's order.
pub fn next_badges(rules: &RuleSet, held: &[String]) -> Vec<String> {
    let streaks = rules.doc.checkin.milestones.iter().map(|m| {
        (
            m.badge.as_str(),
            format!("连续签到 {} 天 →「{}」", m.days, m.badge),
        )
    });
    let essence = rules.doc.ugc.essence_badges.iter().map(|b| {
        (
            b.badge.as_str(),
            format!("{} 条精华 →「{}」", b.count, b.badge),
        )
    });
    streaks
        .chain(essence)
        .filter(|(badge, _)| !held.iter().any(|h| h == badge))
        .map(|(_, need)| need)
        .collect()
}

/// Problems in `[honour]` and `[ugc]`: `(path, reason)`.
pub fn validate(honour: &HonourDoc, ugc: &super::ugc::UgcDoc) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, board) in honour.boards.iter().enumerate() {
        let path = |field: &str| format!("honour.boards[{i}].{field}");
        if board.name.trim().is_empty() || board.name.contains(':') {
            problems.push((path("name"), "must be non-empty, without ':'".into()));
        }
        if !names.insert(board.name.clone()) {
            problems.push((path("name"), "duplicate board name".into()));
        }
        if board.metrics.is_empty() {
            problems.push((path("metrics"), "needs at least one metric".into()));
        }
        if !(1..=20).contains(&board.top) {
            problems.push((path("top"), "must be between 1 and 20".into()));
        }
        if board.publish_hour > 23 {
            problems.push((path("publish_hour"), "must be between 0 and 23".into()));
        }
    }
    problems.extend(ugc.problems());
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn row(user: &str, value: i64) -> MetricRow {
        MetricRow {
            user_id: user.into(),
            name: None,
            value,
        }
    }

    #[test]
    fn periods_are_monday_weeks_and_calendar_months() {
        let week = period_containing(Period::Week, date(2026, 11, 22));
        assert_eq!(
            (week.key.as_str(), week.first, week.last),
            ("2026-W47", date(2026, 11, 16), date(2026, 11, 22))
        );
        let month = period_containing(Period::Month, date(2026, 12, 31));
        assert_eq!(
            (month.key.as_str(), month.first, month.last),
            ("2026-12", date(2026, 12, 1), date(2026, 12, 31))
        );
    }

    #[test]
    fn the_finished_period_is_due_from_the_publish_hour_of_the_next_ones_first_day() {
        use chrono::TimeZone;
        let rules = RuleSet::builtin(); // Asia/Shanghai, board at 10:00
        let board = BoardDoc::default();
        // Monday 2026-11-23 09:59 Shanghai = 01:59 UTC: not yet.
        let before = Utc.with_ymd_and_hms(2026, 11, 23, 1, 59, 0).unwrap();
        assert_eq!(due_period(&rules, &board, before), None);
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
        assert_eq!(due_period(&rules, &board, at).unwrap().key, "2026-W47");
        // Later in the week it is still the same (already published) period.
        let later = Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap();
        assert_eq!(due_period(&rules, &board, later).unwrap().key, "2026-W47");
    }

    #[test]
    fn longest_run_counts_consecutive_days_only() {
        let days = |user: &str, list: &[u32]| -> Vec<(String, Option<String>, NaiveDate)> {
            list.iter()
                .map(|d| (user.to_string(), None, date(2026, 11, *d)))
                .collect()
        };
        let mut rows = days("a", &[16, 17, 19, 20, 21]);
        rows.extend(days("b", &[18, 16, 17, 17]));
        let runs = longest_runs(&rows);
        assert_eq!(runs, vec![row("a", 3), row("b", 3)]);
    }

    #[test]
    fn top_orders_by_value_then_id_and_drops_zeros() {
        let rows = [row("c", 5), row("a", 9), row("b", 5), row("z", 0)];
        let names: Vec<String> = top(&rows, 3).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(top(&rows, 10).len(), 3);
    }

    #[test]
    fn targets_are_all_chats_ids_or_tags() {
        let chats = vec![
            ("c1".to_string(), vec!["vip".to_string()]),
            ("c2".to_string(), vec![]),
        ];
        let mut board = BoardDoc::default();
        assert!(targets(&board, &chats).is_empty());
        board.chat_tags = vec!["vip".into()];
        assert_eq!(targets(&board, &chats), ["c1"]);
        board.all_chats = true;
        assert_eq!(targets(&board, &chats), ["c1", "c2"]);
    }

    #[test]
    fn the_helpful_section_ranks_marks_received_in_times() {
        let rules = RuleSet::builtin();
        let board = BoardDoc {
            metrics: vec![Metric::Helpful],
            ..BoardDoc::default()
        };
        let data = BoardData {
            helpful: vec![row("a", 2), row("b", 5)],
            ..BoardData::default()
        };
        let text = render(&rules, &board, &data);
        assert!(
            text.contains("【热心助人】\n1. b 5 次\n2. a 2 次"),
            "{text}"
        );
        assert!(BoardDoc::default().metrics.contains(&Metric::Helpful));
    }

    #[test]
    fn next_badges_skip_the_held_ones() {
        let rules = RuleSet::builtin();
        let next = next_badges(&rules, &["三日之约".to_string()]);
        assert_eq!(next[0], "连续签到 7 天 →「七日之星」");
        assert!(next.iter().all(|n| !n.contains("三日之约")));
    }
}
