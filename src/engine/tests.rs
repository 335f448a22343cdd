//! The engine against an in-memory store and a recording reporter: what each
//! pass reads, writes and reports, without Kubernetes or a disk.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::api::KeyRotationPolicy;
use crate::keys::Algorithm;
use crate::store::layout::DecodeError;
use crate::store::testing::fixture;

// === in-memory store ===

#[derive(Debug)]
enum Stored {
    Nothing,
    /// An object without a key set, at a version (a Secret emptied by hand).
    Emptied(u64),
    Set(StoredKeySet, u64),
    Adoptable(Vec<Arc<crate::keys::SigningKey>>),
    Corrupt,
}

#[derive(Debug, thiserror::Error)]
enum MemError {
    #[error("conflict: expected {expected:?}, found {found:?}")]
    Conflict {
        expected: Option<u64>,
        found: Option<u64>,
    },
    #[error("the store is down")]
    Down,
    #[error("stored set unreadable: {0}")]
    Unreadable(String),
    #[error("the write was refused")]
    Refused,
}

impl Failure for MemError {
    fn kind(&self) -> &'static str {
        match self {
            MemError::Conflict { .. } => "conflict",
            MemError::Down => "down",
            MemError::Unreadable(_) => "unreadable",
            MemError::Refused => "refused",
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, MemError::Conflict { .. })
    }

    fn problem(&self) -> Option<Problem> {
        match self {
            MemError::Unreadable(_) => Some(Problem::new("Unreadable", self.to_string())),
            MemError::Refused => Some(Problem::new("WriteRefused", self.to_string())),
            _ => None,
        }
    }

    fn recheck(&self) -> Option<Duration> {
        matches!(self, MemError::Unreadable(_)).then_some(Duration::from_secs(7))
    }
}

struct MemStore {
    stored: Mutex<Stored>,
    loads: AtomicU32,
    saves: AtomicU32,
    /// Another writer slips in before this many of our next saves...
    races: AtomicU32,
    /// ... and stores this.
    theirs: Mutex<StoredKeySet>,
    /// Saves fail with [`MemError::Down`] while set.
    down: AtomicBool,
    /// Saves fail with [`MemError::Refused`] while set.
    refused: AtomicBool,
    writable: AtomicBool,
}

impl MemStore {
    fn new(stored: Stored) -> Self {
        MemStore {
            stored: Mutex::new(stored),
            loads: AtomicU32::new(0),
            saves: AtomicU32::new(0),
            races: AtomicU32::new(0),
            theirs: Mutex::new(StoredKeySet::default()),
            down: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            writable: AtomicBool::new(true),
        }
    }

    fn version(&self) -> Option<u64> {
        match &*self.stored.lock().unwrap() {
            Stored::Set(_, v) => Some(*v),
            Stored::Adoptable(_) => Some(0),
            Stored::Emptied(v) => Some(*v),
            Stored::Nothing | Stored::Corrupt => None,
        }
    }

    fn set(&self) -> StoredKeySet {
        match &*self.stored.lock().unwrap() {
            Stored::Set(set, _) => set.clone(),
            other => panic!("no set stored: {other:?}"),
        }
    }
}

impl KeyStore for MemStore {
    type Version = u64;
    type Error = MemError;

    fn location(&self) -> String {
        "memory".into()
    }

    async fn load(&self) -> Result<Loaded<u64>, MemError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(match &*self.stored.lock().unwrap() {
            Stored::Nothing => Loaded::Empty { version: None },
            Stored::Emptied(v) => Loaded::Empty { version: Some(*v) },
            Stored::Set(set, v) => Loaded::Keys {
                set: set.clone(),
                version: *v,
            },
            Stored::Adoptable(keys) => Loaded::Adoptable {
                keys: keys.clone(),
                version: 0,
            },
            Stored::Corrupt => Loaded::Corrupt(DecodeError {
                data_key: "jwks.json",
                problem: "not JSON".into(),
            }),
        })
    }

    fn unreadable(&self, error: DecodeError) -> MemError {
        MemError::Unreadable(error.to_string())
    }

    fn can_write(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    async fn save(&self, set: &StoredKeySet, expected: Option<&u64>) -> Result<u64, MemError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(MemError::Down);
        }
        if self.refused.load(Ordering::SeqCst) {
            return Err(MemError::Refused);
        }
        if self.races.load(Ordering::SeqCst) > 0 {
            self.races.fetch_sub(1, Ordering::SeqCst);
            // Someone else stores their own set first.
            let version = self.version().map_or(1, |v| v + 1);
            let theirs = self.theirs.lock().unwrap().clone();
            *self.stored.lock().unwrap() = Stored::Set(theirs, version);
        }
        let found = self.version();
        if found != expected.copied() {
            return Err(MemError::Conflict {
                expected: expected.copied(),
                found,
            });
        }
        let next = found.map_or(1, |v| v + 1);
        *self.stored.lock().unwrap() = Stored::Set(set.clone(), next);
        Ok(next)
    }
}

