// Over 600 lines on purpose: minting and verifying are two sides of one claim set
// (MintSettings/Expectations, TokenError, the JWS header); its tests are in
// token_tests.rs.

//! Minting and verifying JWTs with the key set. Pure: the caller passes `now`
//! and the `jti`; nothing here reads a clock or an OS random source.
//!
//! - [`build_claims`] turns a [`TokenRequest`] into claims (`iss`, `sub`,
//!   `aud`, `iat`, `nbf`, `exp`, `jti`), refusing a `ttl` above the policy's
//!   `maxTokenTTL`; [`mint`] signs them with a [`SigningKey`];
//!   [`mint_token`] does both.
//! - A [`Verifier`] is built once from the published keys and checks tokens
//!   against [`Expectations`] at a given `now`. Every failure is a
//!   [`TokenError`] with a short stable [`TokenError::code`] for the HTTP
//!   layer's `{"valid": false, "error": ...}`.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::material::{KeyError, SigningKey, VerifyingKey, parse_public_jwks};
use crate::keys::lifecycle;

/// The `typ` header of every minted token.
pub const TOKEN_TYPE: &str = "JWT";

/// Claims the operator sets itself; a request's extra `claims` may not contain them.
pub const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"];

/// Tokens longer than this are refused as malformed before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

// === errors ===

/// Why a token could not be minted or did not verify.
///
/// Messages carry no key material; values taken from an untrusted token
/// (`kid`, `alg`) are quoted and shortened.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments, or a header/payload that is not a JSON object.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header has no `kid`, so no key can be chosen.
    #[error("token header has no kid")]
    MissingKid,
    /// No published key has the header's `kid`.
    #[error("no published key has kid {0:?}")]
    UnknownKid(String),
    /// `none`, HMAC, an unknown algorithm, or an algorithm other than the one
    /// of the key named by `kid`.
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// The header has `crit` (no extensions are supported).
    #[error("critical header parameters are not supported")]
    UnsupportedHeader,
    /// The signature does not verify under the key named by `kid`.
    #[error("signature does not verify")]
    BadSignature,
    /// `now` is at or past `exp + leeway`.
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// The time of the check.
        now: i64,
        /// The leeway allowed.
        leeway: u64,
    },
    /// `nbf` or `iat` is later than `now + leeway`.
    #[error("token is not valid before {not_before} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The `nbf` (or future `iat`) claim.
        not_before: i64,
        /// The time of the check.
        now: i64,
        /// The leeway allowed.
        leeway: u64,
    },
    /// `iss` is absent or not the expected issuer.
    #[error("token issuer is not the expected one")]
    WrongIssuer,
    /// `aud` is absent or names none of the expected audiences.
    #[error("token audience is not an expected one")]
    WrongAudience,
    /// A claim that must be present (`exp`) is missing or not a number.
    #[error("claim `{0}` is missing or not a number")]
    MissingClaim(&'static str),
    /// Minting: the requested `ttl` exceeds `maxTokenTTL`.
    #[error("ttl of {requested}s exceeds maxTokenTTL of {max}s")]
    TtlTooLong {
        /// Requested lifetime in seconds.
        requested: u64,
        /// The policy's maximum in seconds.
        max: u64,
    },
    /// Minting: the `ttl` is shorter than one second.
    #[error("ttl must be at least 1s")]
    TtlTooShort,
    /// Minting: extra claims try to set a claim the operator sets.
    #[error("claim `{0}` is set by the operator and cannot be overridden")]
    ReservedClaim(String),
    /// Minting: the key failed to sign.
    #[error("cannot sign the token: {0}")]
    Signing(#[source] KeyError),
}

// === impl TokenError ===

impl TokenError {
    /// A short stable code for API responses (`{"valid":false,"error":code}`).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::MissingKid => "missing_kid",
            TokenError::UnknownKid(_) => "unknown_kid",
            TokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::TtlTooLong { .. } => "ttl_too_long",
            TokenError::TtlTooShort => "ttl_too_short",
            TokenError::ReservedClaim(_) => "reserved_claim",
            TokenError::Signing(_) => "signing_failed",
        }
    }

    /// Whether the caller's input is at fault (a 4xx), as opposed to the
    /// operator failing to sign (a 5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, TokenError::Signing(_))
    }
}

/// Shortens and keeps an untrusted string for an error message.
fn untrusted(s: &str) -> String {
    s.chars().take(64).collect()
}

// === minting ===

/// A token request, as the HTTP layer parsed it from
/// `{"sub"?, "aud"?, "ttl"?, "claims"?}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenRequest {
    /// `sub` claim; omitted when `None`.
    pub sub: Option<String>,
    /// `aud` claim; `None` means the policy's audiences.
    pub aud: Option<Vec<String>>,
    /// Lifetime; `None` means the policy's `maxTokenTTL`.
    pub ttl: Option<Duration>,
    /// Extra claims; may not contain [`RESERVED_CLAIMS`].
    pub claims: Map<String, Value>,
}

