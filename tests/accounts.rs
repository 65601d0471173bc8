//! `uplink account create`: its JSON, its checks, secrets kept out of the database in clear,
//! and that it works beside a running node (the new key is usable at once); `uplink keys new`
//! and the two-step rotation of token keys; `uplink uploads list | inspect | cancel`.

mod common;

use common::{test_video, Backend, Node, Uploads};

#[tokio::test]
async fn create_prints_the_documented_fields_once() {
    let node = Node::dev(Backend::Sqlite).await;
    let out = node.account_cmd(&[
        "--name",
        "Acme",
        "--notify-url",
        "https://app.example/hook",
        "--quota",
        "10GiB",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "id",
        "name",
        "api_key",
        "access_key",
        "secret",
        "pipeline_id",
    ] {
        assert!(
            json[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {json}"
        );
    }
    assert_eq!(json["name"], "Acme");
    assert_eq!(json["quota"], 10 * 1024 * 1024 * 1024u64);
    assert_eq!(json["notify_url"], "https://app.example/hook");
    assert!(json["api_key"].as_str().unwrap().starts_with("sk-"));

    // The API key is stored only as a fingerprint: its text is nowhere in the database files.
    let key = json["api_key"].as_str().unwrap();
    for file in ["uplink.db", "uplink.db-wal"] {
        if let Ok(bytes) = std::fs::read(node.data_dir.path().join(file)) {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "api_key in clear in {file}"
            );
        }
    }
    // Two accounts never share credentials.
    let other = node.account("Other");
    assert_ne!(other.api_key, key);
    assert_ne!(other.json["access_key"], json["access_key"]);
}

#[tokio::test]
async fn created_beside_a_running_node_the_key_works_at_once_on_postgres() {
    let node = Node::dev(Backend::Postgres).await;
    let account = node.account("Live");
    let dir = tempfile::tempdir().unwrap();
    let video = test_video(dir.path(), 1);
    let (status, body) = Uploads::new(&node.url, &account.api_key)
        .post(&video, Some("root"))
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn bad_arguments_are_refused_with_a_clear_message() {
    let node = Node::dev(Backend::Sqlite).await;
    for (args, needle) in [
        (vec!["--name", "  "], "--name"),
        (
            vec!["--name", "A", "--notify-url", "ftp://x/y"],
            "--notify-url",
        ),
        (
            vec!["--name", "A", "--notify-url", "not a url"],
            "--notify-url",
        ),
        (vec!["--name", "A", "--quota", "lots"], "--quota"),
        (vec!["--name", "A", "--token-ttl", "forever"], "--token-ttl"),
        (vec!["--name", "A", "--token-ttl", "30d"], "--token-ttl"),
    ] {
        let out = node.account_cmd(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = std::process::Command::new(common::bin())
        .args([
            "account",
            "create",
            "--name",
            "A",
            "--database",
            "mysql://x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

#[tokio::test]
async fn the_quota_limits_what_an_account_stores() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account_with(&[
        "--name",
        "Small",
        "--quota",
        "150000",
        "--max-upload-size",
        "120000",
    ]);
    let api = Uploads::new(&node.url, &account.api_key);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.bin");
    std::fs::write(&file, vec![1u8; 100_000]).unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 130_000]).unwrap();
    // Over the account's upload limit: too large, not a quota matter.
    let (status, body) = api.post(&big, Some("root")).await;
    assert_eq!((status, body["code"].as_u64()), (413, None), "{body}");
    let (status, body) = api.post(&file, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    // The second would pass the quota: the origin refuses it even though the edge's cached
    // view of the account is older than the first upload; nothing of it is kept.
    let (status, body) = api.post(&file, Some("root")).await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(1101)), "{body}");
    // The refused upload does not count: one that fits what is left is taken.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![1u8; 40_000]).unwrap();
    let (status, body) = api.post(&small, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let (status, list) = api.get("").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    let stored = common::files_under(&node.objects());
    let sources = stored.iter().filter(|p| p.ends_with("source")).count();
    assert_eq!(sources, 2, "{stored:?}");
}

#[tokio::test]
async fn without_json_the_credentials_are_printed_for_a_person() {
    let node = Node::dev(Backend::Sqlite).await;
    let out = node.account_cmd(&["--name", "Readable"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("api_key"))
        .unwrap()
        .trim();
    assert!(key.starts_with("sk-"), "{text}");
    assert!(text.contains("shown only now"), "{text}");
    // The printed key is a working key.
    let (status, _) = Uploads::new(&node.url, key).get("").await;
    assert_eq!(status, 200);
}

#[test]
fn keys_new_prints_an_entry_that_rotates_in_without_a_gap() {
    use uplink::token::{Claims, Keyring, Scope};
    let old = format!("k1:{}", "A".repeat(44));
    let new = common::run_text(&["keys", "new", "--id", "k2"])
        .trim()
        .to_owned();
    assert!(new.starts_with("k2:"), "{new}");
    // Step 1: every role gets the new key after the current one (all verify it, the old signs);
    // step 2: once all have it, it moves first and signs.
    let step1 = Keyring::parse(&format!("{old}\n{new}")).unwrap();
    let step2 = Keyring::parse(&format!("{new}\n{old}")).unwrap();
    let claims = Claims {
        key_id: String::new(),
        expires: 2_000_000_000,
        account: "a".into(),
        pipeline: None,
        scope: Scope::Upload("u".into()),
        max_size: None,
        quota: None,
        max_uploads: None,
        token_id: None,
        region: None,
    };
    let now = 1_900_000_000;
    let signed_new = step2.sign(&claims).unwrap();
    assert!(signed_new.starts_with("kid=k2~"));
    assert!(
        step1.verify(&signed_new, now, 0).is_ok(),
        "a step-1 role verifies it"
    );
    let signed_old = step1.sign(&claims).unwrap();
    assert!(
        step2.verify(&signed_old, now, 0).is_ok(),
        "tokens already out keep working"
    );
    let out = std::process::Command::new(common::bin())
        .args(["keys", "new", "--id", "bad id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--id"));
}

#[tokio::test]
async fn uploads_list_inspect_and_cancel() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let database = node.database_url();
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.mp4");
    std::fs::write(&notes, "not a video\n".repeat(100)).unwrap();
    let api = Uploads::new(&node.url, &account.api_key);
    let (_, body) = api.post(&notes, Some("root")).await;
    let failed = body["data"]["id"].as_str().unwrap().to_owned();
    api.wait_final(&failed).await;
    // One still receiving: a tus upload with half its bytes.
    let token = common::upload_token(&node, &account, "").await;
    let created = reqwest::Client::new()
        .post(format!("{}/files/", node.url))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100")
        .send()
        .await
        .unwrap();
    let receiving = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    let db = ["--database", database.as_str()];
    let list = |extra: &[&str]| {
        let args: Vec<&str> = ["uploads", "list"]
            .iter()
            .chain(extra)
            .chain(&db)
            .copied()
            .collect();
        common::run_text(&args)
    };
    let all = list(&[]);
    assert!(all.contains(&failed) && all.contains(&receiving), "{all}");
    let only_failed = list(&["--status", "failed"]);
    assert!(
        only_failed.contains(&failed) && !only_failed.contains(&receiving),
        "{only_failed}"
    );
    assert!(
        list(&["--account", "nobody"]).lines().count() == 1,
        "header only"
    );

    let inspected = common::run_ok(&["uploads", "inspect", &failed, "--database", &database]);
    assert_eq!(inspected["error_code"], "not_a_video", "{inspected}");
    assert_eq!(inspected["history"][0], "receiving");
    assert_eq!(
        inspected["history"].as_array().unwrap().last().unwrap(),
        "failed"
    );

    // Only an upload still receiving can be cancelled; it is then gone.
    let out = std::process::Command::new(common::bin())
        .args(["uploads", "cancel", &failed, "--database", &database])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an upload still receiving"));
    let said = common::run_text(&["uploads", "cancel", &receiving, "--database", &database]);
    assert!(said.starts_with("cancelled"), "{said}");
    assert_eq!(api.get(&format!("/{receiving}")).await.0, 404);
}