// === recording reporter ===

#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    /// The last problem shown, and the kids of the set it was shown with.
    degraded: Option<(Problem, Option<Vec<String>>)>,
}

impl Recorder {
    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.calls)
    }
}

impl Reporter for Recorder {
    type Error = std::convert::Infallible;

    async fn publish(&mut self, keys: &StoredKeySet) -> Result<(), Self::Error> {
        self.calls.push(format!("publish {}", keys.keys.len()));
        Ok(())
    }

    async fn note(&mut self, note: Note<'_>) {
        self.calls.push(match note {
            Note::Loaded { keys, .. } => format!("loaded {keys}"),
            Note::Adopting { keys } => format!("adopting {keys}"),
            Note::Adopted { keys } => format!("adopted {keys}"),
            Note::Recreated => "recreated".into(),
            Note::Restored { keys } => format!("restored {keys}"),
            Note::Lifecycle(e) => event_reason(e).into(),
            Note::CopyRepaired { url } => format!("repaired {url}"),
            Note::Copies(c) => format!("copies {}", c.len()),
        });
    }

    async fn healthy(
        &mut self,
        keys: &StoredKeySet,
        problem: Option<Problem>,
    ) -> Result<(), Self::Error> {
        let problem = problem.map(|p| p.reason).unwrap_or_default();
        self.calls.push(
            format!("healthy {} {problem}", keys.keys.len())
                .trim()
                .into(),
        );
        Ok(())
    }

    async fn degraded(
        &mut self,
        problem: Problem,
        held: Option<&StoredKeySet>,
    ) -> Result<(), Self::Error> {
        self.calls.push(format!("degraded {}", problem.reason));
        let kids = held.map(|h| h.keys.iter().map(|k| k.kid().to_owned()).collect());
        self.degraded = Some((problem, kids));
        Ok(())
    }

    fn retrying(&mut self, _what: &dyn fmt::Display, conflict: bool) {
        self.calls.push(
            if conflict {
                "retrying conflict"
            } else {
                "retrying"
            }
            .into(),
        );
    }
}

// === fixtures ===

struct Fixture {
    policy: PolicyRef,
    resolved: lifecycle::Policy,
    metrics: Arc<Metrics>,
}

fn fixture_policy() -> Fixture {
    let policy: KeyRotationPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "KeyRotationPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"algorithm": "ES256"},
    }))
    .unwrap();
    Fixture {
        policy: policy.policy_ref(),
        resolved: policy.spec.resolve(None).unwrap(),
        metrics: Arc::new(Metrics::new()),
    }
}

impl Fixture {
    fn pass(&self, had_keys: bool) -> Pass<'_> {
        Pass {
            policy: &self.policy,
            resolved: &self.resolved,
            metrics: &self.metrics,
            had_keys,
            remembered: None,
            publication: None,
            home: KeyHome::Here,
        }
    }

    /// A pass over the policy that holds `set` in memory from an earlier one.
    fn remembering<'a>(&'a self, set: &'a StoredKeySet, had_keys: bool) -> Pass<'a> {
        Pass {
            remembered: Some(set),
            ..self.pass(had_keys)
        }
    }

    /// `jwks_operator_key_set_lost_total` for the policy and `outcome`.
    fn lost(&self, outcome: &str) -> usize {
        self.policy_counter("key_set_lost_total", "outcome", outcome)
    }

    /// `jwks_operator_reconcile_errors_total` for the policy and `kind`.
    fn errors(&self, kind: &str) -> usize {
        self.policy_counter("reconcile_errors_total", "kind", kind)
    }

    /// The counter `jwks_operator_<family>` of the policy whose label
    /// `label` is `value` (0 when it has no sample).
    fn policy_counter(&self, family: &str, label: &str, value: &str) -> usize {
        let needle =
            format!("jwks_operator_{family}{{namespace=\"ns\",name=\"p\",{label}=\"{value}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&needle).map(|n| n.parse().unwrap()))
            .unwrap_or(0)
    }
}

