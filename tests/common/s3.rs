//! A real S3 API server on a free port for a test or benchmark, and what it holds, read over
//! plain HTTP: moto's (from PyPI), which the tests use, or s3s-fs (from crates.io), a fast one
//! storing on the local disk, which the load benchmark uses when it is installed. Shared by the
//! tests and the benchmarks (which include this file by path).
#![allow(dead_code)]

use super::net::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key pair every client of these servers signs with.
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";

/// A real S3 API server for a test (moto's server from PyPI; `bash .ci/setup` installs it) on a
/// free port, killed when dropped. Unsigned requests are enough for moto, so the tests create
/// buckets and read objects with plain HTTP.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// s3s-fs's directory (its buckets are directories in it).
    root: Option<tempfile::TempDir>,
}

impl S3Server {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (bash .ci/setup installs moto[server])");
        Self::ready(child, port, None).await
    }

    /// s3s-fs (`cargo install s3s-fs@0.14.1 --features binary`), storing in a temporary
    /// directory, with buckets `buckets`; `None` when it is not installed. It checks request
    /// signatures (the key pair of [`S3Server::env`]) and has no `ListMultipartUploads`.
    pub async fn start_s3s_fs(buckets: &[&str]) -> Option<Self> {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).unwrap();
        }
        let port = free_port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self::ready(child, port, Some(root)).await)
    }

    async fn ready(child: Child, port: u16, root: Option<tempfile::TempDir>) -> Self {
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "the S3 server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            endpoint,
            root,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates a bucket.
    pub async fn bucket(&self, name: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// An object's bytes, or `None`.
    pub async fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = reqwest::get(format!("{}/{bucket}/{key}", self.endpoint))
            .await
            .unwrap();
        r.status()
            .is_success()
            .then_some(r.bytes().await.unwrap().to_vec())
    }

    /// Keys of the objects under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = self
            .text(&format!("{bucket}?list-type=2&prefix={prefix}"))
            .await;
        xml_values(&body, "Key")
    }

    /// The body of `GET /{path}` (an XML listing).
    async fn text(&self, path: &str) -> String {
        let resp = reqwest::get(format!("{}/{path}", self.endpoint))
            .await
            .unwrap();
        resp.text().await.unwrap()
    }

    /// Keys of the multipart uploads still open in `bucket`.
    pub async fn open_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let body = self.text(&format!("{bucket}?uploads")).await;
        xml_values(&body, "Key")
    }

    /// The number of parts of each multipart upload still open in `bucket`.
    pub async fn open_parts(&self, bucket: &str) -> Vec<usize> {
        let body = self.text(&format!("{bucket}?uploads")).await;
        let mut counts = Vec::new();
        for (key, id) in xml_values(&body, "Key")
            .into_iter()
            .zip(xml_values(&body, "UploadId"))
        {
            let parts = self.text(&format!("{bucket}/{key}?uploadId={id}")).await;
            counts.push(xml_values(&parts, "PartNumber").len());
        }
        counts
    }

    /// The environment that points an `uplink` process at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The texts of every `<tag>…</tag>` in an XML document.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_owned)
        .collect()
}
