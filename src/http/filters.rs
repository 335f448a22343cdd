//! The warp filters: which path and method reach which handler. The two
//! route sets built here are what the binary serves and what the tests call
//! through `warp::test`.
//!
//! Routing rules:
//! - Paths are matched segment by segment, without percent-decoding (a
//!   single trailing slash and any query string are ignored, as warp does;
//!   nothing is ever a redirect).
//!   `{namespace}` must be a DNS label and `{name}` a DNS subdomain, so
//!   `..`, `%2e%2e`, upper case or overlong segments never match: 404.
//! - A known path with a method it does not serve is 405 with `Allow`; every
//!   `GET` route also answers `HEAD`.
//! - Request bodies (token listener only) are capped at [`BODY_LIMIT`]
//!   before anything is parsed: a larger `Content-Length` is refused at
//!   once, and a body without one (chunked) is read only up to the limit.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::auth::BearerToken;
use super::errors::{ApiError, handle_rejection};
use super::handlers;
use super::snapshot::SharedState;
use crate::metrics;
use crate::metrics::{Listener, RouteClass};
use crate::names::{is_dns_label, is_dns_subdomain};
use crate::policy::PolicyRef;

/// Largest request body accepted (64 KiB); larger is 413.
pub const BODY_LIMIT: u64 = 64 * 1024;

/// A `{namespace}` path segment: a valid namespace name.
#[derive(Debug)]
pub struct Namespace(String);

impl FromStr for Namespace {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if is_dns_label(s) {
            Ok(Namespace(s.to_owned()))
        } else {
            Err(())
        }
    }
}

/// A `{name}` path segment: a valid policy name.
#[derive(Debug)]
pub struct Name(String);

impl FromStr for Name {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if is_dns_subdomain(s) {
            Ok(Name(s.to_owned()))
        } else {
            Err(())
        }
    }
}

fn policy_ref(ns: Namespace, name: Name) -> PolicyRef {
    PolicyRef {
        namespace: ns.0,
        name: name.0,
    }
}

const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

/// Passes the listed methods; any other is 405 with `Allow: allow`. Used
/// after a path filter, so only known paths answer 405.
fn allow(
    methods: &'static [Method],
    allow: &'static str,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(move |m: Method| {
            let ok = methods.contains(&m);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::custom(ApiError::method_not_allowed(allow)))
                }
            }
        })
        .untuple_one()
}

fn get() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    allow(GET_HEAD, "GET, HEAD")
}

fn if_none_match() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("if-none-match")
}

/// Whether a `Content-Type` is JSON: `application/json` or `application/*+json`,
/// parameters (`; charset=utf-8`) ignored.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let structured_json = essence
        .get(..12)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
        && essence.to_ascii_lowercase().ends_with("+json");
    essence.eq_ignore_ascii_case("application/json") || structured_json
}

async fn read_limited<S, B>(stream: S) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let read_error = |e: warp::Error| {
        warp::reject::custom(ApiError::bad_request(
            "body_read_error",
            format!("the request body could not be read: {e}"),
        ))
    };
    let too_large = || warp::reject::custom(ApiError::payload_too_large(BODY_LIMIT));
    let mut stream = std::pin::pin!(stream);
    // A small body usually arrives in one chunk: keep it without copying.
    let mut first = match stream.next().await {
        None => return Ok(Bytes::new()),
        Some(chunk) => chunk.map_err(read_error)?,
    };
    if first.remaining() as u64 > BODY_LIMIT {
        return Err(too_large());
    }
    let Some(second) = stream.next().await else {
        return Ok(first.copy_to_bytes(first.remaining()));
    };
    let mut body = BytesMut::new();
    body.put(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        let chunk = chunk.map_err(read_error)?;
        if (body.len() + chunk.remaining()) as u64 > BODY_LIMIT {
            return Err(too_large());
        }
        body.put(chunk);
        next = stream.next().await;
    }
    Ok(body.freeze())
}

/// The raw request body, at most [`BODY_LIMIT`] bytes, sent as JSON (or
/// without a `Content-Type`): 413 if larger, 415 for another media type.
pub fn json_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(n) if n > BODY_LIMIT => Err(warp::reject::custom(
                    ApiError::payload_too_large(BODY_LIMIT),
                )),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("content-type"))
        .and_then(|ct: Option<String>| async move {
            if ct.as_deref().is_none_or(is_json_content_type) {
                Ok(())
            } else {
                Err(warp::reject::custom(ApiError::unsupported_media_type()))
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(read_limited)
}

/// Counts every answer (after the rejection handler, so errors count too)
/// and logs it at debug level.
fn observe(
    metrics: std::sync::Arc<metrics::Metrics>,
    listener: Listener,
) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone + Send> {
    warp::log::custom(move |info: warp::log::Info<'_>| {
        record_answer(
            &metrics,
            listener,
            info.method(),
            info.path(),
            info.status().as_u16(),
            info.elapsed(),
        );
    })
}

/// What [`observe`] does with one answer: count it, log it at debug level.
/// Shared with the JWKS listener's fast path ([`super::fast_path`]).
pub(crate) fn record_answer(
    metrics: &metrics::Metrics,
    listener: Listener,
    method: &Method,
    path: &str,
    status: u16,
    elapsed: std::time::Duration,
) {
    metrics
        .http
        .record_http(listener, RouteClass::of_path(path), status);
    tracing::debug!(
        listener = listener.as_str(),
        method = %method,
        path,
        status,
        elapsed_us = elapsed.as_micros() as u64,
        "request"
    );
}

/// What the JWKS listener serves besides the public documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwksOptions {
    /// Serve `GET /metrics` (`--metrics-on-jwks-listener`; default on).
    pub metrics: bool,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions { metrics: true }
    }
}

