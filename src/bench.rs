//! `uplink bench`, the load engine: drives a running edge or fleet through its public APIs
//! only, with an account's API key, as real clients do (each worker one client with its own
//! connections; credentials minted per upload through the control APIs), in any of the
//! protocols over HTTP/1.1, HTTP/2 or HTTP/3; verifies every upload against its status record
//! (SHA-256 or size, and status 6 with `wait_processed`); and reports what it measured
//! ([`report`]: JSON, a table, [`html`]). The in-tree benchmarks drive their Uplink rows with
//! it too, so the tool and the benchmarks measure the same way.
//!
//! Must not depend on the server's internals: it is a client, like any other (it borrows only
//! [`crate::error::chain`], to print an error's causes).

mod flows;
pub mod html;
pub mod progress;
pub mod report;
pub mod source;
pub mod transport;

use rand::{Rng, SeedableRng};
use report::{Recorder, Report};
use source::{Content, Pace, Source};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::{Client, Http, Trust};

/// The upload protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// tus 1.0 (creation, optionally with upload, then PATCHes).
    Tus,
    /// The IETF resumable-upload draft (interop version 6).
    Ietf,
    /// The Uploads API: one multipart request.
    UploadsApi,
    /// movingimage: numbered chunks.
    Movingimage,
    /// S3 POST through an xvid session.
    S3Post,
}

impl Protocol {
    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tus => "tus",
            Self::Ietf => "ietf",
            Self::UploadsApi => "uploads-api",
            Self::Movingimage => "movingimage",
            Self::S3Post => "s3-post",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Self::Tus,
            Self::Ietf,
            Self::UploadsApi,
            Self::Movingimage,
            Self::S3Post,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            format!("protocol {s:?}: use tus, ietf, uploads-api, movingimage or s3-post")
        })
    }
}

/// What a completed upload is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The record's SHA-256 (which the origin's workers compute: the default).
    Sha256,
    /// The record's size (for a node without processing workers).
    Size,
}

impl std::str::FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "size" => Ok(Self::Size),
            _ => Err(format!("--verify {s:?}: use sha256 or size")),
        }
    }
}

/// The sizes of the uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sizes {
    /// All the same.
    Fixed(u64),
    /// Uniformly between two sizes (inclusive).
    Range(u64, u64),
    /// One of several, at random.
    Choice(Vec<u64>),
}

impl Sizes {
    fn pick(&self, rng: &mut impl Rng) -> u64 {
        match self {
            Self::Fixed(n) => *n,
            Self::Range(a, b) => rng.random_range(*a..=*b),
            Self::Choice(all) => all[rng.random_range(0..all.len())],
        }
    }
}

/// A size such as `16MiB`, `500kB` or `1048576`.
///
/// # Errors
/// Not a size, or zero.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let n = s
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("size {s:?}: {e}"))?
        .as_u64();
    if n == 0 {
        return Err(format!("size {s:?}: must be at least one byte"));
    }
    Ok(n)
}

impl std::fmt::Display for Sizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |n: &u64| bytesize::ByteSize::b(*n).display().iec().to_string();
        match self {
            Self::Fixed(n) => f.write_str(&size(n)),
            Self::Range(a, b) => write!(f, "{}..{}", size(a), size(b)),
            Self::Choice(all) => f.write_str(&all.iter().map(size).collect::<Vec<_>>().join(",")),
        }
    }
}

impl std::str::FromStr for Sizes {
    type Err = String;
    /// `16MiB`, `1MiB..64MiB` or `1MiB,16MiB,256MiB`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((a, b)) = s.split_once("..") {
            let (a, b) = (parse_size(a)?, parse_size(b)?);
            if a > b {
                return Err(format!("sizes {s:?}: the smaller first"));
            }
            Ok(Self::Range(a, b))
        } else if s.contains(',') {
            s.split(',')
                .map(parse_size)
                .collect::<Result<_, _>>()
                .map(Self::Choice)
        } else {
            parse_size(s).map(Self::Fixed)
        }
    }
}

