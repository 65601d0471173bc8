//! Object storage behind one small trait: the ingest core streams an upload into an
//! [`ObjectWriter`], the origin's workers read sources and write outputs. Implementations:
//! [`file::FileStore`] (local files, the default) and [`s3::S3Store`] (S3 multipart, parts
//! forwarded while the upload arrives).
//!
//! Must not depend on HTTP, the database or any protocol.

pub mod appender;
pub mod crc_ledger;
pub mod file;
pub mod file_range;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::StorageUrl;
use crate::upload::part_plan::{Part, PartRules};

/// A storage failure, naming the object and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writing an object failed.
    #[error("cannot write object {key}")]
    Write {
        /// The object.
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading an object failed.
    #[error("cannot read object {key}")]
    Read {
        /// The object.
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Deleting an object failed.
    #[error("cannot delete object {key}")]
    Delete {
        /// The object.
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store itself could not be opened.
    #[error("cannot open the object store at {location}")]
    Open {
        /// Where.
        location: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A validated object key: relative, `/`-separated, no empty, `.` or `..` segments, no control
/// characters, at most 1024 bytes (the S3 limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks a key.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn new(key: impl Into<String>) -> Result<Self, &'static str> {
        let key = key.into();
        if key.is_empty() || key.len() > 1024 {
            return Err("an object key must be 1 to 1024 bytes long");
        }
        if key.chars().any(char::is_control) || key.contains('\\') {
            return Err("an object key must not contain control characters or backslashes");
        }
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err("an object key must not have empty, '.' or '..' segments");
        }
        Ok(Self(key))
    }

    /// The key's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `name` in the same "directory" as this one (`a/b/source` → `a/b/video.mp4`).
    ///
    /// # Errors
    /// `name` would not make a valid key.
    pub fn sibling(&self, name: &str) -> Result<Self, &'static str> {
        if name.contains('/') {
            return Err("a sibling name must be a single segment");
        }
        match self.0.rsplit_once('/') {
            Some((dir, _)) => Self::new(format!("{dir}/{name}")),
            None => Self::new(name),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A readable local copy of an object; a temporary copy is removed when this is dropped.
#[derive(Debug)]
pub struct LocalObject {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl LocalObject {
    /// Where to read it.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An object being written. Nothing is visible under the key until [`ObjectWriter::finish`]
/// returns, and then all of it is, durably.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError>;
    /// Makes the object durable and visible; returns its size.
    async fn finish(self: Box<Self>) -> Result<u64, StoreError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// An object store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Starts writing an object (replacing any object under the key on finish).
    async fn writer(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError>;
    /// A local file with the object's bytes, copied into `scratch` if the store is remote.
    async fn fetch_to_local(
        &self,
        key: &ObjectKey,
        scratch: &Path,
    ) -> Result<LocalObject, StoreError>;
    /// Stores a local file under a key, through [`Store::writer`].
    async fn put_file(&self, key: &ObjectKey, src: &Path) -> Result<u64, StoreError> {
        let read = |source| StoreError::Read {
            key: src.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(src).await.map_err(read)?;
        let mut writer = self.writer(key).await?;
        loop {
            let mut piece = bytes::BytesMut::with_capacity(1 << 20);
            let n = match tokio::io::AsyncReadExt::read_buf(&mut file, &mut piece).await {
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await;
                    return Err(read(e));
                }
            };
            if n == 0 {
                return writer.finish().await;
            }
            if let Err(e) = writer.write(piece.freeze()).await {
                writer.abort().await;
                return Err(e);
            }
        }
    }
    /// The size of an object, or `None` when there is none.
    async fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError>;
    /// Whether the store answers (the directory is there, the bucket reachable): readiness.
    async fn ready(&self) -> Result<(), StoreError>;
    /// A reader of `len` bytes of an object from byte `start` (within its size).
    async fn read_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StoreError>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;
    /// Stores a finished, synced local file under a key without copying it, when the store can
    /// (a hard link on the same filesystem): its size, or `None` when the caller must copy.
    /// The file must not change afterwards.
    async fn link_file(&self, _key: &ObjectKey, _src: &Path) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Discards writes begun before `before` and never finished (a crashed writer's partial
    /// file, an S3 multipart upload left open), except those under `receiving`, the keys of
    /// uploads still receiving; returns how many.
    async fn discard_unfinished(
        &self,
        before: std::time::SystemTime,
        receiving: &std::collections::HashSet<String>,
    ) -> Result<usize, StoreError>;
    /// The store's multipart interface when it takes an object in parts that outlive the
    /// process (S3): the edge then forwards spooled uploads while they arrive and resumes
    /// after a restart. `None` when spooled files are stored whole (local files link them).
    fn parts(&self) -> Option<&dyn PartStore> {
        None
    }
}

/// A part the store holds, as needed to complete the object (and to resume after a restart).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentPart {
    /// Its number, from 1.
    pub number: u32,
    /// Its first byte in the object.
    pub start: u64,
    /// Its length.
    pub len: u64,
    /// The store's entity tag for it.
    pub etag: String,
    /// Its CRC32C (Castagnoli), which the store checked on receipt.
    pub crc32c: u32,
}

/// A part's bytes: in memory, or a range of one local file, streamed to the store and never
/// held whole (the part's length is the range's).
#[derive(Debug, Clone)]
pub enum PartBody {
    /// The bytes.
    Bytes(Bytes),
    /// `part.len` bytes of the file at `path` from `offset`, whose CRC32C is known.
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Where the part starts in it.
        offset: u64,
        /// The CRC32C of the range.
        crc32c: u32,
    },
}

impl PartBody {
    /// The CRC32C of the part's bytes.
    #[must_use]
    pub fn crc32c(&self) -> u32 {
        match self {
            Self::Bytes(bytes) => crc32c(bytes),
            Self::File { crc32c, .. } => *crc32c,
        }
    }
}

/// An object stored as numbered parts under an upload id that survives restarts.
#[async_trait]
pub trait PartStore: Send + Sync {
    /// How parts must be cut.
    fn rules(&self) -> PartRules;
    /// Parts to send at once for one object.
    fn parts_in_flight(&self) -> usize;
    /// Opens a multipart upload; returns its id.
    async fn begin_parts(&self, key: &ObjectKey) -> Result<String, StoreError>;
    /// Stores one part (replacing an earlier part with its number). A multipart upload that is
    /// gone (aborted by a sweeper) fails with [`std::io::ErrorKind::NotFound`].
    async fn put_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part: Part,
        body: PartBody,
    ) -> Result<SentPart, StoreError>;
    /// Joins the parts, in order, into the object and checks that it holds `size` bytes. A
    /// multipart upload completed before (the caller forgot it) succeeds if the object holds
    /// `size` bytes; one that is gone otherwise fails with [`std::io::ErrorKind::NotFound`].
    async fn complete_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[SentPart],
        size: u64,
    ) -> Result<(), StoreError>;
    /// Drops a multipart upload and its parts.
    async fn abort_parts(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError>;
}

/// The hex SHA-256 of a local file, read in 1 MiB blocks (call it on a blocking thread).
///
/// # Errors
/// The file cannot be read.
pub fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The CRC32C (Castagnoli) of `data`, as S3's `x-amz-checksum-crc32c` carries it (big-endian).
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    // CRC-32/ISCSI is CRC32C; the result fits 32 bits.
    u32::try_from(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data)).unwrap_or(0)
}

/// The CRC32C of `len` bytes of the file at `path` from `offset`, read 1 MiB at a time (call it
/// on a blocking thread).
///
/// # Errors
/// The file cannot be read, or holds fewer bytes.
pub fn crc32c_of_file(path: &Path, offset: u64, len: u64) -> std::io::Result<u32> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut file = file.take(len);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        read += n as u64;
    }
    if read < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file holds fewer bytes than announced",
        ));
    }
    // CRC-32/ISCSI is CRC32C; the result fits 32 bits.
    Ok(u32::try_from(digest.finalize()).unwrap_or(0))
}

/// Opens the store a URL names.
///
/// # Errors
/// The store cannot be opened.
pub async fn open(url: &StorageUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StorageUrl::File(root) => Ok(Arc::new(file::FileStore::open(root).await?)),
        StorageUrl::S3(location) => Ok(Arc::new(s3::S3Store::open(location).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectKey;

    #[test]
    fn keys_are_validated() {
        assert!(ObjectKey::new("accounts/a/uploads/b/source").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\nb", "a\\b"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new("k".repeat(1025)).is_err());
        let source = ObjectKey::new("a/b/source").unwrap();
        assert_eq!(
            source.sibling("video.mp4").unwrap().as_str(),
            "a/b/video.mp4"
        );
        assert_eq!(
            ObjectKey::new("x").unwrap().sibling("y").unwrap().as_str(),
            "y"
        );
        assert!(source.sibling("../up").is_err());
        // The CRC-32C check value (RFC 3720's CRC32C, "123456789").
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
        assert!(source.sibling("c/d").is_err());
    }
}
