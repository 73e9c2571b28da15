//! Regex rules (links, phone numbers, WeChat-id patterns): compiled and
//! validated when a manager saves them, never found broken when they fire.

use std::collections::HashSet;
use std::sync::Arc;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::terms::Severity;

/// Which text a regex rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegexTarget {
    /// The message as sent. Right for links, whose punctuation matters.
    Original,
    /// The folded matching text: lower-case, full-width folded, traditional
    /// simplified, and with every space, symbol and emoji removed. Right for
    /// numbers written as `１３８ ００１３ ８０００` or `①③⑧…`.
    Folded,
}

/// A regex rule as a manager writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegexRuleSpec {
    /// Unique, shown in explanations and the audit log.
    pub name: String,
    pub pattern: String,
    pub category: String,
    pub severity: Severity,
    pub target: RegexTarget,
}

impl RegexRuleSpec {
    pub fn new(
        name: &str,
        pattern: &str,
        category: &str,
        severity: Severity,
        target: RegexTarget,
    ) -> Self {
        Self {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
            category: category.to_owned(),
            severity,
            target,
        }
    }

    /// Starting rules a community can adopt and edit.
    pub fn presets() -> Vec<RegexRuleSpec> {
        vec![
            RegexRuleSpec::new(
                "link",
                // No `\b`: Unicode word boundaries force the slow regex
                // engine on Chinese text.
                r"(?i)(?:https?://|www\.)[^\s，。！？]+|[a-z0-9-]+\.(?:com|cn|net|org|me|io|cc|top|xyz|vip)(?:/[^\s，。！？]*)?",
                "link",
                Severity::Medium,
                RegexTarget::Original,
            ),
            // Mainland mobile numbers; on the folded text so that spaces,
            // dashes, full-width and circled digits do not hide them.
            RegexRuleSpec::new(
                "cn_mobile",
                r"1[3-9][0-9]{9}",
                "contact",
                Severity::Medium,
                RegexTarget::Folded,
            ),
            // "vx: abc_123", "威信 abc123" …: a WeChat-ish word then an id.
            RegexRuleSpec::new(
                "wechat_id",
                r"(?i)(?:vx|wx|v信|微信|威信|薇信|徽信|weixin|wechat)\s*(?:号|id)?\s*[:：]?\s*[a-z][-_a-z0-9]{5,19}",
                "contact",
                Severity::Medium,
                RegexTarget::Original,
            ),
        ]
    }
}

/// Limit on a compiled regex, so that a pasted monster cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a regex rule was refused on save.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegexRuleErrorKind {
    #[error("name is empty")]
    EmptyName,
    #[error("another rule already has this name")]
    DuplicateName,
    #[error("category is empty or contains spaces")]
    BadCategory,
    #[error("pattern does not compile: {0}")]
    Syntax(String),
    #[error("pattern is too large once compiled")]
    TooLarge,
    #[error("pattern matches an empty message, so it would fire on everything")]
    MatchesEmpty,
}

