//! Integration tests: the real server on 127.0.0.1:0 with a temp SQLite file.

mod callback;
mod chats;
mod config;
mod doctor;
mod groupsync;
mod helpers;
mod ingest;
mod leaderboard;
mod migrations;
mod onboarding;
mod ops_cli;
mod serve;
mod welcome;
