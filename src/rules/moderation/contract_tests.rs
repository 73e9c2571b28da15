//! Tests for the matching contract, one group per rule, plus the optional
//! steps and properties.

use proptest::prelude::*;

use super::*;

fn engine_with(terms: &str, allow: &[&str], options: MatchOptions) -> Engine {
    let terms = TermList::parse(terms).expect("valid term file");
    let allow = TermList::from_terms(allow.iter().copied());
    Engine::build(&terms, &allow, options).expect("engine builds")
}

fn engine(terms: &str, allow: &[&str]) -> Engine {
    engine_with(terms, allow, MatchOptions::default())
}

/// The original text of each hit, in order.
fn hit_texts<'a>(engine: &Engine, text: &'a str) -> Vec<&'a str> {
    engine
        .scan(text)
        .into_iter()
        .map(|hit| &text[hit.span])
        .collect()
}

fn hit_terms(engine: &Engine, text: &str) -> Vec<String> {
    engine
        .scan(text)
        .into_iter()
        .map(|hit| engine.describe(hit.source).to_owned())
        .collect()
}

const NO_EXTRAS: MatchOptions = MatchOptions {
    families: FamilySet::EXACT_ONLY,
    lookalike_letters: false,
    financial_numerals: false,
    collapse_repeats: false,
};

// Rule 1: case, width, compatibility forms.

#[test]
fn case_insensitive() {
    let engine = engine("WeChat\n", &[]);
    assert_eq!(hit_texts(&engine, "add me on WECHAT"), vec!["WECHAT"]);
    assert_eq!(hit_texts(&engine, "wechat"), vec!["wechat"]);
}

#[test]
fn full_width_matches_ascii() {
    let engine = engine("vx123\n", &[]);
    assert_eq!(hit_texts(&engine, "加ＶＸ１２３"), vec!["ＶＸ１２３"]);
}

#[test]
fn compatibility_letters_match() {
    let engine = engine("wechat\nxii\n", &[]);
    assert_eq!(hit_texts(&engine, "ⓦⓔⓒⓗⓐⓣ"), vec!["ⓦⓔⓒⓗⓐⓣ"]);
    assert_eq!(hit_texts(&engine, "𝐰𝐞𝐜𝐡𝐚𝐭"), vec!["𝐰𝐞𝐜𝐡𝐚𝐭"]);
    assert_eq!(hit_texts(&engine, "ʷᵉᶜʰᵃᵗ"), vec!["ʷᵉᶜʰᵃᵗ"]);
    assert_eq!(hit_texts(&engine, "chapter Ⅻ"), vec!["Ⅻ"]);
}

// Rule 2: traditional and variants.

#[test]
fn traditional_matches_simplified_term() {
    let engine = engine("赌博\n发票\n", &[]);
    assert_eq!(hit_texts(&engine, "線上賭博"), vec!["賭博"]);
    assert_eq!(hit_texts(&engine, "代開發票"), vec!["發票"]);
}

#[test]
fn traditional_term_matches_simplified_text() {
    let engine = engine("賭博\n", &[]);
    assert_eq!(hit_texts(&engine, "线上赌博"), vec!["赌博"]);
}

#[test]
fn variant_characters_match() {
    // 裡 (Taiwan variant of 裏) and 着/著.
    let engine = engine("里面\n", &[]);
    assert_eq!(hit_texts(&engine, "群裡面"), vec!["裡面"]);
}

// Rule 3: skipped characters.

#[test]
fn separators_emoji_and_format_characters_are_skipped() {
    let engine = engine("加微信\n", &[]);
    assert_eq!(hit_texts(&engine, "加 🌹 微 · 信"), vec!["加 🌹 微 · 信"]);
    assert_eq!(
        hit_texts(&engine, "加\u{200b}微\u{200d}信"),
        vec!["加\u{200b}微\u{200d}信"]
    );
    assert_eq!(
        hit_texts(&engine, "加\u{336}微\u{336}信"),
        vec!["加\u{336}微\u{336}信"]
    );
    assert_eq!(hit_texts(&engine, "加-微-信!"), vec!["加-微-信"]);
}

