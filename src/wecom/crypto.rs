//! The WXBizMsgCrypt scheme (PROTOCOL.md §1): SHA-1 signatures over four sorted strings,
//! AES-256-CBC with the IV taken from the key, and PKCS#7-style padding to **32-byte**
//! blocks that we validate by hand. Pure: no I/O, no clock, no logging.
//!
//! Plaintext layout: `random(16) || msg_len (u32 BE) || msg || receive_id || pad`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use rand::{Rng, RngCore};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Length of an EncodingAESKey as configured on the admin page (43 base64 chars, no `=`).
const ENCODING_AES_KEY_LEN: usize = 43;
const AES_KEY_LEN: usize = 32;
const AES_BLOCK_LEN: usize = 16;
const RANDOM_PREFIX_LEN: usize = 16;
/// Random prefix plus the 4-byte big-endian message length.
const HEADER_LEN: usize = RANDOM_PREFIX_LEN + 4;
/// WeCom pads to 32-byte blocks, not AES's 16 (PROTOCOL.md §1.4, §6.1).
const PAD_BLOCK_LEN: usize = 32;
const SIGNATURE_HEX_LEN: usize = 40;

/// 43 chars carry 258 bits, so the last char has 2 surplus bits that WeCom's keys
/// usually set; the default engine would reject them (PROTOCOL.md §1.2).
const AES_KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Failures of the official libraries, with their numbers (PROTOCOL.md §1.10).
/// Display texts are safe to log: they never contain keys, tokens or message bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("message signature does not match")]
    BadSignature,
    #[error("callback envelope could not be parsed")]
    ParseEnvelope,
    #[error("signature could not be computed")]
    ComputeSignature,
    #[error("EncodingAESKey must be 43 base64 characters decoding to 32 bytes")]
    IllegalAesKey,
    #[error("receive id in the message does not match the configured one")]
    WrongReceiver,
    #[error("AES encryption failed")]
    EncryptAes,
    #[error("AES decryption failed")]
    DecryptAes,
    #[error("decrypted message has invalid padding")]
    BadPadding,
    #[error("decrypted message is malformed")]
    IllegalBuffer,
    #[error("base64 encoding failed")]
    EncodeBase64,
    #[error("ciphertext is not valid base64")]
    DecodeBase64,
    #[error("reply envelope could not be built")]
    BuildReply,
}

impl CryptoError {
    /// The official library's error number, so our logs compare with the SDKs'.
    pub fn code(&self) -> i32 {
        match self {
            CryptoError::BadSignature => -40001,
            CryptoError::ParseEnvelope => -40002,
            CryptoError::ComputeSignature => -40003,
            CryptoError::IllegalAesKey => -40004,
            CryptoError::WrongReceiver => -40005,
            CryptoError::EncryptAes => -40006,
            CryptoError::DecryptAes | CryptoError::BadPadding => -40007,
            CryptoError::IllegalBuffer => -40008,
            CryptoError::EncodeBase64 => -40009,
            CryptoError::DecodeBase64 => -40010,
            CryptoError::BuildReply => -40011,
        }
    }
}

/// One configured callback endpoint: token + key + the receive id expected in plaintexts
/// (the CorpID for apps, "" for the smart bot). Debug does not print token or key.
#[derive(Clone)]
pub struct MsgCrypt {
    token: String,
    /// Key schedule expanded once here rather than per message: it is on the hot path.
    cipher: Aes256,
    /// The first 16 key bytes; constant for a key, as the scheme prescribes.
    iv: aes::Block,
    receive_id: String,
}

impl fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

