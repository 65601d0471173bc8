//! S3 POST Object at the edge: boto3's own presigned POSTs (Signature V4 and V2), the xvid
//! session's form posted as its seed says, S3's answers and errors.

mod common;

use common::{post_form, presigned, sha256_file, test_video, xvid_session, Backend, Node, Uploads};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn md5_hex(path: &Path) -> String {
    hex::encode(Md5::digest(std::fs::read(path).unwrap()))
}

fn s3_code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or_else(|| panic!("no S3 error: {body}"))
}

#[tokio::test]
async fn boto3_presigned_posts_upload_through_the_edge() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let bucket = account.json["pipeline_id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let api = Uploads::new(&node.url, &account.api_key);
    for version in ["s3v4", "s3"] {
        let (url, fields) = presigned(&node, &account, bucket, version);
        assert_eq!(url, format!("{}/s3/{bucket}", node.url));
        let (status, headers, body) = post_form(&url, &fields, &video).await;
        assert_eq!(status, 204, "{version}: {body}");
        assert_eq!(
            headers["etag"].to_str().unwrap(),
            format!("\"{}\"", md5_hex(&video))
        );
        assert_eq!(
            headers["location"].to_str().unwrap(),
            format!("/s3/{bucket}/clips/testsrc.mkv")
        );
        let (_, list) = api.get("").await;
        let newest = &list["data"][0];
        assert_eq!(newest["filename"], "testsrc.mkv");
        let record = api.wait_final(newest["id"].as_str().unwrap()).await;
        assert_eq!(record["status"], 6, "{record}");
        assert_eq!(
            record["sha256"].as_str(),
            Some(sha256_file(&video).as_str())
        );
    }
}

#[tokio::test]
async fn the_xvid_sessions_form_completes_that_session() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let pipeline = account.json["pipeline_id"].as_str().unwrap();
    let (up, fields) = xvid_session(&node, &account, "uploads%2Ftest.mkv").await;
    let up = &up;
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let (status, headers, body) =
        post_form(up["form_post_url"].as_str().unwrap(), &fields, &video).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.contains(&format!("<Key>tmp/{pipeline}/uploads/test.mkv</Key>")),
        "{body}"
    );
    assert!(
        body.contains(&format!("<Bucket>{pipeline}</Bucket>")),
        "{body}"
    );
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        format!("\"{}\"", md5_hex(&video))
    );
    // The bytes completed the xvid session's own upload.
    let id = up["id"].as_str().unwrap();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
}

#[tokio::test]
async fn several_xvid_sessions_for_one_key_each_complete_their_own() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let api = Uploads::new(&node.url, &account.api_key);
    // A client opens a session, opens it again (a retry) and once more.
    let (first, first_form) = xvid_session(&node, &account, "uploads%2Ftest.mp4").await;
    let (second, _) = xvid_session(&node, &account, "uploads%2Ftest.mp4").await;
    let (third, third_form) = xvid_session(&node, &account, "uploads%2Ftest.mp4").await;
    let id = |up: &Value| up["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
    std::fs::write(&a, vec![b'a'; 70_000]).unwrap();
    std::fs::write(&b, vec![b'b'; 90_000]).unwrap();
    let url = first["form_post_url"].as_str().unwrap();

    // The first session's form completes the first session, not the newest one.
    let (status, _, body) = post_form(url, &first_form, &a).await;
    assert_eq!(status, 201, "{body}");
    let record = api.wait_final(&id(&first)).await;
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&a).as_str()));
    for open in [&second, &third] {
        let (_, record) = api.get(&format!("/{}", id(open))).await;
        assert_eq!(record["data"]["status"], 0, "{record}");
    }
    let (status, _, body) = post_form(url, &third_form, &b).await;
    assert_eq!(status, 201, "{body}");
    let record = api.wait_final(&id(&third)).await;
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&b).as_str()));
    let (_, record) = api.get(&format!("/{}", id(&second))).await;
    assert_eq!(record["data"]["status"], 0, "{record}");

    // A finished session's form is refused rather than opening an upload nobody polls.
    let (status, _, body) = post_form(url, &first_form, &b).await;
    assert_eq!((status, s3_code(&body)), (403, "AccessDenied"), "{body}");
    assert!(body.contains("open a new session"), "{body}");
}

