//! The CLI's manager actions through the real binary: each leaves an audit row
//! naming `cli:<os user>`, written in the change's transaction. A failure
//! injected after the change (a trigger refusing the audit insert) must leave
//! neither the change nor the audit row.

use std::path::{Path, PathBuf};
use std::process::Output;

use qunyun::store::{self, members};
use sqlx::SqlitePool;
use tempfile::TempDir;

use crate::helpers::ConfigFile;

const OS_USER: &str = "mei";

const RULES_WITH_A_SCHEDULE: &str = r#"
[community]
timezone = "Asia/Shanghai"

[[schedules]]
name = "morning"
cron = "0 0 9 * * *"

[schedules.targets]
all_chats = true

[schedules.content]
kind = "text"
body = "早上好！"
"#;

/// A migrated database and a config file pointing at it.
struct Cli {
    dir: TempDir,
    config: PathBuf,
    pool: SqlitePool,
}

impl Cli {
    async fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigFile::default().write(dir.path());
        let pool = store::open(&dir.path().join("qunyun.db")).await.unwrap();
        Cli { dir, config, pool }
    }

    /// Runs `qunyun ARGS --config FILE` as the OS user [`OS_USER`].
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qunyun"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("USER", OS_USER)
            .env_remove("LOGNAME");
        // Only the config file configures it.
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
            command.env_remove(name);
        }
        tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
            .await
            .unwrap()
    }

    /// Every later audit insert fails, as a crash after the change would.
    async fn refuse_audit_rows(&self) {
        sqlx::query(
            "create trigger refuse_audit before insert on admin_audit
             begin select raise(abort, 'injected failure'); end",
        )
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn allow_audit_rows(&self) {
        sqlx::query("drop trigger refuse_audit")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// (actor, action, target) of every audit row, oldest first.
    async fn audit(&self) -> Vec<(String, String, String)> {
        sqlx::query_as("select actor, action, target from admin_audit order by id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` with the audit insert failing: the command fails and `changed`
/// stays false, with no audit row. Then runs it normally: it succeeds, the
/// change is there, and so is exactly one audit row naming the CLI user.
async fn assert_audited_atomically(
    cli: &Cli,
    args: &[&str],
    action: &str,
    changed: impl AsyncFn(&Cli) -> bool,
) {
    assert!(!changed(cli).await, "{args:?}: the change is not there yet");

    cli.refuse_audit_rows().await;
    let refused = cli.run(args).await;
    assert!(
        !refused.status.success(),
        "{args:?} must fail when its audit row cannot be written: {}",
        text(&refused.stdout)
    );
    assert!(
        text(&refused.stderr).contains("injected failure"),
        "{args:?}: {}",
        text(&refused.stderr)
    );
    assert!(
        !changed(cli).await,
        "{args:?}: the change was kept without its audit row"
    );
    assert!(cli.audit().await.is_empty());

    cli.allow_audit_rows().await;
    let done = cli.run(args).await;
    assert!(
        done.status.success(),
        "{args:?}: {}{}",
        text(&done.stdout),
        text(&done.stderr)
    );
    assert!(changed(cli).await, "{args:?}: the change is there");
    let audit = cli.audit().await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, format!("cli:{OS_USER}"));
    assert_eq!(audit[0].1, action);
}

#[tokio::test]
async fn points_adjust_is_audited_in_the_ledger_transaction() {
    let cli = Cli::new().await;
    let at = chrono::Utc::now();
    members::ensure_person(&mut cli.pool.acquire().await.unwrap(), "wmAlice", None, at)
        .await
        .unwrap();
    assert_audited_atomically(
        &cli,
        &["points", "adjust", "wmAlice", "20", "--reason", "补偿"],
        "points.adjust",
        async |cli: &Cli| {
            cli.count("select coalesce(sum(delta), 0) from points_ledger where user_id = 'wmAlice'")
                .await
                == 20
        },
    )
    .await;
    assert_eq!(cli.audit().await[0].2, "wmAlice");

    // A typo is refused, not turned into a new member.
    let unknown = cli
        .run(&["points", "adjust", "wmNobody", "5", "--reason", "x"])
        .await;
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("member wmNobody not found"));
    assert_eq!(cli.count("select count(*) from points_ledger").await, 1);
}

#[tokio::test]
async fn schedules_pause_is_audited_in_the_pause_transaction() {
    let cli = Cli::new().await;
    store::rule_sets::save(
        &mut cli.pool.acquire().await.unwrap(),
        RULES_WITH_A_SCHEDULE,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_audited_atomically(
        &cli,
        &["schedules", "pause", "morning"],
        "schedule.pause",
        async |cli: &Cli| {
            cli.count("select count(*) from schedule_state where name = 'morning' and paused = 1")
                .await
                == 1
        },
    )
    .await;
}

#[tokio::test]
async fn outbox_retry_is_audited_in_the_requeue_transaction() {
    let cli = Cli::new().await;
    let id: i64 = sqlx::query_scalar(
        "insert into outbox (idempotency_key, route, target, payload_json, status, attempts,
                             next_attempt_at, last_error, created_at, updated_at)
         values ('reply:1', 'webhook', 'robot-key', '{}', 'dead', 5, 0, 'errcode 93000', 0, 0)
         returning id",
    )
    .fetch_one(&cli.pool)
    .await
    .unwrap();
    let id = id.to_string();
    assert_audited_atomically(
        &cli,
        &["outbox", "retry", &id],
        "outbox.retry",
        async |cli: &Cli| {
            cli.count("select count(*) from outbox where status = 'pending' and attempts = 0")
                .await
                == 1
        },
    )
    .await;
    assert_eq!(cli.audit().await[0].2, id);

    // Only failed or dead rows: the requeued one is refused now.
    let again = cli.run(&["outbox", "retry", &id]).await;
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("only failed or dead"));
}

#[tokio::test]
async fn rules_import_is_audited_in_the_save_transaction() {
    let cli = Cli::new().await;
    let file = cli.path("rules.toml");
    std::fs::write(
        &file,
        "[community]\napp = \"ops\"\n\n[checkin]\nkeywords = [\"报到\"]\nbase_points = 7\n",
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    assert_audited_atomically(
        &cli,
        &["rules", "import", &file],
        "rules.apply",
        async |cli: &Cli| cli.count("select count(*) from rule_sets").await == 1,
    )
    .await;

    // An invalid set is refused with its field, and nothing is stored or audited.
    std::fs::write(cli.path("bad.toml"), "[checkin]\nkeywords = [\"\"]\n").unwrap();
    let bad = cli.path("bad.toml");
    let refused = cli.run(&["rules", "import", path_str(&bad)]).await;
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("checkin.keywords[0]"));
    assert_eq!(cli.count("select count(*) from rule_sets").await, 1);
    assert_eq!(cli.audit().await.len(), 1);
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A pending redemption of 保温杯 (cost 30, stock 1 → 0) by `zhangsan`, who
/// had 100 points, made as the bot's redeem path makes it; the seeding's own
/// audit rows are removed so that only the CLI's are counted. Returns its id.
async fn pending_redemption(cli: &Cli) -> i64 {
    use qunyun::ops::{self, Actor, Ops, Role};
    use qunyun::store::{points, redemptions};
    let now = chrono::Utc::now();
    let ops = Ops::over(cli.pool.clone());
    let seeder = Actor::new("seed", Role::Owner);
    let rules = format!(
        "[community]\napp = \"{}\"\n\n[[catalog]]\nitem = \"保温杯\"\ncost = 30\nstock = 1\n",
        crate::helpers::APP
    );
    let applied = ops::rules::apply(&ops, &seeder, now, &rules).await.unwrap();
    assert!(
        matches!(applied, ops::rules::Applied::Version(_)),
        "{applied:?}"
    );
    let mut conn = cli.pool.acquire().await.unwrap();
    members::ensure_person(&mut conn, "zhangsan", None, now)
        .await
        .unwrap();
    ops::points::adjust(&ops, &seeder, now, "zhangsan", 100, "活动奖励")
        .await
        .unwrap();
    assert!(redemptions::take_one(&mut conn, "保温杯").await.unwrap());
    let debit = points::NewLedgerEntry {
        user_id: "zhangsan",
        delta: -30,
        reason: "redeem",
        reference: "redeem:seed",
        chat_id: None,
        day: now.date_naive(),
        at: now,
    };
    assert!(matches!(
        points::append(&mut conn, &debit).await.unwrap(),
        points::Appended::New(_)
    ));
    let id = redemptions::create(&mut conn, "zhangsan", "保温杯", 30, "redeem:seed", now)
        .await
        .unwrap()
        .unwrap();
    sqlx::query("delete from admin_audit")
        .execute(&mut *conn)
        .await
        .unwrap();
    id
}

/// (balance of zhangsan, 保温杯 left, redemption status, outbox rows).
async fn redemption_state(cli: &Cli, id: i64) -> (i64, i64, String, i64) {
    let status: String = sqlx::query_scalar("select status from redemptions where id = ?")
        .bind(id)
        .fetch_one(&cli.pool)
        .await
        .unwrap();
    (
        cli.count("select coalesce(sum(delta), 0) from points_ledger where user_id = 'zhangsan'")
            .await,
        cli.count("select remaining from catalog_stock where item = '保温杯'")
            .await,
        status,
        cli.count("select count(*) from outbox").await,
    )
}

#[tokio::test]
async fn redemptions_cancel_refunds_restocks_and_is_audited_once() {
    let cli = Cli::new().await;
    let id = pending_redemption(&cli).await;
    assert_eq!(
        redemption_state(&cli, id).await,
        (70, 0, "pending".to_string(), 0)
    );
    let id_text = id.to_string();
    let args = ["redemptions", "cancel", &id_text, "--reason", "缺货"];
    assert_audited_atomically(&cli, &args, "redemption.cancel", async |cli: &Cli| {
        redemption_state(cli, id).await.2 == "cancelled"
    })
    .await;
    // Refunded through the ledger, the unit back in stock, the member's
    // notice queued, and the reason kept in the audit row.
    assert_eq!(
        redemption_state(&cli, id).await,
        (100, 1, "cancelled".to_string(), 1)
    );
    assert_eq!(
        cli.count(
            "select count(*) from points_ledger where user_id = 'zhangsan' \
             and reason = 'redeem_refund' and delta = 30"
        )
        .await,
        1
    );
    let detail: String = sqlx::query_scalar("select detail from admin_audit")
        .fetch_one(&cli.pool)
        .await
        .unwrap();
    assert!(detail.contains("缺货"), "{detail}");

    // A second cancel is refused with a reason and changes nothing.
    let again = cli.run(&args).await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("only a pending one can be cancelled"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        redemption_state(&cli, id).await,
        (100, 1, "cancelled".to_string(), 1)
    );
    assert_eq!(cli.audit().await.len(), 1);
}
