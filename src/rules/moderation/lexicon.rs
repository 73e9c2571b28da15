//! Everyday words, to tell a real word that happens to sound or look like a
//! banned term (`威信` for `微信`, `货款` for `贷款`, `社情民意` around
//! `社情`) from an evasion (`薇信`, `网撰`).
//!
//! The lists are the two-, three- and four-character entries of jieba's
//! dictionary (MIT): two-character words with a frequency of at least 5,
//! longer ones of at least 10, about 100,000 words. They are kept as sorted
//! fixed-size records, so a lookup is a binary search over the embedded
//! bytes with no start-up cost. `docs/moderation.md` says how to regenerate
//! them.

const WORDS2: &str = include_str!("data/words2.txt");
const WORDS3: &str = include_str!("data/words3.txt");
const WORDS4: &str = include_str!("data/words4.txt");

/// The longest word looked up, in characters.
pub(crate) const MAX_WORD_CHARS: usize = 4;

/// The records of the list for `chars`-character words: every character is
/// in U+4E00..U+9FFF, three UTF-8 bytes, so a record is `3 * chars` bytes
/// plus a newline.
fn records(chars: usize) -> &'static [u8] {
    let list = match chars {
        2 => WORDS2,
        3 => WORDS3,
        4 => WORDS4,
        _ => return &[],
    };
    let bytes = list.as_bytes();
    // Skip the header line.
    let start = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    &bytes[start..]
}

/// The lists as sorted integers (15 bits per character), built on first
/// use: a lookup is then a binary search over plain numbers.
/// Characters a packed word may hold: U+4E00..U+9FFF.
const CHAR_SPAN: usize = 0x5200;

struct Lists {
    by_length: [Vec<u64>; MAX_WORD_CHARS + 1],
    /// Per length, where the words starting with each character begin in
    /// `by_length` (one more entry for the end): a lookup searches only
    /// the few words sharing its first character, which stay in cache,
    /// instead of the whole list.
    by_first: [Vec<u32>; MAX_WORD_CHARS + 1],
}

fn lists() -> &'static Lists {
    static LISTS: std::sync::OnceLock<Lists> = std::sync::OnceLock::new();
    LISTS.get_or_init(|| {
        let mut by_length: [Vec<u64>; MAX_WORD_CHARS + 1] = Default::default();
        for (chars, list) in by_length.iter_mut().enumerate().skip(2) {
            let record = 3 * chars + 1;
            let records = records(chars);
            list.reserve(records.len() / record);
            for entry in records.chunks_exact(record) {
                let word = std::str::from_utf8(&entry[..record - 1]).unwrap_or_default();
                if let Some(key) = pack(word.chars()) {
                    list.push(key);
                }
            }
            // The records are sorted by UTF-8 bytes, which for these
            // three-byte characters is code point order: already sorted.
            debug_assert!(list.windows(2).all(|pair| pair[0] < pair[1]));
        }
        let by_first = std::array::from_fn(|chars| {
            let mut starts = vec![0u32; CHAR_SPAN + 1];
            if chars >= 2 {
                for &key in &by_length[chars] {
                    starts[first_char(key, chars) + 1] += 1;
                }
                for i in 1..starts.len() {
                    starts[i] += starts[i - 1];
                }
            }
            starts
        });
        Lists {
            by_length,
            by_first,
        }
    })
}

/// Characters U+4E00..U+9FFF, 15 bits each.
fn pack(chars: impl Iterator<Item = char>) -> Option<u64> {
    let mut key = 0u64;
    for c in chars {
        let offset = (c as u32).checked_sub(0x4E00).filter(|&o| o < 0x5200)?;
        key = (key << 15) | u64::from(offset);
    }
    Some(key)
}

/// Whether `word` (two to four characters) is an everyday word.
pub(crate) fn is_word(word: &[char]) -> bool {
    if !(2..=MAX_WORD_CHARS).contains(&word.len()) {
        return false;
    }
    let Some(key) = pack(word.iter().copied()) else {
        return false;
    };
    let lists = lists();
    let starts = &lists.by_first[word.len()];
    let first = first_char(key, word.len());
    let (Some(&start), Some(&end)) = (starts.get(first), starts.get(first + 1)) else {
        return false;
    };
    lists.by_length[word.len()]
        .get(start as usize..end as usize)
        .is_some_and(|words| words.binary_search(&key).is_ok())
}

/// The first character's offset in a packed word of `chars` characters.
fn first_char(key: u64, chars: usize) -> usize {
    (key >> (15 * (chars - 1))) as usize
}

/// Whether two characters form an everyday word.
pub(crate) fn is_pair(first: char, second: char) -> bool {
    is_word(&[first, second])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str) -> bool {
        is_word(&text.chars().collect::<Vec<_>>())
    }

    /// The first-character index finds exactly what a search of the whole
    /// list finds: every listed word, and no word one character off.
    #[test]
    fn lookups_through_the_first_character_index_find_every_word() {
        let lists = lists();
        for chars in 2..=MAX_WORD_CHARS {
            let list = &lists.by_length[chars];
            assert!(!list.is_empty());
            for &key in list {
                let word: Vec<char> = (0..chars)
                    .rev()
                    .map(|i| char::from_u32(0x4E00 + ((key >> (15 * i)) & 0x7FFF) as u32))
                    .collect::<Option<_>>()
                    .expect("packed characters");
                assert!(is_word(&word), "{word:?}");
                let mut changed = word.clone();
                changed[chars - 1] = char::from_u32(changed[chars - 1] as u32 ^ 1).expect("a char");
                let whole = list.binary_search(&pack(changed.iter().copied()).expect("packs"));
                assert_eq!(is_word(&changed), whole.is_ok(), "{changed:?}");
            }
        }
    }

    #[test]
    fn records_are_fixed_size_and_sorted() {
        for chars in 2..=MAX_WORD_CHARS {
            let record = 3 * chars + 1;
            let records = records(chars);
            assert_eq!(records.len() % record, 0, "{chars}-character list");
            let mut previous: Option<&[u8]> = None;
            for entry in records.chunks(record) {
                assert_eq!(entry[record - 1], b'\n');
                let text = std::str::from_utf8(&entry[..record - 1]).expect("utf-8 record");
                assert_eq!(text.chars().count(), chars, "{text}");
                if let Some(previous) = previous {
                    assert!(previous < &entry[..record - 1], "{text} out of order");
                }
                previous = Some(&entry[..record - 1]);
            }
            assert!(records.len() / record > 10_000);
        }
    }

    #[test]
    fn real_words_are_found_and_evasions_are_not() {
        for text in [
            "威信",
            "货款",
            "网站",
            "撰写",
            "菠菜",
            "圆角",
            "社情民意",
            "一路顺风",
        ] {
            assert!(word(text), "{text}");
        }
        for text in ["薇信", "网撰", "堵球", "网转", "社情", "ab", "字"] {
            assert!(!word(text), "{text}");
        }
    }
}
