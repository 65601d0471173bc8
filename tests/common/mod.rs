//! The test harness: starts the real `uplink` binary on free ports with a temporary data dir
//! (and, for PostgreSQL, a database of its own), waits on `/healthz`, makes real media with
//! FFmpeg's `testsrc`, and cleans up (processes killed, databases dropped, dirs removed).
#![allow(dead_code)]

pub mod net;
pub mod relay;
pub mod s3;
pub mod tls;

// Not every test file uses both.
#[allow(unused_imports)]
pub use net::free_port;
#[allow(unused_imports)]
pub use s3::S3Server;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_uplink")
}

/// Which state database a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct PgDatabase {
    name: String,
    pub url: String,
}

fn pg_server() -> String {
    std::env::var("UPLINK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(format!("{}/postgres", pg_server()))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs (apt-get install postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgDatabase {
    pub fn create() -> Self {
        let name = format!("uplink_test_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", pg_server());
        Self { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(format!("{}/postgres", pg_server()))
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A running `uplink dev` node.
pub struct Node {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    pub pg: Option<PgDatabase>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

/// A role process (`uplink origin` / `uplink edge`) killed when dropped; its log is beside
/// its config file, and printed when it is dropped by a failing test.
pub struct Proc(pub Child, std::fs::File);

impl Proc {
    /// Starts `uplink ROLE --config CONFIG` with `env` and waits until `url/healthz` answers.
    pub async fn start(role: &str, config: &Path, url: &str, env: &[(&str, &str)]) -> Self {
        let log = config.with_extension("log");
        let mut command = Command::new(bin());
        command
            .args([role, "--config"])
            .arg(config)
            .envs(env.iter().copied());
        let mut proc = Self::spawn(&mut command, &log);
        wait_healthy(&format!("{url}/healthz"), &mut proc.0, &log).await;
        proc
    }

    /// Runs `command` with its standard error into `log` (kept open for reading: a failing
    /// test's temporary directory may be gone by the time the process is dropped).
    pub fn spawn(command: &mut Command, log: &Path) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self(child, std::fs::File::open(log).unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            use std::io::{Read, Seek};
            let mut log = String::new();
            let _ = self
                .1
                .rewind()
                .and_then(|()| self.1.read_to_string(&mut log));
            eprintln!("--- log of uplink process {} ---\n{log}", self.0.id());
        }
    }
}

/// Polls `ready` until it says yes, or panics after 30 s naming `what`: how a test waits for
/// an event instead of sleeping.
pub async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether everything written on `conn` has been read by the program at its other end: the
/// send queue of this socket and the receive queue of its peer (both on this machine) are
/// empty in `/proc/net/tcp`. The event a test waits for before it asserts what a server
/// received from a request still open.
pub fn peer_has_read(conn: &tokio::net::TcpStream) -> bool {
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(a) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(a.ip().octets()),
                a.port()
            )
        }
        std::net::SocketAddr::V6(_) => panic!("IPv4 loopback only"),
    };
    let (here, there) = (
        hex(conn.local_addr().unwrap()),
        hex(conn.peer_addr().unwrap()),
    );
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    // "sl local rem st tx_queue:rx_queue ...": the queues of the socket from `a` to `b`.
    let queues = |a: &str, b: &str| {
        table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&a) && f.get(2) == Some(&b)).then(|| f[4].to_owned())
        })
    };
    let empty = |q: Option<String>, side: usize| {
        q.and_then(|q| {
            q.split(':')
                .nth(side)
                .map(|n| u64::from_str_radix(n, 16) == Ok(0))
        })
        .unwrap_or(false)
    };
    empty(queues(&here, &there), 0) && empty(queues(&there, &here), 1)
}

/// One number the node's database (SQLite or PostgreSQL) answers `sql` with, e.g. a count.
pub async fn sql_number(node: &Node, sql: &str) -> i64 {
    sql_value(&node.database_url(), sql).await.unwrap()
}

