// Over 600 lines on purpose: encoding and decoding the five data keys are the
// two directions of one format, side by side so a field added to one is added
// to the other; its tests are in layout_tests.rs.

//! The SPEC "Secret layout": how a policy's key set is written as five data
//! keys, the same in a Kubernetes Secret and in a standalone state directory.
//!
//! | data key | content |
//! |---|---|
//! | `jwks.json` | private JWK Set, newest key first (node-jose `JWK.asKeyStore` reads it as is) |
//! | `jwks.public.json` | exactly the public set the HTTP endpoint serves |
//! | `active.kid` | kid of the key that signs now |
//! | `active.pem` | PKCS#8 PEM of that key |
//! | `lifecycle.json` | per-kid state and timestamps, last rotation, format version, generation |
//!
//! [`encode`] writes all five from a [`KeySet`]; [`decode`] reads them back
//! strictly. `lifecycle.json` is the source of truth for the lifecycle and
//! `jwks.json` for the key material; the other three are derived and must
//! agree with them. Anything that does not fit is a [`DecodeError`] naming the
//! data key at fault, so the caller can refuse to overwrite it and say which
//! file (or Secret key) to look at. A `jwks.json` that is a valid private JWK
//! Set without a `lifecycle.json` (a node-jose `keys.json`, say) is
//! [`Decoded::Adoptable`].
//!
//! `lifecycle.json` looks like this (format version 1):
//!
//! ```json
//! {
//!   "formatVersion": 1,
//!   "generation": 4,
//!   "lastRotationTime": "2026-01-01T00:00:00Z",
//!   "lastRotationReason": "Scheduled",
//!   "lastRotationRequest": "2026-01-01",
//!   "rotationRequestOutstanding": true,
//!   "lastRevocationTime": "2026-01-01T00:00:00Z",
//!   "keys": [
//!     {"kid": "…", "alg": "ES256", "state": "Pending", "createdAt": "…",
//!      "activatesAt": "…", "reason": "Scheduled", "maxTokenTTL": "1h"},
//!     {"kid": "…", "alg": "RS256", "keySize": 2048, "state": "Active", "…": "…"}
//!   ]
//! }
//! ```
//!
//! `generation` counts the writes of the set (1 for the first); stores use it
//! as their optimistic-concurrency version where they have nothing better.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api;
use crate::api::fmt_duration;
use crate::keys::alg::{Algorithm, KeyParams};
use crate::keys::lifecycle::{KeySet, KeyState, LifecycleKey, ManagedKey, RotationReason};
use crate::keys::material::{
    SigningKey, VerifyingKey, parse_private_jwks, private_jwks_json, public_jwks_json,
};
use crate::keys::redacted::RedactedBytes;
use crate::providers;

/// Data key of the private JWK Set.
pub const JWKS: &str = "jwks.json";
/// Data key of the public JWK Set.
pub const PUBLIC_JWKS: &str = "jwks.public.json";
/// Data key of the active key's kid.
pub const ACTIVE_KID: &str = "active.kid";
/// Data key of the active key's PKCS#8 PEM.
pub const ACTIVE_PEM: &str = "active.pem";
/// Data key of the lifecycle records.
pub const LIFECYCLE: &str = "lifecycle.json";

/// The five data keys, in the order they are written.
pub const DATA_KEYS: [&str; 5] = [JWKS, PUBLIC_JWKS, ACTIVE_KID, ACTIVE_PEM, LIFECYCLE];

/// The `formatVersion` this code writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// A key set as it is persisted: a shared handle on each signing key.
pub type StoredKeySet = KeySet<Arc<SigningKey>>;

// === errors ===

