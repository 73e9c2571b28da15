//! The command line. Each subcommand loads what it needs and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::{app, clock, store, telemetry};

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
    /// Load and validate the configuration, print a summary (no secrets), and exit.
    CheckConfig(ConfigArg),
    /// Create or upgrade the database schema, then exit.
    Migrate(ConfigArg),
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(std::env::var("QUNYUN_LOG_FORMAT").is_ok_and(|v| v == "json"));
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
                let addr = config.listen_addr()?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                app::run(config, clock::system(), listener, app::shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig(arg) => {
                let config = arg.load()?;
                println!("config ok");
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
