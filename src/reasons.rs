//! Every name a problem is reported under: the reasons of the `Ready` and
//! `Degraded` conditions (Kubernetes status, standalone `/policies`) and the
//! `kind` label of `jwks_operator_reconcile_errors_total`.
//!
//! They are written here once and used by name everywhere else, so the
//! lists below are the whole set the code can produce. `tests/docs_match_code.rs`
//! holds the reasons tables of the docs to these lists in both directions,
//! and fails on a reason written as a literal outside this module. A new
//! reason means a constant here, its entry in the list of each mode that
//! can produce it, and a row in that mode's table.

// === Condition reasons ===

/// The spec was accepted by the API server but the operator cannot use it.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A policy file's document fails validation (standalone, signer).
pub const INVALID_POLICY: &str = "InvalidPolicy";
/// The Secret's key set cannot be decoded.
pub const CORRUPT_KEY_SET: &str = "CorruptKeySet";
/// The Secret exists, is not ours and may not be adopted.
pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
/// The API server refused to read the Secret (not a transient error).
pub const SECRET_READ_FAILED: &str = "SecretReadFailed";
/// The API server refused to write the Secret (not a transient error).
pub const SECRET_WRITE_FAILED: &str = "SecretWriteFailed";
/// The public ConfigMap exists and is not ours.
pub const CONFIGMAP_NOT_OWNED: &str = "ConfigMapNotOwned";
/// The API server refused to write the public ConfigMap.
pub const CONFIGMAP_WRITE_FAILED: &str = "ConfigMapWriteFailed";
/// `Ready` is False because no key set has been written yet.
pub const NO_KEY_SET: &str = "NoKeySet";
/// A replica's (or a follower signer's) view of the key set is older than
/// its staleness bound; it does not sign until it reads the set again.
pub const KEY_SET_STALE: &str = "KeySetStale";
/// A rotation is due but the set already holds `maxKeys` keys.
pub const MAX_KEYS_REACHED: &str = "MaxKeysReached";
/// The stored key set parses but breaks a lifecycle rule.
pub const STATE_INCONSISTENT: &str = "StateInconsistent";
/// Generating a new key failed.
pub const KEY_GENERATION_FAILED: &str = "KeyGenerationFailed";
/// The PKCS#11 key provider failed or refused: the module, the token, the
/// PIN, or a call (generation, destruction). The current key keeps signing
/// if it can.
pub const PKCS11_FAILED: &str = "PKCS11Failed";
/// The AWS KMS key provider failed or refused: the credentials, the
/// endpoint, or a call (generation, signing, scheduling a deletion). The
/// current key keeps signing if it can.
pub const KMS_FAILED: &str = "KMSFailed";
/// A state directory's file cannot be parsed.
pub const STATE_CORRUPT: &str = "StateCorrupt";
/// The state directory changed under us (another writer).
pub const STATE_CONFLICT: &str = "StateConflict";
/// The key set to save breaks a lifecycle rule.
pub const STATE_INVALID: &str = "StateInvalid";
/// Writing the state directory failed (I/O).
pub const STATE_WRITE_FAILED: &str = "StateWriteFailed";
/// Another process holds the state directory's lock.
pub const STATE_LOCKED: &str = "StateLocked";
/// The state directory is not private enough to hold keys (e.g. world-writable).
pub const STATE_DIRECTORY_UNSAFE: &str = "StateDirectoryUnsafe";
/// A `spec.publish` copy is not confirmed to hold the set (a write or a
/// read-back failed): the active key keeps signing, the next one waits.
pub const PUBLICATION_PENDING: &str = "PublicationPending";
/// A `spec.publish` target cannot be used as written (scheme, bucket,
/// credentials source): nothing is published and no new key activates.
pub const PUBLICATION_TARGET_INVALID: &str = "PublicationTargetInvalid";
/// A Secret the policy names (`credentialsSecret`, `pinSecret`) exists but
/// its owner has not labelled it `jwks.dev/credentials: "true"`, so the
/// operator does not read it.
pub const SECRET_NOT_OPTED_IN: &str = "SecretNotOptedIn";
/// A Secret the policy names (`credentialsSecret`, `pinSecret`) is missing,
/// lacks a data key, holds unusable data, or cannot be read.
pub const REFERENCED_SECRET_UNUSABLE: &str = "ReferencedSecretUnusable";