/// What the uploads' bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Random, different for each upload.
    Random,
    /// One repeated byte (costs the client nothing; only for a node on the same machine).
    Constant,
    /// A media file's bytes, for every upload (its size is the uploads' size).
    Media(PathBuf),
}

/// A run: where, what, how many, how verified.
#[derive(Clone)]
pub struct Plan {
    /// The edge's (or fleet's) base URL.
    pub url: String,
    /// The account's API key.
    pub api_key: String,
    /// The pipeline of S3 POST uploads.
    pub pipeline_id: Option<String>,
    /// Which certificates are trusted.
    pub trust: Trust,
    /// The HTTP version of every request.
    pub http: Http,
    /// Send every request to `url`'s host, even where the control API names another edge (to
    /// load one edge of a fleet, or the TLS listener of a node that names its plain one).
    pub pin_edge: bool,
    /// The protocol.
    pub protocol: Protocol,
    /// How many uploads (with `duration`: at most).
    pub uploads: Option<u64>,
    /// For how long new uploads are started.
    pub duration: Option<Duration>,
    /// Uploads at once (clients).
    pub concurrency: usize,
    /// The clients start evenly spread over this time.
    pub ramp: Duration,
    /// The uploads' sizes.
    pub sizes: Sizes,
    /// Bytes per request (tus and IETF appends, movingimage chunks).
    pub chunk: u64,
    /// tus creation carries the first chunk.
    pub creation_with_upload: bool,
    /// Each client's bandwidth cap.
    pub bandwidth: Option<Pace>,
    /// The chance that a request carrying bytes is cut off part way.
    pub interrupt: f64,
    /// The uploads' bytes.
    pub payload: Payload,
    /// What a completed upload is checked against.
    pub verify: Verify,
    /// Wait for each upload to be processed (status 6).
    pub wait_processed: bool,
    /// How long an upload's record may take to show it stored (or processed).
    pub verify_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// The seed of every random choice and of the random bytes.
    pub seed: u64,
}

impl Plan {
    /// The defaults: 10 tus uploads of 16 MiB, 4 at once, in 8 MiB PATCHes over HTTP/1.1.
    #[must_use]
    pub fn new(url: &str, api_key: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            pipeline_id: None,
            trust: Trust::System,
            http: Http::V1,
            pin_edge: false,
            protocol: Protocol::Tus,
            uploads: Some(10),
            duration: None,
            concurrency: 4,
            ramp: Duration::ZERO,
            sizes: Sizes::Fixed(16 << 20),
            chunk: 8 << 20,
            creation_with_upload: false,
            bandwidth: None,
            interrupt: 0.0,
            payload: Payload::Random,
            verify: Verify::Sha256,
            wait_processed: false,
            verify_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(600),
            seed: 1,
        }
    }

    /// What the report says was run (no credentials).
    #[must_use]
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "protocol": self.protocol.name(),
            "http": self.http,
            "pin_edge": self.pin_edge,
            "uploads": self.uploads,
            "duration_s": self.duration.map(|d| d.as_secs_f64()),
            "concurrency": self.concurrency,
            "ramp_s": self.ramp.as_secs_f64(),
            "sizes": self.sizes.to_string(),
            "chunk": self.chunk,
            "creation_with_upload": self.creation_with_upload,
            "bandwidth_bytes_s": self.bandwidth.map(|p| p.0),
            "interrupt": self.interrupt,
            "payload": match &self.payload {
                Payload::Random => "random".to_owned(),
                Payload::Constant => "constant".to_owned(),
                Payload::Media(p) => p.display().to_string(),
            },
            "verify": format!("{:?}", self.verify).to_lowercase(),
            "wait_processed": self.wait_processed,
            "seed": self.seed,
        })
    }
}