#[test]
fn terms_with_separators_match_text_without() {
    let engine = engine("加 微 信\n", &[]);
    assert_eq!(hit_texts(&engine, "加微信"), vec!["加微信"]);
}

// Rule 4: Latin word boundaries.

#[test]
fn latin_term_does_not_fire_inside_an_english_word() {
    let engine = engine("bet\n", &[]);
    assert!(engine.scan("you had better go").is_empty());
    assert!(engine.scan("alphabet soup").is_empty());
    assert_eq!(hit_texts(&engine, "place a bet now"), vec!["bet"]);
    assert_eq!(hit_texts(&engine, "BET365"), vec!["BET"]);
    assert_eq!(hit_texts(&engine, "来bet吧"), vec!["bet"]);
}

#[test]
fn latin_edge_of_mixed_term_needs_a_boundary() {
    let engine = engine("v信\n", &[]);
    assert!(engine.scan("TV信号不好").is_empty());
    assert_eq!(hit_texts(&engine, "加v信"), vec!["v信"]);
    assert_eq!(hit_texts(&engine, "加 V 信"), vec!["V 信"]);
}

#[test]
fn dropped_separator_counts_as_boundary() {
    let engine = engine("t.me/\n", &[]);
    assert_eq!(hit_texts(&engine, "https://t.me/x"), vec!["t.me"]);
    assert!(engine.scan("let me know").is_empty());
    assert!(engine.scan("letme know").is_empty());
}

#[test]
fn term_across_a_word_boundary_in_english_is_a_trap() {
    // "sex" hides in "Essex" and across "has expired"… only whole words count.
    let engine = engine("sex\n", &[]);
    assert!(engine.scan("Essex is lovely").is_empty());
    assert!(engine.scan("the pass expired").is_empty());
    assert!(engine.scan("sussex").is_empty());
}

#[test]
fn digits_and_cjk_are_not_letters() {
    let engine = engine("vx\n", &[]);
    assert_eq!(hit_texts(&engine, "加vx123"), vec!["vx"]);
    assert_eq!(hit_texts(&engine, "9vx"), vec!["vx"]);
}

// Rule 5: allow-list.

#[test]
fn allow_entry_cancels_only_hits_it_covers() {
    let engine = engine("法轮\n微信\n", &["法轮功课"]);
    // Covered: cancelled.
    assert!(engine.scan("今天的法轮功课").is_empty());
    // Another hit in the same message still counts.
    assert_eq!(hit_texts(&engine, "法轮功课 加微信"), vec!["微信"]);
    // An allow entry overlapping a hit only partly does not cancel it.
    let engine = self::engine("赌博\n", &["博物馆"]);
    assert_eq!(hit_texts(&engine, "赌博物馆"), vec!["赌博"]);
}

#[test]
fn allow_entry_also_folds() {
    let engine = engine("assassin\n", &["ass"]);
    assert_eq!(hit_texts(&engine, "Assassin"), vec!["Assassin"]);
    let engine = self::engine("ass\n", &["class"]);
    assert!(engine.scan("ass").len() == 1);
    assert!(engine.scan("CLASS").is_empty());
}

// Rule 6: whole message, spans in the original.

#[test]
fn the_whole_long_message_is_scanned() {
    let engine = engine("加微信\n", &[]);
    let mut text = "正常聊天内容，".repeat(50_000);
    text.push_str("加微信");
    let hits = engine.scan(&text);
    assert_eq!(hits.len(), 1);
    assert_eq!(&text[hits[0].span.clone()], "加微信");
}

#[test]
fn hits_report_category_severity_and_every_occurrence() {
    let engine = engine("[ads:high]\n加微信\n[gambling:low]\n赌博\n", &[]);
    let hits = engine.scan("赌博 加微信 赌博");
    let summary: Vec<_> = hits
        .iter()
        .map(|h| (&*h.category, h.severity, h.span.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("gambling", Severity::Low, 0..6),
            ("ads", Severity::High, 7..16),
            ("gambling", Severity::Low, 17..23),
        ]
    );
}

