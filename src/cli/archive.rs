//! `qunyun archive pull --once`: one pull of the message archive from the
//! stored cursor to the archive's end (what `serve` does on its interval),
//! for a first catch-up or a check of the setup. Safe beside a running
//! `serve`: each page commits with its cursor, and records are deduplicated.

use std::process::ExitCode;

use anyhow::bail;

use crate::active_rules::ActiveRules;
use crate::jobs::archive::ArchivePuller;
use crate::{clock, store};

#[derive(Debug, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Pull the archive through the vendor SDK and store what is new.
    Pull(PullArgs),
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Pull up to the archive's end once, then exit (the only mode: `serve` pulls continuously).
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub async fn run(command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    let ArchiveCommand::Pull(args) = command;
    if !args.once {
        bail!("`qunyun archive pull` needs --once (`qunyun serve` pulls continuously)");
    }
    let config = args.config.load()?;
    if !config.archive.enabled {
        bail!("archive.enabled: the message archive is off in this configuration");
    }
    let pool = store::open(&config.database.path).await?;
    let puller = ArchivePuller::open(&config, pool.clone(), clock::system(), ActiveRules::new())?;
    let mut total = crate::jobs::archive::PullOutcome::default();
    loop {
        let outcome = puller.pull().await?;
        total.pages += outcome.pages;
        total.pulled += outcome.pulled;
        total.stored += outcome.stored;
        total.failed += outcome.failed;
        total.events += outcome.events;
        if let Some(error) = outcome.error {
            println!(
                "archive: {} records pulled, {} new, {} not decrypted, {} group messages; stopped: {error}",
                total.pulled, total.stored, total.failed, total.events
            );
            return Ok(ExitCode::FAILURE);
        }
        if outcome.caught_up {
            break;
        }
    }
    let mut conn = pool.acquire().await?;
    let cursor = store::archive::cursor(&mut conn, chrono::Utc::now().timestamp()).await?;
    println!(
        "archive: {} records pulled, {} new, {} not decrypted, {} group messages; cursor at seq {}",
        total.pulled, total.stored, total.failed, total.events, cursor.seq
    );
    Ok(ExitCode::SUCCESS)
}
