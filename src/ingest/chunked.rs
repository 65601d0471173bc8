//! Chunked uploads in the ingest core: a chunk streams into the spool, is recorded, and when
//! the last one is in, every chunk streams in order into the upload's object. Protocols with
//! numbered chunks (movingimage's headers, plupload's `chunk`/`chunks` form fields) call
//! [`Ingest::put_chunk`] and render its outcome their own way.

use super::chunk_spool::{ChunkSpool, SpoolError};
use super::control_plane::Held;
use super::forward::Spooled;
use super::Body;
use super::{Allowance, Completed, Ingest, IngestError, Receiving};
use crate::control::{UploadInfo, UploadStored};
use crate::store::{ObjectKey, StoreError};
use crate::upload::chunk_set::ChunkError;
use crate::upload::UploadId;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// What a chunk did.
#[derive(Debug)]
pub enum ChunkOutcome {
    /// Stored (or a repeat); the upload still waits for chunks.
    Stored {
        /// Chunks stored so far.
        received: u32,
        /// Chunks in all.
        total: u32,
    },
    /// The last chunk: the upload is assembled and stored.
    Complete(Completed),
}

/// Why a chunk was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChunkFailure {
    /// A repeat with other bytes, or a different total than earlier chunks.
    #[error("{0}")]
    Conflict(ChunkError),
    /// Over the account's quota (the token's or session's size limit).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// Over the node's upload size.
    #[error("upload larger than {0} bytes")]
    TooLarge(u64),
    /// The client's body ended early.
    #[error("the request body ended early")]
    BodyEnded,
    /// Another edge, alive, holds the upload's earlier chunks (the client changed edges).
    #[error("edge {0} holds the upload's earlier chunks")]
    HeldElsewhere(String),
    /// The upload is no longer receiving (its status): stored, or failed, as when the edge
    /// that held its earlier chunks was lost (`edge_lost`).
    #[error("the upload is no longer receiving (status {0})")]
    NotReceiving(i64),
    /// The application refused the upload at its last chunk (its hook); it has failed.
    #[error("the application refused the upload")]
    Refused(crate::hook::Refusal),
    /// Storage, spool or origin failed; the client should retry.
    #[error("unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> ChunkFailure {
    ChunkFailure::Unavailable(Box::new(e))
}

