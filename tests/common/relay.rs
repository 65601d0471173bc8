//! A network path on loopback: a TCP relay that delays every byte by a one-way delay and caps
//! each direction's bandwidth, queueing at most one bandwidth-delay product before it stops
//! reading (this kernel has no `tc netem`); a UDP relay that does the same for datagrams and
//! also loses and reorders some (QUIC); and a UDP relay that changes its source port half way,
//! as a NAT rebinding does. Shared by the tests and the benchmarks (which
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

/// A UDP path on loopback for one client: each direction a bottleneck link like [`Relay`]'s
/// (a one-way delay, a bandwidth, at most a round trip's worth of datagrams queued, the rest
/// dropped as a full router queue drops them), plus random loss and a little reordering (a
/// datagram in a hundred swaps places with the next one). Stops when dropped.
pub struct UdpPathRelay {
    /// Where the client sends.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// A datagram on its way: when it is delivered, its bytes and where to.
type Due = (Instant, Vec<u8>, SocketAddr);

impl UdpPathRelay {
    /// Starts a relay on a free port of 127.0.0.1 to `upstream`, losing `loss` (0 to 1) of the
    /// datagrams each way at random (seeded: the same run loses the same ones).
    pub async fn start(upstream: SocketAddr, path: Path, loss: f64) -> Self {
        use rand::{Rng, SeedableRng};
        use std::sync::Arc;
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let up = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
            let mut to_server = Direction::new(path, up.clone());
            let mut to_client = Direction::new(path, front.clone());
            let (mut from_client, mut from_server) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client = None;
            loop {
                let (datagram, to, direction) = tokio::select! {
                    got = front.recv_from(&mut from_client) => {
                        let Ok((n, from)) = got else { return };
                        client = Some(from);
                        (from_client[..n].to_vec(), upstream, &mut to_server)
                    }
                    got = up.recv(&mut from_server) => {
                        let (Ok(n), Some(client)) = (got, client) else { continue };
                        (from_server[..n].to_vec(), client, &mut to_client)
                    }
                };
                if !rng.random_bool(loss) {
                    direction.send(datagram, to, rng.random_bool(0.01));
                }
            }
        });
        Self { addr, task }
    }
}

impl Drop for UdpPathRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction of the UDP path: its link, a datagram held back to be swapped with the next,
/// and the task that delivers datagrams in order when they are due.
struct Direction {
    link: Link,
    held: Option<(Vec<u8>, SocketAddr)>,
    deliver: tokio::sync::mpsc::UnboundedSender<Due>,
}

impl Direction {
    fn new(path: Path, out: std::sync::Arc<tokio::net::UdpSocket>) -> Self {
        let (deliver, mut due) = tokio::sync::mpsc::unbounded_channel::<Due>();
        tokio::spawn(async move {
            while let Some((at, datagram, to)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = out.send_to(&datagram, to).await;
            }
        });
        Self {
            link: Link::new(path),
            held: None,
            deliver,
        }
    }

    /// Queues a datagram (dropped when the link's queue is full); `hold` keeps it back to go
    /// out just after the next one.
    fn send(&mut self, datagram: Vec<u8>, to: SocketAddr, hold: bool) {
        let Some(at) = self.link.admit(datagram.len()) else {
            return;
        };
        if hold && self.held.is_none() {
            self.held = Some((datagram, to));
            return;
        }
        let _ = self.deliver.send((at, datagram, to));
        if let Some((held, to)) = self.held.take() {
            let _ = self.deliver.send((at, held, to));
        }
    }
}

/// One direction of a datagram path: when each datagram leaves its queue.
struct Link {
    path: Path,
    departure: Instant,
}

impl Link {
    fn new(path: Path) -> Self {
        Self {
            path,
            departure: Instant::now(),
        }
    }

    /// When a datagram of `len` bytes arriving now is delivered, or `None` when the queue
    /// already holds a round trip's worth (it is dropped).
    fn admit(&mut self, len: usize) -> Option<Instant> {
        let now = Instant::now();
        if self.departure > now + self.path.one_way * 2 {
            return None;
        }
        self.departure = self.departure.max(now) + self.path.transmit(len);
        Some(self.departure + self.path.one_way)
    }
}
