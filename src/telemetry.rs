//! Structured logs through `tracing`. `RUST_LOG` picks the level (default `info`);
//! `QUNYUN_LOG_FORMAT=json` switches to JSON lines for log collectors.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init: a second call (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
