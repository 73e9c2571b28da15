//! Speaking WeCom's protocol: callback crypto, message parsing, callbacks and the API client.

pub mod crypto;