/// The JWKS listener with the default [`JwksOptions`].
pub fn jwks_routes(
    state: SharedState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    jwks_routes_with(state, JwksOptions::default())
}

/// The JWKS listener: per-policy JWK Sets and discovery documents, the
/// default policy's set, the public `/policies` summary
/// ([`handlers::public_policies`]), `/healthz`, `/readyz` and (unless
/// `options` turn it off) `/metrics`, with every error answered as JSON.
/// Never serves the token endpoints.
pub fn jwks_routes_with(
    state: SharedState,
    options: JwksOptions,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let s = state.clone();
    // The hot path first.
    let jwks = warp::path!(Namespace / Name / ".well-known" / "jwks.json")
        .and(get())
        .and(if_none_match())
        .map(move |ns, name, inm| handlers::jwks(&s, policy_ref(ns, name), inm));
    let s = state.clone();
    let default_jwks = warp::path!(".well-known" / "jwks.json")
        .and(get())
        .and(if_none_match())
        .map(move |inm| handlers::default_jwks(&s, inm));
    let s = state.clone();
    let discovery = warp::path!(Namespace / Name / ".well-known" / "openid-configuration")
        .and(get())
        .and(if_none_match())
        .map(move |ns, name, inm| handlers::discovery(&s, policy_ref(ns, name), inm));
    let s = state.clone();
    let policies = warp::path!("policies")
        .and(get())
        .map(move || handlers::public_policies(&s));

    jwks.or(default_jwks)
        .unify()
        .or(discovery)
        .unify()
        .or(policies)
        .unify()
        .or(ops(&state, options.metrics))
        .unify()
        .recover(handle_rejection)
        .unify()
        .with(observe(state.metrics_arc(), Listener::Jwks))
}

/// Passes when `on`; otherwise the route does not exist (404).
fn served_if(on: bool) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::any()
        .and_then(move || async move {
            if on {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// `/healthz`, `/readyz` and (when `metrics`) `/metrics`, without error
/// handling.
fn ops(
    state: &SharedState,
    metrics: bool,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let healthz = warp::path!("healthz").and(get()).map(handlers::healthz);
    let s = state.clone();
    let readyz = warp::path!("readyz")
        .and(get())
        .map(move || handlers::readyz(&s));
    let s = state.clone();
    let metrics = warp::path!("metrics")
        .and(served_if(metrics))
        .and(get())
        .map(move || handlers::metrics(&s));
    healthz.or(readyz).unify().or(metrics).unify()
}

/// A listener for probes, scraping and operators (`--metrics-addr`):
/// `/healthz`, `/readyz`, `/metrics` and the full `/policies` (problem
/// messages, token endpoints: [`handlers::policies`]), JSON errors. Keep it
/// off the public network.
pub fn metrics_routes(
    state: SharedState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let s = state.clone();
    let policies = warp::path!("policies")
        .and(get())
        .map(move || handlers::policies(&s));
    ops(&state, true)
        .or(policies)
        .unify()
        .recover(handle_rejection)
        .unify()
        .with(observe(state.metrics_arc(), Listener::Metrics))
}

/// The token listener without a bearer token ([`token_routes_with`]); for
/// a loopback listener, or one whose clients present certificates.
pub fn token_routes(
    state: SharedState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    token_routes_with(state, None)
}

/// Passes a request whose `Authorization` carries `bearer`'s token (every
/// request when `None`); any other is rejected 401 before routing, so an
/// unauthenticated client learns nothing about the policies.
fn authorized(
    bearer: Option<Arc<BearerToken>>,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    // A header that is not visible ASCII counts as absent: 401, not 400.
    warp::header::optional::<String>("authorization")
        .or(warp::any().map(|| None::<String>))
        .unify()
        .and_then(move |authorization: Option<String>| {
            let ok = bearer
                .as_ref()
                .is_none_or(|b| b.accepts(authorization.as_deref().map(str::as_bytes)));
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::custom(ApiError::unauthorized()))
                }
            }
        })
        .untuple_one()
}

/// The token listener: `POST /{namespace}/{name}/token` and `.../verify`
/// for policies with `tokenEndpoint.enabled`, with every error answered as
/// JSON. Everything else is 404. With `bearer`, a request without its token
/// is 401 `unauthorized` (`WWW-Authenticate: Bearer`), whatever its path.
pub fn token_routes_with(
    state: SharedState,
    bearer: Option<Arc<BearerToken>>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let lookup = {
        let s = state.clone();
        move |ns: Namespace, name: Name| {
            let found = handlers::token_policy(&s, policy_ref(ns, name));
            async move { found.map_err(warp::reject::custom) }
        }
    };
    let s = state.clone();
    let token = warp::path!(Namespace / Name / "token")
        .and(allow(POST, "POST"))
        .and_then(lookup.clone())
        .and(json_body())
        .then(move |view: std::sync::Arc<_>, body: Bytes| handlers::token(s.clone(), view, body));
    let s = state.clone();
    let verify = warp::path!(Namespace / Name / "verify")
        .and(allow(POST, "POST"))
        .and_then(lookup)
        .and(json_body())
        .map(move |view: std::sync::Arc<_>, body: Bytes| handlers::verify(&s, &view, &body));

    authorized(bearer)
        .and(token.or(verify).unify())
        .recover(handle_rejection)
        .unify()
        .with(observe(state.metrics_arc(), Listener::Token))
}
