//! TLS for the listeners (rustls with the aws-lc-rs provider).
//!
//! One certificate and key pair (`--tls-cert-file`, `--tls-key-file`, PEM)
//! serves every listener of the process: JWKS, token and metrics. The files
//! are read again every [`RELOAD_INTERVAL`]; when their content changed
//! (cert-manager renews a mounted Secret in place) a good new pair is used
//! for every new connection, while connections already open keep the
//! session they have. A bad new pair (unparsable, or a key that does not
//! belong to the certificate) is refused: the previous pair stays in use, a
//! warning names the file, and the metrics say so
//! (`jwks_operator_tls_reloads_total{result="failure"}`,
//! `jwks_operator_tls_reload_failing 1`) until a good pair appears.
//!
//! At start a bad pair is an error that names the file: the process does
//! not start without the TLS it was asked for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::keys::redacted::RedactedBytes;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the certificate and key files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Where the PEM certificate chain and private key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`--tls-cert-file`).
    pub cert: PathBuf,
    /// The leaf's private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key-file`).
    pub key: PathBuf,
    /// PEM CA certificates a client must present a certificate chaining to
    /// (the token listener's `--token-client-ca-file`); no client
    /// certificate is asked for when `None`.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// A pair without client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }
}

/// Why a certificate and key pair cannot be used. Every variant names the
/// file at fault; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a damaged one.
    #[error("{} holds no usable PEM certificate{}", path.display(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong, when known.
        detail: Option<String>,
    },
    /// The key file holds no PEM private key, or one rustls cannot use.
    #[error("{} holds no usable PEM private key{}", path.display(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong, when known.
        detail: Option<String>,
    },
    /// The client CA file holds no usable PEM CA certificate.
    #[error("{} holds no usable PEM CA certificate for client certificates{}", path.display(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What is wrong, when known.
        detail: Option<String>,
    },
    /// The key does not belong to the certificate.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The TLS configuration every listener's new connections use; swapped
/// whole when the files change.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The file contents last looked at (good or bad), so a change is acted
    /// on (and a bad pair reported) once.
    seen: Mutex<Seen>,
}

#[derive(Debug)]
enum Seen {
    Contents(Contents),
    Unreadable(String),
}

impl Seen {
    /// Whether the files look as they did (compared in full; the key is not
    /// a guessable secret an attacker probes byte by byte here).
    fn same_as(&self, other: &Seen) -> bool {
        match (self, other) {
            (Seen::Contents(a), Seen::Contents(b)) => {
                a.cert == b.cert && a.key.expose() == b.key.expose() && a.client_ca == b.client_ca
            }
            (Seen::Unreadable(a), Seen::Unreadable(b)) => a == b,
            _ => false,
        }
    }
}

/// What [`ServerTls::reload`] did.
#[derive(Debug)]
pub enum Reload {
    /// The files are as last seen.
    Unchanged,
    /// A new pair is in use for new connections.
    Reloaded,
    /// The files changed but cannot be used; the previous pair stays.
    Failed(TlsError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The PEM contents of the files: certificate, key (held
/// [`Redacted`](crate::keys::Redacted): printed as `<redacted>`, wiped when
/// dropped), client CA (if any).
#[derive(Debug, Clone)]
struct Contents {
    cert: Vec<u8>,
    key: RedactedBytes,
    client_ca: Option<Vec<u8>>,
}

fn read_all(files: &TlsFiles) -> Result<Contents, TlsError> {
    Ok(Contents {
        cert: read(&files.cert)?,
        key: RedactedBytes::new(read(&files.key)?),
        client_ca: files.client_ca.as_deref().map(read).transpose()?,
    })
}

/// A verifier requiring a client certificate that chains to one of the
/// CA certificates in `ca_pem`.
fn client_verifier(
    path: &Path,
    ca_pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |detail: Option<String>| TlsError::ClientCa {
        path: path.to_owned(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| bad(Some(e.to_string())))?;
        roots.add(cert).map_err(|e| bad(Some(e.to_string())))?;
    }
    if roots.is_empty() {
        return Err(bad(None));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(Some(e.to_string())))
}

/// Builds a server configuration from PEM contents, checking that the key
/// belongs to the certificate.
fn build(files: &TlsFiles, contents: &Contents) -> Result<ServerConfig, TlsError> {
    let (cert_pem, key_pem) = (&contents.cert[..], contents.key.expose());
    let bad_cert = |detail: Option<String>| TlsError::Certificate {
        path: files.cert.clone(),
        detail,
    };
    let bad_key = |detail: Option<String>| TlsError::Key {
        path: files.key.clone(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(Some(e.to_string())))?;
    if chain.is_empty() {
        return Err(bad_cert(None));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => bad_key(None),
        e => bad_key(Some(e.to_string())),
    })?;
    let provider = provider();
    let signer = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| bad_key(Some(e.to_string())))?;
    match CertifiedKey::new(chain.clone(), signer).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
        Err(e) => return Err(bad_cert(Some(e.to_string()))),
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_key(Some(e.to_string())))?;
    let builder = match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(ca_pem)) => {
            builder.with_client_cert_verifier(client_verifier(path, ca_pem, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad_cert(Some(e.to_string())))?;
    // The listeners speak HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

// === impl ServerTls ===

impl ServerTls {
    /// Loads the pair; fails with an error naming the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let contents = read_all(&files)?;
        let config = build(&files, &contents)?;
        Ok(Arc::new(ServerTls {
            files,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(Seen::Contents(contents)),
        }))
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor for one new connection, with the current pair.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again and, when they changed, switches to the new
    /// pair if it is good. A bad pair is reported once per distinct content.
    pub fn reload(&self) -> Reload {
        let contents = read_all(&self.files);
        // A writer caught between the two files: look again next time.
        if let Ok(c) = &contents
            && read(&self.files.cert).is_ok_and(|again| again != c.cert)
        {
            return Reload::Unchanged;
        }
        let now = match &contents {
            Ok(c) => Seen::Contents(c.clone()),
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.same_as(&now) {
            return Reload::Unchanged;
        }
        *seen = now;
        match contents.and_then(|c| build(&self.files, &c)) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Checks the files every `interval` until `shutdown` completes, logging
    /// and counting each change.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        metrics: Option<Arc<Metrics>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let cert = self.files.cert.clone();
        super::reload::every(
            interval,
            shutdown,
            move || this.reload(),
            move |outcome| match outcome {
                Reload::Unchanged => {}
                Reload::Reloaded => {
                    if let Some(m) = &metrics {
                        m.http.tls_reloaded(true);
                    }
                    info!(
                        cert = %cert.display(),
                        "TLS certificate reloaded; new connections use it"
                    );
                }
                Reload::Failed(e) => {
                    if let Some(m) = &metrics {
                        m.http.tls_reloaded(false);
                    }
                    warn!(
                        error = %e,
                        "TLS certificate files changed but cannot be used; keeping the previous pair"
                    );
                }
            },
        )
    }
}