/// A stored key set could not be read. Names the data key at fault; never
/// carries key material (messages about `jwks.json` come from the strict JWK
/// parser, which names keys by index and kid only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{data_key}: {problem}")]
pub struct DecodeError {
    /// The data key (file name in a state directory) that is wrong.
    pub data_key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl DecodeError {
    fn new(data_key: &'static str, problem: impl Into<String>) -> Self {
        DecodeError {
            data_key,
            problem: problem.into(),
        }
    }

    fn missing(data_key: &'static str) -> Self {
        DecodeError::new(
            data_key,
            "missing (the other data keys of a key set are present)",
        )
    }
}

/// A key set could not be encoded: it breaks a rule the planner keeps, so
/// this is a bug, not a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The set has no Active key, so `active.kid`/`active.pem` have nothing to hold.
    #[error("the key set has no Active key")]
    NoActiveKey,
    /// The set breaks a structural rule (duplicate kid, two Active keys).
    #[error("the key set is inconsistent: {0}")]
    Inconsistent(String),
}

// === encoded form ===

/// The five data keys of one key set. Private members (`jwks.json`,
/// `active.pem`) stay wrapped in [`RedactedBytes`]; `Debug` shows only sizes.
pub struct Encoded {
    /// `jwks.json`: the private JWK Set, newest first.
    pub jwks: RedactedBytes,
    /// `jwks.public.json`: the public JWK Set, newest first.
    pub public_jwks: Vec<u8>,
    /// `active.kid`: the signer's kid (no trailing newline).
    pub active_kid: Vec<u8>,
    /// `active.pem`: the signer's PKCS#8 PEM; `None` when a key provider
    /// holds the signer (there is no private material to write).
    pub active_pem: Option<RedactedBytes>,
    /// `lifecycle.json`: lifecycle records, pretty-printed.
    pub lifecycle: Vec<u8>,
}

// === impl Encoded ===

impl Encoded {
    /// `(data key, bytes)` for the data keys present (all five, or four
    /// without `active.pem` for a provider-held signer), in [`DATA_KEYS`]
    /// order. The bytes of `jwks.json` and `active.pem` are private: write
    /// them, never log them.
    pub fn entries(&self) -> Vec<(&'static str, &[u8])> {
        let mut out = vec![
            (JWKS, self.jwks.expose().as_slice()),
            (PUBLIC_JWKS, self.public_jwks.as_slice()),
            (ACTIVE_KID, self.active_kid.as_slice()),
        ];
        if let Some(pem) = &self.active_pem {
            out.push((ACTIVE_PEM, pem.expose().as_slice()));
        }
        out.push((LIFECYCLE, self.lifecycle.as_slice()));
        out
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("jwks", &"<redacted>")
            .field("public_jwks", &String::from_utf8_lossy(&self.public_jwks))
            .field("active_kid", &String::from_utf8_lossy(&self.active_kid))
            .field("active_pem", &"<redacted>")
            .field("lifecycle", &String::from_utf8_lossy(&self.lifecycle))
            .finish()
    }
}

/// What a set of data keys holds.
#[derive(Clone, Debug)]
pub enum Decoded {
    /// None of the five data keys is present: no key set yet.
    Empty,
    /// A key set written by this operator.
    Keys {
        /// The keys with their lifecycle records.
        set: StoredKeySet,
        /// How many times the set has been written (`lifecycle.json` `generation`).
        generation: u64,
    },
    /// A valid private JWK Set in `jwks.json` without `lifecycle.json`: keys
    /// from elsewhere (node-jose `keys.json`) that the caller may take over
    /// with [`KeySet::adopt`]. Order as in the file (first = newest).
    Adoptable(Vec<Arc<SigningKey>>),
}

// === lifecycle.json ===

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LifecycleDoc {
    format_version: u32,
    generation: u64,
    #[serde(default)]
    last_rotation_time: Option<Timestamp>,
    #[serde(default)]
    last_rotation_reason: Option<RotationReason>,
    #[serde(default)]
    last_rotation_request: Option<String>,
    /// `lastRotationRequest` is accepted but not yet served by a newer
    /// signer. Written only while true, so sets without an outstanding
    /// request stay readable by earlier versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rotation_request_outstanding: bool,
    /// When a key was last revoked. Written only when there was one, so sets
    /// without a revocation stay readable by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_revocation_time: Option<Timestamp>,
    keys: Vec<KeyRecord>,
    /// Provider-held keys pruned from `keys` whose destruction is not yet
    /// confirmed. Written only while not empty, so sets without one (every
    /// set of the Secret provider) stay readable by earlier versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    undestroyed_key_refs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyRecord {
    kid: String,
    alg: Algorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_size: Option<u32>,
    state: KeyState,
    created_at: Timestamp,
    activates_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prune_after: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<RotationReason>,
    #[serde(rename = "maxTokenTTL", with = "go_duration")]
    max_token_ttl: Duration,
    /// Where a provider-held key's private half is (`pkcs11:` URI, KMS
    /// ARN); absent for a key held in `jwks.json`, so sets of the Secret
    /// provider are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_ref: Option<String>,
}

