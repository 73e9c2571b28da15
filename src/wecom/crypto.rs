//! The WXBizMsgCrypt scheme (docs/wecom.md#callback-crypto): SHA-1 signatures over four sorted strings,
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
/// WeCom pads to 32-byte blocks, not AES's 16 (docs/wecom.md#plaintext-layout-and-padding).
const PAD_BLOCK_LEN: usize = 32;
const SIGNATURE_HEX_LEN: usize = 40;

/// 43 chars carry 258 bits, so the last char has 2 surplus bits that WeCom's keys
/// usually set; the default engine would reject them (docs/wecom.md#key-and-iv).
const AES_KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Failures of the official libraries, with their numbers (docs/wecom.md#crypto-error-numbers).
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
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<Self, CryptoError> {
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
        // Strict standard base64 (padding required), decoded with SIMD: this is a
        // sizeable share of each callback's CPU time.
        let mut buf = base64_simd::STANDARD
            .decode_to_vec(encrypt)
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

    /// The encrypted passive reply envelope of docs/wecom.md#passive-replies for `reply_xml`.
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

    /// The JSON reply of docs/wecom.md#json-envelope, `timestamp` as a number; the signature is over
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

/// Decodes a 43-char EncodingAESKey leniently about the surplus low bits (docs/wecom.md#key-and-iv). Rejects
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use cbc::cipher::KeyIvInit;
    use proptest::prelude::*;

    // Key set of sbzhu/weworkapi_golang `sample.go`, sbzhu/weworkapi_php `callback/Sample.php`,
    // workweixin/weworkapi_cplusplus `Sample.cpp`, workweixin/weworkapi_golang
    // `json_callback/sample.go`.
    const TOKEN_1: &str = "QDG6eK";
    const KEY_1: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP_1: &str = "wx5823bf96d3bd56c7";
    // Key set of sbzhu/weworkapi_python `callback/Sample.py` and `callback_json/Sample.py`.
    const TOKEN_2: &str = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo";
    const KEY_2: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";
    const CORP_2: &str = "ww1436e0e65a779aee";

    struct Vector {
        source: &'static str,
        token: &'static str,
        key: &'static str,
        receive_id: &'static str,
        msg_signature: &'static str,
        timestamp: &'static str,
        nonce: &'static str,
        encrypt: &'static str,
        msg: &'static str,
        /// The pad byte, read independently (Python `cryptography`) while checking the vector.
        pad: u8,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            source: "sbzhu/weworkapi_golang sample.go, URL verification (same in Sample.php, Sample.cpp)",
            token: TOKEN_1,
            key: KEY_1,
            receive_id: CORP_1,
            msg_signature: "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            timestamp: "1409659589",
            nonce: "263014780",
            encrypt: "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
            msg: "1616140317555161061",
            pad: 7,
        },
        Vector {
            source: "sbzhu/weworkapi_golang sample.go, POST message (same in Sample.php, Sample.cpp)",
            token: TOKEN_1,
            key: KEY_1,
            receive_id: CORP_1,
            msg_signature: "477715d11cdb4164915debcba66cb864d751f3e6",
            timestamp: "1409659813",
            nonce: "1372623149",
            encrypt: "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
            msg: "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>",
            pad: 30,
        },
        Vector {
            source: "workweixin/weworkapi_golang json_callback/sample.go, the reqData/reqMsgSign pair in code",
            token: TOKEN_1,
            key: KEY_1,
            receive_id: CORP_1,
            msg_signature: "0623cbc5a8cbee5bcc137c70de99575366fc2af3",
            timestamp: "1409659813",
            nonce: "1372623149",
            encrypt: "CZWs4CWRpI4VolQlvn4dlEC1alN2MUEY2VklGehgBVLBrlVF7SyT+SV+Toj43l4ayJ9UMGKphktKKmP7B2j/P1ey67XB8PBgS7Wr5/8+w/yWriZv3Vmoo/MH3/1HsIWZrPQ3N2mJrelStIfI2Y8kLKXA7EhfZgZX4o+ffdkZDM76SEl79Ib9mw7TGjZ9Aw/x/A2VjNbV1E8BtEbRxYYcQippYNw7hr8sFfa3nW1xLdxokt8QkRX83vK3DFP2F6TQFPL2Tu98UwhcUpPvdJBuu1/yiOQIScppV3eOuLWEsko=",
            msg: "{\"ToUserName\":\"wx5823bf96d3bd56c7\",\"FromUserName\":\"mycreate\",\"CreateTime\": 1409659813,\"MsgType\":\"text\",\"Content\":\"hello\",\"MsgId\":4561255354251345929,\"AgentID\": 218}",
            pad: 22,
        },
        Vector {
            source: "sbzhu/weworkapi_python callback/Sample.py, URL verification",
            token: TOKEN_2,
            key: KEY_2,
            receive_id: CORP_2,
            msg_signature: "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
            timestamp: "1476416373",
            nonce: "47744683",
            encrypt: "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
            msg: "1288432023552776189",
            pad: 7,
        },
        Vector {
            source: "sbzhu/weworkapi_python callback/Sample.py, POST message",
            token: TOKEN_2,
            key: KEY_2,
            receive_id: CORP_2,
            msg_signature: "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
            timestamp: "1476422779",
            nonce: "1597212914",
            encrypt: "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+",
            msg: "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>",
            pad: 22,
        },
        Vector {
            source: "sbzhu/weworkapi_python callback_json/Sample.py (also callback_python3/Sample.py)",
            token: TOKEN_2,
            key: KEY_2,
            receive_id: CORP_2,
            msg_signature: "e3647471e395139e2308c1fa963f2d648a00b90e",
            timestamp: "1409659813",
            nonce: "1372623149",
            encrypt: "cjhLUX7UU4yCSelv1vz7T0zT8huF51bAMVWriNvO1FMegHrQZNrtvRxbwf0fUPsFvwqR0U0fgiJNEA5Y30F2MoI2S7vv3EjVQ68C0cjw9frBoUE2Hj0BvFp9h3u6Vbsg4lc1C8AtHdaN8orKuNKkLRLuYEL52R1J3v8olJGZRLnRdVKIivixmX/eQpzgeExtp20jI1HxRP1AAZ6xZoILdqDPO549LO4WeG+685JRUTdiwcY5fjZlqeMxuT4PpMn1X9OWsS7NRj06Wa5E3Tvg4twjWp39KPfOdRte6P1T4JU=",
            msg: "{ \"ToUserName\": \"wx5823bf96d3bd56c7\", \"FromUserName\": :mycreate\", \"CreateTime\": 1409659813, \"MsgType\": \"text\", \"Content\": \"hello\", \"MsgId\": 4561255354251345929, \"AgentID\": 218}",
            pad: 10,
        },
    ];

    fn crypt(token: &str, key: &str, receive_id: &str) -> MsgCrypt {
        MsgCrypt::new(token, key, receive_id).unwrap()
    }

    /// Plain AES-256-CBC decryption with no unpadding, built straight from the cipher
    /// crates so the tests can look at pad bytes independently of `MsgCrypt`.
    fn raw_decrypt(key: &[u8; 32], encrypt: &str) -> Vec<u8> {
        let mut buf = STANDARD.decode(encrypt).unwrap();
        cbc::Decryptor::<Aes256>::new_from_slices(key, &key[..16])
            .unwrap()
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .unwrap()
            .to_vec()
    }

    /// Encrypts an arbitrary (block-aligned) plaintext with no padding added.
    fn raw_encrypt(key: &[u8; 32], plain: &[u8]) -> String {
        let mut buf = plain.to_vec();
        let len = buf.len();
        let ciphertext = cbc::Encryptor::<Aes256>::new_from_slices(key, &key[..16])
            .unwrap()
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap();
        STANDARD.encode(ciphertext)
    }

    /// `random || length_field || msg || receive_id`, unpadded.
    fn content(length_field: u32, msg: &[u8], receive_id: &str) -> Vec<u8> {
        let mut buf = b"0123456789abcdef".to_vec();
        buf.extend_from_slice(&length_field.to_be_bytes());
        buf.extend_from_slice(msg);
        buf.extend_from_slice(receive_id.as_bytes());
        buf
    }

    fn with_pad(mut content: Vec<u8>, pad_value: u8, pad_count: usize) -> Vec<u8> {
        content.resize(content.len() + pad_count, pad_value);
        content
    }

    fn key_2() -> [u8; 32] {
        decode_aes_key(KEY_2).unwrap()
    }

    fn flip_bit(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8] ^= 1 << (bit % 8);
    }

    #[test]
    fn official_sample_vectors_verify_and_decrypt() {
        for v in VECTORS {
            let c = crypt(v.token, v.key, v.receive_id);
            assert_eq!(
                c.signature(v.timestamp, v.nonce, v.encrypt),
                v.msg_signature,
                "{}",
                v.source
            );
            assert_eq!(
                signature(v.token, v.timestamp, v.nonce, v.encrypt),
                v.msg_signature,
                "{}",
                v.source
            );
            let msg = c
                .verify_and_decrypt(v.msg_signature, v.timestamp, v.nonce, v.encrypt)
                .unwrap_or_else(|e| panic!("{}: {e}", v.source));
            assert_eq!(msg, v.msg.as_bytes(), "{}", v.source);

            let plain = raw_decrypt(&decode_aes_key(v.key).unwrap(), v.encrypt);
            assert_eq!(plain.last(), Some(&v.pad), "{}", v.source);
            let receive_id_end = plain.len() - usize::from(v.pad);
            assert_eq!(
                &plain[receive_id_end - v.receive_id.len()..receive_id_end],
                v.receive_id.as_bytes(),
                "{}",
                v.source
            );
        }
        // The brief asks for pads above 16: the generic 16-byte unpadder's failure case.
        assert!(VECTORS.iter().filter(|v| v.pad > 16).count() >= 3);
    }

    #[test]
    fn official_vectors_with_another_receive_id_are_wrong_receiver() {
        for v in VECTORS {
            for other in ["", "ww0000000000000000", &v.receive_id[1..]] {
                let c = crypt(v.token, v.key, other);
                assert_eq!(
                    c.verify_and_decrypt(v.msg_signature, v.timestamp, v.nonce, v.encrypt),
                    Err(CryptoError::WrongReceiver),
                    "{}",
                    v.source
                );
            }
        }
    }

    #[test]
    fn official_vectors_with_the_other_token_or_key_are_rejected() {
        for v in VECTORS {
            let (other_token, other_key) = if v.token == TOKEN_1 {
                (TOKEN_2, KEY_2)
            } else {
                (TOKEN_1, KEY_1)
            };
            let wrong_token = crypt(other_token, v.key, v.receive_id);
            assert_eq!(
                wrong_token.verify_and_decrypt(v.msg_signature, v.timestamp, v.nonce, v.encrypt),
                Err(CryptoError::BadSignature)
            );
            // A wrong key garbles everything; the pad check almost always notices first.
            let wrong_key = crypt(v.token, other_key, v.receive_id);
            assert!(wrong_key.decrypt(v.encrypt).is_err(), "{}", v.source);
        }
    }

    /// workweixin/weworkapi_golang `json_callback/sample.go`: the explanatory comment pairs
    /// this ciphertext with `477715d1…`, the signature of the XML sample (docs/wecom.md#test-vectors).
    #[test]
    fn go_json_sample_comment_pairing_fails_the_signature_but_decrypts() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        let encrypt = "CZWs4CWRpI4VolQlvn4dlPBlXke6+HgmuI7p0LueFp1fKH40TNL+YHWJZwqIiYV+3kTrhdNU7fZwc+PmtgBvxSczkFeRz+oaVSsomrrtP2Z91LE313djjbWujqInRT+7ChGbCeo7ZzszByf8xnDSunPBxRX1MfX3kAxpKq7dqduW1kpMAx8O8xUzZ9oC0TLuZchbpxaml4epzGfF21O+zyXDwTxbCEiO0E87mChtzuh/VPlznXYbfqVrnyLNZ5pr";
        assert_eq!(
            c.verify_and_decrypt(
                "477715d11cdb4164915debcba66cb864d751f3e6",
                "1409659813",
                "1372623149",
                encrypt
            ),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            c.decrypt(encrypt).unwrap(),
            b"{\"FromUserName\":\"mycreate\",\"CreateTime\": 1409659813,\"MsgType\":\"text\",\"Content\":\"hello\",\"MsgId\":4561255354251345929,\"AgentID\": 218}"
        );
        assert_eq!(
            raw_decrypt(&decode_aes_key(KEY_1).unwrap(), encrypt).last(),
            Some(&24)
        );
    }

    /// 20 + 26 + 18 = 64 bytes of content: the pad must be a whole extra block of 0x20.
    /// Expected ciphertext computed independently with Python's `cryptography` package.
    #[test]
    fn exact_multiple_of_32_gets_a_whole_block_of_padding() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        let msg = b"exact multiple of 32 bytes";
        assert_eq!((HEADER_LEN + msg.len() + CORP_2.len()) % 32, 0);
        let encrypt = c.encrypt_with_random(msg, b"0123456789abcdef");
        assert_eq!(
            encrypt,
            "scEag1243Fmy/fYz4Ux8D4gkmNWpgdC82ajtVNzWZsSCfRV/vRJmc/RjyP64tP1+g60LmHux7LZz76vSPDrKvW6Cr1H7AwdqrLoqkULC7d/knyhX/F5LC7eNXrIGqRhI"
        );
        let plain = raw_decrypt(&key_2(), &encrypt);
        assert_eq!(plain.len(), 96);
        assert_eq!(&plain[64..], &[0x20u8; 32]);
        assert_eq!(&plain[..16], b"0123456789abcdef");
        assert_eq!(c.decrypt(&encrypt).unwrap(), msg);
    }

    /// The reply of sbzhu/weworkapi_golang `sample.go` with a fixed prefix; expected
    /// ciphertext and signature computed independently with Python (pad 31).
    #[test]
    fn reply_encryption_matches_an_independent_implementation() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        let reply = "<xml><ToUserName><![CDATA[mycreate]]></ToUserName><FromUserName><![CDATA[wx5823bf96d3bd56c7]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId><AgentID>128</AgentID></xml>";
        let encrypt = c.encrypt_with_random(reply.as_bytes(), b"aaaabbbbccccdddd");
        assert_eq!(encrypt, "ZA4HuQypHxnRrA+A6SOHGI3nNAv6+Z6nS1d6HDerPrjSMx0nzuQMXgB0xtc1AKDrJcVbZxGbLpFeHc7GJSIGu9xPjyai00HIF7KqYx7A/caYFaL1F1lp5V7kfVlD8xPHFxXyD1J7Mv5ueLlW5cIEYefJZUVSgNKwzJ3Dcm4qft0bxc6kOSz1q7fIrF5VA6YIcaTqSZ3eOxP2+e9FPdrb8UHQXEf/IiEjOGpWkBQcn513yiDtSiYfxAy/auRtjykaxLDNmoksUiv4ovXIicUnvmYoR57vPixh2xctoNFJtQO5DXr7wBjpHTgha0Hha6CFx84Z4oO6FvkOgyyPW5bCy0LdrG04b5YcjEQMiL4Qt7c8/P/M7WVvM9D0Y/NFl88w+0a0ZFTs/luJotJ+hYLszB5hCo5epqYDgKcaOJnw6sSXxpyJcfuv7tzdNa7ffH45DDCshd78iTFqB+sGCxQapg==");
        assert_eq!(
            c.signature("1409659813", "1372623149", &encrypt),
            "6fc162fb76ff519ac15c8cc905bcc423bee9e306"
        );
    }

    /// Smart bot: receive id is empty, nothing follows the message. Expected value from Python.
    #[test]
    fn empty_receive_id_encrypts_and_decrypts() {
        let c = crypt(TOKEN_2, KEY_2, "");
        let encrypt = c.encrypt_with_random(b"{\"msgtype\":\"text\"}", &[0; 16]);
        assert_eq!(
            encrypt,
            "kHO0H+MyutJgQnuhdnbePAUB7nIqU9OQ7o2PHYUuMbHtFtXYxTch9RXcTX4Gn6ouxrHXyYxYpF55ZMqEVEmScg=="
        );
        assert_eq!(c.decrypt(&encrypt).unwrap(), b"{\"msgtype\":\"text\"}");
        assert_eq!(
            crypt(TOKEN_2, KEY_2, CORP_2).decrypt(&encrypt),
            Err(CryptoError::WrongReceiver)
        );
    }

    #[test]
    fn encrypt_uses_a_fresh_prefix_each_time() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        let first = c.encrypt(b"same message");
        let second = c.encrypt(b"same message");
        assert_ne!(first, second);
        assert_eq!(c.decrypt(&first).unwrap(), b"same message");
        assert_eq!(c.decrypt(&second).unwrap(), b"same message");
    }

    #[test]
    fn bad_base64_is_decode_base64() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        for bad in [
            "!!!!",
            "abc",
            "ab cd===",
            "P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3",
            "AAAA=AAA",
        ] {
            assert_eq!(c.decrypt(bad), Err(CryptoError::DecodeBase64), "{bad}");
        }
    }

    #[test]
    fn ciphertext_not_a_nonzero_multiple_of_16_is_decrypt_aes() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        for len in [0usize, 1, 15, 17, 31, 33, 63] {
            let encrypt = STANDARD.encode(vec![0x41u8; len]);
            assert_eq!(c.decrypt(&encrypt), Err(CryptoError::DecryptAes), "{len}");
        }
    }

    #[test]
    fn bad_keys_are_illegal_aes_key() {
        let long = format!("{KEY_1}A");
        let short = &KEY_1[..42];
        let padded = format!("{KEY_1}=");
        let bad_char = format!("{}!", &KEY_1[..42]);
        let non_ascii = format!("{}é", &KEY_1[..41]);
        for key in ["", short, &long, &padded, &bad_char, &non_ascii] {
            assert_eq!(
                decode_aes_key(key),
                Err(CryptoError::IllegalAesKey),
                "{key}"
            );
            assert_eq!(
                MsgCrypt::new(TOKEN_1, key, CORP_1).map(|_| ()),
                Err(CryptoError::IllegalAesKey),
                "{key}"
            );
        }
    }

    #[test]
    fn sample_keys_have_surplus_bits_set_and_still_decode() {
        // The strict engine refuses them: the reason for the lenient one.
        for key in [KEY_1, KEY_2] {
            assert!(STANDARD_NO_PAD.decode(key).is_err());
            let decoded = decode_aes_key(key).unwrap();
            assert_eq!(STANDARD_NO_PAD.encode(decoded)[..42], key[..42]);
        }
    }

    #[test]
    fn pad_zero_and_above_32_are_bad_padding() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        let msg = [7u8; 26];
        let body = content(26, &msg, CORP_2); // 64 bytes
        let zero_pad = with_pad(body.clone(), 0, 32);
        let pad_33 = with_pad(body.clone(), 33, 32); // last 33 bytes: 0x21 except one
        let mut all_33 = body.clone();
        all_33.truncate(63);
        let all_33 = with_pad(all_33, 33, 33); // 96 bytes, last 33 all 0x21
        let pad_255 = with_pad(body.clone(), 255, 32);
        for plain in [zero_pad, pad_33, all_33, pad_255] {
            assert_eq!(plain.len() % 16, 0);
            assert_eq!(
                c.decrypt(&raw_encrypt(&key_2(), &plain)),
                Err(CryptoError::BadPadding)
            );
        }
    }

    #[test]
    fn pad_longer_than_the_plaintext_is_bad_padding() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        let plain = [20u8; 16];
        assert_eq!(
            c.decrypt(&raw_encrypt(&key_2(), &plain)),
            Err(CryptoError::BadPadding)
        );
    }

    #[test]
    fn plaintext_shorter_than_the_header_is_illegal_buffer() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        // 32 bytes with pad 13: 19 bytes of content, one short of random + length.
        let plain = with_pad(vec![b'x'; 19], 13, 13);
        assert_eq!(
            c.decrypt(&raw_encrypt(&key_2(), &plain)),
            Err(CryptoError::IllegalBuffer)
        );
    }

    #[test]
    fn huge_length_fields_are_illegal_buffer() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        let msg = [b'm'; 26];
        // 26 message bytes + 18 receive id bytes = 44 available after the header.
        for length_field in [
            45,
            46,
            1000,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFF0,
            u32::MAX,
        ] {
            let plain = with_pad(content(length_field, &msg, CORP_2), 32, 32);
            assert_eq!(
                c.decrypt(&raw_encrypt(&key_2(), &plain)),
                Err(CryptoError::IllegalBuffer),
                "{length_field:#x}"
            );
        }
        // Exactly the bytes available: the receive id becomes part of the message, so
        // the (now empty) receive id is wrong, not the buffer.
        let plain = with_pad(content(44, &msg, CORP_2), 32, 32);
        assert_eq!(
            c.decrypt(&raw_encrypt(&key_2(), &plain)),
            Err(CryptoError::WrongReceiver)
        );
    }

    #[test]
    fn every_signature_bit_flip_is_rejected() {
        let v = &VECTORS[1];
        let c = crypt(v.token, v.key, v.receive_id);
        let digest = hex::decode(v.msg_signature).unwrap();
        for bit in 0..digest.len() * 8 {
            let mut flipped = digest.clone();
            flip_bit(&mut flipped, bit);
            assert_eq!(
                c.verify_and_decrypt(&hex::encode(&flipped), v.timestamp, v.nonce, v.encrypt),
                Err(CryptoError::BadSignature),
                "digest bit {bit}"
            );
        }
        let text = v.msg_signature.as_bytes();
        for bit in 0..text.len() * 8 {
            let mut flipped = text.to_vec();
            flip_bit(&mut flipped, bit);
            let flipped = String::from_utf8_lossy(&flipped);
            assert_eq!(
                c.verify_signature(&flipped, v.timestamp, v.nonce, v.encrypt),
                Err(CryptoError::BadSignature),
                "text bit {bit}"
            );
        }
    }

    #[test]
    fn signature_of_other_length_or_case_is_rejected() {
        let v = &VECTORS[0];
        let c = crypt(v.token, v.key, v.receive_id);
        let upper = v.msg_signature.to_uppercase();
        let longer = format!("{}0", v.msg_signature);
        for sig in ["", &v.msg_signature[..39], &longer, &upper] {
            assert_eq!(
                c.verify_signature(sig, v.timestamp, v.nonce, v.encrypt),
                Err(CryptoError::BadSignature),
                "{sig}"
            );
        }
        // Timestamp and nonce are signed as text: a re-formatted number is different.
        assert_eq!(
            c.verify_signature(
                v.msg_signature,
                &format!("0{}", v.timestamp),
                v.nonce,
                v.encrypt
            ),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn signature_sorts_its_inputs() {
        let v = &VECTORS[3];
        let expected = v.msg_signature;
        assert_eq!(
            signature(v.token, v.timestamp, v.nonce, v.encrypt),
            expected
        );
        assert_eq!(
            signature(v.encrypt, v.nonce, v.timestamp, v.token),
            expected
        );
        assert_eq!(
            signature(v.nonce, v.token, v.encrypt, v.timestamp),
            expected
        );
    }

    /// Minimal field extraction; the envelope format is fixed by us.
    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let from = text.find(start).unwrap() + start.len();
        let to = from + text[from..].find(end).unwrap();
        &text[from..to]
    }

    #[test]
    fn xml_reply_envelope_verifies_and_decrypts() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        let reply = "<xml><Content><![CDATA[收到]]></Content></xml>";
        let envelope = c.seal_xml_reply(reply, "1700000000", "1234567890");
        assert!(envelope.starts_with("<xml>\n<Encrypt><![CDATA["));
        let encrypt = between(&envelope, "<Encrypt><![CDATA[", "]]></Encrypt>");
        let msg_signature = between(&envelope, "<MsgSignature><![CDATA[", "]]></MsgSignature>");
        assert_eq!(
            between(&envelope, "<TimeStamp>", "</TimeStamp>"),
            "1700000000"
        );
        assert_eq!(
            between(&envelope, "<Nonce><![CDATA[", "]]></Nonce>"),
            "1234567890"
        );
        let msg = c
            .verify_and_decrypt(msg_signature, "1700000000", "1234567890", encrypt)
            .unwrap();
        assert_eq!(msg, reply.as_bytes());
    }

    #[test]
    fn xml_reply_escapes_markup_in_timestamp_and_nonce() {
        let c = crypt(TOKEN_1, KEY_1, CORP_1);
        let envelope = c.seal_xml_reply("<xml/>", "1<2&", "a]]>b");
        assert!(envelope.contains("<TimeStamp>1&lt;2&amp;</TimeStamp>"));
        assert!(envelope.contains("<Nonce><![CDATA[a]]]]><![CDATA[>b]]></Nonce>"));
    }

    #[test]
    fn json_reply_has_numeric_timestamp_and_verifies() {
        let c = crypt(TOKEN_2, KEY_2, "");
        let reply = r#"{"msgtype":"text","text":{"content":"你好"}}"#;
        let body = c.seal_json_reply(reply, 1_700_000_000, "nonce\"1");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["timestamp"].as_u64(), Some(1_700_000_000));
        assert_eq!(value["nonce"], "nonce\"1");
        let encrypt = value["encrypt"].as_str().unwrap();
        let msg_signature = value["msgsignature"].as_str().unwrap();
        let msg = c
            .verify_and_decrypt(msg_signature, "1700000000", "nonce\"1", encrypt)
            .unwrap();
        assert_eq!(msg, reply.as_bytes());
    }

    #[test]
    fn debug_shows_neither_token_nor_key() {
        let c = crypt(TOKEN_2, KEY_2, CORP_2);
        let shown = format!("{c:?} {c:#?}");
        assert!(shown.contains(CORP_2));
        assert!(!shown.contains(TOKEN_2));
        assert!(!shown.contains(&KEY_2[..10]));
        assert!(!shown.contains(&hex::encode(&key_2()[..8])));
        assert!(!shown.contains(&format!("{:?}", &key_2()[..4])));
    }

    #[test]
    fn error_codes_match_the_official_libraries() {
        use CryptoError::*;
        let expected = [
            (BadSignature, -40001),
            (ParseEnvelope, -40002),
            (ComputeSignature, -40003),
            (IllegalAesKey, -40004),
            (WrongReceiver, -40005),
            (EncryptAes, -40006),
            (DecryptAes, -40007),
            (BadPadding, -40007),
            (IllegalBuffer, -40008),
            (EncodeBase64, -40009),
            (DecodeBase64, -40010),
            (BuildReply, -40011),
        ];
        for (error, code) in expected {
            assert_eq!(error.code(), code, "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn fresh_nonces_are_ten_digits() {
        let nonces: Vec<String> = (0..20).map(|_| fresh_nonce()).collect();
        for nonce in &nonces {
            assert_eq!(nonce.len(), 10, "{nonce}");
            assert!(nonce.bytes().all(|b| b.is_ascii_digit()), "{nonce}");
        }
        assert!(nonces.iter().any(|n| n != &nonces[0]));
    }

    fn arb_crypt() -> impl Strategy<Value = (MsgCrypt, [u8; 32])> {
        (any::<[u8; 32]>(), "[A-Za-z0-9]{0,32}", any::<String>()).prop_map(
            |(key, token, receive_id)| {
                let encoding = STANDARD_NO_PAD.encode(key);
                (crypt(&token, &encoding, &receive_id), key)
            },
        )
    }

    proptest! {
        /// The SIMD decoder on the hot path accepts exactly what strict standard
        /// base64 accepts (padding required, no whitespace, canonical trailing bits),
        /// and decodes to the same bytes.
        #[test]
        fn ciphertext_base64_is_exactly_strict_standard(text in prop_oneof![
            "[A-Za-z0-9+/= \n]{0,24}",
            // Well-formed shapes, with arbitrary (often non-canonical) final bits.
            "([A-Za-z0-9+/]{4}){0,4}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
        ]) {
            let simd = base64_simd::STANDARD.decode_to_vec(&text).ok();
            let strict = STANDARD.decode(&text).ok();
            prop_assert_eq!(simd, strict);
        }

        #[test]
        fn decrypt_inverts_encrypt(
            (c, _key) in arb_crypt(),
            msg in prop::collection::vec(any::<u8>(), 0..1200),
            random in any::<[u8; 16]>(),
        ) {
            let encrypt = c.encrypt_with_random(&msg, &random);
            prop_assert_eq!(STANDARD.decode(&encrypt).unwrap().len() % 32, 0);
            prop_assert_eq!(c.decrypt(&encrypt).unwrap(), msg.clone());
            let sig = c.signature("1700000000", "42", &encrypt);
            prop_assert_eq!(c.verify_and_decrypt(&sig, "1700000000", "42", &encrypt).unwrap(), msg);
        }

        #[test]
        fn decode_aes_key_inverts_encoding_and_ignores_surplus_bits(
            key in any::<[u8; 32]>(),
            surplus in 0u8..4,
        ) {
            let encoding = STANDARD_NO_PAD.encode(key);
            prop_assert_eq!(decode_aes_key(&encoding).unwrap(), key);
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let last = alphabet.iter().position(|&ch| ch == encoding.as_bytes()[42]).unwrap();
            let with_surplus = format!("{}{}", &encoding[..42], char::from(alphabet[last | usize::from(surplus)]));
            prop_assert_eq!(decode_aes_key(&with_surplus).unwrap(), key);
        }

        #[test]
        fn any_ciphertext_bit_flip_is_rejected(
            (c, _key) in arb_crypt(),
            msg in prop::collection::vec(any::<u8>(), 0..300),
            bit_seed in any::<usize>(),
        ) {
            let encrypt = c.encrypt(&msg);
            let sig = c.signature("1700000000", "42", &encrypt);
            let mut bytes = STANDARD.decode(&encrypt).unwrap();
            let bit = bit_seed % (bytes.len() * 8);
            flip_bit(&mut bytes, bit);
            let flipped = STANDARD.encode(&bytes);
            prop_assert_eq!(
                c.verify_and_decrypt(&sig, "1700000000", "42", &flipped),
                Err(CryptoError::BadSignature)
            );
            // Without the signature, a flip never yields the original message back.
            prop_assert_ne!(c.decrypt(&flipped), Ok(msg));
        }

        #[test]
        fn every_well_formed_pad_from_1_to_32_is_accepted(
            pad in 1u8..=32,
            blocks in 2usize..5,
            receive_id in "[a-z0-9]{0,12}",
            fill in any::<u8>(),
        ) {
            let key = key_2();
            let c = crypt(TOKEN_2, KEY_2, &receive_id);
            let msg_len = blocks * 32 - usize::from(pad) - HEADER_LEN - receive_id.len();
            let msg = vec![fill; msg_len];
            let plain = with_pad(content(msg_len as u32, &msg, &receive_id), pad, usize::from(pad));
            prop_assert_eq!(plain.len() % 32, 0);
            prop_assert_eq!(c.decrypt(&raw_encrypt(&key, &plain)), Ok(msg));
        }

        #[test]
        fn a_pad_with_one_wrong_byte_is_rejected(
            pad in 2u8..=32,
            wrong_index in any::<prop::sample::Index>(),
            wrong_value in any::<u8>(),
        ) {
            let key = key_2();
            let c = crypt(TOKEN_2, KEY_2, CORP_2);
            let msg_len = 96 - usize::from(pad) - HEADER_LEN - CORP_2.len();
            let mut plain = with_pad(content(msg_len as u32, &vec![b'm'; msg_len], CORP_2), pad, usize::from(pad));
            // Any pad byte but the last (which defines the pad) gets a different value.
            let index = plain.len() - usize::from(pad) + wrong_index.index(usize::from(pad) - 1);
            plain[index] = if wrong_value == pad { pad ^ 0x80 } else { wrong_value };
            prop_assert_eq!(c.decrypt(&raw_encrypt(&key, &plain)), Err(CryptoError::BadPadding));
        }

        #[test]
        fn length_fields_past_the_buffer_are_illegal_buffer(
            msg in prop::collection::vec(any::<u8>(), 0..100),
            excess in 1u32..,
        ) {
            let c = crypt(TOKEN_2, KEY_2, CORP_2);
            let available = (msg.len() + CORP_2.len()) as u32;
            let length_field = available.saturating_add(excess);
            prop_assume!(length_field > available);
            let body = content(length_field, &msg, CORP_2);
            let pad = 32 - body.len() % 32;
            let plain = with_pad(body, pad as u8, pad);
            prop_assert_eq!(c.decrypt(&raw_encrypt(&key_2(), &plain)), Err(CryptoError::IllegalBuffer));
        }

        #[test]
        fn arbitrary_strings_never_panic(
            sig in any::<String>(),
            timestamp in any::<String>(),
            nonce in any::<String>(),
            encrypt in any::<String>(),
        ) {
            let c = crypt(TOKEN_1, KEY_1, CORP_1);
            prop_assert!(c.verify_and_decrypt(&sig, &timestamp, &nonce, &encrypt).is_err());
            let _ = c.decrypt(&encrypt);
            let _ = decode_aes_key(&encrypt);
        }

        #[test]
        fn arbitrary_ciphertext_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            receive_id in prop_oneof![Just(String::new()), Just(CORP_1.to_owned())],
        ) {
            let c = crypt(TOKEN_1, KEY_1, &receive_id);
            let _ = c.decrypt(&STANDARD.encode(&bytes));
        }
    }
}
