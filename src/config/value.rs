//! Parsers for the value kinds config keys share (sizes, durations, addresses, base URLs,
//! ids) and the check that a named file exists; each error names its key. Pure but for the
//! file check.

use super::{invalid, ConfigError};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub(super) fn parse_size(raw: &str, key: &str) -> Result<u64, ConfigError> {
    raw.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| invalid(key, format!("{raw:?} is not a size like \"8MiB\": {e}")))
}

pub(super) fn parse_duration(raw: &str, key: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw)
        .map_err(|e| invalid(key, format!("{raw:?} is not a duration like \"30s\": {e}")))
}

pub(super) fn parse_addr(raw: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse().map_err(|_| {
        invalid(
            key,
            format!("{raw:?} is not an address like \"127.0.0.1:8080\""),
        )
    })
}

/// An address that may be left out (`metrics_listen`).
pub(super) fn optional_addr(
    raw: Option<&str>,
    key: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    raw.map(|raw| parse_addr(raw, key)).transpose()
}

pub(super) fn parse_base_url(raw: &str, key: &str) -> Result<String, ConfigError> {
    let url = raw.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid(key, format!("{raw:?} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        return Err(invalid(
            key,
            format!("{raw:?} must be a base URL like https://upload.example.com"),
        ));
    }
    Ok(url.to_owned())
}

pub(super) fn optional_id(raw: Option<&String>, key: &str) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(id) if !crate::token::valid_id(id) => Err(invalid(
            key,
            format!("{id:?} must be 1-64 letters, digits, '-' or '_'"),
        )),
        other => Ok(other.cloned()),
    }
}

pub(super) fn nonzero(n: usize, key: &str) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(invalid(key, "must be at least 1"))
    } else {
        Ok(n)
    }
}

/// A file a key names must exist before the process starts using it.
pub(super) fn existing_file(path: &Path, key: &str) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{} is not a readable file", path.display()),
        ))
    }
}
