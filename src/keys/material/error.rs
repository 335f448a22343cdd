//! Errors of the key domain: what went wrong with which key and which JWK
//! member, never the member's value.

use std::fmt;

use super::encoding::MAX_KID_LEN;
use crate::keys::alg::{Algorithm, KeyParams};

/// Something went wrong generating, parsing, encoding or using a key.
///
/// Messages name the key (its index in the set and its `kid`) and the JWK
/// member at fault; they never contain private key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generating a key with these parameters failed or the parameters are
    /// not supported (an RSA size other than 2048/3072/4096, a key size for a
    /// non-RSA algorithm).
    #[error("cannot generate a {params} key: {reason}")]
    Generate {
        /// What was asked for.
        params: KeyParams,
        /// Why it failed.
        reason: String,
    },
    /// One JWK is malformed, inconsistent or unsupported.
    #[error("invalid JWK {key}: {problem}")]
    InvalidJwk {
        /// Which key (index in the set, `kid` if it had one).
        key: KeyRef,
        /// What is wrong with it.
        problem: JwkProblem,
    },
    /// The document is not a JWK Set (`{"keys": [...]}`).
    #[error("invalid JWK Set: {reason}")]
    InvalidJwkSet {
        /// What is wrong with it.
        reason: String,
    },
    /// The crypto backend failed to sign (should not happen with a valid key).
    #[error("signing with key {kid:?} failed")]
    Sign {
        /// The key that failed.
        kid: String,
    },
    /// The key provider holding the key failed to sign.
    #[error("signing with key {kid:?} failed: {message}")]
    Provider {
        /// The key that failed.
        kid: String,
        /// What the provider said (names the provider; never a secret).
        message: String,
    },
    /// A signature did not verify under the key.
    #[error("signature does not verify under key {kid:?}")]
    BadSignature {
        /// The key that was used.
        kid: String,
    },
}

impl KeyError {
    pub(super) fn jwk(key: &KeyRef, problem: JwkProblem) -> Self {
        KeyError::InvalidJwk {
            key: key.clone(),
            problem,
        }
    }

    pub(super) fn generate(params: KeyParams, reason: impl Into<String>) -> Self {
        KeyError::Generate {
            params,
            reason: reason.into(),
        }
    }

    /// The JWK problem, if this is an [`KeyError::InvalidJwk`].
    pub fn jwk_problem(&self) -> Option<&JwkProblem> {
        match self {
            KeyError::InvalidJwk { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Names a JWK in error messages: its position in the set and its `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRef {
    /// Zero-based position in the `keys` array, when parsed from a set.
    pub index: Option<usize>,
    /// The `kid` member as found (public information), if it had one.
    pub kid: Option<String>,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.index {
            Some(i) => write!(f, "#{i}")?,
            None => f.write_str("key")?,
        }
        match &self.kid {
            // Debug-quote so odd characters cannot forge log lines; cap the length.
            Some(kid) => write!(f, " (kid {:?})", truncate(kid, 64)),
            None => f.write_str(" (no kid)"),
        }
    }
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What is wrong with a JWK. Only public facts: member names, key types,
/// sizes; never member values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkProblem {
    /// The JWK is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("missing member `{0}`")]
    MissingMember(&'static str),
    /// A member that must be a string is not.
    #[error("member `{0}` is not a string")]
    NotAString(&'static str),
    /// A member is not unpadded base64url.
    #[error("member `{0}` is not unpadded base64url")]
    NotBase64Url(&'static str),
    /// `kty` is not RSA, EC or OKP.
    #[error("unsupported kty {0:?} (expected \"RSA\", \"EC\" or \"OKP\")")]
    UnsupportedKeyType(String),
    /// `crv` is not P-256/P-384 (EC) or Ed25519 (OKP).
    #[error("unsupported crv {crv:?} for kty {kty:?}")]
    UnsupportedCurve {
        /// The key type.
        kty: &'static str,
        /// The curve found.
        crv: String,
    },
    /// `alg` is not one of the supported JWS algorithms.
    #[error("unsupported alg {0:?}")]
    UnsupportedAlgorithm(String),
    /// `alg` names an algorithm that this kind of key cannot sign with.
    #[error("alg {alg} does not fit a {key} key")]
    AlgorithmMismatch {
        /// The `alg` member.
        alg: Algorithm,
        /// The key type and curve, e.g. `EC P-256`.
        key: &'static str,
    },
    /// `use` or `key_ops` say the key is not for signatures.
    #[error("key is not for signatures ({0})")]
    NotForSigning(String),
    /// A fixed-size member has the wrong length.
    #[error("member `{member}` is {actual} bytes, expected {expected}")]
    WrongLength {
        /// The member.
        member: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// The RSA modulus size is not one the operator issues or accepts.
    #[error("RSA modulus of {bits} bits is not supported ({supported})")]
    UnsupportedRsaSize {
        /// Bits in `n`.
        bits: usize,
        /// The supported sizes, for the message.
        supported: &'static str,
    },
    /// Multi-prime RSA (`oth`) is not supported.
    #[error("multi-prime RSA keys (member `oth`) are not supported")]
    MultiPrimeRsa,
    /// The members do not describe one consistent key.
    #[error("inconsistent key: {0}")]
    Inconsistent(&'static str),
    /// The crypto backend refused the key.
    #[error("key rejected: {0}")]
    Rejected(&'static str),
    /// `kid` is present but empty or too long.
    #[error("kid must be 1 to {MAX_KID_LEN} characters")]
    BadKid,
    /// Two keys in one set share a `kid`.
    #[error("kid is also used by key #{first}")]
    DuplicateKid {
        /// Index of the earlier key.
        first: usize,
    },
    /// Two keys in one set are the same key material (same thumbprint).
    #[error("same key material as key #{first}")]
    DuplicateKey {
        /// Index of the earlier key.
        first: usize,
    },
}
