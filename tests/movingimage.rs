//! movingimage's chunked upload against `uplink dev`, from `POST /v1/videos` to status 6: the
//! seed's curl line verbatim, chunks in any order with repeats, a crash between chunks, token
//! refusals, header errors, the deprecated full-file form and the quota code 1101.

mod common;

use common::{
    movingimage_chunk as send_chunk, movingimage_url as upload_url, sha256_file, test_video,
    Account, Backend, Node, Uploads,
};
use std::path::{Path, PathBuf};
use uplink::token::{Claims, Keyring};

/// Splits a file into `n` chunk files (the last one smaller).
fn split(file: &Path, n: usize, dir: &Path) -> Vec<PathBuf> {
    let data = std::fs::read(file).unwrap();
    let size = data.len().div_ceil(n);
    data.chunks(size)
        .enumerate()
        .map(|(i, c)| {
            let path = dir.join(format!("chunk{}", i + 1));
            std::fs::write(&path, c).unwrap();
            path
        })
        .collect()
}

#[tokio::test]
async fn the_seeds_curl_line_works_verbatim() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (video, url) = upload_url(&node, &account).await;
    let dir = tempfile::tempdir().unwrap();
    let file = test_video(dir.path(), 2);
    let chunks = split(&file, 10, dir.path());
    assert_eq!(chunks.len(), 10);
    for (i, chunk) in chunks.iter().enumerate() {
        // curl -X POST -H "Mi24-Upload-Total-Chunks: 10" -H "Mi24-Upload-Current-Chunk: 1"
        //   -H "Content-Type:application/octet-stream" --data-binary "@/<FILENAME>" "<URL>"
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args([
                "-H",
                "Mi24-Upload-Total-Chunks: 10",
                "-H",
                &format!("Mi24-Upload-Current-Chunk: {}", i + 1),
            ])
            .args([
                "-H",
                "Content-Type:application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", chunk.display()))
            .arg(&url)
            .output()
            .expect("curl runs (bash .ci/setup installs it)");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(code, if i == 9 { "201" } else { "202" }, "chunk {}", i + 1);
    }
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&video)
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&file).as_str()));
    assert!(
        common::files_under(&node.data_dir.path().join("spool")).is_empty(),
        "spool left behind"
    );
}

#[tokio::test]
async fn chunks_in_any_order_with_repeats_and_a_crash_in_between() {
    let mut node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (video, url) = upload_url(&node, &account).await;
    let dir = tempfile::tempdir().unwrap();
    let file = test_video(dir.path(), 2);
    let chunks: Vec<Vec<u8>> = split(&file, 5, dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    for current in [3, 1, 5, 1] {
        let (status, body) = send_chunk(&url, 5, current, chunks[current - 1].clone()).await;
        assert_eq!(status, 202, "{body}");
    }
    let (_, body) = send_chunk(&url, 5, 5, chunks[4].clone()).await;
    assert_eq!(body["chunksReceived"], 3, "{body}");
    // A "repeat" with other bytes, and a different total, are conflicts.
    let (status, _) = send_chunk(&url, 5, 3, chunks[3].clone()).await;
    assert_eq!(status, 409);
    let (status, _) = send_chunk(&url, 6, 2, chunks[1].clone()).await;
    assert_eq!(status, 409);

    // The acknowledged chunks survive a kill -9 of the node.
    node.restart().await;
    let (status, _) = send_chunk(&url, 5, 2, chunks[1].clone()).await;
    assert_eq!(status, 202);
    let (status, body) = send_chunk(&url, 5, 4, chunks[3].clone()).await;
    assert_eq!(status, 201, "{body}");
    // A retry after completion is still a success.
    let (status, _) = send_chunk(&url, 5, 4, chunks[3].clone()).await;
    assert_eq!(status, 201);

    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&video)
        .await;
    assert_eq!(record["status"], 6, "{record}");
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&file).as_str()));
}

