// Over 600 lines on purpose: the signer's adapter (its reporter, leader and follower
// roles, start-up and run loop) in one place; the gRPC service, key formats and socket
// are in their own modules.

//! `jwks-operator signer`: kube-apiserver's external service-account token
//! signer (KEP-740, `--service-account-signing-endpoint`).
//!
//! It serves `v1.ExternalJWTSigner` (Sign, FetchKeys, Metadata) over
//! plaintext gRPC on a Unix socket (mode 0600) with the keys of one
//! `KeyRotationPolicy` read from policy files, kept in a standalone state
//! directory with the same lifecycle, layout and signals as `standalone`
//! (SIGHUP re-reads the policy: the `jwks.dev/rotate-requested-at`
//! annotation rotates, `spec.revokedKeyIDs` revokes). kube-apiserver depends
//! on nothing that runs inside the cluster it serves.
//!
//! # One writer, many signers
//!
//! Every control-plane node runs its own signer for its own kube-apiserver.
//! Signers given the same state directory (a shared or replicated
//! filesystem with working `flock`, or one host) agree through the
//! directory's lock: the holder is the *leader*. It runs passes of the
//! shared [`engine`](crate::engine) with the state directory as its store
//! and the signer as its reporter (the engine's third adapter, beside `k8s`
//! and `standalone`): it plans, generates and writes, and serves each set
//! once it is stored. The others *follow*: every [`Config::poll_interval`]
//! they re-read the set when `lifecycle.json` or `jwks.json` changed, so all
//! signers serve the same keys and no key is served before it is stored. A
//! follower tries the lock at every poll and takes over within one interval
//! when the leader exits.
//!
//! # Lifetimes
//!
//! Metadata announces the policy's `maxTokenTTL`; kube-apiserver reads it
//! once. The largest value ever announced is recorded ([`announced`]) and
//! bounds both Sign (`exp - iat`) and retention (the engine plans with it),
//! so lowering `maxTokenTTL` never prunes a key a running kube-apiserver may
//! still mint long tokens for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use jiff::Timestamp;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use warp::Filter as _;

pub mod announced;
pub mod kube;
pub mod service;
pub mod socket;

#[cfg(test)]
mod tests;

/// The generated protobuf messages and tonic server/client of
/// `proto/externaljwt.proto` (package `v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("v1");
}

use self::announced::Announced;
use self::service::{Lifetimes, Service, SignerState, refresh_hint};
use crate::api;
use crate::engine::{self, Next, Note, Pass, Problem, Reporter, Tracked, run_pass};
use crate::http::PolicySummary;
use crate::http::{self, PolicyRef, PolicyView, SharedState, Shown, Shutdown};
use crate::keys;
use crate::keys::SigningKey;
use crate::keys::lifecycle::{Policy, after};
use crate::logging;
use crate::metrics;
use crate::metrics::Metrics;
use crate::providers;
use crate::publish;
use crate::reasons;
use crate::standalone::policies::{self, PolicyDoc};
use crate::store::files::{FileStore, FileVersion, PolicyDir, StateLock};
use crate::store::{KeyStore as _, Loaded, StoreError, StoredKeySet};

/// How long in-flight calls get at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything `jwks-operator signer` is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// A policy file or a directory of them.
    pub policies: PathBuf,
    /// The policy whose keys sign.
    pub policy: PolicyRef,
    /// The state directory (shared by every signer of the cluster).
    pub state_dir: PathBuf,
    /// The Unix socket kube-apiserver's `--service-account-signing-endpoint` names.
    pub socket: PathBuf,
    /// Optional JWKS listener (the usual routes, for this one policy).
    pub jwks_addr: Option<SocketAddr>,
    /// Optional listener for `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: Option<SocketAddr>,
    /// Public base URL of the JWKS listener, for its discovery document.
    pub public_base_url: Option<String>,
    /// An existing `--service-account-signing-key-file` to adopt into an
    /// empty state as the active key, under the kid kube-apiserver gave it.
    pub adopt_key: Option<PathBuf>,
    /// How often the stored set is checked for changes and a follower
    /// tries to become the leader.
    pub poll_interval: Duration,
    /// `--publish`: copies of the issuer's discovery document and JWK Set in
    /// object storage (kube's layout: `openid/v1/jwks`), beside the policy's
    /// own `spec.publish`.
    pub publish: Vec<api::PublishTarget>,
    /// `--publish-verify-interval`.
    pub publish_verify_interval: Duration,
}

