//! Uploads from a URL against `uplink dev` and a local source server that serves a video,
//! drops the connection half way (the edge resumes with `Range`), redirects, pauses (the
//! record shows the bytes received while it is status 0), lies about its length, sends more
//! than the account may upload, or answers 404; into S3 in parts too; across a kill -9 of the
//! node; and, with the guard on, a source on a private address is refused.

mod common;

use common::{sha256_file, test_video, Backend, Node, Uploads};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The source server: each path misbehaves its own way; `Range` headers seen are kept.
struct Source {
    base: String,
    ranges: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
    /// Lets `/slow/…` send its second half, once true.
    release: tokio::sync::watch::Sender<bool>,
}

impl Source {
    async fn start(video: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let source = Self {
            base: format!("http://127.0.0.1:{port}"),
            ranges: Arc::default(),
            requests: Arc::default(),
            release: tokio::sync::watch::channel(false).0,
        };
        let (ranges, requests, release) = (
            source.ranges.clone(),
            source.requests.clone(),
            source.release.clone(),
        );
        let video = Arc::new(video);
        tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                let (video, ranges, release) = (video.clone(), ranges.clone(), release.clone());
                *requests.lock().unwrap() += 1;
                tokio::spawn(serve(conn, video, ranges, release));
            }
        });
        source
    }
}

/// Reads a request head; its path and `Range` header.
async fn read_head(conn: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1)?.to_owned();
    let range = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("range: ")
                .or_else(|| l.strip_prefix("Range: "))
        })
        .map(str::to_owned);
    Some((path, range))
}

async fn serve(
    mut conn: TcpStream,
    video: Arc<Vec<u8>>,
    ranges: Arc<Mutex<Vec<String>>>,
    release: tokio::sync::watch::Sender<bool>,
) {
    let Some((path, range)) = read_head(&mut conn).await else {
        return;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    if let Some(r) = &range {
        ranges.lock().unwrap().push(format!("{path} {r}"));
    }
    let len = video.len();
    let half = len / 2;
    let ok = |body_len: usize| {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\ncontent-type: video/x-matroska\r\nconnection: close\r\n\r\n")
    };
    let partial = |from: usize| {
        format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{len}\r\nconnection: close\r\n\r\n",
            len - from,
            len - 1
        )
    };
    let _ = match (path.as_str(), start) {
        // Serves the whole video, or the range asked for.
        ("/video.mkv", None) => write(&mut conn, &ok(len), &video).await,
        ("/video.mkv" | "/drop/video.mkv" | "/slow/video.mkv", Some(from)) => {
            write(&mut conn, &partial(from), &video[from..]).await
        }
        // Half of the video, then the connection drops.
        ("/drop/video.mkv", None) => write(&mut conn, &ok(len), &video[..half]).await,
        // Half, then the rest once the test has seen the half arrive.
        ("/slow/video.mkv", None) => {
            let sent = write(&mut conn, &ok(len), &video[..half]).await;
            let _ = release.subscribe().wait_for(|go| *go).await;
            sent.and(conn.write_all(&video[half..]).await)
        }
        ("/redirect", _) => {
            let head = "HTTP/1.1 302 Found\r\nlocation: /video.mkv\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            write(&mut conn, head, &[]).await
        }
        // Says the whole length, sends half, and ignores Range.
        ("/liar.mkv", _) => write(&mut conn, &ok(len), &video[..half]).await,
        // No length, and more than the account may upload.
        ("/endless.mkv", _) => {
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let mut sent = write(&mut conn, head, &[]).await;
            for _ in 0..64 {
                let chunk = vec![7u8; 64 * 1024];
                sent = sent.and(
                    conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await,
                );
                sent = sent.and(conn.write_all(&chunk).await);
                sent = sent.and(conn.write_all(b"\r\n").await);
                if sent.is_err() {
                    break;
                }
            }
            sent
        }
        // Declares more than the account may upload.
        ("/huge.mkv", _) => write(&mut conn, &ok(1 << 30), &video).await,
        _ => {
            let head = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            write(&mut conn, head, &[]).await
        }
    };
}

