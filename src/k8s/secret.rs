//! The Secret that holds a policy's key set: whose it is, what is in it, and
//! the object to write back. Pure functions, and a memo of decoded versions
//! ([`Decoder`]); the reconciler does the I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{ADOPT_ANNOTATION, KeyRotationPolicy, MANAGED_BY, MANAGED_BY_LABEL, POLICY_LABEL};
use crate::keys::material::SigningKey;
use crate::store::layout::{self, DecodeError, Decoded, Encoded, StoredKeySet};

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
    /// Our Secret, emptied of the key-set data keys by hand (for example
    /// `kubectl patch --type=json -p '[{"op":"remove","path":"/data"}]'`): the
    /// same as [`Found::Absent`] (SPEC invariant 10: the set this replica
    /// holds is written back), except that the write is a replace
    /// conditional on this version, keeping what else the Secret holds.
    Emptied {
        /// `metadata.resourceVersion`, the write precondition.
        resource_version: String,
    },
    /// Our Secret, but its key set cannot be read: never overwritten.
    Corrupt(DecodeError),
    /// A Secret that is not ours, holds a valid private JWK Set (for example
    /// a node-jose `keys.json`), is named explicitly in `spec.secretName` and
    /// annotated `jwks.dev/adopt: <policy name>`: its keys are taken over.
    Adoptable {
        /// Keys without lifecycle records (newest first).
        keys: Vec<Arc<SigningKey>>,
        /// Or a full key set with records (a copy of one of ours).
        set: Option<StoredKeySet>,
        /// `metadata.resourceVersion`, the write precondition (the write
        /// keeps its other data keys: see [`secret_object`]).
        resource_version: String,
    },
    /// A Secret that is not ours and may not be adopted: never touched.
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

/// Whether a KeyRotationPolicy (another one: not this policy) controls it.
fn owned_by_a_policy(meta: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == "KeyRotationPolicy"
            && r.api_version.starts_with("jwks.dev/")
    })
}

fn labelled_for(meta: &ObjectMeta, policy: &KeyRotationPolicy) -> bool {
    labelled_ours(meta)
        && meta
            .labels
            .as_ref()
            .and_then(|l| l.get(POLICY_LABEL))
            .is_some_and(|v| *v == policy.name_any())
}

/// Whether the policy may adopt this Secret: it names the Secret explicitly
/// in `spec.secretName` (never by the `<name>-jwks` default), and the Secret
/// carries `jwks.dev/adopt: <policy name>`, set by someone who may write it.
pub fn adoption_allowed(meta: &ObjectMeta, policy: &KeyRotationPolicy) -> bool {
    policy.spec.secret_name.is_some()
        && meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ADOPT_ANNOTATION))
            .is_some_and(|v| *v == policy.name_any())
}

/// Classifies what is stored under the policy's Secret name.
///
/// Ours is a Secret with a controller reference to this policy, or one this
/// policy adopted earlier: labelled for it, still annotated for adoption (an
/// adopted Secret carries no ownerReference, see docs/kubernetes.md). Any
/// other Secret is adoptable only when [`adoption_allowed`] says so.
///
/// Decodes the key set afresh; the operator goes through a [`Decoder`],
/// which decodes each version of a Secret once.
pub fn classify(secret: Option<&Secret>, policy: &KeyRotationPolicy) -> Found {
    classify_with(secret, policy, decode)
}

/// Decodes the key set in a Secret's data keys (parsing and checking every
/// private key: the expensive part of [`classify`]).
pub fn decode(secret: &Secret) -> Result<Decoded, DecodeError> {
    let data = secret.data.as_ref();
    layout::decode(|key| data.and_then(|d| d.get(key)).map(|v| v.0.as_slice()))
}

