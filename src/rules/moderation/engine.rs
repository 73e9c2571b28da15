//! The matching engine: one automaton per term-list version, one pass per
//! message, plus the variant families (`variants.rs`) for what passes the
//! exact pass.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use daachorse::{CharwiseDoubleArrayAhoCorasick, CharwiseDoubleArrayAhoCorasickBuilder, MatchKind};

use super::behaviour::{fingerprint_folded, TextFingerprint};
use super::family::{Family, FamilySet, FuzzyPolicy, Verdict};
use super::fold::{FoldOptions, FoldTable};
use super::normalize::{
    fold_text_each, fold_text_into, leet_into, leet_term, normalize_into, normalize_term,
    Normalized, RepeatCollapse, COLLAPSED, FOREIGN, GAP_BEFORE, LATIN, LOOKALIKE, NUMERAL,
};
use super::phonetic::{self, PhoneticText, Reader};
use super::regex_rules::{RegexRules, RuleGroup};
use super::terms::{BadLine, LineError, Severity, Term, TermList};
use super::variants::{self, LeetIndex, PhoneticIndex};

/// Shorter folded messages get no fingerprint; see [`Engine::fingerprint`].
pub const MIN_FINGERPRINT_CHARS: usize = 6;

/// Matching steps beyond the contract. Each is a switch with tests showing
/// what it catches and what it leaves alone; all are on by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchOptions {
    /// Cyrillic/Greek look-alike letters match Latin ones (`рay` → `pay`),
    /// except in words that are evidently Cyrillic/Greek.
    pub lookalike_letters: bool,
    /// Financial numerals match digits (`壹叁捌` → `138`).
    pub financial_numerals: bool,
    /// A repeated non-Latin letter counts once (`加加微微信信` → `加微信`),
    /// unless some term itself doubles that character.
    pub collapse_repeats: bool,
    /// The variant families matched at all (each term may narrow them
    /// further in the term file).
    pub families: FamilySet,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            lookalike_letters: true,
            financial_numerals: true,
            collapse_repeats: true,
            families: FamilySet::ALL,
        }
    }
}

/// What produced a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HitSource {
    /// Index into [`Engine::terms`].
    Term(usize),
    /// Index into the engine's regex rules (see [`Engine::describe`]).
    Regex(RegexRuleRef),
}

/// A regex rule inside an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegexRuleRef {
    folded: bool,
    index: usize,
}

/// One finding in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub source: HitSource,
    pub category: Arc<str>,
    pub severity: Severity,
    /// Byte span in the **original** message, on character boundaries.
    pub span: Range<usize>,
    /// How the text matched ([`Family::Exact`] for regex rules).
    pub family: Family,
}

/// The decision on a message's hits: exact hits block, fuzzy ones follow
/// `policy`.
pub fn verdict(hits: &[Hit], policy: FuzzyPolicy) -> Verdict {
    hits.iter()
        .map(|hit| Verdict::of(hit.family, policy))
        .max()
        .unwrap_or(Verdict::Pass)
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("term list: {}", format_lines(.0))]
    Terms(Vec<BadLine>),
    #[error("allow-list: {}", format_lines(.0))]
    Allow(Vec<BadLine>),
    /// The automaton library refused the list (scale limits); its error
    /// type is not `std::error::Error`, so only its message is kept.
    #[error("building the automaton failed: {0}")]
    Automaton(String),
}