/// Runs `plan`, showing progress on `display`; the report.
///
/// # Errors
/// The plan cannot run at all (a client cannot be made, the media file cannot be read); a
/// failed upload is in the report, not an error.
pub async fn run(plan: Arc<Plan>, display: progress::Display) -> Result<Report, String> {
    if plan.uploads.is_none() && plan.duration.is_none() {
        return Err("give a number of uploads or a duration".into());
    }
    if plan.protocol == Protocol::S3Post && plan.pipeline_id.is_none() {
        return Err("s3-post needs --pipeline-id (the account's pipeline_id)".into());
    }
    let media = match &plan.payload {
        Payload::Media(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let len = file
                .metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            if len == 0 {
                return Err(format!("{} is empty", path.display()));
            }
            Some((Arc::new(file), len))
        }
        _ => None,
    };
    // Made once here so that a bad trust option stops the run before it starts.
    Client::new(plan.http, &plan.trust, plan.request_timeout)?;
    let rec = Arc::new(Recorder::new());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let cpu = cpu_seconds();
    let shown = progress::start(rec.clone(), plan.uploads, display);
    let concurrency = plan.concurrency.max(1);
    let workers: Vec<_> = (0..concurrency)
        .map(|k| {
            let (plan, rec, next, media) = (plan.clone(), rec.clone(), next.clone(), media.clone());
            tokio::spawn(async move {
                let delay = plan.ramp.mul_f64(k as f64 / concurrency as f64);
                tokio::time::sleep(delay).await;
                let client = match Client::new(plan.http, &plan.trust, plan.request_timeout) {
                    Ok(client) => client,
                    Err(e) => return rec.failed(e),
                };
                let ctx = flows::Ctx {
                    plan: &plan,
                    rec: rec.clone(),
                    client: &client,
                };
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if plan.uploads.is_some_and(|n| i >= n) {
                        break;
                    }
                    one(&ctx, i, media.as_ref()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| format!("a worker failed: {e}"))?;
    }
    let wall = started.elapsed();
    let report = rec.report(plan.summary(), wall, cpu_seconds() - cpu);
    shown.finish();
    Ok(report)
}

/// Upload number `i`, made and verified, recorded.
async fn one(ctx: &flows::Ctx<'_>, i: u64, media: Option<&(Arc<std::fs::File>, u64)>) {
    let plan = ctx.plan;
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
    let (content, size) = match (media, &plan.payload) {
        (Some((file, len)), _) => (Content::Media(file.clone()), *len),
        (None, Payload::Constant) => (Content::Constant, plan.sizes.pick(&mut rng)),
        (None, _) => (Content::Random(rng.random()), plan.sizes.pick(&mut rng)),
    };
    let source = Source::new(content, size, plan.verify == Verify::Sha256);
    let start = Instant::now();
    let uploaded = match ctx.upload(&source, i, &mut rng).await {
        Ok(uploaded) => uploaded,
        Err(e) => return ctx.rec.failed(e),
    };
    let complete = start.elapsed();
    let last_byte = Instant::now();
    match ctx.verify(&uploaded.id, &source, plan.wait_processed).await {
        Ok(()) => ctx.rec.completed(
            uploaded.edge,
            size,
            complete,
            plan.wait_processed.then(|| last_byte.elapsed()),
        ),
        Err(e) => ctx.rec.failed(e),
    }
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_written() {
        assert_eq!("16MiB".parse(), Ok(Sizes::Fixed(16 << 20)));
        assert_eq!("1KiB..2KiB".parse(), Ok(Sizes::Range(1024, 2048)));
        assert_eq!("1KiB,3".parse(), Ok(Sizes::Choice(vec![1024, 3])));
        assert!("2KiB..1KiB".parse::<Sizes>().is_err());
        assert!("0".parse::<Sizes>().is_err());
        assert!("lots".parse::<Sizes>().is_err());
        assert_eq!("s3-post".parse(), Ok(Protocol::S3Post));
        assert!("ftp".parse::<Protocol>().is_err());
    }
}
