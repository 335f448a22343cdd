//! The Secret that holds a policy's key set: whose it is, what is in it, and
//! the object to write back. Pure functions; the reconciler does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{KeyRotationPolicy, MANAGED_BY, MANAGED_BY_LABEL, POLICY_LABEL};
use crate::keys::material::SigningKey;
use crate::store::layout::{self, DATA_KEYS, DecodeError, Decoded, Encoded, StoredKeySet};

/// What the reconciler found under the policy's Secret name.
#[derive(Debug)]
pub enum Found {
    /// No Secret: a fresh key set is written.
    Absent,
    /// Our Secret, with its key set and the version to write against.
    Ours {
        /// The decoded key set.
        set: StoredKeySet,
        /// The lifecycle generation counter.
        generation: u64,
        /// `metadata.resourceVersion`, the write precondition.
        resource_version: String,
    },
    /// Our Secret, but its key set cannot be read: never overwritten.
    Corrupt(DecodeError),
    /// A Secret that is not ours but holds a valid private JWK Set (for
    /// example a node-jose `keys.json`): its keys are taken over.
    Adoptable {
        /// Keys without lifecycle records (newest first).
        keys: Vec<Arc<SigningKey>>,
        /// Or a full key set with records (a copy of one of ours).
        set: Option<StoredKeySet>,
        /// `metadata.resourceVersion`, the write precondition.
        resource_version: String,
        /// Data keys that are not part of our layout, kept as they are.
        extra: BTreeMap<String, ByteString>,
    },
    /// A Secret that is not ours and holds no key set: never touched.
    Foreign(String),
}

/// Labels of every object the operator writes for `policy`.
pub fn labels(policy: &KeyRotationPolicy) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (POLICY_LABEL.to_owned(), policy.name_any()),
    ])
}

fn owned_by(meta: &ObjectMeta, policy: &KeyRotationPolicy) -> bool {
    let uid = policy.uid();
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
}

