//! The Uploads API seed against `uplink dev`, on SQLite and on PostgreSQL: the 202 body, the
//! list, the single status, the lifecycle to 6 (real video) or 7 (not a video), `size` and
//! `sha256`, errors, tenancy, and state across a crash and restart.

mod common;

use common::{eventually, files_under, mp4_boxes, sha256_file, test_video, Backend, Node, Uploads};
use serde_json::json;
use uplink::db::{upload, Db};
use uplink::upload::{Failure, Status};

async fn db_of(node: &Node) -> Db {
    let url = uplink::config::DatabaseUrl::parse(&node.database_url(), "test").unwrap();
    Db::open(&url).await.unwrap()
}

/// An upload's status code and text, as the API shows them.
async fn status_of(api: &Uploads<'_>, id: &str) -> (i64, String) {
    let (status, body) = api.get(&format!("/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    (
        data["status"].as_i64().unwrap(),
        data["status_text"].as_str().unwrap().to_owned(),
    )
}

async fn video_reaches_completed(backend: Backend) {
    let node = Node::dev(backend).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 2);

    let (status, body) = api.post(&video, Some("root/my-folder")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<uplink::upload::UploadId>().is_ok(), "{id}");
    assert_eq!(
        body,
        json!({
            "message": "Upload accepted and is now being processed.",
            "data": { "id": id, "status": 1, "status_text": "pending" }
        })
    );

    let record = api.wait_final(&id).await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(record["status_text"], "completed");
    assert_eq!(record["filename"], "testsrc.mkv");
    assert_eq!(record["folder"], "root/my-folder");
    assert_eq!(
        record["size"].as_u64(),
        Some(std::fs::metadata(&video).unwrap().len())
    );
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    assert!(
        record["duration_ms"]
            .as_i64()
            .is_some_and(|d| (1900..=2200).contains(&d)),
        "{record}"
    );

    let db = db_of(&node).await;
    assert_eq!(
        upload::history(&db, &id).await.unwrap(),
        [
            Status::Receiving,
            Status::Pending,
            Status::Processing,
            Status::Uploading,
            Status::Completed
        ]
    );
    // The remuxed output is a fast-start MP4: the index (moov) before the media data.
    let stored = upload::get(&db, &id).await.unwrap().unwrap();
    let output = node.objects().join(stored.output_key.unwrap());
    let boxes = mp4_boxes(&output);
    let moov = boxes.iter().position(|b| b == "moov").expect("moov box");
    let mdat = boxes.iter().position(|b| b == "mdat").expect("mdat box");
    assert!(moov < mdat, "{boxes:?}");
    // And the stored source is byte-identical.
    assert_eq!(
        sha256_file(&node.objects().join(&stored.object_key)),
        sha256_file(&video)
    );

    let (status, list) = api.get("").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["status"], 6);
}

#[tokio::test]
async fn video_reaches_completed_sqlite() {
    video_reaches_completed(Backend::Sqlite).await;
}

#[tokio::test]
async fn video_reaches_completed_postgres() {
    video_reaches_completed(Backend::Postgres).await;
}

async fn non_video_fails(backend: Backend) {
    let node = Node::dev(backend).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "this is not a video\n".repeat(500)).unwrap();

    let (status, body) = api.post(&notes, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let record = api.wait_final(&id).await;
    assert_eq!(record["status"], 7, "{record}");
    assert_eq!(record["status_text"], "failed");
    assert_eq!(record["error_code"], "not_a_video", "{record}");
    assert_eq!(
        record["error"],
        "The file is not a video in a format this service supports."
    );
    // FFmpeg's own words go to the log with the upload id, never to the customer.
    assert!(
        node.log().contains(&id),
        "the failure is logged with its upload id"
    );
    assert_eq!(record["size"], 10_000);
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&notes).as_str())
    );
    let db = db_of(&node).await;
    assert_eq!(
        upload::history(&db, &id).await.unwrap().last(),
        Some(&Status::Failed)
    );
}

