//! One policy as served ([`PolicyView`]): built once per key-set change,
//! with everything a request needs already serialized: the public JWK Set
//! bytes with their strong ETag and `Cache-Control`, the discovery document,
//! the summary for `/policies`, and for token-enabled policies the active
//! signer and a ready-made [`Verifier`].

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Serialize;
use warp::http::HeaderValue;

use crate::keys::Algorithm;
use crate::keys::lifecycle::KeySet;
use crate::keys::material::{SigningKey, VerifyingKey, public_jwks_json};
use crate::keys::token::{Expectations, MintSettings, Verifier, mint_ttl_cap};
use crate::policy::{PolicyInfo, PolicyRef, PolicySummary, Problem};

/// Everything the token listener needs for one token-enabled policy.
pub(crate) struct TokenSide {
    /// The active key: `None` for a set without one (the planner never
    /// produces one), and while the stored active key is revoked
    /// ([`Self::withheld`]).
    pub(crate) signer: Option<Arc<SigningKey>>,
    /// The kid of the stored active key when `spec.revokedKeyIDs` names it
    /// and no fresh key is stored yet: minting is refused, naming it.
    pub(crate) withheld: Option<String>,
    /// Why nothing signs while this replica's copy of the stored set is
    /// older than its staleness bound ([`PolicyInfo::stale`]).
    pub(crate) stale: Option<String>,
    /// Verifies against every published key.
    pub(crate) verifier: Verifier,
    /// `iss`, default `aud`, `maxTokenTTL`.
    pub(crate) mint: MintSettings,
    /// `iss`, `aud`, `clockSkew` as verification requires them.
    pub(crate) expect: Expectations,
}

/// An immutable, pre-serialized view of one policy's published key set.
#[derive(Clone)]
pub struct PolicyView {
    policy: PolicyRef,
    jwks: Bytes,
    etag: HeaderValue,
    cache_control: HeaderValue,
    max_age: u64,
    discovery: Option<(Bytes, HeaderValue)>,
    summary: PolicySummary,
    token: Option<Arc<TokenSide>>,
}

impl fmt::Debug for PolicyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyView")
            .field("policy", &self.policy)
            .field("etag", &self.etag)
            .field("max_age", &self.max_age)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// The strong ETag of `bytes`: a quoted base64url SHA-256.
pub fn strong_etag(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn header_value(s: String) -> HeaderValue {
    // Built from base64url, digits and fixed ASCII text only.
    HeaderValue::try_from(s).expect("an ASCII header value")
}

#[derive(Serialize)]
struct Discovery<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: Vec<&'static str>,
}

/// The OpenID discovery document of a policy with an issuer, and its ETag.
fn discovery_document(
    policy: &PolicyInfo,
    algs: impl Iterator<Item = Algorithm>,
    public_base_url: Option<&str>,
) -> Option<(Bytes, HeaderValue)> {
    let issuer = policy.issuer.as_deref()?;
    let jwks_uri = match public_base_url {
        Some(base) => format!(
            "{}{}",
            base.trim_end_matches('/'),
            policy.policy.jwks_path()
        ),
        None => format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
    };
    let mut names: Vec<&'static str> = Vec::new();
    for alg in algs {
        if !names.contains(&alg.as_str()) {
            names.push(alg.as_str());
        }
    }
    let doc = Discovery {
        issuer,
        jwks_uri,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: names,
    };
    let bytes = Bytes::from(serde_json::to_vec(&doc).expect("discovery serializes"));
    let etag = header_value(strong_etag(&bytes));
    Some((bytes, etag))
}

// === impl PolicyView ===

