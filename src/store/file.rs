//! The local-file store: objects are files under a root directory. A writer fills a file in
//! `ROOT/.partial/`, then `finish` syncs it and renames it into place, so a crash never leaves
//! a half-written object under its key.

use super::appender::Appender;
use super::{LocalObject, ObjectKey, ObjectWriter, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// Objects as files under `root`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// Opens (creating) the store at `root`.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub async fn open(root: &Path) -> Result<Self, StoreError> {
        let partial = root.join(".partial");
        tokio::fs::create_dir_all(&partial)
            .await
            .map_err(|source| StoreError::Open {
                location: root.display().to_string(),
                source,
            })?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

struct FileWriter {
    key: ObjectKey,
    partial: PathBuf,
    dest: PathBuf,
    file: Appender,
    size: u64,
}

impl FileWriter {
    fn err(&self, source: std::io::Error) -> StoreError {
        StoreError::Write {
            key: self.key.to_string(),
            source,
        }
    }
}

/// Renames a synced partial file to its key's path, durably.
async fn into_place(partial: &Path, dest: &Path) -> std::io::Result<()> {
    let parent = dest.parent().map(Path::to_owned);
    if let Some(dir) = &parent {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::rename(partial, dest).await?;
    if let Some(dir) = parent {
        // The rename is durable once the directory entry is.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        match self.file.push(data).await {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        let FileWriter {
            key,
            partial,
            dest,
            file,
            size,
        } = *self;
        let err = |source| StoreError::Write {
            key: key.to_string(),
            source,
        };
        file.sync().await.map_err(err)?;
        into_place(&partial, &dest).await.map_err(err)?;
        Ok(size)
    }

    async fn abort(self: Box<Self>) {
        // A write still in flight lands in the unlinked file.
        drop(self.file);
        if let Err(e) = tokio::fs::remove_file(&self.partial).await {
            tracing::warn!(key = %self.key, error = %e, "Could not remove a partial object.");
        }
    }
}

#[async_trait]
impl Store for FileStore {
    async fn ready(&self) -> Result<(), StoreError> {
        let open = |source| StoreError::Open {
            location: self.root.display().to_string(),
            source,
        };
        let meta = tokio::fs::metadata(&self.root).await.map_err(open)?;
        if meta.is_dir() && !meta.permissions().readonly() {
            Ok(())
        } else {
            Err(open(std::io::Error::other("not a writable directory")))
        }
    }

    async fn writer(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let partial = self
            .root
            .join(".partial")
            .join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|source| StoreError::Write {
                key: key.to_string(),
                source,
            })?;
        Ok(Box::new(FileWriter {
            key: key.clone(),
            partial,
            dest: self.path(key),
            file: Appender::appending(file.into_std().await),
            size: 0,
        }))
    }

    async fn fetch_to_local(
        &self,
        key: &ObjectKey,
        _scratch: &Path,
    ) -> Result<LocalObject, StoreError> {
        let path = self.path(key);
        tokio::fs::metadata(&path)
            .await
            .map_err(|source| StoreError::Read {
                key: key.to_string(),
                source,
            })?;
        Ok(LocalObject { path, _temp: None })
    }

    async fn size(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read {
                key: key.to_string(),
                source,
            }),
        }
    }

    async fn read_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let read = |source| StoreError::Read {
            key: key.to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(self.path(key)).await.map_err(read)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(read)?;
        Ok(Box::new(file.take(len)))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Delete {
                key: key.to_string(),
                source,
            }),
        }
    }

    async fn link_file(&self, key: &ObjectKey, src: &Path) -> Result<Option<u64>, StoreError> {
        let failed = |source| StoreError::Write {
            key: key.to_string(),
            source,
        };
        let partial = self
            .root
            .join(".partial")
            .join(uuid::Uuid::new_v4().to_string());
        match tokio::fs::hard_link(src, &partial).await {
            Ok(()) => {}
            // Another filesystem, or one without hard links: the caller copies.
            Err(e)
                if e.kind() == std::io::ErrorKind::CrossesDevices
                    || e.kind() == std::io::ErrorKind::Unsupported
                    || e.raw_os_error() == Some(1) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(failed(e)),
        }
        let size = match tokio::fs::metadata(&partial).await {
            Ok(m) => m.len(),
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(failed(e));
            }
        };
        if let Err(e) = into_place(&partial, &self.path(key)).await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(failed(e));
        }
        Ok(Some(size))
    }

    async fn discard_unfinished(
        &self,
        before: std::time::SystemTime,
        // A partial file is named by its writer, not its key: age alone decides.
        _receiving: &std::collections::HashSet<String>,
    ) -> Result<usize, StoreError> {
        let dir = self.root.join(".partial");
        let failed = |source| StoreError::Delete {
            key: dir.display().to_string(),
            source,
        };
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(failed)?;
        let mut discarded = 0;
        while let Some(entry) = entries.next_entry().await.map_err(failed)? {
            let modified = entry.metadata().await.and_then(|m| m.modified());
            if modified.is_ok_and(|m| m < before)
                && tokio::fs::remove_file(entry.path()).await.is_ok()
            {
                discarded += 1;
            }
        }
        Ok(discarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_is_visible_until_finish_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let key = ObjectKey::new("a/b/c").unwrap();
        let mut w = store.writer(&key).await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        w.write(Bytes::from_static(b"world")).await.unwrap();
        assert!(!dir.path().join("a/b/c").exists());
        assert_eq!(w.finish().await.unwrap(), 11);
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c")).unwrap(),
            b"hello world"
        );

        let mut w = store.writer(&ObjectKey::new("x").unwrap()).await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        w.abort().await;
        assert!(!dir.path().join("x").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(".partial"))
                .unwrap()
                .count(),
            0
        );

        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(!dir.path().join("a/b/c").exists());
    }
}
