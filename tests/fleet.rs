//! The fleet as operators run it: one `uplink origin` on PostgreSQL, objects in a real S3 API
//! server (moto), two `uplink edge` processes of region `eu` sending heartbeats. An edge that
//! dies mid-upload must never leave its client told "done" for an upload that will not
//! complete: the surviving edge continues a tus upload at the same path, knows its length, and
//! the last byte completes it; a movingimage upload whose acknowledged chunks died with their
//! edge fails visibly (`edge_lost`) instead of waiting for chunks its client will never resend.

mod common;

use common::{
    eventually, free_port, movingimage_chunk, movingimage_url_at, tus, PgDatabase, Proc, S3Server,
    Uploads,
};
use sha2::{Digest, Sha256};
use std::path::Path;

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";
const BUCKET: &str = "fleet";
const MIB: usize = 1024 * 1024;

/// One origin and two edges of region `eu` (`a`, `b`), each a process of its own.
struct Fleet {
    _dir: tempfile::TempDir,
    _pg: PgDatabase,
    _origin: Proc,
    database: String,
    /// (base URL, process), `a` then `b`.
    edges: Vec<(String, Option<Proc>)>,
}

async fn start(s3: &S3Server) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pg = PgDatabase::create();
    let origin_port = free_port();
    let ports = [free_port(), free_port()];
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    let storage = format!("s3://{BUCKET}/fleet?path_style=true");
    let mut origin = format!(
        "listen = \"127.0.0.1:{origin_port}\"\ndatabase = \"{}\"\nstorage = \"{storage}\"\n\
         internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nscratch_dir = \"{d}/scratch\"\n\
         token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\n\
         [fleet]\ngeoip_database = \"{}\"\nfallback = \"a\"\nheartbeat_timeout = \"3s\"\n\
         edge_lost_after = \"4s\"\nmin_spool_free = \"1MiB\"\n",
        pg.url,
        geoip.display(),
    );
    for (name, port) in ["a", "b"].iter().zip(ports) {
        origin += &format!(
            "\n[[fleet.edges]]\nname = \"{name}\"\nregion = \"eu\"\nlatitude = 50.1\n\
             longitude = 8.7\nurl = \"http://127.0.0.1:{port}\"\ncapacity = 100\n"
        );
    }
    std::fs::write(dir.path().join("origin.toml"), origin).unwrap();
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("UPLINK_INTERNAL_SECRET".into(), SECRET.into()));
    env.push(("UPLINK_TOKEN_KEYS".into(), TOKEN_KEYS.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let origin = Proc::start("origin", &dir.path().join("origin.toml"), &origin_url, &env).await;
    let mut edges = Vec::new();
    for (name, port) in ["a", "b"].iter().zip(ports) {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\norigin_url = \"{origin_url}\"\n\
                 internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"{storage}\"\n\
                 token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{d}/spool-{name}\"\n\
                 name = \"{name}\"\nregion = \"eu\"\nheartbeat_interval = \"500ms\"\n"
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        edges.push((
            url.clone(),
            Some(Proc::start("edge", &config, &url, &env).await),
        ));
    }
    Fleet {
        database: pg.url.clone(),
        _dir: dir,
        _pg: pg,
        _origin: origin,
        edges,
    }
}

#[tokio::test]
async fn an_upload_whose_edge_dies_is_completed_by_another_edge_of_its_region() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let mut fleet = start(&s3).await;
    let account = common::create_account_in(&fleet.database);
    let (a, b) = (fleet.edges[0].0.clone(), fleet.edges[1].0.clone());
    let token = common::upload_token_at(&a, &account.api_key, "{}").await;
    let data: Vec<u8> = (0..24 * MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let octets = ("content-type", "application/offset+octet-stream".to_owned());

    // 12 MiB acknowledged by edge a in 4 MiB PATCHes.
    let created = tus(
        reqwest::Method::POST,
        &format!("{a}/files/"),
        &token,
        &[("upload-length", data.len().to_string())],
        Vec::new(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let path = created.headers()["location"].to_str().unwrap().to_owned();
    for at in (0..12 * MIB).step_by(4 * MIB) {
        let r = tus(
            reqwest::Method::PATCH,
            &format!("{a}{path}"),
            &token,
            &[octets.clone(), ("upload-offset", at.to_string())],
            data[at..at + 4 * MIB].to_vec(),
        )
        .await;
        assert_eq!(r.status(), 204);
    }

    // Edge a has sent the first part to S3 and recorded it at the origin, then dies (SIGKILL);
    // the client continues at the same path on edge b.
    let id = path.rsplit('/').next().unwrap().to_owned();
    let recorded = format!(
        "SELECT CAST(COALESCE(SUM(len), 0) AS BIGINT) FROM upload_parts WHERE upload_id = '{id}'"
    );
    let mut in_storage = 0i64;
    eventually("edge a records a part in storage", async || {
        in_storage = common::sql_value(&fleet.database, &recorded).await.unwrap();
        in_storage > 0
    })
    .await;
    fleet.edges[0].1.take();
    let asked = std::time::Instant::now();
    let head = tus(
        reqwest::Method::HEAD,
        &format!("{b}{path}"),
        &token,
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(head.status(), 200);
    let header = |name: &str| head.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(
        header("upload-length"),
        data.len().to_string(),
        "b knows the length"
    );
    let mut at: usize = header("upload-offset").parse().unwrap();
    assert_eq!(
        at as i64, in_storage,
        "b continues after the parts a stored"
    );
    eprintln!(
        "adoption: HEAD on edge b answered in {:?} with offset {at}: {} acknowledged bytes to resend",
        asked.elapsed(),
        12 * MIB - at
    );
    while at < data.len() {
        let end = (at + 4 * MIB).min(data.len());
        let r = tus(
            reqwest::Method::PATCH,
            &format!("{b}{path}"),
            &token,
            &[octets.clone(), ("upload-offset", at.to_string())],
            data[at..end].to_vec(),
        )
        .await;
        assert_eq!(r.status(), 204);
        at = r.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
    }

    // The last 204 meant stored: the upload left "receiving" with every byte, a's part and
    // b's in one object.
    let api = Uploads::new(&b, &account.api_key);
    let record = api.wait_final(&id).await;
    assert_eq!(
        record["sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&data)).as_str()),
        "{record}"
    );
    assert_eq!(record["size"], data.len(), "{record}");
    eventually("the stored object is whole", async || {
        s3.keys(BUCKET, "fleet/")
            .await
            .iter()
            .any(|k| k.ends_with("/source"))
    })
    .await;
}

#[tokio::test]
async fn chunks_acknowledged_by_a_lost_edge_fail_their_upload_visibly() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let mut fleet = start(&s3).await;
    let account = common::create_account_in(&fleet.database);
    let (a, b) = (fleet.edges[0].0.clone(), fleet.edges[1].0.clone());
    let (video, url) = movingimage_url_at(&a, &account.api_key).await;
    let path = &url[url.find("/upload/").unwrap()..];
    let chunk = vec![7u8; MIB];

    // Two of three chunks acknowledged by edge a, which then dies with them.
    for current in 1..=2 {
        let (status, body) =
            movingimage_chunk(&format!("{a}{path}"), 3, current, chunk.clone()).await;
        assert_eq!(status, 202, "{body}");
    }
    fleet.edges[0].1.take();

    // Edge a may still come back with its chunks: b refuses the third rather than take it.
    let (status, body) = movingimage_chunk(&format!("{b}{path}"), 3, 3, chunk.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("another upload server"),
        "{body}"
    );

    // Once a is lost (silent for edge_lost_after, 4 s), the upload fails, visibly.
    let record = Uploads::new(&b, &account.api_key).wait_final(&video).await;
    assert_eq!(record["status"], 7, "{record}");
    assert_eq!(record["error_code"], "edge_lost", "{record}");
    let (status, body) = movingimage_chunk(&format!("{b}{path}"), 3, 3, chunk).await;
    assert_eq!(status, 410, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Upload the file again"),
        "{body}"
    );
}
