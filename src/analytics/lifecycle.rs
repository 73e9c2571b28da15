//! Member lifecycle stages (per person, community-wide) and their changes.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::rules::analytics::LifecycleDoc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Joined fewer than `new_days` days ago.
    New,
    /// Posted or checked in within `at_risk_silent_days`.
    Active,
    /// Active on at least `core_min_active_days` of the last `core_window_days`.
    Core,
    /// Was active, silent for `at_risk_silent_days` or more.
    AtRisk,
    /// Past the new-member period and never active.
    Dormant,
    /// In no chat any more.
    Churned,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::New,
        Stage::Active,
        Stage::Core,
        Stage::AtRisk,
        Stage::Dormant,
        Stage::Churned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Active => "active",
            Stage::Core => "core",
            Stage::AtRisk => "at_risk",
            Stage::Dormant => "dormant",
            Stage::Churned => "churned",
        }
    }

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the stage of one person is decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub user_id: String,
    /// Earliest join of any chat still recorded.
    pub first_joined_at: i64,
    /// In at least one chat now.
    pub is_member: bool,
    /// Last community day with a post or check-in.
    pub last_active_day: Option<NaiveDate>,
    /// Days with a post or check-in in the last `core_window_days` (today included).
    pub active_days_in_window: i64,
}

/// The stage of one person at `now` (`today` is the community day of `now`).
pub fn stage_of(
    doc: &LifecycleDoc,
    facts: &MemberFacts,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Stage {
    if !facts.is_member {
        return Stage::Churned;
    }
    if now.timestamp() - facts.first_joined_at < doc.new_days * 86_400 {
        return Stage::New;
    }
    let Some(last) = facts.last_active_day else {
        return Stage::Dormant;
    };
    if (today - last).num_days() >= doc.at_risk_silent_days {
        return Stage::AtRisk;
    }
    if facts.active_days_in_window >= doc.core_min_active_days {
        return Stage::Core;
    }
    Stage::Active
}

/// A stage change to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub user_id: String,
    /// `None` the first time a person is classified.
    pub from: Option<Stage>,
    pub to: Stage,
    /// Whether the at-risk action fires: only on a change into `at_risk` from a
    /// known stage (the first classification of an existing community never
    /// messages everyone at once).
    pub triggers_at_risk_action: bool,
}

/// The changes between the stored stages and the stages now.
pub fn changes(previous: &BTreeMap<String, Stage>, current: &[(String, Stage)]) -> Vec<Change> {
    current
        .iter()
        .filter_map(|(user, stage)| {
            let from = previous.get(user).copied();
            (from != Some(*stage)).then(|| Change {
                user_id: user.clone(),
                from,
                to: *stage,
                triggers_at_risk_action: *stage == Stage::AtRisk && from.is_some(),
            })
        })
        .collect()
}

/// Whether a WeCom id is an external contact's (`wm…`/`wo…`); app messages
/// only reach internal members (docs/wecom.md#app-messages).
pub fn is_external_user(user_id: &str) -> bool {
    user_id.starts_with("wm") || user_id.starts_with("wo")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 30, 2, 0, 0).unwrap()
    }

    fn today() -> NaiveDate {
        "2026-03-30".parse().unwrap()
    }

    fn facts(
        joined_days_ago: i64,
        last_active_days_ago: Option<i64>,
        active_days: i64,
    ) -> MemberFacts {
        MemberFacts {
            user_id: "u1".into(),
            first_joined_at: (now() - Duration::days(joined_days_ago)).timestamp(),
            is_member: true,
            last_active_day: last_active_days_ago.map(|n| today() - Duration::days(n)),
            active_days_in_window: active_days,
        }
    }

    fn stage(f: &MemberFacts) -> Stage {
        stage_of(&LifecycleDoc::default(), f, now(), today())
    }

    #[test]
    fn each_stage_from_its_thresholds() {
        // Defaults: new 7 days, core 5 of 14 days, at risk after 14 silent days.
        assert_eq!(stage(&facts(6, None, 0)), Stage::New);
        assert_eq!(stage(&facts(6, Some(0), 6)), Stage::New, "new wins");
        assert_eq!(stage(&facts(30, Some(0), 5)), Stage::Core);
        assert_eq!(stage(&facts(30, Some(13), 4)), Stage::Active);
        assert_eq!(stage(&facts(30, Some(14), 0)), Stage::AtRisk);
        assert_eq!(stage(&facts(30, None, 0)), Stage::Dormant);
        let left = MemberFacts {
            is_member: false,
            ..facts(30, Some(0), 9)
        };
        assert_eq!(stage(&left), Stage::Churned);
    }

    #[test]
    fn silence_moves_active_to_at_risk_exactly_at_the_threshold() {
        let doc = LifecycleDoc {
            at_risk_silent_days: 3,
            ..LifecycleDoc::default()
        };
        let f = facts(30, Some(0), 1);
        let day = |n: i64| today() + Duration::days(n);
        let at = |n: i64| now() + Duration::days(n);
        assert_eq!(stage_of(&doc, &f, at(2), day(2)), Stage::Active);
        assert_eq!(stage_of(&doc, &f, at(3), day(3)), Stage::AtRisk);
    }

    #[test]
    fn only_a_change_into_at_risk_from_a_known_stage_triggers_the_action() {
        let previous = BTreeMap::from([
            ("a".to_string(), Stage::Active),
            ("b".to_string(), Stage::AtRisk),
            ("c".to_string(), Stage::Core),
        ]);
        let current = vec![
            ("a".to_string(), Stage::AtRisk),
            ("b".to_string(), Stage::AtRisk),
            ("c".to_string(), Stage::Churned),
            ("d".to_string(), Stage::AtRisk),
        ];
        let changes = changes(&previous, &current);
        let summary: Vec<(&str, Option<Stage>, Stage, bool)> = changes
            .iter()
            .map(|c| (c.user_id.as_str(), c.from, c.to, c.triggers_at_risk_action))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", Some(Stage::Active), Stage::AtRisk, true),
                ("c", Some(Stage::Core), Stage::Churned, false),
                ("d", None, Stage::AtRisk, false),
            ]
        );
        // Nothing changes the second time round.
        let stored: BTreeMap<String, Stage> = current.iter().cloned().collect();
        assert!(super::changes(&stored, &current).is_empty());
    }

    #[test]
    fn external_ids_are_recognised() {
        assert!(is_external_user("wmAbc"));
        assert!(is_external_user("woAbc"));
        assert!(!is_external_user("zhangsan"));
    }
}
