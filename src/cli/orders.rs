//! `qunyun orders …`: purchase data from a CSV file and members' unionids;
//! `qunyun tags …`: member tags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{actor, ConfigArg};
use crate::ops::{self, OpsError};

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Import orders from a CSV file with the header `member,order_id,amount,paid_at`
    /// (member: UserID, external userid or unionid; amount in yuan, negative for a
    /// refund; paid_at: unix seconds, RFC 3339 or `YYYY-MM-DD HH:MM:SS` community
    /// time). All or nothing; an order id already stored is counted as a duplicate.
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Record a member's WeChat unionid, so orders naming it find them.
    Unionid {
        user: String,
        unionid: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(command: OrdersCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        OrdersCommand::Import { file, config } => {
            let ops = config.ops().await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let tz = ops.in_force().await?.rules.timezone;
            let orders = match ops::orders::parse_csv(&text, tz) {
                Ok(orders) => orders,
                Err(errors) => return refuse(&file, &errors),
            };
            let name = file.display().to_string();
            match ops::orders::import_csv(&ops, &actor(), now, &name, &orders).await {
                Ok(done) => {
                    println!(
                        "{name}: {} orders imported, {} already stored",
                        done.accepted, done.duplicates
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(OpsError::Invalid { reason, .. }) => refuse(
                    &file,
                    &reason.lines().map(str::to_owned).collect::<Vec<_>>(),
                ),
                Err(other) => Err(other.into()),
            }
        }
        OrdersCommand::Unionid {
            user,
            unionid,
            config,
        } => {
            let ops = config.ops().await?;
            ops::orders::set_unionid(&ops, &actor(), now, &user, &unionid).await?;
            println!("{user}: unionid recorded");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn refuse(file: &std::path::Path, errors: &[String]) -> anyhow::Result<ExitCode> {
    for error in errors {
        eprintln!("{}: {error}", file.display());
    }
    eprintln!("{}: nothing imported", file.display());
    Ok(ExitCode::FAILURE)
}

#[derive(Debug, Subcommand)]
pub enum TagsCommand {
    /// Tag a member (UserID or external userid).
    Add {
        user: String,
        tags: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove tags from a member.
    Remove {
        user: String,
        tags: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Import `member,tag` lines (header first); all or nothing, bad lines named.
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run_tags(command: TagsCommand) -> anyhow::Result<ExitCode> {
    use crate::ops::member_tags;
    let now = chrono::Utc::now();
    match command {
        TagsCommand::Add { user, tags, config } => {
            let ops = config.ops().await?;
            let added = member_tags::add(&ops, &actor(), now, &user, &tags).await?;
            println!("{user}: added {}", added.join(", "));
        }
        TagsCommand::Remove { user, tags, config } => {
            let ops = config.ops().await?;
            let removed = member_tags::remove(&ops, &actor(), now, &user, &tags).await?;
            println!("{user}: removed {}", removed.join(", "));
        }
        TagsCommand::Import { file, config } => {
            let ops = config.ops().await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match member_tags::import_csv(&ops, &actor(), now, &text).await {
                Ok(added) => println!("{}: {added} tags added", file.display()),
                Err(OpsError::Invalid { reason, .. }) => {
                    return refuse(
                        &file,
                        &reason.lines().map(str::to_owned).collect::<Vec<_>>(),
                    )
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
