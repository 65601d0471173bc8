//! tus 1.0 at the edge against `uplink dev`: an independent client (tuspy) uploads and
//! resumes to byte-identical files; every status code of core and extensions; Cloud VoD's
//! uploadUrl continued with its uploadToken.

mod common;

use base64::Engine;
use common::{json_of, sha256_file, test_video, upload_token, Account, Backend, Node, Uploads};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;

/// Uploads `file` with tuspy in `chunk`-byte PATCHes; `then` is a byte count to stop at and
/// resume from (as a new client), or the URL of an upload begun elsewhere to continue.
fn tuspy(node: &Node, token: &str, file: &Path, chunk: usize, then: Option<&str>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tus_upload.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(format!("{}/files/", node.url))
        .arg(token)
        .arg(file)
        .arg(chunk.to_string());
    if let Some(then) = then {
        cmd.arg(then);
    }
    let out = cmd
        .output()
        .expect("python3 with tuspy (bash .ci/setup installs it)");
    assert!(
        out.status.success(),
        "tuspy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn id_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn tuspy_uploads_a_video_and_resumes_5_mib_chunks() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let api = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();

    let video = test_video(dir.path(), 2);
    let url = tuspy(&node, &token, &video, 32 * 1024, None);
    let record = api.wait_final(id_of(&url)).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    assert_eq!(record["filename"], "testsrc.mkv");

    // 12 MiB in 5 MiB chunks, interrupted after the first chunk, resumed by a new client.
    let big = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    let stop = (5 * 1024 * 1024).to_string();
    let url = tuspy(&node, &token, &big, 5 * 1024 * 1024, Some(&stop));
    let record = api.wait_final(id_of(&url)).await;
    assert_eq!(record["size"], 12 * 1024 * 1024);
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&big).as_str()));
    assert!(
        common::files_under(&node.data_dir.path().join("spool/resumable"))
            .iter()
            .all(|p| !p.ends_with("data"))
    );
}

