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
//! Private members are held in [`Secret`] (redacted `Debug`, zeroized on
//! drop). No error message in this module carries key material: errors name
//! the key (index in the set, `kid`) and the member, never its value.

use std::fmt;
use std::hash::{Hash, Hasher};

use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::elliptic_curve::Generate as _;
use rand_core::CryptoRng;
use rsa::BoxedUint;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use serde::Serialize;
use serde::ser::Serializer;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::alg::{Algorithm, KeyParams, RSA_KEY_SIZES};
use super::secret::{Secret, SecretBytes, SecretString};

/// Longest `kid` accepted from a parsed JWK. Our own kids are 43 characters.
pub const MAX_KID_LEN: usize = 256;

/// Smallest RSA modulus a [`VerifyingKey`] accepts (aws-lc's lower bound).
const MIN_VERIFY_RSA_BITS: usize = 2048;
/// Largest RSA modulus a [`VerifyingKey`] accepts (aws-lc's upper bound).
const MAX_VERIFY_RSA_BITS: usize = 8192;

// === errors ===

/// Something went wrong generating, parsing, encoding or using a key.
///
/// Messages name the key (its index in the set and its `kid`) and the JWK
/// member at fault; they never contain private key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generating a key with these parameters failed or the parameters are
    /// not supported (an RSA size other than 2048/3072/4096, a key size for a
    /// non-RSA algorithm).
    #[error("cannot generate a {params} key: {reason}")]
    Generate {
        /// What was asked for.
        params: KeyParams,
        /// Why it failed.
        reason: String,
    },
    /// One JWK is malformed, inconsistent or unsupported.
    #[error("invalid JWK {key}: {problem}")]
    InvalidJwk {
        /// Which key (index in the set, `kid` if it had one).
        key: KeyRef,
        /// What is wrong with it.
        problem: JwkProblem,
    },
    /// The document is not a JWK Set (`{"keys": [...]}`).
    #[error("invalid JWK Set: {reason}")]
    InvalidJwkSet {
        /// What is wrong with it.
        reason: String,
    },
    /// The crypto backend failed to sign (should not happen with a valid key).
    #[error("signing with key {kid:?} failed")]
    Sign {
        /// The key that failed.
        kid: String,
    },
    /// A signature did not verify under the key.
    #[error("signature does not verify under key {kid:?}")]
    BadSignature {
        /// The key that was used.
        kid: String,
    },
}

impl KeyError {
    fn jwk(key: &KeyRef, problem: JwkProblem) -> Self {
        KeyError::InvalidJwk {
            key: key.clone(),
            problem,
        }
    }

    fn generate(params: KeyParams, reason: impl Into<String>) -> Self {
        KeyError::Generate {
            params,
            reason: reason.into(),
        }
    }

