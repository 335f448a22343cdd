//! One published copy: write, read back, compare by digest, repair. Every
//! write is conditional (create-only when the object is absent, If-Match on
//! the ETag or the generation otherwise; a precondition failure re-reads and
//! retries), every call has a deadline, and nothing is skipped because it
//! equals the last write: what decides is what a read shows now.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, ObjectStore, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use super::credentials::Credentials;
use super::documents::{CONTENT_TYPE, DIGEST_METADATA, Documents, Object, kids_of, sha256_hex};
use super::target::{CredentialSource, Scheme, Target};

/// Default deadline of one storage call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of read → conditional write → read back per object before the
/// copy is reported as contended.
const ATTEMPTS: usize = 4;

/// Why a copy could not be confirmed. `message` names the target and the
/// failing operation, never a credential value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// For the user: the operation, the object and what the store said.
    pub message: String,
}

/// The class of a [`PublishError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The target or its credentials cannot be used as configured.
    Config,
    /// The bucket or container does not exist.
    NoBucket,
    /// The store refused the credentials (401).
    Unauthenticated,
    /// The store refused the operation (403).
    Denied,
    /// The store did not answer within the deadline.
    Timeout,
    /// Other writers kept changing the object.
    Contended,
    /// Anything else the store answered.
    Failed,
}

/// What a successful [`Copy::sync`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Hex SHA-256 of the JWK Set the copy now holds (read back).
    pub sha256: String,
    /// kids of the JWK Set the copy now holds (read back).
    pub kids: Vec<String>,
    /// Paths of the objects this call wrote (empty when the copy already
    /// held the documents).
    pub wrote: Vec<String>,
}

/// What a read of a copy shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sha256: String,
    meta_ok: bool,
    version: UpdateVersion,
}

/// A publication target with its store client.
#[derive(Debug, Clone)]
pub struct Copy {
    target: Target,
    store: Arc<dyn ObjectStore>,
    conditional: bool,
    attributes: bool,
    timeout: Duration,
    credentials: Credentials,
}

// === impl Copy ===

