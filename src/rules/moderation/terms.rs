//! Term files: parsing and validation. The format is described in the
//! module documentation of [`super`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::family::FamilySet;

/// How serious a hit on a term is; escalation policies act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = LineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" | "1" => Ok(Severity::Low),
            "medium" | "2" => Ok(Severity::Medium),
            "high" | "3" => Ok(Severity::High),
            _ => Err(LineError::BadSeverity(text.trim().to_owned())),
        }
    }
}

/// One banned term as written in the term file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The term as written (trimmed).
    pub text: String,
    pub category: Arc<str>,
    pub severity: Severity,
    /// The variant families this term is matched with (all by default;
    /// `exact` in the term file turns every fuzzy family off for it).
    pub families: FamilySet,
    /// 1-based line in the source file, for messages to the manager.
    pub line: usize,
}

/// A parsed term or allow-list file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermList {
    pub terms: Vec<Term>,
}

/// The longest term accepted, in characters. Longer "terms" are almost
/// always a pasted paragraph by mistake.
pub const MAX_TERM_CHARS: usize = 200;

pub const DEFAULT_CATEGORY: &str = "default";
pub const DEFAULT_SEVERITY: Severity = Severity::Medium;

/// Why one line of a term file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("severity {0:?} is not one of low, medium, high (or 1, 2, 3)")]
    BadSeverity(String),
    #[error("section header must look like [category] or [category:severity]")]
    BadHeader,
    #[error("category is empty or contains spaces, tabs, ':' or brackets")]
    BadCategory,
    #[error("too many tab-separated fields (expected term, category, severity, families)")]
    TooManyFields,
    #[error("{0}")]
    BadFamilies(String),
    #[error("term has no letter or digit, so it could never match")]
    NothingToMatch,
    #[error("term is longer than {MAX_TERM_CHARS} characters")]
    TooLong,
}

impl LineError {
    /// Stable code for the console.
    pub fn code(&self) -> &'static str {
        match self {
            LineError::BadSeverity(_) => "bad_severity",
            LineError::BadHeader => "bad_header",
            LineError::BadCategory => "bad_category",
            LineError::TooManyFields => "too_many_fields",
            LineError::BadFamilies(_) => "bad_families",
            LineError::NothingToMatch => "nothing_to_match",
            LineError::TooLong => "too_long",
        }
    }
}

/// A refused line, with its 1-based number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BadLine {
    pub line: usize,
    pub reason: LineError,
}

/// Why a term file could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum TermFileError {
    /// Every bad line, so a manager can fix them all in one go.
    #[error("{}", format_bad_lines(.0))]
    BadLines(Vec<BadLine>),
}

