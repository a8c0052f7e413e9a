//! Secrets handling: key and token generation, keyed hashes, password hashing, provider-key
//! encryption at rest, constant-time comparison, and the connection-endpoint policy.
//!
//! Owns: [`Secrets`] (everything derived from the application secret) and the free
//! functions below. Must not touch: storage or HTTP. Nothing here logs.

use std::net::IpAddr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use llmur_core::store::types::EncryptedSecret;
use llmur_core::{ConnectionId, KeyHasher};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The current version of the derived encryption key.
pub const KEY_VERSION: i32 = 1;

/// Everything derived from the application secret.
#[derive(Clone)]
pub struct Secrets {
    keys: KeyHasher,
    tokens: KeyHasher,
    cipher_key: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([REDACTED])")
    }
}

/// A failure to decrypt a stored secret (wrong application secret, a ciphertext moved to
/// another row, or tampering).
#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt the stored secret (wrong application_secret, or the row was altered)")]
pub struct DecryptError;

fn derive(secret: &SecretString, purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Secrets {
    /// Derives the hashing and encryption keys from the application secret.
    pub fn new(application_secret: &SecretString) -> Self {
        let token_key = hex::encode(derive(application_secret, "llmur/session-tokens/v1"));
        Self {
            // Virtual keys are hashed with the application secret itself, as the catalog does.
            keys: KeyHasher::new(application_secret),
            tokens: KeyHasher::new(&SecretString::from(token_key)),
            cipher_key: derive(application_secret, "llmur/provider-keys/v1"),
        }
    }

    /// The hasher virtual keys are stored under.
    pub fn key_hasher(&self) -> &KeyHasher {
        &self.keys
    }

    /// The stored hash of a virtual key (hex).
    pub fn hash_virtual_key(&self, key: &str) -> String {
        self.keys.hash(key).to_hex()
    }

    /// The stored hash of a session token (hex).
    pub fn hash_session_token(&self, token: &str) -> String {
        self.tokens.hash(token).to_hex()
    }

    /// Encrypts a provider key for the connection `id` (its id is the associated data).
    pub fn encrypt(&self, id: ConnectionId, plaintext: &SecretString) -> EncryptedSecret {
        let cipher = Aes256Gcm::new(&self.cipher_key.into());
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = id.0.as_bytes();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad,
                },
            )
            .unwrap_or_default();
        EncryptedSecret {
            key_version: KEY_VERSION,
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Decrypts a provider key stored for connection `id`.
    pub fn decrypt(
        &self,
        id: ConnectionId,
        secret: &EncryptedSecret,
    ) -> Result<SecretString, DecryptError> {
        if secret.key_version != KEY_VERSION || secret.nonce.len() != 12 {
            return Err(DecryptError);
        }
        let cipher = Aes256Gcm::new(&self.cipher_key.into());
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&secret.nonce),
                Payload {
                    msg: &secret.ciphertext,
                    aad: id.0.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| DecryptError)
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random characters from `[A-Za-z0-9]` (about 5.95 bits each), from the OS RNG.
pub fn random_token(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            // Rejection sampling keeps the distribution uniform.
            loop {
                let b = (rng.next_u32() & 0xff) as u8;
                if usize::from(b) < 248 {
                    return char::from(ALPHABET[usize::from(b) % ALPHABET.len()]);
                }
            }
        })
        .collect()
}

/// A new virtual key: `sk-llmur-` and 40 random characters (~238 bits).
pub fn new_virtual_key() -> String {
    format!("sk-llmur-{}", random_token(40))
}

/// A new session token (~238 bits).
pub fn new_session_token() -> String {
    format!("llmur-session-{}", random_token(40))
}

/// The masked form shown instead of a key after creation: `sk-llmur-AbC...xYz9`.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 16 {
        return "sk-...".to_owned();
    }
    let head: String = chars[..12].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

/// An Argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string (constant time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Compares two secrets in constant time (for equal lengths; the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `presented` equals any of the master keys, comparing every one in constant time.
pub fn is_master_key(presented: &str, master_keys: &[SecretString]) -> bool {
    master_keys.iter().fold(false, |found, key| {
        found | constant_time_eq(presented.as_bytes(), key.expose_secret().as_bytes())
    })
}

/// Why a connection endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointRefused(pub String);

