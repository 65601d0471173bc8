//! Ports for the servers a test or benchmark starts. Shared by the tests and the benchmarks
//! (which include this file by path).
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Mutex;

/// A port that was free a moment ago and that no other caller in this process has been given.
/// The kernel hands a just-released port out again, so without the memory two tests running
/// side by side could be given the same port and one would find the other's server on it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
}