fn format_lines(lines: &[BadLine]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reusable buffers for scanning; keep one per worker thread.
#[derive(Debug, Default)]
pub struct Scratch {
    normalized: Normalized,
    /// Allowed spans, in folded-character indices and in original bytes.
    allowed: Vec<(usize, usize)>,
    allowed_bytes: Vec<Range<usize>>,
    /// Term hits before allow-list filtering: (first char, end char, term,
    /// family).
    candidates: Vec<(usize, usize, usize, Family)>,
    /// Raw automaton matches: (start byte, end byte, pattern), folded text.
    found: Vec<(usize, usize, usize)>,
    /// Folded-text regex matches: (start byte, end byte, rule).
    regex_found: Vec<(usize, usize, usize)>,
    /// The message read as pronunciation symbols, and the matches on it.
    phonetic: PhoneticText,
    phonetic_found: Vec<(u32, u32, u32)>,
    /// The leet reading, only for messages that may have one.
    leet: Normalized,
    leet_found: Vec<(usize, usize, usize)>,
    /// Fuzzy hits before allow-list and duplicate filtering.
    fuzzy: Vec<(Range<usize>, usize, Family)>,
}

#[derive(Debug, Default, Clone)]
struct Pattern {
    /// The terms this pattern spells, and as which family (the term itself:
    /// exact; its doubled spelling or pinyin initials: fuzzy).
    terms: Vec<(usize, Family)>,
    allow: bool,
    /// The folded pattern starts / ends with a Latin letter, so it only
    /// matches at a Latin word boundary there.
    boundary_at_start: bool,
    boundary_at_end: bool,
}

/// A compiled term list, allow-list and regex rules. Immutable and cheap to
/// share (`Arc<Engine>`); build a new one for each list version.
pub struct Engine {
    /// Character-wise double-array Aho-Corasick: compact and cache-friendly
    /// for large CJK term lists, with overlapping search.
    automaton: Option<CharwiseDoubleArrayAhoCorasick<u32>>,
    patterns: Vec<Pattern>,
    terms: Vec<Term>,
    /// Each term's families, narrowed by [`MatchOptions::families`].
    families: Vec<FamilySet>,
    phonetic: Option<PhoneticIndex>,
    leet: Option<LeetIndex>,
    table: FoldTable,
    collapse: RepeatCollapse,
    options: MatchOptions,
    regex: RegexRules,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("terms", &self.terms.len())
            .field("patterns", &self.patterns.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Compile `terms` and `allow` into one automaton, plus the variant
    /// families' indexes.
    pub fn build(
        terms: &TermList,
        allow: &TermList,
        options: MatchOptions,
    ) -> Result<Engine, EngineError> {
        // The process-wide pronunciation tables are built on first use:
        // build them while the terms are folded, which needs only the fold
        // table.
        let (table, tables, folded_terms, folded_allow) = std::thread::scope(|scope| {
            let tables = scope.spawn(phonetic::tables);
            let table = FoldTable::new(FoldOptions {
                lookalike_letters: options.lookalike_letters,
                financial_numerals: options.financial_numerals,
            });
            let no_collapse = RepeatCollapse::default();
            let folded_terms = fold_all(&table, &no_collapse, terms);
            let folded_allow = fold_all(&table, &no_collapse, allow);
            (table, join(tables), folded_terms, folded_allow)
        });
        let folded_terms = folded_terms.map_err(EngineError::Terms)?;
        let folded_allow = folded_allow.map_err(EngineError::Allow)?;
        let families: Vec<FamilySet> = terms
            .terms
            .iter()
            .map(|term| term.families.intersect(options.families))
            .collect();

        let mut collapse = RepeatCollapse {
            enabled: options.collapse_repeats,
            ..RepeatCollapse::default()
        };
        if options.collapse_repeats {
            for folded in folded_terms.iter().chain(&folded_allow) {
                let mut previous = None;
                for c in folded.chars() {
                    if previous == Some(c) {
                        collapse.keep_doubled.insert(c);
                    }
                    previous = Some(c);
                }
            }
        }

        // Extra spellings in the main automaton: doubled characters and
        // pinyin initials of long terms.
        let mut extra: Vec<(String, usize, Family)> = Vec::new();
        for (term, (folded, set)) in folded_terms.iter().zip(&families).enumerate() {
            if set.contains(Family::Doubled) {
                let collapses = |c: char| collapse.collapses_char(c);
                if let Some(spelling) = variants::doubled(folded, collapses) {
                    extra.push((spelling, term, Family::Doubled));
                }
            }
            if set.contains(Family::Pinyin) {
                if let Some(spelling) = variants::initials(tables, folded) {
                    extra.push((spelling, term, Family::Pinyin));
                }
            }
        }

        // Identical folded strings share one automaton pattern.
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let spellings = folded_terms
            .iter()
            .enumerate()
            .map(|(term, folded)| (folded.as_str(), Some((term, Family::Exact))))
            .chain(
                extra
                    .iter()
                    .map(|(spelling, term, family)| (spelling.as_str(), Some((*term, *family)))),
            )
            .chain(folded_allow.iter().map(|folded| (folded.as_str(), None)));
        for (text, term) in spellings {
            let next = patterns.len();
            let index = *index_of.entry(text).or_insert(next);
            if index == next {
                patterns.push(Pattern::default());
                texts.push(text);
            }
            match term {
                Some(entry) => patterns[index].terms.push(entry),
                None => patterns[index].allow = true,
            }
        }
        for (pattern, text) in patterns.iter_mut().zip(&texts) {
            pattern.boundary_at_start = text.chars().next().is_some_and(starts_word);
            pattern.boundary_at_end = text.chars().next_back().is_some_and(starts_word);
        }

        // The three automata are independent: build them side by side.
        let (automaton, phonetic, leet) = std::thread::scope(|scope| {
            let phonetic = scope.spawn(|| PhoneticIndex::build(tables, &folded_terms, &families));
            let leet = scope.spawn(|| LeetIndex::build(&folded_terms, &families, leet_term));
            let automaton = if texts.is_empty() {
                Ok(None)
            } else {
                CharwiseDoubleArrayAhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build_with_values(texts.iter().copied().zip(0u32..))
                    .map(Some)
                    .map_err(|error| error.to_string())
            };
            (automaton, join(phonetic), join(leet))
        });
        let automaton = automaton.map_err(EngineError::Automaton)?;
        let phonetic = phonetic.map_err(EngineError::Automaton)?;
        let leet = leet.map_err(EngineError::Automaton)?;
        Ok(Engine {
            automaton,
            patterns,
            terms: terms.terms.clone(),
            families,
            phonetic,
            leet,
            table,
            collapse,
            options,
            regex: RegexRules::default(),
        })
    }

    /// Add validated regex rules.
    pub fn with_regex_rules(mut self, rules: RegexRules) -> Engine {
        self.regex = rules;
        self
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    pub fn options(&self) -> MatchOptions {
        self.options
    }

    /// The term text or regex rule name behind a hit.
    pub fn describe(&self, source: HitSource) -> &str {
        match source {
            HitSource::Term(index) => self.terms.get(index).map_or("", |t| t.text.as_str()),
            HitSource::Regex(rule) => {
                let group = if rule.folded {
                    &self.regex.folded
                } else {
                    &self.regex.original
                };
                group.rules.get(rule.index).map_or("", |r| &r.name)
            }
        }
    }

    /// A fingerprint of the folded text, for the same-text-across-chats rule
    /// ([`super::is_repeated_across_chats`]). `None` when the folded text has
    /// fewer than [`MIN_FINGERPRINT_CHARS`] characters: "好的" and "收到" are
    /// posted everywhere by everyone.
    pub fn fingerprint(&self, text: &str) -> Option<TextFingerprint> {
        let mut normalized = Normalized::default();
        fold_text_into(&self.table, &self.collapse, text, &mut normalized);
        if normalized.text.chars().count() < MIN_FINGERPRINT_CHARS {
            return None;
        }
        Some(fingerprint_folded(&normalized.text))
    }

    /// Every hit in `text`, ordered by span.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.scan_into(text, &mut Scratch::default(), &mut hits);
        hits
    }

    /// Like [`Engine::scan`] but reusing `scratch` and appending to `hits`
    /// (cleared first): no allocation once the buffers have grown.
    ///
    /// Most messages hit nothing, so the first pass folds the text alone and
    /// reads it as pronunciation symbols; only when an automaton or a
    /// folded-text regex finds something is the message folded again with
    /// the offset map needed to judge and report.
    pub fn scan_into(&self, text: &str, scratch: &mut Scratch, hits: &mut Vec<Hit>) {
        hits.clear();
        scratch.allowed.clear();
        scratch.allowed_bytes.clear();
        scratch.candidates.clear();
        scratch.found.clear();
        scratch.regex_found.clear();
        scratch.phonetic_found.clear();
        scratch.leet_found.clear();
        scratch.fuzzy.clear();
        // One pass folds the text, runs the automaton over it and reads it
        // as pronunciation symbols, character by character.
        let mut stepper = self
            .automaton
            .as_ref()
            .map(CharwiseDoubleArrayAhoCorasick::find_overlapping_stepper);
        let found = &mut scratch.found;
        let mut reader = self
            .phonetic
            .is_some()
            .then(|| Reader::new(phonetic::tables(), &mut scratch.phonetic, false));
        fold_text_each(
            &self.table,
            &self.collapse,
            text,
            &mut scratch.normalized,
            |c, gap| {
                if let Some(stepper) = &mut stepper {
                    stepper.consume(c);
                    found.extend(
                        stepper
                            .matches()
                            .map(|hit| (hit.start(), hit.end(), hit.value() as usize)),
                    );
                }
                if let Some(reader) = &mut reader {
                    reader.push(c, gap);
                }
            },
        );
        if let Some(reader) = reader {
            reader.finish();
        }
        if let Some(index) = &self.phonetic {
            index.find(&scratch.phonetic.codes, &mut scratch.phonetic_found);
            // Keep only candidates that could stand, judged from the
            // characters read: most chance readings end here, before the
            // full fold.
            let chars = &scratch.phonetic.chars;
            scratch.phonetic_found.retain(|&(first, end, pattern)| {
                index.terms_of(pattern).iter().any(|&term| {
                    index.plausible(chars, first as usize, end as usize, term as usize)
                })
            });
        }
        if let Some(index) = &self.leet {
            if scratch.normalized.leet_possible {
                leet_into(&self.table, text, &mut scratch.leet);
                index.find(&scratch.leet, &mut scratch.leet_found);
            }
        }
        self.regex
            .folded
            .for_each_match(&scratch.normalized.text, |index, start, end| {
                scratch.regex_found.push((start, end, index));
            });
        if scratch.found.is_empty()
            && scratch.regex_found.is_empty()
            && scratch.phonetic_found.is_empty()
            && scratch.leet_found.is_empty()
        {
            self.regex
                .original
                .for_each_match(text, |index, start, end| {
                    push_regex_hit(hits, &self.regex.original, false, index, start..end);
                });
            return;
        }

        // Something matched: fold again, with the offset map and flags.
        normalize_into(&self.table, &self.collapse, text, &mut scratch.normalized);
        let normalized = &scratch.normalized;
        for &(start, end, pattern) in &scratch.found {
            let Some(pattern) = self.patterns.get(pattern) else {
                continue;
            };
            let first = normalized.char_index_at(start);
            let end = normalized.char_index_at(end);
            if first >= end || !self.counts(normalized, pattern, first, end) {
                continue;
            }
            if pattern.allow {
                scratch.allowed.push((first, end));
                scratch
                    .allowed_bytes
                    .push(normalized.original_span(first, end));
            }
            let refined = refine_family(normalized, first, end);
            for &(term, family) in &pattern.terms {
                let family = if family == Family::Exact {
                    refined
                } else {
                    family
                };
                scratch.candidates.push((first, end, term, family));
            }
        }
        for &(first, end, term, family) in &scratch.candidates {
            let allowed = scratch
                .allowed
                .iter()
                .any(|&(allow_first, allow_end)| allow_first <= first && end <= allow_end);
            if allowed || !self.enabled(term, family) {
                continue;
            }
            self.push_term_hit(hits, term, normalized.original_span(first, end), family);
        }

        if let Some(index) = &self.phonetic {
            if !scratch.phonetic_found.is_empty() {
                read_detailed(normalized, &mut scratch.phonetic);
                let symbols = &scratch.phonetic.symbols;
                for &(first, end, pattern) in &scratch.phonetic_found {
                    let (first, end) = (first as usize, end as usize);
                    for &term in index.terms_of(pattern) {
                        let term = term as usize;
                        let Some(families) = self.families.get(term) else {
                            continue;
                        };
                        let Some(family) =
                            index.verify(symbols, normalized, first, end, term, *families)
                        else {
                            continue;
                        };
                        let span = normalized.original_span(
                            symbols[first].first as usize,
                            symbols[end - 1].end as usize,
                        );
                        scratch.fuzzy.push((span, term, family));
                    }
                }
            }
        }
        for &(first, end, term) in &scratch.leet_found {
            if self.enabled(term, Family::Leet) {
                scratch
                    .fuzzy
                    .push((scratch.leet.original_span(first, end), term, Family::Leet));
            }
        }
        for (span, term, family) in scratch.fuzzy.drain(..) {
            let allowed = scratch
                .allowed_bytes
                .iter()
                .any(|allow| allow.start <= span.start && span.end <= allow.end);
            // A term found exactly (or already by another reading) where
            // this one overlaps needs no second, weaker hit.
            let known = hits.iter().any(|hit| {
                hit.source == HitSource::Term(term)
                    && hit.span.start < span.end
                    && span.start < hit.span.end
            });
            if !allowed && !known {
                self.push_term_hit(hits, term, span, family);
            }
        }

        for &(start, end, index) in &scratch.regex_found {
            let first = normalized.char_index_at(start);
            let end = normalized.char_index_at(end);
            if first < end {
                let span = normalized.original_span(first, end);
                push_regex_hit(hits, &self.regex.folded, true, index, span);
            }
        }
        self.regex
            .original
            .for_each_match(text, |index, start, end| {
                push_regex_hit(hits, &self.regex.original, false, index, start..end);
            });
        hits.sort_by(|a, b| {
            (a.span.start, a.span.end)
                .cmp(&(b.span.start, b.span.end))
                .then_with(|| source_key(a.source).cmp(&source_key(b.source)))
                .then_with(|| a.family.cmp(&b.family))
        });
        hits.dedup_by(|later, earlier| {
            later.source == earlier.source && later.span == earlier.span
        });
    }

    /// Whether `family` is on for `term`.
    fn enabled(&self, term: usize, family: Family) -> bool {
        self.families
            .get(term)
            .is_some_and(|families| families.contains(family))
    }

    fn push_term_hit(&self, hits: &mut Vec<Hit>, term: usize, span: Range<usize>, family: Family) {
        if let Some(info) = self.terms.get(term) {
            hits.push(Hit {
                source: HitSource::Term(term),
                category: info.category.clone(),
                severity: info.severity,
                span,
                family,
            });
        }
    }

    /// Whether an automaton match on folded chars `first..end` stands:
    /// Latin word boundaries hold, and look-alike letters were not read out
    /// of a genuinely Cyrillic/Greek word.
    fn counts(&self, normalized: &Normalized, pattern: &Pattern, first: usize, end: usize) -> bool {
        if pattern.boundary_at_start && !normalized.boundary_before(first) {
            return false;
        }
        if pattern.boundary_at_end && !normalized.boundary_before(end) {
            return false;
        }
        let chars = &normalized.chars[first..end];
        if chars.iter().any(|c| c.flags & LOOKALIKE != 0) {
            return !word_is_foreign(normalized, first, end);
        }
        true
    }
}

/// Whether the letter run around `first..end` holds a Cyrillic/Greek letter
/// that has no Latin look-alike.
fn word_is_foreign(normalized: &Normalized, first: usize, end: usize) -> bool {
    let chars = &normalized.chars;
    let in_word = |flags: u8| flags & (LATIN | FOREIGN) != 0;
    let mut start = first;
    while start > 0 && chars[start].flags & GAP_BEFORE == 0 && in_word(chars[start - 1].flags) {
        start -= 1;
    }
    let mut stop = end;
    while stop < chars.len() && chars[stop].flags & GAP_BEFORE == 0 && in_word(chars[stop].flags) {
        stop += 1;
    }
    chars[start..stop].iter().any(|c| c.flags & FOREIGN != 0)
}

fn push_regex_hit(
    hits: &mut Vec<Hit>,
    group: &RuleGroup,
    folded: bool,
    index: usize,
    span: Range<usize>,
) {
    if let Some(rule) = group.rules.get(index) {
        hits.push(Hit {
            source: HitSource::Regex(RegexRuleRef { folded, index }),
            category: rule.category.clone(),
            severity: rule.severity,
            span,
            family: Family::Exact,
        });
    }
}

/// The family of a main-automaton hit on a term's own spelling, from how
/// its characters were folded: look-alike letters, collapsed repeats,
/// financial numerals; otherwise exact.
fn refine_family(normalized: &Normalized, first: usize, end: usize) -> Family {
    let flags = normalized.chars[first..end]
        .iter()
        .fold(0u8, |flags, c| flags | c.flags);
    if flags & LOOKALIKE != 0 {
        Family::Lookalike
    } else if flags & COLLAPSED != 0 {
        Family::Doubled
    } else if flags & NUMERAL != 0 {
        Family::Number
    } else {
        Family::Exact
    }
}

/// A scoped thread's result, passing its panic on.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The same reading with every symbol's origin, from the full fold.
fn read_detailed(normalized: &Normalized, out: &mut PhoneticText) {
    let mut reader = Reader::new(phonetic::tables(), out, true);
    for (c, info) in normalized.text.chars().zip(&normalized.chars) {
        reader.push(c, info.flags & GAP_BEFORE != 0);
    }
    reader.finish();
}

fn source_key(source: HitSource) -> (u8, bool, usize) {
    match source {
        HitSource::Term(index) => (0, false, index),
        HitSource::Regex(rule) => (1, rule.folded, rule.index),
    }
}

fn starts_word(c: char) -> bool {
    // Folded text only holds lower-case letters and digits; a Latin letter
    // here is what word boundaries are about.
    c.is_ascii_lowercase()
        || (c.is_alphabetic()
            && matches!(c as u32, 0x00C0..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF))
}

fn fold_all(
    table: &FoldTable,
    collapse: &RepeatCollapse,
    list: &TermList,
) -> Result<Vec<String>, Vec<BadLine>> {
    let mut bad = Vec::new();
    let folded: Vec<String> = list
        .terms
        .iter()
        .map(|term| {
            let folded = normalize_term(table, collapse, &term.text);
            if folded.is_empty() {
                bad.push(BadLine {
                    line: term.line,
                    reason: LineError::NothingToMatch,
                });
            }
            folded
        })
        .collect();
    if bad.is_empty() {
        Ok(folded)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rules::moderation::fold::FoldOptions;

    proptest! {
        /// The first pass reads symbols while it folds; the engine judges
        /// its candidates by index in the detailed reading of the full
        /// fold, so the two must agree symbol for symbol.
        #[test]
        fn one_pass_reading_agrees_with_the_detailed_one(
            text in "(\\PC|[加微信亻言网赚哈 ·1３wangzhuWANG]){0,40}",
            collapse_enabled: bool,
        ) {
            let table = FoldTable::new(FoldOptions {
                lookalike_letters: true,
                financial_numerals: true,
            });
            let collapse = RepeatCollapse {
                enabled: collapse_enabled,
                keep_doubled: ['哈'].into_iter().collect(),
            };
            let mut folded = Normalized::default();
            let mut fast = PhoneticText::default();
            let mut reader = Reader::new(phonetic::tables(), &mut fast, false);
            fold_text_each(&table, &collapse, &text, &mut folded, |c, gap| reader.push(c, gap));
            reader.finish();

            let mut full = Normalized::default();
            normalize_into(&table, &collapse, &text, &mut full);
            let mut detailed = PhoneticText::default();
            read_detailed(&full, &mut detailed);
            prop_assert_eq!(&folded.text, &full.text);
            prop_assert_eq!(&fast.codes, &detailed.codes);
            prop_assert_eq!(&fast.chars, &detailed.chars);
        }
    }
}
