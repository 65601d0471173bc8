//! The edge's spool for chunked uploads: each chunk streams to a temporary file, is synced
//! (whatever the edge's durability: a chunk's client never sends it again once answered; the
//! syncs of chunks arriving together are shared), and only then renamed into place, so a
//! chunk the client was told is stored survives a crash or a power cut. Layout per upload:
//! `ROOT/ID/total`, `ROOT/ID/chunk-N` and `ROOT/ID/chunk-N.sha256` (the digest is written
//! first, so a chunk file always has one). The chunk set is rebuilt from the directory, so a
//! restarted edge carries on where it stopped.
//!
//! Recording and assembly of one upload are serialised by a per-upload lock (one edge owns an
//! upload's spool). Must not depend on HTTP or any protocol.

use super::durability::Syncer;
use crate::store::appender::Appender;
use crate::upload::chunk_set::{ChunkError, ChunkInfo, ChunkSet, Recorded};
use crate::upload::UploadId;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Why a chunk could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The chunk does not fit the upload (range, total, or a conflicting repeat).
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The chunk is longer than allowed.
    #[error("chunk larger than {0} bytes")]
    TooLarge(u64),
    /// The client's body ended in error (it went away).
    #[error("the request body ended early")]
    Body(#[source] std::io::Error),
    /// The spool's disk failed.
    #[error("spool I/O while trying to {op}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError {
    move |source| SpoolError::Io { op, source }
}

/// A chunk written and synced to a temporary file, not yet part of its upload.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    info: ChunkInfo,
}

/// One async lock per upload id, so one request at a time changes an upload's spool. A request
/// may also take an upload over: the request holding it is told to stop (it keeps what it
/// received) and the new one goes next, so a client that reconnects is never kept waiting by
/// its own stale request (the IETF draft's recommendation, tusd's behaviour).
#[derive(Debug, Default)]
pub struct UploadLocks(Mutex<HashMap<UploadId, Arc<Slot>>>);

#[derive(Debug, Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The stop signal of the request holding the lock.
    holder: Mutex<CancellationToken>,
}

/// A request's hold on an upload; `stop` fires when a newer request takes the upload over.
#[derive(Debug)]
pub struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    stop: CancellationToken,
}

impl Turn {
    /// Resolves when a newer request wants the upload: stop reading, keep what arrived.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }
}

impl UploadLocks {
    fn slot(&self, upload: UploadId) -> Arc<Slot> {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(upload.to_owned()).or_default().clone()
    }

    /// Waits for, then holds, the upload's lock.
    pub async fn lock(&self, upload: UploadId) -> Turn {
        let slot = self.slot(upload);
        let guard = slot.lock.clone().lock_owned().await;
        let stop = CancellationToken::new();
        *slot
            .holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stop.clone();
        Turn {
            _guard: guard,
            stop,
        }
    }

    /// Tells the request holding the upload to stop, then holds the lock.
    pub async fn take_over(&self, upload: UploadId) -> Turn {
        self.slot(upload)
            .holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cancel();
        self.lock(upload).await
    }

    /// Forgets a finished upload's lock.
    pub fn forget(&self, upload: UploadId) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&upload);
    }
}

/// The spool.
#[derive(Debug)]
pub struct ChunkSpool {
    root: PathBuf,
    locks: UploadLocks,
    syncer: Arc<Syncer>,
}

