// Over 600 lines on purpose: one binding of AWS KMS (client set-up, the
// bounded retrying call, generation, signing, deletion, adoption) whose
// calls share the process's KMS runtime, the in-flight limit and the
// throttling counter; the pure parts (key specs, digests, DER and SPKI
// conversions, the backoff schedule) are unit-tested at the end.

//! The AWS KMS key provider: asymmetric KMS keys made and used through the
//! official SDK (`aws-sdk-kms`, SigV4 and the credential chain from
//! `aws-config`). The private half never leaves KMS.
//!
//! # Design
//!
//! - **Client**: one per policy's (region, endpoint, credentials), built
//!   with the SDK's own retries off (this module retries, below) and with
//!   explicit timeouts: connect [`CONNECT_TIMEOUT`], each attempt
//!   [`ATTEMPT_TIMEOUT`], and the whole call, retries and the wait for a
//!   place included, [`CALL_BUDGET`], which is well under the 10 s
//!   kube-apiserver gives its external signer. Credentials are the static
//!   ones given (`credentialsFile`, `credentialsSecret`) or else the
//!   ambient chain (environment, IRSA web identity, ECS/instance profile).
//! - **Calls** are async SDK calls driven on one process-wide runtime
//!   thread ([`runtime`]); the blocking methods here wait for them, and
//!   async callers run those on the blocking pool
//!   (`keys::material::sign_off_workers`). At most [`MAX_IN_FLIGHT`] calls
//!   run at once per provider.
//! - **Retries**: a `ThrottlingException` (and KMS's transient internal and
//!   dependency errors, and a request that could not be sent) is tried
//!   again after [`backoff`] (exponential, jittered) while the call's budget
//!   lasts; every throttled answer counts in
//!   `jwks_operator_key_provider_throttled_total{provider="AWSKMS"}`.
//! - **Generation**: `CreateKey` (`SIGN_VERIFY`, the key spec of the
//!   algorithm, a description and a `jwks-operator/policy` tag naming the
//!   policy), then `GetPublicKey` once: its DER SubjectPublicKeyInfo becomes
//!   the public JWK and the kid its RFC 7638 thumbprint. A test message is
//!   signed and verified. If anything after `CreateKey` fails, the new key's
//!   deletion is scheduled, so a failed generation leaves no usable
//!   half-made key.
//! - **Reference**: the full key ARN (`arn:aws:kms:<region>:<account>:key/<id>`),
//!   never an alias: it pins the key.
//! - **Signing**: `Sign` with the ARN, `MessageType=DIGEST` over a digest
//!   computed here, and the algorithm's `SigningAlgorithm` (ECDSA_SHA_*,
//!   RSASSA_PKCS1_V1_5_SHA_*, RSASSA_PSS_SHA_*: KMS's PSS uses MGF1 with the
//!   same hash and a salt of the hash length, as JWS PS* wants). ECDSA's DER
//!   is converted to fixed-width `r‖s`. Every signature is verified with
//!   the cached public key before it is returned; the public key is never
//!   fetched per signature.
//! - **Deletion**: `ScheduleKeyDeletion` with the shortest window KMS
//!   allows, [`PENDING_WINDOW_DAYS`] days. A key already gone or already
//!   pending deletion is not an error.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec, Tag};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};

use super::reference::{AWSKMS, KmsArn, ProviderError};
use crate::api;
use crate::keys::alg::{Algorithm, KeyParams};
use crate::keys::lifecycle::KeySource;
use crate::keys::material::{RemoteSigner, SigningKey, VerifyingKey, jwk_thumbprint};
use crate::keys::redacted::RedactedString;
use crate::publish::credentials::Credentials;

