//! `qunyun polls create|list|show|close`: the same operations as the
//! console's polls page (`ops::polls`), acting as the OS user.

use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use clap::Subcommand;

use super::{actor, ConfigArg};
use crate::ops;
use crate::rules::polls::PollSpec;

#[derive(Debug, Subcommand)]
pub enum PollsCommand {
    /// Create a poll; the running service opens it at --open and announces
    /// the result at --close.
    Create {
        #[arg(long)]
        question: String,
        /// An option (repeat 2–20 times, in order).
        #[arg(long = "option", required = true)]
        options: Vec<String>,
        /// A chat id (repeat, or comma-separate).
        #[arg(long = "chat", value_delimiter = ',')]
        chats: Vec<String>,
        /// Every chat carrying this tag when the poll opens.
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Vec<String>,
        /// Several options per ballot.
        #[arg(long)]
        multiple: bool,
        /// A member may change their ballot until the close.
        #[arg(long)]
        allow_change: bool,
        /// Opening time, RFC 3339 (default: now).
        #[arg(long)]
        open: Option<DateTime<Utc>>,
        /// Closing time, RFC 3339; or use --hours.
        #[arg(long, conflicts_with = "hours")]
        close: Option<DateTime<Utc>>,
        /// Close this many hours after opening.
        #[arg(long)]
        hours: Option<i64>,
        /// Points each voter earns at the close.
        #[arg(long, default_value_t = 0)]
        points: i64,
        /// Total points the poll pays out, earliest ballots first (0: no cap).
        #[arg(long, default_value_t = 0)]
        points_cap: i64,
        /// Only members of this saved segment (its id) at the moment they vote.
        #[arg(long = "segment", value_name = "ID")]
        segment_id: Option<i64>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Every poll, newest first.
    List(ConfigArg),
    /// One poll with its live results.
    Show {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Close a poll now (the service announces the result on its next pass).
    Close {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(command: PollsCommand) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    match command {
        PollsCommand::Create {
            question,
            options,
            chats,
            tags,
            multiple,
            allow_change,
            open,
            close,
            hours,
            points,
            points_cap,
            segment_id,
            config,
        } => {
            let ops = config.ops().await?;
            let open_at = open.unwrap_or(now);
            let close_at = match (close, hours) {
                (Some(close), _) => close,
                (None, Some(hours)) => open_at + Duration::hours(hours),
                (None, None) => anyhow::bail!("close: give --close or --hours"),
            };
            let spec = PollSpec {
                question,
                options,
                multiple,
                open_at,
                close_at,
                chats,
                tags,
                allow_change,
                points_per_vote: points,
                points_cap,
                segment_id,
            };
            let id = ops::polls::create(&ops, &actor(), now, spec).await?;
            println!("poll {id} created");
        }
        PollsCommand::List(config) => {
            let ops = config.ops().await?;
            for poll in ops::polls::list(&ops, &actor()).await? {
                println!(
                    "{:>4}  {:<9}  {} → {}  {}",
                    poll.id,
                    poll.status.as_str(),
                    poll.open_at.format("%Y-%m-%d %H:%M"),
                    poll.close_at.format("%Y-%m-%d %H:%M"),
                    poll.question
                );
            }
        }
        PollsCommand::Show { id, config } => {
            let ops = config.ops().await?;
            let results = ops::polls::show(&ops, &actor(), id).await?;
            let poll = &results.poll;
            println!(
                "poll {} ({}): {}",
                poll.id,
                poll.status.as_str(),
                poll.question
            );
            for (i, option) in poll.options.iter().enumerate() {
                println!("  {}. {option}: {}", i + 1, results.counts[i]);
            }
            println!("voters: {}", results.voters);
            println!("chats: {}", results.opened_in.join(", "));
            if let Some(segment) = &poll.segment {
                println!("segment: {} (#{})", segment.label(), segment.id);
            }
        }
        PollsCommand::Close { id, config } => {
            let ops = config.ops().await?;
            ops::polls::close(&ops, &actor(), now, id).await?;
            println!("poll {id} closes now; the service announces the result");
        }
    }
    Ok(ExitCode::SUCCESS)
}
