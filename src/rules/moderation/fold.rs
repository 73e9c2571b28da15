//! Folding one character into the form that terms are matched in.
//!
//! The base fold of a character is: compatibility decomposition (NFKD, which
//! covers full-width, circled, math-styled, superscript letters, Roman numerals
//! and ligatures), dropping everything that is not a letter or a digit
//! (including combining marks, so accents fall away), lower-casing, and
//! mapping traditional and variant Chinese characters to their simplified form
//! with OpenCC's tables. Optional steps ([`FoldOptions`]) then map look-alike
//! Cyrillic/Greek letters to Latin and financial numerals (壹, 贰 …) to digits.
//!
//! The base fold of the whole Basic Multilingual Plane is computed once per
//! process into a lookup table; each engine copies it and applies its options,
//! so folding a character while scanning is one array read.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Optional folding steps. Each is a switch so that a community can turn off a
/// step that costs it false positives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoldOptions {
    /// Fold Cyrillic and Greek letters that look like Latin ones (`р` → `p`).
    /// A hit that needed such a letter only counts when its word also holds a
    /// real Latin letter, so genuine Russian or Greek words are not read as
    /// English.
    pub lookalike_letters: bool,
    /// Fold financial numerals (壹 贰 叁 肆 伍 陆 柒 捌 玖, and their
    /// traditional forms) to digits. Everyday numerals (一 二 三) are left
    /// alone: they occur in ordinary words far too often.
    pub financial_numerals: bool,
}

/// Entry encoding in [`FoldTable::bmp`]: `0` means the character is skipped;
/// `MULTI | index` points into `multi`; otherwise the low 21 bits are the
/// folded character and the flag bits say what kind of letter it is.
const MULTI: u32 = 1 << 31;
const LOOKALIKE: u32 = 1 << 30;
const LATIN: u32 = 1 << 29;
const FOREIGN: u32 = 1 << 28;
const NUMERAL: u32 = 1 << 27;
const CHAR_MASK: u32 = 0x1F_FFFF;
const HAN_FIRST: u32 = 0x4E00;
const HAN_LAST: u32 = 0x9FFF;
const HAN_BITMAP_WORDS: usize = ((HAN_LAST - HAN_FIRST + 1) as usize).div_ceil(64);
const INDEX_MASK: u32 = 0x00FF_FFFF;

/// One folded character and what kind of letter it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoldedChar {
    pub ch: char,
    /// A Latin letter (word boundaries apply around it).
    pub latin: bool,
    /// Produced from a look-alike Cyrillic/Greek letter.
    pub lookalike: bool,
    /// A Cyrillic/Greek letter left as it is: proof that its word is
    /// genuinely written in that script.
    pub foreign: bool,
    /// A digit read from a financial numeral (`壹` → `1`).
    pub numeral: bool,
}

impl FoldedChar {
    /// A CJK ideograph that folds to itself.
    fn plain_han(c: char) -> Self {
        FoldedChar {
            ch: c,
            latin: false,
            lookalike: false,
            foreign: false,
            numeral: false,
        }
    }
}

/// The per-engine folding table: base fold plus the engine's options.
#[derive(Clone, Debug)]
pub(crate) struct FoldTable {
    bmp: Vec<u32>,
    /// One bit per character of the CJK Unified Ideographs block, set when
    /// the character does not fold to itself. Chat text is mostly these
    /// characters and most fold to themselves, so a 2.6 KB bitmap that stays
    /// in the L1 cache answers most lookups instead of the 256 KB table.
    han_changed: Vec<u64>,
    multi: Vec<Box<[FoldedChar]>>,
    options: FoldOptions,
}

impl FoldTable {
    /// Build the table for `options` from the process-wide base fold.
    pub(crate) fn new(options: FoldOptions) -> Self {
        let base = base_fold_table();
        let mut table = base.clone();
        table.options = options;
        for (code, entry) in table.bmp.iter_mut().enumerate() {
            if options.lookalike_letters {
                // Unicode's confusables first: they know the original
                // character (`Ꭺ`), not just its lower-cased fold.
                if let Some(latin) = char::from_u32(code as u32).and_then(confusable_latin) {
                    *entry = encode_single(lookalike(latin));
                    continue;
                }
            }
            if *entry == 0 || *entry & MULTI != 0 {
                continue;
            }
            let folded = char::from_u32(*entry & CHAR_MASK);
            if let Some(folded) = folded.and_then(|c| apply_options(c, options)) {
                *entry = encode_single(folded);
            }
        }
        for chars in table.multi.iter_mut() {
            for folded in chars.iter_mut() {
                if let Some(changed) = apply_options(folded.ch, options) {
                    *folded = changed;
                }
            }
        }
        table.han_changed = vec![0u64; HAN_BITMAP_WORDS];
        for code in HAN_FIRST..=HAN_LAST {
            let unchanged = char::from_u32(code).is_some_and(|c| {
                table.bmp[code as usize] == encode_single(FoldedChar::plain_han(c))
            });
            if !unchanged {
                let bit = (code - HAN_FIRST) as usize;
                table.han_changed[bit / 64] |= 1 << (bit % 64);
            }
        }
        table
    }

