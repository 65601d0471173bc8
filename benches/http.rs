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

use bytes::Bytes;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use support::{cpu_seconds, free_port, Process};

const MIB: u64 = 1 << 20;

/// The node under test and what a client needs to reach it.
struct Node {
    child: Process,
    dir: tempfile::TempDir,
    tls: SocketAddr,
    token: String,
}

impl Node {
    /// The self-signed certificate the node made, PEM.
    fn certificate(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/certificate.pem")).unwrap()
    }
}

async fn start() -> Node {
    let tls_port = free_port();
    let started =
        support::start_uplink(&["--tls-listen".into(), format!("127.0.0.1:{tls_port}")]).await;
    Node {
        child: started.child,
        dir: started.dir,
        tls: SocketAddr::from(([127, 0, 0, 1], tls_port)),
        token: started.token,
    }
}

/// The body: `len` bytes in 1 MiB pieces that cost the client nothing to make.
fn pieces(len: u64) -> impl Iterator<Item = Bytes> {
    let piece = Bytes::from(vec![0x5a; MIB as usize]);
    let full = (len / MIB) as usize;
    let rest = (len % MIB) as usize;
    std::iter::repeat_n(piece.clone(), full).chain((rest > 0).then(|| piece.slice(..rest)))
}

/// A client of one HTTP version.
enum Client {
    /// HTTPS with HTTP/1.1 or HTTP/2 (reqwest, by ALPN).
    Tcp(reqwest::Client),
    /// HTTP/3 over one QUIC connection.
    Quic(h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>),
}

impl Client {
    async fn new(version: &str, node: &Node) -> Self {
        let certificate = node.certificate();
        if version == "3" {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&certificate) {
                roots.add(cert.unwrap()).unwrap();
            }
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            tls.alpn_protocols = vec![b"h3".to_vec()];
            let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
            let connection = endpoint
                .connect(node.tls, "localhost")
                .unwrap()
                .await
                .unwrap();
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                drop(endpoint);
            });
            return Self::Quic(send);
        }
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap());
        let builder = if version == "2" {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        Self::Tcp(builder.build().unwrap())
    }

    /// One tus creation-with-upload of `len` bytes; the status.
    async fn upload(&self, node: &Node, len: u64) -> u16 {
        let url = format!("https://localhost:{}/files/", node.tls.port());
        match self {
            Self::Tcp(client) => {
                let body = futures_util::stream::iter(pieces(len).map(Ok::<_, std::io::Error>));
                client
                    .post(url)
                    .bearer_auth(&node.token)
                    .header("tus-resumable", "1.0.0")
                    .header("upload-length", len.to_string())
                    .header("content-type", "application/offset+octet-stream")
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
            Self::Quic(send) => {
                let request = http::Request::post(url)
                    .header("authorization", format!("Bearer {}", node.token))
                    .header("tus-resumable", "1.0.0")
                    .header("upload-length", len.to_string())
                    .header("content-type", "application/offset+octet-stream")
                    .body(())
                    .unwrap();
                let mut stream = send.clone().send_request(request).await.unwrap();
                for piece in pieces(len) {
                    stream.send_data(piece).await.unwrap();
                }
                stream.finish().await.unwrap();
                let status = stream.recv_response().await.unwrap().status().as_u16();
                while stream.recv_data().await.unwrap().is_some() {}
                status
            }
        }
    }
}

/// Runs one workload over one version; its table row.
async fn run(version: &str, workload: &str, count: usize, each: u64) -> String {
    let node = start().await;
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(Client::new(version, &node).await);
    }
    let pid = node.child.id();
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(&clients)
        .map(|client| client.upload(&node, each))
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
