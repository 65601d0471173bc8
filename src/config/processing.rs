//! `[processing]` (origin and dev): transcode templates, drawn files and job limits, and
//! `[notify]`: how notifications are retried and guarded. Pure but for checking that named
//! files exist.

use super::value::{existing_file, nonzero, parse_duration};
use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Processing (`[processing]`, origin and dev): transcode templates, the watermarks Cloud VoD
/// clients name, and the limits of one job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessing {
    /// Templates by name (`[processing.templates.NAME]`); `default` is built in (1080p, 720p,
    /// 480p, thumbnail) unless given here.
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, RawTemplate>,
    /// Watermark images by name, for Cloud VoD's `waterMarkName`.
    #[serde(default)]
    pub watermarks: std::collections::BTreeMap<String, PathBuf>,
    /// Subtitle files by name, for Cloud VoD's `subtitleId`, drawn onto the video.
    #[serde(default)]
    pub subtitles: std::collections::BTreeMap<String, PathBuf>,
    /// The longest one job may run before its upload fails, e.g. `"2h"`. Default `"2h"`.
    pub job_timeout: Option<String>,
    /// The largest video frame accepted, in pixels (width × height). Default 8192 × 4320.
    pub max_pixels: Option<u64>,
}

/// One transcode template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// The ladder: `{ height = 720, video_bitrate = "2800k" }` per rung; rungs taller than the
    /// source are left out (never upscaled).
    pub renditions: Vec<RawRendition>,
    /// AAC bit rate, e.g. `"128k"`. Default `"128k"`.
    pub audio_bitrate: Option<String>,
    /// Whether to make a JPEG thumbnail. Default true.
    pub thumbnail: Option<bool>,
    /// Whether to also package the renditions as HLS. Default false.
    pub hls: Option<bool>,
    /// An image (PNG) drawn at the bottom right of every rendition.
    pub watermark: Option<PathBuf>,
    /// A subtitle file (SRT, ASS, WebVTT) drawn onto every rendition.
    pub subtitles: Option<PathBuf>,
}

/// One rung of a template's ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRendition {
    /// Output height in pixels.
    pub height: u32,
    /// H.264 bit rate, e.g. `"2800k"` or `"5M"`.
    pub video_bitrate: String,
}

/// Notifications (`[notify]`, origin and dev).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// The wait before the first retry (at most 10 s), doubled on each retry. Default `"5s"`.
    pub first_retry: Option<String>,
    /// The longest wait between retries. Default `"1h"`.
    pub max_retry: Option<String>,
    /// How long a notification is retried before it is given up. Default `"24h"`.
    pub retry_window: Option<String>,
    /// Time limit of one request to the customer's application. Default `"10s"`.
    pub timeout: Option<String>,
    /// Whether notification URLs may reach private, loopback and link-local addresses. Default
    /// false on `uplink origin`, true on `uplink dev`.
    pub allow_private_addresses: Option<bool>,
    /// Notifications sent at once. Default 4.
    pub senders: Option<usize>,
}

pub(super) fn parse_bitrate(raw: &str, key: &str) -> Result<u64, ConfigError> {
    let (digits, factor) = match raw.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1_000),
        None => match raw.strip_suffix('M') {
            Some(d) => (d, 1_000_000),
            None => (raw, 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&n| (8_000..=200_000_000).contains(&n))
        .ok_or_else(|| {
            invalid(
                key,
                format!("{raw:?} is not a bit rate between 8k and 200M, like \"2800k\""),
            )
        })
}