    /// Whether `c` is a CJK ideograph that folds to itself: the common case,
    /// answered from the small bitmap.
    #[inline]
    pub(crate) fn is_plain_han(&self, c: char) -> bool {
        let code = c as u32;
        if !(HAN_FIRST..=HAN_LAST).contains(&code) {
            return false;
        }
        let bit = (code - HAN_FIRST) as usize;
        self.han_changed
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) == 0)
    }

    /// Fold `c`, calling `emit` for each resulting character (none when the
    /// character carries no letter or digit).
    #[inline]
    pub(crate) fn fold(&self, c: char, mut emit: impl FnMut(FoldedChar)) {
        if self.is_plain_han(c) {
            emit(FoldedChar::plain_han(c));
            return;
        }
        let code = c as u32;
        if let Some(&entry) = self.bmp.get(code as usize) {
            if entry == 0 {
                return;
            }
            if entry & MULTI != 0 {
                if let Some(chars) = self.multi.get((entry & INDEX_MASK) as usize) {
                    chars.iter().copied().for_each(emit);
                }
                return;
            }
            emit(decode_single(entry));
            return;
        }
        // Outside the BMP: emoji and other symbols are the common case and
        // are rejected before any real work (pictographs and emoji hold no
        // letter or digit).
        if (0x1F300..=0x1FAFF).contains(&code) || !c.is_alphanumeric() {
            return;
        }
        let t2s = &base_tables().t2s;
        fold_base(c, t2s, |folded| {
            emit(apply_options(folded.ch, self.options).unwrap_or(folded))
        });
    }
}

fn encode_single(folded: FoldedChar) -> u32 {
    let mut entry = folded.ch as u32;
    if folded.latin {
        entry |= LATIN;
    }
    if folded.lookalike {
        entry |= LOOKALIKE;
    }
    if folded.foreign {
        entry |= FOREIGN;
    }
    if folded.numeral {
        entry |= NUMERAL;
    }
    entry
}

#[inline]
fn decode_single(entry: u32) -> FoldedChar {
    FoldedChar {
        // Entries are only ever built from valid chars; fall back to a
        // replacement character rather than panicking if that ever breaks.
        ch: char::from_u32(entry & CHAR_MASK).unwrap_or(char::REPLACEMENT_CHARACTER),
        latin: entry & LATIN != 0,
        lookalike: entry & LOOKALIKE != 0,
        foreign: entry & FOREIGN != 0,
        numeral: entry & NUMERAL != 0,
    }
}

/// Whether a base-folded character counts as a Latin letter for word
/// boundaries. Digits and CJK are not letters here.
fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (c.is_alphabetic()
            && matches!(c as u32, 0x00C0..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF))
}

fn is_cyrillic_or_greek_letter(c: char) -> bool {
    c.is_alphabetic() && matches!(c as u32, 0x0370..=0x03FF | 0x0400..=0x052F | 0x1F00..=0x1FFF)
}

/// Apply the optional steps to one base-folded character; `None` when
/// nothing changes.
fn apply_options(c: char, options: FoldOptions) -> Option<FoldedChar> {
    if options.lookalike_letters {
        if let Some(latin) = lookalike_to_latin(c).or_else(|| confusable_latin(c)) {
            return Some(lookalike(latin));
        }
    }
    if options.financial_numerals {
        if let Some(digit) = financial_numeral(c) {
            return Some(FoldedChar {
                ch: digit,
                latin: false,
                lookalike: false,
                foreign: false,
                numeral: true,
            });
        }
    }
    None
}

fn lookalike(latin: char) -> FoldedChar {
    FoldedChar {
        ch: latin,
        latin: true,
        lookalike: true,
        foreign: false,
        numeral: false,
    }
}

