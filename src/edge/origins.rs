//! The origins an edge talks to, in the order its config gives them, and the one it uses now.
//! When a connection to the current origin cannot be made, the edge moves on to the next (the
//! request never reached the first, so sending it to another is safe); it stays there until
//! that one fails too. Must not depend on the origin's internals.

use crate::config::OriginAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The origins and which is current; shared by the internal-API client, the proxy and the
/// HTTP/3 forwarder.
#[derive(Debug)]
pub struct Origins {
    all: Vec<OriginAddr>,
    current: AtomicUsize,
}

impl Origins {
    /// The origins, the first current. `all` must not be empty (config validation sees to it).
    #[must_use]
    pub fn new(all: Vec<OriginAddr>) -> Self {
        Self {
            all,
            current: AtomicUsize::new(0),
        }
    }

    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The index of the origin in use.
    #[must_use]
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.all.len().max(1)
    }

    /// Origin `i`.
    #[must_use]
    pub fn get(&self, i: usize) -> &OriginAddr {
        &self.all[i % self.all.len()]
    }

    /// The origin in use.
    #[must_use]
    pub fn now(&self) -> &OriginAddr {
        self.get(self.current())
    }

    /// Origin `i` could not be reached: the next one becomes current (unless another request
    /// already moved on).
    pub fn failed(&self, i: usize) {
        let next = (i + 1) % self.all.len().max(1);
        if next != i
            && self
                .current
                .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(failed = %self.get(i).url, now = %self.get(next).url, "Origin unreachable; using the next.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(port: u16) -> OriginAddr {
        OriginAddr {
            url: format!("http://127.0.0.1:{port}"),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    #[test]
    fn a_failure_moves_on_once_and_wraps_around() {
        let origins = Origins::new(vec![origin(1), origin(2)]);
        assert_eq!(origins.now(), &origin(1));
        origins.failed(0);
        assert_eq!(origins.now(), &origin(2));
        // A stale report about the first does not move it again.
        origins.failed(0);
        assert_eq!(origins.now(), &origin(2));
        origins.failed(1);
        assert_eq!(origins.now(), &origin(1));
        let one = Origins::new(vec![origin(1)]);
        one.failed(0);
        assert_eq!(one.now(), &origin(1));
    }
}
