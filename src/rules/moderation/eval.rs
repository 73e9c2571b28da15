//! Evaluation sets: labelled messages per variant family, and the recall
//! and false-positive figures an engine reaches on them
//! (`qunyun moderation check --report`, and the in-repo evaluation test).
//!
//! A case file has one case per line, tab-separated:
//!
//! ```text
//! # expect  family     message
//! block     pinyin     加我 wang zhuan
//! pass      pinyin     我叫 Nina
//! ```
//!
//! `block` cases are evasions that must be caught; `pass` cases are
//! legitimate messages that resemble a banned term under the family's trick
//! and must not be blocked. Blank lines and `#` comments are ignored.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::engine::{verdict, Engine, Scratch};
use super::family::{FuzzyPolicy, Verdict};

/// One labelled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalCase {
    /// 1-based line in the case file.
    pub line: usize,
    /// An evasion that must be caught (else a look-alike that must pass).
    pub expect_block: bool,
    /// The trick the case exercises (free text; reports group by it).
    pub family: String,
    pub text: String,
}

/// Parse a case file; every bad line is reported.
pub fn parse_cases(source: &str) -> Result<Vec<EvalCase>, String> {
    let mut cases = Vec::new();
    let mut bad = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = raw.splitn(3, '\t');
        let (Some(expect), Some(family), Some(text)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bad.push(format!(
                "line {line}: expected `block|pass<TAB>family<TAB>message`"
            ));
            continue;
        };
        let expect_block = match expect.trim() {
            "block" => true,
            "pass" => false,
            other => {
                bad.push(format!("line {line}: {other:?} is not block or pass"));
                continue;
            }
        };
        cases.push(EvalCase {
            line,
            expect_block,
            family: family.trim().to_owned(),
            text: text.to_owned(),
        });
    }
    if bad.is_empty() {
        Ok(cases)
    } else {
        Err(bad.join("; "))
    }
}

/// Figures for one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyScore {
    pub family: String,
    /// `block` cases, and how many were caught (blocked or sent to review).
    pub evasions: usize,
    pub caught: usize,
    /// `pass` cases, and how many were wrongly blocked (a review punishes
    /// nobody, so it is not counted here).
    pub lookalikes: usize,
    pub wrongly_blocked: usize,
}

impl FamilyScore {
    /// Share of evasions caught (1 when there are none).
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.evasions, 1.0)
    }

    /// Share of look-alikes wrongly blocked (0 when there are none).
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.wrongly_blocked, self.lookalikes, 0.0)
    }

    fn add(&mut self, other: &FamilyScore) {
        self.evasions += other.evasions;
        self.caught += other.caught;
        self.lookalikes += other.lookalikes;
        self.wrongly_blocked += other.wrongly_blocked;
    }
}

fn ratio(part: usize, whole: usize, empty: f64) -> f64 {
    if whole == 0 {
        empty
    } else {
        part as f64 / whole as f64
    }
}

/// A case that went the wrong way, with what the engine said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss {
    pub case: EvalCase,
    pub verdict: Verdict,
    /// `term|family|matched text` per hit.
    pub hits: Vec<String>,
}

/// Figures per family, and the cases that went wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvalReport {
    pub families: Vec<FamilyScore>,
    pub misses: Vec<Miss>,
}

impl EvalReport {
    /// All families together.
    pub fn total(&self) -> FamilyScore {
        let mut total = FamilyScore {
            family: "all".into(),
            ..FamilyScore::default()
        };
        for score in &self.families {
            total.add(score);
        }
        total
    }

    /// A table for people, then the misses.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>7} {:>7}   {:>11} {:>8} {:>8}",
            "family", "evasions", "caught", "recall", "look-alikes", "blocked", "fp rate"
        );
        let total = self.total();
        for score in self.families.iter().chain(std::iter::once(&total)) {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>7} {:>6.1}%   {:>11} {:>8} {:>7.1}%",
                score.family,
                score.evasions,
                score.caught,
                score.recall() * 100.0,
                score.lookalikes,
                score.wrongly_blocked,
                score.false_positive_rate() * 100.0
            );
        }
        for miss in &self.misses {
            let expected = if miss.case.expect_block {
                "missed"
            } else {
                "wrongly blocked"
            };
            let _ = writeln!(
                out,
                "line {}: {} ({}, {}): {}{}{}",
                miss.case.line,
                expected,
                miss.case.family,
                miss.verdict,
                miss.case.text,
                if miss.hits.is_empty() { "" } else { "  ← " },
                miss.hits.join(", ")
            );
        }
        out
    }
}

/// Run every case through `engine` under `policy`.
pub fn evaluate(engine: &Engine, policy: FuzzyPolicy, cases: &[EvalCase]) -> EvalReport {
    let mut by_family: BTreeMap<&str, FamilyScore> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut scratch = Scratch::default();
    let mut hits = Vec::new();
    for case in cases {
        engine.scan_into(&case.text, &mut scratch, &mut hits);
        let decision = verdict(&hits, policy);
        let score = by_family
            .entry(case.family.as_str())
            .or_insert_with(|| FamilyScore {
                family: case.family.clone(),
                ..FamilyScore::default()
            });
        let wrong = if case.expect_block {
            score.evasions += 1;
            let caught = decision != Verdict::Pass;
            score.caught += usize::from(caught);
            !caught
        } else {
            score.lookalikes += 1;
            let blocked = decision == Verdict::Block;
            score.wrongly_blocked += usize::from(blocked);
            blocked
        };
        if wrong {
            misses.push(Miss {
                case: case.clone(),
                verdict: decision,
                hits: hits
                    .iter()
                    .map(|hit| {
                        format!(
                            "{}|{}|{}",
                            engine.describe(hit.source),
                            hit.family,
                            case.text.get(hit.span.clone()).unwrap_or_default()
                        )
                    })
                    .collect(),
            });
        }
    }
    EvalReport {
        families: by_family.into_values().collect(),
        misses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderation::{MatchOptions, TermList};

    #[test]
    fn cases_are_scored_per_family() {
        let cases = parse_cases(
            "# comment\nblock\tpinyin\twang zhuan\nblock\tpinyin\tnothing here\npass\tpinyin\t我叫 Nina\n\npass\texact\t网站\n",
        )
        .expect("valid cases");
        assert_eq!(cases.len(), 4);
        let terms = TermList::parse("网赚\n安娜\n").expect("valid");
        let engine =
            Engine::build(&terms, &TermList::default(), MatchOptions::default()).expect("builds");
        let report = evaluate(&engine, FuzzyPolicy::Block, &cases);
        let pinyin = &report.families[1];
        assert_eq!(pinyin.family, "pinyin");
        assert_eq!((pinyin.evasions, pinyin.caught), (2, 1));
        assert_eq!((pinyin.lookalikes, pinyin.wrongly_blocked), (1, 0));
        assert_eq!(report.misses.len(), 1);
        assert_eq!(report.misses[0].case.line, 3);
        assert!(report.render().contains("all"));
    }

    #[test]
    fn bad_lines_are_reported() {
        let err = parse_cases("maybe\tpinyin\tx\nblock only\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("line 2"), "{err}");
    }
}
