//! What the HTTP servers serve: an immutable snapshot of every policy's
//! published key set, swapped atomically by the engine or controller.
//!
//! A [`PolicyView`] is built once per key-set change and holds everything a
//! request needs already serialized: the public JWK Set bytes with their
//! strong ETag and `Cache-Control`, the discovery document, the summary for
//! `/policies`, and for token-enabled policies the active signer and a
//! ready-made [`Verifier`]. Requests only `load()` the [`ArcSwap`] and clone
//! `Bytes`; writers copy the (small) map of `Arc`s and swap it in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;
use warp::http::HeaderValue;

use crate::keys::Algorithm;
use crate::keys::lifecycle::KeySet;
use crate::keys::material::{SigningKey, VerifyingKey, public_jwks_json};
use crate::keys::token::{Expectations, MintSettings, Verifier, mint_ttl_cap};
use crate::metrics::Metrics;
use crate::policy::{PolicyInfo, PolicyRef, PolicySummary, Problem};

// === PolicyView ===

/// Everything the token listener needs for one token-enabled policy.
pub(crate) struct TokenSide {
    /// The active key: `None` for a set without one (the planner never
    /// produces one), and while the stored active key is revoked
    /// ([`Self::withheld`]).
    pub(crate) signer: Option<Arc<SigningKey>>,
    /// The kid of the stored active key when `spec.revokedKeyIDs` names it
    /// and no fresh key is stored yet: minting is refused, naming it.
    pub(crate) withheld: Option<String>,
    /// Why nothing signs while this replica's copy of the stored set is
    /// older than its staleness bound ([`PolicyInfo::stale`]).
    pub(crate) stale: Option<String>,
    /// Verifies against every published key.
    pub(crate) verifier: Verifier,
    /// `iss`, default `aud`, `maxTokenTTL`.
    pub(crate) mint: MintSettings,
    /// `iss`, `aud`, `clockSkew` as verification requires them.
    pub(crate) expect: Expectations,
}

/// An immutable, pre-serialized view of one policy's published key set.
#[derive(Clone)]
pub struct PolicyView {
    policy: PolicyRef,
    jwks: Bytes,
    etag: HeaderValue,
    cache_control: HeaderValue,
    max_age: u64,
    discovery: Option<(Bytes, HeaderValue)>,
    summary: PolicySummary,
    token: Option<Arc<TokenSide>>,
}

impl fmt::Debug for PolicyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyView")
            .field("policy", &self.policy)
            .field("etag", &self.etag)
            .field("max_age", &self.max_age)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// The strong ETag of `bytes`: a quoted base64url SHA-256.
pub fn strong_etag(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn header_value(s: String) -> HeaderValue {
    // Built from base64url, digits and fixed ASCII text only.
    HeaderValue::try_from(s).expect("an ASCII header value")
}

#[derive(Serialize)]
struct Discovery<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: Vec<&'static str>,
}

/// The OpenID discovery document of a policy with an issuer, and its ETag.
fn discovery_document(
    policy: &PolicyInfo,
    algs: impl Iterator<Item = Algorithm>,
    public_base_url: Option<&str>,
) -> Option<(Bytes, HeaderValue)> {
    let issuer = policy.issuer.as_deref()?;
    let jwks_uri = match public_base_url {
        Some(base) => format!(
            "{}{}",
            base.trim_end_matches('/'),
            policy.policy.jwks_path()
        ),
        None => format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
    };
    let mut names: Vec<&'static str> = Vec::new();
    for alg in algs {
        if !names.contains(&alg.as_str()) {
            names.push(alg.as_str());
        }
    }
    let doc = Discovery {
        issuer,
        jwks_uri,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: names,
    };
    let bytes = Bytes::from(serde_json::to_vec(&doc).expect("discovery serializes"));
    let etag = header_value(strong_etag(&bytes));
    Some((bytes, etag))
}

// === impl PolicyView ===