impl RegexRuleErrorKind {
    /// Stable code for the console.
    pub fn code(&self) -> &'static str {
        match self {
            RegexRuleErrorKind::EmptyName => "empty_name",
            RegexRuleErrorKind::DuplicateName => "duplicate_name",
            RegexRuleErrorKind::BadCategory => "bad_category",
            RegexRuleErrorKind::Syntax(_) => "regex_syntax",
            RegexRuleErrorKind::TooLarge => "regex_too_large",
            RegexRuleErrorKind::MatchesEmpty => "regex_matches_empty",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("regex rule {index} ({name:?}): {kind}")]
pub struct RegexRuleError {
    /// Position in the submitted list.
    pub index: usize,
    pub name: String,
    pub kind: RegexRuleErrorKind,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    pub name: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub regex: Regex,
}

/// A validated set of regex rules, split by target so each text is tested
/// against all its rules in one pass.
#[derive(Clone, Debug, Default)]
pub struct RegexRules {
    pub(crate) original: RuleGroup,
    pub(crate) folded: RuleGroup,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RuleGroup {
    pub set: Option<RegexSet>,
    pub rules: Vec<CompiledRule>,
}

impl RegexRules {
    /// Validate and compile; every bad rule is reported.
    pub fn compile(specs: &[RegexRuleSpec]) -> Result<RegexRules, Vec<RegexRuleError>> {
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        let mut rules = RegexRules::default();
        for (index, spec) in specs.iter().enumerate() {
            let fail = |kind| RegexRuleError {
                index,
                name: spec.name.clone(),
                kind,
            };
            let name = spec.name.trim();
            if name.is_empty() {
                errors.push(fail(RegexRuleErrorKind::EmptyName));
                continue;
            }
            if !names.insert(name.to_owned()) {
                errors.push(fail(RegexRuleErrorKind::DuplicateName));
                continue;
            }
            let category = spec.category.trim();
            if category.is_empty() || category.chars().any(char::is_whitespace) {
                errors.push(fail(RegexRuleErrorKind::BadCategory));
                continue;
            }
            let regex = match RegexBuilder::new(&spec.pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(regex) => regex,
                Err(regex::Error::CompiledTooBig(_)) => {
                    errors.push(fail(RegexRuleErrorKind::TooLarge));
                    continue;
                }
                Err(error) => {
                    errors.push(fail(RegexRuleErrorKind::Syntax(error.to_string())));
                    continue;
                }
            };
            if regex.is_match("") {
                errors.push(fail(RegexRuleErrorKind::MatchesEmpty));
                continue;
            }
            let group = match spec.target {
                RegexTarget::Original => &mut rules.original,
                RegexTarget::Folded => &mut rules.folded,
            };
            group.rules.push(CompiledRule {
                name: Arc::from(name),
                category: Arc::from(category),
                severity: spec.severity,
                regex,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for group in [&mut rules.original, &mut rules.folded] {
            if group.rules.is_empty() {
                continue;
            }
            let set = RegexSetBuilder::new(group.rules.iter().map(|rule| rule.regex.as_str()))
                .size_limit(REGEX_SIZE_LIMIT * 4)
                .build()
                .map_err(|_| {
                    vec![RegexRuleError {
                        index: 0,
                        name: String::new(),
                        kind: RegexRuleErrorKind::TooLarge,
                    }]
                })?;
            group.set = Some(set);
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.original.rules.is_empty() && self.folded.rules.is_empty()
    }
}

impl RuleGroup {
    /// Every match of every rule in `text`, as (rule index, byte span).
    pub(crate) fn for_each_match(&self, text: &str, mut found: impl FnMut(usize, usize, usize)) {
        let Some(set) = &self.set else {
            return;
        };
        for index in set.matches(text).iter() {
            if let Some(rule) = self.rules.get(index) {
                for found_match in rule.regex.find_iter(text) {
                    found(index, found_match.start(), found_match.end());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, pattern: &str) -> RegexRuleSpec {
        RegexRuleSpec::new(name, pattern, "ads", Severity::Low, RegexTarget::Original)
    }

    #[test]
    fn presets_compile() {
        let rules = RegexRules::compile(&RegexRuleSpec::presets()).expect("presets are valid");
        assert!(!rules.is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_stable_codes() {
        let specs = vec![
            spec("ok", r"\d{11}"),
            spec("", "x"),
            spec("ok", "y"),
            spec("broken", "(unclosed"),
            spec("everything", "a*"),
            spec("huge", r"\w{1000}\w{1000}\w{1000}"),
            RegexRuleSpec::new(
                "cat",
                "z",
                "two words",
                Severity::Low,
                RegexTarget::Original,
            ),
        ];
        let errors = RegexRules::compile(&specs).expect_err("must refuse");
        let codes: Vec<_> = errors.iter().map(|e| (e.index, e.kind.code())).collect();
        assert_eq!(
            codes,
            vec![
                (1, "empty_name"),
                (2, "duplicate_name"),
                (3, "regex_syntax"),
                (4, "regex_matches_empty"),
                (5, "regex_too_large"),
                (6, "bad_category"),
            ]
        );
    }
}