/// A raw tus request.
async fn tus(
    method: Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .body(body.to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn h(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn core_and_extensions_status_codes() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let t = Some(token.as_str());
    let endpoint = format!("{}/files/", node.url);
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");

    let r = tus(Method::OPTIONS, &endpoint, None, &[], b"").await;
    assert_eq!(r.status(), 204);
    assert_eq!(h(&r, "tus-version").as_deref(), Some("1.0.0"));
    assert!(h(&r, "tus-extension")
        .unwrap()
        .contains("creation-with-upload"));
    assert!(h(&r, "tus-checksum-algorithm").unwrap().contains("sha256"));
    assert_eq!(
        tus(Method::POST, &endpoint, t, &[("Upload-Length", "10")], b"")
            .await
            .status(),
        412
    );
    assert_eq!(
        tus(
            Method::POST,
            &endpoint,
            None,
            &[v, ("Upload-Length", "10")],
            b""
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        tus(Method::POST, &endpoint, t, &[v], b"").await.status(),
        400
    );
    assert_eq!(
        tus(
            Method::POST,
            &endpoint,
            t,
            &[v, ("Upload-Metadata", "filename !!")],
            b""
        )
        .await
        .status(),
        400
    );

    let meta = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode("a.bin")
    );
    let r = tus(
        Method::POST,
        &endpoint,
        t,
        &[v, ("Upload-Length", "10"), ("Upload-Metadata", &meta)],
        b"",
    )
    .await;
    assert_eq!(r.status(), 201);
    assert!(h(&r, "upload-expires").unwrap().ends_with("GMT"));
    let location = format!("{}{}", node.url, h(&r, "location").unwrap());
    let r = tus(Method::HEAD, &location, t, &[v], b"").await;
    assert_eq!(
        (
            r.status().as_u16(),
            h(&r, "upload-offset"),
            h(&r, "upload-length")
        ),
        (200, Some("0".into()), Some("10".into()))
    );
    assert_eq!(h(&r, "upload-metadata"), Some(meta.clone()));
    assert_eq!(h(&r, "cache-control").as_deref(), Some("no-store"));

    assert_eq!(
        tus(
            Method::PATCH,
            &location,
            t,
            &[v, ("Upload-Offset", "0")],
            b"abc"
        )
        .await
        .status(),
        415
    );
    assert_eq!(
        tus(
            Method::PATCH,
            &location,
            t,
            &[v, octets, ("Upload-Offset", "3")],
            b"abc"
        )
        .await
        .status(),
        409
    );
    let sha1 = |b: &[u8]| {
        base64::engine::general_purpose::STANDARD.encode(<sha1::Sha1 as sha2::Digest>::digest(b))
    };
    let wrong = format!("sha1 {}", sha1(b"xyz"));
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[
            v,
            octets,
            ("Upload-Offset", "0"),
            ("Upload-Checksum", &wrong),
        ],
        b"abc",
    )
    .await;
    assert_eq!(r.status(), 460);
    assert_eq!(
        tus(
            Method::PATCH,
            &location,
            t,
            &[
                v,
                octets,
                ("Upload-Offset", "0"),
                ("Upload-Checksum", "crc32 AAAA")
            ],
            b"abc"
        )
        .await
        .status(),
        400
    );
    let right = format!("sha1 {}", sha1(b"abc"));
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[
            v,
            octets,
            ("Upload-Offset", "0"),
            ("Upload-Checksum", &right),
        ],
        b"abc",
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (204, Some("3".into()))
    );
    assert_eq!(
        tus(
            Method::PATCH,
            &location,
            t,
            &[v, octets, ("Upload-Offset", "3")],
            b"too long!!!"
        )
        .await
        .status(),
        413
    );
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[v, octets, ("Upload-Offset", "3")],
        b"defghij",
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (204, Some("10".into()))
    );
    let id = id_of(&location).to_owned();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&id)
        .await;
    assert_eq!(record["size"], 10);
    assert_eq!(record["filename"], "a.bin");

    // Deferred length, creation-with-upload, termination.
    let r = tus(
        Method::POST,
        &endpoint,
        t,
        &[v, octets, ("Upload-Defer-Length", "1")],
        b"hello",
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (201, Some("5".into()))
    );
    let deferred = format!("{}{}", node.url, h(&r, "location").unwrap());
    let r = tus(Method::HEAD, &deferred, t, &[v], b"").await;
    assert_eq!(h(&r, "upload-defer-length").as_deref(), Some("1"));
    let r = tus(
        Method::PATCH,
        &deferred,
        t,
        &[v, octets, ("Upload-Offset", "5"), ("Upload-Length", "11")],
        b" world",
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (204, Some("11".into()))
    );
    let r = tus(
        Method::POST,
        &endpoint,
        t,
        &[v, ("Upload-Length", "100")],
        b"",
    )
    .await;
    let doomed = format!("{}{}", node.url, h(&r, "location").unwrap());
    assert_eq!(
        tus(Method::DELETE, &doomed, t, &[v], b"").await.status(),
        204
    );
    assert_eq!(tus(Method::HEAD, &doomed, t, &[v], b"").await.status(), 404);

    // Another account's token cannot see the upload.
    let other = node.account("Other");
    let theirs = upload_token(&node, &other, "").await;
    assert_eq!(
        tus(Method::HEAD, &deferred, Some(&theirs), &[v], b"")
            .await
            .status(),
        404
    );
    // A token's size limit is advertised and enforced: 413, not a quota matter.
    let capped = upload_token(&node, &account, r#"{"max_size": 50}"#).await;
    let r = tus(Method::OPTIONS, &endpoint, Some(&capped), &[], b"").await;
    assert_eq!(h(&r, "tus-max-size").as_deref(), Some("50"));
    let r = tus(
        Method::POST,
        &endpoint,
        Some(&capped),
        &[v, ("Upload-Length", "51")],
        b"",
    )
    .await;
    assert_eq!(r.status(), 413);
    assert_eq!(h(&r, "tus-max-size").as_deref(), Some("50"));
}