impl PolicyView {
    /// Builds the view of `policy` serving `keys` (every key in the set:
    /// pending, active and retired, newest first), except the keys
    /// `policy.revoked` names (SPEC invariant 9, [`KeySet::servable`]): they
    /// are neither published, nor verified, nor used to sign, whether or not
    /// the write that removes them from the store has landed. `public_base_url` (such as
    /// `https://jwks.example.com`) makes the discovery document's `jwks_uri`
    /// absolute on this server; without it `jwks_uri` is
    /// `{issuer}/.well-known/jwks.json`. The summary says `ready: true`, no problem.
    pub fn build(
        policy: &PolicyInfo,
        keys: &KeySet<Arc<SigningKey>>,
        public_base_url: Option<&str>,
    ) -> PolicyView {
        let served = keys.servable(&policy.revoked);
        let keys = &served.keys;
        let r = policy.policy.clone();
        let jwks = Bytes::from(public_jwks_json(
            keys.keys.iter().map(|k| k.key.verifying_key()),
        ));
        let etag = header_value(strong_etag(&jwks));
        let max_age = policy.jwks_max_age;
        let cache_control = header_value(format!("public, max-age={max_age}"));

        let discovery = discovery_document(
            policy,
            keys.keys.iter().map(|k| k.key.alg()),
            public_base_url,
        );

        let active = keys.active();
        let next_rotation_time = policy
            .lifecycle
            .as_ref()
            .and_then(|p| keys.next_rotation_time(p));
        let revocation_exposure_until = policy
            .lifecycle
            .as_ref()
            .and_then(|p| keys.revocation_exposure_until(p));
        let summary = PolicySummary {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            ready: active.is_some(),
            degraded: None,
            warning: None,
            algorithm: Some(active.map_or(policy.algorithm, |a| a.key.alg())),
            active_key_id: active.map(|a| a.kid().to_string()),
            next_key_id: keys.pending().map(|p| p.kid().to_string()),
            key_count: keys.keys.len(),
            next_rotation_time,
            last_rotation_time: keys.last_rotation_time,
            last_rotation_reason: keys.last_rotation_reason,
            last_revocation_time: keys.last_revocation_time,
            revocation_exposure_until,
            issuer: policy.issuer.clone(),
            jwks_path: r.jwks_path(),
            token_endpoint: policy.token_endpoint,
            warnings: policy.warnings(),
        };

        let token = policy.token_endpoint.then(|| {
            Arc::new(TokenSide {
                signer: active
                    .filter(|_| policy.stale.is_none())
                    .map(|a| a.key.clone()),
                withheld: served.withheld_active.clone(),
                stale: policy.stale.clone(),
                verifier: Verifier::new(keys.keys.iter().map(|k| k.key.verifying_key())),
                mint: MintSettings {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    max_ttl: mint_ttl_cap(policy.max_token_ttl, active),
                },
                expect: Expectations {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    leeway: policy.clock_skew,
                },
            })
        });

        let view = PolicyView {
            policy: r,
            jwks,
            etag,
            cache_control,
            max_age,
            discovery,
            summary,
            token,
        };
        match &policy.stale {
            Some(why) => view.with_problem(Some(Problem::new(
                crate::reasons::KEY_SET_STALE,
                why.clone(),
            ))),
            None => view,
        }
    }

    /// A view serving only the public keys `keys` (a stored public set whose
    /// private counterpart cannot be read): the JWKS and discovery as usual,
    /// verification on the token listener, but nothing signs (minting is
    /// `503 not_ready`) and the summary says `ready: false`. Keys that
    /// `policy.revoked` names are left out, as in [`Self::build`].
    pub fn public_only(
        policy: &PolicyInfo,
        keys: &[VerifyingKey],
        public_base_url: Option<&str>,
    ) -> PolicyView {
        let kept: Vec<VerifyingKey>;
        let keys = if keys.iter().any(|k| policy.revoked.contains(k.kid())) {
            kept = keys
                .iter()
                .filter(|k| !policy.revoked.contains(k.kid()))
                .cloned()
                .collect();
            &kept[..]
        } else {
            keys
        };
        let jwks = Bytes::from(public_jwks_json(keys));
        let etag = header_value(strong_etag(&jwks));
        let max_age = policy.jwks_max_age;
        let cache_control = header_value(format!("public, max-age={max_age}"));
        let summary = PolicySummary {
            ready: false,
            key_count: keys.len(),
            ..PolicySummary::for_policy(policy)
        };
        let token = policy.token_endpoint.then(|| {
            Arc::new(TokenSide {
                signer: None,
                withheld: None,
                stale: None,
                verifier: Verifier::new(keys.iter()),
                mint: MintSettings {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    max_ttl: policy.max_token_ttl,
                },
                expect: Expectations {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    leeway: policy.clock_skew,
                },
            })
        });
        PolicyView {
            policy: policy.policy.clone(),
            jwks,
            etag,
            cache_control,
            max_age,
            discovery: discovery_document(
                policy,
                keys.iter().map(VerifyingKey::alg),
                public_base_url,
            ),
            summary,
            token,
        }
    }

