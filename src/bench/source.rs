//! What one benchmark upload sends: its bytes (made from a seed, one repeated byte, or a media
//! file's), hashed with SHA-256 the first time each byte is sent (resent bytes are not hashed
//! twice), paced to a bandwidth cap, and cut off part way when an interruption is drawn. Never
//! holds more than one piece of a file in memory. Must not depend on the transport or on a
//! protocol.

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The largest piece a body is sent in.
const PIECE: u64 = 256 * 1024;
/// Pieces of a paced body: small, so its rate is even.
const PACED_PIECE: u64 = 16 * 1024;

/// What the bytes of an upload are.
#[derive(Clone)]
pub enum Content {
    /// Made up from a seed: a different, incompressible file per upload.
    Random(u64),
    /// One byte repeated: costs the client nothing to make (the in-tree benchmarks, which share
    /// the machine with the server).
    Constant,
    /// A media file's bytes (so that the origin can process the upload).
    Media(Arc<std::fs::File>),
}

/// One upload's bytes and their SHA-256 so far.
pub struct Source {
    content: Content,
    len: u64,
    /// `None` when hashing is not wanted; else the hash of the first `.1` bytes.
    hash: Option<Mutex<(Sha256, u64)>>,
}

impl Source {
    /// `len` bytes of `content`, hashed when `hash`.
    #[must_use]
    pub fn new(content: Content, len: u64, hash: bool) -> Arc<Self> {
        Arc::new(Self {
            content,
            len,
            hash: hash.then(|| Mutex::new((Sha256::new(), 0))),
        })
    }

    /// The upload's length.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the upload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hex SHA-256 of the whole upload, once every byte has been sent at least once.
    #[must_use]
    pub fn sha256(&self) -> Option<String> {
        let hash = self.hash.as_ref()?.lock().ok()?;
        (hash.1 == self.len).then(|| hex::encode(hash.0.clone().finalize()))
    }

