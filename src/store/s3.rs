//! The S3 store (`--storage s3://bucket/prefix`): aws-sdk-s3 with the standard `AWS_*`
//! configuration (`AWS_ENDPOINT_URL` for MinIO, moto, R2…). An upload is forwarded while it
//! arrives: the [`PartPlan`] cuts the stream into parts, each sent as soon as it is full with a
//! few in flight, so the time from the last byte to a stored object is one part, and memory per
//! upload is bounded by the part size times the parts in flight. An object smaller than one part
//! is one `PutObject`.
//!
//! The same multipart calls, as a [`PartStore`], let the edge forward spooled uploads (tus,
//! chunks) while they arrive and resume them after a restart.
//!
//! Integrity: every part and whole object carries its CRC32C (`x-amz-checksum-crc32c`), which
//! S3 checks on receipt. Failures: the SDK retries 5xx, `SlowDown` and timeouts with capped
//! exponential back-off and jitter; a completed object's size is read back before it counts as
//! stored (which also catches a `CompleteMultipartUpload` that answered 200 with an error); an
//! aborted writer aborts its multipart upload.
//!
//! Must not depend on HTTP serving, the database or any protocol.

use super::file_range::FileRange;
use super::{
    crc32c, LocalObject, ObjectKey, ObjectWriter, PartBody, PartStore, SentPart, Store, StoreError,
};
use crate::config::S3Location;
use crate::upload::part_plan::{Cursor, Part, PartPlan, PartRules};
use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_types::body::SdkBody;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// An S3 bucket under a key prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    location: S3Location,
    rules: PartRules,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// An SDK error with its causes ("dispatch failure: io error: …: Connection refused"), without
/// the SDK's `Debug` dump of the request and response that `DisplayErrorContext` appends.
fn sdk<E: std::error::Error + 'static>(e: E) -> std::io::Error {
    io(crate::error::chain(&e))
}

/// The read buffer of a part streamed from a file: each read is a hop to a blocking thread, so
/// 1 MiB reads cost a quarter of the thread switches 256 KiB ones did (the forwarder's CPU per
/// GiB into S3 fell by a fifth), for 2 MiB per part in flight (one buffer being sent, the next
/// being read: [`FileRange`]).
pub const STREAM_BUFFER: usize = 1024 * 1024;

/// Times every S3 operation, retries included, for the metrics ([`crate::metrics`]).
#[derive(Debug)]
struct Timed;

/// When an operation started, kept in its config bag.
#[derive(Debug, Clone, Copy)]
struct Started(std::time::Instant);

impl aws_smithy_types::config_bag::Storable for Started {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl aws_sdk_s3::config::Intercept for Timed {
    fn name(&self) -> &'static str {
        "uplink metrics"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        cfg.interceptor_state()
            .store_put(Started(std::time::Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &aws_sdk_s3::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or("unknown", |m| m.name());
        if let Some(Started(at)) = cfg.load::<Started>() {
            let ok = matches!(context.output_or_error(), Some(Ok(_)));
            crate::metrics::storage_request(operation, ok, at.elapsed());
        }
        Ok(())
    }
}

impl S3Store {
    /// Connects to the bucket (it must exist and be reachable with the configured credentials).
    ///
    /// # Errors
    /// The bucket cannot be reached.
    pub async fn open(location: &S3Location) -> Result<Self, StoreError> {
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(6)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(8));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(120))
            .build();
        let region = aws_config::meta::region::RegionProviderChain::default_provider()
            .or_else(aws_sdk_s3::config::Region::new("us-east-1"));
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(region)
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(location.path_style)
            .interceptor(Timed)
            .build();
        let rules = PartRules {
            part_size: location.part_size,
            equal_parts: location.equal_parts,
            ..PartRules::s3()
        };
        let store = Self {
            client: Client::from_conf(config),
            location: location.clone(),
            rules,
        };
        store.head_bucket().await?;
        Ok(store)
    }

    fn key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.location.prefix, key.as_str())
    }

    /// `HeadBucket`: the bucket is there and these credentials reach it.
    async fn head_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.location.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Open {
                location: format!("s3://{}/{}", self.location.bucket, self.location.prefix),
                source: sdk(e),
            })
    }
}

