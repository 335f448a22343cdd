//! What every request to the API server shares: the field manager, the
//! error of a failed request and how it is judged (conflict, transient,
//! shown as `Degraded`), and the trimming of what the watches keep. A leaf
//! of `k8s/`: the store, the reconciler and the serving index import it, and
//! it imports none of them.

use std::time::Duration;

use crate::problem::{Failure, Problem};
use crate::reasons;
use crate::store::layout::{self, DecodeError};

/// Field manager name for every write.
pub const MANAGER: &str = "jwks-operator";

/// How often a Secret that cannot be read, or is not ours, is looked at again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// A reconcile failed. Each variant names the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the Secret failed.
    #[error("reading Secret {namespace}/{name}: {source}")]
    ReadSecret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the Secret failed (409 means someone else wrote first).
    #[error("writing Secret {namespace}/{name}: {source}")]
    WriteSecret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret is ours but its key set cannot be read: never overwritten.
    #[error(
        "Secret {name} cannot be read ({error}); it is left untouched and the last good key set keeps being served. Fix or delete the data key to recover"
    )]
    CorruptKeySet {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// What is wrong, naming the data key.
        error: DecodeError,
    },
    /// A Secret of that name exists and is not ours to write.
    #[error("{message}")]
    NotOwned {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Why it is not ours, and what to do.
        message: String,
    },
    /// Writing the public ConfigMap failed.
    #[error("writing ConfigMap {namespace}/{name}: {source}")]
    WriteConfigMap {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// `spec.publicConfigMap` names a ConfigMap that is not ours to write.
    #[error(
        "ConfigMap {name} exists and is not managed by jwks-operator; it is left untouched (choose another spec.publicConfigMap or remove it)"
    )]
    ConfigMapNotOwned {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
    },
    /// Patching the policy's status failed.
    #[error("updating status of KeyRotationPolicy {namespace}/{name}: {source}")]
    PatchStatus {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Encoding the key set failed.
    #[error("encoding the key set of KeyRotationPolicy {namespace}/{name}: {source}")]
    Encode {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
        /// Cause.
        #[source]
        source: layout::EncodeError,
    },
}

fn api_error_is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        // Transport, TLS, timeouts: try again.
        _ => true,
    }
}

// === impl Error ===

impl Error {
    /// Whether retrying soon may succeed (conflicts, throttling, outages),
    /// as opposed to a problem that needs a change first.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ReadSecret { source, .. }
            | Error::WriteSecret { source, .. }
            | Error::WriteConfigMap { source, .. }
            | Error::PatchStatus { source, .. } => api_error_is_transient(source),
            Error::CorruptKeySet { .. }
            | Error::NotOwned { .. }
            | Error::ConfigMapNotOwned { .. }
            | Error::Encode { .. } => false,
        }
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ReadSecret { .. } => reasons::KIND_READ_SECRET,
            Error::WriteSecret { source, .. } if is_conflict(source) => reasons::KIND_CONFLICT,
            Error::WriteSecret { .. } => reasons::KIND_WRITE_SECRET,
            Error::CorruptKeySet { .. } => reasons::KIND_CORRUPT_KEY_SET,
            Error::NotOwned { .. } => reasons::KIND_SECRET_NOT_OWNED,
            Error::WriteConfigMap { .. } => reasons::KIND_WRITE_CONFIGMAP,
            Error::ConfigMapNotOwned { .. } => reasons::KIND_CONFIGMAP_NOT_OWNED,
            Error::PatchStatus { .. } => reasons::KIND_PATCH_STATUS,
            Error::Encode { .. } => reasons::KIND_ENCODE,
        }
    }
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        Error::kind(self)
    }

    fn is_conflict(&self) -> bool {
        matches!(self, Error::WriteSecret { source, .. } if is_conflict(source))
    }

    fn problem(&self) -> Option<Problem> {
        let reason = match self {
            Error::CorruptKeySet { .. } => reasons::CORRUPT_KEY_SET,
            Error::NotOwned { .. } => reasons::SECRET_NOT_OWNED,
            // What a retry alone will not fix (403, 422 from validation or an
            // admission policy, a Secret over 1 MiB): shown, named by the
            // operation that failed. Conflicts, throttling and outages are
            // only retried.
            _ if self.is_transient() => return None,
            Error::ReadSecret { .. } => reasons::SECRET_READ_FAILED,
            Error::WriteSecret { .. } => reasons::SECRET_WRITE_FAILED,
            Error::WriteConfigMap { .. } => reasons::CONFIGMAP_WRITE_FAILED,
            Error::ConfigMapNotOwned { .. } => reasons::CONFIGMAP_NOT_OWNED,
            Error::PatchStatus { .. } | Error::Encode { .. } => return None,
        };
        Some(Problem::new(reason, self.to_string()))
    }

    fn recheck(&self) -> Option<Duration> {
        matches!(self, Error::CorruptKeySet { .. } | Error::NotOwned { .. }).then_some(RECHECK)
    }
}

/// Whether the API server refused a write as a conflict (409).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Drops `metadata.managedFields` of a watched object: nothing here reads
/// them, and kept for every policy and Secret they were a large part of
/// the index's memory (a Secret write never sends them back, see
/// [`secret_object`](super::secret::secret_object)).
pub fn forget_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}
