//! Moderation: banned terms, regex rules and behavioural rules.
//! Pure code: no I/O, no clock (callers read term files and messages).
//!
//! # Matching contract
//!
//! A message and every term are folded the same way, character by
//! character (see [`Engine`]):
//!
//! 1. case, width and compatibility forms fold together (NFKD: full-width,
//!    circled, math-bold, superscript letters, Roman numerals, ligatures);
//!    accents and other combining marks fall away;
//! 2. traditional and variant Chinese characters fold to simplified, with
//!    OpenCC's character tables (Taiwan and Hong Kong variants included);
//! 3. everything that is not a letter or digit (spaces, punctuation,
//!    symbols, emoji, zero-width and format characters, combining marks) is
//!    skipped, so `加 🌹 微 · 信` matches `加微信`;
//! 4. a term that begins (ends) with a Latin letter only matches where a
//!    Latin word begins (ends): `bet` does not fire in `better`, `v信` not in
//!    `TV信号`; a skipped separator counts as a boundary, so `t.me/` matches
//!    in `https://t.me/x` but not in `let me know`. Digits and CJK are not
//!    letters;
//! 5. an allow-list entry cancels a hit only when it covers that hit
//!    completely; other hits in the message still count;
//! 6. the whole message is scanned; each [`Hit`] names its category,
//!    severity and its byte span in the **original** text.
//!
//! Beyond the contract, each a switch in [`MatchOptions`] (all on by
//! default): Cyrillic/Greek look-alike letters, financial numerals (壹贰叁),
//! collapsing repeated characters. Circled and full-width digits (①, ９) are
//! plain NFKD. Known limit: Japanese voiced kana lose their voicing mark
//! (が matches か).
//!
//! # Variant families
//!
//! Every hit says how it matched ([`Hit::family`], a [`Family`]): `exact`
//! for the contract above, or one of the fuzzy families — `pinyin`
//! (`wang zhuan`, `WangZhuan`, initials `dkfp` for long terms), `homophone`
//! (same or near pronunciation: `网撰`, `堵球`), `number` (`1夜情`,
//! `一三八…`, `壹`), `leet` (`w3chat`), `shape` (`徽` for `微`, `亻言` for
//! `信`), `doubled` (`加加微微信信`, `vvxx`) and `lookalike` (letters from
//! other scripts). Exact hits always block; fuzzy ones follow a
//! [`FuzzyPolicy`] ([`verdict`]). A term may take part in fewer families
//! (fourth tab field or third header part, [`FamilySet::parse`]); so may the
//! whole engine ([`MatchOptions::families`]).
//!
//! Where tricks collide with real words, a fuzzy candidate must also pass:
//! pinyin covers whole Latin words that are not English words or names and
//! (Latin-only) have at least [`MIN_PINYIN_LETTERS`] letters; at most one
//! near (not exact) sound per term, and in a two-character term only beside
//! an unchanged character; no replaced character may form an everyday word
//! (two to four characters, from jieba's dictionary) with its neighbours,
//! and no everyday word may run across the hit's edges (`威信`, `货款`,
//! `打麻将`); minimum term lengths per family ([`MIN_PHONETIC_CHARS`],
//! [`MIN_LEET_LETTERS`], [`MIN_NUMBER_DIGITS`], [`MIN_DOUBLED_CHARS`],
//! [`MIN_INITIALS_CHARS`]); the allow-list cancels fuzzy hits it covers in
//! the original text, as it does exact ones.
//!
//! # Term files
//!
//! UTF-8 text, one entry per line. Surrounding whitespace is trimmed; blank
//! lines and lines starting with `#` are ignored.
//!
//! ```text
//! # default category "default", severity medium until a header says otherwise
//! 加微信
//! [gambling:high]          # header: category and severity for what follows
//! 赌博
//! [ads]                    # header: category only, severity stays high
//! t.me/
//! 代开发票<TAB>fraud<TAB>low   # per-line category and severity override
//! ```
//!
//! (Comments after a header as above are *not* allowed; they are shown here
//! for explanation only.) Severity is `low`, `medium` or `high` (or `1`–`3`).
//! A category is any non-empty text without spaces, tabs, `:` or brackets.
//! A fourth field (or a third header part, `[gambling:high:exact]`) lists
//! the families the term takes part in: `exact`, `-pinyin,-homophone`,
//! `pinyin,number` (see [`FamilySet::parse`]); empty fields keep the
//! section's category and severity (`妈的<TAB><TAB><TAB>-homophone`).
//! A term needs at least one letter or digit and at most
//! [`MAX_TERM_CHARS`] characters. Every bad line is reported with its
//! 1-based line number and reason ([`TermFileError::BadLines`]). Allow-lists
//! use the same format; their categories are ignored.
//!
//! # Other rules
//!
//! * Regex rules ([`RegexRules::compile`]) are validated on save and look at
//!   the original or the folded text ([`RegexTarget`]); presets for links,
//!   mainland mobile numbers and WeChat ids in [`RegexRuleSpec::presets`].
//! * Behavioural rules are pure functions over plain values the pipeline
//!   loads: [`is_flooding`], [`is_repeated_across_chats`] (with
//!   [`Engine::fingerprint`]), [`NewMemberRule`].
//! * The strike ladder: [`EscalationPolicy::decide`] turns the member's
//!   recent strikes and `now` into [`Sanction`]s.
//!
//! # Performance
//!
//! The fold table for the whole BMP and the pronunciation tables are built
//! once per process: call [`warm_up`] at startup. Each message is folded
//! once and read once as pronunciation symbols, and both are searched for
//! the terms (an automaton, an index of symbol pairs); only messages with a candidate are looked at closely. Keep one
//! [`Scratch`] per worker and call [`Engine::scan_into`] to avoid
//! allocating per message. Figures: `docs/moderation.md`.
//!
//! # Use
//!
//! ```
//! use qunyun::rules::moderation::{Engine, MatchOptions, TermList};
//!
//! let terms = TermList::parse("[ads:high]\n加微信\n").unwrap();
//! let allow = TermList::default();
//! let engine = Engine::build(&terms, &allow, MatchOptions::default()).unwrap();
//! let hits = engine.scan("來加 🌹 微 · 信吧");
//! assert_eq!(hits.len(), 1);
//! assert_eq!(&*hits[0].category, "ads");
//! assert_eq!(&"來加 🌹 微 · 信吧"[hits[0].span.clone()], "加 🌹 微 · 信");
//! ```

