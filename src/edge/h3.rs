//! The HTTP/3 listener: a QUIC endpoint (quinn) on the TLS listener's address over UDP, with
//! HTTP/3 (h3) on top, feeding the same handlers as Pingora through [`Exchange`], so every
//! upload protocol behaves the same on every HTTP version. What the edge does not answer
//! itself (the control API) is forwarded to the origin as Pingora forwards it.
//!
//! Flow-control windows are sized for uploads, not quinn's small defaults; 0-RTT is refused
//! (no early data is accepted for anything, so a replayed request cannot change state);
//! connections migrate between client addresses (quinn validates the new path); idle
//! connections close; a client address may hold `max_connections_per_client` connections
//! (TCP and QUIC together) of [`STREAMS_PER_CONNECTION`] requests each. UDP GSO/GRO are used
//! where the kernel has them (quinn-udp), and the socket's receive queue is enlarged
//! ([`RECEIVE_BUFFER`]). Must not depend on the origin's internals or the database.

use super::exchange::{Exchange, RequestHead};
use super::limits::{Held, PerClient};
use super::proxy::EdgeProxy;
use super::tls::Certificate;
use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pingora::http::ResponseHeader;
use quinn::VarInt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Bytes one stream may have in flight towards the edge before it reads them.
const STREAM_WINDOW: u32 = 16 << 20;
/// Bytes a whole connection may have in flight towards the edge.
const CONNECTION_WINDOW: u32 = 64 << 20;
/// Requests one connection may have open at once.
const STREAMS_PER_CONNECTION: u32 = 128;
/// A connection with no traffic for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request body bytes gathered into one piece for the ingest core, at most.
const PIECE: usize = 256 * 1024;
/// Bytes of datagrams the kernel may queue for the endpoint. Linux's default (208 KiB) is
/// about 150 packets: uploads arriving while the endpoint is busy overflow it, and each
/// datagram dropped is a loss the client's congestion control backs off for (on loopback, 50
/// uploads at once into a raw QUIC sink on this endpoint ran 1.2–1.3× faster with it). Linux
/// grants at most `net.core.rmem_max` and reports twice what it grants.
const RECEIVE_BUFFER: usize = 8 << 20;

/// Opens the QUIC endpoint on `addr` (UDP) with the edge's certificate.
///
/// # Errors
/// The socket cannot be bound or the TLS configuration does not suit QUIC.
pub fn endpoint(
    addr: SocketAddr,
    certificate: &Arc<Certificate>,
) -> std::io::Result<quinn::Endpoint> {
    let mut tls = certificate
        .server_config(&[b"h3"])
        .map_err(std::io::Error::other)?;
    tls.max_early_data_size = 0;
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(std::io::Error::other)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(8))
        .max_idle_timeout(Some(
            IDLE_TIMEOUT.try_into().map_err(std::io::Error::other)?,
        ));
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    config.migration(true);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        udp_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The UDP socket on `addr`, with a receive queue of [`RECEIVE_BUFFER`] where the kernel allows
/// it (a warning names the setting where it does not).
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let granted = socket
        .set_recv_buffer_size(RECEIVE_BUFFER)
        .and_then(|()| socket.recv_buffer_size())
        .unwrap_or(0);
    if granted < RECEIVE_BUFFER {
        tracing::warn!(
            wanted = RECEIVE_BUFFER,
            got = granted,
            "The kernel keeps the QUIC socket's receive queue small, so bursts of uploads lose datagrams; raise net.core.rmem_max (Linux) to at least {}.",
            RECEIVE_BUFFER / 2
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What every connection's requests share.
struct Listener {
    edge: EdgeProxy,
    /// Forwards the control API to the origin.
    forwarder: reqwest::Client,
    origins: Arc<super::origins::Origins>,
    draining: Arc<super::drain::Draining>,
}

/// The HTTP/3 listener's parts.
pub struct Quic {
    /// The handlers.
    pub edge: EdgeProxy,
    /// Where the control API is forwarded.
    pub origins: Arc<super::origins::Origins>,
    /// Connections per client address (shared with TCP).
    pub per_client: Arc<PerClient>,
    /// Set while the edge drains: new connections are refused.
    pub draining: Arc<super::drain::Draining>,
    /// Bind the UDP port only once it is free (a graceful upgrade's new process).
    pub wait_for_port: bool,
}

/// How often a new process tries the UDP port its predecessor still holds.
const PORT_RETRY: Duration = Duration::from_millis(250);

impl Quic {
    /// Binds `addr` once it is free (the old process of an upgrade lets it go when it has
    /// drained; meanwhile clients use HTTP/1.1 and HTTP/2), then serves.
    pub async fn serve_when_free(self, addr: SocketAddr, certificate: Arc<Certificate>) {
        let mut logged = false;
        let endpoint = loop {
            match endpoint(addr, &certificate) {
                Ok(endpoint) => break endpoint,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if !logged {
                        tracing::info!(%addr, "UDP port still held by the previous process; HTTP/3 starts when it is free.");
                        logged = true;
                    }
                    tokio::time::sleep(PORT_RETRY).await;
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "Cannot listen for QUIC.");
                    return;
                }
            }
        };
        tracing::info!(%addr, "HTTP/3 listening.");
        self.serve(endpoint).await;
    }

    /// Accepts connections until the endpoint closes.
    pub async fn serve(self, endpoint: quinn::Endpoint) {
        let forwarder = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Cannot build the HTTP/3 listener's origin client.");
                return;
            }
        };
        let listener = Arc::new(Listener {
            edge: self.edge,
            forwarder,
            origins: self.origins,
            draining: self.draining,
        });
        while let Some(incoming) = endpoint.accept().await {
            if listener.draining.is_draining() {
                // The client moves to TCP (and, in an upgrade, to the new process).
                incoming.refuse();
                continue;
            }
            let Some(held) = self.per_client.take(incoming.remote_address().ip()) else {
                tracing::debug!(client = %incoming.remote_address(), "Too many connections from one client; QUIC refused.");
                crate::metrics::limit_hit("connections_per_client");
                incoming.refuse();
                continue;
            };
            tokio::spawn(listener.clone().connection(incoming, held));
        }
    }
}

