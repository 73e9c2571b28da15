//! The core of `qunyun moderation check`: one verdict line per input line,
//! from exactly the engine the server uses. Pure: the command reads the
//! input and writes the output; this turns bytes into bytes.

use std::io::Write;

use super::engine::{verdict, Engine, Hit, Scratch};
use super::family::{FuzzyPolicy, Verdict};

/// How to check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Follow each verdict with the hits that made it.
    pub explain: bool,
    /// What fuzzy hits decide.
    pub policy: FuzzyPolicy,
}

/// Counts for the end of a check run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub messages: usize,
    pub blocked: usize,
    /// Lines a person should look at (fuzzy hits under the `review` policy).
    pub reviewed: usize,
    /// Lines that were not valid UTF-8 (checked after replacing the bad
    /// bytes with U+FFFD).
    pub invalid_utf8: usize,
}

impl CheckSummary {
    pub fn passed(&self) -> usize {
        self.messages - self.blocked - self.reviewed
    }

    /// Add another part's counts (the command checks parts in parallel).
    pub fn add(&mut self, other: CheckSummary) {
        self.messages += other.messages;
        self.blocked += other.blocked;
        self.reviewed += other.reviewed;
        self.invalid_utf8 += other.invalid_utf8;
    }
}

/// Check the messages in `input`, one per line (`\n` or `\r\n`; the last
/// line needs no line ending), appending `block`, `review` or `pass` per
/// message to `out`.
///
/// With `explain`, a line that does not pass continues with a tab and each
/// hit that counts as `term|category|severity|start..end|family|text`, hits
/// separated by tabs: spans are byte offsets into the line (without its line
/// ending), `family` says how the text matched (`exact`, `pinyin`,
/// `homophone`, `number`, `leet`, `shape`, `doubled`, `lookalike`) and
/// `text` is the matched original text.
pub fn check_block(
    engine: &Engine,
    input: &[u8],
    options: CheckOptions,
    out: &mut Vec<u8>,
) -> CheckSummary {
    let mut summary = CheckSummary::default();
    let mut scratch = Scratch::default();
    let mut hits = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (mut line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                summary.invalid_utf8 += 1;
                String::from_utf8_lossy(line)
            }
        };
        engine.scan_into(&text, &mut scratch, &mut hits);
        let decision = verdict(&hits, options.policy);
        summary.messages += 1;
        match decision {
            Verdict::Pass => {}
            Verdict::Review => summary.reviewed += 1,
            Verdict::Block => summary.blocked += 1,
        }
        out.extend_from_slice(decision.as_str().as_bytes());
        if options.explain && decision != Verdict::Pass {
            for hit in hits
                .iter()
                .filter(|hit| Verdict::of(hit.family, options.policy) != Verdict::Pass)
            {
                explain_hit(engine, hit, &text, out);
            }
        }
        out.push(b'\n');
    }
    summary
}

fn explain_hit(engine: &Engine, hit: &Hit, text: &str, out: &mut Vec<u8>) {
    let matched: String = text
        .get(hit.span.clone())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "\t{}|{}|{}|{}..{}|{}|{}",
        engine.describe(hit.source),
        hit.category,
        hit.severity,
        hit.span.start,
        hit.span.end,
        hit.family,
        matched
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderation::{MatchOptions, TermList};

    fn engine() -> Engine {
        let terms = TermList::parse("[ads:high]\n加微信\nt.me/\n网赚\n").expect("valid");
        let allow = TermList::from_terms(["不加微信"]);
        Engine::build(&terms, &allow, MatchOptions::default()).expect("builds")
    }

    fn run(input: &[u8], explain: bool, policy: FuzzyPolicy) -> (String, CheckSummary) {
        let mut out = Vec::new();
        let options = CheckOptions { explain, policy };
        let summary = check_block(&engine(), input, options, &mut out);
        (String::from_utf8(out).expect("utf-8 output"), summary)
    }

    #[test]
    fn one_verdict_per_line() {
        let (out, summary) = run(
            "你好\n加 🌹 微 · 信\r\n我不加微信\n\n".as_bytes(),
            false,
            FuzzyPolicy::Block,
        );
        assert_eq!(out, "pass\nblock\npass\npass\n");
        assert_eq!(summary.messages, 4);
        assert_eq!(summary.blocked, 1);
        assert_eq!(summary.passed(), 3);
    }

    #[test]
    fn explain_lists_term_category_severity_span_family_and_text() {
        let (out, _) = run(
            "see https://t.me/x 加微信\nwang zhuan".as_bytes(),
            true,
            FuzzyPolicy::Block,
        );
        assert_eq!(
            out,
            "block\tt.me/|ads|high|12..16|exact|t.me\t加微信|ads|high|19..28|exact|加微信\n\
             block\t网赚|ads|high|0..10|pinyin|wang zhuan\n"
        );
    }

    #[test]
    fn the_policy_decides_fuzzy_hits_only() {
        let input = "加微信\nwang zhuan\n".as_bytes();
        let (out, summary) = run(input, false, FuzzyPolicy::Review);
        assert_eq!(out, "block\nreview\n");
        assert_eq!((summary.blocked, summary.reviewed), (1, 1));
        let (out, _) = run(input, true, FuzzyPolicy::Ignore);
        assert_eq!(out, "block\t加微信|ads|high|0..9|exact|加微信\npass\n");
    }

    #[test]
    fn last_line_without_newline_and_invalid_utf8_are_checked() {
        let (out, summary) = run(
            b"ok\n\xff\xfe\xe5\x8a\xa0\xe5\xbe\xae\xe4\xbf\xa1",
            false,
            FuzzyPolicy::Block,
        );
        assert_eq!(out, "pass\nblock\n");
        assert_eq!(summary.invalid_utf8, 1);
    }

    /// The sample files in `tests/data/moderation/` with their expected
    /// `--explain` output: the contract end to end, through the checker.
    #[test]
    fn sample_files_give_the_expected_verdicts() {
        let data = |name: &str| {
            let path = format!(
                "{}/tests/data/moderation/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).expect("sample file present")
        };
        let terms = TermList::parse(&data("terms.txt")).expect("valid terms");
        let allow = TermList::parse(&data("allow.txt")).expect("valid allow-list");
        let engine = Engine::build(&terms, &allow, MatchOptions::default()).expect("builds");
        let mut out = Vec::new();
        let options = CheckOptions {
            explain: true,
            policy: FuzzyPolicy::Block,
        };
        check_block(&engine, data("messages.txt").as_bytes(), options, &mut out);
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(out, data("expected.txt"));
    }
}
