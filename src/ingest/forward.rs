//! Forwarding spooled uploads (tus, the IETF draft, numbered chunks, and direct uploads written
//! through [`Forwarder::writer`]) to a store that takes parts (S3) while they arrive: a task per
//! upload cuts the spooled bytes into parts with the [`PartPlan`] as they become available and
//! sends each as soon as it is full, several at once. When the last byte is in, only the last
//! part and the completion remain. A part that lies in one spool file is streamed from it, its
//! CRC32C put together from what the spool recorded as it wrote the bytes ([`CrcLedger`]) or,
//! after a restart, read first; one that spans chunk files is read into memory. The edge sends a fixed
//! number of parts at once across all uploads and holds fewer still in memory, so memory stays
//! bounded however many uploads arrive at once (their bytes wait on disk). A forwarding that
//! fails while its upload is still arriving tries again by itself, a while later or as soon as
//! more arrives; once every byte is in, a failure goes back to the request that completed it.
//!
//! The multipart upload id and the plan's declared size are kept in a small state file beside
//! the spool, written and synced before the first part is sent; every part the store
//! acknowledged, then the completion, is appended to it (not synced: a part forgotten is sent
//! again, a completion forgotten is found in the store). So a restarted edge continues where it
//! stopped: a part already in the store is not sent again if its bytes in the spool (read again
//! to check) still have its CRC32C; a multipart upload the store no longer has (a sweeper
//! aborted it) is started again from the spool.
//!
//! Each part the store acknowledges is also reported to a [`PartLog`] (the origin), so that
//! another edge can [`adopt`](Forwarder::adopt) the upload if this one is lost: it continues the
//! same multipart upload after the parts already stored, whose bytes it never had. (Not the part
//! that ends the upload: an edge adopting it would have the client send that part again, whose
//! arrival completes the upload there.)
//!
//! Must not depend on HTTP, the database or any protocol.

use super::chunk_spool::write_atomically;
use crate::store::appender::{Appender, Appending};
use crate::store::crc_ledger::CrcLedger;
use crate::store::{ObjectKey, ObjectWriter, PartBody, PartStore, SentPart, Store, StoreError};
use crate::upload::part_plan::{Cursor, Part, PartPlan};
use crate::upload::UploadId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// An upload's spooled bytes as they stand: files in order, each with how much of it is
/// written (a file may still grow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spooled {
    /// The files and their lengths.
    pub files: Vec<(PathBuf, u64)>,
    /// Every byte is in: the remainder is the last part and the object is completed.
    pub complete: bool,
}

impl Spooled {
    /// One growing file.
    #[must_use]
    pub fn file(path: PathBuf, len: u64) -> Self {
        Self {
            files: vec![(path, len)],
            complete: false,
        }
    }

    /// Bytes available.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.files.iter().map(|(_, len)| len).sum()
    }

    /// Whether nothing is spooled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    key: String,
    declared: Option<u64>,
    upload_id: String,
    parts: Vec<SentPart>,
    /// The object's size once the multipart upload is complete: kept until the caller has
    /// recorded it ([`Forwarder::forget`]), so a retry does not send the object again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed: Option<u64>,
    /// Adopted from another edge: the bytes before this offset are in the store (the first
    /// `parts`) and not in this edge's spool.
    #[serde(default, skip_serializing_if = "is_zero")]
    adopted: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a forwarder reports each part the store acknowledged: the origin, so that another
/// edge can adopt the upload if this one is lost. A report that fails costs only bytes resent
/// after such a loss.
#[async_trait::async_trait]
pub trait PartLog: Send + Sync {
    /// `part` of `upload` is in the store's multipart upload `multipart_id`, planned for
    /// `declared` bytes.
    async fn stored(
        &self,
        upload: UploadId,
        multipart_id: &str,
        declared: Option<u64>,
        part: SentPart,
    );
}

struct Running {
    spooled: watch::Sender<Spooled>,
    task: JoinHandle<Result<u64, StoreError>>,
    /// Held while the task opens its multipart upload and records it.
    opening: Opening,
}

/// Held while a forwarding opens its multipart upload and records its id: ending the forwarding
/// waits for it, so every multipart upload opened is known and can be aborted.
type Opening = Arc<tokio::sync::Mutex<()>>;

/// Parts being sent at once across all of an edge's forwarded uploads, per part the store sends
/// at once for one upload: with S3's defaults (4 at once) 16 parts. A part that lies in one
/// spool file is streamed from it, holding a read buffer, not the part.
const EDGE_PARTS_PER_IN_FLIGHT: usize = 4;
/// Parts read into memory at once across the edge (those that span spool files: numbered
/// chunks): with 8 MiB parts, 32 MiB.
const EDGE_PARTS_IN_MEMORY: usize = 4;

