//! The `v1.ExternalJWTSigner` gRPC service, answering from an immutable
//! [`Published`] snapshot that the run loop swaps in whenever the stored key
//! set changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::kube::{kube_alg_ok, spki_der};
use super::pb;
use crate::keys::SigningKey;
use crate::keys::lifecycle::KeyState;
use crate::keys::material::sign_off_workers;
use crate::store::StoredKeySet;

/// Longest base64url claims string Sign accepts (kube-apiserver's are a
/// few hundred bytes).
pub const MAX_CLAIMS_LEN: usize = 64 * 1024;
/// Upper bound of `refresh_hint_seconds`: also how long a revoked key can
/// stay trusted by a kube-apiserver that already had it.
pub const MAX_REFRESH_HINT: Duration = Duration::from_secs(60);

/// What the signer serves now. Immutable; replaced whole.
#[derive(Debug)]
pub struct Published {
    /// The key Sign uses (an Active key kube-apiserver can use).
    pub active: Option<Arc<SigningKey>>,
    /// The stored Active key's kid while `spec.revokedKeyIDs` names it and
    /// no fresh key is stored yet: Sign refuses, naming it.
    pub withheld: Option<String>,
    /// Pending, active and retired keys, newest first, as FetchKeys lists them.
    pub keys: Vec<pb::Key>,
    /// When `keys` last changed.
    pub data_timestamp: Timestamp,
    /// `refresh_hint_seconds`.
    pub refresh_hint: i64,
}

/// The lifetimes the signer works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// What Metadata announces: the policy's `maxTokenTTL`.
    pub announce: Duration,
    /// The longest `exp - iat` Sign accepts: the largest lifetime ever
    /// announced from this state directory (a kube-apiserver started
    /// against an earlier run may still ask for it).
    pub sign_cap: Duration,
    /// The policy's `clockSkew`: how far `iat` may be from the signer's
    /// clock.
    pub clock_skew: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: &'static str,
}

/// The signer's own metrics (prefix `jwks_operator_signer_`).
pub struct SignerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    keys: Gauge,
    leader: Gauge,
    stale: Gauge,
}

impl std::fmt::Debug for SignerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerMetrics").finish_non_exhaustive()
    }
}

impl Default for SignerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SignerMetrics {
    /// A fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jwks_operator_signer");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "gRPC calls from kube-apiserver by method (Sign, FetchKeys, Metadata) and result code (OK, or the gRPC error)",
            requests.clone(),
        );
        let keys = Gauge::default();
        registry.register("keys", "Public keys FetchKeys returns", keys.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this signer holds the state-directory lock and rotates the keys, 0 while it follows",
            leader.clone(),
        );
        let stale = Gauge::default();
        registry.register(
            "stale",
            "1 while this follower has not read the stored key set for longer than its staleness bound and Sign refuses, 0 otherwise",
            stale.clone(),
        );
        SignerMetrics {
            registry,
            requests,
            keys,
            leader,
            stale,
        }
    }

    fn count(&self, method: &'static str, result: &Result<(), Status>) {
        let code = match result {
            Ok(()) => "OK",
            Err(s) => code_name(s.code()),
        };
        self.requests
            .get_or_create(&RequestLabels { method, code })
            .inc();
    }

    /// Records whether this signer rotates the keys.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::Internal => "Internal",
        _ => "Other",
    }
}

/// Shared between the run loop (which publishes) and the gRPC service.
#[derive(Debug)]
pub struct SignerState {
    published: ArcSwapOption<Published>,
    lifetimes: ArcSwapOption<Lifetimes>,
    metrics: SignerMetrics,
    /// DER SubjectPublicKeyInfo by kid, so a republish does not re-parse keys.
    spki: Mutex<HashMap<String, Option<Vec<u8>>>>,
    /// Kids of keys left out of FetchKeys already warned about.
    warned: Mutex<std::collections::BTreeSet<String>>,
    /// Why Sign refuses while this follower's copy of the stored set is
    /// older than its staleness bound.
    stale: ArcSwapOption<String>,
}

