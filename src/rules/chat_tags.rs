//! `[[chat_tags]]`: tags the rule set gives chats when they are registered or
//! synced, by name pattern (`*` matches any run of characters) or owner.
//!
//! ```toml
//! [[chat_tags]]
//! tag = "vip"
//! name_pattern = "VIP*"
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTagRule {
    pub tag: String,
    /// The chat's name, `*` for any run of characters.
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// The chat owner's UserID.
    #[serde(default)]
    pub owner: Option<String>,
}

impl ChatTagRule {
    /// Both conditions given must hold; a rule with neither never matches
    /// (validation refuses it).
    pub fn matches(&self, name: &str, owner: Option<&str>) -> bool {
        if self.name_pattern.is_none() && self.owner.is_none() {
            return false;
        }
        let name_ok = self
            .name_pattern
            .as_deref()
            .is_none_or(|pattern| wildcard_match(pattern, name));
        let owner_ok = self
            .owner
            .as_deref()
            .is_none_or(|wanted| owner == Some(wanted));
        name_ok && owner_ok
    }

    /// Why the rule cannot be used, if it cannot: (field, reason).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.tag.trim().is_empty() || self.tag.chars().any(|c| c == ',' || c.is_whitespace()) {
            return Some(("tag", "needs a tag without spaces or commas"));
        }
        if self.name_pattern.is_none() && self.owner.is_none() {
            return Some(("tag", "needs name_pattern or owner"));
        }
        None
    }
}

/// The tags `rules` give a chat named `name` owned by `owner`, in rule order.
pub fn tags_for(rules: &[ChatTagRule], name: &str, owner: Option<&str>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for rule in rules.iter().filter(|rule| rule.matches(name, owner)) {
        if !tags.contains(&rule.tag) {
            tags.push(rule.tag.clone());
        }
    }
    tags
}

/// `*` matches any run of characters (also none); everything else itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tag: &str, pattern: Option<&str>, owner: Option<&str>) -> ChatTagRule {
        ChatTagRule {
            tag: tag.into(),
            name_pattern: pattern.map(str::to_owned),
            owner: owner.map(str::to_owned),
        }
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard_match("VIP*", "VIP会员群"));
        assert!(wildcard_match("*群", "VIP会员群"));
        assert!(wildcard_match("V*会*群", "VIP会员群"));
        assert!(wildcard_match("VIP会员群", "VIP会员群"));
        assert!(!wildcard_match("VIP", "VIP会员群"));
        assert!(!wildcard_match("*VIP", "VIP会员群"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }

    #[test]
    fn tags_come_from_every_matching_rule_once() {
        let rules = [
            rule("vip", Some("VIP*"), None),
            rule("boss", None, Some("zhangsan")),
            rule("vip", None, Some("zhangsan")),
            rule("never", None, None),
        ];
        assert_eq!(tags_for(&rules, "VIP群", Some("zhangsan")), ["vip", "boss"]);
        assert_eq!(tags_for(&rules, "普通群", None), Vec::<String>::new());
        assert!(rules[3].problem().is_some());
        assert!(rules[0].problem().is_none());
    }
}