/// The policy's minting settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintSettings {
    /// `iss` of minted tokens (the policy's `issuer`), omitted when `None`.
    pub issuer: Option<String>,
    /// Default `aud` (the policy's `audiences`), omitted when empty.
    pub audiences: Vec<String>,
    /// Upper bound on a token's lifetime (the policy's `maxTokenTTL`), also the default.
    pub max_ttl: Duration,
}

/// The longest lifetime a token signed by `signer` may get: the policy's
/// `maxTokenTTL`, but never more than the TTL recorded for the signer, which
/// its retention was computed for. (A replica can see a raised TTL before
/// the key set the leader re-plans under it.) Without a signer, the policy's.
pub fn mint_ttl_cap<K>(
    spec_max_ttl: Duration,
    signer: Option<&lifecycle::ManagedKey<K>>,
) -> Duration {
    signer.map_or(spec_max_ttl, |k| spec_max_ttl.min(k.max_token_ttl))
}

/// The claims of one token, borrowed from the request and the policy:
/// what [`claims_for`] checks and assembles, serialized straight into the
/// payload without building a JSON map first.
///
/// Serializes as one JSON object: `iss`, `sub`, `aud` (each only when
/// present), `iat`, `nbf`, `exp`, `jti`, then the request's extra claims
/// (which never repeat these names: [`claims_for`] refuses that).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claims<'a> {
    /// `iss`: the policy's issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    /// `sub`: the request's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    /// `aud`: the request's audiences, or the policy's.
    #[serde(skip_serializing_if = "Audience::is_empty")]
    pub aud: Audience<'a>,
    /// `iat`: the minting time, whole seconds.
    pub iat: i64,
    /// `nbf`: equal to `iat`.
    pub nbf: i64,
    /// `exp`: `iat` plus the lifetime.
    pub exp: i64,
    /// `jti`: the token's id.
    pub jti: &'a str,
    /// The request's extra claims.
    #[serde(flatten)]
    pub extra: &'a Map<String, Value>,
}

/// The `aud` claim: a string for one audience, an array for several,
/// absent for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audience<'a>(pub &'a [String]);

impl Audience<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Audience<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl Claims<'_> {
    /// The claims as a JSON object (tests, and callers that want a map).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("claims serialize to a JSON object"),
        }
    }
}

/// Checks a token request against the policy and assembles the claims of
/// a token minted at `now` with id `jti`.
///
/// `iat` = `nbf` = `now` (whole seconds), `exp` = `iat + ttl`. The `ttl`
/// defaults to `max_ttl` and may not exceed it ([`TokenError::TtlTooLong`]);
/// sub-second parts are dropped. `aud` is a string for one audience, an
/// array for several, absent for none. Extra claims may not set any of
/// [`RESERVED_CLAIMS`].
pub fn claims_for<'a>(
    req: &'a TokenRequest,
    settings: &'a MintSettings,
    now: Timestamp,
    jti: &'a str,
) -> Result<Claims<'a>, TokenError> {
    let ttl = req.ttl.unwrap_or(settings.max_ttl);
    if ttl > settings.max_ttl {
        return Err(TokenError::TtlTooLong {
            requested: ttl.as_secs(),
            max: settings.max_ttl.as_secs(),
        });
    }
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    if ttl_secs < 1 {
        return Err(TokenError::TtlTooShort);
    }
    if let Some(name) = RESERVED_CLAIMS
        .iter()
        .find(|c| req.claims.contains_key(**c))
    {
        return Err(TokenError::ReservedClaim((*name).to_string()));
    }
    let iat = now.as_second();
    Ok(Claims {
        iss: settings.issuer.as_deref(),
        sub: req.sub.as_deref(),
        aud: Audience(req.aud.as_deref().unwrap_or(&settings.audiences)),
        iat,
        nbf: iat,
        exp: iat.saturating_add(ttl_secs),
        jti,
        extra: &req.claims,
    })
}

/// [`claims_for`] as a JSON object.
pub fn build_claims(
    req: &TokenRequest,
    settings: &MintSettings,
    now: Timestamp,
    jti: &str,
) -> Result<Map<String, Value>, TokenError> {
    Ok(claims_for(req, settings, now, jti)?.to_map())
}

