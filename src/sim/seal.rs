//! TEMPORARY stand-in for `crate::wecom::crypto` (being written on another
//! branch) with the same API the driver uses: `MsgCrypt::new`, `.encrypt`,
//! `.signature`, `fresh_nonce`. Encrypt-only, PROTOCOL.md §1.2–§1.4.
//! Replace with `pub(crate) use crate::wecom::crypto::{fresh_nonce, MsgCrypt};`
//! once that module is on main.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::{alphabet, Engine};
use rand::Rng;
use sha1::{Digest, Sha1};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("EncodingAESKey does not decode to 32 bytes")]
    IllegalAesKey,
}

pub struct MsgCrypt {
    token: String,
    key: [u8; 32],
    receive_id: String,
}

impl MsgCrypt {
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<Self, SealError> {
        // 43 chars carry 2 surplus bits that real keys set (§1.2).
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| SealError::IllegalAesKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::IllegalAesKey)?;
        Ok(Self {
            token: token.to_owned(),
            key,
            receive_id: receive_id.to_owned(),
        })
    }

    pub fn encrypt(&self, msg: &[u8]) -> String {
        let random: [u8; 16] = rand::thread_rng().gen();
        let mut plain = Vec::with_capacity(msg.len() + 64);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg);
        plain.extend_from_slice(self.receive_id.as_bytes());
        // PKCS#7 to a multiple of 32, a whole block when already aligned.
        let pad = 32 - (plain.len() % 32);
        plain.resize(plain.len() + pad, pad as u8);
        let len = plain.len();
        let encryptor = cbc::Encryptor::<aes::Aes256>::new(&self.key.into(), self.key[..16].into());
        match encryptor.encrypt_padded_mut::<NoPadding>(&mut plain, len) {
            Ok(cipher) => STANDARD.encode(cipher),
            // Unreachable: the buffer is a whole number of blocks.
            Err(_) => String::new(),
        }
    }

    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        hex::encode(Sha1::digest(parts.concat().as_bytes()))
    }
}

pub fn fresh_nonce() -> String {
    rand::thread_rng()
        .gen_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}
