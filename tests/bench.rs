//! `uplink bench` against a real `uplink dev` (with its processing workers, which set each
//! upload's SHA-256), with tiny sizes: every protocol completes and verifies, its JSON report is
//! consistent with itself and with the run, interrupted uploads resume, a wrong key fails the
//! run, HTTP/2 and HTTP/3 work over TLS, `compare` reads two reports, and the HTML report's
//! charts show in headless Chromium.

mod common;

use common::{Backend, Node};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs `uplink bench` with `args` at `url` (with `--api-key`, no progress, and tiny sizes
/// unless `args` give others); its exit status, stdout and JSON report.
fn bench(url: &str, key: &str, dir: &Path, name: &str, args: &[&str]) -> (bool, String, Value) {
    let json = dir.join(format!("{name}.json"));
    let defaults = [
        ("--uploads", "3"),
        ("--concurrency", "2"),
        ("--size", "300KiB"),
        ("--chunk", "128KiB"),
        ("--verify-timeout", "60s"),
        ("--timeout", "60s"),
    ];
    let out = Command::new(common::bin())
        .args([
            "bench",
            "--url",
            url,
            "--api-key",
            key,
            "--progress",
            "quiet",
        ])
        .args(
            defaults
                .iter()
                .filter(|(flag, _)| !args.contains(flag))
                .flat_map(|(flag, value)| [*flag, *value]),
        )
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{name}: {stdout}{stderr}");
    (out.status.success(), stdout, report)
}

/// The report's own figures agree: 3 uploads of 300 KiB completed and verified, the byte
/// counts, the timeline and the request counts of `kinds` (each at least `min`).
fn assert_consistent(report: &Value, kinds: &[(&str, u64)]) {
    let size = 300 * 1024;
    assert_eq!(report["completed"], 3, "{report:#}");
    assert_eq!(report["failed"], 0);
    assert_eq!(report["bytes"], 3 * size);
    let sent = report["sent_bytes"].as_u64().unwrap();
    assert!(sent >= 3 * size);
    let timeline: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline, sent, "the timeline counts every byte sent");
    assert_eq!(report["time_to_complete_ms"]["count"], 3);
    for (kind, min) in kinds {
        let p = &report["requests"][kind];
        assert!(p["count"].as_u64().unwrap() >= *min, "{kind}: {p}");
        assert!(p["p50"].as_f64().unwrap() <= p["p99"].as_f64().unwrap());
        assert!(p["p99"].as_f64().unwrap() <= p["max"].as_f64().unwrap());
    }
    assert!(report["client_cpu_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn every_protocol_completes_and_verifies_and_reports_itself_consistently() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Bench");
    let pipeline = account.json["pipeline_id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let key = account.api_key.as_str();
    // 300 KiB in 128 KiB requests: 3 per upload.
    let cases: [(&str, &[(&str, u64)]); 5] = [
        (
            "tus",
            &[("token", 3), ("create", 3), ("patch", 9), ("status", 3)],
        ),
        (
            "ietf",
            &[("token", 3), ("create", 3), ("patch", 6), ("status", 3)],
        ),
        ("uploads-api", &[("upload", 3), ("status", 3)]),
        (
            "movingimage",
            &[("session", 6), ("chunk", 9), ("status", 3)],
        ),
        ("s3-post", &[("session", 3), ("upload", 3), ("status", 3)]),
    ];
    for (protocol, kinds) in cases {
        let (ok, table, report) = bench(
            &node.url,
            key,
            dir.path(),
            protocol,
            &["--protocol", protocol, "--pipeline-id", &pipeline],
        );
        assert!(ok, "{protocol}: {table}");
        assert_consistent(&report, kinds);
        assert_eq!(report["plan"]["protocol"], protocol);
        assert!(table.contains("3 completed, 0 failed"), "{table}");
        assert!(
            !serde_json::to_string(&report).unwrap().contains(key),
            "no API key in the report"
        );
    }

    // Its own answer is checked: a key the node does not know fails every upload, and the run.
    let (ok, _, report) = bench(&node.url, "sk-not-a-key", dir.path(), "bad-key", &[]);
    assert!(!ok);
    assert_eq!(report["completed"], 0);
    assert_eq!(report["failed"], 3);
    assert_eq!(report["errors"][0]["status"], 401, "{report:#}");

    // Two reports compared.
    let out = Command::new(common::bin())
        .args(["bench", "compare"])
        .arg(dir.path().join("tus.json"))
        .arg(dir.path().join("ietf.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("throughput MiB/s") && text.contains("request patch p99 ms"),
        "{text}"
    );
    assert!(
        text.contains("completed") && text.contains("1.00×"),
        "{text}"
    );
}

#[tokio::test]
async fn interrupted_uploads_resume_and_still_verify() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Bench");
    let dir = tempfile::tempdir().unwrap();
    for protocol in ["tus", "ietf", "movingimage", "uploads-api"] {
        let (ok, table, report) = bench(
            &node.url,
            &account.api_key,
            dir.path(),
            protocol,
            &["--protocol", protocol, "--interrupt", "0.5", "--seed", "3"],
        );
        assert!(ok, "{protocol}: {table}");
        assert_consistent(&report, &[]);
        let interruptions = report["interruptions"].as_u64().unwrap();
        assert!(interruptions > 0, "{protocol}: {report:#}");
        // A cut request's bytes went out and were sent again (tus and IETF: only from the
        // offset HEAD gave).
        assert!(report["sent_bytes"].as_u64() > report["bytes"].as_u64());
        if matches!(protocol, "tus" | "ietf") {
            assert!(report["requests"]["head"]["count"].as_u64().unwrap() > 0);
        }
    }
}

#[tokio::test]
async fn http2_and_http3_over_tls_with_the_nodes_certificate() {
    let (node, port) = Node::dev_tls().await;
    let account = node.account("Bench");
    let dir = tempfile::tempdir().unwrap();
    let ca = node.data_dir.path().join("tls/certificate.pem");
    let url = format!("https://localhost:{port}");
    for http in ["2", "3"] {
        for protocol in ["tus", "ietf", "uploads-api"] {
            let name = format!("{protocol}-{http}");
            let ca = ca.display().to_string();
            let args = ["--protocol", protocol, "--http", http, "--pin-edge"];
            let args = [&args[..], &["--ca-file", &ca, "--interrupt", "0.2"]].concat();
            let (ok, table, report) = bench(&url, &account.api_key, dir.path(), &name, &args);
            assert!(ok, "{name}: {table}");
            assert_consistent(&report, &[]);
            assert_eq!(report["plan"]["http"], http);
        }
    }
    // Without the node's certificate, HTTP/3 refuses the self-signed one: nothing completes.
    let (ok, _, report) = bench(
        &url,
        &account.api_key,
        dir.path(),
        "untrusted",
        &["--http", "3", "--pin-edge", "--uploads", "1"],
    );
    assert!(!ok);
    assert_eq!(report["completed"], 0);
}

#[tokio::test]
async fn the_html_report_shows_its_charts_in_chromium() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Bench");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let (ok, table, _) = bench(
        &node.url,
        &account.api_key,
        dir.path(),
        "html",
        &[
            "--uploads",
            "6",
            "--interrupt",
            "0.3",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert!(ok, "{table}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3, "three charts");
    // Self-contained: nothing loaded from elsewhere, no scripts.
    for outside in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(outside), "{outside}");
    }
    assert!(page.contains("Throughput") && page.contains("request patch"));

    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("Chromium is installed (bash .ci/setup installs Debian's chromium)");
    let shoot = |page: &Path, png: &Path| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(["--enable-logging=stderr", "--v=0", "--window-size=900,1800"])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        (std::fs::metadata(png).unwrap().len(), log)
    };
    let (report_png, log) = shoot(&html, &dir.path().join("report.png"));
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!doctype html><html><body></body></html>").unwrap();
    let (blank_png, _) = shoot(&blank, &dir.path().join("blank.png"));
    // A page with three charts and tables compresses far worse than an empty one.
    assert!(
        report_png > 10 * blank_png,
        "the screenshot looks blank: {report_png} bytes against an empty page's {blank_png}"
    );
}