/// The deletion window of a pruned key: the shortest KMS allows.
pub const PENDING_WINDOW_DAYS: i32 = 7;
/// Longest wait for a TCP (and TLS) connection to KMS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one attempt of a call may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a whole call may take, waiting for a place and retries
/// included: under kube-apiserver's 10 s deadline for its external signer.
pub const CALL_BUDGET: Duration = Duration::from_secs(5);
/// Most calls in flight per provider.
pub const MAX_IN_FLIGHT: usize = 16;
/// Most attempts of one call.
pub const MAX_ATTEMPTS: u32 = 5;
/// The first retry's wait before jitter; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// The tag naming the policy a key was made for.
pub const POLICY_TAG: &str = "jwks-operator/policy";
/// What a new key signs (and verifies) before it is accepted.
const SELF_TEST_MESSAGE: &[u8] = b"jwks-operator key self-test";

// === throttling counter ===

/// The labels of `jwks_operator_key_provider_throttled_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `AWSKMS`.
    pub provider: &'static str,
}

/// Throttled answers from key providers, by provider: registered by the
/// metrics module as `jwks_operator_key_provider_throttled_total`.
pub fn throttled_counter() -> &'static Family<ProviderLabels, Counter> {
    static THROTTLED: OnceLock<Family<ProviderLabels, Counter>> = OnceLock::new();
    THROTTLED.get_or_init(|| {
        let family = Family::default();
        // Present at 0 before the first throttle.
        let _ = family.get_or_create(&ProviderLabels { provider: AWSKMS });
        family
    })
}

// === configuration ===

/// Static AWS credentials (from `credentialsFile` or `credentialsSecret`).
#[derive(Clone)]
pub struct StaticCredentials {
    access_key_id: String,
    secret_access_key: RedactedString,
    session_token: Option<RedactedString>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticCredentials(<redacted>)")
    }
}

impl StaticCredentials {
    /// The AWS keys of an environment-style credentials map
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
    /// `AWS_SESSION_TOKEN`). The error names the missing key, never a value.
    pub fn from_credentials(c: &Credentials) -> Result<Self, ProviderError> {
        let missing = |key: &str| ProviderError::Call {
            provider: AWSKMS,
            token: String::new(),
            op: "read the credentials",
            code: format!(
                "{key} is missing (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together)"
            ),
        };
        Ok(StaticCredentials {
            access_key_id: c
                .get("AWS_ACCESS_KEY_ID")
                .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?
                .to_owned(),
            secret_access_key: RedactedString::new(
                c.get("AWS_SECRET_ACCESS_KEY")
                    .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?
                    .to_owned(),
            ),
            session_token: c
                .get("AWS_SESSION_TOKEN")
                .map(|t| RedactedString::new(t.to_owned())),
        })
    }
}

/// Where a policy's KMS keys are made, and as whom.
#[derive(Clone, Debug)]
pub struct KmsConfig {
    /// The region of the keys.
    pub region: String,
    /// Another endpoint than the region's (a VPC endpoint, a local KMS).
    pub endpoint: Option<String>,
    /// Static credentials; `None`: the ambient chain.
    pub credentials: Option<StaticCredentials>,
    /// `namespace/name` of the policy, for the keys' tag and description.
    pub policy: String,
}

impl KmsConfig {
    /// The configuration a policy's `keyProvider` names, with the
    /// credentials the adapter read (`credentialsSecret` in Kubernetes,
    /// `credentialsFile` otherwise; `None` for the ambient ones).
    pub fn from_spec(
        spec: &api::KeyProvider,
        credentials: Option<&Credentials>,
        policy: &str,
    ) -> Result<Self, ProviderError> {
        if spec.kind != api::KeyProviderType::AwsKms {
            return Err(ProviderError::BadReference(
                "not an AWSKMS keyProvider".into(),
            ));
        }
        let region = spec.region.clone().ok_or_else(|| ProviderError::Call {
            provider: AWSKMS,
            token: String::new(),
            op: "set up the key provider",
            code: "keyProvider AWSKMS needs region".into(),
        })?;
        Ok(KmsConfig {
            region,
            endpoint: spec.endpoint.clone(),
            credentials: credentials
                .map(StaticCredentials::from_credentials)
                .transpose()?,
            policy: policy.to_owned(),
        })
    }
}

