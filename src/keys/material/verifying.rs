//! The public half of a key: its members, thumbprint, and an aws-lc public
//! key parsed once for verification.

use std::fmt;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::Value;

use super::encoding::{MAX_VERIFY_RSA_BITS, MIN_VERIFY_RSA_BITS, b64, bit_len};
use super::error::{JwkProblem, KeyError, KeyRef};
use super::params::{Curve, rsa_parameters};
use super::read::{JwkReader, KeyKind};
use crate::keys::alg::Algorithm;

/// The public members of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PublicParts {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl PublicParts {
    /// RFC 7638: SHA-256 over the required members, lexicographically
    /// ordered, no whitespace; base64url without padding.
    pub(super) fn thumbprint(&self) -> String {
        // Every value is base64url or a fixed name, so no JSON escaping is needed.
        let canonical = match self {
            PublicParts::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
            PublicParts::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b64(x),
                b64(y)
            ),
            PublicParts::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
        };
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Reads the public members of a JWK of `kind`.
    pub(super) fn read(r: &JwkReader<'_>, kind: KeyKind) -> Result<Self, JwkProblem> {
        Ok(match kind {
            KeyKind::Rsa => PublicParts::Rsa {
                n: r.uint("n")?,
                e: r.uint("e")?,
            },
            KeyKind::Ec(curve) => {
                let x = r.fixed("x", curve.size())?;
                let y = r.fixed("y", curve.size())?;
                PublicParts::Ec { curve, x, y }
            }
            KeyKind::Ed25519 => PublicParts::Ed25519 {
                x: r.fixed("x", 32)?,
            },
        })
    }

    pub(super) fn ec_point(curve_size: usize, x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut point = Vec::with_capacity(1 + 2 * curve_size);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        point
    }

    /// Parses the public key for `alg` with aws-lc, once.
    pub(super) fn parse(&self, alg: Algorithm) -> Result<ParsedPublicKey, JwkProblem> {
        let parsed = match self {
            PublicParts::Rsa { n, e } => {
                let bits = bit_len(n);
                if !(MIN_VERIFY_RSA_BITS..=MAX_VERIFY_RSA_BITS).contains(&bits) {
                    return Err(JwkProblem::UnsupportedRsaSize {
                        bits,
                        supported: "2048 to 8192 bits",
                    });
                }
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(rsa_parameters(alg))
            }
            PublicParts::Ec { curve, x, y } => {
                let point = Self::ec_point(curve.size(), x, y);
                curve.check_point(&point)?;
                ParsedPublicKey::new(curve.verification(), point)
            }
            PublicParts::Ed25519 { x } => ParsedPublicKey::new(&lc::ED25519, x),
        };
        parsed.map_err(|e| JwkProblem::Rejected(e.description_()))
    }
}

/// The public half of a signing key: what a verifier needs.
///
/// Holds the aws-lc-rs public key parsed once, so verifying a signature does
/// not re-parse the key.
#[derive(Clone)]
pub struct VerifyingKey {
    pub(super) kid: String,
    pub(super) alg: Algorithm,
    pub(super) public: PublicParts,
    pub(super) parsed: ParsedPublicKey,
}

// === impl VerifyingKey ===

impl VerifyingKey {
    pub(super) fn new(
        kid: String,
        alg: Algorithm,
        public: PublicParts,
    ) -> Result<Self, JwkProblem> {
        let parsed = public.parse(alg)?;
        Ok(VerifyingKey {
            kid,
            alg,
            public,
            parsed,
        })
    }

    /// Parses a public JWK (`kty`, `kid`, `alg`, and `n`/`e`, `crv`/`x`/`y`
    /// or `crv`/`x`).
    ///
    /// Private members, if present, are ignored: a verifier only reads the
    /// public ones. Without `alg` the algorithm is inferred as in
    /// [`SigningKey::from_private_jwk`]; without `kid` the thumbprint is used.
    /// RSA moduli from 2048 to 8192 bits are accepted (this is for reading
    /// other people's key sets too).
    pub fn from_public_jwk(v: &Value) -> Result<Self, KeyError> {
        Self::from_public_jwk_at(v, None)
    }

    pub(super) fn from_public_jwk_at(v: &Value, index: Option<usize>) -> Result<Self, KeyError> {
        let mut key = KeyRef { index, kid: None };
        let read = || -> Result<Self, JwkProblem> {
            let r = JwkReader::new(v)?;
            let kid = r.kid()?;
            r.check_usage("verify")?;
            let (kind, alg) = r.kind_and_alg()?;
            let public = PublicParts::read(&r, kind)?;
            let kid = kid.unwrap_or_else(|| public.thumbprint());
            VerifyingKey::new(kid, alg, public)
        };
        read().map_err(|problem| {
            key.kid = v.get("kid").and_then(Value::as_str).map(str::to_string);
            KeyError::jwk(&key, problem)
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 thumbprint of this key (equal to `kid` for keys the
    /// operator generated).
    pub fn thumbprint(&self) -> String {
        self.public.thumbprint()
    }

    /// Checks a raw JWS signature (RSA, Ed25519, or ECDSA `r||s`) over `message`.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| KeyError::BadSignature {
                kid: self.kid.clone(),
            })
    }

    /// This key as a jsonwebtoken `DecodingKey`: the tests use jsonwebtoken
    /// as an independent check of [`crate::keys::token::Verifier`] (which
    /// does not use it), so jsonwebtoken is only a dev-dependency.
    #[cfg(test)]
    pub(crate) fn to_decoding_key(&self) -> jsonwebtoken::DecodingKey {
        match &self.public {
            PublicParts::Rsa { n, e } => jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e),
            PublicParts::Ec { curve, x, y } => {
                jsonwebtoken::DecodingKey::from_ec_der(&PublicParts::ec_point(curve.size(), x, y))
            }
            PublicParts::Ed25519 { x } => jsonwebtoken::DecodingKey::from_ed_der(x),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.alg == other.alg && self.public == other.public
    }
}

impl Eq for VerifyingKey {}
