// Over 600 lines on purpose: the HTTP routes' tests through warp::test, one per rule of
// the API, sharing one fixture.

//! Route tests through `warp::test` (no sockets, except the two tests that
//! need a real connection: chunked bodies and graceful shutdown), and the
//! bad-input battery against the token listener and the JWKS routes.
//!
//! Every response passes through [`send`], which checks the invariants that
//! hold for all of them: errors are JSON `{"error","message"}`, and no JSON
//! document anywhere carries a private JWK member.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};
use warp::http::{HeaderValue, Response};
use warp::test::RequestBuilder;
use warp::{Filter, Reply};

use super::*;
use crate::api::KeyRotationPolicy;
use crate::keys::lifecycle::{KeySet, plan};
use crate::keys::material::RngKeySource;
use crate::keys::material::SigningKey;
use crate::keys::token::{MintSettings, TokenRequest, mint, mint_token};
use crate::keys::{Algorithm, KeyParams};
use crate::metrics::Metrics;
use crate::store::testing::kids_of;

// === fixtures ===

const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

/// The fixed "now" of the token listener: 55 minutes into the first key's life.
fn now() -> Timestamp {
    at(55 * 60)
}

const JTI: &str = "test-jti-0001";
const ISSUER: &str = "https://auth.example.com/team-a/api";
const BASE_URL: &str = "https://jwks.example.com/";

fn policy(ns: &str, name: &str, spec: &str) -> KeyRotationPolicy {
    let doc = format!(
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}"
    );
    crate::yaml::from_str(&doc).expect("test policy parses")
}

/// Runs the real planner at each offset (seconds after T0) with a seeded generator.
fn plan_at(
    policy: &KeyRotationPolicy,
    set: KeySet<Arc<SigningKey>>,
    seed: u64,
    offsets: &[i64],
) -> KeySet<Arc<SigningKey>> {
    let p = policy.spec.resolve(None).expect("test policy resolves");
    let mut source = RngKeySource(ChaCha20Rng::seed_from_u64(seed));
    offsets.iter().fold(set, |set, t| {
        plan(&p, &set, at(*t), &mut source)
            .expect("planning succeeds")
            .keys
    })
}

/// `team-a/api`: ES256 with an issuer, an audience and the token endpoint;
/// planned at 0 and 50 min, so one key signs and the next is pre-published.
fn api_policy() -> KeyRotationPolicy {
    policy(
        "team-a",
        "api",
        &format!(
            "{{algorithm: ES256, rotationInterval: 1h, publishAhead: 10m, maxTokenTTL: 10m, clockSkew: 30s, issuer: '{ISSUER}', audiences: [orders], tokenEndpoint: {{enabled: true}}}}"
        ),
    )
}

/// `team-a/plain`: EdDSA, no issuer, token endpoint off, default timings.
fn plain_policy() -> KeyRotationPolicy {
    policy("team-a", "plain", "{algorithm: EdDSA}")
}

/// `team-b/fast`: a short publishAhead, so a short max-age.
fn fast_policy() -> KeyRotationPolicy {
    policy(
        "team-b",
        "fast",
        "{algorithm: EdDSA, rotationInterval: 1m, publishAhead: 10s}",
    )
}

/// `team-b/mixed`: keys made as ES256, then the policy moved to EdDSA; the
/// pre-published key is EdDSA, the active one still ES256.
fn mixed_policy() -> (KeyRotationPolicy, KeySet<Arc<SigningKey>>) {
    let spec = "rotationInterval: 1h, publishAhead: 10m, issuer: 'https://auth.example.com/mixed/'";
    let before = policy("team-b", "mixed", &format!("{{algorithm: ES256, {spec}}}"));
    let after = policy("team-b", "mixed", &format!("{{algorithm: EdDSA, {spec}}}"));
    let set = plan_at(&before, KeySet::default(), 4, &[0]);
    let set = plan_at(&after, set, 5, &[50 * 60]);
    (after, set)
}

pub(super) struct Fixture {
    pub(super) state: SharedState,
    api: Arc<PolicyView>,
    api_keys: KeySet<Arc<SigningKey>>,
    jwks: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    token: warp::filters::BoxedFilter<(warp::reply::Response,)>,
}

fn boxed<F, R>(f: F) -> warp::filters::BoxedFilter<(warp::reply::Response,)>
where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    f.map(Reply::into_response).boxed()
}

/// Four policies (`team-a/api` mints tokens) served from one state.
pub(super) fn fixture() -> Fixture {
    let metrics = Arc::new(Metrics::new());
    let state = SharedState::new(Some(PolicyRef::new("team-a", "api")), metrics)
        .with_clock(now)
        .with_jti_source(|| Ok(JTI.to_string()));
    let api = api_policy();
    let api_keys = plan_at(&api, KeySet::default(), 1, &[0, 50 * 60]);
    let plain = plain_policy();
    let fast = fast_policy();
    let (mixed, mixed_keys) = mixed_policy();
    state.upsert_all([
        PolicyView::build(&api.info(), &api_keys, Some(BASE_URL)),
        PolicyView::build(
            &plain.info(),
            &plan_at(&plain, KeySet::default(), 2, &[0]),
            None,
        ),
        PolicyView::build(
            &fast.info(),
            &plan_at(&fast, KeySet::default(), 3, &[0]),
            None,
        ),
        PolicyView::build(&mixed.info(), &mixed_keys, None),
    ]);
    state.set_ready(true);
    let api = state.view(&PolicyRef::new("team-a", "api")).unwrap();
    Fixture {
        jwks: boxed(jwks_routes(state.clone())),
        token: boxed(token_routes(state.clone())),
        state,
        api,
        api_keys,
    }
}

// === helpers ===

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

fn assert_no_private_members(v: &Value, context: &str) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                assert!(
                    !PRIVATE_MEMBERS.contains(&k.as_str()),
                    "{context}: private member {k:?} in a response"
                );
                assert_no_private_members(v, context);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| assert_no_private_members(v, context)),
        _ => {}
    }
}

/// Sends a request and checks what holds for every answer.
async fn send(
    routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
    req: RequestBuilder,
) -> Response<Bytes> {
    let res = req.reply(routes).await;
    let context = format!("{} {:?}", res.status(), String::from_utf8_lossy(res.body()));
    if let Ok(v) = serde_json::from_slice::<Value>(res.body()) {
        assert_no_private_members(&v, &context);
    }
    if res.status().is_client_error() || res.status().is_server_error() {
        assert_eq!(
            res.headers()["content-type"],
            "application/json",
            "{context}"
        );
        let v: Value = serde_json::from_slice(res.body()).expect("error bodies are JSON");
        assert!(v["error"].is_string(), "{context}");
        assert!(v["message"].is_string(), "{context}");
    }
    res
}

fn get(path: &str) -> RequestBuilder {
    warp::test::request().method("GET").path(path)
}

fn post_json(path: &str, body: impl AsRef<[u8]>) -> RequestBuilder {
    warp::test::request()
        .method("POST")
        .path(path)
        .header("content-type", "application/json")
        .body(body)
}

fn body_json(res: &Response<Bytes>) -> Value {
    serde_json::from_slice(res.body()).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {:?}",
            res.status(),
            String::from_utf8_lossy(res.body())
        )
    })
}

