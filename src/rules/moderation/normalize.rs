//! The matching text: the message folded character by character into a
//! reusable buffer, with a map from every folded character back to the span
//! of original text it came from.

use std::collections::HashSet;

use super::fold::{FoldTable, FoldedChar};

/// At least one skipped character (space, punctuation, emoji, …) stands
/// between this folded character and the previous one.
pub(crate) const GAP_BEFORE: u8 = 1;
/// The folded character is a Latin letter (or a look-alike folded to one).
pub(crate) const LATIN: u8 = 2;
/// The folded character came from a look-alike Cyrillic/Greek letter.
pub(crate) const LOOKALIKE: u8 = 4;
/// The folded character is a Cyrillic/Greek letter with no Latin look-alike.
pub(crate) const FOREIGN: u8 = 8;
/// Repeats of this character were folded into it (`加加` → `加`).
pub(crate) const COLLAPSED: u8 = 16;
/// The folded character is a digit read from a financial numeral (`壹`).
pub(crate) const NUMERAL: u8 = 32;
/// In the leet reading: a digit or symbol read as a letter (`3` → `e`).
pub(crate) const LEET: u8 = 64;

/// Where one folded character sits, in the folded and the original text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CharInfo {
    /// Byte offset of this character in the folded text.
    pub norm_start: usize,
    /// Byte span in the original text that produced it (several original
    /// characters when repeats were collapsed into it).
    pub orig_start: usize,
    pub orig_end: usize,
    pub flags: u8,
}

/// A folded message. Reuse one per thread (see [`super::Scratch`]) so that
/// scanning allocates nothing once the buffers have grown.
#[derive(Debug, Default)]
pub(crate) struct Normalized {
    pub text: String,
    pub chars: Vec<CharInfo>,
    /// Fast pass only: the text has a Latin letter and a digit or one of
    /// `$ @ | !`, so a leet reading may differ from the plain one.
    pub leet_possible: bool,
}

impl Normalized {
    /// Index of the folded character that starts at `norm_byte`, or
    /// `chars.len()` for the end of the text.
    pub(crate) fn char_index_at(&self, norm_byte: usize) -> usize {
        if norm_byte >= self.text.len() {
            return self.chars.len();
        }
        self.chars
            .binary_search_by_key(&norm_byte, |info| info.norm_start)
            .unwrap_or_else(|insert_at| insert_at)
    }

    /// The original byte span of folded characters `first..end`
    /// (`first < end <= chars.len()`).
    pub(crate) fn original_span(&self, first: usize, end: usize) -> std::ops::Range<usize> {
        self.chars[first].orig_start..self.chars[end - 1].orig_end
    }

    /// Whether a Latin word boundary lies before folded character `index`:
    /// the start or end of the text, a skipped separator, or a neighbour that
    /// is not a Latin letter.
    pub(crate) fn boundary_before(&self, index: usize) -> bool {
        if index == 0 || index >= self.chars.len() {
            return true;
        }
        let here = self.chars[index];
        let before = self.chars[index - 1];
        here.flags & GAP_BEFORE != 0 || here.flags & LATIN == 0 || before.flags & LATIN == 0
    }
}

/// How repeated characters are collapsed while folding.
#[derive(Debug, Default, Clone)]
pub(crate) struct RepeatCollapse {
    pub enabled: bool,
    /// Characters that some term itself doubles (`666`, `哈哈`); those are
    /// never collapsed, so such terms still match.
    pub keep_doubled: HashSet<char>,
}

impl RepeatCollapse {
    /// Only non-Latin letters are collapsed: doubled Latin letters are normal
    /// spelling (`good` must not become `god`) and doubled digits are normal
    /// numbers.
    /// [`RepeatCollapse::collapses`] for a folded term character.
    pub(crate) fn collapses_char(&self, c: char) -> bool {
        let latin =
            c.is_ascii_lowercase() || (c.is_alphabetic() && ('\u{C0}'..'\u{250}').contains(&c));
        self.collapses(c, if latin { LATIN } else { 0 })
    }

    fn collapses(&self, c: char, flags: u8) -> bool {
        self.enabled
            && flags & LATIN == 0
            && !c.is_ascii_digit()
            && !c.is_numeric()
            && !self.keep_doubled.contains(&c)
    }
}