/// Scripts whose letters Unicode's confusables data maps to Latin ones:
/// Latin extensions and IPA, Greek, Cyrillic, Armenian, Cherokee, Coptic,
/// Lisu, phonetic extensions and small capitals. CJK is left out (`〇` is a
/// numeral, not an `o`).
fn in_confusable_scripts(code: u32) -> bool {
    matches!(code,
        0x0180..=0x02AF
        | 0x0370..=0x058F
        | 0x13A0..=0x13FF
        | 0x1D00..=0x1DBF
        | 0x2C80..=0x2CFF
        | 0xA4D0..=0xA4FF
        | 0xA720..=0xA7FF
        | 0xAB70..=0xABBF)
}

/// The Latin letter Unicode's confusables data (UTS #39 skeletons, through
/// the `unicode-security` crate) says `c` is drawn like, if any.
fn confusable_latin(c: char) -> Option<char> {
    if !in_confusable_scripts(c as u32) || !c.is_alphabetic() {
        return None;
    }
    let mut buf = [0u8; 4];
    let mut skeleton = unicode_security::confusable_detection::skeleton(c.encode_utf8(&mut buf));
    let (Some(first), None) = (skeleton.next(), skeleton.next()) else {
        return None;
    };
    first
        .is_ascii_alphabetic()
        .then(|| first.to_ascii_lowercase())
}

/// The ideograph a CJK radical-supplement form (`⺅`, U+2E85) stands for,
/// from Unicode's confusables data; Kangxi radicals (`⼈`) already fold by
/// compatibility decomposition.
#[cfg(test)]
fn radical_ideograph(c: char) -> Option<char> {
    if !(0x2E80..=0x2EFF).contains(&(c as u32)) {
        return None;
    }
    let mut buf = [0u8; 4];
    let mut skeleton = unicode_security::confusable_detection::skeleton(c.encode_utf8(&mut buf));
    let (Some(first), None) = (skeleton.next(), skeleton.next()) else {
        return None;
    };
    (0x4E00..=0x9FFF).contains(&(first as u32)).then_some(first)
}

/// Lower-case Cyrillic and Greek letters that are drawn like a Latin letter
/// in common fonts (after lower-casing, so `А` and `а` both arrive as `а`).
fn lookalike_to_latin(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ѕ' => 's',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'ԛ' => 'q',
        'ԝ' => 'w',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        _ => return None,
    })
}

/// Financial (anti-forgery) numerals, after traditional→simplified folding.
fn financial_numeral(c: char) -> Option<char> {
    Some(match c {
        '零' => '0',
        '壹' => '1',
        '贰' | '弍' => '2',
        '叁' | '弎' => '3',
        '肆' => '4',
        '伍' => '5',
        '陆' => '6',
        '柒' => '7',
        '捌' => '8',
        '玖' => '9',
        _ => return None,
    })
}

/// The option-free fold of one character, as a sequence of folded chars.
fn fold_base(c: char, t2s: &HashMap<char, char>, mut emit: impl FnMut(FoldedChar)) {
    decompose_compatible(c, |decomposed| {
        if is_combining_mark(decomposed) || !decomposed.is_alphanumeric() {
            return;
        }
        for lower in decomposed.to_lowercase() {
            // `İ` lower-cases to `i` plus a combining dot: drop the mark.
            if is_combining_mark(lower) || !lower.is_alphanumeric() {
                continue;
            }
            let simplified = t2s.get(&lower).copied().unwrap_or(lower);
            emit(FoldedChar {
                ch: simplified,
                latin: is_latin_letter(simplified),
                lookalike: false,
                foreign: is_cyrillic_or_greek_letter(simplified),
                numeral: false,
            });
        }
    });
}

struct BaseTables {
    t2s: HashMap<char, char>,
}

/// The traditional→simplified map, for the rare characters outside the
/// Basic Multilingual Plane (the BMP's folds are shipped in [`FOLD_BMP`]).
fn base_tables() -> &'static BaseTables {
    static BASE: OnceLock<BaseTables> = OnceLock::new();
    BASE.get_or_init(|| BaseTables {
        t2s: traditional_to_simplified(),
    })
}

fn base_fold_table() -> &'static FoldTable {
    static TABLE: OnceLock<FoldTable> = OnceLock::new();
    TABLE.get_or_init(|| parse_bmp_table(FOLD_BMP))
}

/// Load the process-wide base fold table (about a millisecond); call it at
/// startup to keep that out of the first message.
pub fn warm_up() {
    base_fold_table();
}

