//! `jwks-operator verify`: check a JWT against a JWK Set read from a URL or
//! a file, the way a relying party would.
//!
//! The JWK Set may be public (what the JWKS endpoint serves) or private (a
//! state directory's `jwks.json`: private members are ignored). Keys the
//! operator cannot use (an `enc` key, an unsupported type) are skipped, so
//! third-party sets work too. The token must name a `kid` in the set, use
//! that key's algorithm, carry a valid signature and an `exp` in the future;
//! `nbf`/`iat` must not be in the future (all with `--leeway`).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde_json::Value;

use crate::keys::material::VerifyingKey;
use crate::keys::token::{Expectations, TokenError, VerifiedToken, Verifier};

/// Largest JWK Set document read.
pub const MAX_JWKS_SIZE: usize = 1024 * 1024;
/// How long fetching a JWK Set may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the JWK Set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// An `http://` or `https://` URL, fetched with a GET.
    Url(String),
    /// A local file.
    File(PathBuf),
}

impl std::str::FromStr for JwksSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Ok(
            if lower.starts_with("http://") || lower.starts_with("https://") {
                JwksSource::Url(s.to_string())
            } else {
                JwksSource::File(PathBuf::from(s))
            },
        )
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Url(u) => f.write_str(u),
            JwksSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why `verify` failed. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The JWK Set could not be fetched or read.
    #[error("cannot load the JWK Set from {source_name}: {reason}")]
    Fetch {
        /// The URL or file.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The document is not a JWK Set, or holds no usable key.
    #[error("{source_name} is not a usable JWK Set: {reason}")]
    BadJwks {
        /// The URL or file.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The token does not verify.
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
}

/// Reads the JWK Set document from `source`.
pub async fn load_jwks(source: &JwksSource) -> Result<Vec<u8>, VerifyError> {
    let fail = |reason: String| VerifyError::Fetch {
        source_name: source.to_string(),
        reason,
    };
    match source {
        JwksSource::File(path) => {
            use tokio::io::AsyncReadExt as _;
            // Read at most one byte past the limit: a huge file, a device or
            // a pipe that never ends costs no more than the limit.
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut bytes = Vec::new();
            file.take(MAX_JWKS_SIZE as u64 + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if bytes.len() > MAX_JWKS_SIZE {
                return Err(fail(format!("larger than {MAX_JWKS_SIZE} bytes")));
            }
            Ok(bytes)
        }
        JwksSource::Url(url) => tokio::time::timeout(FETCH_TIMEOUT, fetch(url))
            .await
            .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?
            .map_err(fail),
    }
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::get(uri)
        .header(
            hyper::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(
            hyper::header::USER_AGENT,
            concat!("jwks-operator/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| {
        // hyper-util's Display is terse ("client error (Connect)"): add the causes.
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cause = c.source();
        }
        msg
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_SIZE)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok(body.to_bytes().to_vec())
}

/// The usable keys of a JWK Set document and how many were skipped.
pub fn usable_keys(jwks: &[u8]) -> Result<(Vec<VerifyingKey>, usize), String> {
    let doc: Value = serde_json::from_slice(jwks).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no `keys` array".into());
    };
    let mut usable = Vec::new();
    for k in keys {
        if let Ok(key) = VerifyingKey::from_public_jwk(k) {
            usable.push(key);
        }
    }
    let skipped = keys.len() - usable.len();
    if usable.is_empty() {
        return Err(format!(
            "none of its {} keys is a signature key jwks-operator can use",
            keys.len()
        ));
    }
    Ok((usable, skipped))
}

/// Verifies `token` against the JWK Set document `jwks` at `now`.
pub fn verify_token(
    jwks: &[u8],
    source: &JwksSource,
    token: &str,
    expect: &Expectations,
    now: Timestamp,
) -> Result<VerifiedToken, VerifyError> {
    let (keys, _skipped) = usable_keys(jwks).map_err(|reason| VerifyError::BadJwks {
        source_name: source.to_string(),
        reason,
    })?;
    Ok(Verifier::new(&keys).verify(token.trim(), expect, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keys::testing::FIXTURE_JWKS as FIXTURE;

    fn token(alg_index: usize, ttl: i64, now: Timestamp) -> (String, String) {
        let key = &crate::keys::material::parse_private_jwks(FIXTURE).unwrap()[alg_index];
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "alice".into());
        claims.insert("iat".into(), now.as_second().into());
        claims.insert("exp".into(), (now.as_second() + ttl).into());
        (
            crate::keys::token::mint(key, &claims).unwrap(),
            key.kid().to_string(),
        )
    }

    #[test]
    fn sources_are_urls_or_files() {
        assert_eq!(
            "https://x/jwks".parse::<JwksSource>().unwrap(),
            JwksSource::Url("https://x/jwks".into())
        );
        assert_eq!(
            "HTTP://x".parse::<JwksSource>().unwrap(),
            JwksSource::Url("HTTP://x".into())
        );
        assert_eq!(
            "state/default/demo/jwks.json"
                .parse::<JwksSource>()
                .unwrap(),
            JwksSource::File("state/default/demo/jwks.json".into())
        );
    }

    #[test]
    fn a_private_set_verifies_like_a_public_one() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let (t, kid) = token(6, 60, now);
        let src = JwksSource::File("jwks.json".into());
        let ok = verify_token(FIXTURE, &src, &t, &Expectations::default(), now).unwrap();
        assert_eq!(ok.kid, kid);
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        let err = verify_token(FIXTURE, &src, &t, &Expectations::default(), later).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid token: token expired"),
            "{err}"
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_an_empty_set_is_refused() {
        let mut doc: Value = serde_json::from_slice(FIXTURE).unwrap();
        doc["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}));
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (keys, skipped) = usable_keys(&bytes).unwrap();
        assert_eq!(skipped, 1);
        assert!(!keys.is_empty());
        assert!(usable_keys(br#"{"keys":[]}"#).is_err());
        assert!(usable_keys(b"<html>").is_err());
    }

    /// A file that never ends (a FIFO whose writer keeps it open, like a
    /// device or a socket would) is refused after MAX_JWKS_SIZE + 1 bytes,
    /// not read until it ends.
    #[tokio::test]
    async fn an_oversized_file_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("jwks.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                let chunk = vec![b' '; 64 * 1024];
                // Twice the limit, then hold the pipe open until told to stop
                // (the reader going away ends the writes early: EPIPE).
                for _ in 0..(2 * MAX_JWKS_SIZE / chunk.len()) {
                    if f.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = done_rx.recv();
            })
        };
        let result =
            tokio::time::timeout(Duration::from_secs(20), load_jwks(&JwksSource::File(fifo))).await;
        drop(done_tx);
        writer.join().unwrap();
        let err = result
            .expect("load_jwks stops reading at the size limit")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("larger than {MAX_JWKS_SIZE} bytes")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_file_and_an_unreachable_url_are_one_line_errors() {
        let err = load_jwks(&JwksSource::File("/nonexistent/jwks.json".into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/jwks.json"), "{err}");
        // Port 9 (discard) on loopback: nothing listens there.
        let err = load_jwks(&JwksSource::Url("http://127.0.0.1:9/jwks.json".into()))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:9") && !msg.contains('\n'), "{msg}");
    }
}