#[test]
fn overlapping_terms_all_report() {
    let engine = engine("加微信\n微信\n", &[]);
    assert_eq!(hit_terms(&engine, "加微信"), vec!["加微信", "微信"]);
}

#[test]
fn span_covers_multi_char_folds_and_stays_on_boundaries() {
    let engine = engine("kg\n", &[]);
    let text = "5㎏装";
    assert_eq!(hit_texts(&engine, text), vec!["㎏"]);
}

// Optional steps.

#[test]
fn lookalike_letters_catch_mixed_script_spoofs() {
    // "pay" with Cyrillic р and а.
    let spoof = "scan to рaу now";
    let on = engine("pay\n", &[]);
    assert_eq!(hit_texts(&on, spoof), vec!["рaу"]);
    let off = engine_with("pay\n", &[], NO_EXTRAS);
    assert!(off.scan(spoof).is_empty());
}

#[test]
fn lookalike_letters_leave_real_russian_and_greek_alone() {
    // "привет" folds to "пpиbet", but п and и have no Latin look-alike, so
    // the word is Russian and "bet" does not fire.
    let engine = engine("bet\n", &[]);
    assert!(engine.scan("привет всем").is_empty());
    // Greek "αβγ…": γ has no look-alike, so "ab" is not read out of it.
    let engine = self::engine("ab\n", &[]);
    assert!(engine.scan("αβγ").is_empty());
    // A look-alike next to CJK is still caught.
    let engine = self::engine("v信\n", &[]);
    assert_eq!(hit_texts(&engine, "加ν信"), vec!["ν信"]);
}

#[test]
fn lookalike_known_limit_words_made_only_of_lookalikes() {
    // "ресторан" is written entirely in letters that look Latin; it reads as
    // "pectopah". Documented limit: such words are treated as spoofs.
    let engine = engine("pectopah\n", &[]);
    assert_eq!(engine.scan("ресторан").len(), 1);
}

#[test]
fn lookalike_letters_keep_word_boundaries() {
    let engine = engine("bet\n", &[]);
    assert!(engine.scan("bеtter").is_empty()); // Cyrillic е
}

#[test]
fn financial_numerals_catch_spelled_phone_numbers() {
    let on = engine("13800138000\n", &[]);
    assert_eq!(
        hit_texts(&on, "电话壹叁捌零零壹叁捌零零零"),
        vec!["壹叁捌零零壹叁捌零零零"]
    );
    assert_eq!(
        hit_texts(&on, "①③⑧００１３８ 000"),
        vec!["①③⑧００１３８ 000"]
    );
    let off = engine_with("13800138000\n", &[], NO_EXTRAS);
    assert!(off.scan("壹叁捌零零壹叁捌零零零").is_empty());
}

#[test]
fn financial_numerals_leave_everyday_numerals_alone() {
    let engine = engine("123\n", &[]);
    assert!(engine.scan("一二三木头人").is_empty());
}

#[test]
fn collapse_repeats_catches_stuttered_terms() {
    let on = engine("加微信\n", &[]);
    assert_eq!(hit_texts(&on, "加加微微信信"), vec!["加加微微信信"]);
    assert_eq!(hit_texts(&on, "加~加~微微微信"), vec!["加~加~微微微信"]);
    let off = engine_with("加微信\n", &[], NO_EXTRAS);
    assert!(off.scan("加加微微信信").is_empty());
}

