//! What the load benchmarks share: free ports, readiness polling, and the CPU time and peak
//! memory of a server process and its children, read from /proc.
#![allow(dead_code)]

#[path = "../../tests/common/net.rs"]
pub mod net;
#[path = "../../tests/common/s3.rs"]
pub mod s3;
#[path = "../../tests/common/tls.rs"]
pub mod tls;
pub mod tls_client;

use bytes::Bytes;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mebibyte.
pub const MIB: u64 = 1 << 20;

/// The benchmarks' client runtime: two worker threads, like the machine's two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A body of `len` bytes in 1 MiB pieces that cost the client nothing to make.
pub fn pieces(len: u64) -> impl Iterator<Item = Bytes> {
    let piece = Bytes::from(vec![0x5a; MIB as usize]);
    let full = (len / MIB) as usize;
    let rest = (len % MIB) as usize;
    std::iter::repeat_n(piece.clone(), full).chain((rest > 0).then(|| piece.slice(..rest)))
}

pub use net::free_port;

/// Polls `url` until it answers (any status), for up to 30 s.
pub async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.is_err() {
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU seconds used so far by a process and its children (nginx's workers).
pub fn cpu_seconds(pid: u32) -> f64 {
    family(pid).into_iter().map(own_cpu_seconds).sum()
}

/// CPU seconds used so far by one process's threads, not its children's.
pub fn own_cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks as f64 / 100.0)
}

/// Peak resident memory of a process and its children, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let hwm = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    family(pid).into_iter().map(hwm).sum::<u64>() as f64 / 1024.0
}

