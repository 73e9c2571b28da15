//! Variant families: how a hit was matched, which families a term takes
//! part in, and what a hit of each family decides.

use std::fmt;
use std::str::FromStr;

/// How a hit matched its term. [`Family::Exact`] is the matching contract
/// (case, width, traditional/simplified, separators, emoji, styled letters,
/// circled and full-width digits); every other family is a fuzzy reading,
/// weaker evidence that a [`FuzzyPolicy`] decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Exact,
    /// Toneless pinyin in Latin letters (`wang zhuan`, `WangZhuan`, initials
    /// `dkfp` for long terms), alone or mixed with characters.
    Pinyin,
    /// Characters replaced by others with the same or a near pronunciation
    /// (`网撰` for `网赚`, `堵球` for `赌球`).
    Homophone,
    /// Digits for Chinese numerals and back (`1夜情`, `一三八`, `壹`, `③`).
    Number,
    /// Digits and symbols for Latin letters (`s3x`, `w€chat` is not leet).
    Leet,
    /// Look-alike characters (`徽` for `微`) and characters split into their
    /// components (`亻言` for `信`).
    Shape,
    /// Characters written twice (`加加微微信信`, `vvxx`).
    Doubled,
    /// Letters from other scripts drawn like Latin ones (Cyrillic `р`,
    /// Armenian `օ`, …).
    Lookalike,
}

impl Family {
    /// Every family, in the order reports list them.
    pub const ALL: [Family; 8] = [
        Family::Exact,
        Family::Pinyin,
        Family::Homophone,
        Family::Number,
        Family::Leet,
        Family::Shape,
        Family::Doubled,
        Family::Lookalike,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Exact => "exact",
            Family::Pinyin => "pinyin",
            Family::Homophone => "homophone",
            Family::Number => "number",
            Family::Leet => "leet",
            Family::Shape => "shape",
            Family::Doubled => "doubled",
            Family::Lookalike => "lookalike",
        }
    }

    pub fn is_fuzzy(self) -> bool {
        self != Family::Exact
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the family names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown matching family {0:?} (expected exact, pinyin, homophone, number, leet, shape, doubled, lookalike or all)")]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Family::ALL
            .into_iter()
            .find(|family| family.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownFamily(text.to_owned()))
    }
}

/// A set of families. [`Family::Exact`] is always in it: a term is at least
/// matched as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FamilySet(u16);

impl FamilySet {
    pub const ALL: FamilySet = FamilySet(0xFF);
    pub const EXACT_ONLY: FamilySet = FamilySet(1);

    pub fn contains(self, family: Family) -> bool {
        self.0 & family.bit() != 0
    }

    pub fn with(self, family: Family) -> FamilySet {
        FamilySet(self.0 | family.bit())
    }

    pub fn without(self, family: Family) -> FamilySet {
        if family == Family::Exact {
            return self;
        }
        FamilySet(self.0 & !family.bit())
    }

    pub fn intersect(self, other: FamilySet) -> FamilySet {
        FamilySet(self.0 & other.0 | 1)
    }

    pub fn iter(self) -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Parse a family list as written in a term file or the settings:
    ///
    /// * `all` — every family (the default);
    /// * `exact` — the term is matched only as written (after the contract's
    ///   normalisation);
    /// * `pinyin,number` — exactly these fuzzy families;
    /// * `-pinyin,-homophone` — every family but these.
    ///
    /// Names are separated by commas or spaces. Mixing `+`-less names and
    /// `-` names is refused as ambiguous.
    pub fn parse(text: &str) -> Result<FamilySet, UnknownFamily> {
        let words: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|word| !word.is_empty())
            .collect();
        if words.is_empty() || words == ["all"] {
            return Ok(FamilySet::ALL);
        }
        let removing = words.iter().filter(|w| w.starts_with('-')).count();
        if removing == words.len() {
            let mut set = FamilySet::ALL;
            for word in words {
                set = set.without(word[1..].parse()?);
            }
            return Ok(set);
        }
        if removing > 0 {
            return Err(UnknownFamily(text.trim().to_owned()));
        }
        let mut set = FamilySet::EXACT_ONLY;
        for word in words {
            set = set.with(word.trim_start_matches('+').parse()?);
        }
        Ok(set)
    }
}

impl Default for FamilySet {
    fn default() -> Self {
        FamilySet::ALL
    }
}

impl fmt::Debug for FamilySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for FamilySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FamilySet::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.iter().map(Family::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// What a fuzzy hit (any family but [`Family::Exact`]) leads to. Exact hits
/// always block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FuzzyPolicy {
    /// Treat a fuzzy hit like an exact one.
    #[default]
    Block,
    /// Hand the message to a person (a review task) without sanctions.
    Review,
    /// Record nothing.
    Ignore,
}

impl FuzzyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FuzzyPolicy::Block => "block",
            FuzzyPolicy::Review => "review",
            FuzzyPolicy::Ignore => "ignore",
        }
    }
}

/// Not `block`, `review` or `ignore`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fuzzy policy {0:?} is not one of block, review, ignore")]
pub struct UnknownPolicy(pub String);

impl FromStr for FuzzyPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(FuzzyPolicy::Block),
            "review" => Ok(FuzzyPolicy::Review),
            "ignore" => Ok(FuzzyPolicy::Ignore),
            _ => Err(UnknownPolicy(text.trim().to_owned())),
        }
    }
}

/// The decision on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Pass,
    Review,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Review => "review",
            Verdict::Block => "block",
        }
    }

    /// What one hit of `family` decides under `policy`.
    pub fn of(family: Family, policy: FuzzyPolicy) -> Verdict {
        match (family.is_fuzzy(), policy) {
            (false, _) | (true, FuzzyPolicy::Block) => Verdict::Block,
            (true, FuzzyPolicy::Review) => Verdict::Review,
            (true, FuzzyPolicy::Ignore) => Verdict::Pass,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_lists_parse_as_managers_write_them() {
        assert_eq!(FamilySet::parse("").unwrap(), FamilySet::ALL);
        assert_eq!(FamilySet::parse("all").unwrap(), FamilySet::ALL);
        assert_eq!(FamilySet::parse("exact").unwrap(), FamilySet::EXACT_ONLY);
        let some = FamilySet::parse("pinyin, number").unwrap();
        assert!(some.contains(Family::Exact));
        assert!(some.contains(Family::Pinyin));
        assert!(!some.contains(Family::Homophone));
        let most = FamilySet::parse("-pinyin -homophone").unwrap();
        assert!(!most.contains(Family::Pinyin));
        assert!(most.contains(Family::Shape));
        assert!(FamilySet::parse("-exact").unwrap().contains(Family::Exact));
        assert!(FamilySet::parse("pinyin,-shape").is_err());
        assert!(FamilySet::parse("sound").is_err());
        assert_eq!(
            most.to_string(),
            "exact,number,leet,shape,doubled,lookalike"
        );
    }

    #[test]
    fn exact_hits_block_whatever_the_policy() {
        for policy in [FuzzyPolicy::Block, FuzzyPolicy::Review, FuzzyPolicy::Ignore] {
            assert_eq!(Verdict::of(Family::Exact, policy), Verdict::Block);
        }
        assert_eq!(
            Verdict::of(Family::Pinyin, FuzzyPolicy::Block),
            Verdict::Block
        );
        assert_eq!(
            Verdict::of(Family::Pinyin, FuzzyPolicy::Review),
            Verdict::Review
        );
        assert_eq!(
            Verdict::of(Family::Pinyin, FuzzyPolicy::Ignore),
            Verdict::Pass
        );
    }
}
