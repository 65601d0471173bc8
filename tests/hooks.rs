//! Blocking hooks against `uplink dev` and a local application: `pre-create` refuses an upload
//! (the client sees the application's status and message) or sets its folder and metadata;
//! `pre-finish` gets the stored upload and its answer reaches tus-js-client's `onSuccess` (the
//! `Uplink-Hook-Response` header), also in Chromium from a page on another origin (the header
//! is exposed by CORS), and the Uploads API, or its refusal fails the upload
//! (`refused_by_hook`, never a success); every hook request is verified with the
//! `standardwebhooks` library; a hook that does not answer in time follows its failure policy,
//! which `uplink account update` changes.

mod common;

use axum::http::{HeaderMap, StatusCode};
use common::{upload_token, Backend, Node, Uploads};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One hook request the application got: the message and its headers.
#[derive(Debug, Clone)]
struct Hooked {
    headers: HeaderMap,
    body: String,
}

impl Hooked {
    fn message(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Verifies the Standard Webhooks signature with the reference Python library.
    fn verify(&self, secret: &str) {
        let verified = common::verify_webhook(&self.headers, &self.body, secret);
        assert_eq!(verified, self.message());
    }
}

type Answer = dyn Fn(&Value) -> (StatusCode, Value) + Send + Sync;

/// The customer's application on a free port: keeps every hook request and answers it with
/// `answer`, after `delay`.
struct App {
    url: String,
    got: Arc<Mutex<Vec<Hooked>>>,
}

impl App {
    async fn start(delay: Duration, answer: Box<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let answer: Arc<Answer> = Arc::from(answer);
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                let answer = answer.clone();
                async move {
                    let message: Value = serde_json::from_str(&body).unwrap();
                    kept.lock().unwrap().push(Hooked { headers, body });
                    tokio::time::sleep(delay).await;
                    let (status, body) = answer(&message);
                    (status, axum::Json(body))
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, got }
    }

    fn hooked(&self) -> Vec<Hooked> {
        self.got.lock().unwrap().clone()
    }

    /// The requests of hook `kind` so far, as messages with their requests.
    fn of(&self, kind: &str) -> Vec<(Value, Hooked)> {
        self.hooked()
            .into_iter()
            .map(|h| (h.message(), h))
            .filter(|(m, _)| m["type"] == kind)
            .collect()
    }
}

/// The application of the first test: refuses files named `refuse-*` at creation and
/// `reject-*` at their end; puts the others in folder `cats` with an owner, and answers their
/// end with a page URL and a title that is not ASCII.
fn deciding(message: &Value) -> (StatusCode, Value) {
    let data = &message["data"];
    let filename = data["filename"].as_str().unwrap_or_default();
    let answer = match message["type"].as_str() {
        Some("pre-create") if filename.starts_with("refuse-") => {
            json!({ "refuse": { "status": 451, "message": "Not this one." } })
        }
        Some("pre-create") => json!({ "folder": "cats", "metadata": { "owner": "ann" } }),
        Some("pre-finish") if filename.starts_with("reject-") => {
            json!({ "refuse": { "status": 422, "message": "Too blurry." } })
        }
        Some("pre-finish") => json!({
            "video_page": format!("https://app.example/v/{}", data["upload_id"].as_str().unwrap()),
            "title": "Grüße 🎬",
        }),
        other => panic!("unexpected hook {other:?}"),
    };
    (StatusCode::OK, answer)
}

/// Where `.ci/setup` installs tus-js-client.
fn node_modules() -> String {
    std::env::var("UPLINK_NODE_MODULES").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap()));
        format!("{cache}/uplink/node/node_modules")
    })
}

