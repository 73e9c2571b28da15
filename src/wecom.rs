//! Speaking WeCom's protocol: callback crypto, message parsing, callbacks and the API client.

/// Decrypted callback plaintext (XML or smart-bot JSON) into typed `Event`s; pure.
pub mod message;
