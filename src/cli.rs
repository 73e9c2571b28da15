//! The command line. Each subcommand loads what it needs and calls into the
//! library; manager actions go through [`ops`](crate::ops) as the actor
//! `cli:<os user>`, audited like the console's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::active_rules::ActiveRules;
use crate::config::Config;
use crate::ops::rules::Applied;
use crate::ops::schedules::SchedulerSettings;
use crate::ops::{self, Actor, Ops, Role};
use crate::{app, clock, store, telemetry};

mod archive;
mod backup;
mod bench_callbacks;
mod lottery;
mod moderation_check;
mod orders;
mod polls;

#[derive(Debug, Parser)]
#[command(
    name = "qunyun",
    version,
    about = "qunyun (群运): a WeCom group-operations bot",
    long_about = "qunyun (群运) keeps WeCom (企业微信) communities alive: it receives WeCom callbacks, \
                  welcomes members, runs check-ins and points, moderates, and pushes scheduled content.\n\n\
                  Configuration comes from a TOML file (--config) and QUNYUN_-prefixed environment \
                  variables, e.g. QUNYUN_WECOM__APPS__0__SECRET."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: callback server, pipeline and senders.
    Serve(ConfigArg),
    /// Write distinct encrypted callbacks for the load script (bench/load.sh).
    #[command(hide = true)]
    BenchCallbacks {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: bench_callbacks::BenchCallbacksArgs,
    },
    /// Load and validate the configuration, check the rule set in force (or --rules)
    /// against it, print a summary (no secrets), and exit.
    CheckConfig(CheckConfigArgs),
    /// Check a deployment online: app secrets, corp id, trusted IP, customer-contact
    /// and app-group permissions against wecom.api_base, and WeCom's URL verification
    /// of every callback URL of a running `qunyun serve`. One line per check; exits
    /// non-zero when any fails.
    Doctor(DoctorArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ConfigArg),
    /// Write a consistent copy of the database (safe while `serve` runs).
    Backup(backup::BackupArgs),
    /// Replace the database with a backup (stop `serve` first; the replaced file is kept).
    Restore(backup::RestoreArgs),
    /// Run the built-in WeCom simulator (API endpoints, records, faults, callback driver).
    Sim(SimArgs),
    /// Scheduled pushes.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Play a scripted community day against the built-in WeCom simulator (no credentials).
    Demo {
        /// Exit after the script instead of serving for inspection.
        #[arg(long)]
        once: bool,
    },
    /// Community rule sets (TOML): validate, import (versioned), export.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Customer-group welcomes: the group welcome material's template id, owner
    /// digests of newcomers, and turning one into an owner-confirmed mass message.
    #[command(subcommand)]
    Welcome(WelcomeCommand),
    /// Points ledger administration.
    #[command(subcommand)]
    Points(PointsCommand),
    /// Redemptions: cancel one (points refunded, stock returned, member told).
    #[command(subcommand)]
    Redemptions(RedemptionsCommand),
    /// Moderation review in tiers: list the queue, decide an item.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The outbox of messages to WeCom: inspect and retry.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Moderation tools.
    #[command(subcommand)]
    Moderation(ModerationCommand),
    /// Web console accounts and API tokens.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Daily rollups, member lifecycle stages and alerts.
    #[command(subcommand)]
    Analytics(AnalyticsCommand),
    /// The chat registry: routes, tags, what qunyun can do in each chat.
    #[command(subcommand)]
    Chats(ChatsCommand),
    /// Send a message now to chosen chats or tags; prints each chat's outcome.
    Broadcast(BroadcastArgs),
    /// Verifiable lotteries (抽奖): create, draw, cancel, and verify a draw offline.
    #[command(subcommand)]
    Lottery(lottery::LotteryCommand),
    /// The message archive (会话内容存档): pull it once through the vendor SDK.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Purchase data: import orders from CSV, record unionids.
    #[command(subcommand)]
    Orders(orders::OrdersCommand),
    /// Member tags: add, remove, import `member,tag` CSV.
    #[command(subcommand)]
    Tags(orders::TagsCommand),
    /// Polls (投票): create, list, show live results, close now.
    #[command(subcommand)]
    Polls(polls::PollsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ChatsCommand {
    /// Every registered chat with its kind, route and tags.
    List(ConfigArg),
    /// One chat: kind, robot, smart bot, tags, and what qunyun can do there.
    Show {
        chat: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Set an internal group's robot or smart bot (refused for customer groups:
    /// WeCom allows neither there). An unregistered chat becomes an internal group.
    Set {
        chat: String,
        /// The webhook key of the group robot added to the group.
        #[arg(long, value_name = "KEY")]
        robot_key: Option<String>,
        /// The `[[wecom.bots]]` name of the smart bot in the group.
        #[arg(long, value_name = "NAME")]
        smart_bot: Option<String>,
        /// Forget the robot.
        #[arg(long)]
        no_robot: bool,
        /// Forget the smart bot.
        #[arg(long)]
        no_smart_bot: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Add tags to a chat.
    Tag {
        chat: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove tags from a chat.
    Untag {
        chat: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create an app group (appchat/create with the first configured app) and register it.
    CreateAppchat {
        #[arg(long)]
        name: String,
        /// The owner's UserID.
        #[arg(long)]
        owner: String,
        /// Members' UserIDs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct BroadcastArgs {
    /// A chat id (repeat, or comma-separate).
    #[arg(long = "chat", value_delimiter = ',')]
    pub chats: Vec<String>,
    /// Every chat carrying this tag (repeat, or comma-separate).
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    #[arg(long)]
    pub text: String,
    /// Send the text as markdown.
    #[arg(long)]
    pub markdown: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// One pass now: recompute recent rollups, update stages, step alerts.
    Run(ConfigArg),
    /// Print the community rollup of the last days, stages and open alerts.
    Show {
        /// How many days, today included.
        #[arg(long, default_value_t = 14)]
        days: i64,
        /// One chat's rows instead of the community's.
        #[arg(long)]
        chat: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outbox rows, newest first (message bodies are not shown).
    List {
        /// Only rows with this status: pending, in_flight, sent, awaiting_confirmation,
        /// failed, dead, skipped.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Send a failed or dead row again (a fresh attempt budget, due now).
    Retry {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Send again every dead row parked as uncertain (cut off mid-send: WeCom may
    /// have delivered it). Check the chats first.
    RetryUncertain(ConfigArg),
}

#[derive(Debug, Subcommand)]
pub enum ModerationCommand {
    /// Check messages from stdin (one per line) against a term list: prints `block`, `review`
    /// or `pass` per line, with --explain the matched terms, spans and families; with --report,
    /// per-family figures for a labelled case file. The same engine as the server.
    Check(moderation_check::CheckArgs),
    /// The audit log of moderation decisions, newest first.
    Log {
        /// Only this member's entries.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a strike; the member's record and the audit log name `cli:<os user>`.
    Revoke {
        strike_id: i64,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Tasks for group owners/admins (removals qunyun cannot do itself, reviews).
    Tasks {
        /// Include finished tasks.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Mark a task done.
    Done {
        task_id: i64,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a console account. The password is read from QUNYUN_ADMIN_PASSWORD or,
    /// if unset, from the first line of standard input (never from the command line).
    CreateUser {
        username: String,
        /// owner, operator or viewer.
        #[arg(long, default_value = "owner")]
        role: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create a bearer token for the JSON API (printed once).
    CreateToken {
        username: String,
        /// What the token is for.
        label: String,
        /// Days until the token stops working (default: never).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Disable an account: it can no longer sign in, its sessions and tokens stop working.
    DisableUser {
        username: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enable a disabled account again.
    EnableUser {
        username: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Set a new password (QUNYUN_ADMIN_PASSWORD or one line of stdin) and end the
    /// account's sessions.
    ResetPassword {
        username: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Sign an account out everywhere.
    EndSessions {
        username: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum WelcomeCommand {
    /// The group welcome material (template id, in sync or not) and recent owner digests.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Turn an owner digest's suggested welcome into a mass message its owner confirms.
    SendToOwner {
        digest: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rule-set file; every problem is printed with the field it concerns.
    Validate {
        /// The rule-set TOML file.
        file: PathBuf,
    },
    /// Validate a rule-set file and make it the active version (applies without restart).
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make an earlier version active again (saved as a new version).
    Rollback {
        version: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the active rule set as TOML.
    Export {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Render one of the rule set's templates for a sample member.
    Preview {
        /// The rule-set TOML file.
        file: PathBuf,
        /// Template name, e.g. welcome.
        template: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PointsCommand {
    /// Add (or with a negative number, deduct) points for a member, with a reason.
    Adjust {
        /// The member's UserID or external userid.
        user: String,
        /// Points to add; negative to deduct (never below zero).
        #[arg(allow_hyphen_values = true)]
        delta: i64,
        /// Why (kept in the ledger).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Mark a group message 精华: its author earns `[ugc] essence_points`, once per message.
    Essence {
        /// The message id (the smart bot's msgid or the archive's), as the member page lists it.
        message_id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write off points expired under `[points.expiry]` now (the background
    /// job does this too); `--dry-run` only lists what would expire.
    Expire {
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Open items (with --all, decided ones too), oldest first, with their SLA.
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Decide an item: confirm, dismiss or escalate (a hit or report), uphold
    /// or overturn (an appeal).
    Decide {
        id: i64,
        decision: String,
        /// Why (required to confirm, escalate or overturn; kept in the audit log).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum RedemptionsCommand {
    /// Cancel a pending redemption: its points go back through the ledger, its
    /// unit back to stock, and the member gets a 1:1 message.
    Cancel {
        /// The redemption's id (console 队列 page, or the API's list).
        id: i64,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, clap::Args)]
/// The simulator's app secret (what gettoken accepts, app 1000002) comes from
/// [`crate::config::SIM_SECRET_VAR`]: a command line is visible to every local user.
pub struct SimArgs {
    /// Address to listen on, e.g. 127.0.0.1:9000.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// The simulated corp's CorpID.
    #[arg(long)]
    pub corp_id: String,
    /// Lifetime of issued access tokens, in seconds (WeCom: 7200).
    #[arg(long, value_name = "SECS")]
    pub token_ttl: Option<i64>,
    /// A scenario file (TOML, or JSON if it ends in .json) with state and driver steps.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Print the next fire times of a cron expression (with seconds), one per line.
    Next {
        /// Cron expression with a seconds field, e.g. "0 30 9 * * Mon-Fri".
        cron: String,
        /// IANA timezone the expression is read in.
        #[arg(long, default_value = "Asia/Shanghai")]
        tz: String,
        /// How many fire times to print.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// The schedules of the active rule set, with their next fire time.
    List(ConfigArg),
    /// Stop a schedule from firing (no catch-up on resume).
    Pause {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Let a paused schedule fire again from now on.
    Resume {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Fire a schedule now (a manual run; the sender delivers it).
    Run {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Render what one chat would receive now, without sending anything.
    Preview {
        name: String,
        /// The chat to render for.
        #[arg(long)]
        chat: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Runs of a schedule (or all), newest first.
    Runs {
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Per-chat outcome of one run: sent, failed (with WeCom's reason), awaiting the
    /// owner's confirmation, skipped (route cannot post).
    RunReport {
        run_id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A/B report: per variant, deliveries and what followed within 24 h in those chats.
    Report {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Check this rule-set file instead of the set in force (stored in the database,
    /// else the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Base URL of the running `qunyun serve` whose callback URLs are verified
    /// (default: http:// + server.listen).
    #[arg(long, value_name = "BASE")]
    pub url: Option<String>,
    /// Check this rule-set file instead of the set in force.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Path to the TOML configuration file (see config.example.toml).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        Config::load(self.config.as_deref(), std::env::vars())
    }

    /// The operations layer over the configured database.
    async fn ops(&self) -> anyhow::Result<Ops> {
        let config = self.load()?;
        let scheduler = SchedulerSettings {
            app: config
                .wecom
                .apps
                .first()
                .map(|app| app.name.clone())
                .unwrap_or_else(|| SchedulerSettings::default().app),
            ..SchedulerSettings::default()
        };
        let pool = store::open(&config.database.path).await?;
        Ok(Ops::new(pool, ActiveRules::new(), scheduler)
            .with_configured_apps(config.app_names())
            .with_max_point_adjustment(config.admin.max_point_adjustment))
    }
}

/// Who the audit log names for this command: the OS user running it.
fn actor() -> Actor {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("LOGNAME").ok());
    Actor::cli(user.as_deref())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's stdout is its transcript; its own logs are noise unless asked for.
    let default_level = match cli.command {
        Command::Demo { .. } => telemetry::QUIET,
        _ => telemetry::DEFAULT,
    };
    telemetry::init(
        std::env::var("QUNYUN_LOG_FORMAT").is_ok_and(|v| v == "json"),
        default_level,
    );
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(arg) => {
                let config = arg.load()?;
                crate::doctor::check_rules(&config, None).await?;
                // Build the moderation character tables now, not on the first message.
                crate::rules::moderation::warm_up();
                let addr = config.listen_addr()?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                app::run(config, clock::system(), listener, app::shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig(CheckConfigArgs { rules, config }) => {
                let config = config.load()?;
                let in_force = crate::doctor::check_rules(&config, rules.as_deref()).await?;
                println!("config ok");
                println!(
                    "  rules:     {} (community.app = {})",
                    in_force.source, in_force.rules.doc.community.app
                );
                println!("  listen:    {}", config.server.listen);
                println!("  database:  {}", config.database.path.display());
                println!("  timezone:  {}", config.community.timezone);
                println!("  api_base:  {}", config.wecom.api_base);
                for app in &config.wecom.apps {
                    println!(
                        "  app {:<12} agent {} -> /wecom/apps/{}/callback",
                        app.name, app.agent_id, app.name
                    );
                }
                for bot in &config.wecom.bots {
                    println!(
                        "  bot {:<12} -> /wecom/bots/{}/callback",
                        bot.name, bot.name
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Doctor(DoctorArgs { url, rules, config }) => {
                let config = config.load()?;
                let options = crate::doctor::DoctorOptions {
                    url,
                    rules_file: rules,
                };
                let report = crate::doctor::run(&config, &options).await?;
                print!("{report}");
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Command::Sim(args) => {
                let var = crate::config::SIM_SECRET_VAR;
                let secret = std::env::var(var)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .with_context(|| {
                        format!(
                            "set {var} to the app secret the simulator accepts \
                             (kept off the command line, where other users can read it)"
                        )
                    })?;
                let config = crate::sim::SimConfig::from_args(
                    &args.corp_id,
                    &secret,
                    args.token_ttl,
                    args.scenario.as_deref(),
                )?;
                let listener = tokio::net::TcpListener::bind(&args.listen)
                    .await
                    .with_context(|| format!("binding {}", args.listen))?;
                println!(
                    "WeCom simulator on http://{}/cgi-bin/ (records at /sim/messages)",
                    listener.local_addr()?
                );
                crate::sim::run(config, listener, app::shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Schedules(command) => run_schedules(command).await,
            Command::BenchCallbacks { config, args } => {
                bench_callbacks::run(&config.load()?, &args)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Demo { once } => {
                crate::demo::run(crate::demo::DemoOptions { once, print: true }).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Rules(command) => run_rules(command).await,
            Command::Welcome(command) => run_welcome(command).await,
            Command::Outbox(command) => run_outbox(command).await,
            Command::Admin(command) => run_admin(command).await,
            Command::Analytics(command) => run_analytics(command).await,
            Command::Moderation(command) => run_moderation(command).await,
            Command::Chats(command) => run_chats(command).await,
            Command::Lottery(command) => lottery::run(command).await,
            Command::Archive(command) => archive::run(command).await,
            Command::Orders(command) => orders::run(command).await,
            Command::Tags(command) => orders::run_tags(command).await,
            Command::Polls(command) => polls::run(command).await,
            Command::Broadcast(args) => {
                let ops = args.config.ops().await?;
                let input = ops::broadcast::BroadcastInput {
                    chats: args.chats,
                    tags: args.tags,
                    text: args.text,
                    markdown: args.markdown,
                    request_key: None,
                };
                let sent = ops::broadcast::send(&ops, &actor(), chrono::Utc::now(), &input).await?;
                println!("broadcast {}", sent.id);
                for chat in &sent.chats {
                    println!("{}", chat.describe());
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Points(PointsCommand::Adjust {
                user,
                delta,
                reason,
                config,
            }) => {
                let ops = config.ops().await?;
                let now = chrono::Utc::now();
                let balance =
                    ops::points::adjust(&ops, &actor(), now, &user, delta, &reason).await?;
                println!("{user}: {delta:+} ({reason}); balance now {balance}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Points(PointsCommand::Expire { dry_run, config }) => {
                let ops = config.ops().await?;
                let done = ops::points::expire(&ops, &actor(), chrono::Utc::now(), dry_run).await?;
                let verb = if dry_run { "would expire" } else { "expired" };
                for item in &done {
                    println!(
                        "{}: {verb} {} points of {} (valid until {})",
                        item.user_id, item.points, item.period, item.last_day
                    );
                }
                let total: i64 = done.iter().map(|d| d.points).sum();
                println!("{} entries, {total} points {verb}", done.len());
                Ok(ExitCode::SUCCESS)
            }
            Command::Points(PointsCommand::Essence { message_id, config }) => {
                let ops = config.ops().await?;
                let marked =
                    ops::honour::mark_essence(&ops, &actor(), chrono::Utc::now(), &message_id)
                        .await?;
                if marked.already {
                    println!("{message_id}: already 精华; nothing paid");
                } else {
                    println!("{message_id}: 精华; {} +{}", marked.author, marked.points);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Backup(args) => {
                backup::backup(args).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Restore(args) => {
                backup::restore(args, chrono::Utc::now().timestamp()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Review(ReviewCommand::List { all, config }) => {
                let ops = config.ops().await?;
                let now = chrono::Utc::now();
                for item in ops::review::list(&ops, now, all).await? {
                    let row = &item.row;
                    let overdue = if item.overdue { " OVERDUE" } else { "" };
                    println!(
                        "#{} {} {} tier, member {} chat {} status {} due {}{overdue}",
                        row.id,
                        row.kind,
                        row.tier,
                        row.user_id,
                        row.chat_id.as_deref().unwrap_or("-"),
                        row.status,
                        chrono::DateTime::from_timestamp(item.due_at, 0).unwrap_or_default(),
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Review(ReviewCommand::Decide {
                id,
                decision,
                note,
                config,
            }) => {
                let ops = config.ops().await?;
                let decision = ops::review::ReviewDecision::parse(&decision).ok_or_else(|| {
                    anyhow::anyhow!(
                        "decision: expected confirm, dismiss, escalate, uphold or overturn"
                    )
                })?;
                let item =
                    ops::review::decide(&ops, &actor(), chrono::Utc::now(), id, decision, &note)
                        .await?;
                println!("review item {id}: {} ({} tier)", item.status, item.tier);
                Ok(ExitCode::SUCCESS)
            }
            Command::Redemptions(RedemptionsCommand::Cancel { id, reason, config }) => {
                let ops = config.ops().await?;
                let refunded =
                    ops::redemptions::cancel(&ops, &actor(), chrono::Utc::now(), id, &reason)
                        .await?;
                println!("redemption {id} cancelled; {refunded} points refunded");
                Ok(ExitCode::SUCCESS)
            }
            Command::Migrate(arg) => {
                let config = arg.load()?;
                let pool = store::open(&config.database.path).await?;
                pool.close().await;
                println!("database {} is up to date", config.database.path.display());
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn run_welcome(command: WelcomeCommand) -> anyhow::Result<ExitCode> {
    match command {
        WelcomeCommand::Status { config } => {
            let ops = config.ops().await?;
            println!("{}", ops::welcome::material(&ops).await?.describe());
            for digest in ops::welcome::digests(&ops, 20).await? {
                let sent = match &digest.mass_key {
                    Some(_) => format!(
                        "sent to owner by {}",
                        digest.mass_requested_by.as_deref().unwrap_or("?")
                    ),
                    None => "not sent".to_string(),
                };
                println!(
                    "digest {}  {}  {}  owner {}  {} newcomers  {sent}",
                    digest.id,
                    digest.created_at.format("%Y-%m-%d %H:%M"),
                    digest.chat_id,
                    digest.owner,
                    digest.newcomers.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WelcomeCommand::SendToOwner { digest, config } => {
            let ops = config.ops().await?;
            let sent =
                ops::welcome::send_to_owner(&ops, &actor(), chrono::Utc::now(), digest).await?;
            println!(
                "digest {}: mass message to {} queued; {} confirms it in WeCom",
                sent.digest_id, sent.chat_id, sent.owner
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    // Term lists may live in files next to the rule set (`terms_file`): inline them
    // before anything else, so validate and preview see exactly what would be stored.
    let read = |file: &PathBuf| -> anyhow::Result<String> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let base = file.parent().unwrap_or_else(|| std::path::Path::new("."));
        ops::rules::inline_term_files(&text, base)
    };
    match command {
        RulesCommand::Validate { file } => match ops::rules::validate(&read(&file)?) {
            Ok(_) => {
                println!("{}: valid", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for error in &errors.0 {
                    eprintln!("{}: {error}", file.display());
                }
                Ok(ExitCode::FAILURE)
            }
        },
        RulesCommand::Import { file, config } => {
            let text = read(&file)?;
            let ops = config.ops().await?;
            match ops::rules::apply(&ops, &actor(), chrono::Utc::now(), &text).await? {
                Applied::Version(version) => {
                    println!("imported {} as rule-set version {version}", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Applied::Invalid(problems) => {
                    for problem in &problems {
                        let at = problem.line.map(|l| format!(":{l}")).unwrap_or_default();
                        eprintln!("{}{at}: {}", file.display(), ops::rules::describe(problem));
                    }
                    eprintln!("nothing imported");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        RulesCommand::Rollback { version, config } => {
            let ops = config.ops().await?;
            let new_version =
                ops::rules::rollback(&ops, &actor(), chrono::Utc::now(), version).await?;
            println!("version {version} is active again as version {new_version}");
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Export { config } => {
            let ops = config.ops().await?;
            print!("{}", ops::rules::active(&ops).await?.body);
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Preview { file, template } => {
            let rules = ops::rules::validate(&read(&file)?).map_err(|errors| {
                anyhow::anyhow!(
                    "{}",
                    errors
                        .0
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            match ops::rules::preview_template(&rules, &template) {
                Some(text) => {
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no template named {template:?}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn run_moderation(command: ModerationCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        ModerationCommand::Check(args) => return moderation_check::run(args),
        ModerationCommand::Log {
            user,
            limit,
            config,
        } => {
            let ops = config.ops().await?;
            for row in ops::moderation::log_rows(&ops, user.as_deref(), limit).await? {
                println!(
                    "#{} {} chat={} member={} rule={} {}:{} matched={:?} action={}{}{}",
                    row.id,
                    row.at,
                    row.chat_id.as_deref().unwrap_or("-"),
                    row.user_id,
                    row.rule,
                    row.category,
                    row.severity,
                    row.matched,
                    row.action_taken,
                    if row.dry_run { " (dry run)" } else { "" },
                    row.reviewed_by
                        .map(|by| format!(" reviewed by {by}"))
                        .unwrap_or_default()
                );
            }
        }
        ModerationCommand::Revoke {
            strike_id,
            reason,
            config,
        } => {
            let ops = config.ops().await?;
            ops::moderation::revoke_strike(&ops, &actor(), now, strike_id, &reason).await?;
            println!("strike {strike_id} revoked");
        }
        ModerationCommand::Tasks { all, config } => {
            let ops = config.ops().await?;
            for task in ops::moderation::tasks(&ops, all).await? {
                println!(
                    "#{} {} {} chat={} member={} assignees={} log=#{}{}",
                    task.id,
                    task.status,
                    task.kind,
                    task.chat_id.as_deref().unwrap_or("-"),
                    task.user_id,
                    task.assignees.join(","),
                    task.log_id,
                    task.done_by
                        .map(|by| format!(" done by {by}"))
                        .unwrap_or_default()
                );
            }
        }
        ModerationCommand::Done {
            task_id,
            note,
            config,
        } => {
            let ops = config.ops().await?;
            ops::moderation::complete_task(&ops, &actor(), now, task_id, &note).await?;
            println!("task {task_id} done");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn change_chat_tags(
    config: &ConfigArg,
    now: chrono::DateTime<chrono::Utc>,
    chat: &str,
    change: ops::chats::TagChange,
    tags: &[String],
) -> anyhow::Result<()> {
    let ops = config.ops().await?;
    let tags = ops::chats::change_tags(&ops, &actor(), now, chat, change, tags).await?;
    println!("{chat}: tags {}", tags.join(","));
    Ok(())
}

async fn run_chats(command: ChatsCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        ChatsCommand::List(config) => {
            let ops = config.ops().await?;
            for chat in ops::chats::list(&ops, now).await? {
                println!(
                    "{}\t{}\t{}{}\ttags={}\tmembers={}",
                    chat.chat_id,
                    if chat.name.is_empty() {
                        "-"
                    } else {
                        &chat.name
                    },
                    chat.route,
                    if chat.has_robot { "+robot" } else { "" },
                    chat.tags.join(","),
                    chat.members
                );
            }
        }
        ChatsCommand::Show { chat, config } => {
            let ops = config.ops().await?;
            let detail = ops::chats::show(&ops, &chat).await?;
            println!("chat: {} {}", detail.chat.chat_id, detail.chat.name);
            println!("kind: {}", detail.kind);
            println!("robot: {}", if detail.robot { "yes" } else { "no" });
            println!(
                "smart bot: {}",
                detail.smart_bot.as_deref().unwrap_or("none")
            );
            println!("owner: {}", detail.chat.owner.as_deref().unwrap_or("-"));
            println!("tags: {}", detail.chat.tags.join(","));
            for row in &detail.capabilities {
                println!("{}: {}", row.feature.name(), row.summary);
            }
        }
        ChatsCommand::Set {
            chat,
            robot_key,
            smart_bot,
            no_robot,
            no_smart_bot,
            config,
        } => {
            let ops = config.ops().await?;
            let change = ops::chats::RouteChange {
                robot_key,
                smart_bot,
                no_robot,
                no_smart_bot,
            };
            let route = ops::chats::set_route(&ops, &actor(), now, &chat, &change).await?;
            println!("{chat}: {}", route.describe());
        }
        ChatsCommand::Tag { chat, tags, config } => {
            change_chat_tags(&config, now, &chat, ops::chats::TagChange::Add, &tags).await?;
        }
        ChatsCommand::Untag { chat, tags, config } => {
            change_chat_tags(&config, now, &chat, ops::chats::TagChange::Remove, &tags).await?;
        }
        ChatsCommand::CreateAppchat {
            name,
            owner,
            members,
            config,
        } => {
            let loaded = config.load()?;
            let app = loaded
                .wecom
                .apps
                .first()
                .context("no [[wecom.apps]] configured: app groups are created by an app")?;
            let api = crate::wecom::api::ApiClient::new(
                crate::wecom::api::ApiConfig::new(
                    loaded.wecom.api_base.clone(),
                    loaded.wecom.corp_id.clone(),
                ),
                clock::system(),
            )
            .map_err(|e| anyhow::anyhow!("building the WeCom API client: {e}"))?;
            let ops = config.ops().await?;
            let input = ops::chats::NewAppChat {
                name,
                owner,
                members,
            };
            let chat_id =
                ops::chats::create_appchat(&ops, &actor(), now, &api, &app.secret, &input).await?;
            println!("app group {chat_id} created and registered");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_outbox(command: OutboxCommand) -> anyhow::Result<ExitCode> {
    use crate::store::outbox::OutboxStatus;
    let now = chrono::Utc::now();
    match command {
        OutboxCommand::List { status, config } => {
            let status = status
                .map(|s| s.parse::<OutboxStatus>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
            let ops = config.ops().await?;
            let rows = ops::queues::outbox_rows(&ops, status).await?;
            for row in &rows {
                println!("{row}");
            }
            eprintln!("{} rows", rows.len());
        }
        OutboxCommand::Retry { id, config } => {
            let ops = config.ops().await?;
            ops::queues::retry_outbox(&ops, &actor(), now, id).await?;
            println!("outbox row {id} queued again");
        }
        OutboxCommand::RetryUncertain(config) => {
            let ops = config.ops().await?;
            let requeued = ops::queues::retry_uncertain(&ops, &actor(), now).await?;
            println!("{requeued} uncertain messages queued again");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_schedules(command: SchedulesCommand) -> anyhow::Result<ExitCode> {
    use crate::ops::schedules;
    let now = chrono::Utc::now();
    let print_json = |value: &dyn erased_json::Json| -> anyhow::Result<ExitCode> {
        println!("{}", value.to_pretty()?);
        Ok(ExitCode::SUCCESS)
    };
    match command {
        SchedulesCommand::Next { cron, tz, count } => {
            let times = crate::rules::schedule::next_fire_times_for_cli(&cron, &tz, now, count)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for time in times {
                println!("{}", time.to_rfc3339());
            }
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::List(config) => {
            let ops = config.ops().await?;
            for s in schedules::list(&ops, now).await? {
                let state = match (s.enabled, s.paused) {
                    (false, _) => "disabled",
                    (true, true) => "paused",
                    (true, false) => "active",
                };
                let next = s
                    .next_fires
                    .first()
                    .and_then(|fire| chrono::DateTime::from_timestamp(fire.at, 0))
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_else(|| "-".to_owned());
                println!(
                    "{:<24} {:<8} {:<22} {:<16} next {}  variants {}",
                    s.name,
                    state,
                    s.cron,
                    s.timezone,
                    next,
                    s.variants.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Pause { name, config } => {
            let ops = config.ops().await?;
            schedules::pause(&ops, &actor(), now, &name).await?;
            println!("{name} paused");
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Resume { name, config } => {
            let ops = config.ops().await?;
            schedules::resume(&ops, &actor(), now, &name).await?;
            println!("{name} resumed");
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Run { name, config } => {
            let ops = config.ops().await?;
            let run = schedules::run_now(&ops, &actor(), now, &name).await?;
            println!(
                "run {} of {name}: {} chats queued, {} skipped, {} outbox rows",
                run.run_id, run.chats, run.skipped, run.outbox_rows
            );
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Preview { name, chat, config } => {
            let ops = config.ops().await?;
            let previews = schedules::preview(&ops, &actor(), now, &name, Some(&chat)).await?;
            match previews.chats.into_iter().next() {
                Some(schedules::ChatPreview {
                    preview: Some(preview),
                    ..
                }) => print_json(&preview),
                Some(schedules::ChatPreview { error, .. }) => {
                    anyhow::bail!("{}", error.unwrap_or_default())
                }
                None => anyhow::bail!("nothing to preview for {chat}"),
            }
        }
        SchedulesCommand::Runs {
            name,
            limit,
            config,
        } => {
            let ops = config.ops().await?;
            print_json(&schedules::runs(&ops, name.as_deref(), limit).await?)
        }
        SchedulesCommand::RunReport { run_id, config } => {
            let ops = config.ops().await?;
            print_json(&schedules::run_report(&ops, run_id).await?)
        }
        SchedulesCommand::Report { name, config } => {
            let ops = config.ops().await?;
            print_json(&schedules::variant_report(&ops, &name).await?)
        }
    }
}

/// Pretty JSON for any serialisable report, behind a trait object so one closure serves all.
mod erased_json {
    pub trait Json {
        fn to_pretty(&self) -> anyhow::Result<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self) -> anyhow::Result<String> {
            Ok(serde_json::to_string_pretty(self)?)
        }
    }
}

async fn run_analytics(command: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    use crate::jobs::analytics::{self, Analytics, AnalyticsSettings};
    let now = chrono::Utc::now();
    match command {
        AnalyticsCommand::Run(config) => {
            let pool = open_store(&config).await?;
            let outcome = Analytics::new(pool, AnalyticsSettings::default())
                .run_once(now)
                .await?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        }
        AnalyticsCommand::Show { days, chat, config } => {
            let pool = open_store(&config).await?;
            print!(
                "{}",
                analytics::report(&pool, now, days, chat.as_deref()).await?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_store(config: &ConfigArg) -> anyhow::Result<sqlx::SqlitePool> {
    let config = config.load()?;
    store::open(&config.database.path).await
}

async fn run_admin(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        AdminCommand::CreateUser {
            username,
            role,
            config,
        } => {
            let role: Role = role.parse().context("--role")?;
            let password = read_password(&username)?;
            let ops = config.ops().await?;
            ops::accounts::create_user(&ops, &actor(), now, &username, &password, role).await?;
            println!("account {username} created");
        }
        AdminCommand::CreateToken {
            username,
            label,
            expires_in_days,
            config,
        } => {
            let ops = config.ops().await?;
            let token = ops::accounts::create_token_expiring(
                &ops,
                &actor(),
                now,
                &username,
                &label,
                expires_in_days,
            )
            .await?;
            println!("{token}");
            eprintln!("shown once: store it now");
        }
        AdminCommand::DisableUser { username, config } => {
            let ops = config.ops().await?;
            ops::accounts::set_disabled(&ops, &actor(), now, &username, true).await?;
            println!("account {username} disabled");
        }
        AdminCommand::EnableUser { username, config } => {
            let ops = config.ops().await?;
            ops::accounts::set_disabled(&ops, &actor(), now, &username, false).await?;
            println!("account {username} enabled");
        }
        AdminCommand::ResetPassword { username, config } => {
            let password = read_password(&username)?;
            let ops = config.ops().await?;
            ops::accounts::reset_password(&ops, &actor(), now, &username, &password).await?;
            println!("password of {username} reset; its sessions ended");
        }
        AdminCommand::EndSessions { username, config } => {
            let ops = config.ops().await?;
            let ended = ops::accounts::end_sessions(&ops, &actor(), now, &username).await?;
            println!("{ended} sessions of {username} ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// QUNYUN_ADMIN_PASSWORD, or one line of standard input: never the command line.
fn read_password(username: &str) -> anyhow::Result<String> {
    Ok(match std::env::var("QUNYUN_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprintln!("password for {username} (one line on stdin):");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    })
}
