//! What a benchmark run measured: the recorder its workers report to while it runs (HDR
//! histograms of request latency by kind, errors by status and code, a per-second timeline)
//! and the report made from it at the end: JSON (the form scripts and `uplink bench compare`
//! read), a table for the terminal, and the comparison of two reports. Must not depend on the
//! transport or on a protocol.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;

/// Collects what the workers measure; shared by them.
pub struct Recorder {
    start: Instant,
    sent: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<(u16, String), u64>,
    complete: Option<Histogram<u64>>,
    processed: Option<Histogram<u64>>,
    timeline: Vec<Second>,
    completed: u64,
    failed: u64,
    bytes: u64,
    interruptions: u64,
    failures: Vec<String>,
    edges: BTreeMap<String, u64>,
}

/// The kinds of request that carry an upload's bytes (their latency is the time to
/// acknowledge them).
pub const BODY_KINDS: [&str; 4] = ["create", "patch", "chunk", "upload"];

/// Latencies in microseconds, from 1 µs to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Recorder {
    /// A recorder whose clock starts now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            sent: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, usize) -> T) -> T {
        let second = usize::try_from(self.start.elapsed().as_secs()).unwrap_or(usize::MAX);
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.timeline.len() <= second {
            let len = inner.timeline.len();
            inner.timeline.extend((len..=second).map(|t| Second {
                t: u32::try_from(t).unwrap_or(u32::MAX),
                ..Second::default()
            }));
        }
        f(&mut inner, second)
    }

    /// `n` bytes of an upload went out.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.with(|inner, s| inner.timeline[s].bytes += n);
    }

    /// A request of `kind` took `took` and got `status` (0: no answer), with error `code` when
    /// it was refused.
    pub fn request(&self, kind: &'static str, took: Duration, status: u16, code: Option<String>) {
        self.with(|inner, s| {
            inner
                .requests
                .entry(kind)
                .or_insert_with(histogram)
                .saturating_record(micros(took));
            if let Some(code) = code {
                *inner.errors.entry((status, code)).or_default() += 1;
                inner.timeline[s].errors += 1;
            }
        });
    }

    /// A request was cut off on purpose.
    pub fn interrupted(&self) {
        self.with(|inner, _| inner.interruptions += 1);
    }

    /// An upload of `bytes` that `edge` took completed and verified: `complete` from its first
    /// request to its last byte's acknowledgement; `processed` from then to status 6, when
    /// waited for.
    pub fn completed(
        &self,
        edge: String,
        bytes: u64,
        complete: Duration,
        processed: Option<Duration>,
    ) {
        self.with(|inner, s| {
            inner.completed += 1;
            *inner.edges.entry(edge).or_default() += 1;
            inner.bytes += bytes;
            inner.timeline[s].completed += 1;
            inner
                .complete
                .get_or_insert_with(histogram)
                .saturating_record(micros(complete));
            if let Some(p) = processed {
                inner
                    .processed
                    .get_or_insert_with(histogram)
                    .saturating_record(micros(p));
            }
        });
    }

    /// An upload failed, for `reason`.
    pub fn failed(&self, reason: String) {
        self.with(|inner, s| {
            inner.failed += 1;
            inner.timeline[s].failed += 1;
            if inner.failures.len() < 20 {
                inner.failures.push(reason);
            }
        });
    }

    /// What the live display shows.
    #[must_use]
    pub fn now(&self) -> Live {
        let elapsed = self.start.elapsed();
        self.with(|inner, s| {
            let mut body = histogram();
            for kind in BODY_KINDS {
                if let Some(h) = inner.requests.get(kind) {
                    let _ = body.add(h);
                }
            }
            // The last whole second.
            let last = s.checked_sub(1).map_or(0, |p| inner.timeline[p].bytes);
            Live {
                elapsed,
                completed: inner.completed,
                failed: inner.failed,
                sent: self.sent.load(Ordering::Relaxed),
                mib_s_now: last as f64 / MIB,
                ack_p99: (!body.is_empty())
                    .then(|| Duration::from_micros(body.value_at_quantile(0.99))),
                errors: inner.errors.iter().fold(
                    BTreeMap::new(),
                    |mut by_status, ((status, _), n)| {
                        *by_status.entry(*status).or_default() += n;
                        by_status
                    },
                ),
            }
        })
    }

    /// The report, for a run of `plan` that took `wall` and `cpu` seconds of this process.
    #[must_use]
    pub fn report(&self, plan: serde_json::Value, wall: Duration, cpu: f64) -> Report {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wall_s = wall.as_secs_f64();
        let gib = inner.bytes as f64 / (MIB * 1024.0);
        Report {
            tool: format!("uplink bench {}", env!("CARGO_PKG_VERSION")),
            plan,
            wall_s,
            completed: inner.completed,
            failed: inner.failed,
            bytes: inner.bytes,
            sent_bytes: self.sent.load(Ordering::Relaxed),
            throughput_mib_s: inner.bytes as f64 / MIB / wall_s.max(1e-9),
            interruptions: inner.interruptions,
            requests: inner
                .requests
                .iter()
                .map(|(kind, h)| ((*kind).to_owned(), Percentiles::of(h)))
                .collect(),
            time_to_complete_ms: inner.complete.as_ref().map(Percentiles::of),
            time_to_processed_ms: inner.processed.as_ref().map(Percentiles::of),
            errors: inner
                .errors
                .iter()
                .map(|((status, code), count)| ErrorCount {
                    status: *status,
                    code: code.clone(),
                    count: *count,
                })
                .collect(),
            client_cpu_s: cpu,
            client_cpu_s_per_gib: (gib > 0.0).then(|| cpu / gib),
            timeline: inner.timeline.clone(),
            failures: inner.failures.clone(),
            edges: inner.edges.clone(),
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The live display's figures.
pub struct Live {
    /// Since the start.
    pub elapsed: Duration,
    /// Uploads completed and verified.
    pub completed: u64,
    /// Uploads failed.
    pub failed: u64,
    /// Bytes sent (resent ones included).
    pub sent: u64,
    /// MiB sent in the last whole second.
    pub mib_s_now: f64,
    /// p99 time to acknowledge a request carrying bytes.
    pub ack_p99: Option<Duration>,
    /// Refused or unanswered requests by status (0: no answer).
    pub errors: BTreeMap<u16, u64>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u32,
    /// Bytes sent in it.
    pub bytes: u64,
    /// Uploads completed in it.
    pub completed: u64,
    /// Uploads failed in it.
    pub failed: u64,
    /// Requests refused or unanswered in it.
    pub errors: u64,
}

/// A distribution, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many were measured.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Requests answered with one status and error code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorCount {
    /// The status (0: no answer: the connection failed or the time ran out).
    pub status: u16,
    /// The error code the body named (or the transport's error).
    pub code: String,
    /// How many.
    pub count: u64,
}

/// A run's report (the `--json` file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The tool and its version.
    pub tool: String,
    /// What was run.
    pub plan: serde_json::Value,
    /// How long it took, in seconds.
    pub wall_s: f64,
    /// Uploads completed and verified.
    pub completed: u64,
    /// Uploads failed (not completed, or not verified).
    pub failed: u64,
    /// Bytes of the completed uploads.
    pub bytes: u64,
    /// Bytes sent, resent ones included.
    pub sent_bytes: u64,
    /// Bytes of completed uploads per second of the run, in MiB/s.
    pub throughput_mib_s: f64,
    /// Requests cut off on purpose (`--interrupt`).
    pub interruptions: u64,
    /// Latency by request kind, in ms.
    pub requests: BTreeMap<String, Percentiles>,
    /// From an upload's first request to its last byte's acknowledgement, in ms.
    pub time_to_complete_ms: Option<Percentiles>,
    /// From the last byte's acknowledgement to status 6, in ms (`--wait-processed`).
    pub time_to_processed_ms: Option<Percentiles>,
    /// Requests refused or unanswered, by status and code.
    pub errors: Vec<ErrorCount>,
    /// CPU seconds this client used.
    pub client_cpu_s: f64,
    /// The same per GiB of completed uploads.
    pub client_cpu_s_per_gib: Option<f64>,
    /// Second by second.
    pub timeline: Vec<Second>,
    /// Why uploads failed (the first 20).
    pub failures: Vec<String>,
    /// Completed uploads by the edge (`host:port`) that took their bytes.
    #[serde(default)]
    pub edges: BTreeMap<String, u64>,
}

