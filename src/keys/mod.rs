//! The key domain: algorithms, key material, JWK encoding, the lifecycle
//! planner and token signing/verification.
//!
//! Everything here is pure: no Kubernetes, no HTTP, no async runtime, no clock
//! and no OS randomness. Time and randomness come in as parameters, so every
//! rule is unit-testable. (The one exception, per-signature randomness inside
//! aws-lc-rs for ECDSA nonces and RSA-PSS salts, is described in [`material`].)

pub mod alg;
pub mod lifecycle;
pub mod material;
pub mod redacted;
pub mod token;

#[cfg(test)]
pub(crate) mod testing;

pub use alg::{Algorithm, KeyParams};
pub use material::{
    KeyError, SigningKey, VerifyingKey, parse_private_jwks, parse_public_jwks, private_jwks_json,
    public_jwks_json,
};
pub use redacted::Redacted;
