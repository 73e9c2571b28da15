//! Deciding what to do, without I/O. Each rule family lives in its own module.

pub mod schedule;