    /// The JWK problem, if this is an [`KeyError::InvalidJwk`].
    pub fn jwk_problem(&self) -> Option<&JwkProblem> {
        match self {
            KeyError::InvalidJwk { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Names a JWK in error messages: its position in the set and its `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRef {
    /// Zero-based position in the `keys` array, when parsed from a set.
    pub index: Option<usize>,
    /// The `kid` member as found (public information), if it had one.
    pub kid: Option<String>,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.index {
            Some(i) => write!(f, "#{i}")?,
            None => f.write_str("key")?,
        }
        match &self.kid {
            // Debug-quote so odd characters cannot forge log lines; cap the length.
            Some(kid) => write!(f, " (kid {:?})", truncate(kid, 64)),
            None => f.write_str(" (no kid)"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What is wrong with a JWK. Only public facts: member names, key types,
/// sizes; never member values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkProblem {
    /// The JWK is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("missing member `{0}`")]
    MissingMember(&'static str),
    /// A member that must be a string is not.
    #[error("member `{0}` is not a string")]
    NotAString(&'static str),
    /// A member is not unpadded base64url.
    #[error("member `{0}` is not unpadded base64url")]
    NotBase64Url(&'static str),
    /// `kty` is not RSA, EC or OKP.
    #[error("unsupported kty {0:?} (expected \"RSA\", \"EC\" or \"OKP\")")]
    UnsupportedKeyType(String),
    /// `crv` is not P-256/P-384 (EC) or Ed25519 (OKP).
    #[error("unsupported crv {crv:?} for kty {kty:?}")]
    UnsupportedCurve {
        /// The key type.
        kty: &'static str,
        /// The curve found.
        crv: String,
    },
    /// `alg` is not one of the supported JWS algorithms.
    #[error("unsupported alg {0:?}")]
    UnsupportedAlgorithm(String),
    /// `alg` names an algorithm that this kind of key cannot sign with.
    #[error("alg {alg} does not fit a {key} key")]
    AlgorithmMismatch {
        /// The `alg` member.
        alg: Algorithm,
        /// The key type and curve, e.g. `EC P-256`.
        key: &'static str,
    },
    /// `use` or `key_ops` say the key is not for signatures.
    #[error("key is not for signatures ({0})")]
    NotForSigning(String),
    /// A fixed-size member has the wrong length.
    #[error("member `{member}` is {actual} bytes, expected {expected}")]
    WrongLength {
        /// The member.
        member: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// The RSA modulus size is not one the operator issues or accepts.
    #[error("RSA modulus of {bits} bits is not supported ({supported})")]
    UnsupportedRsaSize {
        /// Bits in `n`.
        bits: usize,
        /// The supported sizes, for the message.
        supported: &'static str,
    },
    /// Multi-prime RSA (`oth`) is not supported.
    #[error("multi-prime RSA keys (member `oth`) are not supported")]
    MultiPrimeRsa,
    /// The members do not describe one consistent key.
    #[error("inconsistent key: {0}")]
    Inconsistent(&'static str),
    /// The crypto backend refused the key.
    #[error("key rejected: {0}")]
    Rejected(&'static str),
    /// `kid` is present but empty or too long.
    #[error("kid must be 1 to {MAX_KID_LEN} characters")]
    BadKid,
    /// Two keys in one set share a `kid`.
    #[error("kid is also used by key #{first}")]
    DuplicateKid {
        /// Index of the earlier key.
        first: usize,
    },
    /// Two keys in one set are the same key material (same thumbprint).
    #[error("same key material as key #{first}")]
    DuplicateKey {
        /// Index of the earlier key.
        first: usize,
    },
}

// === base64url helpers ===

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url-encodes private bytes into a buffer that is wiped on drop.
fn b64_secret(bytes: &SecretBytes) -> Zeroizing<String> {
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
fn secret_uint(x: &BoxedUint) -> SecretBytes {
    Secret::new(strip_leading_zeros(x.to_be_bytes().into_vec()))
}

fn bit_len(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

// === JWK reading ===

/// Reads members out of one JWK object, turning problems into [`JwkProblem`]s.
struct JwkReader<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> JwkReader<'a> {
    fn new(v: &'a Value) -> Result<Self, JwkProblem> {
        v.as_object()
            .map(|obj| JwkReader { obj })
            .ok_or(JwkProblem::NotAnObject)
    }

    fn opt_str(&self, name: &'static str) -> Result<Option<&'a str>, JwkProblem> {
        match self.obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JwkProblem::NotAString(name)),
        }
    }

    fn str(&self, name: &'static str) -> Result<&'a str, JwkProblem> {
        self.opt_str(name)?.ok_or(JwkProblem::MissingMember(name))
    }

    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, JwkProblem> {
        URL_SAFE_NO_PAD
            .decode(self.str(name)?)
            .map_err(|_| JwkProblem::NotBase64Url(name))
    }

    fn secret(&self, name: &'static str) -> Result<SecretBytes, JwkProblem> {
        self.bytes(name).map(Secret::new)
    }

    fn has(&self, name: &str) -> bool {
        self.obj.contains_key(name)
    }

    /// A big unsigned integer member (RFC 7518 Base64urlUInt), leading zeros removed.
    fn uint(&self, name: &'static str) -> Result<Vec<u8>, JwkProblem> {
        let v = strip_leading_zeros(self.bytes(name)?);
        if v == [0] || v.is_empty() {
            return Err(JwkProblem::Inconsistent("an RSA member is zero"));
        }
        Ok(v)
    }

    fn secret_uint(&self, name: &'static str) -> Result<SecretBytes, JwkProblem> {
        let v = Secret::new(strip_leading_zeros(self.bytes(name)?));
        if v.expose().is_empty() || v.expose() == &[0] {
            return Err(JwkProblem::Inconsistent("an RSA member is zero"));
        }
        Ok(v)
    }

    fn fixed(&self, name: &'static str, len: usize) -> Result<Vec<u8>, JwkProblem> {
        let v = self.bytes(name)?;
        check_len(name, v.len(), len)?;
        Ok(v)
    }

    fn fixed_secret(&self, name: &'static str, len: usize) -> Result<SecretBytes, JwkProblem> {
        let v = self.secret(name)?;
        check_len(name, v.expose().len(), len)?;
        Ok(v)
    }

    /// The `kid` member, if present; must be a non-empty string of sane length.
    fn kid(&self) -> Result<Option<String>, JwkProblem> {
        match self.opt_str("kid")? {
            None => Ok(None),
            Some(k) if k.is_empty() || k.chars().count() > MAX_KID_LEN => Err(JwkProblem::BadKid),
            Some(k) => Ok(Some(k.to_string())),
        }
    }

    /// `use` must be `sig` when present; `key_ops`, when present, must allow `op`.
    fn check_usage(&self, op: &str) -> Result<(), JwkProblem> {
        if let Some(u) = self.opt_str("use")?
            && u != "sig"
        {
            return Err(JwkProblem::NotForSigning(format!(
                "use is {:?}",
                truncate(u, 16)
            )));
        }
        if let Some(ops) = self.obj.get("key_ops") {
            let allowed = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some(op)));
            if !allowed {
                return Err(JwkProblem::NotForSigning(format!("key_ops lacks {op:?}")));
            }
        }
        Ok(())
    }

    /// The key type and curve (`kty`, `crv`).
    fn kind(&self) -> Result<KeyKind, JwkProblem> {
        let curve = |kty: &'static str, crv: &str| JwkProblem::UnsupportedCurve {
            kty,
            crv: truncate(crv, 16).to_string(),
        };
        Ok(match self.str("kty")? {
            "RSA" => KeyKind::Rsa,
            "EC" => match self.str("crv")? {
                "P-256" => KeyKind::Ec(Curve::P256),
                "P-384" => KeyKind::Ec(Curve::P384),
                other => return Err(curve("EC", other)),
            },
            "OKP" => match self.str("crv")? {
                "Ed25519" => KeyKind::Ed25519,
                other => return Err(curve("OKP", other)),
            },
            other => {
                return Err(JwkProblem::UnsupportedKeyType(
                    truncate(other, 16).to_string(),
                ));
            }
        })
    }

    /// The key type and curve, and the algorithm (from `alg`, or inferred).
    fn kind_and_alg(&self) -> Result<(KeyKind, Algorithm), JwkProblem> {
        let kind = self.kind()?;
        let alg = match self.opt_str("alg")? {
            None => kind.default_alg(),
            Some(name) => {
                let alg: Algorithm = name.parse().map_err(|_| {
                    JwkProblem::UnsupportedAlgorithm(truncate(name, 16).to_string())
                })?;
                if !kind.fits(alg) {
                    return Err(JwkProblem::AlgorithmMismatch {
                        alg,
                        key: kind.describe(),
                    });
                }
                alg
            }
        };
        Ok((kind, alg))
    }
}

fn check_len(member: &'static str, actual: usize, expected: usize) -> Result<(), JwkProblem> {
    if actual == expected {
        Ok(())
    } else {
        Err(JwkProblem::WrongLength {
            member,
            expected,
            actual,
        })
    }
}

// === key kinds ===

/// NIST curves used for ECDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Octets in a coordinate or scalar.
    fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn alg(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
        }
    }

    /// The aws-lc signing algorithm. It returns DER; [`Curve::jws_signature`]
    /// turns that into the JWS form. (aws-lc-rs's fixed-size variant does the
    /// same conversion through heap-allocated big numbers, ~1% of ES256
    /// minting.)
    fn signing(self) -> &'static lc::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    /// A DER `ECDSA-Sig-Value` as the JWS signature: `r || s`, each
    /// left-padded to the curve size (RFC 7518 §3.4). `None` if it is not
    /// a valid signature encoding for this curve.
    fn jws_signature(self, der: &[u8]) -> Option<Vec<u8>> {
        match self {
            Curve::P256 => p256::ecdsa::Signature::from_der(der)
                .ok()
                .map(|s| s.to_bytes().to_vec()),
            Curve::P384 => p384::ecdsa::Signature::from_der(der)
                .ok()
                .map(|s| s.to_bytes().to_vec()),
        }
    }

    fn verification(self) -> &'static lc::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &lc::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &lc::ECDSA_P384_SHA384_FIXED,
        }
    }

    /// A fresh private scalar and the matching uncompressed point `04||x||y`.
    fn generate<R: CryptoRng + ?Sized>(self, rng: &mut R) -> (SecretBytes, Vec<u8>) {
        match self {
            Curve::P256 => {
                let sk = p256::SecretKey::generate_from_rng(rng);
                let d = Secret::new(Zeroizing::new(sk.to_bytes()).to_vec());
                (d, sk.public_key().to_sec1_bytes().into_vec())
            }
            Curve::P384 => {
                let sk = p384::SecretKey::generate_from_rng(rng);
                let d = Secret::new(Zeroizing::new(sk.to_bytes()).to_vec());
                (d, sk.public_key().to_sec1_bytes().into_vec())
            }
        }
    }

    /// Checks that `point` (`04||x||y`) is on the curve.
    fn check_point(self, point: &[u8]) -> Result<(), JwkProblem> {
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
    fn public_point(self, d: &[u8]) -> Result<Vec<u8>, JwkProblem> {
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

/// The kind of key a JWK holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    Ec(Curve),
    Ed25519,
}

impl KeyKind {
    /// The algorithm assumed when a JWK has no `alg` (node-jose often omits it).
    fn default_alg(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec(c) => c.alg(),
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        match self {
            KeyKind::Rsa => alg.is_rsa(),
            KeyKind::Ec(c) => alg == c.alg(),
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec(Curve::P256) => "EC P-256",
            KeyKind::Ec(Curve::P384) => "EC P-384",
            KeyKind::Ed25519 => "OKP Ed25519",
        }
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn lc::RsaEncoding {
    match alg {
        Algorithm::RS384 => &lc::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_SHA512,
        _ => &lc::RSA_PKCS1_SHA256,
    }
}

fn rsa_parameters(alg: Algorithm) -> &'static lc::RsaParameters {
    match alg {
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        _ => &lc::RSA_PKCS1_2048_8192_SHA256,
    }
}

// === VerifyingKey ===

/// The public members of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicParts {
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
    fn thumbprint(&self) -> String {
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
    fn read(r: &JwkReader<'_>, kind: KeyKind) -> Result<Self, JwkProblem> {
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

    fn ec_point(curve_size: usize, x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut point = Vec::with_capacity(1 + 2 * curve_size);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        point
    }

    /// Parses the public key for `alg` with aws-lc, once.
    fn parse(&self, alg: Algorithm) -> Result<ParsedPublicKey, JwkProblem> {
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
    kid: String,
    alg: Algorithm,
    public: PublicParts,
    parsed: ParsedPublicKey,
}

// === impl VerifyingKey ===

impl VerifyingKey {
    fn new(kid: String, alg: Algorithm, public: PublicParts) -> Result<Self, JwkProblem> {
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

    fn from_public_jwk_at(v: &Value, index: Option<usize>) -> Result<Self, KeyError> {
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

    /// The public JWK: `kty`, `kid`, `use: "sig"`, `alg` and the public
    /// members. Never any private member.
    pub fn public_jwk(&self) -> Value {
        serde_json::to_value(JwkOut::public(self)).expect("a JWK always serializes")
    }

    /// Checks a raw JWS signature (RSA, Ed25519, or ECDSA `r||s`) over `message`.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| KeyError::BadSignature {
                kid: self.kid.clone(),
            })
    }

    /// This key as a jsonwebtoken `DecodingKey`, for code that verifies with
    /// jsonwebtoken directly (the [`crate::keys::token::Verifier`] does not;
    /// the tests use jsonwebtoken as an independent check).
    pub fn to_decoding_key(&self) -> jsonwebtoken::DecodingKey {
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

// === SigningKey ===

/// The private members of a key (besides the public ones).
enum PrivateParts {
    Rsa {
        d: SecretBytes,
        p: SecretBytes,
        q: SecretBytes,
        dp: SecretBytes,
        dq: SecretBytes,
        qi: SecretBytes,
    },
    /// EC scalar or Ed25519 seed.
    Scalar { d: SecretBytes },
}

/// An aws-lc-rs key pair parsed once and reused for every signature.
enum CachedSigner {
    Rsa {
        pair: RsaKeyPair,
        encoding: &'static dyn lc::RsaEncoding,
    },
    Ecdsa {
        pair: EcdsaKeyPair,
        curve: Curve,
    },
    Ed25519(Ed25519KeyPair),
}

/// One private signing key: its `kid`, [`KeyParams`], private members, and a
/// parsed aws-lc-rs key pair ready to sign.
///
/// Cheap to share: wrap it in an `Arc`. Two `SigningKey`s are equal when
/// their `kid`s are equal (the `kid` identifies key material). `Debug` never
/// shows private material.
pub struct SigningKey {
    public: VerifyingKey,
    params: KeyParams,
    private: PrivateParts,
    pkcs8: SecretBytes,
    signer: CachedSigner,
    /// The base64url JWS header every token signed with this key carries.
    jws_header: String,
}

// === impl SigningKey ===

impl SigningKey {
    /// Generates a fresh key for `params` from `rng`.
    ///
    /// RSA keys (2048, 3072 or 4096 bits, e = 65537) come from the `rsa`
    /// crate, P-256/P-384 scalars from `p256`/`p384`, Ed25519 keys from 32
    /// random seed bytes. The `kid` is the RFC 7638 thumbprint. Any other RSA
    /// size, or a key size for a non-RSA algorithm, is an error.
    pub fn generate<R: CryptoRng + ?Sized>(
        params: KeyParams,
        rng: &mut R,
    ) -> Result<SigningKey, KeyError> {
        let alg = params.alg;
        match (alg.is_rsa(), params.rsa_bits) {
            (true, Some(bits)) if RSA_KEY_SIZES.contains(&bits) => {}
            (true, Some(_)) => {
                return Err(KeyError::generate(
                    params,
                    "RSA key size must be 2048, 3072 or 4096 bits",
                ));
            }
            (true, None) => return Err(KeyError::generate(params, "RSA key size missing")),
            (false, Some(_)) => {
                return Err(KeyError::generate(
                    params,
                    "key size given for a non-RSA algorithm",
                ));
            }
            (false, None) => {}
        }
        let built = match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let curve = if alg == Algorithm::ES256 {
                    Curve::P256
                } else {
                    Curve::P384
                };
                let (d, point) = curve.generate(rng);
                let n = curve.size();
                let public = PublicParts::Ec {
                    curve,
                    x: point[1..1 + n].to_vec(),
                    y: point[1 + n..].to_vec(),
                };
                build_ec(None, alg, curve, public, d)
            }
            Algorithm::EdDSA => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(&mut seed[..]);
                build_ed25519(None, Secret::new(seed.to_vec()), None)
            }
            _ => {
                let bits = params.rsa_bits.unwrap_or_default() as usize;
                let key = rsa::PrivateKey::new(rng, bits)
                    .map_err(|e| KeyError::generate(params, e.to_string()))?;
                build_rsa_from_key(None, alg, &key)
            }
        };
        built.map_err(|problem| KeyError::generate(params, problem.to_string()))
    }

    /// Parses one private JWK, strictly.
    ///
    /// Required: `kty` (`RSA`, `EC` or `OKP`), and every public and private
    /// member of that type (`n e d p q dp dq qi`; `crv x y d`; `crv x d`).
    /// Rejected: unknown `kty`/`crv`/`alg`, an `alg` that does not fit the key
    /// (e.g. `ES256` on an RSA key), `use` other than `sig`, `key_ops`
    /// without `sign`, members that are not unpadded base64url, wrong
    /// lengths, multi-prime RSA, RSA sizes other than 2048/3072/4096, and
    /// members that do not form one key (`n != p*q`, `d` not matching `e`,
    /// wrong CRT values, `d` not matching `x`/`y`, an Ed25519 `x` that is not
    /// the seed's public key). Errors name the key, never its values.
    ///
    /// **`alg` absent** (node-jose often omits it): inferred from the key
    /// type — RSA → `RS256`, P-256 → `ES256`, P-384 → `ES384`, Ed25519 →
    /// `EdDSA`. Encoding the key again writes the inferred `alg`.
    ///
    /// **`kid`**: absent → the RFC 7638 thumbprint. Present and equal to the
    /// thumbprint → as is. Present and *different* (node-jose generates
    /// random kids) → **kept**: an adopted key keeps the `kid` that tokens it
    /// already signed carry and that relying parties have cached, so those
    /// tokens keep verifying. Keys the operator generates always use the
    /// thumbprint. [`SigningKey::kid_is_thumbprint`] tells the two apart;
    /// uniqueness of kids and of key material within a set is enforced by
    /// [`parse_private_jwks`].
    ///
    /// Other members (`x5c`, `key_ops`, ...) are not carried over.
    pub fn from_private_jwk(v: &Value) -> Result<SigningKey, KeyError> {
        Self::from_private_jwk_at(v, None)
    }

    fn from_private_jwk_at(v: &Value, index: Option<usize>) -> Result<SigningKey, KeyError> {
        let read = || -> Result<SigningKey, JwkProblem> {
            let r = JwkReader::new(v)?;
            let kid = r.kid()?;
            r.check_usage("sign")?;
            let (kind, alg) = r.kind_and_alg()?;
            let public = PublicParts::read(&r, kind)?;
            match public {
                PublicParts::Rsa { .. } => read_rsa(&r, kid, alg, public),
                PublicParts::Ec { curve, .. } => {
                    let d = r.fixed_secret("d", curve.size())?;
                    build_ec(kid, alg, curve, public, d)
                }
                PublicParts::Ed25519 { ref x } => {
                    let d = r.fixed_secret("d", 32)?;
                    let x = x.clone();
                    build_ed25519(kid, d, Some(&x))
                }
            }
        };
        read().map_err(|problem| {
            let key = KeyRef {
                index,
                kid: v.get("kid").and_then(Value::as_str).map(str::to_string),
            };
            KeyError::jwk(&key, problem)
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The first segment of every token this key signs: the base64url
    /// JSON header `{"alg","kid","typ":"JWT"}`, encoded once.
    pub fn jws_header(&self) -> &str {
        &self.jws_header
    }

    /// Algorithm and (for RSA) modulus size.
    pub fn params(&self) -> KeyParams {
        self.params
    }

    /// The one algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.params.alg
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> String {
        self.public.thumbprint()
    }

    /// Whether the `kid` is the RFC 7638 thumbprint (always, except for some
    /// adopted keys; see [`SigningKey::from_private_jwk`]).
    pub fn kid_is_thumbprint(&self) -> bool {
        self.public.kid == self.thumbprint()
    }

    /// The public half, for verification and the public JWK Set.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The public JWK: `kty`, `kid`, `use: "sig"`, `alg` and the public
    /// members. Never any private member.
    pub fn public_jwk(&self) -> Value {
        self.public.public_jwk()
    }

    /// The private JWK: the public JWK plus `d` (and `p q dp dq qi` for RSA).
    ///
    /// The returned `Value` is an ordinary JSON value: it is not redacted and
    /// not wiped on drop. Prefer [`private_jwks_json`] for writing key sets.
    pub fn private_jwk(&self) -> Value {
        serde_json::to_value(JwkOut::private(self)).expect("a JWK always serializes")
    }

    /// The private key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`),
    /// for SPEC's `active.pem`.
    pub fn pkcs8_pem(&self) -> SecretString {
        let der = self.pkcs8.expose();
        let mut b64 = Zeroizing::new(vec![0u8; der.len().div_ceil(3) * 4]);
        let written = STANDARD
            .encode_slice(der, &mut b64[..])
            .expect("buffer sized for the encoding");
        let body = &b64[..written];
        let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
        pem.push_str("-----BEGIN PRIVATE KEY-----\n");
        for line in body.chunks(64) {
            // base64 output is ASCII.
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Secret::new(pem)
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &SecretBytes {
        &self.pkcs8
    }

    /// Signs `message` with the cached key pair. Returns the JWS signature
    /// bytes: RSA signature, Ed25519 signature, or ECDSA fixed-size `r||s`
    /// (not DER).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // aws-lc ignores this argument and draws ECDSA nonces / PSS salts
        // from its own DRBG (see the module docs).
        let unused_rng = aws_lc_rs::rand::SystemRandom::new();
        let fail = |_| KeyError::Sign {
            kid: self.kid().to_string(),
        };
        match &self.signer {
            CachedSigner::Rsa { pair, encoding } => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &unused_rng, message, &mut sig)
                    .map_err(fail)?;
                Ok(sig)
            }
            CachedSigner::Ecdsa { pair, curve } => {
                let der = pair.sign(&unused_rng, message).map_err(fail)?;
                curve
                    .jws_signature(der.as_ref())
                    .ok_or_else(|| fail(aws_lc_rs::error::Unspecified))
            }
            CachedSigner::Ed25519(pair) => {
                Ok(pair.try_sign(message).map_err(fail)?.as_ref().to_vec())
            }
        }
    }
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

// === building keys ===

fn assemble(
    kid: Option<String>,
    alg: Algorithm,
    rsa_bits: Option<u32>,
    public: PublicParts,
    private: PrivateParts,
    pkcs8: SecretBytes,
    signer: CachedSigner,
) -> Result<SigningKey, JwkProblem> {
    let kid = kid.unwrap_or_else(|| public.thumbprint());
    let jws_header = encode_jws_header(alg, &kid);
    Ok(SigningKey {
        public: VerifyingKey::new(kid, alg, public)?,
        params: KeyParams { alg, rsa_bits },
        private,
        pkcs8,
        signer,
        jws_header,
    })
}

/// `base64url({"alg":<alg>,"kid":<kid>,"typ":"JWT"})`: the same for every
/// token a key signs, so it is encoded once per key.
fn encode_jws_header(alg: Algorithm, kid: &str) -> String {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: &'static str,
        kid: &'a str,
        typ: &'static str,
    }
    let header = Header {
        alg: alg.as_str(),
        kid,
        typ: super::token::TOKEN_TYPE,
    };
    let json = serde_json::to_vec(&header).expect("a header of strings serializes");
    b64(&json)
}

fn rsa_bits_supported(n: &[u8]) -> Result<u32, JwkProblem> {
    let bits = bit_len(n);
    match u32::try_from(bits) {
        Ok(b) if RSA_KEY_SIZES.contains(&b) => Ok(b),
        _ => Err(JwkProblem::UnsupportedRsaSize {
            bits,
            supported: "2048, 3072 or 4096 bits",
        }),
    }
}

fn read_rsa(
    r: &JwkReader<'_>,
    kid: Option<String>,
    alg: Algorithm,
    public: PublicParts,
) -> Result<SigningKey, JwkProblem> {
    let PublicParts::Rsa { n, e } = &public else {
        unreachable!("read_rsa is only called for RSA keys");
    };
    if r.has("oth") {
        return Err(JwkProblem::MultiPrimeRsa);
    }
    rsa_bits_supported(n)?;
    let d = r.secret_uint("d")?;
    let p = r.secret_uint("p")?;
    let q = r.secret_uint("q")?;
    let dp = r.secret_uint("dp")?;
    let dq = r.secret_uint("dq")?;
    let qi = r.secret_uint("qi")?;

    let n_len = n.len();
    let prec = u32::try_from(n_len * 8).map_err(|_| JwkProblem::Inconsistent("n is too long"))?;
    let too_long = |m: &'static str| move |_| JwkProblem::Inconsistent(m);
    let n_int = BoxedUint::from_be_slice(n, prec).map_err(too_long("n is malformed"))?;
    let e_prec =
        u32::try_from(e.len() * 8).map_err(|_| JwkProblem::Inconsistent("e is too long"))?;
    let e_int = BoxedUint::from_be_slice(e, e_prec).map_err(too_long("e is malformed"))?;
    let d_int =
        BoxedUint::from_be_slice(d.expose(), prec).map_err(too_long("d is longer than n"))?;
    let p_int =
        BoxedUint::from_be_slice(p.expose(), prec).map_err(too_long("p is longer than n"))?;
    let q_int =
        BoxedUint::from_be_slice(q.expose(), prec).map_err(too_long("q is longer than n"))?;
    let key = rsa::PrivateKey::from_components(n_int, e_int, d_int, vec![p_int, q_int]).map_err(
        |err| match err {
            rsa::Error::InvalidModulus => JwkProblem::Inconsistent("n is not p*q"),
            rsa::Error::InvalidExponent => JwkProblem::Inconsistent("d does not match e, p and q"),
            rsa::Error::InvalidPrime => JwkProblem::Inconsistent("p or q is not a valid factor"),
            rsa::Error::PublicExponentTooSmall | rsa::Error::PublicExponentTooLarge => {
                JwkProblem::Rejected("unsupported public exponent e")
            }
            _ => JwkProblem::Rejected("invalid RSA key"),
        },
    )?;

    // The CRT values must be the ones that follow from d, p and q.
    let same = |given: &SecretBytes, computed: Option<SecretBytes>| {
        computed.is_some_and(|c| {
            aws_lc_rs::constant_time::verify_slices_are_equal(given.expose(), c.expose()).is_ok()
        })
    };
    if !same(&dp, key.dp().map(secret_uint)) {
        return Err(JwkProblem::Inconsistent("dp is not d mod (p-1)"));
    }
    if !same(&dq, key.dq().map(secret_uint)) {
        return Err(JwkProblem::Inconsistent("dq is not d mod (q-1)"));
    }
    if !same(&qi, key.crt_coefficient().as_ref().map(secret_uint)) {
        return Err(JwkProblem::Inconsistent("qi is not q^-1 mod p"));
    }

    let private = PrivateParts::Rsa {
        d,
        p,
        q,
        dp,
        dq,
        qi,
    };
    finish_rsa(kid, alg, public, private, &key)
}

/// Builds a `SigningKey` from an `rsa` key the `rsa` crate generated (and so
/// already validated).
fn build_rsa_from_key(
    kid: Option<String>,
    alg: Algorithm,
    key: &rsa::PrivateKey,
) -> Result<SigningKey, JwkProblem> {
    let missing = JwkProblem::Rejected("RSA key lacks CRT values");
    let public = PublicParts::Rsa {
        n: key.n_bytes().into_vec(),
        e: key.e_bytes().into_vec(),
    };
    let private = PrivateParts::Rsa {
        d: secret_uint(key.d()),
        p: secret_uint(&key.primes()[0]),
        q: secret_uint(&key.primes()[1]),
        dp: key.dp().map(secret_uint).ok_or(missing.clone())?,
        dq: key.dq().map(secret_uint).ok_or(missing.clone())?,
        qi: key
            .crt_coefficient()
            .as_ref()
            .map(secret_uint)
            .ok_or(missing)?,
    };
    finish_rsa(kid, alg, public, private, key)
}

fn finish_rsa(
    kid: Option<String>,
    alg: Algorithm,
    public: PublicParts,
    private: PrivateParts,
    key: &rsa::PrivateKey,
) -> Result<SigningKey, JwkProblem> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let PublicParts::Rsa { n, .. } = &public else {
        unreachable!("finish_rsa is only called for RSA keys");
    };
    let bits = rsa_bits_supported(n)?;
    let der = key
        .to_pkcs8_der()
        .map_err(|_| JwkProblem::Rejected("cannot encode the RSA key as PKCS#8"))?;
    let pkcs8 = Secret::new(der.as_bytes().to_vec());
    let pair = RsaKeyPair::from_pkcs8(pkcs8.expose())
        .map_err(|e| JwkProblem::Rejected(e.description_()))?;
    let signer = CachedSigner::Rsa {
        pair,
        encoding: rsa_encoding(alg),
    };
    assemble(kid, alg, Some(bits), public, private, pkcs8, signer)
}

