//! One private signing key as held: its public half, parameters, private
//! members, PKCS#8 form and the aws-lc key pair parsed once. What it does
//! (generation, parsing, signing) is in `signing`; this module is below the
//! per-family builders (`rsa`, `ec`, `okp`), which assemble it.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use super::error::JwkProblem;
use super::params::Curve;
use super::verifying::{PublicParts, VerifyingKey};
use crate::keys::alg::{Algorithm, KeyParams};
use crate::keys::redacted::RedactedBytes;

/// The private members of a key (besides the public ones).
pub(super) enum PrivateParts {
    Rsa {
        d: RedactedBytes,
        p: RedactedBytes,
        q: RedactedBytes,
        dp: RedactedBytes,
        dq: RedactedBytes,
        qi: RedactedBytes,
    },
    /// EC scalar or Ed25519 seed.
    Scalar { d: RedactedBytes },
    /// None here: the private key is held by a key provider.
    Remote,
}

/// Signs with a private key held outside this process: in a PKCS#11 token
/// or a KMS (`providers/`). The key domain knows only this interface.
pub trait RemoteSigner: Send + Sync {
    /// The key reference recorded in `lifecycle.json`: an RFC 7512
    /// `pkcs11:` URI or a KMS key ARN. Not secret.
    fn reference(&self) -> &str;

    /// The JWS signature over `message` (ECDSA as fixed-width `r‖s`),
    /// already verified by the provider against the key's public half. The
    /// error is a message naming the provider and the failure, never key
    /// material or a PIN.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// An aws-lc-rs key pair parsed once and reused for every signature.
pub(super) enum CachedSigner {
    Rsa {
        pair: RsaKeyPair,
        encoding: &'static dyn lc::RsaEncoding,
    },
    Ecdsa {
        pair: EcdsaKeyPair,
        curve: Curve,
    },
    Ed25519(Ed25519KeyPair),
    /// Signed by a key provider.
    Remote(Arc<dyn RemoteSigner>),
}

/// One private signing key: its `kid`, [`KeyParams`], private members, and a
/// parsed aws-lc-rs key pair ready to sign.
///
/// Cheap to share: wrap it in an `Arc`. Two `SigningKey`s are equal when
/// their `kid`s are equal (the `kid` identifies key material). `Debug` never
/// shows private material.
pub struct SigningKey {
    pub(super) public: VerifyingKey,
    pub(super) params: KeyParams,
    pub(super) private: PrivateParts,
    pub(super) pkcs8: RedactedBytes,
    pub(super) signer: CachedSigner,
    /// The token layer's encoded JWS header for this key, filled on first
    /// use (see [`SigningKey::jws_header`], defined with the tokens): encoding belongs to tokens,
    /// the cache to the key it describes.
    pub(super) jws_header: OnceLock<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .field("params", &self.params)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid() == other.kid()
    }
}

impl Eq for SigningKey {}

impl Hash for SigningKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kid().hash(state);
    }
}

impl AsRef<VerifyingKey> for SigningKey {
    fn as_ref(&self) -> &VerifyingKey {
        &self.public
    }
}

pub(super) fn assemble(
    kid: Option<String>,
    alg: Algorithm,
    rsa_bits: Option<u32>,
    public: PublicParts,
    private: PrivateParts,
    pkcs8: RedactedBytes,
    signer: CachedSigner,
) -> Result<SigningKey, JwkProblem> {
    let kid = kid.unwrap_or_else(|| public.thumbprint());
    Ok(SigningKey {
        public: VerifyingKey::new(kid, alg, public)?,
        params: KeyParams { alg, rsa_bits },
        private,
        pkcs8,
        signer,
        jws_header: OnceLock::new(),
    })
}
