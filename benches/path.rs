//! The network-path benchmark: the same tus upload (creation with upload, one request) from a
//! client to a release `uplink dev --tls-listen` through a relay on 127.0.0.1 that delays each
//! direction by half the round trip and caps it at 200 Mbit/s (queueing at most one
//! bandwidth-delay product; `tests/common/relay.rs`), over HTTPS with HTTP/1.1 and with
//! HTTP/2, at 20 ms and 80 ms of round trip. Prints each run's goodput and time, and the
//! median of the runs. This kernel has no `tc netem`, so the path is emulated in user space;
//! a relay that terminates TCP cannot emulate loss for it.
//!
//! `cargo bench --bench path` runs 64 MiB three times per row; `-- --runs N` changes the
//! count; `-- --test` (as CI does) one small upload per row, to keep the benchmark working.

#[path = "../tests/common/relay.rs"]
mod relay;
mod support;

use std::time::Instant;
use support::tls_client::{Client, Node};
use support::MIB;

/// The path's bandwidth each way.
const MBIT: u64 = 200;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test");
    let runs: usize = args
        .windows(2)
        .find(|w| w[0] == "--runs")
        .map_or(if test { 1 } else { 3 }, |w| {
            w[1].parse().expect("--runs N")
        });
    let size = if test { 2 * MIB } else { 64 * MIB };
    let rt = support::runtime();
    println!(
        "{} MiB tus upload through a {MBIT} Mbit/s relay; median of {runs} run(s)",
        size / MIB
    );
    println!(
        "{:<8} {:<9} {:>10} {:>8}  runs (MB/s)",
        "RTT", "version", "MB/s", "Mbit/s"
    );
    rt.block_on(async {
        let node = Node::start().await;
        for rtt_ms in [20, 80] {
            let relay = relay::Relay::start(node.tls, relay::Path::new(rtt_ms, MBIT));
            for version in ["1.1", "2"] {
                let mut rates = Vec::new();
                for _ in 0..runs {
                    // A connection per run: each starts from TCP's slow start, as a page's does.
                    let client = Client::new(version, &node, relay.addr).await;
                    let start = Instant::now();
                    assert_eq!(client.upload(&node.token, size).await, 201);
                    rates.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);
                }
                let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
                rates.sort_by(f64::total_cmp);
                let median = rates[rates.len() / 2];
                println!(
                    "{:<8} HTTP/{version:<4} {median:>10.1} {:>8.0}  {}",
                    format!("{rtt_ms} ms"),
                    median * 8.0,
                    all.join(" ")
                );
            }
        }
    });
}
