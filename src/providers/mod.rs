//! Key providers with I/O: where the private half of a key lives when it
//! is not in the key set's Secret or state directory.
//!
//! A provider-held key is a public JWK (cached in the stored set, never
//! fetched per signature) plus a [`KeyReference`] that pins the exact
//! object in the provider: an RFC 7512 `pkcs11:` URI naming the token and
//! the object's `CKA_ID`, or a full AWS KMS key ARN. Signing always goes
//! through the provider with that reference, and every signature is checked
//! with the cached public key before it is returned, so a key swapped or
//! damaged behind our back can never make a token the JWK Set does not
//! verify.
//!
//! - [`pkcs11`]: tokens reached through a PKCS#11 module (an HSM, a TPM
//!   through tpm2-pkcs11, SoftHSM in tests), with the `cryptoki` crate.
//!
//! Errors never carry a PIN or key material: they name the provider, the
//! token or key reference, the operation and the provider's return code.

use std::fmt;

use crate::keys::alg::Algorithm;

pub mod pkcs11;

/// Where a provider-held key lives: enough to find exactly that key again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyReference {
    /// An RFC 7512 URI: `pkcs11:token=<label>;id=<CKA_ID>;object=<kid>;type=private`.
    Pkcs11(pkcs11::Pkcs11Uri),
}

impl KeyReference {
    /// The provider type holding the key, as the API names it.
    pub fn provider(&self) -> &'static str {
        match self {
            KeyReference::Pkcs11(_) => PKCS11,
        }
    }
}

impl fmt::Display for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReference::Pkcs11(uri) => uri.fmt(f),
        }
    }
}

/// The API's name of the PKCS#11 provider.
pub const PKCS11: &str = "PKCS11";

/// A provider failed or refused. Messages name the provider, the token or
/// key and the operation; never a PIN, a credential or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider's library or client could not be set up.
    #[error("{provider}: cannot load module {module}: {detail}")]
    ModuleLoad {
        /// `PKCS11`.
        provider: &'static str,
        /// Path of the module.
        module: String,
        /// Why, as the loader says.
        detail: String,
    },
    /// No token with that label.
    #[error("{provider}: no token labelled {label:?} in module {module}")]
    TokenNotFound {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label looked for.
        label: String,
        /// Path of the module.
        module: String,
    },
    /// The token refused the PIN.
    #[error("{provider}: token {token:?} refused the PIN ({code})")]
    PinRefused {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label.
        token: String,
        /// The provider's code (`PinIncorrect`, `PinLocked`, ...).
        code: String,
    },
    /// The PIN could not be read (file or Secret).
    #[error("{provider}: cannot read the PIN from {source_name}: {detail}")]
    PinUnreadable {
        /// `PKCS11`.
        provider: &'static str,
        /// Where the PIN was looked for (a path or a Secret name).
        source_name: String,
        /// Why (never the file's content).
        detail: String,
    },
    /// A provider call failed.
    #[error("{provider}: token {token:?}: {op} failed: {code}")]
    Call {
        /// `PKCS11`.
        provider: &'static str,
        /// The token label (or key reference).
        token: String,
        /// What was attempted.
        op: &'static str,
        /// The provider's code or message.
        code: String,
    },
    /// The referenced key is not (or no longer) in the provider.
    #[error("{provider}: key {reference} not found")]
    KeyNotFound {
        /// `PKCS11`.
        provider: &'static str,
        /// The key reference.
        reference: String,
    },
    /// The provider cannot do this algorithm.
    #[error("{provider}: {alg} is not supported: {detail}")]
    Unsupported {
        /// `PKCS11`.
        provider: &'static str,
        /// The algorithm.
        alg: Algorithm,
        /// What is missing (a mechanism, a key spec).
        detail: String,
    },
    /// The provider returned a signature or public key that does not check out.
    #[error("{provider}: key {reference}: {what}")]
    BadOutput {
        /// `PKCS11`.
        provider: &'static str,
        /// The key reference.
        reference: String,
        /// What is wrong (never the bytes).
        what: String,
    },
    /// A key reference does not parse.
    #[error("invalid key reference: {0}")]
    BadReference(String),
}

impl ProviderError {
    /// The provider type the error is about, as the API names it.
    pub fn provider(&self) -> &'static str {
        match self {
            ProviderError::ModuleLoad { provider, .. }
            | ProviderError::TokenNotFound { provider, .. }
            | ProviderError::PinRefused { provider, .. }
            | ProviderError::PinUnreadable { provider, .. }
            | ProviderError::Call { provider, .. }
            | ProviderError::KeyNotFound { provider, .. }
            | ProviderError::Unsupported { provider, .. }
            | ProviderError::BadOutput { provider, .. } => provider,
            ProviderError::BadReference(_) => PKCS11,
        }
    }
}
