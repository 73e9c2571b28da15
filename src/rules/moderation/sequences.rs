//! Finding many short code sequences (two or more codes each) in a short
//! text of codes: the pronunciation patterns of the terms in a message read
//! as symbols.
//!
//! An Aho-Corasick automaton over tens of thousands of sound patterns took
//! much of the engine's start-up to compile. Every pattern here is at least
//! two codes long, so its first codes narrow the search as well: the index
//! is the patterns sorted by their first two (length two) or three codes
//! plus a hash table from those codes to the run of patterns, with bit sets
//! of first pairs (two-code patterns) and first threes (longer ones) in
//! front of it. Building it is one sort; a message costs a bit test or two
//! per code and a table lookup for the few positions some pattern may start
//! at, then a comparison of the few patterns (usually none) found.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One code of a sequence.
pub(crate) type Code = u16;

/// Bits in the first-pair filter: 32 KiB, small enough to stay in cache.
const PAIR_BITS: usize = 1 << 18;
/// Bits in the first-three filter: 128 KiB. Tens of thousands of patterns
/// set a few percent of them, so most positions cost one bit test.
const TRIPLE_BITS: usize = 1 << 20;

/// Patterns of two or more codes, each with a value.
#[derive(Debug, Default)]
pub(crate) struct SequenceIndex {
    /// Key of the first codes ([`key2`], [`key3`]) → run of `entries`.
    by_key: HashMap<u64, (u32, u32), BuildHasherDefault<KeyHasher>>,
    /// (start in `codes`, length, value), sorted by key.
    entries: Vec<(u32, u32, u32)>,
    codes: Vec<Code>,
    /// Set bits ([`pair_bit`]) for the two codes of every two-code
    /// pattern, and ([`triple_bit`]) for the first three of every longer
    /// one; a clear bit rules a position out without a table lookup.
    pairs: Vec<u64>,
    triples: Vec<u64>,
    /// Whether some pattern is two codes long.
    has_two: bool,
}

impl SequenceIndex {
    /// Index `patterns` (each two or more codes; shorter ones are ignored)
    /// with their values.
    pub(crate) fn build<'a>(patterns: impl IntoIterator<Item = (&'a [Code], u32)>) -> Self {
        let mut codes: Vec<Code> = Vec::new();
        let mut entries: Vec<(u32, u32, u32)> = Vec::new();
        let mut pairs = vec![0u64; PAIR_BITS / 64];
        let mut triples = vec![0u64; TRIPLE_BITS / 64];
        let mut has_two = false;
        for (pattern, value) in patterns {
            match *pattern {
                [a, b] => {
                    set_bit(&mut pairs, pair_bit(a, b));
                    has_two = true;
                }
                [a, b, c, ..] => set_bit(&mut triples, triple_bit(a, b, c)),
                _ => continue,
            }
            entries.push((codes.len() as u32, pattern.len() as u32, value));
            codes.extend_from_slice(pattern);
        }
        let key_of = |&(start, len, _): &(u32, u32, u32)| {
            let at = &codes[start as usize..(start + len) as usize];
            match at {
                [a, b] => key2(*a, *b),
                [a, b, c, ..] => key3(*a, *b, *c),
                _ => 0,
            }
        };
        entries.sort_by_key(|entry| (key_of(entry), entry.2));
        let mut by_key: HashMap<u64, (u32, u32), BuildHasherDefault<KeyHasher>> =
            HashMap::default();
        by_key.reserve(entries.len());
        let mut run_start = 0;
        while run_start < entries.len() {
            let key = key_of(&entries[run_start]);
            let mut run_end = run_start + 1;
            while run_end < entries.len() && key_of(&entries[run_end]) == key {
                run_end += 1;
            }
            by_key.insert(key, (run_start as u32, run_end as u32));
            run_start = run_end;
        }
        SequenceIndex {
            by_key,
            entries,
            codes,
            pairs,
            triples,
            has_two,
        }
    }

    /// Every occurrence of every pattern in `text`, overlapping ones
    /// included, appended to `out` as (start, end, value); ordered by end,
    /// then by start (longest first), as an Aho-Corasick search reports
    /// them.
    pub(crate) fn find(&self, text: &[Code], out: &mut Vec<(u32, u32, u32)>) {
        let first_new = out.len();
        for start in 0..text.len().saturating_sub(1) {
            let (a, b) = (text[start], text[start + 1]);
            if self.has_two && test_bit(&self.pairs, pair_bit(a, b)) {
                self.collect(key2(a, b), text, start, out);
            }
            if let Some(&c) = text.get(start + 2) {
                if test_bit(&self.triples, triple_bit(a, b, c)) {
                    self.collect(key3(a, b, c), text, start, out);
                }
            }
        }
        out[first_new..].sort_unstable_by_key(|&(start, end, _)| (end, start));
    }

    /// The patterns under `key` that match `text` from `start`.
    #[inline]
    fn collect(&self, key: u64, text: &[Code], start: usize, out: &mut Vec<(u32, u32, u32)>) {
        let Some(&(run_start, run_end)) = self.by_key.get(&key) else {
            return;
        };
        let rest = &text[start..];
        for &(at, len, value) in &self.entries[run_start as usize..run_end as usize] {
            let (at, len) = (at as usize, len as usize);
            // The first two or three codes are the key's; compare the rest
            // (a code or three) inline rather than through `memcmp`.
            let matches =
                len <= rest.len() && (len.min(3)..len).all(|i| rest[i] == self.codes[at + i]);
            if matches {
                out.push((start as u32, (start + len) as u32, value));
            }
        }
    }
}

