//! A graceful upgrade of `uplink edge` under load: a second process started with `--upgrade`
//! takes the listening sockets of the running one when it gets SIGQUIT; the old one drains
//! (uploads in flight finish on it) and exits. Four clients upload all the while, a new TCP
//! connection for every request: no connection is refused, no request fails, every upload
//! completes. HTTP/3 moves over too: the old process refuses new QUIC connections while it
//! drains and lets the UDP port go when it exits; the new one binds it then.

mod common;

use common::{eventually, free_port, Proc};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "a-shared-internal-secret-for-tests";
const TOKEN_KEYS: &str = "t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh";
const ENV: [(&str, &str); 2] = [
    ("UPLINK_INTERNAL_SECRET", SECRET),
    ("UPLINK_TOKEN_KEYS", TOKEN_KEYS),
];

/// One tus upload of 1 MiB in four PATCHes, each on a new connection; the first failure.
async fn upload(edge: &str, token: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let data = vec![7u8; 1 << 20];
    let send = |req: reqwest::RequestBuilder| async move {
        req.bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .map_err(|e| format!("{e:?}"))
    };
    let created = send(
        http.post(format!("{edge}/files/"))
            .header("upload-length", data.len().to_string()),
    )
    .await?;
    if created.status() != 201 {
        return Err(format!("create: {}", created.status()));
    }
    let url = format!("{edge}{}", created.headers()["location"].to_str().unwrap());
    for (i, piece) in data.chunks(256 << 10).enumerate() {
        let patched = send(
            http.patch(&url)
                .header("upload-offset", (i * (256 << 10)).to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(piece.to_vec()),
        )
        .await?;
        if patched.status() != 204 {
            return Err(format!("PATCH {i}: {}", patched.status()));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn an_edge_upgraded_under_load_refuses_no_connection_and_fails_no_upload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (origin_port, edge_port) = (free_port(), free_port());
    let tls_port = std::iter::repeat_with(free_port)
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    uplink::edge::tls::ensure_self_signed(&cert, &key).unwrap();
    let database = common::write_origin_config(dir.path(), origin_port, edge_port);
    let origin_url = format!("http://127.0.0.1:{origin_port}");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\norigin_url = \"{origin_url}\"\n\
             internal_secret = {{ env = \"UPLINK_INTERNAL_SECRET\" }}\nstorage = \"file://{d}/objects\"\n\
             token_keys = {{ env = \"UPLINK_TOKEN_KEYS\" }}\nspool_dir = \"{d}/spool\"\n\
             drain_timeout = \"20s\"\n\n[tls]\nlisten = \"127.0.0.1:{tls_port}\"\n\
             certificate = \"{}\"\nprivate_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let _origin = Proc::start("origin", &dir.path().join("origin.toml"), &origin_url, &ENV).await;
    let edge = format!("http://127.0.0.1:{edge_port}");
    let mut old = Proc::start("edge", &config, &edge, &ENV).await;
    let account = common::create_account_in(&database);
    let token = common::upload_token_at(&edge, &account.api_key, "{}").await;

    // Four clients upload until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (edge, token, stop, done) =
                (edge.clone(), token.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match upload(&edge, &token).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.push(e),
                    }
                }
                failures
            })
        })
        .collect();
    eventually("uploads under way", async || {
        done.load(Ordering::Relaxed) >= 4
    })
    .await;

    // The new process waits for the sockets; the old one hands them over on SIGQUIT.
    let log = dir.path().join("edge-new.log");
    let new = Proc::spawn(
        Command::new(common::bin())
            .args(["edge", "--upgrade", "--config"])
            .arg(&config)
            .envs(ENV),
        &log,
    );
    let socket = dir.path().join("spool/upgrade.sock");
    eventually("the new edge waits on the upgrade socket", async || {
        socket.exists()
    })
    .await;
    let before = done.load(Ordering::Relaxed);
    signal(&old.0, "QUIT");
    let mut exited = None;
    for _ in 0..600 {
        exited = old.0.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.expect("the old edge drained and exited within 30 s");
    assert!(exited.success(), "{exited:?}");
    // Uploads go on against the new process alone.
    let after = done.load(Ordering::Relaxed);
    eventually("uploads on the new edge", async || {
        done.load(Ordering::Relaxed) >= after + 8
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nold:\n{}\nnew:\n{}",
        std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!(
        "uploads: {before} before SIGQUIT, {after} when the old edge exited, {} in all; 0 failed",
        done.load(Ordering::Relaxed)
    );
    assert!(after > before, "uploads completed during the handover");
    let old_log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default();
    assert!(old_log.contains("Drained"), "{old_log}");

    // HTTP/3 is the new process's once the old one let the UDP port go.
    eventually("HTTP/3 answered by the new edge", async || {
        h3_health(tls_port).await
    })
    .await;
    drop(new);
}

/// Whether an HTTP/3 `GET /healthz` (aioquic) is answered 200.
async fn h3_health(port: u16) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/h3_request.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .arg("GET")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    out.status.success()
        && serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["status"] == 200)
}