/// Durations as Go/Kubernetes strings (`1h30m`), exact to the nanosecond.
mod go_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos().is_multiple_of(1_000_000) {
            s.collect_str(&fmt_duration(*d))
        } else {
            s.collect_str(&format_args!("{}ns", d.as_nanos()))
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let parsed: api::Duration = s.parse().map_err(serde::de::Error::custom)?;
        if parsed.is_negative() {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is negative; a duration here must not be"
            )));
        }
        Ok(parsed.into())
    }
}

// === encode ===

/// Encodes `set` as the five data keys, recording `generation` in
/// `lifecycle.json`. The set must have exactly one Active key (the planner
/// guarantees it).
pub fn encode(set: &StoredKeySet, generation: u64) -> Result<Encoded, EncodeError> {
    set.check()
        .map_err(|e| EncodeError::Inconsistent(e.to_string()))?;
    let active = set.active().ok_or(EncodeError::NoActiveKey)?;
    let doc = LifecycleDoc {
        format_version: FORMAT_VERSION,
        generation,
        last_rotation_time: set.last_rotation_time,
        last_rotation_reason: set.last_rotation_reason,
        last_rotation_request: set.last_rotation_request.clone(),
        rotation_request_outstanding: set.rotation_request_outstanding,
        last_revocation_time: set.last_revocation_time,
        keys: set.keys.iter().map(record).collect(),
        undestroyed_key_refs: set.undestroyed.clone(),
    };
    let mut lifecycle = serde_json::to_vec_pretty(&doc).expect("lifecycle records serialize");
    lifecycle.push(b'\n');
    Ok(Encoded {
        jwks: private_jwks_json(set.keys.iter().map(|k| k.key.as_ref())),
        public_jwks: public_jwks(set),
        active_kid: active.kid().as_bytes().to_vec(),
        active_pem: active
            .key
            .key_reference()
            .is_none()
            .then(|| RedactedBytes::new(active.key.pkcs8_pem().expose().as_bytes().to_vec())),
        lifecycle,
    })
}

/// The public JWK Set of `set`, newest first: the bytes of `jwks.public.json`
/// and of the HTTP endpoint.
pub fn public_jwks(set: &StoredKeySet) -> Vec<u8> {
    public_jwks_json(set.keys.iter().map(|k| k.key.verifying_key()))
}

fn record(k: &ManagedKey<Arc<SigningKey>>) -> KeyRecord {
    let params = k.key.params();
    KeyRecord {
        kid: k.kid().to_owned(),
        alg: params.alg,
        key_size: params.rsa_bits,
        state: k.state,
        created_at: k.created_at,
        activates_at: k.activates_at,
        retired_at: k.retired_at,
        prune_after: k.prune_after,
        reason: k.reason,
        max_token_ttl: k.max_token_ttl,
        key_ref: k.key.key_reference().map(str::to_owned),
    }
}

// === decode ===