/// The reasons a `Degraded` (or not-`Ready`) policy can show in Kubernetes.
pub const KUBERNETES: &[&str] = &[
    INVALID_SPEC,
    CORRUPT_KEY_SET,
    SECRET_READ_FAILED,
    SECRET_WRITE_FAILED,
    CONFIGMAP_NOT_OWNED,
    CONFIGMAP_WRITE_FAILED,
    SECRET_NOT_OWNED,
    NO_KEY_SET,
    KEY_SET_STALE,
    MAX_KEYS_REACHED,
    STATE_INCONSISTENT,
    KEY_GENERATION_FAILED,
    PUBLICATION_PENDING,
    PUBLICATION_TARGET_INVALID,
    SECRET_NOT_OPTED_IN,
    REFERENCED_SECRET_UNUSABLE,
    PKCS11_FAILED,
    KMS_FAILED,
];

/// The reasons a degraded policy can show in standalone mode (`/policies`)
/// and in the signer.
pub const STANDALONE: &[&str] = &[
    INVALID_POLICY,
    STATE_CORRUPT,
    STATE_CONFLICT,
    STATE_INVALID,
    STATE_WRITE_FAILED,
    STATE_LOCKED,
    STATE_DIRECTORY_UNSAFE,
    KEY_SET_STALE,
    MAX_KEYS_REACHED,
    STATE_INCONSISTENT,
    KEY_GENERATION_FAILED,
    PUBLICATION_PENDING,
    PUBLICATION_TARGET_INVALID,
    PKCS11_FAILED,
    KMS_FAILED,
];

// === Event reasons (Kubernetes Events that are not conditions) ===

/// Warning Event: a `spec.publish` copy that someone else changed or
/// deleted was rewritten (also `jwks_operator_publication_repairs_total`).
pub const EVENT_COPY_REPAIRED: &str = "PublicationRepaired";

// === Error kinds (`reconcile_errors_total{kind}`) ===

/// Someone else wrote first; re-read and plan again.
pub const KIND_CONFLICT: &str = "conflict";
/// Reading the Secret failed.
pub const KIND_READ_SECRET: &str = "read_secret";
/// Writing the Secret failed.
pub const KIND_WRITE_SECRET: &str = "write_secret";
/// The Secret's key set cannot be decoded.
pub const KIND_CORRUPT_KEY_SET: &str = "corrupt_key_set";
/// The Secret is not ours.
pub const KIND_SECRET_NOT_OWNED: &str = "secret_not_owned";
/// Writing the public ConfigMap failed.
pub const KIND_WRITE_CONFIGMAP: &str = "write_configmap";
/// The public ConfigMap is not ours.
pub const KIND_CONFIGMAP_NOT_OWNED: &str = "configmap_not_owned";
/// Patching the policy's status failed.
pub const KIND_PATCH_STATUS: &str = "patch_status";
/// Encoding the key set into a Secret failed.
pub const KIND_ENCODE: &str = "encode";
/// The stored key set cannot be parsed or breaks a lifecycle rule.
pub const KIND_PARSE_KEY_SET: &str = "parse_key_set";
/// The key set to save cannot be encoded (standalone).
pub const KIND_ENCODE_KEY_SET: &str = "encode_key_set";
/// Writing the state directory failed, its lock is held, or it is unsafe (standalone).
pub const KIND_WRITE_STATE: &str = "write_state";
/// Generating a key failed.
pub const KIND_GENERATE_KEY: &str = "generate_key";

/// Every `kind` of `reconcile_errors_total`, in both modes.
pub const ERROR_KINDS: &[&str] = &[
    KIND_CONFLICT,
    KIND_READ_SECRET,
    KIND_WRITE_SECRET,
    KIND_CORRUPT_KEY_SET,
    KIND_SECRET_NOT_OWNED,
    KIND_WRITE_CONFIGMAP,
    KIND_CONFIGMAP_NOT_OWNED,
    KIND_PATCH_STATUS,
    KIND_ENCODE,
    KIND_PARSE_KEY_SET,
    KIND_ENCODE_KEY_SET,
    KIND_WRITE_STATE,
    KIND_GENERATE_KEY,
];
