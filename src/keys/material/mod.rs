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
//! - [`error`]: [`KeyError`] and [`JwkProblem`];
//! - `read`: reading one JWK's members and kind;
//! - `rsa`, `ec`, `okp`: building keys of each type;
//! - [`SigningKey`] (`signing`) and [`VerifyingKey`] (`verifying`);
//! - `output`: writing JWKs and JWK Sets;
//! - `set`: parsing JWK Sets;
//! - `source`: the planner's view of a key and the OS-random key source.

use ::rsa::BoxedUint;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use super::redacted::{Redacted, RedactedBytes};

mod ec;
pub mod error;
mod okp;
mod output;
mod read;
mod rsa;
mod set;
mod signing;
mod source;
mod verifying;

pub use error::{JwkProblem, KeyError, KeyRef};
pub use output::{private_jwks_json, public_jwks_json};
pub use set::{jwk_thumbprint, parse_private_jwks, parse_public_jwks};
pub use signing::SigningKey;
pub use source::RngKeySource;
pub use verifying::VerifyingKey;

/// Longest `kid` accepted from a parsed JWK. Our own kids are 43 characters.
pub const MAX_KID_LEN: usize = 256;

/// Smallest RSA modulus a [`VerifyingKey`] accepts (aws-lc's lower bound).
const MIN_VERIFY_RSA_BITS: usize = 2048;
/// Largest RSA modulus a [`VerifyingKey`] accepts (aws-lc's upper bound).
const MAX_VERIFY_RSA_BITS: usize = 8192;

// === base64url helpers ===

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url-encodes private bytes into a buffer that is wiped on drop.
fn b64_secret(bytes: &RedactedBytes) -> Zeroizing<String> {
    let bytes = bytes.expose();
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    // Keep one byte for the value zero.
    let zeros = zeros.min(v.len().saturating_sub(1));
    v.drain(..zeros);
    v
}

/// Big-endian bytes of a secret big integer, without leading zeros.
fn secret_uint(x: &BoxedUint) -> RedactedBytes {
    Redacted::new(strip_leading_zeros(x.to_be_bytes().into_vec()))
}

fn bit_len(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

/// Compile-time check: keys can be shared across threads behind an `Arc`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SigningKey>();
    assert_send_sync::<VerifyingKey>();
};

#[cfg(test)]
mod tests;
