//! Transcoding in process with FFmpeg's libraries: the source is read and decoded once; every
//! rendition of the plan (see [`crate::template::plan`]) is either copied packet by packet
//! (already H.264/AAC at its size) or filtered (watermark, scale) and encoded to H.264 with
//! libx264; audio is resampled to 48 kHz stereo and encoded to AAC once for all of them. A JPEG
//! thumbnail (sized by [`crate::template::thumbnail_size`]) is cut from the first frame at one
//! second (or half the duration).
//!
//! Decoding, scaling and encoding use every core (libavcodec's default of one thread is
//! overridden everywhere). The caller's deadline is checked on every packet.
//!
//! Blocking code: call it from a blocking thread. Must not depend on the database or the store.

use super::{clear_codec_tag, open, probe_input, remux, MediaError, Probe};
use crate::template::{self, Planned, Template, Variant};
use ffmpeg::{codec, encoder, filter, format, frame, media, picture, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

/// Audio is encoded at this rate, in stereo.
const AUDIO_RATE: i32 = 48_000;

/// The limits of one job.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// When the job must have finished.
    pub deadline: Instant,
    /// The largest frame accepted, in pixels.
    pub max_pixels: u64,
}

/// What an output file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An H.264 + AAC MP4 rendition.
    Video,
    /// A JPEG thumbnail.
    Thumbnail,
    /// An HLS master playlist.
    Hls,
}

/// One file made.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Its name (`720p.mp4`, `thumbnail.jpg`).
    pub name: String,
    /// Where it is, in the job's scratch directory.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Average bit rate over the file (bits per second); 0 for a thumbnail.
    pub bitrate: u64,
    /// Bytes.
    pub size: u64,
    /// Duration in milliseconds (a thumbnail has none).
    pub duration_ms: Option<i64>,
    /// Frames encoded (0 when nothing was: a copied rendition, a thumbnail, a playlist).
    pub frames: u64,
}

/// What transcoding found and made.
#[derive(Debug, Clone)]
pub struct Transcoded {
    /// The source, as probed.
    pub probe: Probe,
    /// The renditions, tallest first, then the thumbnail and the HLS master playlist.
    pub outputs: Vec<Rendered>,
    /// Files stored beside the outputs but not listed (HLS media playlists and segments), by
    /// their name relative to the outputs (`hls/720p_000.ts`).
    pub files: Vec<(String, PathBuf)>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// Names the step an FFmpeg error came from.
fn step(what: &'static str) -> impl FnOnce(ffmpeg::Error) -> MediaError {
    move |e| MediaError::Encode(what, e)
}

/// A video filter graph `in → spec → out` fed with the decoder's frames.
fn video_graph(
    decoder: &ffmpeg::decoder::Video,
    time_base: Rational,
    spec: &str,
) -> Result<filter::Graph, ffmpeg::Error> {
    let mut graph = filter::Graph::new();
    let aspect = decoder.aspect_ratio();
    let aspect = if aspect.numerator() > 0 && aspect.denominator() > 0 {
        aspect
    } else {
        Rational(1, 1)
    };
    let args = format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        decoder.width(),
        decoder.height(),
        ffmpeg::ffi::AVPixelFormat::from(decoder.format()) as i32,
        time_base.numerator(),
        time_base.denominator().max(1),
        aspect.numerator(),
        aspect.denominator(),
    );
    let find = |name| filter::find(name).ok_or(ffmpeg::Error::FilterNotFound);
    graph.add(&find("buffer")?, "in", &args)?;
    graph.add(&find("buffersink")?, "out", "")?;
    graph.output("in", 0)?.input("out", 0)?.parse(spec)?;
    graph.validate()?;
    Ok(graph)
}

/// Feeds `frame` to a filter graph, or tells it the stream ended (`None`). The caller keeps its
/// frame: one decoded frame goes to every rendition's graph and the thumbnail's.
fn push(graph: &mut filter::Graph, frame: Option<&frame::Video>) -> Result<(), MediaError> {
    let mut source = graph
        .get("in")
        .ok_or(MediaError::Internal("filter input"))?;
    match frame {
        Some(f) => add_keeping_ref(&mut source, f),
        None => source.source().flush(),
    }
    .map_err(step("filtering video"))
}

/// `av_buffersrc_add_frame_flags(KEEP_REF)`: ffmpeg-next's `Source::add` moves the frame's
/// buffers into the graph, leaving the caller an empty frame, and has no flag to keep them.
#[allow(unsafe_code)]
fn add_keeping_ref(
    source: &mut filter::Context,
    frame: &frame::Video,
) -> Result<(), ffmpeg::Error> {
    // SAFETY: `source` is a live buffer source of a graph this thread owns and `frame` a valid
    // AVFrame it borrows; with KEEP_REF FFmpeg takes references of its own and neither frees
    // nor changes the caller's frame.
    let ret = unsafe {
        ffmpeg::ffi::av_buffersrc_add_frame_flags(
            source.as_mut_ptr(),
            frame.as_ptr().cast_mut(),
            ffmpeg::ffi::AV_BUFFERSRC_FLAG_KEEP_REF as i32,
        )
    };
    if ret < 0 {
        Err(ffmpeg::Error::from(ret))
    } else {
        Ok(())
    }
}

