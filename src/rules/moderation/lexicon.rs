//! Everyday two-character words, to tell a real word that happens to sound or
//! look like a banned term (`威信` for `微信`, `货款` for `贷款`) from an
//! evasion (`薇信`, `网撰`).
//!
//! The list is the two-character entries of jieba's dictionary (MIT) with a
//! frequency of at least 20, about 46,000 words, kept as sorted fixed-size
//! records so that a lookup is a binary search over the embedded bytes: no
//! start-up cost. `docs/moderation.md` says how to regenerate it.

const WORDS: &str = include_str!("data/words2.txt");

/// Every character of the list is in U+4E00..U+9FFF: three UTF-8 bytes each,
/// so a record is six bytes plus a newline.
const RECORD: usize = 7;

fn records() -> &'static [u8] {
    let bytes = WORDS.as_bytes();
    // Skip the header line.
    let start = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    &bytes[start..]
}

/// Whether `first` followed by `second` is an everyday word.
pub(crate) fn is_word(first: char, second: char) -> bool {
    let mut key = [0u8; 6];
    let (Some(a), Some(b)) = (encode3(first), encode3(second)) else {
        return false;
    };
    key[..3].copy_from_slice(&a);
    key[3..].copy_from_slice(&b);
    let records = records();
    let count = records.len() / RECORD;
    let (mut low, mut high) = (0, count);
    while low < high {
        let mid = (low + high) / 2;
        let record = &records[mid * RECORD..mid * RECORD + 6];
        match record.cmp(&key[..]) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

fn encode3(c: char) -> Option<[u8; 3]> {
    if !('\u{4E00}'..='\u{9FFF}').contains(&c) {
        return None;
    }
    let mut buf = [0u8; 4];
    let encoded = c.encode_utf8(&mut buf);
    let mut out = [0u8; 3];
    out.copy_from_slice(encoded.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_fixed_size_and_sorted() {
        let records = records();
        assert_eq!(records.len() % RECORD, 0);
        let mut previous: Option<&[u8]> = None;
        for record in records.chunks(RECORD) {
            assert_eq!(record[6], b'\n');
            let word = std::str::from_utf8(&record[..6]).expect("utf-8 record");
            assert_eq!(word.chars().count(), 2, "{word}");
            if let Some(previous) = previous {
                assert!(previous < &record[..6], "{word} out of order");
            }
            previous = Some(&record[..6]);
        }
        assert!(records.len() / RECORD > 40_000);
    }

    #[test]
    fn real_words_are_found_and_evasions_are_not() {
        for word in ["威信", "货款", "网站", "撰写", "菠菜", "一起", "数据"] {
            let mut chars = word.chars();
            let (a, b) = (chars.next().unwrap(), chars.next().unwrap());
            assert!(is_word(a, b), "{word}");
        }
        for word in ["薇信", "网撰", "堵球", "网转", "ab"] {
            let mut chars = word.chars();
            let (a, b) = (chars.next().unwrap(), chars.next().unwrap());
            assert!(!is_word(a, b), "{word}");
        }
    }
}
