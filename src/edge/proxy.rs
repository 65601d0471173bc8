//! The edge's Pingora service. `request_filter` answers what the edge owns (health, upload
//! paths, a 404 for internal paths) and everything else goes to the origin through the proxy
//! phases. Request bodies stream from the socket into the adapters; replies are rendered here.

use super::exchange::{body_stream, continue_if_expected, write_reply, Exchange, RequestHead};
use super::heartbeat::ActiveUploads;
use super::metered::Metered;
use super::outputs;
use crate::config::EdgeSettings;
use crate::control;
use crate::error::UploadsApiError;
use crate::ingest::chunk_spool::ChunkSpool;
use crate::ingest::offset_spool::OffsetSpool;
use crate::ingest::Ingest;
use crate::protocol::{self, ankoder_form, ietf, movingimage, s3_post, tus, uploads_api, Reply};
use crate::token::Keyring;
use crate::upload::UploadId;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use serde_json::json;
use std::sync::Arc;
use tracing::Instrument;

/// The edge's spools, one per kind of resumable protocol.
pub struct Spools {
    /// Numbered chunks (movingimage, plupload).
    pub chunks: ChunkSpool,
    /// Offset-based uploads (tus).
    pub resumable: OffsetSpool,
}

/// The edge service (cheap to clone: the HTTP/3 listener shares it).
#[derive(Clone)]
pub struct EdgeProxy {
    ingest: Ingest,
    store: Arc<dyn crate::store::Store>,
    spools: Arc<Spools>,
    keyring: Keyring,
    token_skew: u64,
    form_max_size: u64,
    origins: Arc<super::origins::Origins>,
    region: Option<String>,
    active: ActiveUploads,
    /// `Alt-Svc` for every response when the edge also speaks HTTP/3.
    alt_svc: Option<String>,
    /// Where the spools live (readiness checks its room).
    spool_dir: std::path::PathBuf,
    /// Limits on slow clients.
    limits: super::limits::Limits,
    /// Fetches the sources of uploads from a URL.
    fetcher: Arc<crate::ingest::fetch::Fetcher>,
    /// Forwards to the origin the control-API requests the edge read itself.
    forwarder: reqwest::Client,
}

impl EdgeProxy {
    pub(super) fn new(
        ingest: Ingest,
        store: Arc<dyn crate::store::Store>,
        spools: Arc<Spools>,
        active: ActiveUploads,
        settings: &EdgeSettings,
        origins: Arc<super::origins::Origins>,
        (fetcher, forwarder): (Arc<crate::ingest::fetch::Fetcher>, reqwest::Client),
    ) -> Self {
        Self {
            ingest,
            store,
            spools,
            keyring: settings.keyring.clone(),
            token_skew: settings.token_skew,
            form_max_size: settings.form_max_size,
            fetcher,
            forwarder,
            origins,
            region: settings.region.clone(),
            active,
            alt_svc: settings
                .tls
                .as_ref()
                .map(|tls| format!("h3=\":{}\"; ma=86400", tls.listen.port())),
            spool_dir: settings.spool_dir.clone(),
            limits: settings.limits,
        }
    }