fn build_ec(
    kid: Option<String>,
    alg: Algorithm,
    curve: Curve,
    public: PublicParts,
    d: SecretBytes,
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
    let pkcs8 = Secret::new(doc.as_ref().to_vec());
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

fn build_ed25519(
    kid: Option<String>,
    seed: SecretBytes,
    x: Option<&[u8]>,
) -> Result<SigningKey, JwkProblem> {
    let pair = match x {
        Some(x) => Ed25519KeyPair::from_seed_and_public_key(seed.expose(), x)
            .map_err(|_| JwkProblem::Inconsistent("x is not the public key of d"))?,
        None => Ed25519KeyPair::from_seed_unchecked(seed.expose())
            .map_err(|e| JwkProblem::Rejected(e.description_()))?,
    };
    let public = PublicParts::Ed25519 {
        x: pair.public_key().as_ref().to_vec(),
    };
    let doc = pair
        .to_pkcs8v1()
        .map_err(|_| JwkProblem::Rejected("cannot encode the Ed25519 key as PKCS#8"))?;
    let pkcs8 = Secret::new(doc.as_ref().to_vec());
    let private = PrivateParts::Scalar { d: seed };
    assemble(
        kid,
        Algorithm::EdDSA,
        None,
        public,
        private,
        pkcs8,
        CachedSigner::Ed25519(pair),
    )
}

// === JWK output ===

/// A base64url string of private bytes: serialized as a JSON string, wiped on drop.
struct SecretB64(Zeroizing<String>);

impl Serialize for SecretB64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One JWK as written out, members in a readable order.
#[derive(Serialize)]
struct JwkOut<'a> {
    kty: &'static str,
    kid: &'a str,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<SecretB64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<SecretB64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<SecretB64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dp: Option<SecretB64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dq: Option<SecretB64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qi: Option<SecretB64>,
}

