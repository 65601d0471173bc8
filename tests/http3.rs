//! HTTPS and HTTP/3 at the edge (`uplink dev --tls-listen`): the TLS port answers HTTP/2 by
//! ALPN and advertises HTTP/3 with `Alt-Svc`; an HTTP/3 client not written here (aioquic, from
//! PyPI) uploads a real video through the Uploads API, tus and the IETF draft (whose 104 arrives
//! over HTTP/3 too), reads its status through the forwarded control API, and every upload is
//! stored byte-identical and completes.

mod common;

use common::{free_port, sha256_file, test_video, Backend, Node, Uploads};
use serde_json::Value;
use std::path::Path;

/// `uplink dev` with HTTPS and HTTP/3 on a port of their own; that port.
async fn tls_node() -> (Node, u16) {
    let port = free_port();
    let node = Node::dev_with(
        Backend::Sqlite,
        &["--tls-listen", &format!("127.0.0.1:{port}")],
    )
    .await;
    (node, port)
}

/// One HTTP/3 request by aioquic; its JSON summary (status, headers, body, interim).
async fn h3(url: String, method: &str, headers: Vec<String>, body: Vec<u8>) -> Value {
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/h3_request.py"))
            .arg(&url)
            .arg(&method)
            .args(&headers)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (pip install aioquic)");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &body).unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "aioquic {method} {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
    .await
    .unwrap()
}

fn json_body(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_tls_port_speaks_http2_by_alpn_and_advertises_http3() {
    let (node, port) = tls_node().await;
    let account = node.account("Acme");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let alt_svc = format!("h3=\":{port}\"; ma=86400");
    let health = client
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    assert_eq!(health.headers()["alt-svc"], alt_svc.as_str());
    // The control API through the TLS port (proxied to the origin) carries it too.
    let list = client
        .get(format!("https://127.0.0.1:{port}/api/client/v1/uploads"))
        .bearer_auth(&account.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(list.headers()["alt-svc"], alt_svc.as_str());
    // And HTTP/3 answers on the same port number, over UDP.
    let answer = h3(
        format!("https://127.0.0.1:{port}/healthz"),
        "GET",
        vec![],
        vec![],
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(json_body(&answer)["role"], "edge");
}

#[tokio::test]
async fn a_real_video_uploaded_over_http3_by_aioquic_is_stored_and_completes() {
    let (node, port) = tls_node().await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let base = format!("https://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 3);
    let bytes = std::fs::read(&video).unwrap();
    let bearer = format!("authorization:Bearer {}", account.api_key);

    // The Uploads API: the seed's multipart form.
    let boundary = "uplink-h3-test-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nroot/h3\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"testsrc.mkv\"\r\n\
         Content-Type: video/x-matroska\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&bytes);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("content-type:multipart/form-data; boundary={boundary}");
    let answer = h3(
        format!("{base}/api/client/v1/uploads"),
        "POST",
        vec![bearer.clone(), content_type.clone()],
        form.clone(),
    )
    .await;
    assert_eq!(answer["status"], 202, "{answer}");
    let id = json_body(&answer)["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Its status, over HTTP/3 through the forwarded control API.
    let status = h3(
        format!("{base}/api/client/v1/uploads/{id}"),
        "GET",
        vec![bearer.clone()],
        vec![],
    )
    .await;
    assert_eq!(status["status"], 200, "{status}");
    assert_eq!(json_body(&status)["data"]["id"], id.as_str());
    let record = api.wait_final(&id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    // Errors are the same as over HTTP/1.1: no key, 401.
    let refused = h3(
        format!("{base}/api/client/v1/uploads"),
        "POST",
        vec![content_type],
        form,
    )
    .await;
    assert_eq!(refused["status"], 401, "{refused}");

    // tus 1.0: creation with upload.
    let token = common::upload_token(&node, &account, "").await;
    let created = h3(
        format!("{base}/files/"),
        "POST",
        vec![
            format!("authorization:Bearer {token}"),
            "tus-resumable:1.0.0".into(),
            format!("upload-length:{}", bytes.len()),
            "content-type:application/offset+octet-stream".into(),
        ],
        bytes.clone(),
    )
    .await;
    assert_eq!(created["status"], 201, "{created}");
    assert_eq!(
        created["headers"]["upload-offset"],
        bytes.len().to_string().as_str()
    );
    let location = created["headers"]["location"].as_str().unwrap();
    let tus_id = location.rsplit('/').next().unwrap();
    let record = api.wait_final(tus_id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );

    // The IETF draft (interop 8, as iOS sends it): the 104 comes over HTTP/3 as well.
    let draft = h3(
        format!("{base}/files/?__token__={token}"),
        "POST",
        vec![
            "upload-draft-interop-version:8".into(),
            "upload-complete:?1".into(),
            "content-type:video/x-matroska".into(),
        ],
        bytes.clone(),
    )
    .await;
    assert_eq!(draft["interim"], serde_json::json!([104]), "{draft}");
    let status = draft["status"].as_u64().unwrap();
    assert!((200..300).contains(&status), "{draft}");
    let draft_id = json_body(&draft)["id"].as_str().unwrap().to_owned();
    assert!(draft["headers"]["location"]
        .as_str()
        .unwrap()
        .starts_with(&format!("/files/{draft_id}")));
    let record = api.wait_final(&draft_id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
}