/// The base fold of every BMP character, generated by [`build_bmp_table`]
/// (from Unicode's decompositions and case maps, Unicode's confusables for
/// radical forms, and [`T2S`]) and checked against it by a test: computing
/// it took most of a matcher's start-up. Regenerate with
/// `cargo test --lib fold_bmp_table -- --ignored`.
///
/// One run of entries per line: `start count kind` (hexadecimal start,
/// decimal count), where kind `-` means the characters are skipped,
/// `+D` means each entry is its character's code plus `D` (hexadecimal,
/// wrapping: `+0` folds to itself, flag bits included in `D`), and
/// `M E,E…` is one character folding to several encoded entries.
const FOLD_BMP: &str = include_str!("data/fold_bmp.txt");

/// Parse [`FOLD_BMP`]. The text is generated and tested, so a malformed
/// line is a build defect: it leaves its characters skipped rather than
/// failing a running service.
fn parse_bmp_table(text: &str) -> FoldTable {
    let mut bmp = vec![0u32; 0x1_0000];
    let mut multi: Vec<Box<[FoldedChar]>> = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let mut fields = line.split(' ');
        let (Some(start), Some(count), Some(kind)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(start), Ok(count)) = (usize::from_str_radix(start, 16), count.parse::<usize>())
        else {
            continue;
        };
        let Some(run) = bmp.get_mut(start..start + count) else {
            continue;
        };
        if let Some(delta) = kind.strip_prefix('+') {
            let delta = u32::from_str_radix(delta, 16).unwrap_or(0);
            for (code, entry) in (start as u32..).zip(run) {
                *entry = code.wrapping_add(delta);
            }
        } else if kind == "M" {
            let chars: Box<[FoldedChar]> = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .filter_map(|entry| u32::from_str_radix(entry, 16).ok())
                .map(decode_single)
                .collect();
            for entry in run {
                *entry = MULTI | multi.len() as u32;
            }
            multi.push(chars);
        }
    }
    FoldTable {
        bmp,
        han_changed: vec![u64::MAX; HAN_BITMAP_WORDS],
        multi,
        options: FoldOptions {
            lookalike_letters: false,
            financial_numerals: false,
        },
    }
}

/// [`FOLD_BMP`]'s text for a base table.
#[cfg(test)]
fn bmp_table_text(table: &FoldTable) -> String {
    let mut text = String::from(
        "# Base fold of the BMP (start count kind), generated by fold.rs's build_bmp_table. Do not edit.\n",
    );
    let kind = |code: usize| -> String {
        let entry = table.bmp[code];
        if entry == 0 {
            "-".to_owned()
        } else if entry & MULTI != 0 {
            let chars = &table.multi[(entry & INDEX_MASK) as usize];
            let encoded: Vec<String> = chars
                .iter()
                .map(|&c| format!("{:X}", encode_single(c)))
                .collect();
            format!("M {}", encoded.join(","))
        } else {
            format!("+{:X}", entry.wrapping_sub(code as u32))
        }
    };
    let mut code = 0;
    while code < table.bmp.len() {
        let here = kind(code);
        let mut end = code + 1;
        if !here.starts_with('M') {
            while end < table.bmp.len() && kind(end) == here {
                end += 1;
            }
        }
        text.push_str(&format!("{code:X} {} {here}\n", end - code));
        code = end;
    }
    text
}

#[cfg(test)]
fn build_bmp_table(t2s: &HashMap<char, char>) -> FoldTable {
    let mut bmp = vec![0u32; 0x1_0000];
    let mut multi: Vec<Box<[FoldedChar]>> = Vec::new();
    let mut folded = Vec::with_capacity(8);
    for (code, entry) in bmp.iter_mut().enumerate() {
        let Some(c) = char::from_u32(code as u32) else {
            continue; // surrogates
        };
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                let lower = c.to_ascii_lowercase();
                *entry = encode_single(FoldedChar {
                    ch: lower,
                    latin: lower.is_ascii_alphabetic(),
                    lookalike: false,
                    foreign: false,
                    numeral: false,
                });
            }
            continue;
        }
        if let Some(ideograph) = radical_ideograph(c) {
            let simplified = t2s.get(&ideograph).copied().unwrap_or(ideograph);
            *entry = encode_single(FoldedChar::plain_han(simplified));
            continue;
        }
        folded.clear();
        fold_base(c, t2s, |f| folded.push(f));
        *entry = match folded.as_slice() {
            [] => 0,
            [single] => encode_single(*single),
            many => {
                let index = multi.len() as u32;
                multi.push(many.to_vec().into_boxed_slice());
                MULTI | index
            }
        };
    }
    FoldTable {
        bmp,
        // Filled in by `FoldTable::new`; all-ones means "look in the table".
        han_changed: vec![u64::MAX; HAN_BITMAP_WORDS],
        multi,
        options: FoldOptions {
            lookalike_letters: false,
            financial_numerals: false,
        },
    }
}