impl Copy {
    /// A client for `target` with `credentials` (required unless the
    /// target's source is [`CredentialSource::Ambient`], in which case the
    /// process's own are used) and a per-call deadline.
    pub fn connect(
        target: &Target,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Result<Copy, PublishError> {
        let creds = credentials.clone().unwrap_or_default();
        let config_err = |e: object_store::Error| PublishError {
            kind: ErrorKind::Config,
            message: creds.scrub(&format!("{}: cannot configure the client: {e}", target.url)),
        };
        // The client's own deadlines are a backstop: the per-call deadline
        // (`tokio::time::timeout`) fires first and names itself.
        let client = ClientOptions::new()
            .with_timeout(timeout * 2)
            .with_connect_timeout(timeout);
        let retry = RetryConfig {
            max_retries: 1,
            retry_timeout: timeout,
            ..Default::default()
        };
        let explicit = target.credentials != CredentialSource::Ambient;
        let store: Arc<dyn ObjectStore> = match target.scheme {
            Scheme::S3 => {
                use object_store::aws::AmazonS3Builder;
                let mut b = if explicit {
                    AmazonS3Builder::new()
                } else {
                    AmazonS3Builder::from_env()
                };
                b = b.with_bucket_name(&target.bucket);
                if let Some(v) = creds.get("AWS_ACCESS_KEY_ID") {
                    b = b.with_access_key_id(v);
                }
                if let Some(v) = creds.get("AWS_SECRET_ACCESS_KEY") {
                    b = b.with_secret_access_key(v);
                }
                if let Some(v) = creds.get("AWS_SESSION_TOKEN") {
                    b = b.with_token(v);
                }
                if let Some(v) = creds
                    .get("AWS_REGION")
                    .or_else(|| creds.get("AWS_DEFAULT_REGION"))
                {
                    b = b.with_region(v);
                }
                let endpoint = creds
                    .get("AWS_ENDPOINT_URL_S3")
                    .or_else(|| creds.get("AWS_ENDPOINT_URL"));
                if let Some(v) = endpoint {
                    b = b
                        .with_endpoint(v)
                        .with_allow_http(v.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let client = if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    client.with_allow_http(true)
                } else {
                    client
                };
                Arc::new(
                    b.with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                        .with_client_options(client)
                        .with_retry(retry)
                        .build()
                        .map_err(config_err)?,
                )
            }
            Scheme::Azure => {
                use object_store::azure::MicrosoftAzureBuilder;
                let mut b = if explicit {
                    MicrosoftAzureBuilder::new()
                } else {
                    MicrosoftAzureBuilder::from_env()
                };
                b = b.with_container_name(&target.bucket);
                if let Some(v) = creds.get("AZURE_STORAGE_ACCOUNT_NAME") {
                    b = b.with_account(v);
                }
                if let Some(v) = creds.get("AZURE_STORAGE_ACCOUNT_KEY") {
                    b = b.with_access_key(v);
                }
                let endpoint = creds.get("AZURE_STORAGE_ENDPOINT");
                if let Some(v) = endpoint {
                    b = b
                        .with_endpoint(v.to_owned())
                        .with_allow_http(v.starts_with("http://"));
                }
                let client = if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    client.with_allow_http(true)
                } else {
                    client
                };
                Arc::new(
                    b.with_client_options(client)
                        .with_retry(retry)
                        .build()
                        .map_err(config_err)?,
                )
            }
            Scheme::Gcs => {
                use object_store::gcp::GoogleCloudStorageBuilder;
                let mut b = if explicit {
                    GoogleCloudStorageBuilder::new()
                } else {
                    GoogleCloudStorageBuilder::from_env()
                };
                b = b.with_bucket_name(&target.bucket);
                if let Some(v) = creds.get("GOOGLE_SERVICE_ACCOUNT_KEY") {
                    b = b.with_service_account_key(v);
                }
                Arc::new(
                    b.with_client_options(client)
                        .with_retry(retry)
                        .build()
                        .map_err(config_err)?,
                )
            }
            Scheme::File => {
                // One writer by construction (the state directory's owner):
                // atomic replacement (temp file, rename), no preconditions or
                // attributes, which a directory does not keep.
                std::fs::create_dir_all(&target.bucket).map_err(|e| PublishError {
                    kind: ErrorKind::Failed,
                    message: format!("{}: cannot create the directory: {e}", target.url),
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&target.bucket)
                    .map_err(config_err)?;
                return Ok(Copy {
                    target: target.clone(),
                    store: Arc::new(fs),
                    conditional: false,
                    attributes: false,
                    timeout,
                    credentials: creds,
                });
            }
        };
        Ok(Copy {
            target: target.clone(),
            store,
            conditional: true,
            attributes: true,
            timeout,
            credentials: creds,
        })
    }

    /// A copy over any store (tests: `object_store::memory::InMemory`, which
    /// supports conditional writes and attributes like the cloud stores).
    pub fn with_store(target: &Target, store: Arc<dyn ObjectStore>, timeout: Duration) -> Copy {
        Copy {
            target: target.clone(),
            store,
            conditional: true,
            attributes: true,
            timeout,
            credentials: Credentials::default(),
        }
    }

    /// The target this copy writes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Makes the copy hold `docs`: each object is read; when its content
    /// digest, `Content-Type`, `Cache-Control` or digest metadata differ
    /// from what is intended (or it is missing) it is written conditionally
    /// on the version read, then read back. A precondition failure (another
    /// writer) re-reads and retries. Succeeds only when a read shows every
    /// object as intended.
    pub async fn sync(&self, docs: &Documents) -> Result<Synced, PublishError> {
        let mut wrote = Vec::new();
        for object in &docs.objects {
            if self.sync_object(object).await? {
                wrote.push(object.path.clone());
            }
        }
        Ok(Synced {
            sha256: docs.jwks_sha256().to_owned(),
            kids: docs.kids.clone(),
            wrote,
        })
    }

    /// The kids the copy's JWK Set lists now (`None` when it is absent or
    /// not a JWK Set).
    pub async fn read_kids(&self) -> Result<Option<Vec<String>>, PublishError> {
        let path = self.path(&self.target.jwks_object())?;
        Ok(self.read(&path).await?.and_then(|(body, _)| kids_of(&body)))
    }

    async fn sync_object(&self, object: &Object) -> Result<bool, PublishError> {
        let path = self.path(&object.path)?;
        let mut wrote = false;
        for _ in 0..ATTEMPTS {
            let seen = self.seen(&path).await?;
            if let Some(s) = &seen
                && s.sha256 == object.sha256
                && s.meta_ok
            {
                return Ok(wrote);
            }
            let mode = match (&seen, self.conditional) {
                (_, false) => PutMode::Overwrite,
                (None, true) => PutMode::Create,
                (Some(s), true) => PutMode::Update(s.version.clone()),
            };
            let opts = PutOptions {
                mode,
                attributes: self.attributes_for(object),
                ..Default::default()
            };
            let put = self
                .store
                .put_opts(&path, PutPayload::from_bytes(object.body.clone()), opts);
            match tokio::time::timeout(self.timeout, put).await {
                Err(_) => return Err(self.timeout_error("write", &object.path)),
                Ok(Ok(_)) => wrote = true,
                // Another writer got there first: read again and decide again.
                Ok(Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                )) => {}
                Ok(Err(e)) => return Err(self.store_error("write", &object.path, e)),
            }
        }
        Err(PublishError {
            kind: ErrorKind::Contended,
            message: format!(
                "{}: {} kept changing under {ATTEMPTS} conditional writes (another writer?)",
                self.target.url, object.path
            ),
        })
    }

    fn attributes_for(&self, object: &Object) -> Attributes {
        if !self.attributes {
            return Attributes::new();
        }
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, AttributeValue::from(CONTENT_TYPE));
        a.insert(
            Attribute::CacheControl,
            AttributeValue::from(self.target.cache_control.clone()),
        );
        a.insert(
            Attribute::Metadata(DIGEST_METADATA.into()),
            AttributeValue::from(object.sha256.clone()),
        );
        a
    }

