//! Malformed HTTP/1.1 framing at the edge, as a request-smuggling or fuzzing client sends it: every
//! case of the corpus gets one answer, 400 (431 for an over-long head), and a closed
//! connection; the request written after it on the same connection is never answered.

mod common;

use common::{Backend, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` then a second request on one connection; everything the edge answered
/// before it closed the connection.
async fn exchange(addr: &str, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let smuggled = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(request).await.unwrap();
    let _ = conn.write_all(smuggled.as_bytes()).await;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("the connection is closed")
    .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_framing_is_refused_and_the_connection_closed() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let addr = node.url.trim_start_matches("http://").to_owned();
    let auth = format!("Authorization: Bearer {}\r\n", account.api_key);
    let token = common::upload_token(&node, &account, "").await;
    let post = |headers: &str, body: &str| {
        format!("POST /api/client/v1/uploads HTTP/1.1\r\nHost: {addr}\r\n{auth}{headers}\r\n{body}")
            .into_bytes()
    };
    let tus = |headers: &str, body: &str| {
        format!("POST /files/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 10\r\n{headers}\r\n{body}")
            .into_bytes()
    };
    let long_header = format!("X-Long: {}\r\n", "a".repeat(200_000));
    let corpus: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            "400",
        ),
        (
            "Transfer-Encoding with Content-Length",
            tus(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "0\r\n\r\n",
            ),
            "400",
        ),
        (
            "differing Content-Length",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "12345"),
            "400",
        ),
        (
            "duplicate Content-Length",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "12345"),
            "400",
        ),
        (
            "a Content-Length list",
            post("Content-Length: 5, 5\r\n", "12345"),
            "400",
        ),
        (
            "a signed Content-Length",
            post("Content-Length: +5\r\n", "12345"),
            "400",
        ),
        (
            "an unknown transfer coding",
            post("Transfer-Encoding: gzip\r\n", "12345"),
            "400",
        ),
        (
            "chunked not last",
            post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            "400",
        ),
        (
            "obs-fold",
            post("X-Folded: a\r\n b\r\nContent-Length: 0\r\n", ""),
            "400",
        ),
        (
            "a bad chunk size",
            tus(
                "Transfer-Encoding: chunked\r\nContent-Type: application/offset+octet-stream\r\n",
                "zz\r\nhello\r\n0\r\n\r\n",
            ),
            "400",
        ),
        (
            "a chunk size overflowing",
            tus(
                "Transfer-Encoding: chunked\r\nContent-Type: application/offset+octet-stream\r\n",
                "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            "400",
        ),
        (
            "a space before the colon",
            post("Content-Length : 0\r\n", ""),
            "400",
        ),
        (
            "a NUL in a header value",
            post("X-Nul: a\0b\r\nContent-Length: 0\r\n", ""),
            "400",
        ),
        ("an over-long head", post(&long_header, ""), "431"),
    ];
    let mut wrong = Vec::new();
    for (name, request, status) in corpus {
        let answer = exchange(&addr, &request).await;
        let answers = answer.matches("HTTP/1.1 ").count();
        let first = answer.lines().next().unwrap_or_default().to_owned();
        if answers != 1 || !first.starts_with(&format!("HTTP/1.1 {status}")) {
            wrong.push(format!("{name}: {answers} answers, first {first:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
