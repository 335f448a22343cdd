//! The curves and the aws-lc parameters of each algorithm: what reading,
//! verifying and signing all need, below each of them.

use aws_lc_rs::signature as lc;

use super::error::JwkProblem;
use crate::keys::alg::Algorithm;

/// NIST curves used for ECDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    pub(super) fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Octets in a coordinate or scalar.
    pub(super) fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    pub(super) fn alg(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
        }
    }

    /// The aws-lc signing algorithm. It returns DER; [`Curve::jws_signature`]
    /// turns that into the JWS form. (aws-lc-rs's fixed-size variant does the
    /// same conversion through heap-allocated big numbers, ~1% of ES256
    /// minting.)
    pub(super) fn signing(self) -> &'static lc::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    /// A DER `ECDSA-Sig-Value` as the JWS signature: `r || s`, each
    /// left-padded to the curve size (RFC 7518 §3.4). `None` if it is not
    /// a valid signature encoding for this curve.
    pub(super) fn jws_signature(self, der: &[u8]) -> Option<Vec<u8>> {
        match self {
            Curve::P256 => p256::ecdsa::Signature::from_der(der)
                .ok()
                .map(|s| s.to_bytes().to_vec()),
            Curve::P384 => p384::ecdsa::Signature::from_der(der)
                .ok()
                .map(|s| s.to_bytes().to_vec()),
        }
    }

    pub(super) fn verification(self) -> &'static lc::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &lc::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &lc::ECDSA_P384_SHA384_FIXED,
        }
    }

    /// Checks that `point` (`04||x||y`) is on the curve.
    pub(super) fn check_point(self, point: &[u8]) -> Result<(), JwkProblem> {
        let ok = match self {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(JwkProblem::Inconsistent("x/y is not a point on the curve"))
        }
    }

    /// The uncompressed public point for private scalar `d`.
    pub(super) fn public_point(self, d: &[u8]) -> Result<Vec<u8>, JwkProblem> {
        let point =
            match self {
                Curve::P256 => p256::SecretKey::from_slice(d)
                    .map(|sk| sk.public_key().to_sec1_bytes().into_vec()),
                Curve::P384 => p384::SecretKey::from_slice(d)
                    .map(|sk| sk.public_key().to_sec1_bytes().into_vec()),
            };
        point.map_err(|_| JwkProblem::Inconsistent("d is not a valid private scalar for the curve"))
    }
}

pub(super) fn rsa_parameters(alg: Algorithm) -> &'static lc::RsaParameters {
    match alg {
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        _ => &lc::RSA_PKCS1_2048_8192_SHA256,
    }
}
