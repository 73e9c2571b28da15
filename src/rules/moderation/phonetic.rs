//! Pronunciation: every character, digit and pinyin-spelled Latin word read
//! as toneless pinyin syllables, so that `网赚`, `网撰`, `wang zhuan` and
//! `WangZhuan` all read the same.
//!
//! Readings come from the `pinyin` crate (its data is the maintained
//! `pinyin-data` set, heteronyms included). A message is turned into a
//! string of *symbols*, one per syllable, each symbol the syllable's
//! near-homophone class (see [`fuzzy_key`]): the engine looks the terms'
//! symbol sequences up in it (`sequences.rs`), then looks at each candidate
//! closely
//! (`variants::verify_phonetic`).

use std::collections::HashMap;
use std::sync::OnceLock;

use pinyin::{ToPinyin, ToPinyinMulti};

use super::lexicon;
use super::sequences::Code;
use super::shape;

/// An exact toneless syllable (`zhuan`, `lv`); 0 means none.
pub(crate) type Syllable = u16;

const HAN_FIRST: u32 = 0x3400;
const HAN_LAST: u32 = 0x9FFF;
/// In [`Tables::han`]: the character may start a component pair.
const COMPONENT: u16 = 0x8000;
const ID_MASK: u16 = 0x7FFF;
/// In [`Tables::han_class`]: the character has no reading.
const NO_CLASS: u16 = 0x7FFF;
/// A position no syllable can match (a non-pinyin word, kana, symbols…);
/// every other symbol is a near-homophone class.
pub(crate) const BARRIER: Code = Code::MAX;
/// In [`PhoneticText::chars`]: the symbol is a syllable of a Latin word.
pub(crate) const LATIN_SYLLABLE: char = '\0';
/// In [`PhoneticText::chars`]: the symbol is a component pair.
pub(crate) const COMPOSED: char = '\u{1}';
/// Longer Latin runs are not read as pinyin (and cost nothing).
const MAX_LATIN_WORD: usize = 36;
/// Readings kept per character: a heteronym's rare readings only add noise.
const MAX_READINGS: usize = 3;

/// The process-wide pronunciation tables.
pub(crate) struct Tables {
    texts: Vec<Box<str>>,
    fuzzy: Vec<u16>,
    /// Packed Latin spelling → syllable, sorted, for segmenting words.
    codes: Vec<(u32, Syllable)>,
    /// Primary reading of U+3400..U+9FFF (plus the [`COMPONENT`] bit).
    han: Vec<u16>,
    /// The same characters' symbol class (plus the [`COMPONENT`] bit;
    /// [`NO_CLASS`] for none): one lookup per character while scanning.
    han_class: Vec<u16>,
    digits: [Syllable; 10],
    /// The `pinyin` crate's spellings → syllable.
    by_plain: HashMap<&'static str, Syllable>,
    compose: HashMap<(char, char), char>,
    /// First components outside the Han block (katakana stand-ins).
    other_starters: Vec<char>,
}

pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Tables::build)
}

impl Tables {
    fn build() -> Tables {
        let mut ids: HashMap<String, Syllable> = HashMap::new();
        let mut texts: Vec<Box<str>> = vec!["".into()];
        let mut intern = |text: String| -> Syllable {
            *ids.entry(text.clone()).or_insert_with(|| {
                texts.push(text.into_boxed_str());
                (texts.len() - 1) as Syllable
            })
        };
        // The crate's spellings are static strings: intern each once.
        let mut by_plain: HashMap<&'static str, Syllable> = HashMap::new();
        let mut read = |plain: &'static str| -> Syllable {
            *by_plain
                .entry(plain)
                .or_insert_with(|| plain_text(plain).map_or(0, &mut intern))
        };
        let mut han = vec![0u16; (HAN_LAST - HAN_FIRST + 1) as usize];
        for code in HAN_FIRST..=HAN_LAST {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            if let Some(multi) = c.to_pinyin_multi() {
                for reading in multi {
                    read(reading.plain());
                }
            }
            if let Some(reading) = c.to_pinyin() {
                han[(code - HAN_FIRST) as usize] = read(reading.plain());
            }
        }
        let digits = [
            "ling", "yi", "er", "san", "si", "wu", "liu", "qi", "ba", "jiu",
        ]
        .map(|text| intern(text.to_owned()));
        by_plain.retain(|_, id| *id != 0);

