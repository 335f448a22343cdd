//! The gRPC service on a real Unix socket, called with the generated tonic
//! client; the kube-specific key handling; the socket rules.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use tonic::transport::Channel;

use super::kube::{check_policy, import_pem_key, kube_key_id, spki_der};
use super::pb::external_jwt_signer_client::ExternalJwtSignerClient;
use super::pb::{FetchKeysRequest, MetadataRequest, SignJwtRequest};
use super::service::{Lifetimes, Service, SignerState, refresh_hint};
use super::socket;
use crate::keys::lifecycle::{KeySet, KeyState};
use crate::keys::{Algorithm, KeyParams, SigningKey};
use crate::store::StoredKeySet;
use crate::store::testing::{fixture, managed};

fn generate(alg: Algorithm) -> Arc<SigningKey> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([alg as u8; 32]);
    Arc::new(SigningKey::generate(KeyParams::new(alg), &mut rng).unwrap())
}

use rand_chacha::rand_core::SeedableRng as _;

fn set_of(keys: Vec<(Arc<SigningKey>, KeyState)>) -> StoredKeySet {
    KeySet {
        keys: keys
            .into_iter()
            .enumerate()
            .map(|(i, (k, s))| managed(k, s, 100 - i as i64))
            .collect(),
        ..KeySet::default()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn no_revocation() -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::new()
}

/// A signer serving `state` on a socket in `dir`, and a client for it.
struct Harness {
    client: ExternalJwtSignerClient<Channel>,
    state: Arc<SignerState>,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    /// Asks the signer to sign `claims` (base64url JSON, as kube-apiserver sends them).
    async fn sign(&mut self, claims: String) -> Result<super::pb::SignJwtResponse, tonic::Status> {
        self.client
            .sign(SignJwtRequest { claims })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Asks the signer to sign a token issued now that lives 60 s.
    async fn sign_now(&mut self) -> Result<super::pb::SignJwtResponse, tonic::Status> {
        self.sign(claims(now_s(), now_s() + 60)).await
    }

    /// Publishes `set` now with nothing revoked and a 5 s refresh hint;
    /// whether what is served changed.
    fn publish(&self, set: &StoredKeySet) -> bool {
        self.publish_revoking(set, &no_revocation())
    }

    /// Publishes `set` now with the kids `revoked` and a 5 s refresh hint;
    /// whether what is served changed.
    fn publish_revoking(
        &self,
        set: &StoredKeySet,
        revoked: &std::collections::BTreeSet<String>,
    ) -> bool {
        self.state
            .publish(set, revoked, Duration::from_secs(5), Timestamp::now())
    }

    /// The key ids the signer announces now, in its order.
    async fn kids(&mut self) -> Vec<String> {
        self.fetch_keys()
            .await
            .keys
            .into_iter()
            .map(|k| k.key_id)
            .collect()
    }

    /// The keys the signer announces now.
    async fn fetch_keys(&mut self) -> super::pb::FetchKeysResponse {
        self.client
            .fetch_keys(FetchKeysRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

async fn serve(lifetimes: Lifetimes) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.sock");
    let state = SignerState::new(lifetimes);
    let (listener, _guard) = socket::bind(&path).unwrap();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = Service::new(state.clone()).into_server();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let client = ExternalJwtSignerClient::new(connect(&path).await);
    Harness {
        client,
        state,
        _dir: dir,
        stop,
    }
}

#[path = "../../tests/support/uds.rs"]
mod uds;

// === Sign's claim checks (pure, at a fixed clock) ===

/// The signer's clock in the claim-check tests.
const NOW: i64 = 1_800_000_000;

/// Checks raw JSON claims at [`NOW`] with a 1h cap and 60s clockSkew.
fn check(json: &str) -> Result<(), tonic::Status> {
    super::service::check_claims(
        &URL_SAFE_NO_PAD.encode(json),
        &lifetimes(HOUR, HOUR),
        Timestamp::from_second(NOW).unwrap(),
    )
}

/// Asserts `json` is refused with InvalidArgument and a message holding `says`.
#[track_caller]
fn refused(json: &str, says: &str) {
    let e = check(json).expect_err(json);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{json}");
    assert!(e.message().contains(says), "{json}: {}", e.message());
}

#[test]
fn kube_apiservers_claims_pass_the_checks() {
    // What kube-apiserver sends: iat = nbf = now, exp = iat + the lifetime.
    check(&format!(
        r#"{{"iat":{NOW},"nbf":{NOW},"exp":{}}}"#,
        NOW + 3600
    ))
    .unwrap();
    // Its clock a little behind or ahead of the signer's: within clockSkew
    // plus the leeway for the call.
    check(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW - 65, NOW + 600)).unwrap();
    check(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW + 65, NOW + 600)).unwrap();
}

#[test]
fn time_claims_that_are_not_whole_seconds_are_refused() {
    refused(
        &format!(r#"{{"iat":{NOW}.5,"exp":{}}}"#, NOW + 60),
        "\"iat\" is not a whole number",
    );
    // An exponent is a float to JSON, whatever its value.
    refused(
        &format!(r#"{{"iat":{NOW},"exp":1.8000006e9}}"#),
        "\"exp\" is not a whole number",
    );
    refused(
        r#"{"iat":1e300,"exp":1e300}"#,
        "\"iat\" is not a whole number",
    );
    refused(
        &format!(r#"{{"iat":{NOW},"nbf":{NOW}.25,"exp":{}}}"#, NOW + 60),
        "\"nbf\" is not a whole number",
    );
}

#[test]
fn time_claims_out_of_range_or_non_finite_are_refused() {
    // exp - iat is small, but the times are nonsense.
    refused(
        r#"{"iat":-9223372036854775808,"exp":-9223372036854775000}"#,
        "\"iat\" is out of range",
    );
    refused(
        &format!(r#"{{"iat":{NOW},"exp":18446744073709551615}}"#),
        "\"exp\" is out of range",
    );
    refused(
        &format!(r#"{{"iat":{NOW},"nbf":-1,"exp":{}}}"#, NOW + 60),
        "\"nbf\" is out of range",
    );
    // JSON has no NaN or Infinity; a number too large for a double is not JSON.
    refused(r#"{"iat":NaN,"exp":1}"#, "not JSON");
    refused(&format!(r#"{{"iat":{NOW},"exp":1e400}}"#), "not JSON");
}

#[test]
fn time_claims_that_are_not_numbers_are_refused() {
    refused(
        &format!(r#"{{"iat":"{NOW}","exp":{}}}"#, NOW + 60),
        "\"iat\" is not a number",
    );
    refused(
        &format!(r#"{{"iat":{NOW},"exp":true}}"#),
        "\"exp\" is not a number",
    );
    refused(
        &format!(r#"{{"iat":{NOW},"nbf":null,"exp":{}}}"#, NOW + 60),
        "\"nbf\" is not a number",
    );
    refused(&format!(r#"{{"exp":{NOW}}}"#), "lack \"iat\"");
}

#[test]
fn exp_must_be_after_iat_and_nbf_not_after_exp() {
    refused(
        &format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW - 100),
        "\"exp\" (1799999900) is not after \"iat\"",
    );
    refused(&format!(r#"{{"iat":{NOW},"exp":{NOW}}}"#), "is not after");
    refused(
        &format!(r#"{{"iat":{NOW},"nbf":{},"exp":{}}}"#, NOW + 120, NOW + 60),
        "\"nbf\" (1800000120) is after \"exp\"",
    );
}

#[test]
fn iat_farther_than_clock_skew_from_the_signers_clock_is_refused() {
    // clockSkew 60s, plus 5s for the call.
    for iat in [NOW - 66, NOW + 66, NOW - 86_400, 0] {
        refused(
            &format!(r#"{{"iat":{iat},"exp":{}}}"#, iat + 600),
            "more than the policy's clockSkew of 60s",
        );
    }
}

/// A channel over the Unix socket at `path`.
pub(crate) async fn connect(path: &Path) -> Channel {
    uds::uds_channel(path).await.unwrap()
}

fn claims(iat: i64, exp: i64) -> String {
    let json = serde_json::json!({
        "iss": "https://kubernetes.default.svc",
        "sub": "system:serviceaccount:default:demo",
        "aud": ["https://kubernetes.default.svc"],
        "iat": iat, "nbf": iat, "exp": exp,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "demo", "uid": "u"}}
    });
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap())
}

fn lifetimes(announce: Duration, cap: Duration) -> Lifetimes {
    Lifetimes {
        announce,
        sign_cap: cap,
        clock_skew: Duration::from_secs(60),
    }
}

/// The signer's clock now, in seconds (kube-apiserver's `iat`).
fn now_s() -> i64 {
    Timestamp::now().as_second()
}

#[tokio::test]
async fn nothing_is_served_before_a_set_is_published() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let e = h.client.fetch_keys(FetchKeysRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let e = h.sign_now().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let _ = h.stop.send(());
}

#[tokio::test]
async fn fetch_keys_lists_pending_active_and_retired_keys_as_spki() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let pending = generate(Algorithm::ES256);
    let active = fixture(Algorithm::RS256);
    let retired = fixture(Algorithm::ES384);
    let set = set_of(vec![
        (pending.clone(), KeyState::Pending),
        (active.clone(), KeyState::Active),
        (retired.clone(), KeyState::Retired),
    ]);
    h.state.publish(
        &set,
        &no_revocation(),
        Duration::from_secs(30),
        Timestamp::now(),
    );
    let resp = h.fetch_keys().await;
    let kids: Vec<&str> = resp.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(kids, [pending.kid(), active.kid(), retired.kid()]);
    assert_eq!(resp.refresh_hint_seconds, 30);
    assert!(resp.keys.iter().all(|k| !k.exclude_from_oidc_discovery));

    // The DER is SubjectPublicKeyInfo of exactly each key, read back with
    // other parsers than the one that wrote it.
    use p256::pkcs8::DecodePublicKey as _;
    let p256_key = p256::PublicKey::from_public_key_der(&resp.keys[0].key).unwrap();
    let jwk = pending.public_jwk();
    let point = p256_key.to_sec1_bytes();
    assert_eq!(URL_SAFE_NO_PAD.encode(&point[1..33]), jwk["x"]);
    assert_eq!(URL_SAFE_NO_PAD.encode(&point[33..]), jwk["y"]);
    let rsa_key = rsa::PublicKey::from_public_key_der(&resp.keys[1].key).unwrap();
    use rsa::traits::PublicKeyParts as _;
    assert_eq!(
        URL_SAFE_NO_PAD.encode(rsa_key.n_bytes()),
        active.public_jwk()["n"]
    );
    p384::PublicKey::from_public_key_der(&resp.keys[2].key).unwrap();
    let _ = h.stop.send(());
}

#[tokio::test]
async fn data_timestamp_moves_only_when_the_set_changes() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let a = fixture(Algorithm::ES256);
    let b = generate(Algorithm::ES256);
    let one = set_of(vec![(a.clone(), KeyState::Active)]);
    let t0 = Timestamp::from_second(1_900_000_000).unwrap();
    assert!(
        h.state
            .publish(&one, &no_revocation(), Duration::from_secs(5), t0)
    );
    let first = h.fetch_keys().await;
    // Same keys republished later (a state change that lists the same keys): same stamp.
    let mut same = one.clone();
    same.keys[0].prune_after = Some(t0);
    assert!(!h.state.publish(
        &same,
        &no_revocation(),
        Duration::from_secs(5),
        t0 + jiff::SignedDuration::from_secs(10)
    ));
    let again = h.fetch_keys().await;
    assert_eq!(first.data_timestamp, again.data_timestamp);
    // A new key: a later stamp, even when the clock did not move.
    let two = set_of(vec![(b, KeyState::Pending), (a, KeyState::Active)]);
    assert!(
        h.state
            .publish(&two, &no_revocation(), Duration::from_secs(5), t0)
    );
    let changed = h.fetch_keys().await;
    let (f, c) = (
        first.data_timestamp.unwrap(),
        changed.data_timestamp.unwrap(),
    );
    assert!(
        (c.seconds, c.nanos) > (f.seconds, f.nanos),
        "{f:?} -> {c:?}"
    );
    assert_eq!(changed.keys.len(), 2);
    let _ = h.stop.send(());
}

#[test]
fn the_refresh_hint_is_at_most_half_of_publish_ahead() {
    for secs in [0u64, 1, 2, 3, 20, 120, 3600, 86_400] {
        let ahead = Duration::from_secs(secs);
        let hint = refresh_hint(ahead, None);
        assert!(hint >= Duration::from_secs(1));
        if secs >= 2 {
            assert!(hint <= ahead / 2, "publishAhead {secs}s gave {hint:?}");
        }
    }
    assert_eq!(
        refresh_hint(Duration::from_secs(40), None),
        Duration::from_secs(20)
    );
    assert_eq!(
        refresh_hint(Duration::from_secs(3600), None),
        Duration::from_secs(60)
    );
    // Never longer than the policy's verifierRefreshInterval.
    assert_eq!(
        refresh_hint(Duration::from_secs(40), Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
}

#[tokio::test]
async fn keys_kube_cannot_use_are_left_out_and_never_sign() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let ed = fixture(Algorithm::EdDSA);
    let ps = fixture(Algorithm::PS256);
    let rs = fixture(Algorithm::RS256);
    let set = set_of(vec![
        (ed, KeyState::Active),
        (ps, KeyState::Pending),
        (rs.clone(), KeyState::Retired),
    ]);
    h.publish(&set);
    assert_eq!(h.kids().await, [rs.kid()]);
    let e = h.sign_now().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let _ = h.stop.send(());
}

#[tokio::test]
async fn a_revoked_kid_leaves_fetch_keys_and_never_signs_whatever_the_store_still_holds() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let active = fixture(Algorithm::RS256);
    let retired = fixture(Algorithm::ES256);
    // The stored set still holds both (the write that would drop the
    // revoked key failed): what is served follows the spec.
    let set = set_of(vec![
        (active.clone(), KeyState::Active),
        (retired.clone(), KeyState::Retired),
    ]);
    h.publish(&set);
    assert!(h.sign_now().await.is_ok());

    let revoked = [active.kid().to_owned()].into_iter().collect();
    assert!(h.publish_revoking(&set, &revoked));
    let kids = h.kids().await;
    assert_eq!(kids, [retired.kid()]);
    let e = h.sign_now().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains(active.kid()), "{}", e.message());
    assert!(e.message().contains("revokedKeyIDs"), "{}", e.message());

    // Revoking a retired key leaves the active one signing.
    let revoked = [retired.kid().to_owned()].into_iter().collect();
    h.publish_revoking(&set, &revoked);
    let kids = h.kids().await;
    assert_eq!(kids, [active.kid()]);
    let resp = h.sign_now().await.unwrap();
    assert!(
        String::from_utf8(URL_SAFE_NO_PAD.decode(&resp.header).unwrap())
            .unwrap()
            .contains(active.kid())
    );
    let _ = h.stop.send(());
}

async fn sign_with(alg: Algorithm) {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let active = fixture(alg);
    let pending = generate(Algorithm::ES256);
    let set = set_of(vec![
        (pending, KeyState::Pending),
        (active.clone(), KeyState::Active),
    ]);
    h.publish(&set);
    let now = Timestamp::now().as_second();
    let payload = claims(now, now + 3600);
    let resp = h.sign(payload.clone()).await.unwrap();
    // The header holds exactly alg, kid and typ "JWT".
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&resp.header).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": alg.as_str(), "kid": active.kid(), "typ": "JWT"})
    );
    let signature = URL_SAFE_NO_PAD.decode(&resp.signature).unwrap();
    match alg {
        Algorithm::ES256 => assert_eq!(signature.len(), 64, "raw r||s"),
        Algorithm::ES384 => assert_eq!(signature.len(), 96, "raw r||s"),
        _ => assert_eq!(signature.len(), 256),
    }
    // The assembled token verifies with an independent JWT library.
    let token = format!("{}.{}.{}", resp.header, payload, resp.signature);
    let mut validation = jsonwebtoken::Validation::new(match alg {
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        _ => jsonwebtoken::Algorithm::RS256,
    });
    validation.set_audience(&["https://kubernetes.default.svc"]);
    let decoded = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &active.verifying_key().to_decoding_key(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.claims["sub"], "system:serviceaccount:default:demo");
    let _ = h.stop.send(());
}

/// A Sign through a provider may wait seconds on a token or a KMS: it runs
/// off the async workers, so even a single-threaded runtime answers
/// FetchKeys meanwhile (were it signed on the worker, FetchKeys could only
/// be answered after the signature gave up, and Sign would fail).
#[tokio::test(flavor = "current_thread")]
async fn a_provider_signature_does_not_hold_the_async_worker() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let (active, gated, go) = crate::keys::testing::Gated::wrap(&fixture(Algorithm::ES256));
    h.publish(&set_of(vec![(active.clone(), KeyState::Active)]));
    let mut client = h.client.clone();
    let signing = tokio::spawn(async move {
        client
            .sign(SignJwtRequest {
                claims: claims(now_s(), now_s() + 60),
            })
            .await
    });
    gated.wait_entered().await;
    assert_eq!(h.kids().await, [active.kid()]);
    go.send(()).unwrap();
    let signed = signing.await.unwrap().unwrap().into_inner();
    assert!(!signed.signature.is_empty());
    let _ = h.stop.send(());
}

/// A key provider that cannot sign is kube-apiserver's to retry, not an
/// internal error of the signer: UNAVAILABLE, naming the provider's error.
#[tokio::test]
async fn a_provider_that_cannot_sign_is_unavailable_not_internal() {
    let mut h = serve(lifetimes(HOUR, HOUR)).await;
    let (active, _gated, go) = crate::keys::testing::Gated::wrap(&fixture(Algorithm::ES256));
    drop(go); // every signature fails at once: the provider is gone
    h.publish(&set_of(vec![(active, KeyState::Active)]));
    let status = h.sign_now().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no go-ahead"), "{status:?}");
    let _ = h.stop.send(());
}

#[tokio::test]
async fn sign_uses_the_active_rs256_key() {
    sign_with(Algorithm::RS256).await;
}

#[tokio::test]
async fn sign_uses_the_active_es256_key_with_raw_signatures() {
    sign_with(Algorithm::ES256).await;
}

#[tokio::test]
async fn sign_uses_the_active_es384_key_with_raw_signatures() {
    sign_with(Algorithm::ES384).await;
}

#[tokio::test]
async fn sign_refuses_lifetimes_beyond_the_cap_and_bad_claims() {
    let mut h = serve(lifetimes(
        Duration::from_secs(600),
        Duration::from_secs(900),
    ))
    .await;
    let set = set_of(vec![(fixture(Algorithm::ES256), KeyState::Active)]);
    h.publish(&set);
    // Up to the recorded cap is signed, one second more is not.
    let t = now_s();
    h.sign(claims(t, t + 900)).await.unwrap();
    let e = h.sign(claims(t, t + 901)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("maxTokenTTL"), "{}", e.message());
    for bad in [
        "not base64!".to_string(),
        URL_SAFE_NO_PAD.encode(b"not json"),
        URL_SAFE_NO_PAD.encode(b"[1,2]"),
        URL_SAFE_NO_PAD.encode(br#"{"iat": 1}"#),
        URL_SAFE_NO_PAD.encode(br#"{"iat": 1, "exp": "2"}"#),
        "A".repeat(super::service::MAX_CLAIMS_LEN + 1),
    ] {
        let e = h.sign(bad.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:.40}");
    }
    let text = h.state.metrics().encode();
    assert!(
        text.contains(
            r#"jwks_operator_signer_requests_total{method="Sign",code="InvalidArgument"} 7"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"jwks_operator_signer_requests_total{method="Sign",code="OK"} 1"#));
    let _ = h.stop.send(());
}

#[tokio::test]
async fn metadata_announces_the_policy_max_token_ttl() {
    let mut h = serve(lifetimes(
        Duration::from_secs(7200),
        Duration::from_secs(9000),
    ))
    .await;
    let resp = h
        .client
        .metadata(MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.max_token_expiration_seconds, 7200);
    h.state.set_lifetimes(lifetimes(
        Duration::from_secs(900),
        Duration::from_secs(9000),
    ));
    let resp = h
        .client
        .metadata(MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.max_token_expiration_seconds, 900);
    let _ = h.stop.send(());
}

#[test]
fn policies_kube_cannot_use_are_refused() {
    for alg in [
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::EdDSA,
    ] {
        let e = check_policy(alg, HOUR).unwrap_err();
        assert!(
            e.contains(alg.as_str()) && e.contains("RS256, ES256 and ES384"),
            "{e}"
        );
    }
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
        check_policy(alg, HOUR).unwrap();
        check_policy(alg, Duration::from_secs(600)).unwrap();
        let e = check_policy(alg, Duration::from_secs(599)).unwrap_err();
        assert!(e.contains("600s"), "{e}");
    }
}

#[test]
fn the_kube_key_id_is_the_sha256_of_the_spki_not_the_thumbprint() {
    use rsa::pkcs8::EncodePublicKey as _;
    let key = fixture(Algorithm::RS256);
    let spki = spki_der(&key).unwrap();
    // The same DER as an independent encoder writes it (Go's
    // x509.MarshalPKIXPublicKey writes this standard form too).
    let jwk = key.public_jwk();
    let n = rsa::BoxedUint::from_be_slice_vartime(
        &URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap(),
    );
    let e = rsa::BoxedUint::from_be_slice_vartime(
        &URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap(),
    );
    let public = rsa::PublicKey::new(n, e).unwrap();
    assert_eq!(public.to_public_key_der().unwrap().as_bytes(), &spki[..]);
    let kid = kube_key_id(&spki);
    assert_eq!(kid.len(), 43);
    assert_ne!(kid, key.thumbprint());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki);
    assert_eq!(URL_SAFE_NO_PAD.decode(&kid).unwrap(), digest.as_ref());
}

#[test]
fn an_sa_key_is_imported_under_the_kid_kube_gave_it() {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    let rsa_key = rsa::PrivateKey::new(&mut rng, 2048).unwrap();
    let pkcs1 = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
    let pkcs8 = rsa_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let a = import_pem_key(&pkcs1).unwrap();
    let b = import_pem_key(&pkcs8).unwrap();
    assert_eq!(a.kid(), b.kid());
    assert_eq!(a.alg(), Algorithm::RS256);
    assert_eq!(a.kid(), kube_key_id(&spki_der(&a).unwrap()));
    assert!(!a.kid_is_thumbprint());
    // It signs what its public half verifies.
    let sig = a.sign(b"x.y").unwrap();
    a.verifying_key().verify_signature(b"x.y", &sig).unwrap();

    let ec = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
    let ec_pkcs8 = ec.to_pkcs8_pem(LineEnding::LF).unwrap();
    let ec_sec1 = ec.to_sec1_pem(LineEnding::LF).unwrap();
    let c = import_pem_key(&ec_pkcs8).unwrap();
    let d = import_pem_key(&ec_sec1).unwrap();
    assert_eq!(c.alg(), Algorithm::ES256);
    assert_eq!(c.kid(), d.kid());
    assert_eq!(c.kid(), kube_key_id(&spki_der(&c).unwrap()));

    for bad in [
        "",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
    ] {
        let e = import_pem_key(bad).unwrap_err().to_string();
        assert!(!e.is_empty());
    }
    // An error never shows the key.
    let mut broken = pkcs1.to_string();
    broken.insert_str(40, "!!");
    let e = import_pem_key(&broken).unwrap_err().to_string();
    assert!(!e.contains(&pkcs1[40..80]), "{e}");
}

#[tokio::test]
async fn the_socket_is_private_and_a_live_one_is_never_taken_over() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (listener, guard) = socket::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second signer on the same path is refused while the first listens.
    let e = socket::bind(&path).unwrap_err();
    assert!(matches!(e, socket::SocketError::InUse(_)), "{e}");
    // Once it is gone (the file stays behind), the stale file is replaced.
    drop(listener);
    assert!(path.exists());
    let (_l2, guard2) = socket::bind(&path).unwrap();
    tokio::net::UnixStream::connect(&path).await.unwrap();
    // The first guard no longer owns the path: it leaves it alone.
    guard.remove();
    assert!(path.exists());
    guard2.remove();
    assert!(!path.exists());
    // Anything but a socket is never replaced.
    std::fs::write(&path, b"data").unwrap();
    let e = socket::bind(&path).unwrap_err();
    assert!(matches!(e, socket::SocketError::NotASocket(_)), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    // No staging directory is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

/// Item 9 of issue 20: a follower that cannot read the stored set for longer
/// than its staleness bound stops signing (and says so in /policies and the
/// `jwks_operator_signer_stale` gauge), and resumes once it reads it again.
/// Real files; the clock of the check is injected.
#[tokio::test]
async fn a_follower_that_cannot_read_the_stored_set_past_its_bound_stops_signing_until_it_can() {
    use super::pb::external_jwt_signer_server::ExternalJwtSigner as _;
    use crate::http::{PolicyRef, SharedState};
    use crate::store::files::FileStore;

    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies.yaml");
    std::fs::write(
        &policies,
        "apiVersion: jwks.dev/v1alpha1\nkind: KeyRotationPolicy\nmetadata: {name: sa, namespace: kube-system}\nspec: {algorithm: ES256, clockSkew: 10s}\n",
    )
    .unwrap();
    let policy = PolicyRef::new("kube-system", "sa");
    let doc = super::load_policy(&policies, &policy).unwrap();
    let state_dir = work.path().join("state");
    let store = FileStore::open(&state_dir).unwrap();
    let dir = store.policy("kube-system", "sa").unwrap();
    // What the leader stored.
    let mut source =
        crate::keys::material::RngKeySource(rand_chacha::ChaCha20Rng::from_seed([9; 32]));
    let set = crate::keys::lifecycle::plan(
        &doc.resolved,
        &KeySet::default(),
        Timestamp::now(),
        &mut source,
    )
    .unwrap()
    .keys;
    dir.save_blocking(&set, None).unwrap();

    let state = SignerState::new(lifetimes(HOUR, HOUR));
    let http = SharedState::new(None, Arc::new(crate::metrics::Metrics::new()));
    let mut follower = super::Signer {
        config: super::Config {
            policies,
            policy: policy.clone(),
            state_dir: state_dir.clone(),
            socket: work.path().join("s.sock"),
            jwks_addr: None,
            metrics_addr: None,
            public_base_url: None,
            adopt_key: None,
            poll_interval: Duration::from_secs(1),
            publish: Vec::new(),
            publish_verify_interval: Duration::from_secs(300),
        },
        announced: super::announced::Announced::new(&state_dir, &policy),
        doc,
        dir: dir.clone(),
        store,
        state: state.clone(),
        http: http.clone(),
        adopt: None,
        seen: None,
        corrupt_logged: false,
        served: None,
        ran_before: false,
        warning: None,
        read_at: None,
        read_stamp: None,
        home: crate::providers::KeyHome::Here,
    };
    let service = Service::new(state.clone());
    let now = Timestamp::now().as_second();
    let sign = || {
        service.sign(tonic::Request::new(SignJwtRequest {
            claims: claims(now, now + 600),
        }))
    };
    let bound = crate::engine::staleness::bound(&follower.doc.resolved, Duration::from_secs(1));
    assert_eq!(
        bound,
        Duration::from_secs(100),
        "clockSkew 10s + propagationGrace 90s"
    );

    follower.refresh().await;
    let read = follower.read_at.expect("read");
    follower.check_freshness(read, false);
    assert!(sign().await.is_ok());

    // The state cannot be read any more; within the bound it still signs.
    let lifecycle = dir.path().join("lifecycle.json");
    let good = std::fs::read(&lifecycle).unwrap();
    std::fs::write(&lifecycle, b"garbage").unwrap();
    follower.refresh().await;
    follower.check_freshness(read + bound, false);
    assert!(sign().await.is_ok(), "within the bound");
    follower.refresh().await;
    follower.check_freshness(read + bound + Duration::from_secs(1), false);
    let e = sign().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains("staleness bound of 100s"),
        "{}",
        e.message()
    );
    assert!(
        state
            .metrics()
            .encode()
            .contains("jwks_operator_signer_stale 1")
    );
    let summary = &http.summaries()[0];
    assert_eq!(summary.degraded.as_ref().unwrap().reason, "KeySetStale");
    // FetchKeys keeps answering (kube-apiserver keeps verifying).
    assert!(
        service
            .fetch_keys(tonic::Request::new(FetchKeysRequest {}))
            .await
            .is_ok()
    );

    // Readable again: signing resumes at the next check.
    std::fs::write(&lifecycle, good).unwrap();
    follower.refresh().await;
    follower.check_freshness(std::time::Instant::now(), false);
    assert!(sign().await.is_ok());
    assert!(
        state
            .metrics()
            .encode()
            .contains("jwks_operator_signer_stale 0")
    );
    assert!(http.summaries()[0].degraded.is_none());

    // The leader writes the set: it is never stale.
    follower.check_freshness(std::time::Instant::now() + bound * 10, true);
    assert!(sign().await.is_ok());
}

/// FetchKeys for a provider-held key (no PKCS#8 form) carries the same DER
/// SubjectPublicKeyInfo as for the same key held here.
#[test]
fn spki_from_the_public_jwk_matches_the_pkcs8_one() {
    struct NoSign(String);
    impl crate::keys::material::RemoteSigner for NoSign {
        fn reference(&self) -> &str {
            &self.0
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
            Err("not in this test".into())
        }
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384] {
        let local = SigningKey::generate(crate::keys::KeyParams::new(alg), &mut rng).unwrap();
        let remote = SigningKey::remote(
            local.params(),
            local.verifying_key().clone(),
            Arc::new(NoSign("pkcs11:token=t;id=%01".into())),
        );
        assert_eq!(spki_der(&remote), spki_der(&local), "{alg}");
        assert!(spki_der(&local).is_some());
    }
}