fn key2(a: Code, b: Code) -> u64 {
    (2 << 48) | (u64::from(a) << 16) | u64::from(b)
}

fn key3(a: Code, b: Code, c: Code) -> u64 {
    (3 << 48) | (u64::from(a) << 32) | (u64::from(b) << 16) | u64::from(c)
}

/// The filter bit of a first pair (pairs may share a bit; a shared bit only
/// costs a lookup).
fn pair_bit(a: Code, b: Code) -> usize {
    ((usize::from(a) << 9) ^ usize::from(b)) % PAIR_BITS
}

/// The filter bit of a first three codes: the top bits of a multiplicative
/// hash (shared bits only cost a lookup).
fn triple_bit(a: Code, b: Code, c: Code) -> usize {
    (key3(a, b, c).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TRIPLE_BITS.trailing_zeros()))
        as usize
}

fn set_bit(bits: &mut [u64], bit: usize) {
    bits[bit / 64] |= 1 << (bit % 64);
}

#[inline]
fn test_bit(bits: &[u64], bit: usize) -> bool {
    bits[bit / 64] & (1 << (bit % 64)) != 0
}

/// Multiplicative hashing for the integer keys: the default hasher is built
/// to resist chosen keys, which these (codes from the term list) need not,
/// and costs several times more per lookup.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits: mix the product's
        // better high bits into them.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every occurrence, found the obvious way.
    fn naive(patterns: &[Vec<Code>], text: &[Code]) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for end in 0..=text.len() {
            for start in 0..end {
                for (value, pattern) in patterns.iter().enumerate() {
                    if pattern.len() >= 2 && text[start..end] == pattern[..] {
                        out.push((start as u32, end as u32, value as u32));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn finds_overlapping_occurrences_ordered_by_end() {
        let patterns: Vec<Vec<Code>> = vec![vec![1, 2], vec![1, 2, 3], vec![2, 3], vec![7]];
        let index = SequenceIndex::build(patterns.iter().map(Vec::as_slice).zip(0..));
        let mut out = Vec::new();
        index.find(&[0, 1, 2, 3, 1, 2], &mut out);
        assert_eq!(out, vec![(1, 3, 0), (1, 4, 1), (2, 4, 2), (4, 6, 0)]);
        out.clear();
        index.find(&[7, 7], &mut out);
        assert!(out.is_empty(), "one-code patterns are not indexed");
    }

    proptest! {
        #[test]
        fn agrees_with_a_naive_search(
            patterns in proptest::collection::vec(proptest::collection::vec(0u16..4, 0..5), 0..12),
            text in proptest::collection::vec(0u16..4, 0..24),
        ) {
            // Distinct patterns, as the engine gives them.
            let mut unique: Vec<Vec<Code>> = Vec::new();
            for pattern in patterns {
                if !unique.contains(&pattern) {
                    unique.push(pattern);
                }
            }
            let index = SequenceIndex::build(unique.iter().map(Vec::as_slice).zip(0..));
            let mut found = Vec::new();
            index.find(&text, &mut found);
            prop_assert_eq!(found, naive(&unique, &text));
        }
    }
}