/// Takes the next filtered frame, if one is ready.
fn pull(graph: &mut filter::Graph, out: &mut frame::Video) -> Result<bool, MediaError> {
    let mut sink = graph
        .get("out")
        .ok_or(MediaError::Internal("filter output"))?;
    Ok(sink.sink().frame(out).is_ok())
}

/// Rescales a packet from `from` to its output stream's time base and writes it.
fn write_packet(
    octx: &mut format::context::Output,
    mut packet: Packet,
    stream: usize,
    from: Rational,
) -> Result<(), MediaError> {
    let to = octx
        .stream(stream)
        .ok_or(MediaError::Internal("output stream"))?
        .time_base();
    packet.rescale_ts(from, to);
    packet.set_position(-1);
    packet.set_stream(stream);
    packet
        .write_interleaved(octx)
        .map_err(step("writing an output"))
}

/// An H.264 encoder and its filter graph, for one rendition.
struct VideoEncoder {
    graph: filter::Graph,
    encoder: encoder::Video,
    time_base: Rational,
    /// Frames sent to the encoder.
    frames: u64,
}

/// One output MP4 being written.
struct Rung {
    planned: Planned,
    path: PathBuf,
    octx: format::context::Output,
    /// `None`: the source's packets are copied.
    video: Option<VideoEncoder>,
    /// The output's audio stream, if the source has audio.
    audio: Option<usize>,
}

impl Rung {
    /// Filters and encodes one decoded frame (or flushes everything, for `None`).
    fn take(&mut self, frame: Option<&frame::Video>) -> Result<(), MediaError> {
        let Rung { video, octx, .. } = self;
        let Some(v) = video.as_mut() else {
            return Ok(());
        };
        push(&mut v.graph, frame)?;
        let mut filtered = frame::Video::empty();
        while pull(&mut v.graph, &mut filtered)? {
            filtered.set_kind(picture::Type::None);
            v.encoder
                .send_frame(&filtered)
                .map_err(step("encoding a frame"))?;
            v.frames += 1;
            drain_video(&mut v.encoder, octx, v.time_base)?;
        }
        if frame.is_none() {
            v.encoder.send_eof().map_err(step("flushing an encoder"))?;
            drain_video(&mut v.encoder, octx, v.time_base)?;
        }
        Ok(())
    }
}

fn drain_video(
    encoder: &mut encoder::Video,
    octx: &mut format::context::Output,
    time_base: Rational,
) -> Result<(), MediaError> {
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        write_packet(
            octx,
            std::mem::replace(&mut packet, Packet::empty()),
            0,
            time_base,
        )?;
    }
    Ok(())
}

/// The H.264 encoder of one rendition, its stream added to `octx`.
fn h264(
    octx: &mut format::context::Output,
    planned: &Planned,
    time_base: Rational,
    frame_rate: Rational,
) -> Result<encoder::Video, MediaError> {
    let codec = encoder::find_by_name("libx264")
        .or_else(|| encoder::find(codec::Id::H264))
        .ok_or(MediaError::NoEncoder("H.264"))?;
    let global = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let mut ost = octx
        .add_stream(codec)
        .map_err(step("adding an output stream"))?;
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(step("creating an encoder"))?;
    enc.set_width(planned.width);
    enc.set_height(planned.height);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(frame_rate));
    enc.set_aspect_ratio(Rational(1, 1));
    enc.set_bit_rate(usize::try_from(planned.video_bitrate).unwrap_or(usize::MAX));
    // A key frame every two seconds, so players can switch and seek.
    let fps = f64::from(frame_rate).clamp(1.0, 240.0);
    enc.set_gop((fps * 2.0).round() as u32);
    if global {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    opts.set("preset", "veryfast");
    opts.set("threads", "auto");
    let enc = enc
        .open_with(opts)
        .map_err(step("opening the H.264 encoder"))?;
    ost.set_parameters(&enc);
    ost.set_time_base(time_base);
    Ok(enc)
}

/// Audio decoding, resampling and AAC encoding, shared by every encoded rendition.
struct AudioEncoder {
    decoder: ffmpeg::decoder::Audio,
    graph: filter::Graph,
    encoder: encoder::Audio,
    /// Samples fed in so far, for the input frames' timestamps.
    fed: i64,
}

