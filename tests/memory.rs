//! The edge's memory under many direct uploads into S3 (a moto server): 60 Uploads API uploads
//! of 16 MiB at once, each one multipart POST, go through the edge's spool and its forwarder,
//! so the edge's anonymous memory (its heap: the binary's own pages are not counted, a debug
//! build's are large) stays within 96 MiB + 1 MiB per upload in flight, and every upload is
//! stored whole. The fixed part covers the process (the origin runs in it too), the forwarder's
//! parts in memory and in flight across the edge; the per-upload part, a spool writer's two
//! batches (`store::appender::BATCH`) and its connection: what the test guards is that memory
//! does not grow with an upload's size (the in-memory writer used before peaked at 984 MiB). `UPLINK_MEMORY_UPLOADS=300` runs it with more uploads (the README's figure);
//! the per-client connection cap is raised to let one test client open them all.

mod common;

use common::{Backend, Node, S3Server};
use std::time::Duration;

const BUCKET: &str = "memory";
const UPLOADS: usize = 60;
const MIB: usize = 1024 * 1024;

/// The process's anonymous resident memory, in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn sixty_direct_uploads_into_s3_keep_the_edge_within_its_memory_budget() {
    let uploads_at_once: usize = std::env::var("UPLINK_MEMORY_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(UPLOADS);
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    let cap = uploads_at_once + 16;
    std::fs::write(
        &config,
        format!("[limits]\nmax_connections_per_client = {cap}\n"),
    )
    .unwrap();
    let node = Node::dev_env(
        Backend::Sqlite,
        &[
            "--storage",
            &format!("s3://{BUCKET}/m?path_style=true"),
            "--config",
            config.to_str().unwrap(),
        ],
        &s3.env(),
    )
    .await;
    let account = node.account("Acme");
    let media = tempfile::tempdir().unwrap();
    let file = media.path().join("clip.mp4");
    std::fs::write(&file, vec![0x42u8; 16 * MIB]).unwrap();
    let pid = node.pid();
    let before = rss_anon(pid);

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_anon(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let uploads: Vec<_> = (0..uploads_at_once)
        .map(|_| {
            let (url, key, file) = (node.url.clone(), account.api_key.clone(), file.clone());
            tokio::spawn(async move {
                let body =
                    tokio_util::io::ReaderStream::new(tokio::fs::File::open(&file).await.unwrap());
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(body),
                    (16 * MIB) as u64,
                )
                .file_name("clip.mp4");
                let form = reqwest::multipart::Form::new()
                    .text("folder", "root")
                    .part("video", part);
                let resp = reqwest::Client::new()
                    .post(format!("{url}/api/client/v1/uploads"))
                    .bearer_auth(key)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.await.unwrap(), 202);
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let budget = (96 + uploads_at_once as u64) * MIB as u64;
    eprintln!(
        "edge anonymous memory: {} MiB before, peak {} MiB with {uploads_at_once} uploads at once (budget {} MiB)",
        before / MIB as u64,
        peak / MIB as u64,
        budget / MIB as u64
    );
    assert!(peak <= budget, "peak {peak} over {budget}");
    let stored = s3.keys(BUCKET, "m/").await;
    let sources = stored.iter().filter(|k| k.ends_with("/source")).count();
    assert_eq!(sources, uploads_at_once, "{stored:?}");
    assert!(s3.open_multipart_uploads(BUCKET).await.is_empty());
}
