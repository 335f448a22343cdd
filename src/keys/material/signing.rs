//! What a [`SigningKey`] does: generation, strict parsing of a private JWK,
//! PEM/DER output, and signing with the aws-lc key pair parsed once. It
//! dispatches to the per-family builders (`rsa`, `ec`, `okp`), which import
//! only the key type (`key`) beneath them.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::CryptoRng;
use serde_json::Value;
use zeroize::Zeroizing;

use super::ec::build_ec;
use super::error::{JwkProblem, KeyError, KeyRef};
use super::key::{CachedSigner, PrivateParts, RemoteSigner, SigningKey};
use super::okp::build_ed25519;
use super::params::Curve;
use super::read::JwkReader;
use super::rsa::{build_rsa_from_key, read_rsa};
use super::verifying::{PublicParts, VerifyingKey};
use crate::keys::alg::{Algorithm, KeyParams, RSA_KEY_SIZES};
use crate::keys::redacted::{Redacted, RedactedBytes, RedactedString};

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
                build_ed25519(None, Redacted::new(seed.to_vec()), None)
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

    pub(super) fn from_private_jwk_at(
        v: &Value,
        index: Option<usize>,
    ) -> Result<SigningKey, KeyError> {
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

    /// Where the token layer keeps this key's encoded JWS header, so it is
    /// encoded once per key (see [`SigningKey::jws_header`]).
    pub(crate) fn jws_header_slot(&self) -> &OnceLock<String> {
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

    /// The private key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`),
    /// for SPEC's `active.pem`.
    pub fn pkcs8_pem(&self) -> RedactedString {
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
        Redacted::new(pem)
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &RedactedBytes {
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
            CachedSigner::Remote(remote) => {
                remote.sign(message).map_err(|message| KeyError::Provider {
                    kid: self.kid().to_string(),
                    message,
                })
            }
        }
    }

    /// A key whose private half a key provider holds: `public` is its
    /// public key as read back from the provider (kid = the RFC 7638
    /// thumbprint for generated keys), `signer` signs through the provider.
    /// It has no private members, no PKCS#8 form (`active.pem` is not
    /// written for it), and its private JWK is its public JWK.
    pub fn remote(params: KeyParams, public: VerifyingKey, signer: Arc<dyn RemoteSigner>) -> Self {
        SigningKey {
            params,
            public,
            private: PrivateParts::Remote,
            pkcs8: RedactedBytes::new(Vec::new()),
            signer: CachedSigner::Remote(signer),
            jws_header: OnceLock::new(),
        }
    }

    /// The provider's reference of a provider-held key (`pkcs11:` URI, KMS
    /// ARN); `None` for a key held here.
    pub fn key_reference(&self) -> Option<&str> {
        match &self.signer {
            CachedSigner::Remote(remote) => Some(remote.reference()),
            _ => None,
        }
    }

    /// Whether a signature with this key is a call into a key provider
    /// (blocking FFI or a network round trip) rather than CPU work here.
    pub fn is_remote(&self) -> bool {
        matches!(self.signer, CachedSigner::Remote(_))
    }
}

/// Runs `work`, which signs with `key`, where a signature belongs on an
/// async runtime: inline for a key held here (tens of microseconds of CPU,
/// cheaper than a thread hand-off), on tokio's blocking pool for a
/// provider-held key, whose call may wait seconds on a token or a KMS and
/// must not hold an async worker meanwhile. Every async caller that signs
/// (the token endpoint, the signer's Sign) goes through here, so every
/// provider gets the same treatment.
///
/// The error is for a blocking task that did not finish (it panicked or the
/// runtime is shutting down).
pub async fn sign_off_workers<T, F>(key: &Arc<SigningKey>, work: F) -> Result<T, KeyError>
where
    T: Send + 'static,
    F: FnOnce(&SigningKey) -> T + Send + 'static,
{
    if !key.is_remote() {
        return Ok(work(key));
    }
    let held = key.clone();
    tokio::task::spawn_blocking(move || work(&held))
        .await
        .map_err(|e| KeyError::Provider {
            kid: key.kid().to_string(),
            message: format!("the signing task did not finish: {e}"),
        })
}