/// Reads `--policies` and returns the named policy, checked for what
/// kube-apiserver can use.
pub fn load_policy(path: &Path, policy: &PolicyRef) -> anyhow::Result<PolicyDoc> {
    let files = policies::read_policies(path)?;
    if let Some(bad) = files.bad.iter().find(|b| {
        b.policy
            .as_ref()
            .is_some_and(|(ns, n)| *ns == policy.namespace && *n == policy.name)
    }) {
        return Err(anyhow!("policy {policy} is invalid: {bad}"));
    }
    let doc = files
        .policies
        .into_iter()
        .find(|d| d.namespace == policy.namespace && d.name == policy.name)
        .ok_or_else(|| {
            anyhow!(
                "no KeyRotationPolicy {policy} in {} (metadata.namespace defaults to `default`)",
                path.display()
            )
        })?;
    kube::check_policy(doc.resolved.params.alg, doc.resolved.max_token_ttl)
        .map_err(|e| anyhow!("policy {policy} cannot drive kube-apiserver's signer: {e}"))?;
    Ok(doc)
}

/// The lifecycle parameters the engine plans with: the policy's, with
/// retention covering the recorded lifetime bound.
fn resolved_for(doc: &PolicyDoc, retention_ttl: Duration) -> Policy {
    let mut resolved = doc.resolved.clone();
    resolved.max_token_ttl = resolved.max_token_ttl.max(retention_ttl);
    resolved
}

/// The FetchKeys refresh hint of a policy (see [`refresh_hint`]).
fn hint_for(doc: &PolicyDoc) -> Duration {
    refresh_hint(
        doc.resolved.publish_ahead,
        doc.policy.spec.verifier_refresh_interval.map(Into::into),
    )
}

/// Reads and converts `--adopt-key` (a PEM `sa.key`).
fn read_adopt_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --adopt-key {}", path.display()))?,
    );
    kube::import_pem_key(&text).with_context(|| format!("--adopt-key {}", path.display()))
}

/// Writes `key` as an adoptable `jwks.json` into an empty policy directory;
/// the engine then takes it over as the active key. Does nothing when the
/// state already holds keys.
fn adopt_into(dir: &PolicyDir, key: &SigningKey) -> anyhow::Result<()> {
    match dir.load_blocking()? {
        Loaded::Empty { .. } => {}
        Loaded::Keys { set, .. } | Loaded::Copied { set, .. } => {
            if set.get(key.kid()).is_some() {
                info!(
                    kid = key.kid(),
                    "--adopt-key: the key is already in the set"
                );
            } else {
                warn!(
                    kid = key.kid(),
                    "--adopt-key ignored: the state directory already holds a key set (adoption only seeds an empty state)"
                );
            }
            return Ok(());
        }
        Loaded::Adoptable { .. } | Loaded::Corrupt(_) => return Ok(()),
    }
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let path = dir.path();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let bytes = keys::private_jwks_json([key]);
    let tmp = path.join(".jwks.json.adopt");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes.expose())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path.join("jwks.json"))?;
    std::fs::File::open(path)?.sync_all()?;
    info!(kid = key.kid(), state = %path.display(), "adopted --adopt-key as the first key of an empty state, under the kid kube-apiserver gave it");
    Ok(())
}

/// What identifies a stored set's version without reading it.
type Stamp = Vec<Option<(i64, i64, u64, u64)>>;

fn stamp(dir: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    ["lifecycle.json", "jwks.json"]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .ok()
                .map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.len()))
        })
        .collect()
}