impl Ingest {
    /// Stores chunk `index` (from 0) of `total` for an upload that is receiving, within
    /// `allowance` for the whole upload.
    ///
    /// # Errors
    /// See [`ChunkFailure`]; nothing changes then.
    pub async fn put_chunk<S>(
        &self,
        spool: &ChunkSpool,
        upload: &UploadInfo,
        (index, total): (u32, u32),
        body: S,
        allowance: Allowance,
        md5: bool,
    ) -> Result<ChunkOutcome, ChunkFailure>
    where
        S: Body,
    {
        let id = upload.id;
        let received = match spool.load(id).await.map_err(unavailable)? {
            Some(set) => {
                set.check(index, total).map_err(ChunkFailure::Conflict)?;
                set.received()
            }
            None => {
                self.hold(id).await?;
                0
            }
        };
        let max = allowance
            .max_size
            .map_or(self.max_upload_size(), |m| m.min(self.max_upload_size()));
        let (limit, by_quota) = match allowance.quota {
            Some(quota) if quota < max => (quota.saturating_sub(received), true),
            _ => (max.saturating_sub(received), false),
        };
        let staged = match spool.stage(id, body, limit).await {
            Ok(staged) => staged,
            Err(SpoolError::TooLarge(_)) if by_quota => return Err(ChunkFailure::QuotaExceeded),
            Err(SpoolError::TooLarge(_)) => return Err(ChunkFailure::TooLarge(max)),
            Err(SpoolError::Body(_)) => return Err(ChunkFailure::BodyEnded),
            Err(e) => return Err(unavailable(e)),
        };
        let _guard = spool.lock(id).await;
        let set = match spool.record(id, index, total, staged).await {
            Ok((_, set)) => set,
            Err(SpoolError::Chunk(
                e @ (ChunkError::Conflict { .. } | ChunkError::TotalMismatch { .. }),
            )) => {
                return Err(ChunkFailure::Conflict(e));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let Some(layout) = set.layout() else {
            if !md5 {
                let files = set
                    .contiguous()
                    .map(|(i, len)| (spool.chunk_path(id, i), len))
                    .collect();
                let spooled = Spooled {
                    files,
                    complete: false,
                };
                self.spooled(upload, None, spooled);
            }
            return Ok(ChunkOutcome::Stored {
                received: set.count(),
                total,
            });
        };
        self.assemble(spool, upload, &layout, allowance, md5).await
    }

    /// Streams every chunk of an upload, in order, into its object; its spool then goes.
    async fn assemble(
        &self,
        spool: &ChunkSpool,
        upload: &UploadInfo,
        layout: &[(u32, u64, u64)],
        allowance: Allowance,
        md5: bool,
    ) -> Result<ChunkOutcome, ChunkFailure> {
        let id = upload.id;
        let files: Vec<_> = layout
            .iter()
            .map(|&(i, _, _)| spool.chunk_path(id, i))
            .collect();
        let stored = self.store_files(upload, &files, allowance, None, md5).await;
        // Stored, or refused by the application (the upload failed): its chunks will never be
        // asked for again.
        if matches!(stored, Ok(_) | Err(IngestError::Refused(_))) {
            if let Err(e) = spool.remove(id).await {
                tracing::warn!(upload_id = %id, error = %e, "Could not remove a finished upload's spool.");
            }
        }
        let done = stored.map_err(|e| match e {
            IngestError::QuotaExceeded => ChunkFailure::QuotaExceeded,
            IngestError::Refused(refusal) => ChunkFailure::Refused(refusal),
            other => unavailable(other),
        })?;
        tracing::info!(upload_id = %id, bytes = done.size, chunks = layout.len(), "Chunked upload assembled.");
        Ok(ChunkOutcome::Complete(done))
    }
}

impl Ingest {
    /// Before this edge takes the first chunk of an upload: tells the origin it holds the
    /// upload's unstored chunks, so that if this edge is lost the upload fails visibly rather
    /// than waiting for chunks that will never come (a fleet edge only: one with a name).
    async fn hold(&self, id: UploadId) -> Result<(), ChunkFailure> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        match self.origin.hold(id, name).await.map_err(unavailable)? {
            Held::Yes => Ok(()),
            Held::ByOther(edge) => Err(ChunkFailure::HeldElsewhere(edge)),
            Held::Over(status) => Err(ChunkFailure::NotReceiving(status)),
            Held::Unknown => Err(unavailable(std::io::Error::other(format!(
                "the origin does not know upload {id}"
            )))),
        }
    }

    /// Streams spooled files, in order, into an upload the origin opened, and completes it
    /// (with `metadata` for its record).
    ///
    /// # Errors
    /// A file cannot be read, a limit is exceeded, or the store or origin fails; the object is
    /// then not written and the files stay.
    pub async fn store_files(
        &self,
        upload: &UploadInfo,
        files: &[std::path::PathBuf],
        allowance: Allowance,
        metadata: Option<String>,
        md5: bool,
    ) -> Result<Completed, IngestError> {
        if !md5 {
            if let Some(done) = self
                .store_spooled(upload, files, allowance, &metadata)
                .await?
            {
                return Ok(done);
            }
        }
        let mut receiving = self.resume(upload, allowance).await?;
        if md5 {
            receiving = receiving.with_md5();
        }
        if let Err(e) = append_files(files, &mut receiving).await {
            self.cancel(receiving).await;
            return Err(e);
        }
        self.complete(receiving, None, metadata).await
    }

    /// Stores spooled files without streaming them through a writer where the store allows:
    /// the forwarder finishes what it has been sending while they arrived (S3), or one file is
    /// linked into place (local files). `None` when the caller must copy.
    async fn store_spooled(
        &self,
        upload: &UploadInfo,
        files: &[std::path::PathBuf],
        allowance: Allowance,
        metadata: &Option<String>,
    ) -> Result<Option<Completed>, IngestError> {
        let key = ObjectKey::new(upload.object_key.clone()).map_err(IngestError::BadKey)?;
        let read_error = |path: &std::path::Path, source| {
            IngestError::Store(StoreError::Read {
                key: path.display().to_string(),
                source,
            })
        };
        let mut spooled = Spooled::default();
        for path in files {
            let len = tokio::fs::metadata(path)
                .await
                .map_err(|e| read_error(path, e))?
                .len();
            spooled.files.push((path.clone(), len));
        }
        let size = spooled.len();
        let max = allowance
            .max_size
            .map_or(self.max_upload_size(), |m| m.min(self.max_upload_size()));
        if size > max {
            return Err(IngestError::TooLarge { limit: max });
        }
        if allowance.quota.is_some_and(|q| size > q) {
            return Err(IngestError::QuotaExceeded);
        }
        if let Some(forwarder) = &self.forwarder {
            forwarder
                .finish(upload.id, &key, spooled)
                .await
                .map_err(IngestError::Store)?;
        } else {
            let [file] = files else {
                return Ok(None);
            };
            let linked = self.store.link_file(&key, file).await;
            if linked.map_err(IngestError::Store)?.is_none() {
                return Ok(None);
            }
        }
        let stored = UploadStored {
            size,
            sha256: None,
            folder: None,
            metadata: metadata.clone(),
            edge: None,
        };
        let done = self.report(upload.id, &key, stored).await?;
        if let Some(forwarder) = &self.forwarder {
            forwarder.forget(upload.id).await;
        }
        Ok(Some(done))
    }
}

/// Appends files, in order, to `upload`.
async fn append_files(
    files: &[std::path::PathBuf],
    upload: &mut Receiving,
) -> Result<(), IngestError> {
    for path in files {
        let read_error = |source| {
            IngestError::Store(StoreError::Read {
                key: path.display().to_string(),
                source,
            })
        };
        let file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let mut pieces = std::pin::pin!(file_pieces(file));
        while let Some(piece) = pieces.next().await {
            upload.append(piece.map_err(read_error)?).await?;
        }
    }
    Ok(())
}

/// A file as a stream of 64 KiB pieces.
fn file_pieces(file: tokio::fs::File) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}