impl AudioEncoder {
    fn new(
        stream: &format::stream::Stream<'_>,
        bitrate: u64,
        global: bool,
    ) -> Result<Self, MediaError> {
        let decoder = decoding(stream)?
            .decoder()
            .audio()
            .map_err(MediaError::NotVideo)?;
        let codec = encoder::find(codec::Id::AAC).ok_or(MediaError::NoEncoder("AAC"))?;
        let mut enc = codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(step("creating an encoder"))?;
        enc.set_rate(AUDIO_RATE);
        enc.set_channel_layout(ffmpeg::ChannelLayout::STEREO);
        enc.set_format(format::Sample::F32(format::sample::Type::Planar));
        enc.set_bit_rate(usize::try_from(bitrate).unwrap_or(usize::MAX));
        enc.set_time_base(Rational(1, AUDIO_RATE));
        if global {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc
            .open_as(codec)
            .map_err(step("opening the AAC encoder"))?;

        let layout = match decoder.channel_layout() {
            l if l.bits() != 0 => l,
            _ => ffmpeg::ChannelLayout::default(i32::from(decoder.channels().max(1))),
        };
        let mut graph = filter::Graph::new();
        let args = format!(
            "time_base=1/{rate}:sample_rate={rate}:sample_fmt={}:channel_layout=0x{:x}",
            decoder.format().name(),
            layout.bits(),
            rate = decoder.rate().max(1),
        );
        let find = |name| filter::find(name).ok_or(MediaError::Internal("audio filter"));
        graph
            .add(&find("abuffer")?, "in", &args)
            .map_err(MediaError::NotVideo)?;
        graph
            .add(&find("abuffersink")?, "out", "")
            .map_err(step("building the audio filter"))?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| {
                p.parse(&format!(
                    "aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
                ))
            })
            .map_err(step("building the audio filter"))?;
        graph.validate().map_err(step("checking a filter graph"))?;
        if let Some(mut out) = graph.get("out") {
            out.sink().set_frame_size(encoder.frame_size());
        }
        Ok(Self {
            decoder,
            graph,
            encoder,
            fed: 0,
        })
    }

    /// Decodes `packet` (or flushes everything, for `None`) and returns the AAC packets that
    /// come out, in 1/48000 time base.
    fn take(&mut self, packet: Option<&Packet>) -> Result<Vec<Packet>, MediaError> {
        match packet {
            // A damaged audio packet is skipped, as players do.
            Some(p) => {
                let _ = self.decoder.send_packet(p);
            }
            None => {
                let _ = self.decoder.send_eof();
            }
        }
        let mut decoded = frame::Audio::empty();
        let mut src = self
            .graph
            .get("in")
            .ok_or(MediaError::Internal("audio in"))?;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            decoded.set_pts(Some(self.fed));
            self.fed += i64::try_from(decoded.samples()).unwrap_or(0);
            src.source()
                .add(&decoded)
                .map_err(step("filtering audio"))?;
        }
        if packet.is_none() {
            src.source().flush().map_err(step("filtering audio"))?;
        }
        let mut out = Vec::new();
        let mut resampled = frame::Audio::empty();
        let mut sink = self
            .graph
            .get("out")
            .ok_or(MediaError::Internal("audio out"))?;
        while sink.sink().frame(&mut resampled).is_ok() {
            self.encoder
                .send_frame(&resampled)
                .map_err(step("encoding a frame"))?;
            drain(&mut self.encoder, &mut out);
        }
        if packet.is_none() {
            self.encoder
                .send_eof()
                .map_err(step("flushing an encoder"))?;
            drain(&mut self.encoder, &mut out);
        }
        Ok(out)
    }
}

fn drain(encoder: &mut encoder::Audio, out: &mut Vec<Packet>) {
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        out.push(std::mem::replace(&mut packet, Packet::empty()));
    }
}

/// The filter of a rendition: the watermark, the scale, the subtitles. (The configuration keeps
/// both paths to characters that need no escaping in a filter graph.)
fn rendition_filter(planned: &Planned, template: &Template) -> String {
    let subtitles = template
        .subtitles
        .as_ref()
        .map(|p| format!(",subtitles=filename={}", p.display()))
        .unwrap_or_default();
    let chain = format!(
        "scale=w={}:h={}:threads={},setsar=1{subtitles},format=yuv420p",
        planned.width,
        planned.height,
        threads()
    );
    match &template.watermark {
        Some(path) => format!(
            "movie=filename={}[wm];[in][wm]overlay=x=main_w-overlay_w-16:y=main_h-overlay_h-16,{chain}[out]",
            path.display()
        ),
        None => format!("[in]{chain}[out]"),
    }
}

