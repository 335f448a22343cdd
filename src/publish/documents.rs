//! The objects a target holds: the public JWK Set and, with `discovery`,
//! the OpenID discovery document, with their SHA-256 digests. Pure.

use bytes::Bytes;
use serde::Serialize;

use super::target::Target;

/// Metadata key holding the hex SHA-256 of an object's content (S3
/// `x-amz-meta-sha256`, Azure `x-ms-meta-sha256`, GCS `metadata.sha256`).
/// An ETag is no content hash under multipart uploads or SSE-KMS.
pub const DIGEST_METADATA: &str = "sha256";
/// `Content-Type` of both objects.
pub const CONTENT_TYPE: &str = "application/json";

/// One object to write: its path below the bucket, content and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Path below the bucket (prefix included).
    pub path: String,
    /// The content.
    pub body: Bytes,
    /// Hex SHA-256 of `body`.
    pub sha256: String,
}

/// What one target must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Documents {
    /// The JWK Set (first) and the discovery document (when enabled).
    pub objects: Vec<Object>,
    /// kids in the JWK Set, in order.
    pub kids: Vec<String>,
}

#[derive(Serialize)]
struct Discovery<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: Vec<&'a str>,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `publishedDigest` form of a hex digest: `sha256:<hex>`.
pub fn digest_name(hex: &str) -> String {
    format!("sha256:{hex}")
}

/// The kids of a JWK Set's content, or `None` when it is not a JWK Set.
pub fn kids_of(jwks: &[u8]) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(jwks).ok()?;
    v.get("keys")?
        .as_array()?
        .iter()
        .map(|k| k.get("kid").and_then(|k| k.as_str()).map(str::to_owned))
        .collect()
}

// === impl Documents ===

impl Documents {
    /// The documents of `target` for the public set `jwks` (as served:
    /// `{"keys": [...]}`, each JWK with `kid` and `alg`) and `issuer`.
    pub fn build(target: &Target, jwks: &[u8], issuer: Option<&str>) -> Documents {
        let kids = kids_of(jwks).unwrap_or_default();
        let mut objects = vec![object(target.jwks_object(), Bytes::copy_from_slice(jwks))];
        if target.discovery
            && let Some(issuer) = issuer
        {
            let v: serde_json::Value = serde_json::from_slice(jwks).unwrap_or_default();
            let mut algs: Vec<&str> = Vec::new();
            for k in v["keys"].as_array().into_iter().flatten() {
                if let Some(a) = k["alg"].as_str()
                    && !algs.contains(&a)
                {
                    algs.push(a);
                }
            }
            let doc = Discovery {
                issuer,
                jwks_uri: format!("{issuer}/{}", target.jwks_path),
                response_types_supported: ["id_token"],
                subject_types_supported: ["public"],
                id_token_signing_alg_values_supported: algs,
            };
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            objects.push(object(target.discovery_object(), Bytes::from(body)));
        }
        Documents { objects, kids }
    }

    /// Hex SHA-256 of the JWK Set.
    pub fn jwks_sha256(&self) -> &str {
        &self.objects[0].sha256
    }
}

fn object(path: String, body: Bytes) -> Object {
    Object {
        sha256: sha256_hex(&body),
        path,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PublishTarget;
    use crate::publish::target::{Context, DEFAULT_JWKS_PATH, Mode, resolve};

    const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","kid":"k2","alg":"ES256"},{"kty":"RSA","kid":"k1","alg":"RS256"},{"kty":"EC","kid":"k0","alg":"ES256"}]}"#;

    fn target(url: &str, issuer: Option<&str>) -> Target {
        let t = PublishTarget {
            url: url.into(),
            ..Default::default()
        };
        resolve(
            &[t],
            Context {
                mode: Mode::Local,
                issuer,
                max_age: 300,
                default_jwks_path: DEFAULT_JWKS_PATH,
            },
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn discovery_names_the_issuer_and_the_jwks_under_it() {
        let issuer = "https://bucket.s3.eu-west-1.amazonaws.com/cluster";
        let docs = Documents::build(
            &target("s3://bucket/cluster", Some(issuer)),
            JWKS,
            Some(issuer),
        );
        assert_eq!(docs.kids, ["k2", "k1", "k0"]);
        let paths: Vec<_> = docs.objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cluster/jwks.json",
                "cluster/.well-known/openid-configuration"
            ]
        );
        let d: serde_json::Value = serde_json::from_slice(&docs.objects[1].body).unwrap();
        assert_eq!(d["issuer"], issuer);
        assert_eq!(d["jwks_uri"], format!("{issuer}/jwks.json"));
        assert_eq!(
            d["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        assert_eq!(docs.objects[0].body, JWKS);
        assert_eq!(docs.jwks_sha256(), sha256_hex(JWKS));
    }

    #[test]
    fn without_issuer_only_the_jwks_is_written() {
        let docs = Documents::build(&target("gs://bucket", None), JWKS, None);
        assert_eq!(docs.objects.len(), 1);
        assert_eq!(docs.objects[0].path, "jwks.json");
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(kids_of(b"not json"), None);
        assert_eq!(kids_of(br#"{"keys":[]}"#), Some(vec![]));
    }
}
