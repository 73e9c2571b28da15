//! Background jobs. Each exposes `run_once()`, which tests drive directly; the
//! loop around it only waits, calls it and watches the shutdown token.

pub mod analytics;
pub mod groupsync;
pub mod invites;
pub mod outbox;
pub mod scheduler;