/// How long a forwarding that failed while its upload is still arriving waits before it tries
/// again of its own accord (or until more bytes arrive): without it, a failure after a
/// client's last request of the moment would leave the parts unsent until its next one, and an
/// edge lost meanwhile would take them with it. After the last, the next request retries.
const RETRY_PAUSES: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
];

/// The edge's forwarder: one task per upload that is receiving.
pub struct Forwarder {
    store: Arc<dyn Store>,
    dir: PathBuf,
    running: Mutex<HashMap<Name, Running>>,
    /// Parts being sent, across all uploads.
    parts_held: Arc<tokio::sync::Semaphore>,
    /// Parts read into memory and not yet stored, across all uploads.
    parts_in_memory: Arc<tokio::sync::Semaphore>,
    /// Direct uploads being written ([`Forwarder::writer`]).
    writing: Mutex<HashSet<UploadId>>,
    /// The CRC32C of each forwarding's spooled bytes, recorded as they are written.
    ledgers: Mutex<HashMap<Name, Arc<CrcLedger>>>,
    /// Where stored parts are reported.
    log: Option<Arc<dyn PartLog>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("dir", &self.dir).finish()
    }
}

fn state_error(op: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Write {
        key: format!("forwarding state ({op})"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Forwarder {
    /// A forwarder to `store` keeping its state under `dir`, or `None` when the store does not
    /// take parts (spooled files are then stored whole when they are complete).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(store: Arc<dyn Store>, dir: &Path) -> Result<Option<Self>, StoreError> {
        let Some(parts) = store.parts() else {
            return Ok(None);
        };
        let parts_held = parts.parts_in_flight().max(1) * EDGE_PARTS_PER_IN_FLIGHT;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            location: dir.display().to_string(),
            source,
        })?;
        Ok(Some(Self {
            store,
            dir: dir.to_owned(),
            running: Mutex::new(HashMap::new()),
            parts_held: Arc::new(tokio::sync::Semaphore::new(parts_held)),
            parts_in_memory: Arc::new(tokio::sync::Semaphore::new(EDGE_PARTS_IN_MEMORY)),
            writing: Mutex::default(),
            ledgers: Mutex::default(),
            log: None,
        }))
    }

    /// Reports every part the store acknowledges to `log`.
    #[must_use]
    pub fn with_log(mut self, log: Arc<dyn PartLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Takes over `upload`, lost by another edge, whose `stored` parts are in the store: its
    /// multipart upload continues here after the longest run of parts from the first that this
    /// edge's part plan would have cut the same way, short of the last byte. Returns the offset
    /// after them (the bytes the spool must start from), or `None` when nothing can be taken
    /// over.
    ///
    /// # Errors
    /// The state cannot be written.
    pub async fn adopt(
        &self,
        upload: UploadId,
        key: &ObjectKey,
        stored: &crate::control::StoredParts,
    ) -> Result<Option<u64>, StoreError> {
        let taken = adoptable(&parts_of(self.store.as_ref()).rules(), stored);
        let Some(last) = taken.last() else {
            return Ok(None);
        };
        let adopted = last.start + last.len;
        let state = State {
            key: key.to_string(),
            declared: stored.declared,
            upload_id: stored.multipart_id.clone(),
            parts: taken,
            completed: None,
            adopted,
        };
        save(&self.state_path(upload.into()), &state).await?;
        Ok(Some(adopted))
    }

    fn state_path(&self, name: Name) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Where the CRC32C of `upload`'s spooled bytes is recorded as they are written, so its
    /// parts are not read back for it (kept until its forwarding ends).
    pub fn crc_ledger(&self, upload: impl Into<Name>) -> Arc<CrcLedger> {
        lock(&self.ledgers)
            .entry(upload.into())
            .or_default()
            .clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Running>> {
        lock(&self.running)
    }

    /// More of `upload` is spooled: parts that are now full go to the store. `declared` is the
    /// upload's size if known (it sets the part size, once).
    pub fn grown(
        &self,
        upload: impl Into<Name>,
        key: &ObjectKey,
        declared: Option<u64>,
        spooled: Spooled,
    ) {
        let upload = upload.into();
        let mut running = self.running();
        if let Some(r) = running.get(&upload).filter(|r| !r.task.is_finished()) {
            r.spooled.send_replace(spooled);
            return;
        }
        running.insert(upload, self.spawn(upload, key, declared, spooled));
    }

    /// Every byte of `upload` is spooled: sends what is left, completes the object and returns
    /// its size. The state stays, marked complete, until [`Forwarder::forget`], so a retry after
    /// a failure to record the upload finds the object instead of sending it again.
    ///
    /// # Errors
    /// The store or the spool fails; the state stays, so a retry continues.
    pub async fn finish(
        &self,
        upload: impl Into<Name>,
        key: &ObjectKey,
        mut spooled: Spooled,
    ) -> Result<u64, StoreError> {
        let upload = upload.into();
        spooled.complete = true;
        let task = {
            let mut running = self.running();
            let current = running
                .remove(&upload)
                .filter(|r| !r.task.is_finished() && r.spooled.send(spooled.clone()).is_ok());
            match current {
                Some(r) => r.task,
                None => {
                    let declared = Some(spooled.len());
                    self.spawn(upload, key, declared, spooled).task
                }
            }
        };
        let stored = task
            .await
            .map_err(|e| state_error("task", e))
            .and_then(|r| r);
        if stored.is_ok() {
            lock(&self.ledgers).remove(&upload);
        }
        stored
    }

    /// Forgets a completed upload's state, once it is recorded.
    pub async fn forget(&self, upload: impl Into<Name>) {
        let upload = upload.into();
        match tokio::fs::remove_file(self.state_path(upload)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(upload_id = %upload, error = %e, "Could not remove a forwarding state file.");
            }
            _ => {}
        }
    }

    /// Stops forwarding `upload` and drops its state, leaving its multipart upload in the store
    /// (another edge continues it).
    pub async fn release(&self, upload: UploadId) {
        self.stop(upload.into()).await;
        self.forget(upload).await;
    }

    /// Ends `upload`'s forwarding task, once a multipart upload it is opening is recorded.
    async fn stop(&self, upload: Name) {
        lock(&self.ledgers).remove(&upload);
        let running = self.running().remove(&upload);
        if let Some(r) = running {
            r.task.abort();
            let _opened = r.opening.lock().await;
        }
    }

    /// Drops `upload`'s forwarding: its task, its multipart upload in the store and its state.
    pub async fn discard(&self, upload: impl Into<Name>) {
        let upload = upload.into();
        self.stop(upload).await;
        let path = self.state_path(upload);
        let Some(state) = load(&path).await else {
            return;
        };
        let parts = parts_of(self.store.as_ref());
        let open = state.completed.is_none();
        if let (Ok(key), true) = (ObjectKey::new(state.key), open) {
            if let Err(e) = parts.abort_parts(&key, &state.upload_id).await {
                tracing::warn!(upload_id = %upload, error = %e, "Could not abort a forwarded upload's parts; the origin's sweeper will.");
                return;
            }
        }
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(upload_id = %upload, error = %e, "Could not remove a forwarding state file.");
        }
    }

    fn spawn(
        &self,
        upload: Name,
        key: &ObjectKey,
        declared: Option<u64>,
        spooled: Spooled,
    ) -> Running {
        let (tx, rx) = watch::channel(spooled);
        let opening = Opening::default();
        let job = Job {
            opening: opening.clone(),
            store: self.store.clone(),
            key: key.clone(),
            path: self.state_path(upload),
            declared,
            parts_held: self.parts_held.clone(),
            parts_in_memory: self.parts_in_memory.clone(),
            ledger: self.crc_ledger(upload),
            upload: upload.upload,
            // A direct upload is one request: no other edge can continue it.
            log: self.log.clone().filter(|_| !upload.direct),
        };
        let task = tokio::spawn(async move {
            let mut rx = rx;
            let mut pauses = RETRY_PAUSES.iter();
            loop {
                let result = job.run(&mut rx).await;
                let Err(e) = &result else {
                    return result;
                };
                let error = crate::error::chain(e);
                // Once every byte is in, the request that said so waits for the answer; an
                // upload let go of has no more to send.
                let arriving = !rx.borrow().complete && rx.has_changed().is_ok();
                let Some(pause) = pauses.next().filter(|_| arriving) else {
                    tracing::warn!(upload_id = %upload, %error, "Forwarding a spooled upload failed; its next request retries.");
                    return result;
                };
                tracing::warn!(upload_id = %upload, %error, "Forwarding a spooled upload failed; trying again in {pause:?}, or sooner if more of it arrives.");
                tokio::select! {
                    () = tokio::time::sleep(*pause) => {}
                    changed = rx.changed() => if changed.is_err() {
                        return result;
                    },
                }
            }
        });
        Running {
            spooled: tx,
            task,
            opening,
        }
    }
}