#[async_trait]
impl Store for S3Store {
    async fn ready(&self) -> Result<(), StoreError> {
        self.head_bucket().await
    }

    async fn writer(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let plan = PartPlan::new(&self.rules, None).map_err(|e| StoreError::Write {
            key: key.to_string(),
            source: io(e),
        })?;
        Ok(Box::new(S3Writer {
            store: self.clone(),
            key: key.clone(),
            plan,
            cursor: Cursor::default(),
            pieces: VecDeque::new(),
            received: 0,
            upload_id: None,
            sending: JoinSet::new(),
            sent: Vec::new(),
        }))
    }

    async fn fetch_to_local(
        &self,
        key: &ObjectKey,
        scratch: &Path,
    ) -> Result<LocalObject, StoreError> {
        let full = self.key(key);
        let read = |source| StoreError::Read {
            key: full.clone(),
            source,
        };
        let object = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| read(sdk(e)))?;
        tokio::fs::create_dir_all(scratch).await.map_err(read)?;
        let temp = tempfile::NamedTempFile::new_in(scratch)
            .map_err(read)?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&temp).await.map_err(read)?;
        let mut body = object.body;
        while let Some(piece) = body.try_next().await.map_err(|e| read(io(e)))? {
            file.write_all(&piece).await.map_err(read)?;
        }
        file.sync_all().await.map_err(read)?;
        Ok(LocalObject {
            path: temp.to_path_buf(),
            _temp: Some(temp),
        })
    }

    async fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        let full = self.key(key);
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(head) => Ok(head.content_length().and_then(|l| u64::try_from(l).ok())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(StoreError::Read {
                key: full,
                source: sdk(e),
            }),
        }
    }

    async fn read_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StoreError> {
        let full = self.key(key);
        let last = start + len.max(1) - 1;
        let object = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .range(format!("bytes={start}-{last}"))
            .send()
            .await
            .map_err(|e| StoreError::Read {
                key: full,
                source: sdk(e),
            })?;
        Ok(Box::new(tokio::io::AsyncReadExt::take(
            object.body.into_async_read(),
            len,
        )))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let full = self.key(key);
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| StoreError::Delete {
                key: full.clone(),
                source: sdk(e),
            })?;
        Ok(())
    }

    fn parts(&self) -> Option<&dyn PartStore> {
        Some(self)
    }

    async fn discard_unfinished(
        &self,
        before: std::time::SystemTime,
        receiving: &std::collections::HashSet<String>,
    ) -> Result<usize, StoreError> {
        let failed = |e| StoreError::Delete {
            key: format!("s3://{}/{}", self.location.bucket, self.location.prefix),
            source: e,
        };
        let before = aws_sdk_s3::primitives::DateTime::from(before);
        let mut discarded = 0;
        // ListMultipartUploads pages by key and upload-id markers (the SDK has no paginator).
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.location.bucket)
                .prefix(&self.location.prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| failed(sdk(e)))?;
            for upload in page.uploads() {
                // An upload still receiving is being forwarded by an edge, whatever its age.
                let live = upload
                    .key()
                    .and_then(|k| k.strip_prefix(self.location.prefix.as_str()))
                    .is_some_and(|k| receiving.contains(k));
                let stale = !live && upload.initiated().is_some_and(|t| t.secs() < before.secs());
                let (Some(key), Some(id), true) = (upload.key(), upload.upload_id(), stale) else {
                    continue;
                };
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| failed(sdk(e)))?;
                discarded += 1;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
        }
        Ok(discarded)
    }
}

/// An object being forwarded part by part.
struct S3Writer {
    store: S3Store,
    key: ObjectKey,
    plan: PartPlan,
    cursor: Cursor,
    /// Bytes received and not yet cut into a part, as they came.
    pieces: VecDeque<Bytes>,
    received: u64,
    /// The multipart upload, opened with the first full part.
    upload_id: Option<String>,
    sending: JoinSet<Result<SentPart, StoreError>>,
    sent: Vec<SentPart>,
}

