//! The S3 store against a real S3 API server (moto_server): an upload is forwarded to S3 in
//! parts and lands as one byte-identical object; the origin's worker reads it back and writes
//! its output there; an upload cut off half way leaves no multipart upload open.

mod common;

use common::{eventually, sha256_file, test_video, Backend, Node, S3Server, Uploads};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

const BUCKET: &str = "uplink-test";

async fn node_on_s3(s3: &S3Server) -> Node {
    s3.bucket(BUCKET).await;
    Node::dev_env(
        Backend::Sqlite,
        &[
            "--storage",
            &format!("s3://{BUCKET}/edge?path_style=true&part_size=5MiB&parts_in_flight=3"),
        ],
        &s3.env(),
    )
    .await
}

/// moto behind a proxy that fails the first `failures` requests whose first line contains all
/// of `matching` (S3's `SlowDown`), a node storing through it (5 MiB parts), and an account.
async fn through_proxy(
    matching: &'static [&'static str],
    failures: usize,
) -> (S3Server, common::FaultyProxy, Node, common::Account) {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let proxy = common::FaultyProxy::start(&s3.endpoint, matching, failures).await;
    let env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k, proxy.endpoint.clone()),
            _ => (k, v),
        })
        .collect();
    let storage = format!("s3://{BUCKET}/edge?path_style=true&part_size=5MiB");
    let node = Node::dev_env(Backend::Sqlite, &["--storage", &storage], &env).await;
    let account = node.account("Acme");
    (s3, proxy, node, account)
}

#[tokio::test]
async fn forty_mib_in_2_mib_chunks_lands_in_s3_as_one_object() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let data: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/files/", node.url))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", data.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = format!("{}{}", node.url, r.headers()["location"].to_str().unwrap());
    for (i, chunk) in data.chunks(2 << 20).enumerate() {
        let r = client
            .patch(&location)
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", (i * (2 << 20)).to_string())
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "chunk {i}");
    }
    let id = location.rsplit('/').next().unwrap();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    let expected = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(record["sha256"], expected, "{record}");
    // The worker read the object back from S3: it fails as "not a video", not on storage.
    assert_eq!(record["status"], 7, "{record}");
    assert_eq!(record["error_code"], "not_a_video", "{record}");
    let keys = s3.keys(BUCKET, "edge/").await;
    let source = keys
        .iter()
        .find(|k| k.ends_with(&format!("{id}/source")))
        .unwrap_or_else(|| panic!("no source object in {keys:?}"));
    let stored = s3.object(BUCKET, source).await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&stored)), expected);
    assert_eq!(
        s3.open_multipart_uploads(BUCKET).await,
        Vec::<String>::new()
    );
    let head = reqwest::Client::new()
        .head(format!("{}/{BUCKET}/{source}", s3.endpoint))
        .header("x-amz-checksum-mode", "ENABLED")
        .send()
        .await
        .unwrap();
    // Every part carried its CRC32C, and S3 keeps the object's.
    assert_eq!(head.headers()["x-amz-checksum-algorithm"], "CRC32C");
    assert!(head.headers().contains_key("x-amz-checksum-crc32c"));
}

