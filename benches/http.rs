//! The HTTP-version benchmark: drives a release `uplink dev --tls-listen` over loopback with
//! the same tus uploads (creation with upload, one request each) over HTTPS with HTTP/1.1,
//! HTTPS with HTTP/2 and HTTP/3 (QUIC), and prints MiB/s and server CPU seconds per GiB for
//! each, side by side:
//!
//! - `single`: one 256 MiB upload;
//! - `concurrent`: 50 uploads of 8 MiB at once, as 50 clients do them: a connection each.
//!
//! `cargo bench --bench http` runs all three versions; `-- --http 3` (repeatable) picks some;
//! `-- --test` (as CI does) runs tiny sizes, to keep the benchmark working.

mod support;

use futures_util::StreamExt;
use std::time::Instant;
use support::tls_client::{Client, Node};
use support::{cpu_seconds, MIB};

/// Runs one workload over one version; its table row.
async fn run(version: &str, workload: &str, count: usize, each: u64) -> String {
    let node = Node::start().await;
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(Client::new(version, &node, node.tls).await);
    }
    let pid = node.child.id();
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(&clients)
        .map(|client| client.upload(&node.token, each))
        .buffer_unordered(count)
        .collect()
        .await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let bytes = each * count as u64;
    let gib = bytes as f64 / (1024.0 * MIB as f64);
    format!(
        "{workload:<11} HTTP/{version:<4} {:>9.1} {:>11.2}",
        bytes as f64 / MIB as f64 / wall,
        cpu / gib
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test");
    let mut versions: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--http")
        .map(|w| w[1].trim_start_matches("HTTP/").to_owned())
        .collect();
    if versions.is_empty() {
        versions = vec!["1.1".into(), "2".into(), "3".into()];
    }
    for v in &versions {
        assert!(
            ["1.1", "2", "3"].contains(&v.as_str()),
            "--http {v}: use 1.1, 2 or 3"
        );
    }
    let (single, count, each) = if test {
        (4 * MIB, 4, MIB)
    } else {
        (256 * MIB, 50, 8 * MIB)
    };
    let rt = support::runtime();
    println!(
        "{:<11} {:<9} {:>9} {:>11}",
        "workload", "version", "MiB/s", "CPU s/GiB"
    );
    rt.block_on(async {
        for (workload, count, each) in [("single", 1, single), ("concurrent", count, each)] {
            for version in &versions {
                println!("{}", run(version, workload, count, each).await);
            }
        }
    });
}
