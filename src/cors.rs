//! CORS for browsers uploading straight to the edge: each account lists the web origins its
//! pages are served from (`uplink account create --cors-origin`). A request whose account is
//! known (by its token or API key) is allowed for that account's origins; a preflight, which
//! carries no credentials, is allowed when some account lists the origin. Responses expose the
//! headers the upload protocols need read (`Location`, `Upload-*`, `Tus-*`).
//!
//! Pure: no I/O, no HTTP framework.

/// Response headers a browser page may read.
pub const EXPOSED: &str =
    "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, \
     Upload-Concat, Upload-Defer-Length, Upload-Complete, Upload-Incomplete, Upload-Limit, \
     Upload-Draft-Interop-Version, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, \
     Tus-Checksum-Algorithm, ETag, Uplink-Hook-Response";

/// Methods the upload protocols use.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Request headers the upload protocols use, allowed when a preflight does not list its own.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Content-Disposition, Upload-Offset, \
     Upload-Length, Upload-Metadata, Upload-Concat, Upload-Defer-Length, Upload-Checksum, \
     Upload-Complete, Upload-Incomplete, Upload-Draft-Interop-Version, Tus-Resumable, \
     Mi24-Upload-Total-Chunks, Mi24-Upload-Current-Chunk, X-Requested-With";

/// An origin as accounts list it: `*`, or `scheme://host[:port]` (http or https, no path).
///
/// # Errors
/// Anything else, with the reason.
pub fn validate_origin(origin: &str) -> Result<String, &'static str> {
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let url = url::Url::parse(origin).map_err(|_| "not a URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http or https origin");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be an origin only (scheme://host[:port]), without a path");
    }
    if origin.ends_with('/') {
        return Err("must not end with a slash");
    }
    Ok(url.origin().ascii_serialization())
}

/// Whether `allowed` (an account's list) admits `origin`.
#[must_use]
pub fn allows(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == origin)
}

/// The headers answering an allowed preflight from `origin` asking for `requested` headers.
#[must_use]
pub fn preflight(origin: &str, requested: Option<&str>) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-methods", METHODS.to_owned()),
        (
            "access-control-allow-headers",
            requested.unwrap_or(ALLOWED_HEADERS).to_owned(),
        ),
        ("access-control-max-age", "600".to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

/// The headers of an allowed response to `origin`.
#[must_use]
pub fn response(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-expose-headers", EXPOSED.to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_validated_and_matched_exactly() {
        assert_eq!(
            validate_origin("https://app.example.com").as_deref(),
            Ok("https://app.example.com")
        );
        assert_eq!(
            validate_origin("http://localhost:3000").as_deref(),
            Ok("http://localhost:3000")
        );
        assert_eq!(validate_origin("*").as_deref(), Ok("*"));
        assert!(validate_origin("https://app.example.com/").is_err());
        assert!(validate_origin("https://app.example.com/upload").is_err());
        assert!(validate_origin("ftp://app.example.com").is_err());
        assert!(validate_origin("app.example.com").is_err());
        let list = vec!["https://app.example.com".to_owned()];
        assert!(allows(&list, "https://app.example.com"));
        assert!(!allows(&list, "https://app.example.com.evil.net"));
        assert!(!allows(&list, "http://app.example.com"));
        assert!(allows(&["*".to_owned()], "https://anything.example"));
        assert!(response("https://a.example")
            .iter()
            .any(|(k, v)| *k == "access-control-expose-headers"
                && v.contains("Upload-Offset")
                && v.contains("Uplink-Hook-Response")));
    }
}
