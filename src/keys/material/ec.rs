//! ECDSA keys on P-256 and P-384: the curves, generation, point checks and
//! the builder.

use aws_lc_rs::signature::EcdsaKeyPair;
use p256::elliptic_curve::Generate as _;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::error::JwkProblem;
use super::key::{CachedSigner, PrivateParts, SigningKey, assemble};
use super::params::Curve;
use super::verifying::PublicParts;
use crate::keys::alg::Algorithm;
use crate::keys::redacted::{Redacted, RedactedBytes};

impl Curve {
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
