//! Edge upload tokens, modelled on CDN edge tokens (Akamai EdgeAuth style):
//! `kid=K~exp=UNIX~acct=A[~pl=P]~(upl=UPLOAD|acl=PATH)[~max=BYTES][~q=BYTES][~n=UPLOADS][~tid=ID][~rg=REGION]~hmac=HEX`.
//!
//! The origin mints them with the first key of a [`Keyring`]; edges verify them with any key
//! of the same ring, by the token's `kid`, with no database: HMAC-SHA256 over everything
//! before `~hmac=`, compared in constant time; expiry with a small clock-skew allowance.
//! Keys rotate by adding a new key in front and keeping the old ones until their tokens expire.
//!
//! Pure: time is passed in (Unix seconds); no I/O.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// What [`TokenError::Malformed`] says when a request carries no token at all.
pub const NO_TOKEN: &str = "no token";

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One existing upload, by id.
    Upload(String),
    /// Request paths: an exact path, or a prefix when it ends in `*`.
    Acl(String),
}

/// The signed contents of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Id of the key that signed it.
    pub key_id: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// The account the uploads belong to.
    pub account: String,
    /// The pipeline uploads go through, if fixed.
    pub pipeline: Option<String>,
    /// What it allows.
    pub scope: Scope,
    /// Largest upload allowed, in bytes.
    pub max_size: Option<u64>,
    /// The account's remaining storage quota when the token was minted, in bytes.
    pub quota: Option<u64>,
    /// How many uploads it may create (tus/IETF tokens); unlimited when absent.
    pub max_uploads: Option<u32>,
    /// The token's own id, for counting the uploads it created.
    pub token_id: Option<String>,
    /// The edge region it may be used in (geo routing); anywhere when absent.
    pub region: Option<String>,
}

/// Why a token was refused. Each maps to a client-visible 401 or 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// Signed with a key this node does not know.
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not match the contents.
    #[error("the token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("the token expired")]
    Expired,
    /// Valid, but not for this request.
    #[error("the token does not allow this request")]
    WrongScope,
    /// Valid, but for the edges of another region.
    #[error("the token is for the edges of region {0}")]
    WrongRegion(String),
}

impl TokenError {
    /// A short name for the refusal (a metrics label).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(NO_TOKEN) => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::WrongScope => "wrong_scope",
            TokenError::WrongRegion(_) => "wrong_region",
        }
    }

    /// The HTTP status: 403 for a genuine token used out of scope, 401 otherwise.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            TokenError::WrongScope | TokenError::WrongRegion(_) => 403,
            _ => 401,
        }
    }
}

