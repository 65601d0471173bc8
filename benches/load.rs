//! The load benchmark: drives a real `uplink dev` (release build) over loopback into the file
//! store (`uplink`) and into S3 (`uplink-s3`: a moto server, whose own rate is then what is
//! measured), and nginx as a plain body-to-disk sink (`client_body_in_file_only on`) with the
//! same requests, so the ratio comes from one run on one machine. For each workload it prints
//! MiB/s, server CPU seconds per GiB, p50/p99 time to acknowledge a request, the server's peak
//! RSS and its peak anonymous memory (RSS without mapped code and libraries). Every run
//! starts from the same state of the machine's memory and disk cache (see [`settle`]):
//!
//! - `single`: one 1 GiB upload in one request (Uploads API multipart; nginx: one PUT);
//! - `chunked`: 1 GiB in 8 MiB chunks (tus PATCHes; nginx: one PUT per chunk);
//! - `concurrent`: 100 uploads of 16 MiB at once, in 1 MiB chunks (tus; nginx: PUTs);
//! - `direct`: 100 uploads of 16 MiB at once, each one request (Uploads API multipart; nginx:
//!   one PUT each): into S3 they go through the edge's spool, so its memory stays bounded.
//!
//! `uplink` acknowledges bytes once synced to the disk (`durability = "sync"`, the default);
//! `uplink-batched` and `uplink-none` are the same into the file store with the other two
//! durabilities (synced right after the answer; left to the kernel), as nginx is.
//!
//! `cargo bench --bench load` runs the full sizes; `-- --test` (as CI does) runs them tiny, to
//! keep the benchmark working; `-- --workload single --server uplink` (each repeatable) runs
//! only those. Each row is the median run (by MiB/s) of `--rounds N` (3 unless told; rounds
//! alternate the servers' order). nginx comes from Debian's package (`bash .ci/setup`); without
//! it, only Uplink's rows are printed. `UPLINK_BENCH_BASELINE=PATH` (another build of `uplink`,
//! e.g. the previous commit's) adds `uplink-base` and `uplink-s3-base` rows: that build into
//! the file store and into S3, side by side.

mod support;

use bytes::Bytes;
use futures_util::StreamExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cpu_seconds, free_port, peak_rss_mib, wait_ready, AnonPeak, Process, MIB};

/// One server under test.
struct Server {
    child: Process,
    url: String,
    _dir: tempfile::TempDir,
    /// An API key (Uplink) for the Uploads API.
    api_key: String,
    /// An upload token (Uplink) for tus.
    token: String,
}

/// The S3 API server of the `uplink-s3` rows: moto, the one the tests use (`bash .ci/setup`
/// installs it). Its rate, not S3's, is what those rows measure.
async fn moto() -> support::s3::S3Server {
    let moto = support::s3::S3Server::start().await;
    moto.bucket(BUCKET).await;
    moto
}

const BUCKET: &str = "bench";

/// The baseline build of `uplink` the `…-base` rows run, if one is given.
fn baseline() -> Option<String> {
    std::env::var("UPLINK_BENCH_BASELINE").ok()
}

/// `uplink dev` (the build `bin`, or this one), into S3 or the file store, with its
/// acknowledged bytes made as durable as `durability` (`sync`, `batched`, `none`) says.
async fn uplink(
    s3: Option<&support::s3::S3Server>,
    bin: Option<&str>,
    durability: Option<&str>,
) -> Server {
    let bin = bin.unwrap_or(env!("CARGO_BIN_EXE_uplink"));
    let mut args: Vec<String> = Vec::new();
    if let Some(durability) = durability {
        args.extend(["--durability".into(), durability.into()]);
    }
    let started = match s3 {
        None => support::start_uplink_bin(bin, &args, &[]).await,
        Some(moto) => {
            args.extend([
                "--storage".into(),
                format!("s3://{BUCKET}/edge?path_style=true"),
            ]);
            support::start_uplink_bin(bin, &args, &moto.env()).await
        }
    };
    Server {
        child: started.child,
        url: started.url,
        _dir: started.dir,
        api_key: started.api_key,
        token: started.token,
    }
}