    /// The context of a token-authorised protocol using `spool`, as of now.
    fn ctx<'a, Spool>(
        &'a self,
        spool: &'a Spool,
        client: Option<std::net::IpAddr>,
    ) -> protocol::Ctx<'a, Spool> {
        protocol::Ctx {
            ingest: &self.ingest,
            keyring: &self.keyring,
            skew: self.token_skew,
            spool,
            now: crate::clock::now_secs(),
            region: self.region.as_deref(),
            client,
        }
    }

    /// movingimage's chunked upload (and its full-file form) at an upload URL.
    async fn upload_url(&self, x: &mut dyn Exchange, video: UploadId) -> pingora::Result<Reply> {
        let RequestHead {
            path,
            query,
            headers,
            client,
            ..
        } = x.head();
        let ctx = self.ctx(&self.spools.chunks, client);
        // The token is checked before the body is read.
        let claims = match movingimage::authorize(query.as_deref(), &headers, &path, video, &ctx) {
            Ok(claims) => claims,
            Err(reply) => return Ok(reply),
        };
        continue_if_expected(x, &headers).await?;
        let reply = movingimage::receive(video, &claims, &headers, body_stream(x), &ctx).await;
        Ok(reply)
    }

    async fn uploads_api(&self, x: &mut dyn Exchange) -> pingora::Result<Reply> {
        let RequestHead {
            headers, client, ..
        } = x.head();
        let reply = match uploads_api::authorize(&headers, client, &self.ingest).await {
            Err(reply) => reply,
            Ok(auth) => {
                continue_if_expected(x, &headers).await?;
                uploads_api::receive(auth, body_stream(x), &self.ingest, &self.fetcher).await
            }
        };
        Ok(reply)
    }

    /// tus 1.0: every method on the endpoint and its uploads.
    async fn tus(&self, x: &mut dyn Exchange, target: Option<UploadId>) -> pingora::Result<Reply> {
        let RequestHead {
            method,
            query,
            headers,
            client,
            ..
        } = x.head();
        let ctx = self.ctx(&self.spools.resumable, client);
        if method == http::Method::PATCH || method == http::Method::POST {
            continue_if_expected(x, &headers).await?;
        }
        let reply = tus::handle(
            &method,
            target,
            query.as_deref(),
            &headers,
            body_stream(x),
            &ctx,
        )
        .await;
        Ok(reply)
    }

    /// An IETF draft upload creation: the upload resource is announced with a 104 interim
    /// response before the body is read.
    async fn ietf_create(
        &self,
        x: &mut dyn Exchange,
        draft: ietf::Draft,
    ) -> pingora::Result<Reply> {
        let RequestHead {
            query,
            headers,
            client,
            ..
        } = x.head();
        let ctx = self.ctx(&self.spools.resumable, client);
        let opened = match ietf::open(draft, query.as_deref(), &headers, &ctx).await {
            Ok(opened) => opened,
            Err(reply) => return Ok(reply),
        };
        if let Some(interim) = ietf::interim(&opened, &ctx) {
            // HTTP/1.1 and HTTP/3: Pingora's HTTP/2 server drops informational responses.
            x.informational(interim.status, &interim.headers).await?;
        }
        continue_if_expected(x, &headers).await?;
        let reply = ietf::receive(opened, body_stream(x), &ctx).await;
        Ok(reply)
    }

    /// IETF draft requests on an upload resource.
    async fn ietf(
        &self,
        x: &mut dyn Exchange,
        draft: ietf::Draft,
        id: UploadId,
    ) -> pingora::Result<Reply> {
        let RequestHead {
            method,
            query,
            headers,
            client,
            ..
        } = x.head();
        let ctx = self.ctx(&self.spools.resumable, client);
        if method == http::Method::PATCH {
            continue_if_expected(x, &headers).await?;
        }
        let reply = ietf::handle(
            draft,
            &method,
            id,
            query.as_deref(),
            &headers,
            body_stream(x),
            &ctx,
        )
        .await;
        Ok(reply)
    }

    /// movingimage's `POST /v1/videos`: with a `url`, the video is opened here and its file
    /// fetched by this edge; without one the request is forwarded to the origin (`None`: its
    /// answer is written).
    async fn videos(&self, x: &mut dyn Exchange) -> pingora::Result<Option<Reply>> {
        let head = x.head();
        let body = match super::to_origin::read_body(x).await? {
            Ok(body) => body,
            Err(reply) => return Ok(Some(reply)),
        };
        let Some(req) = movingimage::FromUrl::of(&body) else {
            super::to_origin::forward_read(x, head, body, &self.forwarder, &self.origins).await?;
            return Ok(None);
        };
        let reply = movingimage::video_from_url(
            &head.headers,
            req,
            head.client,
            &self.ingest,
            &self.fetcher,
        )
        .await;
        Ok(Some(reply))
    }

    /// The HTML form upload: its credentials are form fields, so the body is read.
    async fn ankoder_form(&self, x: &mut dyn Exchange) -> pingora::Result<Reply> {
        let RequestHead {
            headers, client, ..
        } = x.head();
        continue_if_expected(x, &headers).await?;
        let body = body_stream(x);
        let reply =
            ankoder_form::receive(&headers, body, &self.ingest, self.form_max_size, client).await;
        Ok(reply)
    }

    /// S3 POST Object: its credentials are form fields, so the body is always read.
    async fn s3_post(&self, x: &mut dyn Exchange, bucket: &str) -> pingora::Result<Reply> {
        let RequestHead {
            headers, client, ..
        } = x.head();
        continue_if_expected(x, &headers).await?;
        let reply = s3_post::receive(
            (bucket, self.region.as_deref(), client),
            &headers,
            body_stream(x),
            &self.ingest,
            &self.spools.chunks,
            crate::clock::now_utc(),
        )
        .await;
        Ok(reply)
    }
}

