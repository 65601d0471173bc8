//! A real S3 API server (moto's, from PyPI) on a free port for a test or benchmark, and what
//! it holds, read over plain HTTP. Shared by the tests and the benchmarks (which include this
//! file by path).
#![allow(dead_code)]

use super::net::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real S3 API server for a test (moto's server from PyPI; `bash .ci/setup` installs it) on a
/// free port, killed when dropped. Unsigned requests are enough for moto, so the tests create
/// buckets and read objects with plain HTTP.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
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
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, endpoint }
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
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
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
