//! S3 browser-POST policies: the base64 policy document and its Signature Version 2
//! (`base64(HMAC-SHA1(secret, base64_policy))`), as S3 and the xvid seed's `form_post_params`
//! use them. The edge's S3 POST endpoint verifies what the control APIs sign here.
//!
//! Pure: no I/O, no clock (the expiration is passed in).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

/// A signed policy, ready for a form's `policy` and `signature` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// `base64(policy JSON)`.
    pub policy: String,
    /// `base64(HMAC-SHA1(secret, policy))`.
    pub signature: String,
}

fn hmac_sha1(secret: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Builds and signs a policy: `expiration` (ISO 8601) and the conditions S3 checks.
#[must_use]
pub fn sign_v2(secret: &str, expiration: &str, conditions: &[Value]) -> SignedPolicy {
    let document = json!({ "expiration": expiration, "conditions": conditions });
    let policy = B64.encode(document.to_string());
    let signature = B64.encode(hmac_sha1(secret.as_bytes(), policy.as_bytes()));
    SignedPolicy { policy, signature }
}

/// Whether `signature` is the V2 signature of `policy` under `secret` (constant time).
#[must_use]
pub fn verify_v2(secret: &str, policy: &str, signature: &str) -> bool {
    let Ok(given) = B64.decode(signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(policy.as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn signed_policies_verify_and_tampering_fails() {
        let conditions = [
            json!({ "bucket": "p1" }),
            json!(["starts-with", "$key", "tmp/p1/"]),
        ];
        let signed = sign_v2("secret", "2030-01-01T00:00:00.000Z", &conditions);
        let doc: Value = serde_json::from_slice(&B64.decode(&signed.policy).unwrap()).unwrap();
        assert_eq!(doc["expiration"], "2030-01-01T00:00:00.000Z");
        assert_eq!(doc["conditions"][1][2], "tmp/p1/");
        assert!(verify_v2("secret", &signed.policy, &signed.signature));
        assert!(!verify_v2("other", &signed.policy, &signed.signature));
        let mut tampered = signed.policy.clone().into_bytes();
        tampered[3] ^= 1;
        assert!(!verify_v2(
            "secret",
            &String::from_utf8(tampered).unwrap(),
            &signed.signature
        ));
        assert!(!verify_v2("secret", &signed.policy, "not base64!"));
    }
}
