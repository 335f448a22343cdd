//! What kube-apiserver requires of keys, and how it names them.
//!
//! - [`kube_alg_ok`]: kube-apiserver accepts only RS256, ES256, ES384 and
//!   ES512 in a signed token's header, and an Ed25519 key in FetchKeys
//!   breaks its `/openid/v1/jwks`. Of the operator's algorithms that leaves
//!   RS256, ES256 and ES384.
//! - [`spki_der`]: FetchKeys carries each public key as DER
//!   SubjectPublicKeyInfo.
//! - [`kube_key_id`]: the `kid` kube-apiserver itself derives for a key it
//!   signs with (`--service-account-signing-key-file`): the unpadded
//!   base64url SHA-256 of the key's DER SubjectPublicKeyInfo. It is *not*
//!   the RFC 7638 thumbprint the operator uses for its own keys; a key
//!   adopted from `sa.key` keeps it, so tokens issued before the switch keep
//!   verifying.
//! - [`import_pem_key`]: reads an `sa.key` (PKCS#1, SEC1 or PKCS#8 PEM) into
//!   a [`SigningKey`] under that kid.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use serde_json::json;
use zeroize::Zeroizing;

use crate::api;
use crate::keys::{Algorithm, SigningKey};

/// The shortest token lifetime kube-apiserver accepts from a signer's
/// Metadata (`max_token_expiration_seconds`).
pub const MIN_MAX_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Whether kube-apiserver can use keys of this algorithm.
pub fn kube_alg_ok(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::ES384)
}

/// Why a policy cannot drive kube-apiserver's signer.
pub fn check_policy(alg: Algorithm, max_token_ttl: Duration) -> Result<(), String> {
    if !kube_alg_ok(alg) {
        return Err(format!(
            "spec.algorithm {alg} cannot sign service-account tokens: kube-apiserver accepts RS256, ES256 and ES384 (of the algorithms jwks-operator issues)"
        ));
    }
    if max_token_ttl < MIN_MAX_TOKEN_TTL {
        return Err(format!(
            "spec.maxTokenTTL {} is under 600s: kube-apiserver refuses a signer whose longest token lifetime is shorter than 10 minutes",
            api::fmt_duration(max_token_ttl)
        ));
    }
    Ok(())
}

/// The DER SubjectPublicKeyInfo of `key`'s public half, as Go's
/// `x509.MarshalPKIXPublicKey` writes it. `None` for keys kube-apiserver
/// cannot use (see [`kube_alg_ok`]).
pub fn spki_der(key: &SigningKey) -> Option<Vec<u8>> {
    if key.key_reference().is_some() {
        // A provider holds the private key: build it from the public JWK.
        return public_spki_der(key);
    }
    let pkcs8 = key.pkcs8_der().expose();
    let der = match key.alg() {
        Algorithm::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).ok()?;
            pair.public_key().as_der().ok()?.as_ref().to_vec()
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let alg = if key.alg() == Algorithm::ES256 {
                &lc::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &lc::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8).ok()?;
            pair.public_key().as_der().ok()?.as_ref().to_vec()
        }
        _ => return None,
    };
    Some(der)
}

/// DER SubjectPublicKeyInfo from a key's public JWK (for keys without a
/// PKCS#8 form: those a key provider holds).
fn public_spki_der(key: &SigningKey) -> Option<Vec<u8>> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    fn integer(be: &[u8]) -> Vec<u8> {
        let be: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
        let mut content = Vec::with_capacity(be.len() + 1);
        if be.first().is_none_or(|b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend(be);
        tlv(0x02, &content)
    }
    let jwk = key.public_jwk();
    let member = |m: &str| URL_SAFE_NO_PAD.decode(jwk.get(m)?.as_str()?).ok();
    // OIDs: id-ecPublicKey, prime256v1, secp384r1, rsaEncryption.
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let (algorithm, key_bits) = match key.alg() {
        Algorithm::RS256 => {
            let mut rsa_key = integer(&member("n")?);
            rsa_key.extend(integer(&member("e")?));
            (RSA.to_vec(), tlv(0x30, &rsa_key))
        }
        alg @ (Algorithm::ES256 | Algorithm::ES384) => {
            let curve = if alg == Algorithm::ES256 { P256 } else { P384 };
            let mut point = vec![0x04];
            point.extend(member("x")?);
            point.extend(member("y")?);
            ([EC_PUBLIC_KEY, curve].concat(), point)
        }
        _ => return None,
    };
    let mut bits = vec![0x00];
    bits.extend(key_bits);
    let mut spki = tlv(0x30, &algorithm);
    spki.extend(tlv(0x03, &bits));
    Some(tlv(0x30, &spki))
}

/// The kid kube-apiserver derives for a public key: unpadded base64url of
/// the SHA-256 of its DER SubjectPublicKeyInfo.
pub fn kube_key_id(spki: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A PEM private key that cannot be adopted. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(String);

fn err(msg: impl Into<String>) -> ImportError {
    ImportError(msg.into())
}

/// The first PEM block of `text`: its label and decoded body.
fn pem_block(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), ImportError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        })
        .ok_or_else(|| err("no PEM block (-----BEGIN ...-----) found"))?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for l in lines {
        if l == end {
            ended = true;
            break;
        }
        if l.contains(':') {
            return Err(err("encrypted or annotated PEM keys are not supported"));
        }
        body.push_str(l);
    }
    if !ended {
        return Err(err(format!("the PEM block has no {end} line")));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| err("the PEM body is not valid base64"))?;
    Ok((label, Zeroizing::new(der)))
}

