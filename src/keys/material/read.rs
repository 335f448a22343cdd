//! Reading one JWK: members, base64url, lengths, usage, and which kind of
//! key (and algorithm) it holds. Problems become [`JwkProblem`]s.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::encoding::{MAX_KID_LEN, strip_leading_zeros};
use super::error::{JwkProblem, truncate};
use super::params::Curve;
use crate::keys::alg::Algorithm;
use crate::keys::redacted::{Redacted, RedactedBytes};

/// Reads members out of one JWK object, turning problems into [`JwkProblem`]s.
pub(super) struct JwkReader<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> JwkReader<'a> {
    pub(super) fn new(v: &'a Value) -> Result<Self, JwkProblem> {
        v.as_object()
            .map(|obj| JwkReader { obj })
            .ok_or(JwkProblem::NotAnObject)
    }

    pub(super) fn opt_str(&self, name: &'static str) -> Result<Option<&'a str>, JwkProblem> {
        match self.obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JwkProblem::NotAString(name)),
        }
    }

    pub(super) fn str(&self, name: &'static str) -> Result<&'a str, JwkProblem> {
        self.opt_str(name)?.ok_or(JwkProblem::MissingMember(name))
    }

    pub(super) fn bytes(&self, name: &'static str) -> Result<Vec<u8>, JwkProblem> {
        URL_SAFE_NO_PAD
            .decode(self.str(name)?)
            .map_err(|_| JwkProblem::NotBase64Url(name))
    }

    pub(super) fn secret(&self, name: &'static str) -> Result<RedactedBytes, JwkProblem> {
        self.bytes(name).map(Redacted::new)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.obj.contains_key(name)
    }

    /// A big unsigned integer member (RFC 7518 Base64urlUInt), leading zeros removed.
    pub(super) fn uint(&self, name: &'static str) -> Result<Vec<u8>, JwkProblem> {
        let v = strip_leading_zeros(self.bytes(name)?);
        if v == [0] || v.is_empty() {
            return Err(JwkProblem::Inconsistent("an RSA member is zero"));
        }
        Ok(v)
    }

    pub(super) fn secret_uint(&self, name: &'static str) -> Result<RedactedBytes, JwkProblem> {
        let v = Redacted::new(strip_leading_zeros(self.bytes(name)?));
        if v.expose().is_empty() || v.expose() == &[0] {
            return Err(JwkProblem::Inconsistent("an RSA member is zero"));
        }
        Ok(v)
    }

    pub(super) fn fixed(&self, name: &'static str, len: usize) -> Result<Vec<u8>, JwkProblem> {
        let v = self.bytes(name)?;
        check_len(name, v.len(), len)?;
        Ok(v)
    }

    pub(super) fn fixed_secret(
        &self,
        name: &'static str,
        len: usize,
    ) -> Result<RedactedBytes, JwkProblem> {
        let v = self.secret(name)?;
        check_len(name, v.expose().len(), len)?;
        Ok(v)
    }

    /// The `kid` member, if present; must be a non-empty string of sane length.
    pub(super) fn kid(&self) -> Result<Option<String>, JwkProblem> {
        match self.opt_str("kid")? {
            None => Ok(None),
            Some(k) if k.is_empty() || k.chars().count() > MAX_KID_LEN => Err(JwkProblem::BadKid),
            Some(k) => Ok(Some(k.to_string())),
        }
    }

    /// `use` must be `sig` when present; `key_ops`, when present, must allow `op`.
    pub(super) fn check_usage(&self, op: &str) -> Result<(), JwkProblem> {
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
    pub(super) fn kind(&self) -> Result<KeyKind, JwkProblem> {
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
    pub(super) fn kind_and_alg(&self) -> Result<(KeyKind, Algorithm), JwkProblem> {
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

pub(super) fn check_len(
    member: &'static str,
    actual: usize,
    expected: usize,
) -> Result<(), JwkProblem> {
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

/// The kind of key a JWK holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    Ec(Curve),
    Ed25519,
}

impl KeyKind {
    /// The algorithm assumed when a JWK has no `alg` (node-jose often omits it).
    pub(super) fn default_alg(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec(c) => c.alg(),
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    pub(super) fn fits(self, alg: Algorithm) -> bool {
        match self {
            KeyKind::Rsa => alg.is_rsa(),
            KeyKind::Ec(c) => alg == c.alg(),
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec(Curve::P256) => "EC P-256",
            KeyKind::Ec(Curve::P384) => "EC P-384",
            KeyKind::Ed25519 => "OKP Ed25519",
        }
    }
}