/// A set as the planner makes it now: nothing to change for a while.
fn fresh(resolved: &lifecycle::Policy) -> StoredKeySet {
    use rand_core::SeedableRng as _;
    let mut source = RngKeySource(rand_chacha::ChaCha20Rng::seed_from_u64(7));
    lifecycle::plan(resolved, &KeySet::default(), Timestamp::now(), &mut source)
        .unwrap()
        .keys
}

fn is_at(next: Next) -> bool {
    matches!(next, Next::At(t) if t > Timestamp::now())
}

// === tests ===

#[tokio::test]
async fn a_first_pass_stores_a_signing_key_and_a_steady_state_writes_nothing() {
    let (f, store, mut tracked, mut report) = start(Stored::Nothing);

    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    let stored = store.set();
    assert!(stored.active().is_some());
    let calls = report.take();
    assert_eq!(calls.first().map(String::as_str), Some("publish 1"));
    assert!(calls.contains(&"KeyCreated".to_string()), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("healthy 1"));
    assert_eq!(tracked.keys.as_ref().map(|(k, _)| k), Some(&stored));

    // Nothing is due: no load (the copy is in sync), no write, the same report.
    let next = run_pass(&f.pass(true), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.loads.load(Ordering::SeqCst), 1);
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert_eq!(report.take(), ["publish 1", "healthy 1"]);
}

#[tokio::test]
async fn a_write_that_lost_a_race_is_planned_again_from_the_winner_and_retried_once() {
    let f = fixture_policy();
    let store = MemStore::new(Stored::Nothing);
    store.races.store(1, Ordering::SeqCst);
    let theirs = fresh(&f.resolved);
    *store.theirs.lock().unwrap() = theirs.clone();
    let mut tracked = Tracked::default();
    let mut report = Recorder::default();

    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    // Read, write (409), read again, and the second plan needs no write:
    // the winner's set already has an active key.
    assert_eq!(store.loads.load(Ordering::SeqCst), 2);
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert_eq!(store.set(), theirs);
    assert_eq!(f.errors("conflict"), 1);
    let calls = report.take();
    assert_eq!(calls[0], "retrying conflict");
    assert!(calls.contains(&"loaded 1".to_string()), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("healthy 1"));
    assert_eq!(tracked.failures, 0);
}

#[tokio::test]
async fn a_second_conflict_in_a_row_ends_the_pass_and_retries_soon() {
    let f = fixture_policy();
    // The other writer stores an empty set each time, so every plan writes.
    let store = MemStore::new(Stored::Nothing);
    store.races.store(2, Ordering::SeqCst);
    let mut tracked: Tracked<u64> = Tracked::default();
    let mut report = Recorder::default();

    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert_eq!(next, Next::After(CONFLICT_RETRY));
    assert_eq!(store.saves.load(Ordering::SeqCst), 2);
    assert!(!tracked.in_sync, "the next pass re-reads");
    assert_eq!(f.errors("conflict"), 2);
    let calls = report.take();
    assert!(!calls.iter().any(|c| c.starts_with("healthy")), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("retrying conflict"));
}

