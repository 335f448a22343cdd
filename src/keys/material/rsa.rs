//! RSA keys: reading a private JWK (every CRT value checked), building
//! from a generated key, and the aws-lc parameters per algorithm.

use aws_lc_rs::signature::{self as lc, RsaKeyPair};
use rsa::BoxedUint;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};

use super::encoding::{bit_len, secret_uint};
use super::error::JwkProblem;
use super::key::{CachedSigner, PrivateParts, SigningKey, assemble};
use super::read::JwkReader;
use super::verifying::PublicParts;
use crate::keys::alg::{Algorithm, RSA_KEY_SIZES};
use crate::keys::redacted::{Redacted, RedactedBytes};

pub(super) fn rsa_encoding(alg: Algorithm) -> &'static dyn lc::RsaEncoding {
    match alg {
        Algorithm::RS384 => &lc::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_SHA512,
        _ => &lc::RSA_PKCS1_SHA256,
    }
}

pub(super) fn rsa_bits_supported(n: &[u8]) -> Result<u32, JwkProblem> {
    let bits = bit_len(n);
    match u32::try_from(bits) {
        Ok(b) if RSA_KEY_SIZES.contains(&b) => Ok(b),
        _ => Err(JwkProblem::UnsupportedRsaSize {
            bits,
            supported: "2048, 3072 or 4096 bits",
        }),
    }
}

pub(super) fn read_rsa(
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
    let same = |given: &RedactedBytes, computed: Option<RedactedBytes>| {
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
pub(super) fn build_rsa_from_key(
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

pub(super) fn finish_rsa(
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
    let pkcs8 = Redacted::new(der.as_bytes().to_vec());
    let pair = RsaKeyPair::from_pkcs8(pkcs8.expose())
        .map_err(|e| JwkProblem::Rejected(e.description_()))?;
    let signer = CachedSigner::Rsa {
        pair,
        encoding: rsa_encoding(alg),
    };
    assemble(kid, alg, Some(bits), public, private, pkcs8, signer)
}
