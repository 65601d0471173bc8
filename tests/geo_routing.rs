//! Geo routing across a fleet: one origin and three edges (Europe, North America, Asia) on
//! loopback, each a separate process sending heartbeats. Upload URLs name the nearest healthy
//! edge to the xvid `ip` or the client address; tokens and forms work only in their region;
//! a killed edge is skipped within its heartbeat timeout; the operator tools agree.

mod common;

use common::{free_port, Proc};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";
/// Deutsche Telekom, Comcast and NTT address space.
const GERMAN: &str = "80.128.0.1";
const AMERICAN: &str = "73.0.0.1";
const JAPANESE: &str = "153.128.0.1";
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// (name, region, latitude, longitude)
const EDGES: [(&str, &str, f64, f64); 3] = [
    ("fra-1", "eu", 50.11, 8.68),
    ("iad-1", "na", 38.95, -77.45),
    ("nrt-1", "ap", 35.77, 140.39),
];

struct Fleet {
    dir: tempfile::TempDir,
    origin: Proc,
    /// (name, base URL, process)
    edges: Vec<(&'static str, String, Option<Proc>)>,
}

impl Fleet {
    fn url(&self, name: &str) -> &str {
        &self.edges.iter().find(|e| e.0 == name).unwrap().1
    }

    fn database(&self) -> String {
        format!("sqlite://{}/uplink.db?mode=rwc", self.dir.path().display())
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("origin.toml")
    }

    /// `uplink fleet` for this fleet.
    fn report(&self) -> String {
        common::run_text(&["fleet", "--config", self.config().to_str().unwrap()])
    }
}

const ENV: [(&str, &str); 2] = [
    ("UPLINK_INTERNAL_SECRET", SECRET),
    ("UPLINK_TOKEN_KEYS", TOKEN_KEYS),
];

async fn start_fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let origin_port = free_port();
    let ports: Vec<u16> = EDGES.iter().map(|_| free_port()).collect();
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    let mut origin = format!(
        "listen = \"127.0.0.1:{origin_port}\"\ndatabase = \"sqlite://{d}/uplink.db?mode=rwc\"\n\
         storage = \"file://{d}/objects\"\ninternal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\n\
         scratch_dir = \"{d}/scratch\"\ntoken_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\n\
         [fleet]\ngeoip_database = \"{}\"\nfallback = \"fra-1\"\nheartbeat_timeout = \"{}s\"\n\
         min_spool_free = \"1MiB\"\n",
        geoip.display(),
        HEARTBEAT_TIMEOUT.as_secs()
    );
    for ((name, region, lat, lon), port) in EDGES.iter().zip(&ports) {
        origin += &format!(
            "\n[[fleet.edges]]\nname = \"{name}\"\nregion = \"{region}\"\nlatitude = {lat}\n\
             longitude = {lon}\nurl = \"http://127.0.0.1:{port}\"\ncapacity = 100\n"
        );
    }
    std::fs::write(dir.path().join("origin.toml"), origin).unwrap();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let origin = Proc::start("origin", &dir.path().join("origin.toml"), &origin_url, &ENV).await;
    let mut edges = Vec::new();
    for ((name, region, ..), port) in EDGES.iter().zip(&ports) {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\norigin_url = \"{origin_url}\"\n\
                 internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\n\
                 storage = \"file://{d}/objects\"\ntoken_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\
                 spool_dir = \"{d}/spool-{name}\"\nname = \"{name}\"\nregion = \"{region}\"\n\
                 heartbeat_interval = \"500ms\"\n"
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let proc = Proc::start("edge", &config, &url, &ENV).await;
        edges.push((*name, url, Some(proc)));
    }
    let fleet = Fleet { dir, origin, edges };
    // Every edge has sent a heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = fleet.report();
        if report.matches(" available").count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "edges not available:\n{report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet
}