        let mut fuzzy_ids: HashMap<String, u16> = HashMap::new();
        let fuzzy: Vec<u16> = texts
            .iter()
            .map(|text| {
                let next = fuzzy_ids.len() as u16;
                *fuzzy_ids.entry(fuzzy_key(text)).or_insert(next)
            })
            .collect();

        let mut codes: Vec<(u32, Syllable)> = Vec::new();
        for (id, text) in texts.iter().enumerate().skip(1) {
            if let Some(code) = pack(text.as_bytes()) {
                codes.push((code, id as Syllable));
            }
        }
        // People type ü as v (`lv`, handled above) or u after l and n
        // (`lue`, `nue`): accept those spellings where they are free.
        for (id, text) in texts.iter().enumerate().skip(1) {
            if text.contains('v') {
                if let Some(code) = pack(text.replace('v', "u").as_bytes()) {
                    codes.push((code, id as Syllable));
                }
            }
        }
        codes.sort_by_key(|&(code, _)| code);
        codes.dedup_by_key(|&mut (code, _)| code);

        let compose = shape::compositions(lexicon::is_pair);
        let mut other_starters = Vec::new();
        for &(first, _) in compose.keys() {
            match han_index(first).and_then(|i| han.get_mut(i)) {
                Some(entry) => *entry |= COMPONENT,
                None => other_starters.push(first),
            }
        }
        let han_class = han
            .iter()
            .map(|&entry| {
                let class = match entry & ID_MASK {
                    0 => NO_CLASS,
                    id => fuzzy.get(id as usize).copied().unwrap_or(NO_CLASS),
                };
                class | (entry & COMPONENT)
            })
            .collect();
        Tables {
            han_class,
            texts,
            fuzzy,
            codes,
            han,
            digits,
            by_plain,
            compose,
            other_starters,
        }
    }

    pub(crate) fn text(&self, syllable: Syllable) -> &str {
        self.texts.get(syllable as usize).map_or("", |t| t)
    }

    /// The near-homophone symbol of a syllable.
    pub(crate) fn symbol(&self, syllable: Syllable) -> Code {
        self.fuzzy.get(syllable as usize).copied().unwrap_or(0)
    }

    /// The usual reading of a character or digit (0: none).
    pub(crate) fn primary(&self, c: char) -> Syllable {
        if let Some(digit) = c.to_digit(10).filter(|_| c.is_ascii_digit()) {
            return self.digits[digit as usize];
        }
        han_index(c)
            .and_then(|i| self.han.get(i))
            .map_or(0, |entry| entry & ID_MASK)
    }

    /// Every reading of a term character (heteronyms first to last, at most
    /// [`MAX_READINGS`]); empty when it has none.
    pub(crate) fn readings(&self, c: char, out: &mut Vec<Syllable>) {
        let primary = self.primary(c);
        if primary == 0 {
            return;
        }
        push_unique(out, primary);
        if c.is_ascii_digit() {
            return;
        }
        if let Some(multi) = c.to_pinyin_multi() {
            for reading in multi {
                if out.len() >= MAX_READINGS {
                    break;
                }
                if let Some(&id) = self.by_plain.get(reading.plain()) {
                    push_unique(out, id);
                }
            }
        }
    }

    /// The syllable spelled by `letters` (lower-case ASCII), if any.
    pub(crate) fn lookup(&self, letters: &[u8]) -> Option<Syllable> {
        let code = pack(letters)?;
        self.codes
            .binary_search_by_key(&code, |&(code, _)| code)
            .ok()
            .map(|i| self.codes[i].1)
    }

    /// Split a Latin word into pinyin syllables: `(start, length, syllable)`
    /// triples into `out`. `false` when the word is not pinyin. Fewer
    /// syllables win, then syllables that start with a consonant (`fangan`
    /// reads `fan gan`, `xian` reads `xian`).
    pub(crate) fn segment(&self, word: &[u8], out: &mut Vec<(u8, u8, Syllable)>) -> bool {
        out.clear();
        let n = word.len();
        if n == 0 || n > MAX_LATIN_WORD {
            return false;
        }
        const NONE: u16 = u16::MAX;
        let mut cost = [NONE; MAX_LATIN_WORD + 1];
        let mut step = [(0u8, 0 as Syllable); MAX_LATIN_WORD + 1];
        cost[0] = 0;
        for end in 1..=n {
            for len in 1..=6.min(end) {
                let start = end - len;
                if cost[start] == NONE {
                    continue;
                }
                let Some(id) = self.lookup(&word[start..end]) else {
                    continue;
                };
                let vowel_start = matches!(word[start], b'a' | b'e' | b'o');
                let total = cost[start] + 2 + u16::from(vowel_start);
                if total < cost[end] {
                    cost[end] = total;
                    step[end] = (len as u8, id);
                }
            }
        }
        if cost[n] == NONE {
            return false;
        }
        let mut end = n;
        while end > 0 {
            let (len, id) = step[end];
            let start = end - len as usize;
            out.push((start as u8, len, id));
            end = start;
        }
        out.reverse();
        true
    }

    fn starts_component(&self, c: char) -> bool {
        match han_index(c).and_then(|i| self.han.get(i)) {
            Some(entry) => entry & COMPONENT != 0,
            // Katakana and other stand-ins for radicals (`イ言`).
            None => !c.is_ascii() && self.other_starters.contains(&c),
        }
    }
}

