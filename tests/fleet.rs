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

/// Origins on one PostgreSQL and edges by (name, region), each a process of its own. Region
/// `eu` is at Frankfurt, any other at New York; clients here (private addresses) go to `a`.
struct Fleet {
    _dir: tempfile::TempDir,
    _pg: PgDatabase,
    database: String,
    /// The origins' processes.
    origins: Vec<Option<Proc>>,
    /// (base URL, process), in the order asked for.
    edges: Vec<(String, Option<Proc>)>,
}

/// One origin and two edges of region `eu`, `a` and `b`.
async fn start(s3: &S3Server) -> Fleet {
    start_with(s3, 1, &[("a", "eu"), ("b", "eu")]).await
}

async fn start_with(s3: &S3Server, origins: usize, edges: &[(&str, &str)]) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pg = PgDatabase::create();
    let origin_ports: Vec<u16> = (0..origins).map(|_| free_port()).collect();
    let edge_ports: Vec<u16> = edges.iter().map(|_| free_port()).collect();
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    let storage = format!("s3://{BUCKET}/fleet?path_style=true");
    let mut fleet = format!(
        "\n[fleet]\ngeoip_database = \"{}\"\nfallback = \"a\"\nheartbeat_timeout = \"3s\"\n\
         edge_lost_after = \"4s\"\nmin_spool_free = \"1MiB\"\n",
        geoip.display(),
    );
    for ((name, region), port) in edges.iter().zip(&edge_ports) {
        let (lat, lon) = if *region == "eu" {
            (50.1, 8.7)
        } else {
            (40.7, -74.0)
        };
        fleet += &format!(
            "\n[[fleet.edges]]\nname = \"{name}\"\nregion = \"{region}\"\nlatitude = {lat}\n\
             longitude = {lon}\nurl = \"http://127.0.0.1:{port}\"\ncapacity = 100\n"
        );
    }
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("UPLINK_INTERNAL_SECRET".into(), SECRET.into()));
    env.push(("UPLINK_TOKEN_KEYS".into(), TOKEN_KEYS.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut procs = Vec::new();
    for (i, port) in origin_ports.iter().enumerate() {
        let config = dir.path().join(format!("origin{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\nstorage = \"{storage}\"\n\
                 internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nscratch_dir = \"{d}/scratch{i}\"\n\
                 token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nworkers = 1\njob_lease = \"3s\"\n{fleet}",
                pg.url,
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        procs.push(Some(Proc::start("origin", &config, &url, &env).await));
    }
    let origin_urls: Vec<String> = origin_ports
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    let mut started = Vec::new();
    for ((name, region), port) in edges.iter().zip(&edge_ports) {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\norigin_url = [{}]\n\
                 internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"{storage}\"\n\
                 token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{d}/spool-{name}\"\n\
                 name = \"{name}\"\nregion = \"{region}\"\nheartbeat_interval = \"500ms\"\n",
                origin_urls.join(", ")
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        started.push((
            url.clone(),
            Some(Proc::start("edge", &config, &url, &env).await),
        ));
    }
    Fleet {
        database: pg.url.clone(),
        _dir: dir,
        _pg: pg,
        origins: procs,
        edges: started,
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

    // 12 MiB acknowledged by edge a in 4 MiB PATCHes. Edge a has sent the first part to S3
    // and recorded it at the origin, then dies (SIGKILL); the client continues at the same
    // path on edge b.
    let (path, id, in_storage) = begin_on(&fleet, &a, &token, &data, &[]).await;
    let inspected = common::run_ok(&["uploads", "inspect", &id, "--database", &fleet.database]);
    assert_eq!(inspected["in_storage"]["bytes"], in_storage, "{inspected}");
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
    let at: usize = header("upload-offset").parse().unwrap();
    assert_eq!(
        at as i64, in_storage,
        "b continues after the parts a stored"
    );
    eprintln!(
        "adoption: HEAD on edge b answered in {:?} with offset {at}: {} acknowledged bytes to resend",
        asked.elapsed(),
        12 * MIB - at
    );
    send_rest(&format!("{b}{path}"), &token, &data, at).await;

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

/// Creates a tus upload of `data` on `edge` (with `headers`), sends its first 12 MiB in 4 MiB
/// PATCHes and waits until the edge has recorded a part in storage at the origin. Returns the
/// upload's path, its id and the bytes in storage.
async fn begin_on(
    fleet: &Fleet,
    edge: &str,
    token: &str,
    data: &[u8],
    headers: &[(&str, String)],
) -> (String, String, i64) {
    let mut sent = vec![("upload-length", data.len().to_string())];
    sent.extend_from_slice(headers);
    let created = tus(
        reqwest::Method::POST,
        &format!("{edge}/files/"),
        token,
        &sent,
        Vec::new(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let path = created.headers()["location"].to_str().unwrap().to_owned();
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    for at in (0..12 * MIB).step_by(4 * MIB) {
        let r = tus(
            reqwest::Method::PATCH,
            &format!("{edge}{path}"),
            token,
            &[octets.clone(), ("upload-offset", at.to_string())],
            data[at..at + 4 * MIB].to_vec(),
        )
        .await;
        assert_eq!(r.status(), 204);
    }
    let id = path.rsplit('/').next().unwrap().to_owned();
    let recorded = format!(
        "SELECT CAST(COALESCE(SUM(len), 0) AS BIGINT) FROM upload_parts WHERE upload_id = '{id}'"
    );
    let mut in_storage = 0i64;
    eventually("the edge records a part in storage", async || {
        in_storage = common::sql_value(&fleet.database, &recorded).await.unwrap();
        in_storage > 0
    })
    .await;
    (path, id, in_storage)
}

/// PATCHes `data` from `at` to its end to a tus upload at `url`, 4 MiB at a time, each answered
/// 204 (the last one: stored).
async fn send_rest(url: &str, token: &str, data: &[u8], mut at: usize) {
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    while at < data.len() {
        let end = (at + 4 * MIB).min(data.len());
        let r = tus(
            reqwest::Method::PATCH,
            url,
            token,
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
}

/// One writer across the fleet: a client that moves to edge b while edge a lives (geo-DNS
/// changed, a load balancer moved it) makes b the upload's writer at once. Edge a, still
/// holding its copy, can neither record a part nor complete the upload: a late request there
/// that brings the last byte gets 409, never a success, and a lets the upload go; b completes
/// it from the parts in storage, with the client's tus metadata.
#[tokio::test]
async fn an_edge_the_client_left_can_neither_record_parts_nor_complete_the_upload() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let fleet = start(&s3).await;
    let account = common::create_account_in(&fleet.database);
    let (a, b) = (fleet.edges[0].0.clone(), fleet.edges[1].0.clone());
    let token = common::upload_token_at(&a, &account.api_key, "{}").await;
    let data = pseudo_random(24 * MIB, 11);
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    let metadata = "filename bW92ZWQubXA0,kind dGVzdA==";
    let sent = [("upload-metadata", metadata.to_owned())];
    let (path, id, in_storage) = begin_on(&fleet, &a, &token, &data, &sent).await;
    let sql = |what: &str| format!("SELECT {what} FROM uploads WHERE id = '{id}'");
    let writer = async || -> String {
        common::sql_value(&fleet.database, &sql("writer"))
            .await
            .unwrap()
    };
    assert_eq!(writer().await, "a");

    // The client moves to b, a alive: b takes the upload over after the stored part.
    let head = tus(
        reqwest::Method::HEAD,
        &format!("{b}{path}"),
        &token,
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(head.status(), 200);
    let at: usize = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(at as i64, in_storage);
    assert_eq!(head.headers()["upload-metadata"], metadata);
    assert_eq!(writer().await, "b");

    // A late request reaches a with the rest of the file: a keeps the bytes in its spool but
    // may not complete the upload, and says so.
    let late = tus(
        reqwest::Method::PATCH,
        &format!("{a}{path}"),
        &token,
        &[octets.clone(), ("upload-offset", (12 * MIB).to_string())],
        data[12 * MIB..].to_vec(),
    )
    .await;
    assert_eq!(late.status(), 409, "{:?}", late.text().await);
    let status: i64 = common::sql_value(&fleet.database, &sql("status"))
        .await
        .unwrap();
    assert_eq!(status, 0, "a did not complete the upload");
    assert_eq!(writer().await, "b");

    // b completes the upload from the parts in storage; one object, the source's bytes.
    send_rest(&format!("{b}{path}"), &token, &data, at).await;
    let record = Uploads::new(&b, &account.api_key).wait_final(&id).await;
    assert_eq!(
        record["sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&data)).as_str()),
        "{record}"
    );
    assert_eq!(record["filename"], "moved.mp4", "{record}");
    let kept: String = common::sql_value(&fleet.database, &sql("metadata"))
        .await
        .unwrap();
    assert!(kept.contains(r#""kind":"test""#), "{kept}");
    assert!(s3.open_multipart_uploads(BUCKET).await.is_empty());
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

/// One tus 1.0 or IETF draft (interop 6) request with an upload token.
async fn resumable(
    via: Via,
    method: reqwest::Method,
    url: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> reqwest::Response {
    if via == Via::Tus {
        return tus(method, url, token, headers, body).await;
    }
    let mut all = vec![("upload-draft-interop-version", "6".to_owned())];
    all.extend_from_slice(headers);
    common::with_token(method, url, token, &all, body).await
}

/// How an upload of the big fleet test is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Tus,
    Ietf,
    Movingimage,
}

/// One upload of the big fleet test: its bytes, and where it stands.
struct Upload {
    via: Via,
    data: Vec<u8>,
    /// Whether it is a real video (processed to status 6).
    video: bool,
    /// The edge its first half went to.
    first: String,
    /// tus/IETF: its path; movingimage: its upload URL's path.
    path: String,
    /// Its id (movingimage: the video id).
    id: String,
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[tokio::test]
async fn twenty_uploads_survive_losing_an_edge_and_an_origin() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let mut fleet = start_with(&s3, 2, &[("a", "eu"), ("b", "eu"), ("c", "us")]).await;
    let account = common::create_account_in(&fleet.database);
    let key = account.api_key.clone();
    let [a, b, c] = [0, 1, 2].map(|i| fleet.edges[i].0.clone());
    let token = common::upload_token_at(&a, &key, "{}").await;

    // Another region's edge never takes the region's uploads (the token says `eu`).
    let r = tus(
        reqwest::Method::POST,
        &format!("{c}/files/"),
        &token,
        &[("upload-length", "10".into())],
        vec![],
    )
    .await;
    assert_eq!(r.status(), 403);

    // 8 tus (2 of them real videos), 6 IETF, 6 movingimage uploads; two thirds start on edge
    // a, the others on b.
    let media = tempfile::tempdir().unwrap();
    let mut uploads = Vec::new();
    for i in 0..20u32 {
        let via = match i % 10 {
            0..=3 => Via::Tus,
            4..=6 => Via::Ietf,
            _ => Via::Movingimage,
        };
        let video = i == 0 || i == 10;
        let data = if video {
            let dir = media.path().join(i.to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::read(common::test_video(&dir, 1)).unwrap()
        } else {
            pseudo_random(3 * MIB / 2 + i as usize, i)
        };
        let first = if i % 3 == 2 { b.clone() } else { a.clone() };
        uploads.push(Upload {
            via,
            data,
            video,
            first,
            path: String::new(),
            id: String::new(),
        });
    }

    // First halves (movingimage: the first of three chunks).
    for u in &mut uploads {
        let half = u.data.len() / 2;
        match u.via {
            Via::Tus => {
                let r = resumable(
                    Via::Tus,
                    reqwest::Method::POST,
                    &format!("{}/files/", u.first),
                    &token,
                    &[
                        ("upload-length", u.data.len().to_string()),
                        ("content-type", "application/offset+octet-stream".into()),
                    ],
                    u.data[..half].to_vec(),
                )
                .await;
                assert_eq!(r.status(), 201);
                assert_eq!(r.headers()["upload-offset"], half.to_string().as_str());
                u.path = r.headers()["location"].to_str().unwrap().to_owned();
            }
            Via::Ietf => {
                let r = resumable(
                    Via::Ietf,
                    reqwest::Method::POST,
                    &format!("{}/files/", u.first),
                    &token,
                    &[
                        ("upload-complete", "?0".into()),
                        ("upload-length", u.data.len().to_string()),
                    ],
                    u.data[..half].to_vec(),
                )
                .await;
                assert_eq!(r.status(), 201);
                u.path = r.headers()["location"].to_str().unwrap().to_owned();
            }
            Via::Movingimage => {
                let (video, url) = movingimage_url_at(&u.first, &key).await;
                u.id = video;
                u.path = url[url.find("/upload/").unwrap()..].to_owned();
                let (status, body) = movingimage_chunk(
                    &format!("{}{}", u.first, u.path),
                    3,
                    1,
                    chunk_of(&u.data, 0),
                )
                .await;
                assert_eq!(status, 202, "{body}");
            }
        }
        if u.id.is_empty() {
            u.id = u.path.rsplit('/').next().unwrap().to_owned();
        }
    }

    // Edge a and the edges' first origin die (SIGKILL).
    fleet.edges[0].1.take();
    fleet.origins[0].take();

    // The clients continue on edge b: tus and IETF where b says (HEAD), movingimage with the
    // next chunk; a movingimage upload whose first chunk died with a fails (`edge_lost`) and
    // its client uploads the file again through b.
    let mut lost = Vec::new();
    for u in &uploads {
        let at = format!("{b}{}", u.path);
        match u.via {
            Via::Tus | Via::Ietf => {
                let head = resumable(u.via, reqwest::Method::HEAD, &at, &token, &[], vec![]).await;
                assert!(head.status().is_success(), "{:?} {}", u.via, head.status());
                let offset: usize = head.headers()["upload-offset"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                if u.first == b {
                    assert_eq!(offset, u.data.len() / 2, "b kept what it took");
                }
                let mut headers = vec![("upload-offset", offset.to_string())];
                if u.via == Via::Tus {
                    headers.push(("content-type", "application/offset+octet-stream".into()));
                } else {
                    headers.push(("content-type", "application/partial-upload".into()));
                    headers.push(("upload-complete", "?1".into()));
                }
                let rest = u.data[offset..].to_vec();
                let r = resumable(u.via, reqwest::Method::PATCH, &at, &token, &headers, rest).await;
                assert!(r.status().is_success(), "{:?} {}", u.via, r.status());
            }
            Via::Movingimage if u.first == b => {
                for n in 2..=3 {
                    let (status, body) =
                        movingimage_chunk(&at, 3, n, chunk_of(&u.data, n - 1)).await;
                    assert_eq!(status, if n == 3 { 201 } else { 202 }, "{body}");
                }
            }
            Via::Movingimage => {
                let (status, body) = movingimage_chunk(&at, 3, 2, chunk_of(&u.data, 1)).await;
                assert!(status == 409 || status == 410, "{status} {body}");
                lost.push(u);
            }
        }
    }
    // Their clients poll the status until it says the upload failed, then upload the file
    // again with a new URL (which, a being gone, names b).
    let api = Uploads::new(&b, &key);
    let mut again = Vec::new();
    for u in lost {
        let inspected =
            common::run_ok(&["uploads", "inspect", &u.id, "--database", &fleet.database]);
        assert_eq!(inspected["held_by_edge"], "a", "{inspected}");
        let record = api.wait_final(&u.id).await;
        assert_eq!(record["error_code"], "edge_lost", "{record}");
        let (video, url) = movingimage_url_at(&b, &key).await;
        assert!(url.starts_with(&b), "{url}");
        for n in 1..=3 {
            let (status, body) = movingimage_chunk(&url, 3, n, chunk_of(&u.data, n - 1)).await;
            assert_eq!(status, if n == 3 { 201 } else { 202 }, "{body}");
        }
        again.push((u.id.clone(), video));
    }

    // Every upload whose client was told it is complete is stored whole: the videos reach
    // status 6, the other files fail processing as not videos, with the source's SHA-256.
    for u in &uploads {
        let id = again
            .iter()
            .find(|(old, _)| *old == u.id)
            .map_or(&u.id, |(_, new)| new);
        let record = api.wait_final(id).await;
        let expected = if u.video { 6 } else { 7 };
        assert_eq!(record["status"], expected, "{:?} {record}", u.via);
        assert_eq!(
            record["sha256"].as_str(),
            Some(hex::encode(Sha256::digest(&u.data)).as_str()),
            "{record}"
        );
    }
    assert!(!again.is_empty(), "some movingimage uploads started on a");
    assert!(s3.open_multipart_uploads(BUCKET).await.is_empty());
}

/// Chunk `n` (from 0) of three of `data`.
fn chunk_of(data: &[u8], n: usize) -> Vec<u8> {
    let size = data.len().div_ceil(3);
    data[(n * size).min(data.len())..((n + 1) * size).min(data.len())].to_vec()
}

/// `uplink bench` aimed at one edge of the fleet: its uploads go where the control API routes
/// them (edge `a`, for clients here), all verified by their SHA-256; with `--pin-edge` they all
/// go to the edge it was aimed at.
#[tokio::test]
async fn uplink_bench_follows_the_fleets_routing_or_pins_one_edge() {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let fleet = start(&s3).await;
    let account = common::create_account_in(&fleet.database);
    let (a, b) = (fleet.edges[0].0.clone(), fleet.edges[1].0.clone());
    let dir = tempfile::tempdir().unwrap();
    for (protocol, pin, edge) in [
        ("tus", false, &a),
        ("tus", true, &b),
        ("movingimage", true, &b),
    ] {
        let json = dir.path().join(format!("{protocol}-{pin}.json"));
        let out = std::process::Command::new(common::bin())
            .args([
                "bench",
                "--url",
                &b,
                "--api-key",
                &account.api_key,
                "--progress",
                "quiet",
            ])
            .args([
                "--protocol",
                protocol,
                "--uploads",
                "3",
                "--concurrency",
                "3",
            ])
            .args([
                "--size",
                "300KiB",
                "--chunk",
                "128KiB",
                "--verify-timeout",
                "60s",
            ])
            .args(pin.then_some("--pin-edge"))
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{protocol} pinned {pin}: {table}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let edge = edge.trim_start_matches("http://");
        assert_eq!(
            report["edges"],
            serde_json::json!({ edge: 3 }),
            "{protocol} pinned {pin}"
        );
    }
}
