//! `uplink origin` and `uplink edge` as separate processes with their own config files: the
//! edge reaches the origin over the shared-secret internal API, proxies the control API, and
//! never exposes the internal API; configs are validated at start.

mod common;

use common::{free_port, test_video, Proc, Uploads};
use std::path::Path;
use std::process::Command;

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";

/// Starts `uplink ROLE --config DIR/ROLE.toml` and waits until `url/healthz` answers.
async fn start_role(role: &str, url: &str, secret: &str, dir: &Path) -> Proc {
    let config = dir.join(format!("{role}.toml"));
    Proc::start(
        role,
        &config,
        url,
        &[
            ("UPLINK_INTERNAL_SECRET", secret),
            ("UPLINK_TOKEN_KEYS", TOKEN_KEYS),
        ],
    )
    .await
}

struct Pair {
    dir: tempfile::TempDir,
    edge_url: String,
    origin_url: String,
    procs: Vec<Proc>,
}

async fn start_pair(edge_secret: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (origin_port, edge_port) = (free_port(), free_port());
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("origin.toml"),
        format!(
            "listen = \"127.0.0.1:{origin_port}\"\ndatabase = \"sqlite://{d}/uplink.db?mode=rwc\"\n\
             storage = \"file://{d}/objects\"\ninternal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\n\
             scratch_dir = \"{d}/scratch\"\ntoken_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\n\
             edge_url = \"http://127.0.0.1:{edge_port}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\norigin_url = \"http://127.0.0.1:{origin_port}\"\n\
             internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"file://{d}/objects\"\n\
             token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{d}/spool\"\n"
        ),
    )
    .unwrap();
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let origin = start_role("origin", &origin_url, SECRET, dir.path()).await;
    let edge = start_role("edge", &edge_url, edge_secret, dir.path()).await;
    Pair {
        dir,
        edge_url,
        origin_url,
        procs: vec![origin, edge],
    }
}

fn create_account(pair: &Pair) -> common::Account {
    common::create_account_in(&format!(
        "sqlite://{}/uplink.db?mode=rwc",
        pair.dir.path().display()
    ))
}

#[tokio::test]
async fn an_upload_through_a_separate_edge_completes() {
    let pair = start_pair(SECRET).await;
    let account = create_account(&pair);
    let video = test_video(pair.dir.path(), 1);
    let api = Uploads::new(&pair.edge_url, &account.api_key);
    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap();
    // The status is read through the edge's proxy to the origin's control API.
    assert_eq!(api.wait_final(id).await["status"], 6);
}