fn han_index(c: char) -> Option<usize> {
    let code = c as u32;
    (HAN_FIRST..=HAN_LAST)
        .contains(&code)
        .then(|| (code - HAN_FIRST) as usize)
}

fn push_unique(out: &mut Vec<Syllable>, id: Syllable) {
    if id != 0 && !out.contains(&id) {
        out.push(id);
    }
}

/// The crate's toneless spelling in plain ASCII: `ü` is written `v` as
/// people type it; readings that are not letters (none expected) are
/// dropped.
fn plain_text(plain: &str) -> Option<String> {
    let text: String = plain
        .chars()
        .map(|c| match c {
            'ü' => 'v',
            'ê' => 'e',
            other => other,
        })
        .collect();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase())).then_some(text)
}

/// Up to six lower-case letters, five bits each.
fn pack(letters: &[u8]) -> Option<u32> {
    if letters.is_empty() || letters.len() > 6 {
        return None;
    }
    let mut code = 0u32;
    for &b in letters {
        if !b.is_ascii_lowercase() {
            return None;
        }
        code = code * 32 + u32::from(b - b'a' + 1);
    }
    Some(code)
}

const INITIALS: [&str; 23] = [
    "zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r",
    "z", "c", "s", "y", "w",
];

/// A syllable's initial (`zh`, `b`, … or empty) and final.
pub(crate) fn split_initial(syllable: &str) -> (&str, &str) {
    for initial in INITIALS {
        if let Some(rest) = syllable.strip_prefix(initial) {
            if !rest.is_empty() {
                return (initial, rest);
            }
        }
    }
    ("", syllable)
}

/// The near-homophone class of a syllable: the pairs that Chinese input
/// methods offer as "fuzzy pinyin" because so many speakers merge them —
/// zh/z, ch/c, sh/s, n/l, and -ng/-n after a, e, i (`ang`/`an`, `eng`/`en`,
/// `ing`/`in`); `lv`/`lu`.
pub(crate) fn fuzzy_key(syllable: &str) -> String {
    let (initial, last) = split_initial(syllable);
    let initial = match initial {
        "zh" => "z",
        "ch" => "c",
        "sh" => "s",
        "n" => "l",
        other => other,
    };
    let mut last = last.to_owned();
    if last.ends_with("ng") && !last.ends_with("ong") {
        last.pop();
    }
    if initial == "l" && last.starts_with('v') {
        last.replace_range(0..1, "u");
    }
    format!("{initial}{last}")
}

/// What a symbol was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SymbolKind {
    /// A character, as written.
    Han,
    /// Two components read as the character they spell (`亻言` → `信`).
    Composed,
    Digit,
    /// One pinyin syllable of a Latin word.
    Latin,
    Barrier,
}

/// One symbol of a message, with where it came from (folded-character
/// indices, end exclusive).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    pub kind: SymbolKind,
    /// The character read (the composed one for [`SymbolKind::Composed`]).
    pub ch: char,
    pub syllable: Syllable,
    pub first: u32,
    pub end: u32,
    /// For [`SymbolKind::Latin`]: the whole word's folded characters, and
    /// whether this syllable starts / ends it.
    pub word_first: u32,
    pub word_end: u32,
}

