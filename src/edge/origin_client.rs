//! The edge's client for the origin's internal API ([`crate::control`]). API-key lookups are
//! cached (moka) so an edge checks a known key without a round trip; only successful lookups
//! are cached, so a newly created account works at once.

use super::origins::Origins;
use crate::config::Secret;
use crate::control::{
    self, AccessKeyOwner, CorsAnswer, CorsCheck, CreateUpload, CreatedUpload, Heartbeat,
    HoldRefused, HoldUpload, KeyOwner, RecordPart, ResolveAccessKey, ResolveKey, StatusView,
    UploadInfo, UploadStored, WriteUpload,
};
use crate::ingest::control_plane::{ControlError, ControlPlane, Held};
use crate::upload::UploadId;
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

/// A failed call to the origin.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The origin could not be reached or did not answer in time.
    #[error("origin unreachable while trying to {op}")]
    Unreachable {
        /// What we were doing.
        op: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The origin answered with an unexpected status.
    #[error("origin answered {status} while trying to {op}")]
    Status {
        /// What we were doing.
        op: &'static str,
        /// Its answer.
        status: u16,
    },
}

/// A handle on the origin's internal API; cheap to clone.
#[derive(Debug, Clone)]
pub struct OriginClient {
    http: reqwest::Client,
    origins: Arc<Origins>,
    secret: Secret,
    keys: Cache<String, KeyOwner>,
    access_keys: Cache<String, AccessKeyOwner>,
    cors: Cache<(String, Option<String>), bool>,
}

impl OriginClient {
    /// A client for `origins`, failing over between them.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        origins: Arc<Origins>,
        secret: Secret,
        cache_ttl: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            origins,
            secret,
            keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            access_keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            cors: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
        })
    }

    /// One request to the current origin; a connection that cannot be made is tried on the
    /// next origin, once each.
    async fn call<T: serde::Serialize + ?Sized>(
        &self,
        op: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&T>,
    ) -> Result<reqwest::Response, OriginError> {
        let mut attempt = 0;
        loop {
            let i = self.origins.current();
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.origins.get(i).url))
                .header(control::SECRET_HEADER, self.secret.expose());
            if let Some(id) = crate::request_id::current() {
                req = req.header(crate::request_id::HEADER, id);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Err(source) if source.is_connect() && attempt + 1 < self.origins.len() => {
                    self.origins.failed(i);
                    attempt += 1;
                }
                result => return result.map_err(|source| OriginError::Unreachable { op, source }),
            }
        }
    }

    async fn json<R: serde::de::DeserializeOwned>(
        op: &'static str,
        resp: reqwest::Response,
    ) -> Result<R, OriginError> {
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(OriginError::Status { op, status });
        }
        resp.json()
            .await
            .map_err(|source| OriginError::Unreachable { op, source })
    }

    /// POSTs a lookup to the origin; `None` on 404.
    async fn lookup<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        body: &B,
    ) -> Result<Option<R>, OriginError> {
        let resp = self
            .call(op, reqwest::Method::POST, path, Some(body))
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::json(op, resp).await.map(Some)
    }

    /// Sends this edge's heartbeat.
    ///
    /// # Errors
    /// The origin is unreachable or refuses (404: unknown name; 409: another region).
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<(), OriginError> {
        let op = "send a heartbeat";
        let resp = self
            .call(
                op,
                reqwest::Method::POST,
                "/internal/v1/edges/heartbeat",
                Some(beat),
            )
            .await?;
        match resp.status().as_u16() {
            204 => Ok(()),
            status => Err(OriginError::Status { op, status }),
        }
    }
}

