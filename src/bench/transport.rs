//! The HTTP client of one benchmark worker, as one separate client has: HTTP/1.1 or HTTP/2 over
//! TCP (reqwest) or HTTP/3 over QUIC (quinn and h3), its own connections, the certificate
//! trust the operator chose. Sends a request whose body is a stream; gives back the final
//! status, headers and body (informational responses are skipped). Must not depend on a
//! protocol.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Method};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Http {
    /// HTTP/1.1.
    #[serde(rename = "1.1")]
    V1,
    /// HTTP/2 (prior knowledge: over TLS, or cleartext h2c).
    #[serde(rename = "2")]
    V2,
    /// HTTP/3 over QUIC (an `https://` URL).
    #[serde(rename = "3")]
    V3,
}

impl std::str::FromStr for Http {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches("HTTP/") {
            "1.1" | "1" => Ok(Self::V1),
            "2" => Ok(Self::V2),
            "3" => Ok(Self::V3),
            other => Err(format!("HTTP version {other:?}: use 1.1, 2 or 3")),
        }
    }
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "1.1",
            Self::V2 => "2",
            Self::V3 => "3",
        })
    }
}

/// Which server certificates are trusted.
#[derive(Clone)]
pub enum Trust {
    /// The system's roots.
    System,
    /// The certificates of a PEM file (e.g. `uplink dev`'s self-signed one).
    Pem(Vec<u8>),
    /// Any certificate (a test fleet with self-signed certificates; never in production).
    Insecure,
}

/// A request body: a stream of pieces, its length sent as `Content-Length` by the caller.
pub type Body = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// One request.
pub struct Request {
    /// Its method.
    pub method: Method,
    /// Its absolute URL.
    pub url: String,
    /// Its headers.
    pub headers: Vec<(&'static str, String)>,
    /// Its body, if any.
    pub body: Option<Body>,
}

impl Request {
    /// A request without headers or body.
    #[must_use]
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Sets the body (and its `Content-Length`).
    #[must_use]
    pub fn body(
        mut self,
        len: u64,
        body: impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        self.headers.push(("content-length", len.to_string()));
        self.body = Some(Box::pin(body));
        self
    }
}

/// A final response.
pub struct Reply {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Reply {
    /// A header's value, if it is text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// One worker's client.
pub struct Client {
    http: Http,
    tcp: reqwest::Client,
    quic: Option<Quic>,
    timeout: Duration,
}

/// HTTP/3: one QUIC connection per server, made when first needed and again after it fails.
struct Quic {
    config: quinn::ClientConfig,
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
}

type Connection = (
    h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    quinn::Endpoint,
);

impl Client {
    /// A client of `http` trusting `trust`; each request may take at most `timeout`.
    ///
    /// # Errors
    /// A PEM file without certificates, or no TLS provider.
    pub fn new(http: Http, trust: &Trust, timeout: Duration) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        // The system's roots are loaded (and parsed) only when they are the ones trusted: a
        // worker is made per upload, and parsing them each time is work no client would redo
        // per upload, on the cores the benchmark shares with the server it measures.
        builder = builder.tls_built_in_root_certs(matches!(trust, Trust::System));
        builder = match trust {
            Trust::System => builder,
            Trust::Insecure => builder.danger_accept_invalid_certs(true),
            Trust::Pem(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("the CA file: {e}"))?;
                certs
                    .into_iter()
                    .fold(builder, reqwest::ClientBuilder::add_root_certificate)
            }
        };
        builder = match http {
            Http::V2 => builder.http2_prior_knowledge(),
            _ => builder.http1_only(),
        };
        let tcp = builder.build().map_err(|e| e.to_string())?;
        let quic = match http {
            Http::V3 => Some(Quic {
                config: quic_config(trust)?,
                connections: tokio::sync::Mutex::default(),
            }),
            _ => None,
        };
        Ok(Self {
            http,
            tcp,
            quic,
            timeout,
        })
    }