mod behaviour;
mod check;
mod engine;
mod escalation;
mod eval;
mod family;
mod fold;
mod lexicon;
mod normalize;
mod phonetic;
mod regex_rules;
mod sequences;
mod shape;
mod terms;
mod variants;

pub use behaviour::{
    is_flooding, is_repeated_across_chats, BehaviourRuleError, CrossChatRule, FloodRule,
    NewMemberRule, RecentPost, TextFingerprint,
};
pub use check::{check_block, CheckOptions, CheckSummary};
pub use engine::{
    verdict, Engine, EngineError, Hit, HitSource, MatchOptions, RegexRuleRef, Scratch,
    MIN_FINGERPRINT_CHARS,
};
pub use escalation::{
    EscalationDecision, EscalationPolicy, EscalationPolicyError, Rung, Sanction, Strike,
};
pub use eval::{evaluate, parse_cases, EvalCase, EvalReport, FamilyScore};
pub use family::{Family, FamilySet, FuzzyPolicy, UnknownFamily, UnknownPolicy, Verdict};
pub use regex_rules::{RegexRuleError, RegexRuleErrorKind, RegexRuleSpec, RegexRules, RegexTarget};
pub use terms::{
    BadLine, LineError, Severity, Term, TermFileError, TermList, DEFAULT_CATEGORY,
    DEFAULT_SEVERITY, MAX_TERM_CHARS,
};
pub use variants::{
    MIN_DOUBLED_CHARS, MIN_INITIALS_CHARS, MIN_LEET_LETTERS, MIN_NUMBER_DIGITS, MIN_PHONETIC_CHARS,
    MIN_PINYIN_LETTERS,
};

/// Build the process-wide tables (character folding, pronunciations) now,
/// so that the first message does not pay for them.
pub fn warm_up() {
    fold::warm_up();
    phonetic::tables();
}

#[cfg(test)]
mod contract_tests;
