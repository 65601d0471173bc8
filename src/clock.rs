//! The wall clock, read in one place. Pure modules (tokens, the upload lifecycle, part
//! plans) take time as an argument; the roles read it here and pass it in. (Deadlines and
//! timeouts use the monotonic clock, `Instant`, which is not the wall clock.)

/// Milliseconds since the Unix epoch, the unit of every stored time.
#[must_use]
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Seconds since the Unix epoch, the unit of token expiry.
#[must_use]
pub fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// Now, as a calendar time (S3 policy expiry and dates, dated object keys).
#[must_use]
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Now, as the file system's time (ages of files from their modification times).
#[must_use]
pub fn now_system() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// A time (ms since the epoch) as the APIs show it: RFC 3339 UTC with seconds, e.g.
/// `2024-08-11T10:00:00Z`.
#[must_use]
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