enum Role {
    Follower,
    Leader(Box<Leader>),
}

/// What the leader keeps between engine passes.
struct Leader {
    tracked: Tracked<FileVersion>,
    next_due: Timestamp,
    problem: Option<Problem>,
    _lock: StateLock,
}

/// The signer as the engine's [`Reporter`]: a stored set is served over
/// gRPC (and on the optional JWKS listener); problems are logged once.
struct Report<'a> {
    policy: &'a PolicyRef,
    doc: &'a PolicyDoc,
    base_url: Option<&'a str>,
    state: &'a SignerState,
    http: &'a SharedState,
    problem: &'a mut Option<Problem>,
    /// The warning shown in `/policies` (a lost set written back or replaced).
    warning: &'a mut Option<Problem>,
}

impl Reporter for Report<'_> {
    type Error = std::convert::Infallible;

    async fn publish(&mut self, keys: &StoredKeySet) -> Result<(), Self::Error> {
        let hint = hint_for(self.doc);
        if self
            .state
            .publish(keys, &self.doc.resolved.revoked, hint, Timestamp::now())
        {
            log_served(self.policy, keys);
        }
        Ok(())
    }

    async fn note(&mut self, note: Note<'_>) {
        engine::log::note_and_keep_warning(self.policy, &note, self.warning);
    }

    async fn healthy(
        &mut self,
        keys: &StoredKeySet,
        problem: Option<Problem>,
    ) -> Result<(), Self::Error> {
        engine::log::healthy(self.policy, self.problem, &problem);
        let info = self.doc.policy.info();
        let shown = Shown::healthy(&info, keys, self.base_url, problem, self.warning.clone());
        self.http.show(self.policy, shown);
        Ok(())
    }

    async fn degraded(
        &mut self,
        problem: Problem,
        held: Option<&StoredKeySet>,
    ) -> Result<(), Self::Error> {
        engine::log::degraded(
            self.policy,
            self.problem,
            &problem,
            "; still serving the last good key set",
        );
        // Served again for the policy as it is now: a kid it revokes
        // leaves FetchKeys and stops signing although no write recorded it.
        let held = held.filter(|k| !k.keys.is_empty());
        if let Some(keys) = held {
            self.publish(keys).await?;
        }
        let shown = Shown::degraded(&self.doc.policy.info(), held, self.base_url, problem);
        self.http.show(self.policy, shown);
        Ok(())
    }

    fn retrying(&mut self, what: &dyn std::fmt::Display, conflict: bool) {
        engine::log::retrying(self.policy, what, conflict);
    }
}

fn log_served(policy: &PolicyRef, set: &StoredKeySet) {
    info!(
        policy = %policy,
        active = set.active().map(|k| k.kid()),
        keys = ?set.keys.iter().map(|k| format!("{}:{}", k.kid(), k.state)).collect::<Vec<_>>(),
        "serving the key set"
    );
}

/// The run loop's state besides the role.
struct Signer {
    config: Config,
    doc: PolicyDoc,
    dir: PolicyDir,
    store: FileStore,
    announced: Announced,
    state: Arc<SignerState>,
    http: SharedState,
    adopt: Option<SigningKey>,
    seen: Option<Stamp>,
    corrupt_logged: bool,
    /// The set last served as a follower: what this signer holds when it
    /// takes over and finds the stored set gone.
    served: Option<StoredKeySet>,
    /// Whether a signer had announced a lifetime from this state directory
    /// before this one started (so keys existed).
    ran_before: bool,
    /// The warning shown in `/policies`.
    warning: Option<Problem>,
    /// When a follower last read the stored set, or found it unchanged since
    /// it did ([`engine::staleness`]).
    read_at: Option<std::time::Instant>,
    /// The files' stamp at that read.
    read_stamp: Option<Stamp>,
    /// Where keys are generated: the token of a `PKCS11` provider, opened
    /// at start and on reload, so a follower's keys sign through it too.
    home: providers::KeyHome,
}