fn b64(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    URL_SAFE_NO_PAD.encode(&bytes[start..])
}

fn b64_uint(x: &rsa::BoxedUint) -> Zeroizing<String> {
    Zeroizing::new(b64(&Zeroizing::new(x.to_be_bytes().into_vec())))
}

/// Reads a PEM private key as kube-apiserver's `--service-account-signing-key-file`
/// accepts it (`RSA PRIVATE KEY`, `EC PRIVATE KEY` or `PRIVATE KEY`; RSA
/// 2048/3072/4096 bits, P-256 or P-384) into a [`SigningKey`] whose kid is
/// the one kube-apiserver put in the tokens it signed with it
/// ([`kube_key_id`]). RSA keys sign RS256, P-256 ES256, P-384 ES384.
pub fn import_pem_key(pem: &str) -> Result<SigningKey, ImportError> {
    let (label, der) = pem_block(pem)?;
    let jwk = match label.as_str() {
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            let key = rsa::PrivateKey::from_pkcs1_der(&der)
                .map_err(|_| err("not a valid PKCS#1 RSA private key"))?;
            rsa_jwk(&key)?
        }
        "EC PRIVATE KEY" => ec_jwk_sec1(&der)?,
        "PRIVATE KEY" => {
            use rsa::pkcs8::DecodePrivateKey as _;
            match rsa::PrivateKey::from_pkcs8_der(&der) {
                Ok(key) => rsa_jwk(&key)?,
                Err(_) => ec_jwk_pkcs8(&der)?,
            }
        }
        other => {
            return Err(err(format!(
                "unsupported PEM block {other:?} (expected RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)"
            )));
        }
    };
    // Parse once without a kid to learn the public key, then fix the kid.
    let mut jwk = jwk;
    let probe = SigningKey::from_private_jwk(&jwk).map_err(|e| err(e.to_string()))?;
    let spki = spki_der(&probe).ok_or_else(|| err("the key cannot be used by kube-apiserver"))?;
    jwk["kid"] = json!(kube_key_id(&spki));
    let key = SigningKey::from_private_jwk(&jwk).map_err(|e| err(e.to_string()));
    // The JSON value held private members in plain memory: overwrite them.
    if let Some(obj) = jwk.as_object_mut() {
        for (_, v) in obj.iter_mut() {
            if let serde_json::Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
    key
}

fn rsa_jwk(key: &rsa::PrivateKey) -> Result<serde_json::Value, ImportError> {
    let missing = || err("the RSA key lacks CRT values");
    if key.primes().len() != 2 {
        return Err(err("multi-prime RSA keys are not supported"));
    }
    Ok(json!({
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "n": b64(&key.n_bytes()),
        "e": b64(&key.e_bytes()),
        "d": b64_uint(key.d()).as_str(),
        "p": b64_uint(&key.primes()[0]).as_str(),
        "q": b64_uint(&key.primes()[1]).as_str(),
        "dp": b64_uint(key.dp().ok_or_else(missing)?).as_str(),
        "dq": b64_uint(key.dq().ok_or_else(missing)?).as_str(),
        "qi": b64_uint(key.crt_coefficient().as_ref().ok_or_else(missing)?).as_str(),
    }))
}

fn ec_jwk(
    crv: &str,
    alg: &str,
    d: &[u8],
    point: &[u8],
    n: usize,
) -> Result<serde_json::Value, ImportError> {
    if point.len() != 1 + 2 * n || point[0] != 4 {
        return Err(err("unexpected EC public point encoding"));
    }
    Ok(json!({
        "kty": "EC",
        "crv": crv,
        "alg": alg,
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..1 + n]),
        "y": URL_SAFE_NO_PAD.encode(&point[1 + n..]),
        "d": Zeroizing::new(URL_SAFE_NO_PAD.encode(d)).as_str(),
    }))
}

fn ec_jwk_sec1(der: &[u8]) -> Result<serde_json::Value, ImportError> {
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        let point = k.public_key().to_sec1_bytes();
        return ec_jwk("P-256", "ES256", &k.to_bytes(), &point, 32);
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        let point = k.public_key().to_sec1_bytes();
        return ec_jwk("P-384", "ES384", &k.to_bytes(), &point, 48);
    }
    Err(err("not a P-256 or P-384 EC private key"))
}

fn ec_jwk_pkcs8(der: &[u8]) -> Result<serde_json::Value, ImportError> {
    use p256::pkcs8::DecodePrivateKey as _;
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        let point = k.public_key().to_sec1_bytes();
        return ec_jwk("P-256", "ES256", &k.to_bytes(), &point, 32);
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        let point = k.public_key().to_sec1_bytes();
        return ec_jwk("P-384", "ES384", &k.to_bytes(), &point, 48);
    }
    Err(err(
        "not an RSA, P-256 or P-384 PKCS#8 private key (Ed25519 keys cannot sign for kube-apiserver)",
    ))
}