/// A message as symbols. Reuse one per worker.
#[derive(Debug, Default)]
pub(crate) struct PhoneticText {
    /// The symbols: near-homophone classes, or [`BARRIER`].
    pub codes: Vec<Code>,
    /// Per symbol, the character read ([`LATIN_SYLLABLE`] for a pinyin
    /// syllable, [`COMPOSED`] for a component pair): enough to rule most
    /// candidates out before the full look.
    pub chars: Vec<char>,
    /// Filled only when built with detail.
    pub symbols: Vec<Symbol>,
    latin: Vec<u8>,
    segments: Vec<(u8, u8, Syllable)>,
}

/// Builds a [`PhoneticText`] from folded characters.
pub(crate) struct Reader<'a> {
    tables: &'a Tables,
    out: &'a mut PhoneticText,
    detail: bool,
    index: u32,
    latin_first: u32,
    pending: Option<(u32, char)>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(tables: &'a Tables, out: &'a mut PhoneticText, detail: bool) -> Self {
        out.codes.clear();
        out.chars.clear();
        out.symbols.clear();
        out.latin.clear();
        Reader {
            tables,
            out,
            detail,
            index: 0,
            latin_first: 0,
            pending: None,
        }
    }

    /// The next folded character; `gap` says a skipped character (space,
    /// punctuation…) stood before it.
    #[inline]
    pub(crate) fn push(&mut self, c: char, gap: bool) {
        let index = self.index;
        self.index += 1;
        // The bulk of chat: a character with a reading that starts no
        // component pair, with no Latin word or component pending.
        if !self.detail && self.pending.is_none() && self.out.latin.is_empty() {
            if let Some(&class) = han_index(c).and_then(|i| self.tables.han_class.get(i)) {
                if class & COMPONENT == 0 && class != NO_CLASS {
                    self.out.codes.push(class);
                    self.out.chars.push(c);
                    return;
                }
            }
        }
        if c.is_ascii_lowercase() {
            self.flush_pending();
            if gap {
                self.flush_latin();
            }
            if self.out.latin.is_empty() {
                self.latin_first = index;
            }
            // Past the limit the word is not pinyin; keep counting it.
            self.out.latin.push(c as u8);
            return;
        }
        self.flush_latin();
        if let Some((first, component)) = self.pending.take() {
            if let Some(&whole) = self.tables.compose.get(&(component, c)) {
                let syllable = self.tables.primary(whole);
                self.emit(SymbolKind::Composed, whole, syllable, first, index + 1);
                return;
            }
            self.emit_char(first, component);
        }
        if self.tables.starts_component(c) {
            self.pending = Some((index, c));
            return;
        }
        self.emit_char(index, c);
    }

    pub(crate) fn finish(mut self) {
        self.flush_latin();
        self.flush_pending();
    }

    fn flush_pending(&mut self) {
        if let Some((first, component)) = self.pending.take() {
            self.emit_char(first, component);
        }
    }

    fn emit_char(&mut self, index: u32, c: char) {
        let syllable = self.tables.primary(c);
        let kind = if syllable == 0 {
            SymbolKind::Barrier
        } else if c.is_ascii_digit() {
            SymbolKind::Digit
        } else {
            SymbolKind::Han
        };
        self.emit(kind, c, syllable, index, index + 1);
    }

    fn flush_latin(&mut self) {
        if self.out.latin.is_empty() {
            return;
        }
        let first = self.latin_first;
        let end = first + self.out.latin.len() as u32;
        let mut segments = std::mem::take(&mut self.out.segments);
        if self.tables.segment(&self.out.latin, &mut segments) {
            for &(start, len, syllable) in &segments {
                let symbol = self.tables.symbol(syllable);
                self.out.codes.push(symbol);
                self.out.chars.push(LATIN_SYLLABLE);
                if self.detail {
                    self.out.symbols.push(Symbol {
                        kind: SymbolKind::Latin,
                        ch: 'a',
                        syllable,
                        first: first + u32::from(start),
                        end: first + u32::from(start) + u32::from(len),
                        word_first: first,
                        word_end: end,
                    });
                }
            }
        } else {
            self.emit(SymbolKind::Barrier, 'a', 0, first, end);
        }
        self.out.segments = segments;
        self.out.latin.clear();
    }

    #[inline]
    fn emit(&mut self, kind: SymbolKind, ch: char, syllable: Syllable, first: u32, end: u32) {
        let symbol = if kind == SymbolKind::Barrier {
            BARRIER
        } else {
            self.tables.symbol(syllable)
        };
        self.out.codes.push(symbol);
        self.out.chars.push(if kind == SymbolKind::Composed {
            COMPOSED
        } else {
            ch
        });
        if self.detail {
            self.out.symbols.push(Symbol {
                kind,
                ch,
                syllable,
                first,
                end,
                word_first: first,
                word_end: end,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<String> {
        let tables = tables();
        let mut out = PhoneticText::default();
        let mut reader = Reader::new(tables, &mut out, true);
        let mut gap = false;
        for c in text.chars() {
            if c == ' ' {
                gap = true;
                continue;
            }
            reader.push(c, gap);
            gap = false;
        }
        reader.finish();
        out.symbols
            .iter()
            .map(|s| match s.kind {
                SymbolKind::Barrier => "|".to_owned(),
                _ => tables.text(s.syllable).to_owned(),
            })
            .collect()
    }

    #[test]
    fn characters_digits_and_pinyin_words_read_alike() {
        assert_eq!(read("网赚"), ["wang", "zhuan"]);
        assert_eq!(read("wang zhuan"), ["wang", "zhuan"]);
        assert_eq!(read("wangzhuan"), ["wang", "zhuan"]);
        assert_eq!(read("1夜"), ["yi", "ye"]);
        assert_eq!(read("hello网"), ["|", "wang"]);
        assert_eq!(read("女lv"), ["nv", "lv"]);
        assert_eq!(read("xian"), ["xian"]);
        assert_eq!(read("xi an"), ["xi", "an"]);
        assert_eq!(read("fangan"), ["fan", "gan"]);
    }

    #[test]
    fn component_pairs_read_as_the_character_they_spell() {
        assert_eq!(read("加微亻言"), ["jia", "wei", "xin"]);
        assert_eq!(read("亻你"), ["ren", "ni"]);
        assert_eq!(read("上下"), ["shang", "xia"]);
    }

    /// The fast reading (no detail) and the detailed one agree symbol for
    /// symbol: the engine finds candidates with one and judges with the
    /// other.
    #[test]
    fn fast_and_detailed_readings_agree() {
        let tables = tables();
        for text in [
            "加微亻言网赚",
            "wang zhuan网撰1夜",
            "力口群 abc 人言可畏",
            "女子上下テスト",
        ] {
            let mut fast = PhoneticText::default();
            let mut detailed = PhoneticText::default();
            for (out, detail) in [(&mut fast, false), (&mut detailed, true)] {
                let mut reader = Reader::new(tables, out, detail);
                let mut gap = false;
                for c in text.chars() {
                    if c == ' ' {
                        gap = true;
                        continue;
                    }
                    reader.push(c, gap);
                    gap = false;
                }
                reader.finish();
            }
            assert_eq!(fast.codes, detailed.codes, "{text}");
            assert_eq!(fast.chars, detailed.chars, "{text}");
            assert_eq!(detailed.symbols.len(), detailed.chars.len(), "{text}");
        }
    }

    #[test]
    fn near_homophones_share_a_class() {
        assert_eq!(fuzzy_key("zhuan"), fuzzy_key("zuan"));
        assert_eq!(fuzzy_key("shang"), fuzzy_key("san"));
        assert_eq!(fuzzy_key("ning"), fuzzy_key("lin"));
        assert_eq!(fuzzy_key("lv"), fuzzy_key("lu"));
        assert_ne!(fuzzy_key("long"), fuzzy_key("lon"));
        assert_ne!(fuzzy_key("du"), fuzzy_key("tu"));
    }

    #[test]
    fn heteronyms_are_all_read() {
        let tables = tables();
        let mut out = Vec::new();
        tables.readings('行', &mut out);
        let texts: Vec<&str> = out.iter().map(|&s| tables.text(s)).collect();
        assert!(
            texts.contains(&"xing") && texts.contains(&"hang"),
            "{texts:?}"
        );
    }
}
