//! Request handlers: plain functions from the shared state and the
//! already-extracted request parts to a response. Errors are answered here
//! as JSON ([`ApiError`]) rather than rejected, so the common path never
//! goes through warp's rejection machinery.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::errors::{ApiError, JSON, NO_STORE, json_bytes, json_response};
use super::models::{
    InvalidResponse, TokenResponse, VerifiedResponse, parse_token_request, parse_verify_request,
};
use super::snapshot::{Entry, PolicyView, SharedState};
use crate::keys::material::sign_off_workers;
use crate::keys::token::{TokenError, mint_token};
use crate::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::policy::{PolicyRef, PublicPolicySummary};

const JWK_SET: HeaderValue = HeaderValue::from_static("application/jwk-set+json");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

/// Whether an `If-None-Match` header value matches `etag` (a quoted strong
/// tag). Uses the weak comparison RFC 9110 prescribes for `If-None-Match`:
/// `W/"x"` matches `"x"`; `*` matches any current representation.
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// 200 with the pre-serialized body, or 304 when the client's copy is current.
/// Both carry `ETag` and `Cache-Control`; public documents may be read cross-origin.
fn cached_document(
    body: &Bytes,
    content_type: HeaderValue,
    etag: &HeaderValue,
    cache_control: &HeaderValue,
    if_none_match: Option<&str>,
) -> Response {
    let etag_str = etag.to_str().unwrap_or_default();
    let not_modified = if_none_match.is_some_and(|h| if_none_match_matches(h, etag_str));
    let mut res = if not_modified {
        let mut res = Response::new(Bytes::new().into());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        let mut res = Response::new(body.clone().into());
        res.headers_mut().insert(header::CONTENT_TYPE, content_type);
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    res
}

fn not_served(policy: &PolicyRef) -> ApiError {
    ApiError::not_found(format!("no policy {policy} is served here"))
}

/// The JWK Set of `policy`: 200, 304, 503 not ready or 404 (also the
/// JWKS listener's fast path, [`super::fast_path`]).
pub(crate) fn jwks_of(
    state: &SharedState,
    policy: &PolicyRef,
    if_none_match: Option<&str>,
) -> Response {
    match state.snapshot().get(policy) {
        Some(Entry::Serving(view)) => cached_document(
            view.jwks_bytes(),
            JWK_SET,
            view.etag_header(),
            view.cache_control(),
            if_none_match,
        ),
        Some(Entry::NotReady(summary)) => not_ready(state, policy, summary.degraded.as_ref()),
        None => not_served(policy).into_response(),
    }
}

fn not_ready(
    state: &SharedState,
    policy: &PolicyRef,
    problem: Option<&super::Problem>,
) -> Response {
    state.metrics().engine.inc_not_ready(policy);
    // The reason only: the message can hold API-server error text or file
    // paths, for the operator's eyes (the metrics listener's /policies).
    let message = match problem {
        Some(p) => format!(
            "policy {policy} has no published key set yet ({})",
            p.reason
        ),
        None => format!("policy {policy} has no published key set yet"),
    };
    ApiError::not_ready(message).into_response()
}

/// `GET /{namespace}/{name}/.well-known/jwks.json`.
pub fn jwks(state: &SharedState, policy: PolicyRef, if_none_match: Option<String>) -> Response {
    jwks_of(state, &policy, if_none_match.as_deref())
}

/// `GET /.well-known/jwks.json`: the default policy's set.
pub fn default_jwks(state: &SharedState, if_none_match: Option<String>) -> Response {
    match state.default_policy() {
        Some(policy) => jwks_of(state, policy, if_none_match.as_deref()),
        None => ApiError::not_found(
            "no default policy is configured (start the server with --default-policy <namespace>/<name>)",
        )
        .into_response(),
    }
}

/// `GET /{namespace}/{name}/.well-known/openid-configuration`.
pub fn discovery(
    state: &SharedState,
    policy: PolicyRef,
    if_none_match: Option<String>,
) -> Response {
    let no_issuer = || {
        ApiError::not_found(format!(
            "policy {policy} has no issuer, so it has no discovery document"
        ))
        .into_response()
    };
    match state.snapshot().get(&policy) {
        Some(Entry::Serving(view)) => match view.discovery() {
            Some((body, etag)) => cached_document(
                body,
                JSON,
                etag,
                view.cache_control(),
                if_none_match.as_deref(),
            ),
            None => no_issuer(),
        },
        Some(Entry::NotReady(summary)) if summary.issuer.is_some() => {
            not_ready(state, &policy, summary.degraded.as_ref())
        }
        Some(Entry::NotReady(_)) => no_issuer(),
        None => not_served(&policy).into_response(),
    }
}

/// `GET /policies` on the metrics listener: every known policy's full
/// summary (problem messages, token endpoints), sorted by namespace and name.
pub fn policies(state: &SharedState) -> Response {
    let snapshot = state.snapshot();
    json_response(StatusCode::OK, &snapshot.summaries())
}

/// `GET /policies` on the JWKS listener: the same list as [`policies`], each
/// entry cut to what a stranger may see ([`PublicPolicySummary`]).
pub fn public_policies(state: &SharedState) -> Response {
    let snapshot = state.snapshot();
    let public: Vec<_> = snapshot
        .summaries()
        .into_iter()
        .map(PublicPolicySummary::from)
        .collect();
    json_response(StatusCode::OK, &public)
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// `GET /healthz`: the process is up.
pub fn healthz() -> Response {
    json_bytes(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `GET /readyz`: 200 once the caches are synced, else 503.
pub fn readyz(state: &SharedState) -> Response {
    if state.is_ready() {
        json_response(StatusCode::OK, &Status { status: "ready" })
    } else {
        ApiError::not_ready("the policy caches are not synced yet").into_response()
    }
}

/// `GET /metrics`: OpenMetrics text.
pub fn metrics(state: &SharedState) -> Response {
    let mut res = Response::new(state.metrics().encode().into());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, NO_STORE);
    res
}

/// The token-enabled view of a policy, or the error to answer: 404 for an
/// unknown policy and for one without `tokenEndpoint.enabled` alike (the
/// token listener does not reveal which policies exist), 503 for an enabled
/// policy with nothing published yet.
pub fn token_policy(
    state: &SharedState,
    policy: PolicyRef,
) -> Result<std::sync::Arc<PolicyView>, ApiError> {
    match state.snapshot().get(&policy) {
        Some(Entry::Serving(view)) if view.token_endpoint_enabled() => Ok(view.clone()),
        Some(Entry::NotReady(summary)) if summary.token_endpoint => Err(ApiError::not_ready(
            format!("policy {policy} has no published key set yet"),
        )),
        _ => Err(not_served(&policy)),
    }
}

/// `POST /{namespace}/{name}/token`. A provider-held key signs on the
/// blocking pool ([`sign_off_workers`]), so a slow token or KMS never holds
/// an async worker.
pub async fn token(state: SharedState, view: Arc<PolicyView>, body: Bytes) -> Response {
    let view = &*view;
    let body = &body[..];
    let Some(side) = view.token_side() else {
        return not_served(view.policy()).into_response();
    };
    let req = match parse_token_request(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(signer) = &side.signer else {
        if let Some(why) = &side.stale {
            return ApiError::unavailable("key_set_stale", why.clone()).into_response();
        }
        if let Some(kid) = &side.withheld {
            return ApiError::key_revoked(format!(
                "the active key {kid} of policy {} is in spec.revokedKeyIDs and no fresh key is active yet; nothing signs until one is",
                view.policy()
            ))
            .into_response();
        }
        return ApiError::not_ready(format!("policy {} has no active key", view.policy()))
            .into_response();
    };
    let jti = match state.new_jti() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "cannot generate a jti");
            return ApiError::internal("cannot generate a token id").into_response();
        }
    };
    let (mint, now) = (side.mint.clone(), state.now());
    let minted = sign_off_workers(signer, move |key| mint_token(key, &req, &mint, now, &jti))
        .await
        .map_err(TokenError::Signing)
        .and_then(|minted| minted);
    let remote = signer.is_remote();
    match minted {
        Ok(minted) => {
            if remote && state.provider_signed(view.policy()) {
                tracing::info!(policy = %view.policy(), "the key provider signs tokens again");
            }
            json_response(
                StatusCode::OK,
                &TokenResponse {
                    token: &minted.token,
                    kid: &minted.kid,
                    expires_at: minted.expires_at,
                },
            )
        }
        Err(e) if e.is_client_error() => {
            ApiError::bad_request(e.code(), e.to_string()).into_response()
        }
        Err(e) if remote => {
            // The provider (a token, a KMS) is down or refuses: neither the
            // client's fault nor a bug here. Logged once per burst.
            if state.provider_failed(view.policy()) {
                tracing::warn!(policy = %view.policy(), error = %e, "the key provider cannot sign tokens; answering 503 key_provider_unavailable until it can");
            }
            ApiError::unavailable(
                "key_provider_unavailable",
                format!(
                    "the key provider of policy {} cannot sign now; retry later",
                    view.policy()
                ),
            )
            .into_response()
        }
        Err(e) => {
            tracing::error!(policy = %view.policy(), error = %e, "signing failed");
            ApiError::internal("the token could not be signed").into_response()
        }
    }
}

/// `POST /{namespace}/{name}/verify`: 200 `{"valid":true,...}` or 401
/// `{"valid":false,"error":<code>,"message":...}`.
pub fn verify(state: &SharedState, view: &PolicyView, body: &[u8]) -> Response {
    let Some(side) = view.token_side() else {
        return not_served(view.policy()).into_response();
    };
    let token = match parse_verify_request(body) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match side.verifier.verify(&token, &side.expect, state.now()) {
        Ok(v) => json_response(
            StatusCode::OK,
            &VerifiedResponse {
                valid: true,
                kid: &v.kid,
                claims: &v.claims,
            },
        ),
        Err(e) => {
            let message = e.to_string();
            let mut res = json_response(
                StatusCode::UNAUTHORIZED,
                &InvalidResponse {
                    valid: false,
                    error: e.code(),
                    message: &message,
                },
            );
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            res
        }
    }
}