impl<'a> JwkOut<'a> {
    fn public(key: &'a VerifyingKey) -> Self {
        let mut out = JwkOut {
            kty: "",
            kid: &key.kid,
            use_: "sig",
            alg: key.alg.as_str(),
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
        };
        match &key.public {
            PublicParts::Rsa { n, e } => {
                out.kty = "RSA";
                out.n = Some(b64(n));
                out.e = Some(b64(e));
            }
            PublicParts::Ec { curve, x, y } => {
                out.kty = "EC";
                out.crv = Some(curve.name());
                out.x = Some(b64(x));
                out.y = Some(b64(y));
            }
            PublicParts::Ed25519 { x } => {
                out.kty = "OKP";
                out.crv = Some("Ed25519");
                out.x = Some(b64(x));
            }
        }
        out
    }

    fn private(key: &'a SigningKey) -> Self {
        let mut out = JwkOut::public(&key.public);
        let s = |b: &SecretBytes| Some(SecretB64(b64_secret(b)));
        match &key.private {
            PrivateParts::Rsa {
                d,
                p,
                q,
                dp,
                dq,
                qi,
            } => {
                out.d = s(d);
                out.p = s(p);
                out.q = s(q);
                out.dp = s(dp);
                out.dq = s(dq);
                out.qi = s(qi);
            }
            PrivateParts::Scalar { d } => out.d = s(d),
        }
        out
    }
}

