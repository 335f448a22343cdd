//! Tests of the Secret layout codec: round trip, one test per corruption
//! (each names its data key), node-jose adoption, no private material in
//! errors or `Debug`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::keys::alg::Algorithm;
use crate::keys::lifecycle::{KeySet, KeyState};
use crate::store::testing::{assert_no_private_material, fixture, kids_of, t, three_key_set};

type Data = BTreeMap<&'static str, Vec<u8>>;

fn data_of(set: &StoredKeySet, generation: u64) -> Data {
    encode(set, generation)
        .expect("encodes")
        .entries()
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

fn decode_data(data: &Data) -> Result<Decoded, DecodeError> {
    decode(|k| data.get(k).map(Vec::as_slice))
}

fn json_of(data: &Data, key: &str) -> Value {
    serde_json::from_slice(&data[key]).unwrap()
}

fn put_json(data: &mut Data, key: &'static str, v: &Value) {
    data.insert(key, serde_json::to_vec(v).unwrap());
}

#[test]
fn round_trip_keeps_every_record_and_the_generation() {
    let set = three_key_set();
    let data = data_of(&set, 7);
    assert_eq!(
        data.keys().copied().collect::<Vec<_>>(),
        {
            let mut k = DATA_KEYS.to_vec();
            k.sort();
            k
        },
        "exactly the five data keys"
    );
    match decode_data(&data).unwrap() {
        Decoded::Keys {
            set: back,
            generation,
        } => {
            assert_eq!(back, set);
            assert_eq!(generation, 7);
            // Shared handles decode to the same key material.
            assert_eq!(back.keys[0].key.kid(), set.keys[0].key.kid());
        }
        other => panic!("expected keys, got {other:?}"),
    }
}

/// Keys awaiting destruction in their provider survive a round trip; a set
/// without any writes no such field, so earlier versions still read it.
#[test]
fn keys_awaiting_destruction_are_stored_and_absent_when_there_are_none() {
    let plain = data_of(&three_key_set(), 1);
    assert!(
        json_of(&plain, LIFECYCLE)
            .get("undestroyedKeyRefs")
            .is_none(),
        "written only while not empty"
    );
    let mut set = three_key_set();
    set.undestroyed = vec![
        "arn:aws:kms:eu-west-1:111122223333:key/0b7e4f52-1a1c-4a5e-9c1d-3f6f0e2b9a10".into(),
        "pkcs11:token=hsm;id=%0a%0b".into(),
    ];
    let data = data_of(&set, 2);
    assert_eq!(
        json_of(&data, LIFECYCLE)["undestroyedKeyRefs"],
        json!(set.undestroyed)
    );
    match decode_data(&data).unwrap() {
        Decoded::Keys { set: back, .. } => assert_eq!(back, set),
        other => panic!("expected keys, got {other:?}"),
    }
}

/// A list of keys to destroy that names a key still in the set is refused
/// as corrupt: acting on it would destroy a key that still verifies.
#[test]
fn a_key_still_in_the_set_is_never_listed_for_destruction() {
    let (remote, _gated, _go) = crate::keys::testing::Gated::wrap(&fixture(Algorithm::ES384));
    let reference = remote.key_reference().unwrap().to_owned();
    let mut set = crate::store::testing::one_key_set();
    set.keys[0].key = remote;
    let mut data = data_of(&set, 1);
    let mut doc = json_of(&data, LIFECYCLE);
    doc["undestroyedKeyRefs"] = json!([reference]);
    put_json(&mut data, LIFECYCLE, &doc);
    let err = decode_data(&data).unwrap_err();
    assert_eq!(err.data_key, LIFECYCLE, "{err}");
    assert!(
        err.to_string()
            .contains("the reference of a key still in the set"),
        "{err}"
    );
}

#[test]
fn data_keys_hold_what_the_contract_says() {
    let set = three_key_set();
    let data = data_of(&set, 1);
    let active = fixture(Algorithm::ES256);

    // jwks.json: private set, newest first, each with kty/kid/use/alg.
    let jwks = json_of(&data, JWKS);
    let kids = kids_of(&jwks);
    let expected: Vec<&str> = set.keys.iter().map(|k| k.key.kid()).collect();
    assert_eq!(kids, expected);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(k["use"], "sig");
        assert!(k["kty"].is_string() && k["alg"].is_string() && k["d"].is_string());
    }
    // jwks.public.json: exactly the served bytes, no private member.
    assert_eq!(data[PUBLIC_JWKS], public_jwks(&set));
    assert!(!String::from_utf8_lossy(&data[PUBLIC_JWKS]).contains("\"d\""));
    // active.kid / active.pem: the Active key, not the newest (Pending) one.
    assert_eq!(data[ACTIVE_KID], active.kid().as_bytes());
    assert_eq!(data[ACTIVE_PEM], active.pkcs8_pem().expose().as_bytes());
    // lifecycle.json: versioned, per-kid records, durations in Go form.
    let lc = json_of(&data, LIFECYCLE);
    assert_eq!(lc["formatVersion"], 1);
    assert_eq!(lc["generation"], 1);
    assert_eq!(lc["lastRotationReason"], "Manual");
    assert_eq!(lc["lastRotationRequest"], "2026-11-24T10:00:00Z");
    assert_eq!(lc["keys"][1]["state"], "Active");
    assert_eq!(lc["keys"][1]["maxTokenTTL"], "30s");
    assert_eq!(lc["keys"][2]["keySize"], 2048);
    assert!(lc["keys"][0].get("keySize").is_none());
    assert!(lc["keys"][2]["pruneAfter"].is_string());
}