/// Packages each MP4 rendition as HLS (remuxed, not encoded again) under `dir/hls`, with a
/// master playlist over them; returns the master and the files it refers to.
fn package_hls(
    renditions: &[Rendered],
    dir: &Path,
) -> Result<(Rendered, Vec<(String, PathBuf)>), MediaError> {
    let hls = dir.join("hls");
    std::fs::create_dir_all(&hls).map_err(MediaError::Scratch)?;
    let mut variants = Vec::new();
    for r in renditions {
        let stem = r.name.trim_end_matches(".mp4");
        let segments = hls.join(format!("{stem}_%03d.ts"));
        let segments = segments.to_string_lossy();
        remux(
            &r.path,
            &hls.join(format!("{stem}.m3u8")),
            "hls",
            &[
                ("hls_time", "6"),
                ("hls_playlist_type", "vod"),
                ("hls_segment_filename", &segments),
            ],
        )?;
        variants.push(Variant {
            playlist: format!("{stem}.m3u8"),
            bandwidth: r.bitrate,
            width: r.width,
            height: r.height,
        });
    }
    let master = hls.join("master.m3u8");
    let text = template::master_playlist(&variants);
    std::fs::write(&master, &text).map_err(MediaError::Scratch)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&hls).map_err(MediaError::Scratch)? {
        let entry = entry.map_err(MediaError::Scratch)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "master.m3u8" {
            files.push((format!("hls/{name}"), entry.path()));
        }
    }
    files.sort();
    let master = Rendered {
        name: "hls/master.m3u8".into(),
        path: master,
        kind: Kind::Hls,
        width: renditions.first().map_or(0, |r| r.width),
        height: renditions.first().map_or(0, |r| r.height),
        bitrate: renditions.first().map_or(0, |r| r.bitrate),
        size: text.len() as u64,
        duration_ms: renditions.first().and_then(|r| r.duration_ms),
        frames: 0,
    };
    Ok((master, files))
}

/// Makes the thumbnail from one decoded frame.
fn thumbnail(
    decoder: &ffmpeg::decoder::Video,
    time_base: Rational,
    frame: &frame::Video,
    path: &Path,
) -> Result<Rendered, MediaError> {
    let (width, height) = template::thumbnail_size(decoder.width(), decoder.height());
    let mut graph = video_graph(
        decoder,
        time_base,
        &format!("[in]scale=w={width}:h={height},setsar=1,format=yuvj420p[out]"),
    )
    .map_err(step("building the thumbnail filter"))?;
    push(&mut graph, Some(frame))?;
    push(&mut graph, None)?;
    let mut scaled = frame::Video::empty();
    if !pull(&mut graph, &mut scaled)? {
        return Err(MediaError::Internal("thumbnail frame"));
    }
    scaled.set_pts(Some(0));
    let codec = encoder::find(codec::Id::MJPEG).ok_or(MediaError::NoEncoder("JPEG"))?;
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(step("creating an encoder"))?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(format::Pixel::YUVJ420P);
    enc.set_time_base(Rational(1, 25));
    let mut enc = enc
        .open_as(codec)
        .map_err(step("opening the JPEG encoder"))?;
    enc.send_frame(&scaled)
        .map_err(step("encoding the thumbnail"))?;
    enc.send_eof().map_err(step("encoding the thumbnail"))?;
    let mut packet = Packet::empty();
    enc.receive_packet(&mut packet)
        .map_err(step("encoding a frame"))?;
    let data = packet
        .data()
        .ok_or(MediaError::Internal("empty thumbnail"))?;
    std::fs::write(path, data).map_err(MediaError::Scratch)?;
    Ok(Rendered {
        name: "thumbnail.jpg".into(),
        path: path.to_owned(),
        kind: Kind::Thumbnail,
        width,
        height,
        bitrate: 0,
        size: data.len() as u64,
        duration_ms: None,
        frames: 0,
    })
}

/// Transcodes `src` by `template` into files in `dir`, reporting progress (0–100) as it goes.
///
/// # Errors
/// The file is not a usable video, breaks a limit, or cannot be encoded.
pub fn transcode(
    src: &Path,
    dir: &Path,
    template: &Template,
    limits: Limits,
    progress: &AtomicU8,
) -> Result<Transcoded, MediaError> {
    let mut ictx = open(src)?;
    let probe = probe_input(&ictx)?;
    let (w, h) = probe.video_size;
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(MediaError::TooLarge(w, h));
    }
    let streams = streams(&ictx)?;
    let (vstream, astream) = (&streams.video, streams.audio.as_ref());
    let (vi, v_tb) = (vstream.index(), vstream.time_base());
    let mut vdec = video_decoder(vstream)?;
    let (ai, a_tb) = astream.map_or((None, Rational(1, 1)), |s| (Some(s.index()), s.time_base()));
    let plan = template::plan(template, streams.as_source(probe.video_size));
    let encoding = plan.iter().any(|p| !p.copy);
    let mut audio = match (astream, encoding) {
        (Some(s), true) => Some(AudioEncoder::new(s, template.audio_bitrate, true)?),
        _ => None,
    };

    let sources = Sources {
        video: vstream,
        decoder: &vdec,
        audio: astream,
        audio_encoder: audio.as_ref(),
        frame_rate: streams.frame_rate,
    };
    let mut rungs = open_rungs(plan, dir, template, &sources)?;

    let ticks_per_second = i64::from(v_tb.denominator()) / i64::from(v_tb.numerator().max(1));
    let duration_ts = probe.duration_ms.map(|ms| ms * ticks_per_second / 1000);
    let mut thumb = template
        .thumbnail
        .then(|| Thumb::planned(dir, duration_ts, ticks_per_second));
    let decode_video = encoding || thumb.is_some();
    let pass = Pass {
        v_tb,
        a_tb,
        vdec: &mut vdec,
        rungs: &mut rungs,
        thumb: thumb.as_mut(),
        audio: audio.as_mut(),
        decode_video,
        decoded_frames: 0,
        read_span: None,
    };
    pump(
        &mut ictx,
        pass,
        (vi, ai),
        limits.deadline,
        (duration_ts, ticks_per_second),
        progress,
    )?;
    let mut outputs = finish_rungs(rungs, &probe)?;
    if let Some(t) = thumb {
        outputs.extend(t.finish(&vdec, v_tb)?);
    }
    let files = if template.hls {
        hls(&mut outputs, dir)?
    } else {
        Vec::new()
    };
    progress.store(100, Ordering::Relaxed);
    Ok(Transcoded {
        probe,
        outputs,
        files,
    })
}