// === runtime ===

/// The runtime driving every KMS call of the process: one thread, whatever
/// thread the caller blocks on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kms")
            .enable_all()
            .build()
            .expect("the KMS runtime starts")
    })
}

/// Runs `fut` on the KMS runtime and waits for it (never panics for being
/// called from inside another runtime).
fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

// === impl KmsProvider ===

/// Open providers by (region, endpoint, policy).
type Providers = Mutex<HashMap<(String, Option<String>, String), Arc<KmsProvider>>>;
static PROVIDERS: OnceLock<Providers> = OnceLock::new();

/// One policy's KMS: a client for its region (and endpoint), as whom it
/// was configured.
pub struct KmsProvider {
    client: aws_sdk_kms::Client,
    region: String,
    policy: String,
    credentials: Option<StaticCredentials>,
    gate: Arc<tokio::sync::Semaphore>,
    /// The accounts of the keys this provider has read: how a key read
    /// back from a stored set finds the provider (the credentials) that
    /// reaches it when several share a region.
    accounts: Mutex<std::collections::BTreeSet<String>>,
    /// When a call last succeeded (ms since the KMS runtime started), to
    /// prefer a provider that works among several that could serve a key.
    last_ok: Arc<std::sync::atomic::AtomicU64>,
}

/// Milliseconds since the first KMS call of the process.
fn now_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Whether two sets of static credentials are the same (the secrets
/// compared in constant time).
fn same(a: &Option<StaticCredentials>, b: &Option<StaticCredentials>) -> bool {
    let eq = |x: &str, y: &str| {
        aws_lc_rs::constant_time::verify_slices_are_equal(x.as_bytes(), y.as_bytes()).is_ok()
    };
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.access_key_id == b.access_key_id
                && eq(a.secret_access_key.expose(), b.secret_access_key.expose())
                && match (&a.session_token, &b.session_token) {
                    (None, None) => true,
                    (Some(x), Some(y)) => eq(x.expose(), y.expose()),
                    _ => false,
                }
        }
        _ => false,
    }
}

impl fmt::Debug for KmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsProvider")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What went wrong with one attempt, for retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `ThrottlingException`: back off and retry, and count it.
    Throttled,
    /// Transient on KMS's side or the network's: back off and retry.
    Transient,
    /// Anything else: fail now.
    Fatal,
}

/// How an attempt that failed with KMS error `code` (`None`: no answer was
/// read) is handled.
fn classify(code: Option<&str>, sent: bool) -> Class {
    match code {
        Some("ThrottlingException" | "ThrottledException" | "TooManyRequestsException") => {
            Class::Throttled
        }
        Some("KMSInternalException" | "DependencyTimeoutException" | "InternalFailure") => {
            Class::Transient
        }
        Some(_) => Class::Fatal,
        None if !sent => Class::Transient,
        None => Class::Transient,
    }
}

/// The wait before attempt `attempt + 1` (0-based `attempt` failed):
/// `BACKOFF_BASE * 2^attempt`, capped at `BACKOFF_CAP`, times a factor
/// between 0.5 and 1 from `jitter` (in `[0, 1)`), so that clients throttled
/// together do not come back together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let full = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