/// OpenCC's character-level traditional (and Taiwan/Hong Kong variant) →
/// simplified map, one `TS` pair per line after a header. Generated from
/// OpenCC's dictionaries (`ferrous-opencc`) and checked against them by a
/// test, so loading it costs nothing at start-up; regenerate with
/// `cargo test --lib t2s_table -- --ignored`.
const T2S: &str = include_str!("data/t2s.txt");

fn traditional_to_simplified() -> HashMap<char, char> {
    T2S.lines()
        .skip(1)
        .filter_map(|line| {
            let mut chars = line.chars();
            Some((chars.next()?, chars.next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ferrous_opencc::config::BuiltinConfig;
    use ferrous_opencc::OpenCC;

    use super::*;

    /// Character ranges whose traditional/variant forms OpenCC maps.
    const HAN_RANGES: [(u32, u32); 4] = [
        (0x3400, 0x4DBF),   // CJK Extension A
        (0x4E00, 0x9FFF),   // CJK Unified Ideographs
        (0xF900, 0xFAFF),   // CJK Compatibility Ideographs
        (0x20000, 0x2A6DF), // CJK Extension B
    ];

    /// Character-level traditional (and Taiwan/Hong Kong variant) → simplified
    /// map from OpenCC's dictionaries. Converting character by character keeps
    /// the offset map exact; OpenCC's phrase tables only matter for ambiguous
    /// characters, where any simplified form is as good for matching.
    fn opencc_table() -> HashMap<char, char> {
        let mut map = HashMap::new();
        // Convert every Han character at once, one per line, so that phrase
        // tables never see two characters together.
        let mut all = String::with_capacity(120_000 * 5);
        for &(first, last) in &HAN_RANGES {
            for c in (first..=last).filter_map(char::from_u32) {
                all.push(c);
                all.push('\n');
            }
        }
        for config in [BuiltinConfig::Hk2s, BuiltinConfig::Tw2s] {
            let converter = OpenCC::from_config(config).expect("OpenCC's built-in dictionaries");
            let converted = converter.convert(&all);
            for (original, simplified) in all.lines().zip(converted.lines()) {
                let mut original_chars = original.chars();
                let mut simplified_chars = simplified.chars();
                if let (Some(from), None, Some(to), None) = (
                    original_chars.next(),
                    original_chars.next(),
                    simplified_chars.next(),
                    simplified_chars.next(),
                ) {
                    if from != to {
                        map.entry(from).or_insert(to);
                    }
                }
            }
        }
        map
    }

    fn t2s_text(map: &HashMap<char, char>) -> String {
        let mut pairs: Vec<_> = map.iter().collect();
        pairs.sort();
        let mut text = String::from(
            "# Traditional/variant -> simplified characters from OpenCC (HK2S, then TW2S). Generated; do not edit.\n",
        );
        for (from, to) in pairs {
            text.push(*from);
            text.push(*to);
            text.push('\n');
        }
        text
    }

    /// The shipped base fold is exactly what the generator computes.
    #[test]
    fn fold_bmp_table_matches_the_generator() {
        let built = build_bmp_table(&traditional_to_simplified());
        let expected = bmp_table_text(&built);
        assert!(
            FOLD_BMP == expected,
            "src/rules/moderation/data/fold_bmp.txt is out of date: cargo test --lib fold_bmp_table -- --ignored"
        );
        let parsed = parse_bmp_table(FOLD_BMP);
        assert!(
            parsed.bmp == built.bmp,
            "parsing gives the built entries back"
        );
        assert_eq!(parsed.multi, built.multi);
    }

    #[test]
    #[ignore = "regenerates src/rules/moderation/data/fold_bmp.txt"]
    fn fold_bmp_table_regenerate() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/rules/moderation/data/fold_bmp.txt"
        );
        let built = build_bmp_table(&traditional_to_simplified());
        std::fs::write(path, bmp_table_text(&built)).expect("table written");
    }

    /// The embedded table is exactly what OpenCC's dictionaries say.
    #[test]
    fn t2s_table_matches_opencc() {
        let expected = t2s_text(&opencc_table());
        assert!(
            T2S == expected,
            "src/rules/moderation/data/t2s.txt is out of date: cargo test --lib t2s_table -- --ignored"
        );
    }

    #[test]
    #[ignore = "regenerates src/rules/moderation/data/t2s.txt"]
    fn t2s_table_regenerate() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/rules/moderation/data/t2s.txt"
        );
        std::fs::write(path, t2s_text(&opencc_table())).expect("table written");
    }

    fn fold_str(table: &FoldTable, text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            table.fold(c, |f| out.push(f.ch));
        }
        out
    }

    fn plain() -> FoldTable {
        FoldTable::new(FoldOptions {
            lookalike_letters: false,
            financial_numerals: false,
        })
    }

    #[test]
    fn case_and_width_fold_to_ascii_lower() {
        assert_eq!(fold_str(&plain(), "ＡＢＣabcＸ１２"), "abcabcx12");
    }

    #[test]
    fn compatibility_letters_fold() {
        let table = plain();
        assert_eq!(fold_str(&table, "ⓦⓔⓒⓗⓐⓣ"), "wechat");
        assert_eq!(fold_str(&table, "𝐖𝐞𝐜𝐡𝐚𝐭"), "wechat");
        assert_eq!(fold_str(&table, "ᵂᵉᶜʰᵃᵗ"), "wechat");
        assert_eq!(fold_str(&table, "Ⅻ①²"), "xii12");
    }

    #[test]
    fn accents_and_combining_marks_fall_away() {
        assert_eq!(fold_str(&plain(), "cafe\u{301} café İ"), "cafecafei");
    }

    #[test]
    fn traditional_and_variant_characters_become_simplified() {
        let table = plain();
        assert_eq!(fold_str(&table, "加微信"), "加微信");
        assert_eq!(fold_str(&table, "賭博網站"), "赌博网站");
        assert_eq!(fold_str(&table, "裡面發財"), "里面发财");
    }

    #[test]
    fn symbols_emoji_and_format_characters_are_skipped() {
        assert_eq!(
            fold_str(&plain(), "加 🌹 微\u{200b}·信！\u{fe0f}\u{20e3}"),
            "加微信"
        );
    }

    #[test]
    fn lookalike_switch_maps_cyrillic_only_when_on() {
        assert_eq!(fold_str(&plain(), "рау"), "рау");
        let table = FoldTable::new(FoldOptions {
            lookalike_letters: true,
            financial_numerals: false,
        });
        assert_eq!(fold_str(&table, "РАУ"), "pay");
    }

    #[test]
    fn unicode_confusables_add_letters_from_other_scripts() {
        let table = FoldTable::new(FoldOptions {
            lookalike_letters: true,
            financial_numerals: false,
        });
        // Armenian o, Latin alpha, Cherokee letters.
        assert_eq!(fold_str(&table, "օɑ"), "oa");
        assert_eq!(fold_str(&table, "ᏔᎬᏟᎻᎪᎢ"), "wechat");
        assert_eq!(fold_str(&plain(), "օ"), "օ");
    }

    #[test]
    fn radical_supplement_forms_fold_to_their_ideograph() {
        assert_eq!(fold_str(&plain(), "⺅言"), "亻言");
    }

    #[test]
    fn financial_numeral_switch_maps_only_financial_forms() {
        assert_eq!(fold_str(&plain(), "壹叁捌"), "壹叁捌");
        let table = FoldTable::new(FoldOptions {
            lookalike_letters: false,
            financial_numerals: true,
        });
        assert_eq!(fold_str(&table, "壹貳叁一二三"), "123一二三");
    }

    #[test]
    fn han_bitmap_agrees_with_the_table() {
        let table = FoldTable::new(FoldOptions {
            lookalike_letters: true,
            financial_numerals: true,
        });
        let mut plain = 0;
        for c in (HAN_FIRST..=HAN_LAST).filter_map(char::from_u32) {
            let entry = table.bmp[c as usize];
            let folds_to_itself = entry == encode_single(FoldedChar::plain_han(c));
            assert_eq!(table.is_plain_han(c), folds_to_itself, "{c}");
            plain += usize::from(folds_to_itself);
        }
        assert!(
            plain > 15_000,
            "most ideographs fold to themselves: {plain}"
        );
        assert!(!table.is_plain_han('賭'));
        assert!(!table.is_plain_han('壹'));
        assert!(table.is_plain_han('赌'));
    }
}
