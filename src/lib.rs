//! qunyun: a WeCom (企业微信) group-operations bot.
//!
//! The architecture (data flow, transaction boundaries, where to add a feature)
//! is in `docs/ARCHITECTURE.md`; the WeCom facts the code relies on are in
//! `docs/wecom.md`. A tour of the modules:
//!
//! - In: `wecom` speaks the protocol (crypto, parsing, the callback endpoints,
//!   the API client); `ingest` accepts message-archive batches. Both only write
//!   the inbox.
//! - Deciding, pure (no I/O, no clock reads): `rules` (`evaluate`, the rule set,
//!   schedules, moderation), `analytics` (rollups, lifecycle stages, alerts).
//! - Doing: `pipeline` is the event worker (inbox row → `inbox_event` →
//!   `snapshot` → `rules::evaluate` → one transaction); `outbound` is the one
//!   way to queue a message (typed payloads, `route_for`); `jobs` runs the
//!   background work (sender, scheduler, analytics, group sync, invite rewards)
//!   under one supervised loop; `active_rules` serves the active rule set.
//! - Managers: `ops` is every manager action once, audited in the same
//!   transaction; `admin` (console and JSON API) and `cli` adapt to it.
//! - Underneath: `store` holds every SQL statement; `config`, `clock`, `error`,
//!   `telemetry`; `app` wires it all up; `sim` is the built-in WeCom simulator
//!   and `demo` plays a community against it.

pub mod active_rules;
pub mod admin;
pub mod analytics;
pub mod app;
pub mod card_clicks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod inbox_event;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod pipeline;
pub mod rules;
pub mod sim;
pub mod snapshot;
pub mod store;
pub mod telemetry;
pub mod wecom;