/// Opens the policy's key provider (blocking: module loading and login).
async fn key_home(doc: &PolicyDoc) -> providers::KeyHome {
    let spec = doc.policy.spec.key_provider.clone();
    let name = doc.policy.policy_ref().to_string();
    let home =
        tokio::task::spawn_blocking(move || providers::standalone_home(spec.as_ref(), &name))
            .await
            .unwrap_or_default();
    if let providers::KeyHome::Unavailable(e) = &home {
        warn!(
            reason = reasons::PKCS11_FAILED,
            "the policy's key provider cannot be used: {e}"
        );
    }
    home
}

impl Signer {
    /// A follower's refresh: re-reads the stored set if it changed and
    /// serves it.
    async fn refresh(&mut self) {
        let now_stamp = stamp(self.dir.path());
        if self.seen.as_ref() == Some(&now_stamp) {
            // Unchanged since the last successful read: that copy is current.
            if self.read_stamp.as_ref() == Some(&now_stamp) && now_stamp.iter().all(Option::is_some)
            {
                self.read_at = Some(std::time::Instant::now());
            }
            return;
        }
        match self.dir.load().await {
            Ok(Loaded::Keys { set, .. } | Loaded::Copied { set, .. }) => {
                self.serve(&set);
                self.served = Some(set);
                self.http.set_ready(true);
                self.corrupt_logged = false;
                self.read_at = Some(std::time::Instant::now());
                self.read_stamp = Some(now_stamp.clone());
                self.seen = Some(now_stamp);
            }
            // Gone (the leader writes back what it holds) or being adopted:
            // keep serving what was served.
            Ok(Loaded::Empty { .. } | Loaded::Adoptable { .. }) => {}
            Ok(Loaded::Corrupt(e)) => {
                if !self.corrupt_logged {
                    error!(policy = %self.config.policy, "the stored key set cannot be read ({}: {}); still serving the last good set", e.data_key, e.problem);
                    self.corrupt_logged = true;
                }
                self.seen = Some(now_stamp);
            }
            Err(e) => warn!(policy = %self.config.policy, "reading the key set: {e}"),
        }
    }

    /// Serves `set` (as a follower read it) for the policy as it is now.
    fn serve(&self, set: &StoredKeySet) {
        let hint = hint_for(&self.doc);
        if self
            .state
            .publish(set, &self.doc.resolved.revoked, hint, Timestamp::now())
        {
            log_served(&self.config.policy, set);
        }
        self.http.upsert(PolicyView::build(
            &self.doc.policy.info(),
            set,
            self.config.public_base_url.as_deref(),
        ));
    }

    /// A follower's staleness check at `now` ([`engine::staleness`]): past
    /// the bound since its last read of the stored set, Sign refuses, the
    /// `jwks_operator_signer_stale` gauge is 1, `/policies` shows
    /// `KeySetStale` and a WARN is logged; all of it is undone at the first
    /// check after a read. A leader (the only writer) is never stale.
    fn check_freshness(&mut self, now: std::time::Instant, leading: bool) {
        let bound = engine::staleness::bound(&self.doc.resolved, self.config.poll_interval);
        let policy = &self.config.policy;
        let freshness = if leading {
            engine::staleness::Freshness::Fresh
        } else {
            engine::staleness::freshness(self.read_at, now, bound)
        };
        match freshness {
            engine::staleness::Freshness::Fresh => {
                if self.state.set_stale(None) {
                    info!(policy = %policy, "the stored key set is read again: signing resumes");
                    self.http.set_problem(
                        policy,
                        PolicySummary::for_policy(&self.doc.policy.info()),
                        None,
                    );
                }
            }
            engine::staleness::Freshness::Stale { age } => {
                let why = format!(
                    "this signer has not read the stored key set in {} for longer than its staleness bound of {}s (clockSkew + propagationGrace): the leader may have retired the active key since, so nothing signs until the set is read again",
                    self.dir.path().display(),
                    bound.as_secs()
                );
                if self.state.set_stale(Some(why.clone())) {
                    warn!(policy = %policy, age_seconds = age.as_secs(), "{why}");
                    self.http.set_problem(
                        policy,
                        PolicySummary::for_policy(&self.doc.policy.info()),
                        Some(Problem::new(reasons::KEY_SET_STALE, why)),
                    );
                }
            }
        }
    }

