//! Revocation as a read-side rule (SPEC invariant 9).

use std::collections::BTreeSet;

use super::{KeySet, LifecycleKey};

/// What may be served of a stored set while `spec.revokedKeyIDs` names some
/// of its keys (SPEC invariant 9): the planner removes a revoked key in its
/// next write, but until that write lands (it may fail: a corrupt store, an
/// admission policy, no leader) every reader serves the set through this
/// rule, so a revoked kid is never served and never signs.
#[derive(Clone, Debug, PartialEq)]
pub struct Servable<K> {
    /// The set without the revoked keys. A revoked Active key leaves it with
    /// no Active key: nothing signs until a fresh key is stored.
    pub keys: KeySet<K>,
    /// kids held in the stored set but withheld, newest first.
    pub withheld: Vec<String>,
    /// The withheld key that was the Active one, if it was.
    pub withheld_active: Option<String>,
}

impl<K: LifecycleKey + Clone> KeySet<K> {
    /// The kids of this set that `revoked` names, newest first: held in the
    /// store, never to be served.
    pub fn revoked_kids(&self, revoked: &BTreeSet<String>) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| revoked.contains(k.kid()))
            .map(|k| k.kid().to_owned())
            .collect()
    }

    /// This set as it may be served under `revoked` (see [`Servable`]).
    pub fn servable(&self, revoked: &BTreeSet<String>) -> Servable<K> {
        let withheld = self.revoked_kids(revoked);
        if withheld.is_empty() {
            return Servable {
                keys: self.clone(),
                withheld,
                withheld_active: None,
            };
        }
        let withheld_active = self
            .active()
            .filter(|a| revoked.contains(a.kid()))
            .map(|a| a.kid().to_owned());
        let keys = KeySet {
            keys: self
                .keys
                .iter()
                .filter(|k| !revoked.contains(k.kid()))
                .cloned()
                .collect(),
            ..self.clone_meta()
        };
        Servable {
            keys,
            withheld,
            withheld_active,
        }
    }

    fn clone_meta(&self) -> KeySet<K> {
        KeySet {
            keys: Vec::new(),
            last_rotation_time: self.last_rotation_time,
            last_rotation_reason: self.last_rotation_reason,
            last_rotation_request: self.last_rotation_request.clone(),
            rotation_request_outstanding: self.rotation_request_outstanding,
            last_revocation_time: self.last_revocation_time,
        }
    }
}
