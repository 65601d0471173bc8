//! TLS for the edge's HTTPS and HTTP/3 listeners: one certificate, read from PEM files and
//! re-read when they change (checked every few seconds, no restart; a broken replacement is
//! refused and the current certificate kept), shared by Pingora's TLS listener and the QUIC
//! endpoint; and the self-signed certificate `uplink dev` makes when none is configured.
//!
//! Must not depend on the origin or the database.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the certificate files are checked for a new version.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The crypto provider of every TLS configuration the edge builds.
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(certificate: &Path, private_key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| file_error(certificate, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(certificate, e))?;
    if chain.is_empty() {
        return Err(file_error(certificate, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| file_error(private_key, e))?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(private_key, e))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| file_error(private_key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The edge's certificate, reloaded when its files change.
#[derive(Debug)]
pub struct Certificate {
    certificate: PathBuf,
    private_key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificate {
    /// Loads the certificate chain and key.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the two do not match.
    pub fn open(certificate: &Path, private_key: &Path) -> Result<Self, TlsError> {
        let loaded = load(certificate, private_key)?;
        Ok(Self {
            certificate: certificate.to_owned(),
            private_key: private_key.to_owned(),
            current: RwLock::new((
                Arc::new(loaded),
                modified(certificate),
                modified(private_key),
            )),
        })
    }

    /// Loads the files again if either changed since the last load; returns whether the
    /// certificate in use changed. A replacement that does not load is logged and ignored.
    pub fn reload_if_changed(&self) -> bool {
        let stamps = (modified(&self.certificate), modified(&self.private_key));
        {
            let current = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if (current.1, current.2) == stamps {
                return false;
            }
        }
        match load(&self.certificate, &self.private_key) {
            Ok(loaded) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (Arc::new(loaded), stamps.0, stamps.1);
                tracing::info!(certificate = %self.certificate.display(), "TLS certificate reloaded.");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "The new TLS certificate does not load; keeping the current one.");
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (current.1, current.2) = stamps;
                false
            }
        }
    }

    /// Checks the files every [`RELOAD_CHECK`] on the current Tokio runtime, for ever.
    pub fn keep_fresh(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RELOAD_CHECK);
            loop {
                every.tick().await;
                this.reload_if_changed();
            }
        });
    }

    /// A rustls server configuration using this certificate, offering `alpn`, TLS 1.2 and 1.3
    /// (1.3 only where QUIC needs it: QUIC refuses anything else by itself).
    ///
    /// # Errors
    /// The provider refuses the protocol versions (it does not).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 (and its key, mode 0600) to
/// the two paths, unless both files exist already.
///
/// # Errors
/// Generation or writing fails.
pub fn ensure_self_signed(certificate: &Path, private_key: &Path) -> Result<(), TlsError> {
    if certificate.is_file() && private_key.is_file() {
        return Ok(());
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    if let Some(dir) = certificate.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(private_key)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, made.key_pair.serialize_pem().as_bytes())
        })
        .map_err(|e| file_error(private_key, e))?;
    std::fs::write(certificate, made.cert.pem()).map_err(|e| file_error(certificate, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_certificate_is_reloaded_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        ensure_self_signed(&cert, &key).unwrap();
        let first = std::fs::read(&cert).unwrap();
        ensure_self_signed(&cert, &key).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "kept when present");
        let tls = Certificate::open(&cert, &key).unwrap();
        assert!(!tls.reload_if_changed());

        // A new pair: picked up.
        let (cert2, key2) = (dir.path().join("c2.pem"), dir.path().join("k2.pem"));
        ensure_self_signed(&cert2, &key2).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(&cert2, &cert).unwrap();
        std::fs::copy(&key2, &key).unwrap();
        assert!(tls.reload_if_changed());

        // A certificate with the wrong key: refused, the current one kept.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&cert, &first).unwrap();
        assert!(!tls.reload_if_changed());
        let err = Certificate::open(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        assert!(
            Certificate::open(&key, &key).is_err(),
            "a key is not a certificate"
        );
    }
}
