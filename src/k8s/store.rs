//! The Secret store: a policy's key set in its Secret, the Kubernetes
//! implementation of [`KeyStore`]. Reads come from the [`SecretCache`] the
//! serving index's watch fills (a GET only when the cache cannot answer, or
//! after a conflict), classified through the shared [`Decoder`]; writes are
//! a create, or a replace conditional on the `resourceVersion` read (a 409
//! is a conflict for the engine to re-read, from the API this time).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::leader::WriteGate;
use super::request::{Error, MANAGER, forget_managed_fields, is_conflict};
use super::secret::{Decoder, Found, secret_object};
use tokio::sync::mpsc;

use crate::api::{KeyRotationPolicy, MANAGED_BY, MANAGED_BY_LABEL};
use crate::http::PolicyRef;
use crate::store::layout::{self, DecodeError};
use crate::store::{KeyStore, Loaded, StoredKeySet};

/// Create/replace parameters naming our field manager.
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// What a Secret write is conditional on: its `resourceVersion`, and the
/// lifecycle generation counter stored in it (the next write stores one more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretVersion {
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `lifecycle.json`'s `generation` (0 for a Secret to adopt).
    pub generation: u64,
}

impl fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resourceVersion {}", self.resource_version)
    }
}

/// What the [`SecretCache`] knows about a Secret name.
#[derive(Clone, Debug)]
pub enum Cached {
    /// The newest version seen.
    Present(Arc<Secret>),
    /// Not among the operator's Secrets, and the namespace has been listed:
    /// absent, or not labelled ours (a create then fails with a conflict
    /// and the engine re-reads from the API).
    Absent,
    /// The namespace's watch has not listed yet: ask the API.
    Unknown,
}

/// The operator's Secrets (labelled `app.kubernetes.io/managed-by:
/// jwks-operator`) as this replica knows them: filled by the serving index's
/// watch, and by the API's answers to the reconciler's own reads and writes,
/// so a reconcile right after a write does not see the version before it
/// even when the watch is behind. Of two versions of one Secret the newer
/// `resourceVersion` wins.
///
/// The reconciler reads it instead of GETting its Secret. A stale entry is
/// safe: every write is conditional on the `resourceVersion` read, and after
/// a conflict the next read goes to the API.
#[derive(Debug, Default)]
pub struct SecretCache {
    inner: Mutex<CacheInner>,
    /// Who is told of policies whose Secret changed: the controllers while
    /// they run, each with the namespace it watches (None: all).
    subscribers: Mutex<Vec<(Option<String>, mpsc::UnboundedSender<PolicyRef>)>>,
}

#[derive(Debug, Default)]
struct CacheInner {
    secrets: HashMap<(String, String), Arc<Secret>>,
    /// Watch scopes (a namespace, or None for all) that have listed.
    listed: HashSet<Option<String>>,
}