/// The first column of the first row `sql` gives in `database`, if it gives a row.
pub async fn sql_value<T>(database: &str, sql: &str) -> Option<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Unpin,
{
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database).await.unwrap();
    let value: Option<T> = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
    pool.close().await;
    value
}

/// Polls `url` until it answers 200, or panics after 30 s or when the node exits, showing its log.
pub async fn wait_healthy(url: &str, child: &mut Child, log: &Path) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A 200 counts only while the child still runs: otherwise another process answered.
        let answered = matches!(client.get(url).send().await, Ok(r) if r.status() == 200);
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "uplink exited with {status} before it was healthy:\n{}",
                read_log(log)
            );
        }
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not healthy in 30 s:\n{}",
            read_log(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Node {
    /// Starts `uplink dev` on a free port with the given database and extra arguments.
    pub async fn dev(backend: Backend) -> Self {
        Self::dev_with(backend, &[]).await
    }

    pub async fn dev_with(backend: Backend, extra: &[&str]) -> Self {
        Self::dev_env(backend, extra, &[]).await
    }

    /// Starts `uplink dev` with extra arguments and environment variables.
    pub async fn dev_env(backend: Backend, extra: &[&str], env: &[(String, String)]) -> Self {
        let pg = (backend == Backend::Postgres).then(PgDatabase::create);
        let mut node = Node {
            child: None,
            url: String::new(),
            port: 0,
            data_dir: tempfile::tempdir().unwrap(),
            pg,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env: env.to_vec(),
        };
        node.start().await;
        node
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is running").id()
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("uplink.log")
    }

    /// Starts `uplink dev` (SQLite) with HTTPS and HTTP/3 on a port of their own; that port.
    pub async fn dev_tls() -> (Self, u16) {
        Self::dev_tls_with(&[]).await
    }

    /// [`Node::dev_tls`] with extra arguments.
    pub async fn dev_tls_with(extra: &[&str]) -> (Self, u16) {
        // Free for both: the QUIC listener takes the same port over UDP.
        let port = std::iter::repeat_with(free_port)
            .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--tls-listen", listen.as_str()];
        args.extend_from_slice(extra);
        (Self::dev_with(Backend::Sqlite, &args).await, port)
    }

    /// The self-signed certificate `uplink dev` made for its TLS listener, PEM.
    pub fn tls_certificate(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.path().join("tls/certificate.pem")).unwrap()
    }

    /// The `--database` URL in use.
    pub fn database_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.path().join("uplink.db").display()
            ),
        }
    }

    async fn start(&mut self) {
        // A restart keeps the address, as a real node does (upload URLs name it).
        if self.port == 0 {
            self.port = free_port();
        }
        for _ in 0..5 {
            let logged = std::fs::read(self.log_path()).map_or(0, |l| l.len());
            self.spawn().await;
            // Between picking a free port and binding it, another process may take it; then
            // whatever answered /healthz was not this node: start again on another port.
            let role = match reqwest::get(format!("{}/healthz", self.url)).await {
                Ok(r) => r.json::<Value>().await.ok().map(|b| b["role"].clone()),
                Err(_) => None,
            };
            let log = std::fs::read(self.log_path()).unwrap_or_default();
            let in_use =
                String::from_utf8_lossy(&log[logged.min(log.len())..]).contains("is in use");
            if role == Some(Value::from("edge")) && !in_use {
                return;
            }
            self.kill();
            self.port = free_port();
        }
        panic!("no free port for the node after five tries");
    }

    async fn spawn(&mut self) {
        self.url = format!("http://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--data-dir",
        ])
        .arg(self.data_dir.path())
        .args(&self.extra)
        .env_remove("UPLINK_DATABASE")
        .env_remove("UPLINK_STORAGE")
        .envs(self.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(log);
        if let Some(pg) = &self.pg {
            cmd.args(["--database", &pg.url]);
        }
        let mut child = cmd.spawn().unwrap();
        wait_healthy(
            &format!("{}/healthz", self.url),
            &mut child,
            &self.log_path(),
        )
        .await;
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (SIGKILL, no clean shutdown) and starts it again on the same state.
    pub async fn restart(&mut self) {
        self.kill();
        self.start().await;
    }

    /// `uplink dev` with a config file of `toml`; the file's directory lives as long as the
    /// returned guard.
    pub async fn dev_toml(backend: Backend, toml: &str) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dev.toml");
        std::fs::write(&config, toml).unwrap();
        let node = Self::dev_with(backend, &["--config", config.to_str().unwrap()]).await;
        (node, dir)
    }

    /// Creates an account with `uplink account create --json` beside the running node.
    pub fn account(&self, name: &str) -> Account {
        let json = run_ok(&[
            "account",
            "create",
            "--name",
            name,
            "--json",
            "--database",
            &self.database_url(),
        ]);
        Account::from_json(&json)
    }

    /// An account created with extra arguments (`--quota`, `--cors-origin`…).
    pub fn account_with(&self, args: &[&str]) -> Account {
        let out = self.account_cmd(&[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Account::from_json(&serde_json::from_slice(&out.stdout).unwrap())
    }

    /// `uplink account create` with extra arguments; the process output.
    pub fn account_cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(["account", "create", "--database", &self.database_url()])
            .args(args)
            .env_remove("UPLINK_DATABASE")
            .output()
            .unwrap()
    }

    /// The node's object store directory.
    pub fn objects(&self) -> PathBuf {
        self.data_dir.path().join("objects")
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- uplink log ---\n{}", self.log());
        }
    }
}