/// Decodes the data keys `get` returns (`None` = absent), strictly.
///
/// - none of the five present → [`Decoded::Empty`];
/// - `jwks.json` a valid private JWK Set, and neither `lifecycle.json` nor
///   `active.kid` (which only this operator writes) → [`Decoded::Adoptable`];
/// - otherwise all five must be present and agree: every key in `jwks.json`
///   has exactly one record in `lifecycle.json` and vice versa, with the same
///   algorithm and size; exactly one key is Active, at most one Pending;
///   `active.kid` names the Active key, `active.pem` is its PKCS#8 PEM, and
///   `jwks.public.json` is the public half of `jwks.json`.
///
/// The first problem found is returned, naming its data key.
pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Decoded, DecodeError> {
    if DATA_KEYS.iter().all(|k| get(k).is_none()) {
        return Ok(Decoded::Empty);
    }
    let jwks = get(JWKS).ok_or_else(|| DecodeError::missing(JWKS))?;
    let doc = get(LIFECYCLE).map(parse_lifecycle).transpose()?;
    let referenced: BTreeMap<&str, (&str, KeyParams)> = doc
        .iter()
        .flat_map(|d| &d.keys)
        .filter_map(|r| {
            let params = KeyParams {
                alg: r.alg,
                rsa_bits: r.key_size,
            };
            Some((r.kid.as_str(), (r.key_ref.as_deref()?, params)))
        })
        .collect();
    let keys = if referenced.is_empty() {
        parse_private_jwks(jwks)
            .map_err(|e| DecodeError::new(JWKS, e.to_string()))?
            .into_iter()
            .map(Arc::new)
            .collect()
    } else {
        parse_provider_jwks(jwks, &referenced)?
    };
    let Some(doc) = doc else {
        if get(ACTIVE_KID).is_some() {
            // Written by this operator, then lost its lifecycle: adopting it
            // would activate a key that may still be waiting to be published.
            return Err(DecodeError::missing(LIFECYCLE));
        }
        return Ok(Decoded::Adoptable(keys));
    };

    let managed = match_records(&doc, &keys)?;
    check_undestroyed(&doc.undestroyed_key_refs, &managed)?;
    let set = KeySet {
        keys: managed,
        last_rotation_time: doc.last_rotation_time,
        last_rotation_reason: doc.last_rotation_reason,
        last_rotation_request: doc.last_rotation_request,
        rotation_request_outstanding: doc.rotation_request_outstanding,
        last_revocation_time: doc.last_revocation_time,
        undestroyed: doc.undestroyed_key_refs,
    };
    set.check()
        .map_err(|e| DecodeError::new(LIFECYCLE, e.to_string()))?;
    check_derived(&get, &set)?;
    Ok(Decoded::Keys {
        set,
        generation: doc.generation,
    })
}

/// Most references a set lists as awaiting destruction: far more than a
/// provider outage can leave (one per pruned key), and a bound on the work a
/// hand-edited `lifecycle.json` can ask for.
pub const MAX_UNDESTROYED: usize = 64;

/// `undestroyedKeyRefs` as the engine will act on it: bounded, each entry a
/// `pkcs11:` URI or KMS ARN of sane length, and none the reference of a key
/// still in the set (destroying it would lose a key that still signs or
/// verifies).
fn check_undestroyed(
    refs: &[String],
    keys: &[ManagedKey<Arc<SigningKey>>],
) -> Result<(), DecodeError> {
    let bad = |why: String| DecodeError::new(LIFECYCLE, format!("undestroyedKeyRefs: {why}"));
    if refs.len() > MAX_UNDESTROYED {
        return Err(bad(format!(
            "{} entries, more than {MAX_UNDESTROYED}",
            refs.len()
        )));
    }
    for (i, r) in refs.iter().enumerate() {
        if r.is_empty() || r.len() > 2048 || !(r.starts_with("pkcs11:") || r.starts_with("arn:")) {
            return Err(bad(format!(
                "entry {i} is not a pkcs11: URI or a KMS key ARN"
            )));
        }
        if keys
            .iter()
            .filter_map(|k| k.key.key_reference())
            .any(|held| providers::same_key(held, r))
        {
            return Err(bad(format!(
                "entry {i} is the reference of a key still in the set"
            )));
        }
    }
    Ok(())
}

