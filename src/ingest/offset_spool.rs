//! The edge's spool for offset-based resumable uploads (tus): one data file per upload, the
//! offset being its length, and a small `info` file with the declared length and the client's
//! metadata. An append is made as durable as the edge's [`Durability`] says before the new
//! offset is told to the client (synced, by default); a request cut off half way keeps what
//! arrived (tus: "store as much as received"); a chunk whose checksum does not match is cut off
//! again. Must not depend on HTTP or any protocol.

use super::chunk_spool::{io, sync_dir, write_atomically, SpoolError, Turn, UploadLocks};
#[cfg(doc)]
use super::durability::Durability;
use super::durability::Syncer;
use crate::store::appender::{Appender, Appending};
use crate::store::crc_ledger::CrcLedger;
use crate::upload::{Offset, UploadId};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What is known of a resource besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The declared length, once known (`Upload-Defer-Length` leaves it open).
    pub length: Option<Offset>,
    /// The client's `Upload-Metadata`, as sent.
    pub metadata: Option<String>,
    /// Stored in the object store; the data file is gone.
    pub complete: bool,
    /// Its part in a concatenation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concat: Option<Concat>,
    /// Whose it is and where its bytes go, as the origin opened it: later requests need not
    /// ask the origin (absent in spools written before it was kept there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The origin's facts about a resumable upload that never change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning account.
    pub account_id: String,
    /// Where its bytes go.
    pub object_key: String,
    /// The upload token (grant) that created it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// An upload's part in a concatenation (tus `Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concat {
    /// Uploaded in parallel with others, stored only as part of a final upload.
    Partial,
    /// The concatenation of these partial uploads, in order.
    Final(Vec<UploadId>),
}

/// A checksum algorithm of the tus checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// MD5.
    Md5,
}

impl Algorithm {
    /// By tus name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "md5" => Some(Self::Md5),
            _ => None,
        }
    }

    fn hasher(self) -> Box<dyn sha2::digest::DynDigest + Send> {
        match self {
            Self::Sha1 => Box::new(sha1::Sha1::default()),
            Self::Sha256 => Box::new(sha2::Sha256::default()),
            Self::Md5 => Box::new(md5::Md5::default()),
        }
    }
}

/// How often an append reports the data file's growth.
const REPORT_EVERY: u64 = 1 << 20;

/// What an append checks and reports besides storing the bytes.
pub struct Checks<'a> {
    /// At most this many bytes (a longer body keeps nothing).
    pub limit: u64,
    /// The `(algorithm, digest)` the whole body must have.
    pub checksum: Option<(Algorithm, Vec<u8>)>,
    /// Told the data file's length about every MiB while the body arrives (bytes written, not
    /// synced), when there is no checksum (which could still discard the bytes).
    pub grown: Option<Box<dyn FnMut(Offset) + Send + 'a>>,
    /// Where the CRC32C of the bytes written is recorded (for a forwarder's parts), when there
    /// is no checksum.
    pub crcs: Option<Arc<CrcLedger>>,
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The whole body was stored; the new offset.
    Done(Offset),
    /// The body ended early; what arrived is kept; the new offset.
    Cut(Offset),
    /// The checksum did not match; the chunk was discarded.
    ChecksumMismatch,
}

/// The spool.
#[derive(Debug)]
pub struct OffsetSpool {
    root: PathBuf,
    locks: UploadLocks,
    syncer: Arc<Syncer>,
}

impl OffsetSpool {
    /// Opens (creating) the spool at `root`; `syncer` makes appends durable.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path, syncer: Arc<Syncer>) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(root).map_err(io("create the resumable spool"))?;
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

    /// The data file (for assembly).
    #[must_use]
    pub fn data_path(&self, upload: UploadId) -> PathBuf {
        self.dir(upload).join("data")
    }

    /// Holds the upload, ending the request that held it before (which keeps what it
    /// received): one request at a time changes it, and the newest one wins.
    pub async fn take_over(&self, upload: UploadId) -> Turn {
        self.locks.take_over(upload).await
    }

    /// Creates the resource (empty data).
    ///
    /// # Errors
    /// The disk fails.
    pub async fn create(&self, upload: UploadId, resource: &Resource) -> Result<(), SpoolError> {
        self.create_at(upload, resource, Offset::ZERO).await
    }

