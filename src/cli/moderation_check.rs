//! `qunyun moderation check`: reading the term files and the messages,
//! checking them in parallel with the library's pure checker, printing the
//! verdicts (or, with `--report`, the per-family figures of a case file).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;

use crate::rules::moderation::{
    check_block, evaluate, parse_cases, CheckOptions, CheckSummary, Engine, FamilySet, FuzzyPolicy,
    MatchOptions, TermList,
};

/// Bytes of input per piece handed to a worker: large enough that handing
/// over costs nothing next to checking, small enough that a worker the shared
/// machine slows down holds up little.
const PIECE_BYTES: usize = 256 * 1024;

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
    let check = CheckOptions {
        explain: args.explain,
        policy,
    };
    if let Some(path) = &args.report {
        let engine = build_engine(&args.terms, args.allow.as_deref(), options)?;
        let source = read(path, "case file")?;
        let cases = parse_cases(&source)
            .map_err(|err| anyhow::anyhow!("{err}"))
            .with_context(|| format!("reading case file {}", path.display()))?;
        let report = evaluate(&engine, policy, &cases);
        print!("{}", report.render());
        return Ok(ExitCode::SUCCESS);
    }

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    // Pieces of input flow from the reader to the workers and their verdicts
    // to the writer (this thread), which puts them back in input order. The
    // input is never held whole: memory stays bounded however much is piped
    // in, and checking starts as soon as the matcher is built.
    let (pieces_in, pieces_out) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(workers * 4);
    let pieces_out = Mutex::new(pieces_out);
    let (verdicts_in, verdicts_out) = std::sync::mpsc::channel::<(usize, Vec<u8>, CheckSummary)>();
    let summary = std::thread::scope(|scope| -> anyhow::Result<CheckSummary> {
        let reader =
            scope.spawn(move || read_pieces(std::io::stdin().lock(), PIECE_BYTES, &pieces_in));
        // Leaked: the process ends after this run, and letting the operating
        // system take the matcher back is quicker than freeing it piece by piece.
        let engine: &'static Engine = Box::leak(Box::new(build_engine(
            &args.terms,
            args.allow.as_deref(),
            options,
        )?));
        for _ in 0..workers {
            let (pieces_out, verdicts_in) = (&pieces_out, verdicts_in.clone());
            scope.spawn(move || loop {
                // The lock is held only to take the next piece.
                let next = pieces_out.lock().map(|pieces| pieces.recv());
                let Ok(Ok((index, piece))) = next else {
                    break;
                };
                let mut out = Vec::with_capacity(piece.len() / 8);
                let summary = check_block(engine, &piece, check, &mut out);
                if verdicts_in.send((index, out, summary)).is_err() {
                    break;
                }
            });
        }
        drop(verdicts_in);
        let mut summary = CheckSummary::default();
        let mut stdout = std::io::stdout().lock();
        let mut waiting: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut next = 0;
        for (index, out, part) in verdicts_out {
            summary.add(part);
            waiting.insert(index, out);
            while let Some(out) = waiting.remove(&next) {
                stdout.write_all(&out).context("writing verdicts")?;
                next += 1;
            }
        }
        stdout.flush().context("writing verdicts")?;
        reader
            .join()
            .expect("the stdin reader does not panic")
            .context("reading messages")?;
        Ok(summary)
    })?;
    eprintln!(
        "{} messages: {} blocked, {} to review, {} passed",
        summary.messages,
        summary.blocked,
        summary.reviewed,
        summary.passed()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads `input` in pieces of about `piece_bytes`, each ending at a line end
/// (the last may not), numbered in order, until the input ends or the
/// workers stop taking pieces. A line longer than a piece stays whole.
fn read_pieces(
    mut input: impl Read,
    piece_bytes: usize,
    pieces: &std::sync::mpsc::SyncSender<(usize, Vec<u8>)>,
) -> std::io::Result<()> {
    let mut index = 0;
    let mut piece = Vec::with_capacity(piece_bytes);
    loop {
        let filled = (&mut input)
            .take(piece_bytes as u64)
            .read_to_end(&mut piece)?;
        if filled == 0 {
            if !piece.is_empty() {
                let _ = pieces.send((index, piece));
            }
            return Ok(());
        }
        let Some(end) = piece.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        // The start of a line cut by the piece's end begins the next piece.
        let rest = piece.split_off(end + 1);
        if pieces.send((index, piece)).is_err() {
            return Ok(());
        }
        index += 1;
        piece = Vec::with_capacity(piece_bytes + rest.len());
        piece.extend_from_slice(&rest);
    }
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

#[cfg(test)]
mod tests {
    use super::read_pieces;

    fn pieces(input: &[u8], piece_bytes: usize) -> Vec<(usize, Vec<u8>)> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1024);
        read_pieces(input, piece_bytes, &sender).unwrap();
        drop(sender);
        receiver.into_iter().collect()
    }

    #[test]
    fn pieces_end_at_line_ends_keep_long_lines_whole_and_cover_everything() {
        let input = b"one\ntwo\na line longer than a piece\nfour\nfive";
        for piece_bytes in [1, 3, 7, 16, 1024] {
            let pieces = pieces(input, piece_bytes);
            let indices: Vec<usize> = pieces.iter().map(|(index, _)| *index).collect();
            assert_eq!(indices, (0..pieces.len()).collect::<Vec<_>>());
            let joined: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.clone()).collect();
            assert_eq!(joined, input.to_vec(), "piece size {piece_bytes}");
            for (_, piece) in &pieces[..pieces.len() - 1] {
                assert!(piece.ends_with(b"\n"), "piece size {piece_bytes}");
            }
            assert!(pieces
                .iter()
                .any(|(_, p)| p.windows(26).any(|w| w == b"a line longer than a piece")));
        }
        assert!(pieces(b"", 4).is_empty());
        assert_eq!(pieces(b"x\n", 4), [(0, b"x\n".to_vec())]);
    }
}
