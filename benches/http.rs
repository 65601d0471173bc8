//! The HTTP-version benchmark: drives a release `uplink dev --tls-listen` over loopback with
//! the same tus uploads (creation with upload, one request each) over HTTPS with HTTP/1.1,
//! HTTPS with HTTP/2 and HTTP/3 (QUIC), and prints MiB/s and CPU seconds per GiB of the server
//! and of the clients (this process) for each, side by side:
//!
//! - `single`: one 256 MiB upload;
//! - `concurrent`: 50 uploads of 8 MiB at once, as 50 clients do them: a connection each.
//!
//! The uploads are made by `uplink bench`'s load engine, as the tool makes them.
//!
//! `quic` is the limit for any quinn server: the same bytes sent to a raw QUIC stream sink (no
//! HTTP/3) on the edge's own QUIC endpoint settings; `quic-store` is that sink also storing
//! what it reads as the edge stores an upload (the limit for any quinn server that keeps the
//! bytes durably). Ratios of HTTP/3 to them and to HTTP/1.1 follow each workload. Every row
//! starts from the same state of the machine's memory and disk cache ([`support::settle`]).
//!
//! `cargo bench --bench http` runs all five; `-- --http 3` (repeatable: 1.1, 2, 3, quic,
//! quic-store) picks some;
//! `-- --test` (as CI does) runs tiny sizes, to keep the benchmark working. A version with
//! `-base` (`--http 3-base`) runs against `UPLINK_BENCH_BASELINE=PATH`, another build of
//! `uplink` (a change's before and after, side by side in one run).

mod support;

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use support::tls_client::Node;
use support::{cpu_seconds, own_cpu_seconds, MIB};
use uplink::bench::transport::{Http, Trust};
use uplink::store::appender::Appender;