/// Locks `m`; a panic while it was held leaves nothing half done in the forwarder's maps.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A forwarding's state: its first line as last [`save`]d, then each [`Record`] [`append`]ed
/// since (a line cut short by a crash ends what is read: that part is sent again, that
/// completion found again).
async fn load(path: &Path) -> Option<State> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let mut lines = bytes.split(|&b| b == b'\n');
    let mut state: State = serde_json::from_slice(lines.next()?).ok()?;
    for line in lines {
        match serde_json::from_slice(line) {
            Ok(Record::Part(part)) => {
                state.parts.retain(|p| p.number != part.number);
                state.parts.push(part);
            }
            Ok(Record::Completed(size)) => state.completed = Some(size),
            Err(_) => break,
        }
    }
    Some(state)
}

/// A line [`append`]ed to a state file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// A part the store acknowledged.
    Part(SentPart),
    /// The multipart upload is complete: the object's size.
    Completed(u64),
}

/// Appends `record` to the state file: one write, not synced, and no file created, so a part
/// costs no more as the upload grows. A part a power cut makes the edge forget is sent again;
/// a completion forgotten is found again (completing a completed multipart upload finds the
/// object, [`PartStore::complete_parts`]).
async fn append(path: &Path, record: Record) -> Result<(), StoreError> {
    let mut line = serde_json::to_vec(&record).map_err(|e| state_error("encode", e))?;
    line.push(b'\n');
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(&line)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| state_error("record", e))
}

