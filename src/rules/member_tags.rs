//! `[[member_tags]]`: tags the analytics job keeps on members while a
//! condition holds (e.g. a check-in streak of 7 days → `坚持之星`; lifecycle
//! stage at_risk → `待唤回`). A rule's tag is removed again when its
//! condition stops holding; tags a manager set are never touched. Pure.

use serde::{Deserialize, Serialize};

use crate::analytics::lifecycle::Stage;

/// Longest check-in streak a rule may ask for (the job reads this many days back).
pub const MAX_STREAK: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberTagRule {
    pub tag: String,
    /// The member is in this lifecycle stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The member's current check-in streak is at least this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_streak: Option<u32>,
}

impl MemberTagRule {
    /// The first problem, as (field, reason).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let tag = self.tag.trim();
        if tag.is_empty() || tag.chars().count() > 30 {
            return Some(("tag", "must be 1 to 30 characters"));
        }
        if self.stage.is_none() && self.min_streak.is_none() {
            return Some(("stage", "set stage or min_streak"));
        }
        if let Some(stage) = &self.stage {
            if Stage::ALL.iter().all(|s| s.as_str() != stage) {
                return Some((
                    "stage",
                    "must be new, active, core, at_risk, dormant or churned",
                ));
            }
        }
        if self.min_streak.is_some_and(|n| n == 0 || n > MAX_STREAK) {
            return Some(("min_streak", "must be 1 to 60 days"));
        }
        None
    }

    /// The source stored with the tags this rule sets.
    pub fn source(&self) -> String {
        format!("rule:{}", self.tag.trim())
    }

    /// Whether a member in `stage` with a `streak` of days meets every condition set.
    pub fn holds(&self, stage: Option<&str>, streak: u32) -> bool {
        self.stage.as_deref().is_none_or(|want| stage == Some(want))
            && self.min_streak.is_none_or(|n| streak >= n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(stage: Option<&str>, min_streak: Option<u32>) -> MemberTagRule {
        MemberTagRule {
            tag: "t".into(),
            stage: stage.map(str::to_owned),
            min_streak,
        }
    }

    #[test]
    fn every_condition_set_must_hold() {
        assert!(rule(None, Some(7)).holds(None, 7));
        assert!(!rule(None, Some(7)).holds(Some("core"), 6));
        assert!(rule(Some("at_risk"), None).holds(Some("at_risk"), 0));
        assert!(!rule(Some("at_risk"), None).holds(Some("core"), 30));
        assert!(!rule(Some("core"), Some(3)).holds(Some("core"), 2));
    }

    #[test]
    fn a_rule_needs_a_valid_condition() {
        assert_eq!(rule(None, None).problem().map(|p| p.0), Some("stage"));
        assert_eq!(
            rule(Some("sleepy"), None).problem().map(|p| p.0),
            Some("stage")
        );
        assert_eq!(
            rule(None, Some(0)).problem().map(|p| p.0),
            Some("min_streak")
        );
        assert_eq!(rule(None, Some(7)).problem(), None);
    }
}
