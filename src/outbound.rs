//! Requests to addresses that customers give (notification and hook URLs, upload sources): only
//! http and https, and, with the guard on, never a private, loopback or link-local address,
//! whether written as a literal, reached by resolving a name (every address it resolves to is
//! checked when the connection is made) or by following a redirect. A refusal is typed
//! ([`NotAllowed`]) so callers can tell it from a network failure.
//!
//! Must not depend on the roles.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What a refused address is told.
const PRIVATE_REFUSED: &str = "refused: the URL reaches a private, loopback or link-local address";

/// A URL the guard refuses (its reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

impl NotAllowed {
    fn private() -> Self {
        Self(PRIVATE_REFUSED.into())
    }

    /// Whether the guard's refusal is somewhere in `error`'s chain.
    #[must_use]
    pub fn within(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut source = Some(error);
        while let Some(e) = source {
            if e.downcast_ref::<NotAllowed>().is_some() {
                return true;
            }
            source = e.source();
        }
        false
    }
}

/// Resolves names for the HTTP client, keeping only public addresses.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| crate::geo::is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NotAllowed::private()) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `url` may be asked at all: http or https, and, with the guard on (`allow_private`
/// false), not a private address written as a literal (names are checked when they resolve).
///
/// # Errors
/// Why not.
pub fn check_url(url: &str, allow_private: bool) -> Result<url::Url, NotAllowed> {
    let parsed = url::Url::parse(url).map_err(|e| NotAllowed(format!("invalid URL: {e}")))?;
    check(&parsed, allow_private)?;
    Ok(parsed)
}

fn check(url: &url::Url, allow_private: bool) -> Result<(), NotAllowed> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(NotAllowed(
            "the URL must be an absolute http or https URL".into(),
        ));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if !allow_private && literal.is_some_and(|ip| !crate::geo::is_public(ip)) {
        return Err(NotAllowed::private());
    }
    Ok(())
}

/// A client builder with the guard (unless `allow_private`), a user agent naming `purpose`, and
/// redirects: none when `redirects` is 0, else at most that many, each target checked as the
/// first URL is.
pub fn client(allow_private: bool, redirects: usize, purpose: &str) -> reqwest::ClientBuilder {
    let policy = if redirects == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > redirects {
                return attempt.error(NotAllowed(format!("more than {redirects} redirects")));
            }
            match check(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        })
    };
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .user_agent(format!("Uplink/{} ({purpose})", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_sending() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("ftp://example.com/x", true)
            .unwrap_err()
            .0
            .contains("http"));
        for private in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
        ] {
            assert_eq!(
                check_url(private, false).unwrap_err(),
                NotAllowed::private(),
                "{private}"
            );
            assert!(check_url(private, true).is_ok());
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = PublicOnly.resolve(name).await.err().unwrap();
        assert!(NotAllowed::within(err.as_ref()), "{err}");
    }

    /// A server that redirects every request to `location`.
    async fn redirecting(location: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, location)],
            )
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn redirects_are_checked_like_the_first_url() {
        // The first hop is a literal loopback address, which only `check_url` refuses (the
        // callers ask it first): here only the check of each redirect target can refuse.
        for (location, why) in [
            ("http://10.0.0.1/video.mp4", "private"),
            ("ftp://example.com/video.mp4", "http or https"),
        ] {
            let url = redirecting(location).await;
            let client = client(false, 5, "test").build().unwrap();
            let err = client.get(&url).send().await.unwrap_err();
            assert!(NotAllowed::within(&err), "{err:?}");
            assert!(crate::error::chain(&err).contains(why), "{err:?}");
        }
        let url = redirecting("/again").await;
        let client = client(true, 3, "test").build().unwrap();
        let err = client.get(&url).send().await.unwrap_err();
        assert!(
            crate::error::chain(&err).contains("more than 3 redirects"),
            "{err:?}"
        );
    }
}
