//! Media work with FFmpeg's libraries (ffmpeg-next), in process: open an uploaded file as
//! untrusted input (local files only, an allow-list of demuxers), probe it and remux its
//! audio and video into another container; `transcode` makes a template's renditions,
//! thumbnail and HLS set.
//!
//! Blocking code: call it from a blocking thread. Must not depend on the database, the store
//! or HTTP.

use crate::upload::Failure;
use ffmpeg::{codec, encoder, format, media, Dictionary, Rational};
use ffmpeg_next as ffmpeg;
use std::path::Path;
use std::sync::Once;

pub mod transcode;

/// Demuxers a source may be read with; anything else is refused before it is parsed further.
const DEMUXERS: &str =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,h264,hevc,m4v";

/// Why a file could not be processed. The messages carry FFmpeg's words and go to the log; the
/// customer is told the [`Failure`] each maps to.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// FFmpeg could not open the file as any allowed container.
    #[error("the file is not a video in a supported format ({0})")]
    NotVideo(#[source] ffmpeg::Error),
    /// The container has no video stream.
    #[error("the file has no video stream")]
    NoVideoStream,
    /// The streams cannot be copied into MP4.
    #[error("the video cannot be repackaged as MP4 ({0})")]
    Remux(#[source] ffmpeg::Error),
    /// Decoding, filtering or encoding failed.
    #[error("the video could not be transcoded ({0}: {1})")]
    Encode(&'static str, #[source] ffmpeg::Error),
    /// Not one frame of the video could be decoded.
    #[error("the video stream could not be decoded (the file is damaged or truncated)")]
    Undecodable,
    /// The file ends well before the duration its container declares.
    #[error("the file is truncated: it declares {declared_ms} ms but only {readable_ms} ms could be read")]
    Truncated {
        /// What the container says.
        declared_ms: i64,
        /// What its packets span.
        readable_ms: i64,
    },
    /// The frame is larger than the node accepts.
    #[error("the video is {0}x{1}, larger than this service accepts")]
    TooLarge(u32, u32),
    /// The job ran past its time limit.
    #[error("processing took longer than this service allows")]
    TimedOut,
    /// This FFmpeg build lacks an encoder.
    #[error("the {0} encoder is missing from this server's FFmpeg")]
    NoEncoder(&'static str),
    /// FFmpeg did not behave as its API promises.
    #[error("internal transcoder error ({0})")]
    Internal(&'static str),
    /// A scratch file could not be written.
    #[error("cannot write a scratch file")]
    Scratch(#[source] std::io::Error),
}

impl MediaError {
    /// What the customer is told ([`Failure`]); this error's own text, with FFmpeg's words,
    /// is for the log.
    #[must_use]
    pub fn failure(&self) -> Failure {
        match self {
            MediaError::NotVideo(_) => Failure::NotAVideo,
            MediaError::NoVideoStream => Failure::NoVideoTrack,
            MediaError::Remux(_) => Failure::UnsupportedCodec,
            MediaError::Undecodable => Failure::Damaged,
            MediaError::Truncated { .. } => Failure::Truncated,
            MediaError::TooLarge(..) => Failure::FrameTooLarge,
            MediaError::TimedOut => Failure::TimedOut,
            MediaError::Encode(..)
            | MediaError::NoEncoder(_)
            | MediaError::Internal(_)
            | MediaError::Scratch(_) => Failure::ProcessingError,
        }
    }
}

/// What probing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Duration in milliseconds, when the container knows it.
    pub duration_ms: Option<i64>,
    /// Width and height of the first video stream.
    pub video_size: (u32, u32),
    /// Number of audio streams.
    pub audio_streams: usize,
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg::init() {
            tracing::error!(error = %e, "FFmpeg failed to initialise.");
        }
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    });
}

/// Opens an untrusted local file.
fn open(src: &Path) -> Result<format::context::Input, MediaError> {
    init();
    let mut opts = Dictionary::new();
    opts.set("protocol_whitelist", "file");
    opts.set("format_whitelist", DEMUXERS);
    format::input_with_dictionary(src, opts).map_err(MediaError::NotVideo)
}

fn probe_input(ictx: &format::context::Input) -> Result<Probe, MediaError> {
    let video = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or(MediaError::NoVideoStream)?;
    let params =
        codec::Context::from_parameters(video.parameters()).map_err(MediaError::NotVideo)?;
    let decoder = params.decoder().video().map_err(MediaError::NotVideo)?;
    if decoder.width() == 0 || decoder.height() == 0 {
        return Err(MediaError::NoVideoStream);
    }
    let duration = ictx.duration();
    Ok(Probe {
        duration_ms: (duration > 0).then_some(duration / 1000),
        video_size: (decoder.width(), decoder.height()),
        audio_streams: ictx
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Audio)
            .count(),
    })
}

/// Probes `src` and copies its audio and video streams into `dst` in the container `format`
/// (`mp4`, `hls`…) with the muxer's `options`.
///
/// # Errors
/// The file is not a readable video, or its streams do not fit in the container.
pub fn remux(
    src: &Path,
    dst: &Path,
    format: &str,
    options: &[(&str, &str)],
) -> Result<Probe, MediaError> {
    let mut ictx = open(src)?;
    let probe = probe_input(&ictx)?;
    let mut octx = format::output_as(dst, format).map_err(MediaError::Remux)?;

    let n = ictx.nb_streams() as usize;
    let mut mapping: Vec<Option<usize>> = vec![None; n];
    let mut time_bases = vec![Rational(0, 1); n];
    let mut next = 0;
    for (i, ist) in ictx.streams().enumerate() {
        let medium = ist.parameters().medium();
        if medium != media::Type::Audio && medium != media::Type::Video {
            continue;
        }
        mapping[i] = Some(next);
        time_bases[i] = ist.time_base();
        next += 1;
        let mut ost = octx
            .add_stream(encoder::find(codec::Id::None))
            .map_err(MediaError::Remux)?;
        ost.set_parameters(ist.parameters());
        clear_codec_tag(&mut ost);
    }
    octx.set_metadata(ictx.metadata().to_owned());
    let mut opts = Dictionary::new();
    for (k, v) in options {
        opts.set(k, v);
    }
    octx.write_header_with(opts).map_err(MediaError::Remux)?;

    for (stream, mut packet) in ictx.packets() {
        let Some(out_index) = mapping.get(stream.index()).copied().flatten() else {
            continue;
        };
        let out_tb = octx
            .stream(out_index)
            .map(|s| s.time_base())
            .ok_or(MediaError::NoVideoStream)?;
        packet.rescale_ts(time_bases[stream.index()], out_tb);
        packet.set_position(-1);
        packet.set_stream(out_index);
        packet
            .write_interleaved(&mut octx)
            .map_err(MediaError::Remux)?;
    }
    octx.write_trailer().map_err(MediaError::Remux)?;
    Ok(probe)
}

/// Lets the MP4 muxer choose the codec tag (a tag from another container, such as AVI's
/// `XVID`, would make it refuse the stream). ffmpeg-next has no safe setter for this field.
#[allow(unsafe_code)]
fn clear_codec_tag(ost: &mut format::stream::StreamMut<'_>) {
    // SAFETY: `parameters()` points at the stream's own AVCodecParameters, which the output
    // context owns and keeps alive for the lifetime of `ost`; we write one plain integer field.
    unsafe {
        (*ost.parameters().as_mut_ptr()).codec_tag = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_not_a_video() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("notes.txt");
        std::fs::write(&src, "just some words, not a video\n".repeat(100)).unwrap();
        let err = remux(&src, &dir.path().join("out.mp4"), "mp4", &[]).unwrap_err();
        assert!(matches!(err, MediaError::NotVideo(_)), "{err:?}");
    }

    #[test]
    fn network_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = remux(
            Path::new("http://127.0.0.1:9/x.mp4"),
            &dir.path().join("o.mp4"),
            "mp4",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::NotVideo(_)), "{err:?}");
    }
}
