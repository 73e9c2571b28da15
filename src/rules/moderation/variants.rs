//! Variant families on the term side, and the close look at each fuzzy
//! candidate that decides whether it stands.
//!
//! Nothing here multiplies the term list: pinyin, homophones, numbers and
//! most shape tricks share **one** index of pronunciation symbols
//! (a handful of patterns per term, for heteronyms and look-alikes); leet
//! has a small automaton of its own over a leet reading that is only made
//! for messages with digits or `$ @ | !` among letters; doubled spellings
//! and pinyin initials are a few extra patterns in the main automaton.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use daachorse::{CharwiseDoubleArrayAhoCorasick, CharwiseDoubleArrayAhoCorasickBuilder, MatchKind};

use super::family::{Family, FamilySet};
use super::lexicon;
use super::normalize::{Normalized, LATIN, LEET};
use super::phonetic::{
    split_initial, Syllable, Symbol, SymbolKind, Tables, COMPOSED, LATIN_SYLLABLE,
};
use super::sequences::{Code, KeyHasher, SequenceIndex};
use super::shape;

/// The shortest term, in characters (or syllables, or letters for leet),
/// each family applies to. Shorter terms are matched exactly only: a
/// one-character term read by sound would fire on every homophone.
pub const MIN_PHONETIC_CHARS: usize = 2;
pub const MIN_LEET_LETTERS: usize = 3;
pub const MIN_DOUBLED_CHARS: usize = 2;
/// Pinyin initials (`dkfp` for `代开发票`) only for terms this long, and
/// only when the initials hold no vowel (so they cannot spell a word).
pub const MIN_INITIALS_CHARS: usize = 4;
/// A pinyin spelling made of Latin letters only needs at least this many
/// letters (`du bo` passes, `an na` does not).
pub const MIN_PINYIN_LETTERS: usize = 4;
/// Chinese numerals only stand for an all-digit term this long (`一三八…`
/// for a phone number; `一二三` is not `123`).
pub const MIN_NUMBER_DIGITS: usize = 4;
/// Characters of a term that may be replaced by sound or shape: one in a
/// term of two or three characters, half of a longer one. Spammers change a
/// character or two (`网撰`, `加薇信`); chance readings of ordinary text
/// change them all.
pub const fn max_replaced(chars: usize) -> usize {
    if chars < 4 {
        1
    } else {
        chars / 2
    }
}

/// Pronunciation patterns per term (heteronyms × look-alikes), most likely
/// first.
const MAX_SEQUENCES: usize = 6;

/// English words and names that happen to spell two or more pinyin
/// syllables: never read as pinyin. Sorted.
const ENGLISH: &[&str] = &[
    "ada", "amen", "anna", "anne", "annie", "bale", "banana", "bane", "bingo", "bobo", "bone",
    "cane", "china", "congo", "cute", "dale", "dana", "dean", "diana", "diane", "dina", "dude",
    "dune", "fade", "fanta", "fendi", "fuse", "gale", "gene", "hale", "hana", "henan", "huge",
    "hula", "human", "hunan", "june", "kaka", "kale", "lama", "lane", "lean", "leila", "lena",
    "lina", "line", "lulu", "made", "male", "mama", "mane", "manga", "mango", "mean", "menu",
    "mia", "mimi", "mina", "mine", "mole", "momo", "muse", "mute", "nana", "nike", "nina", "nine",
    "nude", "omen", "one", "pale", "panda", "papa", "pine", "pole", "rena", "rude", "rune", "sale",
    "sane", "sean", "sudan", "tale", "tango", "tia", "tina", "tune", "wade", "woman", "women",
    "zena", "zidane",
];

/// Whether `first` (an ASCII digit or a Chinese numeral) is a numeral.
fn is_numeral(c: char) -> bool {
    matches!(
        c,
        '0'..='9'
            | '〇'
            | '零'
            | '一'
            | '二'
            | '两'
            | '三'
            | '四'
            | '五'
            | '六'
            | '七'
            | '八'
            | '九'
    )
}

/// Pronunciation patterns of the terms.
pub(crate) struct PhoneticIndex {
    sequences: SequenceIndex,
    /// Pattern → terms.
    patterns: Vec<Vec<u32>>,
    /// Term → its characters and readings (None: not read by sound).
    terms: Vec<Option<PhoneticTerm>>,
}

struct PhoneticTerm {
    chars: Box<[char]>,
    /// Every reading of each character.
    readings: Box<[Vec<Syllable>]>,
}