/// The source's streams a transcode reads: the best video stream, the best audio stream if
/// any, and the video's frame rate (25 when the file does not say).
struct Streams<'a> {
    video: format::stream::Stream<'a>,
    audio: Option<format::stream::Stream<'a>>,
    frame_rate: Rational,
}

impl Streams<'_> {
    /// The source as the rendition ladder sees it: its size, whether its video is H.264 and
    /// its audio (if any) AAC, so that they may be copied.
    fn as_source(&self, (width, height): (u32, u32)) -> template::Source {
        template::Source {
            width,
            height,
            h264: self.video.parameters().id() == codec::Id::H264,
            audio_ok: (self.audio.as_ref()).is_none_or(|s| s.parameters().id() == codec::Id::AAC),
        }
    }
}

fn streams(ictx: &format::context::Input) -> Result<Streams<'_>, MediaError> {
    let video = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or(MediaError::NoVideoStream)?;
    let frame_rate = match video.avg_frame_rate() {
        r if r.numerator() > 0 && r.denominator() > 0 => r,
        _ => Rational(25, 1),
    };
    Ok(Streams {
        audio: ictx.streams().best(media::Type::Audio),
        video,
        frame_rate,
    })
}

/// Reads the source's packets once, video stream `streams.0` and audio `streams.1`, feeding
/// `pass` until `deadline` and reporting progress against the declared duration
/// (`duration.0`, in ticks; `duration.1` ticks a second); then checks the source was not cut
/// short of that duration.
fn pump(
    ictx: &mut format::context::Input,
    mut pass: Pass<'_>,
    streams: (usize, Option<usize>),
    deadline: Instant,
    duration: (Option<i64>, i64),
    progress: &AtomicU8,
) -> Result<(), MediaError> {
    let (duration_ts, ticks_per_second) = duration;
    for (stream, packet) in ictx.packets() {
        if Instant::now() > deadline {
            return Err(MediaError::TimedOut);
        }
        if stream.index() == streams.0 {
            pass.video(&packet)?;
            if let Some(pct) = pass.percent(duration_ts) {
                progress.store(pct, Ordering::Relaxed);
            }
        } else if Some(stream.index()) == streams.1 {
            pass.audio(&packet)?;
        }
    }
    let read_span = pass.finish()?;
    if let (Some(declared), Some((first, last))) = (duration_ts, read_span) {
        if truncated(declared, last - first, ticks_per_second) {
            let ms = |ticks: i64| ticks * 1000 / ticks_per_second.max(1);
            return Err(MediaError::Truncated {
                declared_ms: ms(declared),
                readable_ms: ms(last - first),
            });
        }
    }
    Ok(())
}

/// One pass over the source's packets, feeding every rendition: copied renditions get the
/// packets as they are, encoded ones the decoded frames; the thumbnail is taken on the way.
struct Pass<'a> {
    v_tb: Rational,
    a_tb: Rational,
    vdec: &'a mut ffmpeg::decoder::Video,
    rungs: &'a mut [Rung],
    thumb: Option<&'a mut Thumb>,
    audio: Option<&'a mut AudioEncoder>,
    /// Whether frames are needed (an encoded rendition or a thumbnail).
    decode_video: bool,
    decoded_frames: u64,
    /// The first and last video timestamps read, to tell a truncated file.
    read_span: Option<(i64, i64)>,
}