impl MsgCrypt {
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        receive_id: &str,
    ) -> Result<Self, CryptoError> {
        let key = decode_aes_key(encoding_aes_key)?;
        let cipher = Aes256::new_from_slice(&key).map_err(|_| CryptoError::IllegalAesKey)?;
        let iv = aes::Block::clone_from_slice(&key[..AES_BLOCK_LEN]);
        Ok(Self {
            token: token.to_owned(),
            cipher,
            iv,
            receive_id: receive_id.to_owned(),
        })
    }

    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// `msg_signature` for these values: 40 lowercase hex characters.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(&self.token, timestamp, nonce, encrypt)
    }

    /// Checks `msg_signature` in constant time. `timestamp` and `nonce` must be the exact
    /// query-string text, `encrypt` the base64 exactly as received.
    pub fn verify_signature(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = signature_hex(&self.token, timestamp, nonce, encrypt);
        if bool::from(expected.as_slice().ct_eq(msg_signature.as_bytes())) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Decrypts an `Encrypt`/`echostr` value and returns the message bytes, after checking
    /// the padding, the length field and the receive id. Does not check the signature.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypt)
            .map_err(|_| CryptoError::DecodeBase64)?;
        let msg = self.open_in_place(&mut buf)?;
        // Reuse the decoded buffer for the result instead of allocating a second one.
        let msg_len = msg.len();
        buf.copy_within(msg, 0);
        buf.truncate(msg_len);
        Ok(buf)
    }

    /// What a callback handler calls: signature first, then [`MsgCrypt::decrypt`].
    pub fn verify_and_decrypt(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)?;
        self.decrypt(encrypt)
    }

    /// Encrypts `msg` for WeCom with a fresh random 16-byte prefix; returns base64.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer: the format's length field has 32 bits.
    pub fn encrypt(&self, msg: &[u8]) -> String {
        let mut random = [0u8; RANDOM_PREFIX_LEN];
        rand::thread_rng().fill_bytes(&mut random);
        self.encrypt_with_random(msg, &random)
    }

    /// [`MsgCrypt::encrypt`] with a caller-chosen prefix, so tests get fixed ciphertexts.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer: the format's length field has 32 bits.
    pub fn encrypt_with_random(&self, msg: &[u8], random: &[u8; RANDOM_PREFIX_LEN]) -> String {
        let msg_len = u32::try_from(msg.len())
            .expect("WeCom messages carry a 32-bit length; ours are far below 4 GiB");
        let content_len = HEADER_LEN + msg.len() + self.receive_id.len();
        // A content length that is already a multiple of 32 still gets a whole block of
        // 32 pad bytes (0x20); skipping it yields replies WeCom cannot decrypt.
        let pad = PAD_BLOCK_LEN - content_len % PAD_BLOCK_LEN;
        let mut buf = Vec::with_capacity(content_len + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg);
        buf.extend_from_slice(self.receive_id.as_bytes());
        // `pad` is 1..=32, so the cast is exact.
        buf.resize(content_len + pad, pad as u8);

        let mut encryptor = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv);
        for block in buf.chunks_exact_mut(AES_BLOCK_LEN) {
            encryptor.encrypt_block_mut(aes::Block::from_mut_slice(block));
        }
        STANDARD.encode(&buf)
    }

    /// The encrypted passive reply envelope of PROTOCOL.md §1.8 for `reply_xml`.
    pub fn seal_xml_reply(&self, reply_xml: &str, timestamp: &str, nonce: &str) -> String {
        let encrypt = self.encrypt(reply_xml.as_bytes());
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        format!(
            "<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n\
             <MsgSignature><![CDATA[{msg_signature}]]></MsgSignature>\n\
             <TimeStamp>{}</TimeStamp>\n<Nonce><![CDATA[{}]]></Nonce>\n</xml>",
            escape_xml_text(timestamp),
            escape_cdata(nonce),
        )
    }

    /// The JSON reply of PROTOCOL.md §1.9, `timestamp` as a number; the signature is over
    /// its decimal text.
    pub fn seal_json_reply(&self, reply_json: &str, timestamp: u64, nonce: &str) -> String {
        let encrypt = self.encrypt(reply_json.as_bytes());
        let msg_signature = self.signature(&timestamp.to_string(), nonce, &encrypt);
        serde_json::json!({
            "encrypt": encrypt,
            "msgsignature": msg_signature,
            "timestamp": timestamp,
            "nonce": nonce,
        })
        .to_string()
    }

    /// Decrypts `buf` in place and returns where the message lies in it, after checking
    /// padding, length field and receive id, in the order the official libraries do.
    fn open_in_place(&self, buf: &mut [u8]) -> Result<Range<usize>, CryptoError> {
        if buf.is_empty() || buf.len() % AES_BLOCK_LEN != 0 {
            return Err(CryptoError::DecryptAes);
        }
        let plain = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv)
            .decrypt_padded_mut::<NoPadding>(buf)
            .map_err(|_| CryptoError::DecryptAes)?;
        let content = &plain[..unpadded_len(plain)?];
        let msg = message_range(content)?;
        if content[msg.end..] != *self.receive_id.as_bytes() {
            return Err(CryptoError::WrongReceiver);
        }
        Ok(msg)
    }
}

