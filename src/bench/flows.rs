//! One upload of each protocol, made as that protocol's clients make it, through the public
//! APIs only: credentials minted with the account's API key (an upload token, a movingimage
//! video, an xvid session), then the bytes, resumed after an interruption as the protocol
//! allows (tus and the IETF draft from `HEAD`, movingimage chunk by chunk, the single-request
//! forms from the start), then the upload id the Uploads API knows it by. Every request is
//! recorded. Must not depend on the server's internals.

use super::report::Recorder;
use super::source::{Part, Source};
use super::transport::{Client, Reply, Request};
use super::{Plan, Protocol};
use bytes::Bytes;
use http::Method;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker needs to make uploads.
pub(super) struct Ctx<'a> {
    pub plan: &'a Plan,
    pub rec: Arc<Recorder>,
    pub client: &'a Client,
}

/// Why a request brought no usable answer.
enum Lost {
    /// Cut off on purpose (`--interrupt`): tried again at once, as a phone that lost its
    /// network reconnects.
    Cut(String),
    /// The connection failed or the time ran out: tried again after a pause.
    Connection(String),
    /// Refused with a status the client may retry after (a conflict, overload).
    Retry(Reply),
    /// Refused for good.
    Refused(Reply),
}

impl Lost {
    fn describe(&self, what: &str) -> String {
        match self {
            Self::Cut(e) | Self::Connection(e) => format!("{what}: {e}"),
            Self::Retry(r) | Self::Refused(r) => {
                format!("{what}: {} {}", r.status, error_code(r).unwrap_or_default())
            }
        }
    }
}

/// Gives up on an upload after this many failed requests in a row.
const TRIES: u32 = 12;

/// Counts failed requests in a row; waits a little longer after each.
struct Tries(u32);

impl Tries {
    async fn again(&mut self, lost: &Lost, what: &str) -> Result<(), String> {
        if let Lost::Refused(_) = lost {
            return Err(lost.describe(what));
        }
        self.0 += 1;
        if self.0 >= TRIES {
            return Err(format!("{} ({} tries)", lost.describe(what), self.0));
        }
        if !matches!(lost, Lost::Cut(_)) {
            tokio::time::sleep(Duration::from_millis(100 << self.0.min(4))).await;
        }
        Ok(())
    }
}

/// The error code a refusal names: the body's `code`, `error_code`, `error` or `title`.
fn error_code(r: &Reply) -> Option<String> {
    let json = r.json();
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let nested = json.get("error").and_then(|e| e.get("code"));
    ["code", "error_code", "error", "title"]
        .iter()
        .find_map(|k| json.get(k).and_then(field))
        .or_else(|| nested.and_then(field))
        .or_else(|| {
            let text = String::from_utf8_lossy(&r.body);
            let text = text.trim();
            (!text.is_empty()).then(|| text.chars().take(60).collect())
        })
}

