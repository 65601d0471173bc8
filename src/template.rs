//! Transcode templates and what one asks of a given source: the renditions to make (never
//! upscaled, aspect ratio kept, even dimensions), which of them can be copied from the source
//! instead of encoded, and which template an upload uses (Cloud VoD `workflowId` /
//! `transCodeCombineName`, else its pipeline's, else `default`).
//!
//! Pure: must not depend on FFmpeg, the database or the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The template every pipeline uses unless it names another.
pub const DEFAULT_TEMPLATE: &str = "default";

/// One rung of a ladder: an output height and its video bit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendition {
    /// Output height in pixels (the width follows the source's aspect ratio).
    pub height: u32,
    /// H.264 bit rate, bits per second.
    pub video_bitrate: u64,
}

/// A transcode template: an H.264 + AAC MP4 ladder, a thumbnail, an optional HLS rendition
/// set, an optional watermark and optional burnt-in subtitles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The ladder, any order.
    pub renditions: Vec<Rendition>,
    /// AAC bit rate, bits per second.
    pub audio_bitrate: u64,
    /// Whether to make a JPEG thumbnail.
    pub thumbnail: bool,
    /// Whether to also package the renditions as HLS (a master playlist over one media
    /// playlist of MPEG-TS segments per rendition).
    pub hls: bool,
    /// An image overlaid on every rendition (bottom right), if any.
    pub watermark: Option<PathBuf>,
    /// A subtitle file (SRT, ASS, WebVTT) drawn onto every rendition, if any.
    pub subtitles: Option<PathBuf>,
}

impl Default for Template {
    /// 1080p, 720p and 480p (whichever the source reaches), AAC at 128 kb/s, a thumbnail.
    fn default() -> Self {
        Self {
            renditions: vec![
                Rendition {
                    height: 1080,
                    video_bitrate: 5_000_000,
                },
                Rendition {
                    height: 720,
                    video_bitrate: 2_800_000,
                },
                Rendition {
                    height: 480,
                    video_bitrate: 1_200_000,
                },
            ],
            audio_bitrate: 128_000,
            thumbnail: true,
            hls: false,
            watermark: None,
            subtitles: None,
        }
    }
}

/// What the worker knows about a source before deciding how to make each rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Display width.
    pub width: u32,
    /// Display height.
    pub height: u32,
    /// Whether the video is already H.264.
    pub h264: bool,
    /// Whether the audio (if any) is already AAC.
    pub audio_ok: bool,
}

/// One output to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Its name: `720p`, the file being `720p.mp4`.
    pub name: String,
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Target video bit rate.
    pub video_bitrate: u64,
    /// Copy the source's streams instead of encoding (already H.264/AAC at this size).
    pub copy: bool,
}

fn even(x: u64) -> u32 {
    u32::try_from((x / 2 * 2).max(2)).unwrap_or(u32::MAX - 1)
}

/// The renditions `template` gives `source`: every rung at or below the source's height, each
/// once, tallest first; a source shorter than every rung gets one rendition at its own size
/// with the lowest rung's bit rate. A rendition at the source's own size is a copy when the
/// source is H.264 (with AAC or no audio) and nothing (watermark, subtitles) is drawn on it.
#[must_use]
pub fn plan(template: &Template, source: Source) -> Vec<Planned> {
    let mut rungs: Vec<Rendition> = template
        .renditions
        .iter()
        .copied()
        .filter(|r| r.height <= source.height)
        .collect();
    rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
    rungs.dedup_by_key(|r| r.height);
    if rungs.is_empty() {
        let lowest = template
            .renditions
            .iter()
            .map(|r| r.video_bitrate)
            .min()
            .unwrap_or(1_000_000);
        rungs.push(Rendition {
            height: source.height,
            video_bitrate: lowest,
        });
    }
    rungs
        .into_iter()
        .map(|r| {
            let height = even(u64::from(r.height));
            // The nearest even width to the source's aspect ratio.
            let (w, h) = (u64::from(source.width), u64::from(source.height.max(1)));
            let width = even((w * u64::from(height) + h) / (2 * h) * 2);
            let copy = source.h264
                && source.audio_ok
                && template.watermark.is_none()
                && template.subtitles.is_none()
                && (width, height) == (source.width, source.height);
            Planned {
                name: format!("{height}p"),
                width,
                height,
                video_bitrate: r.video_bitrate,
                copy,
            }
        })
        .collect()
}

/// A thumbnail is at most this wide.
pub const THUMBNAIL_WIDTH: u32 = 640;

/// The size of the thumbnail of a `width` × `height` video: at most [`THUMBNAIL_WIDTH`] wide,
/// aspect kept, even dimensions.
#[must_use]
pub fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    let w = even(u64::from(width.min(THUMBNAIL_WIDTH)));
    let h = even(u64::from(height) * u64::from(w) / u64::from(width.max(1)));
    (w, h)
}

