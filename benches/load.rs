//! The load benchmark: drives a real `uplink dev` (release build) over loopback into the file
//! store (`uplink`) and into S3 (`uplink-s3`: a moto server, whose own rate is then what is
//! measured), and nginx as a plain body-to-disk sink (`client_body_in_file_only on`) with the
//! same requests, so the ratio comes from one run on one machine. For each workload it prints
//! MiB/s, server CPU seconds per GiB, p50/p99 time to acknowledge a request, the server's peak
//! RSS and its peak anonymous memory (RSS without mapped code and libraries), and the CPU
//! seconds per GiB of the S3 server (with its TLS front) and of the client, which share the
//! machine's cores with the server (a row's rate is bounded by their sum). Every run
//! starts from the same state of the machine's memory and disk cache (see [`support::settle`]):
//!
//! - `single`: one 1 GiB upload in one request (Uploads API multipart; nginx: one PUT);
//! - `chunked`: 1 GiB in 8 MiB chunks (tus PATCHes; nginx: one PUT per chunk);
//! - `concurrent`: 100 uploads of 16 MiB at once, in 1 MiB chunks (tus; nginx: PUTs);
//! - `direct`: 100 uploads of 16 MiB at once, each one request (Uploads API multipart; nginx:
//!   one PUT each): into S3 they go through the edge's spool, so its memory stays bounded.
//!
//! `uplink-s3fs` stores into s3s-fs instead (a fast S3 API server from crates.io, storing on
//! the local disk; its rows are skipped with a note when it is not installed: `cargo install
//! s3s-fs@0.14.1 --features binary`), and `sdk-s3fs` uploads the same bytes to it with
//! aws-sdk-s3 alone, as Uplink's forwarder sends them: the most a forwarder built on the SDK
//! can do, and so the limit Uplink's S3 rows are measured against. `fwd-s3fs` sends the same
//! files with Uplink's forwarder alone (no HTTP ingest), measuring forwarding on its own.
//!
//! `uplink` acknowledges bytes once synced to the disk (`durability = "sync"`, the default);
//! `uplink-batched` and `uplink-none` are the same into the file store with the other two
//! durabilities (synced right after the answer; left to the kernel), as nginx is.
//!
//! Uplink's rows are driven by `uplink bench`'s load engine (`uplink::bench`), so the tool
//! operators run and this benchmark measure the same way; nginx gets the same bodies as PUTs.
//!
//! `cargo bench --bench load` runs the full sizes; `-- --test` (as CI does) runs them tiny, to
//! keep the benchmark working; `-- --workload single --server uplink` (each repeatable) runs
//! only those. Each row is the median run (by MiB/s) of `--rounds N` (3 unless told; rounds
//! alternate the servers' order). nginx comes from Debian's package (`bash .ci/setup`); without
//! it, only Uplink's rows are printed. `UPLINK_BENCH_BASELINE=PATH` (another build of `uplink`,
//! e.g. the previous commit's) adds `uplink-base`, `uplink-s3-base` and `uplink-s3fs-base`
//! rows: that build into the file store, moto and s3s-fs, side by side.
//! `UPLINK_BENCH_HOLD_MEMORY=1` (as root) keeps a VM from giving freed memory back to its host
//! during the run ([`support::hold_memory`]): without it, rows that write files vary there.

mod support;

/// The edge's allocator (see `src/main.rs`), so that the `fwd-` rows' forwarder allocates as
/// the edge's does and the `sdk-` rows' SDK on equal terms: with glibc's, each MiB read for a
/// part was faulted in and zeroed by the kernel again (a tenth of the forwarder's CPU).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cpu_seconds, free_port, peak_rss_mib, wait_ready, AnonPeak, Process, MIB};

/// One server under test.
struct Server {
    child: Process,
    url: String,
    _dir: tempfile::TempDir,
    /// An API key (Uplink): the load engine mints its credentials with it.
    api_key: String,
}

/// The S3 API server of the `uplink-s3` rows: moto, the one the tests use (`bash .ci/setup`
/// installs it). Its rate, not S3's, is what those rows measure.
async fn moto() -> support::s3::S3Server {
    let moto = support::s3::S3Server::start().await;
    moto.bucket(BUCKET).await;
    moto
}