/// Length of `plain` without its padding: the last byte `pad` must be 1..=32 and the
/// last `pad` bytes must all equal it.
fn unpadded_len(plain: &[u8]) -> Result<usize, CryptoError> {
    let Some(&last) = plain.last() else {
        return Err(CryptoError::BadPadding);
    };
    let pad = usize::from(last);
    if pad == 0 || pad > PAD_BLOCK_LEN || pad > plain.len() {
        return Err(CryptoError::BadPadding);
    }
    let content_len = plain.len() - pad;
    // No early exit, so timing does not tell which pad byte was wrong.
    let mismatch = plain[content_len..]
        .iter()
        .fold(0u8, |acc, &byte| acc | (byte ^ last));
    if mismatch != 0 {
        return Err(CryptoError::BadPadding);
    }
    Ok(content_len)
}

/// Where the message lies in the unpadded plaintext, from its length field. Everything
/// after it is the receive id.
fn message_range(content: &[u8]) -> Result<Range<usize>, CryptoError> {
    let length_field: [u8; 4] = content
        .get(RANDOM_PREFIX_LEN..HEADER_LEN)
        .and_then(|field| field.try_into().ok())
        .ok_or(CryptoError::IllegalBuffer)?;
    // Compare in u64 so a huge field (0xFFFFFFF0) cannot wrap on any platform.
    let msg_len = u64::from(u32::from_be_bytes(length_field));
    let available = (content.len() - HEADER_LEN) as u64;
    if msg_len > available {
        return Err(CryptoError::IllegalBuffer);
    }
    // msg_len <= available, which came from a usize, so it fits.
    let msg_len = msg_len as usize;
    Ok(HEADER_LEN..HEADER_LEN + msg_len)
}

/// SHA-1 over the four strings sorted, hex. Free function so the simulator can sign too.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    signature_hex(token, timestamp, nonce, encrypt)
        .iter()
        .map(|&byte| char::from(byte))
        .collect()
}

/// The signature as lowercase hex ASCII on the stack: no allocation when verifying.
fn signature_hex(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
) -> [u8; SIGNATURE_HEX_LEN] {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    // Feeding the parts one by one hashes the same bytes as their concatenation.
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Decodes a 43-char EncodingAESKey leniently about the surplus low bits (§1.2). Rejects
/// other lengths and characters outside the base64 alphabet with `IllegalAesKey`.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
        return Err(CryptoError::IllegalAesKey);
    }
    let key = AES_KEY_ENGINE
        .decode(encoding_aes_key)
        .map_err(|_| CryptoError::IllegalAesKey)?;
    <[u8; AES_KEY_LEN]>::try_from(key.as_slice()).map_err(|_| CryptoError::IllegalAesKey)
}

/// A fresh random nonce (10 decimal digits, like WeCom's) for replies and the simulator.
pub fn fresh_nonce() -> String {
    rand::thread_rng()
        .gen_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}

/// Text for an XML element body: `&`, `<`, `>` escaped (nothing to do for digits).
fn escape_xml_text(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// Text for a CDATA section: a `]]>` inside would end it early, so split it across two.
fn escape_cdata(text: &str) -> Cow<'_, str> {
    if text.contains("]]>") {
        Cow::Owned(text.replace("]]>", "]]]]><![CDATA[>"))
    } else {
        Cow::Borrowed(text)
    }
}