impl Pass<'_> {
    fn video(&mut self, packet: &Packet) -> Result<(), MediaError> {
        if let Some(pts) = packet.pts() {
            let (_, last) = self.read_span.get_or_insert((pts, pts));
            *last = (*last).max(pts + packet.duration().max(0));
        }
        for rung in self.rungs.iter_mut().filter(|r| r.video.is_none()) {
            write_packet(&mut rung.octx, packet.clone(), 0, self.v_tb)?;
        }
        if self.decode_video {
            // A damaged packet is skipped, as players do; a file with nothing decodable
            // fails after the pass.
            let _ = self.vdec.send_packet(packet);
            let thumb = self.thumb.as_deref_mut();
            self.decoded_frames += decoded(self.vdec, self.v_tb, self.rungs, thumb)?;
        }
        Ok(())
    }

    fn audio(&mut self, packet: &Packet) -> Result<(), MediaError> {
        for rung in self.rungs.iter_mut().filter(|r| r.video.is_none()) {
            if let Some(out) = rung.audio {
                write_packet(&mut rung.octx, packet.clone(), out, self.a_tb)?;
            }
        }
        if let Some(a) = self.audio.as_deref_mut() {
            let packets = a.take(Some(packet))?;
            write_audio(self.rungs, &packets)?;
        }
        Ok(())
    }

    /// Flushes the decoder and the audio encoder at the end of the source; the span of video
    /// timestamps read. A video with no decodable frame (when frames were needed) fails.
    fn finish(mut self) -> Result<Option<(i64, i64)>, MediaError> {
        if self.decode_video {
            let _ = self.vdec.send_eof();
            let thumb = self.thumb.as_deref_mut();
            self.decoded_frames += decoded(self.vdec, self.v_tb, self.rungs, thumb)?;
            if self.decoded_frames == 0 {
                return Err(MediaError::Undecodable);
            }
        }
        if let Some(a) = self.audio.as_deref_mut() {
            let packets = a.take(None)?;
            write_audio(self.rungs, &packets)?;
        }
        Ok(self.read_span)
    }

    /// How far through the source's declared duration the pass is, 0 to 99.
    fn percent(&self, duration_ts: Option<i64>) -> Option<u8> {
        let (first, last) = self.read_span?;
        let total = duration_ts.filter(|d| *d > 0)?;
        let pct = ((last - first).clamp(0, total) * 100 / total).clamp(0, 99);
        Some(u8::try_from(pct).unwrap_or(99))
    }
}

/// A decoding context for a source stream, on every core.
fn decoding(stream: &format::stream::Stream<'_>) -> Result<codec::Context, MediaError> {
    let mut ctx =
        codec::Context::from_parameters(stream.parameters()).map_err(MediaError::NotVideo)?;
    ctx.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        count: threads(),
        ..Default::default()
    });
    Ok(ctx)
}

/// The source's video decoder.
fn video_decoder(
    stream: &format::stream::Stream<'_>,
) -> Result<ffmpeg::decoder::Video, MediaError> {
    decoding(stream)?
        .decoder()
        .video()
        .map_err(MediaError::NotVideo)
}

/// Packages the video renditions among `outputs` as HLS: the master playlist joins the
/// outputs; the media playlists and segments are returned, to be stored beside them.
fn hls(outputs: &mut Vec<Rendered>, dir: &Path) -> Result<Vec<(String, PathBuf)>, MediaError> {
    let renditions: Vec<Rendered> = outputs
        .iter()
        .filter(|o| o.kind == Kind::Video)
        .cloned()
        .collect();
    let (master, segments) = package_hls(&renditions, dir)?;
    outputs.push(master);
    Ok(segments)
}

/// What every rendition reads from: the source's video stream and its decoder, its audio
/// stream, the audio encoder shared by the encoded renditions, and the frame rate.
struct Sources<'a, 's> {
    video: &'a format::stream::Stream<'s>,
    decoder: &'a ffmpeg::decoder::Video,
    audio: Option<&'a format::stream::Stream<'s>>,
    audio_encoder: Option<&'a AudioEncoder>,
    frame_rate: Rational,
}

/// Opens one output per planned rendition (copied streams or an encoder and its filter graph)
/// and writes its header.
fn open_rungs(
    plan: Vec<Planned>,
    dir: &Path,
    template: &Template,
    sources: &Sources<'_, '_>,
) -> Result<Vec<Rung>, MediaError> {
    let v_tb = sources.video.time_base();
    let mut rungs = Vec::new();
    for planned in plan {
        let path = dir.join(format!("{}.mp4", planned.name));
        let mut octx = format::output_as(&path, "mp4").map_err(step("creating an output"))?;
        let video = if planned.copy {
            let mut ost = octx
                .add_stream(encoder::find(codec::Id::None))
                .map_err(step("adding an output stream"))?;
            ost.set_parameters(sources.video.parameters());
            clear_codec_tag(&mut ost);
            None
        } else {
            let encoder = h264(&mut octx, &planned, v_tb, sources.frame_rate)?;
            let spec = rendition_filter(&planned, template);
            let graph = video_graph(sources.decoder, v_tb, &spec)
                .map_err(step("building a filter graph"))?;
            Some(VideoEncoder {
                graph,
                encoder,
                time_base: v_tb,
                frames: 0,
            })
        };
        let audio_out = match (sources.audio, sources.audio_encoder, planned.copy) {
            (Some(s), _, true) => {
                let mut ost = octx
                    .add_stream(encoder::find(codec::Id::None))
                    .map_err(step("adding an output stream"))?;
                ost.set_parameters(s.parameters());
                clear_codec_tag(&mut ost);
                Some(1)
            }
            (Some(_), Some(a), false) => {
                let mut ost = octx
                    .add_stream(a.encoder.codec())
                    .map_err(step("adding an output stream"))?;
                ost.set_parameters(&a.encoder);
                ost.set_time_base(Rational(1, AUDIO_RATE));
                Some(1)
            }
            _ => None,
        };
        let mut opts = Dictionary::new();
        opts.set("movflags", "+faststart");
        octx.write_header_with(opts)
            .map_err(step("starting an output"))?;
        rungs.push(Rung {
            planned,
            path,
            octx,
            video,
            audio: audio_out,
        });
    }
    Ok(rungs)
}