impl Ctx<'_> {
    /// Sends `request` (of `kind`), records it; the reply when it is a success.
    async fn call(&self, kind: &'static str, request: Request, cut: bool) -> Result<Reply, Lost> {
        let start = Instant::now();
        let sent = self.client.send(request).await;
        let took = start.elapsed();
        match sent {
            Ok(r) if r.status < 400 => {
                self.rec.request(kind, took, r.status, None);
                Ok(r)
            }
            Ok(r) => {
                let code = error_code(&r).unwrap_or_else(|| "-".into());
                self.rec.request(kind, took, r.status, Some(code));
                Err(
                    if matches!(r.status, 408 | 409 | 423 | 429 | 500 | 502 | 503 | 504) {
                        Lost::Retry(r)
                    } else {
                        Lost::Refused(r)
                    },
                )
            }
            Err(e) if cut => {
                self.rec.interrupted();
                Err(Lost::Cut(e))
            }
            Err(e) => {
                let code = e.chars().take(80).collect();
                self.rec.request(kind, took, 0, Some(code));
                Err(Lost::Connection(e))
            }
        }
    }

    /// A control-API request with the API key, and a JSON body when given.
    async fn control(
        &self,
        kind: &'static str,
        method: Method,
        path: &str,
        json: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let mut tries = Tries(0);
        loop {
            let mut request = Request::new(method.clone(), format!("{}{path}", self.plan.url))
                .header("authorization", format!("Bearer {}", self.plan.api_key));
            if let Some(json) = &json {
                let body = Bytes::from(json.to_string());
                request = request
                    .header("content-type", "application/json")
                    .body(body.len() as u64, futures_util::stream::iter([Ok(body)]));
            }
            match self.call(kind, request, false).await {
                Ok(r) => return Ok(r.json()),
                Err(lost) => tries.again(&lost, path).await?,
            }
        }
    }

    /// An upload URL the control API gave, or with `--pin-edge` the same path and query at
    /// `--url`'s scheme and host.
    fn at(&self, url: &str) -> Result<String, String> {
        if !self.plan.pin_edge {
            return Ok(url.to_owned());
        }
        let mut url = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let base =
            url::Url::parse(&self.plan.url).map_err(|e| format!("{}: {e}", self.plan.url))?;
        let pinned = url.set_scheme(base.scheme()).is_ok()
            && url.set_host(base.host_str()).is_ok()
            && url.set_port(base.port()).is_ok();
        if !pinned {
            return Err(format!("{url} cannot be moved to {}", self.plan.url));
        }
        Ok(url.into())
    }

    /// The bytes `offset..offset + len` of `source`, with a cut drawn at random (`--interrupt`);
    /// whether it is cut.
    fn part(&self, rng: &mut impl Rng, offset: u64, len: u64) -> (Part, bool) {
        let cut =
            (len > 1 && rng.random_bool(self.plan.interrupt)).then(|| rng.random_range(1..len));
        let part = Part {
            offset,
            len,
            cut_after: cut,
            ..Part::default()
        };
        (part, cut.is_some())
    }

    fn body(
        &self,
        source: &Arc<Source>,
        part: Part,
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
        let rec = self.rec.clone();
        source.body(part, self.plan.bandwidth, move |n| rec.sent(n))
    }

    /// One upload of `source` (upload number `i`).
    pub async fn upload(
        &self,
        source: &Arc<Source>,
        i: u64,
        rng: &mut impl Rng,
    ) -> Result<Uploaded, String> {
        match self.plan.protocol {
            Protocol::Tus => self.resumable(source, i, rng, false).await,
            Protocol::Ietf => self.resumable(source, i, rng, true).await,
            Protocol::UploadsApi => self.uploads_api(source, rng).await,
            Protocol::Movingimage => self.movingimage(source, i, rng).await,
            Protocol::S3Post => self.s3_post(source, i, rng).await,
        }
    }

    /// tus or the IETF draft: a token for one upload, creation, then appends, resumed from
    /// `HEAD` after a loss.
    async fn resumable(
        &self,
        source: &Arc<Source>,
        i: u64,
        rng: &mut impl Rng,
        ietf: bool,
    ) -> Result<Uploaded, String> {
        let minted = self
            .control(
                "token",
                Method::POST,
                "/v1/upload-tokens",
                Some(serde_json::json!({ "max_uploads": 1, "filename": format!("bench-{i}.bin") })),
            )
            .await?;
        let token = minted["token"].as_str().ok_or("no token in the answer")?;
        let endpoint = self.at(minted["tus_endpoint"]
            .as_str()
            .ok_or("no tus_endpoint in the answer")?)?;
        let endpoint = endpoint.as_str();
        let bearer = format!("Bearer {token}");
        let len = source.len();
        let chunk = self.plan.chunk.max(1);
        let (location, mut offset) = self.create(source, i, rng, endpoint, &bearer, ietf).await?;
        let mut tries = Tries(0);
        while offset < len {
            let n = chunk.min(len - offset);
            let (part, cut) = self.part(rng, offset, n);
            let mut request = Request::new(Method::PATCH, &location)
                .header("authorization", &bearer)
                .header("upload-offset", offset);
            request = if ietf {
                request
                    .header("upload-draft-interop-version", "6")
                    .header(
                        "upload-complete",
                        if offset + n == len { "?1" } else { "?0" },
                    )
                    .header("content-type", "application/partial-upload")
            } else {
                request
                    .header("tus-resumable", "1.0.0")
                    .header("content-type", "application/offset+octet-stream")
            };
            request = request.body(n, self.body(source, part));
            match self.call("patch", request, cut).await {
                Ok(r) => {
                    offset = r
                        .header("upload-offset")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(offset + n);
                    tries = Tries(0);
                }
                Err(lost) => {
                    tries.again(&lost, "append").await?;
                    offset = self.head(&location, &bearer, ietf, &mut tries).await?;
                }
            }
        }
        let id = location
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .and_then(|id| id.split('?').next())
            .unwrap_or_default();
        Uploaded::at(id.to_owned(), &location)
    }

    /// tus or IETF creation at `endpoint` (with the first chunk when asked, always for the
    /// draft); the upload's URL and the offset the edge acknowledged. Sent again after a loss:
    /// the URL is only known from the answer.
    async fn create(
        &self,
        source: &Arc<Source>,
        i: u64,
        rng: &mut impl Rng,
        endpoint: &str,
        bearer: &str,
        ietf: bool,
    ) -> Result<(String, u64), String> {
        let len = source.len();
        let chunk = self.plan.chunk.max(1);
        let with_upload = ietf || self.plan.creation_with_upload;
        let mut tries = Tries(0);
        loop {
            let first = if with_upload { chunk.min(len) } else { 0 };
            let (part, cut) = self.part(rng, 0, first);
            let mut request = Request::new(Method::POST, endpoint).header("authorization", bearer);
            request = if ietf {
                request
                    .header("upload-draft-interop-version", "6")
                    .header("upload-complete", if first == len { "?1" } else { "?0" })
                    .header("content-type", "application/octet-stream")
            } else {
                let name = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("bench-{i}.bin"),
                );
                let request = request
                    .header("tus-resumable", "1.0.0")
                    .header("upload-length", len)
                    .header("upload-metadata", format!("filename {name}"));
                if first > 0 {
                    request.header("content-type", "application/offset+octet-stream")
                } else {
                    request
                }
            };
            request = request.body(first, self.body(source, part));
            match self.call("create", request, cut).await {
                Ok(r) => {
                    let location = r
                        .header("location")
                        .ok_or("creation answered without Location")?;
                    let location = self.at(&absolute(endpoint, location)?)?;
                    let offset = r
                        .header("upload-offset")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(first);
                    return Ok((location, offset));
                }
                // The upload's URL is only known from the answer: start again.
                Err(lost) => tries.again(&lost, "creation").await?,
            }
        }
    }

    /// The offset the edge has kept.
    async fn head(
        &self,
        location: &str,
        bearer: &str,
        ietf: bool,
        tries: &mut Tries,
    ) -> Result<u64, String> {
        loop {
            let request = Request::new(Method::HEAD, location).header("authorization", bearer);
            let request = if ietf {
                request.header("upload-draft-interop-version", "6")
            } else {
                request.header("tus-resumable", "1.0.0")
            };
            match self.call("head", request, false).await {
                Ok(r) => {
                    return r
                        .header("upload-offset")
                        .and_then(|o| o.parse().ok())
                        .ok_or_else(|| "HEAD answered without Upload-Offset".to_owned())
                }
                Err(lost) => tries.again(&lost, "HEAD").await?,
            }
        }
    }

    /// The Uploads API: one multipart request with the API key; again from the start after a
    /// loss (the API is not resumable).
    async fn uploads_api(
        &self,
        source: &Arc<Source>,
        rng: &mut impl Rng,
    ) -> Result<Uploaded, String> {
        let url = format!("{}/api/client/v1/uploads", self.plan.url);
        let fields = [("folder".to_owned(), "bench".to_owned())];
        let mut tries = Tries(0);
        loop {
            let (request, cut) = self.form(&url, &fields, "video", source, rng);
            let request = request.header("authorization", format!("Bearer {}", self.plan.api_key));
            match self.call("upload", request, cut).await {
                Ok(r) => {
                    let json = r.json();
                    let id = json["data"]["id"].as_str().ok_or_else(|| {
                        format!("the Uploads API answered {} without an id", r.status)
                    })?;
                    return Uploaded::at(id.to_owned(), &url);
                }
                Err(lost) => tries.again(&lost, "upload").await?,
            }
        }
    }

    /// A multipart form POST of `fields`, then `source` as file field `file_field`.
    fn form(
        &self,
        url: &str,
        fields: &[(String, String)],
        file_field: &str,
        source: &Arc<Source>,
        rng: &mut impl Rng,
    ) -> (Request, bool) {
        const BOUNDARY: &str = "uplink-bench-7d3f0c2a9b";
        let mut head = String::new();
        for (name, value) in fields {
            head.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"bench.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let (mut part, cut) = self.part(rng, 0, source.len());
        let len = head.len() as u64 + source.len() + tail.len() as u64;
        part.prefix = Bytes::from(head);
        part.suffix = Bytes::from(tail);
        let request = Request::new(Method::POST, url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(len, self.body(source, part));
        (request, cut)
    }

    /// movingimage: a video, its upload URL, then numbered chunks (each sent again after a
    /// loss).
    async fn movingimage(
        &self,
        source: &Arc<Source>,
        i: u64,
        rng: &mut impl Rng,
    ) -> Result<Uploaded, String> {
        let video = self
            .control(
                "session",
                Method::POST,
                "/v1/videos",
                Some(serde_json::json!({ "fileName": format!("bench-{i}.bin") })),
            )
            .await?;
        let id = video["videoId"]
            .as_str()
            .ok_or("no videoId in the answer")?
            .to_owned();
        let url = self
            .control(
                "session",
                Method::GET,
                &format!("/v1/videos/{id}/url"),
                None,
            )
            .await?;
        let url = self.at(url["url"].as_str().ok_or("no url in the answer")?)?;
        let chunk = self.plan.chunk.max(1);
        let total = source.len().div_ceil(chunk).max(1);
        for c in 0..total {
            let offset = c * chunk;
            let n = chunk.min(source.len() - offset);
            let mut tries = Tries(0);
            loop {
                let (part, cut) = self.part(rng, offset, n);
                let request = Request::new(Method::POST, &url)
                    .header("mi24-upload-total-chunks", total)
                    .header("mi24-upload-current-chunk", c + 1)
                    .header("content-type", "application/octet-stream")
                    .body(n, self.body(source, part));
                match self.call("chunk", request, cut).await {
                    Ok(_) => break,
                    Err(lost) => tries.again(&lost, "chunk").await?,
                }
            }
        }
        Uploaded::at(id, &url)
    }

    /// S3 POST through an xvid session opened with the API key, as a browser page gets it:
    /// the session's form fields, then the file; again from the start after a loss.
    async fn s3_post(
        &self,
        source: &Arc<Source>,
        i: u64,
        rng: &mut impl Rng,
    ) -> Result<Uploaded, String> {
        let pipeline = self
            .plan
            .pipeline_id
            .as_deref()
            .ok_or("s3-post needs --pipeline-id")?;
        let run = self.plan.seed;
        let session = self
            .control(
                "session",
                Method::POST,
                &format!(
                    "/v1/files/uploads/?object_key=bench%2F{run}%2F{i}.bin&pipeline_id={pipeline}"
                ),
                None,
            )
            .await?;
        let upload = &session["upload"];
        let url = self.at(upload["form_post_url"]
            .as_str()
            .ok_or("no form_post_url in the session")?)?;
        let url = url.as_str();
        let id = upload["id"]
            .as_str()
            .ok_or("no id in the session")?
            .to_owned();
        let fields: Vec<(String, String)> = upload["form_post_params"]
            .as_object()
            .ok_or("no form_post_params in the session")?
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        let mut tries = Tries(0);
        loop {
            let (request, cut) = self.form(url, &fields, "file", source, rng);
            match self.call("upload", request, cut).await {
                Ok(_) => return Uploaded::at(id, url),
                Err(lost) => tries.again(&lost, "form").await?,
            }
        }
    }

    /// The upload's status record, polled until it shows the upload stored (and its SHA-256,
    /// when verified by it), or processed when `processed`; `Err` when it never does or
    /// differs. Polls every 100 ms, then twice as long each time up to 1 s apart, until
    /// `--verify-timeout` (so time to processed is measured to within 1 s).
    pub async fn verify(&self, id: &str, source: &Source, processed: bool) -> Result<(), String> {
        let deadline = Instant::now() + self.plan.verify_timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let record = self
                .control(
                    "status",
                    Method::GET,
                    &format!("/api/client/v1/uploads/{id}"),
                    None,
                )
                .await?;
            let data = &record["data"];
            let status = data["status"].as_u64().unwrap_or(0);
            let sha = data["sha256"].as_str();
            let size = data["size"].as_u64();
            let stored = status >= 1
                && match self.plan.verify {
                    super::Verify::Sha256 => sha.is_some(),
                    super::Verify::Size => size.is_some(),
                };
            if stored && (!processed || status >= 6) {
                if size.is_some_and(|s| s != source.len()) {
                    return Err(format!(
                        "{id}: stored {} bytes, sent {}",
                        size.unwrap_or(0),
                        source.len()
                    ));
                }
                if let (super::Verify::Sha256, Some(sha)) = (self.plan.verify, sha) {
                    if Some(sha) != source.sha256().as_deref() {
                        return Err(format!("{id}: stored SHA-256 {sha} is not the source's"));
                    }
                }
                if processed && status != 6 {
                    let code = data["error_code"].as_str().unwrap_or("-");
                    return Err(format!("{id}: status {status} ({code}), not processed"));
                }
                return Ok(());
            }
            if status == 7 {
                let code = data["error_code"].as_str().unwrap_or("-");
                return Err(format!(
                    "{id}: failed (status 7, {code}) before it was verified"
                ));
            }
            if Instant::now() + pause > deadline {
                return Err(format!(
                    "{id}: still status {status} after {:?}",
                    self.plan.verify_timeout
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// An upload whose bytes are all acknowledged.
pub(super) struct Uploaded {
    /// The id the Uploads API knows it by.
    pub id: String,
    /// The edge that took its bytes (`host:port`).
    pub edge: String,
}

impl Uploaded {
    /// Upload `id`, whose bytes went to `url`.
    fn at(id: String, url: &str) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let edge = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self { id, edge })
    }
}

/// `location` made absolute against `base`.
fn absolute(base: &str, location: &str) -> Result<String, String> {
    let base = url::Url::parse(base).map_err(|e| format!("{base}: {e}"))?;
    base.join(location)
        .map(String::from)
        .map_err(|e| format!("Location {location}: {e}"))
}