/// A set of HMAC keys by id; the first one signs.
#[derive(Clone)]
pub struct Keyring {
    signing: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("signing", &self.signing)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `id` can be a key id or a token claim such as a region: 1-64 letters, digits, `-`
/// or `_`.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// Parses keys, one per line or comma-separated, as `ID:BASE64` (standard or URL-safe
    /// alphabet). The first key signs. Blank lines and `#` comments are ignored.
    ///
    /// # Errors
    /// A message naming the offending key (never its value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut signing = None;
        let mut keys = BTreeMap::new();
        for entry in text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| "each key must be written ID:BASE64".to_owned())?;
            if !valid_id(id) {
                return Err(format!(
                    "key id {id:?} must be 1-64 letters, digits, '-' or '_'"
                ));
            }
            let b64 = b64.trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| format!("key {id} is not valid base64"))?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(format!("key {id} must be at least {MIN_KEY_BYTES} bytes"));
            }
            if keys.insert(id.to_owned(), bytes).is_some() {
                return Err(format!("key id {id} appears twice"));
            }
            signing.get_or_insert_with(|| id.to_owned());
        }
        let signing = signing.ok_or_else(|| "no keys given".to_owned())?;
        Ok(Self { signing, keys })
    }

    /// A new random key, written `ID:BASE64` (for `uplink dev` and operators).
    #[must_use]
    pub fn generate_line(id: &str, rng: &mut impl rand::Rng) -> String {
        let key: [u8; 32] = rng.random();
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    fn mac(&self, key_id: &str) -> Result<HmacSha256, TokenError> {
        let key = self.keys.get(key_id).ok_or(TokenError::UnknownKey)?;
        HmacSha256::new_from_slice(key).map_err(|_| TokenError::UnknownKey)
    }

    /// The signature of a read link to a stored output (`KID.HEX`): outputs are served by the
    /// edge to whoever holds the link the status record gives, with no expiry.
    #[must_use]
    pub fn sign_output(&self, key: &str) -> String {
        let Ok(mut mac) = self.mac(&self.signing) else {
            return String::new();
        };
        mac.update(b"output:");
        mac.update(key.as_bytes());
        format!(
            "{}.{}",
            self.signing,
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Whether `signature` is [`Keyring::sign_output`]'s for `key` by any key of the ring.
    #[must_use]
    pub fn verify_output(&self, key: &str, signature: &str) -> bool {
        let Some((key_id, hex_mac)) = signature.split_once('.') else {
            return false;
        };
        let (Ok(mut mac), Ok(expected)) = (self.mac(key_id), hex::decode(hex_mac)) else {
            return false;
        };
        mac.update(b"output:");
        mac.update(key.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }

    /// Mints a token for `claims` (its `key_id` is replaced by the signing key's).
    ///
    /// # Errors
    /// A claim value contains `~` or `=` or is empty, which the format cannot carry.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let claims = Claims {
            key_id: self.signing.clone(),
            ..claims.clone()
        };
        self.seal(&encode(&claims)?)
    }

    /// `body` (a token's fields) with its `~hmac=` under the signing key (the fuzz target
    /// `token` seals arbitrary bodies with it to reach the fields' decoder).
    ///
    /// # Errors
    /// The signing key is missing (it never is in a parsed ring).
    pub(crate) fn seal(&self, body: &str) -> Result<String, TokenError> {
        let mut mac = self.mac(&self.signing)?;
        mac.update(body.as_bytes());
        Ok(format!(
            "{body}~hmac={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    /// Verifies a token at time `now` (Unix seconds), allowing `skew` seconds past expiry.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str, now: u64, skew: u64) -> Result<Claims, TokenError> {
        let (body, sig) = token
            .rsplit_once("~hmac=")
            .ok_or(TokenError::Malformed("no hmac field"))?;
        let sig = hex::decode(sig).map_err(|_| TokenError::Malformed("hmac is not hex"))?;
        let key_id = body
            .split('~')
            .find_map(|f| f.strip_prefix("kid="))
            .ok_or(TokenError::Malformed("no kid field"))?;
        let mut mac = self.mac(key_id)?;
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = decode(body)?;
        if now > claims.expires.saturating_add(skew) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn encode(c: &Claims) -> Result<String, TokenError> {
    let mut fields: Vec<(&str, String)> = vec![
        ("kid", c.key_id.clone()),
        ("exp", c.expires.to_string()),
        ("acct", c.account.clone()),
    ];
    if let Some(p) = &c.pipeline {
        fields.push(("pl", p.clone()));
    }
    match &c.scope {
        Scope::Upload(id) => fields.push(("upl", id.clone())),
        Scope::Acl(path) => fields.push(("acl", path.clone())),
    }
    if let Some(m) = c.max_size {
        fields.push(("max", m.to_string()));
    }
    if let Some(q) = c.quota {
        fields.push(("q", q.to_string()));
    }
    if let Some(n) = c.max_uploads {
        fields.push(("n", n.to_string()));
    }
    if let Some(t) = &c.token_id {
        fields.push(("tid", t.clone()));
    }
    if let Some(r) = &c.region {
        fields.push(("rg", r.clone()));
    }
    if fields
        .iter()
        .any(|(_, v)| v.is_empty() || v.contains(['~', '=', '&', '#', ' ']))
    {
        return Err(TokenError::Malformed(
            "a claim is empty or contains ~ = & # or a space",
        ));
    }
    Ok(fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("~"))
}

fn decode(body: &str) -> Result<Claims, TokenError> {
    let mut map = BTreeMap::new();
    for field in body.split('~') {
        let (k, v) = field
            .split_once('=')
            .ok_or(TokenError::Malformed("a field has no '='"))?;
        if !matches!(
            k,
            "kid" | "exp" | "acct" | "pl" | "upl" | "acl" | "max" | "q" | "n" | "tid" | "rg"
        ) {
            return Err(TokenError::Malformed("unknown field"));
        }
        if map.insert(k, v).is_some() {
            return Err(TokenError::Malformed("a field appears twice"));
        }
    }
    let num = |k: &str| -> Result<Option<u64>, TokenError> {
        map.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| TokenError::Malformed("a number field is not a number"))
            })
            .transpose()
    };
    let scope = match (map.get("upl"), map.get("acl")) {
        (Some(id), None) => Scope::Upload((*id).to_owned()),
        (None, Some(acl)) => Scope::Acl((*acl).to_owned()),
        _ => {
            return Err(TokenError::Malformed(
                "exactly one of upl and acl is required",
            ))
        }
    };
    Ok(Claims {
        key_id: map
            .get("kid")
            .map(|s| (*s).to_owned())
            .ok_or(TokenError::Malformed("no kid field"))?,
        expires: num("exp")?.ok_or(TokenError::Malformed("no exp field"))?,
        account: map
            .get("acct")
            .map(|s| (*s).to_owned())
            .ok_or(TokenError::Malformed("no acct field"))?,
        pipeline: map.get("pl").map(|s| (*s).to_owned()),
        scope,
        max_size: num("max")?,
        quota: num("q")?,
        max_uploads: num("n")?
            .map(u32::try_from)
            .transpose()
            .map_err(|_| TokenError::Malformed("n is too large"))?,
        token_id: map.get("tid").map(|s| (*s).to_owned()),
        region: map.get("rg").map(|s| (*s).to_owned()),
    })
}

impl Claims {
    /// Checks that the token may be used on an edge of region `here` (none: an edge outside
    /// any fleet region).
    ///
    /// # Errors
    /// [`TokenError::WrongRegion`].
    pub fn permits_region(&self, here: Option<&str>) -> Result<(), TokenError> {
        match &self.region {
            Some(region) if here != Some(region.as_str()) => {
                Err(TokenError::WrongRegion(region.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the token allows a request for `path`, on upload `upload` (if the request
    /// names one), of `size` bytes (if known).
    ///
    /// # Errors
    /// [`TokenError::WrongScope`].
    pub fn permits(
        &self,
        path: &str,
        upload: Option<&str>,
        size: Option<u64>,
    ) -> Result<(), TokenError> {
        let in_scope = match &self.scope {
            Scope::Upload(id) => upload == Some(id.as_str()),
            Scope::Acl(acl) => match acl.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == acl,
            },
        };
        let fits = match (self.max_size, size) {
            (Some(max), Some(size)) => size <= max,
            _ => true,
        };
        if in_scope && fits {
            Ok(())
        } else {
            Err(TokenError::WrongScope)
        }
    }

    /// Whether the token reaches an existing upload of `account` that upload token `grant`
    /// created (`None`: a control API created it). A token scoped to one upload reaches that
    /// one ([`Claims::permits`] checks which); a token for a path reaches only the uploads its
    /// own grant created, so one end user's token never opens another's upload.
    #[must_use]
    pub fn reaches(&self, account: &str, grant: Option<&str>) -> bool {
        self.account == account
            && match &self.scope {
                Scope::Upload(_) => true,
                Scope::Acl(_) => self.token_id.is_some() && self.token_id.as_deref() == grant,
            }
    }
}

/// The `__token__` parameter of a query string (percent-decoded), if present and not empty.
/// Callers fall back to the `Authorization: Bearer` header.
#[must_use]
pub fn from_query(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "__token__" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    fn key(id: &str, byte: u8) -> String {
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode([byte; 32])
        )
    }

    fn claims() -> Claims {
        Claims {
            key_id: String::new(),
            expires: 1_000_000,
            account: "acct-1".into(),
            pipeline: Some("53a1ac4914eaa8ffa4fce91b".into()),
            scope: Scope::Upload("9c1fa5c4-a8f1-4b2e-9d6e-1c8a0b9e2d7f".into()),
            max_size: Some(5_000_000),
            quota: None,
            max_uploads: None,
            token_id: None,
            region: None,
        }
    }

    #[test]
    fn a_path_token_reaches_only_its_own_grants_uploads() {
        let upload_scoped = claims();
        assert!(upload_scoped.reaches("acct-1", None));
        assert!(upload_scoped.reaches("acct-1", Some("g1")));
        assert!(!upload_scoped.reaches("acct-2", None));
        let grant = Claims {
            scope: Scope::Acl("/files/*".into()),
            token_id: Some("g1".into()),
            ..claims()
        };
        assert!(grant.reaches("acct-1", Some("g1")));
        assert!(!grant.reaches("acct-1", Some("g2")));
        assert!(!grant.reaches("acct-1", None), "a control API's upload");
        assert!(!grant.reaches("acct-2", Some("g1")));
        let no_grant = Claims {
            token_id: None,
            ..grant
        };
        assert!(!no_grant.reaches("acct-1", None));
    }

    #[test]
    fn output_links_verify_for_their_key_only_and_survive_rotation() {
        let old = ring(&key("k1", 1));
        let sig = old.sign_output("accounts/a/uploads/u/outputs/720p.mp4");
        assert!(old.verify_output("accounts/a/uploads/u/outputs/720p.mp4", &sig));
        assert!(!old.verify_output("accounts/a/uploads/u/source", &sig));
        assert!(!old.verify_output("accounts/a/uploads/u/outputs/720p.mp4", "k1.00"));
        assert!(!old.verify_output("x", "nonsense"));
        let rotated = ring(&format!("{},{}", key("k2", 2), key("k1", 1)));
        assert!(rotated.verify_output("accounts/a/uploads/u/outputs/720p.mp4", &sig));
        assert!(!ring(&key("k1", 3)).verify_output("accounts/a/uploads/u/outputs/720p.mp4", &sig));
    }

    #[test]
    fn a_region_token_works_in_its_region_only() {
        let r = ring(&key("k1", 1));
        let scoped = Claims {
            region: Some("eu".into()),
            ..claims()
        };
        let token = r.sign(&scoped).unwrap();
        assert!(token.contains("~rg=eu~hmac="), "{token}");
        let back = r.verify(&token, 0, 0).unwrap();
        assert_eq!(back.permits_region(Some("eu")), Ok(()));
        assert_eq!(
            back.permits_region(Some("us")),
            Err(TokenError::WrongRegion("eu".into()))
        );
        assert_eq!(
            back.permits_region(None),
            Err(TokenError::WrongRegion("eu".into()))
        );
        // A token without a region works on every edge.
        assert_eq!(claims().permits_region(Some("us")), Ok(()));
    }

    #[test]
    fn round_trip_and_expiry_boundary() {
        let r = ring(&key("k1", 1));
        let token = r.sign(&claims()).unwrap();
        assert!(
            token.starts_with("kid=k1~exp=1000000~acct=acct-1~"),
            "{token}"
        );
        let got = r.verify(&token, 1_000_000, 0).unwrap();
        assert_eq!(
            got,
            Claims {
                key_id: "k1".into(),
                ..claims()
            }
        );
        assert_eq!(r.verify(&token, 1_000_001, 0), Err(TokenError::Expired));
        assert!(r.verify(&token, 1_000_030, 30).is_ok());
        assert_eq!(r.verify(&token, 1_000_031, 30), Err(TokenError::Expired));
    }

    #[test]
    fn keys_rotate_without_breaking_old_tokens() {
        let old = ring(&key("k1", 1));
        let token = old.sign(&claims()).unwrap();
        let rotated = ring(&format!("{}\n{}", key("k2", 2), key("k1", 1)));
        assert!(rotated.verify(&token, 0, 0).is_ok());
        let new_token = rotated.sign(&claims()).unwrap();
        assert!(new_token.starts_with("kid=k2~"));
        assert_eq!(old.verify(&new_token, 0, 0), Err(TokenError::UnknownKey));
        // Retiring k1 retires its tokens.
        assert_eq!(
            ring(&key("k2", 2)).verify(&token, 0, 0),
            Err(TokenError::UnknownKey)
        );
        // Same id, different key material: a forgery.
        assert_eq!(
            ring(&key("k1", 9)).verify(&token, 0, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn scopes_are_enforced() {
        let c = claims();
        assert!(c
            .permits("/x", Some("9c1fa5c4-a8f1-4b2e-9d6e-1c8a0b9e2d7f"), Some(10))
            .is_ok());
        assert_eq!(
            c.permits("/x", Some("other"), None),
            Err(TokenError::WrongScope)
        );
        assert_eq!(c.permits("/x", None, None), Err(TokenError::WrongScope));
        assert_eq!(
            c.permits(
                "/x",
                Some("9c1fa5c4-a8f1-4b2e-9d6e-1c8a0b9e2d7f"),
                Some(5_000_001)
            ),
            Err(TokenError::WrongScope)
        );
        let acl = Claims {
            scope: Scope::Acl("/files/*".into()),
            ..claims()
        };
        assert!(acl.permits("/files/abc", None, None).is_ok());
        assert!(acl.permits("/other", None, None).is_err());
        let exact = Claims {
            scope: Scope::Acl("/files".into()),
            ..claims()
        };
        assert!(exact.permits("/files", None, None).is_ok());
        assert!(exact.permits("/files/x", None, None).is_err());
        assert_eq!(TokenError::WrongScope.status(), 403);
        assert_eq!(TokenError::Expired.status(), 401);
    }

    #[test]
    fn malformed_tokens_and_keys_are_refused() {
        let r = ring(&key("k1", 1));
        for bad in ["", "abc", "kid=k1~hmac=zz", "~hmac=00", "exp=1~hmac=00"] {
            assert!(r.verify(bad, 0, 0).is_err(), "{bad:?}");
        }
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("k1:c2hvcnQ=")
            .unwrap_err()
            .contains("32 bytes"));
        assert!(Keyring::parse("k 1:AAAA").is_err());
        assert!(
            Keyring::parse(&format!("{}\n{}", key("k1", 1), key("k1", 2)))
                .unwrap_err()
                .contains("twice")
        );
        let with_tilde = Claims {
            account: "a~b".into(),
            ..claims()
        };
        assert!(r.sign(&with_tilde).is_err());
        assert!(!format!("{r:?}")
            .contains(&base64::engine::general_purpose::STANDARD.encode([1u8; 32])));
    }

    #[test]
    fn tokens_come_from_the_query_string() {
        assert_eq!(
            from_query(Some("a=1&__token__=kid=k~hmac=00")).as_deref(),
            Some("kid=k~hmac=00")
        );
        assert_eq!(
            from_query(Some("__token__=kid%3Dk%7Ehmac%3D00")).as_deref(),
            Some("kid=k~hmac=00")
        );
        assert_eq!(from_query(Some("__token__=")), None);
        assert_eq!(from_query(Some("x=1")), None);
        assert_eq!(from_query(None), None);
    }

    proptest! {
        #[test]
        fn any_single_changed_byte_fails(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let r = ring(&key("k1", 1));
            let token = r.sign(&claims()).unwrap();
            let mut bytes = token.clone().into_bytes();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            // Hex digits differ only in case: the same signature bytes, still valid.
            prop_assume!(!tampered.eq_ignore_ascii_case(&token));
            prop_assert!(r.verify(&tampered, 0, 0).is_err());
        }

        #[test]
        fn round_trip_for_any_claims(
            exp in any::<u64>(),
            account in "[a-zA-Z0-9-]{1,40}",
            upload in proptest::option::of("[a-f0-9-]{1,36}"),
            max in proptest::option::of(any::<u64>()),
            quota in proptest::option::of(any::<u64>()),
            n in proptest::option::of(any::<u32>()),
            region in proptest::option::of("[a-z0-9-]{1,20}"),
        ) {
            let r = ring(&key("k1", 1));
            let c = Claims {
                key_id: "k1".into(),
                expires: exp,
                account,
                pipeline: None,
                scope: upload.map_or_else(|| Scope::Acl("/files/*".into()), Scope::Upload),
                max_size: max,
                quota,
                max_uploads: n,
                token_id: Some("t1".into()),
                region,
            };
            let token = r.sign(&c).unwrap();
            prop_assert_eq!(r.verify(&token, 0, 0).unwrap(), c);
        }
    }
}