impl ChunkSpool {
    /// Opens (creating) the spool at `root`; `syncer` syncs its chunks.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path, syncer: Arc<Syncer>) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(root).map_err(io("create the spool directory"))?;
        Ok(Self {
            root: root.to_owned(),
            locks: UploadLocks::default(),
            syncer,
        })
    }

    /// `upload` must be a validated upload id (it names a directory).
    fn dir(&self, upload: UploadId) -> PathBuf {
        self.root.join(upload.to_string())
    }

    /// The upload's lock: hold it while recording a chunk and while assembling.
    pub async fn lock(&self, upload: UploadId) -> Turn {
        self.locks.lock(upload).await
    }

    /// Streams one chunk to a synced temporary file, at most `limit` bytes.
    ///
    /// # Errors
    /// The body is too long or ends in error, or the disk fails.
    pub async fn stage<S>(
        &self,
        upload: UploadId,
        body: S,
        limit: u64,
    ) -> Result<Staged, SpoolError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>>,
    {
        let dir = self.dir(upload);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("create an upload's spool"))?;
        let path = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let result = write_synced(&path, body, limit, &self.syncer).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        let info = result?;
        Ok(Staged { path, info })
    }

    /// The upload's chunk set as the disk has it (`None` before its first chunk).
    ///
    /// # Errors
    /// The disk fails or holds something unreadable.
    pub async fn load(&self, upload: UploadId) -> Result<Option<ChunkSet>, SpoolError> {
        let dir = self.dir(upload);
        let total = match tokio::fs::read_to_string(dir.join("total")).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read an upload's chunk count")(e)),
        };
        let corrupt = |what: &str| SpoolError::Io {
            op: "read the spool",
            source: std::io::Error::other(format!("{what} in {}", dir.display())),
        };
        let mut set = ChunkSet::new(
            total
                .trim()
                .parse()
                .map_err(|_| corrupt("a bad chunk count"))?,
        )?;
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(io("list an upload's spool"))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io("list an upload's spool"))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(index) = name
                .strip_prefix("chunk-")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let len = entry
                .metadata()
                .await
                .map_err(io("read a chunk's size"))?
                .len();
            let hex_digest = tokio::fs::read_to_string(dir.join(format!("{name}.sha256")))
                .await
                .map_err(io("read a chunk's digest"))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest.trim(), &mut digest)
                .map_err(|_| corrupt("a bad chunk digest"))?;
            set.record(index, ChunkInfo { len, digest })?;
        }
        Ok(Some(set))
    }

    /// Records a staged chunk as chunk `index` of `total` (hold [`ChunkSpool::lock`]): a new
    /// chunk is moved into place, a repeat or a conflicting chunk is discarded. Returns the
    /// outcome and the upload's chunk set after it.
    ///
    /// # Errors
    /// The chunk does not fit the upload (nothing changes then), or the disk fails.
    pub async fn record(
        &self,
        upload: UploadId,
        index: u32,
        total: u32,
        staged: Staged,
    ) -> Result<(Recorded, ChunkSet), SpoolError> {
        let dir = self.dir(upload);
        let result = async {
            let mut set = match self.load(upload).await? {
                Some(set) => set,
                None => {
                    let set = ChunkSet::new(total)?;
                    write_atomically(&dir, "total", total.to_string().as_bytes()).await?;
                    set
                }
            };
            set.check(index, total)?;
            let outcome = set.record(index, staged.info)?;
            if outcome == Recorded::New {
                let name = format!("chunk-{index}");
                write_atomically(
                    &dir,
                    &format!("{name}.sha256"),
                    hex::encode(staged.info.digest).as_bytes(),
                )
                .await?;
                tokio::fs::rename(&staged.path, dir.join(&name))
                    .await
                    .map_err(io("move a chunk into place"))?;
                sync_dir(&dir).await?;
            }
            Ok((outcome, set))
        }
        .await;
        // A repeat, a refused chunk or a failure leaves the staged file behind: remove it.
        let _ = tokio::fs::remove_file(&staged.path).await;
        result
    }

    /// The path of chunk `index` (for assembly).
    #[must_use]
    pub fn chunk_path(&self, upload: UploadId, index: u32) -> PathBuf {
        self.dir(upload).join(format!("chunk-{index}"))
    }

    /// Removes an upload's spool once its object is stored.
    ///
    /// # Errors
    /// The disk fails.
    pub async fn remove(&self, upload: UploadId) -> Result<(), SpoolError> {
        match tokio::fs::remove_dir_all(self.dir(upload)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove an upload's spool")(e)),
        }
        self.locks.forget(upload);
        Ok(())
    }
}

