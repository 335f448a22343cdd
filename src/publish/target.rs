//! `spec.publish[]` resolved into targets: scheme, bucket, prefix, object
//! paths, cache control and where credentials come from. Pure: no I/O.

use std::path::PathBuf;

use crate::api::PublishTarget;
use crate::names;

/// Object path of the discovery document below a target's prefix.
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";
/// Default object path of the JWK Set below a target's prefix.
pub const DEFAULT_JWKS_PATH: &str = "jwks.json";
/// The signer's default JWK Set path: kube's own layout, which cloud IAM
/// expects of a self-hosted cluster's issuer.
pub const KUBE_JWKS_PATH: &str = "openid/v1/jwks";
/// Most targets per policy.
pub const MAX_TARGETS: usize = 8;

/// The kind of object storage behind a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Amazon S3 or an S3-compatible store (`s3://`).
    S3,
    /// Azure Blob Storage (`az://`, `azure://`).
    Azure,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// A local directory (`file://`, standalone and signer only).
    File,
}

/// Where a target's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// The pod's or process's own (IRSA, workload identity, instance
    /// profile, the process environment).
    Ambient,
    /// A Secret in the policy's namespace (Kubernetes).
    Secret(String),
    /// A `KEY=VALUE` file (standalone, signer).
    File(PathBuf),
}

/// Which adapter resolves the targets: some fields apply to one only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The controller: `credentialsSecret`, no `file://`.
    Kubernetes,
    /// Standalone and the signer: `credentialsFile`, `file://` allowed.
    Local,
}

/// One resolved target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as written in the spec: the target's identity in status,
    /// metrics and messages (it names no credential).
    pub url: String,
    /// The kind of storage.
    pub scheme: Scheme,
    /// Bucket or container; for `file://` the directory.
    pub bucket: String,
    /// Object path prefix below the bucket, without leading or trailing `/`
    /// (empty for the bucket's root).
    pub prefix: String,
    /// Path of the JWK Set below the prefix.
    pub jwks_path: String,
    /// Whether the discovery document is written too.
    pub discovery: bool,
    /// `Cache-Control` of both objects.
    pub cache_control: String,
    /// Where credentials come from.
    pub credentials: CredentialSource,
}

/// A target the operator cannot use as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.publish[{index}] ({url}): {message}")]
pub struct TargetError {
    /// Position in `spec.publish`.
    pub index: usize,
    /// The URL as written (cut to 200 characters).
    pub url: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// What the targets of one policy need from the rest of the spec.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The adapter.
    pub mode: Mode,
    /// `spec.issuer`.
    pub issuer: Option<&'a str>,
    /// The `max-age` the JWKS listener serves (default `Cache-Control`).
    pub max_age: u64,
    /// `jwksPath` when a target has none.
    pub default_jwks_path: &'a str,
}

// === impl Target ===

impl Target {
    /// The object path of the JWK Set.
    pub fn jwks_object(&self) -> String {
        join(&self.prefix, &self.jwks_path)
    }

    /// The object path of the discovery document.
    pub fn discovery_object(&self) -> String {
        join(&self.prefix, DISCOVERY_PATH)
    }
}

fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_owned()
    } else {
        format!("{prefix}/{path}")
    }
}

/// Resolves every target of a spec, checking what the schema cannot (or
/// what a policy file or an object created before a CRD upgrade may lack).
pub fn resolve(targets: &[PublishTarget], cx: Context<'_>) -> Result<Vec<Target>, TargetError> {
    if targets.len() > MAX_TARGETS {
        return Err(TargetError {
            index: MAX_TARGETS,
            url: targets[MAX_TARGETS].url.chars().take(200).collect(),
            message: format!("at most {MAX_TARGETS} targets"),
        });
    }
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for (index, t) in targets.iter().enumerate() {
        let target = resolve_one(t, cx).map_err(|message| TargetError {
            index,
            url: t.url.chars().take(200).collect(),
            message,
        })?;
        if out.iter().any(|o| o.url == target.url) {
            return Err(TargetError {
                index,
                url: target.url,
                message: "the same url appears twice".into(),
            });
        }
        out.push(target);
    }
    Ok(out)
}

