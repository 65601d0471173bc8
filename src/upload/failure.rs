//! Why an upload failed, as the customer sees it: a stable code for programs (`error_code` on
//! the status record), a message written for the customer (`error`), and the short text the
//! Ankoder seed's notification carries. The cause in a library's own words (FFmpeg's) goes to
//! the log with the upload id, never here. Pure: no I/O.

/// Why an upload failed. The codes are public API and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The file is not a video in a container this service reads.
    NotAVideo,
    /// The container holds no video track.
    NoVideoTrack,
    /// The video track uses a codec this service cannot process.
    UnsupportedCodec,
    /// Not one frame of the video could be decoded.
    Damaged,
    /// The file ends well before the duration it declares.
    Truncated,
    /// The frame is larger than this service accepts.
    FrameTooLarge,
    /// Processing ran past the service's time limit.
    TimedOut,
    /// The upload names a transcoding template this service does not have.
    UnknownTemplate,
    /// The upload names a watermark this service does not have.
    UnknownWatermark,
    /// The upload names subtitles this service does not have.
    UnknownSubtitle,
    /// An error of ours while processing (an encoder, a scratch file).
    ProcessingError,
    /// Processing failed every time it was tried, for passing reasons (storage, database).
    GaveUp,
    /// The edge holding chunks of the upload that were not yet in storage was lost (it sent
    /// no heartbeat for the fleet's `edge_lost_after`).
    EdgeLost,
    /// The account's application refused the upload through its `pre-finish` hook (or the
    /// hook failed and its policy refuses).
    RefusedByHook,
    /// The source of an upload from a URL could not be fetched (unreachable, an error status,
    /// or it stopped sending and could not be resumed).
    SourceUnreachable,
    /// The source of an upload from a URL is larger than the upload may be.
    SourceTooLarge,
    /// The URL of an upload from a URL is not allowed (not http(s), or a private address).
    SourceNotAllowed,
}

impl Failure {
    /// Every failure, for the documentation's table and its tests.
    pub const ALL: [Failure; 17] = [
        Failure::NotAVideo,
        Failure::NoVideoTrack,
        Failure::UnsupportedCodec,
        Failure::Damaged,
        Failure::Truncated,
        Failure::FrameTooLarge,
        Failure::TimedOut,
        Failure::UnknownTemplate,
        Failure::UnknownWatermark,
        Failure::UnknownSubtitle,
        Failure::ProcessingError,
        Failure::GaveUp,
        Failure::EdgeLost,
        Failure::RefusedByHook,
        Failure::SourceUnreachable,
        Failure::SourceTooLarge,
        Failure::SourceNotAllowed,
    ];

    /// The stable code (`error_code`).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Failure::NotAVideo => "not_a_video",
            Failure::NoVideoTrack => "no_video_track",
            Failure::UnsupportedCodec => "unsupported_codec",
            Failure::Damaged => "damaged_video",
            Failure::Truncated => "truncated_video",
            Failure::FrameTooLarge => "frame_too_large",
            Failure::TimedOut => "processing_timeout",
            Failure::UnknownTemplate => "unknown_template",
            Failure::UnknownWatermark => "unknown_watermark",
            Failure::UnknownSubtitle => "unknown_subtitle",
            Failure::ProcessingError => "processing_error",
            Failure::GaveUp => "processing_failed",
            Failure::EdgeLost => "edge_lost",
            Failure::RefusedByHook => "refused_by_hook",
            Failure::SourceUnreachable => "source_unreachable",
            Failure::SourceTooLarge => "source_too_large",
            Failure::SourceNotAllowed => "source_not_allowed",
        }
    }

    /// The failure a code names.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The message for the customer (`error`).
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Failure::NotAVideo => "The file is not a video in a format this service supports.",
            Failure::NoVideoTrack => "The file has no video track.",
            Failure::UnsupportedCodec => "The video uses a codec this service cannot process.",
            Failure::Damaged => "No frame of the video could be decoded: the file is damaged.",
            Failure::Truncated => {
                "The file is cut short: it ends well before the duration it declares. Upload the whole file again."
            }
            Failure::FrameTooLarge => "The video's frame is larger than this service accepts.",
            Failure::TimedOut => "Processing took longer than this service allows for one video.",
            Failure::UnknownTemplate => "The upload names a transcoding template that does not exist.",
            Failure::UnknownWatermark => "The upload names a watermark that does not exist.",
            Failure::UnknownSubtitle => "The upload names subtitles that do not exist.",
            Failure::ProcessingError => {
                "The video could not be processed because of an error on our side; upload it again or contact support."
            }
            Failure::GaveUp => {
                "Processing failed repeatedly because of errors on our side; upload it again or contact support."
            }
            Failure::EdgeLost => {
                "The upload server that held part of this upload was lost before that part was stored; upload the file again."
            }
            Failure::RefusedByHook => {
                "The application this upload is for refused it when its last byte arrived; it was not kept."
            }
            Failure::SourceUnreachable => {
                "The file at the URL could not be fetched: its server could not be reached, answered with an error, or stopped sending and could not resume."
            }
            Failure::SourceTooLarge => "The file at the URL is larger than this upload may be.",
            Failure::SourceNotAllowed => {
                "The URL is not allowed: it must be http or https, and neither it nor a redirect may reach a private network address."
            }
        }
    }

    /// The short text of the Ankoder seed's failure notification (`"error": "invalid video"`).
    #[must_use]
    pub fn short(self) -> &'static str {
        match self {
            Failure::NotAVideo
            | Failure::NoVideoTrack
            | Failure::UnsupportedCodec
            | Failure::Damaged
            | Failure::Truncated
            | Failure::FrameTooLarge => "invalid video",
            Failure::TimedOut => "processing timed out",
            Failure::UnknownTemplate | Failure::UnknownWatermark | Failure::UnknownSubtitle => {
                "invalid settings"
            }
            Failure::ProcessingError | Failure::GaveUp => "processing failed",
            Failure::EdgeLost => "upload lost",
            Failure::RefusedByHook => "upload refused",
            Failure::SourceUnreachable | Failure::SourceTooLarge | Failure::SourceNotAllowed => {
                "fetch failed"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut codes: Vec<&str> = Failure::ALL.iter().map(|f| f.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Failure::ALL.len());
        for f in Failure::ALL {
            assert_eq!(Failure::from_code(f.code()), Some(f));
            assert!(f.message().ends_with('.'), "{f:?}");
        }
        assert_eq!(Failure::from_code("nope"), None);
        assert_eq!(Failure::NotAVideo.short(), "invalid video");
    }

    #[test]
    fn the_readme_lists_every_failure() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for f in Failure::ALL {
            let row = format!("| `{}` | {} | {} |", f.code(), f.message(), f.short());
            assert!(readme.contains(&row), "README lacks {row}");
        }
    }
}