/// Checks a connection's `api_endpoint`: http(s) only, a host, never cloud-metadata or
/// link-local addresses, and — when `refuse_private` is set — no loopback, private or
/// unique-local addresses either. Host *names* are checked when they are literal IPs or
/// well-known metadata names; DNS is not resolved here.
pub fn check_endpoint(endpoint: &str, refuse_private: bool) -> Result<(), EndpointRefused> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| EndpointRefused("api_endpoint is not a valid URL".into()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(EndpointRefused(
                "api_endpoint must use http or https".into(),
            ));
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| EndpointRefused("api_endpoint has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if matches!(
        host.as_str(),
        "metadata.google.internal" | "metadata" | "metadata.azure.internal" | "instance-data"
    ) {
        return Err(EndpointRefused(
            "cloud metadata endpoints are refused".into(),
        ));
    }
    let is_local_name = host == "localhost" || host.ends_with(".localhost");
    if let Ok(ip) = host.parse::<IpAddr>() {
        if is_metadata_or_link_local(ip) {
            return Err(EndpointRefused(
                "link-local and cloud metadata addresses are refused".into(),
            ));
        }
        if refuse_private && is_private(ip) {
            return Err(EndpointRefused(
                "private and loopback addresses are refused by configuration".into(),
            ));
        }
    } else if refuse_private && is_local_name {
        return Err(EndpointRefused(
            "private and loopback addresses are refused by configuration".into(),
        ));
    }
    Ok(())
}

fn is_metadata_or_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() // 169.254.0.0/16, includes 169.254.169.254
                || v4.octets() == [100, 100, 100, 200] // Alibaba metadata
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            (seg[0] & 0xffc0) == 0xfe80 // fe80::/10
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS IMDS
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| is_metadata_or_link_local(IpAddr::V4(v4)))
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // fc00::/7
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets::new(&SecretString::from("app-secret"))
    }

    #[test]
    fn encryption_round_trips_and_is_bound_to_the_row() {
        let s = secrets();
        let id = ConnectionId::new_random();
        let enc = s.encrypt(id, &SecretString::from("sk-provider"));
        assert!(!enc.ciphertext.windows(11).any(|w| w == b"sk-provider"));
        assert_eq!(
            s.decrypt(id, &enc)
                .map(|k| k.expose_secret().to_owned())
                .ok(),
            Some("sk-provider".to_owned())
        );
        assert!(
            s.decrypt(ConnectionId::new_random(), &enc).is_err(),
            "moved row"
        );
        let other = Secrets::new(&SecretString::from("other"));
        assert!(other.decrypt(id, &enc).is_err(), "wrong secret");
        let mut tampered = enc.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(s.decrypt(id, &tampered).is_err());
        assert_ne!(
            s.encrypt(id, &SecretString::from("x")).nonce,
            s.encrypt(id, &SecretString::from("x")).nonce
        );
    }

    #[test]
    fn keys_tokens_and_passwords() {
        let k = new_virtual_key();
        assert!(k.starts_with("sk-") && k.len() == 49);
        assert_ne!(new_virtual_key(), k);
        assert!(mask_key(&k).starts_with("sk-llmur-") && mask_key(&k).contains("..."));
        let s = secrets();
        assert_ne!(s.hash_virtual_key("a"), s.hash_session_token("a"));
        let phc = hash_password("hunter2").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("hunter2", &phc));
        assert!(!verify_password("hunter3", &phc));
        assert!(!verify_password("hunter2", "garbage"));
        let masters = [SecretString::from("m1"), SecretString::from("m2")];
        assert!(is_master_key("m2", &masters));
        assert!(!is_master_key("m3", &masters));
    }

    #[test]
    fn endpoint_policy() {
        for ok in [
            "https://api.openai.com",
            "http://127.0.0.1:8099",
            "http://10.0.0.5/v1",
        ] {
            assert_eq!(check_endpoint(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://x",
            "http://169.254.169.254/latest",
            "http://[fe80::1]/",
            "http://metadata.google.internal/",
            "http://100.100.100.200/",
            "http://[::ffff:169.254.169.254]/",
            "not a url",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
        for private in [
            "http://127.0.0.1:1",
            "http://10.1.2.3",
            "http://localhost:8000",
            "http://[::1]/",
        ] {
            assert!(check_endpoint(private, true).is_err(), "{private}");
            assert!(check_endpoint(private, false).is_ok(), "{private}");
        }
    }
}