#[derive(Serialize)]
struct JwksOut<'a> {
    keys: Vec<JwkOut<'a>>,
}

// === JWK Sets ===

/// Serializes the private JWK Set `{"keys":[...]}` of `keys`, in the given
/// order (the operator keeps newest first). This is SPEC's `jwks.json`,
/// readable by node-jose `JWK.asKeyStore`.
///
/// Works with `&[SigningKey]`, `vec_of_refs.iter().copied()` or
/// `arcs.iter().map(Arc::as_ref)`. The bytes are wrapped in a [`Secret`].
pub fn private_jwks_json<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> SecretBytes {
    let set = JwksOut {
        keys: keys.into_iter().map(JwkOut::private).collect(),
    };
    // Reserve generously so the buffer is not reallocated (leaving copies) while writing.
    let mut out = Vec::with_capacity(set.keys.len() * 4096 + 16);
    serde_json::to_writer(&mut out, &set).expect("a JWK Set always serializes");
    Secret::new(out)
}

/// Serializes the public JWK Set `{"keys":[...]}` of `keys`, in the given
/// order: SPEC's `jwks.public.json` and what the HTTP endpoint serves.
///
/// Takes [`VerifyingKey`]s: pass `signing_keys.iter().map(SigningKey::verifying_key)`.
pub fn public_jwks_json<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> Vec<u8> {
    let set = JwksOut {
        keys: keys.into_iter().map(JwkOut::public).collect(),
    };
    serde_json::to_vec(&set).expect("a JWK Set always serializes")
}

