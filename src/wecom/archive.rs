//! The message archive (会话内容存档) read through Tencent's closed C SDK
//! (docs/wecom.md#message-archive): [`ffi`] opens the vendor library at run
//! time, [`keys`] decrypts each record's random key with our RSA private key
//! of the record's version, and [`records`] turns the SDK's JSON into typed
//! records. The job that pulls lives in `jobs::archive`.

pub mod ffi;
pub mod keys;
pub mod records;
