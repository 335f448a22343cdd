//! ECDSA keys on P-256 and P-384: the curves, generation, point checks and
//! the builder.

use aws_lc_rs::signature::{self as lc, EcdsaKeyPair};
use p256::elliptic_curve::Generate as _;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::error::JwkProblem;
use super::signing::{CachedSigner, PrivateParts, SigningKey, assemble};
use super::verifying::PublicParts;
use crate::keys::alg::Algorithm;
use crate::keys::redacted::{Redacted, RedactedBytes};

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

    /// A fresh private scalar and the matching uncompressed point `04||x||y`.
    pub(super) fn generate<R: CryptoRng + ?Sized>(self, rng: &mut R) -> (RedactedBytes, Vec<u8>) {
        match self {
            Curve::P256 => {
                let sk = p256::SecretKey::generate_from_rng(rng);
                let d = Redacted::new(Zeroizing::new(sk.to_bytes()).to_vec());
                (d, sk.public_key().to_sec1_bytes().into_vec())
            }
            Curve::P384 => {
                let sk = p384::SecretKey::generate_from_rng(rng);
                let d = Redacted::new(Zeroizing::new(sk.to_bytes()).to_vec());
                (d, sk.public_key().to_sec1_bytes().into_vec())
            }
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

pub(super) fn build_ec(
    kid: Option<String>,
    alg: Algorithm,
    curve: Curve,
    public: PublicParts,
    d: RedactedBytes,
) -> Result<SigningKey, JwkProblem> {
    let PublicParts::Ec { x, y, .. } = &public else {
        unreachable!("build_ec is only called for EC keys");
    };
    let point = PublicParts::ec_point(curve.size(), x, y);
    curve.check_point(&point)?;
    if curve.public_point(d.expose())? != point {
        return Err(JwkProblem::Inconsistent("d does not match x/y"));
    }
    let pair = EcdsaKeyPair::from_private_key_and_public_key(curve.signing(), d.expose(), &point)
        .map_err(|e| JwkProblem::Rejected(e.description_()))?;
    let doc = pair
        .to_pkcs8v1()
        .map_err(|_| JwkProblem::Rejected("cannot encode the EC key as PKCS#8"))?;
    let pkcs8 = Redacted::new(doc.as_ref().to_vec());
    let private = PrivateParts::Scalar { d };
    assemble(
        kid,
        alg,
        None,
        public,
        private,
        pkcs8,
        CachedSigner::Ecdsa { pair, curve },
    )
}
