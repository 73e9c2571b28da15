//! Our RSA private keys, one per public-key version registered in the
//! console. Each archived record carries `encrypt_random_key`: base64 of its
//! random key encrypted with RSA PKCS#1 v1.5 to the public key of
//! `publickey_ver`; the decrypted key is what `DecryptData` takes.

use std::collections::BTreeMap;

use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};

use crate::config::ArchiveKeyConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An operator problem: the console has a newer key than we were given.
    #[error("no private key for publickey_ver {0}")]
    UnknownVersion(u32),
    #[error("encrypt_random_key is not base64")]
    NotBase64,
    #[error("encrypt_random_key does not decrypt with the key of publickey_ver {0}")]
    Decrypt(u32),
}

/// Private keys by version.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<u32, RsaPrivateKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing(versions {:?})", self.versions())
    }
}

impl KeyRing {
    /// Reads every configured key (a PEM file or the PEM itself); an error
    /// names the key's position and version, never its content.
    pub fn from_config(keys: &[ArchiveKeyConfig]) -> anyhow::Result<KeyRing> {
        let mut ring = KeyRing::default();
        for (i, key) in keys.iter().enumerate() {
            let field = format!("archive.private_keys[{i}] (version {})", key.version);
            let pem = match (&key.path, &key.pem) {
                (Some(path), _) => std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{field}: reading {}: {e}", path.display()))?,
                (None, Some(pem)) => pem.expose().to_owned(),
                (None, None) => anyhow::bail!("{field}: no path or pem"),
            };
            let parsed = parse_pem(&pem).ok_or_else(|| {
                anyhow::anyhow!(
                    "{field}: not an RSA private key in PEM (\"BEGIN RSA PRIVATE KEY\" or \"BEGIN PRIVATE KEY\")"
                )
            })?;
            ring.insert(key.version, parsed);
        }
        Ok(ring)
    }

    pub fn insert(&mut self, version: u32, key: RsaPrivateKey) {
        self.keys.insert(version, key);
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The record's random key, in the form `DecryptData` takes.
    pub fn random_key(&self, version: u32, encrypted_base64: &str) -> Result<String, KeyError> {
        let key = self
            .keys
            .get(&version)
            .ok_or(KeyError::UnknownVersion(version))?;
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(encrypted_base64.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let plain = key
            .decrypt(Pkcs1v15Encrypt, &ciphertext)
            .map_err(|_| KeyError::Decrypt(version))?;
        String::from_utf8(plain).map_err(|_| KeyError::Decrypt(version))
    }
}

/// PKCS#1 (`openssl genrsa` before OpenSSL 3) or PKCS#8 (OpenSSL 3's default).
fn parse_pem(pem: &str) -> Option<RsaPrivateKey> {
    let pem = pem.trim();
    RsaPrivateKey::from_pkcs1_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs8_pem(pem).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::RsaPublicKey;

    fn encrypt(public: &RsaPublicKey, plain: &str) -> String {
        let sealed = public
            .encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, plain.as_bytes())
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    #[test]
    fn keys_are_picked_by_version_from_either_pem_form() {
        // 1024 bits keeps the test fast; the SDK's keys are 2048.
        let mut rng = rand::thread_rng();
        let one = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let two = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pkcs1 = one.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        let pkcs8 = two.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let ring = KeyRing::from_config(&[
            ArchiveKeyConfig {
                version: 1,
                path: None,
                pem: Some(Secret::new(pkcs1)),
            },
            ArchiveKeyConfig {
                version: 2,
                path: None,
                pem: Some(Secret::new(pkcs8)),
            },
        ])
        .unwrap();
        let sealed = encrypt(&two.to_public_key(), "random-key-2");
        assert_eq!(ring.random_key(2, &sealed).unwrap(), "random-key-2");
        assert_eq!(ring.random_key(1, &sealed), Err(KeyError::Decrypt(1)));
        assert_eq!(
            ring.random_key(3, &sealed),
            Err(KeyError::UnknownVersion(3))
        );
        assert_eq!(ring.random_key(1, "%%%"), Err(KeyError::NotBase64));
        assert_eq!(format!("{ring:?}"), "KeyRing(versions [1, 2])");
    }

    #[test]
    fn a_bad_pem_is_refused_naming_the_key_not_its_content() {
        let error = KeyRing::from_config(&[ArchiveKeyConfig {
            version: 4,
            path: None,
            pem: Some(Secret::new("-----BEGIN PRIVATE KEY-----\nTOPSECRET\n")),
        }])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("archive.private_keys[0] (version 4)"),
            "{error}"
        );
        assert!(!error.contains("TOPSECRET"));
    }
}