#[test]
fn sub_millisecond_durations_survive() {
    let mut set = three_key_set();
    set.keys[1].max_token_ttl = Duration::new(90, 1);
    let data = data_of(&set, 1);
    assert_eq!(
        json_of(&data, LIFECYCLE)["keys"][1]["maxTokenTTL"],
        "90000000001ns"
    );
    let Decoded::Keys { set: back, .. } = decode_data(&data).unwrap() else {
        panic!("keys expected");
    };
    assert_eq!(back.keys[1].max_token_ttl, Duration::new(90, 1));
}

#[test]
fn nothing_stored_is_empty() {
    assert!(matches!(decode_data(&Data::new()).unwrap(), Decoded::Empty));
}

#[test]
fn encoding_needs_exactly_one_active_key() {
    let mut set = three_key_set();
    set.keys[1].state = KeyState::Retired;
    set.keys[1].retired_at = Some(t(1));
    set.keys[1].prune_after = Some(t(2));
    assert_eq!(encode(&set, 1).unwrap_err(), EncodeError::NoActiveKey);
    let mut set = three_key_set();
    set.keys[0].state = KeyState::Active;
    assert!(matches!(
        encode(&set, 1).unwrap_err(),
        EncodeError::Inconsistent(_)
    ));
}

/// A corruption: what it is, the data key the error must name, how to do it.
type Corruption = (&'static str, &'static str, Box<dyn Fn(&mut Data)>);