/// Fold `input` into `out` (cleared first).
pub(crate) fn normalize_into(
    table: &FoldTable,
    collapse: &RepeatCollapse,
    input: &str,
    out: &mut Normalized,
) {
    out.text.clear();
    out.chars.clear();
    out.leet_possible = false;
    out.text.reserve(input.len());
    let mut gap = false;
    let mut last: Option<char> = None;
    for (orig_start, c) in input.char_indices() {
        let orig_end = orig_start + c.len_utf8();
        let mut emitted = false;
        table.fold(c, |folded: FoldedChar| {
            emitted = true;
            let mut flags = 0;
            if folded.latin {
                flags |= LATIN;
            }
            if folded.lookalike {
                flags |= LOOKALIKE;
            }
            if folded.foreign {
                flags |= FOREIGN;
            }
            if folded.numeral {
                flags |= NUMERAL;
            }
            if last == Some(folded.ch) && collapse.collapses(folded.ch, flags) {
                if let Some(previous) = out.chars.last_mut() {
                    // Fold this repeat into the previous character's span;
                    // a separator between the two is now inside that span.
                    previous.orig_end = orig_end;
                    previous.flags |= COLLAPSED;
                    gap = false;
                    return;
                }
            }
            if gap {
                flags |= GAP_BEFORE;
                gap = false;
            }
            out.chars.push(CharInfo {
                norm_start: out.text.len(),
                orig_start,
                orig_end,
                flags,
            });
            out.text.push(folded.ch);
            last = Some(folded.ch);
        });
        if !emitted {
            gap = true;
        }
    }
}

/// The first, fast pass: the folded text of `input` only, without offsets or
/// flags (`out.chars` is left empty). Must produce exactly the text
/// [`normalize_into`] does; a property test holds the two together.
pub(crate) fn fold_text_into(
    table: &FoldTable,
    collapse: &RepeatCollapse,
    input: &str,
    out: &mut Normalized,
) {
    fold_text_each(table, collapse, input, out, |_, _| {});
}

/// [`fold_text_into`], also handing each folded character to `each` as it
/// is written, with whether it is a Latin letter that follows a Latin letter
/// across a skipped character (`wang zhuan`, which splits a word): the
/// pronunciation reading is made in the same pass.
#[inline]
pub(crate) fn fold_text_each(
    table: &FoldTable,
    collapse: &RepeatCollapse,
    input: &str,
    out: &mut Normalized,
    mut each: impl FnMut(char, bool),
) {
    out.text.clear();
    out.chars.clear();
    out.text.reserve(input.len());
    let mut last: Option<char> = None;
    // Whether the last folded character is a Latin letter, and whether a
    // skipped character came after it.
    let mut last_latin = false;
    let mut gap = false;
    let mut has_latin = false;
    let mut has_leet = false;
    for c in input.chars() {
        // Fast path for the bulk of Chinese chat: an ideograph that folds
        // to itself (not a Latin letter, so only the repeat check applies).
        if table.is_plain_han(c) {
            if last == Some(c) && collapse.collapses(c, 0) {
                continue;
            }
            out.text.push(c);
            each(c, false);
            last = Some(c);
            last_latin = false;
            gap = false;
            continue;
        }
        if c.is_ascii() {
            has_leet |= c.is_ascii_digit() || matches!(c, '$' | '@' | '|' | '!');
        }
        let mut emitted = false;
        table.fold(c, |folded: FoldedChar| {
            emitted = true;
            if last == Some(folded.ch) && collapse.enabled {
                let flags = if folded.latin { LATIN } else { 0 };
                if collapse.collapses(folded.ch, flags) {
                    gap = false;
                    return;
                }
            }
            let latin_gap = folded.latin && gap && last_latin;
            has_latin |= folded.latin;
            out.text.push(folded.ch);
            each(folded.ch, latin_gap);
            last = Some(folded.ch);
            last_latin = folded.latin;
            gap = false;
        });
        if !emitted {
            gap = true;
        }
    }
    out.leet_possible = has_latin && has_leet;
}

