//! A policy as every layer knows it: its name ([`PolicyRef`]), what the
//! adapters tell about it ([`PolicyInfo`]), and its status summary
//! ([`PolicySummary`], the entry of `GET /policies`). The domain's names,
//! beneath `api`, `http`, `metrics` and the engine: it imports only `keys`,
//! `names` and `problem`. No custom resource type here: the adapters convert.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::keys::Algorithm;
use crate::keys::lifecycle::{self, RotationReason};
use crate::names::{is_dns_label, is_dns_subdomain};

/// Namespace used when a policy document has none (standalone files).
pub const DEFAULT_NAMESPACE: &str = "default";

// === PolicyRef ===

/// Names one policy: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
}

// === impl PolicyRef ===

impl PolicyRef {
    /// A reference from its parts (not validated; see [`FromStr`] for that).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PolicyRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The path of the policy's public set: `/{namespace}/{name}/.well-known/jwks.json`.
    pub fn jwks_path(&self) -> String {
        format!("/{}/{}/.well-known/jwks.json", self.namespace, self.name)
    }

    /// The path of the policy's discovery document.
    pub fn discovery_path(&self) -> String {
        format!(
            "/{}/{}/.well-known/openid-configuration",
            self.namespace, self.name
        )
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A `namespace/name` string that is not a valid policy reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a policy reference: expected <namespace>/<name> (lowercase letters, digits, '-', and '.' in the name)"
)]
pub struct InvalidPolicyRef(pub String);

impl FromStr for PolicyRef {
    type Err = InvalidPolicyRef;

    /// Parses `namespace/name` (as given to `--default-policy`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if is_dns_label(ns) && is_dns_subdomain(name) => {
                Ok(PolicyRef::new(ns, name))
            }
            _ => Err(InvalidPolicyRef(s.chars().take(300).collect())),
        }
    }
}

// === Problem and PolicySummary ===

pub use crate::problem::Problem;

/// One entry of `GET /policies`: the policy's status at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    /// Whether a key set is published and a key signs.
    pub ready: bool,
    /// The current problem, if any (the last good set, if there is one, is still served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Problem>,
    /// The last warning about the policy that leaves it working (a lost key
    /// set written back, `KeySetRestored`, or replaced, `KeySetRecreated`);
    /// standalone and the signer show it here until they restart, as
    /// Kubernetes shows a Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Problem>,
    /// Algorithm of the active key (the policy's algorithm before the first key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// kid of the key that signs now.
    #[serde(
        default,
        rename = "activeKeyID",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_key_id: Option<String>,
    /// kid of the published key that signs next.
    #[serde(default, rename = "nextKeyID", skip_serializing_if = "Option::is_none")]
    pub next_key_id: Option<String>,
    /// Number of keys in the published set.
    pub key_count: usize,
    /// When the next key becomes active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Timestamp>,
    /// When the active key last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Timestamp>,
    /// Why the active key last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_reason: Option<RotationReason>,
    /// When a key was last revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revocation_time: Option<Timestamp>,
    /// Until when a verifier that cached the set before the last revocation
    /// may still trust the revoked key (`status.revocationExposureUntil`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_exposure_until: Option<Timestamp>,
    /// The policy's issuer (then a discovery document is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Path of the public set on the JWKS listener.
    pub jwks_path: String,
    /// Whether the token listener serves mint/verify for this policy.
    pub token_endpoint: bool,
    /// Conditions that need attention but leave the policy working (not
    /// `Degraded`), such as [`TOKEN_ENDPOINT_ON_ISSUER`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Problem>,
}

impl PolicySummary {
    /// The summary of a policy that has no published set yet (`ready: false`):
    /// what [`SharedState::set_problem`] shows when the first load failed.
    pub fn for_policy(policy: &PolicyInfo) -> Self {
        PolicySummary {
            algorithm: Some(policy.algorithm),
            issuer: policy.issuer.clone(),
            token_endpoint: policy.token_endpoint,
            warnings: policy.warnings(),
            ..PolicySummary::unknown(&policy.policy)
        }
    }

    /// A bare summary for a policy known only by reference (for example a
    /// document that failed to parse): not ready, nothing known.
    pub fn unknown(policy: &PolicyRef) -> Self {
        PolicySummary {
            namespace: policy.namespace.clone(),
            name: policy.name.clone(),
            ready: false,
            degraded: None,
            warning: None,
            algorithm: None,
            active_key_id: None,
            next_key_id: None,
            key_count: 0,
            next_rotation_time: None,
            last_rotation_time: None,
            last_rotation_reason: None,
            last_revocation_time: None,
            revocation_exposure_until: None,
            issuer: None,
            jwks_path: policy.jwks_path(),
            token_endpoint: false,
            warnings: Vec::new(),
        }
    }
}

