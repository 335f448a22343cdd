//! Writing JWKs and JWK Sets: public members always, private members only
//! into buffers that are wiped on drop.

use serde::Serialize;
use serde::ser::Serializer;
use zeroize::Zeroizing;

use serde_json::Value;

use super::encoding::{b64, b64_secret};
use super::key::{PrivateParts, SigningKey};
use super::verifying::{PublicParts, VerifyingKey};
use crate::keys::redacted::{Redacted, RedactedBytes};

/// A base64url string of private bytes: serialized as a JSON string, wiped on drop.
pub(super) struct SecretB64(Zeroizing<String>);

impl Serialize for SecretB64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One JWK as written out, members in a readable order.
#[derive(Serialize)]
pub(super) struct JwkOut<'a> {
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
    pub(super) fn public(key: &'a VerifyingKey) -> Self {
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

    pub(super) fn private(key: &'a SigningKey) -> Self {
        let mut out = JwkOut::public(&key.public);
        let s = |b: &RedactedBytes| Some(SecretB64(b64_secret(b)));
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
            // A provider-held key is written as its public JWK only.
            PrivateParts::Remote => {}
        }
        out
    }
}

impl VerifyingKey {
    /// The public JWK: `kty`, `kid`, `use: "sig"`, `alg` and the public
    /// members.
    pub fn public_jwk(&self) -> Value {
        serde_json::to_value(JwkOut::public(self)).expect("a JWK always serializes")
    }
}

impl SigningKey {
    /// The private JWK: the public JWK plus `d` (and `p q dp dq qi` for RSA).
    ///
    /// The returned `Value` is an ordinary JSON value: it is not redacted and
    /// not wiped on drop. Prefer [`private_jwks_json`] for writing key sets.
    pub fn private_jwk(&self) -> Value {
        serde_json::to_value(JwkOut::private(self)).expect("a JWK always serializes")
    }
}

#[derive(Serialize)]
pub(super) struct JwksOut<'a> {
    keys: Vec<JwkOut<'a>>,
}

/// Serializes the private JWK Set `{"keys":[...]}` of `keys`, in the given
/// order (the operator keeps newest first). This is SPEC's `jwks.json`,
/// readable by node-jose `JWK.asKeyStore`.
///
/// Works with `&[SigningKey]`, `vec_of_refs.iter().copied()` or
/// `arcs.iter().map(Arc::as_ref)`. The bytes are wrapped in a [`Redacted`].
pub fn private_jwks_json<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> RedactedBytes {
    let set = JwksOut {
        keys: keys.into_iter().map(JwkOut::private).collect(),
    };
    // Reserve generously so the buffer is not reallocated (leaving copies) while writing.
    let mut out = Vec::with_capacity(set.keys.len() * 4096 + 16);
    serde_json::to_writer(&mut out, &set).expect("a JWK Set always serializes");
    Redacted::new(out)
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