/// Each corruption of a stored set, and the data key the error must name.
// Long on purpose: a table, one row per corruption the decoder must catch.
fn corruptions() -> Vec<Corruption> {
    fn lifecycle(f: impl Fn(&mut Value) + 'static) -> Box<dyn Fn(&mut Data)> {
        Box::new(move |d: &mut Data| {
            let mut v = json_of(d, LIFECYCLE);
            f(&mut v);
            put_json(d, LIFECYCLE, &v);
        })
    }
    vec![
        (
            "jwks.json missing",
            JWKS,
            Box::new(|d: &mut Data| {
                d.remove(JWKS);
            }),
        ),
        (
            "jwks.json not JSON",
            JWKS,
            Box::new(|d: &mut Data| {
                d.insert(JWKS, b"{\"keys\": [".to_vec());
            }),
        ),
        (
            "jwks.json key garbled",
            JWKS,
            Box::new(|d: &mut Data| {
                let mut v = json_of(d, JWKS);
                v["keys"][1]["d"] = json!("AAAA");
                put_json(d, JWKS, &v);
            }),
        ),
        (
            "jwks.json lacks a recorded key",
            JWKS,
            Box::new(|d: &mut Data| {
                let mut v = json_of(d, JWKS);
                v["keys"].as_array_mut().unwrap().remove(2);
                put_json(d, JWKS, &v);
            }),
        ),
        (
            "lifecycle.json lacks a key's record",
            LIFECYCLE,
            lifecycle(|v| {
                v["keys"].as_array_mut().unwrap().remove(2);
            }),
        ),
        (
            "lifecycle.json missing",
            LIFECYCLE,
            Box::new(|d: &mut Data| {
                d.remove(LIFECYCLE);
            }),
        ),
        (
            "lifecycle.json not JSON",
            LIFECYCLE,
            Box::new(|d: &mut Data| {
                d.insert(LIFECYCLE, b"\x00garbage".to_vec());
            }),
        ),
        (
            "lifecycle.json newer format",
            LIFECYCLE,
            lifecycle(|v| v["formatVersion"] = json!(2)),
        ),
        (
            "lifecycle.json no format",
            LIFECYCLE,
            lifecycle(|v| {
                v.as_object_mut().unwrap().remove("formatVersion");
            }),
        ),
        (
            "lifecycle.json unknown field",
            LIFECYCLE,
            lifecycle(|v| v["keys"][0]["colour"] = json!("red")),
        ),
        (
            "lifecycle.json bad state",
            LIFECYCLE,
            lifecycle(|v| v["keys"][0]["state"] = json!("Signing")),
        ),
        (
            "lifecycle.json bad timestamp",
            LIFECYCLE,
            lifecycle(|v| v["keys"][0]["createdAt"] = json!("yesterday")),
        ),
        (
            "lifecycle.json negative ttl",
            LIFECYCLE,
            lifecycle(|v| v["keys"][0]["maxTokenTTL"] = json!("-1h")),
        ),
        (
            "two Active keys",
            LIFECYCLE,
            lifecycle(|v| v["keys"][0]["state"] = json!("Active")),
        ),
        (
            "no Active key",
            LIFECYCLE,
            lifecycle(|v| {
                v["keys"][1]["state"] = json!("Pending");
                v["keys"][0]["state"] = json!("Retired");
                v["keys"][0]["retiredAt"] = json!("2027-01-15T08:00:00Z");
                v["keys"][0]["pruneAfter"] = json!("2027-01-15T08:00:00Z");
            }),
        ),
        (
            "duplicate record",
            LIFECYCLE,
            lifecycle(|v| {
                let first = v["keys"][2].clone();
                v["keys"].as_array_mut().unwrap().push(first);
            }),
        ),
        (
            "record kid unknown",
            JWKS,
            lifecycle(|v| v["keys"][2]["kid"] = json!("not-a-kid")),
        ),
        (
            "record algorithm differs",
            LIFECYCLE,
            lifecycle(|v| v["keys"][1]["alg"] = json!("ES384")),
        ),
        (
            "record key size differs",
            LIFECYCLE,
            lifecycle(|v| v["keys"][2]["keySize"] = json!(4096)),
        ),
        (
            "retired without pruneAfter",
            LIFECYCLE,
            lifecycle(|v| {
                v["keys"][2].as_object_mut().unwrap().remove("pruneAfter");
            }),
        ),
        (
            "active with retiredAt",
            LIFECYCLE,
            lifecycle(|v| v["keys"][1]["retiredAt"] = json!("2027-01-15T08:00:00Z")),
        ),
        (
            "active.kid missing",
            ACTIVE_KID,
            Box::new(|d: &mut Data| {
                d.remove(ACTIVE_KID);
            }),
        ),
        (
            "active.kid names the pending key",
            ACTIVE_KID,
            Box::new(|d: &mut Data| {
                d.insert(
                    ACTIVE_KID,
                    fixture(Algorithm::EdDSA).kid().as_bytes().to_vec(),
                );
            }),
        ),
        (
            "active.kid not text",
            ACTIVE_KID,
            Box::new(|d: &mut Data| {
                d.insert(ACTIVE_KID, vec![0xff, 0xfe]);
            }),
        ),
        (
            "active.pem missing",
            ACTIVE_PEM,
            Box::new(|d: &mut Data| {
                d.remove(ACTIVE_PEM);
            }),
        ),
        (
            "active.pem of another key",
            ACTIVE_PEM,
            Box::new(|d: &mut Data| {
                let other = fixture(Algorithm::ES384).pkcs8_pem();
                d.insert(ACTIVE_PEM, other.expose().as_bytes().to_vec());
            }),
        ),
        (
            "jwks.public.json missing",
            PUBLIC_JWKS,
            Box::new(|d: &mut Data| {
                d.remove(PUBLIC_JWKS);
            }),
        ),
        (
            "jwks.public.json garbled",
            PUBLIC_JWKS,
            Box::new(|d: &mut Data| {
                d.insert(PUBLIC_JWKS, b"<html>".to_vec());
            }),
        ),
        (
            "jwks.public.json lacks a key",
            PUBLIC_JWKS,
            Box::new(|d: &mut Data| {
                let mut v = json_of(d, PUBLIC_JWKS);
                v["keys"].as_array_mut().unwrap().pop();
                put_json(d, PUBLIC_JWKS, &v);
            }),
        ),
        (
            "lifecycle.json lists more keys to destroy than any outage leaves",
            LIFECYCLE,
            lifecycle(|v| {
                v["undestroyedKeyRefs"] = json!(
                    (0..=MAX_UNDESTROYED)
                        .map(|i| format!("pkcs11:token=t;id=%{i:02x}"))
                        .collect::<Vec<_>>()
                );
            }),
        ),
        (
            "lifecycle.json lists something that is no key reference to destroy",
            LIFECYCLE,
            lifecycle(|v| v["undestroyedKeyRefs"] = json!(["/etc/passwd"])),
        ),
        (
            "jwks.public.json has another key",
            PUBLIC_JWKS,
            Box::new(|d: &mut Data| {
                let mut v = json_of(d, PUBLIC_JWKS);
                v["keys"][0] = fixture(Algorithm::PS256).public_jwk();
                put_json(d, PUBLIC_JWKS, &v);
            }),
        ),
    ]
}

