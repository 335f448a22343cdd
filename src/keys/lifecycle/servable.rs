//! Revocation as a read-side rule (SPEC invariant 9).

use std::collections::BTreeSet;

use super::model::{KeySet, LifecycleKey, Servable};

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
            undestroyed: self.undestroyed.clone(),
        }
    }
}