/// Whether `candidate` is at least as new as `known`. kube-apiserver's
/// `resourceVersion`s are etcd revisions (integers); anything else is taken
/// as newer, and a wrong guess costs a conflict and a re-read, nothing more.
fn not_older(candidate: &Secret, known: &Secret) -> bool {
    let version = |s: &Secret| {
        s.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (version(candidate), version(known)) {
        (Some(c), Some(k)) => c >= k,
        _ => true,
    }
}

/// A copy to keep: `managedFields` are never read, and large.
fn to_keep(secret: &Secret) -> Arc<Secret> {
    let mut secret = secret.clone();
    forget_managed_fields(&mut secret);
    Arc::new(secret)
}

/// Keeps `secret` under `key` unless a newer version of it is kept.
fn keep_newer(
    secrets: &mut HashMap<(String, String), Arc<Secret>>,
    key: (String, String),
    secret: Arc<Secret>,
) {
    match secrets.get(&key) {
        Some(known) if !not_older(&secret, known) => {}
        _ => {
            secrets.insert(key, secret);
        }
    }
}

fn key_of(secret: &Secret) -> (String, String) {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

fn labelled_ours(secret: &Secret) -> bool {
    secret
        .labels()
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY)
}

// === impl SecretCache ===

impl SecretCache {
    /// What is known about Secret `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Cached {
        let inner = self.lock();
        if let Some(s) = inner.secrets.get(&(namespace.to_owned(), name.to_owned())) {
            return Cached::Present(s.clone());
        }
        let listed =
            inner.listed.contains(&None) || inner.listed.contains(&Some(namespace.to_owned()));
        if listed {
            Cached::Absent
        } else {
            Cached::Unknown
        }
    }

    /// A version of one of the operator's Secrets (a watch event, or the
    /// API's answer to a read or write): kept unless a newer one is known.
    /// A Secret that is not labelled ours is dropped instead: the watch
    /// would never report its changes.
    pub fn observe(&self, secret: Arc<Secret>) {
        let key = key_of(&secret);
        let mut inner = self.lock();
        if !labelled_ours(&secret) {
            inner.secrets.remove(&key);
            return;
        }
        keep_newer(&mut inner.secrets, key, secret);
    }

    /// Secret `namespace/name` does not exist (a GET said 404).
    pub fn absent(&self, namespace: &str, name: &str) {
        self.lock()
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// The watch reports `secret` deleted (or no longer labelled ours):
    /// dropped unless a newer version is known (written since).
    pub fn deleted(&self, secret: &Secret) {
        let key = key_of(secret);
        let mut inner = self.lock();
        if inner
            .secrets
            .get(&key)
            .is_none_or(|known| not_older(secret, known))
        {
            inner.secrets.remove(&key);
        }
    }

    /// A watch of `scope` (a namespace, or None for all) listed `fresh`:
    /// they replace what was known in that scope.
    pub fn listed(&self, scope: &Option<String>, fresh: &HashMap<(String, String), Arc<Secret>>) {
        let mut inner = self.lock();
        inner.secrets.retain(|(ns, name), known| {
            scope.as_deref().is_some_and(|s| s != ns)
                || fresh
                    .get(&(ns.clone(), name.clone()))
                    .is_some_and(|f| !not_older(f, known))
        });
        for (key, secret) in fresh {
            keep_newer(&mut inner.secrets, key.clone(), secret.clone());
        }
        inner.listed.insert(scope.clone());
    }

    /// The policies in `scope` (a namespace, or None for all) whose Secret
    /// changes in the cache from now on, each told after the change (a
    /// controller reconciles them; until it drops the receiver).
    pub fn subscribe(&self, scope: Option<String>) -> mpsc::UnboundedReceiver<PolicyRef> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((scope, tx));
        rx
    }

    /// Tells the subscribers that `policy`'s Secret changed in the cache.
    pub fn changed(&self, policy: &PolicyRef) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|(scope, tx)| {
            if scope.as_deref().is_some_and(|s| s != policy.namespace) {
                return !tx.is_closed();
            }
            tx.send(policy.clone()).is_ok()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One policy's Secret. Built per reconcile; remembers the Secret as last
/// read, so a write merges onto it and keeps what is not ours.
pub struct SecretStore<'a> {
    api: Api<Secret>,
    policy: &'a KeyRotationPolicy,
    namespace: String,
    name: String,
    writable: &'a WriteGate,
    cache: &'a SecretCache,
    decoder: &'a Decoder,
    read: Mutex<Option<Secret>>,
    /// Set by a conflict: the next read asks the API server.
    live: AtomicBool,
}

// === impl SecretStore ===

impl<'a> SecretStore<'a> {
    /// The store of `policy`'s Secret (`spec.secretName`, or `<name>-jwks`),
    /// read from `cache` where it can answer, decoded through `decoder`,
    /// writing only while the `writable` gate is open.
    pub fn new(
        client: Client,
        policy: &'a KeyRotationPolicy,
        writable: &'a WriteGate,
        cache: &'a SecretCache,
        decoder: &'a Decoder,
    ) -> Self {
        let namespace = policy.namespace().unwrap_or_default();
        SecretStore {
            api: Api::namespaced(client, &namespace),
            name: policy.secret_name(),
            namespace,
            policy,
            writable,
            cache,
            decoder,
            read: Mutex::new(None),
            live: AtomicBool::new(false),
        }
    }

    /// The Secret: from the cache, or from the API when the cache cannot
    /// answer or a conflict showed it stale (and the cache learns the answer).
    async fn fetch(&self) -> Result<Option<Secret>, Error> {
        if !self.live.swap(false, Ordering::Relaxed) {
            match self.cache.get(&self.namespace, &self.name) {
                Cached::Present(s) => return Ok(Some((*s).clone())),
                Cached::Absent => return Ok(None),
                Cached::Unknown => {}
            }
        }
        let got = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.read_error(e))?;
        match &got {
            Some(s) => self.cache.observe(to_keep(s)),
            None => self.cache.absent(&self.namespace, &self.name),
        }
        Ok(got)
    }

    fn read_error(&self, source: kube::Error) -> Error {
        Error::ReadSecret {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn write_error(&self, source: kube::Error) -> Error {
        Error::WriteSecret {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }
}

impl KeyStore for SecretStore<'_> {
    type Version = SecretVersion;
    type Error = Error;

    fn location(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }

    async fn load(&self) -> Result<Loaded<SecretVersion>, Error> {
        let existing = self.fetch().await?;
        existing.clone_into(&mut self.read.lock().unwrap_or_else(|e| e.into_inner()));
        let version = |resource_version, generation| SecretVersion {
            resource_version,
            generation,
        };
        Ok(
            match self.decoder.classify(existing.as_ref(), self.policy) {
                Found::Absent => Loaded::Empty { version: None },
                Found::Emptied { resource_version } => Loaded::Empty {
                    version: Some(version(resource_version, 0)),
                },
                Found::Ours {
                    set,
                    generation,
                    resource_version,
                } => Loaded::Keys {
                    set,
                    version: version(resource_version, generation),
                },
                Found::Adoptable {
                    keys,
                    set,
                    resource_version,
                } => {
                    let version = version(resource_version, 0);
                    match set {
                        Some(set) => Loaded::Copied { set, version },
                        None => Loaded::Adoptable { keys, version },
                    }
                }
                Found::Corrupt(e) => Loaded::Corrupt(e),
                Found::Foreign(message) => {
                    return Err(Error::NotOwned {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        message,
                    });
                }
            },
        )
    }

    fn unreadable(&self, error: DecodeError) -> Error {
        Error::CorruptKeySet {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            error,
        }
    }

    fn can_write(&self) -> bool {
        self.writable.may_write()
    }

    async fn save(
        &self,
        set: &StoredKeySet,
        expected: Option<&SecretVersion>,
    ) -> Result<SecretVersion, Error> {
        let generation = expected.map_or(0, |v| v.generation) + 1;
        let encoded = layout::encode(set, generation).map_err(|source| Error::Encode {
            namespace: self.namespace.clone(),
            name: self.policy.name_any(),
            source,
        })?;
        // Merged onto the Secret as read, conditional on the version the
        // set was planned from.
        let read = expected.and(self.read.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let mut object = secret_object(self.policy, &encoded, read.as_ref());
        object.metadata.resource_version = expected.map(|v| v.resource_version.clone());
        let pp = post_params();
        let written = match expected {
            None => self.api.create(&pp, &object).await,
            Some(_) => self.api.replace(&self.name, &pp, &object).await,
        }
        .map_err(|e| {
            if is_conflict(&e) {
                // What was read is stale (or was never ours to see).
                self.live.store(true, Ordering::Relaxed);
            }
            self.write_error(e)
        })?;
        self.cache.observe(to_keep(&written));
        Ok(SecretVersion {
            resource_version: written.resource_version().unwrap_or_default(),
            generation,
        })
    }
}