    /// Which policy this is.
    pub fn policy(&self) -> &PolicyRef {
        &self.policy
    }

    /// The summary shown by `GET /policies`.
    pub fn summary(&self) -> &PolicySummary {
        &self.summary
    }

    /// The same published set with a new problem (`None` clears it): a
    /// degraded policy keeps serving its last good set.
    pub fn with_problem(&self, problem: Option<Problem>) -> PolicyView {
        let mut view = self.clone();
        view.summary.degraded = problem;
        view
    }

    /// The same view with `warning` as the summary's warning.
    pub fn with_warning(mut self, warning: Option<Problem>) -> PolicyView {
        self.summary.warning = warning;
        self
    }

    /// The public JWK Set exactly as served.
    pub fn jwks_bytes(&self) -> &Bytes {
        &self.jwks
    }

    /// The strong ETag of [`Self::jwks_bytes`], quotes included.
    pub fn etag(&self) -> &str {
        self.etag.to_str().unwrap_or_default()
    }

    /// `max-age` of the `Cache-Control` header, in seconds.
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// The OpenID discovery document, when the policy has an issuer.
    pub fn discovery_bytes(&self) -> Option<&Bytes> {
        self.discovery.as_ref().map(|(b, _)| b)
    }

    /// Whether the token listener serves this policy.
    pub fn token_endpoint_enabled(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn etag_header(&self) -> &HeaderValue {
        &self.etag
    }

    pub(crate) fn cache_control(&self) -> &HeaderValue {
        &self.cache_control
    }

    pub(crate) fn discovery(&self) -> Option<&(Bytes, HeaderValue)> {
        self.discovery.as_ref()
    }

    pub(crate) fn token_side(&self) -> Option<&TokenSide> {
        self.token.as_deref()
    }
}

// === Snapshot ===

/// One policy as the servers see it.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    /// A published set is served (possibly degraded: the last good one).
    Serving(Arc<PolicyView>),
    /// Known, but nothing published yet (the first load failed or is in progress).
    NotReady(Arc<PolicySummary>),
}

impl Entry {
    fn summary(&self) -> &PolicySummary {
        match self {
            Entry::Serving(v) => v.summary(),
            Entry::NotReady(s) => s,
        }
    }
}

/// Every served policy at one instant. Immutable; replaced as a whole.
///
/// Keys are `Arc`s (looked up by `&PolicyRef` through `Borrow`), so the
/// copy a writer makes clones pointers, not names.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    policies: HashMap<Arc<PolicyRef>, Entry>,
}

impl Snapshot {
    pub(crate) fn get(&self, policy: &PolicyRef) -> Option<&Entry> {
        self.policies.get(policy)
    }

    /// Number of policies (serving or not).
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no policy is known.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The summaries of every policy, sorted by namespace then name.
    pub fn summaries(&self) -> Vec<&PolicySummary> {
        let mut out: Vec<_> = self.policies.values().map(Entry::summary).collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }
}

// === SharedState ===

type Clock = dyn Fn() -> Timestamp + Send + Sync;
type JtiSource = dyn Fn() -> Result<String, String> + Send + Sync;

