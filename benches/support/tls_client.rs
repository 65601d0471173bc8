//! A `uplink dev` with a TLS listener and a client of one HTTP version (1.1 or 2 over TLS by
//! reqwest, 3 over QUIC by quinn and h3) that makes tus uploads to it, directly or through a
//! relay: the HTTP-version and network-path benchmarks share them.

use super::{free_port, pieces, start_uplink_bin, Process};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// The node under test and what a client needs to reach it.
pub struct Node {
    pub child: Process,
    dir: tempfile::TempDir,
    /// The TLS (TCP) and QUIC (UDP) listeners' address.
    pub tls: SocketAddr,
    /// An upload token.
    pub token: String,
    /// The account's API key.
    pub api_key: String,
}

impl Node {
    /// Starts a node (this build) listening for TLS and QUIC on a free port.
    pub async fn start() -> Self {
        Self::start_bin(env!("CARGO_BIN_EXE_uplink")).await
    }

    /// [`Node::start`] with build `bin` of `uplink` (this one, or a baseline to compare with).
    pub async fn start_bin(bin: &str) -> Self {
        let tls_port = free_port();
        let listen = ["--tls-listen".into(), format!("127.0.0.1:{tls_port}")];
        let started = start_uplink_bin(bin, &listen, &[]).await;
        Self {
            child: started.child,
            dir: started.dir,
            tls: SocketAddr::from(([127, 0, 0, 1], tls_port)),
            token: started.token,
            api_key: started.api_key,
        }
    }

    /// The self-signed certificate the node made, PEM.
    pub fn certificate(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/certificate.pem")).unwrap()
    }
}

/// A client of one HTTP version, connected to one address (the node's, or a relay's).
pub enum Client {
    /// HTTPS with HTTP/1.1 or HTTP/2 (reqwest, by ALPN).
    Tcp(reqwest::Client, SocketAddr),
    /// HTTP/3 over one QUIC connection.
    Quic(
        h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        SocketAddr,
    ),
}

impl Client {
    /// A client of HTTP `version` ("1.1", "2" or "3"; "3-bbr": HTTP/3 whose QUIC sends with
    /// BBR instead of quinn's default, CUBIC) that reaches `node` at `addr`.
    pub async fn new(version: &str, node: &Node, addr: SocketAddr) -> Self {
        let certificate = node.certificate();
        if version.starts_with('3') {
            let tls = super::tls::client_config(&certificate, b"h3");
            let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut config = quinn::ClientConfig::new(Arc::new(quic));
            if version == "3-bbr" {
                let mut transport = quinn::TransportConfig::default();
                transport.congestion_controller_factory(Arc::new(
                    quinn::congestion::BbrConfig::default(),
                ));
                config.transport_config(Arc::new(transport));
            }
            endpoint.set_default_client_config(config);
            let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                drop(endpoint);
            });
            return Self::Quic(send, addr);
        }
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap())
            .resolve("localhost", addr);
        let builder = if version == "2" {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        Self::Tcp(builder.build().unwrap(), addr)
    }

    /// One tus creation-with-upload of `len` bytes with `token`; the status.
    pub async fn upload(&self, token: &str, len: u64) -> u16 {
        match self {
            Self::Tcp(client, addr) => {
                let body = futures_util::stream::iter(pieces(len).map(Ok::<_, std::io::Error>));
                client
                    .post(format!("https://localhost:{}/files/", addr.port()))
                    .bearer_auth(token)
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
            Self::Quic(send, addr) => {
                let request =
                    http::Request::post(format!("https://localhost:{}/files/", addr.port()))
                        .header("authorization", format!("Bearer {token}"))
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