fn labelled_ours(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// Classifies what is stored under the policy's Secret name.
pub fn classify(secret: Option<&Secret>, policy: &KeyRotationPolicy) -> Found {
    let Some(secret) = secret else {
        return Found::Absent;
    };
    let data = secret.data.clone().unwrap_or_default();
    let decoded = layout::decode(|key| data.get(key).map(|v| v.0.as_slice()));
    let resource_version = secret.resource_version().unwrap_or_default();
    let name = secret.name_any();
    if owned_by(&secret.metadata, policy) {
        return match decoded {
            Ok(Decoded::Keys { set, generation }) => Found::Ours {
                set,
                generation,
                resource_version,
            },
            // Ours but emptied (all data keys removed by hand): start afresh
            // over it rather than failing forever.
            Ok(Decoded::Empty) => Found::Ours {
                set: StoredKeySet::default(),
                generation: 0,
                resource_version,
            },
            Ok(Decoded::Adoptable(_)) => Found::Corrupt(DecodeError {
                data_key: layout::LIFECYCLE,
                problem: "missing from a Secret this operator manages".into(),
            }),
            Err(e) => Found::Corrupt(e),
        };
    }
    if labelled_ours(&secret.metadata) && secret.metadata.owner_references.is_some() {
        return Found::Foreign(format!(
            "Secret {name} belongs to another KeyRotationPolicy (an earlier one of the same name, awaiting garbage collection)"
        ));
    }
    let extra: BTreeMap<String, ByteString> = data
        .iter()
        .filter(|(k, _)| !DATA_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match decoded {
        Ok(Decoded::Adoptable(keys)) => Found::Adoptable {
            keys,
            set: None,
            resource_version,
            extra,
        },
        Ok(Decoded::Keys { set, .. }) => Found::Adoptable {
            keys: Vec::new(),
            set: Some(set),
            resource_version,
            extra,
        },
        Ok(Decoded::Empty) => Found::Foreign(format!(
            "Secret {name} exists and is not managed by jwks-operator (it holds no jwks.json to adopt); choose another spec.secretName or delete it"
        )),
        Err(e) => Found::Foreign(format!(
            "Secret {name} exists and is not managed by jwks-operator; its {e}, so it cannot be adopted"
        )),
    }
}

fn controller_ref(policy: &KeyRotationPolicy) -> Option<OwnerReference> {
    let mut owner = policy.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// The Secret to write: our labels, a controller reference to the policy,
/// the five data keys, and any foreign data keys of an adopted Secret.
/// `resource_version` makes the write conditional (None: create).
pub fn secret_object(
    policy: &KeyRotationPolicy,
    encoded: &Encoded,
    resource_version: Option<String>,
    extra: &BTreeMap<String, ByteString>,
) -> Secret {
    let mut data = extra.clone();
    for (key, value) in encoded.entries() {
        data.insert(key.to_owned(), ByteString(value.to_vec()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(policy.secret_name()),
            namespace: policy.namespace(),
            labels: Some(labels(policy)),
            owner_references: controller_ref(policy).map(|o| vec![o]),
            resource_version,
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

/// The public ConfigMap (`spec.publicConfigMap`), key `jwks.json`.
pub fn config_map_object(policy: &KeyRotationPolicy, name: &str, public_jwks: &[u8]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: policy.namespace(),
            labels: Some(labels(policy)),
            owner_references: controller_ref(policy).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "jwks.json".to_owned(),
            String::from_utf8_lossy(public_jwks).into_owned(),
        )])),
        ..Default::default()
    }
}

/// Whether a ConfigMap of that name may be written: absent, or ours.
pub fn config_map_is_ours(cm: &ConfigMap, policy: &KeyRotationPolicy) -> bool {
    owned_by(&cm.metadata, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{assert_no_private_material, three_key_set};

    fn policy(uid: &str) -> KeyRotationPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": {"algorithm": "ES256"},
        }))
        .unwrap()
    }

    fn ours(policy: &KeyRotationPolicy) -> Secret {
        let encoded = layout::encode(&three_key_set(), 7).unwrap();
        let mut s = secret_object(policy, &encoded, None, &BTreeMap::new());
        s.metadata.resource_version = Some("42".into());
        s
    }

    fn foreign(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("p-jwks".into()),
                namespace: Some("ns".into()),
                resource_version: Some("5".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn no_secret_is_absent() {
        assert!(matches!(classify(None, &policy("u1")), Found::Absent));
    }

    #[test]
    fn our_secret_round_trips_with_its_version() {
        let p = policy("u1");
        let secret = ours(&p);
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[POLICY_LABEL], "p");
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u1", Some(true)));
        match classify(Some(&secret), &p) {
            Found::Ours {
                set,
                generation,
                resource_version,
            } => {
                assert_eq!(set, three_key_set());
                assert_eq!(generation, 7);
                assert_eq!(resource_version, "42");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn our_secret_with_a_garbled_data_key_is_corrupt_and_names_it() {
        let p = policy("u1");
        let mut secret = ours(&p);
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(layout::LIFECYCLE.into(), ByteString(b"{not json".to_vec()));
        match classify(Some(&secret), &p) {
            Found::Corrupt(e) => assert_eq!(e.data_key, layout::LIFECYCLE),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_of_an_earlier_policy_of_the_same_name_is_not_touched() {
        let old = policy("old-uid");
        let secret = ours(&old);
        assert!(matches!(
            classify(Some(&secret), &policy("new-uid")),
            Found::Foreign(_)
        ));
    }

    #[test]
    fn a_node_jose_key_store_is_adopted_and_its_other_data_kept() {
        let keys_json = include_bytes!("../../tests/fixtures/node-jose/keys.json");
        let secret = foreign(&[("jwks.json", keys_json), ("README", b"hand made")]);
        match classify(Some(&secret), &policy("u1")) {
            Found::Adoptable {
                keys,
                set,
                resource_version,
                extra,
            } => {
                assert!(!keys.is_empty());
                assert!(set.is_none());
                assert_eq!(resource_version, "5");
                assert_eq!(extra.keys().collect::<Vec<_>>(), ["README"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_foreign_secret_without_a_key_set_is_never_ours() {
        for data in [
            vec![("password", b"hunter2".as_slice())],
            vec![("jwks.json", b"{\"keys\": [{\"kty\": \"RSA\"}]}".as_slice())],
        ] {
            match classify(Some(&foreign(&data)), &policy("u1")) {
                Found::Foreign(message) => {
                    assert!(
                        message.contains("not managed by jwks-operator"),
                        "{message}"
                    );
                    assert_no_private_material(&message);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