// The JWS header is a token concern, so it is encoded here; the key only
// keeps the slot that caches it (material does not depend on tokens).
impl SigningKey {
    /// The first segment of every token this key signs: the base64url JSON
    /// header `{"alg","kid","typ":"JWT"}`. The same for every token a key
    /// signs, so it is encoded once per key and kept with it.
    pub fn jws_header(&self) -> &str {
        self.jws_header_slot()
            .get_or_init(|| encode_jws_header(self.alg(), self.kid()))
    }
}

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
        typ: TOKEN_TYPE,
    };
    let json = serde_json::to_vec(&header).expect("a header of strings serializes");
    URL_SAFE_NO_PAD.encode(json)
}

/// Signs `claims` with `key` as a compact JWS: header
/// `{"alg","kid","typ":"JWT"}` (the key's cached, already encoded
/// [`SigningKey::jws_header`]), base64url segments, the key's cached signer.
///
/// The serialization is done here rather than with `jsonwebtoken::encode`:
/// that function takes an `EncodingKey` and builds a signer from it through
/// its process-wide crypto provider on every call (for aws-lc: parse the RSA
/// DER / EC PKCS#8 per signature), and jsonwebtoken 11 has no way to pass a
/// pre-built signer. Keeping the parsed key pair is what makes RS256 signing
/// fast, and the compact form is only a few lines.
pub fn mint<C: Serialize + ?Sized>(key: &SigningKey, claims: &C) -> Result<String, TokenError> {
    let header = key.jws_header();
    let mut payload = Vec::with_capacity(512);
    serde_json::to_writer(&mut payload, claims).expect("claims serialize");
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 700);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes()).map_err(TokenError::Signing)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// A freshly minted token, as the token endpoint returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedToken {
    /// The compact JWS.
    pub token: String,
    /// The `kid` it was signed with.
    pub kid: String,
    /// Its `exp`.
    pub expires_at: Timestamp,
}

/// [`claims_for`] then [`mint`].
pub fn mint_token(
    key: &SigningKey,
    req: &TokenRequest,
    settings: &MintSettings,
    now: Timestamp,
    jti: &str,
) -> Result<MintedToken, TokenError> {
    let claims = claims_for(req, settings, now, jti)?;
    Ok(MintedToken {
        token: mint(key, &claims)?,
        kid: key.kid().to_string(),
        expires_at: Timestamp::from_second(claims.exp).unwrap_or(Timestamp::MAX),
    })
}

// === verification ===

/// What a verified token must satisfy besides its signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Required `iss`; `None` means `iss` is not checked.
    pub issuer: Option<String>,
    /// Acceptable audiences: the token's `aud` must name at least one. Empty
    /// means `aud` is not checked (a token with an `aud` is then accepted).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (the policy's `clockSkew`).
    pub leeway: Duration,
}

/// A token that verified.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    /// The key that signed it.
    pub kid: String,
    /// Its algorithm (the key's).
    pub alg: Algorithm,
    /// Its claims.
    pub claims: Map<String, Value>,
}

/// Verifies tokens against a fixed set of public keys, looked up by `kid`.
///
/// Built once per published key set; each key's aws-lc-rs public key is
/// parsed once (in [`VerifyingKey`]) and reused for every token. A token is
/// accepted only with the algorithm of the key its `kid` names: normally the
/// policy's algorithm, and during an algorithm change each key still
/// verifies its own tokens. `none`, HMAC and every other algorithm are
/// refused before any signature check.
pub struct Verifier {
    keys: HashMap<String, VerifyingKey>,
}

// === impl Verifier ===