/// What the edge answers itself; everything else goes to the origin.
enum Route {
    Health,
    Ready,
    /// The internal API is never reachable through the edge.
    Internal,
    IetfCreate(ietf::Draft),
    Ietf(ietf::Draft, UploadId),
    Tus(Option<UploadId>),
    UploadUrl(UploadId),
    S3Post(String),
    UploadsApi,
    AnkoderForm,
    /// movingimage's `POST /v1/videos`: the edge's when it names a `url`, else the origin's.
    Videos,
    /// `OPTIONS` on an upload path that is not a CORS preflight.
    Options,
    /// `GET`/`HEAD` of a processed output by its signed link: signature, key.
    Output(String, String),
}

impl Route {
    /// The flavour its requests are counted under ([`crate::metrics`]).
    fn flavour(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Ready => "ready",
            Self::Internal => "internal",
            Self::IetfCreate(_) | Self::Ietf(..) => "ietf",
            Self::Tus(_) => "tus",
            Self::UploadUrl(_) | Self::Videos => "movingimage",
            Self::S3Post(_) => "s3_post",
            Self::UploadsApi => "uploads_api",
            Self::AnkoderForm => "ankoder_form",
            Self::Options => "options",
            Self::Output(..) => "outputs",
        }
    }

    /// Whether the request sends or manages an upload (what an edge's load is counted in).
    fn is_upload(&self) -> bool {
        !matches!(
            self,
            Self::Health
                | Self::Ready
                | Self::Internal
                | Self::Options
                | Self::Output(..)
                | Self::Videos
        )
    }

    fn of(method: &http::Method, path: &str, headers: &http::HeaderMap) -> Option<Self> {
        use http::Method;
        if let Some(target) = tus::route(path) {
            let draft = ietf::draft(headers);
            match (method, target, draft) {
                (&Method::POST | &Method::PUT, None, Some(d)) => return Some(Self::IetfCreate(d)),
                (&Method::HEAD | &Method::PATCH | &Method::DELETE, Some(id), Some(d)) => {
                    return Some(Self::Ietf(d, id))
                }
                (&Method::OPTIONS | &Method::HEAD | &Method::PATCH | &Method::DELETE, _, _)
                | (&Method::POST, None, _) => return Some(Self::Tus(target)),
                _ => {}
            }
        }
        let upload_path = movingimage::video_of(path).is_some()
            || s3_post::bucket_of(path).is_some()
            || path == uploads_api::PATH
            || path == ankoder_form::PATH;
        if method == Method::OPTIONS && upload_path {
            return Some(Self::Options);
        }
        if method == Method::POST {
            if let Some(video) = movingimage::video_of(path) {
                return Some(Self::UploadUrl(video));
            }
            if let Some(bucket) = s3_post::bucket_of(path) {
                return Some(Self::S3Post(bucket.to_owned()));
            }
        }
        if method == Method::GET || method == Method::HEAD {
            if let Some((signature, key)) = outputs::link_of(path) {
                return Some(Self::Output(signature, key));
            }
        }
        match (method.as_str(), path) {
            ("GET", "/healthz") => Some(Self::Health),
            ("GET", "/readyz") => Some(Self::Ready),
            ("POST", uploads_api::PATH) => Some(Self::UploadsApi),
            ("POST", ankoder_form::PATH) => Some(Self::AnkoderForm),
            ("POST", movingimage::VIDEOS) => Some(Self::Videos),
            (_, p) if p.starts_with(control::PREFIX) => Some(Self::Internal),
            _ => None,
        }
    }
}

