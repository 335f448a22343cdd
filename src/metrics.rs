// Over 600 lines on purpose: every metric family, its registration and its recording
// helpers in one place, so each is defined once.

//! Prometheus metrics, exposed as OpenMetrics text on `GET /metrics`.
//!
//! Every name has the prefix `jwks_operator_`:
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `keys` | gauge | `namespace`, `name`, `state` | keys in the set by state (`Pending`, `Active`, `Retired`) |
//! | `rotations_total` | counter | `namespace`, `name`, `reason` | a key became the active signer (`Initial`, `Scheduled`, `Manual`, `Revoked`, `AlgorithmChange`) |
//! | `next_rotation_timestamp_seconds` | gauge | `namespace`, `name` | unix time the next key becomes active |
//! | `next_prune_timestamp_seconds` | gauge | `namespace`, `name` | unix time the next retired key may be pruned (absent when none is retired) |
//! | `pending_activation_timestamp_seconds` | gauge | `namespace`, `name` | unix time the Pending key is due to become active (absent when no key is pending) |
//! | `revoked_key_exposure_timestamp_seconds` | gauge | `namespace`, `name` | unix time until which a verifier that cached the set before the last revocation may still trust the revoked key: revocation time + `verifierRefreshInterval`, or + the served `max-age` (absent before the first revocation) |
//! | `policy_degraded` | gauge | `namespace`, `name` | 1 while the policy has a problem (`Degraded`), else 0 |
//! | `key_set_stale` | gauge | `namespace`, `name` | 1 while this replica's watch of the policy's Secret has failed for longer than its staleness bound (`clockSkew + --propagation-grace`) and its token endpoint does not sign, else 0 |
//! | `key_generation_seconds` | histogram | `alg` | time to generate one key |
//! | `key_generation_failures_total` | counter | `alg` | key generations that failed |
//! | `reconcile_errors_total` | counter | `namespace`, `name`, `kind` | failed reconciles / engine runs, by error kind |
//! | `http_requests_total` | counter | `listener`, `route`, `status` | HTTP responses by listener (`jwks`, `token`, `metrics`), route class and status code |
//! | `http_not_modified_total` | counter | `route` | `304 Not Modified` answers (also counted in `http_requests_total`) |
//! | `http_open_connections` | gauge | `listener` | connections open now |
//! | `http_connections_refused_total` | counter | `listener` | connections closed at once because the listener was at `--http-max-connections` |
//! | `tls_reloads_total` | counter | `result` | changes of the TLS certificate files acted on: `success` (new connections use the new pair) or `failure` (the previous pair stays) |
//! | `tls_reload_failing` | gauge | | 1 while the TLS files on disk are unusable and the previous pair is served, else 0 |
//! | `policy_not_ready_total` | counter | `namespace`, `name` | `503 not_ready` answers (JWK Set or discovery document) for a known policy that has no key yet (also counted in `http_requests_total`) |
//! | `reconcile_duration_seconds` | histogram | | time to reconcile one policy |
//! | `leader` | gauge | | 1 while this replica holds the Lease and writes (always 1 without leader election and in standalone), else 0 |
//! | `build_info` | info | `version` | always 1; the operator's version (and a series that exists as long as the process is scraped) |
//!
//! Labels carry policy names, kids never appear, key material never does.
//! The HTTP counters are a fixed array of atomics (no lock, no allocation on
//! the request path); the per-policy families are touched only by the engine.
//!
//! The series a writer reports about key sets (`keys`, the three timestamps)
//! exist only on the replica that writes: a replica that loses the Lease
//! drops them ([`Metrics::set_leader`]), so a former leader never reports a
//! stale rotation time that would look overdue. The alerts and the dashboard
//! in the Helm chart aggregate with `max by (namespace, name)` across replicas.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::keys::lifecycle::{
    KeySet, KeySource, KeyState, LifecycleEvent, LifecycleKey, RotationReason,
};
use crate::keys::{Algorithm, KeyParams};
use crate::policy::PolicyRef;

/// Prefix of every metric name (`jwks_operator_...`).
pub const PREFIX: &str = "jwks_operator";

/// `Content-Type` of the `/metrics` answer (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const KEY_STATES: [KeyState; 3] = [KeyState::Pending, KeyState::Active, KeyState::Retired];
const ROTATION_REASONS: [RotationReason; 5] = [
    RotationReason::Initial,
    RotationReason::Scheduled,
    RotationReason::Manual,
    RotationReason::Revoked,
    RotationReason::AlgorithmChange,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyStateLabels {
    namespace: String,
    name: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    namespace: String,
    name: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    namespace: String,
    name: String,
    outcome: &'static str,
}

/// What became of a stored key set found lost (deleted or emptied) although
/// the policy had keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostKeySet {
    /// The set this process held was written back: the same keys.
    Restored,
    /// Nothing held it: a fresh set was generated (tokens signed by the old
    /// keys no longer verify).
    Recreated,
}

