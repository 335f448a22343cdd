// Over 600 lines on purpose: the custom resource, every field with the docs, defaults
// and CEL rules that generate the CRD schema and docs/api.md, in schema order.

//! The `KeyRotationPolicy` custom resource (`jwks.dev/v1alpha1`).
//!
//! The Rust types are the source of the CRD: doc comments become schema
//! descriptions, `x_kube(validation)` rules become CEL rules the API server
//! enforces at admission. [`KeyRotationPolicySpec::resolve`] turns a spec into
//! the lifecycle planner's [`Policy`], applying defaults and the checks only
//! the operator can make (those become a `Degraded` condition, never a crash).

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::keys::alg::{Algorithm, DEFAULT_RSA_BITS, KeyParams, RSA_KEY_SIZES};
use crate::keys::lifecycle::Policy;
use crate::names::is_dns_subdomain;
use crate::policy;
use crate::policy::{PolicyInfo, PolicyRef};
use crate::yaml;

/// API group of the custom resource.
pub const GROUP: &str = "jwks.dev";
/// Annotation whose new value asks for a manual rotation.
pub const ROTATE_ANNOTATION: &str = "jwks.dev/rotate-requested-at";
/// Annotation on an existing Secret, valued with a policy's name, that lets
/// that policy adopt the Secret's key set (with an explicit `spec.secretName`).
pub const ADOPT_ANNOTATION: &str = "jwks.dev/adopt";
/// Label naming the policy a Secret belongs to.
pub const POLICY_LABEL: &str = "jwks.dev/policy";
/// Standard label marking objects this operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "jwks-operator";