impl From<OriginError> for ControlError {
    fn from(e: OriginError) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// What a 409 from the origin says ([`HoldRefused`]): another edge holds or writes the upload,
/// or it is no longer receiving.
enum Conflict {
    /// That edge.
    Other(String),
    /// Its status code.
    NotReceiving(i64),
}

/// Reads a 409's [`HoldRefused`].
async fn refusal(op: &'static str, resp: reqwest::Response) -> Result<Conflict, ControlError> {
    match resp.json::<HoldRefused>().await {
        Ok(HoldRefused {
            holder: Some(edge), ..
        }) => Ok(Conflict::Other(edge)),
        Ok(HoldRefused {
            status: Some(status),
            ..
        }) => Ok(Conflict::NotReceiving(status)),
        _ => Err(OriginError::Status { op, status: 409 }.into()),
    }
}

/// A 403 from the origin: the account's hook refused the upload.
async fn hook_refused(op: &'static str, resp: reqwest::Response) -> ControlError {
    match resp.json::<control::HookRefused>().await {
        Ok(r) => ControlError::Refused(r.refused),
        Err(_) => OriginError::Status { op, status: 403 }.into(),
    }
}

/// A 409 from the origin as an outcome: another writer, or no longer receiving.
async fn conflict(op: &'static str, resp: reqwest::Response) -> ControlError {
    match refusal(op, resp).await {
        Ok(Conflict::Other(_)) => ControlError::Superseded,
        Ok(Conflict::NotReceiving(status)) => ControlError::NotReceiving(status),
        Err(e) => e,
    }
}

impl OriginClient {
    /// `POST /internal/v1/uploads/{id}/writer`.
    async fn writer(
        &self,
        id: UploadId,
        edge: &str,
        take: bool,
    ) -> Result<Option<UploadInfo>, ControlError> {
        let op = if take {
            "take an upload over"
        } else {
            "check an upload's writer"
        };
        let path = format!("/internal/v1/uploads/{id}/writer");
        let body = WriteUpload {
            edge: edge.to_owned(),
            take,
        };
        let resp = self
            .call(op, reqwest::Method::POST, &path, Some(&body))
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            409 => Err(conflict(op, resp).await),
            _ => Ok(Some(Self::json(op, resp).await?)),
        }
    }
}

