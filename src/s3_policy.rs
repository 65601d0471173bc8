//! S3 browser-POST policies: the base64 policy document, its Signature Version 2
//! (`base64(HMAC-SHA1(secret, base64_policy))`) and Version 4 (`hex(HMAC-SHA256(signing key,
//! base64_policy))`), and the policy's conditions checked against a form: expiration, exact
//! matches, `starts-with`, `content-length-range`, and every field covered by a condition.
//!
//! Pure: no I/O, no clock (times are passed in).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::Sha256;

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
    let expected = hmac_sha1(secret.as_bytes(), policy.as_bytes());
    subtle::ConstantTimeEq::ct_eq(expected.as_slice(), given.as_slice()).into()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The Signature Version 4 of a POST policy: `date` is `YYYYMMDD`, `region` and `service` as
/// in the credential scope (`AKID/DATE/REGION/SERVICE/aws4_request`).
#[must_use]
pub fn sign_v4(secret: &str, date: &str, region: &str, service: &str, policy: &str) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hex::encode(hmac_sha256(&k_signing, policy.as_bytes()))
}

/// Whether `signature` (hex) is the V4 signature of `policy` (constant time).
#[must_use]
pub fn verify_v4(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    policy: &str,
    signature: &str,
) -> bool {
    let expected = sign_v4(secret, date, region, service, policy);
    subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        signature.trim().to_ascii_lowercase().as_bytes(),
    )
    .into()
}

/// Why a form does not satisfy its policy. The texts follow S3's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy is not base64 JSON with an expiration and conditions.
    #[error("Invalid Policy: {0}")]
    Malformed(String),
    /// Past its expiration.
    #[error("Invalid according to Policy: Policy expired.")]
    Expired,
    /// A condition does not hold.
    #[error("Invalid according to Policy: Policy Condition failed: {0}")]
    Condition(String),
    /// A form field no condition covers.
    #[error("Invalid according to Policy: Extra input fields: {0}")]
    ExtraField(String),
}

/// A policy whose conditions hold for a form's fields; the file's size is checked later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `content-length-range`, if the policy has one.
    pub length_range: Option<(u64, u64)>,
}

/// Fields S3 never requires a condition for.
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "awsaccesskeyid" | "signature" | "x-amz-signature" | "policy" | "file"
    ) || name.starts_with("x-ignore-")
}

/// Checks a policy against a form: `fields` are the form fields before the file (names as
/// sent), `bucket` the bucket the request names, `now_rfc3339` the current time.
///
/// # Errors
/// The first condition that fails, or a field no condition covers.
pub fn check(
    policy_b64: &str,
    fields: &[(String, String)],
    bucket: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Accepted, PolicyError> {
    let conditions = conditions_of(policy_b64, now)?;
    let value_of = |name: &str| -> Option<&str> {
        if name == "bucket" {
            return Some(bucket);
        }
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut covered: Vec<String> = Vec::new();
    let mut length_range = None;
    for c in &conditions {
        match condition(c, &value_of)? {
            Holds::Field(name) => covered.push(name),
            Holds::LengthRange(min, max) => length_range = Some((min, max)),
        }
    }
    let extra: Vec<&str> = fields
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            !exempt(&k) && !covered.contains(&k)
        })
        .collect();
    if !extra.is_empty() {
        return Err(PolicyError::ExtraField(extra.join(", ")));
    }
    Ok(Accepted { length_range })
}

fn malformed(why: &str) -> PolicyError {
    PolicyError::Malformed(why.to_owned())
}