const BUCKET: &str = "bench";

/// stunnel (Debian's `stunnel4`) terminating TLS in front of an S3 server with a certificate
/// openssl makes for 127.0.0.1: the `-tls` rows reach S3 over HTTPS, as real deployments do.
struct TlsFront {
    child: Process,
    endpoint: String,
    certificate: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// `None` when stunnel or openssl is missing.
async fn tls_front(s3: &support::s3::S3Server) -> Option<TlsFront> {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    assert!(made.success(), "openssl could not make a certificate");
    let port = free_port();
    let upstream = s3.endpoint.trim_start_matches("http://");
    let conf = dir.path().join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[s3]\naccept = 127.0.0.1:{port}\nconnect = {upstream}\n\
             cert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let child = Command::new("stunnel4")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "stunnel did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(TlsFront {
        child: Process(child),
        endpoint: format!("https://127.0.0.1:{port}"),
        certificate: cert,
        _dir: dir,
    })
}

/// The environment that points an S3 client at `s3`, through `tls` when given (trusting its
/// certificate).
fn s3_env(s3: &support::s3::S3Server, tls: Option<&TlsFront>) -> Vec<(String, String)> {
    let mut env = s3.env();
    if let Some(tls) = tls {
        for (name, value) in &mut env {
            if name == "AWS_ENDPOINT_URL" {
                value.clone_from(&tls.endpoint);
            }
        }
        env.push((
            "SSL_CERT_FILE".into(),
            tls.certificate.display().to_string(),
        ));
    }
    env
}

/// `uplink dev` (the build `bin`, or this one), into S3 or the file store, with its
/// acknowledged bytes made as durable as `durability` (`sync`, `batched`, `none`) says.
async fn uplink(
    s3: Option<&[(String, String)]>,
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
        Some(env) => {
            args.extend([
                "--storage".into(),
                format!("s3://{BUCKET}/edge?path_style=true"),
            ]);
            support::start_uplink_bin(bin, &args, env).await
        }
    };
    Server {
        child: started.child,
        url: started.url,
        _dir: started.dir,
        api_key: started.api_key,
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
    })
}

/// nginx's side of every workload: `len` raw bytes PUT to `url`.
async fn put(client: &reqwest::Client, url: String, len: u64) -> Duration {
    let body = futures_util::stream::iter(support::pieces(len).map(Ok::<_, std::io::Error>));
    let start = Instant::now();
    let resp = client
        .put(url)
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    start.elapsed()
}

/// nginx: upload `name` of `len` bytes in `chunk`-byte PUTs; each request's time.
async fn nginx_chunked(
    client: &reqwest::Client,
    s: &Server,
    name: usize,
    len: u64,
    chunk: u64,
) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut offset = 0;
    while offset < len {
        let n = chunk.min(len - offset);
        times.push(put(client, format!("{}/u{name}/c{offset}", s.url), n).await);
        offset += n;
    }
    times
}

/// nginx's side of a workload: the same bodies as PUTs; each request's time.
async fn nginx_workload(workload: &str, sizes: &Sizes, server: &Server) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let client = &client;
    match workload {
        "single" => vec![put(client, format!("{}/single", server.url), sizes.single).await],
        "chunked" => nginx_chunked(client, server, 0, sizes.single, sizes.chunk).await,
        "direct" => {
            futures_util::stream::iter(0..sizes.concurrent)
                .map(|i| put(client, format!("{}/d{i}", server.url), sizes.each))
                .buffer_unordered(sizes.concurrent)
                .collect()
                .await
        }
        _ => futures_util::stream::iter(0..sizes.concurrent)
            .map(|i| nginx_chunked(client, server, i, sizes.each, sizes.small_chunk))
            .buffer_unordered(sizes.concurrent)
            .collect::<Vec<Vec<_>>>()
            .await
            .concat(),
    }
}

