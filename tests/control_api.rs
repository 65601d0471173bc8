//! The control APIs that hand out edge credentials, against `uplink dev`: movingimage-style
//! upload URLs and tus upload tokens. Tokens are checked with the node's own keyring.

mod common;

use common::{json_of, Backend, Node};
use serde_json::{json, Value};
use uplink::token::{Keyring, Scope};

fn keyring(node: &Node) -> Keyring {
    Keyring::parse(&std::fs::read_to_string(node.data_dir.path().join("token-keys")).unwrap())
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn post(node: &Node, key: &str, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", node.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

async fn get(node: &Node, key: &str, path: &str) -> (u16, Value) {
    json_of(
        reqwest::Client::new()
            .get(format!("{}{path}", node.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn movingimage_upload_urls_carry_a_four_hour_token_for_that_video() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (status, body) = post(
        &node,
        &account.api_key,
        "/v1/videos",
        r#"{"fileName": "lake.mp4"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let video = body["videoId"].as_str().unwrap().to_owned();

    let (status, body) = get(&node, &account.api_key, &format!("/v1/videos/{video}/url")).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap();
    let prefix = format!("{}/upload/{video}?__token__=", node.url);
    assert!(url.starts_with(&prefix), "{url}");
    let claims = keyring(&node)
        .verify(&url[prefix.len()..], now(), 0)
        .unwrap();
    assert_eq!(claims.scope, Scope::Upload(video.clone()));
    assert_eq!(claims.account, account.id);
    assert!(
        (now() + 4 * 3600 - 5..=now() + 4 * 3600).contains(&claims.expires),
        "{claims:?}"
    );
    assert!(claims.permits("/upload/x", Some(&video), None).is_ok());
    assert!(claims
        .permits("/upload/x", Some("another-video"), None)
        .is_err());

    // The video is an upload in status 0 until its bytes arrive.
    let (_, list) = get(&node, &account.api_key, "/api/client/v1/uploads").await;
    assert_eq!(list["data"][0]["id"], video.as_str());
    assert_eq!(list["data"][0]["status"], 0);
    assert_eq!(list["data"][0]["filename"], "lake.mp4");
}

#[tokio::test]
async fn movingimage_errors() {
    let node = Node::dev(Backend::Sqlite).await;
    let alice = node.account("Alice");
    let bob = node.account("Bob");
    let (_, body) = post(
        &node,
        &alice.api_key,
        "/v1/videos",
        r#"{"fileName": "a.mp4"}"#,
    )
    .await;
    let video = body["videoId"].as_str().unwrap().to_owned();

    assert_eq!(
        post(&node, "sk-nope", "/v1/videos", r#"{"fileName": "a.mp4"}"#)
            .await
            .0,
        401
    );
    let (status, body) = post(&node, &alice.api_key, "/v1/videos", r#"{"name": "a.mp4"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("fileName"),
        "{body}"
    );
    let (status, body) = post(&node, &alice.api_key, "/v1/videos", r#"{"fileName": ""}"#).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["fileName"].is_array());
    assert_eq!(
        post(&node, &alice.api_key, "/v1/videos", "not json")
            .await
            .0,
        400
    );

    assert_eq!(
        get(&node, &bob.api_key, &format!("/v1/videos/{video}/url"))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&node, &alice.api_key, "/v1/videos/nope/url").await.0,
        404
    );
    assert_eq!(
        get(&node, "sk-nope", &format!("/v1/videos/{video}/url"))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn upload_tokens_for_tus_clients() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Acme");
    let (status, body) = post(&node, &account.api_key, "/v1/upload-tokens", "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tus_endpoint"], format!("{}/files/", node.url));
    let claims = keyring(&node)
        .verify(body["token"].as_str().unwrap(), now(), 0)
        .unwrap();
    assert_eq!(claims.scope, Scope::Acl("/files/*".into()));
    assert!(claims.token_id.is_some());
    assert_eq!(claims.max_uploads, None);
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(u64::try_from(expires.timestamp()).unwrap(), claims.expires);

    let req =
        json!({ "filename": "a.mp4", "max_size": 1000, "ttl": 600, "max_uploads": 3 }).to_string();
    let (status, body) = post(&node, &account.api_key, "/v1/upload-tokens", &req).await;
    assert_eq!(status, 201, "{body}");
    let claims = keyring(&node)
        .verify(body["token"].as_str().unwrap(), now(), 0)
        .unwrap();
    assert_eq!((claims.max_size, claims.max_uploads), (Some(1000), Some(3)));
    assert!((now() + 595..=now() + 600).contains(&claims.expires));
    assert!(claims.permits("/files/abc", None, Some(1000)).is_ok());
    assert!(claims.permits("/files/abc", None, Some(1001)).is_err());
    assert!(claims.permits("/upload/abc", None, None).is_err());

    for (req, field) in [
        (json!({ "ttl": 10 }), "ttl"),
        (json!({ "ttl": 10_000_000 }), "ttl"),
        (json!({ "max_size": 0 }), "max_size"),
        (json!({ "max_uploads": 0 }), "max_uploads"),
        (json!({ "filename": "" }), "filename"),
    ] {
        let (status, body) = post(
            &node,
            &account.api_key,
            "/v1/upload-tokens",
            &req.to_string(),
        )
        .await;
        assert_eq!(status, 422, "{req}: {body}");
        assert!(body["errors"][field].is_array(), "{body}");
    }
    let (status, body) = post(
        &node,
        &account.api_key,
        "/v1/upload-tokens",
        r#"{"colour": "red"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("colour"));
    assert_eq!(post(&node, "sk-nope", "/v1/upload-tokens", "").await.0, 401);
}

#[tokio::test]
async fn tokens_survive_a_restart_of_uplink_dev() {
    let mut node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (_, body) = post(&node, &account.api_key, "/v1/upload-tokens", "").await;
    let token = body["token"].as_str().unwrap().to_owned();
    let before = keyring(&node);
    node.restart().await;
    assert!(keyring(&node).verify(&token, now(), 0).is_ok());
    assert!(before.verify(&token, now(), 0).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.data_dir.path().join("token-keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token-keys readable by others: {mode:o}");
    }
}

#[tokio::test]
async fn an_accounts_own_token_validity_applies_and_caps_requests() {
    let node = Node::dev(Backend::Sqlite).await;
    let out = node.account_cmd(&["--name", "Short", "--token-ttl", "1h", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let account = common::Account::from_json(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(account.json["token_ttl_secs"], 3600);
    let (_, body) = post(
        &node,
        &account.api_key,
        "/v1/videos",
        r#"{"fileName": "a.mp4"}"#,
    )
    .await;
    let video = body["videoId"].as_str().unwrap().to_owned();
    let (_, body) = get(&node, &account.api_key, &format!("/v1/videos/{video}/url")).await;
    let token = body["url"]
        .as_str()
        .unwrap()
        .split("__token__=")
        .nth(1)
        .unwrap()
        .to_owned();
    let claims = keyring(&node).verify(&token, now(), 0).unwrap();
    assert!(
        (now() + 3595..=now() + 3600).contains(&claims.expires),
        "{claims:?}"
    );
    // Asking for longer than the account allows gets the account's validity.
    let (_, body) = post(
        &node,
        &account.api_key,
        "/v1/upload-tokens",
        r#"{"ttl": 86400}"#,
    )
    .await;
    let claims = keyring(&node)
        .verify(body["token"].as_str().unwrap(), now(), 0)
        .unwrap();
    assert!(claims.expires <= now() + 3600);
}