impl PhoneticIndex {
    /// `folded[i]` is term `i` folded (repeats kept); `families[i]` what it
    /// takes part in. `None` when no term is read by sound.
    pub(crate) fn build(
        tables: &Tables,
        folded: &[String],
        families: &[FamilySet],
    ) -> Result<Option<PhoneticIndex>, String> {
        // Pattern texts side by side in one buffer (`spans` says where),
        // looked up by their codes: no allocation per pattern.
        let mut index_of: HashMap<Box<[Code]>, u32, BuildHasherDefault<KeyHasher>> =
            HashMap::default();
        let mut patterns: Vec<Vec<u32>> = Vec::new();
        let mut codes: Vec<Code> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut terms = Vec::with_capacity(folded.len());
        // The symbols each position accepts, flat, with each position's
        // range in `symbols`.
        let mut symbols: Vec<Code> = Vec::new();
        let mut positions: Vec<(usize, usize)> = Vec::new();
        let mut sequence: Vec<Code> = Vec::new();
        let mut choice: Vec<usize> = Vec::new();
        for (term, (text, set)) in folded.iter().zip(families).enumerate() {
            let by_sound = [
                Family::Pinyin,
                Family::Homophone,
                Family::Number,
                Family::Shape,
            ]
            .into_iter()
            .any(|family| set.contains(family));
            let Some(info) = by_sound.then(|| phonetic_term(tables, text)).flatten() else {
                terms.push(None);
                continue;
            };
            // The symbols each position accepts: its own readings, and the
            // readings of the characters that look like it.
            symbols.clear();
            positions.clear();
            for (&c, readings) in info.chars.iter().zip(info.readings.iter()) {
                let start = symbols.len();
                let mut add = |symbol: Code| {
                    if !symbols[start..].contains(&symbol) {
                        symbols.push(symbol);
                    }
                };
                for &reading in readings {
                    add(tables.symbol(reading));
                }
                if set.contains(Family::Shape) {
                    for other in shape::lookalikes(c) {
                        let reading = tables.primary(other);
                        if reading != 0 {
                            add(tables.symbol(reading));
                        }
                    }
                }
                positions.push((start, symbols.len()));
            }
            // The first `MAX_SEQUENCES` sequences in the order of the
            // positions' symbols (the first position varies slowest): an
            // odometer over the choices.
            choice.clear();
            choice.resize(positions.len(), 0);
            for _ in 0..MAX_SEQUENCES {
                sequence.clear();
                sequence.extend(
                    positions
                        .iter()
                        .zip(&choice)
                        .map(|(&(start, _), &at)| symbols[start + at]),
                );
                let pattern = match index_of.get(sequence.as_slice()) {
                    Some(&pattern) => pattern,
                    None => {
                        let pattern = patterns.len() as u32;
                        patterns.push(Vec::new());
                        index_of.insert(sequence.as_slice().into(), pattern);
                        spans.push((codes.len(), codes.len() + sequence.len()));
                        codes.extend_from_slice(&sequence);
                        pattern
                    }
                };
                let terms_of = &mut patterns[pattern as usize];
                if terms_of.last() != Some(&(term as u32)) {
                    terms_of.push(term as u32);
                }
                if !advance(&mut choice, &positions) {
                    break;
                }
            }
            terms.push(Some(info));
        }
        if spans.is_empty() {
            return Ok(None);
        }
        // Every term read by sound has two or more characters
        // (`MIN_PHONETIC_CHARS`), so every pattern is indexed.
        let sequences = SequenceIndex::build(
            spans
                .iter()
                .map(|&(start, end)| &codes[start..end])
                .zip(0u32..),
        );
        Ok(Some(PhoneticIndex {
            sequences,
            patterns,
            terms,
        }))
    }

    /// Raw matches over a message's symbols: (first symbol, end symbol,
    /// pattern).
    pub(crate) fn find(&self, symbols: &[Code], out: &mut Vec<(u32, u32, u32)>) {
        self.sequences.find(symbols, out);
    }