/// Decoded key sets by Secret, reused while a Secret's uid and
/// `resourceVersion` stay the same (any change to an object changes its
/// `resourceVersion`). Shared by the serving index and the reconciler, so a
/// version is decoded once however many policy events (our own status
/// writes among them) look at it; without it every event decoded and
/// checked every private key again.
#[derive(Debug, Default)]
pub struct Decoder {
    memo: Mutex<HashMap<(String, String), Memo>>,
    decodes: AtomicU64,
}

#[derive(Debug)]
struct Memo {
    uid: Option<String>,
    resource_version: String,
    decoded: Result<Decoded, DecodeError>,
}

// === impl Decoder ===

impl Decoder {
    /// [`decode`], from the memo when this version was decoded before. An
    /// object without a `resourceVersion` (never one the API served) is
    /// decoded every time.
    pub fn decode(&self, secret: &Secret) -> Result<Decoded, DecodeError> {
        let version = secret.metadata.resource_version.as_deref().unwrap_or("");
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        if !version.is_empty()
            && let Some(memo) = self.lock().get(&key)
            && memo.resource_version == version
            && memo.uid == secret.metadata.uid
        {
            return memo.decoded.clone();
        }
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let decoded = decode(secret);
        if !version.is_empty() {
            self.lock().insert(
                key,
                Memo {
                    uid: secret.metadata.uid.clone(),
                    resource_version: version.to_owned(),
                    decoded: decoded.clone(),
                },
            );
        }
        decoded
    }

    /// [`classify`] through this decoder.
    pub fn classify(&self, secret: Option<&Secret>, policy: &KeyRotationPolicy) -> Found {
        classify_with(secret, policy, |s| self.decode(s))
    }