/// Samples a process's anonymous (private) resident memory every 20 ms until dropped; the
/// peak, in MiB. Unlike peak RSS it leaves out mapped code and libraries, which are shared.
pub struct AnonPeak {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnonPeak {
    pub fn start(pid: u32) -> Self {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let anon: u64 = family(pid)
                    .into_iter()
                    .filter_map(|pid| {
                        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                        let v = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
                        v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                    })
                    .sum();
                p.fetch_max(anon, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    pub fn mib(&self) -> f64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for AnonPeak {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A server process the benchmark started, stopped when dropped: first with SIGINT (a fast
/// shutdown for nginx, which then stops its workers too; SIGKILL would leave them running), then
/// SIGKILL if it is still there after 5 s.
pub struct Process(pub Child);

impl Process {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        all.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    all
}

/// A `uplink dev` config file in `dir` for ingest benchmarks: no processing workers, so the
/// server's CPU is the ingest's alone (a worker would probe every benchmark upload).
pub fn ingest_only_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bench.toml");
    std::fs::write(&path, "workers = 0\n").unwrap();
    path
}

/// A started `uplink dev` and the credentials a benchmark client needs.
pub struct Started {
    /// The process (the caller kills it).
    pub child: Process,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// Its plain HTTP base URL.
    pub url: String,
    /// An account's API key.
    pub api_key: String,
    /// An upload token of that account, good for 1000 uploads.
    pub token: String,
}

/// Starts a release `uplink dev` for an ingest benchmark (no processing workers) with `extra`
/// arguments, creates an account and an upload token, and waits until it answers.
pub async fn start_uplink(extra: &[String]) -> Started {
    start_uplink_bin(env!("CARGO_BIN_EXE_uplink"), extra, &[]).await
}

/// [`start_uplink`] with build `bin` of `uplink` (this one, or a baseline to compare with) and
/// environment variables (an S3 server's `AWS_*`).
pub async fn start_uplink_bin(bin: &str, extra: &[String], env: &[(String, String)]) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let account = Command::new(bin)
        .args([
            "account",
            "create",
            "--name",
            "Bench",
            "--json",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let account: serde_json::Value = serde_json::from_slice(&account.stdout).unwrap();
    let port = free_port();
    let child = Process(
        Command::new(bin)
            .args([
                "dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("--config")
            .arg(ingest_only_config(dir.path()))
            .args(extra)
            .envs(env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            // `UPLINK_BENCH_LOG=FILE` keeps the node's warnings and errors, to see why a run failed.
            .stderr(match std::env::var_os("UPLINK_BENCH_LOG") {
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/healthz")).await;
    let api_key = account["api_key"].as_str().unwrap().to_owned();
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/upload-tokens"))
        .bearer_auth(&api_key)
        .body(r#"{"max_uploads": 1000}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = resp["token"].as_str().unwrap().to_owned();
    Started {
        child,
        dir,
        url,
        api_key,
        token,
    }
}

/// A plan for `uplink bench`'s load engine against a node on this machine: `count` uploads of
/// `each` bytes at once, in `chunk`-byte requests, of one repeated byte (free to make, so the
/// client leaves the cores to the server), each checked by its size on its status record (the
/// benchmark nodes run no workers to compute SHA-256s).
pub fn engine_plan(
    url: &str,
    api_key: &str,
    count: usize,
    each: u64,
    chunk: u64,
) -> uplink::bench::Plan {
    let mut plan = uplink::bench::Plan::new(url, api_key);
    plan.uploads = Some(count as u64);
    plan.concurrency = count;
    plan.sizes = uplink::bench::Sizes::Fixed(each);
    plan.chunk = chunk;
    plan.payload = uplink::bench::Payload::Constant;
    plan.verify = uplink::bench::Verify::Size;
    plan
}

/// Runs `plan` quietly; its report, every upload completed and verified.
pub async fn drive(plan: uplink::bench::Plan) -> uplink::bench::report::Report {
    let report = uplink::bench::run(
        std::sync::Arc::new(plan),
        uplink::bench::progress::Display::Quiet,
    )
    .await
    .unwrap();
    assert_eq!(report.failed, 0, "{}", report.table());
    report
}

/// Puts the machine in the same state before every run: `bytes` written to a scratch file in
/// the temporary directory (where the servers write) and deleted, then nothing dirty left.
/// On a virtual machine whose memory the host backs on first touch (this one: writing into
/// page cache never used before ran at 355 MB/s, into freed pages at 3,400 MB/s), whichever
/// server ran first would pay for touching fresh memory; and nginx never syncs its files, so
/// the kernel would write them back during the next run and bill that run for them. (Where the
/// VM gives freed pages back to its host at once, this holds only with [`hold_memory`].)
pub fn settle(bytes: u64) {
    use std::io::Write;
    let piece = vec![0u8; MIB as usize];
    let mut scratch = tempfile::tempfile().unwrap();
    for _ in 0..bytes.div_ceil(MIB) {
        scratch.write_all(&piece).unwrap();
    }
    scratch.sync_all().unwrap();
    drop(scratch);
    let _ = Command::new("sync").status();
}

/// Where a virtual machine's kernel says which freed memory it gives back to its host (free
/// page reporting: blocks of 2^order pages; above the largest order, 10, none).
const PAGE_REPORTING: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// Free page reporting paused while a benchmark runs, restored when dropped. A VM that reports
/// freed pages to its host (the machines here do, at order 5) pays a fault in the host the next
/// time the kernel uses such a page, billed to whatever touched it: writing into the page cache
/// ran at a third of its speed on such pages (a profile of the edge: half its samples in
/// `copy_folio_from_iter_atomic`), and [`settle`]'s freed pages were given back before the run
/// could use them, so rows writing files varied by 2× between runs. `UPLINK_BENCH_HOLD_MEMORY=1`
/// pauses reporting for the run (root only); otherwise a note says that figures will vary.
pub struct MemoryHeld(Option<String>);

pub fn hold_memory() -> MemoryHeld {
    let Ok(order) = std::fs::read_to_string(PAGE_REPORTING) else {
        return MemoryHeld(None);
    };
    let order = order.trim().to_owned();
    if order.parse::<u32>().is_ok_and(|o| o > 10) {
        return MemoryHeld(None);
    }
    if std::env::var("UPLINK_BENCH_HOLD_MEMORY").is_ok_and(|v| v == "1") {
        match std::fs::write(PAGE_REPORTING, "11") {
            Ok(()) => {
                eprintln!("note: free page reporting paused for this run (order {order} → 11; restored at the end)");
                return MemoryHeld(Some(order));
            }
            Err(e) => eprintln!("note: cannot pause free page reporting: {e}"),
        }
    }
    eprintln!(
        "note: this VM gives freed memory back to its host ({PAGE_REPORTING} = {order}): rows that write \
         files vary between runs; UPLINK_BENCH_HOLD_MEMORY=1 pauses that for a run (as root)"
    );
    MemoryHeld(None)
}

impl Drop for MemoryHeld {
    fn drop(&mut self) {
        if let Some(order) = self.0.take() {
            if let Err(e) = std::fs::write(PAGE_REPORTING, &order) {
                eprintln!("note: could not restore free page reporting to {order}: {e}");
            }
        }
    }
}

/// Another build of `uplink` to compare with (`UPLINK_BENCH_BASELINE=PATH`), if one is named.
pub fn baseline() -> Option<String> {
    std::env::var("UPLINK_BENCH_BASELINE").ok()
}
