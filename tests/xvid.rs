//! The xvid API's upload sessions against `uplink dev`, as the seed shows them: the body's
//! fields, a verifiable S3 V2 policy signature, JSON and XML, and every documented error code.

mod common;

use base64::Engine;
use common::{Backend, Node};
use serde_json::Value;

async fn session(
    node: &Node,
    key: Option<&str>,
    query: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut req = reqwest::Client::new().post(format!("{}/v1/files/uploads/?{query}", node.url));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, resp.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["error_code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_as_the_seed_shows_it() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let pipeline = account.json["pipeline_id"].as_str().unwrap();
    let query = format!("object_key=uploads%2Ftest.mp4&pipeline_id={pipeline}");
    let (status, content_type, body) = session(&node, Some(&account.api_key), &query, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    let up = &v["upload"];
    let id = up["id"].as_str().unwrap();
    assert_eq!(up["file"]["id"], id);
    assert_eq!(up["status"], "UPLOADING");
    assert_eq!(up["object_key"], "uploads/test.mp4");
    assert_eq!(up["nb_chunks"], 0);
    assert_eq!(up["type"], "S3");
    assert_eq!(up["pipeline"]["id"], pipeline);
    assert_eq!(up["form_post_url"], format!("{}/s3/{pipeline}", node.url));
    let params = &up["form_post_params"];
    let mut names: Vec<&str> = params
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "AWSAccessKeyId",
            "acl",
            "chunk",
            "chunks",
            "filename",
            "key",
            "name",
            "policy",
            "signature",
            "success_action_status",
            "x-uplink-session"
        ]
    );
    assert_eq!(params["name"], "test.mp4");
    assert_eq!(params["success_action_status"], "201");
    assert_eq!(
        (params["chunk"].as_str(), params["chunks"].as_str()),
        (Some("0"), Some("1"))
    );
    assert_eq!(params["key"], format!("tmp/{pipeline}/uploads/test.mp4"));
    assert_eq!(params["acl"], "private");
    assert_eq!(params["AWSAccessKeyId"], account.json["access_key"]);
    let (policy, signature) = (
        params["policy"].as_str().unwrap(),
        params["signature"].as_str().unwrap(),
    );
    let secret = account.json["secret"].as_str().unwrap();
    assert!(uplink::s3_policy::verify_v2(secret, policy, signature));
    let doc: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(policy)
            .unwrap(),
    )
    .unwrap();
    assert!(
        doc["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == params["key"]),
        "{doc}"
    );
    assert!(doc["expiration"].as_str().unwrap().ends_with('Z'));

    // The session is an upload, visible in the Uploads API by the same id.
    let (status, one) = common::Uploads::new(&node.url, &account.api_key)
        .get(&format!("/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["filename"], "test.mp4");
    assert_eq!(one["data"]["status"], 0);
}

#[tokio::test]
async fn xml_and_human_output() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let pipeline = account.json["pipeline_id"].as_str().unwrap();
    let query = format!("object_key=a.mp4&pipeline_id={pipeline}");
    let (status, content_type, body) = session(
        &node,
        Some(&account.api_key),
        &query,
        Some("application/xml"),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/xml"),
        "{body}"
    );
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<upload>"),
        "{body}"
    );
    assert!(
        body.contains("<status>UPLOADING</status>") && body.contains("<AWSAccessKeyId>AK"),
        "{body}"
    );
    // `format` overrides Accept.
    let (_, content_type, _) = session(
        &node,
        Some(&account.api_key),
        &format!("{query}&format=json"),
        Some("application/xml"),
    )
    .await;
    assert_eq!(content_type, "application/json");
    let (_, _, body) = session(
        &node,
        Some(&account.api_key),
        &format!("{query}&human=true"),
        None,
    )
    .await;
    assert!(body.contains("\n  \"upload\": {\n"), "{body}");
    let (_, _, body) = session(&node, None, &format!("{query}&format=xml"), None).await;
    assert!(body.contains("<error><error_code>0x0000003</error_code><error_message>Invalid access token</error_message></error>"), "{body}");
}

#[tokio::test]
async fn every_documented_error_code() {
    let node = Node::dev(Backend::Postgres).await;
    let alice = node.account("Alice");
    let bob = node.account("Bob");
    let pipeline = alice.json["pipeline_id"].as_str().unwrap();
    let key = Some(alice.api_key.as_str());
    let ok = format!("object_key=a.mp4&pipeline_id={pipeline}");
    for (who, query, status, code) in [
        (None, ok.clone(), 403, "0x0000003"),
        (Some("sk-wrong"), ok.clone(), 403, "0x0000003"),
        (key, format!("pipeline_id={pipeline}"), 400, "0x0230001"),
        (key, "object_key=a.mp4".to_owned(), 400, "0x0230001"),
        (
            key,
            format!("object_key=..%2Fescape.mp4&pipeline_id={pipeline}"),
            400,
            "0x0230001",
        ),
        (key, format!("{ok}&ip=not-an-ip"), 400, "0x0230001"),
        (key, format!("{ok}&expires_at=1000"), 400, "0x0230001"),
        (key, format!("{ok}&format=yaml"), 400, "0x0230001"),
        (
            key,
            "object_key=a.mp4&pipeline_id=000000000000000000000000".to_owned(),
            404,
            "0x0230002",
        ),
        (Some(bob.api_key.as_str()), ok.clone(), 404, "0x0230002"),
    ] {
        let (got, _, body) = session(&node, who, &query, None).await;
        assert_eq!(
            (got, error_code(&body).as_str()),
            (status, code),
            "{query}: {body}"
        );
    }
    // Accepted forms of the optional parameters.
    for extra in [
        "ip=3232235777",
        "ip=81.2.69.142",
        "ip=2001:db8::1",
        "expires_at=0",
        "expires_at=4102444800",
    ] {
        let (got, _, body) = session(&node, key, &format!("{ok}&{extra}"), None).await;
        assert_eq!(got, 200, "{extra}: {body}");
    }
    // An internal failure (the uploads table vanishes under the running node) is the seed's 500.
    let status = std::process::Command::new("psql")
        .arg(node.pg.as_ref().unwrap().url.as_str())
        .args(["-q", "-c", "ALTER TABLE uploads RENAME TO uploads_gone"])
        .status()
        .unwrap();
    assert!(status.success());
    let (got, _, body) = session(&node, key, &ok, None).await;
    assert_eq!(
        (got, error_code(&body).as_str()),
        (500, "0x0000001"),
        "{body}"
    );
    assert!(!body.contains("uploads"), "internal details leaked: {body}");
}