/// Runs the binary, asserts success, returns stdout.
pub fn run_text(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env_remove("UPLINK_DATABASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uplink {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the binary, asserts success, returns stdout as JSON.
pub fn run_ok(args: &[&str]) -> Value {
    serde_json::from_str(&run_text(args)).unwrap()
}

/// Creates an account "Acme" in the state database at `database` (a separate origin's).
pub fn create_account_in(database: &str) -> Account {
    Account::from_json(&run_ok(&[
        "account",
        "create",
        "--name",
        "Acme",
        "--json",
        "--database",
        database,
    ]))
}

/// An account's credentials as `account create --json` printed them.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub api_key: String,
    pub json: Value,
}

impl Account {
    pub fn from_json(json: &Value) -> Self {
        Self {
            id: json["id"].as_str().unwrap().to_owned(),
            api_key: json["api_key"].as_str().unwrap().to_owned(),
            json: json.clone(),
        }
    }
}

/// A client for the Uploads API of one node and account.
pub struct Uploads<'a> {
    pub base: &'a str,
    pub key: &'a str,
    http: reqwest::Client,
}

impl<'a> Uploads<'a> {
    pub fn new(base: &'a str, key: &'a str) -> Self {
        Self {
            base,
            key,
            http: reqwest::Client::new(),
        }
    }