/// A raw QUIC sink (no HTTP/3) on the edge's own QUIC endpoint settings
/// ([`uplink::edge::quic_endpoint`]): each bidirectional stream is read to its end (a batch of
/// pieces at a time, the fastest read quinn has) and answered with the number of bytes read.
/// With `store`, each stream's bytes are also written to a file of their own as the edge writes
/// an upload ([`Appender`]: batches on a blocking thread, write-back started as it goes) and
/// synced before the answer: what any quinn server that stores uploads durably must do. Run as
/// a process of its own (this benchmark's binary with `--quic-sink PORT DIR [--store]`), so its
/// CPU is measured as the node's is; it says `ready` on stdout once it listens.
fn serve_sink(port: u16, dir: &Path, store: bool) {
    static STREAMS: AtomicUsize = AtomicUsize::new(0);
    support::runtime().block_on(async {
        let (cert, key) = (dir.join("certificate.pem"), dir.join("private-key.pem"));
        uplink::edge::tls::ensure_self_signed(&cert, &key).unwrap();
        let certificate = Arc::new(uplink::edge::tls::Certificate::open(&cert, &key).unwrap());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let endpoint = uplink::edge::quic_endpoint(addr, &certificate).unwrap();
        println!("ready");
        while let Some(incoming) = endpoint.accept().await {
            let dir = dir.to_owned();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let file = store.then(|| {
                        let name = STREAMS.fetch_add(1, Ordering::Relaxed).to_string();
                        Appender::appending(std::fs::File::create(dir.join(name)).unwrap())
                    });
                    tokio::spawn(async move {
                        let mut file = file;
                        let mut batch = vec![bytes::Bytes::new(); 64];
                        let mut n = 0u64;
                        while let Ok(Some(taken)) = recv.read_chunks(&mut batch).await {
                            for piece in &mut batch[..taken] {
                                n += piece.len() as u64;
                                if let Some(file) = &mut file {
                                    file.push(std::mem::take(piece)).await.unwrap();
                                }
                            }
                        }
                        if let Some(file) = file {
                            file.sync().await.unwrap();
                        }
                        let _ = send.write_all(n.to_string().as_bytes()).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
}

/// The same workload sent to a raw QUIC sink: a connection per upload (quinn's default client
/// settings, as the load engine's HTTP/3 client has), one stream each; its row and MiB/s.
async fn run_sink(workload: &str, count: usize, each: u64, store: bool) -> (String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--quic-sink", &port.to_string()])
        .arg(dir.path())
        .args(store.then_some("--store"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let sink = support::Process(child);
    let certificate = std::fs::read(dir.path().join("certificate.pem")).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let meter = Meter::start(sink.id());
    let start = Instant::now();
    futures_util::stream::iter(0..count)
        .map(|_| sink_upload(addr, &certificate, each))
        .buffer_unordered(count)
        .collect::<Vec<()>>()
        .await;
    let bytes = each * count as u64;
    let mib_s = bytes as f64 / MIB as f64 / start.elapsed().as_secs_f64();
    let label = if store { "QUIC store" } else { "QUIC sink" };
    (meter.row(workload, label, mib_s, bytes), mib_s)
}

/// CPU seconds of a server and of this process's own threads (the clients, not the server
/// it started) since it started: on this machine they share the cores, so a client's cost is
/// taken from the server's rate.
struct Meter {
    pid: u32,
    server: f64,
    client: f64,
}

impl Meter {
    fn start(pid: u32) -> Self {
        Self {
            pid,
            server: cpu_seconds(pid),
            client: own_cpu_seconds(std::process::id()),
        }
    }

    /// A table row: the rate and CPU seconds per GiB of `bytes`, server's and clients'.
    fn row(&self, workload: &str, label: &str, mib_s: f64, bytes: u64) -> String {
        let gib = bytes as f64 / (1024.0 * MIB as f64);
        let server = (cpu_seconds(self.pid) - self.server) / gib;
        let client = (own_cpu_seconds(std::process::id()) - self.client) / gib;
        format!("{workload:<11} {label:<9} {mib_s:>9.1} {server:>11.2} {client:>11.2}")
    }
}

/// One upload of `len` bytes to the sink, on a connection of its own.
async fn sink_upload(addr: SocketAddr, certificate: &[u8], len: u64) {
    let tls = support::tls::client_config(certificate, b"h3");
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    for piece in support::pieces(len) {
        send.write_chunk(piece).await.unwrap();
    }
    send.finish().unwrap();
    let answer = recv.read_to_end(32).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), len.to_string());
}

/// Runs one workload over one version, driven by `uplink bench`'s load engine (a client and a
/// connection per upload, a token minted per upload: see [`support::engine_plan`]); its table
/// row.
async fn run(version: &str, workload: &str, count: usize, each: u64) -> (String, f64) {
    let label = format!("HTTP/{version}");
    let (node, version) = match version.strip_suffix("-base") {
        Some(v) => (Node::start_bin(&support::baseline().unwrap()).await, v),
        None => (Node::start().await, version),
    };
    let url = format!("https://localhost:{}", node.tls.port());
    let mut plan = support::engine_plan(&url, &node.api_key, count, each, each);
    // The node names its plain listener in the upload URLs it gives.
    plan.pin_edge = true;
    plan.trust = Trust::Pem(node.certificate());
    plan.http = version.parse::<Http>().unwrap();
    plan.creation_with_upload = true;
    let meter = Meter::start(node.child.id());
    let report = support::drive(plan).await;
    let mib_s = report.throughput_mib_s;
    (meter.row(workload, &label, mib_s, report.bytes), mib_s)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--quic-sink") {
        let store = args.iter().any(|a| a == "--store");
        return serve_sink(args[i + 1].parse().unwrap(), Path::new(&args[i + 2]), store);
    }
    let test = args.iter().any(|a| a == "--test");
    let mut versions: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--http")
        .map(|w| w[1].trim_start_matches("HTTP/").to_owned())
        .collect();
    if versions.is_empty() {
        versions = ["1.1", "2", "3", "quic", "quic-store"]
            .map(String::from)
            .to_vec();
    }
    for v in &versions {
        let base = v.strip_suffix("-base");
        assert!(
            ["1.1", "2", "3", "quic", "quic-store"].contains(&v.as_str())
                || base.is_some_and(|b| ["1.1", "2", "3"].contains(&b)),
            "--http {v}: use 1.1, 2, 3, quic (the raw QUIC sink) or quic-store (the sink storing \
             what it reads), the first three also with -base"
        );
        assert!(
            base.is_none() || support::baseline().is_some(),
            "--http {v} needs UPLINK_BENCH_BASELINE=PATH (a build of uplink to compare with)"
        );
    }
    let (single, count, each) = if test {
        (4 * MIB, 4, MIB)
    } else {
        (256 * MIB, 50, 8 * MIB)
    };
    let _memory = (!test).then(support::hold_memory);
    let rt = support::runtime();
    println!(
        "{:<11} {:<9} {:>9} {:>11} {:>11}",
        "workload", "version", "MiB/s", "CPU s/GiB", "client CPU"
    );
    rt.block_on(async {
        for (workload, count, each) in [("single", 1, single), ("concurrent", count, each)] {
            let mut rates = std::collections::HashMap::new();
            for version in &versions {
                // Each row starts with nothing dirty: a row would otherwise pay for writing
                // back the previous row's spool files.
                support::settle(count as u64 * each);
                let (row, mib_s) = if version.starts_with("quic") {
                    run_sink(workload, count, each, version == "quic-store").await
                } else {
                    run(version, workload, count, each).await
                };
                println!("{row}");
                rates.insert(version.as_str(), mib_s);
            }
            let ratio = |a: &str, b: &str| Some(rates.get(a)? / rates.get(b)?);
            if let Some(r) = ratio("3", "quic") {
                println!("{workload:<11} HTTP/3 ÷ QUIC sink {r:>6.2}×");
            }
            if let Some(r) = ratio("3", "quic-store") {
                println!("{workload:<11} HTTP/3 ÷ QUIC store {r:>5.2}×");
            }
            if let Some(r) = ratio("3", "1.1") {
                println!("{workload:<11} HTTP/3 ÷ HTTP/1.1  {r:>6.2}×");
            }
            if let Some(r) = ratio("3", "3-base") {
                println!("{workload:<11} HTTP/3 ÷ baseline  {r:>6.2}×");
            }
        }
    });
}