impl S3Writer {
    /// Waits for one part in flight.
    async fn collect_one(&mut self) -> Result<(), StoreError> {
        if let Some(done) = self.sending.join_next().await {
            let part = done.map_err(|e| self.store.write_error(&self.key, io(e)))??;
            self.sent.push(part);
        }
        Ok(())
    }

    /// Sends every full part the buffer holds (the last part too when `complete`).
    async fn send_parts(&mut self, complete: bool) -> Result<(), StoreError> {
        while let Some(part) = self
            .plan
            .next(self.cursor, self.received, complete)
            .map_err(|e| self.store.write_error(&self.key, io(e)))?
        {
            let len =
                usize::try_from(part.len).map_err(|e| self.store.write_error(&self.key, io(e)))?;
            let body = take_front(&mut self.pieces, len);
            self.cursor = PartPlan::advance(&part);
            let upload_id = match &self.upload_id {
                Some(id) => id.clone(),
                None => {
                    let id = self.store.begin_parts(&self.key).await?;
                    self.upload_id = Some(id.clone());
                    id
                }
            };
            while self.sending.len() >= self.store.location.parts_in_flight {
                self.collect_one().await?;
            }
            let (store, key) = (self.store.clone(), self.key.clone());
            self.sending.spawn(async move {
                store
                    .put_part(&key, &upload_id, part, PartBody::Bytes(body))
                    .await
            });
            if complete && self.cursor.start == self.received {
                break;
            }
        }
        Ok(())
    }

    async fn complete_multipart(&mut self, upload_id: &str) -> Result<(), StoreError> {
        self.send_parts(true).await?;
        while !self.sending.is_empty() {
            self.collect_one().await?;
        }
        self.sent.sort_by_key(|p| p.number);
        self.store
            .complete_parts(&self.key, upload_id, &self.sent, self.received)
            .await
    }

    async fn abort_multipart(&mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        if let Some(upload_id) = self.upload_id.take() {
            if let Err(e) = self.store.abort_parts(&self.key, &upload_id).await {
                tracing::warn!(key = %self.key, error = %crate::error::chain(&e), "Could not abort a multipart upload; the sweeper will.");
            }
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.received += data.len() as u64;
        self.pieces.push_back(data);
        self.send_parts(false).await
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let stored = match self.upload_id.clone() {
            None => {
                let len = usize::try_from(self.received)
                    .map_err(|e| self.store.write_error(&self.key, io(e)))?;
                let body = take_front(&mut self.pieces, len);
                self.store.put_whole(&self.key, body).await
            }
            Some(upload_id) => self.complete_multipart(&upload_id).await,
        };
        if let Err(e) = stored {
            self.abort_multipart().await;
            return Err(e);
        }
        Ok(self.received)
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_multipart().await;
    }
}

/// The first `len` bytes of `pieces` (fewer if they hold fewer) in one buffer of exactly that
/// size. A `BytesMut` appended to piece by piece grows past the part size by doubling, and
/// every part sent would pin that larger allocation until S3 took it.
fn take_front(pieces: &mut VecDeque<Bytes>, len: usize) -> Bytes {
    let mut part = BytesMut::with_capacity(len);
    while part.len() < len {
        let Some(front) = pieces.front_mut() else {
            break;
        };
        let want = len - part.len();
        if front.len() > want {
            part.extend_from_slice(&front.split_to(want));
        } else {
            part.extend_from_slice(front);
            pieces.pop_front();
        }
    }
    part.freeze()
}

impl S3Store {
    fn write_error(&self, key: &ObjectKey, source: std::io::Error) -> StoreError {
        StoreError::Write {
            key: self.key(key),
            source,
        }
    }

    /// One `PutObject` of a small object, with its CRC32C, then the size check.
    async fn put_whole(&self, key: &ObjectKey, body: Bytes) -> Result<(), StoreError> {
        let size = body.len() as u64;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(crc32c_header(crc32c(&body)))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.write_error(key, sdk(e)))?;
        self.check_size(key, size).await
    }

    /// Counted as stored only once S3 shows the whole object (which also catches a
    /// `CompleteMultipartUpload` that answered 200 with an error in its body).
    async fn check_size(&self, key: &ObjectKey, size: u64) -> Result<(), StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.write_error(key, sdk(e)))?;
        let held = head.content_length().and_then(|l| u64::try_from(l).ok());
        if held == Some(size) {
            Ok(())
        } else {
            Err(self.write_error(
                key,
                io(format!(
                    "S3 holds {held:?} bytes after the upload, not {size}"
                )),
            ))
        }
    }
}

