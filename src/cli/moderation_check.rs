//! `qunyun moderation check`: reading the term files and the messages,
//! checking them in parallel with the library's pure checker, printing the
//! verdicts (or, with `--report`, the per-family figures of a case file).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;

use crate::rules::moderation::{
    check_block, evaluate, parse_cases, CheckOptions, CheckSummary, Engine, FamilySet, FuzzyPolicy,
    MatchOptions, TermList,
};

/// Inputs smaller than this are checked on one thread.
const PARALLEL_FROM_BYTES: usize = 256 * 1024;
/// Pieces of input per worker thread.
const PIECES_PER_WORKER: usize = 16;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Term file: one term per line, `#` comments, `[category:severity:families]` sections,
    /// `term<TAB>category<TAB>severity<TAB>families` lines.
    #[arg(long, value_name = "FILE")]
    pub terms: PathBuf,
    /// Allow-list file in the same format; an entry cancels a hit it covers completely.
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,
    /// Print each hit: term, category, severity, byte span, family and matched text.
    #[arg(long)]
    pub explain: bool,
    /// What a fuzzy hit (pinyin, homophone, number, leet, shape, doubled, look-alike) decides:
    /// block, review or ignore. Exact hits always block.
    #[arg(long, value_name = "POLICY", default_value = "block")]
    pub fuzzy: String,
    /// The families matched at all: `all`, `exact`, a list (`pinyin,number`) or exclusions
    /// (`-pinyin,-homophone`).
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub families: String,
    /// Score a case file (`block|pass<TAB>family<TAB>message` per line) instead of reading
    /// messages: recall on evasions and false positives on look-alikes, per family.
    #[arg(long, value_name = "CASES")]
    pub report: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy: FuzzyPolicy = args.fuzzy.parse()?;
    let families = FamilySet::parse(&args.families)?;
    let options = MatchOptions {
        families,
        ..MatchOptions::default()
    };
    // Read the messages while the matcher compiles.
    let (engine, input) = std::thread::scope(|scope| {
        let reader = args.report.is_none().then(|| {
            scope.spawn(|| -> std::io::Result<Vec<u8>> {
                let mut input = Vec::new();
                std::io::stdin().lock().read_to_end(&mut input)?;
                Ok(input)
            })
        });
        let engine = build_engine(&args.terms, args.allow.as_deref(), options);
        let input = reader.map(|handle| handle.join().expect("the stdin reader does not panic"));
        (engine, input)
    });
    let engine = engine?;

    if let Some(path) = &args.report {
        let source = read(path, "case file")?;
        let cases = parse_cases(&source)
            .map_err(|err| anyhow::anyhow!("{err}"))
            .with_context(|| format!("reading case file {}", path.display()))?;
        let report = evaluate(&engine, policy, &cases);
        print!("{}", report.render());
        return Ok(ExitCode::SUCCESS);
    }

    let input = input
        .transpose()
        .context("reading messages")?
        .unwrap_or_default();
    let check = CheckOptions {
        explain: args.explain,
        policy,
    };
    let workers = if input.len() < PARALLEL_FROM_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    // More pieces than workers, taken in turn: a worker the shared machine
    // slows down holds up only its current piece, not half the input.
    let pieces = split_at_lines(&input, workers * PIECES_PER_WORKER);
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Vec<u8>, CheckSummary)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (engine, pieces, next) = (&engine, &pieces, &next);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(piece) = pieces.get(index) else {
                            break done;
                        };
                        let mut out = Vec::with_capacity(piece.len() / 8);
                        let summary = check_block(engine, piece, check, &mut out);
                        done.push((index, out, summary));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("checking does not panic"))
            .collect()
    });
    results.sort_unstable_by_key(|&(index, _, _)| index);
    let mut summary = CheckSummary::default();
    let mut stdout = std::io::stdout().lock();
    for (_, out, part) in &results {
        stdout.write_all(out).context("writing verdicts")?;
        summary.add(*part);
    }
    stdout.flush().context("writing verdicts")?;
    eprintln!(
        "{} messages: {} blocked, {} to review, {} passed",
        summary.messages,
        summary.blocked,
        summary.reviewed,
        summary.passed()
    );
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn build_engine(
    terms: &Path,
    allow: Option<&Path>,
    options: MatchOptions,
) -> anyhow::Result<Engine> {
    let terms = TermList::parse(&read(terms, "term list")?)
        .with_context(|| format!("term list {}", terms.display()))?;
    let allow = match allow {
        Some(path) => TermList::parse(&read(path, "allow list")?)
            .with_context(|| format!("allow list {}", path.display()))?,
        None => TermList::default(),
    };
    Engine::build(&terms, &allow, options).context("building the matcher")
}

/// `input` cut into about `parts` pieces, each ending at a line end.
fn split_at_lines(input: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = input;
    let target = input.len().div_ceil(parts.max(1));
    while !rest.is_empty() {
        if pieces.len() + 1 == parts || rest.len() <= target {
            pieces.push(rest);
            break;
        }
        let cut = rest[target..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| target + i + 1);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::split_at_lines;

    #[test]
    fn parts_end_at_line_ends_and_cover_everything() {
        let input = b"one\ntwo\nthree\nfour\nfive";
        for parts in 1..6 {
            let pieces = split_at_lines(input, parts);
            assert_eq!(pieces.concat(), input.to_vec());
            assert!(pieces.len() <= parts);
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.ends_with(b"\n"));
            }
        }
        assert!(split_at_lines(b"", 2).is_empty());
    }
}
