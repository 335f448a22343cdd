//! Ed25519 (OKP) keys: the builder from a seed, checking `x` when given.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};

use super::error::JwkProblem;
use super::key::{CachedSigner, PrivateParts, SigningKey, assemble};
use super::verifying::PublicParts;
use crate::keys::alg::Algorithm;
use crate::keys::redacted::{Redacted, RedactedBytes};

pub(super) fn build_ed25519(
    kid: Option<String>,
    seed: RedactedBytes,
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
    let pkcs8 = Redacted::new(doc.as_ref().to_vec());
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