    /// Drops what is kept for Secret `namespace/name` (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// How many times a Secret was actually decoded (tests and benchmarks).
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Memo>> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a Secret that is ours (`how`: the operator "manages" or "adopted"
/// it) holds: its set, nothing (emptied by hand: lost, like a deleted
/// Secret), or something that cannot be read (never overwritten).
fn ours(decoded: Result<Decoded, DecodeError>, resource_version: String, how: &str) -> Found {
    match decoded {
        Ok(Decoded::Keys { set, generation }) => Found::Ours {
            set,
            generation,
            resource_version,
        },
        Ok(Decoded::Empty) => Found::Emptied { resource_version },
        Ok(Decoded::Adoptable(_)) => Found::Corrupt(DecodeError {
            data_key: layout::LIFECYCLE,
            problem: format!("missing from a Secret this operator {how}"),
        }),
        Err(e) => Found::Corrupt(e),
    }
}

fn classify_with(
    secret: Option<&Secret>,
    policy: &KeyRotationPolicy,
    decode: impl FnOnce(&Secret) -> Result<Decoded, DecodeError>,
) -> Found {
    let Some(secret) = secret else {
        return Found::Absent;
    };
    let decoded = decode(secret);
    let resource_version = secret.resource_version().unwrap_or_default();
    let name = secret.name_any();
    let meta = &secret.metadata;
    if owned_by(meta, policy) {
        return ours(decoded, resource_version, "manages");
    }
    if labelled_ours(meta) && owned_by_a_policy(meta) {
        return Found::Foreign(format!(
            "Secret {name} belongs to another KeyRotationPolicy (an earlier one of the same name, awaiting garbage collection)"
        ));
    }
    if !adoption_allowed(meta, policy) {
        let how = format!(
            "to adopt the key set in it, name it in spec.secretName and annotate it {ADOPT_ANNOTATION}={}",
            policy.name_any()
        );
        return Found::Foreign(match decoded {
            Ok(Decoded::Empty) => format!(
                "Secret {name} exists and is not managed by jwks-operator (it holds no jwks.json to adopt); choose another spec.secretName or delete it"
            ),
            Err(e) => format!(
                "Secret {name} exists and is not managed by jwks-operator; its {e}, so it cannot be adopted"
            ),
            Ok(_) => format!(
                "Secret {name} exists and is not managed by jwks-operator; it is left untouched ({how})"
            ),
        });
    }
    // Adopted earlier: ours, without an ownerReference.
    if labelled_for(meta, policy) {
        return ours(decoded, resource_version, "adopted");
    }
    match decoded {
        Ok(Decoded::Adoptable(keys)) => Found::Adoptable {
            keys,
            set: None,
            resource_version,
        },
        Ok(Decoded::Keys { set, .. }) => Found::Adoptable {
            keys: Vec::new(),
            set: Some(set),
            resource_version,
        },
        Ok(Decoded::Empty) => Found::Foreign(format!(
            "Secret {name} exists and is not managed by jwks-operator (it holds no jwks.json to adopt); choose another spec.secretName or delete it"
        )),
        Err(e) => Found::Foreign(format!(
            "Secret {name} exists and is not managed by jwks-operator; its {e}, so it cannot be adopted"
        )),
    }
}

/// A controller reference to the policy, so deleting the policy
/// garbage-collects what the operator created for it.
///
/// Without `blockOwnerDeletion`: setting it needs `update` on
/// `keyrotationpolicies/finalizers` under the OwnerReferencesPermissionEnforcement
/// admission plugin, a grant least privilege does without. The only cost:
/// a foreground deletion of the policy does not wait for its Secret.
fn controller_ref(policy: &KeyRotationPolicy) -> Option<OwnerReference> {
    let mut owner = policy.controller_owner_ref(&())?;
    owner.block_owner_deletion = None;
    Some(owner)
}

/// The Secret to write.
///
/// - `existing` None: a new Secret with our labels, a controller reference
///   to the policy and the five data keys (a create).
/// - `existing` Some: that Secret as read, with our labels and our five data
///   keys set over it, and everything else kept as it is: other labels,
///   annotations, finalizers, ownerReferences, data keys. Its
///   `resourceVersion` makes the write conditional (a replace), so a
///   concurrent writer's change is never lost: the write fails with a
///   conflict and is planned again on a fresh read. No ownerReference is
///   added to an existing Secret (an adopted one): that needs `delete` on it.
pub fn secret_object(
    policy: &KeyRotationPolicy,
    encoded: &Encoded,
    existing: Option<&Secret>,
) -> Secret {
    let mut secret = match existing {
        Some(read) => {
            let mut secret = read.clone();
            // The server keeps tracking them; a client sends none back.
            secret.metadata.managed_fields = None;
            secret
        }
        None => Secret {
            metadata: ObjectMeta {
                name: Some(policy.secret_name()),
                namespace: policy.namespace(),
                owner_references: controller_ref(policy).map(|o| vec![o]),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            ..Default::default()
        },
    };
    secret
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels(policy));
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in encoded.entries() {
        data.insert(key.to_owned(), ByteString(value.to_vec()));
    }
    // Written from `data` only.
    secret.string_data = None;
    secret
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
        policy_naming(uid, None)
    }

    /// Policy `p` with `spec.secretName` set (or not).
    fn policy_naming(uid: &str, secret_name: Option<&str>) -> KeyRotationPolicy {
        let mut spec = serde_json::json!({"algorithm": "ES256"});
        if let Some(name) = secret_name {
            spec["secretName"] = name.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "KeyRotationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": spec,
        }))
        .unwrap()
    }

    fn annotated(mut secret: Secret, adopt_for: &str) -> Secret {
        secret.metadata.annotations = Some(BTreeMap::from([(
            ADOPT_ANNOTATION.to_owned(),
            adopt_for.to_owned(),
        )]));
        secret
    }

    fn ours(policy: &KeyRotationPolicy) -> Secret {
        let encoded = layout::encode(&three_key_set(), 7).unwrap();
        let mut s = secret_object(policy, &encoded, None);
        s.metadata.resource_version = Some("42".into());
        s
    }

    #[test]
    fn a_secret_version_is_decoded_once_however_often_it_is_classified() {
        let p = policy("u1");
        let mut secret = ours(&p);
        secret.metadata.uid = Some("s1".into());
        let decoder = Decoder::default();
        for _ in 0..5 {
            assert!(matches!(
                decoder.classify(Some(&secret), &p),
                Found::Ours { generation: 7, .. }
            ));
        }
        assert_eq!(decoder.decodes(), 1, "one resourceVersion, one decode");

        // Any change to the object is a new resourceVersion: decoded again.
        secret.metadata.resource_version = Some("43".into());
        decoder.classify(Some(&secret), &p);
        decoder.classify(Some(&secret), &p);
        assert_eq!(decoder.decodes(), 2);

        // The same version number on another object (deleted and created
        // again) is another object.
        secret.metadata.uid = Some("s2".into());
        decoder.classify(Some(&secret), &p);
        assert_eq!(decoder.decodes(), 3);

        // A damaged version stays damaged, from the memo too.
        secret.metadata.resource_version = Some("44".into());
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(layout::LIFECYCLE.into(), ByteString(b"{".to_vec()));
        for _ in 0..2 {
            assert!(matches!(
                decoder.classify(Some(&secret), &p),
                Found::Corrupt(_)
            ));
        }
        assert_eq!(decoder.decodes(), 4);

        // Forgotten (deleted), or never served by the API: decoded each time.
        decoder.forget("ns", "p-jwks");
        decoder.classify(Some(&secret), &p);
        assert_eq!(decoder.decodes(), 5);
        secret.metadata.resource_version = None;
        decoder.classify(Some(&secret), &p);
        decoder.classify(Some(&secret), &p);
        assert_eq!(decoder.decodes(), 7);
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
        // blockOwnerDeletion would need update on keyrotationpolicies/finalizers.
        assert_eq!(owner.block_owner_deletion, None);
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
    fn a_write_keeps_everything_that_is_not_ours() {
        let p = policy("u1");
        let mut read = ours(&p);
        let meta = &mut read.metadata;
        meta.labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "payments".into());
        meta.annotations = Some(BTreeMap::from([("note".into(), "keep me".into())]));
        meta.finalizers = Some(vec!["example.com/backup".into()]);
        meta.owner_references
            .as_mut()
            .unwrap()
            .push(OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Application".into(),
                name: "app".into(),
                uid: "argo-uid".into(),
                ..Default::default()
            });
        meta.managed_fields = Some(vec![Default::default()]);
        read.data
            .as_mut()
            .unwrap()
            .insert("README".into(), ByteString(b"hand made".to_vec()));
        // Someone also damaged one of ours; the write repairs it.
        read.data
            .as_mut()
            .unwrap()
            .insert(layout::ACTIVE_KID.into(), ByteString(b"stale".to_vec()));

        let encoded = layout::encode(&three_key_set(), 8).unwrap();
        let written = secret_object(&p, &encoded, Some(&read));
        let meta = &written.metadata;
        assert_eq!(
            meta.resource_version.as_deref(),
            Some("42"),
            "conditional on what was read"
        );
        assert_eq!(meta.labels.as_ref().unwrap()["team"], "payments");
        assert_eq!(meta.labels.as_ref().unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(meta.annotations.as_ref().unwrap()["note"], "keep me");
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&["example.com/backup".to_owned()][..])
        );
        assert_eq!(meta.owner_references.as_ref().unwrap().len(), 2);
        assert!(meta.managed_fields.is_none());
        let data = written.data.as_ref().unwrap();
        assert_eq!(data["README"].0, b"hand made");
        for (key, value) in encoded.entries() {
            assert_eq!(data[key].0, value, "{key}");
        }
    }

    #[test]
    fn an_adopted_secret_gets_our_labels_but_no_owner_reference() {
        let keys_json = include_bytes!("../../tests/fixtures/node-jose/keys.json");
        let read = annotated(
            foreign(&[("jwks.json", keys_json), ("README", b"hand made")]),
            "p",
        );
        let named = policy_naming("u1", Some("p-jwks"));
        let encoded = layout::encode(&three_key_set(), 1).unwrap();
        let written = secret_object(&named, &encoded, Some(&read));
        assert!(written.metadata.owner_references.is_none());
        assert_eq!(written.data.as_ref().unwrap()["README"].0, b"hand made");
        assert_eq!(written.metadata.labels.as_ref().unwrap()[POLICY_LABEL], "p");
        assert_eq!(
            written.metadata.annotations.as_ref().unwrap()[ADOPT_ANNOTATION],
            "p"
        );
        // And from then on it is ours.
        let mut stored = written;
        stored.metadata.resource_version = Some("6".into());
        assert!(matches!(
            classify(Some(&stored), &named),
            Found::Ours { .. }
        ));
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
        let secret = annotated(
            foreign(&[("jwks.json", keys_json), ("README", b"hand made")]),
            "p",
        );
        match classify(Some(&secret), &policy_naming("u1", Some("p-jwks"))) {
            Found::Adoptable {
                keys,
                set,
                resource_version,
            } => {
                assert!(!keys.is_empty());
                assert!(set.is_none());
                assert_eq!(resource_version, "5");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_key_store_is_adopted_only_when_named_explicitly_and_annotated_for_the_policy() {
        let keys_json = include_bytes!("../../tests/fixtures/node-jose/keys.json");
        let plain = foreign(&[("jwks.json", keys_json)]);
        let cases = [
            // The default `<name>-jwks`, even annotated: anyone who may
            // create a policy could otherwise sign with another app's keys.
            (
                "default name, annotated",
                policy("u1"),
                annotated(plain.clone(), "p"),
            ),
            (
                "named, not annotated",
                policy_naming("u1", Some("p-jwks")),
                plain.clone(),
            ),
            (
                "named, annotated for another policy",
                policy_naming("u1", Some("p-jwks")),
                annotated(plain.clone(), "other"),
            ),
        ];
        for (case, p, secret) in cases {
            match classify(Some(&secret), &p) {
                Found::Foreign(message) => {
                    assert!(message.contains("jwks.dev/adopt=p"), "{case}: {message}");
                    assert!(message.contains("spec.secretName"), "{case}: {message}");
                    assert_no_private_material(&message);
                }
                other => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_adopted_secret_stays_ours_without_an_owner_reference_while_annotated() {
        let named = policy_naming("u1", Some("p-jwks"));
        // What the first write after adoption leaves: our labels and data,
        // the user's annotation, no ownerReference.
        let mut adopted = annotated(ours(&named), "p");
        adopted.metadata.owner_references = None;
        match classify(Some(&adopted), &named) {
            Found::Ours {
                set, generation, ..
            } => {
                assert_eq!(set, three_key_set());
                assert_eq!(generation, 7);
            }
            other => panic!("{other:?}"),
        }
        // Taking the annotation away withdraws the consent.
        adopted.metadata.annotations = None;
        assert!(matches!(
            classify(Some(&adopted), &named),
            Found::Foreign(_)
        ));
        // A damaged adopted Secret is ours to report, never to overwrite.
        let mut damaged = annotated(adopted, "p");
        damaged
            .data
            .as_mut()
            .unwrap()
            .insert(layout::ACTIVE_KID.into(), ByteString(b"nope".to_vec()));
        assert!(matches!(
            classify(Some(&damaged), &named),
            Found::Corrupt(e) if e.data_key == layout::ACTIVE_KID
        ));
    }

    #[test]
    fn an_owner_reference_of_another_tool_does_not_make_an_adopted_secret_foreign() {
        let named = policy_naming("u1", Some("p-jwks"));
        let mut adopted = annotated(ours(&named), "p");
        adopted.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Application".into(),
            name: "app".into(),
            uid: "argo-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(matches!(
            classify(Some(&adopted), &named),
            Found::Ours { .. }
        ));
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
