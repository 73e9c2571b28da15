//! `[[member_tags]]`: tags the analytics job keeps on members while a
//! condition holds (e.g. a check-in streak of 7 days → `坚持之星`; lifecycle
//! stage at_risk → `待唤回`). A rule's tag is removed again when its
//! condition stops holding; tags a manager set are never touched. Pure.

use serde::{Deserialize, Serialize};

use crate::analytics::lifecycle::Stage;
use crate::rules::{Content, OutRoute, Outbound};

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

/// A member tag added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChangeKind {
    Add,
    Remove,
}

impl TagChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TagChangeKind::Add => "add",
            TagChangeKind::Remove => "remove",
        }
    }
}

/// The outbox effect mirroring one tag change of external contact
/// `external_user_id` as a WeCom customer tag (`externalcontact/mark_tag`),
/// marked by `owner`, the member who has the contact (without one the row
/// is skipped with the reason). `change_id` makes the key unique per change,
/// so re-running a change adds nothing and a later change is its own row.
pub fn customer_tag_sync(
    external_user_id: &str,
    owner: Option<&str>,
    tag: &str,
    change: TagChangeKind,
    change_id: i64,
) -> Outbound {
    let (add, remove) = match change {
        TagChangeKind::Add => (vec![tag.to_owned()], Vec::new()),
        TagChangeKind::Remove => (Vec::new(), vec![tag.to_owned()]),
    };
    Outbound::new(
        format!(
            "mark_tag:{external_user_id}:{tag}:{}:{change_id}",
            change.as_str()
        ),
        OutRoute::CustomerTag {
            staff: owner.map(str::to_owned),
            external_user_id: external_user_id.to_owned(),
            add,
            remove,
        },
        Content::text(format!("member tag {tag}: {}", change.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_change_becomes_one_keyed_mark_tag_effect() {
        let added = customer_tag_sync("wmA", Some("lisi"), "vip", TagChangeKind::Add, 7);
        assert_eq!(added.idempotency_key, "mark_tag:wmA:vip:add:7");
        assert_eq!(
            added.route,
            OutRoute::CustomerTag {
                staff: Some("lisi".into()),
                external_user_id: "wmA".into(),
                add: vec!["vip".into()],
                remove: Vec::new(),
            }
        );
        let removed = customer_tag_sync("wmA", None, "vip", TagChangeKind::Remove, 8);
        assert_eq!(removed.idempotency_key, "mark_tag:wmA:vip:remove:8");
        assert!(matches!(
            removed.route,
            OutRoute::CustomerTag { staff: None, ref remove, .. } if remove == &["vip"]
        ));
    }

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
