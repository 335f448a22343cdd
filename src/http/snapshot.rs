//! What the HTTP servers serve: an immutable snapshot of every policy's
//! published key set, swapped atomically by the engine or controller.
//!
//! A [`PolicyView`] is built once per key-set change and holds everything a
//! request needs already serialized: the public JWK Set bytes with their
//! strong ETag and `Cache-Control`, the discovery document, the summary for
//! `/policies`, and for token-enabled policies the active signer and a
//! ready-made [`Verifier`]. Requests only `load()` the [`ArcSwap`] and clone
//! `Bytes`; writers copy the (small) map of `Arc`s and swap it in.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use crate::metrics::Metrics;
use crate::policy::{PolicyRef, PolicySummary, Problem};

pub use super::view::{PolicyView, Shown, strong_etag};

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
    /// Policies whose key provider failed the last token it was asked to
    /// sign: a burst of failures is logged once, at its start and end.
    provider_failing: Arc<Mutex<HashSet<PolicyRef>>>,
    /// How many policies `provider_failing` holds (read without the lock
    /// on every provider-signed token).
    provider_failing_count: Arc<AtomicUsize>,
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
                provider_failing: Arc::default(),
                provider_failing_count: Arc::default(),
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

    /// Records that `policy`'s key provider failed to sign a token; `true`
    /// when this starts a burst (the first failure since the last success),
    /// the one failure of the burst worth a WARN line.
    pub fn provider_failed(&self, policy: &PolicyRef) -> bool {
        let mut failing = self
            .inner
            .provider_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let started = failing.insert(policy.clone());
        self.inner
            .provider_failing_count
            .store(failing.len(), Ordering::Relaxed);
        started
    }

    /// Records that `policy`'s key provider signed a token; `true` when this
    /// ends a burst of failures. Lock-free while no provider is failing.
    pub fn provider_signed(&self, policy: &PolicyRef) -> bool {
        if self.inner.provider_failing_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut failing = self
            .inner
            .provider_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ended = failing.remove(policy);
        self.inner
            .provider_failing_count
            .store(failing.len(), Ordering::Relaxed);
        ended
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

    /// Shows what a reporter without Events decided ([`Shown`]): a view,
    /// or the summary with its problem while no set is held.
    pub fn show(&self, policy: &PolicyRef, shown: Shown) {
        match shown {
            Shown::View(view) => self.upsert(view),
            Shown::Summary(summary, problem) => self.set_problem(policy, summary, problem),
        }
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
                    metrics
                        .engine
                        .set_degraded(v.policy(), v.summary().degraded.is_some());
                    Op::Put(Arc::new(v.policy().clone()), Arc::new(v))
                }
                Update::Problem {
                    policy,
                    summary_if_absent,
                    problem,
                } => {
                    metrics.engine.set_degraded(&policy, problem.is_some());
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
                metrics.engine.forget(r);
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
