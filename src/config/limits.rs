//! The edge's `[limits]` on slow and greedy clients, validated into [`Limits`]. Pure.

use super::value::{nonzero, parse_duration, parse_size};
use super::{invalid, ConfigError};
use serde::Deserialize;
use std::time::Duration;

/// `[limits]` in `edge.toml`; every key has a default close to nginx's and tusd's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// An HTTP/1.1 request's head must be complete this long after its first byte, else 408
    /// and the connection is closed. Default `"30s"` (nginx `client_header_timeout` is 60 s).
    pub header_timeout: Option<String>,
    /// The longest a request body may send nothing while the edge waits for it, else 408.
    /// Default `"60s"` (nginx `client_body_timeout`).
    pub body_gap: Option<String>,
    /// The least a request body must average per second of the edge's waiting, over each
    /// `min_rate_window`, else 408. Default `"1KiB"`.
    pub min_body_rate: Option<String>,
    /// Default `"30s"`.
    pub min_rate_window: Option<String>,
    /// Connections one client address may hold open at once, TCP and QUIC together; more
    /// are refused. Default 256 (many users may share one address behind a carrier NAT).
    pub max_connections_per_client: Option<usize>,
}

/// Validated limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An HTTP/1.1 request head must be complete this long after its first byte.
    pub header_timeout: Duration,
    /// The longest a request body may send nothing while the edge waits for it.
    pub body_gap: Duration,
    /// The least a body must average, in bytes per second of waiting…
    pub min_body_rate: u64,
    /// …over each window of this much waiting.
    pub min_rate_window: Duration,
    /// Connections one client address may hold open at once (TCP and QUIC together).
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        RawLimits::default()
            .validate()
            .expect("the default limits are valid")
    }
}

impl RawLimits {
    /// Checks every key.
    ///
    /// # Errors
    /// The first key with an unusable value.
    pub fn validate(&self) -> Result<Limits, ConfigError> {
        let duration = |raw: &Option<String>, default: &str, key: &str| {
            let d = parse_duration(raw.as_deref().unwrap_or(default), key)?;
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
            Ok(d)
        };
        Ok(Limits {
            header_timeout: duration(&self.header_timeout, "30s", "limits.header_timeout")?,
            body_gap: duration(&self.body_gap, "60s", "limits.body_gap")?,
            min_body_rate: parse_size(
                self.min_body_rate.as_deref().unwrap_or("1KiB"),
                "limits.min_body_rate",
            )?,
            min_rate_window: duration(&self.min_rate_window, "30s", "limits.min_rate_window")?,
            max_connections_per_client: nonzero(
                self.max_connections_per_client.unwrap_or(256),
                "limits.max_connections_per_client",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let limits = Limits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(30));
        assert_eq!(limits.min_body_rate, 1024);
        let zero = RawLimits {
            body_gap: Some("0s".into()),
            ..RawLimits::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.body_gap"));
    }
}
