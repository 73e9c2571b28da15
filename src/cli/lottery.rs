//! `qunyun lottery …`: create, list, show, enter, draw, cancel, and `verify`,
//! which recomputes a draw from the revealed seed and the entrant list
//! offline (no database) or from the database's record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{actor, ConfigArg};
use crate::ops::lottery::{self, parse_prize, LotteryInput};
use crate::rules::lottery::{self as pure, Eligibility};
use crate::rules::segment_limit::SegmentRef;

#[derive(Debug, Subcommand)]
pub enum LotteryCommand {
    /// Create a lottery: a secret seed is drawn and its SHA-256 announced to the chats.
    Create {
        #[arg(long)]
        title: String,
        /// A chat id (repeat, or comma-separate).
        #[arg(long = "chat", value_delimiter = ',')]
        chats: Vec<String>,
        /// Every chat carrying this tag (repeat, or comma-separate).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Vec<String>,
        /// Members enter by sending this text (default 抽奖).
        #[arg(long, default_value = "抽奖", conflicts_with = "automatic")]
        keyword: String,
        /// Every eligible current member of the chats enters at the draw.
        #[arg(long)]
        automatic: bool,
        /// When to draw (RFC 3339, e.g. 2026-12-08T12:00:00Z).
        #[arg(long, value_name = "TIME")]
        draw_at: DateTime<Utc>,
        /// `NAME:points=N:winners=K` or `NAME:item=ITEM:winners=K` (repeat; drawn in order).
        #[arg(long = "prize", required = true)]
        prizes: Vec<String>,
        /// Only members who checked in on the day they enter.
        #[arg(long)]
        checked_in_today: bool,
        /// Only members at this level or above (1 = the first of points.levels).
        #[arg(long, value_name = "N")]
        min_level: Option<u32>,
        /// Only members in the community before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        joined_before: Option<DateTime<Utc>>,
        /// Points each entrant pays (refunded if the lottery is cancelled).
        #[arg(long, default_value_t = 0)]
        cost: i64,
        /// Only members of this saved segment (its id) at the moment they enter.
        #[arg(long = "segment", value_name = "ID")]
        segment_id: Option<i64>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Every lottery with its status and commitment.
    List(ConfigArg),
    /// One lottery: commitment, seed once drawn, entrants, winners, verification.
    Show {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the sorted entrant list, one id a line (the file `verify` reads).
    Entrants {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enter a member by hand, under the lottery's rules.
    Enter {
        id: i64,
        user: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Draw now instead of at the draw time.
    Draw {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Cancel an open lottery; entry points are refunded.
    Cancel {
        id: i64,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Recompute a draw. With --seed and --entrants it works offline (no
    /// database) and prints the draw order; otherwise it reads the lottery's
    /// revealed seed and entrants and checks the recorded winners.
    Verify {
        id: i64,
        /// The revealed seed (hex).
        #[arg(long)]
        seed: Option<String>,
        /// The entrant list, one id a line (order does not matter).
        #[arg(long, value_name = "FILE")]
        entrants: Option<PathBuf>,
        /// The published SHA-256 of the seed: checked when given.
        #[arg(long, value_name = "HEX")]
        commitment: Option<String>,
        /// How many draws to print (default: every entrant, in draw order).
        #[arg(long)]
        winners: Option<usize>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(command: LotteryCommand) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    match command {
        LotteryCommand::Create {
            title,
            chats,
            tags,
            keyword,
            automatic,
            draw_at,
            prizes,
            checked_in_today,
            min_level,
            joined_before,
            cost,
            segment_id,
            config,
        } => {
            let ops = config.ops().await?;
            let input = LotteryInput {
                title,
                chats,
                tags,
                keyword: (!automatic).then_some(keyword),
                eligibility: Eligibility {
                    checked_in_today,
                    min_level,
                    joined_before,
                    entry_cost: cost,
                    segment: segment_id.map(SegmentRef::id),
                },
                draw_at,
                prizes: prizes
                    .iter()
                    .map(|p| parse_prize(p))
                    .collect::<Result<_, _>>()?,
            };
            let created = lottery::create(&ops, &actor(), now, &input).await?;
            println!("lottery {} created", created.id);
            println!("commitment (SHA-256 of the seed): {}", created.commitment);
            for (chat, outcome) in &created.announced {
                println!("  {chat}: {outcome}");
            }
        }
        LotteryCommand::List(config) => {
            let ops = config.ops().await?;
            for l in lottery::list(&ops).await? {
                println!(
                    "{:>4}  {:<9}  draw {}  {}  commitment {}",
                    l.id,
                    l.status,
                    l.draw_at.to_rfc3339(),
                    l.title,
                    l.commitment
                );
            }
        }
        LotteryCommand::Show { id, config } => {
            let view = lottery::show(&config.ops().await?, id).await?;
            let l = &view.lottery;
            println!("lottery {id}: {} ({})", l.title, l.status);
            println!("draw at:    {}", l.draw_at.to_rfc3339());
            println!("commitment: {}", l.commitment);
            if let Some(segment) = &l.eligibility.segment {
                println!("segment:    {} (#{})", segment.label(), segment.id);
            }
            println!(
                "seed:       {}",
                view.seed().unwrap_or("(secret until the draw)")
            );
            println!("entrants:   {}", view.entrants.len());
            for w in &view.winners {
                let prize = &l.prizes[usize::try_from(w.prize_position).unwrap_or(0)];
                println!(
                    "  winner {}: {} ({}, {})",
                    w.draw_position + 1,
                    w.user_id,
                    prize.name,
                    w.outcome
                );
            }
            match &view.verification {
                Some(Ok(())) => {
                    println!("verification: the revealed seed gives the recorded winners")
                }
                Some(Err(why)) => {
                    println!("verification FAILED: {why}");
                    return Ok(ExitCode::FAILURE);
                }
                None => {}
            }
        }
        LotteryCommand::Entrants { id, config } => {
            let view = lottery::show(&config.ops().await?, id).await?;
            print!("{}", pure::entrants_file(&view.entrants));
        }
        LotteryCommand::Enter { id, user, config } => {
            lottery::enter(&config.ops().await?, &actor(), now, id, &user).await?;
            println!("{user} entered lottery {id}");
        }
        LotteryCommand::Draw { id, config } => {
            let drawn = lottery::draw(&config.ops().await?, &actor(), now, id).await?;
            println!("lottery {id} drawn: {} entrants", drawn.entrants);
            for w in &drawn.winners {
                println!("  {}. {} ({})", w.draw_position + 1, w.user_id, w.outcome);
            }
        }
        LotteryCommand::Cancel { id, reason, config } => {
            let refunded =
                lottery::cancel(&config.ops().await?, &actor(), now, id, &reason).await?;
            println!("lottery {id} cancelled; {refunded} entrants refunded");
        }
        LotteryCommand::Verify {
            id,
            seed,
            entrants,
            commitment,
            winners,
            config,
        } => return verify(id, seed, entrants, commitment, winners, config).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    id: i64,
    seed: Option<String>,
    entrants: Option<PathBuf>,
    commitment: Option<String>,
    winners: Option<usize>,
    config: ConfigArg,
) -> anyhow::Result<ExitCode> {
    if let (Some(seed), Some(file)) = (&seed, &entrants) {
        // Offline: everything needed is on the command line.
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let list = pure::sorted_entrants(&text.lines().collect::<Vec<_>>());
        let count = winners.unwrap_or(list.len());
        println!(
            "lottery {id}: {} entrants, entrant list SHA-256 {}",
            list.len(),
            pure::entrants_digest(&list)
        );
        let order = match pure::verify(seed, commitment.as_deref(), &list, count) {
            Ok(order) => order,
            Err(error) => {
                println!("FAILED: {error}");
                return Ok(ExitCode::FAILURE);
            }
        };
        match &commitment {
            Some(_) => println!("commitment: ok (SHA-256 of the seed matches)"),
            None => println!("commitment: not checked (no --commitment)"),
        }
        for (i, user) in order.iter().enumerate() {
            println!("{}. {user}", i + 1);
        }
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        seed.is_none() && entrants.is_none(),
        "give both --seed and --entrants to verify offline, or neither to check the database's record"
    );
    let view = lottery::show(&config.ops().await?, id).await?;
    let Some(seed) = view.seed() else {
        anyhow::bail!(
            "lottery {id} is {}: the seed is revealed at the draw",
            view.lottery.status
        );
    };
    println!("lottery {id}: seed {seed}");
    println!("commitment {}", view.lottery.commitment);
    for w in &view.winners {
        println!("{}. {}", w.draw_position + 1, w.user_id);
    }
    Ok(match view.verification {
        Some(Ok(())) => {
            println!(
                "ok: the revealed seed and the {} entrants give the recorded winners",
                view.entrants.len()
            );
            ExitCode::SUCCESS
        }
        Some(Err(why)) => {
            println!("FAILED: {why}");
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    })
}