/// Desired state of a set of JWT signing keys: which algorithm, how often to
/// rotate, how long tokens may live, and where the keys are kept.
// kube-derive takes one `printcolumn(...)` per column; clippy reads the repeated keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jwks.dev",
    version = "v1alpha1",
    kind = "KeyRotationPolicy",
    plural = "keyrotationpolicies",
    shortname = "krp",
    namespaced,
    status = "KeyRotationPolicyStatus",
    // Moving to another Secret would drop keys that still verify live tokens
    // (invariant 3) and orphan the old Secret with its private keys.
    validation = Rule::new("(has(self.spec.secretName) ? self.spec.secretName : self.metadata.name + '-jwks') == (has(oldSelf.spec.secretName) ? oldSelf.spec.secretName : oldSelf.metadata.name + '-jwks')").message("spec.secretName cannot be changed: the key set, including keys that still verify issued tokens, lives in that Secret; to use another Secret, create a new KeyRotationPolicy").reason(kube::core::Reason::FieldValueForbidden).field_path(".spec.secretName"),
    doc = "A KeyRotationPolicy asks jwks-operator to generate JWT signing keys into a Secret, publish the public keys as a JWK Set, rotate them on a schedule and prune retired keys once no token they signed can still be valid.",
    printcolumn(
        name = "Algorithm",
        type_ = "string",
        json_path = ".spec.algorithm",
        description = "JWS algorithm of new keys"
    ),
    printcolumn(
        name = "Active Kid",
        type_ = "string",
        json_path = ".status.activeKeyID",
        description = "kid of the key that signs now"
    ),
    printcolumn(
        name = "Keys",
        type_ = "integer",
        json_path = ".status.keyCount",
        description = "keys in the published set"
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextRotationTime",
        description = "when the next key becomes active"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "whether the key set is ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.keySize) || self.algorithm.startsWith('RS') || self.algorithm.startsWith('PS')").message("keySize applies only to RSA algorithms (RS256/384/512, PS256/384/512); remove it for ES256, ES384 and EdDSA"),
    validation = Rule::new("!has(self.publishAhead) || duration(self.publishAhead) < duration(self.rotationInterval)").message("publishAhead must be shorter than rotationInterval, so each key is published before it signs and still signs for a while"),
    validation = Rule::new("!has(self.keyProvider) || self.keyProvider.type != 'AWSKMS' || self.algorithm != 'EdDSA'").message("keyProvider AWSKMS cannot do EdDSA: AWS KMS has no Ed25519 signing keys; use ES256, ES384, RS256/384/512 or PS256/384/512, or the Secret or PKCS11 provider for EdDSA (docs/key-providers.md)"),
    validation = Rule::new("(has(self.keyProvider) ? self.keyProvider.type : 'Secret') == (has(oldSelf.keyProvider) ? oldSelf.keyProvider.type : 'Secret') && (has(self.keyProvider) && has(self.keyProvider.tokenLabel) ? self.keyProvider.tokenLabel : '') == (has(oldSelf.keyProvider) && has(oldSelf.keyProvider.tokenLabel) ? oldSelf.keyProvider.tokenLabel : '') && (has(self.keyProvider) && has(self.keyProvider.region) ? self.keyProvider.region : '') == (has(oldSelf.keyProvider) && has(oldSelf.keyProvider.region) ? oldSelf.keyProvider.region : '')").message("keyProvider.type, tokenLabel and region cannot be changed: keys already in the set live in that provider, token or region and still verify issued tokens; to move keys elsewhere, create a new KeyRotationPolicy").reason(kube::core::Reason::FieldValueForbidden).field_path(".keyProvider.type"),
    validation = Rule::new("!has(self.verifierRefreshInterval) || (has(self.publishAhead) ? duration(self.publishAhead) >= duration(self.verifierRefreshInterval) + duration(self.clockSkew) : (duration('1h') >= duration(self.verifierRefreshInterval) + duration(self.clockSkew) && duration(self.rotationInterval) >= duration(self.verifierRefreshInterval) + duration(self.clockSkew) + duration(self.verifierRefreshInterval) + duration(self.clockSkew) + duration(self.verifierRefreshInterval) + duration(self.clockSkew) + duration(self.verifierRefreshInterval) + duration(self.clockSkew)))").message("publishAhead (default: the smaller of 1h and rotationInterval/4) must be at least verifierRefreshInterval + clockSkew, or a verifier can meet a key it has not fetched yet; lengthen publishAhead (and rotationInterval) or shorten verifierRefreshInterval"),
    validation = Rule::new("!has(self.publish) || self.publish.all(a, self.publish.exists_one(b, b.url == a.url))").message("each publish[].url may appear only once"),
    validation = Rule::new("!has(self.publish) || has(self.issuer) || self.publish.all(t, !has(t.discovery) || !t.discovery)").message("publish[].discovery needs spec.issuer: the discovery document's issuer is spec.issuer"),
    validation = Rule::new("!has(self.publish) || !has(self.issuer) || self.publish.all(t, has(t.discovery) && !t.discovery) || !(self.issuer.endsWith('/') || self.issuer.contains('?') || self.issuer.contains('#'))").message("with publish[].discovery, the published jwks_uri is spec.issuer + '/' + jwksPath, so spec.issuer must not end with '/' nor carry a query or fragment; set the issuer to the public URL of the target's prefix, or set discovery: false")
)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationPolicySpec {
    /// JWS algorithm of the keys this policy generates (one algorithm per key).
    /// Changing it takes effect at the next rotation; older keys stay
    /// published until they are pruned.
    #[serde(default)]
    pub algorithm: Algorithm,

    /// RSA modulus size in bits (2048, 3072 or 4096; default 2048). Only valid
    /// with RSA algorithms. Changing it takes effect at the next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [2048, 3072, 4096]))]
    pub key_size: Option<u32>,

    /// How long each key is the active signer, as a Go duration (`24h`,
    /// `1h30m`). Default `24h`; at least `1s`.
    #[serde(default = "default_rotation_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("rotationInterval must be a duration of at least 1s, such as 24h or 1h30m"))]
    pub rotation_interval: Duration,

    /// How long before it signs anything a new key is published in the JWK
    /// Set, so verifier caches learn it first. Default: the smaller of `1h`
    /// and a quarter of `rotationInterval`. `0s` publishes and activates at
    /// once. Must be shorter than `rotationInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')").message("publishAhead must be a non-negative duration such as 15m"))]
    pub publish_ahead: Option<Duration>,

    /// The longest time any verifier of this policy keeps a fetched JWK Set
    /// before fetching it again (its cache lifetime), as a duration. When
    /// set, `publishAhead` must be at least this plus `clockSkew`, so every
    /// verifier has a new key before the key signs, and the served
    /// `Cache-Control: max-age` never exceeds it. See docs/verifier-caches.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("verifierRefreshInterval must be a duration of at least 1s, such as 10m"))]
    pub verifier_refresh_interval: Option<Duration>,

    /// Upper bound on any token's lifetime (`exp - iat`). Tokens minted by the
    /// operator are capped to it, and a retired key stays published at least
    /// this long (plus `clockSkew`) after it stopped signing. Default `1h`.
    #[serde(default = "default_max_token_ttl")]
    #[serde(rename = "maxTokenTTL")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("maxTokenTTL must be a duration of at least 1s, such as 1h"))]
    pub max_token_ttl: Duration,

    /// Leeway for clock differences between signers and verifiers: added to
    /// the retention of retired keys and allowed when verifying `exp`/`nbf`.
    /// Default `60s`.
    #[serde(default = "default_clock_skew")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('1h')").message("clockSkew must be a duration between 0s and 1h, such as 60s"))]
    pub clock_skew: Duration,

    /// Safety cap on the number of keys in the set (Pending + Active +
    /// Retired). When a rotation would exceed it, the rotation is deferred
    /// (condition `Degraded`, reason `MaxKeysReached`) rather than pruning a
    /// key that may still verify live tokens. Default 10, minimum 2.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 2, max = 100))]
    pub max_keys: u32,

    /// Name of the Secret holding the key set. Default `<policy name>-jwks`.
    /// Cannot be changed after creation. A Secret of that name that this
    /// operator does not manage is never overwritten, with one exception: a
    /// Secret named here explicitly whose `jwks.json` is a valid private JWK
    /// Set and that is annotated `jwks.dev/adopt: <policy name>` is adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: Option<String>,

    /// Also write the public JWK Set to this ConfigMap, under the key
    /// `jwks.json`, for consumers that mount it instead of fetching the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub public_config_map: Option<String>,

    /// Copies of the public JWK Set (and, with an `issuer`, the discovery
    /// document) in object storage, for verifiers that cannot reach the
    /// operator (cloud IAM federation, partners outside the network). A new
    /// key signs only after every copy has been read back holding it and
    /// `publishAhead` has passed since; a pruned key leaves every copy before
    /// it leaves the stored set; a revoked key leaves every copy at once. At
    /// most 8 targets, each URL once. See docs/publication.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub publish: Vec<PublishTarget>,

    /// Issuer URL: the `iss` of minted tokens and of the OpenID discovery
    /// document. Without it, no discovery document is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("issuer must be an http(s) URL such as https://auth.example.com"))]
    pub issuer: Option<String>,

    /// Default `aud` of minted tokens; when set, `/verify` also requires the
    /// token's audience to be one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub audiences: Vec<String>,

    /// Emergency revocation: keys with these kids are removed from the set at
    /// once (tokens they signed stop verifying). If the active key is
    /// revoked, a fresh key becomes active immediately. Every replica also
    /// leaves these kids out of what it serves (JWKS, ConfigMap, FetchKeys)
    /// and never signs with them, even while the write that removes them
    /// from the stored set fails.
    #[serde(
        default,
        rename = "revokedKeyIDs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 100))]
    pub revoked_key_ids: Vec<String>,

    /// Also make a fresh key the signer at once when a retired or pending
    /// key is revoked (revoking the active key always does). Verifiers that
    /// refetch the JWK Set on an unknown `kid` then drop the revoked key as
    /// soon as they see the first token of the fresh key, instead of when
    /// their cache expires. Cost: verifiers that never refetch on an unknown
    /// `kid` (Istio, Envoy `remote_jwks`) refuse the fresh key's tokens
    /// until their next scheduled refresh. Default `false`. See
    /// docs/verifier-caches.md.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_on_revoke: bool,

    /// Test-only token endpoints for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<TokenEndpoint>,

    /// Where the private keys live. Default `{type: Secret}`: in the key
    /// set's Secret (standalone: the state directory). With `PKCS11` or
    /// `AWSKMS` the private keys are generated inside the provider and never
    /// leave it; the stored set holds public JWKs and a key reference per
    /// kid. The type, token label and region cannot be changed after
    /// creation (the module path, PIN and credentials can). See
    /// docs/key-providers.md for what each provider can sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_provider: Option<KeyProvider>,
}

