//! Tenants and their credentials: ids, key generation and the one-way fingerprint under which
//! an API key is stored. Pure apart from the random source; no database, no network.
//!
//! - `api_key` (`sk-…`): the Bearer key of the Uploads and xvid APIs. Only its SHA-256
//!   fingerprint is stored: a key is 190 random bits, so a fast hash is enough (there is nothing
//!   to brute-force) and lookups stay a single indexed equality.
//! - `access_key` + `secret`: the pair of the form-upload flavours (Ankoder, S3 POST) and of the
//!   notification signatures. The secret must stay usable for signing, so it is kept, and shown
//!   to the operator only once, when the account is created.

use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;

/// How every API key starts (upload tokens never do).
pub const API_KEY_PREFIX: &str = "sk-";

/// An account's id (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(pub String);

/// A pipeline's id: 24 lower-case hex digits, as in the xvid seed (`53a1ac4914eaa8ffa4fce91b`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly generated set of credentials. Only exists between generation and the one time it
/// is shown; `Debug` never prints the secrets.
pub struct Credentials {
    /// Bearer key, `sk-` followed by 32 alphanumerics.
    pub api_key: String,
    /// Public key id of the form flavours, AWS style (`AK` + 18 upper-case alphanumerics).
    pub access_key: String,
    /// HMAC secret paired with `access_key`.
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// New random credentials.
    #[must_use]
    pub fn generate(rng: &mut impl Rng) -> Self {
        const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let access: String = (0..18)
            .map(|_| char::from(UPPER_ALNUM[rng.random_range(0..UPPER_ALNUM.len())]))
            .collect();
        Self {
            api_key: format!("{API_KEY_PREFIX}{}", Alphanumeric.sample_string(rng, 32)),
            access_key: format!("AK{access}"),
            secret: Alphanumeric.sample_string(rng, 40),
        }
    }
}

/// A new pipeline id.
#[must_use]
pub fn new_pipeline_id(rng: &mut impl Rng) -> PipelineId {
    let bytes: [u8; 12] = rng.random();
    PipelineId(hex::encode(bytes))
}

/// The stored fingerprint of an API key (hex SHA-256).
#[must_use]
pub fn api_key_fingerprint(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// Checks an operator-given account name: 1 to 200 characters, no control characters.
///
/// # Errors
/// A message naming what is wrong with the name.
pub fn validate_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the account name must not be empty");
    }
    if name.chars().count() > 200 {
        return Err("the account name must be at most 200 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("the account name must not contain control characters");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_have_their_documented_shapes() {
        let c = Credentials::generate(&mut rand::rng());
        assert!(c.api_key.starts_with("sk-") && c.api_key.len() == 35);
        assert!(c.access_key.starts_with("AK") && c.access_key.len() == 20);
        assert!(c
            .access_key
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()));
        assert_eq!(c.secret.len(), 40);
        let shown = format!("{c:?}");
        assert!(!shown.contains(&c.secret) && !shown.contains(&c.api_key));
    }

    #[test]
    fn fingerprint_is_stable_and_differs_from_the_key() {
        let a = api_key_fingerprint("sk-abc");
        assert_eq!(a, api_key_fingerprint("sk-abc"));
        assert_ne!(a, api_key_fingerprint("sk-abd"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn pipeline_ids_look_like_the_seeds() {
        let id = new_pipeline_id(&mut rand::rng());
        assert_eq!(id.0.len(), 24);
        assert!(id.0.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name("  Acme  "), Ok("Acme"));
        assert!(validate_name(" ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(201)).is_err());
    }
}
