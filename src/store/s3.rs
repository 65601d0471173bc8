//! The S3 store (`--storage s3://bucket/prefix`): aws-sdk-s3 with the standard `AWS_*`
//! configuration (`AWS_ENDPOINT_URL` for MinIO, moto, R2…). An upload is forwarded while it
//! arrives: the [`PartPlan`] cuts the stream into parts, each sent as soon as it is full with a
//! few in flight, so the time from the last byte to a stored object is one part, and memory per
//! upload is bounded by the part size times the parts in flight. An object smaller than one part
//! is one `PutObject`.
//!
//! Failures: the SDK retries 5xx, `SlowDown` and timeouts with capped exponential back-off and
//! jitter; a completed object's size is read back before it counts as stored (which also
//! catches a `CompleteMultipartUpload` that answered 200 with an error); an aborted writer
//! aborts its multipart upload.
//!
//! Must not depend on HTTP serving, the database or any protocol.

use super::{LocalObject, ObjectKey, ObjectWriter, Store, StoreError};
use crate::config::S3Location;
use crate::upload::part_plan::{Cursor, PartPlan, PartRules};
use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
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

fn sdk<E: std::error::Error + 'static>(e: E) -> std::io::Error {
    io(DisplayErrorContext(e))
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
            .build();
        let client = Client::from_conf(config);
        client
            .head_bucket()
            .bucket(&location.bucket)
            .send()
            .await
            .map_err(|e| StoreError::Open {
                location: format!("s3://{}/{}", location.bucket, location.prefix),
                source: sdk(e),
            })?;
        let rules = PartRules {
            part_size: location.part_size,
            equal_parts: location.equal_parts,
            ..PartRules::s3()
        };
        Ok(Self {
            client,
            location: location.clone(),
            rules,
        })
    }

    fn key(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.location.prefix, key.as_str())
    }
}

#[async_trait]
impl Store for S3Store {
    async fn writer(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let plan = PartPlan::new(&self.rules, None).map_err(|e| StoreError::Write {
            key: key.to_string(),
            source: io(e),
        })?;
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.location.bucket.clone(),
            key: self.key(key),
            in_flight: self.location.parts_in_flight,
            plan,
            cursor: Cursor::default(),
            buffer: BytesMut::new(),
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

    async fn discard_unfinished(&self, before: std::time::SystemTime) -> Result<usize, StoreError> {
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
                let stale = upload.initiated().is_some_and(|t| t.secs() < before.secs());
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
    client: Client,
    bucket: String,
    key: String,
    in_flight: usize,
    plan: PartPlan,
    cursor: Cursor,
    /// Bytes received and not yet cut into a part.
    buffer: BytesMut,
    received: u64,
    /// The multipart upload, opened with the first full part.
    upload_id: Option<String>,
    sending: JoinSet<Result<CompletedPart, StoreError>>,
    sent: Vec<CompletedPart>,
}

impl S3Writer {
    fn failed(&self, source: std::io::Error) -> StoreError {
        StoreError::Write {
            key: self.key.clone(),
            source,
        }
    }

    async fn upload_id(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| self.failed(sdk(e)))?;
        let id = created
            .upload_id()
            .ok_or_else(|| self.failed(io("CreateMultipartUpload returned no upload id")))?
            .to_owned();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for one part in flight.
    async fn collect_one(&mut self) -> Result<(), StoreError> {
        if let Some(done) = self.sending.join_next().await {
            let part = done.map_err(|e| self.failed(io(e)))??;
            self.sent.push(part);
        }
        Ok(())
    }

    /// Sends every full part the buffer holds (the last part too when `complete`).
    async fn send_parts(&mut self, complete: bool) -> Result<(), StoreError> {
        while let Some(part) = self
            .plan
            .next(self.cursor, self.received, complete)
            .map_err(|e| self.failed(io(e)))?
        {
            let len = usize::try_from(part.len).map_err(|e| self.failed(io(e)))?;
            let body = self.buffer.split_to(len).freeze();
            self.cursor = PartPlan::advance(&part);
            let upload_id = self.upload_id().await?;
            while self.sending.len() >= self.in_flight {
                self.collect_one().await?;
            }
            let number = i32::try_from(part.number.0).map_err(|e| self.failed(io(e)))?;
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body));
            let key = self.key.clone();
            self.sending.spawn(async move {
                let out = request.send().await.map_err(|e| StoreError::Write {
                    key,
                    source: sdk(e),
                })?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build())
            });
            if complete && self.cursor.start == self.received {
                break;
            }
        }
        Ok(())
    }

    async fn put_whole(&mut self) -> Result<(), StoreError> {
        let body = std::mem::take(&mut self.buffer).freeze();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.failed(sdk(e)))?;
        Ok(())
    }

    async fn complete_multipart(&mut self, upload_id: String) -> Result<(), StoreError> {
        self.send_parts(true).await?;
        while !self.sending.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.sent);
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed(sdk(e)))?;
        Ok(())
    }

    async fn abort_multipart(&mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        if let Some(upload_id) = self.upload_id.take() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(key = %self.key, error = %DisplayErrorContext(e), "Could not abort a multipart upload; the sweeper will.");
            }
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.received += data.len() as u64;
        self.buffer.extend_from_slice(&data);
        self.send_parts(false).await
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let stored = match self.upload_id.clone() {
            None => self.put_whole().await,
            Some(upload_id) => self.complete_multipart(upload_id).await,
        };
        if let Err(e) = stored {
            self.abort_multipart().await;
            return Err(e);
        }
        // Counted as stored only once S3 shows the whole object.
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| self.failed(sdk(e)))?;
        let size = head.content_length().and_then(|l| u64::try_from(l).ok());
        if size != Some(self.received) {
            return Err(self.failed(io(format!(
                "S3 holds {size:?} bytes after the upload, not {}",
                self.received
            ))));
        }
        Ok(self.received)
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_multipart().await;
    }
}