impl Listener {
    /// Serves one connection's requests, each on a task of its own, until it ends.
    async fn connection(self: Arc<Self>, incoming: quinn::Incoming, _held: Held) {
        // Awaiting the whole handshake: no 0-RTT data is ever read.
        let connection = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "QUIC handshake failed.");
                return;
            }
        };
        let client = connection.remote_address().ip();
        let _open = crate::metrics::edge_connection("3");
        let _draining = self.draining.quic_connection();
        let mut h3 = match h3::server::Connection::new(h3_quinn::Connection::new(connection)).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 connection setup failed.");
                return;
            }
        };
        loop {
            match h3.accept().await {
                Ok(Some(resolver)) => {
                    tokio::spawn(self.clone().request(resolver, client));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/3 connection ended.");
                    break;
                }
            }
        }
    }

    /// Answers one request: the edge's own, else forwarded to the origin.
    async fn request(
        self: Arc<Self>,
        resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
        client: IpAddr,
    ) {
        let (request, stream) = match resolver.resolve_request().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "Bad HTTP/3 request.");
                return;
            }
        };
        let id = crate::request_id::from_headers(request.headers());
        let mut x = H3Exchange::new(&request, stream, client);
        let answered = match self.edge.serve(&mut x, &id).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let method = request.method().clone();
                let mut metered = super::metered::Metered::new(&mut x);
                let forwarded =
                    super::to_origin::forward(&mut metered, &self.forwarder, &self.origins);
                let forwarded = crate::request_id::scope(id, forwarded).await;
                metered.record("control", &method);
                forwarded
            }
            Err(e) => Err(e),
        };
        if let Err(e) = answered {
            tracing::debug!(error = %e, "HTTP/3 request failed.");
        }
    }
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 request stream.
struct H3Exchange {
    head: RequestHead,
    stream: Stream,
    done: bool,
    /// A read failure held back until the bytes before it are handed over.
    failed: Option<Box<pingora::Error>>,
}

impl H3Exchange {
    fn new(request: &http::Request<()>, stream: Stream, client: IpAddr) -> Self {
        Self {
            head: RequestHead {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                query: request.uri().query().map(str::to_owned),
                headers: request.headers().clone(),
                client: Some(client),
            },
            stream,
            done: false,
            failed: None,
        }
    }
}

fn h3_error(
    what: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Box<pingora::Error> {
    pingora::Error::because(pingora::ErrorType::WriteError, what, e)
}

fn response(head: &ResponseHeader) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = head.status;
    for (name, value) in &head.headers {
        // HTTP/3 has no connection-specific headers.
        if name != http::header::CONNECTION && name != http::header::TRANSFER_ENCODING {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

#[async_trait]
impl Exchange for H3Exchange {
    fn version(&self) -> &'static str {
        "3"
    }

    fn head(&self) -> RequestHead {
        self.head.clone()
    }

    async fn informational(
        &mut self,
        status: u16,
        headers: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        let mut head = ResponseHeader::build(status, Some(headers.len()))?;
        for (name, value) in headers {
            head.insert_header(*name, value)?;
        }
        self.stream
            .send_response(response(&head))
            .await
            .map_err(|e| h3_error("sending an informational response", e))
    }

    /// QUIC hands data over a packet at a time (about 1 KiB); it is gathered into pieces of
    /// [`PIECE`] (the last one shorter) so the ingest core writes in large pieces. A failure
    /// after some bytes arrived hands those over first and reports the failure next time, so
    /// everything received is stored.
    async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let mut piece = BytesMut::new();
        while piece.len() < PIECE {
            match self.stream.recv_data().await {
                Ok(Some(mut more)) => {
                    if piece.is_empty() {
                        piece.reserve(PIECE.max(more.remaining()));
                    }
                    piece.put(&mut more);
                }
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    let e = pingora::Error::because(
                        pingora::ErrorType::ReadError,
                        "reading an HTTP/3 request body",
                        e,
                    );
                    if piece.is_empty() {
                        return Err(e);
                    }
                    self.failed = Some(e);
                    break;
                }
            }
        }
        Ok((!piece.is_empty()).then(|| piece.freeze()))
    }

    fn body_done(&mut self) -> bool {
        self.done
    }

    async fn respond(&mut self, head: ResponseHeader, end: bool) -> pingora::Result<()> {
        self.stream
            .send_response(response(&head))
            .await
            .map_err(|e| h3_error("sending a response", e))?;
        self.send(Bytes::new(), end).await
    }

    async fn send(&mut self, data: Bytes, end: bool) -> pingora::Result<()> {
        if !data.is_empty() {
            self.stream
                .send_data(data)
                .await
                .map_err(|e| h3_error("sending a response body", e))?;
        }
        if end {
            self.stream
                .finish()
                .await
                .map_err(|e| h3_error("finishing a response", e))?;
        }
        Ok(())
    }

    fn close_after(&mut self) {
        // Ask the client to stop sending the body this answer refuses.
        self.stream.stop_sending(h3::error::Code::H3_NO_ERROR);
        self.done = true;
    }
}