#[tokio::test]
async fn s3s_errors_for_bad_forms() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let other = node.account("Other");
    let bucket = account.json["pipeline_id"].as_str().unwrap().to_owned();
    let secret = account.json["secret"].as_str().unwrap().to_owned();
    let access_key = account.json["access_key"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.bin");
    std::fs::write(&file, vec![5u8; 2000]).unwrap();
    let url = format!("{}/s3/{bucket}", node.url);

    let v2 = |expiration: &str, conditions: &[Value], extra: &[(&str, &str)]| {
        let signed = uplink::s3_policy::sign_v2(&secret, expiration, conditions);
        let mut fields = vec![
            ("key".to_owned(), "in/a.bin".to_owned()),
            ("AWSAccessKeyId".to_owned(), access_key.clone()),
            ("policy".to_owned(), signed.policy),
            ("signature".to_owned(), signed.signature),
        ];
        fields.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        fields
    };
    let future = "2099-01-01T00:00:00.000Z";
    let base = vec![
        json!({ "bucket": bucket }),
        json!(["starts-with", "$key", "in/"]),
    ];

    let (status, _, body) = post_form(&url, &v2(future, &base, &[]), &file).await;
    assert_eq!(status, 204, "{body}");

    let mut tampered = v2(future, &base, &[]);
    tampered[3].1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let (status, _, body) = post_form(&url, &tampered, &file).await;
    assert_eq!((status, s3_code(&body)), (403, "SignatureDoesNotMatch"));

    let (status, _, body) =
        post_form(&url, &v2("2020-01-01T00:00:00.000Z", &base, &[]), &file).await;
    assert_eq!((status, s3_code(&body)), (403, "AccessDenied"));
    assert!(body.contains("Policy expired"), "{body}");

    let (status, _, body) =
        post_form(&url, &v2(future, &base, &[("x-amz-meta-tag", "t")]), &file).await;
    assert_eq!((status, s3_code(&body)), (403, "AccessDenied"));
    assert!(
        body.contains("Extra input fields: x-amz-meta-tag"),
        "{body}"
    );

    let mut wrong_key = v2(future, &base, &[]);
    wrong_key[0].1 = "elsewhere/a.bin".into();
    let (status, _, body) = post_form(&url, &wrong_key, &file).await;
    assert_eq!((status, s3_code(&body)), (403, "AccessDenied"));

    let small = [base.clone(), vec![json!(["content-length-range", 1, 1000])]].concat();
    let (status, _, body) = post_form(&url, &v2(future, &small, &[]), &file).await;
    assert_eq!((status, s3_code(&body)), (400, "EntityTooLarge"));
    let big = [
        base.clone(),
        vec![json!(["content-length-range", 5000, 9000])],
    ]
    .concat();
    let (status, _, body) = post_form(&url, &v2(future, &big, &[]), &file).await;
    assert_eq!((status, s3_code(&body)), (400, "EntityTooSmall"));

    let mut unknown = v2(future, &base, &[]);
    unknown[1].1 = "AKNOBODY".into();
    let (status, _, body) = post_form(&url, &unknown, &file).await;
    assert_eq!((status, s3_code(&body)), (403, "InvalidAccessKeyId"));

    let other_bucket = other.json["pipeline_id"].as_str().unwrap();
    let theirs = v2(
        future,
        &[
            json!({ "bucket": other_bucket }),
            json!(["starts-with", "$key", "in/"]),
        ],
        &[],
    );
    let (status, _, body) =
        post_form(&format!("{}/s3/{other_bucket}", node.url), &theirs, &file).await;
    assert_eq!((status, s3_code(&body)), (404, "NoSuchBucket"));

    let redirect = [
        base.clone(),
        vec![json!({ "success_action_redirect": "https://app.example/done" })],
    ]
    .concat();
    let (status, headers, _) = post_form(
        &url,
        &v2(
            future,
            &redirect,
            &[("success_action_redirect", "https://app.example/done")],
        ),
        &file,
    )
    .await;
    assert_eq!(status, 303);
    assert!(headers["location"]
        .to_str()
        .unwrap()
        .starts_with("https://app.example/done?bucket="));

    let resp = reqwest::Client::new()
        .post(&url)
        .body("not a form")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(s3_code(&resp.text().await.unwrap()), "MalformedPOSTRequest");
    let no_file = reqwest::multipart::Form::new().text("key", "in/a.bin");
    let resp = reqwest::Client::new()
        .post(&url)
        .multipart(no_file)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(s3_code(&resp.text().await.unwrap()), "InvalidArgument");

    // Only the accepted posts left anything: two uploads (the 204 and the 303).
    let (_, list) = Uploads::new(&node.url, &account.api_key).get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    let partial = common::files_under(&node.objects().join(".partial"));
    assert!(partial.is_empty(), "{partial:?}");
}

#[tokio::test]
async fn a_refused_post_is_answered_without_reading_the_file() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let bucket = account.json["pipeline_id"].as_str().unwrap();
    let signed = uplink::s3_policy::sign_v2(
        "not-the-secret",
        "2099-01-01T00:00:00.000Z",
        &[json!({ "bucket": bucket })],
    );
    let mut form = String::new();
    for (k, v) in [
        ("key", "a.bin"),
        (
            "AWSAccessKeyId",
            account.json["access_key"].as_str().unwrap(),
        ),
        ("policy", &signed.policy),
        ("signature", &signed.signature),
    ] {
        form += &format!("--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
    }
    form += "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n";
    let head = format!(
        "POST /s3/{bucket} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
         Content-Length: 10000000\r\n\r\n{form}"
    );
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![0u8; 100_000]).await.unwrap();
    // 9.9 MB are never sent: the answer must come anyway.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("no answer while the file was still arriving")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("SignatureDoesNotMatch"), "{answer}");
}

#[tokio::test]
async fn an_xvid_session_posted_in_chunks_plupload_style() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (up, params) = xvid_session(&node, &account, "parts%2Fv.mkv").await;
    let up = &up;
    let url = up["form_post_url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 2);
    let bytes = std::fs::read(&video).unwrap();
    let size = bytes.len().div_ceil(3);
    let parts: Vec<PathBuf> = bytes
        .chunks(size)
        .enumerate()
        .map(|(i, c)| {
            let p = dir.path().join(format!("part{i}"));
            std::fs::write(&p, c).unwrap();
            p
        })
        .collect();
    let with_chunk = |chunk: usize| -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| match k.as_str() {
                "chunk" => (k.clone(), chunk.to_string()),
                "chunks" => (k.clone(), "3".to_owned()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    for (chunk, expect_etag) in [(1, false), (0, false), (1, false), (2, true)] {
        let (status, headers, body) = post_form(url, &with_chunk(chunk), &parts[chunk]).await;
        assert_eq!(status, 201, "chunk {chunk}: {body}");
        assert_eq!(headers.contains_key("etag"), expect_etag, "chunk {chunk}");
    }
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(up["id"].as_str().unwrap())
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    // A chunk number outside 0..chunks is refused.
    let (status, _, body) = post_form(url, &with_chunk(3), &parts[0]).await;
    assert_eq!((status, s3_code(&body)), (400, "InvalidArgument"));
}
