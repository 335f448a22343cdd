//! The leaf of `material/`: base64url and big-integer helpers and the size
//! bounds every other module reads.

use ::rsa::BoxedUint;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::keys::redacted::{Redacted, RedactedBytes};

/// Longest `kid` accepted from a parsed JWK. Our own kids are 43 characters.
pub const MAX_KID_LEN: usize = 256;

/// Smallest RSA modulus a [`VerifyingKey`] accepts (aws-lc's lower bound).
pub(super) const MIN_VERIFY_RSA_BITS: usize = 2048;
/// Largest RSA modulus a [`VerifyingKey`] accepts (aws-lc's upper bound).
pub(super) const MAX_VERIFY_RSA_BITS: usize = 8192;

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url-encodes private bytes into a buffer that is wiped on drop.
pub(super) fn b64_secret(bytes: &RedactedBytes) -> Zeroizing<String> {
    let bytes = bytes.expose();
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

pub(super) fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    // Keep one byte for the value zero.
    let zeros = zeros.min(v.len().saturating_sub(1));
    v.drain(..zeros);
    v
}

/// Big-endian bytes of a secret big integer, without leading zeros.
pub(super) fn secret_uint(x: &BoxedUint) -> RedactedBytes {
    Redacted::new(strip_leading_zeros(x.to_be_bytes().into_vec()))
}

pub(super) fn bit_len(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}