#[test]
fn every_corruption_names_its_data_key() {
    let clean = data_of(&three_key_set(), 3);
    for (what, data_key, corrupt) in corruptions() {
        let mut data = clean.clone();
        corrupt(&mut data);
        let err = match decode_data(&data) {
            Err(e) => e,
            Ok(d) => panic!("{what}: decoded as {d:?}"),
        };
        assert_eq!(err.data_key, data_key, "{what}: {err}");
        assert!(err.to_string().starts_with(data_key), "{what}: {err}");
        assert_no_private_material(&err.to_string());
        assert_no_private_material(&format!("{err:?}"));
    }
}

#[test]
fn private_material_is_never_in_debug_output() {
    let set = three_key_set();
    let encoded = encode(&set, 1).unwrap();
    assert_no_private_material(&format!("{encoded:?}"));
    let data = data_of(&set, 1);
    let decoded = decode_data(&data).unwrap();
    assert_no_private_material(&format!("{decoded:?}"));
}

/// A node-jose `keys.json`: no `alg` on some keys, random (non-thumbprint)
/// kids, nothing else in the Secret.
fn node_jose_keys_json() -> Vec<u8> {
    let mut ec = fixture(Algorithm::ES256).private_jwk();
    ec.as_object_mut().unwrap().remove("alg");
    ec["kid"] = json!("3f1d7c1e-5d7a-4b8e-9c1e-2f0a6b4d9e21");
    let mut rsa = fixture(Algorithm::RS256).private_jwk();
    rsa.as_object_mut().unwrap().remove("alg");
    rsa.as_object_mut().unwrap().remove("use");
    rsa["kid"] = json!("legacy-rsa");
    serde_json::to_vec(&json!({ "keys": [ec, rsa] })).unwrap()
}

#[test]
fn a_node_jose_key_set_is_adoptable_and_keeps_its_kids() {
    let mut data = Data::new();
    data.insert(JWKS, node_jose_keys_json());
    // Extra entries of someone else's Secret do not matter.
    data.insert("README", b"keys for the auth service".to_vec());
    let keys = match decode(|k| data.get(k).map(Vec::as_slice)).unwrap() {
        Decoded::Adoptable(keys) => keys,
        other => panic!("expected adoptable, got {other:?}"),
    };
    let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, ["3f1d7c1e-5d7a-4b8e-9c1e-2f0a6b4d9e21", "legacy-rsa"]);
    assert_eq!(keys[0].alg(), Algorithm::ES256);
    assert_eq!(keys[1].alg(), Algorithm::RS256);

    // Adopted, written in our layout and read back: same kids, first Active.
    let policy = crate::yaml::from_str::<crate::api::KeyRotationPolicySpec>("algorithm: ES256")
        .unwrap()
        .resolve(None)
        .unwrap();
    let set = KeySet::adopt(keys, t(0), &policy);
    let data = data_of(&set, 1);
    let Decoded::Keys { set: back, .. } = decode_data(&data).unwrap() else {
        panic!("keys expected");
    };
    assert_eq!(back, set);
    assert_eq!(
        back.active().unwrap().kid(),
        "3f1d7c1e-5d7a-4b8e-9c1e-2f0a6b4d9e21"
    );
    assert_eq!(back.keys[1].state, KeyState::Retired);
    assert_eq!(data[ACTIVE_KID], b"3f1d7c1e-5d7a-4b8e-9c1e-2f0a6b4d9e21");
    // The alg node-jose left out is written now.
    assert_eq!(json_of(&data, JWKS)["keys"][1]["alg"], "RS256");
}

#[test]
fn an_invalid_foreign_key_set_is_not_adoptable() {
    let mut data = Data::new();
    data.insert(JWKS, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_vec());
    let err = decode_data(&data).unwrap_err();
    assert_eq!(err.data_key, JWKS);
    // Only jwks.public.json, nothing else: not ours, not adoptable.
    let mut data = Data::new();
    data.insert(PUBLIC_JWKS, b"{\"keys\":[]}".to_vec());
    assert_eq!(decode_data(&data).unwrap_err().data_key, JWKS);
}