/// Flushes and closes every rendition; what each became.
fn finish_rungs(rungs: Vec<Rung>, probe: &Probe) -> Result<Vec<Rendered>, MediaError> {
    let mut outputs = Vec::new();
    for mut rung in rungs {
        rung.take(None)?;
        rung.octx
            .write_trailer()
            .map_err(step("finishing an output"))?;
        let size = std::fs::metadata(&rung.path)
            .map_err(MediaError::Scratch)?
            .len();
        let bitrate = probe
            .duration_ms
            .filter(|d| *d > 0)
            .map_or(0, |d| size * 8 * 1000 / d.unsigned_abs());
        outputs.push(Rendered {
            name: format!("{}.mp4", rung.planned.name),
            path: rung.path,
            kind: Kind::Video,
            width: rung.planned.width,
            height: rung.planned.height,
            bitrate,
            size,
            duration_ms: probe.duration_ms,
            frames: rung.video.as_ref().map_or(0, |v| v.frames),
        });
    }
    Ok(outputs)
}

/// Whether a video that says it lasts `declared` but whose packets span only `read` (both in
/// ticks) is cut short: more than a tenth and more than a second missing.
fn truncated(declared: i64, read: i64, ticks_per_second: i64) -> bool {
    let missing = declared - read;
    missing > declared / 10 && missing > ticks_per_second
}

/// Where the thumbnail stands.
struct Thumb {
    /// The time (in the video's time base) of the frame to take.
    at: i64,
    /// Where to write it.
    path: PathBuf,
    /// Made.
    made: Option<Rendered>,
    /// The first frame, in case the video ends before `at`.
    first: Option<frame::Video>,
}

impl Thumb {
    /// The thumbnail taken into `dir`: the first frame at one second, or at half a video
    /// shorter than two (`duration_ts` in ticks, `ticks_per_second` of them a second).
    fn planned(dir: &Path, duration_ts: Option<i64>, ticks_per_second: i64) -> Self {
        Self {
            at: duration_ts.map_or(0, |d| (d / 2).min(ticks_per_second)),
            path: dir.join("thumbnail.jpg"),
            made: None,
            first: None,
        }
    }