/// Where a policy's private keys live, and how to reach them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.type != 'PKCS11' || (has(self.module) && has(self.tokenLabel))").message("keyProvider PKCS11 needs module (the path of the PKCS#11 .so) and tokenLabel"),
    validation = Rule::new("self.type != 'PKCS11' || (has(self.pinSecret) ? !has(self.pinFile) : has(self.pinFile))").message("keyProvider PKCS11 needs exactly one of pinSecret (Kubernetes) or pinFile (standalone and signer)"),
    validation = Rule::new("self.type == 'PKCS11' || !(has(self.module) || has(self.tokenLabel) || has(self.pinSecret) || has(self.pinFile))").message("module, tokenLabel, pinSecret and pinFile apply only to keyProvider type PKCS11"),
    validation = Rule::new("self.type != 'AWSKMS' || has(self.region)").message("keyProvider AWSKMS needs region, such as eu-west-1"),
    validation = Rule::new("self.type == 'AWSKMS' || !(has(self.region) || has(self.credentialsSecret) || has(self.credentialsFile) || has(self.endpoint))").message("region, credentialsSecret, credentialsFile and endpoint apply only to keyProvider type AWSKMS"),
    validation = Rule::new("!(has(self.credentialsSecret) && has(self.credentialsFile))").message("set credentialsSecret (Kubernetes) or credentialsFile (standalone, signer), not both")
)]
#[serde(rename_all = "camelCase")]
pub struct KeyProvider {
    /// `Secret` (default: private keys in the key set's Secret or state
    /// directory), `PKCS11` (a token reached through a PKCS#11 module: an
    /// HSM, a TPM through tpm2-pkcs11, SoftHSM) or `AWSKMS`.
    #[serde(rename = "type", default)]
    pub kind: KeyProviderType,

    /// PKCS11: absolute path of the PKCS#11 module (`.so`) on the
    /// operator's file system, such as `/usr/lib/softhsm/libsofthsm2.so`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("module must be an absolute path to the PKCS#11 module (.so)"))]
    pub module: Option<String>,

    /// PKCS11: the label of the token the keys are generated in (the
    /// token's label in its `CK_TOKEN_INFO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub token_label: Option<String>,

    /// PKCS11, Kubernetes mode: name of a Secret in the policy's namespace
    /// whose data key `pin` holds the token's user PIN. Read only when the
    /// Secret carries the label `jwks.dev/credentials: "true"` (its owner's
    /// consent; docs/kubernetes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub pin_secret: Option<String>,

    /// PKCS11, standalone and signer modes: path of a file holding the
    /// token's user PIN (a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub pin_file: Option<String>,

    /// AWSKMS: the AWS region of the keys, such as `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,

    /// AWSKMS, Kubernetes mode: name of a Secret in the policy's namespace
    /// with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN`, read only when it carries the label
    /// `jwks.dev/credentials: "true"`. Without it the ambient credentials
    /// are used (environment, web identity, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub credentials_secret: Option<String>,

    /// AWSKMS, standalone and signer modes: path of a file of `KEY=VALUE`
    /// lines with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// optionally `AWS_SESSION_TOKEN`. Without it the ambient credentials
    /// are used. Not used in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub credentials_file: Option<String>,

    /// AWSKMS: another endpoint URL than the region's (a VPC endpoint, or a
    /// local KMS in tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))").message("endpoint must be an http(s) URL"))]
    pub endpoint: Option<String>,
}

/// The kind of a [`KeyProvider`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyProviderType {
    /// Private keys in the key set's Secret (standalone: the state directory).
    #[default]
    Secret,
    /// Private keys in a PKCS#11 token.
    #[serde(rename = "PKCS11")]
    Pkcs11,
    /// Private keys in AWS KMS.
    #[serde(rename = "AWSKMS")]
    AwsKms,
}

impl KeyProviderType {
    /// The name used in the API and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyProviderType::Secret => "Secret",
            KeyProviderType::Pkcs11 => "PKCS11",
            KeyProviderType::AwsKms => "AWSKMS",
        }
    }
}

/// Opt-in for the mint/verify endpoints of the token listener.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenEndpoint {
    /// Serve `POST /{namespace}/{name}/token` and `/verify` for this policy on
    /// the token listener (which itself is off unless `--token-addr` is set,
    /// and beyond loopback asks every client for a bearer token or a client
    /// certificate). On a policy with an `issuer` this mints tokens its
    /// verifiers accept: the policy gets the `TokenEndpointOnIssuer` condition.
    #[serde(default)]
    pub enabled: bool,
}

/// One copy of the public keys in object storage (`spec.publish[]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishTarget {
    /// Where the copy lives: `s3://bucket/prefix`, `az://container/prefix`
    /// (or `azure://`), `gs://bucket/prefix`, or `file:///path` (standalone
    /// and signer only). The objects are written under the prefix.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^(s3|gs|az|azure)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$') || self.matches('^file:///.+$')").message("url must be s3://bucket/prefix, az://container/prefix, azure://container/prefix, gs://bucket/prefix or file:///path, with a bucket or container name of 3-63 lowercase letters, digits, '.' and '-'"))]
    pub url: String,

    /// Kubernetes: name of a Secret in the policy's namespace holding
    /// environment-style credential keys (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ENDPOINT`,
    /// `GOOGLE_SERVICE_ACCOUNT_KEY`), read only when it carries the label
    /// `jwks.dev/credentials: "true"` (its owner's consent). Without it (and
    /// without `credentialsFile`) the ambient credentials of the pod or
    /// process are used (IRSA, workload identity, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub credentials_secret: Option<String>,

    /// Standalone and signer: path of a file of `KEY=VALUE` lines with the
    /// same keys as `credentialsSecret`. Not used in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub credentials_file: Option<String>,

    /// `Cache-Control` of the written objects. Default
    /// `public, max-age=<the max-age the JWKS listener serves>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[ -~]{1,256}$"))]
    pub cache_control: Option<String>,

    /// Also write the OpenID discovery document
    /// (`.well-known/openid-configuration`, with `issuer` = `spec.issuer`
    /// and `jwks_uri` = `spec.issuer` + `/` + `jwksPath`). Default `true`
    /// when `spec.issuer` is set, else `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<bool>,

    /// Path of the JWK Set below the prefix. Default `jwks.json` (the
    /// signer's default is `openid/v1/jwks`, kube's layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$")
    )]
    pub jwks_path: Option<String>,
}