    async fn seen(&self, path: &Path) -> Result<Option<Seen>, PublishError> {
        let Some((body, got)) = self.read(path).await? else {
            return Ok(None);
        };
        let sha256 = sha256_hex(&body);
        let meta_ok = !self.attributes || {
            let attr = |k: &Attribute| got.1.get(k).map(|v| v.as_ref().to_owned());
            attr(&Attribute::ContentType).as_deref() == Some(CONTENT_TYPE)
                && attr(&Attribute::CacheControl).as_deref()
                    == Some(self.target.cache_control.as_str())
                && attr(&Attribute::Metadata(DIGEST_METADATA.into())).as_deref()
                    == Some(sha256.as_str())
        };
        Ok(Some(Seen {
            sha256,
            meta_ok,
            version: got.0,
        }))
    }

    async fn read(
        &self,
        path: &Path,
    ) -> Result<Option<(bytes::Bytes, (UpdateVersion, Attributes))>, PublishError> {
        let what = path.as_ref().to_owned();
        let call = async {
            let r = self.store.get_opts(path, GetOptions::default()).await?;
            let version = UpdateVersion {
                e_tag: r.meta.e_tag.clone(),
                version: r.meta.version.clone(),
            };
            let attributes = r.attributes.clone();
            let body = r.bytes().await?;
            Ok::<_, object_store::Error>((body, (version, attributes)))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(self.timeout_error("read", &what)),
            Ok(Ok(got)) => Ok(Some(got)),
            Ok(Err(object_store::Error::NotFound { .. })) => Ok(None),
            Ok(Err(e)) => Err(self.store_error("read", &what, e)),
        }
    }

    fn path(&self, p: &str) -> Result<Path, PublishError> {
        Path::parse(p).map_err(|e| PublishError {
            kind: ErrorKind::Config,
            message: format!("{}: invalid object path {p:?}: {e}", self.target.url),
        })
    }

    fn timeout_error(&self, op: &str, what: &str) -> PublishError {
        PublishError {
            kind: ErrorKind::Timeout,
            message: format!(
                "{}: {op} of {what} did not complete within {}s",
                self.target.url,
                self.timeout.as_secs_f64()
            ),
        }
    }

    fn store_error(&self, op: &str, what: &str, e: object_store::Error) -> PublishError {
        let text = e.to_string();
        let kind = classify(&e, &text);
        let summary = match kind {
            ErrorKind::NoBucket => "the bucket or container does not exist",
            ErrorKind::Unauthenticated => "the store refused the credentials",
            ErrorKind::Denied => "access denied",
            _ => "the store answered an error",
        };
        // The store's text can be long (an XML body); keep the start,
        // without the request's duration.
        let detail: String = stable(&text).chars().take(300).collect();
        PublishError {
            kind,
            message: self.credentials.scrub(&format!(
                "{}: {op} of {what}: {summary} ({detail})",
                self.target.url
            )),
        }
    }
}

/// The part of a store's error text that is the same on every retry of the
/// same failure: without the request's duration and without anything from
/// a request id on (S3's `<RequestId>`, Azure's `RequestId:`, followed by
/// times and host ids).
fn stable(text: &str) -> String {
    let text = without_durations(text);
    match text.find("RequestId") {
        Some(at) => text[..at].trim_end_matches(['<', ' ', '\n']).to_owned(),
        None => text,
    }
}

/// `text` without the durations the HTTP client puts in its errors
/// (`Error performing GET … in 5.895503ms - …`): the same failure must read
/// the same on every retry, or each pass would report a new problem (a
/// status write, an Event and a WARN line every 5 s).
fn without_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" in ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let number = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(after.len());
        let unit = ["ns", "µs", "us", "ms", "s"]
            .iter()
            .find(|u| number > 0 && after[number..].starts_with(**u))
            .filter(|u| {
                after[number + u.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric())
            });
        match unit {
            Some(u) => rest = &after[number + u.len()..],
            None => {
                out.push_str(" in ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The kind of a store's error. The store's own error code wins over the
/// HTTP status `object_store` maps: S3 answers wrong keys
/// (`SignatureDoesNotMatch`, `InvalidAccessKeyId`) with 403, which the
/// crate reports as `PermissionDenied`, but the fix is other keys, not
/// other permissions.
fn classify(e: &object_store::Error, text: &str) -> ErrorKind {
    if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("AuthenticationFailed")
    {
        return ErrorKind::Unauthenticated;
    }
    match e {
        object_store::Error::PermissionDenied { .. } => ErrorKind::Denied,
        object_store::Error::Unauthenticated { .. } => ErrorKind::Unauthenticated,
        _ if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") => {
            ErrorKind::NoBucket
        }
        _ if text.contains("AccessDenied") || text.contains("403") => ErrorKind::Denied,
        _ => ErrorKind::Failed,
    }
}

#[cfg(test)]
mod tests;