/// nginx writing every request body to a file, then answering 201 (through an internal
/// location, so the body is read to disk first).
async fn nginx() -> Option<Server> {
    let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let done = free_port();
    let root = dir.path().display();
    let conf = format!(
        "worker_processes 2;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_max_body_size 0;\n\
           client_body_temp_path {root}/bodies 1 2;\n  client_body_in_file_only on;\n\
           client_body_buffer_size 64k;\n\
           server {{ listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://127.0.0.1:{done}/done; proxy_pass_request_body off;\n\
               proxy_set_header Content-Length \"\"; }} }}\n\
           server {{ listen 127.0.0.1:{done}; location / {{ return 201; }} }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .args(["-p"])
        .arg(dir.path())
        .args(["-c"])
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let child = Process(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url).await;
    Some(Server {
        child,
        url,
        _dir: dir,
        api_key: String::new(),
        token: String::new(),
    })
}

/// A body of `len` bytes streamed in 1 MiB pieces (the client spends almost nothing on it).
fn body(len: u64, prefix: &'static [u8], suffix: &'static [u8]) -> reqwest::Body {
    let pieces = std::iter::once(Bytes::from_static(prefix))
        .chain(support::pieces(len))
        .chain(std::iter::once(Bytes::from_static(suffix)));
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        pieces.map(Ok::<_, std::io::Error>),
    ))
}

/// nginx's side of every workload: `len` raw bytes PUT to `url`.
fn put(client: &reqwest::Client, url: String, len: u64) -> reqwest::RequestBuilder {
    client
        .put(url)
        .header("content-length", len)
        .body(body(len, b"", b""))
}

const FORM_HEAD: &[u8] = b"--B\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nroot\r\n--B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n";
const FORM_TAIL: &[u8] = b"\r\n--B--\r\n";

/// One upload of `len` bytes in one request; returns its acknowledgement time.
async fn single(client: &reqwest::Client, s: &Server, len: u64, nginx: bool) -> Duration {
    let start = Instant::now();
    let resp = if nginx {
        put(client, format!("{}/single", s.url), len).send().await
    } else {
        let total = len + (FORM_HEAD.len() + FORM_TAIL.len()) as u64;
        client
            .post(format!("{}/api/client/v1/uploads", s.url))
            .bearer_auth(&s.api_key)
            .header("content-type", "multipart/form-data; boundary=B")
            .header("content-length", total)
            .body(body(len, FORM_HEAD, FORM_TAIL))
            .send()
            .await
    }
    .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    start.elapsed()
}

/// One upload of `len` bytes in `chunk`-byte requests; returns each request's time.
async fn chunked(
    client: &reqwest::Client,
    s: &Server,
    name: usize,
    len: u64,
    chunk: u64,
    nginx: bool,
) -> Vec<Duration> {
    let location = if nginx {
        String::new()
    } else {
        let resp = client
            .post(format!("{}/files/", s.url))
            .bearer_auth(&s.token)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        format!("{}{}", s.url, resp.headers()["location"].to_str().unwrap())
    };
    let mut times = Vec::new();
    let mut offset = 0;
    while offset < len {
        let n = chunk.min(len - offset);
        let start = Instant::now();
        let resp = if nginx {
            put(client, format!("{}/u{name}/c{offset}", s.url), n)
                .send()
                .await
        } else {
            client
                .patch(&location)
                .bearer_auth(&s.token)
                .header("tus-resumable", "1.0.0")
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", offset)
                .header("content-length", n)
                .body(body(n, b"", b""))
                .send()
                .await
        }
        .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        times.push(start.elapsed());
        offset += n;
    }
    times
}

struct Sizes {
    single: u64,
    chunk: u64,
    concurrent: usize,
    each: u64,
    small_chunk: u64,
}

/// One run's printed row, and its rate (to pick the median by).
struct Row {
    mib_s: f64,
    line: String,
}

