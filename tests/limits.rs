//! The edge under slow and greedy clients (`[limits]`): a request head trickled a byte at a
//! time (slowloris) is answered 408 and closed; a tus PATCH body that trickles or stalls is
//! answered 408 and closed, and the bytes that arrived are kept (HEAD says so); one address
//! holding the connection cap gets 429 for more, and its place back when one closes; QUIC
//! connections count towards the same cap.

mod common;

use common::{tus, upload_token, Backend, Node};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `uplink dev` with short limits.
async fn node(limits: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(&config, format!("[limits]\n{limits}")).unwrap();
    let node = Node::dev_with(Backend::Sqlite, &["--config", config.to_str().unwrap()]).await;
    (node, dir)
}

fn addr(node: &Node) -> String {
    node.url.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection (within 20 s).
async fn until_closed(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut got))
        .await
        .expect("the edge closed the connection")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_with_408() {
    let (node, _dir) = node("header_timeout = \"2s\"\n").await;
    let mut conn = TcpStream::connect(addr(&node)).await.unwrap();
    let started = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 200 ms, never the empty line, until the edge gives up.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if conn.write_all(b"X").await.is_err() {
                break;
            }
            let mut byte = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), conn.peek(&mut byte)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), trickle)
        .await
        .expect("the edge answered");
    let answer = until_closed(&mut conn).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    // A prompt request on a new connection is answered as ever.
    let resp = reqwest::get(format!("{}/healthz", node.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// Creates a tus upload of `length` bytes; its path.
async fn tus_upload(node: &Node, token: &str, length: usize) -> String {
    let url = format!("{}/files/", node.url);
    let headers = [("upload-length", length.to_string())];
    let resp = tus(reqwest::Method::POST, &url, token, &headers, Vec::new()).await;
    assert_eq!(resp.status(), 201);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

async fn offset(node: &Node, token: &str, path: &str) -> u64 {
    let url = format!("{}{path}", node.url);
    let resp = tus(reqwest::Method::HEAD, &url, token, &[], Vec::new()).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends a PATCH head and `first` body bytes, then `then` one byte every 100 ms; returns the
/// answer, the time from the last of `first` to the answer, and the bytes sent.
async fn patch(
    node: &Node,
    token: &str,
    path: &str,
    first: usize,
    trickle: bool,
) -> (String, Duration, usize) {
    let mut conn = TcpStream::connect(addr(node)).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 1000000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![b'u'; first]).await.unwrap();
    let mut sent = first;
    let started = Instant::now();
    let (mut read, mut write) = conn.into_split();
    let sender = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle {
                if write.write_all(b"u").await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    };
    let mut answer = Vec::new();
    let reader = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer));
    tokio::select! {
        _ = sender => unreachable!(),
        r = reader => { r.expect("the edge answered and closed").ok(); }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
        sent,
    )
}

#[tokio::test]
async fn a_trickling_or_stalled_body_is_cut_with_408_and_what_arrived_is_kept() {
    let (node, _dir) =
        node("body_gap = \"2s\"\nmin_body_rate = \"1KiB\"\nmin_rate_window = \"2s\"\n").await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;

    // A trickle: 1 byte per 100 ms is under 1 KiB/s; cut after a window of waiting.
    let path = tus_upload(&node, &token, 1_000_000).await;
    let (answer, took, sent) = patch(&node, &token, &path, 5000, true).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.contains("resume from the upload's offset"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let kept = offset(&node, &token, &path).await;
    assert!(kept >= 5000 && kept <= sent as u64, "{kept} of {sent}");

    // A stall: 20 KB at once, then nothing: cut at the gap.
    let path = tus_upload(&node, &token, 1_000_000).await;
    let (answer, took, _) = patch(&node, &token, &path, 20_000, false).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(offset(&node, &token, &path).await, 20_000);
}

/// `n` TCP connections held open, each having had its answer (a 429 while the start-up's own
/// checks still hold a place is tried again, 50 ms later, for up to 10 s).
async fn hold(node: &Node, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..200 {
        if held.len() == n {
            break;
        }
        let mut conn = TcpStream::connect(addr(node)).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.unwrap();
        match &head {
            b"HTTP/1.1 200" => held.push(conn),
            b"HTTP/1.1 429" => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
    assert_eq!(held.len(), n, "{n} connections within 10 s");
    held
}

#[tokio::test]
async fn one_address_gets_429_beyond_its_connection_cap() {
    let (node, _dir) = node("max_connections_per_client = 3\n").await;
    let mut held = hold(&node, 3).await;
    let mut extra = TcpStream::connect(addr(&node)).await.unwrap();
    let answer = until_closed(&mut extra).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(answer.contains("Retry-After: 10"), "{answer}");
    drop(held.pop());
    common::eventually("a place is given back", async || {
        reqwest::Client::new()
            .get(format!("{}/healthz", node.url))
            .header("connection", "close")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// One HTTP/3 GET by aioquic (PyPI); whether it was answered 200.
async fn h3_get_ok(url: &str) -> bool {
    let out = common::python(
        "h3_request.py",
        vec![url.to_owned(), "GET".into()],
        Vec::new(),
    )
    .await;
    out.status.success()
        && serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|answer| answer["status"] == 200)
}

#[tokio::test]
async fn the_connection_cap_counts_quic_connections_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dev.toml");
    std::fs::write(&config, "[limits]\nmax_connections_per_client = 2\n").unwrap();
    let (node, port) = Node::dev_tls_with(&["--config", config.to_str().unwrap()]).await;
    let h3_url = format!("https://127.0.0.1:{port}/healthz");
    let quic_serves = async || h3_get_ok(&h3_url).await;
    common::eventually("HTTP/3 answers", quic_serves).await;
    let mut held = hold(&node, 2).await;
    // The cap is reached: a QUIC connection from the same address is refused...
    assert!(
        !quic_serves().await,
        "a third connection, over QUIC, was served"
    );
    // ...and the connections already open are unharmed.
    let mut conn = held.pop().unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The rest of the first answer, then the second one's head.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("HTTP/1.1 200") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer on a connection already open")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // A place given back is one QUIC can take.
    drop(conn);
    common::eventually("a QUIC connection once a place is free", quic_serves).await;
}
