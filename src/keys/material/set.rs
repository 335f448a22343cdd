//! Parsing JWK Sets strictly (every key parses, no kid or key material
//! twice) and RFC 7638 thumbprints of single JWKs.

use serde_json::Value;

use super::error::{JwkProblem, KeyError, KeyRef};
use super::key::SigningKey;
use super::read::JwkReader;
use super::verifying::{PublicParts, VerifyingKey};

pub(super) fn jwks_array(bytes: &[u8]) -> Result<Vec<Value>, KeyError> {
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
pub(super) struct Seen {
    /// `(kid, thumbprint)` per earlier key, by index.
    keys: Vec<(String, String)>,
}

impl Seen {
    /// `key` (at `index`) must not share key material (thumbprint) or a kid
    /// with an earlier key. A kid equal to an earlier key's thumbprint, or a
    /// thumbprint equal to an earlier kid, counts as a shared kid: either
    /// would let one kid name two different keys.
    pub(super) fn check(&mut self, index: usize, key: &VerifyingKey) -> Result<(), KeyError> {
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