/// tus-js-client uploads `file` in 1 MiB chunks; its JSON report.
async fn tus_js(node: &Node, token: &str, file: &Path) -> Value {
    let modules = node_modules();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tus_js_upload.js");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args([
            format!("{}/files/", node.url),
            token.to_owned(),
            file.display().to_string(),
            (1024 * 1024).to_string(),
        ])
        .env("UPLINK_NODE_MODULES", &modules)
        .output()
        .await
        .expect("node runs (bash .ci/setup installs tus-js-client)");
    assert!(
        out.status.success(),
        "tus-js-client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

fn write_file(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn hooks_refuse_set_and_answer_uploads() {
    let node = Node::dev(Backend::Postgres).await;
    let app = App::start(Duration::ZERO, Box::new(deciding)).await;
    let account = node.account_with(&["--name", "hooked", "--hook-url", &app.url]);
    let secret = account.json["secret"].as_str().unwrap().to_owned();
    let token = upload_token(&node, &account, "{}").await;
    let dir = tempfile::tempdir().unwrap();
    let uploads = Uploads::new(&node.url, &account.api_key);

    // Accepted: the folder and metadata pre-create set, the answer pre-finish gave.
    let file = write_file(dir.path(), "cat.mp4", 3 * 1024 * 1024 + 17);
    let done = tus_js(&node, &token, &file).await;
    assert_eq!(done["ok"], true, "{done}");
    let id = done["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (created, create_req) = app.of("pre-create").remove(0);
    assert_eq!(created["data"]["flavour"], "resumable");
    assert_eq!(created["data"]["filename"], "cat.mp4");
    assert_eq!(created["data"]["size"], 3 * 1024 * 1024 + 17);
    assert_eq!(
        created["data"]["metadata"],
        json!({ "filename": "cat.mp4" })
    );
    assert_eq!(created["data"]["client_address"], "127.0.0.1");
    assert_eq!(created["data"]["account_id"], account.id.as_str());
    create_req.verify(&secret);
    let (finished, finish_req) = app.of("pre-finish").remove(0);
    assert_eq!(finished["data"]["upload_id"], id.as_str());
    assert_eq!(finished["data"]["size"], 3 * 1024 * 1024 + 17);
    assert_eq!(finished["data"]["folder"], "cats");
    assert_eq!(finished["data"]["metadata"], json!({ "owner": "ann" }));
    finish_req.verify(&secret);
    let answer =
        json!({ "video_page": format!("https://app.example/v/{id}"), "title": "Grüße 🎬" });
    let header = done["hook_response"]
        .as_str()
        .expect("onSuccess reads the header");
    assert!(header.is_ascii(), "{header}");
    assert_eq!(serde_json::from_str::<Value>(header).unwrap(), answer);
    let (status, record) = uploads.get(&format!("/{id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["data"]["folder"], "cats");
    assert_eq!(record["data"]["metadata"], json!({ "owner": "ann" }));
    assert_eq!(record["data"]["hook_response"], answer);

    // Refused before it starts: the application's status and message; no upload is made.
    let file = write_file(dir.path(), "refuse-dog.mp4", 1024 * 1024);
    assert_refused(&tus_js(&node, &token, &file).await, 451, "Not this one.");
    let (_, list) = uploads.get("").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // Refused at its last byte: the final PATCH fails, the upload fails, its bytes go.
    let file = write_file(dir.path(), "reject-bird.mp4", 2 * 1024 * 1024 + 5);
    assert_refused(&tus_js(&node, &token, &file).await, 422, "Too blurry.");
    let (_, list) = uploads.get("").await;
    let failed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["filename"] == "reject-bird.mp4")
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(failed["status"], 7, "{failed}");
    assert_eq!(failed["error_code"], "refused_by_hook", "{failed}");
    assert_eq!(failed["hook_response"], Value::Null);
    let id = failed["id"].as_str().unwrap();
    assert!(
        !common::files_under(&node.objects())
            .iter()
            .any(|p| p.display().to_string().contains(id)),
        "the refused upload's bytes are kept"
    );
    // A HEAD now says the upload is gone, so a client cannot think it finished.
    let head = common::tus(
        reqwest::Method::HEAD,
        &format!("{}/files/{id}", node.url),
        &token,
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(head.status(), 404);
}

/// A page on another origin than the edge's (`page` as it is when asked for, with
/// tus-js-client's browser build at `/tus.min.js`); its origin.
async fn serve_page(page: Arc<Mutex<String>>) -> String {
    let tus = std::fs::read(format!("{}/tus-js-client/dist/tus.min.js", node_modules()))
        .expect("bash .ci/setup installs tus-js-client");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move {
                axum::response::Html(page.lock().unwrap().clone())
            }),
        )
        .route(
            "/tus.min.js",
            axum::routing::get(move || async move {
                ([(axum::http::header::CONTENT_TYPE, "text/javascript")], tus)
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

#[tokio::test]
async fn a_browser_reads_the_pre_finish_answer_across_origins() {
    let node = Node::dev(Backend::Sqlite).await;
    let app = App::start(Duration::ZERO, Box::new(deciding)).await;
    // The account lists the page's origin; the page needs the account's token: it is written
    // once both exist.
    let page = Arc::new(Mutex::new(String::new()));
    let page_origin = serve_page(page.clone()).await;
    let account = node.account_with(&[
        "--name",
        "browser",
        "--hook-url",
        &app.url,
        "--cors-origin",
        &page_origin,
    ]);
    let token = upload_token(&node, &account, "{}").await;
    *page.lock().unwrap() = format!(
        r#"<html><head><script src="/tus.min.js"></script></head><body><pre id="out">running</pre><script>
const data = new Uint8Array(2 * 1024 * 1024 + 7);
for (let i = 0; i < data.length; i++) data[i] = i % 251;
new tus.Upload(new Blob([data]), {{
  endpoint: "{edge}/files/", chunkSize: 1024 * 1024, retryDelays: [],
  headers: {{ Authorization: "Bearer {token}" }}, metadata: {{ filename: "browser.mp4" }},
  onSuccess: (p) => {{ document.getElementById("out").textContent = "OK " + p.lastResponse.getHeader("Uplink-Hook-Response"); }},
  onError: (e) => {{ document.getElementById("out").textContent = "ERR " + e; }},
}}).start();
</script></body></html>"#,
        edge = node.url,
    );
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Virtual time runs until the page is idle (the upload done), at most this long.
        .args(["--virtual-time-budget=20000", "--dump-dom"])
        .arg(format!("{page_origin}/"))
        .output()
        .await
        .expect("Chromium is installed (bash .ci/setup installs Debian's chromium)");
    let dom = String::from_utf8_lossy(&out.stdout);
    let shown = dom
        .split(r#"<pre id="out">"#)
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the page: {dom}"));
    let answer = shown
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("the browser's upload did not succeed: {shown}"));
    let answer: Value = serde_json::from_str(&answer.replace("&amp;", "&")).unwrap();
    let id = answer["video_page"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_eq!(answer["title"], "Grüße 🎬");
    let uploads = Uploads::new(&node.url, &account.api_key);
    let (_, record) = uploads.get(&format!("/{id}")).await;
    assert_eq!(record["data"]["hook_response"], answer);
}

/// `uplink account update ID ARGS…` beside the running node.
fn account_update(node: &Node, id: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::bin())
        .args(["account", "update", id, "--database", &node.database_url()])
        .args(args)
        .output()
        .unwrap()
}

/// Asserts tus-js-client's report is a failure with `status` whose body says `text`.
fn assert_refused(report: &Value, status: u16, text: &str) {
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["status"], status, "{report}");
    assert!(report["body"].as_str().unwrap().contains(text), "{report}");
}

#[tokio::test]
async fn a_hook_that_does_not_answer_follows_its_failure_policy() {
    let node = Node::dev(Backend::Sqlite).await;
    let app = App::start(
        Duration::from_secs(3),
        Box::new(|_| (StatusCode::OK, json!({ "folder": "late" }))),
    )
    .await;
    let account = node.account_with(&[
        "--name",
        "slow",
        "--hook-url",
        &app.url,
        "--hook-timeout",
        "pre-create=300ms",
        "--hook-timeout",
        "pre-finish=300ms",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "slow.mp4", 256 * 1024);
    let uploads = Uploads::new(&node.url, &account.api_key);
    let update = |args: &[&str]| {
        let out = account_update(&node, &account.id, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    // pre-create refuses by default when the application is too slow: a retryable 503.
    let (status, body) = uploads.post(&file, Some("f")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "refused_by_hook", "{body}");
    let (_, list) = uploads.get("").await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");

    // Continue on pre-create; pre-finish continues by default: stored, with no answer.
    let shown = update(&["--hook-on-failure", "pre-create=continue"]);
    assert_eq!(
        shown["hooks"]["pre_create"]["on_failure"], "continue",
        "{shown}"
    );
    assert_eq!(
        shown["hooks"]["pre_finish"]["on_failure"], "continue",
        "{shown}"
    );
    let (status, body) = uploads.post(&file, Some("f")).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["data"].get("hook_response").is_none(), "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let (_, record) = uploads.get(&format!("/{id}")).await;
    assert_eq!(
        record["data"]["folder"], "f",
        "the late answer changed nothing"
    );

    // Refuse on pre-finish: the upload fails (502), never a success.
    update(&["--hook-on-failure", "pre-finish=refuse"]);
    let (status, body) = uploads.post(&file, Some("f")).await;
    assert_eq!(status, 502, "{body}");
    let (_, list) = uploads.get("").await;
    let codes: Vec<(i64, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["status"].as_i64().unwrap(), u["error_code"].clone()))
        .collect();
    assert!(codes.contains(&(7, json!("refused_by_hook"))), "{list}");

    // Without hooks, nothing is asked.
    let asked = app.hooked().len();
    let shown = update(&["--clear", "hooks"]);
    assert_eq!(shown["hooks"], Value::Null, "{shown}");
    let (status, body) = uploads.post(&file, Some("f")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.hooked().len(), asked);

    // Bad settings are refused with a message that says why.
    let out = account_update(&node, &account.id, &["--hook-timeout", "pre-create=2s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --hook-url"), "{err}");
}