fn error_code(res: &Response<Bytes>) -> String {
    body_json(res)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const API_JWKS: &str = "/team-a/api/.well-known/jwks.json";
const API_DISCOVERY: &str = "/team-a/api/.well-known/openid-configuration";
const API_TOKEN: &str = "/team-a/api/token";
const API_VERIFY: &str = "/team-a/api/verify";

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn decode_segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

/// Asserts that the fixture's metrics hold the sample line `sample`.
fn assert_metrics_show(f: &Fixture, sample: &str) {
    let text = f.state.metrics().encode();
    assert!(text.contains(sample), "no {sample:?} in:\n{text}");
}

async fn mint_via_api(f: &Fixture, body: Value) -> String {
    let res = send(&f.token, post_json(API_TOKEN, body.to_string())).await;
    assert_eq!(res.status(), 200, "{:?}", res.body());
    body_json(&res)["token"].as_str().unwrap().to_string()
}

async fn verify_via_api(f: &Fixture, token: &str) -> Response<Bytes> {
    send(
        &f.token,
        post_json(API_VERIFY, json!({ "token": token }).to_string()),
    )
    .await
}

// === JWKS listener ===

#[tokio::test]
async fn jwks_is_served_with_the_contract_headers() {
    let f = fixture();
    let res = send(&f.jwks, get(API_JWKS)).await;
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["content-type"], "application/jwk-set+json");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    assert_eq!(etag, strong_etag(res.body()));
    assert_eq!(etag, f.api.etag());
    assert_eq!(res.body(), f.api.jwks_bytes());

    let doc = body_json(&res);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "active and pre-published keys");
    let kids: Vec<&str> = f.api_keys.keys.iter().map(|k| k.kid()).collect();
    for (jwk, kid) in keys.iter().zip(kids) {
        assert_eq!(jwk["kid"], kid, "newest first, like the set");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kty"], "EC");
    }
}