/// What one publication target holds, as last read back (`status.publication[]`).
/// Never carries credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicationStatus {
    /// The target's URL, as in `spec.publish[].url`.
    pub url: String,
    /// `sha256:<hex>` of the JWK Set the copy was last confirmed to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_digest: Option<String>,
    /// kids in that copy; a revoked or pruned key is listed until the copy
    /// no longer holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kids: Vec<String>,
    /// When the operator last wrote the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_published_time: Option<Time>,
    /// When the copy was last read back and found as intended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<Time>,
    /// Why the last write or read-back failed; empty once it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A duration in the Go/Kubernetes format (`90s`, `15m`, `1h30m`, `1.5h`),
/// parsed like Go's `time.ParseDuration` and printed the way a person writes
/// it (`24h`, not `86400s`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    value: StdDuration,
    negative: bool,
}

// === impl Duration ===

impl Duration {
    /// Whether the duration was written with a leading `-`.
    pub fn is_negative(&self) -> bool {
        self.negative
    }
}

impl From<StdDuration> for Duration {
    fn from(value: StdDuration) -> Self {
        Duration {
            value,
            negative: false,
        }
    }
}

impl From<Duration> for StdDuration {
    /// The magnitude; check [`Duration::is_negative`] first.
    fn from(d: Duration) -> Self {
        d.value
    }
}

/// Longest duration accepted, in seconds (about 31,700 years): far beyond
/// any lifecycle setting, far below what `std::time::Duration` holds.
const MAX_DURATION_SECS: f64 = 1e12;

/// Checks `s` against Go's duration syntax (`[+-]` then one or more
/// `<number><unit>`, or `0`) and a magnitude bound before kube's parser sees
/// it: that parser panics on a sign inside the text (`1h-30ms`) and on
/// values beyond `std::time::Duration` (found by the `duration` fuzz target).
fn check_go_duration(s: &str) -> Result<(), String> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err("empty".into());
    }
    let mut rest = body;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..n]))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += number * unit;
        rest = &rest[u..];
    }
    if total.is_finite() && total < MAX_DURATION_SECS {
        Ok(())
    } else {
        Err("too long".into())
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_go_duration(s)
            .map_err(|e| format!("{s:?} is not a duration like 90s, 15m or 1h30m ({e})"))?;
        let parsed: kube::core::Duration = s
            .parse()
            .map_err(|e| format!("{s:?} is not a duration like 90s, 15m or 1h30m ({e})"))?;
        Ok(Duration {
            negative: parsed.is_negative(),
            value: parsed.into(),
        })
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&fmt_duration(self.value))
    }
}

impl std::fmt::Debug for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

fn default_rotation_interval() -> Duration {
    StdDuration::from_secs(24 * 3600).into()
}

fn default_max_token_ttl() -> Duration {
    StdDuration::from_secs(3600).into()
}

fn default_clock_skew() -> Duration {
    StdDuration::from_secs(60).into()
}

fn default_max_keys() -> u32 {
    10
}

/// Lifecycle state of a key, as reported in status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum KeyStateName {
    /// Published, not signing yet.
    Pending,
    /// The one key that signs.
    Active,
    /// Verify only; pruned after `pruneAfter`.
    Retired,
}

/// Why the most recent rotation happened.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotationReasonName {
    /// The first key of the policy.
    Initial,
    /// `rotationInterval` elapsed.
    Scheduled,
    /// Requested with the `jwks.dev/rotate-requested-at` annotation.
    Manual,
    /// The active key was revoked.
    Revoked,
    /// `algorithm` or `keySize` changed.
    AlgorithmChange,
}

/// One key of the set, as reported in status. Never carries key material.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// RFC 7638 thumbprint of the key.
    pub kid: String,
    /// JWS algorithm of the key.
    pub alg: Algorithm,
    /// Pending, Active or Retired.
    pub state: KeyStateName,
    /// When the key was generated (and published).
    pub created_at: Time,
    /// When the key became, or will become, the active signer.
    pub activates_at: Time,
    /// When the key stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Time>,
    /// Earliest time the key is removed from the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_after: Option<Time>,
}

/// Observed state of a KeyRotationPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the set is published and a key signs) and `Degraded` (something
    /// needs attention; the reason says what).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
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
    /// Every key in the set, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
    /// Number of keys in the set (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u32>,
    /// When the active key last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// Why the active key last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_reason: Option<RotationReasonName>,
    /// When the next key becomes active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// The last handled value of the `jwks.dev/rotate-requested-at` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
    /// When a key was last removed by `revokedKeyIDs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revocation_time: Option<Time>,
    /// Until when a verifier that cached the JWK Set before the last
    /// revocation may still trust the revoked key: `lastRevocationTime` plus
    /// the longest a verifier keeps the set (`verifierRefreshInterval` when
    /// set, else the served `Cache-Control: max-age`). Verifiers that ignore
    /// `max-age` and refresh less often keep it longer; see
    /// docs/verifier-caches.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_exposure_until: Option<Time>,
    /// Name of the Secret holding the key set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// URL of the public JWK Set, when the operator knows its public base URL.
    #[serde(default, rename = "jwksURI", skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// One entry per `spec.publish[]` target: what the copy was last
    /// confirmed to hold, and the last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publication: Vec<PublicationStatus>,
}

/// A spec the operator cannot act on. The message is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct SpecError {
    /// Path of the offending field below `spec`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SpecError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        SpecError {
            field,
            message: message.into(),
        }
    }
}

fn non_negative(field: &'static str, d: &Duration) -> Result<StdDuration, SpecError> {
    if d.is_negative() {
        return Err(SpecError::new(
            field,
            format!("must not be negative (got {d})"),
        ));
    }
    Ok(StdDuration::from(*d))
}

// === impl KeyRotationPolicySpec ===

impl Default for KeyRotationPolicySpec {
    fn default() -> Self {
        KeyRotationPolicySpec {
            algorithm: Algorithm::default(),
            key_size: None,
            rotation_interval: default_rotation_interval(),
            publish_ahead: None,
            max_token_ttl: default_max_token_ttl(),
            clock_skew: default_clock_skew(),
            max_keys: default_max_keys(),
            secret_name: None,
            public_config_map: None,
            issuer: None,
            audiences: Vec::new(),
            revoked_key_ids: Vec::new(),
            rotate_on_revoke: false,
            token_endpoint: None,
            verifier_refresh_interval: None,
            publish: Vec::new(),
            key_provider: None,
        }
    }
}

