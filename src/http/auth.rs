//! The token listener's client credential.
//!
//! A minted token is as good as one the application signs itself (and some
//! policies are a kube-apiserver's issuer), so the token listener answers
//! only clients that prove who they are, in one or both of two ways:
//!
//! - a bearer token (`--token-auth-file`): every request carries
//!   `Authorization: Bearer <token>` with the file's content (surrounding
//!   whitespace ignored). The comparison takes the same time whatever the
//!   presented token is (both sides are hashed with SHA-256 first, then
//!   compared without an early exit). The file is read again every
//!   [`RELOAD_INTERVAL`] (a mounted Secret updated in place): a new non-empty
//!   token replaces the old one; an unreadable or empty file keeps the
//!   previous token, with a warning;
//! - a client certificate (`--token-client-ca-file`): the token listener's
//!   TLS handshake requires a certificate that chains to one of the file's
//!   CA certificates ([`super::tls`]); a client without one never gets to
//!   send a request.
//!
//! With both, a client needs both. With neither, the listener only starts on
//! a loopback address ([`check_token_listener`]): only processes on the same
//! host can reach it.
//!
//! A request without the right token is answered 401 `unauthorized` with
//! `WWW-Authenticate: Bearer`, before any policy is looked up (so it does not
//! learn which policies exist), and logged at debug level only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use tracing::{info, warn};

/// How often the bearer token file is checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How the token listener's clients prove who they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenAuth {
    /// A file holding the bearer token every request must carry
    /// (`--token-auth-file`).
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA certificates a client certificate must chain to
    /// (`--token-client-ca-file`; needs TLS).
    pub client_ca_file: Option<PathBuf>,
}

impl TokenAuth {
    /// Whether any credential is required.
    pub fn is_configured(&self) -> bool {
        self.bearer_token_file.is_some() || self.client_ca_file.is_some()
    }
}

/// Whether `addr` can only be reached from this host: `127.0.0.0/8` or `::1`
/// (also as an IPv4-mapped IPv6 address).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Why the token listener may not start.
#[derive(Debug, thiserror::Error)]
pub enum TokenAuthError {
    /// Not on loopback, and no credential configured.
    #[error(
        "the token listener mints tokens and --token-addr {addr} is not a loopback address: \
         give a client credential (--token-auth-file with a bearer token, and/or \
         --token-client-ca-file for client certificates), or bind it to 127.0.0.1 or [::1]"
    )]
    NoCredential {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The bearer token file cannot be read.
    #[error("cannot read the token listener's bearer token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bearer token file holds nothing but whitespace.
    #[error("the token listener's bearer token file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Client certificates asked for without TLS.
    #[error("--token-client-ca-file needs TLS on the listeners (--tls-cert-file, --tls-key-file)")]
    ClientCaWithoutTls,
}

/// Checks that the token listener on `addr` may start with `auth`: anywhere
/// with a credential, on loopback without one.
pub fn check_token_listener(
    addr: SocketAddr,
    auth: &TokenAuth,
    tls: bool,
) -> Result<(), TokenAuthError> {
    if auth.client_ca_file.is_some() && !tls {
        return Err(TokenAuthError::ClientCaWithoutTls);
    }
    if auth.is_configured() || is_loopback(&addr) {
        Ok(())
    } else {
        Err(TokenAuthError::NoCredential { addr })
    }
}