#[tokio::test]
async fn a_video_is_processed_from_and_into_s3() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let api = Uploads::new(&node.url, &account.api_key);
    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap();
    let record = api.wait_final(id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    let keys = s3.keys(BUCKET, "edge/").await;
    assert!(
        keys.iter()
            .any(|k| k.contains(id) && k.ends_with("/outputs/240p.mp4")),
        "{keys:?}"
    );
    // The edge serves the rendition from S3, whole and by range.
    let url = record["outputs"][0]["url"].as_str().unwrap();
    let whole = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        Some(whole.len() as u64),
        record["outputs"][0]["size"].as_u64()
    );
    let tail = reqwest::Client::new()
        .get(url)
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.unwrap(),
        whole.slice(whole.len() - 100..)
    );
    let missing = url.replace("240p.mp4", "1080p.mp4");
    assert_eq!(reqwest::get(&missing).await.unwrap().status(), 404);
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_no_multipart_upload_open() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    // An Uploads API request announcing 20 MiB, cut off after 12 MiB (two parts sent).
    let boundary = "cutcutcut";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nroot\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    );
    let addr = node.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /api/client/v1/uploads HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        account.api_key,
        head.len() + (20 << 20)
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let piece = vec![9u8; 1 << 20];
    for _ in 0..12 {
        conn.write_all(&piece).await.unwrap();
    }
    conn.flush().await.unwrap();
    // Wait until S3 has the multipart upload open, then drop the connection.
    eventually("a multipart upload opened", async || {
        !s3.open_multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
    drop(conn);
    eventually("the multipart upload aborted", async || {
        s3.open_multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
    let keys = s3.keys(BUCKET, "edge/").await;
    assert!(keys.is_empty(), "objects left: {keys:?}");
    // The record goes once the multipart upload is aborted, a moment later.
    let api = Uploads::new(&node.url, &account.api_key);
    eventually("the upload's record dropped", async || {
        let (_, list) = api.get("").await;
        list["data"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
}

#[tokio::test]
async fn failing_parts_are_retried_and_the_upload_completes() {
    // The first five UploadPart requests fail with S3's SlowDown.
    let (s3, proxy, node, account) = through_proxy(&["partNumber="], 5).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let data: Vec<u8> = (0..23u32 << 20).map(|i| (i % 241) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let api = Uploads::new(&node.url, &account.api_key);
    let (status, body) = api.post(&file, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(proxy.failed.load(std::sync::atomic::Ordering::SeqCst), 5);
    let id = body["data"]["id"].as_str().unwrap();
    let keys = s3.keys(BUCKET, "edge/").await;
    let source = keys
        .iter()
        .find(|k| k.ends_with(&format!("{id}/source")))
        .unwrap();
    let stored = s3.object(BUCKET, source).await.unwrap();
    assert_eq!(stored.len(), data.len());
    assert!(stored == data, "the object differs from the upload");
    assert_eq!(
        s3.open_multipart_uploads(BUCKET).await,
        Vec::<String>::new()
    );
}

/// Bytes that differ at every offset.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// Opens a tus upload of `len` bytes; returns its URL.
async fn tus_create(node: &Node, token: &str, len: usize) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/files/", node.url))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    format!("{}{}", node.url, r.headers()["location"].to_str().unwrap())
}

/// A tus HEAD's `Upload-Offset`.
async fn tus_offset(location: &str, token: &str) -> usize {
    let r = reqwest::Client::new()
        .head(location)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A tus PATCH request at `offset`, its body to be set.
fn tus_patch(location: &str, token: &str, offset: usize) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .patch(location)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", offset.to_string())
}

/// A tus PATCH of `body` at `offset`, answered 204.
async fn patch_ok(location: &str, token: &str, offset: usize, body: Vec<u8>) {
    let r = tus_patch(location, token, offset)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Waits for upload `id` to be final, checks that S3 holds exactly `data` as its source and
/// that no multipart upload is left open; its record.
async fn assert_stored(
    s3: &S3Server,
    node: &Node,
    account: &common::Account,
    id: &str,
    data: &[u8],
) -> serde_json::Value {
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    let keys = s3.keys(BUCKET, "edge/").await;
    let source = keys
        .iter()
        .find(|k| k.ends_with(&format!("{id}/source")))
        .unwrap_or_else(|| panic!("no source object in {keys:?}"));
    let stored = s3.object(BUCKET, source).await.unwrap();
    assert!(stored == data, "the object differs from the upload");
    assert_eq!(
        s3.open_multipart_uploads(BUCKET).await,
        Vec::<String>::new()
    );
    record
}

#[tokio::test]
async fn one_long_tus_patch_is_in_s3_parts_before_its_last_byte() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let data = pattern(16 << 20);
    let location = tus_create(&node, &token, data.len()).await;
    // One PATCH for the whole file; its body stops after 12 MiB (at least 11 MiB taken by the
    // client) until two parts are in S3.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let request = tus_patch(&location, &token, 0)
        .header("Content-Length", data.len().to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let patch = tokio::spawn(request);
    for piece in data[..12 << 20].chunks(1 << 20) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    eventually("two parts in S3 while the request is open", || async {
        s3.open_parts(BUCKET).await == vec![2]
    })
    .await;
    assert!(!patch.is_finished());
    for piece in data[12 << 20..].chunks(1 << 20) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    drop(tx);
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 204);
    let id = location.rsplit('/').next().unwrap();
    let record = assert_stored(&s3, &node, &account, id, &data).await;
    let expected = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(record["sha256"], expected, "{record}");
}

#[tokio::test]
async fn kill_9_during_a_tus_upload_to_s3_resumes_without_sending_a_part_twice() {
    // A proxy that fails nothing and counts UploadPart requests.
    let (s3, proxy, mut node, account) = through_proxy(&["partNumber="], 0).await;
    let token = common::upload_token(&node, &account, "").await;
    let data = pattern(23 << 20);
    let location = tus_create(&node, &token, data.len()).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    patch_ok(&location, &token, 0, data[..12 << 20].to_vec()).await;
    // Two full parts are in S3 and recorded by the edge; then the process is killed.
    let state = node
        .data_dir
        .path()
        .join(format!("spool/forward/{id}.json"));
    eventually("the edge records two parts", || async {
        std::fs::read_to_string(&state).is_ok_and(|s| s.matches("\"etag\"").count() == 2)
    })
    .await;
    node.restart().await;

    assert_eq!(tus_offset(&location, &token).await, 12 << 20);
    patch_ok(&location, &token, 12 << 20, data[12 << 20..].to_vec()).await;
    let record = assert_stored(&s3, &node, &account, &id, &data).await;
    assert_eq!(record["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    // 23 MiB in 5 MiB parts is five parts: none was sent twice.
    assert_eq!(proxy.seen.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(!state.exists());
}

#[tokio::test]
async fn a_part_that_failed_is_sent_again_while_its_client_sends_nothing() {
    // Every attempt the S3 client makes at the first part fails (it tries six times), so the
    // forwarding fails after the client's only request so far.
    let (s3, proxy, node, account) = through_proxy(&["partNumber="], 6).await;
    let token = common::upload_token(&node, &account, "").await;
    let data = pattern(12 << 20);
    let location = tus_create(&node, &token, data.len()).await;
    patch_ok(&location, &token, 0, data[..6 << 20].to_vec()).await;
    // The client pauses; the edge tries again by itself.
    eventually("the first part in S3 without another request", || async {
        s3.open_parts(BUCKET).await == vec![1]
    })
    .await;
    assert_eq!(proxy.failed.load(std::sync::atomic::Ordering::SeqCst), 6);
    patch_ok(&location, &token, 6 << 20, data[6 << 20..].to_vec()).await;
    let id = location.rsplit('/').next().unwrap();
    let record = assert_stored(&s3, &node, &account, id, &data).await;
    assert_eq!(record["sha256"], hex::encode(sha2::Sha256::digest(&data)));
}

#[tokio::test]
async fn a_terminated_tus_upload_leaves_no_multipart_upload_open() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let data = pattern(12 << 20);
    let location = tus_create(&node, &token, 20 << 20).await;
    patch_ok(&location, &token, 0, data).await;
    eventually("two parts in S3", || async {
        s3.open_parts(BUCKET).await == vec![2]
    })
    .await;
    let r = reqwest::Client::new()
        .delete(&location)
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s3.open_multipart_uploads(BUCKET).await,
        Vec::<String>::new()
    );
    assert!(s3.keys(BUCKET, "edge/").await.is_empty());
    let spool = node.data_dir.path().join("spool");
    assert_eq!(
        common::files_under(&spool.join("forward")),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn numbered_chunks_go_to_s3_once_they_are_contiguous() {
    let s3 = S3Server::start().await;
    let node = node_on_s3(&s3).await;
    let account = node.account("Acme");
    let (video, url) = common::movingimage_url(&node, &account).await;
    // Four 3 MiB chunks, 5 MiB parts: chunks 1 and 2 make one full part.
    let data = pattern(12 << 20);
    let chunk = |n: usize| data[(n - 1) * (3 << 20)..n * (3 << 20)].to_vec();
    for n in [1, 4] {
        let (status, body) = common::movingimage_chunk(&url, 4, n, chunk(n)).await;
        assert_eq!(status, 202, "{body}");
    }
    // Chunk 4 is not contiguous with chunk 1: nothing can go yet. A negative check with a
    // bounded wait: the forwarder reacts to a chunk within milliseconds (below, chunk 2's part
    // appears well within this), so half a second without a part means none was planned.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(s3.open_parts(BUCKET).await, Vec::<usize>::new());
    let (status, body) = common::movingimage_chunk(&url, 4, 2, chunk(2)).await;
    assert_eq!(status, 202, "{body}");
    eventually("the first part in S3 before the last chunk", || async {
        s3.open_parts(BUCKET).await == vec![1]
    })
    .await;
    let (status, body) = common::movingimage_chunk(&url, 4, 3, chunk(3)).await;
    assert_eq!(status, 201, "{body}");
    assert_stored(&s3, &node, &account, &video, &data).await;
}

#[tokio::test]
async fn an_upload_whose_completion_failed_is_stored_by_the_next_head() {
    // Every attempt of the first CompleteMultipartUpload (the SDK makes six) fails.
    a_failed_completion_is_finished_by_the_next_head(&["POST ", "uploadId="]).await;
}

#[tokio::test]
async fn an_upload_completed_in_s3_but_not_confirmed_is_stored_by_the_next_head() {
    // The multipart upload is completed, then every attempt to check the object's size fails:
    // the edge does not know it completed (as after a power cut that lost its record of it),
    // and S3 (the proxy, as S3 does) no longer has the multipart upload when the edge completes
    // it again.
    let proxy =
        a_failed_completion_is_finished_by_the_next_head(&["HEAD /uplink-test/edge/"]).await;
    // The parts were not sent again: the object was found complete.
    let parts = proxy
        .passed
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("partNumber="))
        .count();
    assert_eq!(parts, 3, "12 MiB in 5 MiB parts, each sent once");
}

/// A tus upload whose completion fails six times on requests matching `matching`: its last
/// PATCH is answered 503, and the client's next HEAD stores it. Returns the proxy.
async fn a_failed_completion_is_finished_by_the_next_head(
    matching: &'static [&'static str],
) -> common::FaultyProxy {
    let (s3, proxy, node, account) = through_proxy(matching, 6).await;
    let token = common::upload_token(&node, &account, "").await;
    let data = pattern(12 << 20);
    let location = tus_create(&node, &token, data.len()).await;
    let r = tus_patch(&location, &token, 0)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "storage down: retry");
    assert_eq!(proxy.failed.load(std::sync::atomic::Ordering::SeqCst), 6);
    // A tus client now asks for the offset; every byte is in, so the edge stores it first.
    assert_eq!(tus_offset(&location, &token).await, data.len());
    let id = location.rsplit('/').next().unwrap();
    assert_stored(&s3, &node, &account, id, &data).await;
    proxy
}