/// Uplink's side of a workload, driven by `uplink bench`'s load engine (the tool operators
/// run): `single` and `direct` through the Uploads API (one multipart request each), `chunked`
/// and `concurrent` through tus (a token minted per upload, creation, then PATCHes); see
/// [`support::engine_plan`]. The p50 and p99 of the requests carrying bytes.
async fn uplink_workload(workload: &str, sizes: &Sizes, server: &Server) -> (f64, f64) {
    use uplink::bench::Protocol;
    let (protocol, count, each, chunk) = match workload {
        "single" => (Protocol::UploadsApi, 1, sizes.single, sizes.single),
        "chunked" => (Protocol::Tus, 1, sizes.single, sizes.chunk),
        "direct" => (
            Protocol::UploadsApi,
            sizes.concurrent,
            sizes.each,
            sizes.each,
        ),
        _ => (
            Protocol::Tus,
            sizes.concurrent,
            sizes.each,
            sizes.small_chunk,
        ),
    };
    let mut plan = support::engine_plan(&server.url, &server.api_key, count, each, chunk);
    plan.protocol = protocol;
    let report = support::drive(plan).await;
    let kind = if protocol == Protocol::Tus {
        "patch"
    } else {
        "upload"
    };
    let p = &report.requests[kind];
    (p.p50, p.p99)
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

/// The S3 API server a row stores into, if it stores into one: moto or s3s-fs (`None` when a
/// row needs s3s-fs and it is not installed).
async fn s3_for(server: &str) -> Option<Option<support::s3::S3Server>> {
    Some(match server {
        "uplink-s3" | "uplink-s3-base" => Some(self::moto().await),
        "uplink-s3fs" | "uplink-s3fs-base" | "sdk-s3fs" | "fwd-s3fs" | "uplink-s3fs-tls"
        | "sdk-s3fs-tls" | "fwd-s3fs-tls" => {
            Some(support::s3::S3Server::start_s3s_fs(&[BUCKET]).await?)
        }
        _ => None,
    })
}

async fn run(workload: &str, sizes: &Sizes, server: &str) -> Option<Row> {
    let nginx = server == "nginx";
    let bytes = match workload {
        "concurrent" | "direct" => sizes.each * sizes.concurrent as u64,
        _ => sizes.single,
    };
    // Dropped after the server (declared first): uplink's store must outlive it.
    let s3 = s3_for(server).await?;
    let tls = match (&s3, server.ends_with("-tls")) {
        (Some(s3), true) => Some(tls_front(s3).await?),
        _ => None,
    };
    let env = s3.as_ref().map(|s3| s3_env(s3, tls.as_ref()));
    let s3_side = S3Side(
        s3.iter()
            .map(support::s3::S3Server::pid)
            .chain(tls.iter().map(|t| t.child.id()))
            .collect(),
    );
    if let Some(client) = server
        .split('-')
        .next()
        .filter(|c| ["sdk", "fwd"].contains(c))
    {
        let env = env.as_deref()?;
        let (_dir, files) = write_files(workload, sizes);
        let s3_cpu0 = s3_side.cpu();
        let (wall, cpu, times) = if client == "sdk" {
            sdk::run(&files, env, bytes).await
        } else {
            forwarder::run(&files, env, bytes).await
        };
        let others = Others {
            s3: Some(s3_side.cpu() - s3_cpu0),
            client: None,
            memory: None,
        };
        return Some(row(
            workload,
            server,
            bytes,
            wall,
            cpu,
            percentiles(times),
            others,
        ));
    }
    let server_name = server;
    let server = match server {
        "nginx" => self::nginx().await?,
        "uplink-base" | "uplink-s3-base" | "uplink-s3fs-base" => {
            uplink(env.as_deref(), Some(&support::baseline()?), None).await
        }
        "uplink-batched" => uplink(None, None, Some("batched")).await,
        "uplink-none" => uplink(None, None, Some("none")).await,
        _ => uplink(env.as_deref(), None, None).await,
    };
    // Into S3 the row writes the bytes twice: the edge's spool and the S3 server's objects.
    support::settle(if s3.is_some() { 2 * bytes } else { bytes });
    let pid = server.child.id();
    let client = std::process::id();
    let client_cpu = || support::own_cpu_seconds(client);
    let (cpu0, s3_cpu0, client_cpu0) = (cpu_seconds(pid), s3_side.cpu(), client_cpu());
    let anon = AnonPeak::start(pid);
    let start = Instant::now();
    let times = if nginx {
        percentiles(nginx_workload(workload, sizes, &server).await)
    } else {
        uplink_workload(workload, sizes, &server).await
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let others = Others {
        s3: s3.is_some().then(|| s3_side.cpu() - s3_cpu0),
        client: Some(client_cpu() - client_cpu0),
        memory: Some((peak_rss_mib(pid), anon.mib())),
    };
    Some(row(workload, server_name, bytes, wall, cpu, times, others))
}

/// The processes of a row's S3 side (the S3 server, and its TLS front if any), whose CPU the
/// row reports: on one machine they share its cores with what is measured.
struct S3Side(Vec<u32>);

impl S3Side {
    fn cpu(&self) -> f64 {
        self.0.iter().map(|&pid| cpu_seconds(pid)).sum()
    }
}

/// What a row measures besides the server under test, where it does: the CPU seconds of the S3
/// side and of the client (this process, which drives Uplink's and nginx's rows; the `sdk-`
/// rows' client is what they measure, the `fwd-` rows' a process of its own), and the server's
/// peak RSS and anonymous memory (MiB).
struct Others {
    s3: Option<f64>,
    client: Option<f64>,
    memory: Option<(f64, f64)>,
}

/// The p50 and p99 of `times`, in ms.
fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (pct(0.5), pct(0.99))
}

/// A printed row: MiB/s, CPU s/GiB, p50/p99 (`times`, ms), then the `others` measured (CPU as
/// s/GiB).
fn row(
    workload: &str,
    server: &str,
    bytes: u64,
    wall: f64,
    cpu: f64,
    times: (f64, f64),
    others: Others,
) -> Row {
    let gib = bytes as f64 / (1024.0 * MIB as f64);
    let mib_s = bytes as f64 / MIB as f64 / wall;
    let memory = others.memory.map_or_else(
        || format!("{:>9} {:>9}", "-", "-"),
        |(rss, anon)| format!("{rss:>9.1} {anon:>9.1}"),
    );
    let per_gib = |c: Option<f64>| c.map_or_else(|| "-".to_owned(), |c| format!("{:.2}", c / gib));
    let line = format!(
        "{:<10} {:<16} {:>9.1} {:>11.2} {:>9.1} {:>9.1} {memory} {:>8} {:>8}",
        workload,
        server,
        mib_s,
        cpu / gib,
        times.0,
        times.1,
        per_gib(others.s3),
        per_gib(others.client),
    );
    Row { mib_s, line }
}

/// The files the `sdk-` and `fwd-` rows send, written before their clock starts: as many as
/// `workload` makes uploads, each its size, in a directory that lives as long as it is held.
fn write_files(workload: &str, sizes: &Sizes) -> (tempfile::TempDir, Vec<PathBuf>) {
    let (count, each) = match workload {
        "concurrent" | "direct" => (sizes.concurrent, sizes.each),
        _ => (1, sizes.single),
    };
    let dir = tempfile::tempdir().unwrap();
    let files = (0..count)
        .map(|i| {
            let path = dir.path().join(i.to_string());
            let mut file = std::fs::File::create(&path).unwrap();
            for piece in support::pieces(each) {
                std::io::Write::write_all(&mut file, &piece).unwrap();
            }
            path
        })
        .collect();
    (dir, files)
}

/// The most any forwarder built on aws-sdk-s3 can do (`sdk-s3fs` rows): the same bytes
/// uploaded to the same server by the SDK alone, as Uplink's forwarder sends them: multipart in
/// 8 MiB parts, 4 at once per upload and 16 across uploads, each part's CRC32C read from its
/// file first and then the part streamed from the file with the same SDK settings. The files
/// are written before the clock starts (Uplink's spool files are written while it runs, which
/// its own rows pay for). CPU is this process's; memory is not measured (this process also
/// holds the benchmark).
mod sdk {
    use super::{BUCKET, MIB};
    use crate::support::settle;
    use aws_sdk_s3::primitives::{ByteStream, Length};
    use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
    use futures_util::StreamExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};
    use uplink::store::s3::crc32c_header;

    const PART: u64 = 8 * MIB;
    const PER_UPLOAD: usize = 4;
    const ACROSS_UPLOADS: usize = 16;

    /// `files` (`bytes` in all) sent by the SDK pointed at S3 by `env` (an endpoint, and a
    /// certificate to trust): the wall time, this process's CPU, and each upload's time.
    pub(super) async fn run(
        files: &[PathBuf],
        env: &[(String, String)],
        bytes: u64,
    ) -> (f64, f64, Vec<Duration>) {
        let (count, each) = (files.len(), bytes / files.len() as u64);
        let var = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let certificate = var("SSL_CERT_FILE").map(|path| std::fs::read(path).unwrap());
        let client = client(&var("AWS_ENDPOINT_URL").unwrap(), certificate).await;
        settle(bytes);
        let budget = tokio::sync::Semaphore::new(ACROSS_UPLOADS);
        let pid = std::process::id();
        let cpu0 = super::support::own_cpu_seconds(pid);
        let start = Instant::now();
        let times = futures_util::stream::iter(files.iter().enumerate())
            .map(|(i, path)| upload(&client, format!("sdk/{i}"), path, each, &budget))
            .buffer_unordered(count)
            .collect::<Vec<Duration>>()
            .await;
        let wall = start.elapsed().as_secs_f64();
        (wall, super::support::own_cpu_seconds(pid) - cpu0, times)
    }

    /// A client configured as Uplink's S3 store configures its own, trusting `certificate`
    /// (PEM) when given (the SDK keeps one default HTTPS client per process, with the trust
    /// store it was made with: give each TLS run its own).
    async fn client(endpoint: &str, certificate: Option<Vec<u8>>) -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls;
        let mut shared = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(pem) = certificate {
            let trust = tls::TrustStore::empty().with_pem_certificate(pem);
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(
                    tls::TlsContext::builder()
                        .with_trust_store(trust)
                        .build()
                        .unwrap(),
                )
                .build_https();
            shared = shared.http_client(http);
        }
        let shared = shared
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                super::support::s3::ACCESS_KEY,
                super::support::s3::SECRET_KEY,
                None,
                None,
                "bench",
            ))
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build(),
        )
    }

    /// One object from `path` (`len` bytes); the time it took.
    async fn upload(
        client: &aws_sdk_s3::Client,
        key: String,
        path: &Path,
        len: u64,
        budget: &tokio::sync::Semaphore,
    ) -> Duration {
        let start = Instant::now();
        let id = client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let parts = (0..len.div_ceil(PART)).map(|i| (i, i * PART, PART.min(len - i * PART)));
        let parts: Vec<CompletedPart> = futures_util::stream::iter(parts)
            .map(|(i, offset, n)| {
                let (id, key) = (&id, &key);
                async move {
                    let _sending = budget.acquire().await.unwrap();
                    let owned = path.to_owned();
                    let crc = tokio::task::spawn_blocking(move || {
                        uplink::store::crc32c_of_file(&owned, offset, n)
                    })
                    .await
                    .unwrap()
                    .unwrap();
                    let body = ByteStream::read_from()
                        .path(path)
                        .offset(offset)
                        .length(Length::Exact(n))
                        .buffer_size(uplink::store::s3::STREAM_BUFFER)
                        .build()
                        .await
                        .unwrap();
                    let number = i32::try_from(i + 1).unwrap();
                    let out = client
                        .upload_part()
                        .bucket(BUCKET)
                        .key(key)
                        .upload_id(id)
                        .part_number(number)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                        .checksum_crc32_c(crc32c_header(crc))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(out.e_tag.unwrap_or_default())
                        .checksum_crc32_c(crc32c_header(crc))
                        .build()
                }
            })
            .buffered(PER_UPLOAD)
            .collect()
            .await;
        client
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        start.elapsed()
    }
}

