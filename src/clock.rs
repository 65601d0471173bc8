//! The wall clock, read in one place. Pure modules (tokens, the upload lifecycle, part
//! plans) take time as an argument; the roles read it here and pass it in.

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