impl PolicyView {
    /// Builds the view of `policy` serving `keys` (every key in the set:
    /// pending, active and retired, newest first), except the keys
    /// `policy.revoked` names (SPEC invariant 9, [`KeySet::servable`]): they
    /// are neither published, nor verified, nor used to sign, whether or not
    /// the write that removes them from the store has landed. `public_base_url` (such as
    /// `https://jwks.example.com`) makes the discovery document's `jwks_uri`
    /// absolute on this server; without it `jwks_uri` is
    /// `{issuer}/.well-known/jwks.json`. The summary says `ready: true`, no problem.
    pub fn build(
        policy: &PolicyInfo,
        keys: &KeySet<Arc<SigningKey>>,
        public_base_url: Option<&str>,
    ) -> PolicyView {
        let served = keys.servable(&policy.revoked);
        let keys = &served.keys;
        let r = policy.policy.clone();
        let jwks = Bytes::from(public_jwks_json(
            keys.keys.iter().map(|k| k.key.verifying_key()),
        ));
        let etag = header_value(strong_etag(&jwks));
        let max_age = policy.jwks_max_age;
        let cache_control = header_value(format!("public, max-age={max_age}"));

        let discovery = discovery_document(
            policy,
            keys.keys.iter().map(|k| k.key.alg()),
            public_base_url,
        );

        let active = keys.active();
        let next_rotation_time = policy
            .lifecycle
            .as_ref()
            .and_then(|p| keys.next_rotation_time(p));
        let revocation_exposure_until = policy
            .lifecycle
            .as_ref()
            .and_then(|p| keys.revocation_exposure_until(p));
        let summary = PolicySummary {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            ready: active.is_some(),
            degraded: None,
            warning: None,
            algorithm: Some(active.map_or(policy.algorithm, |a| a.key.alg())),
            active_key_id: active.map(|a| a.kid().to_string()),
            next_key_id: keys.pending().map(|p| p.kid().to_string()),
            key_count: keys.keys.len(),
            next_rotation_time,
            last_rotation_time: keys.last_rotation_time,
            last_rotation_reason: keys.last_rotation_reason,
            last_revocation_time: keys.last_revocation_time,
            revocation_exposure_until,
            issuer: policy.issuer.clone(),
            jwks_path: r.jwks_path(),
            token_endpoint: policy.token_endpoint,
            warnings: policy.warnings(),
        };

        let token = policy.token_endpoint.then(|| {
            Arc::new(TokenSide {
                signer: active
                    .filter(|_| policy.stale.is_none())
                    .map(|a| a.key.clone()),
                withheld: served.withheld_active.clone(),
                stale: policy.stale.clone(),
                verifier: Verifier::new(keys.keys.iter().map(|k| k.key.verifying_key())),
                mint: MintSettings {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    max_ttl: mint_ttl_cap(policy.max_token_ttl, active),
                },
                expect: Expectations {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    leeway: policy.clock_skew,
                },
            })
        });

        let view = PolicyView {
            policy: r,
            jwks,
            etag,
            cache_control,
            max_age,
            discovery,
            summary,
            token,
        };
        match &policy.stale {
            Some(why) => view.with_problem(Some(Problem::new(
                crate::reasons::KEY_SET_STALE,
                why.clone(),
            ))),
            None => view,
        }
    }

    /// A view serving only the public keys `keys` (a stored public set whose
    /// private counterpart cannot be read): the JWKS and discovery as usual,
    /// verification on the token listener, but nothing signs (minting is
    /// `503 not_ready`) and the summary says `ready: false`. Keys that
    /// `policy.revoked` names are left out, as in [`Self::build`].
    pub fn public_only(
        policy: &PolicyInfo,
        keys: &[VerifyingKey],
        public_base_url: Option<&str>,
    ) -> PolicyView {
        let kept: Vec<VerifyingKey>;
        let keys = if keys.iter().any(|k| policy.revoked.contains(k.kid())) {
            kept = keys
                .iter()
                .filter(|k| !policy.revoked.contains(k.kid()))
                .cloned()
                .collect();
            &kept[..]
        } else {
            keys
        };
        let jwks = Bytes::from(public_jwks_json(keys));
        let etag = header_value(strong_etag(&jwks));
        let max_age = policy.jwks_max_age;
        let cache_control = header_value(format!("public, max-age={max_age}"));
        let summary = PolicySummary {
            ready: false,
            key_count: keys.len(),
            ..PolicySummary::for_policy(policy)
        };
        let token = policy.token_endpoint.then(|| {
            Arc::new(TokenSide {
                signer: None,
                withheld: None,
                stale: None,
                verifier: Verifier::new(keys.iter()),
                mint: MintSettings {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    max_ttl: policy.max_token_ttl,
                },
                expect: Expectations {
                    issuer: policy.issuer.clone(),
                    audiences: policy.audiences.clone(),
                    leeway: policy.clock_skew,
                },
            })
        });
        PolicyView {
            policy: policy.policy.clone(),
            jwks,
            etag,
            cache_control,
            max_age,
            discovery: discovery_document(
                policy,
                keys.iter().map(VerifyingKey::alg),
                public_base_url,
            ),
            summary,
            token,
        }
    }

