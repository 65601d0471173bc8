//! The chunk set of a chunked upload (movingimage's `Mi24-Upload-Current-Chunk` of
//! `Mi24-Upload-Total-Chunks`, plupload's `chunk` of `chunks`): which chunks are stored, with
//! their lengths and digests. Chunks arrive in any order; a repeat of a stored chunk changes
//! nothing, a "repeat" with other bytes is a conflict. A chunk's byte offset is known once
//! every earlier chunk is, and the contiguous prefix can be forwarded to storage before the
//! rest arrives.
//!
//! Pure: no I/O. Indices here count from 0; adapters convert their protocol's numbering.

use std::collections::BTreeMap;

/// The most chunks one upload may have.
pub const MAX_CHUNKS: u32 = 100_000;

/// What is known of a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Its length in bytes.
    pub len: u64,
    /// A digest of its bytes (SHA-256), to tell a true repeat from a conflicting one.
    pub digest: [u8; 32],
}

/// The outcome of recording a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A chunk not seen before.
    New,
    /// The same chunk again: nothing changes.
    Repeat,
}

/// Why a chunk is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The total is 0 or over [`MAX_CHUNKS`].
    #[error("the number of chunks must be between 1 and {MAX_CHUNKS}")]
    BadTotal,
    /// The chunk's index is not below the total.
    #[error("chunk {index} is outside 0..{total}")]
    OutOfRange {
        /// The index sent.
        index: u32,
        /// The upload's total.
        total: u32,
    },
    /// The request names a different total than the upload's.
    #[error("this upload has {expected} chunks, not {got}")]
    TotalMismatch {
        /// The upload's total.
        expected: u32,
        /// The total sent.
        got: u32,
    },
    /// The chunk was stored before with other bytes.
    #[error("chunk {index} was already stored with different content")]
    Conflict {
        /// The index.
        index: u32,
    },
}

/// The chunks of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSet {
    total: u32,
    chunks: BTreeMap<u32, ChunkInfo>,
}

impl ChunkSet {
    /// An upload of `total` chunks, none stored yet.
    ///
    /// # Errors
    /// [`ChunkError::BadTotal`].
    pub fn new(total: u32) -> Result<Self, ChunkError> {
        if total == 0 || total > MAX_CHUNKS {
            return Err(ChunkError::BadTotal);
        }
        Ok(Self {
            total,
            chunks: BTreeMap::new(),
        })
    }

    /// The number of chunks.
    #[must_use]
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Checks a request for chunk `index` of `total` before its bytes are read; returns what is
    /// already stored for that index, if anything.
    ///
    /// # Errors
    /// Out of range, or a different total.
    pub fn check(&self, index: u32, total: u32) -> Result<Option<ChunkInfo>, ChunkError> {
        if total != self.total {
            return Err(ChunkError::TotalMismatch {
                expected: self.total,
                got: total,
            });
        }
        if index >= total {
            return Err(ChunkError::OutOfRange { index, total });
        }
        Ok(self.chunks.get(&index).copied())
    }

    /// Records chunk `index` once its bytes are durably stored.
    ///
    /// # Errors
    /// Out of range, or the index was stored with other bytes (nothing changes then).
    pub fn record(&mut self, index: u32, info: ChunkInfo) -> Result<Recorded, ChunkError> {
        match self.check(index, self.total)? {
            Some(existing) if existing == info => Ok(Recorded::Repeat),
            Some(_) => Err(ChunkError::Conflict { index }),
            None => {
                self.chunks.insert(index, info);
                Ok(Recorded::New)
            }
        }
    }

    /// How many chunks are stored.
    #[must_use]
    pub fn count(&self) -> u32 {
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    /// Whether every chunk is stored.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.chunks.len() == self.total as usize
    }