impl KmsProvider {
    /// The provider for `config`: a client for its region and endpoint,
    /// registered so that keys read back from a stored set find it by the
    /// region in their ARN. Builds no connection yet.
    pub fn open(config: &KmsConfig) -> Result<Arc<Self>, ProviderError> {
        let key = (
            config.region.clone(),
            config.endpoint.clone(),
            config.policy.clone(),
        );
        if let Some(open) = PROVIDERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|p| same(&p.credentials, &config.credentials))
        {
            return Ok(open.clone());
        }
        let cfg = config.clone();
        let client = block_on(async move {
            use aws_config::retry::RetryConfig;
            use aws_config::timeout::TimeoutConfig;
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(cfg.region.clone()))
                // This module retries (throttling, transient errors) within
                // the call's budget; the SDK's own retries would hide them.
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                        .operation_timeout(CALL_BUDGET)
                        .build(),
                );
            if let Some(endpoint) = &cfg.endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            if let Some(c) = &cfg.credentials {
                loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                    c.access_key_id.clone(),
                    c.secret_access_key.expose().clone(),
                    c.session_token.as_ref().map(|t| t.expose().clone()),
                    None,
                    "keyProvider credentials",
                ));
            }
            aws_sdk_kms::Client::new(&loader.load().await)
        })
        .ok_or_else(|| ProviderError::ModuleLoad {
            provider: AWSKMS,
            module: "aws-sdk-kms".into(),
            detail: "the KMS client could not be set up".into(),
        })?;
        let provider = Arc::new(KmsProvider {
            client,
            region: config.region.clone(),
            policy: config.policy.clone(),
            credentials: config.credentials.clone(),
            gate: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            accounts: Mutex::default(),
            last_ok: Arc::default(),
        });
        PROVIDERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, provider.clone());
        Ok(provider)
    }

    /// A provider this process has opened for the key `arn` names, if any:
    /// how a key read back from a stored set finds its KMS. Among the
    /// providers of its region, one that has read a key of its account is
    /// preferred, then the one whose calls succeeded last.
    pub fn find_open(arn: &KmsArn) -> Option<Arc<Self>> {
        let providers = PROVIDERS.get()?.lock().unwrap_or_else(|e| e.into_inner());
        let in_region = providers
            .iter()
            .filter(|((r, _, _), _)| *r == arn.region)
            .map(|(_, p)| p);
        let knows = |p: &KmsProvider| {
            p.accounts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&arn.account)
        };
        in_region
            .max_by_key(|p| {
                (
                    knows(p),
                    p.last_ok.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .cloned()
    }

    /// The region of the keys.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Runs one KMS operation (`call` builds and sends it) within
    /// [`CALL_BUDGET`], with a place among [`MAX_IN_FLIGHT`], retrying
    /// throttled and transient failures after [`backoff`].
    fn call<T, E, F, Fut>(
        &self,
        op: &'static str,
        subject: &str,
        call: F,
    ) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: Fn(aws_sdk_kms::Client) -> Fut + Send + 'static,
        Fut:
            Future<Output = Result<T, SdkError<E, aws_sdk_kms::config::http::HttpResponse>>> + Send,
    {
        let client = self.client.clone();
        let gate = self.gate.clone();
        let last_ok = self.last_ok.clone();
        let subject_owned = subject.to_owned();
        let failed = move |code: String| ProviderError::Call {
            provider: AWSKMS,
            token: subject_owned.clone(),
            op,
            code,
        };
        let outcome = block_on(async move {
            let deadline = tokio::time::Instant::now() + CALL_BUDGET;
            let Ok(Ok(_place)) = tokio::time::timeout_at(deadline, gate.acquire()).await else {
                return Err(failed(format!(
                    "Busy: {MAX_IN_FLIGHT} calls in flight for {CALL_BUDGET:?}"
                )));
            };
            let mut attempt = 0;
            loop {
                let result = tokio::time::timeout_at(deadline, call(client.clone())).await;
                let error = match result {
                    Ok(Ok(out)) => {
                        last_ok.store(now_ms().max(1), std::sync::atomic::Ordering::Relaxed);
                        return Ok(out);
                    }
                    Ok(Err(e)) => e,
                    Err(_) => {
                        return Err(failed(format!("Timeout: no answer within {CALL_BUDGET:?}")));
                    }
                };
                let code = error
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_owned);
                let class = match &error {
                    SdkError::ServiceError(_) => classify(code.as_deref(), true),
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                        classify(None, false)
                    }
                    SdkError::ResponseError(_) => classify(None, true),
                    _ => Class::Fatal,
                };
                if class == Class::Throttled {
                    throttled_counter()
                        .get_or_create(&ProviderLabels { provider: AWSKMS })
                        .inc();
                }
                let wait = backoff(attempt, rand::random::<f64>());
                attempt += 1;
                let retry = class != Class::Fatal
                    && attempt < MAX_ATTEMPTS
                    && tokio::time::Instant::now() + wait < deadline;
                if !retry {
                    return Err(failed(describe(&error, code.as_deref())));
                }
                tracing::debug!(op, attempt, ?class, "retrying a KMS call");
                tokio::time::sleep(wait).await;
            }
        });
        outcome.unwrap_or_else(|| {
            Err(ProviderError::Call {
                provider: AWSKMS,
                token: subject.to_owned(),
                op,
                code: "the KMS runtime stopped".into(),
            })
        })
    }

    /// Makes a key for `params` in KMS and reads its public half back (see
    /// the module docs). A failure after `CreateKey` schedules the new key's
    /// deletion.
    pub fn generate(&self, params: KeyParams) -> Result<KmsKey, ProviderError> {
        let spec = key_spec(params)?;
        let description = format!("jwks-operator signing key of policy {}", self.policy);
        let tag = Tag::builder()
            .tag_key(POLICY_TAG)
            .tag_value(self.policy.clone())
            .build()
            .map_err(|e| ProviderError::BadReference(e.to_string()))?;
        let created = self.call("create a key", &self.region, move |client| {
            client
                .create_key()
                .key_usage(KeyUsageType::SignVerify)
                .key_spec(spec.clone())
                .description(description.clone())
                .tags(tag.clone())
                .send()
        })?;
        let arn = created
            .key_metadata()
            .map(|m| m.arn().unwrap_or_default().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ProviderError::BadOutput {
                provider: AWSKMS,
                reference: self.region.clone(),
                what: "CreateKey returned no key ARN".into(),
            })?;
        let made = arn
            .parse::<KmsArn>()
            .and_then(|arn| self.load(&arn, params.alg))
            .and_then(|key| {
                self.sign(&key, SELF_TEST_MESSAGE)?;
                Ok(key)
            });
        if made.is_err() {
            // Never leave a half-made key behind: it is in no set.
            let _ = self.schedule_deletion(&arn);
        }
        made
    }

    /// The key `arn` names, with its public half read from KMS
    /// (`GetPublicKey`): a new key, or an existing one being adopted. Its
    /// key spec must fit `alg`.
    pub fn load(&self, arn: &KmsArn, alg: Algorithm) -> Result<KmsKey, ProviderError> {
        let reference = arn.to_string();
        let id = reference.clone();
        let out = self.call("read the public key", &reference, move |client| {
            client.get_public_key().key_id(id.clone()).send()
        })?;
        let bad = |what: String| ProviderError::BadOutput {
            provider: AWSKMS,
            reference: reference.clone(),
            what,
        };
        if out.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(bad("the key's usage is not SIGN_VERIFY".into()));
        }
        if let Some(spec) = out.key_spec()
            && !spec_fits(spec, alg)
        {
            return Err(bad(format!("a {} key cannot sign {alg}", spec.as_str())));
        }
        let der = out
            .public_key()
            .ok_or_else(|| bad("GetPublicKey returned no key".into()))?;
        let jwk = public_jwk(alg, der.as_ref()).map_err(bad)?;
        let verifying = VerifyingKey::from_public_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(arn.account.clone());
        Ok(KmsKey {
            arn: arn.clone(),
            verifying,
        })
    }

    /// Signs `message` with `key` in KMS and verifies the signature with the
    /// cached public key before returning it (JOSE form: `r‖s` for ECDSA).
    pub fn sign(&self, key: &KmsKey, message: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let alg = key.verifying.alg();
        let reference = key.arn.to_string();
        let algorithm = signing_algorithm(alg).ok_or_else(|| ProviderError::Unsupported {
            provider: AWSKMS,
            alg,
            detail: "KMS has no signing algorithm for it".into(),
        })?;
        let digest = Blob::new(digest(alg, message));
        let id = reference.clone();
        let out = self.call("sign", &reference, move |client| {
            client
                .sign()
                .key_id(id.clone())
                .message(digest.clone())
                .message_type(MessageType::Digest)
                .signing_algorithm(algorithm.clone())
                .send()
        })?;
        let bad = |what: &str| ProviderError::BadOutput {
            provider: AWSKMS,
            reference: reference.clone(),
            what: what.into(),
        };
        let raw = out
            .signature()
            .ok_or_else(|| bad("Sign returned no signature"))?
            .as_ref();
        let signature = if alg.is_rsa() {
            raw.to_vec()
        } else {
            der_to_jose(alg, raw).ok_or_else(|| bad("an ECDSA signature that is not valid DER"))?
        };
        key.verifying
            .verify_signature(message, &signature)
            .map_err(|_| {
                bad("KMS's signature does not verify with the key's published public key")
            })?;
        Ok(signature)
    }

    /// Schedules the deletion of the key `arn` names, with the shortest
    /// window. A key already gone or already pending deletion is not an
    /// error.
    pub fn schedule_deletion(&self, arn: &str) -> Result<(), ProviderError> {
        let id = arn.to_owned();
        let scheduled = self.call("schedule the key's deletion", arn, move |client| {
            client
                .schedule_key_deletion()
                .key_id(id.clone())
                .pending_window_in_days(PENDING_WINDOW_DAYS)
                .send()
        });
        match scheduled {
            Ok(_) => Ok(()),
            Err(ProviderError::Call { code, .. }) if code.starts_with("NotFoundException") => {
                Ok(())
            }
            Err(e @ ProviderError::Call { .. })
                if e.to_string().contains("KMSInvalidStateException") =>
            {
                match self.key_state(arn)? {
                    Some(KeyState::PendingDeletion) => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The key's state (`DescribeKey`), `None` when KMS does not say.
    pub fn key_state(&self, arn: &str) -> Result<Option<KeyState>, ProviderError> {
        let id = arn.to_owned();
        let out = self.call("describe the key", arn, move |client| {
            client.describe_key().key_id(id.clone()).send()
        })?;
        Ok(out.key_metadata().and_then(|m| m.key_state()).cloned())
    }
}

/// An SDK error as a short text: the KMS error code and message, or what
/// kept the request from an answer. Never a credential: the SDK does not
/// put them in errors, and no request is shown.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    code: Option<&str>,
) -> String {
    match error {
        SdkError::ServiceError(e) => format!(
            "{}: {}",
            code.unwrap_or("an error without a code"),
            e.err().message().unwrap_or_default()
        ),
        SdkError::DispatchFailure(e) if e.is_timeout() => {
            "Unreachable: connection timed out".into()
        }
        SdkError::DispatchFailure(e) if e.is_io() => "Unreachable: connection failed".into(),
        SdkError::DispatchFailure(_) => format!("the request could not be sent: {}", chain(error)),
        SdkError::TimeoutError(_) => format!("Timeout: no answer within {ATTEMPT_TIMEOUT:?}"),
        SdkError::ResponseError(_) => "BadResponse: KMS's answer could not be read".into(),
        SdkError::ConstructionFailure(_) => {
            format!("the request could not be built: {}", chain(error))
        }
        _ => "an unknown SDK error".into(),
    }
}

/// The SDK's chain of causes (no credentials found, a bad endpoint URL),
/// cut short. The SDK never puts a credential value in its errors.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let text = aws_sdk_kms::error::DisplayErrorContext(error).to_string();
    text.chars().take(400).collect()
}

/// A key held in KMS: its ARN and its cached public half.
#[derive(Clone, Debug)]
pub struct KmsKey {
    /// The full key ARN: the reference stored in `lifecycle.json`.
    pub arn: KmsArn,
    /// The public key (kid = its RFC 7638 thumbprint).
    pub verifying: VerifyingKey,
}

// === impl KmsSigner ===

/// A KMS-held key as the key domain signs with it ([`RemoteSigner`]),
/// bound to the provider of its region (found among the providers this
/// process opened, for a key read back from a stored set).
pub struct KmsSigner {
    key: KmsKey,
    reference: String,
    provider: OnceLock<Arc<KmsProvider>>,
}

impl KmsSigner {
    /// A signer for `key` on `provider`.
    pub fn on(provider: Arc<KmsProvider>, key: KmsKey) -> Self {
        let signer = Self::unbound(key);
        let _ = signer.provider.set(provider);
        signer
    }

    /// A signer for `key` that finds its provider when it first signs.
    pub fn unbound(key: KmsKey) -> Self {
        KmsSigner {
            reference: key.arn.to_string(),
            key,
            provider: OnceLock::new(),
        }
    }

    fn provider(&self) -> Result<&Arc<KmsProvider>, ProviderError> {
        if let Some(p) = self.provider.get() {
            return Ok(p);
        }
        let found = KmsProvider::find_open(&self.key.arn).ok_or_else(|| {
            ProviderError::Call {
                provider: AWSKMS,
                token: self.reference.clone(),
                op: "sign",
                code: "no KMS client for the key's region in this process (the policy's keyProvider was not set up)".into(),
            }
        })?;
        Ok(self.provider.get_or_init(|| found))
    }
}

impl RemoteSigner for KmsSigner {
    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.provider()
            .and_then(|p| p.sign(&self.key, message))
            .map_err(|e| e.to_string())
    }
}

