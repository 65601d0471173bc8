//! No flavour accepts every byte of a size its client declared and leaves the upload
//! unfinished: each flavour's documented client flow sends exactly the bytes it declared (a
//! form's file, a chunk count, `Upload-Length`, Cloud VoD's `fileSize`, the IETF draft's
//! `Upload-Complete`), and the upload must leave status 0 "receiving" with that size. The bytes
//! are not a video, so each then fails with the documented code, in words of ours.

mod common;

use common::{
    cloudvod_session, movingimage_chunk, movingimage_url, post_form, presigned, submit_form,
    upload_token, xvid_session, Account, Backend, Node, Uploads,
};
use sha2::{Digest, Sha256};

/// The bytes every flavour sends: 300 KiB that are not a video.
fn payload() -> Vec<u8> {
    (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Waits for `id` to end; checks it was stored whole and failed as the bytes deserve.
async fn assert_finished(node: &Node, account: &Account, flavour: &str, id: &str) {
    let bytes = payload();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    assert_eq!(record["size"], bytes.len(), "{flavour}: {record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str()),
        "{flavour}: {record}"
    );
    assert_eq!(record["status"], 7, "{flavour}: {record}");
    assert_eq!(record["error_code"], "not_a_video", "{flavour}: {record}");
    assert_eq!(
        record["error"], "The file is not a video in a format this service supports.",
        "{flavour}: FFmpeg's words stay in the log: {record}"
    );
}

/// The newest upload of the account.
async fn newest(node: &Node, account: &Account) -> String {
    let (_, list) = Uploads::new(&node.url, &account.api_key).get("").await;
    list["data"][0]["id"].as_str().unwrap().to_owned()
}

/// A creation's `Location`, as an absolute URL.
fn absolute(node: &Node, created: &reqwest::Response) -> String {
    let location = created.headers()["location"].to_str().unwrap();
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{}{location}", node.url)
    }
}

/// Sends one request; it must succeed.
async fn send(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp
}

#[tokio::test]
async fn every_flavour_finishes_an_upload_once_its_declared_size_has_arrived() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let dir = tempfile::tempdir().unwrap();
    let bytes = payload();
    let (first, second) = bytes.split_at(100 * 1024);
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &bytes).unwrap();
    let part = |name: &str, data: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let (first_file, second_file) = (part("part0", first), part("part1", second));
    let form = |params: &[(String, String)], chunk: &str, chunks: &str| -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| match k.as_str() {
                "chunk" => (k.clone(), chunk.to_owned()),
                "chunks" => (k.clone(), chunks.to_owned()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };

    // The Uploads API: one multipart POST.
    let (status, body) = Uploads::new(&node.url, &account.api_key)
        .post(&file, Some("root"))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap();
    assert_finished(&node, &account, "uploads_api", id).await;

    // The Ankoder HTML form.
    let key = account.json["access_key"].as_str().unwrap();
    let (status, _, body) = submit_form(&node.url, &[("access_key", key)], Some(&file)).await;
    assert!(status < 400, "{status} {body}");
    assert_finished(&node, &account, "ankoder", &newest(&node, &account).await).await;

    // An xvid session's form, whole, then another session's in two plupload chunks.
    let (up, params) = xvid_session(&node, &account, "declared%2Fwhole.mp4").await;
    let url = up["form_post_url"].as_str().unwrap();
    let (status, _, body) = post_form(url, &params, &file).await;
    assert_eq!(status, 201, "{body}");
    assert_finished(&node, &account, "xvid", up["id"].as_str().unwrap()).await;
    let (up, params) = xvid_session(&node, &account, "declared%2Fchunks.mp4").await;
    for (chunk, path) in [("0", &first_file), ("1", &second_file)] {
        let (status, _, body) = post_form(url, &form(&params, chunk, "2"), path).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_finished(&node, &account, "plupload", up["id"].as_str().unwrap()).await;

    // boto3's presigned POST (S3 POST Object, Signature V4).
    let bucket = account.json["pipeline_id"].as_str().unwrap();
    let (url, fields) = presigned(&node, &account, bucket, "s3v4");
    let (status, _, body) = post_form(&url, &fields, &file).await;
    assert_eq!(status, 204, "{body}");
    assert_finished(&node, &account, "s3_post", &newest(&node, &account).await).await;

    // movingimage: the total chunk count is the declared size.
    let (video, url) = movingimage_url(&node, &account).await;
    for (current, data) in [(1, first), (2, second)] {
        let (status, body) = movingimage_chunk(&url, 2, current, data.to_vec()).await;
        assert!(status < 300, "{body}");
    }
    assert_finished(&node, &account, "movingimage", &video).await;

    // Cloud VoD: `fileSize` given to getUploadToken; the PATCHes carry no Upload-Length.
    let data = cloudvod_session(
        &node,
        &account,
        &format!(
            "originFileName=clip.mp4&fileId=declared-1&fileSize={}",
            bytes.len()
        ),
    )
    .await;
    let (url, token) = (
        data["uploadUrl"].as_str().unwrap(),
        data["uploadToken"].as_str().unwrap(),
    );
    let mut offset = 0;
    for piece in [first, second] {
        let headers = [
            ("tus-resumable", "1.0.0".to_owned()),
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/offset+octet-stream".to_owned()),
            ("upload-offset", offset.to_string()),
        ];
        send(reqwest::Method::PATCH, url, &headers, piece).await;
        offset += piece.len();
    }
    assert_finished(
        &node,
        &account,
        "cloudvod",
        data["videoId"].as_str().unwrap(),
    )
    .await;

    // tus: Upload-Length at creation, and Upload-Defer-Length with the length on the last PATCH.
    let token = upload_token(&node, &account, "").await;
    let auth = ("authorization", format!("Bearer {token}"));
    let tus = ("tus-resumable", "1.0.0".to_owned());
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    for declared in [
        ("upload-length", bytes.len().to_string()),
        ("upload-defer-length", "1".to_owned()),
    ] {
        let endpoint = format!("{}/files/", node.url);
        let created = send(
            reqwest::Method::POST,
            &endpoint,
            &[tus.clone(), auth.clone(), declared.clone()],
            b"",
        )
        .await;
        let location = absolute(&node, &created);
        let mut offset = 0;
        for piece in [first, second] {
            let mut headers = vec![
                tus.clone(),
                auth.clone(),
                octets.clone(),
                ("upload-offset", offset.to_string()),
            ];
            if declared.0 == "upload-defer-length" && offset > 0 {
                headers.push(("upload-length", bytes.len().to_string()));
            }
            send(reqwest::Method::PATCH, &location, &headers, piece).await;
            offset += piece.len();
        }
        let id = location.rsplit('/').next().unwrap();
        assert_finished(&node, &account, declared.0, id).await;
    }

    // The IETF draft (interop 6): the last request says Upload-Complete: ?1.
    let draft = ("upload-draft-interop-version", "6".to_owned());
    let created = send(
        reqwest::Method::POST,
        &format!("{}/files/", node.url),
        &[
            draft.clone(),
            auth.clone(),
            ("upload-complete", "?0".into()),
        ],
        first,
    )
    .await;
    let location = absolute(&node, &created);
    let headers = [
        draft,
        auth,
        ("content-type", "application/partial-upload".into()),
        ("upload-offset", first.len().to_string()),
        ("upload-complete", "?1".into()),
    ];
    send(reqwest::Method::PATCH, &location, &headers, second).await;
    let id = location.rsplit('/').next().unwrap();
    assert_finished(&node, &account, "ietf", id).await;
}