    /// Posts a file as the seed's multipart form; returns status and JSON body.
    pub async fn post(&self, file: &Path, folder: Option<&str>) -> (u16, Value) {
        let bytes = tokio::fs::read(file).await.unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut form = reqwest::multipart::Form::new().part(
            "video",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        if let Some(folder) = folder {
            form = form.text("folder", folder.to_owned());
        }
        let resp = self
            .http
            .post(format!("{}/api/client/v1/uploads", self.base))
            .bearer_auth(self.key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        json_of(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/api/client/v1/uploads{path}", self.base))
            .bearer_auth(self.key)
            .send()
            .await
            .unwrap();
        json_of(resp).await
    }

    /// Waits for an upload's final status and checks the SHA-256 of what was stored is
    /// `bytes`'; returns its record.
    pub async fn assert_stored(&self, id: &str, bytes: &[u8]) -> Value {
        let record = self.wait_final(id).await;
        let expected = hex::encode(Sha256::digest(bytes));
        assert_eq!(
            record["sha256"].as_str(),
            Some(expected.as_str()),
            "{record}"
        );
        record
    }

    /// Polls an upload until it reaches a final status (6 or 7); returns its record.
    pub async fn wait_final(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(&format!("/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let code = body["data"]["status"].as_i64().unwrap();
            if code == 6 || code == 7 {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "upload {id} stuck at {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Verifies a Standard Webhooks request (its headers and body) with the reference Python
/// library and the account `secret`; returns what it parsed (the message for a JSON body).
pub fn verify_webhook(headers: &reqwest::header::HeaderMap, body: &str, secret: &str) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap())))
        .collect();
    let request = serde_json::json!({ "headers": headers, "body": body });
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/verify_webhook.py"))
        .arg(secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        request.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `tests/support/SCRIPT` with python3 (its clients come from PyPI: `bash .ci/setup`) on
/// a blocking thread, `stdin` fed to it; what it printed and how it ended.
pub async fn python(script: &str, args: Vec<String>, stdin: Vec<u8>) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(&script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (bash .ci/setup installs its clients)");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &stdin).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// [`python`], for a script that prints one JSON object: that object (a failed script fails
/// the test with its stderr).
pub async fn python_json(script: &str, args: Vec<String>, stdin: Vec<u8>) -> Value {
    let what = format!("{script} {}", args.join(" "));
    let out = python(script, args, stdin).await;
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Posts the Ankoder seed's HTML form to `base`: text `fields`, then the file; returns status, Location and body.
pub async fn submit_form(
    base: &str,
    fields: &[(&str, &str)],
    file: Option<&Path>,
) -> (u16, Option<String>, String) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    if let Some(file) = file {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(file).unwrap()).file_name(name),
        );
    }
    form = form.text("commit", "Submit");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .post(format!("{base}/files/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (resp.status().as_u16(), location, resp.text().await.unwrap())
}

/// Cloud VoD's getUploadToken, signed with the account's secret now; returns the answer's
/// `data` (`videoId`, `uploadUrl`, `uploadToken`…).
pub async fn cloudvod_session(node: &Node, account: &Account, form: &str) -> Value {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(account.json["secret"].as_str().unwrap().as_bytes())
            .unwrap();
    mac.update(ts.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/vod/videoManage/getUploadToken", node.url))
        .header(
            "Authorization",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        )
        .header("X-WS-Timestamp", &ts)
        .header(
            "X-WS-AccessKey",
            account.json["access_key"].as_str().unwrap(),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, body)
}

/// Runs `ffmpeg -v error -y ARGS OUT` (test media) and checks it succeeded.
pub fn ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Makes a real video (H.264-free: MPEG-4 Part 2 + AAC in Matroska) with FFmpeg's testsrc.
pub fn test_video(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("testsrc.mkv");
    let video = format!("testsrc=duration={seconds}:size=320x240:rate=25");
    let audio = format!("sine=frequency=440:duration={seconds}");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &video,
            "-f",
            "lavfi",
            "-i",
            &audio,
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
            "-shortest",
        ],
        &path,
    );
    path
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The top-level box types of an MP4 file, in order.
pub fn mp4_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        let size = if size == 1 {
            u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize
        } else {
            size
        };
        if size < 8 {
            break;
        }
        at += size;
    }
    boxes
}

/// Every file under a directory, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A TCP proxy in front of an S3 server that fails chosen requests: the first `failures`
/// requests whose first line contains every string of `matching` (e.g. `["partNumber="]`:
/// UploadPart) are answered `503 SlowDown` and
/// their connection closed; everything else passes through. Requests are read one by one (the
/// SDK does not pipeline), so each request on a kept-alive connection is inspected. Like S3 (and
/// unlike moto), a body whose `x-amz-checksum-crc32c` does not match it is refused with
/// `400 BadDigest`, and a second `CompleteMultipartUpload` of a multipart upload with
/// `404 NoSuchUpload` (S3 forgets a completed upload; moto completes it again).
pub struct FaultyProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// How many requests were failed so far.
    pub failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// How many matching requests arrived (failed or passed on).
    pub seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The first line of every request passed on.
    pub passed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    pub async fn start(upstream: &str, matching: &'static [&'static str], failures: usize) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let failed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = failed.clone();
        let matched = seen.clone();
        let completed = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let passed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let passing = passed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let counter = counter.clone();
                let matched = matched.clone();
                let completed = completed.clone();
                let passing = passing.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_rx, client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let client_tx = Arc::new(tokio::sync::Mutex::new(client_tx));
                    let back = client_tx.clone();
                    let responses = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = server_rx.read(&mut buf).await {
                            if n == 0 || back.lock().await.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut pending: Vec<u8> = Vec::new();
                    'requests: loop {
                        // One request head.
                        let end = loop {
                            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            let mut buf = vec![0u8; 64 * 1024];
                            match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => break 'requests,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).to_string();
                        let first_line = head.lines().next().unwrap_or_default().to_owned();
                        let matches = matching.iter().all(|m| first_line.contains(m));
                        if matches {
                            matched.fetch_add(1, Ordering::SeqCst);
                        }
                        if matches
                            && counter
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    (n < failures).then_some(n + 1)
                                })
                                .is_ok()
                        {
                            let reply = s3_error(
                                "503 Service Unavailable",
                                "SlowDown",
                                "Please reduce your request rate.",
                            );
                            let _ = client_tx.lock().await.write_all(reply.as_bytes()).await;
                            break 'requests;
                        }
                        let length: usize = header(&head, "content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let whole = end + length;
                        while pending.len() < whole {
                            let mut buf = vec![0u8; 64 * 1024];
                            match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => break 'requests,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        }
                        // As S3 does: a body without the CRC32C its header claims is refused;
                        // and, once its moment of grace is over, a multipart upload completed
                        // (its CompleteMultipartUpload passed on) is gone.
                        let actual = uplink::store::s3::crc32c_header(uplink::store::crc32c(
                            &pending[end..whole],
                        ));
                        let refusal = if header(&head, "x-amz-checksum-crc32c")
                            .is_some_and(|c| c != actual)
                        {
                            Some(s3_error(
                                "400 Bad Request",
                                "BadDigest",
                                "The CRC32C you specified did not match the calculated checksum.",
                            ))
                        } else if completion_of(&first_line)
                            .is_some_and(|id| !completed.lock().unwrap().insert(id))
                        {
                            Some(s3_error(
                                "404 Not Found",
                                "NoSuchUpload",
                                "The specified multipart upload does not exist.",
                            ))
                        } else {
                            None
                        };
                        if let Some(reply) = refusal {
                            let _ = client_tx.lock().await.write_all(reply.as_bytes()).await;
                            break 'requests;
                        }
                        passing.lock().unwrap().push(first_line);
                        if server_tx.write_all(&pending[..whole]).await.is_err() {
                            break;
                        }
                        pending.drain(..whole);
                    }
                    responses.abort();
                });
            }
        });
        Self {
            endpoint,
            failed,
            seen,
            passed,
            task,
        }
    }
}

