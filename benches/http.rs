//! The HTTP-version benchmark: drives a release `uplink dev --tls-listen` over loopback with
//! the same tus uploads (creation with upload, one request each) over HTTPS with HTTP/1.1,
//! HTTPS with HTTP/2 and HTTP/3 (QUIC), and prints MiB/s and server CPU seconds per GiB for
//! each, side by side:
//!
//! - `single`: one 256 MiB upload;
//! - `concurrent`: 50 uploads of 8 MiB at once, as 50 clients do them: a connection each.
//!
//! The uploads are made by `uplink bench`'s load engine, as the tool makes them.
//!
//! `cargo bench --bench http` runs all three versions; `-- --http 3` (repeatable) picks some;
//! `-- --test` (as CI does) runs tiny sizes, to keep the benchmark working.

mod support;

use support::tls_client::Node;
use support::{cpu_seconds, MIB};
use uplink::bench::transport::{Http, Trust};

/// Runs one workload over one version, driven by `uplink bench`'s load engine (a client and a
/// connection per upload, a token minted per upload: see [`support::engine_plan`]); its table
/// row.
async fn run(version: &str, workload: &str, count: usize, each: u64) -> String {
    let node = Node::start().await;
    let url = format!("https://localhost:{}", node.tls.port());
    let mut plan = support::engine_plan(&url, &node.api_key, count, each, each);
    // The node names its plain listener in the upload URLs it gives.
    plan.pin_edge = true;
    plan.trust = Trust::Pem(node.certificate());
    plan.http = version.parse::<Http>().unwrap();
    plan.creation_with_upload = true;
    let pid = node.child.id();
    let cpu0 = cpu_seconds(pid);
    let report = support::drive(plan).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let gib = report.bytes as f64 / (1024.0 * MIB as f64);
    format!(
        "{workload:<11} HTTP/{version:<4} {:>9.1} {:>11.2}",
        report.throughput_mib_s,
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
