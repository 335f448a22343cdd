//! The JWKS listener's hot route without warp.
//!
//! `GET /{namespace}/{name}/.well-known/jwks.json` is what every verifier
//! polls. Through warp, each such request paid for a clone of the whole
//! filter tree (hyper-util's `TowerToHyperService` clones its service per
//! request), the `Or` chain's futures, a `String` per header it looks at,
//! and the logging wrapper. [`JwksService`] answers that one route itself,
//! from the same handler ([`handlers::jwks_of`]) with the same counting and
//! logging ([`filters::record_answer`]), and hands every other request to
//! the warp routes unchanged.
//!
//! It takes only requests whose answer it knows is the route's: `GET` or
//! `HEAD`, a path of exactly four segments with a valid namespace and name
//! (no trailing slash: warp's rules for that stay warp's), and at most one
//! `If-None-Match`, of visible ASCII (warp answers 400 to anything else,
//! and reads several as one list). Everything else, including every error warp would
//! raise, goes to warp, so the two cannot answer the same request
//! differently.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Instant;

use futures::future::Either;
use warp::http::{HeaderMap, Method, Request, header};
use warp::reply::Response;

use super::filters::record_answer;
use super::handlers;
use super::snapshot::SharedState;
use crate::metrics::Listener;
use crate::names::{is_dns_label, is_dns_subdomain};
use crate::policy::PolicyRef;

const JWKS_SUFFIX: &str = "/.well-known/jwks.json";

/// The JWKS listener's service: the per-policy JWK Set route answered
/// directly, everything else by `fallback` (the warp routes).
#[derive(Clone, Debug)]
pub struct JwksService<W> {
    state: SharedState,
    fallback: W,
}

impl<W> JwksService<W> {
    /// Answers the JWK Set route from `state`, the rest with `fallback`,
    /// which must be [`super::jwks_routes`] over the same `state`.
    pub fn new(state: SharedState, fallback: W) -> Self {
        JwksService { state, fallback }
    }
}

impl<B, W> hyper::service::Service<Request<B>> for JwksService<W>
where
    W: hyper::service::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, W::Future>;

    fn call(&self, req: Request<B>) -> Self::Future {
        match answer(&self.state, req.method(), req.uri().path(), req.headers()) {
            Some(res) => Either::Left(ready(Ok(res))),
            None => Either::Right(self.fallback.call(req)),
        }
    }
}

/// The `{namespace}` and `{name}` of a JWK Set path, when the path is
/// exactly `/{namespace}/{name}/.well-known/jwks.json` with valid names.
fn jwks_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?.strip_suffix(JWKS_SUFFIX)?;
    let (namespace, name) = rest.split_once('/')?;
    (is_dns_label(namespace) && is_dns_subdomain(name)).then_some((namespace, name))
}

/// The answer to a request when it is the JWK Set route (counted and
/// logged like every answer of the warp routes); `None` for anything else.
pub fn answer(
    state: &SharedState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    // warp's log wrapper reads the clock twice per request; only the debug
    // line uses the result.
    let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (namespace, name) = jwks_path(path)?;
    // One If-None-Match of visible ASCII, or none; several (which warp
    // reads as one list, and refuses if any is not ASCII) go to warp.
    let mut values = headers.get_all(header::IF_NONE_MATCH).iter();
    let if_none_match = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(value), None) => Some(value.to_str().ok()?),
        (Some(_), Some(_)) => return None,
    };
    let policy = PolicyRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let res = handlers::jwks_of(state, &policy, if_none_match);
    record_answer(
        state.metrics(),
        Listener::Jwks,
        method,
        path,
        res.status().as_u16(),
        started.map(|t| t.elapsed()).unwrap_or_default(),
    );
    Some(res)
}