impl LostKeySet {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LostKeySet::Restored => "restored",
            LostKeySet::Recreated => "recreated",
        }
    }
}

const LOST_OUTCOMES: [LostKeySet; 2] = [LostKeySet::Restored, LostKeySet::Recreated];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlgLabels {
    alg: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    namespace: String,
    name: String,
    kind: String,
}

fn policy_labels(p: &PolicyRef) -> PolicyLabels {
    PolicyLabels {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
    }
}

/// The earliest `pruneAfter` among the retired keys of `set`: when the engine
/// next prunes (absent when no key is retired).
pub fn next_prune_time<K: LifecycleKey>(set: &KeySet<K>) -> Option<Timestamp> {
    set.keys
        .iter()
        .filter(|k| k.state == KeyState::Retired)
        .filter_map(|k| k.prune_after)
        .min()
}

/// A [`KeySource`] that reports how long each generation took to
/// `key_generation_seconds`: wrap the real source before handing it to the
/// planner (`plan(&policy, &set, now, &mut TimedKeySource::new(source, &metrics))`).
pub struct TimedKeySource<'m, S> {
    inner: S,
    metrics: &'m Metrics,
}

impl<'m, S> TimedKeySource<'m, S> {
    /// Wraps `inner`, reporting to `metrics`.
    // Long on purpose: every metric family registered in one flat list, so each name,
    // help text and label set is written once and reads like the docs' table.
    pub fn new(inner: S, metrics: &'m Metrics) -> Self {
        TimedKeySource { inner, metrics }
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<K: LifecycleKey, S: KeySource<K>> KeySource<K> for TimedKeySource<'_, S> {
    type Error = S::Error;

    fn generate(&mut self, params: KeyParams) -> Result<K, Self::Error> {
        let started = std::time::Instant::now();
        match self.inner.generate(params) {
            Ok(key) => {
                self.metrics
                    .observe_key_generation(params.alg, started.elapsed().as_secs_f64());
                Ok(key)
            }
            Err(e) => {
                self.metrics.inc_key_generation_failure(params.alg);
                Err(e)
            }
        }
    }
}

// === HTTP counters ===

/// Which listener answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The public JWKS listener (`--jwks-addr`).
    Jwks,
    /// The token listener (`--token-addr`).
    Token,
    /// The probes-and-metrics listener (`--metrics-addr`).
    Metrics,
}

impl Listener {
    const ALL: [Listener; 3] = [Listener::Jwks, Listener::Token, Listener::Metrics];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Jwks => "jwks",
            Listener::Token => "token",
            Listener::Metrics => "metrics",
        }
    }
}

/// The kind of route a request was for: the `route` label of the HTTP
/// counters. A fixed set, so label cardinality stays bounded whatever paths
/// clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `GET /{namespace}/{name}/.well-known/jwks.json`.
    Jwks,
    /// `GET /.well-known/jwks.json` (the default policy).
    DefaultJwks,
    /// `GET /{namespace}/{name}/.well-known/openid-configuration`.
    Discovery,
    /// `GET /policies`.
    Policies,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `POST /{namespace}/{name}/token`.
    Token,
    /// `POST /{namespace}/{name}/verify`.
    Verify,
    /// Anything else (answered 404).
    Other,
}