impl Verifier {
    /// A verifier for these keys. A later key with an already seen `kid`
    /// replaces the earlier one (parsed sets never have duplicates).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> Self {
        let keys = keys
            .into_iter()
            .map(|key| (key.kid().to_string(), key.clone()))
            .collect();
        Verifier { keys }
    }

    /// A verifier for a public JWK Set document.
    pub fn from_public_jwks(bytes: &[u8]) -> Result<Self, KeyError> {
        Ok(Self::new(&parse_public_jwks(bytes)?))
    }

    /// The kids this verifier knows.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies `token` at time `now`, in this order: shape and header
    /// (`alg` must be the algorithm of the key named by `kid`), signature,
    /// `iss`, `aud`, then `exp` (required), `nbf` and `iat` with
    /// `expect.leeway`: valid iff `now < exp + leeway`,
    /// `nbf <= now + leeway` and `iat <= now + leeway`.
    ///
    /// Why not `jsonwebtoken::decode`: it was the first implementation, but
    /// it rebuilds the RSA public key from `n`/`e` on every call and decodes
    /// the claims twice, which cost a third of RS256 verification throughput
    /// (0.73x `openssl speed` against a 0.8x target; BENCHMARKS.md). Its time
    /// checks also read the system clock. The signature is now checked with
    /// the key parsed once, and the claim rules below are small; the tests
    /// keep jsonwebtoken as an oracle that must agree on every token.
    pub fn verify(
        &self,
        token: &str,
        expect: &Expectations,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenError> {
        let parts = split(token)?;
        let header = parts.header()?;
        // A disallowed `alg` (`none`, HMAC, ...) is reported as such whether
        // or not there is a `kid`; a header with neither is `missing_kid`.
        let alg = match header.get("alg") {
            None => None,
            Some(Value::String(alg)) => match alg.parse::<Algorithm>() {
                Ok(parsed) => Some((alg, parsed)),
                Err(_) => return Err(TokenError::AlgorithmNotAllowed(untrusted(alg))),
            },
            Some(_) => return Err(TokenError::Malformed("alg is not a string")),
        };
        if header.contains_key("crit") {
            return Err(TokenError::UnsupportedHeader);
        }
        let kid = match header.get("kid") {
            None => return Err(TokenError::MissingKid),
            Some(Value::String(kid)) => kid,
            Some(_) => return Err(TokenError::Malformed("kid is not a string")),
        };
        let (alg, token_alg) = alg.ok_or(TokenError::Malformed("alg is missing"))?;
        let key = self
            .keys
            .get(kid.as_str())
            .ok_or_else(|| TokenError::UnknownKid(untrusted(kid)))?;
        if token_alg != key.alg() {
            return Err(TokenError::AlgorithmNotAllowed(untrusted(alg)));
        }

        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        key.verify_signature(parts.signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;

        let claims = parts.claims()?;
        if let Some(issuer) = &expect.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(TokenError::WrongIssuer);
        }
        if !expect.audiences.is_empty() && !audience_matches(&claims, &expect.audiences) {
            return Err(TokenError::WrongAudience);
        }
        check_times(&claims, expect.leeway, now)?;
        Ok(VerifiedToken {
            kid: kid.clone(),
            alg: token_alg,
            claims,
        })
    }
}

/// `aud` (a string or an array of strings) names at least one of `expected`.
fn audience_matches(claims: &Map<String, Value>, expected: &[String]) -> bool {
    let named = |v: &Value| v.as_str().is_some_and(|a| expected.iter().any(|e| e == a));
    match claims.get("aud") {
        Some(Value::Array(auds)) => auds.iter().any(named),
        Some(aud) => named(aud),
        None => false,
    }
}

/// The three segments of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
}

/// Splits a compact JWS, insisting on exactly three segments and a
/// non-empty header and payload. (An empty signature, as `alg: none` has,
/// is left for the algorithm check to refuse.)
fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated segments"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed("empty header or payload"));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

impl Parts<'_> {
    fn header(&self) -> Result<Map<String, Value>, TokenError> {
        decode_object(self.header).ok_or(TokenError::Malformed(
            "header is not a base64url JSON object",
        ))
    }

    fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        decode_object(self.payload).ok_or(TokenError::Malformed(
            "payload is not a base64url JSON object",
        ))
    }
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A NumericDate claim as whole seconds (fractions dropped); `Err` if present
/// but not a number, or outside the years -9999..=9999 that [`Timestamp`]
/// (and so every time this operator computes) can represent. Refusing is
/// what keeps a huge value from saturating into a token that never expires
/// (`1e300` cast to i64 is `i64::MAX`) or an `iat` at the dawn of time.
fn numeric_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    const OUT_OF_RANGE: TokenError = TokenError::Malformed("a time claim is out of range");
    let range = Timestamp::MIN.as_second()..=Timestamp::MAX.as_second();
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let secs = match n.as_i64() {
                Some(i) => i,
                None => {
                    // A float (or an integer beyond i64): compare before
                    // casting, since `as` saturates.
                    let f = n
                        .as_f64()
                        .filter(|f| f.is_finite())
                        .ok_or(OUT_OF_RANGE)?
                        .floor();
                    if !(*range.start() as f64..=*range.end() as f64).contains(&f) {
                        return Err(OUT_OF_RANGE);
                    }
                    f as i64
                }
            };
            if range.contains(&secs) {
                Ok(Some(secs))
            } else {
                Err(OUT_OF_RANGE)
            }
        }
        Some(_) => Err(TokenError::Malformed("a time claim is not a number")),
    }
}

fn check_times(
    claims: &Map<String, Value>,
    leeway: Duration,
    now: Timestamp,
) -> Result<(), TokenError> {
    let now = now.as_second();
    let leeway_s = leeway.as_secs();
    let skew = i64::try_from(leeway_s).unwrap_or(i64::MAX);
    let exp = numeric_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired {
            exp,
            now,
            leeway: leeway_s,
        });
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = numeric_claim(claims, name)?
            && t > now.saturating_add(skew)
        {
            return Err(TokenError::NotYetValid {
                not_before: t,
                now,
                leeway: leeway_s,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
