//! Per-byte work moved off the async task without copying: pieces (as they come off the
//! socket) are gathered into batches of [`BATCH`] bytes and handed to a blocking thread, one
//! batch in flight while the next is gathered, so the work overlaps reading the next bytes.
//! Memory is at most two batches. [`Appender`] writes a file this way (with `writev`), and
//! starts the kernel writing it to disk every [`WRITEBACK`] bytes, so the sync that makes it
//! durable at the end waits for the last few MiB instead of the whole file; it can record the
//! CRC32C of what it writes in a [`CrcLedger`] (a forwarder's parts), while the bytes are at hand.
//! The ingest core hashes the same way.
//!
//! Must not depend on HTTP, the database, any protocol or store.

use super::crc_ledger::CrcLedger;
use bytes::Bytes;
use std::io::{IoSlice, Write};
use std::sync::Arc;

/// Bytes gathered before they are handed to the blocking thread.
pub const BATCH: usize = 512 * 1024;

type InFlight<T> = tokio::task::JoinHandle<(T, std::io::Result<()>)>;

/// Work on a stream of bytes done a batch at a time on a blocking thread.
#[derive(Debug)]
pub struct Pipelined<T: Send + 'static> {
    /// The worker's state, while no batch is in flight.
    state: Option<T>,
    in_flight: Option<InFlight<T>>,
    batch: Vec<Bytes>,
    batched: usize,
    /// Bytes of the batch in flight.
    in_flight_len: u64,
    /// Bytes worked on, every batch before the one in flight.
    worked: u64,
    work: fn(&mut T, &[Bytes]) -> std::io::Result<()>,
}

impl<T: Send + 'static> Pipelined<T> {
    /// Feeds batches to `work`, which keeps its state in `state`.
    #[must_use]
    pub fn new(state: T, work: fn(&mut T, &[Bytes]) -> std::io::Result<()>) -> Self {
        Self {
            state: Some(state),
            in_flight: None,
            batch: Vec::new(),
            batched: 0,
            in_flight_len: 0,
            worked: 0,
            work,
        }
    }

    /// Adds `data`; it may not be worked on yet when this returns.
    ///
    /// # Errors
    /// An earlier batch failed.
    pub async fn push(&mut self, data: Bytes) -> std::io::Result<()> {
        if data.is_empty() {
            // HTTP/2 and HTTP/3 end a body with an empty frame; an empty slice would also make a
            // `writev` of only empty slices look like a failed write.
            return Ok(());
        }
        self.batched += data.len();
        self.batch.push(data);
        if self.batched >= BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// Bytes worked on so far, without waiting: up to two batches behind what was pushed.
    #[must_use]
    pub fn worked(&self) -> u64 {
        self.worked
    }

    /// Waits until every byte so far is worked on.
    ///
    /// # Errors
    /// A batch failed.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.send().await?;
        let state = self.take_state().await?;
        self.state = Some(state);
        Ok(())
    }

    /// Works on everything and returns the state.
    ///
    /// # Errors
    /// A batch failed.
    pub async fn finish(mut self) -> std::io::Result<T> {
        self.send().await?;
        self.take_state().await
    }

    /// Hands the gathered batch to the blocking thread, after the one in flight.
    async fn send(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut state = self.take_state().await?;
        let batch = std::mem::take(&mut self.batch);
        self.in_flight_len = std::mem::take(&mut self.batched) as u64;
        let work = self.work;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let done = work(&mut state, &batch);
            (state, done)
        }));
        Ok(())
    }

    /// Waits for the batch in flight and takes the state. After a failed batch the state is
    /// dropped: nothing more is done with it.
    async fn take_state(&mut self) -> std::io::Result<T> {
        if let Some(in_flight) = self.in_flight.take() {
            let (state, done) = in_flight.await.map_err(std::io::Error::other)?;
            done?;
            self.worked += std::mem::take(&mut self.in_flight_len);
            return Ok(state);
        }
        self.state
            .take()
            .ok_or_else(|| std::io::Error::other("an earlier batch failed"))
    }
}

/// Bytes written before the kernel is asked to start writing them to disk.
pub const WRITEBACK: u64 = 2 * 1024 * 1024;

/// A file being appended to, and how much of it was written since its last write-back began.
#[derive(Debug)]
pub struct Appending {
    file: std::fs::File,
    unstarted: u64,
    /// Whether write-back is started as it goes (a file to be synced).
    writeback: bool,
    /// Where the CRC32C of the bytes is recorded, and the file's length.
    ledger: Option<(Arc<CrcLedger>, u64)>,
}