#[tokio::test]
async fn the_internal_api_needs_the_secret_and_is_not_reachable_through_the_edge() {
    let pair = start_pair(SECRET).await;
    let http = reqwest::Client::new();
    let url = format!("{}/internal/v1/api-keys/resolve", pair.origin_url);
    let body = serde_json::json!({ "api_key": "sk-x" });
    let resp = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(&url)
        .header("x-uplink-internal-secret", "wrong-secret-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(&url)
        .header("x-uplink-internal-secret", SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "the right secret reaches the handler (unknown key)"
    );

    let through_edge = format!("{}/internal/v1/api-keys/resolve", pair.edge_url);
    let resp = http
        .post(&through_edge)
        .header("x-uplink-internal-secret", SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["message"],
        "Not found."
    );
}

#[tokio::test]
async fn an_edge_with_the_wrong_secret_answers_503_not_401() {
    let pair = start_pair("a-different-secret-entirely").await;
    let account = create_account(&pair);
    let video = test_video(pair.dir.path(), 1);
    let (status, body) = Uploads::new(&pair.edge_url, &account.api_key)
        .post(&video, Some("root"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("retry"));
}

#[tokio::test]
async fn control_api_calls_get_a_retryable_503_while_the_origin_is_down() {
    let mut pair = start_pair(SECRET).await;
    let account = create_account(&pair);
    let api = Uploads::new(&pair.edge_url, &account.api_key);
    assert_eq!(api.get("").await.0, 200);
    drop(pair.procs.remove(0)); // kills the origin
    let (status, body) = api.get("").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("retry"));
}

/// Two origins on one PostgreSQL and one object store (`extra` added to each one's config)
/// and one edge naming both, each a process of its own.
struct TwoOrigins {
    _dir: tempfile::TempDir,
    pg: common::PgDatabase,
    /// The origins' listening ports and processes, in the edge's order.
    ports: [u16; 2],
    origins: Vec<Option<Proc>>,
    edge_url: String,
    _edge: Proc,
}

async fn two_origins(extra: &str) -> TwoOrigins {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pg = common::PgDatabase::create();
    let (ports, edge_port) = ([free_port(), free_port()], free_port());
    let mut origins = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = dir.path().join(format!("origin{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\nstorage = \"file://{d}/objects\"\n\
                 internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nscratch_dir = \"{d}/scratch{i}\"\n\
                 token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nedge_url = \"http://127.0.0.1:{edge_port}\"\n{extra}",
                pg.url
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let env = [
            ("UPLINK_INTERNAL_SECRET", SECRET),
            ("UPLINK_TOKEN_KEYS", TOKEN_KEYS),
        ];
        origins.push(Some(Proc::start("origin", &config, &url, &env).await));
    }
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\n\
             origin_url = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n\
             internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"file://{d}/objects\"\n\
             token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{d}/spool\"\n",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let edge = start_role("edge", &edge_url, SECRET, dir.path()).await;
    TwoOrigins {
        _dir: dir,
        pg,
        ports,
        origins,
        edge_url,
        _edge: edge,
    }
}

#[tokio::test]
async fn an_edge_fails_over_to_its_next_origin() {
    let mut fleet = two_origins("").await;
    let edge_url = fleet.edge_url.clone();
    let account = common::create_account_in(&fleet.pg.url);
    let api = Uploads::new(&edge_url, &account.api_key);
    assert_eq!(api.get("").await.0, 200);

    // The first origin dies: the control API (proxied) and an upload (the internal API) go
    // to the second without a failed request.
    fleet.origins[0].take();
    assert_eq!(api.get("").await.0, 200);
    let media = tempfile::tempdir().unwrap();
    let video = test_video(media.path(), 1);
    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let record = api.wait_final(body["data"]["id"].as_str().unwrap()).await;
    assert_eq!(record["status"], 6, "{record}");
    let (status, body) = readyz(&edge_url).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_job_whose_origin_dies_mid_transcode_is_finished_by_another_origin() {
    // One worker on each origin, a 2 s job lease.
    let mut fleet = two_origins("workers = 1\njob_lease = \"2s\"\n").await;
    let (pg, ports) = (fleet.pg.url.clone(), fleet.ports);
    let pg = pg.as_str();
    let account = common::create_account_in(pg);
    let api = Uploads::new(&fleet.edge_url, &account.api_key);
    let media = tempfile::tempdir().unwrap();
    let video = test_video(media.path(), 8);
    let (status, body) = api.post(&video, Some("root")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();

    // The origin whose worker is transcoding it is killed (SIGKILL).
    let running = format!("SELECT worker FROM jobs WHERE upload_id = '{id}' AND state = 'running'");
    let mut worker = String::new();
    common::eventually("a worker takes the job", async || {
        worker = common::sql_value::<String>(pg, &running)
            .await
            .unwrap_or_default();
        !worker.is_empty()
    })
    .await;
    let held = ports
        .iter()
        .position(|p| worker.starts_with(&format!("127.0.0.1:{p}/")))
        .unwrap_or_else(|| panic!("worker {worker} is no origin's"));
    fleet.origins[held].take();

    // The other origin takes the job over once the lease runs out, and finishes it.
    let record = api.wait_final(&id).await;
    assert_eq!(record["status"], 6, "{record}");
    let attempts: i64 = common::sql_value(
        pg,
        &format!("SELECT attempts FROM jobs WHERE upload_id = '{id}'"),
    )
    .await
    .unwrap();
    assert_eq!(
        attempts, 2,
        "taken over once, not finished by the killed worker"
    );
    let history: Vec<i64> = {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(pg).await.unwrap();
        sqlx::query_scalar(&format!(
            "SELECT status FROM upload_events WHERE upload_id = '{id}' ORDER BY at, status"
        ))
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert!(history.windows(2).all(|w| w[0] <= w[1]), "{history:?}");
    assert_eq!(history.last(), Some(&6), "{history:?}");
}

#[tokio::test]
async fn json_logs_carry_a_clients_request_id_through_edge_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(&config, "log_format = \"json\"\nworkers = 0\n").unwrap();
    let node = common::Node::dev_with(
        common::Backend::Sqlite,
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let account = node.account("Acme");
    let media = tempfile::tempdir().unwrap();
    let video = test_video(media.path(), 1);
    let form = reqwest::multipart::Form::new().text("folder", "root").part(
        "video",
        reqwest::multipart::Part::bytes(std::fs::read(&video).unwrap()).file_name("v.mkv"),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/client/v1/uploads", node.url))
        .bearer_auth(&account.api_key)
        .header("x-request-id", "req-test-42")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "req-test-42");
    // Every line is one JSON object; the edge's line ("Upload received.") and the origin's
    // ("Upload stored; job queued.") both carry the id in their span.
    let log = node.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }
    let carried = |message: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| {
                e["fields"]["message"] == message
                    && e["spans"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["request_id"] == "req-test-42"))
            })
    };
    assert!(carried("Upload received."), "edge: {log}");
    assert!(carried("Upload stored; job queued."), "origin: {log}");
    // An error the edge answers quotes a made id, in the header and in the JSON body.
    let refused = reqwest::Client::new()
        .post(format!("{}/files/", node.url))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
}

/// `GET url/readyz`: status and body.
async fn readyz(url: &str) -> (u16, serde_json::Value) {
    common::json_of(reqwest::get(format!("{url}/readyz")).await.unwrap()).await
}

#[tokio::test]
async fn readiness_names_what_is_missing() {
    let mut pair = start_pair(SECRET).await;
    for url in [&pair.edge_url, &pair.origin_url] {
        let (status, body) = readyz(url).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ready")),
            "{body}"
        );
    }
    let (_, body) = readyz(&pair.edge_url).await;
    assert_eq!(
        body["checks"],
        serde_json::json!({ "origin": "ok", "storage": "ok", "spool": "ok" })
    );
    // The object store's directory goes away: the origin and the edge are not ready.
    let objects = pair.dir.path().join("objects");
    std::fs::rename(&objects, pair.dir.path().join("moved")).unwrap();
    let (status, body) = readyz(&pair.origin_url).await;
    assert_eq!(
        (status, &body["checks"]["storage"]),
        (503, &serde_json::json!("unavailable"))
    );
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    std::fs::rename(pair.dir.path().join("moved"), &objects).unwrap();
    // The origin is killed: the edge is alive (healthz) but not ready.
    drop(pair.procs.remove(0));
    let (status, body) = readyz(&pair.edge_url).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["origin"], "unavailable", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
    let health = reqwest::get(format!("{}/healthz", pair.edge_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn invalid_configs_stop_the_process_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1\"\norigin_url = \"http://127.0.0.1:2\"\n\
         internal_secret = { env = \"UPLINK_INTERNAL_SECRET\" }\nstorage = \"file:///tmp/x\"\nthreads = 0\n\
         token_keys = { env = \"UPLINK_TOKEN_KEYS\" }\nspool_dir = \"/tmp/spool\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["edge", "--config"])
        .arg(&path)
        .env("UPLINK_INTERNAL_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`threads`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(common::bin())
        .args(["edge", "--config"])
        .arg(&path)
        .env_remove("UPLINK_INTERNAL_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UPLINK_INTERNAL_SECRET"));
}
