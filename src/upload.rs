//! The upload's identity, positions in its bytes ([`Offset`]) and its status lifecycle, how its bytes are cut into storage parts
//! (`part_plan`), which chunks of a chunked upload are in (`chunk_set`), when an offset-based
//! resumable upload is complete (`resumable`) and why one failed
//! (`failure`): pure values, no I/O, no clock.
//!
//! Status codes are the Uploads API seed's (1 pending, 3 processing, 5 uploading, 6 completed,
//! 7 failed) plus 0 `receiving`, the documented code for an upload whose bytes are still
//! arriving. Must not depend on the database, the network or the store.

pub mod chunk_set;
pub mod failure;
pub mod part_plan;
pub mod resumable;

pub use failure::Failure;

use std::fmt;
use std::str::FromStr;

/// An upload's public id: a UUID in its hyphenated lower-case text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    /// A new random id.
    #[must_use]
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UploadId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A position in an upload's bytes: how many bytes come before it. An upload's offset is the
/// bytes it has kept; its length is the offset of its end. Byte counts that are not positions
/// (a body's size, a limit) stay `u64`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Offset(u64);

impl Offset {
    /// The start of an upload.
    pub const ZERO: Self = Self(0);

    /// The offset `bytes` bytes from the start.
    #[must_use]
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// Bytes from the start.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The offset `n` bytes further on.
    #[must_use]
    pub const fn after(self, n: u64) -> Self {
        Self(self.0.saturating_add(n))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Offset {
    type Err = std::num::ParseIntError;
    /// A header's decimal value (`Upload-Offset`, `Upload-Length`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A client's file name as Uplink keeps it: 1 to [`Filename::MAX_CHARS`] characters, no
/// control characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filename(String);

impl Filename {
    /// The longest name kept, in characters.
    pub const MAX_CHARS: usize = 255;

    /// What a client sent with its bytes, made usable: control characters dropped, cut at
    /// [`Filename::MAX_CHARS`], `"video"` when nothing is left (or nothing was sent).
    #[must_use]
    pub fn clean(raw: Option<&str>) -> Self {
        let name: String = raw
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(Self::MAX_CHARS)
            .collect();
        if name.trim().is_empty() {
            Self("video".to_owned())
        } else {
            Self(name)
        }
    }

    /// A name a control API was given, taken only if already usable (the API refuses it
    /// otherwise, rather than keep something else).
    #[must_use]
    pub fn exact(raw: &str) -> Option<Self> {
        let usable = !raw.trim().is_empty()
            && raw.chars().count() <= Self::MAX_CHARS
            && !raw.chars().any(char::is_control);
        usable.then(|| Self(raw.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an upload stands. The numeric codes are public API and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Bytes are still arriving at the edge.
    Receiving,
    /// Stored and queued, waiting for a worker.
    Pending,
    /// A worker is processing (probing, remuxing, transcoding) the video.
    Processing,
    /// The processed files are being written to final storage.
    Uploading,
    /// Processed and ready for playback.
    Completed,
    /// An error occurred; the record's `error` says which.
    Failed,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Receiving,
        Status::Pending,
        Status::Processing,
        Status::Uploading,
        Status::Completed,
        Status::Failed,
    ];

    /// The public numeric code.
    #[must_use]
    pub fn code(self) -> i64 {
        match self {
            Status::Receiving => 0,
            Status::Pending => 1,
            Status::Processing => 3,
            Status::Uploading => 5,
            Status::Completed => 6,
            Status::Failed => 7,
        }
    }

    /// The public status text.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            Status::Receiving => "receiving",
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Uploading => "uploading",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    /// The status with this public code, if any.
    #[must_use]
    pub fn from_code(code: i64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether the upload may move from `self` to `next`. Failure is reachable from every
    /// non-final status; otherwise an upload only moves forward, one step at a time, except that
    /// a job whose lease expired may be processed again (`Processing`/`Uploading` → `Processing`).
    #[must_use]
    pub fn can_move_to(self, next: Status) -> bool {
        use Status::{Completed, Failed, Pending, Processing, Receiving, Uploading};
        match (self, next) {
            (Completed | Failed, _) => false,
            (_, Failed) => true,
            (Receiving, Pending) | (Pending, Processing) | (Processing, Uploading) => true,
            (Processing | Uploading, Processing) | (Uploading, Completed) => true,
            _ => false,
        }
    }

    /// Whether no further change can happen.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_bounded_and_printable() {
        let clean = |raw| Filename::clean(raw).as_str().to_owned();
        assert_eq!(clean(Some("my_new_video.mp4")), "my_new_video.mp4");
        assert_eq!(clean(Some("a\r\nb.mp4")), "ab.mp4");
        assert_eq!(clean(Some(" ")), "video");
        assert_eq!(clean(None), "video");
        assert_eq!(clean(Some(&"é".repeat(300))).chars().count(), 255);
        assert!(Filename::exact("lake.mp4").is_some());
        for bad in ["", "  ", "a\nb", &"x".repeat(256)] {
            assert!(Filename::exact(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn codes_and_texts_are_the_seeds() {
        let table: Vec<(i64, &str)> = Status::ALL.iter().map(|s| (s.code(), s.text())).collect();
        assert_eq!(
            table,
            [
                (0, "receiving"),
                (1, "pending"),
                (3, "processing"),
                (5, "uploading"),
                (6, "completed"),
                (7, "failed")
            ]
        );
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::from_code(2), None);
    }

    #[test]
    fn lifecycle_moves_forward_only() {
        use Status::*;
        let happy = [Receiving, Pending, Processing, Uploading, Completed];
        for pair in happy.windows(2) {
            assert!(pair[0].can_move_to(pair[1]), "{pair:?}");
            // The one way back: a retried job processes again after `uploading`.
            let retry = pair == [Processing, Uploading];
            assert_eq!(pair[1].can_move_to(pair[0]), retry, "{pair:?}");
        }
        assert!(Processing.can_move_to(Failed));
        assert!(Uploading.can_move_to(Processing));
        assert!(!Completed.can_move_to(Failed));
        assert!(!Failed.can_move_to(Pending));
        assert!(!Receiving.can_move_to(Completed));
    }

    #[test]
    fn upload_id_round_trips_and_rejects_garbage() {
        let id = UploadId::new();
        assert_eq!(id.to_string().parse::<UploadId>().unwrap(), id);
        assert!("not-an-id".parse::<UploadId>().is_err());
    }
}