    /// A leader's engine pass, when due, or at once when the stored set is
    /// gone (deleted behind its back): the set it holds is written back.
    async fn pass(&mut self, leader: &mut Leader) {
        let now = Timestamp::now();
        let holds_keys = leader
            .tracked
            .keys
            .as_ref()
            .is_some_and(|(k, _)| !k.keys.is_empty());
        if leader.tracked.in_sync && holds_keys && !self.dir.holds_a_set() {
            warn!(policy = %self.config.policy, state = %self.dir.path().display(), "the stored key set is gone; writing back the set this signer holds");
            leader.tracked.in_sync = false;
            leader.next_due = now;
        }
        if leader.next_due > now {
            return;
        }
        let metrics = self.http.metrics_arc();
        let resolved = resolved_for(&self.doc, self.state.lifetimes().sign_cap);
        // Only the leader writes the copies, like the state directory.
        let publication = engine::publish::Publication::local(
            &self.doc.policy.spec,
            &self.config.publish,
            publish::target::KUBE_JWKS_PATH,
            self.config.publish_verify_interval,
        )
        .await;
        let pass = Pass {
            policy: &self.config.policy,
            resolved: &resolved,
            metrics: &metrics,
            // A signer ran on this state directory before (it recorded what
            // it announced): an empty state then means lost keys, and a
            // fresh set is reported loudly as a re-key.
            had_keys: holds_keys || self.ran_before,
            // The engine writes back what it holds in `tracked` (this
            // signer's own, or what it served as a follower).
            remembered: None,
            publication: publication.as_ref(),
            home: self.home.clone(),
        };
        let mut report = Report {
            policy: &self.config.policy,
            doc: &self.doc,
            base_url: self.config.public_base_url.as_deref(),
            state: &self.state,
            http: &self.http,
            problem: &mut leader.problem,
            warning: &mut self.warning,
        };
        let next = run_pass(&pass, &mut leader.tracked, &self.dir, &mut report).await;
        leader.next_due = match next {
            Next::At(due) => due,
            Next::After(wait) => after(Timestamp::now(), wait),
            // The file store always writes; nothing to wait for.
            Next::OnChange => after(Timestamp::now(), Duration::from_secs(3600)),
        };
        if self.state.published().is_some() {
            self.http.set_ready(true);
        }
    }

    /// Reads the recorded lifetime bound (others may have raised it).
    fn recorded_ttl(&self) -> Duration {
        match self.announced.read() {
            Ok(Some(d)) => d,
            Ok(None) => self.state.lifetimes().sign_cap,
            Err(e) => {
                warn!("{}: {e}", self.announced.path().display());
                self.state.lifetimes().sign_cap
            }
        }
    }

    /// Takes the lock if free.
    fn try_lead(&mut self) -> Option<Role> {
        match self.store.lock_exclusive() {
            Ok(lock) => {
                if let Some(key) = &self.adopt
                    && let Err(e) = adopt_into(&self.dir, key)
                {
                    error!("--adopt-key: {e:#}");
                }
                self.state.metrics().set_leader(true);
                info!(state_dir = %self.config.state_dir.display(), "holding the state-directory lock: this signer plans and rotates the keys");
                Some(Role::Leader(Box::new(Leader {
                    // What it served as a follower, to be re-read (or
                    // written back if the stored set is gone).
                    tracked: Tracked {
                        keys: self.served.take().map(|set| (set, None)),
                        ..Tracked::default()
                    },
                    next_due: Timestamp::now(),
                    problem: None,
                    _lock: lock,
                })))
            }
            Err(StoreError::Locked { .. }) => None,
            Err(e) => {
                warn!("cannot take the state-directory lock: {e}");
                None
            }
        }
    }