fn jwks_array(bytes: &[u8]) -> Result<Vec<Value>, KeyError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| KeyError::InvalidJwkSet {
        // serde_json's message gives line/column, never the content.
        reason: format!("not JSON: {e}"),
    })?;
    match doc {
        Value::Object(mut obj) => match obj.remove("keys") {
            Some(Value::Array(keys)) => Ok(keys),
            Some(_) => Err(KeyError::InvalidJwkSet {
                reason: "member `keys` is not an array".into(),
            }),
            None => Err(KeyError::InvalidJwkSet {
                reason: "missing member `keys`".into(),
            }),
        },
        _ => Err(KeyError::InvalidJwkSet {
            reason: "not a JSON object".into(),
        }),
    }
}

/// Parses a private JWK Set (`{"keys":[...]}`), strictly: every key must
/// parse (see [`SigningKey::from_private_jwk`]), kids must be unique, and no
/// key material may appear twice. The first failure is returned, naming the
/// key by index and `kid`; a key is never silently dropped. Order is kept.
///
/// The parsed JSON (which holds private members) is wiped-on-drop only as far
/// as `serde_json` allows: string buffers are freed normally.
pub fn parse_private_jwks(bytes: &[u8]) -> Result<Vec<SigningKey>, KeyError> {
    let keys = jwks_array(bytes)?;
    let mut out = Vec::with_capacity(keys.len());
    let mut seen = Seen::default();
    for (i, v) in keys.iter().enumerate() {
        let key = SigningKey::from_private_jwk_at(v, Some(i))?;
        seen.check(i, key.verifying_key())?;
        out.push(key);
    }
    Ok(out)
}