/// Pairs every lifecycle record with its key in `jwks.json` (one record per
/// key and one key per record, the same algorithm and size).
fn match_records(
    doc: &LifecycleDoc,
    keys: &[Arc<SigningKey>],
) -> Result<Vec<ManagedKey<Arc<SigningKey>>>, DecodeError> {
    let mut by_kid: BTreeMap<&str, &Arc<SigningKey>> = BTreeMap::new();
    for k in keys {
        by_kid.insert(k.kid(), k);
    }
    let mut recorded = BTreeSet::new();
    let mut managed = Vec::with_capacity(doc.keys.len());
    for r in &doc.keys {
        if !recorded.insert(r.kid.as_str()) {
            return Err(DecodeError::new(
                LIFECYCLE,
                format!("kid {:?} has more than one record", r.kid),
            ));
        }
        let key = by_kid.get(r.kid.as_str()).ok_or_else(|| {
            DecodeError::new(
                JWKS,
                format!(
                    "has no key with kid {:?}, which {LIFECYCLE} records as {}",
                    r.kid, r.state
                ),
            )
        })?;
        let recorded_params = KeyParams {
            alg: r.alg,
            rsa_bits: r.key_size,
        };
        if key.params() != recorded_params {
            return Err(DecodeError::new(
                LIFECYCLE,
                format!(
                    "kid {:?} is recorded as {recorded_params} but the key in {JWKS} is {}",
                    r.kid,
                    key.params()
                ),
            ));
        }
        if let Some(problem) = record_problem(r) {
            return Err(DecodeError::new(
                LIFECYCLE,
                format!("kid {:?}: {problem}", r.kid),
            ));
        }
        managed.push(ManagedKey {
            key: Arc::clone(key),
            state: r.state,
            created_at: r.created_at,
            activates_at: r.activates_at,
            retired_at: r.retired_at,
            prune_after: r.prune_after,
            reason: r.reason,
            max_token_ttl: r.max_token_ttl,
        });
    }
    if let Some(extra) = keys.iter().find(|k| !recorded.contains(k.kid())) {
        return Err(DecodeError::new(
            LIFECYCLE,
            format!(
                "has no record for kid {:?}, which is in {JWKS}",
                extra.kid()
            ),
        ));
    }
    Ok(managed)
}

/// Checks the data keys derived from the set: `active.kid` names the Active
/// key, `active.pem` is its PKCS#8 PEM, `jwks.public.json` the public half.
fn check_derived<'a>(
    get: &impl Fn(&str) -> Option<&'a [u8]>,
    set: &StoredKeySet,
) -> Result<(), DecodeError> {
    let Some(active) = set.active() else {
        return Err(DecodeError::new(LIFECYCLE, "no key is Active"));
    };
    let active_kid = get(ACTIVE_KID).ok_or_else(|| DecodeError::missing(ACTIVE_KID))?;
    let active_kid = std::str::from_utf8(active_kid)
        .map(str::trim)
        .map_err(|_| DecodeError::new(ACTIVE_KID, "not UTF-8 text"))?;
    if active_kid != active.kid() {
        return Err(DecodeError::new(
            ACTIVE_KID,
            format!(
                "names {:?} but {LIFECYCLE} records {:?} as Active",
                active_kid.chars().take(64).collect::<String>(),
                active.kid()
            ),
        ));
    }
    if let Some(reference) = active.key.key_reference() {
        // A provider holds the signer: nothing private may be here.
        if get(ACTIVE_PEM).is_some() {
            return Err(DecodeError::new(
                ACTIVE_PEM,
                format!(
                    "is present, but the Active key {:?} is held by a key provider ({reference})",
                    active.kid()
                ),
            ));
        }
        let public = get(PUBLIC_JWKS).ok_or_else(|| DecodeError::missing(PUBLIC_JWKS))?;
        return check_public(public, set);
    }
    let pem = get(ACTIVE_PEM).ok_or_else(|| DecodeError::missing(ACTIVE_PEM))?;
    if pem != active.key.pkcs8_pem().expose().as_bytes() {
        return Err(DecodeError::new(
            ACTIVE_PEM,
            format!("is not the PKCS#8 PEM of the Active key {:?}", active.kid()),
        ));
    }
    let public = get(PUBLIC_JWKS).ok_or_else(|| DecodeError::missing(PUBLIC_JWKS))?;
    check_public(public, set)
}

