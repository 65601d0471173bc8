//! The IETF resumable-upload draft at the edge, as iOS clients speak it: interop versions 3, 6
//! and 8 over raw HTTP/1.1 (no HTTP library shows interim responses): creation gets its `104
//! Upload Resumption Supported` with `Location` before the body is read; an interrupted upload
//! is resumed with `HEAD` and `PATCH` to a byte-identical file; the draft's problem details for
//! a mismatching offset and inconsistent lengths.

mod common;

use common::{upload_token, Backend, Node, Uploads};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response head read off a raw connection: status and lower-cased headers.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response head (interim or final) from `conn`; `buf` keeps what follows it.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Head {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8(buf[..end].to_vec()).unwrap();
            buf.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let status = lines
                .next()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Head { status, headers };
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("the edge answers")
            .unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request on a fresh connection; returns the final head and body.
async fn request(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Head, Value) {
    let (interims, head, body) = exchange(node, method, path, headers, body).await;
    assert!(interims.iter().all(|s| *s == 104), "{interims:?}");
    (head, body)
}

/// A request on a fresh connection; returns the statuses of interim responses, then the final
/// head and body.
async fn exchange(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<u16>, Head, Value) {
    let addr = node.url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut buf = vec![];
    let mut interims = vec![];
    let mut response = read_head(&mut conn, &mut buf).await;
    while response.status < 200 {
        interims.push(response.status);
        response = read_head(&mut conn, &mut buf).await;
    }
    conn.read_to_end(&mut buf).await.unwrap();
    let json = serde_json::from_slice(&buf).unwrap_or(Value::Null);
    (interims, response, json)
}

fn sha256(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Creation is interrupted half way; the 104 told the client where to resume.
async fn interrupted_creation(
    node: &Node,
    token: &str,
    version: &str,
    complete: (&str, &str),
    data: &[u8],
) -> String {
    let addr = node.url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /files/?__token__={token} HTTP/1.1\r\nHost: {addr}\r\n\
         Upload-Draft-Interop-Version: {version}\r\n{}: {}\r\n\
         Content-Type: video/mp4\r\nContent-Length: {}\r\n\r\n",
        complete.0,
        complete.1,
        data.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The interim response comes before any of the body is sent.
    let mut buf = vec![];
    let interim = read_head(&mut conn, &mut buf).await;
    assert_eq!(interim.status, 104, "{:?}", interim.headers);
    assert_eq!(interim.get("upload-draft-interop-version"), Some(version));
    assert!(interim.get("upload-limit").unwrap().contains("max-size="));
    let location = interim.get("location").unwrap().to_owned();
    assert!(location.starts_with("/files/"), "{location}");
    conn.write_all(&data[..data.len() / 2]).await.unwrap();
    // The client's side ends here; the request is over once the edge, having read all of it,
    // closes the connection (the event to wait for, instead of a guess at how long it takes).
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the edge kept the cut request open");
    location
}

#[tokio::test]
async fn interop_8_creation_gets_104_then_resumes_to_an_identical_file() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let v = ("Upload-Draft-Interop-Version", "8");
    let location = interrupted_creation(&node, &token, "8", ("Upload-Complete", "?1"), &data).await;

    let (head, _) = request(&node, "HEAD", &location, &[v], b"").await;
    assert_eq!(head.status, 204);
    assert_eq!(head.get("upload-complete"), Some("?0"));
    assert_eq!(head.get("upload-length"), Some("200000"));
    assert_eq!(head.get("cache-control"), Some("no-store"));
    let offset: usize = head.get("upload-offset").unwrap().parse().unwrap();
    assert!(offset > 0 && offset <= 100_000, "{offset}");

    // A wrong offset: 409 with the draft's problem type and the right offset.
    let partial = ("Content-Type", "application/partial-upload");
    let (head, problem) = request(
        &node,
        "PATCH",
        &location,
        &[
            v,
            partial,
            ("Upload-Offset", "1"),
            ("Upload-Complete", "?0"),
        ],
        b"x",
    )
    .await;
    assert_eq!(head.status, 409);
    assert_eq!(head.get("upload-offset"), Some(offset.to_string().as_str()));
    assert_eq!(
        problem["type"],
        "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    );
    assert_eq!(problem["expected-offset"], offset);
    // Lengths that disagree with the one recorded: the inconsistent-length problem.
    let (head, problem) = request(
        &node,
        "PATCH",
        &location,
        &[
            v,
            partial,
            ("Upload-Offset", &offset.to_string()),
            ("Upload-Complete", "?1"),
        ],
        b"short",
    )
    .await;
    assert_eq!(head.status, 400);
    assert_eq!(
        problem["type"],
        "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    );
    // Version 8 appends only application/partial-upload.
    let (head, _) = request(
        &node,
        "PATCH",
        &location,
        &[
            v,
            ("Upload-Offset", &offset.to_string()),
            ("Upload-Complete", "?0"),
        ],
        b"x",
    )
    .await;
    assert_eq!(head.status, 415);

    let (head, body) = request(
        &node,
        "PATCH",
        &location,
        &[
            v,
            partial,
            ("Upload-Offset", &offset.to_string()),
            ("Upload-Complete", "?1"),
        ],
        &data[offset..],
    )
    .await;
    assert_eq!(head.status, 201, "{body}");
    assert_eq!(head.get("upload-complete"), Some("?1"));
    let id = body["id"].as_str().unwrap();
    let record = Uploads::new(&node.url, &account.api_key)
        .wait_final(id)
        .await;
    assert_eq!(record["sha256"], sha256(&data), "{record}");
    // Completed: HEAD says so, so a client whose final response was lost stops.
    let (head, _) = request(&node, "HEAD", &location, &[v], b"").await;
    assert_eq!(head.get("upload-complete"), Some("?1"));
}

#[tokio::test]
async fn interop_6_appends_over_several_requests() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let data: Vec<u8> = (0..90_000u32).map(|i| (i % 241) as u8).collect();
    let v = ("Upload-Draft-Interop-Version", "6");
    let partial = ("Content-Type", "application/partial-upload");
    // Creation without content, the length deferred.
    let (head, _) = request(
        &node,
        "POST",
        &format!("/files/?__token__={token}"),
        &[v, ("Upload-Complete", "?0")],
        b"",
    )
    .await;
    assert_eq!(head.status, 201);
    assert_eq!(head.get("upload-complete"), Some("?0"));
    let location = head.get("location").unwrap().to_owned();
    let mut offset = 0;
    for (i, piece) in data.chunks(30_000).enumerate() {
        let last = i == 2;
        let (head, _) = request(
            &node,
            "PATCH",
            &location,
            &[
                v,
                partial,
                ("Upload-Offset", &offset.to_string()),
                ("Upload-Complete", if last { "?1" } else { "?0" }),
            ],
            piece,
        )
        .await;
        offset += piece.len();
        assert_eq!(head.status, if last { 201 } else { 204 });
        assert_eq!(head.get("upload-offset"), Some(offset.to_string().as_str()));
    }
    let api = Uploads::new(&node.url, &account.api_key);
    let (_, list) = api.get("").await;
    let record = api
        .wait_final(list["data"][0]["id"].as_str().unwrap())
        .await;
    assert_eq!(record["sha256"], sha256(&data), "{record}");
}

#[tokio::test]
async fn interop_3_speaks_upload_incomplete_and_delete_cancels() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let data = vec![7u8; 50_000];
    let v = ("Upload-Draft-Interop-Version", "3");
    let location =
        interrupted_creation(&node, &token, "3", ("Upload-Incomplete", "?0"), &data).await;
    let (head, _) = request(&node, "HEAD", &location, &[v], b"").await;
    assert_eq!(head.status, 204);
    assert_eq!(head.get("upload-incomplete"), Some("?1"));
    // Version 3 appends with any content type.
    let offset = head.get("upload-offset").unwrap().to_owned();
    let (head, _) = request(
        &node,
        "PATCH",
        &location,
        &[v, ("Upload-Offset", &offset), ("Upload-Incomplete", "?1")],
        b"more",
    )
    .await;
    assert_eq!(head.status, 204);
    let (head, _) = request(&node, "DELETE", &location, &[v], b"").await;
    assert_eq!(head.status, 204);
    let (head, _) = request(&node, "HEAD", &location, &[v], b"").await;
    assert_eq!(head.status, 404);
    let (_, list) = Uploads::new(&node.url, &account.api_key).get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_version_the_edge_does_not_know_gets_no_interim_response() {
    let node = Node::dev(Backend::Sqlite).await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let (interims, head, body) = exchange(
        &node,
        "POST",
        &format!("/files/?__token__={token}"),
        &[
            ("Upload-Draft-Interop-Version", "99"),
            ("Upload-Complete", "?1"),
        ],
        b"whole file",
    )
    .await;
    // Stored under the newest rules, with no interim response it could not read.
    assert_eq!(interims, Vec::<u16>::new());
    assert_eq!(head.status, 201, "{body}");
    assert_eq!(head.get("upload-complete"), Some("?1"));
    assert_eq!(head.get("upload-draft-interop-version"), None);
    // And without a token nothing is created.
    let (head, _) = request(
        &node,
        "POST",
        "/files/",
        &[
            ("Upload-Draft-Interop-Version", "8"),
            ("Upload-Complete", "?1"),
        ],
        b"x",
    )
    .await;
    assert_eq!(head.status, 401);
}
