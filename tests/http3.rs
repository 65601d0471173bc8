//! HTTPS and HTTP/3 at the edge (`uplink dev --tls-listen`): the TLS port answers HTTP/2 by
//! ALPN and advertises HTTP/3 with `Alt-Svc`; an HTTP/3 client not written here (aioquic, from
//! PyPI) uploads a real video through the Uploads API, tus and the IETF draft (whose 104 arrives
//! over HTTP/3 too), reads its status through the forwarded control API, and every upload is
//! stored byte-identical and completes. One matrix sends the same requests of every protocol,
//! good and bad, over HTTP/1.1, HTTP/2 and HTTP/3 and requires the same answers.

mod common;

use common::{sha256_file, test_video, Node, Uploads};
use serde_json::Value;

/// One HTTP/3 request by aioquic; its JSON summary (status, headers, body, interim).
async fn h3(url: String, method: &str, headers: Vec<String>, body: Vec<u8>) -> Value {
    let mut args = vec![url, method.to_owned()];
    args.extend(headers);
    common::python_json("h3_request.py", args, body).await
}

/// A tus creation with upload of `bytes` over HTTP/3 (aioquic) to `base`, with `token`.
async fn tus_create(base: &str, token: &str, bytes: &[u8]) -> Value {
    h3(
        format!("{base}/files/"),
        "POST",
        vec![
            format!("authorization:Bearer {token}"),
            "tus-resumable:1.0.0".into(),
            format!("upload-length:{}", bytes.len()),
            "content-type:application/offset+octet-stream".into(),
        ],
        bytes.to_vec(),
    )
    .await
}

/// The upload id at the end of a tus or IETF upload URL.
fn upload_id(location: &str) -> &str {
    let path = location.split('?').next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or(path)
}

fn json_body(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_tls_port_speaks_http2_by_alpn_and_advertises_http3() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let (node, port) = Node::dev_tls_with(&["--metrics-listen", &metrics]).await;
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
    // The metrics count each request and connection by the HTTP version that carried it.
    let scrape = common::Scrape::of(&format!("http://{metrics}/metrics")).await;
    let requests = |flavour: &str, version: &str| {
        scrape.sum(
            "uplink_edge_requests_total",
            &[
                ("flavour", flavour),
                ("version", version),
                ("status", "200"),
            ],
        )
    };
    assert_eq!(requests("health", "2"), 1.0);
    assert_eq!(requests("control", "2"), 1.0);
    assert_eq!(requests("health", "3"), 1.0);
    let connections =
        |version: &str| scrape.sum("uplink_edge_connections_total", &[("version", version)]);
    assert_eq!(connections("2"), 1.0);
    assert_eq!(connections("3"), 1.0);
}

#[tokio::test]
async fn a_real_video_uploaded_over_http3_by_aioquic_is_stored_and_completes() {
    let (node, port) = Node::dev_tls().await;
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
    let created = tus_create(&base, &token, &bytes).await;
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

/// One answer, whatever the HTTP version carried it.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    interim: Vec<u64>,
}

