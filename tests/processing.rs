//! Processing and notifications against `uplink dev`: an Ankoder-form upload with `custom_*`
//! fields is transcoded to H.264 renditions and a thumbnail that the edge serves (with ranges),
//! and the seed's signed notification, also signed as a Standard Webhook, reaches a receiver
//! that failed twice; a non-video fails with a signed failure notification; a worker killed
//! mid-job does not lose the job; private notification addresses are refused when guarded and
//! redirects are not followed; Cloud VoD names templates, watermarks and HLS.

mod common;

use axum::http::{HeaderMap, StatusCode};
use common::{submit_form, test_video, Backend, Node, Uploads};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }

    /// The seed's `message` and `signature` of a form body.
    fn form(&self) -> (String, String) {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert_eq!(
            (pairs[0].0.as_str(), pairs[1].0.as_str()),
            ("message", "signature")
        );
        (pairs[0].1.clone(), pairs[1].1.clone())
    }

    /// Verifies the Standard Webhooks signature ([`common::verify_webhook`]).
    fn verify_webhook(&self, secret: &str) -> Value {
        common::verify_webhook(&self.headers, &self.body, secret)
    }
}

/// A customer's notification endpoint on a free port: answers 500 to its first `failures`
/// requests, then 200, and keeps every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    let mut all = kept.lock().unwrap();
                    all.push(Received { headers, body });
                    if all.len() <= failures {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, got }
    }

    /// Waits until `n` requests have arrived; returns them all.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} notifications after {limit:?}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn seed_signature(secret: &str, message: &str) -> String {
    use base64::Engine;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Uploads `file` through the seed's HTML form with `custom_*` fields and waits until it is
/// processed; returns the video id and its final status record.
async fn form_upload(node: &Node, account: &common::Account, file: &Path) -> (String, Value) {
    let key = account.json["access_key"].as_str().unwrap();
    let fields = [
        ("access_key", key),
        ("custom_user", "1"),
        ("custom_profile", "5"),
    ];
    let (status, _, body) = submit_form(&node.url, &fields, Some(file)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let id = body["video_id"].as_str().unwrap().to_owned();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&id)
        .await;
    (id, record)
}