impl SignerState {
    /// Nothing published yet.
    pub fn new(lifetimes: Lifetimes) -> Arc<Self> {
        Arc::new(SignerState {
            published: ArcSwapOption::empty(),
            lifetimes: ArcSwapOption::new(Some(Arc::new(lifetimes))),
            metrics: SignerMetrics::new(),
            spki: Mutex::new(HashMap::new()),
            warned: Mutex::new(Default::default()),
            stale: ArcSwapOption::empty(),
        })
    }

    /// The signer's metrics.
    pub fn metrics(&self) -> &SignerMetrics {
        &self.metrics
    }

    /// What is served now.
    pub fn published(&self) -> Option<Arc<Published>> {
        self.published.load_full()
    }

    /// The lifetimes in force.
    pub fn lifetimes(&self) -> Lifetimes {
        **self.lifetimes.load().as_ref().expect("always set")
    }

    /// Marks the served set too old to sign with (`Some(why)`) or fresh
    /// again (`None`); FetchKeys keeps answering. Returns whether it changed.
    pub fn set_stale(&self, why: Option<String>) -> bool {
        let changed = self.stale.load().is_some() != why.is_some();
        self.metrics.stale.set(i64::from(why.is_some()));
        self.stale.store(why.map(Arc::new));
        changed
    }

    /// Replaces the lifetimes (after a policy reload).
    pub fn set_lifetimes(&self, lifetimes: Lifetimes) {
        self.lifetimes.store(Some(Arc::new(lifetimes)));
    }

