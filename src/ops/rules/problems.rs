//! A rule set's validation problems, each placed at the line of the field it
//! is about, so the console can show it inline and the CLI can print it.

use serde::Serialize;

use crate::rules::RuleSet;

/// One validation problem, with the line (1-based) it belongs to when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub path: String,
    pub reason: String,
    pub line: Option<usize>,
}

/// A source line with the problems that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotatedLine {
    pub number: usize,
    pub text: String,
    pub problems: Vec<String>,
}

/// Every problem in `text`, each placed at a line where possible; empty when valid.
pub fn check(text: &str) -> Vec<FieldProblem> {
    // A syntax error has a byte span; the typed check only has a field path.
    if let Err(err) = toml::from_str::<toml::Table>(text) {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        return vec![FieldProblem {
            path: String::new(),
            reason: err.message().trim().to_owned(),
            line,
        }];
    }
    match RuleSet::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .0
            .into_iter()
            .map(|e| FieldProblem {
                line: line_of_path(text, &e.path),
                path: e.path,
                reason: e.reason,
            })
            .collect(),
    }
}

/// The source, line by line, with the problems placed on their lines.
pub fn annotate(text: &str, problems: &[FieldProblem]) -> Vec<AnnotatedLine> {
    text.lines()
        .enumerate()
        .map(|(i, line)| AnnotatedLine {
            number: i + 1,
            text: line.to_owned(),
            problems: problems
                .iter()
                .filter(|p| p.line == Some(i + 1))
                .map(describe)
                .collect(),
        })
        .collect()
}

pub fn describe(problem: &FieldProblem) -> String {
    if problem.path.is_empty() {
        problem.reason.clone()
    } else {
        format!("{}: {}", problem.path, problem.reason)
    }
}

/// The line defining the deepest part of `path` (e.g. `checkin.milestones[1].days`):
/// the key's own line if present, else its table's header.
pub fn line_of_path(text: &str, path: &str) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let wanted: Vec<&str> = path.split('.').collect();
    let mut header: Vec<String> = Vec::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut best: Option<(usize, usize)> = None; // (matched segments, line)
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let segments: Vec<String> =
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
                let name = name.trim().to_owned();
                let n = array_counts.entry(name.clone()).or_insert(0);
                let mut segs: Vec<String> = name.split('.').map(|s| s.trim().to_owned()).collect();
                if let Some(last) = segs.last_mut() {
                    *last = format!("{last}[{n}]");
                }
                *n += 1;
                header = segs.clone();
                segs
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                header = name.split('.').map(|s| s.trim().to_owned()).collect();
                header.clone()
            } else if let Some((key, _)) = line.split_once('=') {
                if line.starts_with('#') {
                    continue;
                }
                let key = key.trim().trim_matches('"').to_owned();
                let mut segs = header.clone();
                segs.push(key);
                segs
            } else {
                continue;
            };
        if segments.len() > wanted.len() {
            continue;
        }
        let matches = segments
            .iter()
            .zip(&wanted)
            .all(|(have, want)| have == want || strip_index(want) == have.as_str());
        if matches && best.is_none_or(|(n, _)| segments.len() > n) {
            best = Some((segments.len(), i + 1));
        }
    }
    best.map(|(_, line)| line)
}

fn strip_index(segment: &str) -> &str {
    segment.split('[').next().unwrap_or(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "[community]\nname = \"x\"\n\n[checkin]\nkeywords = [\"签到\"]\nbase_points = 5\n\n[[checkin.milestones]]\ndays = 3\nbadge = \"a\"\npoints = 10\n\n[[checkin.milestones]]\ndays = 7\nbadge = \"b\"\npoints = 30\n";

    #[test]
    fn paths_map_to_the_key_line_in_the_right_array_entry() {
        assert_eq!(line_of_path(SAMPLE, "checkin.base_points"), Some(6));
        assert_eq!(line_of_path(SAMPLE, "checkin.keywords[0]"), Some(5));
        assert_eq!(
            line_of_path(SAMPLE, "checkin.milestones[1].points"),
            Some(16)
        );
        assert_eq!(line_of_path(SAMPLE, "checkin.milestones[0].days"), Some(9));
        // A missing key points at its table.
        assert_eq!(line_of_path(SAMPLE, "checkin.makeup_cost"), Some(4));
        assert_eq!(line_of_path(SAMPLE, ""), None);
    }

    #[test]
    fn a_type_mistake_is_reported_at_its_line() {
        let text = SAMPLE.replace("base_points = 5", "base_points = \"five\"");
        let problems = check(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "checkin.base_points");
        assert_eq!(problems[0].line, Some(6));
        let annotated = annotate(&text, &problems);
        assert_eq!(annotated[5].problems.len(), 1);
        assert!(annotated[4].problems.is_empty());
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_line() {
        let text = "[checkin]\nbase_points = = 5\n";
        let problems = check(text);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn a_valid_rule_set_has_no_problems() {
        assert!(check(SAMPLE).is_empty(), "{:?}", check(SAMPLE));
        assert!(check(&RuleSet::builtin().to_toml()).is_empty());
    }
}