impl EdgeProxy {
    /// Answers what the edge owns (health, upload paths, outputs, a 404 for internal paths),
    /// over any transport, with its body kept to the limits ([`super::limits::Paced`]), and
    /// records it ([`Metered`]); `false` when the request is the origin's (the control API).
    ///
    /// # Errors
    /// The client connection fails.
    pub(super) async fn serve(&self, x: &mut dyn Exchange, id: &str) -> pingora::Result<bool> {
        let head = x.head();
        let Some(route) = Route::of(&head.method, &head.path, &head.headers) else {
            return Ok(false);
        };
        let flavour = route.flavour();
        let method = head.method.clone();
        let mut metered = Metered::new(x);
        let mut x = super::limits::Paced::new(&mut metered, self.limits);
        let span = tracing::info_span!("request", request_id = %id);
        let answered = crate::request_id::scope(
            id.to_owned(),
            self.answer(&mut x, head, route).instrument(span),
        )
        .await;
        metered.record(flavour, &method);
        answered.map(|()| true)
    }

    /// [`EdgeProxy::serve`] within the request's id.
    async fn answer(
        &self,
        x: &mut dyn Exchange,
        head: RequestHead,
        route: Route,
    ) -> pingora::Result<()> {
        let alt_svc: Vec<(&'static str, String)> = self
            .alt_svc
            .iter()
            .map(|v| ("alt-svc", v.clone()))
            .collect();
        let origin = head
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(origin) = &origin {
            if head.method == http::Method::OPTIONS
                && head.headers.contains_key("access-control-request-method")
            {
                let reply = self.preflight(origin, &head.headers).await;
                return write_reply(x, reply, &alt_svc).await;
            }
        }
        let mut extra = match &origin {
            Some(origin) => self.cors(origin, &head).await,
            None => Vec::new(),
        };
        extra.extend(alt_svc);
        let _counted = route.is_upload().then(|| self.active.enter());
        let reply = match route {
            Route::Health => Reply::json(200, &json!({ "status": "ok", "role": "edge" })),
            Route::Ready => super::ready::check(&self.ingest, &*self.store, &self.spool_dir).await,
            Route::Internal => Reply::error(&UploadsApiError::NoRoute),
            Route::IetfCreate(draft) => self.ietf_create(x, draft).await?,
            Route::Ietf(draft, id) => self.ietf(x, draft, id).await?,
            Route::Tus(target) => self.tus(x, target).await?,
            Route::UploadUrl(video) => self.upload_url(x, video).await?,
            Route::S3Post(bucket) => self.s3_post(x, &bucket).await?,
            Route::UploadsApi => self.uploads_api(x).await?,
            Route::AnkoderForm => self.ankoder_form(x).await?,
            Route::Videos => match self.videos(x).await? {
                Some(reply) => reply,
                // The origin's answer, already written.
                None => return Ok(()),
            },
            Route::Output(signature, key) => {
                // Streamed, not a `Reply`: written here in full.
                outputs::serve(
                    x,
                    self.store.as_ref(),
                    &self.keyring,
                    &signature,
                    &key,
                    &extra,
                )
                .await?;
                return Ok(());
            }
            Route::Options => Reply {
                status: 204,
                content_type: "text/plain",
                body: Bytes::new(),
                headers: vec![("allow", "POST, OPTIONS".into())],
            },
        };
        write_reply(x, reply, &extra).await
    }

    /// The account a request's credentials name: an upload token (query or Bearer) or an API
    /// key. `None` when it names none (form credentials) or they are not valid.
    async fn account_of(&self, req: &RequestHead) -> Option<String> {
        let token = crate::token::from_query(req.query.as_deref())
            .or_else(|| protocol::bearer(&req.headers).map(str::to_owned))?;
        if token.starts_with(crate::account::API_KEY_PREFIX) {
            // Cached by the origin client, as for the request itself.
            let owner = self.ingest.authenticate(&token).await.ok()??;
            return Some(owner.account_id);
        }
        let claims = self
            .keyring
            .verify(&token, crate::clock::now_secs(), self.token_skew)
            .ok()?;
        Some(claims.account)
    }

    async fn origin_allowed(&self, origin: &str, account: Option<&str>) -> bool {
        self.ingest
            .cors_allowed(origin, account)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "Could not check a CORS origin; refusing it.");
                false
            })
    }

    /// A CORS preflight: allowed when some account lists the origin (a preflight carries no
    /// credentials; the request that follows is checked against its own account).
    async fn preflight(&self, origin: &str, headers: &http::HeaderMap) -> Reply {
        if !self.origin_allowed(origin, None).await {
            return Reply::json(
                403,
                &json!({ "message": "This origin may not upload here: add it to the account's CORS origins." }),
            );
        }
        let requested = headers
            .get("access-control-request-headers")
            .and_then(|v| v.to_str().ok());
        Reply {
            status: 204,
            content_type: "text/plain",
            body: Bytes::new(),
            headers: crate::cors::preflight(origin, requested),
        }
    }

    /// The CORS headers of a response to a page from `origin`, if its account allows it.
    async fn cors(&self, origin: &str, req: &RequestHead) -> Vec<(&'static str, String)> {
        let account = self.account_of(req).await;
        if self.origin_allowed(origin, account.as_deref()).await {
            crate::cors::response(origin)
        } else {
            Vec::new()
        }
    }
}