    /// The `n` bytes at `offset`.
    fn piece(&self, offset: u64, n: u64) -> std::io::Result<Bytes> {
        match &self.content {
            Content::Random(seed) => Ok(random(*seed, offset, n)),
            Content::Constant => Ok(constant(n)),
            Content::Media(file) => {
                let mut buf = vec![0; usize::try_from(n).unwrap_or(usize::MAX)];
                file.read_exact_at(&mut buf, offset)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Hashes `piece` (at `offset`) if it continues what has been hashed.
    fn observe(&self, offset: u64, piece: &[u8]) {
        let Some(hash) = &self.hash else { return };
        let Ok(mut hash) = hash.lock() else { return };
        let end = offset + piece.len() as u64;
        if offset <= hash.1 && hash.1 < end {
            let from = usize::try_from(hash.1 - offset).unwrap_or(0);
            hash.0.update(&piece[from..]);
            hash.1 = end;
        }
    }

    /// A body: `prefix`, then bytes `offset..offset + len` of the upload, then `suffix`;
    /// paced by `pace`; ending in an error after `cut_after` bytes of the upload when given
    /// (an interruption: the transport drops the request). `sent` is told of every piece.
    pub fn body(
        self: &Arc<Self>,
        part: Part,
        pace: Option<Pace>,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
        let source = self.clone();
        let step = if pace.is_some() { PACED_PIECE } else { PIECE };
        let end = part.offset + part.len;
        let stop = part
            .cut_after
            .map_or(end, |cut| part.offset + cut.min(part.len));
        let start = Instant::now();
        let sent = Arc::new(sent);
        let first = part.offset;
        // States: the prefix, the bytes from a position, the suffix, done.
        let state = (Some(part.prefix), part.offset, Some(part.suffix));
        futures_util::stream::unfold(state, move |(prefix, at, suffix)| {
            let source = source.clone();
            let sent = sent.clone();
            async move {
                if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
                    return Some((Ok(prefix), (None, at, suffix)));
                }
                if at < stop {
                    let n = step.min(stop - at);
                    if let Some(pace) = &pace {
                        pace.wait(start, at - first + n).await;
                    }
                    let src = source.clone();
                    let piece = match &source.content {
                        Content::Media(_) => tokio::task::spawn_blocking(move || src.piece(at, n))
                            .await
                            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                        _ => source.piece(at, n),
                    };
                    let piece = match piece {
                        Ok(piece) => piece,
                        Err(e) => return Some((Err(e), (None, end, None))),
                    };
                    source.observe(at, &piece);
                    sent(n);
                    return Some((Ok(piece), (None, at + n, suffix)));
                }
                if stop < end {
                    let cut = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "interrupted by the benchmark",
                    );
                    return Some((Err(cut), (None, end, None)));
                }
                let suffix = suffix.filter(|s| !s.is_empty())?;
                Some((Ok(suffix), (None, at, None)))
            }
        })
    }
}

/// Which bytes one request sends.
#[derive(Default, Clone)]
pub struct Part {
    /// Sent before the upload's bytes (a form's head).
    pub prefix: Bytes,
    /// The first byte of the upload sent.
    pub offset: u64,
    /// How many bytes of the upload are sent.
    pub len: u64,
    /// Sent after them (a form's tail).
    pub suffix: Bytes,
    /// When set, the request is cut off after this many of the upload's bytes.
    pub cut_after: Option<u64>,
}

/// A bandwidth cap, in bytes per second.
#[derive(Debug, Clone, Copy)]
pub struct Pace(pub u64);

impl Pace {
    /// Waits until `bytes` may have been sent since `start`.
    async fn wait(&self, start: Instant, bytes: u64) {
        let due = start + Duration::from_secs_f64(bytes as f64 / self.0.max(1) as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// `n` bytes of the random file `seed` at `offset`: each 8-byte word is a hash of the seed
/// and the word's index, so any piece can be made on its own, at several GB/s.
fn random(seed: u64, offset: u64, n: u64) -> Bytes {
    let first = offset / 8;
    let skip = (offset % 8) as usize;
    let words = (skip as u64 + n).div_ceil(8);
    let mut buf = Vec::with_capacity(usize::try_from(words * 8).unwrap_or(0));
    for w in first..first + words {
        buf.extend_from_slice(
            &splitmix(seed ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes(),
        );
    }
    Bytes::from(buf).slice(skip..skip + usize::try_from(n).unwrap_or(0))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` (at most [`PIECE`]) bytes of 0x5a, from one shared buffer.
fn constant(n: u64) -> Bytes {
    static PIECE_OF_5A: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PIECE_OF_5A
        .get_or_init(|| Bytes::from(vec![0x5a; PIECE as usize]))
        .slice(..usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(source: &Arc<Source>, part: Part) -> (Vec<u8>, bool) {
        let mut body = Box::pin(source.body(part, None, |_| {}));
        let mut out = Vec::new();
        while let Some(piece) = body.next().await {
            match piece {
                Ok(p) => out.extend_from_slice(&p),
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }

    #[tokio::test]
    async fn pieces_of_a_random_file_are_the_same_bytes_wherever_they_start() {
        let source = Source::new(Content::Random(7), 1_000_003, true);
        let (whole, cut) = collect(
            &source,
            Part {
                len: 1_000_003,
                ..Part::default()
            },
        )
        .await;
        assert!(!cut);
        assert_eq!(whole.len(), 1_000_003);
        let (middle, _) = collect(
            &source,
            Part {
                offset: 333_331,
                len: 12_345,
                ..Part::default()
            },
        )
        .await;
        assert_eq!(middle, whole[333_331..333_331 + 12_345]);
        assert_eq!(
            source.sha256().unwrap(),
            hex::encode(Sha256::digest(&whole))
        );
        assert_ne!(random(8, 0, 64), random(7, 0, 64));
    }

    #[tokio::test]
    async fn a_cut_body_ends_in_an_error_and_a_resumed_one_completes_the_hash() {
        let source = Source::new(Content::Random(1), 600_000, true);
        let (first, cut) = collect(
            &source,
            Part {
                prefix: Bytes::from_static(b"head"),
                len: 600_000,
                suffix: Bytes::from_static(b"tail"),
                cut_after: Some(300_000),
                ..Part::default()
            },
        )
        .await;
        assert!(cut);
        assert_eq!(first.len(), 4 + 300_000);
        assert_eq!(source.sha256(), None);
        // Resumed from an earlier offset (what the server kept): no byte is hashed twice.
        let (rest, cut) = collect(
            &source,
            Part {
                offset: 200_000,
                len: 400_000,
                ..Part::default()
            },
        )
        .await;
        assert!(!cut);
        let mut whole = first[4..].to_vec();
        whole.extend_from_slice(&rest[100_000..]);
        assert_eq!(
            source.sha256().unwrap(),
            hex::encode(Sha256::digest(&whole))
        );
    }
}