/// ffprobe's view of a file's first video stream and its format.
fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The error of an upload's first failed notification attempt (PostgreSQL nodes).
async fn first_failure(node: &Node, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("psql")
            .args([
                &node.database_url(),
                "-tAc",
                &format!("SELECT last_error FROM notifications WHERE upload_id = '{id}'"),
            ])
            .output()
            .unwrap();
        let error = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !error.is_empty() {
            return error;
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_form_upload_is_transcoded_and_notified_after_two_failures() {
    let (node, _config) = Node::dev_toml(Backend::Sqlite, "[notify]\nfirst_retry = \"1s\"\n").await;
    let receiver = Receiver::start(2).await;
    let account = node.account_with(&["--name", "Acme", "--notify-url", &receiver.url]);
    let secret = account.json["secret"].as_str().unwrap().to_owned();
    let media = tempfile::tempdir().unwrap();
    let video = test_video(media.path(), 3);

    let (id, record) = form_upload(&node, &account, &video).await;
    assert_eq!(record["status"], 6, "{record}");

    // One 240p rendition (the source is 320x240: nothing is upscaled) and a thumbnail.
    let outputs = record["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["240p.mp4", "thumbnail.jpg"], "{record}");
    let rendition = &outputs[0];
    assert_eq!(
        (rendition["width"].as_u64(), rendition["height"].as_u64()),
        (Some(320), Some(240))
    );
    let url = rendition["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/v1/outputs/", node.url)),
        "{url}"
    );
    let bytes = reqwest::get(url).await.unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.headers()["content-type"], "video/mp4");
    let bytes = bytes.bytes().await.unwrap();
    assert_eq!(Some(bytes.len() as u64), rendition["size"].as_u64());
    let local = media.path().join("240p.mp4");
    std::fs::write(&local, &bytes).unwrap();
    let probe = ffprobe(&local);
    let video_stream = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap();
    assert_eq!(video_stream["codec_name"], "h264", "{probe}");
    assert!(probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["codec_name"] == "aac"));
    let seconds: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2.9..=3.2).contains(&seconds), "{seconds}");

    // Players seek with ranges; a changed link is refused.
    let client = reqwest::Client::new();
    let part = client
        .get(url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(100..200));
    // The link's signature covers this upload's outputs, nothing else: not its source, not a
    // changed signature.
    let source = url.replace("outputs/240p.mp4", "source");
    assert_eq!(reqwest::get(&source).await.unwrap().status(), 403);
    let (head, tail) = url.split_once("/v1/outputs/").unwrap();
    let forged = format!("{head}/v1/outputs/x{tail}");
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 403);
    let thumbnail = reqwest::get(outputs[1]["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(thumbnail.headers()["content-type"], "image/jpeg");
    assert!(thumbnail.bytes().await.unwrap().starts_with(&[0xff, 0xd8]));

    // Two failures, then delivered: three attempts of the same notification.
    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    // Once the outbox records the delivery, nothing will send it again.
    let undelivered = format!(
        "SELECT count(*) FROM notifications WHERE upload_id = '{id}' AND delivered_at IS NULL"
    );
    common::eventually("the delivery recorded", async || {
        common::sql_number(&node, &undelivered).await == 0
    })
    .await;
    assert_eq!(receiver.got.lock().unwrap().len(), 3, "nothing after a 200");
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for request in &got {
        assert_eq!(
            request.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let (message, signature) = request.form();
        assert_eq!(signature, seed_signature(&secret, &message));
        assert_eq!(request.verify_webhook(&secret), json!({ "verified": true }));
    }
    let (message, _) = got[2].form();
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["result"], "success");
    assert_eq!(message["error"], Value::Null);
    assert_eq!(message["type"], "NewVideo");
    assert_eq!(message["video_id"], id.as_str());
    assert_eq!(message["filename"], "testsrc.mkv");
    assert_eq!(
        message["custom_fields"],
        json!({ "custom_user": "1", "custom_profile": "5" })
    );
    assert_eq!(
        message["size"].as_str().unwrap(),
        std::fs::metadata(&video).unwrap().len().to_string()
    );
    let duration: i64 = message["duration"].as_str().unwrap().parse().unwrap();
    assert!((2900..=3200).contains(&duration), "{message}");
    // A tampered body fails both signatures.
    let mut tampered = got[2].clone();
    tampered.body = tampered.body.replace("success", "failed");
    let (m, s) = tampered.form();
    assert_ne!(s, seed_signature(&secret, &m));
}

#[tokio::test]
async fn a_non_video_fails_with_signed_failure_and_status_notifications() {
    let node = Node::dev(Backend::Postgres).await;
    let receiver = Receiver::start(0).await;
    let account = node.account_with(&[
        "--name",
        "Acme",
        "--notify-url",
        &receiver.url,
        "--notify-format",
        "json",
        "--notify-status-changes",
    ]);
    let secret = account.json["secret"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all\n".repeat(1000)).unwrap();

    let (id, record) = form_upload(&node, &account, &text).await;
    assert_eq!(record["status"], 7, "{record}");
    assert_eq!(record["error_code"], "not_a_video", "{record}");

    // processing, failed (status changes) and the seed's failure message, each verified by
    // the Standard Webhooks library, which parses the JSON body.
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let messages: Vec<Value> = got.iter().map(|r| r.verify_webhook(&secret)).collect();
    let kinds: Vec<(String, Value)> = messages
        .iter()
        .map(|m| (m["type"].as_str().unwrap().to_owned(), m["status"].clone()))
        .collect();
    assert!(
        kinds.contains(&("StatusChanged".into(), json!(3))),
        "{messages:?}"
    );
    assert!(
        kinds.contains(&("StatusChanged".into(), json!(7))),
        "{messages:?}"
    );
    let failure = messages.iter().find(|m| m["type"] == "NewVideo").unwrap();
    assert_eq!(failure["result"], "failed");
    assert_eq!(failure["video_id"], id.as_str());
    assert_eq!(failure["video_name"], "notes.mp4");
    // The seed's short text in the seed's message, the code beside it; the status change
    // carries the customer's message.
    assert_eq!(failure["error"], "invalid video");
    assert_eq!(failure["error_code"], "not_a_video");
    let changed = messages
        .iter()
        .find(|m| m["type"] == "StatusChanged" && m["status"] == 7)
        .unwrap();
    assert_eq!(changed["error"], record["error"]);
    assert_eq!(changed["error_code"], "not_a_video");
    assert_eq!(
        failure["custom_fields"],
        json!({ "custom_user": "1", "custom_profile": "5" })
    );
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "each event has its own id");
    assert!(got
        .iter()
        .all(|r| r.header("content-type") == "application/json"));
}

#[tokio::test]
async fn a_worker_killed_mid_job_does_not_lose_it() {
    let (mut node, _config) = Node::dev_toml(Backend::Postgres, "job_lease = \"2s\"\n").await;
    let receiver = Receiver::start(0).await;
    let account = node.account_with(&["--name", "Acme", "--notify-url", &receiver.url]);
    let api = Uploads::new(&node.url, &account.api_key);
    let media = tempfile::tempdir().unwrap();
    // Long enough to be caught processing: 1280x720, three renditions.
    let video = media.path().join("long.mkv");
    common::ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=20:size=1280x720:rate=25",
            "-c:v",
            "mpeg4",
            "-q:v",
            "5",
        ],
        &video,
    );

    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = api.get(&format!("/{id}")).await;
        let code = body["data"]["status"].as_i64().unwrap();
        assert!(code < 5, "finished before it could be killed: {body}");
        if code == 3 {
            let progress = body["data"]["progress"].as_u64();
            assert!(progress.is_some_and(|p| p <= 100), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never processing: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.restart().await; // SIGKILL mid-job, then start again on the same state.

    let api = Uploads::new(&node.url, &account.api_key);
    let record = api.wait_final(&id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["progress"],
        Value::Null,
        "only while processing: {record}"
    );
    let heights: Vec<u64> = record["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["height"].as_u64())
        .collect();
    assert_eq!(
        heights,
        [720, 480, 360],
        "renditions, then the thumbnail: {record}"
    );
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([&node.database_url(), "-tAc", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        psql(&format!(
            "SELECT attempts FROM jobs WHERE upload_id = '{id}'"
        )),
        "2"
    );
    // One completion, one notification, whatever the crash.
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let written = format!("SELECT count(*) FROM notifications WHERE upload_id = '{id}'");
    assert_eq!(
        common::sql_number(&node, &written).await,
        1,
        "one notification written"
    );
    let undelivered = format!("{written} AND delivered_at IS NULL");
    common::eventually("its delivery recorded", async || {
        common::sql_number(&node, &undelivered).await == 0
    })
    .await;
    assert_eq!(receiver.got.lock().unwrap().len(), 1, "{got:?}");
}

#[tokio::test]
async fn private_notification_addresses_are_refused_when_guarded() {
    let (node, _config) = Node::dev_toml(
        Backend::Postgres,
        "[notify]\nallow_private_addresses = false\nfirst_retry = \"1s\"\n",
    )
    .await;
    let receiver = Receiver::start(0).await;
    let account = node.account_with(&["--name", "Acme", "--notify-url", &receiver.url]);
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let (id, record) = form_upload(&node, &account, &video).await;
    assert_eq!(record["status"], 6, "{record}");
    let error = first_failure(&node, &id).await;
    assert!(error.contains("private"), "{error}");
    assert!(receiver.got.lock().unwrap().is_empty());
}

/// Sends a whole file to a Cloud VoD upload URL (a tus resource) in one PATCH.
async fn tus_send(data: &Value, file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let resp = reqwest::Client::new()
        .patch(data["uploadUrl"].as_str().unwrap())
        .bearer_auth(data["uploadToken"].as_str().unwrap())
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .header("Upload-Length", bytes.len().to_string())
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

#[tokio::test]
async fn cloud_vod_names_the_template_and_watermark_and_hls_plays_through_the_edge() {
    let assets = tempfile::tempdir().unwrap();
    let logo = assets.path().join("logo.png");
    common::ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=blue:s=24x24",
            "-frames:v",
            "1",
        ],
        &logo,
    );
    let config = format!(
        "[processing.templates.small]\n\
         renditions = [{{ height = 240, video_bitrate = \"400k\" }}, {{ height = 120, video_bitrate = \"150k\" }}]\n\
         thumbnail = false\nhls = true\n\
         [processing.watermarks]\nlogo = \"{}\"\n",
        logo.display()
    );
    let (node, _config) = Node::dev_toml(Backend::Sqlite, &config).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let video = test_video(assets.path(), 8);

    let form = "originFileName=testsrc.mkv&transCodeCombineName=small&waterMarkName=logo";
    let data = common::cloudvod_session(&node, &account, form).await;
    tus_send(&data, &video).await;
    let record = api.wait_final(data["videoId"].as_str().unwrap()).await;
    assert_eq!(record["status"], 6, "{record}");
    let outputs = record["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["240p.mp4", "120p.mp4", "hls/master.m3u8"],
        "{record}"
    );

    // A player follows the master playlist's relative links through the edge.
    let master_url = reqwest::Url::parse(outputs[2]["url"].as_str().unwrap()).unwrap();
    let master = reqwest::get(master_url.clone()).await.unwrap();
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let master = master.text().await.unwrap();
    let variant = master.lines().find(|l| l.ends_with(".m3u8")).unwrap();
    assert_eq!(variant, "240p.m3u8", "{master}");
    let media_url = master_url.join(variant).unwrap();
    let media = reqwest::get(media_url.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let segment = media.lines().find(|l| l.ends_with(".ts")).unwrap();
    let segment = reqwest::get(media_url.join(segment).unwrap())
        .await
        .unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.bytes().await.unwrap()[0], 0x47, "an MPEG-TS packet");

    // A template the origin does not have fails the upload with a message that says so.
    let form = "originFileName=testsrc.mkv&transCodeCombineName=huge";
    let data = common::cloudvod_session(&node, &account, form).await;
    tus_send(&data, &video).await;
    let record = api.wait_final(data["videoId"].as_str().unwrap()).await;
    assert_eq!(record["status"], 7, "{record}");
    assert_eq!(record["error_code"], "unknown_template", "{record}");
    assert_eq!(
        record["error"],
        "The upload names a transcoding template that does not exist."
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let node = Node::dev(Backend::Postgres).await;
    let target = Receiver::start(0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let moved = format!("http://{}/hook", listener.local_addr().unwrap());
    let to = target.url.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let to = to.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let account = node.account_with(&["--name", "Acme", "--notify-url", &moved]);
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = form_upload(&node, &account, &test_video(dir.path(), 1)).await;
    let error = first_failure(&node, &id).await;
    assert!(
        error.contains("307") && error.contains("redirects"),
        "{error}"
    );
    assert!(target.got.lock().unwrap().is_empty());
}

/// Progress while an upload is receiving: the status record's `bytes_received` follows a tus
/// upload sent in pieces (the edge reports every 2 s), and an account that asks for progress
/// events gets `UploadProgress`, signed as every notification, at most once per its interval
/// (here 30 s: one event, however many reports), then the upload's own notification.
#[tokio::test]
async fn progress_is_reported_while_an_upload_is_receiving() {
    let node = Node::dev(Backend::Sqlite).await;
    let receiver = Receiver::start(0).await;
    let account = node.account_with(&[
        "--name",
        "Acme",
        "--notify-url",
        &receiver.url,
        "--notify-format",
        "json",
        "--notify-progress",
        "30s",
    ]);
    assert_eq!(account.json["notify_progress_ms"], 30_000);
    let secret = account.json["secret"].as_str().unwrap().to_owned();
    let token = common::upload_token(&node, &account, "{}").await;
    const MIB: usize = 1 << 20;
    let data = vec![7u8; 3 * MIB];
    let created = common::tus(
        reqwest::Method::POST,
        &format!("{}/files/", node.url),
        &token,
        &[("upload-length", data.len().to_string())],
        Vec::new(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let path = created.headers()["location"].to_str().unwrap().to_owned();
    let id = path.rsplit('/').next().unwrap().to_owned();
    let api = Uploads::new(&node.url, &account.api_key);
    for at in [0, MIB, 2 * MIB] {
        let r = common::tus(
            reqwest::Method::PATCH,
            &format!("{}{path}", node.url),
            &token,
            &[
                ("content-type", "application/offset+octet-stream".to_owned()),
                ("upload-offset", at.to_string()),
            ],
            data[at..at + MIB].to_vec(),
        )
        .await;
        assert_eq!(r.status(), 204);
        if at + MIB == data.len() {
            break;
        }
        common::eventually("the status record shows the bytes received", async || {
            let (status, record) = api.get(&format!("/{id}")).await;
            assert_eq!(status, 200, "{record}");
            let record = &record["data"];
            assert_eq!(record["status"], 0, "{record}");
            record["bytes_received"] == at + MIB
        })
        .await;
    }
    let record = api.wait_final(&id).await;
    assert_eq!(record["bytes_received"], Value::Null, "{record}");

    // One progress event (the second report came within the interval), then the seed's
    // failure message for these bytes, which are no video.
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let messages: Vec<Value> = got.iter().map(|r| r.verify_webhook(&secret)).collect();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "UploadProgress")
        .collect();
    assert_eq!(progress.len(), 1, "{messages:?}");
    assert_eq!(progress[0]["video_id"], id.as_str());
    assert_eq!(progress[0]["bytes_received"], MIB);
    assert_eq!(progress[0]["total"], data.len());
    assert_eq!(progress[0]["status"], 0);
    assert!(
        messages.iter().any(|m| m["type"] == "NewVideo"),
        "{messages:?}"
    );
}