fn resolve_one(t: &PublishTarget, cx: Context<'_>) -> Result<Target, String> {
    let (scheme, rest) = match t.url.split_once("://") {
        Some(("s3", rest)) => (Scheme::S3, rest),
        Some(("az" | "azure", rest)) => (Scheme::Azure, rest),
        Some(("gs", rest)) => (Scheme::Gcs, rest),
        Some(("file", rest)) => (Scheme::File, rest),
        Some((other, _)) => {
            return Err(format!(
                "unknown scheme {:?}; use s3://, az://, azure://, gs:// or file://",
                other.chars().take(20).collect::<String>()
            ));
        }
        None => {
            return Err(
                "not a URL; use s3://bucket/prefix, az://container/prefix, gs://bucket/prefix or file:///path"
                    .into(),
            );
        }
    };
    let (bucket, prefix) = if scheme == Scheme::File {
        if cx.mode == Mode::Kubernetes {
            return Err("file:// targets exist only in standalone mode and for the signer".into());
        }
        let Some(path) = rest.strip_prefix('/') else {
            return Err("a file URL must be absolute: file:///path".into());
        };
        if path.split('/').any(|s| s == "..") {
            return Err("the path must not contain '..'".into());
        }
        (format!("/{}", path.trim_end_matches('/')), String::new())
    } else {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(format!(
                "{:?} is not a bucket or container name (3-63 lowercase letters, digits, '.' and '-')",
                bucket.chars().take(70).collect::<String>()
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() && !prefix.split('/').all(valid_segment) {
            return Err(
                "the prefix must be '/'-separated segments of letters, digits and ._~-, none empty, '.' or '..'"
                    .into(),
            );
        }
        (bucket.to_owned(), prefix.to_owned())
    };
    let jwks_path = t
        .jwks_path
        .clone()
        .unwrap_or_else(|| cx.default_jwks_path.to_owned());
    if !jwks_path.split('/').all(valid_segment) || jwks_path.starts_with('.') {
        return Err(format!(
            "jwksPath {:?} must be a relative path of segments of letters, digits and ._~- not starting with '.'",
            jwks_path.chars().take(100).collect::<String>()
        ));
    }
    let discovery = t.discovery.unwrap_or(cx.issuer.is_some());
    if discovery {
        match cx.issuer {
            None => return Err("discovery needs spec.issuer".into()),
            Some(i) if i.ends_with('/') || i.contains(['?', '#']) => {
                return Err(
                    "with discovery, spec.issuer must not end with '/' nor carry a query or fragment (the jwks_uri is issuer + '/' + jwksPath)"
                        .into(),
                );
            }
            Some(_) => {}
        }
    }
    let cache_control = match &t.cache_control {
        Some(c)
            if c.is_empty() || c.len() > 256 || !c.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
        {
            return Err("cacheControl must be 1-256 printable ASCII characters".into());
        }
        Some(c) => c.clone(),
        None => format!("public, max-age={}", cx.max_age),
    };
    let credentials = match (&t.credentials_secret, &t.credentials_file, cx.mode) {
        (Some(_), Some(_), _) => {
            return Err("set credentialsSecret or credentialsFile, not both".into());
        }
        (Some(_), None, Mode::Local) => {
            return Err(
                "credentialsSecret applies in Kubernetes; use credentialsFile in standalone mode and for the signer"
                    .into(),
            );
        }
        (None, Some(_), Mode::Kubernetes) => {
            return Err(
                "credentialsFile applies in standalone mode and for the signer; use credentialsSecret in Kubernetes"
                    .into(),
            );
        }
        (Some(s), None, Mode::Kubernetes) => {
            if !names::is_dns_subdomain(s) {
                return Err(format!(
                    "credentialsSecret {s:?} is not a valid Secret name"
                ));
            }
            CredentialSource::Secret(s.clone())
        }
        (None, Some(f), Mode::Local) => CredentialSource::File(PathBuf::from(f)),
        (None, None, _) => CredentialSource::Ambient,
    };
    if scheme == Scheme::File && credentials != CredentialSource::Ambient {
        return Err("a file:// target takes no credentials".into());
    }
    Ok(Target {
        url: t.url.clone(),
        scheme,
        bucket,
        prefix,
        jwks_path,
        discovery,
        cache_control,
        credentials,
    })
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && !b.starts_with(['.', '-'])
        && !b.ends_with(['.', '-'])
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._~-".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> PublishTarget {
        PublishTarget {
            url: url.into(),
            ..Default::default()
        }
    }

    fn cx(mode: Mode, issuer: Option<&str>) -> Context<'_> {
        Context {
            mode,
            issuer,
            max_age: 300,
            default_jwks_path: DEFAULT_JWKS_PATH,
        }
    }

    #[test]
    fn parses_each_scheme_with_bucket_prefix_and_object_paths() {
        let got = resolve(
            &[
                t("s3://my-bucket/team/a/"),
                t("az://cont"),
                t("azure://cont2/p"),
                t("gs://b.example/x"),
                t("file:///srv/www/jwks/"),
            ],
            cx(Mode::Local, None),
        )
        .unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|t| {
                (
                    t.scheme,
                    t.bucket.as_str(),
                    t.prefix.as_str(),
                    t.jwks_object(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    Scheme::S3,
                    "my-bucket",
                    "team/a",
                    "team/a/jwks.json".to_owned()
                ),
                (Scheme::Azure, "cont", "", "jwks.json".to_owned()),
                (Scheme::Azure, "cont2", "p", "p/jwks.json".to_owned()),
                (Scheme::Gcs, "b.example", "x", "x/jwks.json".to_owned()),
                (Scheme::File, "/srv/www/jwks", "", "jwks.json".to_owned()),
            ]
        );
        assert_eq!(
            got[0].discovery_object(),
            "team/a/.well-known/openid-configuration"
        );
        assert_eq!(got[0].cache_control, "public, max-age=300");
        assert!(!got[0].discovery, "no issuer, no discovery by default");
    }

    #[test]
    fn discovery_defaults_on_with_an_issuer_and_jwks_path_is_settable() {
        let mut target = t("s3://bucket/p");
        target.jwks_path = Some(KUBE_JWKS_PATH.into());
        let got = resolve(&[target], cx(Mode::Local, Some("https://bucket.example/p"))).unwrap();
        assert!(got[0].discovery);
        assert_eq!(got[0].jwks_object(), "p/openid/v1/jwks");
    }

    #[test]
    fn refuses_what_cannot_work_with_a_message_naming_the_target() {
        let cases: Vec<(PublishTarget, Mode, Option<&str>, &str)> = vec![
            (t("ftp://bucket/x"), Mode::Local, None, "unknown scheme"),
            (t("bucket/x"), Mode::Local, None, "not a URL"),
            (t("s3://B/x"), Mode::Local, None, "bucket or container"),
            (t("s3://bucket/a//b"), Mode::Local, None, "prefix"),
            (t("s3://bucket/a/../b"), Mode::Local, None, "prefix"),
            (t("file:///srv/x"), Mode::Kubernetes, None, "standalone"),
            (t("file://relative"), Mode::Local, None, "absolute"),
            (
                PublishTarget {
                    discovery: Some(true),
                    ..t("s3://bucket")
                },
                Mode::Local,
                None,
                "needs spec.issuer",
            ),
            (
                t("s3://bucket"),
                Mode::Local,
                Some("https://x.example/"),
                "must not end",
            ),
            (
                PublishTarget {
                    credentials_secret: Some("s".into()),
                    ..t("s3://bucket")
                },
                Mode::Local,
                None,
                "credentialsFile",
            ),
            (
                PublishTarget {
                    credentials_file: Some("/f".into()),
                    ..t("s3://bucket")
                },
                Mode::Kubernetes,
                None,
                "credentialsSecret",
            ),
            (
                PublishTarget {
                    jwks_path: Some("../x".into()),
                    ..t("s3://bucket")
                },
                Mode::Local,
                None,
                "jwksPath",
            ),
            (
                PublishTarget {
                    cache_control: Some("a\r\nx-evil: 1".into()),
                    ..t("s3://bucket")
                },
                Mode::Local,
                None,
                "cacheControl",
            ),
        ];
        for (target, mode, issuer, want) in cases {
            let url = target.url.clone();
            let err = resolve(&[target], cx(mode, issuer)).unwrap_err();
            assert!(err.to_string().contains(want), "{url}: {err}");
            assert!(err.to_string().starts_with("spec.publish[0]"), "{err}");
        }
        let dup = resolve(
            &[t("s3://bucket/a"), t("s3://bucket/a")],
            cx(Mode::Local, None),
        );
        assert!(dup.unwrap_err().message.contains("twice"));
        let many: Vec<_> = (0..9).map(|i| t(&format!("s3://bucket/{i}"))).collect();
        assert!(resolve(&many, cx(Mode::Local, None)).is_err());
    }
}