impl RouteClass {
    /// Every route class, in label order.
    pub const ALL: [RouteClass; 10] = [
        RouteClass::Jwks,
        RouteClass::DefaultJwks,
        RouteClass::Discovery,
        RouteClass::Policies,
        RouteClass::Healthz,
        RouteClass::Readyz,
        RouteClass::Metrics,
        RouteClass::Token,
        RouteClass::Verify,
        RouteClass::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Jwks => "jwks",
            RouteClass::DefaultJwks => "default_jwks",
            RouteClass::Discovery => "discovery",
            RouteClass::Policies => "policies",
            RouteClass::Healthz => "healthz",
            RouteClass::Readyz => "readyz",
            RouteClass::Metrics => "metrics",
            RouteClass::Token => "token",
            RouteClass::Verify => "verify",
            RouteClass::Other => "other",
        }
    }

    /// Classifies a request path by its shape alone (the path is not
    /// validated here; an unknown policy still counts as its route class).
    pub fn of_path(path: &str) -> RouteClass {
        match path {
            "/.well-known/jwks.json" => return RouteClass::DefaultJwks,
            "/policies" => return RouteClass::Policies,
            "/healthz" => return RouteClass::Healthz,
            "/readyz" => return RouteClass::Readyz,
            "/metrics" => return RouteClass::Metrics,
            _ => {}
        }
        let Some(rest) = path.strip_prefix('/') else {
            return RouteClass::Other;
        };
        let mut segments = rest.split('/');
        let (Some(_ns), Some(_name), Some(third)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return RouteClass::Other;
        };
        match (third, segments.next(), segments.next()) {
            ("token", None, _) => RouteClass::Token,
            ("verify", None, _) => RouteClass::Verify,
            (".well-known", Some("jwks.json"), None) => RouteClass::Jwks,
            (".well-known", Some("openid-configuration"), None) => RouteClass::Discovery,
            _ => RouteClass::Other,
        }
    }

    /// Whether answers carry an `ETag` (so a `304` is possible).
    pub fn is_cacheable(self) -> bool {
        matches!(
            self,
            RouteClass::Jwks | RouteClass::DefaultJwks | RouteClass::Discovery
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes counted individually; anything else is `status="other"`.
const STATUSES: [u16; 15] = [
    200, 204, 304, 400, 401, 403, 404, 405, 406, 411, 413, 415, 429, 500, 503,
];
const N_STATUS: usize = STATUSES.len() + 1;
const N_CELLS: usize = Listener::ALL.len() * RouteClass::ALL.len() * N_STATUS;

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

fn status_label(index: usize) -> String {
    STATUSES
        .get(index)
        .map_or_else(|| "other".to_string(), u16::to_string)
}

/// Lock-free request counters, encoded on scrape by a [`Collector`].
#[derive(Debug)]
struct HttpCounters {
    requests: Box<[AtomicU64]>,
    not_modified: [AtomicU64; RouteClass::ALL.len()],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: &'static str,
    route: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

impl HttpCounters {
    fn new() -> Self {
        HttpCounters {
            requests: (0..N_CELLS).map(|_| AtomicU64::new(0)).collect(),
            not_modified: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn cell(listener: Listener, route: RouteClass, status: u16) -> usize {
        let l = listener as usize;
        (l * RouteClass::ALL.len() + route.index()) * N_STATUS + status_index(status)
    }

    fn record(&self, listener: Listener, route: RouteClass, status: u16) {
        self.requests[Self::cell(listener, route, status)].fetch_add(1, Ordering::Relaxed);
        if status == 304 {
            self.not_modified[route.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Collector for HttpCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut metric = encoder.encode_descriptor(
                "http_requests",
                "HTTP responses by listener, route class and status code.",
                None,
                MetricType::Counter,
            )?;
            for listener in Listener::ALL {
                for route in RouteClass::ALL {
                    for s in 0..N_STATUS {
                        let i = (listener as usize * RouteClass::ALL.len() + route.index())
                            * N_STATUS
                            + s;
                        let n = self.requests[i].load(Ordering::Relaxed);
                        if n == 0 {
                            continue;
                        }
                        let labels = HttpLabels {
                            listener: listener.as_str(),
                            route: route.as_str(),
                            status: status_label(s),
                        };
                        metric
                            .encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                    }
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "http_not_modified",
            "304 Not Modified answers to conditional requests, by route class.",
            None,
            MetricType::Counter,
        )?;
        for route in RouteClass::ALL {
            let n = self.not_modified[route.index()].load(Ordering::Relaxed);
            // The cacheable routes always have a series (0 until the first
            // 304), so the dashboard's 304 share is 0 rather than no data.
            if n == 0 && !route.is_cacheable() {
                continue;
            }
            let labels = RouteLabels {
                route: route.as_str(),
            };
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }
}

// === Metrics ===

/// All the operator's metrics, shared (in an `Arc`) by the engine or
/// controller, which reports key sets, rotations and errors, and the HTTP
/// layer, which counts requests and serves the text.
pub struct Metrics {
    registry: Registry,
    keys: Family<KeyStateLabels, Gauge>,
    rotations: Family<RotationLabels, Counter>,
    next_rotation: Family<PolicyLabels, Gauge>,
    next_prune: Family<PolicyLabels, Gauge>,
    pending_activation: Family<PolicyLabels, Gauge>,
    revoked_key_exposure: Family<PolicyLabels, Gauge>,
    degraded: Family<PolicyLabels, Gauge>,
    stale: Family<PolicyLabels, Gauge>,
    key_generation: Family<AlgLabels, Histogram>,
    key_generation_failures: Family<AlgLabels, Counter>,
    not_ready: Family<PolicyLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    key_set_lost: Family<LostLabels, Counter>,
    reconcile_duration: Histogram,
    error_kinds: Mutex<HashMap<PolicyRef, BTreeSet<String>>>,
    http: std::sync::Arc<HttpCounters>,
    leader: Gauge,
    open_connections: Family<ListenerLabels, Gauge>,
    refused_connections: Family<ListenerLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    tls_reload_failing: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Metrics ===

impl Metrics {
    /// A fresh registry with every metric family registered under [`PREFIX`].
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let keys = Family::<KeyStateLabels, Gauge>::default();
        registry.register(
            "keys",
            "Keys in the policy's set, by lifecycle state",
            keys.clone(),
        );
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "rotations",
            "Times a key became the active signer, by reason",
            rotations.clone(),
        );
        let next_rotation = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "next_rotation_timestamp",
            "Unix time at which the next key becomes the active signer",
            Unit::Seconds,
            next_rotation.clone(),
        );
        let next_prune = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "next_prune_timestamp",
            "Unix time at which the next retired key may be pruned",
            Unit::Seconds,
            next_prune.clone(),
        );
        let pending_activation = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "pending_activation_timestamp",
            "Unix time at which the Pending key is due to become the active signer (absent when no key is pending)",
            Unit::Seconds,
            pending_activation.clone(),
        );
        let revoked_key_exposure = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "revoked_key_exposure_timestamp",
            "Unix time until which a verifier that cached the JWK Set before the last revocation may still trust the revoked key",
            Unit::Seconds,
            revoked_key_exposure.clone(),
        );
        let degraded = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_degraded",
            "1 while the policy is Degraded (the last good key set keeps being served), else 0",
            degraded.clone(),
        );
        let stale = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "key_set_stale",
            "1 while this replica's watch of the policy's Secret has failed for longer than its staleness bound and its token endpoint does not sign, else 0",
            stale.clone(),
        );
        let key_generation = Family::<AlgLabels, Histogram>::new_with_constructor(
            key_generation_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "key_generation",
            "Time to generate one signing key, by algorithm",
            Unit::Seconds,
            key_generation.clone(),
        );
        let key_generation_failures = Family::<AlgLabels, Counter>::default();
        registry.register(
            "key_generation_failures",
            "Key generations that failed, by algorithm",
            key_generation_failures.clone(),
        );
        // Every algorithm starts at 0, so the first failure is an increase
        // that `increase()`/`rate()` see, not a series that appears at 1.
        for alg in Algorithm::ALL {
            let _ = key_generation_failures.get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            });
        }
        let not_ready = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_not_ready",
            "503 not_ready answers (JWK Set or discovery document) for a known policy that has no key set yet",
            not_ready.clone(),
        );
        registry.register(
            "build",
            "The operator's version; always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles of a policy, by error kind",
            reconcile_errors.clone(),
        );
        let key_set_lost = Family::<LostLabels, Counter>::default();
        registry.register(
            "key_set_lost",
            "Times the stored key set was found deleted or emptied although the policy had keys, by outcome (restored: the set held in memory was written back; recreated: nothing held it, a fresh set was generated)",
            key_set_lost.clone(),
        );
        let http = std::sync::Arc::new(HttpCounters::new());
        registry.register_collector(Box::new(http.clone()));
        // 1 ms .. ~16 s: a reconcile is an API round trip or three, plus key
        // generation when a key is due.
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "reconcile_duration",
            "Time to reconcile one policy (gather, plan, write, status)",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles (always 1 without leader election and in standalone), else 0",
            leader.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "http_open_connections",
            "HTTP connections open now, by listener",
            open_connections.clone(),
        );
        let refused_connections = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "http_connections_refused",
            "Connections closed at once because the listener was at its connection limit",
            refused_connections.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Changes of the TLS certificate files acted on, by result (success, failure)",
            tls_reloads.clone(),
        );
        let tls_reload_failing = Gauge::default();
        registry.register(
            "tls_reload_failing",
            "1 while the TLS files on disk are unusable and the previous pair is served, else 0",
            tls_reload_failing.clone(),
        );
        Metrics {
            registry,
            open_connections,
            refused_connections,
            tls_reloads,
            tls_reload_failing,
            keys,
            rotations,
            next_rotation,
            next_prune,
            pending_activation,
            revoked_key_exposure,
            degraded,
            stale,
            key_generation,
            key_generation_failures,
            not_ready,
            reconcile_errors,
            key_set_lost,
            error_kinds: Mutex::new(HashMap::new()),
            http,
            leader,
            reconcile_duration,
        }
    }

    /// Records how long one reconcile took.
    pub fn observe_reconcile(&self, secs: f64) {
        self.reconcile_duration.observe(secs);
    }

    /// Reports whether this replica is the one that reconciles and writes.
    /// Losing the lead drops the key-set series this replica reported (keys
    /// by state, next rotation, next prune, pending activation): the new
    /// leader reports them now, and a stale copy here would soon look like
    /// an overdue rotation.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            self.keys.clear();
            self.next_rotation.clear();
            self.next_prune.clear();
            self.pending_activation.clear();
        }
    }

    /// Counts a key generation that failed.
    pub fn inc_key_generation_failure(&self, alg: Algorithm) {
        self.key_generation_failures
            .get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            })
            .inc();
    }

    /// Counts a `503 not_ready` answer for `policy` (known, no key yet).
    pub fn inc_not_ready(&self, policy: &PolicyRef) {
        self.not_ready.get_or_create(&policy_labels(policy)).inc();
    }

    /// Reports a policy's current key set: keys by state, and the next
    /// rotation and prune times (`None` removes the series). When a key is
    /// Pending, the next rotation is its activation, also reported as
    /// `pending_activation_timestamp_seconds`.
    pub fn observe_key_set<K: LifecycleKey>(
        &self,
        policy: &PolicyRef,
        set: &KeySet<K>,
        next_rotation: Option<Timestamp>,
        next_prune: Option<Timestamp>,
    ) {
        for state in KEY_STATES {
            let n = set.keys.iter().filter(|k| k.state == state).count();
            self.keys
                .get_or_create(&KeyStateLabels {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    state: state.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let labels = policy_labels(policy);
        let pending_activation = set.pending().and(next_rotation);
        for (family, time) in [
            (&self.next_rotation, next_rotation),
            (&self.next_prune, next_prune),
            (&self.pending_activation, pending_activation),
        ] {
            match time {
                Some(t) => {
                    family.get_or_create(&labels).set(t.as_second());
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Reports until when verifier caches may still trust the last revoked
    /// key ([`KeySet::revocation_exposure_until`]; `None` removes the series).
    pub fn observe_revocation_exposure(&self, policy: &PolicyRef, until: Option<Timestamp>) {
        let labels = policy_labels(policy);
        match until {
            Some(t) => {
                self.revoked_key_exposure
                    .get_or_create(&labels)
                    .set(t.as_second());
            }
            None => {
                self.revoked_key_exposure.remove(&labels);
            }
        }
    }

    /// Counts the rotations among `events`: a key activated, or created
    /// directly as the signer (the first key, a revoked key's replacement).
    pub fn record_events(&self, policy: &PolicyRef, events: &[LifecycleEvent]) {
        for event in events {
            let reason = match event {
                LifecycleEvent::Activated { reason, .. } => *reason,
                LifecycleEvent::Created {
                    state: KeyState::Active,
                    reason,
                    ..
                } => *reason,
                _ => continue,
            };
            self.rotations
                .get_or_create(&RotationLabels {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Records how long generating one `alg` key took.
    pub fn observe_key_generation(&self, alg: Algorithm, secs: f64) {
        self.key_generation
            .get_or_create(&AlgLabels {
                alg: alg.as_str().to_string(),
            })
            .observe(secs);
    }

    /// Counts a failed reconcile of `policy`. `kind` is a short, stable,
    /// low-cardinality name of the failing operation (`read_secret`,
    /// `write_secret`, `parse_key_set`, `invalid_spec`, ...), never a message.
    pub fn inc_reconcile_error(&self, policy: &PolicyRef, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                kind: kind.to_string(),
            })
            .inc();
        let mut kinds = self
            .error_kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds
            .entry(policy.clone())
            .or_default()
            .insert(kind.to_string());
    }

    /// Counts a stored key set found lost (deleted or emptied) for `policy`,
    /// and what was done about it.
    pub fn inc_key_set_lost(&self, policy: &PolicyRef, outcome: LostKeySet) {
        self.key_set_lost
            .get_or_create(&LostLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Sets the `policy_degraded` gauge (done by [`crate::http::SharedState`]
    /// whenever a policy's problem changes).
    /// Every known policy passes here, so this also creates its
    /// `policy_not_ready_total` counter at 0: the first not_ready answer is
    /// then an increase `rate()` sees.
    pub fn set_degraded(&self, policy: &PolicyRef, degraded: bool) {
        let labels = policy_labels(policy);
        self.degraded
            .get_or_create(&labels)
            .set(i64::from(degraded));
        let _ = self.not_ready.get_or_create(&labels);
    }

    /// Sets the `key_set_stale` gauge of a served policy.
    pub fn set_stale(&self, policy: &PolicyRef, stale: bool) {
        self.stale
            .get_or_create(&policy_labels(policy))
            .set(i64::from(stale));
    }

    /// Drops every series of a policy that is no longer served.
    pub fn forget(&self, policy: &PolicyRef) {
        for state in KEY_STATES {
            self.keys.remove(&KeyStateLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                state: state.to_string(),
            });
        }
        for reason in ROTATION_REASONS {
            self.rotations.remove(&RotationLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                reason: reason.to_string(),
            });
        }
        for outcome in LOST_OUTCOMES {
            self.key_set_lost.remove(&LostLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                outcome: outcome.as_str(),
            });
        }
        let labels = policy_labels(policy);
        self.next_rotation.remove(&labels);
        self.next_prune.remove(&labels);
        self.pending_activation.remove(&labels);
        self.not_ready.remove(&labels);
        self.revoked_key_exposure.remove(&labels);
        self.degraded.remove(&labels);
        self.stale.remove(&labels);
        let kinds = self
            .error_kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(policy)
            .unwrap_or_default();
        for kind in kinds {
            self.reconcile_errors.remove(&ErrorLabels {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                kind,
            });
        }
    }

    /// Counts one HTTP answer. Lock-free; called for every request.
    pub fn record_http(&self, listener: Listener, route: RouteClass, status: u16) {
        self.http.record(listener, route, status);
    }

    /// Counts a connection a listener took.
    pub fn http_connection_opened(&self, listener: Listener) {
        self.open_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .inc();
    }

    /// Counts a connection a listener closed (or that its client closed).
    pub fn http_connection_closed(&self, listener: Listener) {
        self.open_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .dec();
    }

    /// Counts a connection refused at the connection limit.
    pub fn http_connection_refused(&self, listener: Listener) {
        self.refused_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .inc();
    }

    /// Counts a change of the TLS files acted on: the new pair is in use
    /// (`ok`) or it was refused and the previous one stays.
    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.tls_reload_failing.set(i64::from(!ok));
    }

    /// The whole exposition in OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; the encoder only propagates fmt errors.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn key_generation_histogram() -> Histogram {
    // 0.5 ms (EdDSA, ECDSA) to ~30 s (a slow 4096-bit RSA prime search).
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PolicyRef {
        PolicyRef::new("team-a", "api")
    }

    #[test]
    fn route_classes_follow_the_path_shape() {
        let cases = [
            ("/ns/n/.well-known/jwks.json", RouteClass::Jwks),
            (
                "/ns/n/.well-known/openid-configuration",
                RouteClass::Discovery,
            ),
            ("/.well-known/jwks.json", RouteClass::DefaultJwks),
            ("/policies", RouteClass::Policies),
            ("/healthz", RouteClass::Healthz),
            ("/readyz", RouteClass::Readyz),
            ("/metrics", RouteClass::Metrics),
            ("/ns/n/token", RouteClass::Token),
            ("/ns/n/verify", RouteClass::Verify),
            ("/ns/n/token/x", RouteClass::Other),
            ("/ns/n/.well-known/jwks.json/x", RouteClass::Other),
            ("/", RouteClass::Other),
            ("", RouteClass::Other),
            ("/a", RouteClass::Other),
        ];
        for (path, class) in cases {
            assert_eq!(RouteClass::of_path(path), class, "{path}");
        }
    }

    #[test]
    fn http_counters_are_labelled_and_count_304s() {
        let m = Metrics::new();
        m.record_http(Listener::Jwks, RouteClass::Jwks, 200);
        m.record_http(Listener::Jwks, RouteClass::Jwks, 200);
        m.record_http(Listener::Jwks, RouteClass::Jwks, 304);
        m.record_http(Listener::Token, RouteClass::Token, 418);
        let text = m.encode();
        assert!(
            text.contains(
                "jwks_operator_http_requests_total{listener=\"jwks\",route=\"jwks\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("jwks_operator_http_not_modified_total{route=\"jwks\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("jwks_operator_http_not_modified_total{route=\"default_jwks\"} 0"),
            "cacheable routes have a series before their first 304: {text}"
        );
        assert!(
            !text.contains("jwks_operator_http_not_modified_total{route=\"token\"}"),
            "{text}"
        );
        assert!(
            text.contains(
                "jwks_operator_http_requests_total{listener=\"token\",route=\"token\",status=\"other\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn rotations_count_activations_and_direct_signers() {
        let m = Metrics::new();
        m.record_events(
            &p(),
            &[
                LifecycleEvent::Created {
                    kid: "a".into(),
                    state: KeyState::Active,
                    reason: RotationReason::Initial,
                },
                LifecycleEvent::Created {
                    kid: "b".into(),
                    state: KeyState::Pending,
                    reason: RotationReason::Scheduled,
                },
                LifecycleEvent::Activated {
                    kid: "b".into(),
                    reason: RotationReason::Scheduled,
                },
                LifecycleEvent::Pruned { kid: "a".into() },
            ],
        );
        let text = m.encode();
        assert!(text.contains("jwks_operator_rotations_total{namespace=\"team-a\",name=\"api\",reason=\"Initial\"} 1"), "{text}");
        assert!(text.contains("jwks_operator_rotations_total{namespace=\"team-a\",name=\"api\",reason=\"Scheduled\"} 1"), "{text}");
        assert!(!text.contains("kid"), "kids stay out of metrics: {text}");
    }

    #[test]
    fn forget_drops_every_series_of_a_policy() {
        let m = Metrics::new();
        let set: KeySet<std::sync::Arc<crate::keys::SigningKey>> = KeySet::default();
        m.observe_key_set(&p(), &set, Some(Timestamp::UNIX_EPOCH), None);
        m.observe_revocation_exposure(&p(), Some(Timestamp::UNIX_EPOCH));
        m.inc_reconcile_error(&p(), "write_secret");
        m.set_degraded(&p(), true);
        m.record_events(
            &p(),
            &[LifecycleEvent::Activated {
                kid: "b".into(),
                reason: RotationReason::Manual,
            }],
        );
        let text = m.encode();
        for name in [
            "jwks_operator_keys{",
            "jwks_operator_next_rotation_timestamp_seconds{",
            "jwks_operator_revoked_key_exposure_timestamp_seconds{",
            "jwks_operator_reconcile_errors_total{",
            "jwks_operator_policy_degraded{",
            "jwks_operator_rotations_total{",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
        m.forget(&p());
        let text = m.encode();
        assert!(!text.contains("team-a"), "{text}");
    }

    #[test]
    fn timed_key_source_observes_each_generation() {
        use rand_chacha::rand_core::SeedableRng;
        let m = Metrics::new();
        let mut source = TimedKeySource::new(
            crate::keys::material::RngKeySource(rand_chacha::ChaCha20Rng::seed_from_u64(1)),
            &m,
        );
        let params = KeyParams::new(Algorithm::EdDSA);
        let _: std::sync::Arc<crate::keys::SigningKey> = source.generate(params).unwrap();
        let _: std::sync::Arc<crate::keys::SigningKey> = source.generate(params).unwrap();
        let text = m.encode();
        assert!(
            text.contains("jwks_operator_key_generation_seconds_count{alg=\"EdDSA\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn key_generation_is_a_histogram_by_alg() {
        let m = Metrics::new();
        m.observe_key_generation(Algorithm::ES256, 0.001);
        let text = m.encode();
        assert!(
            text.contains("# TYPE jwks_operator_key_generation_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("jwks_operator_key_generation_seconds_count{alg=\"ES256\"} 1"),
            "{text}"
        );
    }

    /// A key that is only a kid: the metrics never look at key material.
    #[derive(Clone, Debug)]
    struct Kid(&'static str);

    impl LifecycleKey for Kid {
        fn kid(&self) -> &str {
            self.0
        }
        fn params(&self) -> KeyParams {
            KeyParams::new(Algorithm::ES256)
        }
    }

    fn managed(kid: &'static str, state: KeyState) -> crate::keys::lifecycle::ManagedKey<Kid> {
        crate::keys::lifecycle::ManagedKey {
            key: Kid(kid),
            state,
            created_at: Timestamp::UNIX_EPOCH,
            activates_at: Timestamp::UNIX_EPOCH,
            retired_at: None,
            prune_after: None,
            reason: None,
            max_token_ttl: std::time::Duration::from_secs(3600),
        }
    }

    fn set_of(keys: Vec<crate::keys::lifecycle::ManagedKey<Kid>>) -> KeySet<Kid> {
        KeySet {
            keys,
            ..KeySet::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn pending_activation_is_reported_only_while_a_key_is_pending() {
        let m = Metrics::new();
        let with_pending = set_of(vec![
            managed("b", KeyState::Pending),
            managed("a", KeyState::Active),
        ]);
        m.observe_key_set(&p(), &with_pending, Some(at(1_900_000_000)), None);
        let text = m.encode();
        assert!(
            text.contains("jwks_operator_pending_activation_timestamp_seconds{namespace=\"team-a\",name=\"api\"} 1900000000"),
            "{text}"
        );
        // The key activated: no pending key, the series goes away.
        let activated = set_of(vec![managed("b", KeyState::Active)]);
        m.observe_key_set(&p(), &activated, Some(at(1_900_086_400)), None);
        let text = m.encode();
        assert!(
            !text.contains("jwks_operator_pending_activation_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            text.contains("jwks_operator_next_rotation_timestamp_seconds{namespace=\"team-a\",name=\"api\"} 1900086400"),
            "{text}"
        );
    }

    #[test]
    fn losing_the_lead_drops_the_key_set_series_but_keeps_counters_and_degraded() {
        let m = Metrics::new();
        m.set_leader(true);
        let set = set_of(vec![
            managed("b", KeyState::Pending),
            managed("a", KeyState::Active),
        ]);
        m.observe_key_set(&p(), &set, Some(at(1_900_000_000)), Some(at(1_900_000_100)));
        m.set_degraded(&p(), true);
        m.inc_reconcile_error(&p(), "write_secret");
        let text = m.encode();
        assert!(text.contains("\njwks_operator_leader 1\n"), "{text}");
        assert!(
            text.contains("jwks_operator_pending_activation_timestamp_seconds{"),
            "{text}"
        );

        m.set_leader(false);
        let text = m.encode();
        assert!(text.contains("jwks_operator_leader 0"), "{text}");
        for gone in [
            "jwks_operator_keys{",
            "jwks_operator_next_rotation_timestamp_seconds{",
            "jwks_operator_next_prune_timestamp_seconds{",
            "jwks_operator_pending_activation_timestamp_seconds{",
        ] {
            assert!(
                !text.contains(gone),
                "{gone} survived losing the lead: {text}"
            );
        }
        for kept in [
            "jwks_operator_policy_degraded{namespace=\"team-a\",name=\"api\"} 1",
            "jwks_operator_reconcile_errors_total{namespace=\"team-a\",name=\"api\",kind=\"write_secret\"} 1",
        ] {
            assert!(text.contains(kept), "{kept} missing: {text}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no entropy")]
    struct NoEntropy;

    struct Failing;

    impl KeySource<Kid> for Failing {
        type Error = NoEntropy;
        fn generate(&mut self, _: KeyParams) -> Result<Kid, NoEntropy> {
            Err(NoEntropy)
        }
    }

    #[test]
    fn failed_key_generations_are_counted_by_alg_and_not_timed() {
        let m = Metrics::new();
        assert!(
            m.encode()
                .contains("jwks_operator_key_generation_failures_total{alg=\"ES384\"} 0"),
            "every algorithm starts at 0"
        );
        let mut source = TimedKeySource::new(Failing, &m);
        assert!(source.generate(KeyParams::new(Algorithm::ES384)).is_err());
        assert!(source.generate(KeyParams::new(Algorithm::ES384)).is_err());
        let text = m.encode();
        assert!(
            text.contains("jwks_operator_key_generation_failures_total{alg=\"ES384\"} 2"),
            "{text}"
        );
        assert!(
            !text.contains("jwks_operator_key_generation_seconds_count{alg=\"ES384\"}"),
            "a failure is not a generation time: {text}"
        );
    }

    #[test]
    fn not_ready_answers_are_counted_per_policy_and_forgotten_with_it() {
        let m = Metrics::new();
        m.set_degraded(&p(), false);
        assert!(
            m.encode().contains(
                "jwks_operator_policy_not_ready_total{namespace=\"team-a\",name=\"api\"} 0"
            ),
            "a known policy's counter starts at 0"
        );
        m.inc_not_ready(&p());
        m.inc_not_ready(&p());
        let text = m.encode();
        assert!(
            text.contains(
                "jwks_operator_policy_not_ready_total{namespace=\"team-a\",name=\"api\"} 2"
            ),
            "{text}"
        );
        m.forget(&p());
        assert!(!m.encode().contains("team-a"));
    }

    #[test]
    fn build_info_names_the_crate_version() {
        let text = Metrics::new().encode();
        assert!(
            text.contains(&format!(
                "jwks_operator_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
