//! Integration tests: the real server on 127.0.0.1:0 with a temp SQLite file.

mod admin;
mod analytics;
mod callback;
mod chats;
mod checkin;
mod config;
mod crash;
mod demo;
mod doctor;
mod engine;
mod groupsync;
mod helpers;
mod ingest;
mod leaderboard;
mod limits;
mod migrations;
mod moderation;
mod onboarding;
mod ops_cli;
mod outbox;
mod outbox_delivery;
mod scheduler;
mod serve;
mod sim;
mod welcome;