#[test]
fn collapse_repeats_leaves_latin_spelling_digits_and_doubled_terms() {
    // "good" must not read as "god".
    let engine = engine("god\n", &[]);
    assert!(engine.scan("good morning").is_empty());
    // Digits are never collapsed: "1188" is not "18".
    let engine = self::engine("18\n", &[]);
    let hits = engine.scan("1188");
    let found: Vec<_> = hits
        .iter()
        .map(|h| (&"1188"[h.span.clone()], h.family))
        .collect();
    // "18" occurs as is, in the middle; the whole is its doubled spelling.
    assert_eq!(
        found,
        vec![("1188", Family::Doubled), ("18", Family::Exact)]
    );
    let engine = self::engine("666\n", &[]);
    assert!(engine.scan("6").is_empty());
    assert_eq!(hit_texts(&engine, "666"), vec!["666"]);
    // A term that doubles a character still matches its doubled form.
    let engine = self::engine("哈哈群\n", &[]);
    assert_eq!(hit_texts(&engine, "哈哈群"), vec!["哈哈群"]);
}

// Regex rules.

#[test]
fn regex_rules_report_spans_in_original_text() {
    let rules = RegexRules::compile(&RegexRuleSpec::presets()).expect("presets");
    let engine = engine("加微信\n", &[]).with_regex_rules(rules);
    let text = "电话 １３８-0013 8000，或 vx: abc_1234，见 https://t.me/abc";
    let found: Vec<_> = engine
        .scan(text)
        .into_iter()
        .map(|h| (engine.describe(h.source).to_owned(), &text[h.span]))
        .collect();
    assert_eq!(
        found,
        vec![
            ("cn_mobile".to_owned(), "１３８-0013 8000"),
            ("wechat_id".to_owned(), "vx: abc_1234"),
            ("link".to_owned(), "https://t.me/abc"),
        ]
    );
}

#[test]
fn engine_refuses_a_term_that_folds_to_nothing() {
    let terms = TermList::from_terms(["🌹"]);
    let error = Engine::build(&terms, &TermList::default(), MatchOptions::default())
        .expect_err("must refuse");
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[test]
fn empty_lists_match_nothing() {
    let engine = engine("", &[]);
    assert!(engine.scan("加微信 anything").is_empty());
}

// Properties.

fn separator() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        ' ', '\u{200b}', '\u{200d}', '\u{fe0f}', '·', '-', '.', '🌹', '😀', '\u{301}', '\t', '，',
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scanning_never_panics_and_spans_are_valid(text in ".{0,200}") {
        let engine = engine("加微信\nbet\nt.me/\n赌博\n", &["不加微信"]);
        for hit in engine.scan(&text) {
            prop_assert!(hit.span.start < hit.span.end);
            prop_assert!(hit.span.end <= text.len());
            prop_assert!(text.is_char_boundary(hit.span.start));
            prop_assert!(text.is_char_boundary(hit.span.end));
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in any::<String>()) {
        let rules = RegexRules::compile(&RegexRuleSpec::presets()).expect("presets");
        let engine = engine("加微信\nbet\n", &[]).with_regex_rules(rules);
        for hit in engine.scan(&text) {
            prop_assert!(text.get(hit.span.clone()).is_some());
        }
    }

    #[test]
    fn separators_inside_a_term_never_stop_a_match(
        term in prop::sample::select(vec!["加微信", "赌博", "t.me/", "bet", "v信", "代开发票"]),
        inserts in prop::collection::vec((0usize..8, separator()), 0..6),
        prefix in prop::sample::select(vec!["", "你好 ", "hi ", "。"]),
    ) {
        let engine = engine(&format!("{term}\n"), &[]);
        let mut chars: Vec<char> = term.chars().collect();
        for (at, sep) in inserts {
            let at = at % (chars.len() + 1);
            chars.insert(at, sep);
        }
        let spelled: String = chars.into_iter().collect();
        let text = format!("{prefix}{spelled}");
        prop_assert!(!engine.scan(&text).is_empty(), "no hit in {:?}", text);
    }

    #[test]
    fn hit_span_folds_back_to_the_term(
        noise in "[a-z ]{0,10}",
        term in prop::sample::select(vec!["加微信", "賭博", "ＶＸ"]),
    ) {
        let engine = engine("加微信\n赌博\nvx\n", &[]);
        let text = format!("{noise} {term} {noise}");
        let hits = engine.scan(&text);
        prop_assert!(hits.iter().any(|h| &text[h.span.clone()] == term));
    }
}
