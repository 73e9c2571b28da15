//! Everything WeCom-specific: the callback crypto, message parsing, the HTTP
//! callback endpoints and the outbound API client.

pub mod api;
pub mod archive;
pub mod callback;
pub mod crypto;
pub mod longconn;
pub mod message;