/// The policy document's conditions, once it is decoded and not expired at `now`.
fn conditions_of(
    policy_b64: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Value>, PolicyError> {
    let bytes = B64
        .decode(policy_b64.trim())
        .map_err(|_| malformed("not base64"))?;
    let mut doc: Value = serde_json::from_slice(&bytes).map_err(|_| malformed("not JSON"))?;
    let expiration = doc["expiration"]
        .as_str()
        .ok_or_else(|| malformed("no expiration"))?;
    let expiration = chrono::DateTime::parse_from_rfc3339(expiration)
        .map_err(|_| malformed("expiration is not ISO 8601"))?;
    if now >= expiration {
        return Err(PolicyError::Expired);
    }
    match doc["conditions"].take() {
        Value::Array(conditions) => Ok(conditions),
        _ => Err(malformed("no conditions")),
    }
}

/// What a condition that holds says: the field it covers, or the file's size range.
enum Holds {
    Field(String),
    LengthRange(u64, u64),
}

/// Checks one condition against the form's values.
fn condition<'a>(
    c: &Value,
    value_of: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<Holds, PolicyError> {
    let failed = || PolicyError::Condition(c.to_string());
    match c {
        Value::Object(map) if map.len() == 1 => {
            let (name, expected) = map
                .iter()
                .next()
                .ok_or_else(|| malformed("empty condition"))?;
            let expected = expected
                .as_str()
                .ok_or_else(|| malformed("condition value is not a string"))?;
            let name = name.to_ascii_lowercase();
            if value_of(&name) != Some(expected) {
                return Err(failed());
            }
            Ok(Holds::Field(name))
        }
        Value::Array(items) => match items.as_slice() {
            [op, field, expected] if op == "eq" || op == "starts-with" => {
                let (Some(op), Some(field), Some(expected)) =
                    (op.as_str(), field.as_str(), expected.as_str())
                else {
                    return Err(malformed("condition parts are not strings"));
                };
                let name = field.trim_start_matches('$').to_ascii_lowercase();
                let actual = value_of(&name).unwrap_or_default();
                let holds = if op == "eq" {
                    actual == expected
                } else {
                    actual.starts_with(expected)
                };
                if holds {
                    Ok(Holds::Field(name))
                } else {
                    Err(failed())
                }
            }
            [op, min, max] if op == "content-length-range" => match (min.as_u64(), max.as_u64()) {
                // A range no file fits (found by the fuzz target `s3_post`): refused with the
                // policy, not after the whole file was read.
                (Some(min), Some(max)) if min <= max => Ok(Holds::LengthRange(min, max)),
                (Some(_), Some(_)) => Err(malformed(
                    "content-length-range's minimum is above its maximum",
                )),
                _ => Err(malformed(
                    "content-length-range needs two non-negative integers",
                )),
            },
            _ => Err(malformed("unknown condition")),
        },
        _ => Err(malformed("unknown condition")),
    }
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

    #[test]
    fn v4_signing_matches_awss_documented_example() {
        // The POST policy example of AWS's "Example: Browser-Based Upload using HTTP POST
        // (Using AWS Signature Version 4)" page.
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let sig = sign_v4(secret, "20151229", "us-east-1", "s3", policy);
        assert_eq!(
            sig,
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
        assert!(verify_v4(
            secret,
            "20151229",
            "us-east-1",
            "s3",
            policy,
            &sig.to_ascii_uppercase()
        ));
        assert!(!verify_v4(
            secret,
            "20151230",
            "us-east-1",
            "s3",
            policy,
            &sig
        ));
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn conditions_are_enforced() {
        let conditions = [
            json!({ "bucket": "p1" }),
            json!(["starts-with", "$key", "user/"]),
            json!({ "acl": "private" }),
            json!(["eq", "$Content-Type", "video/mp4"]),
            json!(["content-length-range", 10, 1000]),
        ];
        let policy = sign_v2("s", "2030-01-01T00:00:00.000Z", &conditions).policy;
        let good = form(&[
            ("key", "user/a.mp4"),
            ("acl", "private"),
            ("Content-Type", "video/mp4"),
            ("AWSAccessKeyId", "AK"),
            ("signature", "x"),
            ("policy", "p"),
        ]);
        let now = at("2029-01-01T00:00:00Z");
        assert_eq!(
            check(&policy, &good, "p1", now),
            Ok(Accepted {
                length_range: Some((10, 1000))
            })
        );
        assert_eq!(
            check(&policy, &good, "p1", at("2030-01-01T00:00:00Z")),
            Err(PolicyError::Expired)
        );
        assert!(matches!(
            check(&policy, &good, "p2", now),
            Err(PolicyError::Condition(_))
        ));
        let mut bad_key = good.clone();
        bad_key[0].1 = "other/a.mp4".into();
        assert!(
            matches!(check(&policy, &bad_key, "p1", now), Err(PolicyError::Condition(c)) if c.contains("$key"))
        );
        let mut extra = good.clone();
        extra.push(("x-amz-meta-tag".into(), "t".into()));
        assert_eq!(
            check(&policy, &extra, "p1", now),
            Err(PolicyError::ExtraField("x-amz-meta-tag".into()))
        );
        let mut ignored = good.clone();
        ignored.push(("x-ignore-me".into(), "t".into()));
        assert!(check(&policy, &ignored, "p1", now).is_ok());
        let missing = form(&[("key", "user/a.mp4"), ("Content-Type", "video/mp4")]);
        assert!(
            matches!(check(&policy, &missing, "p1", now), Err(PolicyError::Condition(c)) if c.contains("acl"))
        );
        assert!(matches!(
            check("!!", &good, "p1", now),
            Err(PolicyError::Malformed(_))
        ));
        let empty_range = sign_v2(
            "secret",
            "2030-01-01T00:00:00Z",
            &[json!(["content-length-range", 1, 0])],
        );
        assert!(matches!(
            check(&empty_range.policy, &[], "p1", now),
            Err(PolicyError::Malformed(m)) if m.contains("above its maximum")
        ));
        assert_eq!(
            PolicyError::Expired.to_string(),
            "Invalid according to Policy: Policy expired."
        );
    }
}