/// Writes `state` as the state file's first line (parts are appended after it), durably.
async fn save(path: &Path, state: &State) -> Result<(), StoreError> {
    let mut json = serde_json::to_vec(state).map_err(|e| state_error("encode", e))?;
    json.push(b'\n');
    let (dir, name) = (path.parent().unwrap_or(Path::new(".")), path.file_name());
    let name = name.and_then(|n| n.to_str()).unwrap_or("state.json");
    write_atomically(dir, name, &json)
        .await
        .map_err(|e| state_error("write", e))
}

/// One upload's forwarding task.
struct Job {
    store: Arc<dyn Store>,
    key: ObjectKey,
    path: PathBuf,
    declared: Option<u64>,
    parts_held: Arc<tokio::sync::Semaphore>,
    parts_in_memory: Arc<tokio::sync::Semaphore>,
    /// The CRC32C of the spooled bytes as they were written.
    ledger: Arc<CrcLedger>,
    upload: UploadId,
    log: Option<Arc<dyn PartLog>>,
    opening: Opening,
}

/// The multipart side of a forwarder's store ([`Forwarder::new`] made sure it has one).
fn parts_of(store: &dyn Store) -> &dyn PartStore {
    store.parts().expect("a forwarder's store takes parts")
}

impl Job {
    fn parts(&self) -> &dyn PartStore {
        parts_of(self.store.as_ref())
    }