/// Sends one request over HTTPS with HTTP/1.1 or HTTP/2 (reqwest), or over HTTP/3 (aioquic).
async fn send(
    version: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let url = format!("https://127.0.0.1:{port}{path}");
    if version == "3" {
        let headers = headers.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let a = h3(url, method, headers, body.to_vec()).await;
        return Answer {
            status: a["status"].as_u64().unwrap() as u16,
            headers: a["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            body: a["body"].as_str().unwrap().to_owned(),
            interim: a["interim"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .collect(),
        };
    }
    let builder = reqwest::Client::builder().danger_accept_invalid_certs(true);
    let client = if version == "2" {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
    .build()
    .unwrap();
    let mut request = client.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    let expected = if version == "2" {
        reqwest::Version::HTTP_2
    } else {
        reqwest::Version::HTTP_11
    };
    assert_eq!(response.version(), expected);
    Answer {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect(),
        body: response.text().await.unwrap(),
        interim: Vec::new(),
    }
}

/// What must be the same on every version: the status, the protocol headers that matter, and
/// the body with upload ids and tokens taken out.
fn essence(a: &Answer) -> (u16, Vec<(String, String)>, String) {
    let kept = [
        "content-type",
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "upload-offset",
        "upload-length",
        "upload-complete",
        "upload-draft-interop-version",
        "allow",
        "www-authenticate",
    ];
    let headers = a
        .headers
        .iter()
        .filter(|(k, _)| kept.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut body: Value = serde_json::from_str(&a.body).unwrap_or(Value::String(a.body.clone()));
    if let Some(o) = body.as_object_mut() {
        o.remove("id");
        o.remove("video_id");
        // Each request's own id: present on every version, never the same.
        assert!(
            a.status < 400 || o.remove("request_id").is_some_and(|v| v.is_string()),
            "no request_id in {}",
            a.body
        );
    }
    (a.status, headers, body.to_string())
}

/// The same requests of every protocol, good and bad, on one version; what each answered.
async fn protocol_steps(
    version: &str,
    port: u16,
    api_key: &str,
    token: &str,
    video: &[u8],
) -> Vec<(String, Answer)> {
    let bearer = ("authorization", format!("Bearer {api_key}"));
    let with_token = ("authorization", format!("Bearer {token}"));
    let tus = ("tus-resumable", "1.0.0".to_owned());
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    let mut steps = Vec::new();
    macro_rules! step {
        ($name:expr, $method:expr, $path:expr, $headers:expr, $body:expr) => {{
            let answer = send(
                version,
                port,
                $method,
                AsRef::<str>::as_ref(&$path),
                $headers,
                $body,
            )
            .await;
            steps.push(($name.to_owned(), answer.clone()));
            answer
        }};
    }
    step!(
        "uploads api without a key",
        "POST",
        "/api/client/v1/uploads",
        &[],
        b""
    );
    step!(
        "uploads api without a folder",
        "POST",
        "/api/client/v1/uploads",
        &[bearer.clone(), ("content-type", "multipart/form-data; boundary=b".into())],
        b"--b\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\nxyz\r\n--b--\r\n"
    );
    step!(
        "control api: an unknown upload",
        "GET",
        format!("/api/client/v1/uploads/{}", uuid::Uuid::new_v4()),
        std::slice::from_ref(&bearer),
        b""
    );
    step!(
        "tus options",
        "OPTIONS",
        "/files/",
        std::slice::from_ref(&tus),
        b""
    );
    step!(
        "tus without a token",
        "POST",
        "/files/",
        &[tus.clone(), ("upload-length", "10".into())],
        b""
    );
    let created = step!(
        "tus creation",
        "POST",
        "/files/",
        &[
            with_token.clone(),
            tus.clone(),
            ("upload-length", video.len().to_string())
        ],
        b""
    );
    let location = created.headers["location"].clone();
    let half = video.len() / 2;
    step!(
        "tus head",
        "HEAD",
        location,
        &[with_token.clone(), tus.clone()],
        b""
    );
    step!(
        "tus patch",
        "PATCH",
        location,
        &[
            with_token.clone(),
            tus.clone(),
            octets.clone(),
            ("upload-offset", "0".into())
        ],
        &video[..half]
    );
    step!(
        "tus patch at a wrong offset",
        "PATCH",
        location,
        &[
            with_token.clone(),
            tus.clone(),
            octets.clone(),
            ("upload-offset", "1".into())
        ],
        b"x"
    );
    step!(
        "tus patch to the end",
        "PATCH",
        location,
        &[
            with_token.clone(),
            tus.clone(),
            octets.clone(),
            ("upload-offset", half.to_string())
        ],
        &video[half..]
    );
    step!(
        "ietf creation",
        "POST",
        format!("/files/?__token__={token}"),
        &[
            ("upload-draft-interop-version", "8".into()),
            ("upload-complete", "?1".into())
        ],
        video
    );
    step!(
        "movingimage with a bad token",
        "POST",
        format!("/upload/{}?__token__=nope", uuid::Uuid::new_v4()),
        &[],
        b"x"
    );
    step!(
        "s3 post without a policy",
        "POST",
        "/s3/bucket",
        &[("content-type", "multipart/form-data; boundary=b".into())],
        b"--b--\r\n"
    );
    step!(
        "ankoder form without a key",
        "POST",
        "/files/upload",
        &[("content-type", "multipart/form-data; boundary=b".into())],
        b"--b--\r\n"
    );
    step!(
        "an internal path",
        "POST",
        "/internal/v1/api-keys/resolve",
        &[],
        b"{}"
    );
    steps
}

#[tokio::test]
async fn every_protocol_answers_the_same_on_http_1_1_2_and_3() {
    let (node, port) = Node::dev_tls().await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, r#"{"max_uploads": 20}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let video = std::fs::read(test_video(dir.path(), 1)).unwrap();
    let mut runs = Vec::new();
    for version in ["1.1", "2", "3"] {
        runs.push((
            version,
            protocol_steps(version, port, &account.api_key, &token, &video).await,
        ));
    }
    let (_, reference) = &runs[0];
    let statuses: Vec<u16> = reference.iter().map(|(_, a)| a.status).collect();
    assert_eq!(
        statuses,
        [401, 422, 404, 204, 401, 201, 200, 204, 409, 204, 201, 401, 400, 422, 404],
        "{reference:?}"
    );
    for (version, steps) in &runs[1..] {
        assert_eq!(steps.len(), reference.len());
        for ((name, answer), (_, expected)) in steps.iter().zip(reference) {
            assert_eq!(
                essence(answer),
                essence(expected),
                "{name} on HTTP/{version} vs HTTP/1.1"
            );
        }
    }
    // The draft's 104 arrives on HTTP/1.1 and HTTP/3 (Pingora's HTTP/2 drops interim responses).
    let interim = |run: &[(String, Answer)]| {
        run.iter()
            .find(|(n, _)| n == "ietf creation")
            .unwrap()
            .1
            .interim
            .clone()
    };
    assert_eq!(interim(&runs[2].1), [104]);
    // Every upload made on every version completed byte-identical.
    let api = Uploads::new(&node.url, &account.api_key);
    let (_, list) = api.get("").await;
    let finished: Vec<&Value> = list["data"].as_array().unwrap().iter().collect();
    assert_eq!(finished.len(), 6, "{list}");
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&video));
    for upload in finished {
        let record = api.wait_final(upload["id"].as_str().unwrap()).await;
        assert_eq!(
            record["sha256"].as_str(),
            Some(expected.as_str()),
            "{record}"
        );
    }
}

/// A phone moving from Wi-Fi to cellular, or a NAT rebinding: the client's address changes in
/// the middle of a 24 MiB HTTP/3 upload (a relay starts sending from a new source port after
/// 8 MiB and drops the old one). The edge's QUIC connection follows the client (connection
/// migration), the upload completes, and the stored object is byte-identical.
#[tokio::test]
async fn an_http3_upload_survives_the_client_address_changing() {
    let (node, port) = Node::dev_tls().await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let relay = common::relay::RebindingUdpRelay::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        8 << 20,
    )
    .await;
    let bytes: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let base = format!("https://127.0.0.1:{}", relay.addr.port());
    let answer = tus_create(&base, &token, &bytes).await;
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(
        answer["headers"]["upload-offset"],
        bytes.len().to_string(),
        "{answer}"
    );
    assert!(relay.rebound(), "the client's address never changed");
    let location = answer["headers"]["location"].as_str().unwrap();
    Uploads::new(&node.url, &account.api_key)
        .assert_stored(upload_id(location), &bytes)
        .await;
}

/// 0-RTT is never accepted: a client resuming a session sends its request as early data even
/// though the ticket does not allow it (aioquic, `tests/support/h3_zero_rtt.py`); the edge
/// refuses the early data and the request is answered after the handshake.
#[tokio::test]
async fn early_data_is_never_accepted() {
    let (_node, port) = Node::dev_tls().await;
    let url = format!("https://127.0.0.1:{port}/healthz");
    let tried = common::python_json("h3_zero_rtt.py", vec![url], Vec::new()).await;
    assert_eq!(tried["ticket"], true, "{tried}");
    assert_eq!(tried["resumed"], true, "{tried}");
    assert_eq!(
        tried["max_early_data"],
        Value::Null,
        "a ticket allows early data: {tried}"
    );
    assert_eq!(tried["early_data_accepted"], false, "{tried}");
    assert_eq!(tried["status"], 200, "{tried}");
}

/// A second HTTP/3 client not written here: curl_cffi (libcurl with HTTP/3, from PyPI) sends
/// an IETF draft upload (interop 8) in two requests, creation with half the file, then HEAD
/// and PATCH with the rest, all over HTTP/3; the stored object is byte-identical.
#[tokio::test]
async fn curl_uploads_over_http3_with_the_ietf_draft() {
    let (node, port) = Node::dev_tls().await;
    let account = node.account("Acme");
    let token = common::upload_token(&node, &account, "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    let bytes: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let args = vec![
        format!("https://127.0.0.1:{port}"),
        token,
        file.display().to_string(),
    ];
    let sent = common::python_json("h3_curl_ietf.py", args, Vec::new()).await;
    assert_eq!(sent["versions"], serde_json::json!([30, 30, 30]), "{sent}");
    assert_eq!(sent["created"], 201, "{sent}");
    assert!(sent["offset"].as_u64().unwrap() > 0, "{sent}");
    // The PATCH that completes the upload answers 201 with the upload's status.
    assert_eq!(sent["finished"], 201, "{sent}");
    Uploads::new(&node.url, &account.api_key)
        .assert_stored(upload_id(sent["location"].as_str().unwrap()), &bytes)
        .await;
}