#[tokio::test]
async fn wait_processed_times_real_media_to_status_6_and_fails_on_what_cannot_be_processed() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Bench");
    let dir = tempfile::tempdir().unwrap();
    let video = common::test_video(dir.path(), 2);
    let media = video.to_str().unwrap();
    let (ok, table, report) = bench(
        &node.url,
        &account.api_key,
        dir.path(),
        "media",
        &[
            "--uploads",
            "2",
            "--media",
            media,
            "--wait-processed",
            "--chunk",
            "16KiB",
        ],
    );
    assert!(ok, "{table}");
    assert_eq!(report["completed"], 2);
    let size = std::fs::metadata(&video).unwrap().len();
    assert_eq!(report["bytes"], 2 * size);
    let processed = &report["time_to_processed_ms"];
    assert_eq!(processed["count"], 2, "{report:#}");
    assert!(processed["p50"].as_f64().unwrap() > 0.0);
    assert!(table.contains("time to processed"));

    // Random bytes are no video: waiting for status 6 fails each upload, with its error code.
    let (ok, _, report) = bench(
        &node.url,
        &account.api_key,
        dir.path(),
        "random",
        &["--uploads", "1", "--wait-processed"],
    );
    assert!(!ok);
    assert_eq!(report["failed"], 1);
    let failure = report["failures"][0].as_str().unwrap();
    assert!(failure.contains("status 7"), "{failure}");
}
