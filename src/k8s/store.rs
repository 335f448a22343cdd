//! The Secret store: a policy's key set in its Secret, the Kubernetes
//! implementation of [`KeyStore`]. Reads are a GET classified by
//! [`classify`]; writes are a create, or a replace conditional on the
//! `resourceVersion` read (a 409 is a conflict for the engine to re-read).

use std::fmt;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::leader::WriteGate;
use super::reconcile::{Error, MANAGER};
use super::secret::{Found, classify, secret_object};
use crate::api::KeyRotationPolicy;
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

/// One policy's Secret. Built per reconcile; remembers the Secret as last
/// read, so a write merges onto it and keeps what is not ours.
pub struct SecretStore<'a> {
    api: Api<Secret>,
    policy: &'a KeyRotationPolicy,
    namespace: String,
    name: String,
    writable: &'a WriteGate,
    read: Mutex<Option<Secret>>,
}

// === impl SecretStore ===

impl<'a> SecretStore<'a> {
    /// The store of `policy`'s Secret (`spec.secretName`, or `<name>-jwks`),
    /// writing only while the `writable` gate is open.
    pub fn new(client: Client, policy: &'a KeyRotationPolicy, writable: &'a WriteGate) -> Self {
        let namespace = policy.namespace().unwrap_or_default();
        SecretStore {
            api: Api::namespaced(client, &namespace),
            name: policy.secret_name(),
            namespace,
            policy,
            writable,
            read: Mutex::new(None),
        }
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
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.read_error(e))?;
        existing.clone_into(&mut self.read.lock().unwrap_or_else(|e| e.into_inner()));
        let version = |resource_version, generation| SecretVersion {
            resource_version,
            generation,
        };
        Ok(match classify(existing.as_ref(), self.policy) {
            Found::Absent => Loaded::Empty,
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
        })
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
        .map_err(|e| self.write_error(e))?;
        Ok(SecretVersion {
            resource_version: written.resource_version().unwrap_or_default(),
            generation,
        })
    }
}