/// `X-Forwarded-For` as the origin should see it: what the client's side sent, then the client.
pub(super) fn forwarded_chain(headers: &http::HeaderMap, client: std::net::IpAddr) -> String {
    let mut chain: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    chain.push(client.to_string());
    chain.join(", ")
}

/// A proxied request's state: which origin it was sent to, and how many could not be reached.
#[derive(Debug, Default)]
pub struct ProxyCtx {
    origin: usize,
    unreachable: usize,
    /// The request's id ([`crate::request_id`]).
    request_id: String,
    /// Whether it goes to the origin (the control API), counted when it ends.
    proxied: bool,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = ProxyCtx;

    fn new_ctx(&self) -> Self::CTX {
        ProxyCtx::default()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        ctx.request_id = crate::request_id::from_headers(&session.req_header().headers);
        let served = self.serve(session, &ctx.request_id).await?;
        ctx.proxied = !served;
        Ok(served)
    }

    /// Counts a proxied request once it ended (the edge's own are counted by `serve`).
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if ctx.proxied {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            crate::metrics::edge_request(
                "control",
                &session.req_header().method,
                Exchange::version(session),
                status,
                session.body_bytes_read() as u64,
                None,
            );
        }
    }

    /// Adds `Alt-Svc` to the origin's answers too.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        upstream.insert_header(crate::request_id::HEADER, &ctx.request_id)?;
        if let Some(alt_svc) = &self.alt_svc {
            upstream.insert_header(http::header::ALT_SVC, alt_svc)?;
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.origin = self.origins.current();
        let addr = self.origins.get(ctx.origin).addr.as_str();
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }

    /// An origin that cannot be connected to never saw the request: the next one is tried,
    /// each once.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        self.origins.failed(ctx.origin);
        ctx.unreachable += 1;
        if ctx.unreachable < self.origins.len() {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // Never let a client speak for the edge on the origin.
        upstream.remove_header(control::SECRET_HEADER);
        upstream.insert_header(crate::request_id::HEADER, &ctx.request_id)?;
        // The client's address joins the chain; the origin believes only the hops its
        // trusted_proxies vouch for.
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let chain = forwarded_chain(&session.req_header().headers, addr.ip());
            upstream.insert_header("x-forwarded-for", chain)?;
        }
        Ok(())
    }

    /// Proxy failures as JSON from the error table: an unreachable or failing origin is a
    /// retryable 503, not Pingora's bare 502.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let error = match (e.esource(), e.etype()) {
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => None,
            (ErrorSource::Downstream, _) => Some(UploadsApiError::Malformed(
                "the request could not be read".into(),
            )),
            (ErrorSource::Upstream, _) => Some(UploadsApiError::Unavailable),
            _ => Some(UploadsApiError::Internal),
        };
        tracing::warn!(error = %e, "Proxying to the origin failed.");
        let mut error_code = 0;
        if let Some(error) = error {
            let reply = Reply::error(&error);
            error_code = reply.status;
            if let Err(e) = write_reply(session, reply, &[]).await {
                tracing::debug!(error = %e, "Could not send the error reply.");
            }
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }
}