#[tokio::test]
async fn a_cloud_vod_upload_url_is_a_tus_resource() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let data = &common::cloudvod_session(&node, &account, "originFileName=testsrc.mkv").await;
    let (url, token) = (
        data["uploadUrl"].as_str().unwrap(),
        data["uploadToken"].as_str().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let bytes = std::fs::read(&video).unwrap();
    let v = ("Tus-Resumable", "1.0.0");
    let r = tus(Method::HEAD, url, Some(token), &[v], b"").await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (200, Some("0".into()))
    );
    let len = bytes.len().to_string();
    let r = tus(
        Method::PATCH,
        url,
        Some(token),
        &[
            v,
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
            ("Upload-Length", &len),
        ],
        &bytes,
    )
    .await;
    assert_eq!(r.status(), 204);
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(data["videoId"].as_str().unwrap())
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
}

/// A PATCH at `offset` announcing `length` bytes of which only `sent` go out; its connection
/// stays open (a client whose network went away), and the server has had time to read them.
async fn half_sent_patch(
    node: &Node,
    path: &str,
    token: &str,
    (offset, length): (usize, usize),
    sent: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = node.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(sent).await.unwrap();
    conn.flush().await.unwrap();
    common::eventually("the edge read what was sent", async || {
        common::peer_has_read(&conn)
    })
    .await;
    conn
}

/// The upload's record as the Uploads API shows it.
/// The upload's record once processed (the SHA-256 is the origin's, computed then).
async fn record(node: &Node, account: &Account, location: &str) -> Value {
    let uploads = Uploads::new(&node.url, &account.api_key);
    uploads.wait_final(id_of(location)).await;
    let (status, body) = uploads.get(&format!("/{}", id_of(location))).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn partial_uploads_sent_in_parallel_are_concatenated() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let t = Some(token.as_str());
    let endpoint = format!("{}/files/", node.url);
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![b'a' + i; 70_000 + usize::from(i)])
        .collect();
    let whole: Vec<u8> = parts.concat();

    // Three partial uploads, created with their bytes, all at once.
    let created = futures_util::future::join_all(parts.iter().map(|part| {
        let len = part.len().to_string();
        let endpoint = endpoint.clone();
        async move {
            let r = tus(
                Method::POST,
                &endpoint,
                t,
                &[
                    v,
                    octets,
                    ("Upload-Concat", "partial"),
                    ("Upload-Length", &len),
                ],
                part,
            )
            .await;
            assert_eq!(r.status(), 201);
            assert_eq!(h(&r, "upload-offset"), Some(len));
            h(&r, "location").unwrap()
        }
    }))
    .await;
    let partial = format!("{}{}", node.url, created[0]);
    let r = tus(Method::HEAD, &partial, t, &[v], b"").await;
    assert_eq!(h(&r, "upload-concat").as_deref(), Some("partial"));

    // A final upload naming an unfinished or unknown part is refused.
    let r = tus(
        Method::POST,
        &endpoint,
        t,
        &[v, ("Upload-Concat", "final;/files/not-an-upload")],
        b"",
    )
    .await;
    assert_eq!(r.status(), 400);

    // The final upload lists them (absolute and relative URLs alike) and is stored at once.
    let list = format!(
        "final;{}{} {} {}",
        node.url, created[0], created[1], created[2]
    );
    let r = tus(
        Method::POST,
        &endpoint,
        t,
        &[v, ("Upload-Concat", &list)],
        b"",
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = format!("{}{}", node.url, h(&r, "location").unwrap());
    let r = tus(Method::HEAD, &location, t, &[v], b"").await;
    assert_eq!(
        h(&r, "upload-offset"),
        Some(whole.len().to_string()),
        "{:?}",
        r.headers()
    );
    assert!(h(&r, "upload-concat").unwrap().starts_with("final;/files/"));
    let patched = tus(
        Method::PATCH,
        &location,
        t,
        &[v, octets, ("Upload-Offset", "0")],
        b"x",
    )
    .await;
    assert_eq!(patched.status(), 403);
    let body = record(&node, &account, &location).await;
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&whole));
    assert_eq!(body["data"]["sha256"], expected, "{body}");
    // The partial uploads are gone once concatenated.
    assert_eq!(
        tus(Method::HEAD, &partial, t, &[v], b"").await.status(),
        404
    );
}

