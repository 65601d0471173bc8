//! The network-path benchmark: the same tus upload (creation with upload, one request) from a
//! client to a release `uplink dev --tls-listen` through a relay on 127.0.0.1 that delays each
//! direction by half the round trip and caps it at 200 Mbit/s (queueing at most one
//! bandwidth-delay product; `tests/common/relay.rs`), over HTTPS with HTTP/1.1 and HTTP/2 (a
//! TCP relay) and HTTP/3 (a UDP relay, a datagram in a hundred reordered), at 20 ms and 80 ms
//! of round trip, and HTTP/3 with 1% and 3% of datagrams lost each way (a quarter of the size
//! at 20 ms, a sixteenth at 80 ms). Prints each run's
//! goodput and the median of the runs. This kernel has no `tc netem`, so the path is emulated
//! in user space; a relay that terminates TCP cannot emulate loss for it.
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

/// Uploads `size` bytes `runs` times over HTTP `version` through the relay at `via`; prints
/// the median and every run.
async fn row(
    node: &Node,
    version: &str,
    via: std::net::SocketAddr,
    rtt_ms: u64,
    label: &str,
    size: u64,
    runs: usize,
) {
    let mut rates = Vec::new();
    for _ in 0..runs {
        // A connection per run: each starts from slow start, as a page's does.
        let client = Client::new(version, node, via).await;
        let start = Instant::now();
        assert_eq!(client.upload(&node.token, size).await, 201);
        rates.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{:<8} {:<18} {median:>10.1} {:>8.0}  {}",
        format!("{rtt_ms} ms"),
        format!("HTTP/{} {label}", version.trim_end_matches("-bbr")),
        median * 8.0,
        all.join(" ")
    );
}

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
        "{:<8} {:<18} {:>10} {:>8}  runs (MB/s)",
        "RTT", "version", "MB/s", "Mbit/s"
    );
    rt.block_on(async {
        let node = Node::start().await;
        for rtt_ms in [20, 80] {
            let path = relay::Path::new(rtt_ms, MBIT);
            let tcp = relay::Relay::start(node.tls, path);
            for version in ["1.1", "2"] {
                row(&node, version, tcp.addr, rtt_ms, "", size, runs).await;
            }
            let udp = relay::UdpPathRelay::start(node.tls, path, 0.0).await;
            row(&node, "3", udp.addr, rtt_ms, "", size, runs).await;
        }
        // With loss, a quarter of the size at 20 ms and a sixteenth at 80 ms: at 1% loss a
        // loss-based congestion controller sends about MSS / RTT × 1.22 / √p (Mathis et al.),
        // well under the link, and four times less at four times the round trip.
        for (rtt_ms, part) in [(20, 4), (80, 16)] {
            for loss in [0.01, 0.03] {
                let path = relay::Path::new(rtt_ms, MBIT);
                let udp = relay::UdpPathRelay::start(node.tls, path, loss).await;
                let label = format!("{:.0}% loss", loss * 100.0);
                row(&node, "3", udp.addr, rtt_ms, &label, size / part, runs).await;
                // The sender's congestion controller decides: an upload's sender is the client.
                let label = format!("{label}, BBR");
                row(&node, "3-bbr", udp.addr, rtt_ms, &label, size / part, runs).await;
            }
        }
    });
}
