//! A TLS client configuration that trusts one PEM certificate (the self-signed one `uplink dev`
//! makes) and offers one ALPN protocol. Shared by the tests and the benchmarks (which include
//! this file by path).
#![allow(dead_code)]

use std::sync::Arc;

/// Trusts `pem` only; offers `alpn` (`b"h2"`, `b"h3"`).
pub fn client_config(pem: &[u8], alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls
}