    async fn run(&self, rx: &mut watch::Receiver<Spooled>) -> Result<u64, StoreError> {
        let state = load(&self.path)
            .await
            .filter(|s| s.key == self.key.as_str());
        if let Some(size) = state.as_ref().and_then(|s| s.completed) {
            // Completed before; the caller could not record it. The object must still be there.
            if self.store.size(&self.key).await? == Some(size) {
                return Ok(size);
            }
        }
        let state = state.filter(|s| s.completed.is_none());
        let adopted = state.as_ref().is_some_and(|s| s.adopted > 0);
        match self.attempt(state, rx).await {
            // The store lost the multipart upload (a sweeper aborted it): start again, unless
            // its first parts came from another edge (their bytes are not in this spool).
            Err(StoreError::Write { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && !adopted =>
            {
                tracing::info!(key = %self.key, "The store no longer has this multipart upload; sending it again.");
                self.attempt(None, rx).await
            }
            other => other,
        }
    }

    async fn attempt(
        &self,
        state: Option<State>,
        rx: &mut watch::Receiver<Spooled>,
    ) -> Result<u64, StoreError> {
        let parts = self.parts();
        let declared = state.as_ref().map_or(self.declared, |s| s.declared);
        let plan = PartPlan::new(&parts.rules(), declared).map_err(|e| state_error("plan", e))?;
        let mut state = state;
        // Parts the store holds, by number (from an earlier run).
        let mut held: BTreeMap<u32, SentPart> = state
            .as_ref()
            .map(|s| s.parts.iter().map(|p| (p.number, p.clone())).collect())
            .unwrap_or_default();
        let mut sent: BTreeMap<u32, SentPart> = BTreeMap::new();
        let mut sending: JoinSet<Result<SentPart, StoreError>> = JoinSet::new();
        let mut cursor = Cursor::default();
        let adopted = state.as_ref().map_or(0, |s| s.adopted);
        loop {
            let spooled = rx.borrow_and_update().clone();
            let available = spooled.len();
            while let Some(part) = plan
                .next(cursor, available, spooled.complete)
                .map_err(|e| state_error("plan", e))?
            {
                if part.start + part.len <= adopted {
                    // Sent by the edge this upload was adopted from: in the store, not here.
                    let Some(p) = held
                        .remove(&part.number.0)
                        .filter(|p| p.start == part.start && p.len == part.len)
                    else {
                        return Err(state_error("adopt", "an adopted part is missing"));
                    };
                    cursor = PartPlan::advance(&part);
                    sent.insert(p.number, p);
                    continue;
                }
                let permit = self.part_turn().await?;
                let (body, in_memory) = self.part_body(&spooled.files, part).await?;
                let held_part = (permit, in_memory);
                let crc = body.crc32c();
                cursor = PartPlan::advance(&part);
                let kept = held
                    .remove(&part.number.0)
                    .filter(|p| p.start == part.start && p.len == part.len && p.crc32c == crc);
                if let Some(p) = kept {
                    sent.insert(p.number, p);
                } else {
                    while sending.len() >= parts.parts_in_flight().max(1) {
                        self.collect(&mut sending, &mut sent, &state).await?;
                    }
                    let upload_id = self.upload_id(&mut state, declared).await?;
                    let (store, key) = (self.store.clone(), self.key.clone());
                    sending.spawn(async move {
                        let _in_flight = crate::metrics::part_in_flight();
                        let sent = parts_of(store.as_ref())
                            .put_part(&key, &upload_id, part, body)
                            .await;
                        drop(held_part);
                        sent
                    });
                }
                if spooled.complete && cursor.start == available {
                    break;
                }
            }
            if spooled.complete && cursor.start == available {
                while !sending.is_empty() {
                    self.collect(&mut sending, &mut sent, &state).await?;
                }
                return self.complete(state, sent, available).await;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Err(state_error("wait", "the upload was dropped"));
                },
                collected = self.collect(&mut sending, &mut sent, &state), if !sending.is_empty() => collected?,
            }
        }
    }

    /// Waits for one of the edge's places for parts being sent (counted as waiting meanwhile).
    async fn part_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        let _waiting = crate::metrics::part_waiting();
        self.parts_held
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| state_error("wait for a part's turn", e))
    }

    /// A part's body: streamed from its file when it lies in one (a tus upload, a direct upload:
    /// nothing held; its CRC32C from the ledger, or read), else read into memory within the
    /// edge's budget of parts in memory.
    async fn part_body(
        &self,
        files: &[(PathBuf, u64)],
        part: Part,
    ) -> Result<(PartBody, Option<InMemory>), StoreError> {
        let mut file_start = 0;
        for (path, len) in files {
            let file_end = file_start + len;
            if part.start >= file_start && part.start + part.len <= file_end {
                let offset = part.start - file_start;
                let crc32c = match self.ledger.crc32c(offset, part.len) {
                    Some(crc) => crc,
                    None => crc_of_range(path, offset, part.len).await?,
                };
                // Later parts start after it (a part sent again is read).
                self.ledger.forget_before(offset + part.len);
                let body = PartBody::File {
                    path: path.clone(),
                    offset,
                    crc32c,
                };
                return Ok((body, None));
            }
            file_start = file_end;
        }
        let permit = self
            .parts_in_memory
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| state_error("wait for memory", e))?;
        let bytes = read_part(files, part).await?;
        Ok((
            PartBody::Bytes(bytes),
            Some((permit, crate::metrics::part_in_memory())),
        ))
    }

    /// The multipart upload's id, opened (and recorded in the state file) on first need.
    async fn upload_id(
        &self,
        state: &mut Option<State>,
        declared: Option<u64>,
    ) -> Result<String, StoreError> {
        if let Some(s) = state {
            return Ok(s.upload_id.clone());
        }
        // Opened and recorded in a task of its own, which ending this forwarding cannot cut
        // between the two (`discard` waits for it): an open multipart upload is always known.
        let opened = self.opening.clone().lock_owned().await;
        let (store, key, path) = (self.store.clone(), self.key.clone(), self.path.clone());
        let fresh = tokio::spawn(async move {
            let _opened = opened;
            let fresh = State {
                key: key.to_string(),
                declared,
                upload_id: parts_of(store.as_ref()).begin_parts(&key).await?,
                parts: Vec::new(),
                completed: None,
                adopted: 0,
            };
            save(&path, &fresh).await?;
            Ok::<_, StoreError>(fresh)
        })
        .await
        .map_err(|e| state_error("open", e))??;
        Ok(state.insert(fresh).upload_id.clone())
    }

    /// Joins the `sent` parts into the object of `size` bytes and records it complete.
    async fn complete(
        &self,
        state: Option<State>,
        sent: BTreeMap<u32, SentPart>,
        size: u64,
    ) -> Result<u64, StoreError> {
        let Some(state) = state else {
            return Err(state_error("complete", "no part was sent"));
        };
        let all: Vec<SentPart> = sent.into_values().collect();
        self.parts()
            .complete_parts(&self.key, &state.upload_id, &all, size)
            .await?;
        if let Err(e) = append(&self.path, Record::Completed(size)).await {
            tracing::warn!(key = %self.key, error = %e, "Could not record a completed forwarding.");
        }
        Ok(size)
    }

    /// Waits for one part in flight and records it in the state file.
    async fn collect(
        &self,
        sending: &mut JoinSet<Result<SentPart, StoreError>>,
        sent: &mut BTreeMap<u32, SentPart>,
        state: &Option<State>,
    ) -> Result<(), StoreError> {
        let Some(done) = sending.join_next().await else {
            return Ok(());
        };
        let part = done.map_err(|e| state_error("part task", e))??;
        sent.insert(part.number, part.clone());
        if let Some(s) = state {
            append(&self.path, Record::Part(part.clone())).await?;
            // The part that ends the upload is never adopted (`adoptable`): not reported.
            let last = s.declared == Some(part.start + part.len);
            if let Some(log) = self.log.as_ref().filter(|_| !last) {
                let (log, upload) = (log.clone(), self.upload);
                let (multipart_id, declared) = (s.upload_id.clone(), s.declared);
                tokio::spawn(async move {
                    log.stored(upload, &multipart_id, declared, part).await;
                });
            }
        }
        Ok(())
    }
}