#[tokio::test]
async fn max_age_is_half_the_publish_ahead_capped_at_300() {
    let f = fixture();
    let res = send(&f.jwks, get("/team-b/fast/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "public, max-age=5");
    let res = send(&f.jwks, get("/team-a/plain/.well-known/jwks.json")).await;
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    assert_eq!(f.api.max_age(), api_policy().spec.jwks_max_age());
}

#[tokio::test]
async fn if_none_match_answers_304_for_every_matching_form() {
    let f = fixture();
    let etag = f.api.etag().to_string();
    for header in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        format!("\"a\",W/{etag} , \"b\""),
        "*".to_string(),
    ] {
        for method in ["GET", "HEAD"] {
            let res = send(
                &f.jwks,
                warp::test::request()
                    .method(method)
                    .path(API_JWKS)
                    .header("if-none-match", header.as_str()),
            )
            .await;
            assert_eq!(res.status(), 304, "{method} If-None-Match: {header}");
            assert_eq!(res.headers()["etag"], etag.as_str());
            assert_eq!(res.headers()["cache-control"], "public, max-age=300");
            assert!(res.body().is_empty());
        }
    }
    for header in ["\"stale\"", "W/\"stale\", \"older\"", ""] {
        let res = send(&f.jwks, get(API_JWKS).header("if-none-match", header)).await;
        assert_eq!(res.status(), 200, "If-None-Match: {header}");
        assert_eq!(res.body(), f.api.jwks_bytes());
    }
    assert_metrics_show(
        &f,
        "jwks_operator_http_not_modified_total{route=\"jwks\"} 10",
    );
}

/// The JWKS listener's fast path ([`fast_path`]) answers each request it
/// takes exactly as the warp routes do (status, every header, body, and the
/// counters), takes every plain JWK Set request, and leaves everything else
/// to warp. Two identical fixtures: one answers through the fast path (and
/// warp for what it declines, as the listener does), one through warp alone.
#[tokio::test]
async fn the_fast_path_answers_exactly_like_the_warp_routes() {
    let fast = fixture();
    let slow = fixture();
    let broken = policy("team-c", "broken", "{algorithm: ES256}");
    for f in [&fast, &slow] {
        f.state.set_problem(
            &PolicyRef::new("team-c", "broken"),
            PolicySummary::for_policy(&broken.info()),
            Some(Problem::new("KeySetUnreadable", "does not parse")),
        );
    }
    let etag = fast.api.etag().to_string();
    assert_eq!(etag, slow.api.etag(), "the fixtures are identical");
    // The requests the fast path must take.
    let canonical = [
        API_JWKS,
        "/team-b/fast/.well-known/jwks.json",
        "/team-a/plain/.well-known/jwks.json",
        "/team-c/broken/.well-known/jwks.json",
        "/team-a/nope/.well-known/jwks.json",
        "/nope/api/.well-known/jwks.json",
        "/team-a/a.b/.well-known/jwks.json",
        // The query is not part of the path (warp ignores it too).
        "/team-a/api/.well-known/jwks.json?x=1",
    ];
    let long = "x".repeat(300);
    let long_ns = format!("/{}/api/.well-known/jwks.json", "n".repeat(64));
    let long_name = format!("/team-a/{long}/.well-known/jwks.json");
    let others = [
        "/team-a/api/.well-known/jwks.json/",
        "//team-a/api/.well-known/jwks.json",
        "/team-a//api/.well-known/jwks.json",
        "/team-a/api/../api/.well-known/jwks.json",
        "/%74eam-a/api/.well-known/jwks.json",
        "/Team-a/api/.well-known/jwks.json",
        "/team-a/a.b./.well-known/jwks.json",
        "/team.a/api/.well-known/jwks.json",
        "/x/team-a/api/.well-known/jwks.json",
        "/api/.well-known/jwks.json",
        long_ns.as_str(),
        long_name.as_str(),
        "/.well-known/jwks.json",
        API_DISCOVERY,
        "/policies",
        "/healthz",
        "/readyz",
        "/nope",
    ];
    let if_none_match: Vec<Option<HeaderValue>> = vec![
        None,
        Some(HeaderValue::from_str(&etag).unwrap()),
        Some(HeaderValue::from_str(&format!("W/{etag}")).unwrap()),
        Some(HeaderValue::from_static("*")),
        Some(HeaderValue::from_static("\"stale\"")),
        Some(HeaderValue::from_static("")),
        Some(HeaderValue::from_bytes(b"\"caf\xc3\xa9\"").unwrap()),
    ];
    let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];
    let mut taken = 0;
    for path in canonical.iter().chain(others.iter()) {
        for method in methods {
            for inm in &if_none_match {
                let request = || {
                    let req = warp::test::request().method(method).path(path);
                    match inm {
                        Some(v) => req.header("if-none-match", v.clone()),
                        None => req,
                    }
                };
                let context = format!("{method} {path} If-None-Match: {inm:?}");
                let mut headers = warp::http::HeaderMap::new();
                if let Some(v) = inm {
                    headers.insert("if-none-match", v.clone());
                }
                let uri: warp::http::Uri = path.parse().unwrap();
                let method_value: warp::http::Method = method.parse().unwrap();
                let expected = send(&slow.jwks, request()).await;
                let Some(answer) =
                    fast_path::answer(&fast.state, &method_value, uri.path(), &headers)
                else {
                    let must_take = canonical.contains(path)
                        && matches!(method, "GET" | "HEAD")
                        && inm.as_ref().is_none_or(|v| v.to_str().is_ok());
                    assert!(!must_take, "the fast path declined {context}");
                    // The listener hands it to warp.
                    send(&fast.jwks, request()).await;
                    continue;
                };
                taken += 1;
                assert_eq!(answer.status(), expected.status(), "{context}");
                assert_eq!(answer.headers(), expected.headers(), "{context}");
                let body = http_body_util::BodyExt::collect(answer.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                assert_eq!(body, expected.body(), "{context}");
            }
        }
    }
    // GET and HEAD, each of the canonical paths, every ASCII If-None-Match.
    assert_eq!(taken, canonical.len() * 2 * (if_none_match.len() - 1));
    // Sorted: the per-policy series come in hash order.
    let counters = |f: &Fixture| -> Vec<String> {
        let mut lines: Vec<String> = f
            .state
            .metrics()
            .encode()
            .lines()
            .filter(|l| !l.starts_with('#') && (l.contains("http_") || l.contains("not_ready")))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let counted = counters(&fast);
    assert!(
        counted.iter().any(|l| l.contains("route=\"jwks\"")),
        "{counted:?}"
    );
    assert_eq!(counted, counters(&slow));
}

#[tokio::test]
async fn several_if_none_match_headers_are_left_to_warp() {
    // Found by the http_routes fuzz target: the fast path read only the
    // first value and answered 404 where warp refuses the list with 400.
    let f = fixture();
    let mut headers = warp::http::HeaderMap::new();
    headers.append("if-none-match", HeaderValue::from_static("\"x\""));
    headers.append(
        "if-none-match",
        HeaderValue::from_bytes(b"\"y\xff\"").unwrap(),
    );
    let uri: warp::http::Uri = API_JWKS.parse().unwrap();
    let taken = fast_path::answer(&f.state, &warp::http::Method::GET, uri.path(), &headers);
    assert!(
        taken.is_none(),
        "the fast path answered a list of If-None-Match"
    );
    let warp = send(
        &f.jwks,
        warp::test::request()
            .path(API_JWKS)
            .header("if-none-match", "\"x\"")
            .header(
                "if-none-match",
                HeaderValue::from_bytes(b"\"y\xff\"").unwrap(),
            ),
    )
    .await;
    assert_eq!(warp.status(), 400);
}

/// Every GET route of the JWKS listener.
const JWKS_LISTENER_PATHS: [&str; 7] = [
    API_JWKS,
    API_DISCOVERY,
    "/.well-known/jwks.json",
    "/policies",
    "/healthz",
    "/readyz",
    "/metrics",
];

#[tokio::test]
async fn head_answers_like_get() {
    let f = fixture();
    for path in JWKS_LISTENER_PATHS {
        let get_res = send(&f.jwks, get(path)).await;
        let head_res = send(&f.jwks, warp::test::request().method("HEAD").path(path)).await;
        assert_eq!(head_res.status(), get_res.status(), "{path}");
        assert_eq!(
            head_res.headers().get("content-type"),
            get_res.headers().get("content-type"),
            "{path}"
        );
        assert_eq!(
            head_res.headers().get("etag"),
            get_res.headers().get("etag")
        );
    }
}

#[tokio::test]
async fn unknown_policies_and_routes_are_404_json() {
    let f = fixture();
    for path in [
        "/team-a/nope/.well-known/jwks.json",
        "/nope/api/.well-known/jwks.json",
        "/team-a/nope/.well-known/openid-configuration",
        "/",
        "/favicon.ico",
        "/team-a/api",
        "/team-a/api/.well-known",
        "/team-a/api/jwks.json",
        "/team-a/api/.well-known/jwks",
        "/team-a/api/token",
        "/team-a/api/verify",
        "/.well-known/openid-configuration",
    ] {
        let res = send(&f.jwks, get(path)).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(error_code(&res), "not_found", "{path}");
    }
}

#[tokio::test]
async fn path_traversal_and_odd_names_never_match() {
    let f = fixture();
    let long = "x".repeat(300);
    let long_ns = "n".repeat(64);
    let paths = [
        "/../../etc/passwd".to_string(),
        "/team-a/../.well-known/jwks.json".to_string(),
        "/team-a/api/.well-known/../.well-known/jwks.json".to_string(),
        "/%2e%2e/%2e%2e/.well-known/jwks.json".to_string(),
        "/team-a/%2e%2e/.well-known/jwks.json".to_string(),
        "/team-a/..%2f..%2fsecret/.well-known/jwks.json".to_string(),
        "/team-a/a%00b/.well-known/jwks.json".to_string(),
        "/Team-A/api/.well-known/jwks.json".to_string(),
        "/team-a/API/.well-known/jwks.json".to_string(),
        "/team-a/-api/.well-known/jwks.json".to_string(),
        "/team.a/api/.well-known/jwks.json".to_string(),
        "//api/.well-known/jwks.json".to_string(),
        "/team-a//.well-known/jwks.json".to_string(),
        "/team-a/api/.well-known/jwks.json/extra".to_string(),
        format!("/team-a/{long}/.well-known/jwks.json"),
        format!("/{long_ns}/api/.well-known/jwks.json"),
        "/team-a/api%2F.well-known%2Fjwks.json".to_string(),
        "/team-a/%E2%80%AE/.well-known/jwks.json".to_string(),
    ];
    for path in &paths {
        let res = send(&f.jwks, get(path)).await;
        assert_eq!(res.status(), 404, "{path}");
        let res = send(
            &f.token,
            post_json(&path.replace(".well-known/jwks.json", "token"), "{}"),
        )
        .await;
        assert_eq!(res.status(), 404, "token listener, {path}");
    }
    // A query string or a trailing slash does not change the route (warp's
    // usual matching; neither is a redirect).
    let res = send(&f.jwks, get(&format!("{API_JWKS}/"))).await;
    assert_eq!(res.status(), 200);
    let res = send(&f.jwks, get(&format!("{API_JWKS}?x=../../etc"))).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_known_path_with_a_wrong_method_is_405_with_allow() {
    let f = fixture();
    for path in JWKS_LISTENER_PATHS {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let res = send(
                &f.jwks,
                warp::test::request().method(method).path(path).body("{}"),
            )
            .await;
            assert_eq!(res.status(), 405, "{method} {path}");
            assert_eq!(res.headers()["allow"], "GET, HEAD", "{method} {path}");
            assert_eq!(error_code(&res), "method_not_allowed");
        }
    }
    for path in [API_TOKEN, API_VERIFY] {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let res = send(&f.token, warp::test::request().method(method).path(path)).await;
            assert_eq!(res.status(), 405, "{method} {path}");
            assert_eq!(res.headers()["allow"], "POST");
        }
    }
    // An unknown path stays 404 whatever the method.
    let res = send(
        &f.jwks,
        warp::test::request().method("DELETE").path("/nope"),
    )
    .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn discovery_document_follows_the_issuer() {
    let f = fixture();
    let res = send(&f.jwks, get(API_DISCOVERY)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, strong_etag(res.body()));
    let doc = body_json(&res);
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(
        doc["jwks_uri"], "https://jwks.example.com/team-a/api/.well-known/jwks.json",
        "built from the public base URL"
    );
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let res = send(
        &f.jwks,
        get(API_DISCOVERY).header("if-none-match", etag.as_str()),
    )
    .await;
    assert_eq!(res.status(), 304);

    // Without a public base URL the issuer gives jwks_uri; algorithms come
    // from the published keys (newest first, each once).
    let res = send(
        &f.jwks,
        get("/team-b/mixed/.well-known/openid-configuration"),
    )
    .await;
    let doc = body_json(&res);
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.com/mixed/.well-known/jwks.json"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );

    let res = send(
        &f.jwks,
        get("/team-a/plain/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(&res), "not_found");
    assert!(
        body_json(&res)["message"]
            .as_str()
            .unwrap()
            .contains("no issuer")
    );
}

#[tokio::test]
async fn default_jwks_serves_the_default_policy_or_404() {
    let f = fixture();
    let res = send(&f.jwks, get("/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), f.api.jwks_bytes());
    assert_eq!(res.headers()["etag"], f.api.etag());
    assert_eq!(res.headers()["content-type"], "application/jwk-set+json");

    let none = SharedState::new(None, Arc::new(Metrics::new()));
    let routes = boxed(jwks_routes(none));
    let res = send(&routes, get("/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 404);
    assert!(
        body_json(&res)["message"]
            .as_str()
            .unwrap()
            .contains("--default-policy")
    );

    // Configured but not (yet) known: 404 too.
    let missing = SharedState::new(Some(PolicyRef::new("x", "y")), Arc::new(Metrics::new()));
    let res = send(&boxed(jwks_routes(missing)), get("/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn policies_lists_every_policy_with_its_summary() {
    let f = fixture();
    let res = send(&f.jwks, get("/policies")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let list = body_json(&res);
    let names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        ["team-a/api", "team-a/plain", "team-b/fast", "team-b/mixed"]
    );
    let api = &list[0];
    assert_eq!(api["ready"], true);
    assert!(api.get("degraded").is_none());
    assert_eq!(api["algorithm"], "ES256");
    assert_eq!(api["activeKeyID"], f.api_keys.active().unwrap().kid());
    assert_eq!(api["nextKeyID"], f.api_keys.pending().unwrap().kid());
    assert_eq!(api["keyCount"], 2);
    assert_eq!(api["nextRotationTime"], at(3600).to_string());
    assert_eq!(api["lastRotationTime"], at(0).to_string());
    assert_eq!(api["lastRotationReason"], "Initial");
    assert_eq!(api["issuer"], ISSUER);
    assert_eq!(api["jwksPath"], API_JWKS);
    // The public listener does not say which policies mint tokens.
    for p in list.as_array().unwrap() {
        assert!(p.get("tokenEndpoint").is_none(), "{p}");
    }

    // The metrics listener has the full view, token endpoints included.
    let full = body_json(&send(&boxed(metrics_routes(f.state.clone())), get("/policies")).await);
    assert_eq!(full.as_array().unwrap().len(), 4);
    assert_eq!(full[0]["tokenEndpoint"], true);
    assert_eq!(full[1]["tokenEndpoint"], false);
    // Round-trips into the Rust type other components read.
    let parsed: Vec<PolicySummary> = serde_json::from_value(full.clone()).unwrap();
    assert_eq!(&parsed[0], f.api.summary());
}

#[tokio::test]
async fn problem_messages_stay_off_the_public_listener() {
    let f = fixture();
    let r = PolicyRef::new("team-c", "broken");
    let pol = policy("team-c", "broken", "{algorithm: ES256}");
    let secret_detail = "reading /var/lib/jwks/team-c/broken/jwks.json: secrets \"x\" is forbidden";
    f.state.set_problem(
        &r,
        PolicySummary::for_policy(&pol.info()),
        Some(Problem::new("KeySetUnreadable", secret_detail)),
    );
    for path in ["/policies", "/team-c/broken/.well-known/jwks.json"] {
        let res = send(&f.jwks, get(path)).await;
        let body = String::from_utf8_lossy(res.body()).into_owned();
        assert!(body.contains("KeySetUnreadable"), "{path}: {body}");
        assert!(!body.contains("forbidden"), "{path}: {body}");
        assert!(!body.contains("/var/lib"), "{path}: {body}");
    }
    let full = body_json(&send(&boxed(metrics_routes(f.state.clone())), get("/policies")).await);
    let broken = full
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .unwrap();
    assert_eq!(broken["degraded"]["message"], secret_detail);
}

#[tokio::test]
async fn metrics_can_be_left_off_the_jwks_listener() {
    let f = fixture();
    let off = boxed(jwks_routes_with(
        f.state.clone(),
        JwksOptions { metrics: false },
    ));
    assert_eq!(send(&off, get("/metrics")).await.status(), 404);
    assert_eq!(send(&off, get("/healthz")).await.status(), 200);
    assert_eq!(send(&off, get(API_JWKS)).await.status(), 200);
    assert_eq!(
        send(&f.jwks, get("/metrics")).await.status(),
        200,
        "on by default"
    );
    let metrics = boxed(metrics_routes(f.state.clone()));
    assert_eq!(send(&metrics, get("/metrics")).await.status(), 200);
}

fn bearer_token_file(token: &str) -> (tempfile::TempDir, Arc<BearerToken>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let bearer = BearerToken::load(&path).unwrap();
    (dir, bearer)
}

#[tokio::test]
async fn with_a_bearer_token_the_token_listener_answers_only_its_holders() {
    let f = fixture();
    let (_dir, bearer) = bearer_token_file("let-me-mint");
    let routes = boxed(token_routes_with(f.state.clone(), Some(bearer)));
    let mint = || post_json("/team-a/api/token", r#"{"sub":"intruder"}"#);
    for (what, req) in [
        ("no credential", mint()),
        (
            "a wrong token",
            mint().header("authorization", "Bearer let-me-min"),
        ),
        (
            "another scheme",
            mint().header("authorization", "Basic let-me-mint"),
        ),
        (
            "a non-ASCII header",
            mint().header("authorization", &b"Bearer \xff"[..]),
        ),
        (
            "an unknown policy",
            post_json("/nope/nope/token", "{}").header("authorization", "Bearer x"),
        ),
    ] {
        let res = send(&routes, req).await;
        assert_eq!(res.status(), 401, "{what}");
        assert_eq!(error_code(&res), "unauthorized", "{what}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer", "{what}");
    }
    let res = send(
        &routes,
        mint().header("authorization", "Bearer let-me-mint"),
    )
    .await;
    assert_eq!(res.status(), 200, "{:?}", res.body());
    assert!(body_json(&res)["token"].is_string());
    // Verification needs the credential too.
    let verify = post_json("/team-a/api/verify", r#"{"token":"x.y.z"}"#);
    assert_eq!(send(&routes, verify).await.status(), 401);
}

#[tokio::test]
async fn a_policy_without_a_published_set_is_503_and_listed_with_its_problem() {
    let f = fixture();
    let r = PolicyRef::new("team-c", "broken");
    let pol = policy(
        "team-c",
        "broken",
        "{algorithm: ES256, issuer: 'https://i.example.com'}",
    );
    f.state.set_problem(
        &r,
        PolicySummary::for_policy(&pol.info()),
        Some(Problem::new(
            "KeySetUnreadable",
            "state file jwks.json does not parse",
        )),
    );
    let res = send(&f.jwks, get("/team-c/broken/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(error_code(&res), "not_ready");
    assert_eq!(res.headers()["retry-after"], "5");
    assert!(
        body_json(&res)["message"]
            .as_str()
            .unwrap()
            .contains("KeySetUnreadable")
    );
    let res = send(
        &f.jwks,
        get("/team-c/broken/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(res.status(), 503);
    // Both not_ready answers are counted for the policy.
    assert_metrics_show(
        &f,
        "jwks_operator_policy_not_ready_total{namespace=\"team-c\",name=\"broken\"} 2",
    );

    let list = body_json(&send(&f.jwks, get("/policies")).await);
    let broken = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .unwrap();
    assert_eq!(broken["ready"], false);
    assert_eq!(broken["degraded"]["reason"], "KeySetUnreadable");
    assert_eq!(broken["keyCount"], 0);
    assert!(
        f.state
            .metrics()
            .encode()
            .contains("jwks_operator_policy_degraded{namespace=\"team-c\",name=\"broken\"} 1")
    );

    // Once a set is published it is served; a later problem keeps it served.
    let keys = plan_at(&pol, KeySet::default(), 9, &[0]);
    f.state.upsert(PolicyView::build(&pol.info(), &keys, None));
    let res = send(&f.jwks, get("/team-c/broken/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].clone();
    f.state.set_problem(
        &r,
        PolicySummary::unknown(&r),
        Some(Problem::new("KeySetUnreadable", "again")),
    );
    let res = send(&f.jwks, get("/team-c/broken/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 200, "the last good set is still served");
    assert_eq!(res.headers()["etag"], etag);
    let summary = f.state.view(&r).unwrap().summary().clone();
    assert!(summary.ready);
    assert_eq!(summary.degraded.unwrap().message, "again");
    // Clearing the problem.
    f.state.set_problem(&r, PolicySummary::unknown(&r), None);
    assert!(f.state.view(&r).unwrap().summary().degraded.is_none());

    // Removal stops serving it.
    f.state.remove(&r);
    let res = send(&f.jwks, get("/team-c/broken/.well-known/jwks.json")).await;
    assert_eq!(res.status(), 404);
    assert!(!f.state.metrics().encode().contains("team-c"));
}

#[tokio::test]
async fn healthz_always_readyz_only_once_synced() {
    let state = SharedState::new(None, Arc::new(Metrics::new()));
    let routes = boxed(jwks_routes(state.clone()));
    let res = send(&routes, get("/healthz")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body_json(&res)["status"], "ok");
    let res = send(&routes, get("/readyz")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(error_code(&res), "not_ready");
    state.set_ready(true);
    let res = send(&routes, get("/readyz")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body_json(&res)["status"], "ready");
    state.set_ready(false);
    assert_eq!(send(&routes, get("/readyz")).await.status(), 503);
    assert_eq!(send(&routes, get("/healthz")).await.status(), 200);
}

#[tokio::test]
async fn the_metrics_listener_serves_probes_metrics_and_the_full_policies_only() {
    let f = fixture();
    let routes = boxed(metrics_routes(f.state.clone()));
    for path in ["/healthz", "/readyz", "/metrics", "/policies"] {
        assert_eq!(send(&routes, get(path)).await.status(), 200, "{path}");
    }
    for path in [API_JWKS, "/.well-known/jwks.json"] {
        assert_eq!(send(&routes, get(path)).await.status(), 404, "{path}");
    }
    let res = send(
        &routes,
        warp::test::request().method("POST").path("/metrics"),
    )
    .await;
    assert_eq!(res.status(), 405);
    assert_metrics_show(
        &f,
        "jwks_operator_http_requests_total{listener=\"metrics\",route=\"healthz\",status=\"200\"} 1",
    );
}

#[tokio::test]
async fn metrics_route_serves_openmetrics_with_every_family() {
    let f = fixture();
    let r = PolicyRef::new("team-a", "api");
    let m = f.state.metrics();
    assert_eq!(
        crate::metrics::next_prune_time(&f.api_keys),
        None,
        "nothing retired yet"
    );
    m.engine
        .observe_key_set(&r, &f.api_keys, Some(at(3600)), Some(at(7200)));
    m.engine.record_events(
        &r,
        &[crate::keys::lifecycle::LifecycleEvent::Activated {
            kid: "k".into(),
            reason: crate::keys::lifecycle::RotationReason::Scheduled,
        }],
    );
    m.engine.observe_key_generation(Algorithm::ES256, 0.002);
    m.engine.inc_reconcile_error(&r, "write_secret");
    send(&f.jwks, get(API_JWKS)).await;
    send(&f.jwks, get("/nope")).await;
    send(&f.token, post_json(API_TOKEN, "{}")).await;

    let res = send(&f.jwks, get("/metrics")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(res.body().to_vec()).unwrap();
    for needle in [
        "jwks_operator_keys{namespace=\"team-a\",name=\"api\",state=\"Active\"} 1",
        "jwks_operator_keys{namespace=\"team-a\",name=\"api\",state=\"Pending\"} 1",
        "jwks_operator_keys{namespace=\"team-a\",name=\"api\",state=\"Retired\"} 0",
        "jwks_operator_rotations_total{namespace=\"team-a\",name=\"api\",reason=\"Scheduled\"} 1",
        &format!(
            "jwks_operator_next_rotation_timestamp_seconds{{namespace=\"team-a\",name=\"api\"}} {}",
            T0 + 3600
        ),
        &format!(
            "jwks_operator_next_prune_timestamp_seconds{{namespace=\"team-a\",name=\"api\"}} {}",
            T0 + 7200
        ),
        "jwks_operator_key_generation_seconds_count{alg=\"ES256\"} 1",
        "jwks_operator_reconcile_errors_total{namespace=\"team-a\",name=\"api\",kind=\"write_secret\"} 1",
        "jwks_operator_policy_degraded{namespace=\"team-a\",name=\"api\"} 0",
        "jwks_operator_http_requests_total{listener=\"jwks\",route=\"jwks\",status=\"200\"} 1",
        "jwks_operator_http_requests_total{listener=\"jwks\",route=\"other\",status=\"404\"} 1",
        "jwks_operator_http_requests_total{listener=\"token\",route=\"token\",status=\"200\"} 1",
        "# TYPE jwks_operator_http_not_modified counter",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    for k in &f.api_keys.keys {
        assert!(!text.contains(k.kid()), "no kid in metrics");
    }
}

#[test]
fn next_prune_time_is_the_earliest_retired_key_prune_after() {
    // Rotated at 60 min: the first key retires and may go after
    // maxTokenTTL (10m) + clockSkew (30s) + the propagation grace (90s).
    let keys = plan_at(&api_policy(), KeySet::default(), 1, &[0, 50 * 60, 60 * 60]);
    assert_eq!(
        crate::metrics::next_prune_time(&keys),
        Some(at(60 * 60 + 10 * 60 + 30 + 90))
    );
}

// === token listener ===

#[tokio::test]
async fn minted_tokens_carry_the_contract_claims_and_verify() {
    let f = fixture();
    let res = send(
        &f.token,
        post_json(
            API_TOKEN,
            json!({"sub": "alice", "ttl": "5m", "claims": {"role": "admin"}}).to_string(),
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = body_json(&res);
    let token = body["token"].as_str().unwrap();
    let active = f.api_keys.active().unwrap().kid();
    assert_eq!(
        body["kid"], active,
        "the active key signs, not the pending one"
    );
    let exp = now().checked_add(SignedDuration::from_secs(300)).unwrap();
    assert_eq!(body["expiresAt"], exp.to_string());

    let header = decode_segment(token, 0);
    assert_eq!(header, json!({"alg": "ES256", "kid": active, "typ": "JWT"}));
    let claims = decode_segment(token, 1);
    let iat = now().as_second();
    assert_eq!(
        claims,
        json!({"iss": ISSUER, "sub": "alice", "aud": "orders", "iat": iat, "nbf": iat,
               "exp": iat + 300, "jti": JTI, "role": "admin"})
    );

    let res = verify_via_api(&f, token).await;
    assert_eq!(res.status(), 200);
    let v = body_json(&res);
    assert_eq!(v["valid"], true);
    assert_eq!(v["kid"], active);
    assert_eq!(v["claims"], claims);
}

#[tokio::test]
async fn ttl_defaults_to_and_may_not_exceed_max_token_ttl() {
    let f = fixture();
    let exp = |token: &str| decode_segment(token, 1)["exp"].as_i64().unwrap() - now().as_second();
    // Empty body, no Content-Type: all defaults.
    let res = send(
        &f.token,
        warp::test::request().method("POST").path(API_TOKEN),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(exp(body_json(&res)["token"].as_str().unwrap()), 600);
    assert_eq!(exp(&mint_via_api(&f, json!({"ttl": 60})).await), 60);
    assert_eq!(exp(&mint_via_api(&f, json!({"ttl": "1m30s"})).await), 90);
    assert_eq!(exp(&mint_via_api(&f, json!({"ttl": "10m"})).await), 600);
    for (ttl, code) in [
        (json!(601), "ttl_too_long"),
        (json!("11m"), "ttl_too_long"),
        (json!("24h"), "ttl_too_long"),
        (json!(u64::MAX), "ttl_too_long"),
        (json!(0), "ttl_too_short"),
        (json!("0s"), "ttl_too_short"),
        (json!(-5), "invalid_request"),
        (json!(2.5), "invalid_request"),
        (json!("forever"), "invalid_request"),
        (json!(["5m"]), "invalid_request"),
    ] {
        let res = send(
            &f.token,
            post_json(API_TOKEN, json!({"ttl": ttl}).to_string()),
        )
        .await;
        assert_eq!(res.status(), 400, "ttl {ttl}");
        assert_eq!(error_code(&res), code, "ttl {ttl}");
    }
}

#[tokio::test]
async fn token_endpoints_are_404_unless_enabled_and_only_on_the_token_listener() {
    let f = fixture();
    let unknown = send(&f.token, post_json("/team-a/nope/token", "{}")).await;
    let disabled = send(&f.token, post_json("/team-a/plain/token", "{}")).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(disabled.status(), 404);
    assert_eq!(
        body_json(&disabled)["message"]
            .as_str()
            .unwrap()
            .replace("plain", "nope"),
        body_json(&unknown)["message"],
        "a disabled policy looks exactly like an unknown one"
    );
    let res = send(
        &f.token,
        post_json("/team-a/plain/verify", r#"{"token":"a.b.c"}"#),
    )
    .await;
    assert_eq!(res.status(), 404);
    // Never on the JWKS port, and the token port serves nothing else.
    let res = send(&f.jwks, post_json(API_TOKEN, "{}")).await;
    assert_eq!(res.status(), 404);
    for path in [
        API_JWKS,
        "/policies",
        "/healthz",
        "/metrics",
        "/.well-known/jwks.json",
    ] {
        assert_eq!(send(&f.token, get(path)).await.status(), 404, "{path}");
    }
    // Enabled but nothing published yet: 503.
    let pol = policy("team-c", "later", "{tokenEndpoint: {enabled: true}}");
    f.state.set_problem(
        &pol.policy_ref(),
        PolicySummary::for_policy(&pol.info()),
        None,
    );
    let res = send(&f.token, post_json("/team-c/later/token", "{}")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_before_parsing() {
    let f = fixture();
    let huge = vec![b'{'; BODY_LIMIT as usize + 1];
    for path in [API_TOKEN, API_VERIFY] {
        let res = send(&f.token, post_json(path, &huge)).await;
        assert_eq!(res.status(), 413, "{path}");
        assert_eq!(error_code(&res), "payload_too_large");
        // Announced larger than the limit: refused on the header alone.
        let res = send(
            &f.token,
            warp::test::request()
                .method("POST")
                .path(path)
                .header("content-length", "1000000000"),
        )
        .await;
        assert_eq!(res.status(), 413, "{path}");
    }
    // Exactly at the limit is fine.
    let mut at_limit = br#"{"sub":"x"}"#.to_vec();
    at_limit.resize(BODY_LIMIT as usize, b' ');
    let res = send(&f.token, post_json(API_TOKEN, &at_limit)).await;
    assert_eq!(res.status(), 200);
    // Unknown policies are 404 before the body is even considered.
    let res = send(&f.token, post_json("/team-a/nope/token", &huge)).await;
    assert_eq!(res.status(), 404);
}

fn token_request_with_content_type(ct: &str) -> warp::test::RequestBuilder {
    warp::test::request()
        .method("POST")
        .path(API_TOKEN)
        .header("content-type", ct)
        .body("{}")
}

#[tokio::test]
async fn only_json_content_types_are_accepted() {
    let f = fixture();
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/jwt+json",
    ] {
        let res = send(&f.token, token_request_with_content_type(ct)).await;
        assert_eq!(res.status(), 200, "{ct}");
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json+xml",
        "",
    ] {
        let res = send(&f.token, token_request_with_content_type(ct)).await;
        assert_eq!(res.status(), 415, "{ct:?}");
        assert_eq!(error_code(&res), "unsupported_media_type");
    }
}

// === the bad-input battery ===

fn forge(header: Value, claims: Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn valid_claims() -> Value {
    let iat = now().as_second();
    json!({"iss": ISSUER, "aud": "orders", "iat": iat, "nbf": iat, "exp": iat + 300, "jti": "x"})
}

fn other_es256_key() -> SigningKey {
    SigningKey::generate(
        KeyParams::new(Algorithm::ES256),
        &mut ChaCha20Rng::seed_from_u64(99),
    )
    .unwrap()
}

#[tokio::test]
async fn malformed_requests_to_token_and_verify_are_400_json() {
    let f = fixture();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_claims = format!(
        r#"{{"claims":{{"a":{}1{}}}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let token_cases: Vec<(String, &str)> = vec![
        ("{".into(), "invalid_json"),
        ("nul".into(), "invalid_json"),
        ("{\"sub\":\"x\",}".into(), "invalid_json"),
        ("\u{feff}{}".into(), "invalid_json"),
        (deep.clone(), "invalid_json"),
        (deep_claims, "invalid_json"),
        ("[]".into(), "invalid_request"),
        ("42".into(), "invalid_request"),
        ("\"sub\"".into(), "invalid_request"),
        (r#"{"sub":5}"#.into(), "invalid_request"),
        (r#"{"sub":["a"]}"#.into(), "invalid_request"),
        (r#"{"aud":5}"#.into(), "invalid_request"),
        (r#"{"aud":[1,2]}"#.into(), "invalid_request"),
        (r#"{"claims":"x"}"#.into(), "invalid_request"),
        (r#"{"claims":[1]}"#.into(), "invalid_request"),
        (r#"{"ttl":{}}"#.into(), "invalid_request"),
        (r#"{"audience":"x"}"#.into(), "invalid_request"),
        (r#"{"claims":{"exp":1}}"#.into(), "reserved_claim"),
        (
            r#"{"claims":{"iss":"https://evil"}}"#.into(),
            "reserved_claim",
        ),
        (r#"{"claims":{"jti":"fixed"}}"#.into(), "reserved_claim"),
    ];
    for (body, code) in &token_cases {
        let res = send(&f.token, post_json(API_TOKEN, body)).await;
        assert_eq!(res.status(), 400, "{body:.80}");
        assert_eq!(error_code(&res), *code, "{body:.80}");
    }
    // Invalid UTF-8.
    let res = send(&f.token, post_json(API_TOKEN, b"{\"sub\":\"\xff\"}")).await;
    assert_eq!(res.status(), 400);

    for body in [
        "",
        "{",
        "[]",
        "{}",
        r#"{"token":5}"#,
        r#"{"token":null}"#,
        r#"{"token":["a.b.c"]}"#,
        r#"{"jwt":"a.b.c"}"#,
        r#"{"token":"a.b.c","extra":1}"#,
        deep.as_str(),
    ] {
        let res = send(&f.token, post_json(API_VERIFY, body)).await;
        assert_eq!(res.status(), 400, "{body:.80}");
    }
}

// Long on purpose: a table of forged and broken tokens, each with the reason it must be
// refused with.
#[tokio::test]
async fn tokens_that_must_not_verify_are_401_with_a_reason() {
    let f = fixture();
    let active = f.api_keys.active().unwrap();
    let kid = active.kid().to_string();
    let signer = active.key.clone();
    let good = mint_via_api(&f, json!({"sub": "alice"})).await;
    let jwks_bytes = f.api.jwks_bytes().to_vec();

    let mut cases: Vec<(String, String, &str)> = Vec::new();
    let mut case = |name: &str, token: String, code: &'static str| {
        cases.push((name.to_string(), token, code));
    };

    // alg none, with and without a signature.
    let none_header = json!({"alg": "none", "kid": kid, "typ": "JWT"});
    case(
        "alg none",
        forge(none_header.clone(), valid_claims(), b""),
        "algorithm_not_allowed",
    );
    case(
        "alg None",
        forge(json!({"alg": "None", "kid": kid}), valid_claims(), b""),
        "algorithm_not_allowed",
    );
    case(
        "alg none + sig",
        forge(none_header, valid_claims(), b"sig"),
        "algorithm_not_allowed",
    );

    // HMAC keyed with public material: the published JWK Set, the JWK, its x coordinate.
    let jwk = active.key.public_jwk();
    for (what, secret) in [
        ("jwks bytes", jwks_bytes.clone()),
        ("jwk json", serde_json::to_vec(&jwk).unwrap()),
        ("x", jwk["x"].as_str().unwrap().as_bytes().to_vec()),
    ] {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
            let input = format!("{}.{}", b64(&header), b64(&valid_claims()));
            let hmac_alg = match alg {
                "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
                "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
                _ => aws_lc_rs::hmac::HMAC_SHA512,
            };
            let key = aws_lc_rs::hmac::Key::new(hmac_alg, &secret);
            let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            cases.push((
                format!("{alg} keyed with {what}"),
                token,
                "algorithm_not_allowed",
            ));
        }
    }

    // Another algorithm than the key's.
    let es384 = forge(json!({"alg": "ES384", "kid": kid}), valid_claims(), b"x");
    cases.push((
        "alg ES384 for an ES256 key".into(),
        es384,
        "algorithm_not_allowed",
    ));
    let rs256 = forge(json!({"alg": "RS256", "kid": kid}), valid_claims(), b"x");
    cases.push((
        "alg RS256 for an ES256 key".into(),
        rs256,
        "algorithm_not_allowed",
    ));

    // Keys we do not publish.
    let other = other_es256_key();
    let claims = valid_claims().as_object().unwrap().clone();
    cases.push((
        "unknown kid".into(),
        mint(&other, &claims).unwrap(),
        "unknown_kid",
    ));
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let input = format!("{}.{}", b64(&header), b64(&valid_claims()));
    let sig = other.sign(input.as_bytes()).unwrap();
    cases.push((
        "our kid, another key's signature".into(),
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        "bad_signature",
    ));
    cases.push((
        "no kid".into(),
        forge(json!({"alg": "ES256"}), valid_claims(), b"x"),
        "missing_kid",
    ));
    cases.push((
        "crit header".into(),
        forge(
            json!({"alg": "ES256", "kid": kid, "crit": ["exp"]}),
            valid_claims(),
            b"x",
        ),
        "unsupported_header",
    ));

    // Tampering with a good token.
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    cases.push((
        "flipped signature".into(),
        format!("{signing_input}.{}", String::from_utf8(flipped).unwrap()),
        "bad_signature",
    ));
    let mut claims = decode_segment(&good, 1);
    claims["sub"] = "mallory".into();
    let header = good.split('.').next().unwrap();
    cases.push((
        "edited claims".into(),
        format!("{header}.{}.{signature}", b64(&claims)),
        "bad_signature",
    ));

    // Truncated and garbage tokens.
    cases.push((
        "truncated".into(),
        good[..good.len() - 10].to_string(),
        "bad_signature",
    ));
    cases.push((
        "two segments".into(),
        signing_input.to_string(),
        "malformed",
    ));
    cases.push((
        "no signature segment".into(),
        format!("{signing_input}."),
        "bad_signature",
    ));
    cases.push(("four segments".into(), format!("{good}.x"), "malformed"));
    for garbage in ["", ".", "..", "...", "not-a-token", "a.b.c", "!!!.###.$$$"] {
        cases.push((
            format!("garbage {garbage:?}"),
            garbage.to_string(),
            "malformed",
        ));
    }
    cases.push(("empty header".into(), "e30.e30.e30".into(), "missing_kid"));
    cases.push((
        "huge".into(),
        format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c"),
        "malformed",
    ));
    cases.push((
        "header not JSON".into(),
        format!(
            "{}.{}.x",
            URL_SAFE_NO_PAD.encode("not json"),
            b64(&valid_claims())
        ),
        "malformed",
    ));

    // Time and audience/issuer checks (clock 55 min after T0, leeway 30 s).
    let mint_at = |t: Timestamp, settings: &MintSettings, req: &TokenRequest| {
        mint_token(&signer, req, settings, t, "j").unwrap().token
    };
    let settings = MintSettings {
        issuer: Some(ISSUER.into()),
        audiences: vec!["orders".into()],
        max_ttl: std::time::Duration::from_secs(600),
    };
    let short = TokenRequest {
        ttl: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    let minus = |s: i64| now().checked_sub(SignedDuration::from_secs(s)).unwrap();
    let plus = |s: i64| now().checked_add(SignedDuration::from_secs(s)).unwrap();
    cases.push((
        "expired".into(),
        mint_at(minus(120), &settings, &short),
        "expired",
    ));
    cases.push((
        "expired just past leeway".into(),
        mint_at(minus(90), &settings, &short),
        "expired",
    ));
    cases.push((
        "future nbf".into(),
        mint_at(plus(120), &settings, &short),
        "not_yet_valid",
    ));
    let mut c = valid_claims();
    c["nbf"] = (now().as_second() + 3600).into();
    cases.push((
        "forged future nbf".into(),
        mint(&signer, c.as_object().unwrap()).unwrap(),
        "not_yet_valid",
    ));
    let mut c = valid_claims();
    c.as_object_mut().unwrap().remove("exp");
    cases.push((
        "no exp".into(),
        mint(&signer, c.as_object().unwrap()).unwrap(),
        "missing_claim",
    ));
    let mut c = valid_claims();
    c["exp"] = "tomorrow".into();
    cases.push((
        "string exp".into(),
        mint(&signer, c.as_object().unwrap()).unwrap(),
        "malformed",
    ));
    let evil = MintSettings {
        issuer: Some("https://evil.example.com".into()),
        ..settings.clone()
    };
    cases.push((
        "wrong iss".into(),
        mint_at(now(), &evil, &short),
        "wrong_issuer",
    ));
    let no_iss = MintSettings {
        issuer: None,
        ..settings.clone()
    };
    cases.push((
        "no iss".into(),
        mint_at(now(), &no_iss, &short),
        "wrong_issuer",
    ));
    let wrong_aud = mint_via_api(&f, json!({"aud": "billing"})).await;
    cases.push(("wrong aud".into(), wrong_aud, "wrong_audience"));
    let no_aud = mint_via_api(&f, json!({"aud": []})).await;
    cases.push(("no aud".into(), no_aud, "wrong_audience"));

    for (name, token, code) in &cases {
        let res = verify_via_api(&f, token).await;
        assert_eq!(res.status(), 401, "{name}: {:?}", res.body());
        let body = body_json(&res);
        assert_eq!(body["valid"], false, "{name}");
        assert_eq!(body["error"], *code, "{name}: {body}");
        assert!(body["message"].is_string(), "{name}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }

    // Sanity: still within its life and leeway, the good token verifies,
    // and so does one expired less than the leeway ago.
    assert_eq!(verify_via_api(&f, &good).await.status(), 200);
    let within_leeway = mint_at(minus(80), &settings, &short);
    assert_eq!(verify_via_api(&f, &within_leeway).await.status(), 200);
}

#[tokio::test]
async fn headers_clients_get_wrong_are_4xx_never_5xx() {
    let f = fixture();
    // Non-UTF-8 If-None-Match.
    let res = send(
        &f.jwks,
        get(API_JWKS).header("if-none-match", &b"\"\xff\xfe\""[..]),
    )
    .await;
    assert!(
        res.status().is_client_error() || res.status() == 200,
        "{}",
        res.status()
    );
    // Non-UTF-8 Content-Type.
    let res = send(
        &f.token,
        warp::test::request()
            .method("POST")
            .path(API_TOKEN)
            .header("content-type", &b"application/\xffjson"[..])
            .body("{}"),
    )
    .await;
    assert_eq!(res.status(), 400);
}

// === over a real socket ===

async fn roundtrip(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

// Long on purpose: one listener's life, from bind through the body cap to a graceful
// shutdown with a request in flight.
#[tokio::test]
async fn serve_binds_caps_chunked_bodies_and_shuts_down_gracefully() {
    let f = fixture();
    let shutdown = Shutdown::new();
    let any = "127.0.0.1:0".parse().unwrap();
    let plain = ServeConfig::plain;
    let (jwks_addr, jwks_task) = serve(
        any,
        jwks_routes(f.state.clone()),
        plain(crate::metrics::Listener::Jwks),
        shutdown.wait(),
    )
    .await
    .unwrap();
    let (token_addr, token_task) = serve(
        any,
        token_routes(f.state.clone()),
        plain(crate::metrics::Listener::Token),
        shutdown.wait(),
    )
    .await
    .unwrap();
    assert_ne!(jwks_addr.port(), 0);

    // HEAD over the wire: the length of the GET body, no body.
    let res = roundtrip(
        jwks_addr,
        format!("HEAD {API_JWKS} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let len = f.api.jwks_bytes().len();
    assert!(
        res.to_ascii_lowercase()
            .contains(&format!("content-length: {len}")),
        "{res}"
    );
    assert!(
        res.ends_with("\r\n\r\n"),
        "no body after the headers: {res:?}"
    );

    // A chunked body (no Content-Length) over the limit is cut off at 64 KiB.
    let mut req = format!(
        "POST {API_TOKEN} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 8192];
    for _ in 0..10 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let res = roundtrip(token_addr, &req).await;
    assert!(res.starts_with("HTTP/1.1 413"), "{res}");
    assert!(res.contains("payload_too_large"), "{res}");

    // A small chunked body is read and minted.
    let body = br#"{"sub":"chunked"}"#;
    let mut req = format!(
        "POST {API_TOKEN} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let res = roundtrip(token_addr, &req).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    // A body in several chunks is put back together in order.
    let mut req = format!(
        "POST {API_TOKEN} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for part in [&br#"{"sub":"#[..], br#""spl"#, br#"it"}"#] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let res = roundtrip(token_addr, &req).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let body: Value = serde_json::from_str(res.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let payload = body["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "split");

    assert!(!shutdown.is_triggered());
    shutdown.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        jwks_task.await.unwrap();
        token_task.await.unwrap();
    })
    .await
    .expect("servers stop after the shutdown signal");
    assert!(tokio::net::TcpStream::connect(jwks_addr).await.is_err());
    // Waiting after the fact completes at once.
    tokio::time::timeout(std::time::Duration::from_secs(1), shutdown.wait())
        .await
        .unwrap();
}

#[test]
fn jtis_are_128_random_bits_and_never_repeat_across_a_reseed() {
    use std::collections::HashSet;
    // More than one generator lifetime, so the reseed path runs too.
    let n = (1usize << 16) + 1000;
    let mut seen = HashSet::with_capacity(n);
    for _ in 0..n {
        let jti = crate::http::random_jti().unwrap();
        let bits = URL_SAFE_NO_PAD.decode(&jti).unwrap();
        assert_eq!(bits.len(), 16, "{jti}");
        assert!(seen.insert(jti), "a jti repeated");
    }
    // Another thread has a generator of its own, seeded apart.
    let other: Vec<String> = std::thread::spawn(|| {
        (0..1000)
            .map(|_| crate::http::random_jti().unwrap())
            .collect()
    })
    .join()
    .unwrap();
    assert!(other.iter().all(|j| !seen.contains(j)));
}

/// A replica can see a raised `maxTokenTTL` before the key set the leader
/// re-plans under it: the signer's retention was computed for the TTL it
/// recorded, so a token may not outlive that.
#[tokio::test]
async fn the_mint_cap_is_the_lower_of_the_spec_and_the_signers_recorded_ttl() {
    let api = api_policy(); // maxTokenTTL: 10m
    let mut keys = plan_at(&api, KeySet::default(), 1, &[0]);
    keys.keys[0].max_token_ttl = std::time::Duration::from_secs(120);
    let state = SharedState::new(None, Arc::new(Metrics::new()))
        .with_clock(now)
        .with_jti_source(|| Ok(JTI.to_string()));
    state.upsert(PolicyView::build(&api.info(), &keys, None));
    let routes = boxed(token_routes(state));

    let res = send(&routes, post_json(API_TOKEN, "{}")).await;
    assert_eq!(res.status(), 200);
    let exp = now().checked_add(SignedDuration::from_secs(120)).unwrap();
    assert_eq!(body_json(&res)["expiresAt"], exp.to_string());
    let res = send(&routes, post_json(API_TOKEN, r#"{"ttl":"5m"}"#)).await;
    assert_eq!(res.status(), 400);
    assert_eq!(body_json(&res)["error"], "ttl_too_long");
}

/// SPEC invariant 9: the view is built from (policy spec, stored set), so a
/// kid in `revokedKeyIDs` leaves the JWKS, the discovery document's
/// algorithms, verification and signing although the stored set, not yet
/// rewritten, still holds it.
#[tokio::test]
async fn a_revoked_kid_is_never_served_and_never_signs_though_the_stored_set_holds_it() {
    let f = fixture();
    let active = f.api_keys.active().unwrap().kid().to_owned();
    let pending = f.api_keys.pending().unwrap().kid().to_owned();
    let before = mint_via_api(&f, json!({})).await;

    let mut revoked = api_policy();
    revoked.spec.revoked_key_ids = vec![active.clone()];
    f.state.upsert(PolicyView::build(
        &revoked.info(),
        &f.api_keys,
        Some(BASE_URL),
    ));

    let jwks = body_json(&send(&f.jwks, get(API_JWKS)).await);
    let kids = kids_of(&jwks);
    assert_eq!(kids, [pending.as_str()], "the revoked kid is not served");
    let res = send(&f.token, post_json(API_TOKEN, "{}")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(error_code(&res), "key_revoked");
    assert!(res.headers().contains_key("retry-after"));
    let message = body_json(&res)["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&active), "{message}");
    let res = verify_via_api(&f, &before).await;
    assert_eq!(res.status(), 401, "a token of the revoked key fails");
    let summary = f
        .state
        .view(&PolicyRef::new("team-a", "api"))
        .unwrap()
        .summary()
        .clone();
    assert!(!summary.ready);
    assert_eq!(summary.active_key_id, None);
    assert_eq!(summary.key_count, 1);

    // Every key revoked: an empty set is served, discovery lists no algorithm.
    revoked.spec.revoked_key_ids = vec![active, pending];
    f.state.upsert(PolicyView::build(
        &revoked.info(),
        &f.api_keys,
        Some(BASE_URL),
    ));
    let jwks = body_json(&send(&f.jwks, get(API_JWKS)).await);
    assert_eq!(jwks["keys"], json!([]));
    let discovery = body_json(&send(&f.jwks, get(API_DISCOVERY)).await);
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!([])
    );
}

#[test]
fn a_public_only_view_leaves_revoked_kids_out_too() {
    let api = api_policy();
    let keys = plan_at(&api, KeySet::default(), 1, &[0, 50 * 60]);
    let public: Vec<_> = keys
        .keys
        .iter()
        .map(|k| k.key.verifying_key().clone())
        .collect();
    let mut revoked = api.clone();
    revoked.spec.revoked_key_ids = vec![keys.keys[0].kid().to_owned()];
    let view = PolicyView::public_only(&revoked.info(), &public, None);
    let jwks: Value = serde_json::from_slice(view.jwks_bytes()).unwrap();
    let kids = kids_of(&jwks);
    assert_eq!(kids, [keys.keys[1].kid()]);
    assert_eq!(view.summary().key_count, 1);
}

/// The fixture's `team-a/api` with its active key replaced by a
/// provider-held copy whose signatures wait for the test's go-ahead.
fn api_with_gated_key(
    f: &Fixture,
) -> (
    Arc<crate::keys::testing::Gated>,
    std::sync::mpsc::Sender<()>,
) {
    let mut keys = f.api_keys.clone();
    let active = keys
        .keys
        .iter_mut()
        .find(|k| k.state == crate::keys::lifecycle::KeyState::Active)
        .unwrap();
    let (remote, gated, go) = crate::keys::testing::Gated::wrap(&active.key);
    active.key = remote;
    f.state.upsert(PolicyView::build(
        &api_policy().info(),
        &keys,
        Some(BASE_URL),
    ));
    (gated, go)
}

/// A provider call may wait seconds on a token or a KMS: it runs off the
/// async workers, so even a single-threaded runtime answers other requests
/// while it waits. (Were it signed on the worker, the JWKS request below
/// could only be answered after the signature gave up, and the token would
/// fail.)
#[tokio::test(flavor = "current_thread")]
async fn a_provider_signature_does_not_hold_the_async_worker() {
    let f = fixture();
    let (gated, go) = api_with_gated_key(&f);
    let token_routes = f.token.clone();
    let minting =
        tokio::spawn(async move { post_json(API_TOKEN, "{}").reply(&token_routes).await });
    gated.wait_entered().await;
    // The signature has started and waits; the runtime still answers.
    let res = send(&f.jwks, get(API_JWKS)).await;
    assert_eq!(res.status(), 200);
    go.send(()).unwrap();
    let res = minting.await.unwrap();
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
    let token = body_json(&res)["token"].as_str().unwrap().to_owned();
    assert_eq!(verify_via_api(&f, &token).await.status(), 200);
}

/// A key provider that cannot sign is neither the client's fault nor a bug
/// here: 503 `key_provider_unavailable` with `Retry-After`, like a revoked
/// key, and the failure is logged once per burst, not per request.
#[tokio::test]
async fn a_provider_that_cannot_sign_answers_503_key_provider_unavailable() {
    let f = fixture();
    let (_, go) = api_with_gated_key(&f);
    drop(go); // every signature fails at once: the provider is gone
    for _ in 0..2 {
        let res = send(&f.token, post_json(API_TOKEN, "{}")).await;
        assert_eq!(res.status(), 503);
        assert_eq!(error_code(&res), "key_provider_unavailable");
        assert!(res.headers().contains_key("retry-after"));
    }
    let api = PolicyRef::new("team-a", "api");
    assert!(
        !f.state.provider_failed(&api),
        "the burst began with the first failure"
    );

    // The provider is back: tokens are minted, and the burst is over.
    let (gated, go) = api_with_gated_key(&f);
    go.send(()).unwrap();
    let res = send(&f.token, post_json(API_TOKEN, "{}")).await;
    assert_eq!(res.status(), 200);
    drop(gated);
    assert!(
        f.state.provider_failed(&api),
        "a new failure starts a new burst"
    );
}