    /// Bytes stored so far, in all chunks.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.chunks.values().map(|c| c.len).sum()
    }

    /// `(index, len)` of the longest run of chunks from the first: what can be forwarded now.
    pub fn contiguous(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..self.total).map_while(|i| self.chunks.get(&i).map(|c| (i, c.len)))
    }

    /// The bytes of [`ChunkSet::contiguous`].
    #[must_use]
    pub fn contiguous_len(&self) -> u64 {
        self.contiguous().map(|(_, len)| len).sum()
    }

    /// The byte offset of chunk `index` in the file, once every earlier chunk is stored.
    #[must_use]
    pub fn offset_of(&self, index: u32) -> Option<u64> {
        (0..index).map(|i| self.chunks.get(&i).map(|c| c.len)).sum()
    }

    /// Every chunk's `(index, offset, len)` in file order, once all are stored.
    #[must_use]
    pub fn layout(&self) -> Option<Vec<(u32, u64, u64)>> {
        if !self.is_complete() {
            return None;
        }
        let mut offset = 0;
        Some(
            self.chunks
                .iter()
                .map(|(&i, c)| {
                    let entry = (i, offset, c.len);
                    offset += c.len;
                    entry
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn info(bytes: &[u8]) -> ChunkInfo {
        ChunkInfo {
            len: bytes.len() as u64,
            digest: Sha256::digest(bytes).into(),
        }
    }

    #[test]
    fn repeats_conflicts_and_ranges() {
        let mut set = ChunkSet::new(3).unwrap();
        assert_eq!(set.record(1, info(b"bb")), Ok(Recorded::New));
        assert_eq!(set.record(1, info(b"bb")), Ok(Recorded::Repeat));
        assert_eq!(
            set.record(1, info(b"bbb")),
            Err(ChunkError::Conflict { index: 1 })
        );
        assert_eq!(
            set.record(1, info(b"xx")),
            Err(ChunkError::Conflict { index: 1 })
        );
        assert_eq!(
            set.check(3, 3),
            Err(ChunkError::OutOfRange { index: 3, total: 3 })
        );
        assert_eq!(
            set.check(0, 4),
            Err(ChunkError::TotalMismatch {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(set.check(1, 3), Ok(Some(info(b"bb"))));
        assert_eq!((set.contiguous_len(), set.offset_of(2)), (0, None));
        set.record(0, info(b"a")).unwrap();
        assert_eq!((set.contiguous_len(), set.offset_of(2)), (3, Some(3)));
        assert!(set.layout().is_none());
        set.record(2, info(b"cccc")).unwrap();
        assert_eq!(set.layout(), Some(vec![(0, 0, 1), (1, 1, 2), (2, 3, 4)]));
        assert_eq!((set.received(), set.count()), (7, 3));
        assert!(ChunkSet::new(0).is_err());
        assert!(ChunkSet::new(MAX_CHUNKS + 1).is_err());
    }

    proptest! {
        /// Chunks delivered in any order, with repeats and conflicting resends, reassemble to
        /// the original bytes.
        #[test]
        fn reassembly_matches_a_plain_byte_model(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..12),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
            corrupt in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let total = u32::try_from(chunks.len()).unwrap();
            let mut set = ChunkSet::new(total).unwrap();
            let mut stored: Vec<Option<Vec<u8>>> = vec![None; chunks.len()];
            // A random delivery order with repeats, then every chunk once more to finish.
            let deliveries = order.iter().map(|i| i.index(chunks.len())).chain(0..chunks.len());
            for i in deliveries {
                let idx = u32::try_from(i).unwrap();
                let before = set.clone();
                let outcome = set.record(idx, info(&chunks[i])).unwrap();
                prop_assert_eq!(outcome == Recorded::New, stored[i].is_none());
                if outcome == Recorded::Repeat {
                    prop_assert_eq!(&set, &before);
                }
                stored[i] = Some(chunks[i].clone());
            }
            // A resend with other bytes is refused and changes nothing.
            for c in &corrupt {
                let i = c.index(chunks.len());
                let mut other = chunks[i].clone();
                other.push(0);
                let before = set.clone();
                prop_assert!(set.record(u32::try_from(i).unwrap(), info(&other)).is_err());
                prop_assert_eq!(&set, &before);
            }
            prop_assert!(set.is_complete());
            let mut file = vec![0u8; usize::try_from(set.received()).unwrap()];
            for (i, offset, len) in set.layout().unwrap() {
                let (offset, len) = (usize::try_from(offset).unwrap(), usize::try_from(len).unwrap());
                file[offset..offset + len].copy_from_slice(&chunks[i as usize]);
            }
            prop_assert_eq!(file, chunks.concat());
        }
    }
}