impl KeyRotationPolicySpec {
    /// `publishAhead` as it applies: the explicit value, or
    /// `min(1h, rotationInterval / 4)`.
    pub fn effective_publish_ahead(&self) -> StdDuration {
        match &self.publish_ahead {
            Some(d) if !d.is_negative() => StdDuration::from(*d),
            Some(_) => StdDuration::ZERO,
            None => StdDuration::from(self.rotation_interval)
                .checked_div(4)
                .unwrap_or_default()
                .min(StdDuration::from_secs(3600)),
        }
    }

    /// The key parameters new keys are generated with.
    pub fn key_params(&self) -> Result<KeyParams, SpecError> {
        match (self.algorithm.is_rsa(), self.key_size) {
            (true, None) => Ok(KeyParams::rsa(self.algorithm, DEFAULT_RSA_BITS)),
            (true, Some(bits)) if RSA_KEY_SIZES.contains(&bits) => {
                Ok(KeyParams::rsa(self.algorithm, bits))
            }
            (true, Some(bits)) => Err(SpecError::new(
                "keySize",
                format!("{bits} is not supported; use 2048, 3072 or 4096"),
            )),
            (false, None) => Ok(KeyParams::new(self.algorithm)),
            (false, Some(_)) => Err(SpecError::new(
                "keySize",
                format!(
                    "applies only to RSA algorithms; remove it for {}",
                    self.algorithm
                ),
            )),
        }
    }

    /// Checks what the schema cannot and produces the planner's policy.
    ///
    /// `rotation_request` is the current value of the
    /// `jwks.dev/rotate-requested-at` annotation, if any.
    pub fn resolve(&self, rotation_request: Option<&str>) -> Result<Policy, SpecError> {
        let params = self.key_params()?;
        let rotation_interval = non_negative("rotationInterval", &self.rotation_interval)?;
        if rotation_interval < StdDuration::from_secs(1) {
            return Err(SpecError::new(
                "rotationInterval",
                format!("must be at least 1s (got {})", self.rotation_interval),
            ));
        }
        if let Some(d) = &self.publish_ahead {
            non_negative("publishAhead", d)?;
        }
        let publish_ahead = self.effective_publish_ahead();
        if publish_ahead >= rotation_interval {
            return Err(SpecError::new(
                "publishAhead",
                format!(
                    "must be shorter than rotationInterval ({} >= {})",
                    fmt_duration(publish_ahead),
                    fmt_duration(rotation_interval)
                ),
            ));
        }
        let max_token_ttl = non_negative("maxTokenTTL", &self.max_token_ttl)?;
        if max_token_ttl < StdDuration::from_secs(1) {
            return Err(SpecError::new("maxTokenTTL", "must be at least 1s"));
        }
        let clock_skew = non_negative("clockSkew", &self.clock_skew)?;
        if clock_skew > StdDuration::from_secs(3600) {
            return Err(SpecError::new("clockSkew", "must be at most 1h"));
        }
        for (field, name) in [
            ("secretName", &self.secret_name),
            ("publicConfigMap", &self.public_config_map),
        ] {
            if let Some(name) = name
                && !is_dns_subdomain(name)
            {
                return Err(SpecError::new(
                    field,
                    format!(
                        "{name:?} is not a valid object name (lowercase letters, digits, '-' and '.', at most 253)"
                    ),
                ));
            }
        }
        if !(2..=100).contains(&self.max_keys) {
            return Err(SpecError::new(
                "maxKeys",
                format!("must be between 2 and 100 (got {})", self.max_keys),
            ));
        }
        if let Some(issuer) = &self.issuer
            && !(issuer.starts_with("https://") || issuer.starts_with("http://"))
        {
            return Err(SpecError::new(
                "issuer",
                format!("{issuer:?} is not an http(s) URL"),
            ));
        }
        Ok(Policy {
            params,
            rotation_interval,
            publish_ahead,
            max_token_ttl,
            clock_skew,
            max_keys: self.max_keys as usize,
            revoked: self
                .revoked_key_ids
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
            rotation_request: rotation_request.map(str::to_owned),
            // Not a spec field: the operator's `--propagation-grace` replaces
            // it (it depends on the deployment, not on the policy).
            propagation_grace: keys::lifecycle::DEFAULT_PROPAGATION_GRACE,
            rotate_on_revoke: self.rotate_on_revoke,
            verifier_cache: self.verifier_cache(),
        })
    }

    /// The longest a verifier of this policy may keep a fetched set:
    /// `verifierRefreshInterval` when set (the served `max-age` never
    /// exceeds it), else the served `max-age`.
    pub fn verifier_cache(&self) -> StdDuration {
        match self.verifier_refresh_interval {
            Some(v) => StdDuration::from(v),
            None => StdDuration::from_secs(self.jwks_max_age()),
        }
    }

    /// Cache lifetime for the public set: at most half of `publishAhead`
    /// (so a verifier refreshes before a pre-published key starts signing),
    /// at most 300 s, and at most `verifierRefreshInterval` when set.
    pub fn jwks_max_age(&self) -> u64 {
        let max_age = (self.effective_publish_ahead().as_secs() / 2).min(300);
        match self.verifier_refresh_interval {
            Some(v) => max_age.min(StdDuration::from(v).as_secs()),
            None => max_age,
        }
    }
}

// === impl KeyRotationPolicy ===

impl KeyRotationPolicy {
    /// This policy's `namespace/name`; a missing namespace is
    /// [`DEFAULT_NAMESPACE`](crate::policy::DEFAULT_NAMESPACE).
    pub fn policy_ref(&self) -> PolicyRef {
        PolicyRef {
            namespace: self
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| policy::DEFAULT_NAMESPACE.to_string()),
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// What the HTTP servers need to know about this policy.
    pub fn info(&self) -> PolicyInfo {
        let spec = &self.spec;
        PolicyInfo {
            policy: self.policy_ref(),
            algorithm: spec.algorithm,
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            max_token_ttl: StdDuration::from(spec.max_token_ttl),
            clock_skew: StdDuration::from(spec.clock_skew),
            jwks_max_age: spec.jwks_max_age(),
            token_endpoint: self.token_endpoint_enabled(),
            lifecycle: spec.resolve(self.rotation_request()).ok(),
            revoked: spec.revoked_key_ids.iter().cloned().collect(),
            stale: None,
        }
    }

    /// Name of the Secret that holds this policy's key set.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-jwks", self.name_any()))
    }