/// The planner's key source for a policy whose keys live in KMS.
pub struct KmsKeySource(pub Arc<KmsProvider>);

impl KeySource<Arc<SigningKey>> for KmsKeySource {
    type Error = ProviderError;

    fn generate(&mut self, params: KeyParams) -> Result<Arc<SigningKey>, ProviderError> {
        let key = self.0.generate(params)?;
        let public = key.verifying.clone();
        let signer = Arc::new(KmsSigner::on(self.0.clone(), key));
        Ok(Arc::new(SigningKey::remote(params, public, signer)))
    }
}

// === pure parts ===

/// The KMS key spec that makes keys for `params`.
pub fn key_spec(params: KeyParams) -> Result<KeySpec, ProviderError> {
    let unsupported = |detail: &str| ProviderError::Unsupported {
        provider: AWSKMS,
        alg: params.alg,
        detail: detail.into(),
    };
    match params.alg {
        Algorithm::ES256 => Ok(KeySpec::EccNistP256),
        Algorithm::ES384 => Ok(KeySpec::EccNistP384),
        Algorithm::EdDSA => Err(unsupported("KMS has no Ed25519 signing key spec")),
        _ => match params.rsa_bits.unwrap_or(2048) {
            2048 => Ok(KeySpec::Rsa2048),
            3072 => Ok(KeySpec::Rsa3072),
            4096 => Ok(KeySpec::Rsa4096),
            _ => Err(unsupported("KMS makes RSA keys of 2048, 3072 or 4096 bits")),
        },
    }
}