async fn write(conn: &mut TcpStream, head: &str, body: &[u8]) -> std::io::Result<()> {
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.flush().await
}

/// Asks the Uploads API to fetch `url` (a JSON body); the new upload's id.
async fn from_url(node: &Node, key: &str, url: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/client/v1/uploads", node.url))
        .bearer_auth(key)
        .json(&json!({ "url": url, "folder": "fetched" }))
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], 0, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn failure_of(uploads: &Uploads<'_>, id: &str) -> Value {
    let record = uploads.wait_final(id).await;
    assert_eq!(record["status"], 7, "{record}");
    record["error_code"].clone()
}

#[tokio::test]
async fn an_upload_from_a_url_is_fetched_resumed_and_processed() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let uploads = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 2);
    let bytes = std::fs::read(&video).unwrap();
    let half = bytes.len() / 2;
    let source = Source::start(bytes.clone()).await;

    // Dropped half way: resumed from the half with Range, stored byte-identical, processed.
    let id = from_url(
        &node,
        &account.api_key,
        &format!("{}/drop/video.mkv", source.base),
    )
    .await;
    let record = uploads.wait_final(&id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    assert_eq!(record["filename"], "video.mkv");
    assert_eq!(record["folder"], "fetched");
    assert_eq!(
        *source.ranges.lock().unwrap(),
        vec![format!("/drop/video.mkv bytes={half}-")]
    );

    // Through a redirect, sent as a form field.
    let form = reqwest::multipart::Form::new()
        .text("folder", "f")
        .text("url", format!("{}/redirect", source.base));
    let resp = reqwest::Client::new()
        .post(format!("{}/api/client/v1/uploads", node.url))
        .bearer_auth(&account.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 202, "{body}");
    uploads
        .assert_stored(body["data"]["id"].as_str().unwrap(), &bytes)
        .await;

    // movingimage's video creation with a url: the video is opened and fetched by the edge.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/videos", node.url))
        .bearer_auth(&account.api_key)
        .json(&json!({ "url": format!("{}/video.mkv", source.base) }))
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], 0, "{body}");
    let record = uploads
        .assert_stored(body["videoId"].as_str().unwrap(), &bytes)
        .await;
    assert_eq!(record["filename"], "video.mkv");

    // While the source pauses, the record shows status 0 and the bytes so far.
    let id = from_url(
        &node,
        &account.api_key,
        &format!("{}/slow/video.mkv", source.base),
    )
    .await;
    common::eventually("the first half is reported", async || {
        let (_, record) = uploads.get(&format!("/{id}")).await;
        record["data"]["status"] == 0
            && record["data"]["bytes_received"].as_u64() == Some(half as u64)
    })
    .await;
    source.release.send_replace(true);
    uploads.assert_stored(&id, &bytes).await;
}

#[tokio::test]
async fn a_fetch_under_way_survives_a_crash_of_its_edge() {
    let mut node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let base = node.url.clone();
    let uploads = Uploads::new(&base, &account.api_key);
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let half = bytes.len() / 2;
    let source = Source::start(bytes.clone()).await;
    let url = format!("{}/slow/video.mkv", source.base);
    let id = from_url(&node, &account.api_key, &url).await;
    common::eventually("half the source is in", async || {
        let (_, record) = uploads.get(&format!("/{id}")).await;
        record["data"]["bytes_received"].as_u64() == Some(half as u64)
    })
    .await;
    node.restart().await;
    // The restarted edge asks for the source again, from the start.
    common::eventually("the source is asked again", async || {
        *source.requests.lock().unwrap() == 2
    })
    .await;
    source.release.send_replace(true);
    uploads.assert_stored(&id, &bytes).await;
}

