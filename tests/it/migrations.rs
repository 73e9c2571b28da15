//! Applied migrations never change. `migrations/CHECKSUMS` (the output of
//! `sha256sum migrations/*.sql`) pins the content of every migration; sqlx
//! refuses to start on a database that ran an older text of a migration, so an
//! edit must become a new, higher-numbered migration instead
//! (docs/ARCHITECTURE.md#migrations).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

const CHECKSUMS: &str = "migrations/CHECKSUMS";
const REGENERATE: &str = "sha256sum migrations/*.sql > migrations/CHECKSUMS";

/// Reads `sha256sum` output: `<64 hex digits>  <path>` per line (a `*` before
/// the path marks binary mode and is ignored). Keys are the paths as written.
fn parse_checksums(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut listed = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let path = rest.trim_start_matches([' ', '*']);
            let is_hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            (is_hex && !path.is_empty()).then(|| (path.to_owned(), hash.to_ascii_lowercase()))
        });
        let (path, hash) = parsed
            .ok_or_else(|| format!("{CHECKSUMS} line {}: not `<sha256>  <path>`", index + 1))?;
        listed.insert(path, hash);
    }
    Ok(listed)
}

/// Every way the migrations on disk disagree with the committed list, one
/// message per file, each naming the file and what to do.
fn problems(listed: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    for (path, hash) in listed {
        match actual.get(path) {
            None => found.push(format!(
                "{path} is listed in {CHECKSUMS} but is gone: an applied migration must stay; restore it"
            )),
            Some(now) if now != hash => found.push(format!(
                "{path} changed after it was listed in {CHECKSUMS}: never edit an applied migration \
                 (databases that ran the old text refuse to start); restore it and put the change in \
                 a new, higher-numbered migration"
            )),
            Some(_) => {}
        }
    }
    for path in actual.keys().filter(|path| !listed.contains_key(*path)) {
        found.push(format!(
            "{path} is not listed in {CHECKSUMS}: add it with `{REGENERATE}`"
        ));
    }
    found
}

/// `migrations/*.sql` (what `sqlx::migrate!` embeds) with the sha256 of each.
fn migrations_on_disk(root: &Path) -> BTreeMap<String, String> {
    let dir = root.join("migrations");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").path());
    entries
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .map(|path| {
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let name = path.file_name().expect("a file name").to_string_lossy();
            (
                format!("migrations/{name}"),
                hex::encode(Sha256::digest(&bytes)),
            )
        })
        .collect()
}

#[test]
fn committed_migrations_match_their_checksums() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(CHECKSUMS))
        .unwrap_or_else(|e| panic!("reading {CHECKSUMS}: {e}; create it with `{REGENERATE}`"));
    let listed = parse_checksums(&text).unwrap_or_else(|e| panic!("{e}"));
    let actual = migrations_on_disk(root);
    assert!(!actual.is_empty(), "no migrations found under migrations/");

    let found = problems(&listed, &actual);
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

#[test]
fn the_check_names_a_changed_a_removed_and_an_unlisted_migration() {
    let listed = parse_checksums(&format!(
        "{}  migrations/0001_kept.sql\n{}  migrations/0002_edited.sql\n{} *migrations/0003_removed.sql\n",
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64),
    ))
    .expect("valid sha256sum lines");
    let actual = BTreeMap::from([
        ("migrations/0001_kept.sql".to_owned(), "a".repeat(64)),
        ("migrations/0002_edited.sql".to_owned(), "d".repeat(64)),
        ("migrations/0004_new.sql".to_owned(), "e".repeat(64)),
    ]);

    let found = problems(&listed, &actual);

    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("migrations/0002_edited.sql changed after it was listed"));
    assert!(found[1].starts_with("migrations/0003_removed.sql is listed"));
    assert!(found[2].starts_with("migrations/0004_new.sql is not listed"));
    assert!(found[2].ends_with(&format!("`{REGENERATE}`")));
    assert!(problems(&listed, &listed).is_empty());
}

#[test]
fn a_malformed_checksums_line_is_refused_with_its_number() {
    let error = parse_checksums(&format!(
        "{}  migrations/0001.sql\nnot a checksum\n",
        "a".repeat(64)
    ))
    .expect_err("the second line is not sha256sum output");
    assert_eq!(error, "migrations/CHECKSUMS line 2: not `<sha256>  <path>`");
}