#[async_trait::async_trait]
impl ControlPlane for OriginClient {
    async fn ready(&self) -> Result<(), ControlError> {
        let op = "check the origin's health";
        let resp = self
            .call::<()>(op, reqwest::Method::GET, "/healthz", None)
            .await?;
        match resp.status().as_u16() {
            200 => Ok(()),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }

    async fn resolve_key(&self, api_key: &str) -> Result<Option<KeyOwner>, ControlError> {
        let cache_key = crate::account::api_key_fingerprint(api_key);
        if let Some(owner) = self.keys.get(&cache_key).await {
            return Ok(Some(owner));
        }
        let body = ResolveKey {
            api_key: api_key.to_owned(),
        };
        let found: Option<KeyOwner> = self
            .lookup("look up an API key", "/internal/v1/api-keys/resolve", &body)
            .await?;
        if let Some(owner) = &found {
            self.keys.insert(cache_key, owner.clone()).await;
        }
        Ok(found)
    }

    async fn resolve_access_key(
        &self,
        access_key: &str,
    ) -> Result<Option<AccessKeyOwner>, ControlError> {
        if let Some(found) = self.access_keys.get(access_key).await {
            return Ok(Some(found));
        }
        let body = ResolveAccessKey {
            access_key: access_key.to_owned(),
        };
        let found: Option<AccessKeyOwner> = self
            .lookup(
                "look up an access key",
                "/internal/v1/access-keys/resolve",
                &body,
            )
            .await?;
        if let Some(owner) = &found {
            self.access_keys
                .insert(access_key.to_owned(), owner.clone())
                .await;
        }
        Ok(found)
    }

    async fn cors_allowed(
        &self,
        origin: &str,
        account_id: Option<&str>,
    ) -> Result<bool, ControlError> {
        let key = (origin.to_owned(), account_id.map(str::to_owned));
        if let Some(allowed) = self.cors.get(&key).await {
            return Ok(allowed);
        }
        let op = "check a CORS origin";
        let body = CorsCheck {
            origin: key.0.clone(),
            account_id: key.1.clone(),
        };
        let resp = self
            .call(
                op,
                reqwest::Method::POST,
                "/internal/v1/cors/check",
                Some(&body),
            )
            .await?;
        let answer: CorsAnswer = Self::json(op, resp).await?;
        self.cors.insert(key, answer.allowed).await;
        Ok(answer.allowed)
    }

    async fn upload(&self, id: UploadId) -> Result<Option<UploadInfo>, ControlError> {
        let op = "read an upload";
        let resp = self
            .call::<()>(
                op,
                reqwest::Method::GET,
                &format!("/internal/v1/uploads/{id}"),
                None,
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(Self::json(op, resp).await?))
    }

    async fn create(&self, req: &CreateUpload) -> Result<CreatedUpload, ControlError> {
        let op = "create an upload";
        let resp = self
            .call(op, reqwest::Method::POST, "/internal/v1/uploads", Some(req))
            .await?;
        match resp.status().as_u16() {
            404 => Err(ControlError::NotFound),
            410 => Err(ControlError::SessionClosed),
            403 => Err(hook_refused(op, resp).await),
            _ => Ok(Self::json(op, resp).await?),
        }
    }

    async fn adopt(&self, id: UploadId, edge: &str) -> Result<Option<UploadInfo>, ControlError> {
        self.writer(id, edge, true).await
    }

    async fn still_writer(&self, id: UploadId, edge: &str) -> Result<(), ControlError> {
        match self.writer(id, edge, false).await? {
            Some(_) => Ok(()),
            None => Err(ControlError::NotFound),
        }
    }

    async fn hold(&self, id: UploadId, edge: &str) -> Result<Held, ControlError> {
        let op = "hold an upload's chunks";
        let path = format!("/internal/v1/uploads/{id}/hold");
        let body = HoldUpload {
            edge: edge.to_owned(),
        };
        let resp = self
            .call(op, reqwest::Method::POST, &path, Some(&body))
            .await?;
        match resp.status().as_u16() {
            204 => Ok(Held::Yes),
            404 => Ok(Held::Unknown),
            409 => Ok(match refusal(op, resp).await? {
                Conflict::Other(edge) => Held::ByOther(edge),
                Conflict::NotReceiving(status) => Held::Over(status),
            }),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }

    async fn record_part(&self, id: UploadId, req: &RecordPart) -> Result<(), ControlError> {
        let op = "record a stored part";
        let path = format!("/internal/v1/uploads/{id}/parts");
        let resp = self
            .call(op, reqwest::Method::POST, &path, Some(req))
            .await?;
        match resp.status().as_u16() {
            204 => Ok(()),
            409 => Err(conflict(op, resp).await),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }

    async fn complete(&self, id: UploadId, req: &UploadStored) -> Result<StatusView, ControlError> {
        let op = "record an upload as stored";
        let path = format!("/internal/v1/uploads/{id}/stored");
        let resp = self
            .call(op, reqwest::Method::POST, &path, Some(req))
            .await?;
        match resp.status().as_u16() {
            413 => Err(ControlError::OverQuota),
            409 => Err(conflict(op, resp).await),
            403 => Err(hook_refused(op, resp).await),
            _ => Ok(Self::json(op, resp).await?),
        }
    }

    async fn progress(&self, uploads: &[(UploadId, u64)]) -> Result<(), ControlError> {
        let op = "report progress";
        let body = control::Progress {
            uploads: uploads.to_vec(),
        };
        let resp = self
            .call(
                op,
                reqwest::Method::POST,
                "/internal/v1/progress",
                Some(&body),
            )
            .await?;
        match resp.status().as_u16() {
            204 => Ok(()),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }

    async fn cancel(&self, id: UploadId) -> Result<(), ControlError> {
        let op = "cancel an upload";
        let path = format!("/internal/v1/uploads/{id}");
        let resp = self
            .call::<()>(op, reqwest::Method::DELETE, &path, None)
            .await?;
        match resp.status().as_u16() {
            204 | 409 => Ok(()),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }

    async fn fail(
        &self,
        id: UploadId,
        failure: crate::upload::Failure,
    ) -> Result<(), ControlError> {
        let op = "fail an upload";
        let path = format!("/internal/v1/uploads/{id}/failed");
        let body = control::UploadFailed {
            code: failure.code().to_owned(),
        };
        let resp = self
            .call(op, reqwest::Method::POST, &path, Some(&body))
            .await?;
        match resp.status().as_u16() {
            204 => Ok(()),
            404 => Err(ControlError::NotFound),
            status => Err(OriginError::Status { op, status }.into()),
        }
    }
}
