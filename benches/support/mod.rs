//! What the load benchmarks share: free ports, readiness polling, and the CPU time and peak
//! memory of a server process and its children, read from /proc.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `url` until it answers (any status), for up to 30 s.
pub async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.is_err() {
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU seconds used so far by a process and its children (nginx's workers).
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1;
                let f: Vec<&str> = after.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let total: u64 = family(pid).into_iter().map(ticks).sum();
    total as f64 / 100.0
}

/// Peak resident memory of a process and its children, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let hwm = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    family(pid).into_iter().map(hwm).sum::<u64>() as f64 / 1024.0
}

pub fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        all.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    all
}

/// A `uplink dev` config file in `dir` for ingest benchmarks: no processing workers, so the
/// server's CPU is the ingest's alone (a worker would probe every benchmark upload).
pub fn ingest_only_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bench.toml");
    std::fs::write(&path, "workers = 0\n").unwrap();
    path
}
