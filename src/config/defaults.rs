//! Every key's default, in one place: the role configs name them in `#[serde(default = …)]`
//! and `uplink dev` takes the same values, so the two cannot drift apart.

pub(super) fn default_heartbeat_timeout() -> String {
    "30s".into()
}
pub(super) fn default_edge_lost_after() -> String {
    "2m".into()
}
pub(super) fn default_heartbeat_interval() -> String {
    "10s".into()
}
pub(super) fn default_min_spool_free() -> String {
    "1GiB".into()
}
pub(super) fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.1/32".into(), "::1/128".into()]
}
pub(super) fn default_abandon_after() -> String {
    "7d".into()
}
pub(super) fn default_sweep_interval() -> String {
    "5m".into()
}
pub(super) fn default_workers() -> usize {
    1
}
pub(super) fn default_job_lease() -> String {
    "10m".into()
}
pub(super) fn default_job_attempts() -> u32 {
    3
}
pub(super) fn default_max_upload() -> String {
    "50GiB".into()
}
pub(super) fn default_form_max() -> String {
    "2GiB".into()
}
pub(super) fn default_threads() -> usize {
    2
}
pub(super) fn default_auth_cache_ttl() -> String {
    "60s".into()
}
pub(super) fn default_token_ttl() -> String {
    "4h".into()
}
pub(super) fn default_token_skew() -> String {
    "30s".into()
}
pub(super) fn default_drain_timeout() -> String {
    "60s".into()
}