#[tokio::test]
async fn an_upload_over_the_quota_is_refused_with_1101_and_nothing_is_kept() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account_with(&["--name", "Small", "--quota", "1000"]);
    let token = upload_token(&node, &account, "").await;
    let t = Some(token.as_str());
    let endpoint = format!("{}/files/", node.url);
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");
    // Declared over the quota: refused at creation.
    let (status, body) = json_of(
        tus(
            Method::POST,
            &endpoint,
            t,
            &[v, ("Upload-Length", "1001")],
            b"",
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(1101)), "{body}");
    // Two uploads that each fit but not together: the second is refused when it completes.
    let mut locations = vec![];
    for _ in 0..2 {
        let r = tus(
            Method::POST,
            &endpoint,
            t,
            &[v, ("Upload-Length", "600")],
            b"",
        )
        .await;
        assert_eq!(r.status(), 201);
        locations.push(format!("{}{}", node.url, h(&r, "location").unwrap()));
    }
    let first = tus(
        Method::PATCH,
        &locations[0],
        t,
        &[v, octets, ("Upload-Offset", "0")],
        &[1u8; 600],
    )
    .await;
    assert_eq!(first.status(), 204);
    let (status, body) = json_of(
        tus(
            Method::PATCH,
            &locations[1],
            t,
            &[v, octets, ("Upload-Offset", "0")],
            &[2u8; 600],
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(1101)), "{body}");
    assert_eq!(
        tus(Method::HEAD, &locations[1], t, &[v], b"")
            .await
            .status(),
        404
    );
    let (_, list) = Uploads::new(&node.url, &account.api_key).get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert!(common::files_under(&node.data_dir.path().join("spool"))
        .iter()
        .all(|p| !p.to_string_lossy().contains(id_of(&locations[1]))));
}

#[tokio::test]
async fn a_reconnecting_client_ends_its_stale_request_and_keeps_its_bytes() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let t = Some(token.as_str());
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = tus(
        Method::POST,
        &format!("{}/files/", node.url),
        t,
        &[v, ("Upload-Length", "100000")],
        b"",
    )
    .await;
    let path = h(&r, "location").unwrap();
    let location = format!("{}{path}", node.url);

    // A PATCH whose connection hangs after 30,000 of its 100,000 bytes, still open.
    let stale = half_sent_patch(&node, &path, &token, (0, 100_000), &data[..30_000]).await;

    // The client reconnects: its HEAD is answered at once, with what the stale request stored.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tus(Method::HEAD, &location, t, &[v], b""),
    )
    .await
    .expect("a HEAD must not wait for the stale request");
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "upload-offset").as_deref(), Some("30000"));
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[v, octets, ("Upload-Offset", "30000")],
        &data[30_000..],
    )
    .await;
    assert_eq!(r.status(), 204);
    drop(stale);
    let body = record(&node, &account, &location).await;
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    assert_eq!(body["data"]["sha256"], expected, "{body}");
}

#[tokio::test]
async fn kill_9_during_an_upload_then_head_and_resume_give_an_identical_file() {
    let mut node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let t = Some(token.as_str());
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");
    let mib = 1 << 20;
    let data: Vec<u8> = (0..12 * mib as u32)
        .map(|i| (i.wrapping_mul(7919) >> 5) as u8)
        .collect();
    let r = tus(
        Method::POST,
        &format!("{}/files/", node.url),
        t,
        &[v, ("Upload-Length", &data.len().to_string())],
        b"",
    )
    .await;
    let path = h(&r, "location").unwrap();
    let location = format!("{}{path}", node.url);
    // 4 MiB acknowledged.
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[v, octets, ("Upload-Offset", "0")],
        &data[..4 * mib],
    )
    .await;
    assert_eq!(r.status(), 204);
    // A second PATCH is half sent when the process is killed.
    let conn = half_sent_patch(
        &node,
        &path,
        &token,
        (4 * mib, 8 * mib),
        &data[4 * mib..7 * mib],
    )
    .await;
    node.restart().await;
    drop(conn);

    let r = tus(Method::HEAD, &location, t, &[v], b"").await;
    assert_eq!(r.status(), 200);
    let offset: usize = h(&r, "upload-offset").unwrap().parse().unwrap();
    assert!((4 * mib..=7 * mib).contains(&offset), "{offset}");
    let r = tus(
        Method::PATCH,
        &location,
        t,
        &[v, octets, ("Upload-Offset", &offset.to_string())],
        &data[offset..],
    )
    .await;
    assert_eq!(r.status(), 204);
    let body = record(&node, &account, &location).await;
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    assert_eq!(body["data"]["sha256"], expected, "{body}");
}