/// The bearer token of the token listener, from a file re-read when it
/// changes. Holds only the token's SHA-256, never prints it.
#[derive(Debug)]
pub struct BearerToken {
    path: PathBuf,
    digest: ArcSwap<[u8; 32]>,
    /// The file content last looked at, hashed (a change is acted on once).
    seen: Mutex<Option<[u8; 32]>>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

fn read_token(path: &Path) -> Result<[u8; 32], TokenAuthError> {
    let bytes = std::fs::read(path).map_err(|source| TokenAuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenAuthError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(sha256(token))
}

/// Compares two digests without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// === impl BearerToken ===

impl BearerToken {
    /// Reads the token file; fails when it is unreadable or empty.
    pub fn load(path: impl Into<PathBuf>) -> Result<Arc<Self>, TokenAuthError> {
        let path = path.into();
        let digest = read_token(&path)?;
        Ok(Arc::new(BearerToken {
            path,
            digest: ArcSwap::from_pointee(digest),
            seen: Mutex::new(Some(digest)),
        }))
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an `Authorization` header value carries the token
    /// (`Bearer <token>`, the scheme in any case).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        same_digest(&sha256(token.trim_ascii()), &self.digest.load())
    }

    /// Reads the file again. `Ok(true)` when a new token is in use,
    /// `Ok(false)` when nothing changed; an error (once per distinct
    /// content) when the file changed but cannot be used: the previous token
    /// stays.
    pub fn reload(&self) -> Result<bool, TokenAuthError> {
        let now = read_token(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now_seen = now.as_ref().ok().copied();
        if *seen == now_seen && now.is_ok() {
            return Ok(false);
        }
        let was_bad = seen.is_none();
        *seen = now_seen;
        match now {
            Ok(digest) => {
                self.digest.store(Arc::new(digest));
                Ok(true)
            }
            // Reported once until the file becomes good again.
            Err(_) if was_bad => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks the file every `interval` until `shutdown` completes, logging
    /// each change (never the token).
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let path = self.path.clone();
        super::reload::every(
            interval,
            shutdown,
            move || this.reload(),
            move |outcome| match outcome {
                Ok(false) => {}
                Ok(true) => info!(file = %path.display(), "token listener bearer token reloaded"),
                Err(e) => warn!(
                    error = %e,
                    "token listener bearer token file changed but cannot be used; keeping the previous token"
                ),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn only_the_files_token_is_accepted() {
        let (_dir, path) = token_file("s3cret-token\n");
        let bearer = BearerToken::load(&path).unwrap();
        assert!(bearer.accepts(Some(b"Bearer s3cret-token")));
        assert!(bearer.accepts(Some(b"bearer s3cret-token")));
        for wrong in [
            &b"Bearer s3cret-toke"[..],
            b"Bearer s3cret-token2",
            b"Bearer ",
            b"Basic s3cret-token",
            b"s3cret-token",
            b"",
        ] {
            assert!(
                !bearer.accepts(Some(wrong)),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!bearer.accepts(None));
    }

    #[test]
    fn an_empty_or_missing_file_is_refused_at_start() {
        let (_dir, path) = token_file(" \n");
        assert!(matches!(
            BearerToken::load(&path),
            Err(TokenAuthError::Empty { .. })
        ));
        assert!(matches!(
            BearerToken::load(path.with_extension("missing")),
            Err(TokenAuthError::Read { .. })
        ));
    }

    #[test]
    fn a_changed_file_replaces_the_token_and_a_bad_one_keeps_it() {
        let (_dir, path) = token_file("first");
        let bearer = BearerToken::load(&path).unwrap();
        assert!(!bearer.reload().unwrap(), "unchanged");
        std::fs::write(&path, "second").unwrap();
        assert!(bearer.reload().unwrap());
        assert!(bearer.accepts(Some(b"Bearer second")));
        assert!(!bearer.accepts(Some(b"Bearer first")));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(bearer.reload(), Err(TokenAuthError::Empty { .. })));
        assert!(!bearer.reload().unwrap(), "reported once");
        assert!(
            bearer.accepts(Some(b"Bearer second")),
            "previous token kept"
        );
        std::fs::write(&path, "third").unwrap();
        assert!(bearer.reload().unwrap());
        assert!(bearer.accepts(Some(b"Bearer third")));
    }

    #[test]
    fn without_a_credential_only_loopback_is_allowed() {
        let none = TokenAuth::default();
        for ok in [
            "127.0.0.1:8081",
            "127.3.4.5:0",
            "[::1]:8081",
            "[::ffff:127.0.0.1]:1",
        ] {
            check_token_listener(ok.parse().unwrap(), &none, false).unwrap();
        }
        for refused in ["0.0.0.0:8081", "[::]:8081", "10.0.0.5:8081"] {
            let err = check_token_listener(refused.parse().unwrap(), &none, false).unwrap_err();
            assert!(
                matches!(err, TokenAuthError::NoCredential { .. }),
                "{refused}"
            );
            assert!(err.to_string().contains("--token-auth-file"), "{err}");
        }
        let bearer = TokenAuth {
            bearer_token_file: Some("/t".into()),
            client_ca_file: None,
        };
        check_token_listener("0.0.0.0:8081".parse().unwrap(), &bearer, false).unwrap();
        let mtls = TokenAuth {
            bearer_token_file: None,
            client_ca_file: Some("/ca.pem".into()),
        };
        check_token_listener("0.0.0.0:8081".parse().unwrap(), &mtls, true).unwrap();
        assert!(matches!(
            check_token_listener("0.0.0.0:8081".parse().unwrap(), &mtls, false),
            Err(TokenAuthError::ClientCaWithoutTls)
        ));
    }
}
