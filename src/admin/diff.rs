//! A line diff (longest common subsequence) for showing a rule-set change
//! before it is applied. Rule sets are a few hundred lines, so O(n·m) is fine;
//! beyond `MAX_CELLS` it falls back to "everything replaced".

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "line", rename_all = "lowercase")]
pub enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
}

const MAX_CELLS: usize = 4_000_000;

pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return a
            .iter()
            .map(|l| DiffLine::Removed((*l).to_owned()))
            .chain(b.iter().map(|l| DiffLine::Added((*l).to_owned())))
            .collect();
    }
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_owned()));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(DiffLine::Removed(a[i].to_owned()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].to_owned()));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| DiffLine::Removed((*l).to_owned())));
    out.extend(b[j..].iter().map(|l| DiffLine::Added((*l).to_owned())));
    out
}

/// True when the diff changes anything.
pub fn has_changes(diff: &[DiffLine]) -> bool {
    diff.iter().any(|d| !matches!(d, DiffLine::Same(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_changed_value_is_one_removal_and_one_addition() {
        let diff = diff_lines("a = 1\nb = 2\nc = 3", "a = 1\nb = 5\nc = 3");
        assert_eq!(
            diff,
            vec![
                DiffLine::Same("a = 1".into()),
                DiffLine::Removed("b = 2".into()),
                DiffLine::Added("b = 5".into()),
                DiffLine::Same("c = 3".into()),
            ]
        );
        assert!(has_changes(&diff));
        assert!(!has_changes(&diff_lines("x", "x")));
    }

    fn side(diff: &[DiffLine], old: bool) -> Vec<String> {
        diff.iter()
            .filter_map(|d| match (d, old) {
                (DiffLine::Same(l), _) => Some(l.clone()),
                (DiffLine::Removed(l), true) | (DiffLine::Added(l), false) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn diff_reconstructs_both_sides(
            a in proptest::collection::vec("[abc]{0,2}", 0..20),
            b in proptest::collection::vec("[abc]{0,2}", 0..20),
        ) {
            let (old, new) = (a.join("\n"), b.join("\n"));
            let diff = diff_lines(&old, &new);
            prop_assert_eq!(side(&diff, true), old.lines().map(str::to_owned).collect::<Vec<_>>());
            prop_assert_eq!(side(&diff, false), new.lines().map(str::to_owned).collect::<Vec<_>>());
        }
    }
}
