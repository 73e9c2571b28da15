//! WeCom protocol: the outbound API client (`api`); callbacks and crypto live beside it.

pub mod api;