    /// Creates the resource at `offset`: its first `offset` bytes are in storage already
    /// (adopted from another edge), so the data file starts as a hole of that length, which
    /// takes no disk space and is never read.
    ///
    /// # Errors
    /// The disk fails.
    pub async fn create_at(
        &self,
        upload: UploadId,
        resource: &Resource,
        offset: Offset,
    ) -> Result<(), SpoolError> {
        let dir = self.dir(upload);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("create a resumable upload"))?;
        let data = tokio::fs::File::create(dir.join("data"))
            .await
            .map_err(io("create a data file"))?;
        if offset > Offset::ZERO {
            data.set_len(offset.bytes())
                .await
                .map_err(io("size a data file"))?;
            data.sync_all().await.map_err(io("sync a data file"))?;
        }
        self.save(upload, resource).await?;
        sync_dir(&dir).await
    }

    /// Rewrites the resource's info.
    ///
    /// # Errors
    /// The disk fails.
    pub async fn save(&self, upload: UploadId, resource: &Resource) -> Result<(), SpoolError> {
        let json = serde_json::to_vec(resource)
            .map_err(|e| io("encode upload info")(std::io::Error::other(e)))?;
        write_atomically(&self.dir(upload), "info", &json).await
    }

    /// The resource and its offset, if it exists.
    ///
    /// # Errors
    /// The disk fails or holds something unreadable.
    pub async fn get(&self, upload: UploadId) -> Result<Option<(Resource, Offset)>, SpoolError> {
        let dir = self.dir(upload);
        // One trip to a blocking thread for both files (every PATCH and HEAD asks).
        let read = tokio::task::spawn_blocking(move || {
            let info = match std::fs::read(dir.join("info")) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io("read upload info")(e)),
            };
            let resource: Resource = serde_json::from_slice(&info)
                .map_err(|e| io("decode upload info")(std::io::Error::other(e)))?;
            let offset = if resource.complete {
                resource.length.unwrap_or_default()
            } else {
                Offset::new(
                    std::fs::metadata(dir.join("data"))
                        .map_err(io("read a data file's size"))?
                        .len(),
                )
            };
            Ok(Some((resource, offset)))
        });
        read.await
            .map_err(|e| io("read upload info")(std::io::Error::other(e)))?
    }

    /// Appends a request body at `offset` while `turn` holds the upload, within `checks`. A
    /// newer request taking the upload over ends the body early, as a dropped connection does.
    /// As durable as the edge's [`Durability`] asks when it returns.
    ///
    /// # Errors
    /// The body is too long (nothing of it is kept), or the disk fails.
    pub async fn append<S>(
        &self,
        upload: UploadId,
        turn: &Turn,
        offset: Offset,
        body: S,
        checks: Checks<'_>,
    ) -> Result<Appended, SpoolError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>>,
    {
        let path = self.data_path(upload);
        let Checks {
            limit,
            checksum,
            mut grown,
            crcs,
        } = checks;
        let mut hasher = checksum.as_ref().map(|(algorithm, _)| algorithm.hasher());
        // Growth and CRC32Cs are reported only when no checksum could still discard the bytes.
        let grown = grown.as_mut().filter(|_| hasher.is_none());
        let crcs = crcs.filter(|_| hasher.is_none());
        let opened = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(io("open a data file"))?
            .into_std()
            .await;
        let mut file = match &crcs {
            Some(ledger) => {
                Appender::to(Appending::new(opened).recording(offset.bytes(), ledger.clone()))
            }
            None => Appender::appending(opened),
        };
        // Once the file is cut back to `offset` (every write done), what was recorded past it
        // no longer describes it.
        let cut_back = || {
            if let Some(ledger) = &crcs {
                ledger.truncate(offset.bytes());
            }
        };
        let (written, cut) =
            match receive(&mut file, turn, body, limit, &mut hasher, grown, offset).await {
                Received::Ended { written, cut } => (written, cut),
                Received::TooLarge => {
                    let truncated = truncate(file, offset).await;
                    cut_back();
                    truncated?;
                    return Err(SpoolError::TooLarge(limit));
                }
                // A full or failing disk: nothing of this request is kept, so the offset the upload
                // answers is one that was made durable.
                Received::Failed(e) => {
                    let e = discard(Some(file), &path, offset, "append to a data file", e).await;
                    cut_back();
                    return Err(e);
                }
            };
        if let (Some(h), Some((_, expected))) = (hasher, checksum) {
            // A checksum covers the whole request: an incomplete or different chunk goes.
            if cut || h.finalize().as_ref() != expected.as_slice() {
                truncate(file, offset).await?;
                return Ok(Appended::ChecksumMismatch);
            }
        }
        let settled = match file.into_file().await {
            Ok(file) => self
                .syncer
                .settle(file)
                .await
                .map_err(|e| ("sync a data file", e)),
            Err(e) => Err(("append to a data file", e)),
        };
        if let Err((op, e)) = settled {
            let e = discard(None, &path, offset, op, e).await;
            cut_back();
            return Err(e);
        }
        let offset = offset.after(written);
        Ok(if cut {
            Appended::Cut(offset)
        } else {
            Appended::Done(offset)
        })
    }

    /// Marks the resource stored and drops its data.
    ///
    /// # Errors
    /// The disk fails.
    pub async fn complete(
        &self,
        upload: UploadId,
        mut resource: Resource,
    ) -> Result<(), SpoolError> {
        resource.complete = true;
        self.save(upload, &resource).await?;
        match tokio::fs::remove_file(self.data_path(upload)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove a data file")(e)),
            _ => Ok(()),
        }
    }

    /// Removes the resource entirely (termination).
    ///
    /// # Errors
    /// The disk fails.
    pub async fn remove(&self, upload: UploadId) -> Result<(), SpoolError> {
        match tokio::fs::remove_dir_all(self.dir(upload)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove an upload's spool")(e))
            }
            _ => {}
        }
        self.locks.forget(upload);
        Ok(())
    }
}