    pub(crate) fn terms_of(&self, pattern: u32) -> &[u32] {
        self.patterns
            .get(pattern as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// The cheap first look at a candidate, from the characters read alone
    /// (`chars[first..end]`): whether it could stand as a fuzzy hit on
    /// `term`. Most chance matches of sound end here.
    pub(crate) fn plausible(&self, chars: &[char], first: usize, end: usize, term: usize) -> bool {
        let Some(Some(info)) = self.terms.get(term) else {
            return false;
        };
        let Some(read) = chars.get(first..end) else {
            return false;
        };
        let mut same = 0;
        let mut replaced = 0;
        for (&c, &wanted) in read.iter().zip(info.chars.iter()) {
            if c == LATIN_SYLLABLE {
                return true;
            }
            if c == wanted {
                same += 1;
            } else if c != COMPOSED && !(is_numeral(c) || is_numeral(wanted)) {
                replaced += 1;
            }
        }
        same < read.len() && replaced <= max_replaced(read.len())
    }

    /// Whether symbols `first..end` stand as a fuzzy hit on `term`, and as
    /// which family. See the module docs of [`super`] for the rules.
    pub(crate) fn verify(
        &self,
        symbols: &[Symbol],
        normalized: &Normalized,
        first: usize,
        end: usize,
        term: usize,
        families: FamilySet,
    ) -> Option<Family> {
        let info = self.terms.get(term)?.as_ref()?;
        let symbols = symbols.get(first..end)?;
        if symbols.len() != info.chars.len() {
            return None;
        }
        let mut same = 0;
        let mut sound = 0;
        let mut near = 0;
        let mut shape = 0;
        let mut number = 0;
        let mut latin = 0;
        let mut latin_letters = 0;
        // Characters written in place of the term's: if one of them forms
        // an everyday word with its neighbour, the message means that word.
        let mut replaced: [u32; 8] = [0; 8];
        let mut replaced_count = 0;
        let mut replace = |index: u32| {
            if let Some(slot) = replaced.get_mut(replaced_count) {
                *slot = index;
            }
            replaced_count += 1;
        };
        for ((symbol, &wanted), readings) in symbols
            .iter()
            .zip(info.chars.iter())
            .zip(info.readings.iter())
        {
            match symbol.kind {
                SymbolKind::Barrier => return None,
                SymbolKind::Latin => {
                    latin += 1;
                    latin_letters += symbol.end - symbol.first;
                    if !readings.contains(&symbol.syllable) {
                        near += 1;
                    }
                }
                SymbolKind::Digit | SymbolKind::Han | SymbolKind::Composed
                    if symbol.ch == wanted =>
                {
                    if symbol.kind == SymbolKind::Composed {
                        shape += 1;
                    } else {
                        same += 1;
                    }
                }
                _ if is_numeral(symbol.ch) && wanted.is_ascii_digit()
                    || symbol.kind == SymbolKind::Digit =>
                {
                    number += 1;
                }
                _ => {
                    replace(symbol.first);
                    if shape::look_alike(symbol.ch, wanted) {
                        shape += 1;
                    } else if readings.contains(&symbol.syllable) {
                        sound += 1;
                    } else {
                        near += 1;
                    }
                }
            }
        }
        let n = symbols.len();
        if same == n {
            return None;
        }
        if n < MIN_NUMBER_DIGITS && info.chars.iter().all(char::is_ascii_digit) {
            return None;
        }
        // Every family the reading used must be on for the term.
        let used = [
            (latin > 0, Family::Pinyin),
            (shape > 0, Family::Shape),
            (number > 0, Family::Number),
            (sound > 0 || (near > 0 && latin == 0), Family::Homophone),
        ];
        if used
            .iter()
            .any(|&(used, family)| used && !families.contains(family))
        {
            return None;
        }
        // A near (not exact) sound is weak: one per term, and in a
        // two-character term only beside an unchanged character.
        if near > 1 || (near == 1 && n < 3 && same == 0) {
            return None;
        }
        // Characters replaced by sound or shape: see `max_replaced`.
        if latin == 0 && replaced_count > max_replaced(n) {
            return None;
        }
        if latin > 0 && !latin_words_stand(symbols, normalized, latin == n, latin_letters) {
            return None;
        }
        for &index in &replaced[..replaced_count.min(replaced.len())] {
            if word_through(normalized, &[index as usize]) {
                return None;
            }
        }
        // A reading by sound or shape that cuts through an everyday word at
        // its edges (`打麻将` is not `大麻` + `将`, `约跑步` is not `约炮`)
        // means that word.
        if sound + near + shape > 0 && latin == 0 {
            let first = symbols[0].first as usize;
            let last = symbols[n - 1].end as usize - 1;
            if edge_forms_word(normalized, first, last) {
                return None;
            }
        }
        Some(if latin > 0 {
            Family::Pinyin
        } else if shape > 0 {
            Family::Shape
        } else if number > 0 && sound + near == 0 {
            Family::Number
        } else {
            Family::Homophone
        })
    }
}

/// The next choice of symbol per position, the last position turning
/// fastest; `false` after the last combination.
fn advance(choice: &mut [usize], positions: &[(usize, usize)]) -> bool {
    for (at, &(start, end)) in choice.iter_mut().zip(positions).rev() {
        *at += 1;
        if start + *at < end {
            return true;
        }
        *at = 0;
    }
    false
}

/// A term's characters and readings, when every character has one.
fn phonetic_term(tables: &Tables, folded: &str) -> Option<PhoneticTerm> {
    let chars: Box<[char]> = folded.chars().collect();
    if chars.len() < MIN_PHONETIC_CHARS {
        return None;
    }
    let mut readings = Vec::with_capacity(chars.len());
    for &c in chars.iter() {
        let mut own = Vec::new();
        tables.readings(c, &mut own);
        if own.is_empty() {
            return None;
        }
        readings.push(own);
    }
    Some(PhoneticTerm {
        chars,
        readings: readings.into_boxed_slice(),
    })
}

/// Pinyin in a hit must be whole Latin words, not an English word or name,
/// and (when the hit is Latin only) long enough to mean something.
fn latin_words_stand(
    symbols: &[Symbol],
    normalized: &Normalized,
    latin_only: bool,
    latin_letters: u32,
) -> bool {
    if latin_only && (latin_letters as usize) < MIN_PINYIN_LETTERS {
        return false;
    }
    let (Some(first), Some(last)) = (symbols.first(), symbols.last()) else {
        return false;
    };
    if first.kind == SymbolKind::Latin && first.first != first.word_first {
        return false;
    }
    if last.kind == SymbolKind::Latin && last.end != last.word_end {
        return false;
    }
    let mut previous_word = u32::MAX;
    for symbol in symbols.iter().filter(|s| s.kind == SymbolKind::Latin) {
        if symbol.word_first == previous_word {
            continue;
        }
        previous_word = symbol.word_first;
        let word = folded_slice(
            normalized,
            symbol.word_first as usize,
            symbol.word_end as usize,
        );
        if ENGLISH.binary_search(&word).is_ok() {
            return false;
        }
    }
    true
}

fn folded_slice(normalized: &Normalized, first: usize, end: usize) -> &str {
    let start = normalized
        .chars
        .get(first)
        .map_or(normalized.text.len(), |c| c.norm_start);
    let stop = normalized
        .chars
        .get(end)
        .map_or(normalized.text.len(), |c| c.norm_start);
    normalized.text.get(start..stop).unwrap_or("")
}

/// Whether folded characters around `index` form an everyday word (two to
/// four characters) that contains every index in `through`.
fn word_through(normalized: &Normalized, through: &[usize]) -> bool {
    let (Some(&low), Some(&high)) = (through.iter().min(), through.iter().max()) else {
        return false;
    };
    let mut window = [' '; lexicon::MAX_WORD_CHARS];
    for len in 2..=lexicon::MAX_WORD_CHARS {
        if high - low + 1 > len {
            continue;
        }
        // Every start that keeps low..=high inside the window.
        for start in (high + 1).saturating_sub(len)..=low {
            let mut complete = true;
            for (offset, slot) in window[..len].iter_mut().enumerate() {
                match folded_slice(normalized, start + offset, start + offset + 1)
                    .chars()
                    .next()
                {
                    Some(c) => *slot = c,
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete && lexicon::is_word(&window[..len]) {
                return true;
            }
        }
    }
    false
}

/// Whether an everyday word runs across the hit's start or end.
fn edge_forms_word(normalized: &Normalized, first: usize, last: usize) -> bool {
    (first > 0 && word_through(normalized, &[first - 1, first]))
        || word_through(normalized, &[last, last + 1])
}

/// Pinyin initials of a long all-Chinese term (`代开发票` → `dkfp`), when
/// they hold no vowel; `None` otherwise.
pub(crate) fn initials(tables: &Tables, folded: &str) -> Option<String> {
    let mut out = String::new();
    let mut count = 0;
    for c in folded.chars() {
        if c.is_ascii() {
            return None;
        }
        let reading = tables.primary(c);
        if reading == 0 {
            return None;
        }
        let (initial, last) = split_initial(tables.text(reading));
        let letter = initial.chars().next().or_else(|| last.chars().next())?;
        out.push(letter);
        count += 1;
    }
    let safe = count >= MIN_INITIALS_CHARS && !out.contains(['a', 'e', 'i', 'o', 'u', 'v']);
    safe.then_some(out)
}

/// The doubled spelling of a folded term as it reaches the automaton:
/// characters the message fold collapses stay single (the fold already
/// undid their doubling), the rest (Latin letters, digits, characters some
/// term doubles itself) are written twice. `None` when nothing changes.
pub(crate) fn doubled(folded: &str, collapses: impl Fn(char) -> bool) -> Option<String> {
    if folded.chars().count() < MIN_DOUBLED_CHARS {
        return None;
    }
    let mut out = String::with_capacity(folded.len() * 2);
    let mut changed = false;
    for c in folded.chars() {
        out.push(c);
        if !collapses(c) {
            out.push(c);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// Leet patterns of the terms.
pub(crate) struct LeetIndex {
    automaton: CharwiseDoubleArrayAhoCorasick<u32>,
    /// Pattern → (terms, whether it starts / ends with a letter).
    patterns: Vec<(Vec<u32>, bool, bool)>,
}

impl LeetIndex {
    pub(crate) fn build(
        folded: &[String],
        families: &[FamilySet],
        leet_term: impl Fn(&str) -> String,
    ) -> Result<Option<LeetIndex>, String> {
        let mut index_of: HashMap<String, u32> = HashMap::new();
        let mut patterns: Vec<(Vec<u32>, bool, bool)> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        for (term, (text, set)) in folded.iter().zip(families).enumerate() {
            let letters = text.chars().filter(char::is_ascii_lowercase).count();
            if !set.contains(Family::Leet)
                || letters < MIN_LEET_LETTERS
                || text.chars().any(|c| c.is_ascii_digit())
            {
                continue;
            }
            let pattern_text = leet_term(text);
            let starts = pattern_text.starts_with(|c: char| c.is_ascii_lowercase());
            let ends = pattern_text.ends_with(|c: char| c.is_ascii_lowercase());
            let pattern = *index_of.entry(pattern_text.clone()).or_insert_with(|| {
                patterns.push((Vec::new(), starts, ends));
                texts.push(pattern_text);
                (patterns.len() - 1) as u32
            });
            patterns[pattern as usize].0.push(term as u32);
        }
        if texts.is_empty() {
            return Ok(None);
        }
        let automaton = CharwiseDoubleArrayAhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build_with_values(texts.iter().map(String::as_str).zip(0u32..))
            .map_err(|error| error.to_string())?;
        Ok(Some(LeetIndex {
            automaton,
            patterns,
        }))
    }

    /// Leet hits in a leet reading: (first char, end char, term).
    pub(crate) fn find(&self, leet: &Normalized, out: &mut Vec<(usize, usize, usize)>) {
        for found in self.automaton.find_overlapping_iter(leet.text.as_str()) {
            let Some((terms, starts, ends)) = self.patterns.get(found.value() as usize) else {
                continue;
            };
            let first = leet.char_index_at(found.start());
            let end = leet.char_index_at(found.end());
            if first >= end
                || (*starts && !leet.boundary_before(first))
                || (*ends && !leet.boundary_before(end))
            {
                continue;
            }
            // Some real letters, at least as many as stand-ins: `s3x`, not
            // `$3x` or a number.
            let chars = &leet.chars[first..end];
            let stand_ins = chars.iter().filter(|c| c.flags & LEET != 0).count();
            let letters = chars
                .iter()
                .filter(|c| c.flags & LATIN != 0 && c.flags & LEET == 0)
                .count();
            if stand_ins == 0 || letters < 2 || letters < stand_ins {
                continue;
            }
            out.extend(terms.iter().map(|&term| (first, end, term as usize)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderation::phonetic::tables;

    #[test]
    fn english_exceptions_are_sorted_pinyin_words() {
        let tables = tables();
        let mut segments = Vec::new();
        for pair in ENGLISH.windows(2) {
            assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
        }
        let needless: Vec<&str> = ENGLISH
            .iter()
            .copied()
            .filter(|word| !(tables.segment(word.as_bytes(), &mut segments) && segments.len() >= 2))
            .collect();
        assert!(
            needless.is_empty(),
            "not two or more pinyin syllables, so no exception needed: {needless:?}"
        );
    }

    #[test]
    fn initials_only_for_long_terms_without_vowels() {
        let tables = tables();
        assert_eq!(initials(tables, "代开发票").as_deref(), Some("dkfp"));
        assert_eq!(initials(tables, "网赚"), None, "too short");
        assert_eq!(initials(tables, "爱情公寓"), None, "starts with a vowel");
    }

    #[test]
    fn doubled_spelling_leaves_collapsed_characters_single() {
        let collapses = |c: char| !c.is_ascii_alphanumeric();
        assert_eq!(doubled("vx", collapses).as_deref(), Some("vvxx"));
        assert_eq!(doubled("v信", collapses).as_deref(), Some("vv信"));
        assert_eq!(doubled("加微信", collapses), None);
        assert_eq!(doubled("v", collapses), None);
    }
}
