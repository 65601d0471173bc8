//! HTTP/2 settings of the edge's TLS listener, sized for uploads.
//!
//! HTTP/2's default flow-control window is 64 KiB per stream and per connection: a client may
//! send one window per round trip, so an upload 80 ms away runs at 64 KiB / 80 ms = 6.5 Mbit/s
//! whatever its bandwidth (HTTP/1.1 has the kernel's autotuned TCP window instead). The windows
//! here cover a 200 Mbit/s uploader 80 ms away (a bandwidth-delay product of 2 MB): h2 gives
//! window back as the edge reads (Pingora releases each DATA frame's capacity when the handler
//! takes it) once a third of it is used, so the client always has at least two thirds of
//! [`STREAM_WINDOW`] open, 2.7 MiB.
//!
//! A window is a promise to buffer: bytes the client may send before the edge reads them are
//! held in memory. So at most [`STREAM_WINDOW`] per upload and [`CONNECTION_WINDOW`] per
//! connection, however many streams it opens, wait unread; they fill only when the edge reads
//! more slowly than the client sends (a slow disk). Pure settings: no sockets.

use pingora::protocols::http::v2::server::{default_h2_options, H2Options};

/// Bytes one request body may have in flight towards the edge before it reads them.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// Bytes all of one connection's request bodies may have in flight together: two uploads at
/// full speed, and one stalled stream cannot hold back the others.
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// Requests one connection may have open at once (Pingora's default is 100): uploads beyond
/// it wait in the browser's queue. The connection window bounds their memory; this bounds the
/// per-request state (handler, write buffers) one connection can make the edge hold.
pub const STREAMS_PER_CONNECTION: u32 = 32;

/// The HTTP/2 server settings: Pingora's bounded defaults (header-list size) with windows and
/// a stream limit for uploads.
pub fn options() -> H2Options {
    let mut options = default_h2_options();
    options
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(STREAMS_PER_CONNECTION);
    options
}
