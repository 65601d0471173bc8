//! The Ankoder seed's HTML form upload against `uplink dev`: the seed's form, the redirects,
//! the kept `custom_*` fields, and failures answered by redirect or by status.

mod common;

use common::{sha256_file, submit_form, test_video, Backend, Node, Uploads};
use serde_json::Value;

fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn the_seeds_form_uploads_and_redirects() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let key = account.json["access_key"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let fields = [
        ("access_key", key),
        (
            "success_redirect",
            "http://www.myapp.com/videos/upload/success",
        ),
        (
            "failed_redirect",
            "http://www.myapp.com/video/upload/failed",
        ),
        ("custom_user", "1"),
        ("custom_profile", "5"),
    ];
    let (status, location, _) = submit_form(&node.url, &fields, Some(&video)).await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert!(
        location.starts_with("http://www.myapp.com/videos/upload/success?video_id="),
        "{location}"
    );
    let video_id = query_of(&location)[0].1.clone();

    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&video_id)
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(
        record["sha256"].as_str(),
        Some(sha256_file(&video).as_str())
    );
    assert_eq!(record["filename"], "testsrc.mkv");
    let url = uplink::config::DatabaseUrl::parse(&node.database_url(), "test").unwrap();
    let db = uplink::db::Db::open(&url).await.unwrap();
    let stored = uplink::db::upload::get(&db, &video_id)
        .await
        .unwrap()
        .unwrap();
    let kept: Value = serde_json::from_str(stored.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(
        kept["custom_fields"],
        serde_json::json!({ "custom_user": "1", "custom_profile": "5" })
    );

    // Without success_redirect the answer is JSON.
    let (status, _, body) = submit_form(&node.url, &[("access_key", key)], Some(&video)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["result"],
        "success"
    );
}

#[tokio::test]
async fn failures_redirect_or_answer_with_a_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(&config, "form_max_size = \"50KiB\"\n").unwrap();
    let node = Node::dev_with(Backend::Sqlite, &["--config", config.to_str().unwrap()]).await;
    let account = node.account("Acme");
    let key = account.json["access_key"].as_str().unwrap();
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![1u8; 10_000]).unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 200_000]).unwrap();
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let failed = "https://app.example/failed?from=form";

    for (fields, file, code) in [
        (
            vec![("access_key", "nope"), ("failed_redirect", failed)],
            Some(&small),
            "access_key_invalid",
        ),
        (
            vec![("failed_redirect", failed)],
            Some(&small),
            "access_key_missing",
        ),
        (
            vec![("access_key", key), ("failed_redirect", failed)],
            None,
            "file_missing",
        ),
        (
            vec![("access_key", key), ("failed_redirect", failed)],
            Some(&big),
            "too_large",
        ),
        (
            vec![("access_key", key), ("failed_redirect", failed)],
            Some(&empty),
            "file_empty",
        ),
    ] {
        let (status, location, body) =
            submit_form(&node.url, &fields, file.map(|p| p.as_path())).await;
        assert_eq!(status, 303, "{code}: {body}");
        let location = location.unwrap();
        assert!(
            location.starts_with("https://app.example/failed?from=form&"),
            "{location}"
        );
        let query = query_of(&location);
        assert!(
            query.contains(&("error_code".to_owned(), code.to_owned())),
            "{location}"
        );
        assert!(query.iter().any(|(k, v)| k == "error" && !v.is_empty()));
    }
    // No failed_redirect: a status and JSON.
    let (status, _, body) = submit_form(&node.url, &[("access_key", "nope")], Some(&small)).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = submit_form(&node.url, &[("access_key", key)], Some(&big)).await;
    assert_eq!(status, 413, "{body}");
    // Redirect targets must be absolute http(s) URLs: never redirected to.
    let (status, location, _) = submit_form(
        &node.url,
        &[
            ("access_key", key),
            ("success_redirect", "javascript:alert(1)"),
        ],
        Some(&small),
    )
    .await;
    assert_eq!((status, location), (400, None));
    let (status, location, _) = submit_form(
        &node.url,
        &[("access_key", key), ("failed_redirect", "//evil.example/x")],
        Some(&big),
    )
    .await;
    assert_eq!((status, location), (400, None));

    // Nothing of the refused uploads was kept.
    let (_, list) = Uploads::new(&node.url, &account.api_key).get("").await;
    assert_eq!(list["data"], serde_json::json!([]), "{list}");
    assert!(common::files_under(&node.objects()).is_empty());
}
