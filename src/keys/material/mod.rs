//! Key material: generating signing keys, encoding them as JWKs, parsing JWK
//! Sets back (strictly), and signing with a parsed key that is kept ready.
//!
//! # Design
//!
//! - A [`SigningKey`] is one private key. It carries its `kid`, its
//!   [`KeyParams`], the private members (for the private JWK Set and PEM) and
//!   an aws-lc-rs key pair parsed once at construction. Re-parsing the key per
//!   signature was measured to halve RS256 throughput, so signing never
//!   re-parses.
//! - A [`VerifyingKey`] is the public half: `kid`, algorithm, public members,
//!   and an aws-lc-rs [`ParsedPublicKey`] kept ready for verification.
//! - `kid` is the RFC 7638 thumbprint of the public key for every key the
//!   operator generates. Keys adopted from elsewhere (node-jose) may keep
//!   their original `kid`; see [`SigningKey::from_private_jwk`].
//!
//! # Randomness
//!
//! Key generation takes the random source as a parameter. The one exception
//! is the per-signature randomness inside aws-lc-rs: ECDSA nonces and RSA-PSS
//! salts are drawn by aws-lc itself (its own DRBG); the `SecureRandom` argument
//! its API takes is ignored. That is accepted: signatures are not meant to be
//! reproducible, and Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic
//! anyway.
//!
//! # Secrets
//!
//! Private members are held in [`Redacted`] (redacted `Debug`, zeroized on
//! drop). No error message in this module carries key material: errors name
//! the key (index in the set, `kid`) and the member, never its value.
//!
//! # Modules
//!
//! A tree, each module importing only those listed below it:
//!
//! - `source`: the planner's view of a key and the OS-random key source;
//!   `set`: parsing JWK Sets; `output`: writing JWKs and JWK Sets;
//! - `signing`: what a [`SigningKey`] does (generate, parse, sign, PEM),
//!   dispatching to
//! - `rsa`, `ec`, `okp`: building keys of each type;
//! - `key`: the [`SigningKey`] itself and its parsed signer;
//! - `verifying`: [`VerifyingKey`] and the public members;
//! - `read`: reading one JWK's members and kind;
//! - `params`: the curves and the aws-lc parameters of each algorithm;
//! - [`error`]: [`KeyError`] and [`JwkProblem`]; `encoding`: base64url and
//!   big-integer helpers.

mod ec;
mod encoding;
pub mod error;
mod key;
mod okp;
mod output;
mod params;
mod read;
mod rsa;
mod set;
mod signing;
mod source;
mod verifying;

pub use encoding::MAX_KID_LEN;
pub use error::{JwkProblem, KeyError, KeyRef};
pub use key::{RemoteSigner, SigningKey};
pub use output::{private_jwks_json, public_jwks_json};
pub use set::{jwk_thumbprint, parse_private_jwks, parse_public_jwks};
pub use signing::sign_off_workers;
pub use source::RngKeySource;
pub use verifying::VerifyingKey;

/// Compile-time check: keys can be shared across threads behind an `Arc`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SigningKey>();
    assert_send_sync::<VerifyingKey>();
};

#[cfg(test)]
mod tests;