/// The leet reading of `input` into `out`, with offsets and flags: like
/// [`normalize_into`] without collapsing repeats, but digits and `$ @ | !`
/// next to letters read as the letters they stand for (`w3ch4t` →
/// `wechat`), and `l` reads as `i` (`1` stands for both). Leet terms are
/// folded the same way ([`leet_term`]).
pub(crate) fn leet_into(table: &FoldTable, input: &str, out: &mut Normalized) {
    out.text.clear();
    out.chars.clear();
    out.leet_possible = false;
    let mut gap = false;
    for (orig_start, c) in input.char_indices() {
        let orig_end = orig_start + c.len_utf8();
        // `!` and `|` stand for a letter only inside a word (`cas!no`), not
        // as punctuation after one (`porn!`).
        let inside_word = || {
            input[orig_end..]
                .chars()
                .next()
                .is_some_and(|next| next.is_ascii_alphanumeric())
        };
        let letter = leet_letter(c).filter(|_| !matches!(c, '!' | '|') || inside_word());
        if let Some(letter) = letter {
            let mut flags = LATIN | LEET;
            if gap {
                flags |= GAP_BEFORE;
                gap = false;
            }
            out.chars.push(CharInfo {
                norm_start: out.text.len(),
                orig_start,
                orig_end,
                flags,
            });
            out.text.push(letter);
            continue;
        }
        let mut emitted = false;
        table.fold(c, |folded: FoldedChar| {
            emitted = true;
            let mut flags = 0;
            if folded.latin {
                flags |= LATIN;
            }
            if folded.lookalike {
                flags |= LOOKALIKE;
            }
            if folded.foreign {
                flags |= FOREIGN;
            }
            if gap {
                flags |= GAP_BEFORE;
                gap = false;
            }
            out.chars.push(CharInfo {
                norm_start: out.text.len(),
                orig_start,
                orig_end,
                flags,
            });
            out.text
                .push(if folded.ch == 'l' { 'i' } else { folded.ch });
        });
        if !emitted {
            gap = true;
        }
    }
}

/// What a digit or symbol stands for in leetspeak.
fn leet_letter(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '|' | '!' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        _ => return None,
    })
}

/// A folded Latin term as the leet reading spells it (`l` → `i`).
pub(crate) fn leet_term(folded: &str) -> String {
    folded
        .chars()
        .map(|c| if c == 'l' { 'i' } else { c })
        .collect()
}

/// Fold a term or allow-list entry for the automaton: the same fold as
/// messages, so that both meet in the same form.
pub(crate) fn normalize_term(table: &FoldTable, collapse: &RepeatCollapse, term: &str) -> String {
    let mut out = Normalized::default();
    normalize_into(table, collapse, term, &mut out);
    out.text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rules::moderation::fold::FoldOptions;

    fn table() -> FoldTable {
        FoldTable::new(FoldOptions {
            lookalike_letters: true,
            financial_numerals: true,
        })
    }

    #[test]
    fn offsets_map_each_folded_char_to_its_original() {
        let collapse = RepeatCollapse::default();
        let mut out = Normalized::default();
        normalize_into(&table(), &collapse, "Ａ b·㎏", &mut out);
        assert_eq!(out.text, "abkg");
        let spans: Vec<_> = out
            .chars
            .iter()
            .map(|c| (c.orig_start, c.orig_end))
            .collect();
        assert_eq!(spans, vec![(0, 3), (4, 5), (7, 10), (7, 10)]);
        let gaps: Vec<_> = out
            .chars
            .iter()
            .map(|c| c.flags & GAP_BEFORE != 0)
            .collect();
        assert_eq!(gaps, vec![false, true, true, false]);
    }

    #[test]
    fn collapsed_repeats_extend_the_span() {
        let collapse = RepeatCollapse {
            enabled: true,
            keep_doubled: HashSet::new(),
        };
        let mut out = Normalized::default();
        normalize_into(&table(), &collapse, "加加 加微", &mut out);
        assert_eq!(out.text, "加微");
        assert_eq!((out.chars[0].orig_start, out.chars[0].orig_end), (0, 10));
        assert_eq!(out.chars[1].flags & GAP_BEFORE, 0);
    }

    proptest! {
        #[test]
        fn fast_pass_folds_exactly_like_the_full_pass(
            text in "(\\PC|[加微信哈ａｂ ·🌹])*",
            collapse_enabled: bool,
        ) {
            let collapse = RepeatCollapse {
                enabled: collapse_enabled,
                keep_doubled: ['哈'].into_iter().collect(),
            };
            let table = table();
            let mut fast = Normalized::default();
            let mut full = Normalized::default();
            fold_text_into(&table, &collapse, &text, &mut fast);
            normalize_into(&table, &collapse, &text, &mut full);
            prop_assert_eq!(&fast.text, &full.text);
            prop_assert_eq!(full.chars.len(), full.text.chars().count());
        }
    }
}