#[tokio::test]
async fn failing_writes_back_off_exponentially_with_jitter_and_success_resets_it() {
    let f = fixture_policy();
    let store = MemStore::new(Stored::Nothing);
    store.down.store(true, Ordering::SeqCst);
    let mut tracked = Tracked::default();
    let mut report = Recorder::default();

    for n in 1..=4u32 {
        let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
        let cap = backoff::cap(n);
        match next {
            Next::After(d) => assert!(d >= cap / 2 && d <= cap, "failure {n}: {d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(tracked.failures, n);
    }
    assert_eq!(f.errors("down"), 4);
    // Not shown as a problem (the store says so), only retried.
    assert!(report.take().iter().all(|c| c == "retrying"));

    store.down.store(false, Ordering::SeqCst);
    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(tracked.failures, 0);
}

#[tokio::test]
async fn an_unreadable_set_is_never_written_and_is_reported_then_rechecked() {
    let (f, store, mut tracked, mut report) = start(Stored::Corrupt);

    let next = run_pass(&f.pass(true), &mut tracked, &store, &mut report).await;
    assert_eq!(next, Next::After(Duration::from_secs(7)));
    assert_eq!(store.saves.load(Ordering::SeqCst), 0);
    assert_eq!(report.take(), ["degraded Unreadable"]);
    assert_eq!(f.errors("unreadable"), 1);
    assert_eq!(tracked.failures, 0, "a re-check is not a backoff");

    // Repaired: the next pass reads it again.
    *store.stored.lock().unwrap() = Stored::Set(fresh(&f.resolved), 3);
    let next = run_pass(&f.pass(true), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_adoptable_set_is_written_back_once_even_when_the_planner_changes_nothing() {
    let f = fixture_policy();
    let store = MemStore::new(Stored::Adoptable(vec![fixture(Algorithm::ES256)]));
    let mut tracked = Tracked::default();
    let mut report = Recorder::default();

    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert_eq!(store.version(), Some(1));
    assert_eq!(
        report.take(),
        ["adopting 1", "adopted 1", "publish 1", "healthy 1"]
    );
    assert!(!tracked.unsaved);

    run_pass(&f.pass(true), &mut tracked, &store, &mut report).await;
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_replica_that_may_not_write_stops_before_writing_and_reports_nothing() {
    let f = fixture_policy();
    let store = MemStore::new(Stored::Nothing);
    store.writable.store(false, Ordering::SeqCst);
    let mut tracked = Tracked::default();
    let mut report = Recorder::default();

    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert_eq!(next, Next::OnChange);
    assert_eq!(store.saves.load(Ordering::SeqCst), 0);
    assert!(report.take().is_empty());
}

#[tokio::test]
async fn an_empty_store_for_a_policy_that_had_keys_is_reported_as_recreated() {
    let f = fixture_policy();
    let store = MemStore::new(Stored::Nothing);
    let mut report = Recorder::default();

    run_pass(&f.pass(true), &mut Tracked::default(), &store, &mut report).await;
    let calls = report.take();
    let publish = calls.iter().position(|c| c == "publish 1").unwrap();
    let recreated = calls.iter().position(|c| c == "recreated").unwrap();
    assert!(publish < recreated, "{calls:?}");

    assert_eq!(f.lost("recreated"), 1);

    // A fresh policy's first set is not a recreation.
    let store = MemStore::new(Stored::Nothing);
    run_pass(&f.pass(false), &mut Tracked::default(), &store, &mut report).await;
    assert!(!report.take().contains(&"recreated".to_string()));
    assert_eq!(f.lost("recreated"), 1);
}

/// A policy, its store holding `stored`, nothing tracked, nothing reported.
fn start(stored: Stored) -> (Fixture, MemStore, Tracked<u64>, Recorder) {
    (
        fixture_policy(),
        MemStore::new(stored),
        Tracked::default(),
        Recorder::default(),
    )
}

/// A fresh policy after its first pass over an empty store (which wrote a
/// fresh set), with the calls that pass reported taken off the recorder.
async fn after_a_first_pass() -> (Fixture, MemStore, Tracked<u64>, Recorder) {
    let (f, store, mut tracked, mut report) = start(Stored::Nothing);
    run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    report.take();
    (f, store, tracked, report)
}

#[tokio::test]
async fn a_set_lost_behind_the_engines_back_is_written_back_with_the_same_keys() {
    // Standalone and the signer keep `Tracked` between passes: that is the
    // set they hold, whatever the adapter passes.
    let (f, store, mut tracked, mut report) = after_a_first_pass().await;
    let first = store.set();

    // The state directory is deleted; the next pass re-reads it.
    *store.stored.lock().unwrap() = Stored::Nothing;
    tracked.in_sync = false;
    let next = run_pass(&f.pass(false), &mut tracked, &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.set(), first, "the same keys, written back");
    let calls = report.take();
    assert!(calls.contains(&"restored 1".to_string()), "{calls:?}");
    assert!(!calls.contains(&"KeyCreated".to_string()), "{calls:?}");
    assert!(!calls.contains(&"recreated".to_string()), "{calls:?}");
    assert_eq!(f.lost("restored"), 1);
    assert_eq!(f.lost("recreated"), 0);
}

#[tokio::test]
async fn an_emptied_store_is_the_same_as_a_deleted_one_and_is_written_under_its_version() {
    // A Secret whose data was removed by hand still exists, at version 4.
    let f = fixture_policy();
    let last_good = fresh(&f.resolved);
    let store = MemStore::new(Stored::Emptied(4));
    let mut report = Recorder::default();
    let pass = f.remembering(&last_good, true);
    let next = run_pass(&pass, &mut Tracked::default(), &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert_eq!(store.version(), Some(5), "a write conditional on version 4");
    assert_eq!(store.set(), last_good, "the same keys, written back");
    assert!(report.take().contains(&"restored 1".to_string()));

    // Nothing in memory: a fresh set over the emptied object, reported.
    let store = MemStore::new(Stored::Emptied(4));
    run_pass(&f.pass(true), &mut Tracked::default(), &store, &mut report).await;
    assert_eq!(store.version(), Some(5));
    assert!(store.set().active().is_some());
    assert!(report.take().contains(&"recreated".to_string()));
}

#[tokio::test]
async fn an_empty_store_is_refilled_with_the_set_in_memory_not_a_fresh_one() {
    let f = fixture_policy();
    let last_good = fresh(&f.resolved);
    let store = MemStore::new(Stored::Nothing);
    let mut report = Recorder::default();
    let pass = f.remembering(&last_good, true);

    let next = run_pass(&pass, &mut Tracked::default(), &store, &mut report).await;
    assert!(is_at(next), "{next:?}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    assert_eq!(store.set(), last_good, "the same keys, written back");
    let calls = report.take();
    assert!(calls.contains(&"restored 1".to_string()), "{calls:?}");
    assert!(!calls.contains(&"recreated".to_string()), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("adopted")), "{calls:?}");
    assert!(!calls.contains(&"KeyCreated".to_string()), "{calls:?}");

    // A policy that never had keys starts afresh whatever is in memory.
    let store = MemStore::new(Stored::Nothing);
    let pass = f.remembering(&last_good, false);
    run_pass(&pass, &mut Tracked::default(), &store, &mut report).await;
    assert_ne!(store.set(), last_good);
}

#[tokio::test]
async fn a_revocation_whose_write_fails_says_it_is_not_recorded_and_hands_the_held_set_on() {
    let (f, store, mut tracked, mut report) = after_a_first_pass().await;
    let stored = store.set();
    let kid = stored.active().unwrap().kid().to_owned();

    // The next write (the one that would drop the revoked key) is refused.
    store.refused.store(true, Ordering::SeqCst);
    let mut resolved = f.resolved.clone();
    resolved.revoked.insert(kid.clone());
    let pass = Pass {
        resolved: &resolved,
        ..f.pass(true)
    };
    run_pass(&pass, &mut tracked, &store, &mut report).await;
    assert_eq!(store.set(), stored, "nothing was written");
    assert_eq!(report.take(), ["degraded WriteRefused"]);
    let (problem, held) = report.degraded.take().unwrap();
    assert!(
        problem.message.starts_with("the write was refused; "),
        "{}",
        problem.message
    );
    assert!(
        problem
            .message
            .contains(&format!("the revocation of {kid} is not recorded")),
        "{}",
        problem.message
    );
    // The adapters serve it through the read-side rule, which drops the kid.
    assert_eq!(held, Some(vec![kid.clone()]));

    // A failure with nothing revoked says nothing about revocation.
    let problem = Problem::new("WriteRefused", "the write was refused");
    assert_eq!(not_recorded(problem.clone(), &[]), problem);
}

/// A pruned provider-held key whose destruction fails is not forgotten: the
/// pass says so with a reason naming the provider (and counts it), its
/// reference is kept, and the destruction is tried again at the next pass,
/// which comes soon.
#[tokio::test]
async fn a_pruned_key_the_provider_fails_to_destroy_is_shown_counted_and_retried() {
    let (f, store, mut tracked, mut report) = after_a_first_pass().await;
    let mut stored = store.set();
    // A provider-held key retired long ago, due for pruning; its token is
    // not open in this process, so destroying it fails.
    let (remote, _gated, _go) = crate::keys::testing::Gated::wrap(&fixture(Algorithm::ES384));
    let reference = remote.key_reference().unwrap().to_owned();
    let now = Timestamp::now();
    let ago = |h: i64| now - jiff::SignedDuration::from_hours(h);
    stored.keys.push(lifecycle::ManagedKey {
        key: remote,
        state: lifecycle::KeyState::Retired,
        created_at: ago(5),
        activates_at: ago(5),
        retired_at: Some(ago(4)),
        prune_after: Some(ago(3)),
        reason: Some(lifecycle::RotationReason::Scheduled),
        max_token_ttl: Duration::from_secs(30),
    });
    *store.stored.lock().unwrap() = Stored::Set(stored, 7);
    tracked.in_sync = false;

    for pass in 1..=2 {
        let next = run_pass(&f.pass(true), &mut tracked, &store, &mut report).await;
        assert_eq!(store.set().keys.len(), 1, "the key has left the stored set");
        let calls = report.take();
        assert!(
            calls.contains(&"healthy 1 PKCS11Failed".to_string()),
            "pass {pass}: {calls:?}"
        );
        assert_eq!(
            store.set().undestroyed,
            std::slice::from_ref(&reference),
            "pass {pass}: listed in the stored set until destroyed"
        );
        assert!(tracked.destroyed.is_empty(), "pass {pass}");
        let sample =
            format!("jwks_operator_key_destroy_failures_total{{provider=\"PKCS11\"}} {pass}");
        assert!(
            f.metrics.encode().contains(&sample),
            "pass {pass}: no {sample}"
        );
        let soon = now + DESTROY_RETRY + Duration::from_secs(5);
        assert!(
            matches!(next, Next::At(t) if t <= soon),
            "pass {pass}: {next:?}"
        );
    }
}

/// The list of keys awaiting destruction lives in the stored set, not in
/// the process: a restart (a fresh `Tracked`, as a new process or a new
/// leader has) still tries the destruction, shows the failure, and keeps
/// the reference listed; it never lists a key the set still holds.
#[tokio::test]
async fn a_restart_still_destroys_the_keys_its_predecessor_could_not() {
    let (f, store, _, mut report) = after_a_first_pass().await;
    let mut stored = store.set();
    let reference = "pkcs11:token=gone;id=%0f".to_owned();
    stored.undestroyed = vec![reference.clone()];
    *store.stored.lock().unwrap() = Stored::Set(stored, 9);
    let mut fresh = Tracked::default();
    let next = run_pass(&f.pass(true), &mut fresh, &store, &mut report).await;
    let calls = report.take();
    assert!(
        calls.contains(&"healthy 1 PKCS11Failed".to_string()),
        "{calls:?}"
    );
    assert!(
        f.metrics
            .encode()
            .contains("jwks_operator_key_destroy_failures_total{provider=\"PKCS11\"} 1"),
        "the new process tried"
    );
    assert_eq!(store.set().undestroyed, [reference]);
    let soon = Timestamp::now() + DESTROY_RETRY + Duration::from_secs(5);
    assert!(matches!(next, Next::At(t) if t <= soon), "{next:?}");
}

#[test]
fn only_keys_the_plan_drops_or_listed_before_await_destruction() {
    let (a, _ga, _goa) = crate::keys::testing::Gated::wrap(&fixture(Algorithm::ES256));
    let held = |set: &StoredKeySet| {
        set.keys
            .iter()
            .filter_map(|k| k.key.key_reference().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let mut current = crate::store::testing::one_key_set();
    current.keys.push(lifecycle::ManagedKey {
        key: a,
        ..current.keys[0].clone()
    });
    let dropped = held(&current)[0].clone();
    current.undestroyed = vec![
        "pkcs11:token=t;id=%01".into(),
        "pkcs11:token=t;id=%02".into(),
    ];
    let mut planned = current.clone();
    planned.keys.pop();
    let destroyed = std::collections::BTreeSet::from(["pkcs11:token=t;id=%02".to_owned()]);
    assert_eq!(
        super::awaiting_destruction(&current, &planned, &destroyed),
        [dropped.clone(), "pkcs11:token=t;id=%01".to_owned()]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "listed before and dropped now, less what was destroyed"
    );
    // A reference some key still holds is never listed.
    let mut relisted = current.clone();
    relisted.undestroyed.push(dropped);
    assert!(
        super::awaiting_destruction(&relisted, &current, &Default::default())
            .iter()
            .all(|r| !held(&current).contains(r))
    );
}
