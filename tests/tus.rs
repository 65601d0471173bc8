//! tus 1.0 at the edge against `uplink dev`: an independent client (tuspy) uploads and
//! resumes to byte-identical files; every status code of core and extensions; Cloud VoD's
//! uploadUrl continued with its uploadToken.

mod common;

use base64::Engine;
use common::{json_of, sha256_file, test_video, Account, Backend, Node, Uploads};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;

async fn upload_token(node: &Node, account: &Account, body: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/upload-tokens", node.url))
        .bearer_auth(&account.api_key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn tuspy(node: &Node, token: &str, file: &Path, chunk: usize, stop_at: Option<usize>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tus_upload.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg(format!("{}/files/", node.url))
        .arg(token)
        .arg(file)
        .arg(chunk.to_string());
    if let Some(stop) = stop_at {
        cmd.arg(stop.to_string());
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
    let url = tuspy(&node, &token, &big, 5 * 1024 * 1024, Some(5 * 1024 * 1024));
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

    // Another account's token cannot see the upload; an over-quota length is 1101.
    let other = node.account("Other");
    let theirs = upload_token(&node, &other, "").await;
    assert_eq!(
        tus(Method::HEAD, &deferred, Some(&theirs), &[v], b"")
            .await
            .status(),
        404
    );
    let capped = upload_token(&node, &account, r#"{"max_size": 50}"#).await;
    let (status, body) = json_of(
        tus(
            Method::POST,
            &endpoint,
            Some(&capped),
            &[v, ("Upload-Length", "51")],
            b"",
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(1101)), "{body}");
}

#[tokio::test]
async fn a_cloud_vod_upload_url_is_a_tus_resource() {
    use hmac::{Hmac, Mac};
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
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
        .body("originFileName=testsrc.mkv")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let (_, body) = json_of(resp).await;
    let data: &Value = &body["data"];
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