    /// The pending manual-rotation request (annotation value), if any.
    pub fn rotation_request(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROTATE_ANNOTATION))
            .map(String::as_str)
    }

    /// Whether the token endpoints are enabled for this policy.
    pub fn token_endpoint_enabled(&self) -> bool {
        self.spec.token_endpoint.as_ref().is_some_and(|t| t.enabled)
    }
}

/// The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side
/// on `object` with the schema's defaults applied, as the API server does at
/// admission. Types and enums are enforced by deserializing into
/// [`KeyRotationPolicy`], ranges and name patterns by
/// [`KeyRotationPolicySpec::resolve`]; together they hold a standalone policy
/// file to the rules `kubectl apply` would enforce.
pub fn validate_like_apiserver(object: &serde_json::Value) -> Result<(), Vec<String>> {
    let crd = KeyRotationPolicy::crd();
    let Some(schema) = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return Err(vec!["the generated CRD has no schema".into()]);
    };
    let schema = match serde_json::to_value(schema) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("CRD schema does not serialize: {e}")]),
    };
    kube::core::cel::Validator::new()
        .validate(&schema, object, None)
        .map_err(|errs| {
            errs.into_vec()
                .into_iter()
                .map(|e| {
                    if e.field_path.is_empty() {
                        e.message
                    } else {
                        format!("{}: {}", e.field_path, e.message)
                    }
                })
                .collect()
        })
}

/// Formats a duration the way Go prints one (`1h30m0s`, `90s` → `1m30s`),
/// trimmed of zero-valued trailing units for readability (`1h30m`); a
/// fraction of a second keeps every digit down to the nanosecond, so the
/// text parses back to the same duration.
pub fn fmt_duration(d: StdDuration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let nanos = d.subsec_nanos();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || nanos > 0 || out.is_empty() {
        if nanos == 0 {
            out.push_str(&format!("{s}s"));
        } else if nanos.is_multiple_of(1_000_000) {
            out.push_str(&format!("{s}.{:03}s", nanos / 1_000_000));
        } else {
            // Every digit down to the nanosecond, so it parses back exactly.
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
        }
    }
    out
}