/// An error of a request on a multipart upload; `NotFound` when S3 no longer has it (completed,
/// or aborted by a sweeper), which tells the forwarder to start it again.
fn parts_error<E: ProvideErrorMetadata + std::error::Error + 'static>(e: E) -> std::io::Error {
    if e.code() == Some("NoSuchUpload") {
        std::io::Error::new(std::io::ErrorKind::NotFound, sdk(e))
    } else {
        sdk(e)
    }
}

/// A CRC32C as S3's checksum headers carry it: base64 of the big-endian bytes.
pub fn crc32c_header(crc: u32) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

#[async_trait]
impl PartStore for S3Store {
    fn rules(&self) -> PartRules {
        self.rules
    }

    fn parts_in_flight(&self) -> usize {
        self.location.parts_in_flight
    }

    async fn begin_parts(&self, key: &ObjectKey) -> Result<String, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .map_err(|e| self.write_error(key, sdk(e)))?;
        created
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| self.write_error(key, io("CreateMultipartUpload returned no upload id")))
    }

    async fn put_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part: Part,
        body: PartBody,
    ) -> Result<SentPart, StoreError> {
        let number = i32::try_from(part.number.0).map_err(|e| self.write_error(key, io(e)))?;
        let (crc, body) = match body {
            PartBody::Bytes(bytes) => (crc32c(&bytes), ByteStream::from(bytes)),
            PartBody::File {
                path,
                offset,
                crc32c,
            } => {
                // Read as it is sent (and again on a retry), a buffer at a time.
                // (Not `NotFound`: to the forwarder that means the store lost the upload.)
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| {
                        self.write_error(key, io(format!("open {}: {e}", path.display())))
                    })?
                    .into_std()
                    .await;
                let (file, len) = (std::sync::Arc::new(file), part.len);
                let body = SdkBody::retryable(move || {
                    SdkBody::from_body_1_x(FileRange::new(file.clone(), offset, len, STREAM_BUFFER))
                });
                (crc32c, ByteStream::new(body))
            }
        };
        let out = self
            .client
            .upload_part()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(crc32c_header(crc))
            .body(body)
            .send()
            .await
            .map_err(|e| self.write_error(key, parts_error(e)))?;
        Ok(SentPart {
            number: part.number.0,
            start: part.start,
            len: part.len,
            etag: out.e_tag().unwrap_or_default().to_owned(),
            crc32c: crc,
        })
    }

    async fn complete_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[SentPart],
        size: u64,
    ) -> Result<(), StoreError> {
        let parts = parts
            .iter()
            .map(|p| {
                Ok(CompletedPart::builder()
                    .part_number(i32::try_from(p.number).map_err(io)?)
                    .e_tag(&p.etag)
                    .checksum_crc32_c(crc32c_header(p.crc32c))
                    .build())
            })
            .collect::<Result<Vec<_>, std::io::Error>>()
            .map_err(|e| self.write_error(key, e))?;
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        let Err(e) = completed else {
            return self.check_size(key, size).await;
        };
        // Completed before, and the caller forgot it (a power cut, an answer lost): S3 no longer
        // has the multipart upload (`NoSuchUpload`; some servers answer otherwise), and the
        // object is there.
        if matches!(self.size(key).await, Ok(Some(held)) if held == size) {
            return Ok(());
        }
        Err(self.write_error(key, parts_error(e)))
    }

    async fn abort_parts(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| StoreError::Delete {
                key: self.key(key),
                source: sdk(e),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_across_pieces() {
        let mut pieces: VecDeque<Bytes> = [&b"abc"[..], b"defg", b"hi"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        let first = take_front(&mut pieces, 5);
        assert_eq!(first, &b"abcde"[..]);
        assert_eq!(pieces, [&b"fg"[..], b"hi"]);
        let rest = take_front(&mut pieces, 10);
        assert_eq!(rest, &b"fghi"[..]);
        assert!(pieces.is_empty());
    }
}