async fn run(workload: &str, sizes: &Sizes, server: &str) -> Option<Row> {
    let nginx = server == "nginx";
    // Dropped after the server (declared first): uplink's store must outlive it.
    let moto = match server {
        "uplink-s3" | "uplink-s3-base" => Some(self::moto().await),
        _ => None,
    };
    let server_name = server;
    let server = match server {
        "nginx" => self::nginx().await?,
        "uplink-base" | "uplink-s3-base" => uplink(moto.as_ref(), Some(&baseline()?), None).await,
        "uplink-batched" => uplink(None, None, Some("batched")).await,
        "uplink-none" => uplink(None, None, Some("none")).await,
        _ => uplink(moto.as_ref(), None, None).await,
    };
    let client = reqwest::Client::new();
    let bytes = match workload {
        "concurrent" | "direct" => sizes.each * sizes.concurrent as u64,
        _ => sizes.single,
    };
    settle(bytes);
    let pid = server.child.id();
    let cpu0 = cpu_seconds(pid);
    let anon = AnonPeak::start(pid);
    let start = Instant::now();
    let mut times = match workload {
        "single" => vec![single(&client, &server, sizes.single, nginx).await],
        "chunked" => chunked(&client, &server, 0, sizes.single, sizes.chunk, nginx).await,
        "direct" => {
            futures_util::stream::iter(0..sizes.concurrent)
                .map(|_| single(&client, &server, sizes.each, nginx))
                .buffer_unordered(sizes.concurrent)
                .collect::<Vec<_>>()
                .await
        }
        _ => futures_util::stream::iter(0..sizes.concurrent)
            .map(|i| chunked(&client, &server, i, sizes.each, sizes.small_chunk, nginx))
            .buffer_unordered(sizes.concurrent)
            .collect::<Vec<Vec<_>>>()
            .await
            .concat(),
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let rss = peak_rss_mib(pid);
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    let gib = bytes as f64 / (1024.0 * MIB as f64);
    let mib_s = bytes as f64 / MIB as f64 / wall;
    let line = format!(
        "{:<10} {:<14} {:>9.1} {:>11.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        workload,
        server_name,
        mib_s,
        cpu / gib,
        pct(0.5),
        pct(0.99),
        rss,
        anon.mib()
    );
    Some(Row { mib_s, line })
}

/// Puts the machine in the same state before every run: `bytes` written to a scratch file in
/// the temporary directory (where the servers write) and deleted, then nothing dirty left.
/// On a virtual machine whose memory the host backs on first touch (this one: writing into
/// page cache never used before ran at 355 MB/s, into freed pages at 3,400 MB/s), whichever
/// server ran first would pay for touching fresh memory; and nginx never syncs its files, so
/// the kernel would write them back during the next run and bill that run for them.
fn settle(bytes: u64) {
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

/// The values given to a repeatable `--name VALUE` argument, or all of `all` without one.
fn chosen(args: &[String], name: &str, all: &[&str]) -> Vec<String> {
    let given: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect();
    for g in &given {
        assert!(all.contains(&g.as_str()), "{name} {g}: use one of {all:?}");
    }
    if given.is_empty() {
        all.iter().map(|&a| a.to_owned()).collect()
    } else {
        given
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test");
    let workloads = chosen(
        &args,
        "--workload",
        &["single", "chunked", "concurrent", "direct"],
    );
    let mut servers = chosen(
        &args,
        "--server",
        &[
            "uplink",
            "nginx",
            "uplink-batched",
            "uplink-none",
            "uplink-s3",
            "uplink-base",
            "uplink-s3-base",
        ],
    );
    if baseline().is_none() {
        servers.retain(|s| !s.ends_with("-base"));
    }
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args[i + 1].parse().expect("--rounds N"),
        None if test => 1,
        None => 3,
    };
    let sizes = if test {
        Sizes {
            single: 8 * MIB,
            chunk: 2 * MIB,
            concurrent: 4,
            each: 2 * MIB,
            small_chunk: MIB,
        }
    } else {
        Sizes {
            single: 1024 * MIB,
            chunk: 8 * MIB,
            concurrent: 100,
            each: 16 * MIB,
            small_chunk: MIB,
        }
    };
    let rt = support::runtime();
    println!(
        "{:<10} {:<14} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "workload", "server", "MiB/s", "CPU s/GiB", "p50 ms", "p99 ms", "RSS MiB", "anon MiB"
    );
    rt.block_on(async {
        for workload in &workloads {
            // Rounds alternate the servers' order, so neither always runs first.
            let mut rows: Vec<Vec<Row>> = servers.iter().map(|_| Vec::new()).collect();
            for round in 0..rounds {
                let mut order: Vec<usize> = (0..servers.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    rows[i].extend(run(workload, &sizes, &servers[i]).await);
                }
            }
            for (server, mut rows) in servers.iter().zip(rows) {
                rows.sort_by(|a, b| a.mib_s.total_cmp(&b.mib_s));
                match rows.get(rows.len() / 2) {
                    Some(median) => println!("{}", median.line),
                    None => println!("{workload:<10} {server:<14} (not installed: bash .ci/setup)"),
                }
            }
        }
    });
}