    /// SIGHUP: re-reads the policy; a policy that cannot drive the signer
    /// is refused and the previous one kept.
    fn reload(&mut self, role: &mut Role) {
        info!(path = %self.config.policies.display(), "SIGHUP: re-reading the policy files");
        let doc = match load_policy(&self.config.policies, &self.config.policy) {
            Ok(doc) => doc,
            Err(e) => {
                error!("{e:#}; keeping the policy as it was");
                return;
            }
        };
        let announce = doc.resolved.max_token_ttl;
        let cap = match self.announced.record(announce) {
            Ok(cap) => cap,
            Err(e) => {
                error!(
                    "cannot record the announced maxTokenTTL in {}: {e}; keeping the policy as it was",
                    self.announced.path().display()
                );
                return;
            }
        };
        self.state.set_lifetimes(Lifetimes {
            announce,
            sign_cap: cap,
            clock_skew: doc.resolved.clock_skew,
        });
        // The token stays open once opened (cached per process): this only
        // reads the PIN file and compares it, unless the token changed.
        self.home = providers::standalone_home(
            doc.policy.spec.key_provider.as_ref(),
            &doc.policy.policy_ref().to_string(),
        );
        self.doc = doc;
        // The refresh hint may have changed with publishAhead.
        self.seen = None;
        match role {
            Role::Leader(leader) => leader.next_due = Timestamp::now(),
            // What a follower serves follows the new policy at once (a kid it
            // revokes leaves FetchKeys), whether or not the stored set can
            // be read again.
            Role::Follower => {
                if let Some(set) = self.served.take() {
                    self.serve(&set);
                    self.served = Some(set);
                }
            }
        }
    }
}