#[tokio::test]
async fn non_video_fails_sqlite() {
    non_video_fails(Backend::Sqlite).await;
}

#[tokio::test]
async fn non_video_fails_postgres() {
    non_video_fails(Backend::Postgres).await;
}

async fn state_survives_a_crash(backend: Backend) {
    let mut node = Node::dev(backend).await;
    let account = node.account("Acme");
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let id = {
        let api = Uploads::new(&node.url, &account.api_key);
        let (_, body) = api.post(&video, Some("root")).await;
        let id = body["data"]["id"].as_str().unwrap().to_owned();
        assert_eq!(api.wait_final(&id).await["status"], 6);
        id
    };
    node.restart().await;
    let api = Uploads::new(&node.url, &account.api_key);
    let (status, body) = api.get(&format!("/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], 6);
    assert_eq!(
        body["data"]["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    // The same key still works and new uploads go through.
    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let second = body["data"]["id"].as_str().unwrap();
    assert_eq!(api.wait_final(second).await["status"], 6);
    let (_, list) = api.get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn state_survives_a_crash_sqlite() {
    state_survives_a_crash(Backend::Sqlite).await;
}

#[tokio::test]
async fn state_survives_a_crash_postgres() {
    state_survives_a_crash(Backend::Postgres).await;
}

#[tokio::test]
async fn keys_and_tenancy_are_enforced() {
    let node = Node::dev(Backend::Sqlite).await;
    let alice = node.account("Alice");
    let bob = node.account("Bob");
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let a = Uploads::new(&node.url, &alice.api_key);
    let (_, body) = a.post(&video, Some("root")).await;
    let id = body["data"]["id"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    for path in ["", &format!("/{id}")] {
        let url = format!("{}/api/client/v1/uploads{path}", node.url);
        let (status, body) = common::json_of(http.get(&url).send().await.unwrap()).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["message"].as_str().unwrap().contains("Bearer"));
        let (status, _) =
            common::json_of(http.get(&url).bearer_auth("sk-wrong").send().await.unwrap()).await;
        assert_eq!(status, 401);
    }
    let (status, _) = Uploads::new(&node.url, "sk-wrong")
        .post(&video, Some("root"))
        .await;
    assert_eq!(status, 401);

    let b = Uploads::new(&node.url, &bob.api_key);
    let (status, body) = b.get(&format!("/{id}")).await;
    assert_eq!(status, 404, "{body}");
    let (_, list) = b.get("").await;
    assert_eq!(list["data"], json!([]));
    let (status, _) = a.get("/not-a-uuid").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_forms_are_refused_and_leave_nothing_behind() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);

    let (status, body) = api.post(&video, None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"]["folder"][0], "The folder field is required.");
    let (status, body) = api.post(&video, Some("   ")).await;
    assert_eq!(status, 422, "{body}");

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let (status, body) = api.post(&empty, Some("root")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["video"][0]
        .as_str()
        .unwrap()
        .contains("empty"));

    let http = reqwest::Client::new();
    let url = format!("{}/api/client/v1/uploads", node.url);
    let form = reqwest::multipart::Form::new().text("folder", "root");
    let resp = http
        .post(&url)
        .bearer_auth(&account.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"]["video"][0], "The video field is required.");

    let resp = http
        .post(&url)
        .bearer_auth(&account.api_key)
        .body("raw bytes")
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("multipart/form-data"));

    // A form cut off in the middle of the file.
    let resp = http
        .post(&url)
        .bearer_auth(&account.api_key)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body("--XyZ\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\nsome bytes")
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "Malformed request: the body ended before the form's closing boundary"
    );

    // Nothing of the refused uploads remains: no records, no objects, no partial files.
    let (_, list) = api.get("").await;
    assert_eq!(list["data"], json!([]), "{list}");
    assert_eq!(
        files_under(&node.objects()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn oversized_uploads_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(&config, "max_upload_size = \"1KiB\"\n").unwrap();
    let node = Node::dev_with(Backend::Sqlite, &["--config", config.to_str().unwrap()]).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 200_000]).unwrap();
    // Refused from its declared length, before the body is read.
    let (status, body) = api.post(&big, Some("root")).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("1024 bytes"));
    // Declared small enough to be read, refused once the file passes the limit mid-stream.
    let medium = dir.path().join("medium.bin");
    std::fs::write(&medium, vec![7u8; 20_000]).unwrap();
    let (status, body) = api.post(&medium, Some("root")).await;
    assert_eq!(status, 413, "{body}");
    let (_, list) = api.get("").await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(
        files_under(&node.objects()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn every_status_code_is_shown_with_its_text_and_the_list_is_the_newest_50() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let pipeline = account.json["pipeline_id"].as_str().unwrap();
    let db = db_of(&node).await;
    // 55 uploads written straight into the node's database, one millisecond apart.
    let mut ids = Vec::new();
    for i in 0..55i64 {
        let id = uplink::upload::UploadId::new();
        let new = upload::NewUpload {
            id,
            account_id: account.id.clone(),
            pipeline_id: pipeline.to_owned(),
            flavour: "test".into(),
            filename: format!("v{i}.mp4"),
            object_key: format!("t/{id}"),
            token_id: None,
            expires_at: None,
            metadata: None,
            client_ref: None,
            declared_size: None,
            writer: None,
            resumable_state: None,
            folder: None,
            app_metadata: None,
        };
        upload::insert(&db, &new, 1_700_000_000_000 + i)
            .await
            .unwrap();
        ids.push(id.to_string());
    }
    let api = Uploads::new(&node.url, &account.api_key);
    let (status, list) = api.get("").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let newest: Vec<&str> = ids.iter().rev().take(50).map(String::as_str).collect();
    assert_eq!(listed, newest);

    // Walk one upload through each status and read it back from the API each time. Plain
    // transitions queue no job, so the node's worker never touches these rows.
    let id = &ids[0];
    let mut seen = vec![status_of(&api, id).await];
    for next in [
        Status::Pending,
        Status::Processing,
        Status::Uploading,
        Status::Completed,
    ] {
        assert!(
            upload::transition(&db, id, next, None, 2).await.unwrap(),
            "{next:?}"
        );
        seen.push(status_of(&api, id).await);
    }
    assert!(
        upload::transition(&db, &ids[1], Status::Failed, Some(Failure::Damaged), 3)
            .await
            .unwrap()
    );
    seen.push(status_of(&api, &ids[1]).await);
    let expected: Vec<(i64, String)> = [
        (0, "receiving"),
        (1, "pending"),
        (3, "processing"),
        (5, "uploading"),
        (6, "completed"),
        (7, "failed"),
    ]
    .into_iter()
    .map(|(c, t)| (c, t.to_owned()))
    .collect();
    assert_eq!(seen, expected);
    // A completed upload cannot fail afterwards.
    assert!(!upload::transition(&db, id, Status::Failed, None, 4)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_nothing_behind() {
    use tokio::io::AsyncWriteExt;
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let head = format!(
        "POST /api/client/v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 1000000\r\n\r\n\
         --B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.mp4\"\r\n\r\n",
        account.api_key
    );
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![1u8; 200_000]).await.unwrap();
    tcp.flush().await.unwrap();
    // Wait until the edge has opened the upload (a partial file exists), then hang up.
    let partial = node.objects().join(".partial");
    eventually("the upload started", async || {
        !files_under(&partial).is_empty()
    })
    .await;
    drop(tcp);

    let api = Uploads::new(&node.url, &account.api_key);
    eventually("nothing left behind", async || {
        let (_, list) = api.get("").await;
        list["data"] == json!([]) && files_under(&node.objects()).is_empty()
    })
    .await;
}