/// How reading a request body into a data file ended.
enum Received {
    /// The body ended (`cut`: early, its connection lost or the upload taken over) after
    /// `written` bytes.
    Ended { written: u64, cut: bool },
    /// The body went past the limit.
    TooLarge,
    /// A write failed.
    Failed(std::io::Error),
}

/// Reads `body` into `file` while `turn` holds the upload, at most `limit` bytes, hashing it
/// with `hasher` and telling `grown` the data file's length about every MiB written (from
/// `offset`), without waiting for the writes.
async fn receive<S>(
    file: &mut Appender,
    turn: &Turn,
    body: S,
    limit: u64,
    hasher: &mut Option<Box<dyn sha2::digest::DynDigest + Send>>,
    mut grown: Option<&mut Box<dyn FnMut(Offset) + Send + '_>>,
    offset: Offset,
) -> Received
where
    S: Stream<Item = Result<Bytes, std::io::Error>>,
{
    let mut written = 0u64;
    let mut reported = 0u64;
    let mut body = std::pin::pin!(body);
    loop {
        let piece = tokio::select! {
            biased;
            () = turn.stopped() => None,
            piece = body.next() => match piece {
                None => return Received::Ended { written, cut: false },
                Some(piece) => piece.ok(),
            },
        };
        let Some(piece) = piece else {
            return Received::Ended { written, cut: true };
        };
        written += piece.len() as u64;
        if written > limit {
            return Received::TooLarge;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&piece);
        }
        if let Err(e) = file.push(piece).await {
            return Received::Failed(e);
        }
        if let Some(grown) = grown.as_mut() {
            let worked = file.worked();
            if worked - reported >= REPORT_EVERY {
                grown(offset.after(worked));
                reported = worked;
            }
        }
    }
}

/// Cuts a data file back to `offset` after a failed append (a full disk): nothing of the request is
/// kept, so the offset the upload answers is one that was made durable. Returns the failure.
async fn discard(
    file: Option<Appender>,
    path: &std::path::Path,
    offset: Offset,
    op: &'static str,
    error: std::io::Error,
) -> SpoolError {
    if let Some(file) = file {
        // Waits for a write still running, so none lands after the cut.
        let _ = file.into_file().await;
    }
    let path = path.to_owned();
    let cut = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(offset.bytes())?;
        file.sync_all()
    })
    .await;
    if !matches!(cut, Ok(Ok(()))) {
        tracing::error!(%offset, error = ?cut, "Could not cut a data file back after a failed append.");
    }
    io(op)(error)
}

