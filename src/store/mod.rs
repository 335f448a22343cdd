//! Persistence of key sets, shared by standalone mode and the Kubernetes
//! controller.
//!
//! - [`layout`]: the SPEC "Secret layout" codec between a key set and its
//!   five data keys. Pure.
//! - [`KeyStore`]: one policy's key set in some backing store, read whole and
//!   written whole with an optimistic-concurrency precondition. The
//!   Kubernetes Secret store implements it with the Secret's
//!   `resourceVersion`; [`files::PolicyDir`] implements it for a standalone
//!   state directory.
//!
//! Rules every store keeps (SPEC invariants 5 and 6):
//! - the whole set is written as one object, and only if the stored version
//!   is still the one the caller planned from ([`StoreError::Conflict`]
//!   otherwise);
//! - a stored set that cannot be parsed is reported ([`Loaded::Corrupt`]) and
//!   never overwritten ([`StoreError::Corrupt`] on save).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub mod files;
pub mod layout;

pub use layout::{DecodeError, EncodeError, StoredKeySet};

use crate::keys::material::SigningKey;
use crate::problem::{Failure, Problem};
use crate::reasons;

/// What a store holds for a policy.
#[derive(Debug)]
pub enum Loaded<V> {
    /// No key set: nothing was ever stored, or what was stored is gone (the
    /// Secret or directory deleted, or emptied of its data keys by hand).
    /// Both are the same case: the engine writes back the set it still holds
    /// for the policy (SPEC invariant 10), or starts from an empty set.
    Empty {
        /// `None` when no object is stored at all; the version of the
        /// emptied object otherwise (a Secret that still exists with other
        /// data, labels or annotations). Pass to [`KeyStore::save`] as the
        /// precondition.
        version: Option<V>,
    },
    /// A key set this operator wrote, at `version`.
    Keys {
        /// The keys and their lifecycle records.
        set: StoredKeySet,
        /// Pass to [`KeyStore::save`] as the precondition.
        version: V,
    },
    /// A valid private JWK Set without lifecycle records (for example a
    /// node-jose `keys.json`), at `version`. Take it over with
    /// [`KeySet::adopt`](crate::keys::lifecycle::KeySet::adopt) and save with
    /// `expected = Some(version)`.
    Adoptable {
        /// The keys, in stored order (first = newest).
        keys: Vec<std::sync::Arc<SigningKey>>,
        /// Pass to [`KeyStore::save`] as the precondition.
        version: V,
    },
    /// A full key set with lifecycle records that this operator did not
    /// write for this policy (a copy of another policy's Secret): taken over
    /// as it is, and saved with `expected = Some(version)`.
    Copied {
        /// The keys and their lifecycle records.
        set: StoredKeySet,
        /// Pass to [`KeyStore::save`] as the precondition.
        version: V,
    },
    /// Something is stored that cannot be read. It is left as it is: the
    /// policy is degraded until someone repairs or removes it.
    Corrupt(DecodeError),
}

/// One policy's key set in a backing store: what the engine
/// ([`crate::engine`]) gathers from and writes to.
///
/// `Version` identifies what was read, for the write precondition: a
/// Secret's `resourceVersion`, a state directory's generation counter.
pub trait KeyStore: Send + Sync {
    /// The optimistic-concurrency token of a stored set.
    type Version: Clone + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static;
    /// Why an operation failed.
    type Error: Failure + Send + Sync + 'static;

    /// Where the set lives, for messages (`state/default/demo`,
    /// `Secret default/demo-jwks`).
    fn location(&self) -> String;

    /// Reads the stored set.
    fn load(&self) -> impl Future<Output = Result<Loaded<Self::Version>, Self::Error>> + Send;

    /// The failure to report for a stored set that cannot be read
    /// ([`Loaded::Corrupt`]); it is left untouched.
    fn unreadable(&self, error: DecodeError) -> Self::Error;

    /// Whether this process may write now (a replica that lost its Lease
    /// may not). A pass that would write stops instead.
    fn can_write(&self) -> bool {
        true
    }