impl RawProcessing {
    /// Checks every template and limit.
    ///
    /// # Errors
    /// The first unusable key.
    pub fn validate(&self) -> Result<Processing, ConfigError> {
        let mut templates = std::collections::BTreeMap::new();
        templates.insert(
            crate::template::DEFAULT_TEMPLATE.to_owned(),
            crate::template::Template::default(),
        );
        for (name, raw) in &self.templates {
            let key = format!("processing.templates.{name}");
            if raw.renditions.is_empty() {
                return Err(invalid(
                    &format!("{key}.renditions"),
                    "give at least one rung",
                ));
            }
            let mut renditions = Vec::new();
            for (i, r) in raw.renditions.iter().enumerate() {
                let at = format!("{key}.renditions[{i}]");
                if !(16..=8192).contains(&r.height) {
                    return Err(invalid(
                        &format!("{at}.height"),
                        "must be 16 to 8192 pixels",
                    ));
                }
                renditions.push(crate::template::Rendition {
                    height: r.height,
                    video_bitrate: parse_bitrate(&r.video_bitrate, &format!("{at}.video_bitrate"))?,
                });
            }
            if let Some(path) = &raw.watermark {
                drawn_file(path, &format!("{key}.watermark"))?;
            }
            if let Some(path) = &raw.subtitles {
                drawn_file(path, &format!("{key}.subtitles"))?;
            }
            templates.insert(
                name.clone(),
                crate::template::Template {
                    renditions,
                    audio_bitrate: parse_bitrate(
                        raw.audio_bitrate.as_deref().unwrap_or("128k"),
                        &format!("{key}.audio_bitrate"),
                    )?,
                    thumbnail: raw.thumbnail.unwrap_or(true),
                    hls: raw.hls.unwrap_or(false),
                    watermark: raw.watermark.clone(),
                    subtitles: raw.subtitles.clone(),
                },
            );
        }
        for (name, path) in &self.watermarks {
            drawn_file(path, &format!("processing.watermarks.{name}"))?;
        }
        for (name, path) in &self.subtitles {
            drawn_file(path, &format!("processing.subtitles.{name}"))?;
        }
        let max_pixels = self.max_pixels.unwrap_or(8192 * 4320);
        if max_pixels < 256 {
            return Err(invalid("processing.max_pixels", "must be at least 256"));
        }
        Ok(Processing {
            templates,
            watermarks: self.watermarks.clone(),
            subtitles: self.subtitles.clone(),
            job_timeout: parse_duration(
                self.job_timeout.as_deref().unwrap_or("2h"),
                "processing.job_timeout",
            )?,
            max_pixels,
        })
    }
}

/// A file drawn onto the video (watermark, subtitles): it must exist, and its path is written
/// into a filter graph, so it is kept to characters that need no escaping there.
pub(super) fn drawn_file(path: &Path, key: &str) -> Result<(), ConfigError> {
    let plain = path.to_str().is_some_and(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    });
    if !plain {
        return Err(invalid(
            key,
            format!(
                "{}: use a path of letters, digits, '/', '.', '_' and '-' only",
                path.display()
            ),
        ));
    }
    existing_file(path, key)
}

impl RawNotify {
    /// Checks every key; `dev` picks the default of `allow_private_addresses`.
    ///
    /// # Errors
    /// The first unusable key.
    pub fn validate(&self, dev: bool) -> Result<NotifySettings, ConfigError> {
        let get = |v: &Option<String>, default: &str, key: &str| {
            parse_duration(v.as_deref().unwrap_or(default), key)
        };
        let first_retry = get(&self.first_retry, "5s", "notify.first_retry")?;
        if first_retry.is_zero() || first_retry > Duration::from_secs(10) {
            return Err(invalid(
                "notify.first_retry",
                "must be more than 0 and at most 10s",
            ));
        }
        Ok(NotifySettings {
            first_retry,
            max_retry: get(&self.max_retry, "1h", "notify.max_retry")?.max(first_retry),
            retry_window: get(&self.retry_window, "24h", "notify.retry_window")?,
            timeout: get(&self.timeout, "10s", "notify.timeout")?,
            allow_private_addresses: self.allow_private_addresses.unwrap_or(dev),
            senders: nonzero(self.senders.unwrap_or(4), "notify.senders")?,
        })
    }
}

/// Validated processing settings.
#[derive(Debug, Clone)]
pub struct Processing {
    /// Templates by name; always has `default`.
    pub templates: std::collections::BTreeMap<String, crate::template::Template>,
    /// Watermark images by name.
    pub watermarks: std::collections::BTreeMap<String, PathBuf>,
    /// Subtitle files by name.
    pub subtitles: std::collections::BTreeMap<String, PathBuf>,
    /// The longest one job may run.
    pub job_timeout: Duration,
    /// The largest frame accepted, in pixels.
    pub max_pixels: u64,
}

/// Validated notification settings.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The wait before the first retry.
    pub first_retry: Duration,
    /// The longest wait between retries.
    pub max_retry: Duration,
    /// How long a notification is retried.
    pub retry_window: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Whether private addresses may be notified.
    pub allow_private_addresses: bool,
    /// Notifications sent at once.
    pub senders: usize,
}