    /// Sends `request`; the final response, or why there is none.
    ///
    /// # Errors
    /// The connection failed, the body failed (an interruption), or the time ran out.
    pub async fn send(&self, request: Request) -> Result<Reply, String> {
        let sent = match (&self.quic, self.http) {
            (Some(quic), Http::V3) => tokio::time::timeout(self.timeout, quic.send(request)).await,
            _ => tokio::time::timeout(self.timeout, self.send_tcp(request)).await,
        };
        sent.unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }

    async fn send_tcp(&self, request: Request) -> Result<Reply, String> {
        let mut builder = self.tcp.request(request.method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(reqwest::Body::wrap_stream(body));
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| crate::error::chain(&e.without_url()))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| crate::error::chain(&e.without_url()))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

impl Quic {
    async fn send(&self, request: Request) -> Result<Reply, String> {
        let uri: http::Uri = request.url.parse().map_err(|e| format!("{e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("HTTP/3 needs an https:// URL, not {}", request.url));
        }
        let authority = uri
            .authority()
            .ok_or("an HTTP/3 URL needs a host")?
            .to_string();
        // A connection that is gone is replaced by the next request's.
        let mut send = self.connection(&uri, &authority).await?;
        exchange(&mut send, uri, request).await
    }

    async fn connection(
        &self,
        uri: &http::Uri,
        authority: &str,
    ) -> Result<h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>, String> {
        let mut connections = self.connections.lock().await;
        if let Some((send, endpoint)) = connections.get(authority) {
            if endpoint.open_connections() > 0 {
                return Ok(send.clone());
            }
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(443);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let local: std::net::SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(addr)
        } else {
            "[::]:0".parse().unwrap_or(addr)
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(self.config.clone());
        let connection = endpoint
            .connect(addr, host)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("QUIC connection to {addr}: {e}"))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
            .await
            .map_err(|e| format!("HTTP/3 connection to {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        connections.insert(authority.to_owned(), (send.clone(), endpoint));
        Ok(send)
    }
}

/// One request and its response on an HTTP/3 connection.
async fn exchange(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    uri: http::Uri,
    request: Request,
) -> Result<Reply, String> {
    let mut head = http::Request::builder().method(request.method).uri(uri);
    for (name, value) in &request.headers {
        head = head.header(*name, value);
    }
    let head = head.body(()).map_err(|e| e.to_string())?;
    let mut stream = send.send_request(head).await.map_err(|e| e.to_string())?;
    if let Some(mut body) = request.body {
        while let Some(piece) = body.next().await {
            match piece {
                Ok(piece) => stream.send_data(piece).await.map_err(|e| e.to_string())?,
                Err(e) => {
                    stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                    return Err(e.to_string());
                }
            }
        }
    }
    stream.finish().await.map_err(|e| e.to_string())?;
    let response = loop {
        let response = stream.recv_response().await.map_err(|e| e.to_string())?;
        if !response.status().is_informational() {
            break response;
        }
    };
    let mut body = BytesMut::new();
    while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Ok(Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: body.freeze(),
    })
}

/// The QUIC client configuration for `trust`, offering `h3`.
fn quic_config(trust: &Trust) -> Result<quinn::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let mut tls = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::System | Trust::Pem(_) => {
            let mut roots = rustls::RootCertStore::empty();
            match trust {
                Trust::Pem(pem) => {
                    use rustls::pki_types::pem::PemObject;
                    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                        let cert = cert.map_err(|e| format!("the CA file: {e}"))?;
                        roots.add(cert).map_err(|e| format!("the CA file: {e}"))?;
                    }
                }
                _ => {
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.send_window(SEND_WINDOW);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Bytes one HTTP/3 connection holds for sending before its body is read further: one
/// bandwidth-delay product of 400 Mbit/s at 80 ms. quinn's default (10 MB) let a worker copy
/// whole uploads into memory ahead of the network, 440 MB for 50 uploads of 8 MiB at once.
const SEND_WINDOW: u64 = 4 << 20;

/// `--insecure` over QUIC: every certificate is accepted (signatures are still checked, so the
/// handshake is a real one).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