/// The parts of `stored` an edge can continue a multipart upload after: the longest run from
/// the first that a part plan with `rules` cuts the same way, short of the last byte. (Every
/// part stored but the upload not completed: the client must send the last part again, or its
/// offset would say "done" for an object that does not exist yet; its arrival completes it.)
fn adoptable(
    rules: &crate::upload::part_plan::PartRules,
    stored: &crate::control::StoredParts,
) -> Vec<SentPart> {
    let Ok(plan) = PartPlan::new(rules, stored.declared) else {
        return Vec::new();
    };
    let mut cursor = Cursor::default();
    let mut taken = Vec::new();
    for recorded in &stored.parts {
        let end = recorded.start + recorded.len;
        match plan.next(cursor, end, false) {
            Ok(Some(part))
                if part.number.0 == recorded.number
                    && part.start == recorded.start
                    && part.len == recorded.len =>
            {
                cursor = PartPlan::advance(&part);
                taken.push(recorded.clone());
            }
            _ => break,
        }
    }
    if stored.declared == Some(cursor.start) {
        taken.pop();
    }
    taken
}

/// A part read into memory: its place in the edge's budget and in the metrics.
type InMemory = (tokio::sync::OwnedSemaphorePermit, crate::metrics::Raised);

/// The CRC32C of `len` bytes of `path` from `offset`, read a buffer at a time.
async fn crc_of_range(path: &Path, offset: u64, len: u64) -> Result<u32, StoreError> {
    let path = path.to_owned();
    read_spool(move || crate::store::crc32c_of_file(&path, offset, len)).await
}

/// Runs a read of the spool on a blocking thread.
async fn read_spool<T: Send + 'static>(
    read: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| StoreError::Read {
            key: "spooled upload".into(),
            source,
        })
}

/// What marks a direct upload's forwarding id and spool file.
const DIRECT: &str = ".direct";
/// What a forwarding is named by (its state and spool files): its upload, and whether it is a
/// direct upload's ([`Forwarder::writer`]), named apart with [`DIRECT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    upload: UploadId,
    direct: bool,
}

impl Name {
    /// A direct upload's forwarding.
    fn direct(upload: UploadId) -> Self {
        Self {
            upload,
            direct: true,
        }
    }
}