    /// Publishes `set` at `now`, without the keys `revoked` names (SPEC
    /// invariant 9, [`KeySet::servable`](crate::keys::lifecycle::KeySet::servable):
    /// neither listed nor signing, whether or not a write has removed them
    /// from the store). `data_timestamp` moves only when the listed keys
    /// change. Returns whether they changed.
    pub fn publish(
        &self,
        set: &StoredKeySet,
        revoked: &BTreeSet<String>,
        refresh_hint: Duration,
        now: Timestamp,
    ) -> bool {
        let served = set.servable(revoked);
        let set = &served.keys;
        let mut cache = self.spki.lock().expect("not poisoned");
        let mut keys = Vec::with_capacity(set.keys.len());
        for k in &set.keys {
            let der = cache
                .entry(k.kid().to_owned())
                .or_insert_with(|| kube_alg_ok(k.key.alg()).then(|| spki_der(&k.key)).flatten())
                .clone();
            match der {
                Some(der) => keys.push(pb::Key {
                    key_id: k.kid().to_owned(),
                    key: der,
                    exclude_from_oidc_discovery: false,
                }),
                None => {
                    if self
                        .warned
                        .lock()
                        .expect("not poisoned")
                        .insert(k.kid().to_owned())
                    {
                        warn!(kid = k.kid(), alg = %k.key.alg(), state = %k.state, "key left out of FetchKeys: kube-apiserver cannot use {} keys", k.key.alg());
                    }
                }
            }
        }
        let live: BTreeSet<&str> = set.keys.iter().map(|k| k.kid()).collect();
        cache.retain(|kid, _| live.contains(kid.as_str()));
        drop(cache);

        let active = set
            .keys
            .iter()
            .find(|k| k.state == KeyState::Active && kube_alg_ok(k.key.alg()))
            .map(|k| k.key.clone());
        let previous = self.published.load_full();
        let changed = previous.as_ref().is_none_or(|p| p.keys != keys);
        let data_timestamp = match &previous {
            Some(p) if !changed => p.data_timestamp,
            // Strictly later than the previous stamp, even within one clock tick.
            Some(p) if now <= p.data_timestamp => p
                .data_timestamp
                .checked_add(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(now),
            _ => now,
        };
        let refresh_hint = i64::try_from(refresh_hint.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        self.metrics.keys.set(keys.len() as i64);
        self.published.store(Some(Arc::new(Published {
            active,
            withheld: served.withheld_active,
            keys,
            data_timestamp,
            refresh_hint,
        })));
        changed
    }
}

/// The `refresh_hint_seconds` for a policy: half of `publishAhead` (a new
/// key is seen by every kube-apiserver at least half its pre-publication
/// time before it signs), no more than `verifierRefreshInterval` when the
/// policy sets one (kube-apiserver is one of its verifiers), at least 1 s,
/// at most [`MAX_REFRESH_HINT`].
pub fn refresh_hint(publish_ahead: Duration, verifier_refresh: Option<Duration>) -> Duration {
    let hint = (publish_ahead / 2).min(verifier_refresh.unwrap_or(Duration::MAX));
    hint.clamp(Duration::from_secs(1), MAX_REFRESH_HINT)
}

/// The gRPC service over a [`SignerState`].
#[derive(Clone, Debug)]
pub struct Service {
    state: Arc<SignerState>,
}

impl Service {
    /// A service answering from `state`.
    pub fn new(state: Arc<SignerState>) -> Self {
        Service { state }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::external_jwt_signer_server::ExternalJwtSignerServer<Self> {
        pb::external_jwt_signer_server::ExternalJwtSignerServer::new(self)
    }

    async fn sign_inner(&self, claims: &str) -> Result<pb::SignJwtResponse, Status> {
        check_claims(claims, &self.state.lifetimes(), Timestamp::now())?;
        if let Some(why) = self.state.stale.load_full() {
            return Err(Status::unavailable(why.to_string()));
        }
        let published = self
            .state
            .published()
            .ok_or_else(|| Status::unavailable("no key set loaded yet"))?;
        let key = published.active.as_ref().ok_or_else(|| match &published.withheld {
            Some(kid) => Status::unavailable(format!(
                "the active key {kid} is in spec.revokedKeyIDs and no fresh key is active yet; nothing signs until one is"
            )),
            None => {
                Status::failed_precondition("the key set has no active key kube-apiserver can use")
            }
        })?;
        let header = key.jws_header();
        let mut message = Vec::with_capacity(header.len() + 1 + claims.len());
        message.extend_from_slice(header.as_bytes());
        message.push(b'.');
        message.extend_from_slice(claims.as_bytes());
        let signature = sign_off_workers(key, move |key| key.sign(&message))
            .await
            .and_then(|signed| signed)
            .map_err(|e| {
                // A key provider that cannot sign now (a token, a KMS) is
                // for kube-apiserver to retry; a key held here failing is a bug.
                if key.is_remote() {
                    Status::unavailable(e.to_string())
                } else {
                    Status::internal(e.to_string())
                }
            })?;
        debug!(kid = key.kid(), "signed a service-account token");
        Ok(pb::SignJwtResponse {
            header: header.to_owned(),
            signature: URL_SAFE_NO_PAD.encode(signature),
        })
    }

    fn fetch_inner(&self) -> Result<pb::FetchKeysResponse, Status> {
        let published = self
            .state
            .published()
            .ok_or_else(|| Status::unavailable("no key set loaded yet"))?;
        if published.keys.is_empty() {
            return Err(Status::unavailable(
                "the key set holds no key kube-apiserver can use",
            ));
        }
        let ts = published.data_timestamp;
        Ok(pb::FetchKeysResponse {
            keys: published.keys.clone(),
            data_timestamp: Some(prost_types::Timestamp {
                seconds: ts.as_second(),
                nanos: ts.subsec_nanosecond(),
            }),
            refresh_hint_seconds: published.refresh_hint,
        })
    }
}

/// How far `iat` may be from the signer's clock beyond the policy's
/// `clockSkew`: kube-apiserver truncates `iat` to whole seconds and the
/// Sign call may wait a little in kube-apiserver and on the socket, so
/// even `clockSkew: 0s` sees a second or two between the two clocks.
pub const IAT_LEEWAY: Duration = Duration::from_secs(5);

/// Largest time claim accepted: 9999-12-31T23:59:59Z (the largest time a
/// verifier's date type holds), so no claim overflows later arithmetic.
pub const MAX_TIME_CLAIM: i64 = 253_402_300_799;

/// Checks the claims kube-apiserver asks to sign, at `now`: unpadded
/// base64url of a JSON object whose `iat`, `exp` and (when present) `nbf`
/// are whole numbers of seconds between 0 and [`MAX_TIME_CLAIM`] (no
/// fractions, exponents, strings or out-of-range values), with `exp` after
/// `iat`, `nbf` not after `exp`, `iat` within the policy's `clockSkew`
/// (plus [`IAT_LEEWAY`]) of `now`, and `exp - iat` at most [`Lifetimes::sign_cap`]. Each refusal is
/// `InvalidArgument` naming the claim.
pub fn check_claims(claims: &str, lifetimes: &Lifetimes, now: Timestamp) -> Result<(), Status> {
    if claims.len() > MAX_CLAIMS_LEN {
        return Err(Status::invalid_argument(format!(
            "claims longer than {MAX_CLAIMS_LEN} bytes"
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| Status::invalid_argument("claims are not unpadded base64url"))?;
    let value: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| Status::invalid_argument(format!("claims are not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| Status::invalid_argument("claims are not a JSON object"))?;
    let iat = time_claim(object, "iat")?
        .ok_or_else(|| Status::invalid_argument("claims lack \"iat\""))?;
    let exp = time_claim(object, "exp")?
        .ok_or_else(|| Status::invalid_argument("claims lack \"exp\""))?;
    let nbf = time_claim(object, "nbf")?;
    if exp <= iat {
        return Err(Status::invalid_argument(format!(
            "\"exp\" ({exp}) is not after \"iat\" ({iat})"
        )));
    }
    if let Some(nbf) = nbf
        && nbf > exp
    {
        return Err(Status::invalid_argument(format!(
            "\"nbf\" ({nbf}) is after \"exp\" ({exp})"
        )));
    }
    let skew = lifetimes.clock_skew.as_secs();
    let off = iat.abs_diff(now.as_second());
    if off > skew.saturating_add(IAT_LEEWAY.as_secs()) {
        return Err(Status::invalid_argument(format!(
            "\"iat\" ({iat}) is {off}s away from the signer's clock ({}), more than the policy's clockSkew of {skew}s (plus {}s for the call)",
            now.as_second(),
            IAT_LEEWAY.as_secs()
        )));
    }
    let lifetime = exp - iat;
    let cap = lifetimes.sign_cap.as_secs();
    if lifetime.unsigned_abs() > cap {
        return Err(Status::invalid_argument(format!(
            "token lifetime exp - iat = {lifetime}s exceeds the signer's maxTokenTTL of {cap}s"
        )));
    }
    Ok(())
}

/// A time claim (`iat`, `exp`, `nbf`): absent, or a whole number of seconds
/// in `0..=MAX_TIME_CLAIM`.
fn time_claim(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<i64>, Status> {
    let Some(value) = object.get(name) else {
        return Ok(None);
    };
    let serde_json::Value::Number(n) = value else {
        return Err(Status::invalid_argument(format!(
            "claim {name:?} is not a number"
        )));
    };
    match n.as_i64() {
        Some(v) if (0..=MAX_TIME_CLAIM).contains(&v) => Ok(Some(v)),
        Some(_) => Err(Status::invalid_argument(format!(
            "claim {name:?} is out of range (0 to {MAX_TIME_CLAIM} seconds)"
        ))),
        None if n.is_u64() => Err(Status::invalid_argument(format!(
            "claim {name:?} is out of range (0 to {MAX_TIME_CLAIM} seconds)"
        ))),
        None => Err(Status::invalid_argument(format!(
            "claim {name:?} is not a whole number of seconds"
        ))),
    }
}

#[tonic::async_trait]
impl pb::external_jwt_signer_server::ExternalJwtSigner for Service {
    async fn sign(
        &self,
        request: Request<pb::SignJwtRequest>,
    ) -> Result<Response<pb::SignJwtResponse>, Status> {
        let result = self.sign_inner(&request.get_ref().claims).await;
        self.state
            .metrics
            .count("Sign", &result.as_ref().map(|_| ()).map_err(Clone::clone));
        if let Err(s) = &result {
            debug!(code = ?s.code(), "refused to sign: {}", s.message());
        }
        result.map(Response::new)
    }

    async fn fetch_keys(
        &self,
        _request: Request<pb::FetchKeysRequest>,
    ) -> Result<Response<pb::FetchKeysResponse>, Status> {
        let result = self.fetch_inner();
        self.state.metrics.count(
            "FetchKeys",
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        result.map(Response::new)
    }

    async fn metadata(
        &self,
        _request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let announce = self.state.lifetimes().announce;
        let result: Result<(), Status> = Ok(());
        self.state.metrics.count("Metadata", &result);
        Ok(Response::new(pb::MetadataResponse {
            max_token_expiration_seconds: i64::try_from(announce.as_secs()).unwrap_or(i64::MAX),
        }))
    }
}