impl Report {
    /// Every latency distribution, named: by request kind, then time to complete and to
    /// processed.
    #[must_use]
    pub fn latencies(&self) -> Vec<(String, &Percentiles)> {
        let requests = self
            .requests
            .iter()
            .map(|(k, p)| (format!("request {k}"), p));
        let complete = self
            .time_to_complete_ms
            .iter()
            .map(|p| ("time to complete".to_owned(), p));
        let processed = self
            .time_to_processed_ms
            .iter()
            .map(|p| ("time to processed".to_owned(), p));
        requests.chain(complete).chain(processed).collect()
    }

    /// The report as a table for the terminal.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "uploads   {} completed, {} failed, {:.1} MiB in {:.1} s: {:.1} MiB/s \
             ({} interruptions; {:.1} MiB sent in all)",
            self.completed,
            self.failed,
            self.bytes as f64 / MIB,
            self.wall_s,
            self.throughput_mib_s,
            self.interruptions,
            self.sent_bytes as f64 / MIB,
        );
        let _ = writeln!(
            out,
            "client    {:.2} CPU s{}",
            self.client_cpu_s,
            self.client_cpu_s_per_gib
                .map_or(String::new(), |c| format!(" ({c:.2} s/GiB)"))
        );
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = self.latencies();
        for (name, p) in rows {
            let _ = writeln!(
                out,
                "{name:<20} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        for (edge, n) in &self.edges {
            let _ = writeln!(out, "edge      {edge}: {n} uploads");
        }
        for e in &self.errors {
            let _ = writeln!(out, "error     {} {}: {}", e.status, e.code, e.count);
        }
        for f in &self.failures {
            let _ = writeln!(out, "failed    {f}");
        }
        out
    }

    /// The figures compared, `self` (A) against `b`: each with B/A.
    #[must_use]
    pub fn compare(&self, b: &Self) -> String {
        let mut lines = vec![
            (
                "throughput MiB/s",
                self.throughput_mib_s,
                b.throughput_mib_s,
            ),
            ("completed", self.completed as f64, b.completed as f64),
            ("failed", self.failed as f64, b.failed as f64),
            ("wall s", self.wall_s, b.wall_s),
            ("client CPU s", self.client_cpu_s, b.client_cpu_s),
        ]
        .into_iter()
        .map(|(name, a, b)| (name.to_owned(), a, b))
        .collect::<Vec<_>>();
        let theirs = b.latencies();
        let pairs = self.latencies().into_iter().filter_map(|(name, a)| {
            let (_, b) = theirs.iter().find(|(n, _)| *n == name)?;
            Some((name, a, *b))
        });
        for (name, a, b) in pairs {
            lines.push((format!("{name} p50 ms"), a.p50, b.p50));
            lines.push((format!("{name} p99 ms"), a.p99, b.p99));
        }
        let errors = |r: &Self| r.errors.iter().map(|e| e.count).sum::<u64>() as f64;
        lines.push(("errors".to_owned(), errors(self), errors(b)));
        let mut out = format!("{:<32} {:>12} {:>12} {:>8}\n", "", "A", "B", "B/A");
        for (name, a, b) in lines {
            let ratio = if a == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.2}×", b / a)
            };
            let _ = writeln!(out, "{name:<32} {a:>12.1} {b:>12.1} {ratio:>8}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_what_was_recorded() {
        let r = Recorder::new();
        r.sent(3 * 1024 * 1024);
        r.request("patch", Duration::from_millis(10), 204, None);
        r.request("patch", Duration::from_millis(30), 204, None);
        r.request(
            "patch",
            Duration::from_millis(5),
            409,
            Some("offset mismatch".into()),
        );
        r.completed(
            "edge:443".into(),
            3 * 1024 * 1024,
            Duration::from_millis(45),
            None,
        );
        r.failed("tus: 410".into());
        r.interrupted();
        let report = r.report(serde_json::json!({}), Duration::from_secs(1), 0.5);
        assert_eq!(
            (report.completed, report.failed, report.interruptions),
            (1, 1, 1)
        );
        assert_eq!(report.requests["patch"].count, 3);
        assert!((report.requests["patch"].max - 30.0).abs() < 0.1);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.edges["edge:443"], 1);
        assert_eq!(report.errors[0].status, 409);
        assert!((report.throughput_mib_s - 3.0).abs() < 0.01);
        assert_eq!(
            report.timeline.iter().map(|s| s.bytes).sum::<u64>(),
            3 * 1024 * 1024
        );
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert!(back.compare(&report).contains("1.00×"));
        assert!(report.table().contains("request patch"));
    }
}