/// Runs the signer until `shutdown` is triggered. Fails at startup when the
/// policy cannot be used, the state directory or the socket cannot be set
/// up, or a listener cannot be bound.
// Long on purpose: the start-up steps (policy, state directory, adoption, listeners)
// and then the loop that binds the gRPC socket once it has keys and runs engine passes,
// in the order they happen.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let doc = load_policy(&config.policies, &config.policy)?;
    let store = FileStore::open(&config.state_dir)
        .with_context(|| format!("cannot use --state-dir {}", config.state_dir.display()))?;
    let dir = store
        .policy(&config.policy.namespace, &config.policy.name)
        .map_err(|e| anyhow!("{e}"))?;
    let adopt = config
        .adopt_key
        .as_deref()
        .map(read_adopt_key)
        .transpose()?;
    let announced = Announced::new(&config.state_dir, &config.policy);
    let ran_before = announced.read().is_ok_and(|r| r.is_some());
    let announce = doc.resolved.max_token_ttl;
    let cap = announced.record(announce).with_context(|| {
        format!(
            "cannot record the announced maxTokenTTL in {}",
            announced.path().display()
        )
    })?;
    if cap > announce {
        info!(
            announce = %api::fmt_duration(announce),
            retained_for = %api::fmt_duration(cap),
            "a longer maxTokenTTL was announced before: Sign accepts and retention covers it"
        );
    }
    let state = SignerState::new(Lifetimes {
        announce,
        sign_cap: cap,
        clock_skew: doc.resolved.clock_skew,
    });
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;

    let metrics = Arc::new(Metrics::new());
    let http_state = SharedState::new(Some(config.policy.clone()), metrics);
    let mut servers: Vec<JoinHandle<()>> = Vec::new();
    let serve_config = |listener| http::ServeConfig {
        listener,
        limits: http::Limits::default(),
        tls: None,
        metrics: Some(http_state.metrics_arc()),
    };
    if let Some(addr) = config.jwks_addr {
        let (addr, server) = http::serve(
            addr,
            http::jwks_routes(http_state.clone()),
            serve_config(metrics::Listener::Jwks),
            shutdown.wait(),
        )
        .await
        .with_context(|| format!("cannot listen on --jwks-addr {addr}"))?;
        info!(%addr, "JWKS listener started");
        servers.push(server);
    }
    if let Some(addr) = config.metrics_addr {
        let (addr, server) = http::serve(
            addr,
            metrics_routes(state.clone(), http_state.clone()),
            serve_config(metrics::Listener::Metrics),
            shutdown.wait(),
        )
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        info!(%addr, "metrics listener started");
        servers.push(server);
    }

    let home = key_home(&doc).await;
    let mut signer = Signer {
        config,
        doc,
        dir,
        store,
        announced,
        state: state.clone(),
        http: http_state.clone(),
        adopt,
        seen: None,
        corrupt_logged: false,
        served: None,
        ran_before,
        warning: None,
        read_at: None,
        read_stamp: None,
        home,
    };
    let mut role = Role::Follower;
    state.metrics().set_leader(false);
    let mut guard = None;
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        if let Role::Follower = role
            && let Some(leader) = signer.try_lead()
        {
            role = leader;
        }
        let recorded = signer.recorded_ttl();
        let mut lifetimes = state.lifetimes();
        if recorded > lifetimes.sign_cap {
            info!(ttl = %api::fmt_duration(recorded), "a longer maxTokenTTL was announced by another signer: Sign accepts it and retention covers it");
            lifetimes.sign_cap = recorded;
            state.set_lifetimes(lifetimes);
            if let Role::Leader(leader) = &mut role {
                leader.next_due = Timestamp::now();
            }
        }
        match &mut role {
            Role::Leader(leader) => signer.pass(leader).await,
            Role::Follower => signer.refresh().await,
        }
        signer.check_freshness(std::time::Instant::now(), matches!(role, Role::Leader(_)));

        if guard.is_none() && state.published().is_some_and(|p| p.active.is_some()) {
            let (listener, g) = socket::bind(&signer.config.socket)?;
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let service = Service::new(state.clone()).into_server();
            let done = shutdown.wait();
            servers.push(tokio::spawn(async move {
                if let Err(e) = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, done)
                    .await
                {
                    error!("the gRPC server stopped: {e}");
                }
            }));
            info!(socket = %signer.config.socket.display(), policy = %signer.config.policy, "serving v1.ExternalJWTSigner");
            guard = Some(g);
        }

        let poll = signer.config.poll_interval;
        let sleep = match &role {
            Role::Leader(leader) => until(leader.next_due).clamp(Duration::from_millis(10), poll),
            Role::Follower => poll,
        };
        tokio::select! {
            () = &mut stop => break,
            _ = hangup.recv() => signer.reload(&mut role),
            () = tokio::time::sleep(sleep) => {}
        }
    }

    info!("shutting down");
    shutdown.trigger();
    if let Some(g) = guard {
        g.remove();
    }
    let all = futures::future::join_all(servers);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        error!("calls still in flight after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// `/metrics` (the operator's metrics and the signer's), `/healthz`,
/// `/readyz` (200 once a key set with an active key is served).
fn metrics_routes(
    state: Arc<SignerState>,
    http_state: SharedState,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
+ Clone
+ Send
+ Sync
+ 'static {
    use warp::Reply as _;
    use warp::http::StatusCode;
    let metrics = {
        let state = state.clone();
        warp::path!("metrics").and(warp::get()).map(move || {
            let base = http_state.metrics().encode();
            let mut text = base.trim_end_matches("# EOF\n").to_owned();
            text.push_str(&state.metrics().encode());
            warp::reply::with_header(
                text,
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .into_response()
        })
    };
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok".into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        if state.published().is_some_and(|p| p.active.is_some()) {
            "ok".into_response()
        } else {
            warp::reply::with_status("not ready", StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    });
    metrics
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(warp::any()
            .map(|| warp::reply::with_status("not found", StatusCode::NOT_FOUND).into_response()))
        .unify()
}

fn until(due: Timestamp) -> Duration {
    let now = Timestamp::now();
    if due <= now {
        return Duration::ZERO;
    }
    due.duration_since(now).unsigned_abs()
}

/// Flags of `jwks-operator signer`.
#[derive(clap::Args, Debug, Clone)]
pub struct SignerArgs {
    /// A KeyRotationPolicy YAML file or a directory of them (the manifests
    /// you would `kubectl apply`).
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub policies: PathBuf,
    /// The policy (`namespace/name`) whose keys sign service-account tokens.
    /// Its algorithm must be RS256, ES256 or ES384 and its maxTokenTTL at
    /// least 10m.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_policy_ref)]
    pub policy: PolicyRef,
    /// Directory holding the keys (standalone layout). Signers of several
    /// control-plane nodes may share it: the one holding its lock rotates.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Unix socket to serve on; give kube-apiserver the same path in
    /// --service-account-signing-endpoint (a plain path, no unix://).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Seed an empty state with this PEM private key (the cluster's current
    /// --service-account-signing-key-file, e.g. /etc/kubernetes/pki/sa.key)
    /// as the active key, under the kid kube-apiserver gave it, so tokens
    /// issued before the switch keep verifying. Ignored once the state holds keys.
    #[arg(long, value_name = "PEM_FILE")]
    pub adopt_key: Option<PathBuf>,
    /// Also serve the JWKS listener (public set, discovery, /metrics) here.
    #[arg(long, value_name = "ADDR")]
    pub jwks_addr: Option<SocketAddr>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Base URL clients reach the JWKS listener at (for jwks_uri).
    #[arg(long, value_name = "URL")]
    pub public_base_url: Option<String>,
    /// How often the stored set is checked for changes, and a follower
    /// tries to take over rotation.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll)]
    pub poll_interval: Duration,
    /// Also publish the issuer's discovery document and JWK Set to this
    /// object-storage URL (s3://, az://, gs://, file://) in the layout cloud
    /// IAM expects of a self-hosted cluster (`.well-known/openid-configuration`,
    /// `openid/v1/jwks`); a key signs only once the copy holds it
    /// (docs/publication.md). Repeatable.
    #[arg(long, value_name = "URL")]
    pub publish: Vec<String>,
    /// KEY=VALUE credentials for every --publish target (AWS_*, AZURE_*,
    /// GOOGLE_SERVICE_ACCOUNT_KEY); without it the process's own.
    #[arg(long, value_name = "FILE")]
    pub publish_credentials_file: Option<PathBuf>,
    /// How often each copy is read back and compared by digest.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::cli::parse_positive_duration)]
    pub publish_verify_interval: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Text, env = "JWKS_LOG_FORMAT")]
    pub log_format: logging::LogFormat,
}

