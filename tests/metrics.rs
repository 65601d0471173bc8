//! Prometheus metrics as an operator scrapes them: an `uplink origin` and an `uplink edge`
//! (processes of their own, objects in a real S3 API server, the edge sending heartbeats), each
//! serving `/metrics` on its `metrics_listen` address. After uploads over three protocols, one
//! file that fails processing and one refused token, the counters say exactly that; and every
//! query of the Grafana dashboard in `deploy/` gets data from Debian's Prometheus scraping both.

mod common;

use common::{eventually, free_port, test_video, Proc, S3Server, Scrape, Uploads};
use std::path::Path;

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";
const BUCKET: &str = "metrics";

/// One origin and one edge (`a`, region `eu`), their metrics addresses and a notification
/// receiver that accepts everything.
struct Roles {
    dir: tempfile::TempDir,
    _s3: S3Server,
    _procs: Vec<Proc>,
    edge: String,
    edge_metrics: String,
    origin_metrics: String,
    database: String,
    hook: String,
}

async fn start() -> Roles {
    let s3 = S3Server::start().await;
    s3.bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let [origin_port, edge_port, origin_metrics, edge_metrics] =
        [free_port(), free_port(), free_port(), free_port()];
    let storage = format!("s3://{BUCKET}/m?path_style=true");
    let database = format!("sqlite://{d}/uplink.db?mode=rwc");
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    std::fs::write(
        dir.path().join("origin.toml"),
        format!(
            "listen = \"127.0.0.1:{origin_port}\"\nmetrics_listen = \"127.0.0.1:{origin_metrics}\"\n\
             database = \"{database}\"\nstorage = \"{storage}\"\n\
             internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nscratch_dir = \"{d}/scratch\"\n\
             token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\n\
             [notify]\nallow_private_addresses = true\n\n\
             [fleet]\ngeoip_database = \"{}\"\nfallback = \"a\"\n\n\
             [[fleet.edges]]\nname = \"a\"\nregion = \"eu\"\nlatitude = 50.1\nlongitude = 8.7\n\
             url = \"http://127.0.0.1:{edge_port}\"\ncapacity = 100\n",
            geoip.display()
        ),
    )
    .unwrap();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\nmetrics_listen = \"127.0.0.1:{edge_metrics}\"\n\
             origin_url = \"{origin_url}\"\ninternal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\n\
             storage = \"{storage}\"\ntoken_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\
             spool_dir = \"{d}/spool\"\nname = \"a\"\nregion = \"eu\"\nheartbeat_interval = \"500ms\"\n"
        ),
    )
    .unwrap();
    let mut env = s3.env();
    env.push(("UPLINK_INTERNAL_SECRET".into(), SECRET.into()));
    env.push(("UPLINK_TOKEN_KEYS".into(), TOKEN_KEYS.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let origin = Proc::start("origin", &dir.path().join("origin.toml"), &origin_url, &env).await;
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let edge = Proc::start("edge", &dir.path().join("edge.toml"), &edge_url, &env).await;
    Roles {
        dir,
        _s3: s3,
        _procs: vec![origin, edge],
        edge: edge_url,
        edge_metrics: format!("http://127.0.0.1:{edge_metrics}/metrics"),
        origin_metrics: format!("http://127.0.0.1:{origin_metrics}/metrics"),
        database,
        hook: receiver().await,
    }
}

/// A notification endpoint that answers 200 to everything.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Three protocols' uploads (Uploads API, tus, IETF draft), a file that is not a video and one
/// refused token; returns the bytes the tus upload sent.
async fn traffic(roles: &Roles) -> usize {
    let account = common::Account::from_json(&common::run_ok(&[
        "account",
        "create",
        "--name",
        "Acme",
        "--json",
        "--notify-url",
        &roles.hook,
        "--database",
        &roles.database,
    ]));
    let media = roles.dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let video = test_video(&media, 1);
    let junk = media.join("junk.mp4");
    std::fs::write(&junk, vec![0x5a; 40_000]).unwrap();
    let api = Uploads::new(&roles.edge, &account.api_key);
    for file in [&video, &junk] {
        let (status, body) = api.post(file, Some("root")).await;
        assert_eq!(status, 202, "{body}");
    }
    let http = reqwest::Client::new();
    let token = common::upload_token_at(&roles.edge, &account.api_key, "{}").await;
    let bytes = std::fs::read(&video).unwrap();
    let octets = ("content-type", "application/offset+octet-stream".to_owned());
    let tus = common::tus(
        reqwest::Method::POST,
        &format!("{}/files/", roles.edge),
        &token,
        &[("upload-length", bytes.len().to_string()), octets],
        bytes.clone(),
    )
    .await;
    assert_eq!(tus.status(), 201);
    let ietf = http
        .post(format!("{}/files/", roles.edge))
        .bearer_auth(&token)
        .header("upload-draft-interop-version", "6")
        .header("upload-complete", "?1")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ietf.status(), 201);
    let refused = common::tus(
        reqwest::Method::POST,
        &format!("{}/files/", roles.edge),
        "not-a-token",
        &[("upload-length", "5".to_owned())],
        Vec::new(),
    )
    .await;
    assert_eq!(refused.status(), 401);
    bytes.len()
}