    /// Writes `set` as one object if the store still holds `expected`
    /// (`None`: nothing stored). Returns the new version. Refuses with
    /// [`StoreError::Conflict`] when something else wrote in between and with
    /// [`StoreError::Corrupt`] when what is stored cannot be parsed.
    fn save(
        &self,
        set: &StoredKeySet,
        expected: Option<&Self::Version>,
    ) -> impl Future<Output = Result<Self::Version, Self::Error>> + Send;
}

/// A store operation failed. Names the operation and the location; never
/// carries key material. Each message is complete (it includes its cause),
/// so the cause is not also chained as an error source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored set changed since it was read: reload, plan again, retry.
    #[error(
        "key set at {location} changed since it was read (expected version {expected}, found {found})"
    )]
    Conflict {
        /// Where.
        location: String,
        /// The version the caller planned from.
        expected: String,
        /// The version found.
        found: String,
    },
    /// A file of a stored set cannot be parsed (found on load); it is left
    /// as it is until someone repairs or removes it.
    #[error(
        "{}: {problem}; the file is left untouched: repair or remove it, then send SIGHUP",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// What is stored cannot be parsed; it is not overwritten.
    #[error("key set at {location} cannot be read and is left untouched: {error}")]
    Corrupt {
        /// Where.
        location: String,
        /// What is wrong, naming the data key (file).
        error: DecodeError,
    },
    /// The set to save breaks a lifecycle rule (a bug in the caller).
    #[error("key set for {location} cannot be encoded: {error}")]
    Encode {
        /// Where it was to be written.
        location: String,
        /// Why.
        error: EncodeError,
    },
    /// A file-system operation failed.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was being done (`write`, `rename`, `fsync`, ...).
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A directory that would hold private keys is not private enough (owned
    /// by another user, or writable by every user); it is left as it is.
    #[error("{}: {problem}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The store is in use by another process.
    #[error("{location} is in use by another process (lock held)")]
    Locked {
        /// Where.
        location: String,
    },
}

// === impl StoreError ===

impl StoreError {
    /// Whether retrying the same operation later may succeed (I/O trouble, a
    /// lock, a conflict after reloading) rather than needing a person.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Conflict { .. } | StoreError::Io { .. } | StoreError::Locked { .. } => true,
            StoreError::Unreadable { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::UnsafeDirectory { .. } => false,
        }
    }

    /// A short machine-readable reason, for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => reasons::STATE_CONFLICT,
            StoreError::Unreadable { .. } | StoreError::Corrupt { .. } => reasons::STATE_CORRUPT,
            StoreError::Encode { .. } => reasons::STATE_INVALID,
            StoreError::Io { .. } => reasons::STATE_WRITE_FAILED,
            StoreError::Locked { .. } => reasons::STATE_LOCKED,
            StoreError::UnsafeDirectory { .. } => reasons::STATE_DIRECTORY_UNSAFE,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| StoreError::Io { op, path, error }
    }
}

/// How often a stored set that cannot be parsed is looked at again.
pub const CORRUPT_RECHECK: Duration = Duration::from_secs(30);

impl Failure for StoreError {
    fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => reasons::KIND_CONFLICT,
            StoreError::Unreadable { .. } | StoreError::Corrupt { .. } => {
                reasons::KIND_PARSE_KEY_SET
            }
            StoreError::Encode { .. } => reasons::KIND_ENCODE_KEY_SET,
            StoreError::Io { .. }
            | StoreError::Locked { .. }
            | StoreError::UnsafeDirectory { .. } => reasons::KIND_WRITE_STATE,
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    fn problem(&self) -> Option<Problem> {
        Some(Problem::new(self.reason(), self.to_string()))
    }

    fn recheck(&self) -> Option<Duration> {
        matches!(
            self,
            StoreError::Unreadable { .. }
                | StoreError::Corrupt { .. }
                | StoreError::UnsafeDirectory { .. }
        )
        .then_some(CORRUPT_RECHECK)
    }
}

#[cfg(test)]
pub(crate) mod testing;
