//! The matching engine: one automaton per term-list version, one pass per
//! message.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use daachorse::{CharwiseDoubleArrayAhoCorasick, CharwiseDoubleArrayAhoCorasickBuilder, MatchKind};

use super::behaviour::{fingerprint_folded, TextFingerprint};
use super::fold::{FoldOptions, FoldTable};
use super::normalize::{
    fold_text_into, normalize_into, normalize_term, Normalized, RepeatCollapse, FOREIGN,
    GAP_BEFORE, LATIN, LOOKALIKE,
};
use super::regex_rules::{RegexRules, RuleGroup};
use super::terms::{BadLine, LineError, Severity, Term, TermList};

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
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            lookalike_letters: true,
            financial_numerals: true,
            collapse_repeats: true,
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
    /// Allowed spans, in folded-character indices.
    allowed: Vec<(usize, usize)>,
    /// Term hits before allow-list filtering: (first char, end char, term).
    candidates: Vec<(usize, usize, usize)>,
    /// Raw automaton matches: (start byte, end byte, pattern), folded text.
    found: Vec<(usize, usize, usize)>,
    /// Folded-text regex matches: (start byte, end byte, rule).
    regex_found: Vec<(usize, usize, usize)>,
}

#[derive(Debug, Default, Clone)]
struct Pattern {
    terms: Vec<usize>,
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
    /// Compile `terms` and `allow` into one automaton.
    pub fn build(
        terms: &TermList,
        allow: &TermList,
        options: MatchOptions,
    ) -> Result<Engine, EngineError> {
        let table = FoldTable::new(FoldOptions {
            lookalike_letters: options.lookalike_letters,
            financial_numerals: options.financial_numerals,
        });
        let no_collapse = RepeatCollapse::default();
        let folded_terms = fold_all(&table, &no_collapse, terms).map_err(EngineError::Terms)?;
        let folded_allow = fold_all(&table, &no_collapse, allow).map_err(EngineError::Allow)?;

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

        // Identical folded strings share one automaton pattern.
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut pattern_of = Vec::with_capacity(folded_terms.len() + folded_allow.len());
        for folded in folded_terms.iter().chain(&folded_allow) {
            let next = patterns.len();
            let index = *index_of.entry(folded.as_str()).or_insert(next);
            if index == next {
                patterns.push(Pattern::default());
                texts.push(folded.as_str());
            }
            pattern_of.push(index);
        }
        let (term_patterns, allow_patterns) = pattern_of.split_at(folded_terms.len());
        for (term, &pattern) in term_patterns.iter().enumerate() {
            patterns[pattern].terms.push(term);
        }
        for &pattern in allow_patterns {
            patterns[pattern].allow = true;
        }
        for (pattern, text) in patterns.iter_mut().zip(&texts) {
            pattern.boundary_at_start = text.chars().next().is_some_and(starts_word);
            pattern.boundary_at_end = text.chars().next_back().is_some_and(starts_word);
        }

        let automaton = if texts.is_empty() {
            None
        } else {
            Some(
                CharwiseDoubleArrayAhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build_with_values(texts.iter().copied().zip(0u32..))
                    .map_err(|error| EngineError::Automaton(error.to_string()))?,
            )
        };
        Ok(Engine {
            automaton,
            patterns,
            terms: terms.terms.clone(),
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
    /// Most messages hit nothing, so the first pass folds the text alone;
    /// only when the automaton or a folded-text regex finds something is the
    /// message folded again with the offset map needed to judge and report.
    pub fn scan_into(&self, text: &str, scratch: &mut Scratch, hits: &mut Vec<Hit>) {
        hits.clear();
        scratch.allowed.clear();
        scratch.candidates.clear();
        scratch.found.clear();
        scratch.regex_found.clear();
        fold_text_into(&self.table, &self.collapse, text, &mut scratch.normalized);

        if let Some(automaton) = &self.automaton {
            scratch.found.extend(
                automaton
                    .find_overlapping_iter(scratch.normalized.text.as_str())
                    .map(|found| (found.start(), found.end(), found.value() as usize)),
            );
        }
        self.regex
            .folded
            .for_each_match(&scratch.normalized.text, |index, start, end| {
                scratch.regex_found.push((start, end, index));
            });
        if scratch.found.is_empty() && scratch.regex_found.is_empty() {
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
            }
            for &term in &pattern.terms {
                scratch.candidates.push((first, end, term));
            }
        }
        for &(first, end, term) in &scratch.candidates {
            let allowed = scratch
                .allowed
                .iter()
                .any(|&(allow_first, allow_end)| allow_first <= first && end <= allow_end);
            let Some(term_info) = self.terms.get(term) else {
                continue;
            };
            if allowed {
                continue;
            }
            hits.push(Hit {
                source: HitSource::Term(term),
                category: term_info.category.clone(),
                severity: term_info.severity,
                span: normalized.original_span(first, end),
            });
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
        });
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
        });
    }
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