/// Waits until the origin has processed `n` uploads and sent their last notifications.
async fn processed(roles: &Roles, n: f64) {
    eventually("uploads processed and notified", async || {
        let origin = Scrape::of(&roles.origin_metrics).await;
        let done = origin.sum("uplink_uploads_completed_total", &[])
            + origin.sum("uplink_uploads_failed_total", &[]);
        done == n && origin.sum("uplink_outbox_depth", &[]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn the_counters_say_what_happened_on_edge_and_origin() {
    let roles = start().await;
    let tus_bytes = traffic(&roles).await as f64;
    processed(&roles, 4.0).await;

    let edge = Scrape::of(&roles.edge_metrics).await;
    let requests = |labels: &[(&str, &str)]| edge.sum("uplink_edge_requests_total", labels);
    let post = ("method", "POST");
    assert_eq!(
        requests(&[("flavour", "uploads_api"), post, ("status", "202")]),
        2.0
    );
    assert_eq!(
        requests(&[("flavour", "tus"), post, ("status", "201")]),
        1.0
    );
    assert_eq!(
        requests(&[("flavour", "tus"), post, ("status", "401")]),
        1.0
    );
    assert_eq!(
        requests(&[("flavour", "ietf"), post, ("status", "201")]),
        1.0
    );
    assert_eq!(
        requests(&[("flavour", "control"), post, ("status", "201")]),
        1.0,
        "the token"
    );
    assert_eq!(requests(&[("version", "2")]), 0.0);
    assert_eq!(
        edge.sum("uplink_edge_received_bytes_total", &[("flavour", "tus")]),
        tus_bytes
    );
    assert_eq!(
        edge.sum("uplink_edge_received_bytes_total", &[("flavour", "ietf")]),
        tus_bytes
    );
    assert_eq!(
        edge.sum(
            "uplink_edge_token_refusals_total",
            &[("reason", "malformed")]
        ),
        1.0
    );
    assert_eq!(
        edge.sum("uplink_edge_ack_seconds_count", &[("flavour", "tus")]),
        1.0
    );
    assert!(edge.sum("uplink_edge_connections_total", &[("version", "1.1")]) >= 1.0);
    assert_eq!(edge.sum("uplink_edge_upload_requests_in_flight", &[]), 0.0);
    assert!(edge.sum("uplink_edge_spool_free_bytes", &[]) > 0.0);
    // The edge stored all four uploads in S3: small ones whole, the spooled ones in parts.
    let storage = |op: &str| {
        edge.sum(
            "uplink_storage_request_seconds_count",
            &[("operation", op), ("outcome", "ok")],
        )
    };
    assert_eq!(
        storage("PutObject") + storage("CompleteMultipartUpload"),
        4.0
    );
    assert_eq!(edge.sum("uplink_edge_forward_parts_in_memory", &[]), 0.0);
    assert!(edge.described("uplink_edge_requests_total"));

    let origin = Scrape::of(&roles.origin_metrics).await;
    assert_eq!(origin.sum("uplink_uploads_created_total", &[]), 4.0);
    assert_eq!(origin.sum("uplink_uploads_stored_total", &[]), 4.0);
    assert_eq!(origin.sum("uplink_uploads_completed_total", &[]), 3.0);
    assert_eq!(
        origin.sum("uplink_uploads_failed_total", &[("code", "not_a_video")]),
        1.0
    );
    assert_eq!(
        origin.sum("uplink_uploads", &[("status", "receiving")]),
        0.0
    );
    assert_eq!(origin.sum("uplink_jobs", &[("state", "queued")]), 0.0);
    assert_eq!(origin.sum("uplink_job_queue_oldest_age_seconds", &[]), 0.0);
    // Every video has at least one rendition.
    assert!(origin.sum("uplink_transcode_seconds_count", &[]) >= 3.0);
    // Each upload notifies its final status: delivered, none retried.
    assert_eq!(
        origin.sum("uplink_notifications_total", &[("outcome", "delivered")]),
        4.0
    );
    assert_eq!(
        origin.sum("uplink_notifications_total", &[("outcome", "retry")]),
        0.0
    );
    let heartbeat = origin.sum(
        "uplink_edge_heartbeat_age_seconds",
        &[("edge", "a"), ("region", "eu")],
    );
    assert!(heartbeat < 5.0, "{heartbeat}");
    assert_eq!(
        origin.sum("uplink_db_pool_connections", &[("state", "max")]),
        4.0
    );
    assert_eq!(
        origin.sum(
            "uplink_origin_requests_total",
            &[("api", "internal"), post, ("status", "201")]
        ),
        4.0,
        "the edge opened every record"
    );
}

/// The dashboard's queries with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/uplink.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            queries.push((title.to_owned(), expr.replace("$__rate_interval", "1m")));
        }
    }
    queries
}

/// Debian's Prometheus, scraping the given targets every second.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(edge: &str, origin: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = |url: &str| {
            url.trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_owned()
        };
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{}\"]\nscrape_configs:\n\
                 \x20 - job_name: uplink-edge\n    static_configs: [{{ targets: [\"{}\"] }}]\n\
                 \x20 - job_name: uplink-origin\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
                rules.display(),
                target(edge),
                target(origin)
            ),
        )
        .unwrap();
        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (bash .ci/setup installs Debian's prometheus)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The result of an instant query (an empty list when it has no data).
    async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let Ok(resp) = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_ne!(body["status"], "error", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn every_dashboard_panel_gets_data_from_prometheus_scraping_edge_and_origin() {
    let roles = start().await;
    traffic(&roles).await;
    processed(&roles, 4.0).await;
    let prometheus = Prometheus::start(&roles.edge_metrics, &roles.origin_metrics).await;
    // Both targets up, and enough scrapes for a rate over a minute (two samples at least).
    eventually("Prometheus scraped both roles three times", async || {
        let scrapes = prometheus.query("count_over_time(up[1m]) >= 3").await;
        let up = prometheus.query("up == 1").await;
        scrapes.len() == 2 && up.len() == 2
    })
    .await;
    let queries = dashboard_queries();
    assert!(queries.len() >= 25, "{}", queries.len());
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        if prometheus.query(expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    // The alerting rules load and none fires on a healthy fleet.
    let firing = prometheus.query("ALERTS{alertstate=\"firing\"}").await;
    assert!(firing.is_empty(), "{firing:?}");
}