impl From<UploadId> for Name {
    fn from(upload: UploadId) -> Self {
        Self {
            upload,
            direct: false,
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let suffix = if self.direct { DIRECT } else { "" };
        write!(f, "{}{suffix}", self.upload)
    }
}

/// How often a direct upload's growth is passed to its forwarding task.
const DIRECT_REPORT_EVERY: u64 = 1 << 20;

impl Forwarder {
    /// A writer for a direct upload (the Uploads API, the forms, S3 POST): its bytes go to a
    /// spool file beside the forwarding state and on to the store by a forwarding task, so the
    /// edge holds a read buffer per part being sent, not parts, however many uploads arrive.
    ///
    /// # Errors
    /// The spool file cannot be created.
    pub async fn writer(
        self: &Arc<Self>,
        upload: UploadId,
        key: &ObjectKey,
    ) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let name = Name::direct(upload);
        let path = self.dir.join(format!("{name}.data"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|source| StoreError::Write {
                key: key.to_string(),
                source,
            })?;
        self.writing().insert(upload);
        Ok(Box::new(Spooling {
            forwarder: self.clone(),
            name,
            key: key.clone(),
            path,
            file: Appender::to(
                Appending::new(file.into_std().await)
                    .recording(0, self.crc_ledger(name))
                    .transient(),
            ),
            len: 0,
            reported: 0,
        }))
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, HashSet<UploadId>> {
        lock(&self.writing)
    }

    /// Drops the spool files and forwarding of direct uploads that no writer holds (a crash
    /// ended them; their clients were never told they succeeded). Returns how many.
    pub async fn sweep_direct(&self) -> usize {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return 0;
        };
        let mut swept = 0;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(upload) = name
                .strip_suffix(".data")
                .and_then(|n| n.strip_suffix(DIRECT))
                .and_then(|n| n.parse::<UploadId>().ok())
            else {
                continue;
            };
            if self.writing().contains(&upload) {
                continue;
            }
            self.discard(Name::direct(upload)).await;
            if tokio::fs::remove_file(entry.path()).await.is_ok() {
                swept += 1;
            }
        }
        swept
    }
}

/// A direct upload being written through the spool ([`Forwarder::writer`]).
struct Spooling {
    forwarder: Arc<Forwarder>,
    name: Name,
    key: ObjectKey,
    path: PathBuf,
    file: Appender,
    len: u64,
    /// The length last passed to the forwarding task.
    reported: u64,
}

impl Spooling {
    fn write_error(&self, source: std::io::Error) -> StoreError {
        StoreError::Write {
            key: self.key.to_string(),
            source,
        }
    }

    /// Waits for the writes under way, then drops the spool file and forgets the writer; what
    /// reached the store stays (`stored`) or is dropped.
    async fn end(self, stored: bool) {
        let _ = self.file.into_file().await;
        if stored {
            self.forwarder.forget(self.name).await;
        } else {
            self.forwarder.discard(self.name).await;
        }
        self.forwarder.writing().remove(&self.name.upload);
        if let Err(e) = tokio::fs::remove_file(&self.path).await {
            tracing::warn!(key = %self.key, error = %e, "Could not remove a direct upload's spool file.");
        }
    }
}

#[async_trait::async_trait]
impl ObjectWriter for Spooling {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.len += data.len() as u64;
        self.file
            .push(data)
            .await
            .map_err(|e| self.write_error(e))?;
        let worked = self.file.worked();
        if worked - self.reported >= DIRECT_REPORT_EVERY {
            let spooled = Spooled::file(self.path.clone(), worked);
            self.forwarder.grown(self.name, &self.key, None, spooled);
            self.reported = worked;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let stored = match self.file.flush().await {
            Err(e) => Err(self.write_error(e)),
            Ok(()) => {
                let spooled = Spooled::file(self.path.clone(), self.len);
                self.forwarder.finish(self.name, &self.key, spooled).await
            }
        };
        self.end(stored.is_ok()).await;
        stored
    }

    async fn abort(self: Box<Self>) {
        self.end(false).await;
    }
}

