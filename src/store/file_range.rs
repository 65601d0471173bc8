//! A range of a file as a request body (a part of a spooled upload sent to S3): read a buffer
//! at a time on a blocking thread straight into the buffer that is sent, the next read started
//! as soon as one is handed over, so reading overlaps sending. (The SDK's own file body reads
//! into tokio's file buffer first and copies from it: one more copy of every byte.) Positional
//! reads on one shared handle, so a retry rebuilds the body from the start without reopening.
//!
//! Must not depend on the ingest core, HTTP serving or any protocol.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::task::JoinHandle;

/// `len` bytes of a file from `offset`, `buffer` bytes per read.
pub struct FileRange {
    file: Arc<File>,
    /// Where the next read starts, and where the range ends.
    next: u64,
    end: u64,
    /// Bytes not yet handed over (read or not).
    left: u64,
    buffer: usize,
    reading: Option<JoinHandle<std::io::Result<Bytes>>>,
}

impl FileRange {
    /// The range `offset..offset + len` of `file`.
    #[must_use]
    pub fn new(file: Arc<File>, offset: u64, len: u64, buffer: usize) -> Self {
        Self {
            file,
            next: offset,
            end: offset + len,
            left: len,
            buffer: buffer.max(1),
            reading: None,
        }
    }

    /// Starts reading the next buffer, if any of the range is left to read.
    fn read_ahead(&mut self) {
        let len = (self.end - self.next).min(self.buffer as u64);
        if len == 0 {
            return;
        }
        let (file, at) = (self.file.clone(), self.next);
        self.next += len;
        self.reading = Some(tokio::task::spawn_blocking(move || {
            // `len` is at most `buffer`, a usize.
            read_at(&file, at, usize::try_from(len).unwrap_or(usize::MAX))
        }));
    }
}

/// `len` bytes of `file` from `at`, read into a buffer that is not first zeroed.
fn read_at(file: &File, at: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let from = at + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), from) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than the part",
                ))
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The capacity may exceed `len`, and the last read may have filled it past `len`.
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

impl Body for FileRange {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.reading.is_none() {
            this.read_ahead();
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
        };
        this.left -= bytes.len() as u64;
        this.read_ahead();
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(body: FileRange) -> std::io::Result<Vec<u8>> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_range_reads_as_its_bytes_whatever_the_buffer() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let file = Arc::new(f);
        for (offset, len, buffer) in [
            (0, 10_000, 4096),
            (17, 5000, 1000),
            (9_999, 1, 7),
            (5, 0, 64),
        ] {
            let body = FileRange::new(file.clone(), offset, len, buffer);
            assert_eq!(body.size_hint().exact(), Some(len));
            let (a, b) = (offset as usize, (offset + len) as usize);
            assert_eq!(
                collect(body).await.unwrap(),
                &data[a..b],
                "{offset} {len} {buffer}"
            );
        }
    }

    #[tokio::test]
    async fn a_range_past_the_end_of_the_file_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &[1; 100]).unwrap();
        let body = FileRange::new(Arc::new(f), 50, 100, 30);
        let e = collect(body).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("shorter than the part"), "{e}");
    }
}