/// Uplink's forwarder alone (`fwd-s3fs` rows): the edge's [`Forwarder`] sends the same files
/// as the `sdk-s3fs` rows, written before the clock starts, to the same server, as it forwards
/// a spooled upload (parts and their CRC32C, read from the files as after a restart, since no
/// spool recorded them while writing; the forwarding state recorded after each part, the
/// completion and the object's size checked; no origin to report parts to). Against
/// the `sdk-s3fs` rows it measures the forwarding's own cost, which the `uplink-s3fs` rows can
/// only give as a difference of two noisy rows. It runs in a process of its own (this
/// benchmark's binary with `--forward`), its store opened from the environment as the edge
/// opens its own; its CPU is counted from when the store is open.
///
/// [`Forwarder`]: uplink::ingest::forward::Forwarder
mod forwarder {
    use super::BUCKET;
    use futures_util::StreamExt;
    use std::io::{BufRead, BufReader, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    use uplink::ingest::forward::{Forwarder, Spooled};

    /// `files` (`bytes` in all) sent by the forwarder pointed at S3 by `env`, its state kept in
    /// a directory of its own: the wall time, its CPU, and each upload's time.
    pub(super) async fn run(
        files: &[PathBuf],
        env: &[(String, String)],
        bytes: u64,
    ) -> (f64, f64, Vec<Duration>) {
        let count = files.len();
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--forward")
            .arg(format!("s3://{BUCKET}/fwd?path_style=true"))
            .arg(state.path())
            .args(files)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(out.next().unwrap().unwrap(), "ready");
        super::support::settle(bytes);
        let pid = child.id();
        let cpu0 = super::support::own_cpu_seconds(pid);
        let start = Instant::now();
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
        let times: Vec<Duration> = out
            .take(count)
            .map(|line| Duration::from_secs_f64(line.unwrap().parse().unwrap()))
            .collect();
        let wall = start.elapsed().as_secs_f64();
        let cpu = super::support::own_cpu_seconds(pid) - cpu0;
        assert!(child.wait().unwrap().success(), "the forwarder failed");
        assert_eq!(times.len(), count, "the forwarder stopped early");
        (wall, cpu, times)
    }

    /// The child: opens the store `args[0]` names (keeping forwarding state under `args[1]`),
    /// says `ready`, waits for a line on stdin, forwards the files `args[2..]` all at once as
    /// complete uploads, and prints each one's time in seconds.
    pub(super) fn serve(args: &[String]) {
        let (url, state, files) = (&args[0], Path::new(&args[1]), &args[2..]);
        super::support::runtime().block_on(async {
            let url = uplink::config::StorageUrl::parse(url, "--forward").unwrap();
            let store = uplink::store::open(&url).await.unwrap();
            let forwarder = Forwarder::new(store, state)
                .unwrap()
                .expect("S3 takes parts");
            println!("ready");
            std::io::stdin().lock().lines().next();
            futures_util::stream::iter(files.iter().enumerate())
                .map(|(i, path)| forward(&forwarder, i, PathBuf::from(path)))
                .buffer_unordered(files.len())
                .for_each(|took| async move { println!("{}", took.as_secs_f64()) })
                .await;
        });
    }

    /// Forwards one spooled file as upload `i`; the time it took.
    async fn forward(forwarder: &Forwarder, i: usize, path: PathBuf) -> Duration {
        let start = Instant::now();
        let len = std::fs::metadata(&path).unwrap().len();
        let upload = uplink::upload::UploadId::new();
        let key = uplink::store::ObjectKey::new(format!("fwd/{i}")).unwrap();
        let size = forwarder
            .finish(upload, &key, Spooled::file(path, len))
            .await
            .unwrap();
        assert_eq!(size, len);
        forwarder.forget(upload).await;
        start.elapsed()
    }
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
    if let Some(i) = args.iter().position(|a| a == "--forward") {
        return forwarder::serve(&args[i + 1..]);
    }
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
            "uplink-s3fs",
            "uplink-s3fs-base",
            "sdk-s3fs",
            "fwd-s3fs",
            "uplink-s3fs-tls",
            "sdk-s3fs-tls",
            "fwd-s3fs-tls",
        ],
    );
    if support::baseline().is_none() {
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
    let _memory = (!test).then(support::hold_memory);
    let rt = support::runtime();
    println!(
        "{:<10} {:<16} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "workload",
        "server",
        "MiB/s",
        "CPU s/GiB",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "anon MiB",
        "S3 CPU",
        "client"
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
                    None if server.ends_with("-tls") => println!(
                        "{workload:<10} {server:<16} (needs s3s-fs, stunnel4 and openssl)"
                    ),
                    None if server.contains("s3fs") => println!(
                        "{workload:<10} {server:<16} (s3s-fs is not installed: cargo install s3s-fs@0.14.1 --features binary)"
                    ),
                    None => println!("{workload:<10} {server:<16} (not installed: bash .ci/setup)"),
                }
            }
        }
    });
}
