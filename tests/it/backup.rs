//! `qunyun backup` while the server takes callbacks, and `qunyun restore`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, Callback, ConfigFile, TestApp};

/// A config file for the app's own database.
fn config_for(app: &TestApp) -> PathBuf {
    let path = app.dir().join("backup-test.toml");
    std::fs::write(
        &path,
        ConfigFile::default().toml(&app.dir().join("qunyun.db")),
    )
    .unwrap();
    path
}

async fn qunyun(config: &Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qunyun"));
    command.args(args).arg("--config").arg(config);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("QUNYUN_")) {
        command.env_remove(name);
    }
    tokio::task::spawn_blocking(move || command.output().expect("qunyun runs"))
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn open(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

async fn integrity(conn: &mut SqliteConnection) -> Vec<String> {
    sqlx::query_scalar("pragma integrity_check")
        .fetch_all(conn)
        .await
        .unwrap()
}

async fn inbox_rows(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("select count(*) from inbox")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn join(app: &TestApp, member: &str, at: i64) {
    let reply = app
        .post_event(Callback::App(chat_join_xml(member, at)))
        .await;
    assert_eq!(reply.status(), 200, "{member} acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_is_sound_and_restore_brings_it_back() {
    let app = spawn_app().await;
    let config = config_for(&app);
    let backup = app.dir().join("snapshot.db");
    for i in 0..20 {
        join(&app, &format!("before-{i}"), 1_700_000_000 + i).await;
    }

    // Callbacks keep arriving while the backup runs.
    let done = AtomicBool::new(false);
    let load = async {
        let mut acknowledged = 0;
        while !done.load(Ordering::SeqCst) {
            join(
                &app,
                &format!("during-{acknowledged}"),
                1_700_001_000 + acknowledged,
            )
            .await;
            acknowledged += 1;
        }
        acknowledged
    };
    let taken = async {
        let output = qunyun(&config, &["backup", "--to", backup.to_str().unwrap()]).await;
        done.store(true, Ordering::SeqCst);
        output
    };
    let (during, output) = tokio::join!(load, taken);
    assert!(
        output.status.success(),
        "backup failed: {}",
        stderr(&output)
    );
    assert!(during >= 1, "callbacks were answered while the backup ran");

    let mut copy = open(&backup).await;
    assert_eq!(integrity(&mut copy).await, ["ok"]);
    let in_backup = inbox_rows(&mut copy).await;
    assert!(
        (20..=20 + during).contains(&in_backup),
        "{in_backup} rows: every event acknowledged before the backup, none invented"
    );
    drop(copy);

    // No silent overwrite.
    let again = qunyun(&config, &["backup", "--to", backup.to_str().unwrap()]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

    // The server still has the database open: restore refuses and changes nothing.
    let refused = qunyun(&config, &["restore", "--from", backup.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("in use"), "{}", stderr(&refused));
    let mut live = app.conn().await;
    let total = inbox_rows(&mut live).await;
    assert_eq!(total, 20 + during);
    drop(live);

    // Restored onto a database no process holds (a stand-by host, or this
    // one after `serve` stopped), it brings back the backup's rows.
    let standby_db = app.dir().join("standby.db");
    let standby = app.dir().join("standby.toml");
    std::fs::write(&standby, ConfigFile::default().toml(&standby_db)).unwrap();
    assert!(qunyun(&standby, &["migrate"]).await.status.success());
    let restored = qunyun(&standby, &["restore", "--from", backup.to_str().unwrap()]).await;
    assert!(
        restored.status.success(),
        "restore failed: {}",
        stderr(&restored)
    );
    let summary = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert!(summary.contains(&format!("inbox {in_backup}")), "{summary}");

    let mut database = open(&standby_db).await;
    assert_eq!(integrity(&mut database).await, ["ok"]);
    assert_eq!(inbox_rows(&mut database).await, in_backup);
    // The replaced database is kept beside it, whole.
    let aside = std::fs::read_dir(app.dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("standby.db.before-restore-")
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
        })
        .expect("the replaced database is kept");
    let mut kept = open(&aside).await;
    assert_eq!(inbox_rows(&mut kept).await, 0);
}
