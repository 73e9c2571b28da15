//! The real binary with a config file and environment variables, as an operator
//! runs it: what starts, and what is refused with the reason.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use super::helpers::ConfigFile;

pub const CORP_ID: &str = "wwREHEARSAL00000001";
pub const SECRET: &str = "RehearsalAppSecret0123456789";
/// Distinct from helpers' token so a mix-up between configs shows.
pub const APP_TOKEN: &str = "RehearsalAppToken";

/// What these tests' config files say unless a test changes it.
pub fn rehearsal_config() -> ConfigFile {
    ConfigFile {
        app: "main".into(),
        corp_id: CORP_ID.into(),
        secret: SECRET.into(),
        app_token: APP_TOKEN.into(),
        ..ConfigFile::default()
    }
}

/// The built binary, in `dir`, with no `QUNYUN_*` or `RUST_LOG` inherited from
/// whoever runs the tests.
pub fn qunyun(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qunyun"));
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("QUNYUN_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
}

/// Runs to completion off the async runtime, so in-process servers keep answering.
pub async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
        .await
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn serve_with_log_format_json_starts_and_logs_json_lines() {
    let dir = TempDir::new().unwrap();
    let config = rehearsal_config().write(dir.path());
    let mut child = qunyun(dir.path(), &["serve", "--config", &config_arg(&config)])
        .env("QUNYUN_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive on a reader thread; the test waits on the channel, not a clock.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let done = line.contains("qunyun listening");
                lines.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening, "serve did not start: {lines:#?}");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(record["level"].is_string(), "{line}");
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["fields"]["message"], "qunyun listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_password_from_the_environment_creates_the_user() {
    let dir = TempDir::new().unwrap();
    let config = rehearsal_config().write(dir.path());
    let password = "correct horse battery staple";
    let mut command = qunyun(
        dir.path(),
        &[
            "admin",
            "create-user",
            "boss",
            "--role",
            "owner",
            "--config",
            &config_arg(&config),
        ],
    );
    command.env("QUNYUN_ADMIN_PASSWORD", password);
    let out = output(command).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("account boss created"), "{stdout}");
    assert!(!stdout.contains(password) && !stderr.contains(password));

    let pool = qunyun::store::open(&dir.path().join("qunyun.db"))
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let user = qunyun::store::admin::user_by_name(&mut conn, "boss")
        .await
        .unwrap()
        .expect("boss exists");
    assert_eq!(user.role, "owner");
    assert!(qunyun::admin::auth::verify_password(
        password,
        &user.password_hash
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qunyun_variable_that_names_no_key_is_refused_naming_it() {
    let dir = TempDir::new().unwrap();
    let config = rehearsal_config().write(dir.path());
    let mut command = qunyun(
        dir.path(),
        &["check-config", "--config", &config_arg(&config)],
    );
    command.env("QUNYUN_SERVER__LISTNE", "0.0.0.0:80");
    let out = output(command).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("QUNYUN_SERVER__LISTNE") && stderr.contains("server.listne"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_rules_naming_an_unconfigured_app_naming_both_sides() {
    let dir = TempDir::new().unwrap();
    let config = ConfigFile {
        app: "ops".into(),
        ..rehearsal_config()
    }
    .write(dir.path());
    let config = config_arg(&config);

    // No database yet: the built-in rules say community.app = "main".
    let out = output(qunyun(dir.path(), &["check-config", "--config", &config])).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"rules community.app = "main" but config has apps: ops"#),
        "{stderr}"
    );
    assert!(
        !dir.path().join("qunyun.db").exists(),
        "check-config must not create a database"
    );

    // serve refuses the same mismatch before it listens.
    let out = output(qunyun(dir.path(), &["serve", "--config", &config])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(r#"rules community.app = "main" but config has apps: ops"#),
        "{}",
        text(&out.stderr)
    );

    // `rules import` refuses a set naming an app the config lacks, and stores nothing.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, "[community]\napp = \"main\"\n").unwrap();
    let out = output(qunyun(
        dir.path(),
        &["rules", "import", &config_arg(&wrong), "--config", &config],
    ))
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("community.app") && stderr.contains(r#""main""#) && stderr.contains("ops"),
        "{stderr}"
    );
    // (Nothing was stored: the import below becomes version 1.)

    // A rule-set file that names the configured app passes ...
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[community]\napp = \"ops\"\n").unwrap();
    let rules = config_arg(&rules);
    let out = output(qunyun(
        dir.path(),
        &["check-config", "--config", &config, "--rules", &rules],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // ... and so does the stored set in force once it is imported.
    let out = output(qunyun(
        dir.path(),
        &["rules", "import", &rules, "--config", &config],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = output(qunyun(dir.path(), &["check-config", "--config", &config])).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("stored version 1 (community.app = ops)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_and_the_example_rules_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new().unwrap();
    let config = config_arg(&root.join("config.example.toml"));
    let rules = config_arg(&root.join("rules.example.toml"));
    // In an empty directory, so the example's relative database does not exist:
    // the built-in rules are in force.
    for args in [
        vec!["check-config", "--config", &config],
        vec!["check-config", "--config", &config, "--rules", &rules],
    ] {
        // The example ships placeholders; an operator sets the real values.
        let mut command = qunyun(dir.path(), &args);
        command.envs([
            ("QUNYUN_WECOM__APPS__0__SECRET", "RealAppSecret0123456789"),
            ("QUNYUN_WECOM__APPS__0__TOKEN", "Tk3sP9aQ2wE7rY1uI5oL8kJ"),
            (
                "QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY",
                "u4Hk9QzR2mWcX7pLs1VbN8dTfJ3yEa6GqK0oUiZ5rMn",
            ),
            ("QUNYUN_WECOM__BOTS__0__TOKEN", "Bt8mN2vC5xZ1aS4dF7gH0jK"),
            (
                "QUNYUN_WECOM__BOTS__0__ENCODING_AES_KEY",
                "u4Hk9QzR2mWcX7pLs1VbN8dTfJ3yEa6GqK0oUiZ5rMn",
            ),
        ]);
        let out = output(command).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_writes_only_its_transcript_to_stdout() {
    let dir = TempDir::new().unwrap();
    let out = output(qunyun(dir.path(), &["demo", "--once"])).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.lines().count() > 10, "{stdout}");
    for line in stdout.lines() {
        assert_eq!(log_level(line), None, "a log line on stdout: {line}");
    }
    // Without RUST_LOG the demo logs at warn: no info lines on stderr either.
    let levels: Vec<_> = stderr.lines().filter_map(log_level).collect();
    assert!(
        levels
            .iter()
            .all(|level| matches!(*level, "WARN" | "ERROR")),
        "{stderr}"
    );
}

/// The level of a `tracing` text log line (`2026-…Z  INFO message`, colours or
/// not) or JSON log line; `None` for anything else.
fn log_level(line: &str) -> Option<&'static str> {
    const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    if let Ok(record) = serde_json::from_str::<serde_json::Value>(line) {
        let level = record["level"].as_str()?;
        return LEVELS.into_iter().find(|known| *known == level);
    }
    let plain = strip_ansi(line);
    let mut words = plain.split_whitespace();
    chrono::DateTime::parse_from_rfc3339(words.next()?).ok()?;
    let level = words.next()?;
    LEVELS.into_iter().find(|known| *known == level)
}

fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn log_lines_are_recognised_in_every_format() {
    assert_eq!(
        log_level("2026-11-22T02:00:00.123456Z  INFO qunyun listening addr=127.0.0.1:1"),
        Some("INFO")
    );
    assert_eq!(
        log_level("\u{1b}[2m2026-11-22T02:00:00.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m qunyun listening"),
        Some("INFO")
    );
    assert_eq!(
        log_level(r#"{"timestamp":"2026-11-22T02:00:00Z","level":"WARN","fields":{}}"#),
        Some("WARN")
    );
    assert_eq!(log_level("09:00 小王 签到 → 签到成功 INFO"), None);
}