/// The multipart upload a request completes (`POST /key?uploadId=ID`), from its first line.
fn completion_of(first_line: &str) -> Option<String> {
    let query = first_line.strip_prefix("POST ")?.split(' ').next()?;
    let (_, id) = query.split_once("uploadId=")?;
    Some(id.split('&').next().unwrap_or(id).to_owned())
}

/// The value of header `name` in a request `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// An S3 error response that closes its connection.
fn s3_error(status: &str, code: &str, message: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upload token for tus and IETF clients (`POST /v1/upload-tokens` with a JSON `body`).
pub async fn upload_token(node: &Node, account: &Account, body: &str) -> String {
    upload_token_at(&node.url, &account.api_key, body).await
}

/// [`upload_token`] from the edge at `base`.
pub async fn upload_token_at(base: &str, api_key: &str, body: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/upload-tokens"))
        .bearer_auth(api_key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// One tus 1.0 request with an upload token, extra `headers` and `body`.
pub async fn tus(
    method: reqwest::Method,
    url: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut all = vec![("tus-resumable", "1.0.0".to_owned())];
    all.extend_from_slice(headers);
    with_token(method, url, token, &all, body).await
}

/// One request with an upload token (`Authorization: Bearer`), `headers` and `body`.
pub async fn with_token(
    method: reqwest::Method,
    url: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// Opens a movingimage video and returns its id and upload URL.
pub async fn movingimage_url(node: &Node, account: &Account) -> (String, String) {
    movingimage_url_at(&node.url, &account.api_key).await
}

/// [`movingimage_url`] through the edge or origin at `base`.
pub async fn movingimage_url_at(base: &str, api_key: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/videos"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({ "fileName": "testsrc.mkv" }))
        .send()
        .await
        .unwrap();
    let video = resp.json::<Value>().await.unwrap()["videoId"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .get(format!("{base}/v1/videos/{video}/url"))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    let url = resp.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    (video, url)
}

/// Sends chunk `current` (from 1) of `total` to a movingimage upload URL.
pub async fn movingimage_chunk(
    url: &str,
    total: usize,
    current: usize,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("Mi24-Upload-Total-Chunks", total.to_string())
        .header("Mi24-Upload-Current-Chunk", current.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

/// boto3's `generate_presigned_post` for `clips/${filename}` (1 B to 10 MB), V4 or V2.
pub fn presigned(
    node: &Node,
    account: &Account,
    bucket: &str,
    version: &str,
) -> (String, Vec<(String, String)>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/presign_post.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([
            &format!("{}/s3", node.url),
            account.json["access_key"].as_str().unwrap(),
        ])
        .args([account.json["secret"].as_str().unwrap(), bucket, version])
        .output()
        .expect("python3 with boto3 (bash .ci/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let post: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields = post["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    (post["url"].as_str().unwrap().to_owned(), fields)
}

/// Posts `fields` then the file, as a browser form does; returns status, headers and body.
pub async fn post_form(
    url: &str,
    fields: &[(String, String)],
    file: &Path,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.clone(), v.clone());
    }
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(file).unwrap()).file_name(name),
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.post(url).multipart(form).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        resp.text().await.unwrap(),
    )
}

/// Opens an xvid session for `object_key` (URL-encoded); returns the `upload` object and its
/// `form_post_params` as form fields.
pub async fn xvid_session(
    node: &Node,
    account: &Account,
    object_key: &str,
) -> (Value, Vec<(String, String)>) {
    let pipeline = account.json["pipeline_id"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/files/uploads/?object_key={object_key}&pipeline_id={pipeline}",
            node.url
        ))
        .bearer_auth(&account.api_key)
        .send()
        .await
        .unwrap();
    let session: Value = resp.json().await.unwrap();
    let up = session["upload"].clone();
    let fields = up["form_post_params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    (up, fields)
}

/// A Prometheus scrape's samples (`GET …/metrics`).
pub struct Scrape(String);

impl Scrape {
    pub async fn of(url: &str) -> Self {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        Self(resp.text().await.unwrap())
    }

    /// The sum of the samples of `name` whose labels include every one of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, value)| value.parse::<f64>().unwrap())
            .sum()
    }

    /// Whether `name` has a `# HELP` line.
    pub fn described(&self, name: &str) -> bool {
        self.0.contains(&format!("# HELP {name} "))
    }
}

/// Writes `DIR/origin.toml` for one origin on SQLite and local files under `dir`, with no
/// processing workers, naming the edge on `edge_port`; returns its database URL. Its secrets
/// come from `UPLINK_INTERNAL_SECRET` and `UPLINK_TOKEN_KEYS`.
pub fn write_origin_config(dir: &Path, origin_port: u16, edge_port: u16) -> String {
    let d = dir.display();
    let database = format!("sqlite://{d}/uplink.db?mode=rwc");
    std::fs::write(
        dir.join("origin.toml"),
        format!(
            "listen = \"127.0.0.1:{origin_port}\"\ndatabase = \"{database}\"\n\
             storage = \"file://{d}/objects\"\ninternal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\n\
             scratch_dir = \"{d}/scratch\"\ntoken_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nworkers = 0\n\
             edge_url = \"http://127.0.0.1:{edge_port}\"\n"
        ),
    )
    .unwrap();
    database
}
