//! The TLS client configuration of the tests' own clients. One file for the
//! integration tests (`tests/common`) and the listeners' TLS unit tests
//! (`src/http/tls_tests.rs` includes it by path).

use std::sync::Arc;

/// A rustls client configuration (aws-lc-rs, its safe default protocol
/// versions, no client certificate) that trusts only `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}