async fn write_synced<S>(
    path: &Path,
    body: S,
    limit: u64,
    syncer: &Syncer,
) -> Result<ChunkInfo, SpoolError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>>,
{
    let mut file = Appender::appending(
        tokio::fs::File::create(path)
            .await
            .map_err(io("create a chunk file"))?
            .into_std()
            .await,
    );
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(SpoolError::Body)?;
        len += piece.len() as u64;
        if len > limit {
            return Err(SpoolError::TooLarge(limit));
        }
        hasher.update(&piece);
        file.push(piece).await.map_err(io("write a chunk"))?;
    }
    let file = file.into_file().await.map_err(io("write a chunk"))?;
    syncer.sync(file).await.map_err(io("sync a chunk"))?;
    Ok(ChunkInfo {
        len,
        digest: hasher.finalize().into(),
    })
}

pub(super) async fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), SpoolError> {
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(io("create a spool file"))?;
    file.write_all(contents)
        .await
        .map_err(io("write a spool file"))?;
    file.sync_all().await.map_err(io("sync a spool file"))?;
    tokio::fs::rename(&tmp, dir.join(name))
        .await
        .map_err(io("move a spool file into place"))
}

pub(super) async fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(io("open the spool directory"))?;
    d.sync_all().await.map_err(io("sync the spool directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upload the tests spool.
    fn u() -> UploadId {
        "00000000-0000-4000-8000-000000000001".parse().unwrap()
    }

    fn body(bytes: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter(bytes.chunks(3).map(|c| Ok(Bytes::from_static(c))))
    }

    fn open(root: &Path) -> ChunkSpool {
        let syncer = Syncer::start(super::super::durability::Durability::None).unwrap();
        ChunkSpool::open(root, Arc::new(syncer)).unwrap()
    }

    #[tokio::test]
    async fn chunks_survive_a_reopen_and_repeats_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let staged = spool.stage(u(), body(b"world"), 100).await.unwrap();
        let (outcome, set) = spool.record(u(), 1, 2, staged).await.unwrap();
        assert_eq!((outcome, set.is_complete()), (Recorded::New, false));
        let again = spool.stage(u(), body(b"world"), 100).await.unwrap();
        assert_eq!(
            spool.record(u(), 1, 2, again).await.unwrap().0,
            Recorded::Repeat
        );
        let other = spool.stage(u(), body(b"earth!"), 100).await.unwrap();
        assert!(matches!(
            spool.record(u(), 1, 2, other).await,
            Err(SpoolError::Chunk(ChunkError::Conflict { index: 1 }))
        ));
        let wrong_total = spool.stage(u(), body(b"x"), 100).await.unwrap();
        assert!(matches!(
            spool.record(u(), 0, 3, wrong_total).await,
            Err(SpoolError::Chunk(ChunkError::TotalMismatch { .. }))
        ));
        assert!(matches!(
            spool.stage(u(), body(b"too long"), 4).await,
            Err(SpoolError::TooLarge(4))
        ));

        // A new spool on the same directory (a restarted edge) knows chunk 1.
        let reopened = open(dir.path());
        let set = reopened.load(u()).await.unwrap().unwrap();
        assert_eq!((set.total(), set.received()), (2, 5));
        let staged = reopened.stage(u(), body(b"hello "), 100).await.unwrap();
        let (_, set) = reopened.record(u(), 0, 2, staged).await.unwrap();
        let mut file = Vec::new();
        for (i, _, _) in set.layout().unwrap() {
            file.extend(std::fs::read(reopened.chunk_path(u(), i)).unwrap());
        }
        assert_eq!(file, b"hello world");
        // Nothing but the chunks, their digests and the count: no temporary files left.
        let names: Vec<String> = std::fs::read_dir(dir.path().join(u().to_string()))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
        reopened.remove(u()).await.unwrap();
        assert!(!dir.path().join(u().to_string()).exists());
    }
}