/// One entry of `GET /policies` on the JWKS listener, which anyone who can
/// fetch a key set may call: the key set's state (what the set and the
/// discovery document publish anyway, plus rotation times), and of a problem
/// only its reason. Not shown: the problem's message (API-server error text,
/// file paths) and whether the policy mints tokens; the metrics listener's
/// `/policies` has those ([`PolicySummary`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicPolicySummary<'a> {
    /// The policy's namespace.
    pub namespace: &'a str,
    /// The policy's name.
    pub name: &'a str,
    /// Whether a key set is published and a key signs.
    pub ready: bool,
    /// The current problem's reason, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<PublicProblem<'a>>,
    /// Algorithm of the active key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// kid of the key that signs now.
    #[serde(rename = "activeKeyID", skip_serializing_if = "Option::is_none")]
    pub active_key_id: Option<&'a str>,
    /// kid of the published key that signs next.
    #[serde(rename = "nextKeyID", skip_serializing_if = "Option::is_none")]
    pub next_key_id: Option<&'a str>,
    /// Number of keys in the published set.
    pub key_count: usize,
    /// When the next key becomes active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Timestamp>,
    /// When the active key last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Timestamp>,
    /// Why the active key last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_reason: Option<RotationReason>,
    /// When a key was last revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_revocation_time: Option<Timestamp>,
    /// Until when a cache of the set from before the last revocation may
    /// still trust the revoked key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_exposure_until: Option<Timestamp>,
    /// The policy's issuer (published in its discovery document).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    /// Path of the public set on the JWKS listener.
    pub jwks_path: &'a str,
}

/// A problem as the public `/policies` shows it: its reason only.
#[derive(Debug, Serialize)]
pub struct PublicProblem<'a> {
    /// Machine-readable reason (`CamelCase`).
    pub reason: &'a str,
}

impl<'a> From<&'a PolicySummary> for PublicPolicySummary<'a> {
    fn from(s: &'a PolicySummary) -> Self {
        PublicPolicySummary {
            namespace: &s.namespace,
            name: &s.name,
            ready: s.ready,
            degraded: s
                .degraded
                .as_ref()
                .map(|p| PublicProblem { reason: &p.reason }),
            algorithm: s.algorithm,
            active_key_id: s.active_key_id.as_deref(),
            next_key_id: s.next_key_id.as_deref(),
            key_count: s.key_count,
            next_rotation_time: s.next_rotation_time,
            last_rotation_time: s.last_rotation_time,
            last_rotation_reason: s.last_rotation_reason,
            last_revocation_time: s.last_revocation_time,
            revocation_exposure_until: s.revocation_exposure_until,
            issuer: s.issuer.as_deref(),
            jwks_path: &s.jwks_path,
        }
    }
}

// === PolicyInfo ===

/// What the HTTP layer needs to know about a policy, whatever it came from
/// (a `KeyRotationPolicy` object in the cluster, a policy file): built by
/// the adapters, so the servers never see the custom resource.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyInfo {
    /// Which policy.
    pub policy: PolicyRef,
    /// The algorithm new keys are generated with.
    pub algorithm: Algorithm,
    /// `spec.issuer` (then a discovery document is served, and tokens carry it).
    pub issuer: Option<String>,
    /// `spec.audiences`: the default `aud` of minted tokens, and what
    /// verification accepts.
    pub audiences: Vec<String>,
    /// Longest lifetime of a minted token.
    pub max_token_ttl: std::time::Duration,
    /// Leeway for `exp`/`nbf` when verifying.
    pub clock_skew: std::time::Duration,
    /// `max-age` of the JWK Set's `Cache-Control`, in seconds.
    pub jwks_max_age: u64,
    /// Whether the token listener serves mint/verify for this policy.
    pub token_endpoint: bool,
    /// The resolved lifecycle parameters, for the next rotation time (`None`
    /// when the spec does not resolve).
    pub lifecycle: Option<lifecycle::Policy>,
    /// `spec.revokedKeyIDs`, straight from the spec (even one that does not
    /// resolve): these kids are never served and never sign (SPEC invariant 9).
    pub revoked: BTreeSet<String>,
    /// Set by a replica whose copy of the stored set is older than its
    /// staleness bound ([`crate::engine::staleness`]): why nothing signs.
    /// The public set is still served.
    pub stale: Option<String>,
}

/// Reason of the warning for a policy that both mints tokens on the token
/// listener and has an issuer (see [`PolicyInfo::token_endpoint_on_issuer`]).
pub const TOKEN_ENDPOINT_ON_ISSUER: &str = "TokenEndpointOnIssuer";

// === impl PolicyInfo ===

impl PolicyInfo {
    /// Whether the policy mints tokens on the token listener while it has
    /// an `issuer`. A policy with an issuer is taken to be used as one:
    /// something verifies its tokens by that `iss` (an OIDC client, a
    /// kube-apiserver's `--service-account-issuer` or authentication
    /// config), so a token the test endpoint mints is accepted there: for
    /// a kube-apiserver issuer, a credential to the cluster.
    pub fn token_endpoint_on_issuer(&self) -> bool {
        self.token_endpoint && self.issuer.is_some()
    }

    /// The warnings this policy's settings deserve (none, usually).
    pub fn warnings(&self) -> Vec<Problem> {
        if !self.token_endpoint_on_issuer() {
            return Vec::new();
        }
        vec![Problem::new(
            TOKEN_ENDPOINT_ON_ISSUER,
            format!(
                "tokenEndpoint.enabled on a policy with issuer {}: whoever holds the token \
                 listener's credential can mint tokens that every verifier trusting this \
                 issuer accepts; turn tokenEndpoint off unless this issuer is for tests only",
                self.issuer.as_deref().unwrap_or_default()
            ),
        )]
    }
}