    /// The thumbnail made during the pass, or for a video shorter than its time, its first
    /// frame; `None` when no frame was decoded.
    fn finish(
        self,
        vdec: &ffmpeg::decoder::Video,
        time_base: Rational,
    ) -> Result<Option<Rendered>, MediaError> {
        match (self.made, self.first) {
            (Some(made), _) => Ok(Some(made)),
            (None, Some(first)) => thumbnail(vdec, time_base, &first, &self.path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// Takes every frame the decoder has ready to the thumbnail and the encoded renditions;
/// returns how many there were.
fn decoded(
    vdec: &mut ffmpeg::decoder::Video,
    time_base: Rational,
    rungs: &mut [Rung],
    mut thumb: Option<&mut Thumb>,
) -> Result<u64, MediaError> {
    let mut frame = frame::Video::empty();
    let mut n = 0;
    while vdec.receive_frame(&mut frame).is_ok() {
        n += 1;
        let ts = frame.timestamp();
        frame.set_pts(ts);
        if let Some(t) = thumb.as_deref_mut().filter(|t| t.made.is_none()) {
            if ts.unwrap_or(0) >= t.at {
                t.made = Some(thumbnail(vdec, time_base, &frame, &t.path)?);
                t.first = None;
            } else if t.first.is_none() {
                t.first = Some(frame.clone());
            }
        }
        for rung in rungs.iter_mut() {
            rung.take(Some(&frame))?;
        }
    }
    Ok(n)
}

fn write_audio(rungs: &mut [Rung], packets: &[Packet]) -> Result<(), MediaError> {
    for rung in rungs.iter_mut().filter(|r| r.video.is_some()) {
        if let Some(out) = rung.audio {
            for p in packets {
                write_packet(&mut rung.octx, p.clone(), out, Rational(1, AUDIO_RATE))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;
    use std::process::Command;
    use std::time::Duration;

    /// A short test video made with the ffmpeg command (MPEG-4 + AAC in Matroska).
    fn video(dir: &Path, size: &str, seconds: u32) -> PathBuf {
        let path = dir.join(format!("src-{size}-{seconds}.mkv"));
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc=duration={seconds}:size={size}:rate=25"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=duration={seconds}"))
            .args(["-c:v", "mpeg4", "-c:a", "aac", "-shortest"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs (apt-get install ffmpeg)");
        assert!(ok.success());
        path
    }

    fn limits() -> Limits {
        Limits {
            deadline: Instant::now() + Duration::from_secs(120),
            max_pixels: 8192 * 4320,
        }
    }

    #[test]
    fn renditions_are_h264_at_their_size_with_a_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let src = video(dir.path(), "640x360", 2);
        let progress = AtomicU8::new(0);
        let template = Template {
            renditions: vec![
                crate::template::Rendition {
                    height: 360,
                    video_bitrate: 800_000,
                },
                crate::template::Rendition {
                    height: 180,
                    video_bitrate: 300_000,
                },
            ],
            ..Template::default()
        };
        let out = transcode(&src, dir.path(), &template, limits(), &progress).unwrap();
        let sizes: Vec<_> = out
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.width, o.height))
            .collect();
        assert_eq!(
            sizes,
            [
                ("360p.mp4", 640, 360),
                ("180p.mp4", 320, 180),
                ("thumbnail.jpg", 640, 360)
            ]
        );
        assert_eq!(progress.load(Ordering::Relaxed), 100);
        for o in &out.outputs[..2] {
            let mut ictx = open(&o.path).unwrap();
            let probe = probe_input(&ictx).unwrap();
            assert_eq!(probe.video_size, (o.width, o.height));
            assert!(
                probe
                    .duration_ms
                    .is_some_and(|d| (1900..=2200).contains(&d)),
                "{probe:?}"
            );
            let v = ictx.streams().best(media::Type::Video).unwrap();
            assert_eq!(v.parameters().id(), codec::Id::H264);
            assert_eq!(probe.audio_streams, 1);
            assert!(ictx.packets().count() > 40);
        }
    }

    #[test]
    fn hls_watermark_and_subtitles() {
        let dir = tempfile::tempdir().unwrap();
        let src = video(dir.path(), "320x240", 8);
        let logo = dir.path().join("logo.png");
        let made = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "color=c=red:s=32x32",
                "-frames:v",
                "1",
            ])
            .arg(&logo)
            .status()
            .unwrap();
        assert!(made.success());
        let subs = dir.path().join("subs.srt");
        std::fs::write(&subs, "1\n00:00:00,000 --> 00:00:05,000\nHello\n").unwrap();
        let template = Template {
            hls: true,
            watermark: Some(logo),
            subtitles: Some(subs),
            ..Template::default()
        };
        let out = transcode(&src, dir.path(), &template, limits(), &AtomicU8::new(0)).unwrap();
        let names: Vec<&str> = out.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["240p.mp4", "thumbnail.jpg", "hls/master.m3u8"]);
        let master = std::fs::read_to_string(&out.outputs[2].path).unwrap();
        assert!(master.contains("RESOLUTION=320x240\n240p.m3u8"), "{master}");
        let files: Vec<&str> = out.files.iter().map(|(n, _)| n.as_str()).collect();
        assert!(files.contains(&"hls/240p.m3u8"), "{files:?}");
        assert!(
            files.iter().filter(|f| f.ends_with(".ts")).count() >= 2,
            "{files:?}"
        );
        // The watermark is drawn at the bottom right: red there, the test pattern elsewhere.
        let frame = dir.path().join("last.ppm");
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-sseof", "-0.5", "-i"])
            .arg(&out.outputs[0].path)
            .args(["-frames:v", "1", "-vf", "crop=8:8:288:208"])
            .arg(&frame)
            .status()
            .unwrap();
        assert!(ok.success());
        let ppm = std::fs::read(&frame).unwrap();
        let pixel = &ppm[ppm.len() - 3..];
        assert!(
            pixel[0] > 200 && pixel[1] < 60 && pixel[2] < 60,
            "{pixel:?}"
        );
    }

    #[test]
    fn an_absurd_frame_size_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let src = video(dir.path(), "320x240", 1);
        let small = Limits {
            max_pixels: 1000,
            ..limits()
        };
        let err = transcode(
            &src,
            dir.path(),
            &Template::default(),
            small,
            &AtomicU8::new(0),
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::TooLarge(320, 240)), "{err:?}");
    }

    #[test]
    fn a_job_past_its_deadline_stops() {
        let dir = tempfile::tempdir().unwrap();
        let src = video(dir.path(), "320x240", 1);
        let late = Limits {
            deadline: Instant::now(),
            ..limits()
        };
        let err = transcode(
            &src,
            dir.path(),
            &Template::default(),
            late,
            &AtomicU8::new(0),
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::TimedOut), "{err:?}");
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = video(dir.path(), "320x240", 6);
        let bytes = std::fs::read(&src).unwrap();
        let cut = dir.path().join("cut.mkv");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        let err = transcode(
            &cut,
            dir.path(),
            &Template::default(),
            limits(),
            &AtomicU8::new(0),
        )
        .unwrap_err();
        assert!(matches!(err, MediaError::Truncated { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn truncation_allows_small_gaps() {
        assert!(!truncated(10_000, 9_500, 1000));
        assert!(!truncated(2_000, 1_200, 1000));
        assert!(truncated(10_000, 3_000, 1000));
    }
}