/// `jwks.json` of a set with provider-held keys: a key with a `keyRef`
/// record is a public JWK (a private member there is refused, so no
/// private material hides in it) bound to its provider
/// ([`crate::providers::bind`]); any other key is a private JWK as usual.
fn parse_provider_jwks(
    bytes: &[u8],
    referenced: &BTreeMap<&str, (&str, KeyParams)>,
) -> Result<Vec<Arc<SigningKey>>, DecodeError> {
    let bad = |problem: String| DecodeError::new(JWKS, problem);
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err(bad("not a JWK Set (no `keys` array)".into()));
    };
    let mut keys = Vec::with_capacity(list.len());
    for (i, jwk) in list.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or_default();
        let Some((reference, params)) = referenced.get(kid) else {
            let key =
                SigningKey::from_private_jwk(jwk).map_err(|e| bad(format!("key #{i}: {e}")))?;
            keys.push(Arc::new(key));
            continue;
        };
        if let Some(member) = ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .find(|m| jwk.get(**m).is_some())
        {
            return Err(bad(format!(
                "key #{i} ({kid:?}) is held by a key provider but has the private member {member:?}"
            )));
        }
        let public =
            VerifyingKey::from_public_jwk(jwk).map_err(|e| bad(format!("key #{i}: {e}")))?;
        if public.alg() != params.alg {
            return Err(bad(format!(
                "key #{i} ({kid:?}) is {} but {LIFECYCLE} records {}",
                public.alg(),
                params.alg
            )));
        }
        let signer = providers::bind(reference, &public)
            .map_err(|e| DecodeError::new(LIFECYCLE, format!("kid {kid:?}: {e}")))?;
        keys.push(Arc::new(SigningKey::remote(*params, public, signer)));
    }
    Ok(keys)
}

fn parse_lifecycle(bytes: &[u8]) -> Result<LifecycleDoc, DecodeError> {
    // Read the version first, so a newer format gets a clear message rather
    // than an "unknown field" one.
    let raw: Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(LIFECYCLE, format!("not JSON: {e}")))?;
    match raw.get("formatVersion").and_then(Value::as_u64) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(DecodeError::new(
                LIFECYCLE,
                format!(
                    "formatVersion {v} is not supported (this jwks-operator reads {FORMAT_VERSION}); was it written by a newer version?"
                ),
            ));
        }
        None => {
            return Err(DecodeError::new(
                LIFECYCLE,
                "missing or non-numeric `formatVersion`",
            ));
        }
    }
    serde_json::from_value(raw).map_err(|e| DecodeError::new(LIFECYCLE, e.to_string()))
}

/// Timestamps a record of each state must (not) have.
fn record_problem(r: &KeyRecord) -> Option<&'static str> {
    match r.state {
        KeyState::Retired if r.retired_at.is_none() || r.prune_after.is_none() => {
            Some("a Retired key needs retiredAt and pruneAfter")
        }
        KeyState::Pending | KeyState::Active
            if r.retired_at.is_some() || r.prune_after.is_some() =>
        {
            Some("only a Retired key has retiredAt and pruneAfter")
        }
        _ => None,
    }
}

/// `jwks.public.json` must hold exactly the public JWKs of `jwks.json`, in order.
fn check_public(bytes: &[u8], set: &StoredKeySet) -> Result<(), DecodeError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(PUBLIC_JWKS, format!("not JSON: {e}")))?;
    let Some(found) = doc.get("keys").and_then(Value::as_array) else {
        return Err(DecodeError::new(
            PUBLIC_JWKS,
            "not a JWK Set (no `keys` array)",
        ));
    };
    let expected: Vec<Value> = set.keys.iter().map(|k| k.key.public_jwk()).collect();
    if found.len() != expected.len() {
        return Err(DecodeError::new(
            PUBLIC_JWKS,
            format!(
                "holds {} keys but {JWKS} holds {}",
                found.len(),
                expected.len()
            ),
        ));
    }
    for (i, (f, e)) in found.iter().zip(&expected).enumerate() {
        if f != e {
            return Err(DecodeError::new(
                PUBLIC_JWKS,
                format!(
                    "key #{i} is not the public half of key #{i} ({:?}) in {JWKS}",
                    e.get("kid").and_then(Value::as_str).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