/// Reads `part` from the spooled files.
async fn read_part(files: &[(PathBuf, u64)], part: Part) -> Result<Bytes, StoreError> {
    let files = files.to_vec();
    read_spool(move || {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(part.len).map_err(std::io::Error::other)?;
        let mut buf = vec![0u8; len];
        let (mut filled, mut file_start) = (0usize, 0u64);
        for (path, file_len) in &files {
            let file_end = file_start + file_len;
            let want_start = part.start + filled as u64;
            if filled < len && want_start < file_end {
                let n = usize::try_from((file_end - want_start).min((len - filled) as u64))
                    .map_err(std::io::Error::other)?;
                std::fs::File::open(path)?
                    .read_exact_at(&mut buf[filled..filled + n], want_start - file_start)?;
                filled += n;
            }
            file_start = file_end;
        }
        if filled < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the spool holds fewer bytes than announced",
            ));
        }
        Ok(Bytes::from(buf))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_is_read_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"hello ").unwrap();
        std::fs::write(&b, b"world!").unwrap();
        let files = vec![(a, 6), (b, 5)];
        let part = |number, start, len| Part {
            number: crate::upload::part_plan::PartNumber(number),
            start,
            len,
        };
        let first = read_part(&files, part(1, 0, 4)).await.unwrap();
        let second = read_part(&files, part(2, 4, 7)).await.unwrap();
        assert_eq!((&first[..], &second[..]), (&b"hell"[..], &b"o world"[..]));
        // Past what is announced (the `!` is not), the spool is short.
        assert!(read_part(&files, part(3, 8, 4)).await.is_err());
    }

    #[tokio::test]
    async fn a_state_file_is_its_first_line_and_the_parts_recorded_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        let part = |number: u32| SentPart {
            number,
            start: u64::from(number - 1) * 10,
            len: 10,
            etag: format!("e{number}"),
            crc32c: number,
        };
        let state = State {
            key: "k".into(),
            declared: Some(40),
            upload_id: "m".into(),
            parts: vec![part(1)],
            completed: None,
            adopted: 10,
        };
        save(&path, &state).await.unwrap();
        append(&path, Record::Part(part(2))).await.unwrap();
        append(&path, Record::Part(part(3))).await.unwrap();
        // Part 2 again (a retry after its first answer was lost) replaces the first record.
        append(&path, Record::Part(part(2))).await.unwrap();
        let numbers = |s: &State| s.parts.iter().map(|p| p.number).collect::<Vec<_>>();
        let loaded = load(&path).await.unwrap();
        assert_eq!((numbers(&loaded), loaded.adopted), (vec![1, 3, 2], 10));
        // A record cut short by a crash, and anything after it, is not read.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"part\":{\"numb");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(numbers(&load(&path).await.unwrap()), [1, 3, 2]);
        // A save starts the file again; a completion appended marks it complete.
        save(&path, &loaded).await.unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap().split(|&b| b == b'\n').count(),
            2
        );
        append(&path, Record::Completed(40)).await.unwrap();
        let completed = load(&path).await.unwrap();
        assert_eq!(
            (numbers(&completed), completed.completed),
            (vec![1, 3, 2], Some(40))
        );
    }

    #[test]
    fn an_adopting_edge_continues_after_the_run_of_parts_its_plan_agrees_with() {
        let rules = crate::upload::part_plan::PartRules::s3();
        const M: u64 = 8 * 1024 * 1024;
        let part = |number: u32, start: u64, len: u64| SentPart {
            number,
            start,
            len,
            etag: format!("e{number}"),
            crc32c: 0,
        };
        let stored = |declared, parts: Vec<SentPart>| crate::control::StoredParts {
            multipart_id: "m".into(),
            declared,
            parts,
        };
        let numbers = |parts: Vec<SentPart>| parts.iter().map(|p| p.number).collect::<Vec<_>>();
        let three = vec![part(1, 0, M), part(2, M, M), part(3, 2 * M, M)];
        // Two of three parts: continue after them.
        let two = stored(Some(3 * M), three[..2].to_vec());
        assert_eq!(numbers(adoptable(&rules, &two)), [1, 2]);
        // All three but never completed: the last is sent again, so its arrival completes it.
        assert_eq!(
            numbers(adoptable(&rules, &stored(Some(3 * M), three.clone()))),
            [1, 2]
        );
        // A gap: only the run before it.
        let gap = stored(Some(3 * M), vec![three[0].clone(), three[2].clone()]);
        assert_eq!(numbers(adoptable(&rules, &gap)), [1]);
        // Parts another plan cut (another part size): nothing.
        let other = stored(Some(3 * M), vec![part(1, 0, M / 2)]);
        assert!(adoptable(&rules, &other).is_empty());
        // A length still open: full parts only, never the last.
        assert_eq!(
            numbers(adoptable(&rules, &stored(None, three[..2].to_vec()))),
            [1, 2]
        );
    }
}