/// The state shared by the engine/controller (writers) and the HTTP servers
/// (readers). Cheap to clone: one reference count.
///
/// One `Arc` rather than one per field because hyper clones the whole warp
/// filter tree for every request (`TowerToHyperService::call`), and every
/// route closure holds a `SharedState`: with six `Arc`s each, that was about
/// eighty atomic increments and decrements per request on the JWKS route.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// Snapshots published so far.
    publications: Arc<AtomicU64>,
    default_policy: Option<Arc<PolicyRef>>,
    clock: Arc<Clock>,
    jti: Arc<JtiSource>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("policies", &self.inner.snapshot.load().len())
            .field("ready", &self.is_ready())
            .field("default_policy", &self.inner.default_policy)
            .finish_non_exhaustive()
    }
}

/// How many `jti`s a thread's generator gives before it is seeded afresh.
const JTI_RESEED_EVERY: u32 = 1 << 16;

/// A fresh `jti`: 128 random bits, base64url.
///
/// The bits come from a per-thread ChaCha12 generator (`rand`'s `StdRng`,
/// a CSPRNG) seeded from aws-lc's CSPRNG, itself seeded from the operating
/// system, and seeded afresh every 65,536 ids. Drawing every
/// id from aws-lc directly costs a CTR-DRBG round plus an `RDRAND` per
/// token (~1% of ES256 minting); a `getrandom` system call per token cost
/// ~1.5%. Fails only if seeding fails.
pub fn random_jti() -> Result<String, String> {
    use rand::{Rng as _, SeedableRng as _};
    use std::cell::RefCell;

    thread_local! {
        static JTI_RNG: RefCell<Option<(rand::rngs::StdRng, u32)>> = const { RefCell::new(None) };
    }
    JTI_RNG.with_borrow_mut(|slot| {
        let (rng, left) = match slot {
            Some((rng, left)) if *left > 0 => (rng, left),
            _ => {
                let mut seed = [0u8; 32];
                aws_lc_rs::rand::fill(&mut seed)
                    .map_err(|_| "the random generator failed".to_string())?;
                let (rng, left) =
                    slot.insert((rand::rngs::StdRng::from_seed(seed), JTI_RESEED_EVERY));
                (rng, left)
            }
        };
        *left -= 1;
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    })
}

/// One change to what is served, for [`SharedState::apply`].
#[derive(Debug)]
pub enum Update {
    /// As [`SharedState::upsert`].
    Upsert(PolicyView),
    /// As [`SharedState::set_problem`].
    Problem {
        /// The policy.
        policy: PolicyRef,
        /// Listed when nothing is published for it.
        summary_if_absent: PolicySummary,
        /// The problem (`None` clears it).
        problem: Option<Problem>,
    },
    /// As [`SharedState::remove`].
    Remove(PolicyRef),
}

// === impl SharedState ===

impl SharedState {
    /// An empty state, not ready. `default_policy` is served at
    /// `GET /.well-known/jwks.json`. The clock is the system clock, `jti`s
    /// come from [`random_jti`].
    pub fn new(default_policy: Option<PolicyRef>, metrics: Arc<Metrics>) -> Self {
        SharedState {
            inner: Arc::new(Shared {
                snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
                metrics,
                ready: Arc::new(AtomicBool::new(false)),
                publications: Arc::default(),
                default_policy: default_policy.map(Arc::new),
                clock: Arc::new(Timestamp::now),
                jti: Arc::new(random_jti),
            }),
        }
    }