    /// Which policy this is.
    pub fn policy(&self) -> &PolicyRef {
        &self.policy
    }

    /// The summary shown by `GET /policies`.
    pub fn summary(&self) -> &PolicySummary {
        &self.summary
    }

    /// The same published set with a new problem (`None` clears it): a
    /// degraded policy keeps serving its last good set.
    pub fn with_problem(&self, problem: Option<Problem>) -> PolicyView {
        let mut view = self.clone();
        view.summary.degraded = problem;
        view
    }

    /// The same view with `warning` as the summary's warning.
    pub fn with_warning(mut self, warning: Option<Problem>) -> PolicyView {
        self.summary.warning = warning;
        self
    }

    /// The public JWK Set exactly as served.
    pub fn jwks_bytes(&self) -> &Bytes {
        &self.jwks
    }

    /// The strong ETag of [`Self::jwks_bytes`], quotes included.
    pub fn etag(&self) -> &str {
        self.etag.to_str().unwrap_or_default()
    }

    /// `max-age` of the `Cache-Control` header, in seconds.
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// The OpenID discovery document, when the policy has an issuer.
    pub fn discovery_bytes(&self) -> Option<&Bytes> {
        self.discovery.as_ref().map(|(b, _)| b)
    }

    /// Whether the token listener serves this policy.
    pub fn token_endpoint_enabled(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn etag_header(&self) -> &HeaderValue {
        &self.etag
    }

    pub(crate) fn cache_control(&self) -> &HeaderValue {
        &self.cache_control
    }

    pub(crate) fn discovery(&self) -> Option<&(Bytes, HeaderValue)> {
        self.discovery.as_ref()
    }

    pub(crate) fn token_side(&self) -> Option<&TokenSide> {
        self.token.as_deref()
    }
}

/// What a policy shows where there are no Events and no status object
/// (standalone's `/policies`, the signer's): the view of the set it serves,
/// or, while it holds none, its summary. The same for both adapters.
#[derive(Clone, Debug)]
pub enum Shown {
    /// A key set is served, with the pass's problem (if any) and warning.
    View(PolicyView),
    /// No key set is held: the policy's summary and its problem.
    Summary(PolicySummary, Option<Problem>),
}

impl Shown {
    /// After a healthy pass: `keys` served, `problem` (a warning-level one
    /// or none) and the last `warning` (a lost set restored or recreated).
    pub fn healthy(
        policy: &PolicyInfo,
        keys: &KeySet<Arc<SigningKey>>,
        public_base_url: Option<&str>,
        problem: Option<Problem>,
        warning: Option<Problem>,
    ) -> Shown {
        let view = PolicyView::build(policy, keys, public_base_url).with_warning(warning);
        Shown::View(view.with_problem(problem))
    }

    /// After a failed pass: the last good set `held` keeps being served,
    /// rebuilt for the policy as it is now (a kid it revokes is withheld
    /// although no write recorded it), with `problem`; without one, the
    /// summary says what is wrong.
    pub fn degraded(
        policy: &PolicyInfo,
        held: Option<&KeySet<Arc<SigningKey>>>,
        public_base_url: Option<&str>,
        problem: Problem,
    ) -> Shown {
        match held.filter(|k| !k.keys.is_empty()) {
            Some(keys) => Shown::View(
                PolicyView::build(policy, keys, public_base_url).with_problem(Some(problem)),
            ),
            None => Shown::Summary(PolicySummary::for_policy(policy), Some(problem)),
        }
    }
}