fn parse_policy_ref(s: &str) -> Result<PolicyRef, String> {
    s.parse::<PolicyRef>().map_err(|e| e.to_string())
}

fn parse_poll(s: &str) -> Result<Duration, String> {
    let d: api::Duration = s.parse()?;
    let d: Duration = d.into();
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err(format!("{s:?} must be between 100ms and 60s"));
    }
    Ok(d)
}

/// `jwks-operator signer`: logs, runs until SIGTERM/SIGINT, returns the exit code.
pub fn main(args: SignerArgs) -> std::process::ExitCode {
    logging::init_logging(args.log_format);
    let config = Config {
        policies: args.policies,
        policy: args.policy,
        state_dir: args.state_dir,
        socket: args.socket,
        jwks_addr: args.jwks_addr,
        metrics_addr: args.metrics_addr,
        public_base_url: args.public_base_url,
        adopt_key: args.adopt_key,
        poll_interval: args.poll_interval,
        publish: args
            .publish
            .iter()
            .map(|url| api::PublishTarget {
                url: url.clone(),
                credentials_file: args
                    .publish_credentials_file
                    .as_ref()
                    .map(|f| f.display().to_string()),
                ..Default::default()
            })
            .collect(),
        publish_verify_interval: args.publish_verify_interval,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jwks-operator: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_termination_signal();
        run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwks-operator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
