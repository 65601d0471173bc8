//! CORS at the edge: an account lists the web origins whose pages may upload; preflights are
//! answered for listed origins only; responses to a listed origin expose the upload headers,
//! and only for the account that lists it.

mod common;

use common::{upload_token, Backend, Node};
use reqwest::Method;

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn listed_origins_may_upload_from_a_browser() {
    let node = Node::dev(Backend::Sqlite).await;
    let app = "https://app.example.com";
    let listed = node.account_with(&["--name", "Web", "--cors-origin", app]);
    let unlisted = node.account_with(&["--name", "Other"]);
    let client = reqwest::Client::new();
    let endpoint = format!("{}/files/", node.url);

    let preflight = |origin: &'static str| {
        client
            .request(Method::OPTIONS, &endpoint)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "tus-resumable, upload-length",
            )
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(app)
    );
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("tus-resumable, upload-length")
    );
    assert!(header(&r, "access-control-allow-methods")
        .unwrap()
        .contains("PATCH"));
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // The upload itself: readable by the page for the account that lists its origin.
    for (account, readable) in [(&listed, true), (&unlisted, false)] {
        let token = upload_token(&node, account, "").await;
        let r = client
            .post(&endpoint)
            .header("Origin", app)
            .bearer_auth(&token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", "5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(
            header(&r, "access-control-allow-origin").is_some(),
            readable
        );
        if readable {
            let exposed = header(&r, "access-control-expose-headers").unwrap();
            for name in [
                "Location",
                "Upload-Offset",
                "Upload-Expires",
                "Tus-Resumable",
            ] {
                assert!(exposed.contains(name), "{exposed}");
            }
            assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
        }
    }
    // The Uploads API, with an API key, follows the same rule.
    let r = client
        .post(format!("{}/api/client/v1/uploads", node.url))
        .header("Origin", app)
        .bearer_auth(&listed.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(app)
    );
}

#[tokio::test]
async fn an_origin_must_be_an_origin() {
    let node = Node::dev(Backend::Sqlite).await;
    let out = node.account_cmd(&[
        "--name",
        "Bad",
        "--cors-origin",
        "https://app.example.com/upload",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cors-origin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