    /// Replaces the clock the token endpoints read (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.inner).clock = Arc::new(clock);
        self
    }

    /// Replaces the source of `jti` values (tests).
    pub fn with_jti_source(
        mut self,
        jti: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.inner).jti = Arc::new(jti);
        self
    }

    fn update(&self, f: impl Fn(&mut HashMap<Arc<PolicyRef>, Entry>)) {
        self.inner.publications.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot.rcu(|current| {
            let mut policies = current.policies.clone();
            f(&mut policies);
            Snapshot { policies }
        });
    }

    /// Publishes a policy's view, replacing any previous one, in one atomic swap.
    pub fn upsert(&self, view: PolicyView) {
        self.apply(vec![Update::Upsert(view)]);
    }

    /// Publishes several views in one swap (a standalone start with many policies).
    pub fn upsert_all(&self, views: impl IntoIterator<Item = PolicyView>) {
        self.apply(views.into_iter().map(Update::Upsert).collect());
    }

    /// Records a policy's problem (`None` clears it). If a set is published,
    /// it keeps being served with the problem shown; otherwise the policy is
    /// listed as `summary_if_absent` (not ready) with the problem, and its
    /// JWKS route answers 503.
    pub fn set_problem(
        &self,
        policy: &PolicyRef,
        summary_if_absent: PolicySummary,
        problem: Option<Problem>,
    ) {
        self.apply(vec![Update::Problem {
            policy: policy.clone(),
            summary_if_absent,
            problem,
        }]);
    }

    /// Stops serving a policy and drops its metrics ([`Metrics::forget`]).
    pub fn remove(&self, policy: &PolicyRef) {
        self.apply(vec![Update::Remove(policy.clone())]);
    }

    /// Applies `updates` in order and publishes the result in one swap: the
    /// same as [`Self::upsert`], [`Self::set_problem`] and [`Self::remove`]
    /// one by one, except that the map of every policy is copied once for
    /// all of them instead of once each (with 10,000 policies, a copy per
    /// watch event made a burst of events cost the square of the policies).
    pub fn apply(&self, updates: Vec<Update>) {
        enum Op {
            Put(Arc<PolicyRef>, Arc<PolicyView>),
            Problem(Arc<PolicyRef>, Arc<PolicySummary>, Option<Problem>),
            Remove(PolicyRef),
        }
        if updates.is_empty() {
            return;
        }
        let metrics = &self.inner.metrics;
        let ops: Vec<Op> = updates
            .into_iter()
            .map(|u| match u {
                Update::Upsert(v) => {
                    metrics.set_degraded(v.policy(), v.summary().degraded.is_some());
                    Op::Put(Arc::new(v.policy().clone()), Arc::new(v))
                }
                Update::Problem {
                    policy,
                    summary_if_absent,
                    problem,
                } => {
                    metrics.set_degraded(&policy, problem.is_some());
                    let absent = Arc::new(PolicySummary {
                        ready: false,
                        degraded: problem.clone(),
                        ..summary_if_absent
                    });
                    Op::Problem(Arc::new(policy), absent, problem)
                }
                Update::Remove(policy) => Op::Remove(policy),
            })
            .collect();
        self.update(|map| {
            for op in &ops {
                match op {
                    Op::Put(r, v) => {
                        map.insert(r.clone(), Entry::Serving(v.clone()));
                    }
                    Op::Problem(r, absent, problem) => {
                        let entry = match map.get(&**r) {
                            Some(Entry::Serving(view)) => {
                                Entry::Serving(Arc::new(view.with_problem(problem.clone())))
                            }
                            _ => Entry::NotReady(absent.clone()),
                        };
                        map.insert(r.clone(), entry);
                    }
                    Op::Remove(r) => {
                        map.remove(r);
                    }
                }
            }
        });
        let snapshot = self.inner.snapshot.load();
        for op in &ops {
            if let Op::Remove(r) = op
                && snapshot.get(r).is_none()
            {
                metrics.forget(r);
            }
        }
    }

    /// How many snapshots have been published (each copies the map of every
    /// policy; tests and benchmarks count them).
    pub fn publications(&self) -> u64 {
        self.inner.publications.load(Ordering::Relaxed)
    }

    /// Marks the caches synced (`/readyz` answers 200) or not.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Whether [`Self::set_ready`]`(true)` was called.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The shared metrics registry, for handing to other components.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// The policy served at `GET /.well-known/jwks.json`.
    pub fn default_policy(&self) -> Option<&PolicyRef> {
        self.inner.default_policy.as_deref()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// The published view of a policy, if it has one.
    pub fn view(&self, policy: &PolicyRef) -> Option<Arc<PolicyView>> {
        match self.inner.snapshot.load().get(policy) {
            Some(Entry::Serving(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// The summaries of every known policy, sorted (what `GET /policies` lists).
    pub fn summaries(&self) -> Vec<PolicySummary> {
        self.inner
            .snapshot
            .load()
            .summaries()
            .into_iter()
            .cloned()
            .collect()
    }

    pub(crate) fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    pub(crate) fn new_jti(&self) -> Result<String, String> {
        (self.inner.jti)()
    }
}