/// Whether a key of KMS key spec `spec` can sign `alg`.
fn spec_fits(spec: &KeySpec, alg: Algorithm) -> bool {
    match alg {
        Algorithm::ES256 => *spec == KeySpec::EccNistP256,
        Algorithm::ES384 => *spec == KeySpec::EccNistP384,
        Algorithm::EdDSA => false,
        _ => matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096),
    }
}

/// The KMS `SigningAlgorithm` of `alg` (`None`: KMS cannot sign it).
pub fn signing_algorithm(alg: Algorithm) -> Option<SigningAlgorithmSpec> {
    Some(match alg {
        Algorithm::RS256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        Algorithm::RS384 => SigningAlgorithmSpec::RsassaPkcs1V15Sha384,
        Algorithm::RS512 => SigningAlgorithmSpec::RsassaPkcs1V15Sha512,
        Algorithm::PS256 => SigningAlgorithmSpec::RsassaPssSha256,
        Algorithm::PS384 => SigningAlgorithmSpec::RsassaPssSha384,
        Algorithm::PS512 => SigningAlgorithmSpec::RsassaPssSha512,
        Algorithm::ES256 => SigningAlgorithmSpec::EcdsaSha256,
        Algorithm::ES384 => SigningAlgorithmSpec::EcdsaSha384,
        Algorithm::EdDSA => return None,
    })
}