impl Appending {
    /// Appends to `file` (opened for writing at its end), starting its write-back as it goes.
    #[must_use]
    pub fn new(file: std::fs::File) -> Self {
        Self {
            file,
            unstarted: 0,
            writeback: true,
            ledger: None,
        }
    }

    /// Records the CRC32C of what is written in `ledger`; the file is `len` bytes long.
    #[must_use]
    pub fn recording(self, len: u64, ledger: Arc<CrcLedger>) -> Self {
        Self {
            ledger: Some((ledger, len)),
            ..self
        }
    }

    /// Leaves write-back to the kernel: a file never synced, removed once read (a direct
    /// upload's spool, which its client is not answered for until the store has it).
    #[must_use]
    pub fn transient(self) -> Self {
        Self {
            writeback: false,
            ..self
        }
    }
}

/// A file appended to a batch at a time.
pub type Appender = Pipelined<Appending>;

impl Appender {
    /// Appends to `file` (opened for writing at its end).
    #[must_use]
    pub fn appending(file: std::fs::File) -> Self {
        Self::to(Appending::new(file))
    }

    /// Appends as `appending` says.
    #[must_use]
    pub fn to(appending: Appending) -> Self {
        Self::new(appending, append)
    }

    /// Writes everything; returns the file (not synced).
    ///
    /// # Errors
    /// A write failed.
    pub async fn into_file(self) -> std::io::Result<std::fs::File> {
        Ok(self.finish().await?.file)
    }

    /// Writes everything and syncs the file to disk; returns it.
    ///
    /// # Errors
    /// A write or the sync failed.
    pub async fn sync(self) -> std::io::Result<std::fs::File> {
        let file = self.into_file().await?;
        tokio::task::spawn_blocking(move || file.sync_all().map(|()| file))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Writes a batch (recording its CRC32C); starts the write-back of the file every
/// [`WRITEBACK`] bytes.
fn append(to: &mut Appending, pieces: &[Bytes]) -> std::io::Result<()> {
    write_all(&mut to.file, pieces)?;
    let written = pieces.iter().map(|p| p.len() as u64).sum::<u64>();
    if let Some((ledger, len)) = &mut to.ledger {
        ledger.record(*len, pieces);
        *len += written;
    }
    to.unstarted += written;
    if to.writeback && to.unstarted >= WRITEBACK {
        start_writeback(&to.file);
        to.unstarted = 0;
    }
    Ok(())
}

/// Asks the kernel to start writing the file's dirty pages to disk, without waiting for them
/// (`sync_file_range`, as databases do between checkpoints). Best effort: a failure only leaves
/// more for the final sync, which is what makes the file durable.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call takes no
    // pointers. Offset 0 and length 0 mean the whole file.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File) {}

/// Writes every piece with as few `writev` calls as the kernel allows.
fn write_all(file: &mut std::fs::File, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = file.write_vectored(slices)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_land_in_order_across_batches_and_write_backs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = Appender::appending(std::fs::File::create(&path).unwrap());
        let mut expected = Vec::new();
        // 40 pieces of over 320 KiB: 12.5 MiB, past one write-back.
        for i in 0..40u32 {
            let piece = vec![(i % 251) as u8; 320 * 1024 + i as usize];
            expected.extend_from_slice(&piece);
            file.push(Bytes::from(piece)).await.unwrap();
            if i == 20 {
                file.flush().await.unwrap();
                assert!(std::fs::metadata(&path).unwrap().len() >= 21 * 320 * 1024);
            }
        }
        file.sync().await.unwrap();
        assert!(std::fs::read(&path).unwrap() == expected);
    }

    #[tokio::test]
    async fn empty_pieces_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = Appender::appending(std::fs::File::create(&path).unwrap());
        file.push(Bytes::from(vec![1u8; BATCH - 1])).await.unwrap();
        file.push(Bytes::new()).await.unwrap();
        file.push(Bytes::from_static(b"x")).await.unwrap();
        file.push(Bytes::new()).await.unwrap();
        file.sync().await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BATCH as u64);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_later_call() {
        let dir = tempfile::tempdir().unwrap();
        // A file opened read-only: the first batch's write fails.
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let mut file = Appender::appending(std::fs::File::open(&path).unwrap());
        file.push(Bytes::from(vec![0u8; BATCH])).await.unwrap();
        assert!(file.flush().await.is_err());
        assert!(file.push(Bytes::from_static(b"x")).await.is_ok());
        assert!(file.sync().await.is_err());
    }
}
