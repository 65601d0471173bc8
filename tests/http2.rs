//! HTTP/2 at the edge, sized for uploads: the TLS port advertises flow-control windows that
//! let a browser far away upload at its bandwidth (HTTP/2's default 64 KiB window allows one
//! window per round trip: 6.5 Mbit/s from 80 ms away), read off the server's own SETTINGS and
//! WINDOW_UPDATE frames; and an HTTP/2 upload through an 80 ms path is stored whole.

mod common;

use common::relay::{Path, Relay};
use common::{upload_token, Node, Uploads};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What 200 Mbit/s 80 ms away needs in flight: its bandwidth-delay product.
const BDP_200_MBIT_80_MS: u32 = 200_000_000 / 8 * 80 / 1000;

/// What the server's first frames promise: its SETTINGS and its connection window.
#[derive(Debug, Default)]
struct Advertised {
    initial_window_size: Option<u32>,
    max_concurrent_streams: Option<u32>,
    connection_window: Option<u32>,
}

/// Opens an HTTP/2 connection by ALPN, sends the preface and reads frames until the server's
/// SETTINGS and its connection-level WINDOW_UPDATE have arrived.
async fn advertised(node: &Node, port: u16) -> Advertised {
    let tls = common::tls::client_config(&node.tls_certificate(), b"h2");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The preface, then an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut seen = Advertised::default();
    let read = async {
        while seen.initial_window_size.is_none() || seen.connection_window.is_none() {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.unwrap();
            match kind {
                // SETTINGS (not the ACK of ours): 6-byte entries of id and value.
                0x4 if flags & 0x1 == 0 => {
                    for entry in payload.chunks_exact(6) {
                        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                        match u16::from_be_bytes([entry[0], entry[1]]) {
                            0x3 => seen.max_concurrent_streams = Some(value),
                            0x4 => seen.initial_window_size = Some(value),
                            _ => {}
                        }
                    }
                    // Without an INITIAL_WINDOW_SIZE entry the window is the default.
                    seen.initial_window_size.get_or_insert(65_535);
                }
                // WINDOW_UPDATE of the connection: on top of its initial 65,535 bytes.
                0x8 if stream_id == 0 => {
                    let increment = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    seen.connection_window = Some(65_535 + (increment & 0x7fff_ffff));
                }
                _ => {}
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .is_err()
    {
        panic!("no SETTINGS, or no WINDOW_UPDATE of the connection (its window left at 64 KiB): {seen:?}");
    }
    seen
}

#[tokio::test]
async fn the_edge_advertises_http2_windows_for_uploads_from_far_away() {
    let (node, port) = Node::dev_tls().await;
    let seen = advertised(&node, port).await;
    let stream = seen.initial_window_size.unwrap();
    let connection = seen.connection_window.unwrap();
    // h2 gives a window back once a third of it is used: two thirds must cover the path.
    assert!(
        stream / 3 * 2 >= BDP_200_MBIT_80_MS,
        "stream window {stream} is too small for 200 Mbit/s at 80 ms"
    );
    // Two uploads at full speed on one connection.
    assert!(connection >= 2 * stream, "connection window {connection}");
    // A window is a promise to buffer: bounded per stream and per connection.
    assert!(stream <= 8 << 20 && connection <= 16 << 20, "{seen:?}");
    let streams = seen.max_concurrent_streams.expect("a stream limit");
    assert!(
        (8..=64).contains(&streams),
        "{streams} streams per connection"
    );
}

#[tokio::test]
async fn an_http2_upload_through_an_80_ms_path_is_stored_whole() {
    let (node, port) = Node::dev_tls().await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let relay = Relay::start(([127, 0, 0, 1], port).into(), Path::new(80, 200));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&node.tls_certificate()).unwrap())
        .resolve("localhost", relay.addr)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let bytes: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let created = client
        .post(format!("https://localhost:{}/files/", relay.addr.port()))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", bytes.len().to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_2);
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["upload-offset"], "12582912");
    let location = created.headers()["location"].to_str().unwrap();
    let id = location.rsplit('/').next().unwrap();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    assert_eq!(
        record["sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str()),
        "{record}"
    );
}
