//! When spooled bytes reach the disk relative to the answer that acknowledges them
//! ([`Durability`]), and the syncs that make them durable, shared between acknowledgements that
//! arrive close together (group commit): one thread syncs whatever is waiting, and what arrives
//! while it syncs waits for the next round, so a hundred uploads acknowledging at once cost one
//! or two `syncfs` calls instead of a hundred `fsync`s racing each other. A round of one file
//! is that file's `fdatasync`; a round of several is one `syncfs` per filesystem they are on
//! (which also writes their neighbours' dirty pages: work those need soon anyway, since every
//! spool file starts its write-back every few MiB).
//!
//! Must not depend on HTTP, any protocol, store or the config files.

use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::sync::mpsc;

/// When an acknowledged byte is on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Before the answer that acknowledges it (syncs shared between answers): a power cut
    /// loses nothing acknowledged.
    #[default]
    Sync,
    /// Synced right after the answer, in the next round of syncs: a power cut can lose what
    /// was acknowledged in the last moments (about one round: milliseconds, up to a second on
    /// a saturated disk); the client then finds a lower offset and resends from there.
    Batched,
    /// Never synced by Uplink; the kernel writes it back within its own delay (30 s on
    /// Debian). A power cut can lose that much. A crash of the process loses nothing.
    None,
}

impl Durability {
    /// Its name in the config files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Batched => "batched",
            Self::None => "none",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        [Self::Sync, Self::Batched, Self::None]
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| format!("{name:?} is not a durability: use sync, batched or none"))
    }
}

/// A file waiting for a round of syncs, and who waits for it (nobody: batched).
struct Waiting {
    file: File,
    answer: Option<tokio::sync::oneshot::Sender<std::io::Result<()>>>,
}

/// Makes spooled files durable, as [`Durability`] says.
#[derive(Debug)]
pub struct Syncer {
    durability: Durability,
    queue: mpsc::Sender<Waiting>,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").finish_non_exhaustive()
    }
}

impl Syncer {
    /// Starts the syncing thread.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(durability: Durability) -> std::io::Result<Self> {
        let (queue, rounds) = mpsc::channel();
        std::thread::Builder::new()
            .name("uplink-sync".into())
            .spawn(move || run(&rounds))?;
        Ok(Self { durability, queue })
    }

    /// Makes everything written to `file` durable before it returns, whatever the
    /// [`Durability`]: for bytes a client will never send again once answered (chunks).
    ///
    /// # Errors
    /// The sync failed: what was written may not be on the disk.
    pub async fn sync(&self, file: File) -> std::io::Result<()> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.enqueue(file, Some(answer))?;
        answered.await.map_err(|_| stopped())?
    }

    /// Makes what was written to `file` as durable as the [`Durability`] asks before an
    /// answer acknowledges it: synced (`sync`), queued for the next round (`batched`), or left
    /// to the kernel (`none`).
    ///
    /// # Errors
    /// The sync failed (`sync` only).
    pub async fn settle(&self, file: File) -> std::io::Result<()> {
        match self.durability {
            Durability::Sync => self.sync(file).await,
            Durability::Batched => self.enqueue(file, None),
            Durability::None => Ok(()),
        }
    }

    fn enqueue(
        &self,
        file: File,
        answer: Option<tokio::sync::oneshot::Sender<std::io::Result<()>>>,
    ) -> std::io::Result<()> {
        self.queue
            .send(Waiting { file, answer })
            .map_err(|_| stopped())
    }
}

fn stopped() -> std::io::Error {
    std::io::Error::other("the syncing thread has stopped")
}

/// The syncing thread: each round takes everything waiting; it ends with the last sender.
fn run(rounds: &mpsc::Receiver<Waiting>) {
    while let Ok(first) = rounds.recv() {
        let mut round = vec![first];
        round.extend(rounds.try_iter());
        let files: Vec<&File> = round.iter().map(|w| &w.file).collect();
        let results = sync_round(&files);
        crate::metrics::spool_sync_round(round.len());
        for (waiting, result) in round.into_iter().zip(results) {
            match waiting.answer {
                Some(answer) => {
                    let _ = answer.send(result);
                }
                None => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, "Could not sync acknowledged bytes to the spool's disk (durability = \"batched\"): a power cut now would lose them.");
                    }
                }
            }
        }
    }
}

/// Syncs every file; one result per file, in order. Files sharing a file system with others
/// in the round are synced by one `syncfs` of it (after a write-back failure there, file by
/// file, to find whose it was); any other file by its own `fdatasync`.
fn sync_round(files: &[&File]) -> Vec<std::io::Result<()>> {
    let devices: Vec<Option<u64>> = files.iter().map(|f| device(f)).collect();
    let mut sharing: HashMap<u64, usize> = HashMap::new();
    for dev in devices.iter().flatten() {
        *sharing.entry(*dev).or_default() += 1;
    }
    let mut synced: HashMap<u64, bool> = HashMap::new();
    files
        .iter()
        .zip(devices)
        .map(|(file, dev)| match dev.filter(|d| sharing[d] > 1) {
            Some(dev) if *synced.entry(dev).or_insert_with(|| syncfs(file).is_ok()) => Ok(()),
            _ => file.sync_data(),
        })
        .collect()
}

#[cfg(unix)]
fn device(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.dev())
}

#[cfg(not(unix))]
fn device(_: &File) -> Option<u64> {
    None
}

/// Writes every dirty page of `file`'s filesystem and commits its journal (`syncfs`; it
/// reports write-back failures since Linux 5.8).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn syncfs(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call takes no
    // pointers.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(file: &File) -> std::io::Result<()> {
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn every_mode_answers_and_many_at_once_share_rounds() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Sync, Durability::Batched, Durability::None] {
            let syncer = std::sync::Arc::new(Syncer::start(durability).unwrap());
            let waits = (0..50).map(|i| {
                let syncer = syncer.clone();
                let path = dir.path().join(format!("{}-{i}", durability.name()));
                tokio::spawn(async move {
                    let mut file = File::create(&path).unwrap();
                    file.write_all(&[i as u8; 4096]).unwrap();
                    syncer.settle(file).await.unwrap();
                    std::fs::metadata(&path).unwrap().len()
                })
            });
            for wait in waits {
                assert_eq!(wait.await.unwrap(), 4096);
            }
            // Chunks are synced whatever the mode.
            let file =
                File::create(dir.path().join(format!("chunk-{}", durability.name()))).unwrap();
            syncer.sync(file).await.unwrap();
        }
    }

    #[test]
    fn a_round_syncs_files_on_one_filesystem_together() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..3)
            .map(|i| {
                let mut f = File::create(dir.path().join(i.to_string())).unwrap();
                f.write_all(b"x").unwrap();
                f
            })
            .collect();
        let refs: Vec<&File> = files.iter().collect();
        let results = sync_round(&refs);
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(Result::is_ok));
        assert!(sync_round(&refs[..1])[0].is_ok());
    }
}