/// Cuts the data file back to `offset`, durably (a body too long, a checksum mismatch).
async fn truncate(file: Appender, offset: Offset) -> Result<(), SpoolError> {
    let file = file
        .into_file()
        .await
        .map_err(io("append to a data file"))?;
    tokio::task::spawn_blocking(move || file.set_len(offset.bytes()).and_then(|()| file.sync_all()))
        .await
        .map_err(|e| io("cut a data file back")(std::io::Error::other(e)))?
        .map_err(io("cut a data file back"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(bytes: u64) -> Offset {
        Offset::new(bytes)
    }

    /// The upload the tests spool.
    fn u() -> UploadId {
        "00000000-0000-4000-8000-000000000001".parse().unwrap()
    }

    fn open(root: &Path) -> OffsetSpool {
        let syncer = Syncer::start(super::super::durability::Durability::Sync).unwrap();
        OffsetSpool::open(root, Arc::new(syncer)).unwrap()
    }

    fn checks(limit: u64, checksum: Option<(Algorithm, Vec<u8>)>) -> Checks<'static> {
        Checks {
            limit,
            checksum,
            grown: None,
            crcs: None,
        }
    }

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn appends_cuts_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let r = Resource {
            length: Some(o(11)),
            metadata: Some("filename YS5tcDQ=".into()),
            complete: false,
            concat: None,
            owner: None,
        };
        spool.create(u(), &r).await.unwrap();
        let turn = spool.take_over(u()).await;
        assert_eq!(
            spool
                .append(u(), &turn, o(0), body(&[b"hel", b"lo "]), checks(100, None))
                .await
                .unwrap(),
            Appended::Done(o(6))
        );
        // A body that fails half way keeps what arrived.
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"wo")),
            Err(std::io::Error::other("gone")),
        ]);
        assert_eq!(
            spool
                .append(u(), &turn, o(6), broken, checks(100, None))
                .await
                .unwrap(),
            Appended::Cut(o(8))
        );
        // A wrong checksum discards the chunk.
        let bad = Some((Algorithm::Sha1, vec![0u8; 20]));
        assert_eq!(
            spool
                .append(u(), &turn, o(8), body(&[b"rld"]), checks(100, bad))
                .await
                .unwrap(),
            Appended::ChecksumMismatch
        );
        assert_eq!(spool.get(u()).await.unwrap().unwrap().1, o(8));
        let good = Some((
            Algorithm::Md5,
            <md5::Md5 as sha2::Digest>::digest(b"rld").to_vec(),
        ));
        assert_eq!(
            spool
                .append(u(), &turn, o(8), body(&[b"rld"]), checks(100, good))
                .await
                .unwrap(),
            Appended::Done(o(11))
        );
        assert!(matches!(
            spool
                .append(u(), &turn, o(11), body(&[b"too much"]), checks(3, None))
                .await,
            Err(SpoolError::TooLarge(3))
        ));
        assert_eq!(std::fs::read(spool.data_path(u())).unwrap(), b"hello world");
        drop(turn);
        // Survives a reopen; completion drops the data but keeps the offset.
        let reopened = open(dir.path());
        let (resource, offset) = reopened.get(u()).await.unwrap().unwrap();
        assert_eq!((resource.clone(), offset), (r.clone(), o(11)));
        reopened.complete(u(), resource).await.unwrap();
        assert!(!reopened.data_path(u()).exists());
        assert_eq!(reopened.get(u()).await.unwrap().unwrap().1, o(11));
        reopened.remove(u()).await.unwrap();
        assert!(reopened.get(u()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_newer_request_takes_the_upload_over() {
        let dir = tempfile::tempdir().unwrap();
        let spool = std::sync::Arc::new(open(dir.path()));
        let r = Resource {
            length: None,
            metadata: None,
            complete: false,
            concat: None,
            owner: None,
        };
        spool.create(u(), &r).await.unwrap();
        // A stale request: sent five bytes, then hangs with its connection still open.
        let (asked, asked_more) = tokio::sync::oneshot::channel();
        let hanging = futures_util::stream::once(async move {
            let _ = asked.send(());
            std::future::pending::<Result<Bytes, std::io::Error>>().await
        });
        let rx = body(&[b"12345"]).chain(hanging);
        let stale = {
            let spool = spool.clone();
            tokio::spawn(async move {
                let turn = spool.take_over(u()).await;
                spool.append(u(), &turn, o(0), rx, checks(100, None)).await
            })
        };
        // The five bytes are taken once the next piece is asked for.
        asked_more.await.unwrap();
        // The reconnecting client's request ends the stale one, which keeps what it received.
        let turn = tokio::time::timeout(std::time::Duration::from_secs(5), spool.take_over(u()))
            .await
            .expect("the stale request must give the upload up");
        assert_eq!(stale.await.unwrap().unwrap(), Appended::Cut(o(5)));
        assert_eq!(spool.get(u()).await.unwrap().unwrap().1, o(5));
        assert_eq!(
            spool
                .append(u(), &turn, o(5), body(&[b"678"]), checks(100, None))
                .await
                .unwrap(),
            Appended::Done(o(8))
        );
    }
}
