//! JWS algorithms the operator issues keys for, and the key parameters each needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A JWS signing algorithm (RFC 7518 / RFC 8037 names). One algorithm per key.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519.
    EdDSA,
}

// === impl Algorithm ===

impl Algorithm {
    /// Every supported algorithm, in the order the API lists them.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The `alg` header / JWK member value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether keys for this algorithm are RSA keys (and so take a `keySize`).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the supported algorithm names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported algorithm {0:?} (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// RSA modulus sizes the operator generates.
pub const RSA_KEY_SIZES: [u32; 3] = [2048, 3072, 4096];

/// Default RSA modulus size.
pub const DEFAULT_RSA_BITS: u32 = 2048;

/// What kind of key to generate: the algorithm and, for RSA, the modulus size.
///
/// Two keys with equal parameters are interchangeable for policy purposes; a
/// policy whose parameters differ from the active key's changes them at the
/// next rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyParams {
    /// The JWS algorithm the key signs with.
    pub alg: Algorithm,
    /// RSA modulus bits; `None` for non-RSA algorithms.
    pub rsa_bits: Option<u32>,
}

// === impl KeyParams ===

impl KeyParams {
    /// Parameters for `alg`, with the default modulus size for RSA.
    pub fn new(alg: Algorithm) -> Self {
        KeyParams {
            alg,
            rsa_bits: alg.is_rsa().then_some(DEFAULT_RSA_BITS),
        }
    }

    /// RSA parameters with an explicit modulus size.
    pub fn rsa(alg: Algorithm, bits: u32) -> Self {
        KeyParams {
            alg,
            rsa_bits: Some(bits),
        }
    }
}

impl fmt::Display for KeyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rsa_bits {
            Some(bits) => write!(f, "{} ({bits}-bit)", self.alg),
            None => write!(f, "{}", self.alg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{}\"", alg.as_str()));
        }
        assert!("HS256".parse::<Algorithm>().is_err());
        assert!("none".parse::<Algorithm>().is_err());
    }

    #[test]
    fn only_rsa_algorithms_take_a_key_size() {
        for alg in Algorithm::ALL {
            assert_eq!(KeyParams::new(alg).rsa_bits.is_some(), alg.is_rsa());
        }
    }
}
