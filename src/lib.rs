//! qunyun: a WeCom (企业微信) group-operations bot.
//!
//! Where to look: `wecom` speaks the protocol (crypto, parsing, callbacks, API
//! client), `rules` decides (pure), `store` holds every SQL statement, `jobs`
//! send and schedule, `ops` is every manager action once (the CLI and the
//! `admin` console adapt to it), `sim` is the built-in WeCom simulator, `app`
//! wires it up.

pub mod active_rules;
pub mod admin;
pub mod analytics;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod ingest;
pub mod jobs;
pub mod ops;
pub mod pipeline;
pub mod rules;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod wecom;