/// One variant of an HLS master playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Its media playlist, relative to the master (`720p.m3u8`).
    pub playlist: String,
    /// Peak bit rate, bits per second.
    pub bandwidth: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The HLS master playlist over `variants` (RFC 8216 §4.3.4.2).
#[must_use]
pub fn master_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for v in variants {
        out += &format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{}\n{}\n",
            v.bandwidth.max(1),
            v.width,
            v.height,
            v.playlist
        );
    }
    out
}

/// The template an upload uses: the one its flavour settings name (Cloud VoD `workflowId`,
/// then `transCodeCombineName`), else its pipeline's.
///
/// # Errors
/// The name is not a configured template: the message says which.
pub fn choose<'a>(
    templates: &'a BTreeMap<String, Template>,
    requested: Option<&str>,
    pipeline: &str,
) -> Result<(&'a str, &'a Template), String> {
    let name = requested.unwrap_or(pipeline);
    templates
        .get_key_value(name)
        .map(|(k, t)| (k.as_str(), t))
        .ok_or_else(|| format!("unknown transcode template {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source(width: u32, height: u32) -> Source {
        Source {
            width,
            height,
            h264: false,
            audio_ok: true,
        }
    }

    #[test]
    fn a_1080p_source_gets_the_whole_ladder() {
        let p = plan(&Template::default(), source(1920, 1080));
        let sizes: Vec<_> = p
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height))
            .collect();
        assert_eq!(
            sizes,
            [
                ("1080p", 1920, 1080),
                ("720p", 1280, 720),
                ("480p", 854, 480)
            ]
        );
        assert!(p.iter().all(|r| !r.copy));
    }

    #[test]
    fn never_upscales() {
        let p = plan(&Template::default(), source(1280, 720));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].height, 720);
        let small = plan(&Template::default(), source(320, 240));
        assert_eq!(small.len(), 1);
        assert_eq!((small[0].width, small[0].height), (320, 240));
        assert_eq!(small[0].video_bitrate, 1_200_000);
    }

    #[test]
    fn h264_at_the_right_size_is_copied() {
        let mut s = source(1280, 720);
        s.h264 = true;
        let p = plan(&Template::default(), s);
        assert!(p[0].copy, "{p:?}");
        assert!(!p[1].copy);
        let marked = Template {
            watermark: Some("logo.png".into()),
            ..Template::default()
        };
        assert!(!plan(&marked, s)[0].copy);
        let subtitled = Template {
            subtitles: Some("subs.srt".into()),
            ..Template::default()
        };
        assert!(!plan(&subtitled, s)[0].copy);
        s.audio_ok = false;
        assert!(!plan(&Template::default(), s)[0].copy);
    }

    #[test]
    fn thumbnails_are_at_most_640_wide() {
        assert_eq!(thumbnail_size(1920, 1080), (640, 360));
        assert_eq!(thumbnail_size(320, 240), (320, 240));
        assert_eq!(thumbnail_size(1, 1), (2, 2));
    }

    #[test]
    fn the_master_playlist_lists_each_variant() {
        let m = master_playlist(&[
            Variant {
                playlist: "720p.m3u8".into(),
                bandwidth: 2_900_000,
                width: 1280,
                height: 720,
            },
            Variant {
                playlist: "480p.m3u8".into(),
                bandwidth: 1_300_000,
                width: 854,
                height: 480,
            },
        ]);
        assert_eq!(
            m,
            "#EXTM3U\n#EXT-X-VERSION:3\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2900000,RESOLUTION=1280x720\n720p.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1300000,RESOLUTION=854x480\n480p.m3u8\n"
        );
    }

    #[test]
    fn templates_are_chosen_by_request_then_pipeline() {
        let mut all = BTreeMap::new();
        all.insert(DEFAULT_TEMPLATE.to_owned(), Template::default());
        all.insert("small".to_owned(), Template::default());
        assert_eq!(choose(&all, None, "default").unwrap().0, "default");
        assert_eq!(choose(&all, Some("small"), "default").unwrap().0, "small");
        assert!(choose(&all, Some("huge"), "default")
            .unwrap_err()
            .contains("\"huge\""));
    }

    proptest! {
        #[test]
        fn renditions_are_even_never_larger_and_keep_the_aspect(
            w in 2u32..8000, h in 2u32..8000, heights in proptest::collection::vec(2u32..4000, 1..6)
        ) {
            let t = Template {
                renditions: heights.iter().map(|&height| Rendition { height, video_bitrate: 1 }).collect(),
                ..Template::default()
            };
            let p = plan(&t, source(w, h));
            prop_assert!(!p.is_empty());
            for r in &p {
                prop_assert!(r.width % 2 == 0 && r.height % 2 == 0);
                prop_assert!(r.height <= h.max(2));
                prop_assert!(r.width <= (w + 2).max(2));
                let expected = f64::from(w) * f64::from(r.height) / f64::from(h);
                prop_assert!((f64::from(r.width) - expected).abs() <= 2.5);
            }
        }
    }
}