/// The CRD as YAML, exactly as `jwks-operator crd` prints it and as committed
/// in `crds/keyrotationpolicies.jwks.dev.yaml`.
pub fn crd_yaml() -> String {
    let crd = KeyRotationPolicy::crd();
    let body = yaml::to_string(&crd).unwrap_or_else(|e| format!("# error: {e}\n"));
    format!(
        "# Generated by `jwks-operator crd` from src/api.rs. Do not edit by hand:\n# regenerate with `cargo run -- crd > crds/keyrotationpolicies.jwks.dev.yaml`.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> KeyRotationPolicySpec {
        crate::yaml::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = spec("{}");
        assert_eq!(s.algorithm, Algorithm::RS256);
        let p = s.resolve(None).unwrap();
        assert_eq!(p.params, KeyParams::rsa(Algorithm::RS256, 2048));
        assert_eq!(p.rotation_interval, StdDuration::from_secs(86400));
        assert_eq!(p.publish_ahead, StdDuration::from_secs(3600));
        assert_eq!(p.max_token_ttl, StdDuration::from_secs(3600));
        assert_eq!(p.clock_skew, StdDuration::from_secs(60));
        assert_eq!(p.max_keys, 10);
        assert_eq!(s.jwks_max_age(), 300);
    }

    #[test]
    fn max_age_never_exceeds_the_verifier_refresh_interval() {
        assert_eq!(spec("rotationInterval: 24h").jwks_max_age(), 300);
        let s = spec("rotationInterval: 24h\nverifierRefreshInterval: 45s");
        assert_eq!(s.jwks_max_age(), 45);
        // The other bounds still hold when they are lower.
        let s = spec("rotationInterval: 20m\nverifierRefreshInterval: 1h");
        assert_eq!(s.jwks_max_age(), 150);
    }

    #[test]
    fn publish_ahead_defaults_to_a_quarter_of_short_intervals() {
        let s = spec("rotationInterval: 20m");
        assert_eq!(s.effective_publish_ahead(), StdDuration::from_secs(300));
        assert_eq!(s.jwks_max_age(), 150);
        let s = spec("rotationInterval: 8s");
        assert_eq!(s.effective_publish_ahead(), StdDuration::from_secs(2));
        assert_eq!(s.jwks_max_age(), 1);
    }

    #[test]
    fn go_durations_parse() {
        let s =
            spec("rotationInterval: 1h30m\nmaxTokenTTL: 90s\nclockSkew: 0s\npublishAhead: 1.5m");
        let p = s.resolve(None).unwrap();
        assert_eq!(p.rotation_interval, StdDuration::from_secs(5400));
        assert_eq!(p.max_token_ttl, StdDuration::from_secs(90));
        assert_eq!(p.clock_skew, StdDuration::ZERO);
        assert_eq!(p.publish_ahead, StdDuration::from_secs(90));
        let err =
            crate::yaml::from_str::<KeyRotationPolicySpec>("rotationInterval: soon").unwrap_err();
        assert!(err.to_string().contains("is not a duration"), "{err}");
        // Printed as a person writes it.
        let v = serde_json::to_value(spec("{}")).unwrap();
        assert_eq!(v["rotationInterval"], "24h");
        assert_eq!(v["maxTokenTTL"], "1h");
        assert_eq!(v["clockSkew"], "1m");
    }

    #[test]
    fn key_size_only_with_rsa() {
        assert_eq!(
            spec("algorithm: PS384\nkeySize: 4096")
                .resolve(None)
                .unwrap()
                .params,
            KeyParams::rsa(Algorithm::PS384, 4096)
        );
        let err = spec("algorithm: ES256\nkeySize: 2048")
            .resolve(None)
            .unwrap_err();
        assert_eq!(err.field, "keySize");
        let err = spec("keySize: 1024").resolve(None).unwrap_err();
        assert!(err.message.contains("2048, 3072 or 4096"), "{err}");
        assert_eq!(
            spec("algorithm: EdDSA").resolve(None).unwrap().params,
            KeyParams::new(Algorithm::EdDSA)
        );
    }

    #[test]
    fn operator_side_checks_name_the_field() {
        let cases = [
            ("rotationInterval: 10m\npublishAhead: 10m", "publishAhead"),
            ("rotationInterval: -1h", "rotationInterval"),
            ("rotationInterval: 500ms", "rotationInterval"),
            ("maxTokenTTL: 0s", "maxTokenTTL"),
            ("clockSkew: 2h", "clockSkew"),
            ("maxKeys: 1", "maxKeys"),
            ("issuer: ftp://x", "issuer"),
            ("publishAhead: -5m", "publishAhead"),
            ("secretName: Not_Valid", "secretName"),
            ("publicConfigMap: -x", "publicConfigMap"),
            ("maxKeys: 101", "maxKeys"),
        ];
        for (yaml, field) in cases {
            let err = spec(yaml).resolve(None).unwrap_err();
            assert_eq!(err.field, field, "{yaml}: {err}");
        }
    }

    #[test]
    fn spec_field_names_are_the_contract() {
        let s = spec(
            "algorithm: ES256\nrevokedKeyIDs: [a]\nmaxTokenTTL: 5m\ntokenEndpoint: {enabled: true}\npublicConfigMap: cm\nsecretName: s\naudiences: [x]\nissuer: https://i\nmaxKeys: 3\nclockSkew: 1s\npublishAhead: 1m\nrotationInterval: 1h",
        );
        assert_eq!(s.revoked_key_ids, vec!["a".to_string()]);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "algorithm",
            "revokedKeyIDs",
            "maxTokenTTL",
            "tokenEndpoint",
            "publicConfigMap",
            "secretName",
            "audiences",
            "issuer",
            "maxKeys",
            "clockSkew",
            "publishAhead",
            "rotationInterval",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
    }

    #[test]
    fn status_field_names_are_the_contract() {
        let st = KeyRotationPolicyStatus {
            active_key_id: Some("a".into()),
            next_key_id: Some("b".into()),
            jwks_uri: Some("http://x".into()),
            last_rotation_request: Some("r".into()),
            observed_generation: Some(1),
            ..Default::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        for key in [
            "activeKeyID",
            "nextKeyID",
            "jwksURI",
            "lastRotationRequest",
            "observedGeneration",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
    }

    #[test]
    fn go_style_duration_formatting() {
        assert_eq!(fmt_duration(StdDuration::from_secs(5400)), "1h30m");
        assert_eq!(fmt_duration(StdDuration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(StdDuration::ZERO), "0s");
        assert_eq!(fmt_duration(StdDuration::from_millis(1500)), "1.500s");
    }

    /// Found by the `duration` fuzz target: kube's parser panics on a sign
    /// inside the text and on magnitudes beyond `std::time::Duration`; hostile
    /// policy files must get an error instead.
    #[test]
    fn malformed_durations_are_errors_not_panics() {
        for text in [
            "1h-30ms0@m",
            "1h-30m",
            "1h+5m",
            "99999999999999999999h",
            "1e3s",
            "--1s",
            ".",
        ] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} parsed");
        }
        for text in ["-1m", "+90s", "1.5h", "0", "2h45m30.5s", "1µs", "1us"] {
            assert!(text.parse::<Duration>().is_ok(), "{text:?} refused");
        }
    }

    /// Found by the `duration` fuzz target: "1us" printed as "0s", so a
    /// duration below a millisecond (or with one) was lost in messages and
    /// in lifecycle.json's maxTokenTTL.
    #[test]
    fn formatting_keeps_every_nanosecond() {
        for d in [
            StdDuration::from_micros(1),
            StdDuration::from_nanos(100),
            StdDuration::from_nanos(1_500_000_001),
            StdDuration::new(5400, 250_000),
            StdDuration::new(3600 * 1000, 999_999_999),
        ] {
            let printed = fmt_duration(d);
            let back: Duration = printed.parse().unwrap();
            assert_eq!(StdDuration::from(back), d, "{d:?} printed as {printed}");
        }
        assert_eq!(fmt_duration(StdDuration::from_micros(1)), "0.000001s");
    }

    fn validate(yaml: &str) -> Result<(), Vec<String>> {
        let object: serde_json::Value = crate::yaml::from_str(yaml).unwrap();
        validate_like_apiserver(&object)
    }

    const HEAD: &str =
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {name: p}\n";

    #[test]
    fn cel_rules_accept_good_policies() {
        validate(&format!("{HEAD}spec: {{}}")).unwrap();
        validate(&format!(
            "{HEAD}spec: {{algorithm: PS256, keySize: 3072, rotationInterval: 1h30m, publishAhead: 10m, issuer: 'https://auth.example.com'}}"
        ))
        .unwrap();
        // verifierRefreshInterval + clockSkew fits in the (default) publishAhead.
        for spec in [
            "{rotationInterval: 24h, verifierRefreshInterval: 10m}",
            "{rotationInterval: 1h, publishAhead: 20m, clockSkew: 0s, verifierRefreshInterval: 20m}",
            "{rotationInterval: 44m, verifierRefreshInterval: 10m}",
        ] {
            validate(&format!("{HEAD}spec: {spec}")).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        }
        // Publication targets: every scheme; a bucket URL as the issuer.
        for spec in [
            "{publish: [{url: 's3://bucket/p'}, {url: 'az://cont'}, {url: 'azure://cont2/x/y'}, {url: 'gs://b.example'}, {url: 'file:///srv/jwks'}]}",
            "{issuer: 'https://bucket.s3.eu-west-1.amazonaws.com/cluster', publish: [{url: 's3://bucket/cluster', jwksPath: openid/v1/jwks, cacheControl: 'public, max-age=60'}]}",
            "{issuer: 'https://x.example/', publish: [{url: 's3://bucket', discovery: false}]}",
        ] {
            validate(&format!("{HEAD}spec: {spec}")).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        }
    }

    #[test]
    fn key_providers_parse_and_pass_the_cel_rules() {
        for spec in [
            "{keyProvider: {type: Secret}}",
            "{keyProvider: {type: PKCS11, module: /usr/lib/softhsm/libsofthsm2.so, tokenLabel: jwks, pinSecret: hsm-pin}}",
            "{algorithm: EdDSA, keyProvider: {type: PKCS11, module: /m.so, tokenLabel: jwks, pinFile: /etc/jwks/pin}}",
            "{algorithm: ES256, keyProvider: {type: AWSKMS, region: eu-west-1}}",
            "{algorithm: PS256, keyProvider: {type: AWSKMS, region: eu-west-1, credentialsSecret: kms, endpoint: 'http://127.0.0.1:4566'}}",
        ] {
            validate(&format!("{HEAD}spec: {spec}")).unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        }
        let s = spec("keyProvider: {type: PKCS11, module: /m.so, tokenLabel: t, pinSecret: p}");
        let provider = s.key_provider.unwrap();
        assert_eq!(provider.kind, KeyProviderType::Pkcs11);
        assert_eq!(provider.token_label.as_deref(), Some("t"));
        let v = serde_json::to_value(&provider).unwrap();
        for key in ["type", "module", "tokenLabel", "pinSecret"] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["type"], "PKCS11");
        let kms = spec(
            "keyProvider: {type: AWSKMS, region: r, credentialsSecret: c, endpoint: 'http://e'}",
        )
        .key_provider
        .unwrap();
        let v = serde_json::to_value(&kms).unwrap();
        assert_eq!(v["type"], "AWSKMS");
        for key in ["region", "credentialsSecret", "endpoint"] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        // Absent means the Secret provider, today's behaviour.
        assert_eq!(spec("{}").key_provider, None);
        spec("keyProvider: {type: Secret}").resolve(None).unwrap();
        assert_eq!(KeyProvider::default().kind, KeyProviderType::Secret);
    }

    #[test]
    fn key_provider_cel_rules_reject_what_a_provider_cannot_do() {
        let cases = [
            (
                "{algorithm: EdDSA, keyProvider: {type: AWSKMS, region: eu-west-1}}",
                "keyProvider AWSKMS cannot do EdDSA",
            ),
            (
                "{keyProvider: {type: PKCS11, tokenLabel: t, pinFile: /p}}",
                "keyProvider PKCS11 needs module",
            ),
            (
                "{keyProvider: {type: PKCS11, module: /m.so, pinFile: /p}}",
                "keyProvider PKCS11 needs module",
            ),
            (
                "{keyProvider: {type: PKCS11, module: /m.so, tokenLabel: t}}",
                "needs exactly one of pinSecret",
            ),
            (
                "{keyProvider: {type: PKCS11, module: /m.so, tokenLabel: t, pinSecret: s, pinFile: /p}}",
                "needs exactly one of pinSecret",
            ),
            (
                "{keyProvider: {type: PKCS11, module: m.so, tokenLabel: t, pinFile: /p}}",
                "module must be an absolute path",
            ),
            (
                "{keyProvider: {type: Secret, tokenLabel: t}}",
                "apply only to keyProvider type PKCS11",
            ),
            (
                "{keyProvider: {type: AWSKMS, region: r, module: /m.so}}",
                "apply only to keyProvider type PKCS11",
            ),
            (
                "{keyProvider: {type: AWSKMS}}",
                "keyProvider AWSKMS needs region",
            ),
            (
                "{keyProvider: {type: PKCS11, module: /m.so, tokenLabel: t, pinFile: /p, region: r}}",
                "apply only to keyProvider type AWSKMS",
            ),
            (
                "{keyProvider: {type: AWSKMS, region: r, endpoint: 'not a url'}}",
                "endpoint must be an http(s) URL",
            ),
        ];
        for (spec, needle) in cases {
            let errs = validate(&format!("{HEAD}spec: {spec}")).unwrap_err();
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{spec}: expected {needle:?} in {errs:?}"
            );
        }
    }

    /// The type is immutable: the API server checks it against the old
    /// object (a transition rule, which only an update has).
    #[test]
    fn key_provider_type_cannot_change() {
        let crd = serde_json::to_value(KeyRotationPolicy::crd()).unwrap();
        let rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["x-kubernetes-validations"]
            .as_array()
            .unwrap();
        let rule = rules
            .iter()
            .find(|r| {
                r["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("keyProvider.type, tokenLabel and region cannot be changed")
            })
            .expect("the immutability rule");
        assert!(
            rule["rule"]
                .as_str()
                .unwrap()
                .contains("oldSelf.keyProvider")
        );
        assert_eq!(rule["reason"], "FieldValueForbidden");
    }

    #[test]
    fn cel_rules_reject_with_a_message_a_user_understands() {
        let cases = [
            (
                "{algorithm: ES256, keySize: 2048}",
                "keySize applies only to RSA",
            ),
            (
                "{rotationInterval: 1h, publishAhead: 2h}",
                "publishAhead must be shorter",
            ),
            (
                "{rotationInterval: 10ms}",
                "rotationInterval must be a duration",
            ),
            ("{issuer: 'not a url'}", "issuer must be an http(s) URL"),
            ("{clockSkew: 3h}", "clockSkew must be a duration"),
            (
                "{verifierRefreshInterval: 0s}",
                "verifierRefreshInterval must be a duration",
            ),
            // The default publishAhead of 1h is a quarter of 4h: 15m < 20m + 1m.
            (
                "{rotationInterval: 1h, verifierRefreshInterval: 20m}",
                "must be at least verifierRefreshInterval + clockSkew",
            ),
            // A quarter of 43m is 10m45s < 10m + 1m (44m would do).
            (
                "{rotationInterval: 43m, verifierRefreshInterval: 10m}",
                "must be at least verifierRefreshInterval + clockSkew",
            ),
            // The default is capped at 1h.
            (
                "{rotationInterval: 24h, verifierRefreshInterval: 1h}",
                "must be at least verifierRefreshInterval + clockSkew",
            ),
            (
                "{rotationInterval: 24h, publishAhead: 5m, verifierRefreshInterval: 5m}",
                "must be at least verifierRefreshInterval + clockSkew",
            ),
            (
                "{publish: [{url: 'ftp://bucket/x'}]}",
                "url must be s3://bucket/prefix",
            ),
            (
                "{publish: [{url: 's3://B'}]}",
                "url must be s3://bucket/prefix",
            ),
            (
                "{publish: [{url: 's3://bucket'}, {url: 's3://bucket'}]}",
                "each publish[].url may appear only once",
            ),
            (
                "{publish: [{url: 's3://bucket', discovery: true}]}",
                "publish[].discovery needs spec.issuer",
            ),
            (
                "{issuer: 'https://bucket.example/', publish: [{url: 's3://bucket'}]}",
                "spec.issuer must not end with '/'",
            ),
        ];
        for (spec, needle) in cases {
            let errs = validate(&format!("{HEAD}spec: {spec}")).unwrap_err();
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{spec}: expected {needle:?} in {errs:?}"
            );
        }
    }
}
