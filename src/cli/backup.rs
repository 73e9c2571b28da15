//! `qunyun backup` and `qunyun restore`.
//!
//! A backup is `VACUUM INTO` a temporary file beside the target, checked with
//! `pragma integrity_check`, then renamed into place: a consistent snapshot
//! taken in one read transaction while `serve` goes on writing.
//!
//! A restore refuses while anything else has the database open (it asks SQLite
//! for an exclusive lock, which a running `serve` prevents), checks the backup's
//! integrity first, and keeps the database it replaces beside it as
//! `<database>.before-restore-<unix time>`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode};
use sqlx::{ConnectOptions, SqliteConnection};

use crate::store::maintenance;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup to bring back (made by `qunyun backup`).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

async fn connect(path: &Path, options: SqliteConnectOptions) -> anyhow::Result<SqliteConnection> {
    options
        .filename(path)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("opening database {}", path.display()))
}

fn options() -> anyhow::Result<SqliteConnectOptions> {
    SqliteConnectOptions::from_str("sqlite:").context("building sqlite options")
}

/// `pragma integrity_check` of the database at `path`, or an error naming the problems.
async fn check_integrity(path: &Path) -> anyhow::Result<()> {
    let mut conn = connect(path, options()?.read_only(true)).await?;
    let problems = maintenance::integrity_check(&mut conn)
        .await
        .with_context(|| format!("checking {}", path.display()))?;
    if problems != ["ok"] {
        bail!(
            "{} failed its integrity check: {}",
            path.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let database = &config.database.path;
    if !database.exists() {
        bail!("database {} does not exist", database.display());
    }
    if args.to.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.to.display());
    }
    let partial = sibling(&args.to, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let mut conn = connect(database, options()?).await?;
    let written = maintenance::vacuum_into(&mut conn, &partial)
        .await
        .with_context(|| format!("writing {}", partial.display()));
    drop(conn);
    let checked = match written {
        Ok(()) => check_integrity(&partial).await,
        Err(error) => Err(error),
    };
    if let Err(error) = checked {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, &args.to)
        .with_context(|| format!("moving the backup to {}", args.to.display()))?;
    let bytes = std::fs::metadata(&args.to).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup of {} written to {} ({bytes} bytes, integrity ok)",
        database.display(),
        args.to.display()
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs, now: i64) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let database = config.database.path.clone();
    if !args.from.is_file() {
        bail!("backup {} does not exist", args.from.display());
    }
    check_integrity(&args.from).await?;

    // Copy next to the database first, so the swap below is a rename.
    let incoming = sibling(&database, &format!(".restoring-{}", std::process::id()));
    std::fs::copy(&args.from, &incoming)
        .with_context(|| format!("copying {} beside the database", args.from.display()))?;
    std::fs::File::open(&incoming).and_then(|f| f.sync_all())?;

    let aside = sibling(&database, &format!(".before-restore-{now}"));
    let replaced = database.exists();
    if replaced {
        if let Err(error) = take_out_of_service(&database, &aside).await {
            let _ = std::fs::remove_file(&incoming);
            return Err(error);
        }
    }
    std::fs::rename(&incoming, &database)
        .with_context(|| format!("moving the backup into {}", database.display()))?;

    let mut conn = connect(&database, options()?).await?;
    let counts = maintenance::table_counts(&mut conn).await?;
    drop(conn);
    let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let kept = if replaced {
        format!("the replaced database is kept as {}", aside.display())
    } else {
        "there was no database to replace".to_owned()
    };
    println!(
        "restored {} from {} ({}); {kept}",
        database.display(),
        args.from.display(),
        summary.join(", "),
    );
    Ok(())
}

/// Takes an exclusive lock on the live database (refused while `serve` or anyone
/// else has it open), folds its write-ahead log into it, and moves it to `aside`.
async fn take_out_of_service(database: &Path, aside: &Path) -> anyhow::Result<()> {
    let mut conn = connect(
        database,
        options()?
            .locking_mode(SqliteLockingMode::Exclusive)
            .busy_timeout(Duration::from_millis(200)),
    )
    .await?;
    let locked = sqlx::query("begin exclusive").execute(&mut conn).await.and(
        sqlx::query_scalar::<_, i64>("select count(*) from sqlite_master")
            .fetch_one(&mut conn)
            .await,
    );
    if locked.is_err() {
        bail!(
            "database {} is in use (is qunyun serve running?): stop it, then restore",
            database.display()
        );
    }
    sqlx::query("commit").execute(&mut conn).await?;
    // Whatever the log holds goes into the file we keep aside.
    sqlx::query("pragma wal_checkpoint(truncate)")
        .execute(&mut conn)
        .await?;
    std::fs::rename(database, aside)
        .with_context(|| format!("moving {} aside", database.display()))?;
    for suffix in ["-wal", "-shm"] {
        let old = sibling(database, suffix);
        if old.exists() {
            std::fs::rename(&old, sibling(aside, suffix))?;
        }
    }
    drop(conn);
    Ok(())
}
