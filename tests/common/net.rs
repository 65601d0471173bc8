//! Ports for the servers a test or benchmark starts. Shared by the tests and the benchmarks
//! (which include this file by path).
#![allow(dead_code)]

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