fn format_bad_lines(lines: &[BadLine]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl TermList {
    /// Parse a term file's text. Every bad line is reported.
    pub fn parse(source: &str) -> Result<TermList, TermFileError> {
        let mut terms = Vec::new();
        let mut bad = Vec::new();
        let mut category: Arc<str> = Arc::from(DEFAULT_CATEGORY);
        let mut severity = DEFAULT_SEVERITY;
        let mut families = FamilySet::ALL;
        for (index, raw_line) in source.lines().enumerate() {
            let line = index + 1;
            // A byte-order mark at the start of the file is an editor artefact.
            let raw_line = if index == 0 {
                raw_line.trim_start_matches('\u{feff}')
            } else {
                raw_line
            };
            match parse_line(raw_line) {
                Ok(Parsed::Nothing) => {}
                Ok(Parsed::Section {
                    category: new_category,
                    severity: new_severity,
                    families: new_families,
                }) => {
                    category = Arc::from(new_category);
                    if let Some(new_severity) = new_severity {
                        severity = new_severity;
                    }
                    // Families apply to the section they head only.
                    families = new_families.unwrap_or(FamilySet::ALL);
                }
                Ok(Parsed::Term {
                    text,
                    category: own_category,
                    severity: own_severity,
                    families: own_families,
                }) => terms.push(Term {
                    text: text.to_owned(),
                    category: own_category
                        .map(Arc::from)
                        .unwrap_or_else(|| category.clone()),
                    severity: own_severity.unwrap_or(severity),
                    families: own_families.unwrap_or(families),
                    line,
                }),
                Err(reason) => bad.push(BadLine { line, reason }),
            }
        }
        if bad.is_empty() {
            Ok(TermList { terms })
        } else {
            Err(TermFileError::BadLines(bad))
        }
    }

    /// A list of plain terms (default category and severity), handy for
    /// allow-lists and tests.
    pub fn from_terms<'a>(terms: impl IntoIterator<Item = &'a str>) -> TermList {
        TermList {
            terms: terms
                .into_iter()
                .enumerate()
                .map(|(index, text)| Term {
                    text: text.to_owned(),
                    category: Arc::from(DEFAULT_CATEGORY),
                    severity: DEFAULT_SEVERITY,
                    families: FamilySet::ALL,
                    line: index + 1,
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

enum Parsed<'a> {
    Nothing,
    Section {
        category: &'a str,
        severity: Option<Severity>,
        families: Option<FamilySet>,
    },
    Term {
        text: &'a str,
        category: Option<&'a str>,
        severity: Option<Severity>,
        families: Option<FamilySet>,
    },
}

fn parse_line(raw_line: &str) -> Result<Parsed<'_>, LineError> {
    let line = raw_line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Parsed::Nothing);
    }
    if line.starts_with('[') {
        let inner = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .ok_or(LineError::BadHeader)?;
        let mut parts = inner.splitn(3, ':');
        let category = parts.next().unwrap_or_default().trim();
        let severity = parts
            .next()
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(str::parse)
            .transpose()?;
        let families = parts.next().map(parse_families).transpose()?;
        return Ok(Parsed::Section {
            category: check_category(category)?,
            severity,
            families,
        });
    }
    let mut fields = line.split('\t');
    let text = fields.next().unwrap_or_default().trim();
    let category = fields
        .next()
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(check_category)
        .transpose()?;
    let severity = fields
        .next()
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(str::parse)
        .transpose()?;
    let families = fields
        .next()
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(parse_families)
        .transpose()?;
    if fields.next().is_some() {
        return Err(LineError::TooManyFields);
    }
    if text.chars().count() > MAX_TERM_CHARS {
        return Err(LineError::TooLong);
    }
    if !text
        .chars()
        .any(|c| c.is_alphanumeric() && !unicode_normalization::char::is_combining_mark(c))
    {
        return Err(LineError::NothingToMatch);
    }
    Ok(Parsed::Term {
        text,
        category,
        severity,
        families,
    })
}

fn parse_families(text: &str) -> Result<FamilySet, LineError> {
    FamilySet::parse(text).map_err(|err| LineError::BadFamilies(err.to_string()))
}

fn check_category(category: &str) -> Result<&str, LineError> {
    let valid = !category.is_empty()
        && !category
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ':' | '[' | ']'));
    if valid {
        Ok(category)
    } else {
        Err(LineError::BadCategory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_tab_fields_set_category_and_severity() {
        let source = "# ads\n加微信\n[gambling:high]\n赌博\n博彩\tlottery\n代开发票\tfraud\tlow\n\n[spam]\n刷单\n";
        let list = TermList::parse(source).expect("valid file");
        let summary: Vec<_> = list
            .terms
            .iter()
            .map(|t| (t.text.as_str(), &*t.category, t.severity, t.line))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("加微信", "default", Severity::Medium, 2),
                ("赌博", "gambling", Severity::High, 4),
                ("博彩", "lottery", Severity::High, 5),
                ("代开发票", "fraud", Severity::Low, 6),
                ("刷单", "spam", Severity::High, 9),
            ]
        );
    }

    #[test]
    fn bad_lines_are_all_reported_with_line_numbers() {
        let source = "ok\n[broken\nterm\tcat\tsevere\n🌹🌹\na\tb\tlow\tall\textra\n[bad cat]\n";
        let Err(TermFileError::BadLines(bad)) = TermList::parse(source) else {
            panic!("expected bad lines");
        };
        let found: Vec<_> = bad.iter().map(|b| (b.line, b.reason.code())).collect();
        assert_eq!(
            found,
            vec![
                (2, "bad_header"),
                (3, "bad_severity"),
                (4, "nothing_to_match"),
                (5, "too_many_fields"),
                (6, "bad_category"),
            ]
        );
        let message = TermFileError::BadLines(bad).to_string();
        assert!(message.contains("line 3: severity \"severe\""), "{message}");
    }

    #[test]
    fn families_come_from_the_fourth_field_or_the_section_header() {
        use crate::rules::moderation::Family;
        let source = "[gambling:high:exact]\n赌博\n博彩\t\t\tall\n[ads]\n加微信\n网赚\t\t\t-pinyin\nbad\t\t\tsound\n";
        let Err(TermFileError::BadLines(bad)) = TermList::parse(source) else {
            panic!("expected a bad line");
        };
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line, bad[0].reason.code()), (7, "bad_families"));
        let list = TermList::parse(&source.replace("sound", "pinyin")).expect("valid");
        let families: Vec<_> = list.terms.iter().map(|t| t.families).collect();
        assert_eq!(families[0], FamilySet::EXACT_ONLY);
        assert_eq!(families[1], FamilySet::ALL);
        assert_eq!(families[2], FamilySet::ALL);
        assert!(!families[3].contains(Family::Pinyin));
        assert!(families[3].contains(Family::Homophone));
        assert_eq!(families[4], FamilySet::EXACT_ONLY.with(Family::Pinyin));
    }

    #[test]
    fn overlong_term_is_refused() {
        let long = "字".repeat(MAX_TERM_CHARS + 1);
        let Err(TermFileError::BadLines(bad)) = TermList::parse(&long) else {
            panic!("expected a bad line");
        };
        assert_eq!(bad[0].reason, LineError::TooLong);
    }

    #[test]
    fn byte_order_mark_and_crlf_are_tolerated() {
        let list = TermList::parse("\u{feff}加微信\r\n刷单\r\n").expect("valid");
        let texts: Vec<_> = list.terms.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, vec!["加微信", "刷单"]);
    }
}
