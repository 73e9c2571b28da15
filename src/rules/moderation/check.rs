//! The core of `qunyun moderation check`: one verdict line per input line,
//! from exactly the engine the server uses.

use std::io::{self, BufRead, Write};

use super::engine::{Engine, Scratch};

/// Counts for the end of a check run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub messages: usize,
    pub blocked: usize,
    /// Lines that were not valid UTF-8 (checked after replacing the bad
    /// bytes with U+FFFD).
    pub invalid_utf8: usize,
}

impl CheckSummary {
    pub fn passed(&self) -> usize {
        self.messages - self.blocked
    }
}

/// Read messages from `input`, one per line, and write `block` or `pass` per
/// message to `out`. With `explain`, a blocked line continues with a tab and
/// each hit as `term|category|severity|start..end`, hits separated by tabs;
/// spans are byte offsets into the line (without its line ending).
pub fn check_lines(
    engine: &Engine,
    mut input: impl BufRead,
    mut out: impl Write,
    explain: bool,
) -> io::Result<CheckSummary> {
    let mut summary = CheckSummary::default();
    let mut scratch = Scratch::default();
    let mut hits = Vec::new();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let mut line = raw.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                summary.invalid_utf8 += 1;
                String::from_utf8_lossy(line)
            }
        };
        engine.scan_into(&text, &mut scratch, &mut hits);
        summary.messages += 1;
        if hits.is_empty() {
            out.write_all(b"pass\n")?;
            continue;
        }
        summary.blocked += 1;
        out.write_all(b"block")?;
        if explain {
            for hit in &hits {
                write!(
                    out,
                    "\t{}|{}|{}|{}..{}",
                    engine.describe(hit.source),
                    hit.category,
                    hit.severity,
                    hit.span.start,
                    hit.span.end
                )?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderation::{MatchOptions, TermList};

    fn engine() -> Engine {
        let terms = TermList::parse("[ads:high]\n加微信\nt.me/\n").expect("valid");
        let allow = TermList::from_terms(["不加微信"]);
        Engine::build(&terms, &allow, MatchOptions::default()).expect("builds")
    }

    fn run(input: &[u8], explain: bool) -> (String, CheckSummary) {
        let mut out = Vec::new();
        let summary = check_lines(&engine(), input, &mut out, explain).expect("in-memory io");
        (String::from_utf8(out).expect("utf-8 output"), summary)
    }

    #[test]
    fn one_verdict_per_line() {
        let (out, summary) = run("你好\n加 🌹 微 · 信\r\n我不加微信\n\n".as_bytes(), false);
        assert_eq!(out, "pass\nblock\npass\npass\n");
        assert_eq!(summary.messages, 4);
        assert_eq!(summary.blocked, 1);
        assert_eq!(summary.passed(), 3);
    }

    #[test]
    fn explain_lists_term_category_severity_and_span() {
        let (out, _) = run("see https://t.me/x 加微信".as_bytes(), true);
        assert_eq!(
            out,
            "block\tt.me/|ads|high|12..16\t加微信|ads|high|19..28\n"
        );
    }

    #[test]
    fn last_line_without_newline_and_invalid_utf8_are_checked() {
        let (out, summary) = run(b"ok\n\xff\xfe\xe5\x8a\xa0\xe5\xbe\xae\xe4\xbf\xa1", false);
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
        check_lines(&engine, data("messages.txt").as_bytes(), &mut out, true).expect("io");
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(out, data("expected.txt"));
    }
}