#[tokio::test]
async fn a_fetched_upload_is_forwarded_to_s3_in_parts_across_a_dropped_connection() {
    let s3 = common::S3Server::start().await;
    s3.bucket("fetched").await;
    let storage = "s3://fetched/edge?path_style=true&part_size=5MiB";
    let node = Node::dev_env(Backend::Sqlite, &["--storage", storage], &s3.env()).await;
    let account = node.account("Acme");
    let uploads = Uploads::new(&node.url, &account.api_key);
    let bytes: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = Source::start(bytes.clone()).await;
    let id = from_url(
        &node,
        &account.api_key,
        &format!("{}/drop/video.mkv", source.base),
    )
    .await;
    uploads.assert_stored(&id, &bytes).await;
    let keys = s3.keys("fetched", "").await;
    let key = keys
        .iter()
        .find(|k| k.contains(&id) && k.ends_with("/source"))
        .unwrap_or_else(|| panic!("{keys:?}"));
    assert!(s3.object("fetched", key).await.unwrap() == bytes);
    assert!(s3.open_multipart_uploads("fetched").await.is_empty());
    assert_eq!(source.ranges.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_sources_fail_with_a_clear_code() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account_with(&["--name", "Small", "--max-upload-size", "1MiB"]);
    let uploads = Uploads::new(&node.url, &account.api_key);
    // A small "video": half of it is well under the account's limit.
    let source = Source::start(vec![1u8; 600 * 1024]).await;
    for (path, code) in [
        ("/liar.mkv", "source_unreachable"),
        ("/missing.mkv", "source_unreachable"),
        ("/endless.mkv", "source_too_large"),
        ("/huge.mkv", "source_too_large"),
    ] {
        let id = from_url(&node, &account.api_key, &format!("{}{path}", source.base)).await;
        assert_eq!(failure_of(&uploads, &id).await, code, "{path}");
    }
    // A server that cannot be reached: given up after five attempts; the signed link's
    // credentials never reach the log.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v.mp4?X-Amz-Signature=topsecret",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let id = from_url(&node, &account.api_key, &url).await;
    assert_eq!(failure_of(&uploads, &id).await, "source_unreachable");
    assert!(!node.log().contains("topsecret"), "{}", node.log());

    // The liar ignored the edge's one Range request: given up at once, not retried.
    let ranges = source.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![format!("/liar.mkv bytes={}-", 300 * 1024)]);

    // What can be told at once is a 422 on the field, and nothing is made.
    for (body, field) in [
        (
            json!({ "url": "ftp://example.com/v.mp4", "folder": "f" }),
            "url",
        ),
        (json!({ "url": "not a url", "folder": "f" }), "url"),
        (json!({ "folder": "f" }), "url"),
        (
            json!({ "url": format!("{}/video.mkv", source.base) }),
            "folder",
        ),
    ] {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/client/v1/uploads", node.url))
            .bearer_auth(&account.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, answer) = common::json_of(resp).await;
        assert_eq!(status, 422, "{body} {answer}");
        assert!(answer["errors"][field].is_array(), "{answer}");
    }
    let (_, list) = uploads.get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 5, "{list}");
}

#[tokio::test]
async fn the_guard_refuses_private_sources() {
    let toml = "[fetch]\nallow_private_addresses = false\n";
    let (node, _config) = Node::dev_toml(Backend::Sqlite, toml).await;
    let account = node.account("Acme");
    let uploads = Uploads::new(&node.url, &account.api_key);
    let source = Source::start(vec![1u8; 1024]).await;
    let port = source.base.rsplit(':').next().unwrap();

    // A name that resolves to loopback: refused when the connection is made.
    let id = from_url(
        &node,
        &account.api_key,
        &format!("http://localhost:{port}/video.mkv"),
    )
    .await;
    assert_eq!(failure_of(&uploads, &id).await, "source_not_allowed");
    // A private address written in the URL: refused at once.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/client/v1/uploads", node.url))
        .bearer_auth(&account.api_key)
        .json(&json!({ "url": format!("{}/video.mkv", source.base), "folder": "f" }))
        .send()
        .await
        .unwrap();
    let (status, answer) = common::json_of(resp).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("private"),
        "{answer}"
    );
    assert_eq!(
        *source.requests.lock().unwrap(),
        0,
        "the source was never asked"
    );
}