/// Parses a public JWK Set. Same rules as [`parse_private_jwks`] for
/// uniqueness; each key as in [`VerifyingKey::from_public_jwk`].
pub fn parse_public_jwks(bytes: &[u8]) -> Result<Vec<VerifyingKey>, KeyError> {
    let keys = jwks_array(bytes)?;
    let mut out = Vec::with_capacity(keys.len());
    let mut seen = Seen::default();
    for (i, v) in keys.iter().enumerate() {
        let key = VerifyingKey::from_public_jwk_at(v, Some(i))?;
        seen.check(i, &key)?;
        out.push(key);
    }
    Ok(out)
}

/// Kids and thumbprints of the keys parsed so far in one set.
#[derive(Default)]
struct Seen {
    /// `(kid, thumbprint)` per earlier key, by index.
    keys: Vec<(String, String)>,
}

impl Seen {
    /// `key` (at `index`) must not share key material (thumbprint) or a kid
    /// with an earlier key. A kid equal to an earlier key's thumbprint, or a
    /// thumbprint equal to an earlier kid, counts as a shared kid: either
    /// would let one kid name two different keys.
    fn check(&mut self, index: usize, key: &VerifyingKey) -> Result<(), KeyError> {
        let thumbprint = key.thumbprint();
        let problem = self.keys.iter().enumerate().find_map(|(first, (kid, tp))| {
            if *tp == thumbprint {
                Some(JwkProblem::DuplicateKey { first })
            } else if *kid == key.kid || *tp == key.kid || *kid == thumbprint {
                Some(JwkProblem::DuplicateKid { first })
            } else {
                None
            }
        });
        if let Some(problem) = problem {
            let key_ref = KeyRef {
                index: Some(index),
                kid: Some(key.kid.clone()),
            };
            return Err(KeyError::jwk(&key_ref, problem));
        }
        self.keys.push((key.kid.clone(), thumbprint));
        Ok(())
    }
}

/// The RFC 7638 thumbprint of a public (or private) JWK, from its required
/// members only. For checking kids and for the RFC's known-answer test.
pub fn jwk_thumbprint(v: &Value) -> Result<String, KeyError> {
    let read = || -> Result<String, JwkProblem> {
        let r = JwkReader::new(v)?;
        let kind = r.kind()?;
        Ok(PublicParts::read(&r, kind)?.thumbprint())
    };
    read().map_err(|problem| {
        KeyError::jwk(
            &KeyRef {
                index: None,
                kid: v.get("kid").and_then(Value::as_str).map(str::to_string),
            },
            problem,
        )
    })
}

/// Compile-time check: keys can be shared across threads behind an `Arc`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SigningKey>();
    assert_send_sync::<VerifyingKey>();
};

#[cfg(test)]
#[path = "material_tests.rs"]
mod tests;