/// An xvid session opened through `edge` for an uploader at `ip`.
async fn xvid_session(fleet: &Fleet, edge: &str, api_key: &str, pipeline: &str, ip: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/files/uploads/", fleet.url(edge)))
        .bearer_auth(api_key)
        .query(&[
            ("object_key", format!("videos/{}.mp4", uuid::Uuid::new_v4())),
            ("pipeline_id", pipeline.to_owned()),
            ("ip", ip.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    body["upload"].clone()
}

async fn post_form(url: &str, params: &Value, file: Vec<u8>) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in params.as_object().unwrap() {
        form = form.text(k.clone(), v.as_str().unwrap().to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("v.mp4"),
    );
    let resp = reqwest::Client::new()
        .post(url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn uploads_go_to_the_nearest_healthy_edge_of_their_region() {
    let mut fleet = start_fleet().await;
    let account = common::create_account_in(&fleet.database());
    let pipeline = account.json["pipeline_id"].as_str().unwrap().to_owned();

    // xvid `ip`: German, US (as PHP's ip2long gives it) and Japanese uploaders, whichever edge
    // the API call itself went through.
    let us_long = u32::from(AMERICAN.parse::<std::net::Ipv4Addr>().unwrap()).to_string();
    for (ip, expected) in [
        (GERMAN, "fra-1"),
        (us_long.as_str(), "iad-1"),
        (JAPANESE, "nrt-1"),
    ] {
        let upload = xvid_session(&fleet, "iad-1", &account.api_key, &pipeline, ip).await;
        assert_eq!(
            upload["form_post_url"],
            format!("{}/s3/{pipeline}", fleet.url(expected)),
            "{ip}"
        );
    }
    // The operator's lookup agrees.
    for (ip, expected) in [(GERMAN, "fra-1"), (AMERICAN, "iad-1"), (JAPANESE, "nrt-1")] {
        let config = fleet.config();
        let out = common::run_text(&["geoip", "lookup", ip, "--config", config.to_str().unwrap()]);
        assert!(
            out.contains(&format!("edge         {expected} ")),
            "{ip}: {out}"
        );
    }
    // A private address goes to the fallback.
    let upload = xvid_session(&fleet, "nrt-1", &account.api_key, &pipeline, "192.168.1.20").await;
    assert_eq!(
        upload["form_post_url"],
        format!("{}/s3/{pipeline}", fleet.url("fra-1"))
    );

    // The Japanese form works on the Asian edge only.
    let upload = xvid_session(&fleet, "fra-1", &account.api_key, &pipeline, JAPANESE).await;
    let params = &upload["form_post_params"];
    assert_eq!(params["x-uplink-region"], "ap");
    let elsewhere = format!("{}/s3/{pipeline}", fleet.url("fra-1"));
    let (status, body) = post_form(&elsewhere, params, b"not here".to_vec()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("region ap"), "{body}");
    let (status, body) = post_form(
        upload["form_post_url"].as_str().unwrap(),
        params,
        vec![7u8; 100_000],
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Without `ip`: the client address, from X-Forwarded-For through the edge (loopback is a
    // trusted proxy by default), for a tus token.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/upload-tokens", fleet.url("fra-1")))
        .bearer_auth(&account.api_key)
        .header("x-forwarded-for", AMERICAN)
        .json(&serde_json::json!({ "filename": "clip.mp4" }))
        .send()
        .await
        .unwrap();
    let (status, body) = common::json_of(resp).await;
    assert_eq!(status, 201, "{body}");
    let endpoint = body["tus_endpoint"].as_str().unwrap();
    assert_eq!(endpoint, format!("{}/files/", fleet.url("iad-1")));
    let token = body["token"].as_str().unwrap();
    assert!(token.contains("~rg=na~"), "{token}");
    let create = |base: &str| {
        reqwest::Client::new()
            .post(format!("{base}/files/"))
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "10")
            .send()
    };
    let refused = create(fleet.url("nrt-1")).await.unwrap();
    assert_eq!(refused.status(), 403);
    let (_, body) = common::json_of(refused).await;
    assert_eq!(body["error"], "token_region", "{body}");
    assert_eq!(create(fleet.url("iad-1")).await.unwrap().status(), 201);

    // The Asian edge is killed: within its heartbeat timeout Japanese uploaders go to the
    // nearest edge still alive (Frankfurt is nearer to Japan than Virginia).
    let killed_at = Instant::now();
    drop(fleet.edges[2].2.take());
    loop {
        let upload = xvid_session(&fleet, "fra-1", &account.api_key, &pipeline, JAPANESE).await;
        if upload["form_post_url"] == format!("{}/s3/{pipeline}", fleet.url("fra-1")) {
            break;
        }
        assert_eq!(
            upload["form_post_url"],
            format!("{}/s3/{pipeline}", fleet.url("nrt-1"))
        );
        assert!(
            killed_at.elapsed() < HEARTBEAT_TIMEOUT + Duration::from_secs(2),
            "the killed edge was still chosen after {:?}",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = fleet.report();
    let line = report.lines().find(|l| l.starts_with("nrt-1")).unwrap();
    assert!(line.contains("silent for"), "{report}");

    // An edge told to stop (SIGTERM, as systemd does) says it is draining at once, well
    // before its heartbeat would be missed.
    let iad = fleet.edges[1].2.as_ref().unwrap().0.id().to_string();
    let stopped_at = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &iad])
        .status()
        .unwrap()
        .success());
    loop {
        let report = fleet.report();
        let line = report.lines().find(|l| l.starts_with("iad-1")).unwrap();
        if line.contains("draining") {
            break;
        }
        assert!(
            stopped_at.elapsed() < HEARTBEAT_TIMEOUT - Duration::from_millis(500),
            "no draining heartbeat:\n{report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let upload = xvid_session(&fleet, "fra-1", &account.api_key, &pipeline, AMERICAN).await;
    assert_eq!(
        upload["form_post_url"],
        format!("{}/s3/{pipeline}", fleet.url("fra-1"))
    );
    let _ = &fleet.origin;
}
