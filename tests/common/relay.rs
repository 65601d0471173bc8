//! A network path on loopback: a TCP relay that delays every byte by a one-way delay and caps
//! each direction's bandwidth, queueing at most one bandwidth-delay product before it stops
//! reading (this kernel has no `tc netem`). Shared by the tests and the benchmarks (which
//! include this file by path).
//!
//! Each direction is a bottleneck link: a piece read at `t` leaves the link at
//! `max(t, previous departure) + len / rate` and is written out one delay later. While the
//! link's queue holds a round trip's worth of bytes the relay reads nothing more, so the
//! sender's TCP sees back-pressure as it would from a full router queue. The relay's own
//! socket buffers are kept small so they do not hide a second, larger queue.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;

/// The path's shape.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// Delay each way (the round trip is twice this).
    pub one_way: Duration,
    /// Each direction's bandwidth, in bits per second.
    pub bits_per_second: u64,
}

impl Path {
    /// `rtt_ms` of round trip at `mbit` Mbit/s each way.
    pub fn new(rtt_ms: u64, mbit: u64) -> Self {
        Self {
            one_way: Duration::from_millis(rtt_ms / 2),
            bits_per_second: mbit * 1_000_000,
        }
    }

    fn transmit(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bits_per_second as f64)
    }
}

/// A running relay to `upstream`; stops (with every connection through it) when dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Socket buffers of the relay's own sockets.
const SOCKET_BUFFER: u32 = 128 * 1024;
/// The most one read takes.
const PIECE: usize = 64 * 1024;

impl Relay {
    /// Starts a relay on a free port of 127.0.0.1.
    pub fn start(upstream: SocketAddr, path: Path) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(async move {
                    let out = TcpSocket::new_v4().unwrap();
                    out.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
                    out.set_send_buffer_size(SOCKET_BUFFER).unwrap();
                    let Ok(server) = out.connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        link(client_read, server_write, path),
                        link(server_read, client_write, path)
                    );
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction: reads `from`, delivers to `to` as the path would.
async fn link(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    path: Path,
) {
    // Pieces in flight with the time each is delivered.
    let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    // When the link's last piece leaves its queue.
    let mut departure = Instant::now();
    let queue_limit = path.one_way * 2;
    let mut open = true;
    let mut buffer = vec![0; PIECE];
    loop {
        let now = Instant::now();
        let room = departure <= now + queue_limit;
        let next = in_flight.front().map(|(at, _)| *at);
        tokio::select! {
            read = from.read(&mut buffer), if open && room => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => {
                    departure = departure.max(Instant::now()) + path.transmit(n);
                    in_flight.push_back((departure + path.one_way, buffer[..n].to_vec()));
                }
            },
            () = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {
                let (_, piece) = in_flight.pop_front().expect("a piece is due");
                if to.write_all(&piece).await.is_err() {
                    return;
                }
            },
            () = tokio::time::sleep_until(departure - queue_limit), if open && !room => {},
            else => break,
        }
    }
    let _ = to.shutdown().await;
}

/// A UDP relay to `upstream` that rebinds as a NAT does: once it has forwarded `rebind_after`
/// bytes from the client, it sends from a new socket (a new source port) and drops the old one,
/// so the server sees its client move mid-connection (QUIC connection migration) and whatever
/// it still sends to the old address is lost. Stops when dropped.
pub struct RebindingUdpRelay {
    /// Where clients send.
    pub addr: SocketAddr,
    rebound: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RebindingUdpRelay {
    /// Starts a relay on a free port of 127.0.0.1.
    pub async fn start(upstream: SocketAddr, rebind_after: u64) -> Self {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let rebound = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = rebound.clone();
        let task = tokio::spawn(async move {
            let mut up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (mut from_client, mut from_server) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client = None;
            let mut forwarded = 0u64;
            loop {
                tokio::select! {
                    got = front.recv_from(&mut from_client) => {
                        let Ok((n, from)) = got else { return };
                        client = Some(from);
                        let _ = up.send_to(&from_client[..n], upstream).await;
                        forwarded += n as u64;
                        if forwarded >= rebind_after && !flag.load(std::sync::atomic::Ordering::SeqCst) {
                            up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    got = up.recv(&mut from_server) => {
                        let (Ok(n), Some(client)) = (got, client) else { continue };
                        let _ = front.send_to(&from_server[..n], client).await;
                    }
                }
            }
        });
        Self {
            addr,
            rebound,
            task,
        }
    }

    /// Whether it has moved to its second source port.
    pub fn rebound(&self) -> bool {
        self.rebound.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RebindingUdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
