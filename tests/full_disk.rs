//! An edge whose spool disk fills up (a small tmpfs mounted for the test; CI runs as root): a
//! tus PATCH that does not fit is answered 507 with `Retry-After` and none of its bytes are
//! kept, the offset acknowledged before stays and stays intact, readiness says the spool is
//! full, and once space is freed the client resumes from the acknowledged offset and the upload
//! completes byte-identical.

mod common;

use common::{free_port, json_of, tus, Proc};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";
const MIB: usize = 1024 * 1024;

/// A tmpfs of `mib` MiB at a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: usize) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn readyz(url: &str) -> (u16, serde_json::Value) {
    json_of(reqwest::get(format!("{url}/readyz")).await.unwrap()).await
}

#[tokio::test]
async fn a_full_spool_answers_507_keeps_what_was_acknowledged_and_resumes_once_freed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let spool = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool, 80);
    let (origin_port, edge_port) = (free_port(), free_port());
    let database = common::write_origin_config(dir.path(), origin_port, edge_port);
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\norigin_url = \"{origin_url}\"\n\
             internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"file://{d}/objects\"\n\
             token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{}\"\n",
            spool.display()
        ),
    )
    .unwrap();
    let env = [
        ("UPLINK_INTERNAL_SECRET", SECRET),
        ("UPLINK_TOKEN_KEYS", TOKEN_KEYS),
    ];
    let _origin = Proc::start("origin", &dir.path().join("origin.toml"), &origin_url, &env).await;
    let edge = format!("http://127.0.0.1:{edge_port}");
    let _edge = Proc::start("edge", &dir.path().join("edge.toml"), &edge, &env).await;
    let account = common::create_account_in(&database);
    let token = common::upload_token_at(&edge, &account.api_key, "{}").await;
    assert_eq!(readyz(&edge).await.0, 200);

    // Something else fills the disk but for 4 MiB: readiness says so.
    let filler = spool.join("filler");
    let free = || {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&spool)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    std::fs::write(&filler, vec![0u8; free() - 4 * MIB]).unwrap();
    let (status, body) = readyz(&edge).await;
    assert_eq!(
        (status, &body["checks"]["spool"]),
        (503, &"unavailable".into()),
        "{body}"
    );

    let data: Vec<u8> = (0..16 * MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let created = tus(
        reqwest::Method::POST,
        &format!("{edge}/files/"),
        &token,
        &[("upload-length", data.len().to_string())],
        Vec::new(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let url = format!("{edge}{}", created.headers()["location"].to_str().unwrap());
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    let patch = async |from: usize, to: usize| {
        let headers = [octets.clone(), ("upload-offset", from.to_string())];
        tus(
            reqwest::Method::PATCH,
            &url,
            &token,
            &headers,
            data[from..to].to_vec(),
        )
        .await
    };
    let offset = async || {
        let head = tus(reqwest::Method::HEAD, &url, &token, &[], Vec::new()).await;
        head.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };

    // 2 MiB fit and are acknowledged; the next 8 MiB do not: 507, and none of them is kept.
    assert_eq!(patch(0, 2 * MIB).await.status(), 204);
    let full = patch(2 * MIB, 10 * MIB).await;
    assert_eq!(full.status(), 507);
    assert_eq!(full.headers()["retry-after"], "30");
    assert_eq!(offset().await, 2 * MIB);

    // Space comes back: the client resumes from the acknowledged offset and completes.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(readyz(&edge).await.0, 200);
    assert_eq!(patch(2 * MIB, 10 * MIB).await.status(), 204);
    let last = patch(10 * MIB, 16 * MIB).await;
    assert_eq!(last.status(), 204);
    assert_eq!(
        last.headers()["upload-offset"],
        (16 * MIB).to_string().as_str()
    );
    let stored: Vec<_> = common::files_under(&dir.path().join("objects"))
        .into_iter()
        .filter(|p| p.ends_with("source"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&stored[0]).unwrap())),
        hex::encode(Sha256::digest(&data))
    );
}