#[tokio::test]
async fn an_upload_belongs_to_the_grant_that_created_it() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    // Two end users of one customer, each with a token of their own.
    let (alice, bob) = (
        upload_token(&node, &account, "").await,
        upload_token(&node, &account, "").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.bin");
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let v = ("Tus-Resumable", "1.0.0");
    let octets = ("Content-Type", "application/offset+octet-stream");
    let length = bytes.len().to_string();
    let created = tus(
        Method::POST,
        &format!("{}/files/", node.url),
        Some(&alice),
        &[v, ("Upload-Length", &length)],
        b"",
    )
    .await;
    assert_eq!(created.status(), 201);
    let url = format!("{}{}", node.url, h(&created, "location").unwrap());
    let mib = 1024 * 1024;
    let r = tus(
        Method::PATCH,
        &url,
        Some(&alice),
        &[v, octets, ("Upload-Offset", "0")],
        &bytes[..mib],
    )
    .await;
    assert_eq!(r.status(), 204);

    // Bob's token neither sees, writes nor ends Alice's upload: it is unknown to him.
    let offset = mib.to_string();
    let patch = [v, octets, ("Upload-Offset", offset.as_str())];
    for (method, headers, body) in [
        (Method::HEAD, &[v][..], &b""[..]),
        (Method::PATCH, &patch[..], &bytes[mib..2 * mib]),
        (Method::DELETE, &[v][..], &b""[..]),
    ] {
        let r = tus(method.clone(), &url, Some(&bob), headers, body).await;
        assert_eq!(r.status(), 404, "{method} with another grant's token");
    }
    let r = tus(Method::HEAD, &url, Some(&alice), &[v], b"").await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (200, Some(offset.clone()))
    );

    // The customer's backend mints a fresh token for that one upload (its API key), as it
    // does when Alice's token expires; tuspy continues from HEAD with it.
    let id = id_of(&url).to_owned();
    let fresh = reqwest::Client::new()
        .post(format!("{}/v1/upload-tokens", node.url))
        .bearer_auth(&account.api_key)
        .body(format!(r#"{{"upload_id": "{id}", "ttl": 600}}"#))
        .send()
        .await
        .unwrap();
    let (status, fresh) = json_of(fresh).await;
    assert_eq!(status, 201, "{fresh}");
    assert_eq!(fresh["upload_url"], url.as_str());
    let token = fresh["token"].as_str().unwrap();
    // It reaches that upload only: it creates nothing.
    let r = tus(
        Method::POST,
        &format!("{}/files/", node.url),
        Some(token),
        &[v, ("Upload-Length", "5")],
        b"",
    )
    .await;
    assert_eq!(r.status(), 403);
    tuspy(&node, token, &file, mib, Some(&url));
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&id)
        .await;
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&file).as_str()),
        "{record}"
    );

    // No fresh token for an upload that is finished, unknown or another account's.
    let other = node.account("Other");
    for (key, upload) in [
        (&account.api_key, id.as_str()),
        (&account.api_key, "00000000-0000-4000-8000-000000000000"),
        (&other.api_key, id.as_str()),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/upload-tokens", node.url))
            .bearer_auth(key)
            .body(format!(r#"{{"upload_id": "{upload}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{upload}");
    }
}
