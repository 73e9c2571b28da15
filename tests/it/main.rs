//! Integration tests: the real server on 127.0.0.1:0 with a temp SQLite file.

mod callback;
mod groupsync;
mod helpers;
mod ingest;
mod leaderboard;
mod ops_cli;
mod serve;
