//! Cloud VoD's getUploadToken against `uplink dev`: the seed's signed request and answer,
//! breakpoint resume by `fileId`, the kept transcoding parameters, and every error code.

mod common;

use base64::Engine;
use common::{json_of, Backend, Node};
use hmac::{Hmac, Mac};
use serde_json::Value;
use uplink::token::{Keyring, Scope};

const PATH: &str = "/vod/videoManage/getUploadToken";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(secret: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts the seed's form, signed as `account` at `timestamp`.
async fn call(node: &Node, account: &common::Account, timestamp: u64, form: &str) -> (u16, Value) {
    let ts = timestamp.to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}{PATH}", node.url))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header(
            "Authorization",
            sign(account.json["secret"].as_str().unwrap(), &ts),
        )
        .header("X-WS-Timestamp", ts)
        .header(
            "X-WS-AccessKey",
            account.json["access_key"].as_str().unwrap(),
        )
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

#[tokio::test]
async fn the_seeds_request_gets_an_upload_url_and_token() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let form = "originFileName=uploadtest.mp4&fileSize=1234&md5=0CC175B9C0F1B6A831C399E269772661\
                &workflowId=wf-1&transCodeCombineName=hd&waterMarkName=logo&subtitleId=s1";
    let (status, body) = call(&node, &account, now(), form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 200);
    assert_eq!(body["message"], "Operation successfully");
    let data = &body["data"];
    let video = data["videoId"].as_str().unwrap();
    assert_eq!(data["uploadUrl"], format!("{}/files/{video}", node.url));
    assert_eq!(data["bucketName"], account.json["pipeline_id"]);
    assert_eq!(
        (
            data["httpDnsServer"].as_str(),
            data["speedDomainlUrl"].as_str()
        ),
        (Some(""), Some(""))
    );
    let file_key = data["fileKey"].as_str().unwrap();
    assert!(
        file_key.starts_with("video/") && file_key.ends_with(".mp4"),
        "{file_key}"
    );

    let keys =
        Keyring::parse(&std::fs::read_to_string(node.data_dir.path().join("token-keys")).unwrap())
            .unwrap();
    let claims = keys
        .verify(data["uploadToken"].as_str().unwrap(), now(), 0)
        .unwrap();
    assert_eq!(claims.scope, Scope::Upload(video.to_owned()));
    assert_eq!(claims.max_size, Some(1234));

    // The upload exists (status 0) with its object under the pipeline root, and the
    // transcoding parameters are kept for the origin's later stages.
    let url = uplink::config::DatabaseUrl::parse(&node.database_url(), "test").unwrap();
    let db = uplink::db::Db::open(&url).await.unwrap();
    let record = uplink::db::upload::get(&db, video).await.unwrap().unwrap();
    assert_eq!(record.filename, "uploadtest.mp4");
    assert!(
        record.object_key.ends_with(file_key),
        "{}",
        record.object_key
    );
    let kept: Value = serde_json::from_str(record.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(kept["workflowId"], "wf-1");
    assert_eq!(kept["transCodeCombineName"], "hd");
    assert_eq!(kept["waterMarkName"], "logo");
    assert_eq!(kept["subtitleId"], "s1");
    assert_eq!(kept["md5"], "0cc175b9c0f1b6a831c399e269772661");
}

#[tokio::test]
async fn the_same_file_id_resumes_the_same_upload() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let (_, first) = call(
        &node,
        &account,
        now(),
        "originFileName=a.mp4&fileId=resume-1",
    )
    .await;
    let (_, again) = call(
        &node,
        &account,
        now(),
        "originFileName=a.mp4&fileId=resume-1",
    )
    .await;
    assert_eq!(first["data"]["videoId"], again["data"]["videoId"]);
    assert_eq!(first["data"]["fileKey"], again["data"]["fileKey"]);
    let (_, fresh) = call(
        &node,
        &account,
        now(),
        "originFileName=a.mp4&fileId=resume-1&overwrite=1",
    )
    .await;
    assert_ne!(first["data"]["videoId"], fresh["data"]["videoId"]);
    let (status, body) = call(
        &node,
        &account,
        now(),
        "originFileName=other.mp4&fileId=resume-1",
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(1607)), "{body}");
    // Another account's fileId is its own.
    let other = node.account("Other");
    let (_, theirs) = call(&node, &other, now(), "originFileName=a.mp4&fileId=resume-1").await;
    assert_ne!(theirs["data"]["videoId"], first["data"]["videoId"]);
}

#[tokio::test]
async fn signatures_and_timestamps_are_checked() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let form = "originFileName=a.mp4";
    assert_eq!(call(&node, &account, now() - 290, form).await.0, 200);
    let (status, body) = call(&node, &account, now() - 400, form).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(call(&node, &account, now() + 400, form).await.0, 403);

    let mut wrong = account.clone();
    wrong.json["secret"] = Value::String("not-the-secret".into());
    let (status, body) = call(&node, &wrong, now(), form).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], 401);
    let mut unknown = account.clone();
    unknown.json["access_key"] = Value::String("AKNOBODY".into());
    assert_eq!(call(&node, &unknown, now(), form).await.0, 401);

    let resp = reqwest::Client::new()
        .get(format!("{}{PATH}?originFileName=a.mp4", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // GET with query parameters is accepted too.
    let ts = now().to_string();
    let resp = reqwest::Client::new()
        .get(format!("{}{PATH}?originFileName=a.mp4", node.url))
        .header(
            "Authorization",
            sign(account.json["secret"].as_str().unwrap(), &ts),
        )
        .header("X-WS-Timestamp", ts)
        .header(
            "X-WS-AccessKey",
            account.json["access_key"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn every_documented_error_code() {
    let node = Node::dev(Backend::Sqlite).await;
    let out = node.account_cmd(&["--name", "Small", "--quota", "5000", "--json"]);
    let account = common::Account::from_json(&serde_json::from_slice(&out.stdout).unwrap());
    let long_name = format!("originFileName={}.mp4", "x".repeat(40));
    for (form, code) in [
        (long_name.as_str(), 1500),
        ("originFileName=a.mp4&md5=", 1604),
        (
            "originFileName=a.mp4&md5=0123456789abcdef0123456789abcdef0",
            1605,
        ),
        ("originFileName=", 1606),
        ("fileSize=10", 1606),
        ("originFileName=a.mp4&md5=not-hex", 1607),
        ("originFileName=a.mp4&overwrite=yes", 1608),
        ("originFileName=a.mp4&fileSize=-5", 1609),
        ("originFileName=a.mp4&fileSize=5001", 1610),
    ] {
        let (status, body) = call(&node, &account, now(), form).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(code)),
            "{form}: {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        call(&node, &account, now(), "originFileName=a.mp4&fileSize=5000")
            .await
            .0,
        200
    );
}
