//! What the offset-based resumable protocols share at the edge: tus 1.0 ([`super::tus`]) and
//! the IETF draft ([`super::ietf`]) serve the same upload resources at [`PREFIX`], through the
//! one resumable core ([`crate::ingest::resumable`]). This module names those resources; the
//! adapters parse requests and render the core's outcomes. Must not depend on an HTTP server.

use crate::ingest::offset_spool::OffsetSpool;
use crate::ingest::resumable::Core;
use crate::upload::UploadId;

/// Where resumable upload resources live: `/files/` creates, `/files/{id}` is one upload.
pub const PREFIX: &str = "/files/";

/// What a resumable protocol's adapter needs from its edge.
pub type Ctx<'a> = super::Ctx<'a, OffsetSpool>;

impl<'a> Ctx<'a> {
    /// The resumable core this edge's requests act through.
    #[must_use]
    pub fn core(&self) -> Core<'a> {
        Core {
            ingest: self.ingest,
            spool: self.spool,
            client: self.client,
        }
    }
}

/// The target of a path under [`PREFIX`]: the endpoint (`None`) or one upload.
#[must_use]
pub fn route(path: &str) -> Option<Option<UploadId>> {
    let rest = path.strip_prefix("/files")?;
    match rest.trim_matches('/') {
        "" => Some(None),
        id => id.parse().ok().map(Some),
    }
}

/// The upload a URL or path (absolute or not, as tus `Upload-Concat` lists them) names.
#[must_use]
pub fn upload_of_url(url: &str) -> Option<UploadId> {
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    route(path).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_urls() {
        assert_eq!(route("/files/"), Some(None));
        assert_eq!(route("/files"), Some(None));
        let id = UploadId::new();
        assert_eq!(route(&format!("/files/{id}")), Some(Some(id)));
        assert_eq!(route("/files/upload"), None);
        assert_eq!(route("/other"), None);
        assert_eq!(upload_of_url(&format!("/files/{id}")), Some(id));
        assert_eq!(
            upload_of_url(&format!("https://edge.example:8443/files/{id}?__token__=x")),
            Some(id)
        );
        assert_eq!(upload_of_url("https://edge.example"), None);
        assert_eq!(upload_of_url("/files/not-an-id"), None);
    }
}
