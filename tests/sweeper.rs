//! Clean-up: uploads that will never finish release everything. With `abandon_after = "3s"`
//! and a sweep every second, an unfinished tus upload loses its record and its spooled bytes, a
//! multipart upload left open in S3 is aborted, and a stored upload's spool entry goes after
//! its grace period. Scratch files a killed worker left go once no job could still hold them.

mod common;

use common::{eventually, Backend, Node, S3Server, Uploads};
use std::time::Duration;

const BUCKET: &str = "sweep-test";

#[tokio::test]
async fn nothing_outlives_its_upload() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(
        &config,
        format!(
            "storage = \"s3://{BUCKET}/edge?path_style=true\"\nabandon_after = \"3s\"\nsweep_interval = \"1s\"\n"
        ),
    )
    .unwrap();
    let node = Node::dev_env(
        Backend::Sqlite,
        &["--config", config.to_str().unwrap()],
        &s3.env(),
    )
    .await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let client = reqwest::Client::new();
    let tus = |length: usize, body: Vec<u8>| {
        client
            .post(format!("{}/files/", node.url))
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
            .send()
    };
    // One upload left half done, one finished.
    let unfinished = tus(2 << 20, vec![1u8; 1 << 20]).await.unwrap();
    assert_eq!(unfinished.status(), 201);
    let unfinished = unfinished.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let finished = tus(1000, vec![2u8; 1000]).await.unwrap();
    assert_eq!(finished.status(), 201);
    let finished = finished.headers()["location"].to_str().unwrap().to_owned();
    // A multipart upload some crashed writer left open.
    let r = client
        .post(format!("{}/{BUCKET}/edge/orphan?uploads", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(s3.open_multipart_uploads(BUCKET).await.len(), 1);

    let spool = node.data_dir.path().join("spool/resumable");
    let id_of = |location: &str| location.rsplit('/').next().unwrap().to_owned();
    assert!(spool.join(id_of(&unfinished)).exists());
    let api = Uploads::new(&node.url, &account.api_key);
    eventually("the unfinished upload's record goes", async || {
        let (status, _) = api.get(&format!("/{}", id_of(&unfinished))).await;
        status == 404
    })
    .await;
    eventually("its spooled bytes go", async || {
        !spool.join(id_of(&unfinished)).exists()
    })
    .await;
    eventually("the open multipart upload is aborted", async || {
        s3.open_multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
    eventually(
        "the stored upload's spool entry goes after its grace",
        async || !spool.join(id_of(&finished)).exists(),
    )
    .await;
    // The stored upload itself stays.
    let (status, record) = api.get(&format!("/{}", id_of(&finished))).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["data"]["size"], 1000);
}

#[tokio::test]
async fn a_killed_workers_scratch_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(
        &config,
        "sweep_interval = \"1s\"\njob_lease = \"1s\"\n[processing]\njob_timeout = \"5s\"\n",
    )
    .unwrap();
    let node = Node::dev_with(Backend::Sqlite, &["--config", config.to_str().unwrap()]).await;
    let scratch = node.data_dir.path().join("scratch");
    // What a worker killed an hour ago left, and what a running job holds now.
    let old = scratch.join("job-killed");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("240p.mp4"), b"partial").unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let fresh = scratch.join("job-running");
    std::fs::create_dir_all(&fresh).unwrap();
    eventually("the old scratch directory is removed", async || {
        !old.exists()
    })
    .await;
    assert!(fresh.exists());
}