#[tokio::test]
async fn tokens_are_checked_on_every_chunk() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (video, url) = upload_url(&node, &account).await;
    let (other_video, other_url) = upload_url(&node, &account).await;
    let base = url.split('?').next().unwrap().to_owned();
    let token = url.split("__token__=").nth(1).unwrap().to_owned();
    let keys =
        Keyring::parse(&std::fs::read_to_string(node.data_dir.path().join("token-keys")).unwrap())
            .unwrap();
    let claims = keys.verify(&token, 0, 0).unwrap();

    let expired = keys
        .sign(&Claims {
            expires: 1_000,
            ..claims.clone()
        })
        .unwrap();
    let foreign = Keyring::parse(&Keyring::generate_line("dev1", &mut rand::rng()))
        .unwrap()
        .sign(&claims)
        .unwrap();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_token = other_url.split("__token__=").nth(1).unwrap();
    assert_ne!(video, other_video);
    for (target, status, code) in [
        (base.clone(), 401, "token_malformed"),
        (format!("{base}?__token__=garbage"), 401, "token_malformed"),
        (format!("{base}?__token__={tampered}"), 401, "token_invalid"),
        (format!("{base}?__token__={expired}"), 401, "token_expired"),
        (format!("{base}?__token__={foreign}"), 401, "token_invalid"),
        (
            format!("{base}?__token__={other_token}"),
            403,
            "token_scope",
        ),
    ] {
        let (got, body) = send_chunk(&target, 1, 1, b"x".to_vec()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{target}: {body}"
        );
        assert!(!body.to_string().contains(&token), "token echoed");
    }
    // The token also works as a Bearer header.
    let resp = reqwest::Client::new()
        .post(&base)
        .bearer_auth(&token)
        .header("Mi24-Upload-Total-Chunks", "2")
        .header("Mi24-Upload-Current-Chunk", "1")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // A token for a video that does not exist is refused as out of scope.
    let (status, _) = send_chunk(
        &format!(
            "{}/upload/{}?__token__={token}",
            node.url,
            uuid::Uuid::new_v4()
        ),
        1,
        1,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn header_errors_the_full_file_form_and_the_quota() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let (_, url) = upload_url(&node, &account).await;
    for (total, current) in [("2", "0"), ("2", "3"), ("0", "1"), ("two", "1")] {
        let resp = reqwest::Client::new()
            .post(&url)
            .header("Mi24-Upload-Total-Chunks", total)
            .header("Mi24-Upload-Current-Chunk", current)
            .body("abc")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{total}/{current}");
    }
    let resp = reqwest::Client::new()
        .post(&url)
        .header("Mi24-Upload-Total-Chunks", "2")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The deprecated full-file form: curl -X POST -F "file=@/<FILENAME>" "<URL>" → 200.
    let (video, url) = upload_url(&node, &account).await;
    let dir = tempfile::tempdir().unwrap();
    let file = test_video(dir.path(), 1);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-F",
        ])
        .arg(format!("file=@{}", file.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(&video)
        .await;
    assert_eq!(record["sha256"].as_str(), Some(sha256_file(&file).as_str()));

    // Over the account's quota: 413 with code 1101, and nothing is kept.
    let out = node.account_cmd(&["--name", "Small", "--quota", "1000", "--json"]);
    let small = Account::from_json(&serde_json::from_slice(&out.stdout).unwrap());
    let (_, url) = upload_url(&node, &small).await;
    let (status, body) = send_chunk(&url, 2, 1, vec![1u8; 800]).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = send_chunk(&url, 2, 2, vec![2u8; 800]).await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(1101)), "{body}");
    let spooled = common::files_under(&node.data_dir.path().join("spool"));
    assert!(
        spooled
            .iter()
            .all(|p| !p.file_name().unwrap().to_string_lossy().starts_with(".tmp")),
        "{spooled:?}"
    );
    assert_eq!(
        spooled
            .iter()
            .filter(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chunk-")
                && !p.to_string_lossy().ends_with(".sha256"))
            .count(),
        1
    );
}