/// The digest KMS signs for `alg` (`MessageType=DIGEST`): SHA-256/384/512
/// of the JWS signing input, by the algorithm's hash.
pub fn digest(alg: Algorithm, message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::digest;
    let hash = match alg {
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => &digest::SHA384,
        Algorithm::RS512 | Algorithm::PS512 => &digest::SHA512,
        _ => &digest::SHA256,
    };
    digest::digest(hash, message).as_ref().to_vec()
}

/// A DER `ECDSA-Sig-Value` as JWS `r‖s`, each left-padded to the curve size.
pub fn der_to_jose(alg: Algorithm, der: &[u8]) -> Option<Vec<u8>> {
    match alg {
        Algorithm::ES256 => p256::ecdsa::Signature::from_der(der)
            .ok()
            .map(|s| s.to_bytes().to_vec()),
        Algorithm::ES384 => p384::ecdsa::Signature::from_der(der)
            .ok()
            .map(|s| s.to_bytes().to_vec()),
        _ => None,
    }
}

/// The public JWK (`kid` = RFC 7638 thumbprint, `alg`, `use: sig`) of a DER
/// SubjectPublicKeyInfo as `GetPublicKey` returns it, for `alg`.
pub fn public_jwk(alg: Algorithm, spki: &[u8]) -> Result<Value, String> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut jwk = match alg {
        Algorithm::ES256 => {
            use p256::pkcs8::DecodePublicKey as _;
            let key = p256::PublicKey::from_public_key_der(spki)
                .map_err(|_| "not a P-256 SubjectPublicKeyInfo".to_string())?;
            let point = key.to_sec1_bytes();
            if point.len() != 1 + 2 * 32 || point[0] != 4 {
                return Err("a P-256 point that is not uncompressed".into());
            }
            let (x, y) = point[1..].split_at(32);
            json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
        }
        Algorithm::ES384 => {
            use p384::pkcs8::DecodePublicKey as _;
            let key = p384::PublicKey::from_public_key_der(spki)
                .map_err(|_| "not a P-384 SubjectPublicKeyInfo".to_string())?;
            let point = key.to_sec1_bytes();
            if point.len() != 1 + 2 * 48 || point[0] != 4 {
                return Err("a P-384 point that is not uncompressed".into());
            }
            let (x, y) = point[1..].split_at(48);
            json!({"kty": "EC", "crv": "P-384", "x": b64(x), "y": b64(y)})
        }
        Algorithm::EdDSA => return Err("KMS has no Ed25519 keys".into()),
        _ => {
            use rsa::pkcs8::DecodePublicKey as _;
            use rsa::traits::PublicKeyParts as _;
            let key = rsa::PublicKey::from_public_key_der(spki)
                .map_err(|_| "not an RSA SubjectPublicKeyInfo".to_string())?;
            let strip = |v: Vec<u8>| {
                let zeros = v
                    .iter()
                    .take_while(|b| **b == 0)
                    .count()
                    .min(v.len().saturating_sub(1));
                v[zeros..].to_vec()
            };
            json!({
                "kty": "RSA",
                "n": b64(&strip(key.n().to_be_bytes().into_vec())),
                "e": b64(&strip(key.e().to_be_bytes().into_vec())),
            })
        }
    };
    let kid = jwk_thumbprint(&jwk).map_err(|e| e.to_string())?;
    jwk["kid"] = Value::String(kid);
    jwk["alg"] = Value::String(alg.as_str().into());
    jwk["use"] = Value::String("sig".into());
    Ok(jwk)
}

#[cfg(test)]
mod tests;
