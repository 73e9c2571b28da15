//! Structured logs through `tracing`. `RUST_LOG` picks the level (default `info`,
//! `warn` for `qunyun demo`); `QUNYUN_LOG_FORMAT=json` switches to JSON lines for
//! log collectors. Logs go to stderr so that stdout carries only what a command
//! prints.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT: &str = "info,sqlx=warn,tower_http=info";
/// For commands whose stdout is the point (the demo's transcript).
pub const QUIET: &str = "warn";

/// `default_filter` applies when `RUST_LOG` is unset (or unreadable).
pub fn init(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only for a person at a terminal, not in journald or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // try_init: a second call (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
